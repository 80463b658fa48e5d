/*
 * classify.c - static or dynamic request (classify.h).  Depends on libc
 * only, so that tests/unit/test_classify.c can include it.
 */
#include <ctype.h>
#include <string.h>
#include <strings.h>

#include "classify.h"

/* Start and length of the authority of url ("host:port", with userinfo),
 * -1 when url has no "scheme://". */
static int authority(const char *url, const char **start, size_t *len)
{
    const char *p = strstr(url, "://");

    if (!p || p == url)
        return -1;
    for (const char *s = url; s < p; s++)
        if (!isalnum((unsigned char)*s) && *s != '+' && *s != '-' && *s != '.')
            return -1;
    p += 3;
    *start = p;
    *len = strcspn(p, "/?#");
    return 0;
}

int pr_url_has_userinfo(const char *url)
{
    const char *a;
    size_t n;

    if (authority(url, &a, &n) < 0)
        return 0;
    return memchr(a, '@', n) != NULL;
}

int pr_url_domain(const char *url, char *out, size_t cap)
{
    const char *a;
    const char *at;
    size_t n;

    if (authority(url, &a, &n) < 0 || n == 0)
        return -1;
    while ((at = memchr(a, '@', n))) {
        n -= (size_t)(at + 1 - a);
        a = at + 1;
    }
    if (n == 0 || n >= cap)
        return -1;
    for (size_t i = 0; i < n; i++)
        out[i] = (char)tolower((unsigned char)a[i]);
    out[n] = '\0';
    return 0;
}

static int is_tchar(int c)
{
    return isalnum(c) || (c && strchr("!#$%&'*+-.^_`|~", c));
}

int pr_header_valid(const char *line)
{
    const char *p = line;

    while (is_tchar((unsigned char)*p))
        p++;
    if (p == line || *p != ':')
        return 0;
    return strpbrk(p, "\r\n") == NULL;
}

/* 1 when the header line's name is name (any case); *value gets the
 * value, leading blanks skipped. */
static int header_is(const char *line, const char *name, const char **value)
{
    size_t n = strlen(name);

    if (strncasecmp(line, name, n) != 0 || line[n] != ':')
        return 0;
    line += n + 1;
    while (*line == ' ' || *line == '\t')
        line++;
    *value = line;
    return 1;
}

/* 1 when the Cache-Control value v holds the directive d (any case). */
static int has_directive(const char *v, const char *d)
{
    size_t n = strlen(d);

    while (*v) {
        while (*v == ' ' || *v == '\t' || *v == ',')
            v++;
        size_t len = strcspn(v, ",");
        size_t tok = strcspn(v, ",= \t");
        if (tok > len)
            tok = len;
        if (tok == n && strncasecmp(v, d, n) == 0)
            return 1;
        v += len;
    }
    return 0;
}

enum pr_class pr_classify(const char *method, int has_body, const char *url,
                          const char *const *headers, size_t n,
                          const char **why)
{
    const char *reason = "";
    const char *v;

    if (method && strcmp(method, "GET") != 0)
        reason = "the method is not GET";
    else if (has_body)
        reason = "the request has a body";
    else if (url && pr_url_has_userinfo(url))
        reason = "the URL holds credentials";
    for (size_t i = 0; !*reason && i < n; i++) {
        if (header_is(headers[i], "Authorization", &v) ||
            header_is(headers[i], "Proxy-Authorization", &v))
            reason = "the request carries credentials";
        else if (header_is(headers[i], "Cookie", &v))
            reason = "the request carries cookies";
        else if (header_is(headers[i], "Cache-Control", &v) &&
                 (has_directive(v, "private") || has_directive(v, "no-store")))
            reason = "the request says Cache-Control: private or no-store";
    }
    if (why)
        *why = reason;
    return *reason ? PR_CLASS_DYNAMIC : PR_CLASS_STATIC;
}
