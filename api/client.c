/*
 * client.c - JSON REST calls over one reused libcurl easy handle.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <curl/curl.h>

#include "client.h"
#include "util.h"

#define REPLY_MAX (64UL * 1024 * 1024)

struct header {
    char *name;
    char *value;
};

struct shoal_client {
    CURL *curl;
    char *base;          /* without a trailing '/' */
    long timeout;
    char *bearer;        /* NULL: no Authorization header */
    char *source;        /* "host!IP" for CURLOPT_INTERFACE, or NULL */
    char *body;          /* the last answer's body */
    size_t body_len;
    size_t body_cap;
    int body_overflow;
    int body_oom;
    struct header *headers;   /* the last answer's headers */
    size_t nheaders;
    int headers_oom;
    char errbuf[CURL_ERROR_SIZE];
};

static pthread_once_t global_once = PTHREAD_ONCE_INIT;
static CURLcode global_rc = CURLE_FAILED_INIT;

static void global_init(void)
{
    global_rc = curl_global_init(CURL_GLOBAL_ALL);
}

struct shoal_client *shoal_client_new(const char *base_url, long timeout)
{
    struct shoal_client *c;
    size_t len;

    if (pthread_once(&global_once, global_init) != 0 || global_rc != CURLE_OK)
        return NULL;
    c = calloc(1, sizeof(*c));
    if (c == NULL)
        return NULL;
    c->timeout = timeout > 0 ? timeout : 30;
    c->base = strdup(base_url);
    c->curl = curl_easy_init();
    if (c->base == NULL || c->curl == NULL) {
        shoal_client_free(c);
        return NULL;
    }
    len = strlen(c->base);
    while (len > 0 && c->base[len - 1] == '/')
        c->base[--len] = '\0';
    return c;
}

static void headers_clear(struct shoal_client *c)
{
    size_t i;

    for (i = 0; i < c->nheaders; i++) {
        free(c->headers[i].name);
        free(c->headers[i].value);
    }
    free(c->headers);
    c->headers = NULL;
    c->nheaders = 0;
    c->headers_oom = 0;
}

void shoal_client_free(struct shoal_client *c)
{
    if (c == NULL)
        return;
    if (c->curl != NULL)
        curl_easy_cleanup(c->curl);
    headers_clear(c);
    free(c->body);
    free(c->source);
    if (c->bearer != NULL) {
        explicit_bzero(c->bearer, strlen(c->bearer));
        free(c->bearer);
    }
    free(c->base);
    free(c);
}

/* On ENOMEM the token is cleared; the next call then fails its auth. */
void shoal_client_set_bearer(struct shoal_client *c, const char *token)
{
    if (c->bearer != NULL) {
        explicit_bzero(c->bearer, strlen(c->bearer));
        free(c->bearer);
    }
    c->bearer = NULL;
    if (token != NULL && asprintf(&c->bearer, "Authorization: Bearer %s",
                                  token) < 0)
        c->bearer = NULL;
}

/* On ENOMEM no source address is set. */
void shoal_client_set_source(struct shoal_client *c, const char *ip)
{
    free(c->source);
    c->source = NULL;
    if (ip != NULL && asprintf(&c->source, "host!%s", ip) < 0)
        c->source = NULL;
}

static size_t on_body(char *data, size_t size, size_t n, void *arg)
{
    struct shoal_client *c = arg;
    size_t len = size * n;
    size_t cap;
    char *p;

    if (len > REPLY_MAX - c->body_len) {
        c->body_overflow = 1;
        return 0;       /* makes curl stop with CURLE_WRITE_ERROR */
    }
    if (c->body_len + len + 1 > c->body_cap) {
        cap = c->body_cap > 0 ? c->body_cap : 4096;
        while (cap < c->body_len + len + 1)
            cap *= 2;
        p = realloc(c->body, cap);
        if (p == NULL) {
            c->body_oom = 1;
            return 0;
        }
        c->body = p;
        c->body_cap = cap;
    }
    memcpy(c->body + c->body_len, data, len);
    c->body_len += len;
    c->body[c->body_len] = '\0';
    return len;
}

/* Keep "Name: value" lines; a status line starts a new set (after a
 * 100 Continue, say). */
static size_t on_header(char *data, size_t size, size_t n, void *arg)
{
    struct shoal_client *c = arg;
    size_t len = size * n;
    const char *colon;
    struct header *h;
    size_t vlen;
    const char *v;

    if (len >= 5 && strncmp(data, "HTTP/", 5) == 0) {
        headers_clear(c);
        return len;
    }
    colon = memchr(data, ':', len);
    if (colon == NULL || colon == data)
        return len;
    v = colon + 1;
    vlen = len - (size_t)(v - data);
    while (vlen > 0 && (*v == ' ' || *v == '\t')) {
        v++;
        vlen--;
    }
    while (vlen > 0 && (v[vlen - 1] == '\r' || v[vlen - 1] == '\n' ||
                        v[vlen - 1] == ' ' || v[vlen - 1] == '\t'))
        vlen--;
    h = realloc(c->headers, (c->nheaders + 1) * sizeof(*h));
    if (h == NULL) {
        c->headers_oom = 1;
        return 0;       /* makes curl stop with CURLE_WRITE_ERROR */
    }
    c->headers = h;
    h = &c->headers[c->nheaders];
    h->name = strndup(data, (size_t)(colon - data));
    h->value = strndup(v, vlen);
    if (h->name == NULL || h->value == NULL) {
        free(h->name);
        free(h->value);
        c->headers_oom = 1;
        return 0;
    }
    c->nheaders++;
    return len;
}

const char *shoal_client_header(const struct shoal_client *c,
                                const char *name)
{
    size_t i;

    for (i = 0; i < c->nheaders; i++)
        if (strcasecmp(c->headers[i].name, name) == 0)
            return c->headers[i].value;
    return NULL;
}

#define SETOPT(opt, val) \
    do { if (curl_easy_setopt(c->curl, opt, val) != CURLE_OK) goto setopt_fail; } while (0)

/* Set every option of one call on the freshly reset handle. */
static int prepare(struct shoal_client *c, const char *method, const char *url,
                   const char *shown, const char *text,
                   struct curl_slist *hdrs, struct shoal_err *err)
{
    SETOPT(CURLOPT_URL, url);
    SETOPT(CURLOPT_NOSIGNAL, 1L);
    SETOPT(CURLOPT_TIMEOUT, c->timeout);
#if LIBCURL_VERSION_NUM >= 0x075500
    SETOPT(CURLOPT_PROTOCOLS_STR, "http,https");
#endif
    SETOPT(CURLOPT_ERRORBUFFER, c->errbuf);
    SETOPT(CURLOPT_WRITEFUNCTION, on_body);
    SETOPT(CURLOPT_WRITEDATA, c);
    SETOPT(CURLOPT_HEADERFUNCTION, on_header);
    SETOPT(CURLOPT_HEADERDATA, c);
    SETOPT(CURLOPT_HTTPHEADER, hdrs);
    if (c->source != NULL)
        SETOPT(CURLOPT_INTERFACE, c->source);
    if (strcmp(method, "HEAD") == 0)
        SETOPT(CURLOPT_NOBODY, 1L);
    else if (strcmp(method, "GET") != 0)
        SETOPT(CURLOPT_CUSTOMREQUEST, method);
    if (text != NULL) {
        SETOPT(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)strlen(text));
        SETOPT(CURLOPT_POSTFIELDS, text);
    } else if (strcmp(method, "POST") == 0 || strcmp(method, "PUT") == 0) {
        SETOPT(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)0);
        SETOPT(CURLOPT_POSTFIELDS, "");
    }
    return 0;
setopt_fail:
    return shoal_err_set(err, SHOAL_EINTERNAL, "cannot set up a call to '%s'",
                         shown);
}

static struct curl_slist *add_header(struct curl_slist *list, const char *h,
                                     int *oom)
{
    struct curl_slist *l = curl_slist_append(list, h);

    if (l == NULL)
        *oom = 1;
    return l != NULL ? l : list;
}

/*
 * The URL as error messages show it: the query string is left out and a
 * path segment that is a UUID becomes "{id}", since session ids are
 * bearer credentials and messages end up in logs.
 */
static void url_for_msg(const struct shoal_client *c, const char *path,
                        char *out, size_t size)
{
    size_t o = (size_t)snprintf(out, size, "%s", c->base);
    const char *p = path;

    while (o + 1 < size && *p != '\0' && *p != '?' && *p != '#') {
        size_t seg = strcspn(p + 1, "/?#") + 1;     /* '/' and a segment */
        char one[SHOAL_UUID_STRLEN + 1];

        if (*p == '/' && seg - 1 == SHOAL_UUID_STRLEN) {
            memcpy(one, p + 1, SHOAL_UUID_STRLEN);
            one[SHOAL_UUID_STRLEN] = '\0';
            if (shoal_uuid_valid(one)) {
                o += (size_t)snprintf(out + o, size - o, "/{id}");
                p += seg;
                continue;
            }
        }
        o += (size_t)snprintf(out + o, size - o, "%.*s", (int)seg, p);
        p += seg;
    }
}

/* 1 when the last answer says its body is JSON. */
static int reply_is_json(const struct shoal_client *c)
{
    const char *ct = shoal_client_header(c, "Content-Type");

    return ct != NULL && strncasecmp(ct, "application/json", 16) == 0;
}

int shoal_client_call(struct shoal_client *c, const char *method,
                      const char *path, const json_t *body, json_t **reply,
                      int *status, struct shoal_err *err)
{
    struct curl_slist *hdrs = NULL;
    char *url = NULL;
    char shown[512];
    char *text = NULL;
    json_t *parsed = NULL;
    long code = 0;
    CURLcode rc;
    int oom = 0;
    int ret = -1;

    if (reply != NULL)
        *reply = NULL;
    if (status != NULL)
        *status = 0;
    curl_easy_reset(c->curl);   /* keeps the live connections */
    headers_clear(c);
    c->body_len = 0;
    c->body_overflow = 0;
    c->body_oom = 0;
    c->errbuf[0] = '\0';
    url_for_msg(c, path, shown, sizeof(shown));
    if (asprintf(&url, "%s%s", c->base, path) < 0) {
        url = NULL;
        shoal_err_set(err, SHOAL_EINTERNAL, "out of memory");
        goto out;
    }
    if (body != NULL) {
        text = shoal_json_dump(body);
        if (text == NULL) {
            shoal_err_set(err, SHOAL_EINTERNAL, "cannot encode the body of "
                          "'%s %s'", method, shown);
            goto out;
        }
        hdrs = add_header(hdrs, "Content-Type: application/json", &oom);
    }
    hdrs = add_header(hdrs, "Accept: application/json", &oom);
    hdrs = add_header(hdrs, "Expect:", &oom);
    if (c->bearer != NULL)
        hdrs = add_header(hdrs, c->bearer, &oom);
    if (oom) {
        shoal_err_set(err, SHOAL_EINTERNAL, "out of memory");
        goto out;
    }
    if (prepare(c, method, url, shown, text, hdrs, err) != 0)
        goto out;
    rc = curl_easy_perform(c->curl);
    if (rc != CURLE_OK) {
        if (c->body_overflow)
            shoal_err_set(err, SHOAL_EPROTO, "answer of '%s %s' is larger "
                          "than %lu bytes", method, shown, REPLY_MAX);
        else if (c->body_oom || c->headers_oom)
            shoal_err_set(err, SHOAL_EINTERNAL, "out of memory reading the "
                          "answer of '%s %s'", method, shown);
        else
            shoal_err_set(err, SHOAL_ENET, "cannot reach '%s': %s", shown,
                          c->errbuf[0] != '\0' ? c->errbuf :
                          curl_easy_strerror(rc));
        if (err != NULL)
            err->status = 0;
        goto out;
    }
    if (curl_easy_getinfo(c->curl, CURLINFO_RESPONSE_CODE, &code) != CURLE_OK)
        code = 0;
    if (status != NULL)
        *status = (int)code;
    if (c->body_len > 0 && (reply_is_json(c) || code < 200 || code > 299)) {
        parsed = json_loadb(c->body, c->body_len, 0, NULL);
        if (parsed == NULL && code >= 200 && code <= 299) {
            shoal_err_set(err, SHOAL_EPROTO, "malformed JSON in the answer "
                          "of '%s %s'", method, shown);
            if (err != NULL)
                err->status = (int)code;
            goto out;
        }
    }
    if (code < 200 || code > 299) {
        shoal_err_from_json(err, (int)code, parsed);
        goto out;
    }
    if (reply != NULL) {
        *reply = parsed;
        parsed = NULL;
    }
    ret = 0;
out:
    json_decref(parsed);
    curl_slist_free_all(hdrs);
    if (text != NULL) {
        explicit_bzero(text, strlen(text));     /* may hold an auth id */
        free(text);
    }
    free(url);
    return ret;
}
