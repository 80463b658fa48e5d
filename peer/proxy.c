/*
 * proxy.c - 'shoal serve --act-as-proxy': /v1/inject forwarded to the
 * injector this peer reaches, HTTP CONNECT relayed to ports 80 and 443
 * or those of --proxy-ports (--proxy-connect), GET /v1/proxies for peer
 * exchange, and the announcement in the swarm "injector proxies".  See
 * proxy.h.
 *
 * libmicrohttpd hands CONNECT requests over like any other but cannot
 * answer one with a tunnel (its upgrade support is for 101 only): the
 * relay takes the socket through shoal_req_tunnel (api/http.h).
 */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <sodium.h>

#include "addr.h"
#include "log.h"
#include "proxy.h"
#include "util.h"

#define ERRBODY_MAX 65536            /* an injector's error answer */
#define RECORD_MAX (1u << 20)        /* an injector's GET /v1/inject answer */
#define BUF_HIGH (1u << 20)          /* pause the injector above this */
#define BUF_LOW (256u << 10)         /* and go on below this */
#define STALL_SECS 60                /* an injector silent this long: cut */
#define CONNECT_SECS 10              /* to open a connection */
#define TUNNEL_IDLE_MS 120000        /* a tunnel without a byte: closed */
#define TUNNEL_MAX_SECS (6 * 3600)   /* a tunnel's whole life */
#define HDR_MAX 16384                /* one kept header value */

struct pr_proxy {
    char injector[PR_URL_MAX];
    struct pr_link *link;
    int connect;
    struct shoal_cidr_list *allow;
    struct pr_connect_ports ports;   /* CONNECT reaches these only */
};

struct pr_proxy *pr_proxy_new(const char *injector, struct pr_link *link,
                              int connect, const char *allow,
                              const char *ports, struct shoal_err *err)
{
    struct pr_proxy *p = calloc(1, sizeof(*p));

    if (!p) {
        shoal_err_set(err, SHOAL_EIO, "out of memory");
        return NULL;
    }
    snprintf(p->injector, sizeof(p->injector), "%s", injector);
    p->link = link;
    p->connect = connect;
    if (pr_connect_ports_parse(ports, &p->ports, err) < 0 ||
        shoal_cidr_list_parse(allow, &p->allow, err) < 0) {
        free(p);
        return NULL;
    }
    return p;
}

void pr_proxy_free(struct pr_proxy *p)
{
    if (!p)
        return;
    shoal_cidr_list_free(p->allow);
    free(p);
}

static struct pr_proxy *proxy_of(const struct shoal_req *req)
{
    const struct pr_srv *srv = shoal_req_app(req);
    return srv->proxy;
}

int pr_proxy_owns(const struct shoal_req *req)
{
    const struct shoal_route *rt = shoal_req_route(req);

    return rt && (rt->fn == pr_proxy_h_inject ||
                  rt->fn == pr_proxy_h_inject_get ||
                  rt->fn == pr_proxy_h_connect || rt->fn == pr_proxy_h_list);
}

int pr_proxy_auth(struct shoal_req *req, const char *bearer,
                  struct shoal_err *err)
{
    struct pr_srv *srv = shoal_req_app(req);
    const struct shoal_route *rt = shoal_req_route(req);

    if (rt->fn != pr_proxy_h_list && !srv->proxy)
        return shoal_err_set(err, SHOAL_EFORBIDDEN, "this peer is not an "
                             "injector proxy (shoal serve --act-as-proxy)");
    if (rt->fn == pr_proxy_h_connect && !srv->proxy->connect)
        return shoal_err_set(err, SHOAL_EFORBIDDEN, "this peer does not relay"
                             " CONNECT (shoal serve --proxy-connect)");
    return pr_serve_admit(req, bearer, NULL, err);
}

/* --- one call to the injector ------------------------------------------ */

struct fwd {
    CURL *c;
    CURLM *m;
    struct curl_slist *hdr;
    char *payload;
    char ebuf[CURL_ERROR_SIZE];
    long status;
    int headers_done;            /* the final answer's headers are in */
    int done;
    CURLcode result;
    int paused;
    char *buf;                   /* body bytes not yet passed on */
    size_t off, len, cap;
    size_t limit;                /* 0: flow control instead of a limit */
    int over;
    /* headers kept, then trailers */
    char *ctype, *meta, *ostatus, *swarm, *xsign, *file;
};

static void fwd_free(void *arg)
{
    struct fwd *f = arg;

    if (!f)
        return;
    if (f->m && f->c)
        curl_multi_remove_handle(f->m, f->c);
    if (f->c)
        curl_easy_cleanup(f->c);
    if (f->m)
        curl_multi_cleanup(f->m);
    curl_slist_free_all(f->hdr);      /* holds the proxy's session */
    free(f->payload);
    free(f->buf);
    free(f->ctype);
    free(f->meta);
    free(f->ostatus);
    free(f->swarm);
    free(f->xsign);
    free(f->file);
    free(f);
}

static size_t fwd_write(char *p, size_t sz, size_t n, void *arg)
{
    struct fwd *f = arg;
    size_t len = sz * n;

    if (f->limit && f->len - f->off + len > f->limit) {
        f->over = 1;
        return 0;
    }
    if (!f->limit && f->len - f->off >= BUF_HIGH) {
        f->paused = 1;
        return CURL_WRITEFUNC_PAUSE;
    }
    if (f->off) {
        memmove(f->buf, f->buf + f->off, f->len - f->off);
        f->len -= f->off;
        f->off = 0;
    }
    if (f->len + len + 1 > f->cap) {
        size_t cap = f->cap ? f->cap : 65536;
        while (cap < f->len + len + 1)
            cap *= 2;
        char *b = realloc(f->buf, cap);
        if (!b)
            return 0;
        f->buf = b;
        f->cap = cap;
    }
    memcpy(f->buf + f->len, p, len);
    f->len += len;
    f->buf[f->len] = '\0';
    return len;
}

/* *slot = the value of header line h when it is called name. */
static void take(const char *h, size_t len, const char *name, char **slot)
{
    size_t n = strlen(name);

    if (len <= n || strncasecmp(h, name, n) != 0 || h[n] != ':')
        return;
    h += n + 1;
    len -= n + 1;
    while (len && (*h == ' ' || *h == '\t')) {
        h++;
        len--;
    }
    while (len && (h[len - 1] == '\r' || h[len - 1] == '\n' ||
                   h[len - 1] == ' ' || h[len - 1] == '\t'))
        len--;
    if (len > HDR_MAX)
        return;
    free(*slot);
    *slot = strndup(h, len);
}

static size_t fwd_header(char *h, size_t sz, size_t n, void *arg)
{
    struct fwd *f = arg;
    size_t len = sz * n;

    if (len > 5 && strncmp(h, "HTTP/", 5) == 0) {
        const char *sp = memchr(h, ' ', len);
        f->status = sp ? strtol(sp + 1, NULL, 10) : 0;
        f->headers_done = 0;
        return len;
    }
    if (len <= 2 && (h[0] == '\r' || h[0] == '\n')) {
        if (f->status >= 200)
            f->headers_done = 1;
        return len;
    }
    if (!f->headers_done) {
        take(h, len, "Content-Type", &f->ctype);
        take(h, len, "X-Inject-Meta", &f->meta);
        take(h, len, "X-Origin-Status", &f->ostatus);
        take(h, len, "X-Swarm", &f->swarm);
    }
    /* X-Sign and X-Inject-File: headers of GET, trailers of POST */
    take(h, len, "X-Sign", &f->xsign);
    take(h, len, "X-Inject-File", &f->file);
    return len;
}

/* A call to the injector of p: method, path (query included), JSON body
 * text or NULL, as the proxy's own user.  New fwd, started, or NULL with
 * err. */
static struct fwd *fwd_start(struct pr_proxy *p, const char *method,
                             const char *path, const char *body,
                             size_t limit, struct shoal_err *err)
{
    struct fwd *f = calloc(1, sizeof(*f));
    char sid[37];
    char auth[80];
    char *url = NULL;

    if (!f) {
        shoal_err_set(err, SHOAL_EINTERNAL, "out of memory");
        return NULL;
    }
    f->limit = limit;
    if (pr_link_session(p->link, sid, err) < 0) {
        shoal_err_set(err, SHOAL_EBADGATEWAY, "this proxy cannot log in to "
                      "its injector: %.150s", err ? err->msg : "");
        fwd_free(f);
        return NULL;
    }
    snprintf(auth, sizeof(auth), "Authorization: Bearer %s", sid);
    sodium_memzero(sid, sizeof(sid));
    f->hdr = curl_slist_append(NULL, auth);
    sodium_memzero(auth, sizeof(auth));
    if (body)
        f->hdr = curl_slist_append(f->hdr, "Content-Type: application/json");
    if (asprintf(&url, "%s%s", p->injector, path) < 0)
        url = NULL;
    if (!f->hdr || !url || !(f->c = curl_easy_init()) ||
        !(f->m = curl_multi_init()) ||
        (body && !(f->payload = strdup(body)))) {
        free(url);
        fwd_free(f);
        shoal_err_set(err, SHOAL_EINTERNAL, "out of memory");
        return NULL;
    }
    curl_easy_setopt(f->c, CURLOPT_URL, url);
    free(url);
    curl_easy_setopt(f->c, CURLOPT_HTTPHEADER, f->hdr);
    if (f->payload) {
        curl_easy_setopt(f->c, CURLOPT_POSTFIELDS, f->payload);
        curl_easy_setopt(f->c, CURLOPT_POSTFIELDSIZE, (long)strlen(f->payload));
    }
    if (strcmp(method, "GET") != 0 && strcmp(method, "POST") != 0)
        curl_easy_setopt(f->c, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(f->c, CURLOPT_WRITEFUNCTION, fwd_write);
    curl_easy_setopt(f->c, CURLOPT_WRITEDATA, f);
    curl_easy_setopt(f->c, CURLOPT_HEADERFUNCTION, fwd_header);
    curl_easy_setopt(f->c, CURLOPT_HEADERDATA, f);
    curl_easy_setopt(f->c, CURLOPT_ERRORBUFFER, f->ebuf);
    curl_easy_setopt(f->c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(f->c, CURLOPT_PROXY, "");
    curl_easy_setopt(f->c, CURLOPT_CONNECTTIMEOUT, (long)CONNECT_SECS);
    curl_easy_setopt(f->c, CURLOPT_LOW_SPEED_LIMIT, 1L);
    curl_easy_setopt(f->c, CURLOPT_LOW_SPEED_TIME, (long)STALL_SECS);
    curl_easy_setopt(f->c, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_multi_add_handle(f->m, f->c);
    return f;
}

/* Drive f until want(f) or the call is done; bounded by curl's own
 * timeouts (a stalled injector is cut after STALL_SECS). */
static void fwd_pump(struct fwd *f, int (*want)(const struct fwd *f))
{
    while (!f->done && !want(f)) {
        int running = 0, left;
        CURLMsg *msg;
        if (curl_multi_perform(f->m, &running) != CURLM_OK) {
            f->done = 1;
            f->result = CURLE_FAILED_INIT;
            break;
        }
        while ((msg = curl_multi_info_read(f->m, &left)))
            if (msg->msg == CURLMSG_DONE) {
                f->done = 1;
                f->result = msg->data.result;
            }
        if (f->done || want(f))
            break;
        if (f->paused)
            break;               /* the reader has to make room first */
        curl_multi_poll(f->m, NULL, 0, 1000, NULL);
    }
}

static int want_headers(const struct fwd *f) { return f->headers_done; }
static int want_bytes(const struct fwd *f) { return f->len > f->off; }
static int want_end(const struct fwd *f) { (void)f; return 0; }

/* The injector refused the proxy's own session (not the caller's): the
 * caller must not take that as its own. */
static int refused_proxy(long status, const json_t *body)
{
    const char *code = json_string_value(json_object_get(
        json_object_get(body, "error"), "code"));

    return (status == 400 || status == 401 || status == 403 ||
            status == 409) && code &&
           (strncmp(code, "session_", 8) == 0 || !strcmp(code, "ip_mismatch"));
}

/* Answer f's finished failure (status other than 200) as the injector
 * said it, or 502 when the injector cannot be reached or refused this
 * proxy. */
static int fwd_fail(struct pr_proxy *p, struct shoal_req *req, struct fwd *f,
                    struct shoal_err *err)
{
    json_t *body;

    if (!f->status || (f->done && f->result != CURLE_OK && !f->over &&
                       f->status == 200))
        return shoal_err_set(err, SHOAL_EBADGATEWAY, "injector '%.200s' "
                             "cannot be reached: %.200s", p->injector,
                             f->ebuf[0] ? f->ebuf
                                        : curl_easy_strerror(f->result));
    body = f->len > f->off ? json_loads(f->buf + f->off, 0, NULL) : NULL;
    if (refused_proxy(f->status, body)) {
        json_decref(body);
        return shoal_err_set(err, SHOAL_EBADGATEWAY, "injector '%.200s' "
                             "refused this proxy's session", p->injector);
    }
    json_decref(body);
    if (shoal_req_set_body(req, (int)f->status,
                           f->ctype ? f->ctype : "application/json",
                           f->buf ? f->buf + f->off : "", f->len - f->off) < 0)
        return shoal_err_set(err, SHOAL_EINTERNAL, "out of memory");
    return 0;
}

/* --- POST /v1/inject ----------------------------------------------------- */

/* The body of the injection as it arrives; the trailers at its end. */
static long inject_read(void *cls, char *buf, size_t max,
                        struct shoal_trailers *tr)
{
    struct fwd *f = cls;

    fwd_pump(f, want_bytes);
    if (f->len > f->off) {
        size_t n = f->len - f->off;
        if (n > max)
            n = max;
        memcpy(buf, f->buf + f->off, n);
        f->off += n;
        if (f->off == f->len)
            f->off = f->len = 0;
        if (f->paused && f->len - f->off < BUF_LOW) {
            f->paused = 0;
            curl_easy_pause(f->c, CURLPAUSE_CONT);
        }
        return (long)n;
    }
    if (f->paused) {             /* cannot happen: paused means bytes */
        f->paused = 0;
        curl_easy_pause(f->c, CURLPAUSE_CONT);
        return inject_read(cls, buf, max, tr);
    }
    if (!f->done || f->result != CURLE_OK || !f->xsign) {
        shoal_log(SHOAL_LOG_WARN, NULL, "proxy: the injection was cut short:"
                  " %s", f->ebuf[0] ? f->ebuf : f->done ? "no X-Sign trailer"
                                               : "stalled");
        return -1;               /* the caller sees an incomplete body */
    }
    if (shoal_trailer_add(tr, "X-Sign", f->xsign) < 0 ||
        (f->file && shoal_trailer_add(tr, "X-Inject-File", f->file) < 0))
        return -1;
    return 0;
}

int pr_proxy_h_inject(struct shoal_req *req, json_t **reply,
                      struct shoal_err *err)
{
    static const char *const keys[] = { "url", NULL };
    struct pr_proxy *p = proxy_of(req);
    json_t *body = shoal_req_body(req);
    const char *url;
    char *text = NULL;
    struct fwd *f;
    (void)reply;

    if (shoal_json_only(body, keys, err) < 0 ||
        shoal_json_str(body, "url", &url, err) < 0)
        return -1;
    if (strncmp(url, "http://", 7) && strncmp(url, "https://", 8))
        return shoal_err_set(err, SHOAL_EINVAL, "'url' must be an http:// or "
                             "https:// URL, not '%.100s'", url);
    if (!(text = json_dumps(body, JSON_COMPACT)))
        return shoal_err_set(err, SHOAL_EINTERNAL, "out of memory");
    f = fwd_start(p, "POST", "/v1/inject", text, 0, err);
    free(text);
    if (!f)
        return -1;
    fwd_pump(f, want_headers);
    if (!f->headers_done || f->status != 200) {
        f->limit = ERRBODY_MAX;
        fwd_pump(f, want_end);
        int rc = fwd_fail(p, req, f, err);
        fwd_free(f);
        return rc;
    }
    if (f->ostatus)
        shoal_req_add_header(req, "X-Origin-Status", f->ostatus);
    if (f->meta)
        shoal_req_add_header(req, "X-Inject-Meta", f->meta);
    if (f->swarm)
        shoal_req_add_header(req, "X-Swarm", f->swarm);
    shoal_req_add_header(req, "Trailer", "X-Sign, X-Inject-File");
    shoal_req_add_header(req, "X-Injector-Proxy", "1");
    if (shoal_req_set_stream(req, 200, f->ctype ? f->ctype
                                                : "application/octet-stream",
                             inject_read, f, fwd_free) < 0)
        return shoal_err_set(err, SHOAL_EINTERNAL, "out of memory");
    return 0;
}

/* --- GET and HEAD /v1/inject?url= ------------------------------------------ */

int pr_proxy_h_inject_get(struct shoal_req *req, json_t **reply,
                          struct shoal_err *err)
{
    struct pr_proxy *p = proxy_of(req);
    const char *url = shoal_req_query(req, "url");
    char *q = NULL, *path = NULL;
    struct fwd *f = NULL;
    int rc = -1;
    (void)reply;

    if (!url)
        return shoal_err_set(err, SHOAL_EINVAL, "missing query parameter "
                             "'url'");
    if (strncmp(url, "http://", 7) && strncmp(url, "https://", 8))
        return shoal_err_set(err, SHOAL_EINVAL, "'url' must be an http:// or "
                             "https:// URL, not '%.100s'", url);
    if (!(q = curl_easy_escape(NULL, url, 0)) ||
        asprintf(&path, "/v1/inject?url=%s", q) < 0) {
        path = NULL;
        shoal_err_set(err, SHOAL_EINTERNAL, "out of memory");
        goto out;
    }
    if (!(f = fwd_start(p, "GET", path, NULL, RECORD_MAX, err)))
        goto out;
    fwd_pump(f, want_end);
    if (!f->done || f->result != CURLE_OK || f->status != 200) {
        rc = fwd_fail(p, req, f, err);
        goto out;
    }
    if (f->xsign)
        shoal_req_add_header(req, "X-Sign", f->xsign);
    if (f->file)
        shoal_req_add_header(req, "X-Inject-File", f->file);
    shoal_req_add_header(req, "X-Injector-Proxy", "1");
    if (shoal_req_set_body(req, 200, f->ctype ? f->ctype : "application/json",
                           f->buf ? f->buf + f->off : "", f->len - f->off) < 0) {
        shoal_err_set(err, SHOAL_EINTERNAL, "out of memory");
        goto out;
    }
    rc = 0;
out:
    fwd_free(f);
    free(path);
    curl_free(q);
    return rc;
}

/* --- CONNECT host:port ---------------------------------------------------- */

struct tunnel {
    int up;                      /* the origin's socket */
};

static void tunnel_free(void *arg)
{
    struct tunnel *t = arg;

    if (t && t->up >= 0)
        close(t->up);
    free(t);
}

/* Write all of buf to fd (blocking, with a send timeout). */
static int write_all(int fd, const char *buf, size_t len)
{
    while (len) {
        ssize_t w = send(fd, buf, len, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        buf += w;
        len -= (size_t)w;
    }
    return 0;
}

static void set_blocking(int fd)
{
    struct timeval tv = { .tv_sec = TUNNEL_IDLE_MS / 1000 };
    int fl = fcntl(fd, F_GETFL);

    if (fl >= 0)
        fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
}

/* Bytes both ways until both sides have ended, the tunnel has been idle
 * TUNNEL_IDLE_MS, or it has lasted TUNNEL_MAX_SECS. */
static void relay(void *arg, int fd)
{
    static const char ok[] = "HTTP/1.1 200 Connection established\r\n\r\n";
    struct tunnel *t = arg;
    char buf[65536];
    int open_in = 1, open_out = 1;      /* client→origin, origin→client */
    double end = shoal_mono() + TUNNEL_MAX_SECS;

    set_blocking(fd);
    set_blocking(t->up);
    if (write_all(fd, ok, sizeof(ok) - 1) < 0)
        return;
    while ((open_in || open_out) && shoal_mono() < end) {
        struct pollfd pf[2] = {
            { .fd = open_in ? fd : -1, .events = POLLIN },
            { .fd = open_out ? t->up : -1, .events = POLLIN },
        };
        int n = poll(pf, 2, TUNNEL_IDLE_MS);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;                      /* idle, or poll failed */
        for (int i = 0; i < 2; i++) {
            int from = i == 0 ? fd : t->up, to = i == 0 ? t->up : fd;
            if (!(pf[i].revents & (POLLIN | POLLHUP | POLLERR)))
                continue;
            ssize_t r = recv(from, buf, sizeof(buf), 0);
            if (r < 0 && (errno == EINTR || errno == EAGAIN))
                continue;
            if (r <= 0 || write_all(to, buf, (size_t)r) < 0) {
                shutdown(to, SHUT_WR);  /* pass the end on */
                if (i == 0)
                    open_in = 0;
                else
                    open_out = 0;
                if (r < 0)
                    open_in = open_out = 0;
            }
        }
    }
}

/* A socket connected to host:port at an address the proxy may reach, or
 * -1 with err. */
static int dial(struct pr_proxy *p, const char *host, unsigned port,
                struct shoal_err *err)
{
    struct addrinfo hints = { .ai_socktype = SOCK_STREAM,
                              .ai_flags = AI_NUMERICSERV };
    struct addrinfo *res = NULL, *a;
    char sport[8], why[80] = "";
    int fd = -1, refused = 0;

    snprintf(sport, sizeof(sport), "%u", port);
    int g = getaddrinfo(host, sport, &hints, &res);
    if (g != 0)
        return shoal_err_set(err, SHOAL_EBADGATEWAY, "cannot resolve "
                             "'%.200s': %s", host, gai_strerror(g));
    for (a = res; a && fd < 0; a = a->ai_next) {
        if (!shoal_addr_allowed(p->allow, a->ai_addr)) {
            refused = 1;
            snprintf(why, sizeof(why), "%s",
                     shoal_addr_class_name(shoal_addr_classify(a->ai_addr)));
            continue;
        }
        int s = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC |
                       SOCK_NONBLOCK, a->ai_protocol);
        if (s < 0)
            continue;
        if (connect(s, a->ai_addr, a->ai_addrlen) < 0 && errno == EINPROGRESS) {
            struct pollfd pf = { .fd = s, .events = POLLOUT };
            int soerr = 0;
            socklen_t sl = sizeof(soerr);
            if (poll(&pf, 1, CONNECT_SECS * 1000) == 1 &&
                getsockopt(s, SOL_SOCKET, SO_ERROR, &soerr, &sl) == 0 &&
                soerr == 0)
                fd = s;
            else
                errno = soerr ? soerr : ETIMEDOUT;
        } else if (errno == 0 || errno == EISCONN) {
            fd = s;
        }
        if (fd < 0) {
            snprintf(why, sizeof(why), "%s", strerror(errno));
            close(s);
        }
        errno = 0;
    }
    freeaddrinfo(res);
    if (fd >= 0)
        return fd;
    if (refused && !why[0])
        snprintf(why, sizeof(why), "refused");
    if (refused)
        return shoal_err_set(err, SHOAL_EFORBIDDEN, "CONNECT to '%.200s' is "
                             "refused: it is a %s address (--proxy-allow)",
                             host, why);
    return shoal_err_set(err, SHOAL_EBADGATEWAY, "cannot connect to "
                         "'%.200s:%u': %s", host, port, why);
}

int pr_proxy_h_connect(struct shoal_req *req, json_t **reply,
                       struct shoal_err *err)
{
    struct pr_proxy *p = proxy_of(req);
    const char *target = shoal_req_param(req, "authority");
    char host[PR_HOST_MAX];
    unsigned port = 0;
    struct tunnel *t;
    (void)reply;

    if (!target || pr_authority_parse(target, host, &port) < 0)
        return shoal_err_set(err, SHOAL_EINVAL, "CONNECT target '%.200s' is "
                             "not host:port", target ? target : "");
    if (!pr_connect_port_ok(&p->ports, port)) {
        char allowed[128];
        pr_connect_ports_name(&p->ports, allowed, sizeof(allowed));
        return shoal_err_set(err, SHOAL_EFORBIDDEN, "CONNECT to port %u is "
                             "refused: only %s (--proxy-ports)", port,
                             allowed);
    }
    errno = 0;
    int up = dial(p, host, port, err);
    if (up < 0)
        return -1;
    if (!(t = calloc(1, sizeof(*t)))) {
        close(up);
        return shoal_err_set(err, SHOAL_EINTERNAL, "out of memory");
    }
    t->up = up;
    shoal_log(SHOAL_LOG_INFO, shoal_req_id(req), "proxy: CONNECT %s:%u for "
              "'%s'", host, port, (const char *)shoal_req_user(req));
    return shoal_req_tunnel(req, relay, t, tunnel_free, err);
}

/* --- GET /v1/proxies, announcements -------------------------------------- */

int pr_proxy_h_list(struct shoal_req *req, json_t **reply,
                    struct shoal_err *err)
{
    struct pr_srv *srv = shoal_req_app(req);
    char *path = NULL;
    json_t *cache = NULL;
    json_t *inj = json_array(), *prx = json_array();
    size_t i;
    json_t *e;

    if (!inj || !prx)
        goto nomem;
    if (srv->proxy) {
        pr_inj_list_add(prx, srv->advertise, "self", 0);
        pr_inj_list_add(inj, srv->proxy->injector, "self", 0);
    }
    if (asprintf(&path, "%s/" PR_INJ_CACHE_FILE, pr_held_dir(srv->held)) < 0) {
        path = NULL;
        goto nomem;
    }
    cache = json_load_file(path, 0, NULL);
    json_array_foreach(json_object_get(cache, PR_SWARM_INJECTORS), i, e)
        pr_inj_list_add(inj, json_string_value(json_object_get(e, "url")),
                        "cache", 0);
    json_array_foreach(json_object_get(cache, PR_SWARM_PROXIES), i, e)
        pr_inj_list_add(prx, json_string_value(json_object_get(e, "url")),
                        "cache", 0);
    json_decref(cache);
    free(path);
    /* the addresses only: where they came from is this peer's business */
    json_t *urls[2] = { json_array(), json_array() };
    for (int k = 0; k < 2; k++)
        json_array_foreach(k ? prx : inj, i, e)
            if (urls[k])
                json_array_append(urls[k], json_object_get(e, "url"));
    json_decref(inj);
    json_decref(prx);
    *reply = json_pack("{s:o*, s:o*}", "injectors", urls[0], "proxies",
                       urls[1]);
    return *reply ? 0 : shoal_err_set(err, SHOAL_EINTERNAL, "out of memory");
nomem:
    json_decref(inj);
    json_decref(prx);
    return shoal_err_set(err, SHOAL_EINTERNAL, "out of memory");
}

void pr_proxy_announce(struct pr_srv *srv)
{
    struct shoal_err e;
    char swarm[65], path[128];
    json_t *body;

    if (!srv->proxy)
        return;
    pr_named_swarm(PR_SWARM_PROXIES, swarm);
    snprintf(path, sizeof(path), "/v1/swarms/%s/peers", swarm);
    body = json_pack("{s:s}", "url", srv->advertise);
    shoal_err_clear(&e);
    if (!body || pr_link_call(srv->link, "POST", path, body, NULL, NULL,
                              &e) < 0)
        shoal_log(SHOAL_LOG_WARN, NULL, "cannot announce this injector proxy:"
                  " %s", body ? e.msg : "out of memory");
    json_decref(body);
}

void pr_proxy_withdraw(struct pr_srv *srv)
{
    struct shoal_err e;
    char swarm[65];
    char *q = NULL, *path = NULL;

    if (!srv->proxy)
        return;
    pr_named_swarm(PR_SWARM_PROXIES, swarm);
    shoal_err_clear(&e);
    if (!(q = curl_easy_escape(NULL, srv->advertise, 0)) ||
        asprintf(&path, "/v1/swarms/%s/peers?url=%s", swarm, q) < 0)
        path = NULL;
    if (!path || (pr_link_call(srv->link, "DELETE", path, NULL, NULL, NULL,
                               &e) < 0 && e.code != SHOAL_ENOTFOUND))
        shoal_log(SHOAL_LOG_WARN, NULL, "cannot withdraw this injector proxy:"
                  " %s", path ? e.msg : "out of memory");
    free(path);
    curl_free(q);
}
