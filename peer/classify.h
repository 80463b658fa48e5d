/*
 * classify.h - is a web request static (it may be served from the URL's
 * swarm, and injected) or dynamic (the origin only)?  docs/protocol.md,
 * section 14, "shoal fetch".
 *
 * Static: method GET, no body, no credentials (no Authorization,
 * Proxy-Authorization or Cookie header, no user@ in the URL), and no
 * Cache-Control request header with the directive private or no-store.
 * Anything else is dynamic.
 */
#ifndef PR_CLASSIFY_H
#define PR_CLASSIFY_H

#include <stddef.h>

enum pr_class {
    PR_CLASS_STATIC = 0,
    PR_CLASS_DYNAMIC = 1
};

/*
 * Classify a request: method (NULL: GET), has_body (a --data was given),
 * url, and n header lines "Name: value" (as given with --header).  *why
 * (may be NULL) gets a static string saying what made it dynamic ("" for
 * static).
 */
enum pr_class pr_classify(const char *method, int has_body, const char *url,
                          const char *const *headers, size_t n,
                          const char **why);

/* 1 when line is a header "Name: value" (name a token, value without CR,
 * LF or NUL), 0 otherwise. */
int pr_header_valid(const char *line);

/* 1 when url's authority holds credentials ("user@" or "user:pw@"). */
int pr_url_has_userinfo(const char *url);

/* Copy the host[:port] of an http(s) url into out (lowercase host).
 * -1 when url has no scheme://authority or it does not fit. */
int pr_url_domain(const char *url, char *out, size_t cap);

#endif
