/*
 * http.h - the HTTP server wrapper over libmicrohttpd.
 *
 * One epoll daemon with a thread pool; a route table of
 * {method, pattern, flags, handler}; unknown paths get 404, known paths
 * with another method 405.  Route flags do the shared work before the
 * handler runs: authenticate the Bearer session (through the app's auth
 * callback), check the admin token, read and parse the JSON body with a
 * size limit.  Every handler has one shape:
 *
 *   int h_thing(struct shoal_req *req, json_t **reply, struct shoal_err *err);
 *
 * returning 0 with a new reference in *reply (or with a raw body set by
 * shoal_req_set_body), or -1 with err set.  One function writes every error
 * response: {"error":{"code":…,"message":…}}.
 *
 * Responses are queued on a later access-handler call than the first, as
 * libmicrohttpd's examples do, so keep-alive holds (see BASELINES.md).
 */
#ifndef SHOAL_HTTP_H
#define SHOAL_HTTP_H

#include <stddef.h>
#include <stdint.h>
#include <jansson.h>

#include "err.h"

#define SHOAL_IP_MAX 48                 /* fits any IPv6 text form */
#define SHOAL_REQ_ID_LEN 16             /* hex characters */
#define SHOAL_MAX_PARAMS 4

enum shoal_route_flags {
    SHOAL_ROUTE_AUTH = 1 << 0,   /* Bearer session, checked by opts.auth */
    SHOAL_ROUTE_JSON = 1 << 1,   /* body must be a JSON object */
    SHOAL_ROUTE_ADMIN = 1 << 2,  /* Bearer must be the admin token */
    SHOAL_ROUTE_STREAM = 1 << 3, /* body handed to route.body in parts */
    SHOAL_ROUTE_ADMIN_OK = 1 << 4, /* with AUTH: the admin token also passes
                                      (shoal_req_is_admin tells which) */
};

struct shoal_req;

typedef int (*shoal_handler)(struct shoal_req *req, json_t **reply,
                             struct shoal_err *err);

/*
 * Body callback of a SHOAL_ROUTE_STREAM route.  Called once with data NULL
 * and len 0 as soon as the headers are in and the route's auth flags have
 * passed (to check permissions and prepare), then once per part of the
 * body as it arrives.  Returning -1 with err set answers the error (the
 * rest of the body is discarded and the connection closed).  The route's
 * fn runs after the last part, as for any route.  body_limit does not
 * apply: the callback enforces its own.
 */
typedef int (*shoal_body_fn)(struct shoal_req *req, const char *data,
                             size_t len, struct shoal_err *err);

struct shoal_route {
    const char *method;      /* "GET", "POST", … ("GET" also answers HEAD) */
    const char *pattern;     /* "/v1/sessions/{sid}": {x} matches a segment */
    unsigned flags;
    shoal_handler fn;
    shoal_body_fn body;      /* SHOAL_ROUTE_STREAM routes only */
    size_t max_body;         /* this route's body limit (0: the server's) */
};

/*
 * The auth callback checks the Bearer token of a SHOAL_ROUTE_AUTH route
 * (never NULL nor empty) for the client address req->ip.  On success it
 * may store what it learned with shoal_req_set_user and returns 0; on
 * failure it returns -1 with err set (and may ask for the connection to be
 * closed with shoal_req_close).
 */
typedef int (*shoal_auth_fn)(struct shoal_req *req, const char *bearer,
                             struct shoal_err *err);

/* Called once per finished request, for metrics.  route is NULL for 404s.
 * secs is the time from the first byte of headers seen by the handler to
 * the response being queued. */
typedef void (*shoal_observe_fn)(void *app, const struct shoal_route *route,
                                 const char *method, int status, double secs);

struct shoal_server_opts {
    const char *listen;              /* "127.0.0.1:8080", "[::1]:8080" */
    unsigned threads;                /* thread pool size (0: 2) */
    int thread_per_connection;       /* one thread per connection instead
                                        of the epoll pool: sendfile moves
                                        2 MiB per call instead of 128 KiB */
    unsigned max_connections;        /* above it new connections get 503
                                        and are closed at once */
    unsigned idle_timeout;           /* seconds without any byte: closed */
    unsigned request_timeout;        /* seconds for a whole request to
                                        arrive (headers and body): closed */
    size_t body_limit;               /* bytes; above it 413 */
    size_t connection_memory;        /* buffer of each connection (0:
                                        128 KiB): request bodies arrive in
                                        chunks about this large */
    const char *trusted_proxies;     /* comma-separated addresses, or NULL */
    const char *admin_token;         /* NULL: admin routes answer 403 */
    const struct shoal_route *routes;
    size_t nroutes;
    shoal_auth_fn auth;
    shoal_observe_fn observe;
    void *app;                       /* handed back by shoal_req_app */
    const char *server_header;       /* e.g. "shoal-broker/0.1" */
    const char *extra_header_name;   /* a header added to every response */
    const char *extra_header_value;  /*   (e.g. X-Broker-Id), or NULL */
};

struct shoal_server;

/* Start serving.  New server, or NULL with err set (address in use, bad
 * listen address). */
struct shoal_server *shoal_server_start(const struct shoal_server_opts *opts,
                                        struct shoal_err *err);

/* The port actually bound (useful with port 0). */
unsigned shoal_server_port(const struct shoal_server *srv);

/* Number of open connections now (refused ones not counted). */
unsigned shoal_server_connections(const struct shoal_server *srv);

/* Stop accepting, finish, free.  Accepts NULL. */
void shoal_server_stop(struct shoal_server *srv);

/* Canonical text of an IP address given as text (IPv4-mapped IPv6 shown
 * as IPv4) into out.  -1 when s is not an IP address. */
int shoal_ip_canonical(const char *s, char out[SHOAL_IP_MAX]);

/* --- inside a handler --- */

/* The route's path parameter {name}, percent-decoded (borrowed), or NULL. */
const char *shoal_req_param(const struct shoal_req *req, const char *name);
/* A query-string argument (borrowed), or NULL. */
const char *shoal_req_query(const struct shoal_req *req, const char *name);
/* A request header (borrowed), or NULL. */
const char *shoal_req_header(const struct shoal_req *req, const char *name);
/* The parsed JSON body of a SHOAL_ROUTE_JSON route (borrowed), or NULL. */
json_t *shoal_req_body(const struct shoal_req *req);
/* Parse the body as a JSON object (for routes whose body is optional and
 * so do not use SHOAL_ROUTE_JSON).  New reference in *out, or -1 with err
 * set: 415 for a content type other than application/json, 400 for
 * malformed JSON or a value that is not an object. */
int shoal_req_parse_json(struct shoal_req *req, json_t **out,
                         struct shoal_err *err);
/* The raw body and its length (borrowed; NUL-terminated). */
const char *shoal_req_raw_body(const struct shoal_req *req, size_t *len);
/* The client's address: the TCP peer, or from X-Forwarded-For when the
 * peer is a trusted proxy.  Textual, IPv4-mapped IPv6 shown as IPv4. */
const char *shoal_req_ip(const struct shoal_req *req);
/* This request's id (also sent as X-Request-Id). */
const char *shoal_req_id(const struct shoal_req *req);
const char *shoal_req_method(const struct shoal_req *req);
const struct shoal_route *shoal_req_route(const struct shoal_req *req);
/* The app pointer of the server options. */
void *shoal_req_app(const struct shoal_req *req);

/* 1 when the request was let in by the admin token. */
int shoal_req_is_admin(const struct shoal_req *req);

/* What the auth callback learned (e.g. a session); borrowed until the
 * request ends; free_fn (may be NULL) releases it then. */
void shoal_req_set_user(struct shoal_req *req, void *user,
                        void (*free_fn)(void *));
void *shoal_req_user(const struct shoal_req *req);

/* The status of a successful JSON reply (default 200). */
void shoal_req_set_status(struct shoal_req *req, int status);
/* Add a response header (copied). */
void shoal_req_add_header(struct shoal_req *req, const char *name,
                          const char *value);
/* Reply with a raw body instead of JSON (copied). */
int shoal_req_set_body(struct shoal_req *req, int status,
                       const char *content_type, const char *body, size_t len);
/* Reply with len bytes of fd from offset, sent with sendfile.  The
 * response owns fd from now on (closed when sent, or on failure).  -1 on
 * ENOMEM. */
int shoal_req_set_fd(struct shoal_req *req, int status,
                     const char *content_type, int fd, uint64_t offset,
                     uint64_t len);

/* Reply with the n memory blocks iov (at most 16), sent with sendmsg as
 * they are: they must stay valid until free_cls(cls) (called when the
 * response is done, or now on failure).  -1 on ENOMEM. */
struct iovec;
int shoal_req_set_iov(struct shoal_req *req, int status,
                      const char *content_type, const struct iovec *iov,
                      int n, void (*free_cls)(void *), void *cls);

/* Reply with len bytes produced by read(cls, pos, buf, max), which
 * returns the number of bytes written to buf (at most max, at least 1), or
 * -1 to abort the connection.  free_cls (may be NULL) releases cls when
 * the response is done.  -1 on ENOMEM (free_cls is then called). */
typedef long (*shoal_read_fn)(void *cls, uint64_t pos, char *buf, size_t max);
int shoal_req_set_reader(struct shoal_req *req, int status,
                         const char *content_type, uint64_t len,
                         shoal_read_fn read, void *cls,
                         void (*free_cls)(void *));

/* State a SHOAL_ROUTE_STREAM route keeps between its calls (borrowed
 * until the request ends; free_fn, may be NULL, releases it then, also
 * when the request is abandoned half-way). */
void shoal_req_set_state(struct shoal_req *req, void *state,
                         void (*free_fn)(void *));
void *shoal_req_state(const struct shoal_req *req);

/* Close the connection after this response. */
void shoal_req_close(struct shoal_req *req);

/*
 * Take the connection over once the handler returns 0 (an HTTP CONNECT
 * tunnel: libmicrohttpd passes CONNECT through to the application but has
 * no way to hand over the socket with a 2xx answer, its upgrade support
 * being for 101 only).  fn(cls, fd) then runs on the connection's thread
 * with the client's socket: it writes the status line itself and owns the
 * bytes both ways until it returns; the connection is closed after it.
 * Only for a server in thread_per_connection mode (elsewhere it would
 * hold a pool thread): -1 with SHOAL_EINTERNAL otherwise, or on ENOMEM.
 * free_cls (may be NULL) releases cls in every case, once.  The request
 * counts as answered with status 200 for the observe callback.
 */
typedef void (*shoal_tunnel_fn)(void *cls, int fd);
int shoal_req_tunnel(struct shoal_req *req, shoal_tunnel_fn fn, void *cls,
                     void (*free_cls)(void *), struct shoal_err *err);

/*
 * A body of unknown length, sent chunked as it is produced, which may end
 * with trailer fields (HTTP/1.1; an HTTP/1.0 client gets the body up to
 * the connection's end and no trailers).  read(cls, buf, max, tr) writes
 * up to max bytes to buf and returns their number (at least 1); at the end
 * of the body it may add trailers with shoal_trailer_add(tr, …) and
 * returns 0; it returns -1 to cut the connection short of the last chunk,
 * so that the client knows the body is incomplete.  read runs on the
 * connection's thread and may block there (in the pooled mode, every
 * connection of that thread waits).  free_cls (may be NULL) releases cls
 * when the response is done or abandoned.  Name the trailers in a Trailer
 * header (shoal_req_add_header).  -1 on ENOMEM (free_cls is then called).
 */
struct shoal_trailers;
typedef long (*shoal_stream_fn)(void *cls, char *buf, size_t max,
                                struct shoal_trailers *tr);
int shoal_req_set_stream(struct shoal_req *req, int status,
                         const char *content_type, shoal_stream_fn read,
                         void *cls, void (*free_cls)(void *));
/* Add a trailer field (copied) from inside a shoal_stream_fn.  -1 when
 * name or value is not a valid field, or on ENOMEM. */
int shoal_trailer_add(struct shoal_trailers *tr, const char *name,
                      const char *value);

#endif
