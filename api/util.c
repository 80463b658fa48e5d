/*
 * util.c - UUIDs, base64 and hex, RFC 3339 times, clocks, JSON field
 * helpers, and whole-file reads and atomic writes.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#include "util.h"

static const char hexdigits[] = "0123456789abcdef";

int shoal_hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

json_t *shoal_json_string_lossy(const char *s)
{
    json_t *j = json_string(s);
    if (j != NULL)
        return j;
    char *copy = strdup(s);
    if (copy == NULL)
        return NULL;
    for (size_t i = 0; copy[i] != '\0'; i++)
        if ((unsigned char)copy[i] >= 0x80)
            copy[i] = '?';
    j = json_string(copy);
    free(copy);
    return j;
}

int shoal_uuid_valid(const char *s)
{
    size_t i;

    if (s == NULL)
        return 0;
    for (i = 0; i < SHOAL_UUID_STRLEN; i++) {
        if (i == 8 || i == 13 || i == 18 || i == 23) {
            if (s[i] != '-')
                return 0;
        } else if (shoal_hexval(s[i]) < 0) {
            return 0;   /* also stops at a NUL of a short string */
        }
    }
    return s[SHOAL_UUID_STRLEN] == '\0';
}

int shoal_uuid_parse(const char *s, unsigned char out[16], const char *what,
                     struct shoal_err *err)
{
    size_t i;
    size_t n = 0;

    if (!shoal_uuid_valid(s))
        return shoal_err_set(err, SHOAL_EINVAL,
                             "'%s' must be a canonical UUID", what);
    for (i = 0; i < SHOAL_UUID_STRLEN; i += 2) {
        if (s[i] == '-')
            i++;
        out[n++] = (unsigned char)(shoal_hexval(s[i]) << 4 | shoal_hexval(s[i + 1]));
    }
    return 0;
}

void shoal_uuid_format(const unsigned char in[16], char out[37])
{
    size_t i;
    size_t o = 0;

    for (i = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10)
            out[o++] = '-';
        out[o++] = hexdigits[in[i] >> 4];
        out[o++] = hexdigits[in[i] & 0x0F];
    }
    out[o] = '\0';
}

static int sodium_ready;

static void sodium_once(void)
{
    sodium_ready = sodium_init() >= 0;
}

/* UUIDs name sessions and authenticate users, so their bits come from the
 * system CSPRNG through libsodium, which aborts rather than return weak
 * bytes. */
void shoal_uuid_v4(char out[37])
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    unsigned char b[16];

    if (pthread_once(&once, sodium_once) != 0 || !sodium_ready) {
        fputs("shoal: cannot initialise libsodium\n", stderr);
        abort();
    }
    randombytes_buf(b, sizeof(b));
    b[6] = (unsigned char)((b[6] & 0x0F) | 0x40);  /* version 4 */
    b[8] = (unsigned char)((b[8] & 0x3F) | 0x80);  /* RFC 4122 variant */
    shoal_uuid_format(b, out);
    sodium_memzero(b, sizeof(b));
}

int shoal_uuid_normalize(const char *s, char out[37], const char *what,
                         struct shoal_err *err)
{
    unsigned char b[16];

    if (shoal_uuid_parse(s, b, what, err) != 0)
        return -1;
    shoal_uuid_format(b, out);
    return 0;
}

char *shoal_b64_encode(const unsigned char *bin, size_t len)
{
    size_t size = sodium_base64_ENCODED_LEN(len, sodium_base64_VARIANT_ORIGINAL);
    char *out = malloc(size);

    if (out == NULL)
        return NULL;
    sodium_bin2base64(out, size, bin, len, sodium_base64_VARIANT_ORIGINAL);
    return out;
}

int shoal_b64_decode_exact(const char *s, unsigned char *out, size_t want,
                           const char *what, struct shoal_err *err)
{
    size_t slen;
    size_t binlen = 0;
    const char *end = NULL;

    if (s == NULL)
        goto bad;
    slen = strlen(s);
    /* Exactly the encoded length of 'want' bytes, padding included. */
    if (slen != sodium_base64_ENCODED_LEN(want, sodium_base64_VARIANT_ORIGINAL) - 1)
        goto bad;
    if (sodium_base642bin(out, want, s, slen, NULL, &binlen, &end,
                          sodium_base64_VARIANT_ORIGINAL) != 0)
        goto wipe;
    if (end != s + slen || binlen != want)
        goto wipe;
    return 0;
wipe:
    sodium_memzero(out, want);
bad:
    return shoal_err_set(err, SHOAL_EINVAL,
                         "'%s' must be base64 of %zu bytes", what, want);
}

void shoal_hex_encode(const unsigned char *bin, size_t len, char *out)
{
    size_t i;

    for (i = 0; i < len; i++) {
        out[2 * i] = hexdigits[bin[i] >> 4];
        out[2 * i + 1] = hexdigits[bin[i] & 0x0F];
    }
    out[2 * len] = '\0';
}

int shoal_hex_decode_exact(const char *s, unsigned char *out, size_t want,
                           const char *what, struct shoal_err *err)
{
    size_t i;

    if (s == NULL || strlen(s) != 2 * want)
        goto bad;
    for (i = 0; i < 2 * want; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            goto bad;
    for (i = 0; i < want; i++)
        out[i] = (unsigned char)(shoal_hexval(s[2 * i]) << 4 | shoal_hexval(s[2 * i + 1]));
    return 0;
bad:
    return shoal_err_set(err, SHOAL_EINVAL,
                         "'%s' must be %zu bytes in lowercase hex", what, want);
}

/* An out-of-range time (beyond the years an int holds) gives "". */
void shoal_time_format(time_t t, char out[32])
{
    struct tm tm;
    char buf[80];
    int n;

    out[0] = '\0';
    if (gmtime_r(&t, &tm) == NULL)
        return;
    n = snprintf(buf, sizeof(buf), "%04lld-%02d-%02dT%02d:%02d:%02dZ",
                 (long long)tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
                 tm.tm_hour, tm.tm_min, tm.tm_sec);
    if (n > 0 && n < 32)
        memcpy(out, buf, (size_t)n + 1);
}

/* Read exactly n digits at *p into *out and advance.  -1 when not digits. */
static int digits(const char **p, int n, int *out)
{
    int v = 0;
    int i;

    for (i = 0; i < n; i++) {
        char c = (*p)[i];

        if (c < '0' || c > '9')
            return -1;
        v = v * 10 + (c - '0');
    }
    *p += n;
    *out = v;
    return 0;
}

static int expect(const char **p, char c)
{
    if (**p != c)
        return -1;
    (*p)++;
    return 0;
}

static int days_in_month(int year, int month)
{
    static const int days[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    int leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;

    return month == 2 && leap ? 29 : days[month - 1];
}

/* RFC 3339 date-time: full-date "T" full-time; 't', 'z' and a fraction of
 * any length are accepted, a leap second 60 counts as the next second. */
int shoal_time_parse(const char *s, time_t *out, struct shoal_err *err)
{
    const char *p = s;
    int year, mon, mday, hour, min, sec, oh = 0, om = 0;
    int sign = 0;
    struct tm tm;
    time_t t;

    if (s == NULL)
        return shoal_err_set(err, SHOAL_EINVAL, "missing RFC 3339 time");
    if (digits(&p, 4, &year) || expect(&p, '-') || digits(&p, 2, &mon) ||
        expect(&p, '-') || digits(&p, 2, &mday))
        goto bad;
    if (*p != 'T' && *p != 't')
        goto bad;
    p++;
    if (digits(&p, 2, &hour) || expect(&p, ':') || digits(&p, 2, &min) ||
        expect(&p, ':') || digits(&p, 2, &sec))
        goto bad;
    if (*p == '.') {
        p++;
        if (*p < '0' || *p > '9')
            goto bad;
        while (*p >= '0' && *p <= '9')
            p++;
    }
    if (*p == 'Z' || *p == 'z') {
        p++;
    } else if (*p == '+' || *p == '-') {
        sign = *p == '+' ? 1 : -1;
        p++;
        if (digits(&p, 2, &oh) || expect(&p, ':') || digits(&p, 2, &om))
            goto bad;
    } else {
        goto bad;
    }
    if (*p != '\0')
        goto bad;
    if (mon < 1 || mon > 12 || mday < 1 || mday > days_in_month(year, mon) ||
        hour > 23 || min > 59 || sec > 60 || oh > 23 || om > 59)
        goto bad;
    memset(&tm, 0, sizeof(tm));
    tm.tm_year = year - 1900;
    tm.tm_mon = mon - 1;
    tm.tm_mday = mday;
    tm.tm_hour = hour;
    tm.tm_min = min;
    tm.tm_sec = sec;
    errno = 0;
    t = timegm(&tm);
    if (t == (time_t)-1 && errno != 0)
        goto bad;
    *out = t - (time_t)sign * (oh * 3600 + om * 60);
    return 0;
bad:
    return shoal_err_set(err, SHOAL_EINVAL, "'%s' is not an RFC 3339 time", s);
}

double shoal_now(void)
{
    struct timespec ts;

    if (clock_gettime(CLOCK_REALTIME, &ts) != 0)
        return (double)time(NULL);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

double shoal_mono(void)
{
    struct timespec ts;

    /* CLOCK_MONOTONIC cannot fail on Linux; 0 keeps durations finite. */
    if (clock_gettime(CLOCK_MONOTONIC, &ts) != 0)
        return 0.0;
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* --- JSON fields ------------------------------------------------------- */

/* obj[key] into *out; -1 when obj is not an object or the key is absent. */
static int field(const json_t *obj, const char *key, json_t **out,
                 struct shoal_err *err)
{
    if (!json_is_object(obj))
        return shoal_err_set(err, SHOAL_EINVAL, "expected a JSON object");
    *out = json_object_get(obj, key);
    if (*out == NULL)
        return shoal_err_set(err, SHOAL_EINVAL, "missing field '%s'", key);
    return 0;
}

int shoal_json_str(const json_t *obj, const char *key, const char **out,
                   struct shoal_err *err)
{
    json_t *v;

    if (field(obj, key, &v, err) != 0)
        return -1;
    if (!json_is_string(v))
        return shoal_err_set(err, SHOAL_EINVAL,
                             "field '%s' must be a string", key);
    *out = json_string_value(v);
    return 0;
}

/* An explicit null counts as absent. */
int shoal_json_str_opt(const json_t *obj, const char *key, const char **out,
                       struct shoal_err *err)
{
    json_t *v;

    if (!json_is_object(obj))
        return shoal_err_set(err, SHOAL_EINVAL, "expected a JSON object");
    v = json_object_get(obj, key);
    if (v == NULL || json_is_null(v)) {
        *out = NULL;
        return 0;
    }
    return shoal_json_str(obj, key, out, err);
}

int shoal_json_int(const json_t *obj, const char *key, json_int_t *out,
                   struct shoal_err *err)
{
    json_t *v;

    if (field(obj, key, &v, err) != 0)
        return -1;
    if (!json_is_integer(v))
        return shoal_err_set(err, SHOAL_EINVAL,
                             "field '%s' must be an integer", key);
    *out = json_integer_value(v);
    return 0;
}

int shoal_json_bool(const json_t *obj, const char *key, int *out,
                    struct shoal_err *err)
{
    json_t *v;

    if (field(obj, key, &v, err) != 0)
        return -1;
    if (!json_is_boolean(v))
        return shoal_err_set(err, SHOAL_EINVAL,
                             "field '%s' must be a boolean", key);
    *out = json_is_true(v);
    return 0;
}

int shoal_json_array(const json_t *obj, const char *key, json_t **out,
                     struct shoal_err *err)
{
    json_t *v;

    if (field(obj, key, &v, err) != 0)
        return -1;
    if (!json_is_array(v))
        return shoal_err_set(err, SHOAL_EINVAL,
                             "field '%s' must be an array", key);
    *out = v;
    return 0;
}

int shoal_json_uuid(const json_t *obj, const char *key, char out[37],
                    struct shoal_err *err)
{
    const char *s = NULL;

    if (shoal_json_str(obj, key, &s, err) != 0)
        return -1;
    return shoal_uuid_normalize(s, out, key, err);
}

int shoal_json_only(const json_t *obj, const char *const *allowed,
                    struct shoal_err *err)
{
    const char *key;
    json_t *v;
    size_t i;

    if (!json_is_object(obj))
        return shoal_err_set(err, SHOAL_EINVAL, "expected a JSON object");
    json_object_foreach((json_t *)obj, key, v) {
        for (i = 0; allowed[i] != NULL; i++)
            if (strcmp(allowed[i], key) == 0)
                break;
        if (allowed[i] == NULL)
            return shoal_err_set(err, SHOAL_EINVAL, "unknown field '%s'", key);
    }
    return 0;
}

char *shoal_json_dump(const json_t *v)
{
    return json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
}

/* --- files ------------------------------------------------------------- */

int shoal_write_all(int fd, const void *buf, size_t len)
{
    const char *p = buf;

    while (len > 0) {
        ssize_t n = write(fd, p, len);

        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        if (n == 0) {
            errno = EIO;
            return -1;
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

/* Fill err with SHOAL_EIO naming path and errno, keeping errno. */
static int io_fail(struct shoal_err *err, const char *what, const char *path)
{
    int e = errno;

    shoal_err_set(err, SHOAL_EIO, "cannot %s '%s': %s", what, path, strerror(e));
    errno = e;
    return -1;
}

int shoal_file_read(const char *path, size_t max, char **out, size_t *len,
                    struct shoal_err *err)
{
    struct stat st;
    char *buf = NULL;
    size_t cap;
    size_t used = 0;
    int fd;

    if (max >= SIZE_MAX / 2) {
        errno = EINVAL;
        return io_fail(err, "read", path);
    }
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return io_fail(err, "open", path);
    if (fstat(fd, &st) != 0)
        goto fail;
    /* The size is only a hint (the file may change): one byte beyond max
     * is read to tell a file that is too large. */
    cap = st.st_size > 0 && (unsigned long long)st.st_size < max ?
          (size_t)st.st_size + 1 : max + 1;
    buf = malloc(cap + 1);
    if (buf == NULL)
        goto fail;
    for (;;) {
        ssize_t n;

        if (used == cap) {
            char *p;

            cap = cap * 2 < max + 1 ? cap * 2 : max + 1;
            p = realloc(buf, cap + 1);
            if (p == NULL)
                goto fail;
            buf = p;
        }
        n = read(fd, buf + used, cap - used);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            goto fail;
        }
        if (n == 0)
            break;
        used += (size_t)n;
        if (used > max) {
            errno = EFBIG;
            goto fail;
        }
    }
    close(fd);
    buf[used] = '\0';
    *out = buf;
    if (len != NULL)
        *len = used;
    return 0;
fail:
    io_fail(err, "read", path);
    {
        int e = errno;

        free(buf);
        close(fd);
        errno = e;
    }
    return -1;
}

/* Create one folder; an existing folder is fine. */
static int mkdir_one(const char *path, int mode, struct shoal_err *err)
{
    struct stat st;
    int e;

    if (mkdir(path, (mode_t)mode) == 0)
        return 0;
    e = errno;
    if (stat(path, &st) == 0) {
        if (S_ISDIR(st.st_mode))
            return 0;
        e = ENOTDIR;
    }
    errno = e;
    return io_fail(err, "create folder", path);
}

int shoal_mkdir_p(const char *path, int mode, struct shoal_err *err)
{
    char *copy;
    char *p;
    int rc = 0;

    if (path[0] == '\0')
        return shoal_err_set(err, SHOAL_EIO, "cannot create folder ''");
    copy = strdup(path);
    if (copy == NULL)
        return shoal_err_set(err, SHOAL_EIO, "out of memory");
    /* Each '/' after the first character ends a parent folder. */
    for (p = copy + 1; rc == 0 && *p != '\0'; p++) {
        if (*p != '/' || p[-1] == '/')
            continue;
        *p = '\0';
        rc = mkdir_one(copy, mode, err);
        *p = '/';
    }
    if (rc == 0)
        rc = mkdir_one(copy, mode, err);
    free(copy);
    return rc;
}

/* The folder part of path ("." when none).  New string, NULL on ENOMEM. */
static char *dir_of(const char *path)
{
    const char *slash = strrchr(path, '/');

    if (slash == NULL)
        return strdup(".");
    if (slash == path)
        return strdup("/");
    return strndup(path, (size_t)(slash - path));
}

int shoal_file_write_atomic(const char *path, const void *buf, size_t len,
                            int mode, struct shoal_err *err)
{
    char *dir = NULL;
    char *tmp = NULL;
    int fd = -1;
    int dfd = -1;
    int rc = -1;

    dir = dir_of(path);
    if (dir == NULL || asprintf(&tmp, "%s.tmp.XXXXXX", path) < 0) {
        tmp = NULL;
        shoal_err_set(err, SHOAL_EIO, "out of memory");
        goto out;
    }
    if (shoal_mkdir_p(dir, 0700, err) != 0)
        goto out;
    fd = mkostemp(tmp, O_CLOEXEC);      /* created with mode 0600 */
    if (fd < 0) {
        io_fail(err, "create", tmp);
        goto out;
    }
    if (fchmod(fd, (mode_t)mode) != 0 || shoal_write_all(fd, buf, len) != 0 ||
        fsync(fd) != 0) {
        io_fail(err, "write", tmp);
        goto unlink;
    }
    if (close(fd) != 0) {
        fd = -1;
        io_fail(err, "write", tmp);
        goto unlink;
    }
    fd = -1;
    if (rename(tmp, path) != 0) {
        io_fail(err, "rename to", path);
        goto unlink;
    }
    dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0 || fsync(dfd) != 0) {
        io_fail(err, "sync folder", dir);
        goto out;
    }
    rc = 0;
    goto out;
unlink:
    if (fd >= 0)
        close(fd);
    fd = -1;
    unlink(tmp);
out:
    if (dfd >= 0)
        close(dfd);
    free(tmp);
    free(dir);
    return rc;
}
