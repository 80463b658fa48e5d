/*
 * serve.c - what 'shoal serve' answers: the versions it holds (a table
 * in memory, loaded from the data folder), the piece endpoints of the
 * file broker served out of its own store (api/pieceserve.c), /have,
 * /metrics and /healthz, and the session check of every piece request.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log.h"
#include "pex.h"
#include "pieceserve.h"
#include "proxy.h"
#include "serve.h"
#include "util.h"
#include "webseed.h"

#define NSTATUS 600

/* --- the table ------------------------------------------------------ */

static void served_free(struct pr_served *s)
{
    pr_version_free(s->v);
    free(s);
}

/* The entry of (file_id, version), the lock held; NULL when none. */
static struct pr_served *find(struct pr_srv *srv, const char *file_id,
                              uint64_t version)
{
    for (size_t i = 0; i < srv->n; i++)
        if (srv->tab[i]->v->version == version &&
            strcmp(srv->tab[i]->v->file_id, file_id) == 0)
            return srv->tab[i];
    return NULL;
}

int pr_serve_has(struct pr_srv *srv, const char *file_id, uint64_t version)
{
    pthread_mutex_lock(&srv->lock);
    int has = find(srv, file_id, version) != NULL;
    pthread_mutex_unlock(&srv->lock);
    return has;
}

void pr_serve_add(struct pr_srv *srv, struct pr_version *v)
{
    struct pr_served *s;

    pthread_mutex_lock(&srv->lock);
    if ((s = find(srv, v->file_id, v->version))) {
        if (v->expires > s->v->expires) {
            memcpy(s->v->xsign, v->xsign, sizeof(v->xsign));
            s->v->expires = v->expires;
        }
        pthread_mutex_unlock(&srv->lock);
        pr_version_free(v);
        return;
    }
    if (srv->n == srv->cap) {
        size_t cap = srv->cap ? 2 * srv->cap : 16;
        struct pr_served **t = realloc(srv->tab, cap * sizeof(*t));
        if (!t)
            goto nomem;
        srv->tab = t;
        srv->cap = cap;
    }
    if (!(s = calloc(1, sizeof(*s))))
        goto nomem;
    s->v = v;
    s->live = 1;
    atomic_store(&s->used_ms, pr_serve_now_ms());     /* LRU (evict.c) */
    s->admitted = !srv->max_storage ||
                  srv->admitted_bytes + v->size <= srv->max_storage;
    if (s->admitted)
        srv->admitted_bytes += v->size;
    srv->tab[srv->n++] = s;
    pthread_mutex_unlock(&srv->lock);
    if (!s->admitted)                /* evict.c makes room, or warns */
        shoal_log(SHOAL_LOG_DEBUG, NULL, "version %" PRIu64 " of file '%s' "
                  "waits for room in --max-storage", v->version, v->file_id);
    else
        shoal_log(SHOAL_LOG_INFO, NULL, "serving version %" PRIu64 " of "
                  "file '%s' (%" PRIu64 " bytes)", v->version, v->file_id,
                  v->size);
    return;
nomem:
    pthread_mutex_unlock(&srv->lock);
    shoal_log(SHOAL_LOG_ERROR, NULL, "out of memory: not serving file '%s'",
              v->file_id);
    pr_version_free(v);
}

struct pr_served *pr_serve_get(struct pr_srv *srv, const char *file_id,
                               uint64_t version)
{
    struct pr_served *best = NULL;

    pthread_mutex_lock(&srv->lock);
    for (size_t i = 0; i < srv->n; i++) {
        struct pr_served *s = srv->tab[i];
        if (!s->admitted || s->gone || strcmp(s->v->file_id, file_id) != 0)
            continue;
        if (version ? s->v->version == version
                    : !best || s->v->version > best->v->version)
            best = s;
    }
    if (best)
        best->refs++;
    pthread_mutex_unlock(&srv->lock);
    return best;
}

void pr_serve_put(struct pr_srv *srv, struct pr_served *s)
{
    if (!s)
        return;
    pthread_mutex_lock(&srv->lock);
    int gone = --s->refs == 0 && !s->live;
    pthread_mutex_unlock(&srv->lock);
    if (gone)
        served_free(s);
}

void pr_serve_clear(struct pr_srv *srv)
{
    pthread_mutex_lock(&srv->lock);
    for (size_t i = 0; i < srv->n; i++) {
        struct pr_served *s = srv->tab[i];
        s->live = 0;
        if (s->refs == 0)
            served_free(s);
    }
    free(srv->tab);
    srv->tab = NULL;
    srv->n = srv->cap = 0;
    pthread_mutex_unlock(&srv->lock);
}

int pr_serve_seeded_out(const struct pr_srv *srv, const struct pr_served *s)
{
    return srv->max_ratio > 0 && s->v->size > 0 &&
           (double)atomic_load(&((struct pr_served *)s)->uploaded) >=
               srv->max_ratio * (double)s->v->size;
}

/* --- requests ------------------------------------------------------- */

static struct pr_srv *srv_of(const struct shoal_req *req)
{
    return shoal_req_app(req);
}

/* {id} of the request as a lowercase UUID into id. */
static int file_arg(const struct shoal_req *req, char id[37],
                    struct shoal_err *err)
{
    const char *s = shoal_req_param(req, "id");
    if (!s)                               /* GET /v1/peers?file=ID */
        s = shoal_req_query(req, "file");
    if (!s || shoal_uuid_normalize(s, id, "id", NULL) < 0)
        return shoal_err_set(err, SHOAL_EINVAL, "file id '%.64s' is not a "
                             "UUID", s ? s : "");
    return 0;
}

/* ?version=N of the request (0 when absent). */
static int version_arg(const struct shoal_req *req, uint64_t *version,
                       struct shoal_err *err)
{
    const char *v = shoal_req_query(req, "version");
    char *end;

    *version = 0;
    if (!v)
        return 0;
    errno = 0;
    unsigned long long n = strtoull(v, &end, 10);
    if (*v < '1' || *v > '9' || *end || errno || n > 2147483647)
        return shoal_err_set(err, SHOAL_EINVAL, "'version' must be a positive "
                             "integer, not '%.32s'", v);
    *version = n;
    return 0;
}

int pr_serve_admit(struct shoal_req *req, const char *bearer,
                   const char *file_id, struct shoal_err *err)
{
    struct pr_srv *srv = srv_of(req);
    char user[37];
    int close = 0;

    if (pr_gate_check(srv->gate, bearer, shoal_req_ip(req), file_id, user,
                      &close, err) < 0) {
        if (close)
            shoal_req_close(req);
        return -1;
    }
    char *who = strdup(user);
    if (who)
        shoal_req_set_user(req, who, free);
    return 0;
}

int pr_serve_auth(struct shoal_req *req, const char *bearer,
                  struct shoal_err *err)
{
    struct pr_srv *srv = srv_of(req);
    char id[37];

    if (pr_proxy_owns(req))                  /* injector proxy (proxy.c) */
        return pr_proxy_auth(req, bearer, err);
    if (file_arg(req, id, err) < 0)
        return -1;
    /* A file not held here: only the session is checked, and the handler
     * answers 404. */
    struct pr_served *s = pr_serve_get(srv, id, 0);
    /* /v1/peers (no {id}) tells about any file: always checked with it */
    int held = s != NULL || !shoal_req_param(req, "id");
    pr_serve_put(srv, s);
    return pr_serve_admit(req, bearer, held ? id : NULL, err);
}

/* The version the request names, held until pr_serve_put, or NULL with
 * err set. */
static struct pr_served *served_arg(struct shoal_req *req, int to_serve,
                                    struct shoal_err *err)
{
    struct pr_srv *srv = srv_of(req);
    struct pr_served *s;
    uint64_t version;
    char id[37];

    if (file_arg(req, id, err) < 0 || version_arg(req, &version, err) < 0)
        return NULL;
    if (!(s = pr_serve_get(srv, id, version))) {
        if (version)
            shoal_err_set(err, SHOAL_ENOTFOUND, "version %" PRIu64 " of file "
                          "'%s' is not held here", version, id);
        else
            shoal_err_set(err, SHOAL_ENOTFOUND, "file '%s' is not held here",
                          id);
        return NULL;
    }
    if (!to_serve)
        return s;
    pthread_mutex_lock(&srv->lock);
    int64_t expires = s->v->expires;
    pthread_mutex_unlock(&srv->lock);
    /* a web object past its time, until the announce round retires it */
    struct pr_web_item web = { .url = s->v->url, .file_id = s->v->file_id,
                               .version = s->v->version,
                               .injected_at = s->v->injected_at,
                               .inj_expires = s->v->inj_expires };
    enum pr_web_fate fate = s->v->url && s->v->kept
                            ? pr_web_fate_of(&web, (int64_t)time(NULL),
                                             srv->web_age) : PR_WEB_SEED;
    if (fate != PR_WEB_SEED) {
        shoal_err_set(err, SHOAL_EUNAVAILABLE, "version %" PRIu64 " of file "
                      "'%s' is no longer seeded here (%s)", s->v->version, id,
                      fate == PR_WEB_AGED ? "older than this peer's "
                      "--max-web-age" : "the injector's signature expired");
    } else if (expires <= (int64_t)time(NULL)) {
        shoal_err_set(err, SHOAL_EUNAVAILABLE, "the signature of version "
                      "%" PRIu64 " of file '%s' has expired: this peer is "
                      "renewing it", s->v->version, id);
    } else if (pr_serve_seeded_out(srv, s)) {
        shoal_err_set(err, SHOAL_EUNAVAILABLE, "version %" PRIu64 " of file "
                      "'%s' has reached this peer's seed ratio", s->v->version,
                      id);
    } else {
        return s;
    }
    pr_serve_put(srv, s);
    return NULL;
}

static void served_release(void *srv, void *s)
{
    pr_serve_put(srv, s);
}

static int answer(struct shoal_req *req, int one_piece, struct shoal_err *err)
{
    struct pr_srv *srv = srv_of(req);
    struct pr_served *s = served_arg(req, 1, err);
    char xsign[SHOAL_XSIGN_MAX];
    uint64_t egress = 0;

    if (!s)
        return -1;
    atomic_store(&s->used_ms, pr_serve_now_ms());     /* LRU (evict.c) */
    pthread_mutex_lock(&srv->lock);
    memcpy(xsign, s->v->xsign, sizeof(xsign));
    pthread_mutex_unlock(&srv->lock);
    struct shoal_pieceserve src = {
        .store = pr_held_store(srv->held),
        .file_id = s->v->file_id,
        .size = s->v->size,
        .piece_size = s->v->piece_size,
        .hashes = (const unsigned char (*)[SHOAL_HASH_BYTES])s->v->hashes,
        .root = s->v->root,
        .xsign = xsign,
        .release = served_release,   /* s lives until the answer is sent */
        .release_ctx = srv,
        .hold = s,
        .pace = srv->rate ? pr_rate_take : NULL,     /* --max-upload-rate */
        .pace_ctx = srv->rate,
        .maps = srv->maps,
    };
    /* s may be gone once the answer is set: count on it first. */
    pthread_mutex_lock(&srv->lock);
    s->refs++;
    pthread_mutex_unlock(&srv->lock);
    int rc = shoal_pieceserve_answer(req, &src, one_piece, &egress, err);
    if (rc == 0) {
        atomic_fetch_add(&s->uploaded, egress);
        atomic_fetch_add(&srv->uploaded, egress);
    }
    pr_serve_put(srv, s);
    return rc;
}

static int h_content(struct shoal_req *req, json_t **reply,
                     struct shoal_err *err)
{
    (void)reply;
    return answer(req, 0, err);
}

static int h_piece(struct shoal_req *req, json_t **reply,
                   struct shoal_err *err)
{
    (void)reply;
    return answer(req, 1, err);
}

static int h_have(struct shoal_req *req, json_t **reply,
                  struct shoal_err *err)
{
    struct pr_srv *srv = srv_of(req);
    struct pr_served *s = served_arg(req, 0, err);
    uint64_t held = 0;

    if (!s)
        return -1;
    char *b64 = shoal_pieceserve_have(
        pr_held_store(srv->held),
        (const unsigned char (*)[SHOAL_HASH_BYTES])s->v->hashes,
        s->v->npieces, &held);
    if (b64)
        *reply = json_pack("{s:s, s:I, s:I, s:s, s:I, s:b}", "file_id",
                           s->v->file_id, "version", (json_int_t)s->v->version,
                           "pieces", (json_int_t)s->v->npieces, "have", b64,
                           "held", (json_int_t)held,
                           "complete", held == s->v->npieces);
    free(b64);
    pr_serve_put(srv, s);
    if (!*reply)
        return shoal_err_set(err, SHOAL_EINTERNAL, "out of memory");
    return 0;
}

static int h_health(struct shoal_req *req, json_t **reply,
                    struct shoal_err *err)
{
    struct pr_srv *srv = srv_of(req);

    *reply = json_pack("{s:s, s:s, s:s}", "status", "ok", "user_id",
                       srv->id->user_id, "version", PR_VERSION);
    return *reply ? 0 : shoal_err_set(err, SHOAL_EINTERNAL, "out of memory");
}

/* --- /metrics ------------------------------------------------------- */

void pr_serve_observe(void *app, const struct shoal_route *route,
                      const char *method, int status, double secs)
{
    struct pr_srv *srv = app;
    size_t i = pr_serve_nroutes;
    (void)method;
    (void)secs;
    if (status < 0 || status >= NSTATUS || !srv->count)
        return;
    if (route >= pr_serve_routes && route < pr_serve_routes + pr_serve_nroutes)
        i = (size_t)(route - pr_serve_routes);
    atomic_fetch_add_explicit(&srv->count[i][status], 1, memory_order_relaxed);
}

static int h_metrics(struct shoal_req *req, json_t **reply,
                     struct shoal_err *err)
{
    struct pr_srv *srv = srv_of(req);
    struct pr_gate_stats g;
    size_t held = 0, served = 0, seeded_out = 0;
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    (void)reply;

    if (!f)
        return shoal_err_set(err, SHOAL_EINTERNAL, "out of memory");
    fprintf(f, "# HELP shoal_http_requests_total HTTP requests by route, method and status.\n"
               "# TYPE shoal_http_requests_total counter\n");
    for (size_t i = 0; i <= pr_serve_nroutes; i++) {
        const char *pat = i < pr_serve_nroutes ? pr_serve_routes[i].pattern
                                               : "unmatched";
        const char *meth = i < pr_serve_nroutes ? pr_serve_routes[i].method
                                                : "any";
        for (int s = 0; s < NSTATUS; s++) {
            unsigned long long n = atomic_load_explicit(&srv->count[i][s],
                                                        memory_order_relaxed);
            if (n)
                fprintf(f, "shoal_http_requests_total{route=\"%s\",method=\"%s\","
                           "status=\"%d\"} %llu\n", pat, meth, s, n);
        }
    }
    pthread_mutex_lock(&srv->lock);
    for (size_t i = 0; i < srv->n; i++) {
        held++;
        if (srv->tab[i]->admitted && !srv->tab[i]->gone) {
            served++;
            seeded_out += (size_t)pr_serve_seeded_out(srv, srv->tab[i]);
        }
    }
    uint64_t storage = srv->admitted_bytes;
    pthread_mutex_unlock(&srv->lock);
    pr_gate_stats(srv->gate, &g);
    fprintf(f, "# HELP shoal_peer_upload_bytes_total Content and piece bytes this peer served.\n"
               "# TYPE shoal_peer_upload_bytes_total counter\n"
               "shoal_peer_upload_bytes_total %llu\n"
               "# HELP shoal_peer_download_bytes_total Piece bytes this peer fetched from others into its store.\n"
               "# TYPE shoal_peer_download_bytes_total counter\n"
               "shoal_peer_download_bytes_total %llu\n",
            atomic_load(&srv->uploaded), atomic_load(&srv->downloaded));
    fprintf(f, "# HELP shoal_peer_versions File versions this peer holds, serves, and has seeded to its ratio.\n"
               "# TYPE shoal_peer_versions gauge\n"
               "shoal_peer_versions{state=\"held\"} %zu\n"
               "shoal_peer_versions{state=\"served\"} %zu\n"
               "shoal_peer_versions{state=\"seeded_out\"} %zu\n"
               "# HELP shoal_peer_storage_bytes Bytes of the versions served (each counted whole).\n"
               "# TYPE shoal_peer_storage_bytes gauge\n"
               "shoal_peer_storage_bytes %" PRIu64 "\n"
               "# HELP shoal_peer_max_storage_bytes The --max-storage limit (0: none).\n"
               "# TYPE shoal_peer_max_storage_bytes gauge\n"
               "shoal_peer_max_storage_bytes %" PRIu64 "\n",
            held, served, seeded_out, storage, srv->max_storage);
    fprintf(f, "# HELP shoal_peer_auth_total Session checks by how they were answered.\n"
               "# TYPE shoal_peer_auth_total counter\n"
               "shoal_peer_auth_total{via=\"cache\"} %llu\n"
               "shoal_peer_auth_total{via=\"bubble\"} %llu\n"
               "shoal_peer_auth_total{via=\"broker\"} %llu\n"
               "# HELP shoal_peer_auth_refused_total Requests refused by the session check.\n"
               "# TYPE shoal_peer_auth_refused_total counter\n"
               "shoal_peer_auth_refused_total %llu\n"
               "# HELP shoal_peer_trust_bubble_sessions Sessions of the users who trust this peer.\n"
               "# TYPE shoal_peer_trust_bubble_sessions gauge\n"
               "shoal_peer_trust_bubble_sessions %llu\n",
            g.cached, g.bubble, g.asked, g.refused, g.bubble_size);
    fprintf(f, "# HELP shoal_peer_evicted_versions_total Versions kept by get that --max-storage evicted.\n"
               "# TYPE shoal_peer_evicted_versions_total counter\n"
               "shoal_peer_evicted_versions_total %llu\n"
               "# HELP shoal_peer_evicted_bytes_total Bytes of the versions evicted (each counted whole).\n"
               "# TYPE shoal_peer_evicted_bytes_total counter\n"
               "shoal_peer_evicted_bytes_total %llu\n",
            atomic_load(&srv->evicted), atomic_load(&srv->evicted_bytes));
    fprintf(f, "# HELP shoal_peer_retired_versions_total Web objects kept by fetch whose seeding ended, by reason.\n"
               "# TYPE shoal_peer_retired_versions_total counter\n");
    for (int r = PR_WEB_SUPERSEDED; r <= PR_WEB_EXPIRED; r++)
        fprintf(f, "shoal_peer_retired_versions_total{reason=\"%s\"} %llu\n",
                pr_web_fate_name((enum pr_web_fate)r),
                atomic_load(&srv->retired[r]));
    if (fclose(f) != 0 || !buf) {
        free(buf);
        return shoal_err_set(err, SHOAL_EINTERNAL, "out of memory");
    }
    int rc = shoal_req_set_body(req, 200, "text/plain; version=0.0.4", buf,
                                len);
    free(buf);
    return rc == 0 ? 0 : shoal_err_set(err, SHOAL_EINTERNAL, "out of memory");
}

/* --- the route table ------------------------------------------------- */

const struct shoal_route pr_serve_routes[] = {
    { "GET", "/healthz", 0, h_health, NULL, 0 },
    { "GET", "/metrics", 0, h_metrics, NULL, 0 },
    { "GET", "/v1/files/{id}/content", SHOAL_ROUTE_AUTH, h_content, NULL, 0 },
    { "GET", "/v1/files/{id}/pieces/{n}", SHOAL_ROUTE_AUTH, h_piece, NULL, 0 },
    { "GET", "/v1/files/{id}/have", SHOAL_ROUTE_AUTH, h_have, NULL, 0 },
    { "GET", "/v1/peers", SHOAL_ROUTE_AUTH, pr_serve_h_peers, NULL, 0 },
    /* injector proxy (proxy.c): refused unless --act-as-proxy */
    { "POST", "/v1/inject", SHOAL_ROUTE_AUTH | SHOAL_ROUTE_JSON,
      pr_proxy_h_inject, NULL, 4096 },
    { "GET", "/v1/inject", SHOAL_ROUTE_AUTH, pr_proxy_h_inject_get, NULL, 0 },
    { "CONNECT", "{authority}", SHOAL_ROUTE_AUTH, pr_proxy_h_connect, NULL, 0 },
    { "GET", "/v1/proxies", SHOAL_ROUTE_AUTH, pr_proxy_h_list, NULL, 0 },
};
const size_t pr_serve_nroutes = sizeof(pr_serve_routes) /
                                sizeof(pr_serve_routes[0]);
