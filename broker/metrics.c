/*
 * metrics.c - request counters and the latency histogram, kept with
 * relaxed atomics, and GET /metrics in Prometheus text format.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "broker.h"

#define NSTATUS 600
static const double bucket_le[] = {
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5,
};
#define NBUCKETS (sizeof bucket_le / sizeof bucket_le[0])

struct br_metrics {
    const struct shoal_route *routes;
    size_t nroutes;                        /* index nroutes: unmatched */
    atomic_ullong (*count)[NSTATUS];
    atomic_ullong bucket[NBUCKETS + 1];    /* last: +Inf */
    atomic_ullong sum_us;
    atomic_ullong total;
};

struct br_metrics *br_metrics_new(const struct shoal_route *routes,
                                  size_t nroutes)
{
    struct br_metrics *m = calloc(1, sizeof *m);
    if (m == NULL)
        return NULL;
    m->routes = routes;
    m->nroutes = nroutes;
    m->count = calloc(nroutes + 1, sizeof *m->count);
    if (m->count == NULL) {
        free(m);
        return NULL;
    }
    return m;
}

void br_metrics_free(struct br_metrics *m)
{
    if (m == NULL)
        return;
    free(m->count);
    free(m);
}

void br_metrics_observe(void *appv, const struct shoal_route *route,
                        const char *method, int status, double secs)
{
    struct br_app *app = appv;
    struct br_metrics *m = app->metrics;
    (void)method;
    if (m == NULL || status < 0 || status >= NSTATUS)
        return;
    size_t i = m->nroutes;
    if (route >= m->routes && route < m->routes + m->nroutes)
        i = (size_t)(route - m->routes);
    atomic_fetch_add_explicit(&m->count[i][status], 1, memory_order_relaxed);
    size_t b = 0;
    while (b < NBUCKETS && secs > bucket_le[b])
        b++;
    atomic_fetch_add_explicit(&m->bucket[b], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&m->sum_us, (unsigned long long)(secs * 1e6),
                              memory_order_relaxed);
    atomic_fetch_add_explicit(&m->total, 1, memory_order_relaxed);
}

static long long count_of(struct br_app *app, const char *sql,
                          struct shoal_err *err)
{
    PGresult *r = br_db_exec(app->db, sql, 0, NULL, err);
    if (r == NULL)
        return -1;
    long long n = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
    PQclear(r);
    return n;
}

BR_HANDLER(h_metrics)
{
    struct br_app *app = br_app_of(req);
    struct br_metrics *m = app->metrics;
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    (void)reply;
    if (f == NULL)
        return shoal_err_set(err, SHOAL_EINTERNAL, "out of memory");

    fprintf(f, "# HELP shoal_http_requests_total HTTP requests by route, method and status.\n"
               "# TYPE shoal_http_requests_total counter\n");
    for (size_t i = 0; i <= m->nroutes; i++) {
        const char *pat = i < m->nroutes ? m->routes[i].pattern : "unmatched";
        const char *meth = i < m->nroutes ? m->routes[i].method : "any";
        for (int s = 0; s < NSTATUS; s++) {
            unsigned long long n = atomic_load_explicit(&m->count[i][s],
                                                        memory_order_relaxed);
            if (n)
                fprintf(f, "shoal_http_requests_total{route=\"%s\",method=\"%s\","
                           "status=\"%d\"} %llu\n", pat, meth, s, n);
        }
    }
    fprintf(f, "# HELP shoal_http_request_duration_seconds Time to answer a request.\n"
               "# TYPE shoal_http_request_duration_seconds histogram\n");
    unsigned long long cum = 0;
    for (size_t b = 0; b <= NBUCKETS; b++) {
        cum += atomic_load_explicit(&m->bucket[b], memory_order_relaxed);
        if (b < NBUCKETS)
            fprintf(f, "shoal_http_request_duration_seconds_bucket{le=\"%g\"} %llu\n",
                    bucket_le[b], cum);
        else
            fprintf(f, "shoal_http_request_duration_seconds_bucket{le=\"+Inf\"} %llu\n",
                    cum);
    }
    fprintf(f, "shoal_http_request_duration_seconds_sum %.6f\n"
               "shoal_http_request_duration_seconds_count %llu\n",
            (double)atomic_load(&m->sum_us) / 1e6, cum);

    unsigned long long in, out;
    br_usage_totals(app, &in, &out);
    fprintf(f, "# HELP shoal_ingress_bytes_total Piece bytes received by this broker.\n"
               "# TYPE shoal_ingress_bytes_total counter\n"
               "shoal_ingress_bytes_total %llu\n"
               "# HELP shoal_egress_bytes_total Content bytes served by this broker.\n"
               "# TYPE shoal_egress_bytes_total counter\n"
               "shoal_egress_bytes_total %llu\n", in, out);
    long long live = count_of(app, "SELECT count(*) FROM sessions"
                                   " WHERE expires_at > now()", err);
    long long users = live < 0 ? -1 : count_of(app, "SELECT count(*) FROM users", err);
    if (users >= 0)
        fprintf(f, "# HELP shoal_sessions_live Sessions not yet expired.\n"
                   "# TYPE shoal_sessions_live gauge\n"
                   "shoal_sessions_live %lld\n"
                   "# HELP shoal_users_total Registered users.\n"
                   "# TYPE shoal_users_total gauge\n"
                   "shoal_users_total %lld\n", live, users);
    fclose(f);
    int rc = users < 0 ? -1
             : shoal_req_set_body(req, 200, "text/plain; version=0.0.4", buf, len);
    if (rc != 0 && users >= 0)
        shoal_err_set(err, SHOAL_EINTERNAL, "out of memory");
    free(buf);
    return rc;
}

BR_HANDLER(h_health)
{
    struct br_app *app = br_app_of(req);
    PGresult *r = br_db_exec(app->db, "SELECT 1", 0, NULL, err);
    if (r == NULL)
        return shoal_err_set(err, SHOAL_EUNAVAILABLE, "database unavailable");
    PQclear(r);
    *reply = json_pack("{s:s, s:s, s:s}", "status", "ok", "broker_id",
                       app->broker_id, "version", BR_VERSION);
    return 0;
}
