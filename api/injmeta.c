/*
 * injmeta.c - the metadata text of an injected object, the freshness the
 * origin grants it, and the challenge text (see injmeta.h).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <curl/curl.h>

#include "injmeta.h"

const char *const shoal_inject_headers[] = {
    "content-type",
    "content-encoding",
    "content-language",
    "content-disposition",
    "cache-control",
    "expires",
    "last-modified",
    "etag",
    "vary",
    "link",
    "access-control-allow-origin",
    NULL,
};

/* A growing string. */
struct buf {
    char *s;
    size_t len, cap;
    int failed;
};

static void put(struct buf *b, const char *s, size_t n)
{
    if (b->failed)
        return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *ns = realloc(b->s, cap);
        if (ns == NULL) {
            b->failed = 1;
            return;
        }
        b->s = ns;
        b->cap = cap;
    }
    memcpy(b->s + b->len, s, n);
    b->len += n;
    b->s[b->len] = '\0';
}

static void puts_(struct buf *b, const char *s)
{
    put(b, s, strlen(s));
}

/* value trimmed of spaces and tabs: start and length; -1 when it holds a
 * byte that is neither visible ASCII nor space nor tab. */
static int trimmed(const char *v, const char **start, size_t *len)
{
    while (*v == ' ' || *v == '\t')
        v++;
    size_t n = strlen(v);
    while (n > 0 && (v[n - 1] == ' ' || v[n - 1] == '\t'))
        n--;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)v[i];
        if ((c < 0x20 && c != '\t') || c >= 0x7f)
            return -1;
    }
    *start = v;
    *len = n;
    return 0;
}

/* The joined value of every header called name, or NULL when none is
 * kept.  New string. */
static char *joined(const char *name, const char *const *names,
                    const char *const *values, size_t n, int *oom)
{
    struct buf b = { 0 };
    int any = 0;
    for (size_t i = 0; i < n; i++) {
        const char *s;
        size_t len;
        if (strcasecmp(names[i], name) != 0 || trimmed(values[i], &s, &len) != 0)
            continue;
        if (any)
            puts_(&b, ", ");
        put(&b, s, len);
        any = 1;
    }
    if (b.failed) {
        *oom = 1;
        free(b.s);
        return NULL;
    }
    if (!any || b.len > SHOAL_INJECT_VALUE_MAX) {
        free(b.s);
        return NULL;
    }
    if (b.s == NULL)                  /* one empty value */
        b.s = strdup("");
    if (b.s == NULL)
        *oom = 1;
    return b.s;
}

char *shoal_inject_meta(const char *url, int status,
                        const char *const *names, const char *const *values,
                        size_t n)
{
    struct buf b = { 0 };
    char num[16];
    int oom = 0;

    puts_(&b, "url: ");
    puts_(&b, url);
    snprintf(num, sizeof num, "%d", status);
    puts_(&b, "\nstatus: ");
    puts_(&b, num);
    puts_(&b, "\n");
    for (size_t k = 0; shoal_inject_headers[k] != NULL; k++) {
        char *v = joined(shoal_inject_headers[k], names, values, n, &oom);
        if (v == NULL)
            continue;
        puts_(&b, shoal_inject_headers[k]);
        puts_(&b, ": ");
        puts_(&b, v);
        puts_(&b, "\n");
        free(v);
    }
    if (b.failed || oom) {
        free(b.s);
        return NULL;
    }
    return b.s;
}

/* Directive name of a Cache-Control value:
 * 1 with *secs set when it has a valid number, 2 when present without a
 * usable number, 0 when absent. */
static int directive(const char *cc, const char *name, long long *secs)
{
    size_t nlen = strlen(name);
    const char *p = cc;
    while (*p) {
        while (*p == ' ' || *p == '\t' || *p == ',')
            p++;
        const char *tok = p;
        while (*p && *p != ',' && *p != '=' && *p != ' ' && *p != '\t')
            p++;
        size_t tlen = (size_t)(p - tok);
        while (*p == ' ' || *p == '\t')
            p++;
        const char *val = NULL;
        if (*p == '=') {
            p++;
            while (*p == ' ' || *p == '\t')
                p++;
            val = p;
        }
        while (*p && *p != ',') {
            if (*p == '"') {                    /* a quoted string */
                p++;
                while (*p && *p != '"')
                    p += (p[0] == '\\' && p[1]) ? 2 : 1;
                if (*p)
                    p++;
            } else {
                p++;
            }
        }
        if (tlen != nlen || strncasecmp(tok, name, nlen) != 0)
            continue;
        if (val == NULL)
            return 2;
        if (*val == '"')
            val++;
        if (*val < '0' || *val > '9')
            return 2;
        long long v = 0;
        for (; *val >= '0' && *val <= '9'; val++)
            v = v > 100000000000LL ? v : v * 10 + (*val - '0');
        *secs = v;
        return 1;
    }
    return 0;
}

long long shoal_inject_freshness(const char *cache_control, const char *expires,
                                 const char *date, long long now)
{
    long long secs;
    if (cache_control != NULL) {
        if (directive(cache_control, "no-store", &secs) ||
            directive(cache_control, "no-cache", &secs) ||
            directive(cache_control, "private", &secs))
            return 0;
        if (directive(cache_control, "s-maxage", &secs) == 1 ||
            directive(cache_control, "max-age", &secs) == 1)
            return secs;
    }
    if (expires == NULL)
        return -1;
    time_t exp = curl_getdate(expires, NULL);
    if (exp < 0)
        return 0;
    time_t base = date ? curl_getdate(date, NULL) : -1;
    long long d = (long long)exp - (base >= 0 ? (long long)base : now);
    return d > 0 ? d : 0;
}

int shoal_challenge_text(const char *broker_id, const char *nonce, char *out,
                         size_t cap)
{
    int n = snprintf(out, cap, "shoal-challenge-v1\n%s\n%s\n", broker_id, nonce);
    if (n < 0 || (size_t)n >= cap) {
        if (cap > 0)
            out[0] = '\0';
        return -1;
    }
    return n;
}
