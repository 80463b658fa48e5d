/*
 * origin.c - one fetch from a web origin for the injector, over libcurl
 * multi, driven by the caller's thread (the connection's): the handler
 * waits for the headers, the response's reader pulls the body.
 *
 * Safety: libcurl opens every socket through open_sock, after DNS, so
 * each address of each hop is checked (inject_allow) before a connection
 * is attempted; redirects are not followed by libcurl but one by one
 * here; proxies from the environment are ignored.
 *
 * Memory: while the reader waits for body bytes, libcurl's write callback
 * copies them straight into the reader's buffer; what does not fit, or
 * comes while nobody waits, goes to a buffer of PEND_CAP bytes.  When it
 * is full the transfer is paused (CURL_WRITEFUNC_PAUSE) until the reader
 * has taken some: a slow client slows the origin down instead of growing
 * it.
 *
 * Connections: an injection that read its answer to the end gives its
 * multi handle (whose connection cache keeps the origin's connection
 * alive) and its body buffer back to the injector's pool; the next
 * injection takes the one that last spoke to the same origin, or the
 * newest, and libcurl reuses the connection when host and port match.
 * libcurl does not support sharing one connection cache between threads
 * (CURL_LOCK_DATA_CONNECT), so each pooled handle is used by one thread
 * at a time.  A reused connection was checked by open_sock when it was
 * opened, to the same host and port.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include <curl/curl.h>

#include "inject.h"
#include "log.h"

#define PEND_CAP (256u << 10)         /* body bytes waiting for the reader */
#define CURL_BUF (64L << 10)          /* most libcurl hands over at once */
#define HEADERS_MAX 100               /* header fields kept of an answer */
#define HEADER_BYTES_MAX (64u << 10)  /* bytes of header fields kept */
#define POLL_MS 100
#define POOL_MAX 8                    /* idle multi handles kept */
#define POOL_IDLE_S 30.0              /* for at most this long */
#define ORIGIN_KEY_MAX 300            /* scheme://host:port kept */

/* An idle multi handle (with the connections in its cache) and the body
 * buffer of an injection that ended well. */
struct idle {
    CURLM *multi;
    char *pend;
    char key[ORIGIN_KEY_MAX];         /* the origin it last spoke to */
    double since;
};

struct br_origin_pool {
    pthread_mutex_t lock;
    struct idle items[POOL_MAX];      /* oldest first */
    int n;
};

enum abort_why {
    KEEP_GOING = 0,
    STOP_REDIRECT,                    /* a 3xx with Location: follow it */
    STOP_STATUS,                      /* a final status other than 2xx */
    STOP_TOO_BIG,                     /* over max_size (declared or read) */
};

struct br_origin {
    const struct br_inject *inj;
    CURLM *multi;
    CURL *easy;
    char *url;                        /* of the current hop */
    int hops;
    /* the answer being received */
    long status;
    char *names[HEADERS_MAX];
    char *values[HEADERS_MAX];
    size_t nh;
    size_t header_bytes;
    int body;                         /* its headers are in: body follows */
    enum abort_why why;
    uint64_t declared;                /* Content-Length, when too big */
    int done;                         /* the transfer ended */
    CURLcode result;
    char refused[64];                 /* first address refused, or "" */
    enum shoal_addr_class refused_class;
    /* the body: straight into the reader's buffer while it waits (see
     * br_origin_read), else into pend */
    char *direct;
    size_t direct_max, direct_len;
    char *pend;
    size_t off, len;
    int paused;
    uint64_t received;
    double last;                      /* monotonic time of the last byte */
    int failed;                       /* reading failed for good: */
    struct shoal_err ferr;            /*  with this */
    char errbuf[CURL_ERROR_SIZE];
};

/* --- libcurl callbacks ------------------------------------------------- */

static curl_socket_t open_sock(void *cls, curlsocktype purpose,
                               struct curl_sockaddr *a)
{
    struct br_origin *o = cls;
    (void)purpose;
    if (!shoal_addr_allowed(o->inj->allow, &a->addr)) {
        if (o->refused[0] == '\0') {
            shoal_addr_text(&a->addr, o->refused, sizeof o->refused);
            o->refused_class = shoal_addr_classify(&a->addr);
        }
        return CURL_SOCKET_BAD;
    }
    return socket(a->family, a->socktype | SOCK_CLOEXEC, a->protocol);
}

static void headers_clear(struct br_origin *o)
{
    for (size_t i = 0; i < o->nh; i++) {
        free(o->names[i]);
        free(o->values[i]);
    }
    o->nh = 0;
    o->header_bytes = 0;
}

/* One header line of n bytes (with its CRLF). */
static void header_keep(struct br_origin *o, const char *line, size_t n)
{
    while (n > 0 && (line[n - 1] == '\r' || line[n - 1] == '\n'))
        n--;
    if (o->header_bytes + n > HEADER_BYTES_MAX)
        return;
    if (line[0] == ' ' || line[0] == '\t') {          /* obs-fold */
        if (o->nh == 0)
            return;
        char *v = o->values[o->nh - 1];
        size_t vl = strlen(v);
        char *nv = realloc(v, vl + n + 1);
        if (nv == NULL)
            return;
        nv[vl] = ' ';
        memcpy(nv + vl + 1, line + 1, n - 1);
        nv[vl + n] = '\0';
        o->values[o->nh - 1] = nv;
        o->header_bytes += n;
        return;
    }
    const char *colon = memchr(line, ':', n);
    if (colon == NULL || colon == line || o->nh == HEADERS_MAX)
        return;
    size_t nl = (size_t)(colon - line);
    const char *v = colon + 1;
    size_t vl = n - nl - 1;
    while (vl > 0 && (*v == ' ' || *v == '\t')) {
        v++;
        vl--;
    }
    char *name = strndup(line, nl), *value = strndup(v, vl);
    if (name == NULL || value == NULL) {
        free(name);
        free(value);
        return;
    }
    o->names[o->nh] = name;
    o->values[o->nh] = value;
    o->nh++;
    o->header_bytes += n;
}

/* The end of an answer's headers: go on to its body, or stop here. */
static size_t headers_done(struct br_origin *o, size_t n)
{
    long status = 0;
    curl_easy_getinfo(o->easy, CURLINFO_RESPONSE_CODE, &status);
    if (status >= 100 && status < 200) {              /* interim */
        headers_clear(o);
        return n;
    }
    o->status = status;
    if ((status == 301 || status == 302 || status == 303 || status == 307 ||
         status == 308) && br_origin_header(o, "location") != NULL) {
        o->why = STOP_REDIRECT;
        return 0;
    }
    if (status < 200 || status > 299) {
        o->why = STOP_STATUS;
        return 0;
    }
    const char *cl = br_origin_header(o, "content-length");
    if (cl != NULL) {
        char *end;
        unsigned long long v = strtoull(cl, &end, 10);
        if (end != cl && v > o->inj->max_size) {
            o->declared = v;
            o->why = STOP_TOO_BIG;
            return 0;
        }
    }
    o->body = 1;
    return n;
}

static size_t on_header(char *data, size_t size, size_t nitems, void *cls)
{
    struct br_origin *o = cls;
    size_t n = size * nitems;
    o->last = shoal_mono();
    if (o->body)                       /* trailers of a chunked body */
        return n;
    if (n >= 5 && memcmp(data, "HTTP/", 5) == 0) {    /* a new answer */
        headers_clear(o);
        return n;
    }
    if ((n == 2 && data[0] == '\r' && data[1] == '\n') ||
        (n == 1 && data[0] == '\n'))
        return headers_done(o, n);
    header_keep(o, data, n);
    return n;
}

static size_t on_body(char *data, size_t size, size_t nitems, void *cls)
{
    struct br_origin *o = cls;
    size_t n = size * nitems;
    if (!o->body)
        return 0;
    if (n > o->inj->max_size - o->received) {
        o->why = STOP_TOO_BIG;
        return 0;
    }
    size_t k = 0;
    if (o->direct != NULL && o->len == 0)      /* nothing older waits */
        k = o->direct_max - o->direct_len < n ? o->direct_max - o->direct_len : n;
    if (n - k > PEND_CAP)              /* the rest could not be kept: */
        k = 0;                         /* take all or nothing (pause) */
    if (k > 0) {
        memcpy(o->direct + o->direct_len, data, k);
        o->direct_len += k;
        o->received += k;
        o->last = shoal_mono();
        data += k;
        n -= k;
        if (n == 0)
            return k;
        /* the rest fits in pend, which is empty */
    }
    if (n > PEND_CAP - o->len) {
        o->paused = 1;
        return CURL_WRITEFUNC_PAUSE;   /* libcurl hands it over again */
    }
    if (o->off + o->len + n > PEND_CAP) {
        memmove(o->pend, o->pend + o->off, o->len);
        o->off = 0;
    }
    memcpy(o->pend + o->off + o->len, data, n);
    o->len += n;
    o->received += n;
    o->last = shoal_mono();
    return k + n;
}

/* --- driving ------------------------------------------------------------ */

/* Start a hop to o->url. */
static int hop_start(struct br_origin *o, struct shoal_err *err)
{
    if (o->easy) {
        curl_multi_remove_handle(o->multi, o->easy);
        curl_easy_cleanup(o->easy);
    }
    headers_clear(o);
    o->status = 0;
    o->body = 0;
    o->why = KEEP_GOING;
    o->done = 0;
    o->result = CURLE_OK;
    o->errbuf[0] = '\0';
    o->refused[0] = '\0';
    o->last = shoal_mono();
    o->easy = curl_easy_init();
    if (o->easy == NULL)
        return shoal_err_set(err, SHOAL_EINTERNAL, "out of memory");
    CURL *e = o->easy;
    int bad = 0;
#define SET(opt, val) bad |= curl_easy_setopt(e, opt, val) != CURLE_OK
    SET(CURLOPT_URL, o->url);
    SET(CURLOPT_HTTPGET, 1L);
    SET(CURLOPT_NOSIGNAL, 1L);
    SET(CURLOPT_PROTOCOLS_STR, "http,https");
    SET(CURLOPT_FOLLOWLOCATION, 0L);
    SET(CURLOPT_PROXY, "");            /* no proxy from the environment */
    SET(CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
    SET(CURLOPT_USERAGENT, "shoal-injector/" BR_VERSION);
    SET(CURLOPT_CONNECTTIMEOUT, (long)o->inj->timeout);
    SET(CURLOPT_BUFFERSIZE, CURL_BUF);
    SET(CURLOPT_OPENSOCKETFUNCTION, open_sock);
    SET(CURLOPT_OPENSOCKETDATA, o);
    SET(CURLOPT_HEADERFUNCTION, on_header);
    SET(CURLOPT_HEADERDATA, o);
    SET(CURLOPT_WRITEFUNCTION, on_body);
    SET(CURLOPT_WRITEDATA, o);
    SET(CURLOPT_ERRORBUFFER, o->errbuf);
#undef SET
    if (bad || curl_multi_add_handle(o->multi, e) != CURLM_OK)
        return shoal_err_set(err, SHOAL_EINTERNAL, "cannot set up the origin request");
    return 0;
}

/* One round: let libcurl work, note the end of the transfer, and wait a
 * little for the sockets when nothing is ready. */
static void drive(struct br_origin *o)
{
    int running = 0, left;
    int was_body = o->body;
    size_t before = o->len + o->direct_len;
    curl_multi_perform(o->multi, &running);
    CURLMsg *m;
    while ((m = curl_multi_info_read(o->multi, &left)) != NULL)
        if (m->msg == CURLMSG_DONE && m->easy_handle == o->easy) {
            o->done = 1;
            o->result = m->data.result;
        }
    if (!o->done && !o->paused && o->body == was_body &&
        o->len + o->direct_len == before)
        curl_multi_poll(o->multi, NULL, 0, POLL_MS, NULL);
}

/* A failed transfer as a 403 (an address refused) or a 502. */
static int transfer_error(struct br_origin *o, struct shoal_err *err)
{
    if (o->refused[0] != '\0' && !o->body)
        return shoal_err_set(err, SHOAL_EFORBIDDEN,
                             "origin address '%s' (%s) of '%.120s' is not"
                             " allowed (see inject_allow)", o->refused,
                             shoal_addr_class_name(o->refused_class), o->url);
    if (o->result == CURLE_COULDNT_RESOLVE_HOST)
        return shoal_err_set(err, SHOAL_EBADGATEWAY,
                             "cannot resolve the host of '%.160s'", o->url);
    if (o->result == CURLE_OPERATION_TIMEDOUT)
        return shoal_err_set(err, SHOAL_EBADGATEWAY,
                             "origin of '%.140s' did not answer within %lld s",
                             o->url, o->inj->timeout);
    return shoal_err_set(err, SHOAL_EBADGATEWAY, "origin of '%.120s' failed: %.80s",
                         o->url, o->errbuf[0] ? o->errbuf
                                              : curl_easy_strerror(o->result));
}

/* The URL a redirect points to, resolved against o->url, into *next (new
 * string).  -1 with 502 when it is not an http or https URL. */
static int redirect_target(struct br_origin *o, char **next,
                           struct shoal_err *err)
{
    const char *loc = br_origin_header(o, "location");
    CURLU *u = curl_url();
    char *scheme = NULL, *user = NULL, *full = NULL;
    int rc = -1;

    *next = NULL;
    if (u == NULL)
        return shoal_err_set(err, SHOAL_EINTERNAL, "out of memory");
    if (curl_url_set(u, CURLUPART_URL, o->url, 0) != CURLUE_OK ||
        curl_url_set(u, CURLUPART_URL, loc, CURLU_NON_SUPPORT_SCHEME) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_URL, &full, 0) != CURLUE_OK) {
        shoal_err_set(err, SHOAL_EBADGATEWAY,
                      "origin of '%.100s' redirects to a malformed URL '%.80s'",
                      o->url, loc);
        goto out;
    }
    if (strcasecmp(scheme, "http") != 0 && strcasecmp(scheme, "https") != 0) {
        shoal_err_set(err, SHOAL_EBADGATEWAY,
                      "origin of '%.100s' redirects to '%.80s', not http or https",
                      o->url, full);
        goto out;
    }
    if (curl_url_get(u, CURLUPART_USER, &user, 0) == CURLUE_OK) {
        shoal_err_set(err, SHOAL_EBADGATEWAY,
                      "origin of '%.120s' redirects to a URL with credentials",
                      o->url);
        goto out;
    }
    if (strlen(full) > BR_INJECT_URL_MAX) {
        shoal_err_set(err, SHOAL_EBADGATEWAY,
                      "origin of '%.120s' redirects to a URL over %d bytes",
                      o->url, BR_INJECT_URL_MAX);
        goto out;
    }
    *next = strdup(full);
    rc = *next ? 0 : shoal_err_set(err, SHOAL_EINTERNAL, "out of memory");
out:
    curl_free(scheme);
    curl_free(user);
    curl_free(full);
    curl_url_cleanup(u);
    return rc;
}

/* --- the pool of idle handles ------------------------------------------ */

/* "scheme://authority" of url into key (cut to its size). */
static void origin_key(const char *url, char key[ORIGIN_KEY_MAX])
{
    const char *p = strstr(url, "://");
    size_t n = p ? (size_t)(p + 3 - url) + strcspn(p + 3, "/?#") : strlen(url);
    if (n >= ORIGIN_KEY_MAX)
        n = ORIGIN_KEY_MAX - 1;
    memcpy(key, url, n);
    key[n] = '\0';
}

static void idle_free(struct idle *it)
{
    curl_multi_cleanup(it->multi);
    free(it->pend);
}

/* Drop the entries idle for too long (lock held). */
static void pool_expire(struct br_origin_pool *p, double now)
{
    int keep = 0;
    for (int i = 0; i < p->n; i++) {
        if (now - p->items[i].since > POOL_IDLE_S)
            idle_free(&p->items[i]);
        else
            p->items[keep++] = p->items[i];
    }
    p->n = keep;
}

struct br_origin_pool *br_origin_pool_new(void)
{
    struct br_origin_pool *p = calloc(1, sizeof *p);
    if (p != NULL)
        pthread_mutex_init(&p->lock, NULL);
    return p;
}

void br_origin_pool_free(struct br_origin_pool *p)
{
    if (p == NULL)
        return;
    for (int i = 0; i < p->n; i++)
        idle_free(&p->items[i]);
    pthread_mutex_destroy(&p->lock);
    free(p);
}

/* An idle handle for url into o (the newest that spoke to its origin,
 * else the newest), or nothing. */
static void pool_take(struct br_origin_pool *p, const char *url,
                      struct br_origin *o)
{
    char key[ORIGIN_KEY_MAX];
    if (p == NULL)
        return;
    origin_key(url, key);
    pthread_mutex_lock(&p->lock);
    pool_expire(p, shoal_mono());
    int at = p->n - 1;
    for (int i = p->n - 1; i >= 0; i--)
        if (strcmp(p->items[i].key, key) == 0) {
            at = i;
            break;
        }
    if (at >= 0) {
        o->multi = p->items[at].multi;
        o->pend = p->items[at].pend;
        memmove(&p->items[at], &p->items[at + 1],
                (size_t)(p->n - at - 1) * sizeof p->items[0]);
        p->n--;
    }
    pthread_mutex_unlock(&p->lock);
}

/* Give o's multi handle and buffer back when its transfer ended well
 * (its connection may be reused); 0 when they were taken. */
static int pool_give(struct br_origin_pool *p, struct br_origin *o)
{
    if (p == NULL || o->multi == NULL || o->pend == NULL || !o->done ||
        o->result != CURLE_OK || o->why != KEEP_GOING || o->failed ||
        o->paused || o->len > 0)
        return -1;
    double now = shoal_mono();
    pthread_mutex_lock(&p->lock);
    pool_expire(p, now);
    if (p->n == POOL_MAX) {                          /* drop the oldest */
        idle_free(&p->items[0]);
        memmove(&p->items[0], &p->items[1], (size_t)(p->n - 1) * sizeof p->items[0]);
        p->n--;
    }
    struct idle *it = &p->items[p->n++];
    it->multi = o->multi;
    it->pend = o->pend;
    origin_key(o->url, it->key);
    it->since = now;
    pthread_mutex_unlock(&p->lock);
    o->multi = NULL;
    o->pend = NULL;
    return 0;
}

int br_origin_open(const struct br_inject *inj, const char *url,
                   struct br_origin **out, struct shoal_err *err)
{
    struct br_origin *o = calloc(1, sizeof *o);
    *out = NULL;
    if (o == NULL)
        return shoal_err_set(err, SHOAL_EINTERNAL, "out of memory");
    o->inj = inj;
    pool_take(inj->pool, url, o);
    if (o->pend == NULL)
        o->pend = malloc(PEND_CAP);
    if (o->multi == NULL && (o->multi = curl_multi_init()) != NULL)
        curl_multi_setopt(o->multi, CURLMOPT_MAXCONNECTS, 2L);  /* kept */
    o->url = strdup(url);
    if (o->pend == NULL || o->multi == NULL || o->url == NULL) {
        shoal_err_set(err, SHOAL_EINTERNAL, "out of memory");
        goto fail;
    }
    for (;;) {
        if (hop_start(o, err) != 0)
            goto fail;
        while (!o->body && !o->done) {
            drive(o);
            if (!o->body && !o->done && shoal_mono() - o->last > (double)inj->timeout) {
                shoal_err_set(err, SHOAL_EBADGATEWAY,
                              "origin of '%.140s' sent nothing for %lld s",
                              o->url, inj->timeout);
                goto fail;
            }
        }
        if (o->body) {
            *out = o;
            return 0;
        }
        /* The transfer ended before a body: why? */
        if (o->why == STOP_REDIRECT) {
            char *next;
            if (++o->hops > BR_INJECT_REDIRECTS) {
                shoal_err_set(err, SHOAL_EBADGATEWAY,
                              "more than %d redirects from '%.140s'",
                              BR_INJECT_REDIRECTS, url);
                goto fail;
            }
            if (redirect_target(o, &next, err) != 0)
                goto fail;
            shoal_log(SHOAL_LOG_DEBUG, NULL, "inject: '%.200s' redirects to '%.200s'",
                      o->url, next);
            free(o->url);
            o->url = next;
            continue;
        }
        if (o->why == STOP_STATUS)
            shoal_err_set(err, SHOAL_EBADGATEWAY, "origin answered %ld for '%.160s'",
                          o->status, o->url);
        else if (o->why == STOP_TOO_BIG)
            shoal_err_set(err, SHOAL_EBADGATEWAY,
                          "origin object of %llu bytes at '%.100s' is larger than"
                          " inject_max_size (%llu bytes)",
                          (unsigned long long)o->declared, o->url,
                          (unsigned long long)inj->max_size);
        else if (o->result != CURLE_OK)
            transfer_error(o, err);
        else
            shoal_err_set(err, SHOAL_EBADGATEWAY, "origin of '%.160s' sent no answer",
                          o->url);
        goto fail;
    }
fail:
    br_origin_close(o);
    return -1;
}

int br_origin_status(const struct br_origin *o)
{
    return (int)o->status;
}

size_t br_origin_headers(const struct br_origin *o, const char *const **names,
                         const char *const **values)
{
    *names = (const char *const *)o->names;
    *values = (const char *const *)o->values;
    return o->nh;
}

const char *br_origin_header(const struct br_origin *o, const char *name)
{
    for (size_t i = 0; i < o->nh; i++)
        if (strcasecmp(o->names[i], name) == 0)
            return o->values[i];
    return NULL;
}

/* Give the paused transfer its data again (libcurl may hand it over
 * within this call). */
static void resume(struct br_origin *o)
{
    o->paused = 0;
    o->last = shoal_mono();
    curl_easy_pause(o->easy, CURLPAUSE_CONT);
}

static long read_fail(struct br_origin *o, struct shoal_err *err)
{
    o->failed = 1;
    if (err)
        *err = o->ferr;
    return -1;
}

long br_origin_read(struct br_origin *o, char *buf, size_t max,
                    struct shoal_err *err)
{
    for (;;) {
        if (o->failed)
            return read_fail(o, err);
        if (o->len > 0) {
            size_t n = o->len < max ? o->len : max;
            memcpy(buf, o->pend + o->off, n);
            o->off += n;
            o->len -= n;
            if (o->len == 0)
                o->off = 0;
            if (o->paused && PEND_CAP - o->len >= (size_t)CURL_BUF)
                resume(o);
            return (long)n;
        }
        if (o->paused) {
            resume(o);
            continue;
        }
        if (o->done) {
            if (o->result == CURLE_OK && o->why == KEEP_GOING)
                return 0;
            if (o->why == STOP_TOO_BIG)
                shoal_err_set(&o->ferr, SHOAL_EBADGATEWAY,
                              "origin object at '%.100s' is larger than"
                              " inject_max_size (%llu bytes)", o->url,
                              (unsigned long long)o->inj->max_size);
            else if (o->result == CURLE_PARTIAL_FILE)
                shoal_err_set(&o->ferr, SHOAL_EBADGATEWAY,
                              "origin of '%.120s' closed the connection after"
                              " %llu bytes", o->url,
                              (unsigned long long)o->received);
            else
                transfer_error(o, &o->ferr);
            return read_fail(o, err);
        }
        /* Let libcurl write straight into buf during this round. */
        o->direct = buf;
        o->direct_max = max;
        o->direct_len = 0;
        drive(o);
        o->direct = NULL;
        if (o->direct_len > 0)
            return (long)o->direct_len;
        if (!o->done && o->len == 0 && !o->paused &&
            shoal_mono() - o->last > (double)o->inj->timeout) {
            shoal_err_set(&o->ferr, SHOAL_EBADGATEWAY,
                          "origin of '%.120s' stalled for %lld s after %llu bytes",
                          o->url, o->inj->timeout,
                          (unsigned long long)o->received);
            return read_fail(o, err);
        }
    }
}

void br_origin_close(struct br_origin *o)
{
    if (o == NULL)
        return;
    if (o->easy) {
        curl_multi_remove_handle(o->multi, o->easy);
        curl_easy_cleanup(o->easy);
    }
    if (pool_give(o->inj->pool, o) != 0 && o->multi)
        curl_multi_cleanup(o->multi);
    headers_clear(o);
    free(o->pend);
    free(o->url);
    free(o);
}
