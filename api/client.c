/*
 * client.c - JSON REST calls over one reused libcurl easy handle.  A
 * large body can be made as it is sent (req->read), and the large array
 * of an answer handed over one element at a time (req->each).
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
#define KEY_MAX 256          /* longest member name (as sent) split on */

struct header {
    char *name;
    char *value;
};

/*
 * An answer read with its array under req->each_key split off: a scan of
 * the JSON text that only follows strings and nesting, so that the bytes
 * of each element reach jansson alone and the others (the array shown
 * empty) go to the body as usual.
 */
struct split {
    const struct shoal_client_req *req;
    int decided;         /* on is known (at the first byte of the body) */
    int on;              /* a 2xx JSON answer: split it */
    int depth;           /* of the objects and arrays around the byte */
    int in_str;
    int esc;             /* in_str, after a '\\' */
    int top_obj;         /* the answer is an object */
    int want_key;        /* in that object, a member name comes next */
    int key_state;       /* 1 reading a name, 2 read, 3 after its ':' */
    char key[KEY_MAX];   /* the name as sent, quotes included */
    size_t key_len;
    int in_array;        /* inside the array under each_key */
    int sep;             /* ... after a ',' */
    char *elem;          /* the element at hand */
    size_t elem_len;
    size_t elem_cap;
    size_t index;
    int failed;          /* an element was malformed or each failed */
    int malformed;
    struct shoal_err err;
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
    size_t body_seen;    /* bytes of the answer, split off or not */
    struct header *headers;   /* the last answer's headers */
    size_t nheaders;
    int headers_oom;
    const struct shoal_client_req *up;   /* the body read makes */
    uint64_t up_off;
    int up_failed;
    struct split split;
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
    free(c->split.elem);
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

/* 1 when the last answer says its body is JSON. */
static int reply_is_json(const struct shoal_client *c)
{
    const char *ct = shoal_client_header(c, "Content-Type");

    return ct != NULL && strncasecmp(ct, "application/json", 16) == 0;
}

/* Add len bytes to the body of the answer.  -1 on ENOMEM. */
static int body_add(struct shoal_client *c, const char *data, size_t len)
{
    size_t cap;
    char *p;

    if (c->body_len + len + 1 > c->body_cap) {
        cap = c->body_cap > 0 ? c->body_cap : 4096;
        while (cap < c->body_len + len + 1)
            cap *= 2;
        p = realloc(c->body, cap);
        if (p == NULL) {
            c->body_oom = 1;
            return -1;
        }
        c->body = p;
        c->body_cap = cap;
    }
    memcpy(c->body + c->body_len, data, len);
    c->body_len += len;
    c->body[c->body_len] = '\0';
    return 0;
}

/* Add one byte to the element at hand.  -1 on ENOMEM. */
static int elem_add(struct shoal_client *c, char ch)
{
    struct split *s = &c->split;
    size_t cap;
    char *p;

    if (s->elem_len == s->elem_cap) {
        cap = s->elem_cap > 0 ? 2 * s->elem_cap : 256;
        p = realloc(s->elem, cap);
        if (p == NULL) {
            c->body_oom = 1;
            return -1;
        }
        s->elem = p;
        s->elem_cap = cap;
    }
    s->elem[s->elem_len++] = ch;
    return 0;
}

static int is_space(char ch)
{
    return ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r';
}

/* 1 when the member name just read (JSON text in s->key) is each_key. */
static int key_is(const struct split *s)
{
    json_t *k;
    int same;

    if (s->key_len >= sizeof(s->key))
        return 0;
    k = json_loadb(s->key, s->key_len, JSON_DECODE_ANY, NULL);
    same = json_is_string(k) &&
           json_string_length(k) == strlen(s->req->each_key) &&
           strcmp(json_string_value(k), s->req->each_key) == 0;
    json_decref(k);
    return same;
}

/* The element at hand is whole (a ',' or, when last, the ']' ends it):
 * parse it and hand it to each.  -1 with s->failed set. */
static int elem_end(struct split *s, int last)
{
    const char *p = s->elem;
    size_t n = s->elem_len;
    json_t *v;
    int rc;

    while (n > 0 && is_space(*p)) {
        p++;
        n--;
    }
    while (n > 0 && is_space(p[n - 1]))
        n--;
    s->elem_len = 0;
    if (n == 0) {
        if (last && !s->sep)
            return 0;           /* [] */
        s->malformed = 1;
        s->failed = 1;
        return -1;
    }
    s->sep = !last;
    v = json_loadb(p, n, JSON_DECODE_ANY, NULL);
    if (v == NULL) {
        s->malformed = 1;
        s->failed = 1;
        return -1;
    }
    rc = s->req->each(s->req->each_arg, s->index++, v, &s->err);
    json_decref(v);
    if (rc < 0)
        s->failed = 1;
    return rc < 0 ? -1 : 0;
}

/* Follow the strings (and the member name at hand) of the text. */
static void split_str(struct split *s, char ch)
{
    if (s->esc)
        s->esc = 0;
    else if (ch == '\\')
        s->esc = 1;
    else if (ch == '"')
        s->in_str = 0;
    if (s->key_state == 1 && s->key_len < sizeof(s->key))
        s->key[s->key_len++] = ch;
    if (s->key_state == 1 && !s->in_str)
        s->key_state = 2;
}

/* One byte of the array under each_key.  1 when it closed the array,
 * -1 on failure. */
static int split_array(struct shoal_client *c, char ch)
{
    struct split *s = &c->split;

    if (s->in_str) {
        split_str(s, ch);
        return elem_add(c, ch);
    }
    if (s->depth == 2 && (ch == ',' || ch == ']')) {
        if (elem_end(s, ch == ']') < 0)
            return -1;
        if (ch == ',')
            return 0;
        s->in_array = 0;
        s->depth = 1;
        return 1;
    }
    if (ch == '"')
        s->in_str = 1;
    else if (ch == '{' || ch == '[')
        s->depth++;
    else if (ch == '}' || ch == ']')
        s->depth--;
    if (s->depth < 2) {         /* a '}' closed the array */
        s->malformed = 1;
        s->failed = 1;
        return -1;
    }
    return elem_add(c, ch);
}

/* One byte of the text outside that array.  1 when it opened the
 * array. */
static int split_other(struct split *s, char ch)
{
    if (s->in_str) {
        split_str(s, ch);
        return 0;
    }
    if (is_space(ch))
        return 0;
    if (s->depth == 1 && s->key_state == 2 && ch == ':') {
        s->key_state = 3;
        return 0;
    }
    if (s->depth == 1 && s->key_state == 3 && ch == '[' && key_is(s)) {
        s->key_state = 0;
        s->in_array = 1;
        s->sep = 0;
        s->elem_len = 0;
        s->depth = 2;
        return 1;
    }
    s->key_state = 0;
    if (ch == '"') {
        s->in_str = 1;
        if (s->depth == 1 && s->want_key) {
            s->key_state = 1;
            s->key[0] = ch;
            s->key_len = 1;
        }
    } else if (ch == '{' || ch == '[') {
        if (s->depth == 0)
            s->top_obj = s->want_key = ch == '{';
        s->depth++;
    } else if (ch == '}' || ch == ']') {
        s->depth--;
    } else if (ch == ',' && s->depth == 1) {
        s->want_key = s->top_obj;
        return 0;
    }
    if (s->depth == 1 && ch != '{')
        s->want_key = 0;
    return 0;
}

/* Pass len bytes of a split answer on: the array's to each, the others
 * to the body.  -1 on failure. */
static int split_feed(struct shoal_client *c, const char *data, size_t len)
{
    struct split *s = &c->split;
    size_t from = 0;            /* start of the bytes for the body */
    size_t i;
    int r;

    for (i = 0; i < len; i++) {
        if (s->in_array) {
            r = split_array(c, data[i]);
            if (r < 0)
                return -1;
            if (r > 0)
                from = i;       /* the ']' goes to the body */
        } else if (split_other(s, data[i]) > 0) {
            if (body_add(c, data + from, i + 1 - from) < 0)
                return -1;      /* up to the '[' */
        }
    }
    if (!s->in_array && body_add(c, data + from, len - from) < 0)
        return -1;
    return 0;
}

static size_t on_body(char *data, size_t size, size_t n, void *arg)
{
    struct shoal_client *c = arg;
    struct split *s = &c->split;
    size_t len = size * n;
    long code = 0;

    if (len > REPLY_MAX - c->body_seen) {
        c->body_overflow = 1;
        return 0;       /* makes curl stop with CURLE_WRITE_ERROR */
    }
    c->body_seen += len;
    if (s->req != NULL && !s->decided) {
        s->decided = 1;
        if (curl_easy_getinfo(c->curl, CURLINFO_RESPONSE_CODE,
                              &code) != CURLE_OK)
            code = 0;
        s->on = code >= 200 && code <= 299 && reply_is_json(c);
    }
    if (s->on)
        return split_feed(c, data, len) < 0 ? 0 : len;
    return body_add(c, data, len) < 0 ? 0 : len;
}

/* The body of a request from req->read, as curl asks for it. */
static size_t on_read(char *buf, size_t size, size_t n, void *arg)
{
    struct shoal_client *c = arg;
    uint64_t left = c->up->len - c->up_off;
    size_t want = size * n;

    if (want > left)
        want = (size_t)left;
    if (want == 0)
        return 0;
    if (c->up->read(c->up->read_arg, c->up_off, buf, want) < 0) {
        c->up_failed = 1;
        return CURL_READFUNC_ABORT;
    }
    c->up_off += want;
    return want;
}

/* curl starts the body over when it sends the call again. */
static int on_seek(void *arg, curl_off_t offset, int origin)
{
    struct shoal_client *c = arg;

    if (origin != SEEK_SET || offset < 0 || (uint64_t)offset > c->up->len)
        return CURL_SEEKFUNC_CANTSEEK;
    c->up_off = (uint64_t)offset;
    return CURL_SEEKFUNC_OK;
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
    } else if (c->up != NULL) {
        SETOPT(CURLOPT_POST, 1L);       /* CUSTOMREQUEST names the method */
        SETOPT(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)c->up->len);
        SETOPT(CURLOPT_READFUNCTION, on_read);
        SETOPT(CURLOPT_READDATA, c);
        SETOPT(CURLOPT_SEEKFUNCTION, on_seek);
        SETOPT(CURLOPT_SEEKDATA, c);
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

int shoal_client_call(struct shoal_client *c, const char *method,
                      const char *path, const json_t *body, json_t **reply,
                      int *status, struct shoal_err *err)
{
    struct shoal_client_req req;

    memset(&req, 0, sizeof(req));
    req.body = body;
    return shoal_client_call_req(c, method, path, &req, reply, status, err);
}

/* Ready c for a call of req: no answer yet. */
static void call_reset(struct shoal_client *c,
                       const struct shoal_client_req *req)
{
    struct split *s = &c->split;
    char *elem = s->elem;
    size_t cap = s->elem_cap;

    curl_easy_reset(c->curl);   /* keeps the live connections */
    headers_clear(c);
    c->body_len = 0;
    c->body_seen = 0;
    c->body_overflow = 0;
    c->body_oom = 0;
    c->errbuf[0] = '\0';
    c->up = req->body == NULL && req->read != NULL ? req : NULL;
    c->up_off = 0;
    c->up_failed = 0;
    memset(s, 0, sizeof(*s));
    s->elem = elem;
    s->elem_cap = cap;
    if (req->each_key != NULL && req->each != NULL)
        s->req = req;
}

/* err for a call that curl could not finish. */
static void call_failed(struct shoal_client *c, const char *method,
                        const char *shown, CURLcode rc, struct shoal_err *err)
{
    if (c->split.failed && !c->split.malformed) {
        if (err != NULL)
            *err = c->split.err;
        return;
    }
    if (c->split.malformed)
        shoal_err_set(err, SHOAL_EPROTO, "malformed JSON in the answer of "
                      "'%s %s'", method, shown);
    else if (c->body_overflow)
        shoal_err_set(err, SHOAL_EPROTO, "answer of '%s %s' is larger than "
                      "%lu bytes", method, shown, REPLY_MAX);
    else if (c->body_oom || c->headers_oom)
        shoal_err_set(err, SHOAL_EINTERNAL, "out of memory reading the "
                      "answer of '%s %s'", method, shown);
    else if (c->up_failed)
        shoal_err_set(err, SHOAL_EINTERNAL, "cannot make the body of "
                      "'%s %s'", method, shown);
    else
        shoal_err_set(err, SHOAL_ENET, "cannot reach '%s': %s", shown,
                      c->errbuf[0] != '\0' ? c->errbuf :
                      curl_easy_strerror(rc));
    if (err != NULL)
        err->status = 0;
}

int shoal_client_call_req(struct shoal_client *c, const char *method,
                          const char *path,
                          const struct shoal_client_req *req, json_t **reply,
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
    call_reset(c, req);
    url_for_msg(c, path, shown, sizeof(shown));
    if (asprintf(&url, "%s%s", c->base, path) < 0) {
        url = NULL;
        shoal_err_set(err, SHOAL_EINTERNAL, "out of memory");
        goto out;
    }
    if (req->body != NULL) {
        text = shoal_json_dump(req->body);
        if (text == NULL) {
            shoal_err_set(err, SHOAL_EINTERNAL, "cannot encode the body of "
                          "'%s %s'", method, shown);
            goto out;
        }
    }
    if (text != NULL || c->up != NULL)
        hdrs = add_header(hdrs, "Content-Type: application/json", &oom);
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
        call_failed(c, method, shown, rc, err);
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
    c->up = NULL;
    c->split.req = NULL;
    return ret;
}
