/*
 * util.h - UUIDs, encodings of binary values, times, JSON field helpers.
 *
 * Binary values in JSON: keys and signatures in standard padded base64,
 * hashes in lowercase hex, times as RFC 3339 UTC strings.
 */
#ifndef SHOAL_UTIL_H
#define SHOAL_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>
#include <jansson.h>

#include "err.h"

#define SHOAL_UUID_STRLEN 36           /* without the NUL */

/* 1 when s is a canonical UUID: 8-4-4-4-12 hex digits, lower or upper
 * case, nothing before or after.  0 otherwise. */
int shoal_uuid_valid(const char *s);

/* Parse a canonical UUID into 16 bytes.  -1 (SHOAL_EINVAL naming 'what')
 * when s is not canonical. */
int shoal_uuid_parse(const char *s, unsigned char out[16], const char *what,
                     struct shoal_err *err);

/* Format 16 bytes as a lowercase canonical UUID into out[37]. */
void shoal_uuid_format(const unsigned char in[16], char out[37]);

/* A fresh random UUIDv4, lowercase, into out[37]. */
void shoal_uuid_v4(char out[37]);

/* Lowercase canonical form of a valid UUID string into out[37].
 * -1 (SHOAL_EINVAL naming 'what') when s is not a canonical UUID. */
int shoal_uuid_normalize(const char *s, char out[37], const char *what,
                         struct shoal_err *err);

/* Standard padded base64 of bin.  New string (free()), NULL on ENOMEM. */
char *shoal_b64_encode(const unsigned char *bin, size_t len);

/* Decode standard padded base64 into exactly 'want' bytes.  -1 with
 * SHOAL_EINVAL naming 'what' on bad characters, padding or length. */
int shoal_b64_decode_exact(const char *s, unsigned char *out, size_t want,
                           const char *what, struct shoal_err *err);

/* Lowercase hex of bin into out (2*len+1 bytes). */
void shoal_hex_encode(const unsigned char *bin, size_t len, char *out);

/* Decode exactly 2*want lowercase hex digits.  -1 (SHOAL_EINVAL) otherwise. */
int shoal_hex_decode_exact(const char *s, unsigned char *out, size_t want,
                           const char *what, struct shoal_err *err);

/* RFC 3339 UTC, second precision ("2026-11-21T19:48:35Z"), into out[32]. */
void shoal_time_format(time_t t, char out[32]);

/* Parse RFC 3339 (Z or ±hh:mm offset, optional fraction).  -1 on error. */
int shoal_time_parse(const char *s, time_t *out, struct shoal_err *err);

/* Seconds since the epoch as a double, from CLOCK_REALTIME. */
double shoal_now(void);

/* Monotonic seconds, for durations. */
double shoal_mono(void);

/*
 * JSON field helpers.  Each reads obj[key]; a missing key or a value of
 * the wrong type fails with SHOAL_EINVAL and a message naming the key.
 * Returned strings are borrowed from obj.
 */
int shoal_json_str(const json_t *obj, const char *key, const char **out,
                   struct shoal_err *err);
/* Like shoal_json_str, but NULL is stored when the key is absent. */
int shoal_json_str_opt(const json_t *obj, const char *key, const char **out,
                       struct shoal_err *err);
int shoal_json_int(const json_t *obj, const char *key, json_int_t *out,
                   struct shoal_err *err);
int shoal_json_bool(const json_t *obj, const char *key, int *out,
                    struct shoal_err *err);
/* obj[key] must be an array; borrowed. */
int shoal_json_array(const json_t *obj, const char *key, json_t **out,
                     struct shoal_err *err);
/* obj[key] must be a canonical UUID; lowercase copy into out[37]. */
int shoal_json_uuid(const json_t *obj, const char *key, char out[37],
                    struct shoal_err *err);
/* Fail with SHOAL_EINVAL when obj has a key not in the NULL-terminated
 * list 'allowed'. */
int shoal_json_only(const json_t *obj, const char *const *allowed,
                    struct shoal_err *err);

/* Value of a hex digit (either case), -1 when c is not one. */
int shoal_hexval(char c);

/* A JSON string of s, with every byte that is not ASCII replaced by '?'
 * when s is not valid UTF-8 (so that a message always encodes).  New
 * reference, NULL on ENOMEM. */
json_t *shoal_json_string_lossy(const char *s);

/* Compact JSON text of v.  New string (free()). */
char *shoal_json_dump(const json_t *v);

/* Write all of buf to fd, retrying on EINTR and short writes. */
int shoal_write_all(int fd, const void *buf, size_t len);

/* Read a whole small file (at most max bytes) into a new NUL-terminated
 * buffer.  -1 with SHOAL_EIO (errno kept). */
int shoal_file_read(const char *path, size_t max, char **out, size_t *len,
                    struct shoal_err *err);

/* Write a file atomically with the given mode: temporary file in the same
 * folder, fsync, rename, fsync of the folder.  Creates missing parent
 * folders with mode 0700. */
int shoal_file_write_atomic(const char *path, const void *buf, size_t len,
                            int mode, struct shoal_err *err);

/* mkdir -p with mode for every created component. */
int shoal_mkdir_p(const char *path, int mode, struct shoal_err *err);

#endif
