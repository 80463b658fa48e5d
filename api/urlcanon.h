/*
 * urlcanon.h - the one canonical form of a URL that names a web object:
 * what the injector fetches, records and signs ("url: " line of the
 * metadata text, injmeta.h), what a peer's 'shoal fetch' looks up and
 * checks, and what the URL swarm sha256("url:" + url) is computed over.
 * The rules (RFC 3986 sections 6.2.2 and 6.2.3, conservative) are in
 * docs/protocol.md, section 14, "The canonical URL".
 */
#ifndef SHOAL_URLCANON_H
#define SHOAL_URLCANON_H

#include "err.h"

#define SHOAL_URL_MAX 2048             /* bytes, given and canonical */

/*
 * The canonical form of url (a NUL-terminated string, as given): scheme
 * and host lowercased, the default port (80 for http, 443 for https)
 * removed, an empty path made "/", percent-encoded unreserved characters
 * of the path decoded and the other percent-encodings' hex digits
 * uppercased, dot-segments removed, the fragment dropped, the query kept
 * byte for byte.  0 with a new string in *out (the caller frees it with
 * free()); -1 with SHOAL_EINVAL and a message naming 'url' when url
 * cannot name a web object (not http or https, no host, credentials, a
 * character RFC 3986 does not allow, port 0, longer than SHOAL_URL_MAX).
 * The result is its own canonical form.
 */
int shoal_url_canon(const char *url, char **out, struct shoal_err *err);

/* The swarm of a canonical URL: SHA-256 of "url:" + canon, into out. */
void shoal_url_swarm(const char *canon, unsigned char out[32]);

#endif
