/*
 * urlcanon.c - the canonical form of a web object's URL (see urlcanon.h;
 * docs/protocol.md, section 14).
 *
 * libcurl's URL API (curl_url, 7.88) does the parsing, lowercases the
 * scheme, drops a default port (CURLU_NO_DEFAULT_PORT), rewrites numeric
 * IPv4 hosts in dotted decimal, makes an empty path "/" and removes the
 * dot-segments.  It has no percent-encoding normalisation, keeps the
 * host's case and the form of an IPv6 literal, and takes "http:///x" for
 * host "x": those are done here by hand, as are the checks of what a web
 * object's URL may be.  Percent-encodings are normalised before libcurl
 * sees the URL, so that "%2E%2E" is a dot-segment too.
 */
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <curl/curl.h>

#include "manifest.h"
#include "urlcanon.h"
#include "util.h"

static int is_alpha(int c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static int is_digit(int c)
{
    return c >= '0' && c <= '9';
}

static int unreserved(int c)
{
    return is_alpha(c) || is_digit(c) || c == '-' || c == '.' || c == '_' ||
           c == '~';
}

static char lower(char c)
{
    return c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
}

static char upper(char c)
{
    return c >= 'a' && c <= 'z' ? (char)(c - 'a' + 'A') : c;
}

static int not_absolute(struct shoal_err *err)
{
    return shoal_err_set(err, SHOAL_EINVAL,
                         "'url' must be an absolute http or https URL with"
                         " a host, made of the characters RFC 3986 allows");
}

/* The len bytes of path p (percent-encodings checked) into b, with the
 * unreserved characters decoded and the other hex digits uppercased.
 * Returns the bytes written (at most len). */
static size_t pct_normalize(const char *p, size_t len, char *b)
{
    size_t n = 0;

    for (size_t i = 0; i < len; i++) {
        if (p[i] != '%') {
            b[n++] = p[i];
            continue;
        }
        int v = shoal_hexval(p[i + 1]) * 16 +
                shoal_hexval(p[i + 2]);
        if (unreserved(v)) {
            b[n++] = (char)v;
        } else {
            b[n++] = '%';
            b[n++] = upper(p[i + 1]);
            b[n++] = upper(p[i + 2]);
        }
        i += 2;
    }
    return n;
}

/* The host h as libcurl returns it, canonical into out (cap bytes): an
 * IPv6 literal as inet_ntop writes it (RFC 5952), anything else in
 * lowercase. */
static int host_canon(const char *h, char *out, size_t cap,
                      struct shoal_err *err)
{
    size_t n = strlen(h);

    if (n == 0)
        return not_absolute(err);
    if (h[0] == '[') {
        char in6[INET6_ADDRSTRLEN], txt[INET6_ADDRSTRLEN];
        struct in6_addr a;
        if (n < 3 || h[n - 1] != ']' || n - 2 >= sizeof in6)
            return shoal_err_set(err, SHOAL_EINVAL,
                                 "'url' has an IPv6 host that is not one");
        memcpy(in6, h + 1, n - 2);
        in6[n - 2] = '\0';
        if (inet_pton(AF_INET6, in6, &a) != 1 ||
            inet_ntop(AF_INET6, &a, txt, sizeof txt) == NULL)
            return shoal_err_set(err, SHOAL_EINVAL,
                                 "'url' has an IPv6 host that is not one");
        snprintf(out, cap, "[%s]", txt);
        return 0;
    }
    if (n >= cap)
        return shoal_err_set(err, SHOAL_EINVAL, "'url' has too long a host");
    for (size_t i = 0; i <= n; i++)
        out[i] = lower(h[i]);
    return 0;
}

int shoal_url_canon(const char *url, char **out, struct shoal_err *err)
{
    static const char scheme_chars[] = "abcdefghijklmnopqrstuvwxyz"
                                       "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+-.";
    static const char url_chars[] = "abcdefghijklmnopqrstuvwxyz"
                                    "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
                                    "-._~:/?#[]@!$&'()*+,;=%";
    char *norm = NULL, *scheme = NULL, *host = NULL, *port = NULL;
    char *path = NULL, *query = NULL, *res = NULL;
    char hbuf[SHOAL_URL_MAX + 1];
    CURLU *u = NULL;
    CURLUcode uc;
    int rc = -1;

    *out = NULL;
    size_t len = strlen(url);
    if (len == 0 || len > SHOAL_URL_MAX)
        return shoal_err_set(err, SHOAL_EINVAL,
                             "'url' must be 1 to %d bytes without NUL",
                             SHOAL_URL_MAX);
    size_t sl = strspn(url, scheme_chars);
    if (sl > 0 && url[sl] == ':' && is_alpha((unsigned char)url[0]) &&
        !(sl == 4 && strncasecmp(url, "http", 4) == 0) &&
        !(sl == 5 && strncasecmp(url, "https", 5) == 0))
        return shoal_err_set(err, SHOAL_EINVAL,
                             "scheme '%.*s' of 'url' is not http or https",
                             (int)(sl > 32 ? 32 : sl), url);
    if ((sl != 4 && sl != 5) || url[sl] != ':' || url[sl + 1] != '/' ||
        url[sl + 2] != '/')
        return not_absolute(err);
    for (const char *p = url; *p; p++)
        if (strchr(url_chars, *p) == NULL ||
            (*p == '%' && (shoal_hexval(p[1]) < 0 ||
                           shoal_hexval(p[2]) < 0)))
            return not_absolute(err);

    /* the authority: a host, no credentials, nothing percent-encoded */
    const char *auth = url + sl + 3;
    size_t alen = strcspn(auth, "/?#");
    if (alen == 0)
        return not_absolute(err);      /* libcurl: "http:///x" is host x */
    if (memchr(auth, '@', alen) != NULL)
        return shoal_err_set(err, SHOAL_EINVAL, "'url' must not carry credentials");
    if (memchr(auth, '%', alen) != NULL)
        return shoal_err_set(err, SHOAL_EINVAL,
                             "'url' must not percent-encode its host");

    /* the path's percent-encodings, then libcurl for the rest */
    const char *p = auth + alen;
    size_t plen = strcspn(p, "?#");
    if ((norm = malloc(len + 1)) == NULL) {
        shoal_err_set(err, SHOAL_EINTERNAL, "out of memory");
        goto out;
    }
    size_t n = (size_t)(p - url);
    memcpy(norm, url, n);
    n += pct_normalize(p, plen, norm + n);
    memcpy(norm + n, p + plen, len - (size_t)(p + plen - url) + 1);

    if ((u = curl_url()) == NULL) {
        shoal_err_set(err, SHOAL_EINTERNAL, "out of memory");
        goto out;
    }
    if ((uc = curl_url_set(u, CURLUPART_URL, norm, 0)) != CURLUE_OK) {
        shoal_err_set(err, SHOAL_EINVAL, "'url' is not a valid URL (%s)",
                      curl_url_strerror(uc));
        goto out;
    }
    if (curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_PATH, &path, 0) != CURLUE_OK) {
        not_absolute(err);
        goto out;
    }
    uc = curl_url_get(u, CURLUPART_PORT, &port, CURLU_NO_DEFAULT_PORT);
    if (uc != CURLUE_OK && uc != CURLUE_NO_PORT) {
        shoal_err_set(err, SHOAL_EINVAL, "'url' has a port that is not one");
        goto out;
    }
    if (port != NULL && strcmp(port, "0") == 0) {
        shoal_err_set(err, SHOAL_EINVAL, "'url' must not have port 0");
        goto out;
    }
    uc = curl_url_get(u, CURLUPART_QUERY, &query, 0);   /* "?" alone: "" */
    if (uc != CURLUE_OK && uc != CURLUE_NO_QUERY) {
        not_absolute(err);
        goto out;
    }
    if (host_canon(host, hbuf, sizeof hbuf, err) != 0)
        goto out;
    for (char *s = scheme; *s; s++)
        *s = lower(*s);
    size_t cap = strlen(scheme) + 3 + strlen(hbuf) + 1 +
                 (port ? strlen(port) : 0) + strlen(path) + 1 +
                 (query ? strlen(query) : 0) + 1;
    if ((res = malloc(cap)) == NULL) {
        shoal_err_set(err, SHOAL_EINTERNAL, "out of memory");
        goto out;
    }
    snprintf(res, cap, "%s://%s%s%s%s%s%s", scheme, hbuf, port ? ":" : "",
             port ? port : "", path[0] == '/' ? path : "/", query ? "?" : "",
             query ? query : "");
    if (strlen(res) > SHOAL_URL_MAX) {
        shoal_err_set(err, SHOAL_EINVAL,
                      "'url' is longer than %d bytes once canonical",
                      SHOAL_URL_MAX);
        goto out;
    }
    *out = res;
    res = NULL;
    rc = 0;
out:
    free(res);
    curl_free(query);
    curl_free(path);
    curl_free(port);
    curl_free(host);
    curl_free(scheme);
    curl_url_cleanup(u);
    free(norm);
    return rc;
}

void shoal_url_swarm(const char *canon, unsigned char out[32])
{
    size_t n = strlen(canon);
    char *t = malloc(n + 5);

    if (t == NULL) {
        struct shoal_sha256_ctx *c = shoal_sha256_new();
        if (c == NULL) {
            memset(out, 0, 32);
            return;
        }
        shoal_sha256_update(c, "url:", 4);
        shoal_sha256_update(c, canon, n);
        shoal_sha256_final(c, out);
        return;
    }
    memcpy(t, "url:", 4);
    memcpy(t + 4, canon, n + 1);
    shoal_sha256(t, n + 4, out);
    free(t);
}
