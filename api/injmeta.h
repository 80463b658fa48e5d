/*
 * injmeta.h - what an injector says about a web object besides its bytes:
 * the canonical metadata text that its signature covers (through a
 * SHA-256, see shoal_inject_text in manifest.h), the response headers it
 * keeps, how long the origin lets the object be cached, and the text of
 * the challenge that proves an injector holds its key.
 *
 * Metadata text (docs/protocol.md, section 14), each line ended by "\n":
 *
 *   url: <url>
 *   status: <origin status, decimal>
 *   <header name, lowercase>: <value>      one line per kept header
 *
 * The kept headers are those of shoal_inject_headers that the origin sent,
 * in that order; several fields of one name are joined by ", " in the
 * order received; values are trimmed of spaces and tabs at both ends; a
 * value longer than SHOAL_INJECT_VALUE_MAX bytes, or holding a byte that
 * is not visible ASCII, space or tab, is not kept.
 */
#ifndef SHOAL_INJMETA_H
#define SHOAL_INJMETA_H

#include <stddef.h>

#define SHOAL_INJECT_VALUE_MAX 1024

/* The kept headers, lowercase, NULL-terminated (static). */
extern const char *const shoal_inject_headers[];

/* The metadata text of an answer of status from url with the n headers
 * names[i]: values[i] (names in any case; the others are left out).  New
 * string (free()), NULL on ENOMEM. */
char *shoal_inject_meta(const char *url, int status,
                        const char *const *names, const char *const *values,
                        size_t n);

/* Seconds an answer may be served from a shared cache: Cache-Control
 * s-maxage, else max-age (no-store, no-cache or private: 0); without
 * either, Expires minus Date (minus now when Date is absent or does not
 * parse; an Expires that does not parse: 0).  -1 when the answer says
 * nothing.  Arguments may be NULL. */
long long shoal_inject_freshness(const char *cache_control, const char *expires,
                                 const char *date, long long now);

/* The text an injector signs to answer a challenge:
 *   "shoal-challenge-v1\n<broker id>\n<nonce>\n"
 * into out.  Its length, or -1 when cap is too small. */
int shoal_challenge_text(const char *broker_id, const char *nonce, char *out,
                         size_t cap);

#endif
