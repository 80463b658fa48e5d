/*
 * http.c - the HTTP server wrapper over libmicrohttpd (see http.h).
 *
 * Life of a request:
 *  - uri_log (request line received): the struct shoal_req is made; it
 *    becomes libmicrohttpd's per-request pointer; the connection's request
 *    deadline starts.
 *  - on_access, first call (headers received): nothing is queued here,
 *    because queuing on the first call costs keep-alive (BASELINES.md),
 *    except a 413 for a declared Content-Length over the limit, which
 *    closes the connection anyway.
 *  - on_access, upload calls: the body is kept up to the limit.
 *  - on_access, last call: route, flags, handler, one response.
 *  - on_completed: the request is freed.
 *
 * libmicrohttpd closes connections idle for idle_timeout.  A watchdog
 * thread closes (shutdown) connections whose request has not fully arrived
 * within request_timeout, which idle timeouts cannot catch when a client
 * trickles bytes.
 */
#include <arpa/inet.h>
#include <limits.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include <microhttpd.h>
#include <sodium.h>

#include "http.h"
#include "keys.h"
#include "log.h"
#include "util.h"

#define MAX_SEGMENTS 16
#define MAX_PROXIES 16

/* One TCP connection, for the watchdog. */
struct conn {
    struct conn *prev, *next;
    int fd;
    int refused;            /* over max_connections: answered 503 */
    double deadline;        /* monotonic; 0 when no request is arriving */
};

struct shoal_server {
    struct MHD_Daemon *d;
    struct shoal_server_opts o;
    unsigned port;
    atomic_uint nconn;      /* served connections (refused ones not) */
    char proxies[MAX_PROXIES][SHOAL_IP_MAX];
    int nproxies;
    pthread_mutex_t lock;   /* guards conns */
    struct conn conns;      /* list head */
    pthread_t watchdog;
    int watchdog_started;
    atomic_int stopping;
};

struct hdr {
    struct hdr *next;
    char *name, *value;
};

struct shoal_req {
    struct shoal_server *srv;
    struct MHD_Connection *conn;
    const char *method;     /* borrowed from libmicrohttpd */
    const struct shoal_route *route;
    int nparams;
    const char *pnames[SHOAL_MAX_PARAMS];
    size_t pnlen[SHOAL_MAX_PARAMS];
    char *pvalues[SHOAL_MAX_PARAMS];
    int called;             /* access handler calls so far */
    char *body;
    size_t body_len, body_cap;
    int too_big;
    size_t limit;               /* body limit of this request */
    json_t *json;
    char ip[SHOAL_IP_MAX];
    char id[SHOAL_REQ_ID_LEN + 1];
    int status;
    struct hdr *headers;
    char *raw, *raw_type;
    size_t raw_len;
    struct MHD_Response *resp;  /* prepared by set_fd / set_reader */
    int stream_failed;          /* a body callback answered an error */
    struct shoal_err stream_err;
    void *state;
    void (*state_free)(void *);
    int close;
    int answered;           /* a response is queued */
    int admin;              /* let in by the admin token */
    void *user;
    void (*user_free)(void *);
    double t0;
    shoal_tunnel_fn tunnel;     /* shoal_req_tunnel: after the handler */
    void *tunnel_cls;
    void (*tunnel_free)(void *);
};

/* --- small helpers ------------------------------------------------------ */

static void ip_of_sockaddr(const struct sockaddr *sa, char out[SHOAL_IP_MAX])
{
    out[0] = '\0';
    if (sa == NULL)
        return;
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
        inet_ntop(AF_INET, &in->sin_addr, out, SHOAL_IP_MAX);
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
        if (IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr))
            inet_ntop(AF_INET, &in6->sin6_addr.s6_addr[12], out, SHOAL_IP_MAX);
        else
            inet_ntop(AF_INET6, &in6->sin6_addr, out, SHOAL_IP_MAX);
    }
}

int shoal_ip_canonical(const char *s, char out[SHOAL_IP_MAX])
{
    struct in_addr a4;
    struct in6_addr a6;

    if (inet_pton(AF_INET, s, &a4) == 1)
        return inet_ntop(AF_INET, &a4, out, SHOAL_IP_MAX) ? 0 : -1;
    if (inet_pton(AF_INET6, s, &a6) == 1) {
        if (IN6_IS_ADDR_V4MAPPED(&a6))
            return inet_ntop(AF_INET, &a6.s6_addr[12], out, SHOAL_IP_MAX) ? 0 : -1;
        return inet_ntop(AF_INET6, &a6, out, SHOAL_IP_MAX) ? 0 : -1;
    }
    return -1;
}

static int is_proxy(const struct shoal_server *srv, const char *ip)
{
    for (int i = 0; i < srv->nproxies; i++)
        if (strcmp(srv->proxies[i], ip) == 0)
            return 1;
    return 0;
}

struct xff {
    char buf[1024];
    size_t len;
    int overflow;
};

/* Collect every X-Forwarded-For header line, in order, joined by commas:
 * a proxy may add its own line instead of appending to the client's. */
static enum MHD_Result xff_collect(void *cls, enum MHD_ValueKind kind,
                                   const char *key, const char *value)
{
    struct xff *x = cls;
    (void)kind;
    if (key == NULL || value == NULL || strcasecmp(key, "X-Forwarded-For") != 0)
        return MHD_YES;
    size_t n = strlen(value);
    if (x->len + n + 2 > sizeof x->buf) {
        x->overflow = 1;
        return MHD_NO;
    }
    if (x->len > 0)
        x->buf[x->len++] = ',';
    memcpy(x->buf + x->len, value, n + 1);
    x->len += n;
    return MHD_YES;
}

/* The client behind trusted proxies: the rightmost X-Forwarded-For entry
 * that is not itself a trusted proxy.  Anything unparsable stops the walk
 * at the last address a trusted proxy vouched for. */
static void client_ip(struct shoal_req *r)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(r->conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    ip_of_sockaddr(ci ? ci->client_addr : NULL, r->ip);
    if (r->srv->nproxies == 0 || !is_proxy(r->srv, r->ip))
        return;
    struct xff x = { .len = 0 };
    MHD_get_connection_values(r->conn, MHD_HEADER_KIND, xff_collect, &x);
    if (x.len == 0 || x.overflow)
        return;
    char *copy = x.buf;
    for (;;) {
        char *comma = strrchr(copy, ',');
        char *item = comma ? comma + 1 : copy;
        while (*item == ' ' || *item == '\t')
            item++;
        char *end = item + strlen(item);
        while (end > item && (end[-1] == ' ' || end[-1] == '\t'))
            *--end = '\0';
        char canon[SHOAL_IP_MAX];
        if (shoal_ip_canonical(item, canon) != 0)
            break;
        snprintf(r->ip, sizeof r->ip, "%s", canon);
        if (!is_proxy(r->srv, canon) || comma == NULL)
            break;
        *comma = '\0';
    }
}

static void req_free(struct shoal_req *r)
{
    if (r == NULL)
        return;
    for (int i = 0; i < r->nparams; i++)
        free(r->pvalues[i]);
    if (r->body)                /* may hold an Authentication ID or invite */
        sodium_memzero(r->body, r->body_cap);
    free(r->body);
    json_decref(r->json);
    while (r->headers) {
        struct hdr *h = r->headers;
        r->headers = h->next;
        free(h->name);
        free(h->value);
        free(h);
    }
    free(r->raw);
    free(r->raw_type);
    if (r->resp)
        MHD_destroy_response(r->resp);
    if (r->state_free)
        r->state_free(r->state);
    if (r->user_free)
        r->user_free(r->user);
    if (r->tunnel_free)
        r->tunnel_free(r->tunnel_cls);
    free(r);
}

/* --- routing ------------------------------------------------------------ */

/* Match path against pattern; on success record the parameters. */
static int route_match(struct shoal_req *r, const char *pattern,
                       const char *path)
{
    const char *p = pattern, *s = path;
    int n = 0;

    while (*p && *s) {
        if (*p == '{') {
            const char *close = strchr(p, '}');
            const char *seg_end = strchr(s, '/');
            size_t len = seg_end ? (size_t)(seg_end - s) : strlen(s);
            if (close == NULL || len == 0 || n >= SHOAL_MAX_PARAMS)
                return 0;
            if (r) {
                r->pnames[n] = p + 1;
                r->pnlen[n] = (size_t)(close - p - 1);
                r->pvalues[n] = strndup(s, len);
                if (r->pvalues[n] == NULL)
                    return 0;
                r->nparams = n + 1;
            }
            n++;
            p = close + 1;
            s += len;
            continue;
        }
        if (*p != *s)
            return 0;
        p++;
        s++;
    }
    return *p == '\0' && *s == '\0';
}

static const struct shoal_route *route_find(struct shoal_req *r,
                                            const char *path, char *allow,
                                            size_t allow_len, int *path_known)
{
    const struct shoal_server_opts *o = &r->srv->o;
    const char *method = r->method;
    int head = strcmp(method, "HEAD") == 0;

    *path_known = 0;
    allow[0] = '\0';
    for (size_t i = 0; i < o->nroutes; i++) {
        const struct shoal_route *rt = &o->routes[i];
        if (!route_match(NULL, rt->pattern, path))
            continue;
        *path_known = 1;
        if (strcmp(rt->method, method) == 0 ||
            (head && strcmp(rt->method, "GET") == 0)) {
            for (int k = 0; k < r->nparams; k++)
                free(r->pvalues[k]);
            r->nparams = 0;
            if (!route_match(r, rt->pattern, path))
                return NULL;
            return rt;
        }
        size_t used = strlen(allow);
        snprintf(allow + used, allow_len - used, "%s%s%s",
                 used ? ", " : "", rt->method,
                 strcmp(rt->method, "GET") == 0 ? ", HEAD" : "");
    }
    return NULL;
}

/* --- responses ---------------------------------------------------------- */

/* Add the common headers to resp, queue it and account for it.  resp is
 * released here. */
static enum MHD_Result queue(struct shoal_req *r, int status,
                             struct MHD_Response *resp)
{
    MHD_add_response_header(resp, "X-Request-Id", r->id);
    if (r->srv->o.server_header)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_SERVER,
                                r->srv->o.server_header);
    if (r->srv->o.extra_header_name && r->srv->o.extra_header_value)
        MHD_add_response_header(resp, r->srv->o.extra_header_name,
                                r->srv->o.extra_header_value);
    for (struct hdr *h = r->headers; h; h = h->next)
        MHD_add_response_header(resp, h->name, h->value);
    if (r->close)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONNECTION, "close");
    enum MHD_Result ret = MHD_queue_response(r->conn, (unsigned)status, resp);
    MHD_destroy_response(resp);
    r->answered = 1;

    double secs = shoal_mono() - r->t0;
    if (r->srv->o.observe)
        r->srv->o.observe(r->srv->o.app, r->route, r->method, status, secs);
    if (shoal_log_enabled(SHOAL_LOG_DEBUG) || status >= 500) {
        json_t *f = json_pack("{s:s, s:s, s:i, s:f, s:s}", "method", r->method,
                              "route", r->route ? r->route->pattern : "-",
                              "status", status, "ms", secs * 1000.0,
                              "ip", r->ip);
        shoal_log_fields(status >= 500 ? SHOAL_LOG_ERROR : SHOAL_LOG_DEBUG,
                         r->id, f, "request");
        json_decref(f);
    }
    return ret;
}

static enum MHD_Result send_reply(struct shoal_req *r, int status,
                                  const char *ctype, char *body, size_t len)
{
    struct MHD_Response *resp = MHD_create_response_from_buffer(
        len, body, MHD_RESPMEM_MUST_FREE);
    if (resp == NULL) {
        free(body);
        return MHD_NO;
    }
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, ctype);
    return queue(r, status, resp);
}

static enum MHD_Result send_error(struct shoal_req *r,
                                  const struct shoal_err *err)
{
    struct shoal_err wire = *err;
    int status = err->status ? err->status : shoal_code_status(err->code);
    if (status == 500) {
        /* What failed inside stays in the log; the client gets the id to
         * quote to the operator. */
        shoal_log(SHOAL_LOG_ERROR, r->id, "internal error: %s", err->msg);
        shoal_err_set(&wire, SHOAL_EINTERNAL, "internal error (request %s)", r->id);
    }
    json_t *body = shoal_err_to_json(&wire);
    char *text = body ? shoal_json_dump(body) : NULL;
    json_decref(body);
    if (text == NULL)
        return MHD_NO;
    return send_reply(r, status, "application/json", text, strlen(text));
}

static int check_admin(struct shoal_req *r, const char *bearer,
                       struct shoal_err *err)
{
    const char *tok = r->srv->o.admin_token;
    if (tok == NULL || tok[0] == '\0')
        return shoal_err_set(err, SHOAL_EFORBIDDEN,
                             "admin calls are disabled on this broker");
    /* Compare fixed-size digests so the time does not depend on where the
     * strings differ, nor reveal the token's length. */
    unsigned char a[32], b[32];
    crypto_generichash(a, sizeof a, (const unsigned char *)tok, strlen(tok),
                       NULL, 0);
    crypto_generichash(b, sizeof b, (const unsigned char *)bearer,
                       strlen(bearer), NULL, 0);
    if (sodium_memcmp(a, b, sizeof a) != 0)
        return shoal_err_set(err, SHOAL_EFORBIDDEN, "wrong admin token");
    return 0;
}

/* The bearer token, or NULL with err set. */
static const char *bearer_of(struct shoal_req *r, struct shoal_err *err)
{
    const char *h = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND,
                                                MHD_HTTP_HEADER_AUTHORIZATION);
    if (h == NULL || strncasecmp(h, "Bearer ", 7) != 0) {
        shoal_err_set(err, SHOAL_ESESSION_MISSING,
                      "missing 'Authorization: Bearer' header");
        return NULL;
    }
    h += 7;
    while (*h == ' ')
        h++;
    if (*h == '\0') {
        shoal_err_set(err, SHOAL_ESESSION_MISSING, "empty bearer token");
        return NULL;
    }
    return h;
}

/* 1 when ct is application/json, with or without parameters. */
static int is_json_type(const char *ct)
{
    if (strncasecmp(ct, "application/json", 16) != 0)
        return 0;
    ct += 16;
    while (*ct == ' ' || *ct == '\t')
        ct++;
    return *ct == '\0' || *ct == ';';
}

/* The first string in v that holds a NUL byte (valid JSON, "\u0000", but
 * C strings would end there): the member it is under, or NULL. */
static const char *nul_member(const json_t *v, const char *member)
{
    if (json_is_string(v))
        return strlen(json_string_value(v)) != json_string_length(v) ? member : NULL;
    if (json_is_array(v)) {
        size_t i;
        const json_t *x;
        json_array_foreach(v, i, x) {
            const char *m = nul_member(x, member);
            if (m)
                return m;
        }
    } else if (json_is_object(v)) {
        const char *k;
        const json_t *x;
        json_object_foreach((json_t *)v, k, x) {
            const char *m = nul_member(x, k);
            if (m)
                return m;
        }
    }
    return NULL;
}

/* Parse a JSON request body; it must be an object.  New reference in
 * *out, or -1 with err set: 415 for another content type, 400 otherwise. */
int shoal_req_parse_json(struct shoal_req *r, json_t **out,
                         struct shoal_err *err)
{
    const char *ct = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND,
                                                 MHD_HTTP_HEADER_CONTENT_TYPE);
    *out = NULL;
    if (ct != NULL && !is_json_type(ct))
        return shoal_err_set(err, SHOAL_EMEDIA,
                             "content type '%.64s' is not application/json", ct);
    if (r->body_len == 0)
        return shoal_err_set(err, SHOAL_EJSON, "missing JSON body");
    json_error_t je;
    json_t *v = json_loadb(r->body, r->body_len,
                           JSON_REJECT_DUPLICATES | JSON_DECODE_ANY |
                           JSON_ALLOW_NUL, &je);
    if (v == NULL) {
        if (json_error_code(&je) == json_error_numeric_overflow)
            return shoal_err_set(err, SHOAL_EINVAL,
                                 "number too large at line %d column %d",
                                 je.line, je.column);
        return shoal_err_set(err, SHOAL_EJSON,
                             "malformed JSON at line %d column %d: %s",
                             je.line, je.column, je.text);
    }
    if (!json_is_object(v)) {
        json_decref(v);
        return shoal_err_set(err, SHOAL_EINVAL, "body must be a JSON object");
    }
    const char *m = nul_member(v, NULL);
    if (m != NULL) {
        shoal_err_set(err, SHOAL_EINVAL, "'%.64s' must not contain a NUL character", m);
        json_decref(v);
        return -1;
    }
    *out = v;
    return 0;
}

/* The route flags' checks: Bearer session or admin token, JSON body. */
static int check_flags(struct shoal_req *r, struct shoal_err *err)
{
    unsigned flags = r->route->flags;
    if (flags & (SHOAL_ROUTE_AUTH | SHOAL_ROUTE_ADMIN)) {
        const char *bearer = bearer_of(r, err);
        if (bearer == NULL)
            return -1;
        if ((flags & SHOAL_ROUTE_ADMIN_OK) && check_admin(r, bearer, NULL) == 0)
            r->admin = 1;
        int rc = r->admin ? 0
                 : (flags & SHOAL_ROUTE_ADMIN) ? check_admin(r, bearer, err)
                 : r->srv->o.auth ? r->srv->o.auth(r, bearer, err)
                 : shoal_err_set(err, SHOAL_EINTERNAL, "no authenticator");
        if (rc != 0)
            return -1;
    }
    if ((flags & SHOAL_ROUTE_JSON) && shoal_req_parse_json(r, &r->json, err) != 0)
        return -1;
    return 0;
}

/* The handler asked for the connection (shoal_req_tunnel): fn runs with
 * the socket, then MHD_NO makes libmicrohttpd close the connection
 * without writing anything more on it. */
static enum MHD_Result run_tunnel(struct shoal_req *r)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(r->conn, MHD_CONNECTION_INFO_CONNECTION_FD);
    r->answered = 1;
    if (r->srv->o.observe)
        r->srv->o.observe(r->srv->o.app, r->route, r->method, 200,
                          shoal_mono() - r->t0);
    if (ci != NULL)
        r->tunnel(r->tunnel_cls, ci->connect_fd);
    if (r->tunnel_free)
        r->tunnel_free(r->tunnel_cls);
    r->tunnel_free = NULL;
    r->tunnel = NULL;
    if (ci != NULL)
        shutdown(ci->connect_fd, SHUT_RDWR);
    return MHD_NO;
}

static enum MHD_Result dispatch(struct shoal_req *r, const char *url)
{
    struct shoal_err err;
    char allow[128];
    int known;
    json_t *reply = NULL;

    shoal_err_clear(&err);
    if (r->stream_failed)
        return send_error(r, &r->stream_err);
    if (r->route == NULL)
        r->route = route_find(r, url, allow, sizeof allow, &known);
    else
        known = 1;
    if (r->route == NULL) {
        if (known) {
            shoal_req_add_header(r, MHD_HTTP_HEADER_ALLOW, allow);
            shoal_err_set(&err, SHOAL_EMETHOD, "method '%s' not allowed on '%.200s'",
                          r->method, url);
        } else {
            shoal_err_set(&err, SHOAL_ENOTFOUND, "no resource at '%.200s'", url);
        }
        return send_error(r, &err);
    }
    if (r->too_big) {
        r->close = 1;
        shoal_err_set(&err, SHOAL_ETOOLARGE, "body larger than %zu bytes",
                      r->limit);
        return send_error(r, &err);
    }
    unsigned flags = r->route->flags;
    if (!(flags & SHOAL_ROUTE_STREAM) && check_flags(r, &err) != 0)
        return send_error(r, &err);

    if (r->route->fn(r, &reply, &err) != 0) {
        json_decref(reply);
        if (err.code == SHOAL_OK)
            shoal_err_set(&err, SHOAL_EINTERNAL, "handler failed without a reason");
        return send_error(r, &err);
    }
    if (r->tunnel != NULL) {
        json_decref(reply);
        return run_tunnel(r);
    }
    if (r->resp != NULL) {
        json_decref(reply);
        struct MHD_Response *resp = r->resp;
        r->resp = NULL;
        return queue(r, r->status, resp);
    }
    if (r->raw != NULL) {
        json_decref(reply);
        char *raw = r->raw;
        r->raw = NULL;
        return send_reply(r, r->status, r->raw_type, raw, r->raw_len);
    }
    char *text = reply ? shoal_json_dump(reply) : strdup("{}");
    json_decref(reply);
    if (text == NULL) {
        shoal_err_set(&err, SHOAL_EINTERNAL, "out of memory");
        return send_error(r, &err);
    }
    return send_reply(r, r->status, "application/json", text, strlen(text));
}

/* --- libmicrohttpd callbacks ------------------------------------------- */

static struct conn *conn_of(struct MHD_Connection *c)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(c, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    return ci ? (struct conn *)ci->socket_context : NULL;
}

static void set_deadline(struct shoal_server *srv, struct MHD_Connection *c,
                         double deadline)
{
    struct conn *k = conn_of(c);
    if (k == NULL)
        return;
    pthread_mutex_lock(&srv->lock);
    if (!k->refused)
        k->deadline = deadline;
    pthread_mutex_unlock(&srv->lock);
}

static void *on_uri(void *cls, const char *uri, struct MHD_Connection *c)
{
    struct shoal_server *srv = cls;
    (void)uri;
    struct shoal_req *r = calloc(1, sizeof *r);
    if (r == NULL)
        return NULL;
    r->srv = srv;
    r->conn = c;
    r->status = 200;
    r->t0 = shoal_mono();
    unsigned char rnd[SHOAL_REQ_ID_LEN / 2];
    randombytes_buf(rnd, sizeof rnd);
    shoal_hex_encode(rnd, sizeof rnd, r->id);
    if (srv->o.request_timeout)
        set_deadline(srv, c, r->t0 + srv->o.request_timeout);
    return r;
}

static enum MHD_Result on_access(void *cls, struct MHD_Connection *c,
                                 const char *url, const char *method,
                                 const char *version, const char *upload,
                                 size_t *upload_size, void **con_cls)
{
    struct shoal_server *srv = cls;
    struct shoal_req *r = *con_cls;
    (void)version;

    struct conn *k = conn_of(c);
    if (k != NULL && k->refused)
        return MHD_NO;                     /* answered 503 already: close */
    if (r == NULL) {                       /* on_uri could not allocate */
        r = on_uri(srv, url, c);
        if (r == NULL)
            return MHD_NO;
        *con_cls = r;
    }
    if (r->answered) {
        *upload_size = 0;                  /* drop what still arrives */
        return MHD_YES;
    }
    if (r->called++ == 0) {
        r->method = method;
        client_ip(r);
        char allow[128];
        int known;
        r->route = route_find(r, url, allow, sizeof allow, &known);
        r->limit = r->route && r->route->max_body ? r->route->max_body
                                                  : srv->o.body_limit;
        if (r->route && (r->route->flags & SHOAL_ROUTE_STREAM)) {
            /* Check who is sending before a byte of the body is taken. */
            struct shoal_err err;
            shoal_err_clear(&err);
            if (check_flags(r, &err) != 0 ||
                r->route->body(r, NULL, 0, &err) != 0) {
                r->close = 1;
                return send_error(r, &err);
            }
            return MHD_YES;
        }
        const char *cl = MHD_lookup_connection_value(
            c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
        if (cl != NULL && strtoull(cl, NULL, 10) > r->limit) {
            /* Refuse before reading a byte of it; the connection closes. */
            struct shoal_err err;
            r->too_big = 1;
            r->close = 1;
            shoal_err_set(&err, SHOAL_ETOOLARGE, "body larger than %zu bytes",
                          r->limit);
            return send_error(r, &err);
        }
        return MHD_YES;
    }
    if (*upload_size != 0 && r->route && (r->route->flags & SHOAL_ROUTE_STREAM)) {
        size_t n = *upload_size;
        *upload_size = 0;
        if (!r->stream_failed &&
            r->route->body(r, upload, n, &r->stream_err) != 0) {
            r->stream_failed = 1;          /* the rest is discarded */
            r->close = 1;
        }
        return MHD_YES;
    }
    if (*upload_size != 0) {
        size_t n = *upload_size;
        *upload_size = 0;
        if (r->too_big || r->body_len + n > r->limit) {
            r->too_big = 1;                /* discard the rest */
            return MHD_YES;
        }
        if (r->body_len + n + 1 > r->body_cap) {
            size_t cap = r->body_cap ? r->body_cap : 1024;
            while (cap < r->body_len + n + 1)
                cap *= 2;
            char *nb = realloc(r->body, cap);
            if (nb == NULL)
                return MHD_NO;
            r->body = nb;
            r->body_cap = cap;
        }
        memcpy(r->body + r->body_len, upload, n);
        r->body_len += n;
        r->body[r->body_len] = '\0';
        return MHD_YES;
    }
    if (srv->o.request_timeout)
        set_deadline(srv, c, 0);           /* the request has arrived */
    return dispatch(r, url);
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    struct shoal_server *srv = cls;
    (void)toe;
    req_free(*con_cls);
    *con_cls = NULL;
    /* On a kept-alive connection the next request must arrive whole within
     * request_timeout too, even if its bytes trickle. */
    if (srv->o.request_timeout)
        set_deadline(srv, c, shoal_mono() + srv->o.request_timeout);
}

/* Answer a connection over the limit at once and close it: a clear 503
 * rather than a client left waiting in the listen backlog. */
static void refuse(struct conn *k)
{
    static const char body[] =
        "{\"error\":{\"code\":\"unavailable\","
        "\"message\":\"too many connections, retry later\"}}";
    char msg[256];
    int n = snprintf(msg, sizeof msg,
                     "HTTP/1.1 503 Service Unavailable\r\n"
                     "Content-Type: application/json\r\n"
                     "Retry-After: 1\r\nConnection: close\r\n"
                     "Content-Length: %zu\r\n\r\n%s", sizeof body - 1, body);
    k->refused = 1;
    /* Nothing has been read or written on this socket yet, and a few
     * hundred bytes fit its empty send buffer. */
    if (send(k->fd, msg, (size_t)n, MSG_DONTWAIT | MSG_NOSIGNAL) < 0)
        shoal_log(SHOAL_LOG_DEBUG, NULL, "refused connection gone already");
    shutdown(k->fd, SHUT_WR);
    /* The watchdog closes it for good a moment later; a request that
     * arrives meanwhile is dropped by on_access. */
    k->deadline = shoal_mono() + 1.0;
}

static void on_connection(void *cls, struct MHD_Connection *c, void **sctx,
                          enum MHD_ConnectionNotificationCode toe)
{
    struct shoal_server *srv = cls;

    if (toe == MHD_CONNECTION_NOTIFY_STARTED) {
        struct conn *k = calloc(1, sizeof *k);
        const union MHD_ConnectionInfo *ci =
            MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
        if (k == NULL) {
            if (ci)
                shutdown(ci->connect_fd, SHUT_RDWR);
            return;
        }
        k->fd = ci ? ci->connect_fd : -1;
        if (atomic_fetch_add(&srv->nconn, 1) >= srv->o.max_connections) {
            atomic_fetch_sub(&srv->nconn, 1);
            refuse(k);
        } else {
            /* Until a request line arrives, the client has request_timeout
             * to start one (idle_timeout also applies). */
            k->deadline = srv->o.request_timeout
                              ? shoal_mono() + srv->o.request_timeout : 0;
        }
        pthread_mutex_lock(&srv->lock);
        k->next = srv->conns.next;
        k->prev = &srv->conns;
        srv->conns.next->prev = k;
        srv->conns.next = k;
        pthread_mutex_unlock(&srv->lock);
        *sctx = k;
    } else if (toe == MHD_CONNECTION_NOTIFY_CLOSED) {
        struct conn *k = *sctx;
        if (k == NULL)
            return;
        if (!k->refused)
            atomic_fetch_sub(&srv->nconn, 1);
        pthread_mutex_lock(&srv->lock);
        k->prev->next = k->next;
        k->next->prev = k->prev;
        pthread_mutex_unlock(&srv->lock);
        free(k);
        *sctx = NULL;
    }
}

static void *watchdog_main(void *arg)
{
    struct shoal_server *srv = arg;
    while (!atomic_load(&srv->stopping)) {
        usleep(250 * 1000);
        double now = shoal_mono();
        pthread_mutex_lock(&srv->lock);
        for (struct conn *k = srv->conns.next; k != &srv->conns; k = k->next) {
            if (k->deadline != 0 && now > k->deadline && k->fd >= 0) {
                /* libmicrohttpd sees end-of-stream and closes it. */
                shutdown(k->fd, SHUT_RDWR);
                k->deadline = 0;
            }
        }
        pthread_mutex_unlock(&srv->lock);
    }
    return NULL;
}

/* Decode %HH in paths and query arguments, except %00: a NUL would cut
 * the string short and make "/v1/users/%00" look like "/v1/users/". */
static size_t on_unescape(void *cls, struct MHD_Connection *c, char *s)
{
    char *w = s;
    (void)cls;
    (void)c;
    for (const char *p = s; *p; p++) {
        int hi, lo;
        if (*p == '%' && (hi = shoal_hexval(p[1])) >= 0 &&
            (lo = shoal_hexval(p[2])) >= 0 &&
            (hi | lo) != 0) {
            *w++ = (char)(hi * 16 + lo);
            p += 2;
        } else {
            *w++ = *p;
        }
    }
    *w = '\0';
    return (size_t)(w - s);
}

static void on_mhd_log(void *cls, const char *fmt, va_list ap)
{
    char msg[512];
    (void)cls;
    vsnprintf(msg, sizeof msg, fmt, ap);
    size_t n = strlen(msg);
    while (n > 0 && (msg[n - 1] == '\n' || msg[n - 1] == '\r'))
        msg[--n] = '\0';
    shoal_log(SHOAL_LOG_WARN, NULL, "http: %s", msg);
}

/* --- server ------------------------------------------------------------- */

static int parse_listen(const char *listen, struct sockaddr_storage *ss,
                        struct shoal_err *err)
{
    char host[SHOAL_IP_MAX + 2];
    const char *colon = strrchr(listen, ':');
    if (colon == NULL || (size_t)(colon - listen) >= sizeof host)
        return shoal_err_set(err, SHOAL_EINVAL,
                             "listen address '%s' is not HOST:PORT", listen);
    memcpy(host, listen, (size_t)(colon - listen));
    host[colon - listen] = '\0';
    char *end;
    long port = strtol(colon + 1, &end, 10);
    if (*end != '\0' || colon[1] == '\0' || port < 0 || port > 65535)
        return shoal_err_set(err, SHOAL_EINVAL, "bad port in '%s'", listen);
    char *h = host;
    size_t hl = strlen(h);
    if (hl >= 2 && h[0] == '[' && h[hl - 1] == ']') {
        h[hl - 1] = '\0';
        h++;
    }
    memset(ss, 0, sizeof *ss);
    struct sockaddr_in *in = (struct sockaddr_in *)ss;
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;
    if (inet_pton(AF_INET, h, &in->sin_addr) == 1) {
        in->sin_family = AF_INET;
        in->sin_port = htons((uint16_t)port);
    } else if (inet_pton(AF_INET6, h, &in6->sin6_addr) == 1) {
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons((uint16_t)port);
    } else {
        return shoal_err_set(err, SHOAL_EINVAL,
                             "listen host '%s' is not an IP address", h);
    }
    return 0;
}

static int parse_proxies(struct shoal_server *srv, const char *list,
                         struct shoal_err *err)
{
    if (list == NULL || *list == '\0')
        return 0;
    char *copy = strdup(list), *save = NULL;
    if (copy == NULL)
        return shoal_err_set(err, SHOAL_EINTERNAL, "out of memory");
    for (char *t = strtok_r(copy, ", ", &save); t; t = strtok_r(NULL, ", ", &save)) {
        if (srv->nproxies == MAX_PROXIES ||
            shoal_ip_canonical(t, srv->proxies[srv->nproxies]) != 0) {
            shoal_err_set(err, SHOAL_EINVAL,
                          "trusted proxy '%s' is not an IP address (at most %d)",
                          t, MAX_PROXIES);
            free(copy);
            return -1;
        }
        srv->nproxies++;
    }
    free(copy);
    return 0;
}

struct shoal_server *shoal_server_start(const struct shoal_server_opts *opts,
                                        struct shoal_err *err)
{
    struct sockaddr_storage ss;
    struct shoal_server *srv = calloc(1, sizeof *srv);
    if (srv == NULL) {
        shoal_err_set(err, SHOAL_EINTERNAL, "out of memory");
        return NULL;
    }
    srv->o = *opts;
    if (srv->o.threads == 0)
        srv->o.threads = 2;
    if (srv->o.max_connections == 0)
        srv->o.max_connections = 1000;
    if (srv->o.body_limit == 0)
        srv->o.body_limit = 1 << 20;
    srv->conns.next = srv->conns.prev = &srv->conns;
    pthread_mutex_init(&srv->lock, NULL);
    if (parse_listen(opts->listen, &ss, err) != 0 ||
        parse_proxies(srv, opts->trusted_proxies, err) != 0)
        goto fail;

    /* Above max_connections we answer 503 (on_connection), so
     * libmicrohttpd's own limit sits higher.  At its limit the pooled mode
     * stops accepting (clients wait in the backlog until refused ones are
     * gone) while the per-connection mode accepts and closes without an
     * answer: that mode gets more headroom. */
    unsigned headroom = srv->o.thread_per_connection ? 4 : 2;
    unsigned hard_limit = srv->o.max_connections > UINT_MAX / 4 - 64
                              ? UINT_MAX
                              : headroom * srv->o.max_connections + 64;
    unsigned flags = MHD_USE_EPOLL_INTERNAL_THREAD | MHD_USE_TURBO |
                     MHD_USE_ERROR_LOG;
    unsigned pool = srv->o.threads;
    if (srv->o.thread_per_connection) {
        /* libmicrohttpd sends file responses in 2 MiB sendfile calls in
         * this mode, and in 128 KiB ones between event-loop rounds in the
         * pooled mode: file serving is about 1.5 times faster this way. */
        /* poll, not select: descriptors past FD_SETSIZE are normal here */
        flags = MHD_USE_POLL_INTERNAL_THREAD | MHD_USE_THREAD_PER_CONNECTION |
                MHD_USE_ERROR_LOG;
        pool = 0;
    }
    if (ss.ss_family == AF_INET6)
        flags |= MHD_USE_IPv6;
    srv->d = MHD_start_daemon(
        flags, 0, NULL, NULL, on_access, srv,
        MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, srv,
        MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&ss,
        /* No pool in the per-connection mode: the slot repeats the
         * connection limit instead (both take an unsigned int). */
        pool ? MHD_OPTION_THREAD_POOL_SIZE : MHD_OPTION_CONNECTION_LIMIT,
        pool ? pool : hard_limit,
        MHD_OPTION_THREAD_STACK_SIZE, (size_t)(512 * 1024),
        MHD_OPTION_CONNECTION_LIMIT, hard_limit,
        MHD_OPTION_CONNECTION_TIMEOUT, srv->o.idle_timeout,
        MHD_OPTION_URI_LOG_CALLBACK, on_uri, srv,
        MHD_OPTION_NOTIFY_COMPLETED, on_completed, srv,
        MHD_OPTION_NOTIFY_CONNECTION, on_connection, srv,
        MHD_OPTION_LISTEN_BACKLOG_SIZE, 1024,
        /* Request bodies arrive, and callback responses leave, in chunks
         * about as large as the connection's memory: 128 KiB instead of
         * libmicrohttpd's 32 KiB is about 4 times fewer poll, recv, write
         * and hash calls for a piece upload, and fewer reads for a Range
         * across pieces.  A connection that has served a request keeps
         * all of it. */
        MHD_OPTION_CONNECTION_MEMORY_LIMIT,
        srv->o.connection_memory ? srv->o.connection_memory
                                 : (size_t)(128 * 1024),
        MHD_OPTION_UNESCAPE_CALLBACK, on_unescape, srv,
        MHD_OPTION_END);
    if (srv->d == NULL) {
        shoal_err_set(err, SHOAL_EUNAVAILABLE,
                      "cannot listen on '%s' (address in use?)", opts->listen);
        goto fail;
    }
    const union MHD_DaemonInfo *di =
        MHD_get_daemon_info(srv->d, MHD_DAEMON_INFO_BIND_PORT);
    srv->port = di ? di->port : 0;
    if (pthread_create(&srv->watchdog, NULL, watchdog_main, srv) != 0) {
        shoal_err_set(err, SHOAL_EINTERNAL, "cannot start the watchdog");
        goto fail;
    }
    srv->watchdog_started = 1;
    return srv;
fail:
    shoal_server_stop(srv);
    return NULL;
}

unsigned shoal_server_port(const struct shoal_server *srv)
{
    return srv->port;
}

unsigned shoal_server_connections(const struct shoal_server *srv)
{
    return atomic_load(&((struct shoal_server *)srv)->nconn);
}

void shoal_server_stop(struct shoal_server *srv)
{
    if (srv == NULL)
        return;
    atomic_store(&srv->stopping, 1);
    if (srv->watchdog_started)
        pthread_join(srv->watchdog, NULL);
    if (srv->d)
        MHD_stop_daemon(srv->d);
    pthread_mutex_destroy(&srv->lock);
    free(srv);
}

/* --- request accessors ------------------------------------------------- */

const char *shoal_req_param(const struct shoal_req *req, const char *name)
{
    size_t len = strlen(name);
    for (int i = 0; i < req->nparams; i++)
        if (req->pnlen[i] == len && memcmp(req->pnames[i], name, len) == 0)
            return req->pvalues[i];
    return NULL;
}

const char *shoal_req_query(const struct shoal_req *req, const char *name)
{
    return MHD_lookup_connection_value(req->conn, MHD_GET_ARGUMENT_KIND, name);
}

const char *shoal_req_header(const struct shoal_req *req, const char *name)
{
    return MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, name);
}

json_t *shoal_req_body(const struct shoal_req *req)
{
    return req->json;
}

const char *shoal_req_raw_body(const struct shoal_req *req, size_t *len)
{
    if (len)
        *len = req->body_len;
    return req->body ? req->body : "";
}

const char *shoal_req_ip(const struct shoal_req *req) { return req->ip; }
const char *shoal_req_id(const struct shoal_req *req) { return req->id; }
const char *shoal_req_method(const struct shoal_req *req) { return req->method; }

const struct shoal_route *shoal_req_route(const struct shoal_req *req)
{
    return req->route;
}

void *shoal_req_app(const struct shoal_req *req)
{
    return req->srv->o.app;
}

void shoal_req_set_user(struct shoal_req *req, void *user,
                        void (*free_fn)(void *))
{
    if (req->user_free)
        req->user_free(req->user);
    req->user = user;
    req->user_free = free_fn;
}

int shoal_req_is_admin(const struct shoal_req *req)
{
    return req->admin || (req->route && (req->route->flags & SHOAL_ROUTE_ADMIN));
}

void *shoal_req_user(const struct shoal_req *req)
{
    return req->user;
}

void shoal_req_set_status(struct shoal_req *req, int status)
{
    req->status = status;
}

void shoal_req_add_header(struct shoal_req *req, const char *name,
                          const char *value)
{
    struct hdr *h = calloc(1, sizeof *h);
    if (h == NULL)
        return;
    h->name = strdup(name);
    h->value = strdup(value);
    if (h->name == NULL || h->value == NULL) {
        free(h->name);
        free(h->value);
        free(h);
        return;
    }
    h->next = req->headers;
    req->headers = h;
}

int shoal_req_set_body(struct shoal_req *req, int status,
                       const char *content_type, const char *body, size_t len)
{
    char *copy = malloc(len ? len : 1);
    char *type = strdup(content_type);
    if (copy == NULL || type == NULL) {
        free(copy);
        free(type);
        return -1;
    }
    memcpy(copy, body, len);
    free(req->raw);
    free(req->raw_type);
    req->raw = copy;
    req->raw_type = type;
    req->raw_len = len;
    req->status = status;
    return 0;
}

void shoal_req_close(struct shoal_req *req)
{
    req->close = 1;
}

int shoal_req_tunnel(struct shoal_req *req, shoal_tunnel_fn fn, void *cls,
                     void (*free_cls)(void *), struct shoal_err *err)
{
    if (!req->srv->o.thread_per_connection || req->tunnel != NULL) {
        if (free_cls)
            free_cls(cls);
        return shoal_err_set(err, SHOAL_EINTERNAL, "this server cannot hand "
                             "over a connection");
    }
    req->tunnel = fn;
    req->tunnel_cls = cls;
    req->tunnel_free = free_cls;
    return 0;
}

static void set_resp(struct shoal_req *req, int status,
                     struct MHD_Response *resp, const char *content_type)
{
    if (req->resp)
        MHD_destroy_response(req->resp);
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, content_type);
    req->resp = resp;
    req->status = status;
}

int shoal_req_set_fd(struct shoal_req *req, int status,
                     const char *content_type, int fd, uint64_t offset,
                     uint64_t len)
{
    struct MHD_Response *resp =
        MHD_create_response_from_fd_at_offset64(len, fd, offset);
    if (resp == NULL) {
        close(fd);
        return -1;
    }
    set_resp(req, status, resp, content_type);
    return 0;
}

int shoal_req_set_iov(struct shoal_req *req, int status,
                      const char *content_type, const struct iovec *iov,
                      int n, void (*free_cls)(void *), void *cls)
{
    struct MHD_IoVec v[16];
    struct MHD_Response *resp = NULL;

    if (n >= 1 && n <= 16) {
        for (int i = 0; i < n; i++) {
            v[i].iov_base = iov[i].iov_base;
            v[i].iov_len = iov[i].iov_len;
        }
        resp = MHD_create_response_from_iovec(v, (unsigned)n, free_cls, cls);
    }
    if (resp == NULL) {
        if (free_cls)
            free_cls(cls);
        return -1;
    }
    set_resp(req, status, resp, content_type);
    return 0;
}

struct reader {
    shoal_read_fn read;
    void *cls;
    void (*free_cls)(void *);
};

static ssize_t reader_cb(void *cls, uint64_t pos, char *buf, size_t max)
{
    struct reader *rd = cls;
    long n = rd->read(rd->cls, pos, buf, max);
    return n > 0 ? (ssize_t)n : MHD_CONTENT_READER_END_WITH_ERROR;
}

static void reader_free(void *cls)
{
    struct reader *rd = cls;
    if (rd->free_cls)
        rd->free_cls(rd->cls);
    free(rd);
}

int shoal_req_set_reader(struct shoal_req *req, int status,
                         const char *content_type, uint64_t len,
                         shoal_read_fn read, void *cls,
                         void (*free_cls)(void *))
{
    struct reader *rd = malloc(sizeof *rd);
    if (rd == NULL) {
        if (free_cls)
            free_cls(cls);
        return -1;
    }
    rd->read = read;
    rd->cls = cls;
    rd->free_cls = free_cls;
    /* Blocks of 256 KiB: few calls, little memory per connection. */
    struct MHD_Response *resp = MHD_create_response_from_callback(
        len, 256 * 1024, reader_cb, rd, reader_free);
    if (resp == NULL) {
        reader_free(rd);
        return -1;
    }
    set_resp(req, status, resp, content_type);
    return 0;
}

void shoal_req_set_state(struct shoal_req *req, void *state,
                         void (*free_fn)(void *))
{
    if (req->state_free)
        req->state_free(req->state);
    req->state = state;
    req->state_free = free_fn;
}

void *shoal_req_state(const struct shoal_req *req)
{
    return req->state;
}

/* --- streamed bodies with trailers ------------------------------------- */

struct shoal_trailers {
    struct MHD_Response *resp;
};

struct stream {
    shoal_stream_fn read;
    void *cls;
    void (*free_cls)(void *);
    struct shoal_trailers tr;
};

/* libmicrohttpd writes a chunked response's footers from the response's
 * header list once the reader has returned end-of-stream (connection.c,
 * build_connection_chunked_response_footer), so footers added by the
 * reader just before it ends go out. */
static ssize_t stream_cb(void *cls, uint64_t pos, char *buf, size_t max)
{
    struct stream *st = cls;
    (void)pos;
    long n = st->read(st->cls, buf, max, &st->tr);
    if (n > 0)
        return (ssize_t)n;
    return n == 0 ? MHD_CONTENT_READER_END_OF_STREAM
                  : MHD_CONTENT_READER_END_WITH_ERROR;
}

static void stream_free(void *cls)
{
    struct stream *st = cls;
    if (st->free_cls)
        st->free_cls(st->cls);
    free(st);
}

int shoal_req_set_stream(struct shoal_req *req, int status,
                         const char *content_type, shoal_stream_fn read,
                         void *cls, void (*free_cls)(void *))
{
    struct stream *st = calloc(1, sizeof *st);
    if (st == NULL) {
        if (free_cls)
            free_cls(cls);
        return -1;
    }
    st->read = read;
    st->cls = cls;
    st->free_cls = free_cls;
    struct MHD_Response *resp = MHD_create_response_from_callback(
        MHD_SIZE_UNKNOWN, 64 * 1024, stream_cb, st, stream_free);
    if (resp == NULL) {
        stream_free(st);
        return -1;
    }
    st->tr.resp = resp;
    set_resp(req, status, resp, content_type);
    return 0;
}

int shoal_trailer_add(struct shoal_trailers *tr, const char *name,
                      const char *value)
{
    return MHD_add_response_footer(tr->resp, name, value) == MHD_YES ? 0 : -1;
}
