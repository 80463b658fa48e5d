/*
 * usage.c - metering what operators bill: per user and hour, the bytes
 * received (ingress: pieces uploaded), the bytes served (egress: content
 * and pieces answered by this file broker), the requests made, and the
 * bytes stored.
 *
 * Handlers add to counters in memory (one lock, no database round trip on
 * the hot path); a thread adds them to the usage table every few seconds
 * and once more on stop.  Each broker adds its own counts, so several
 * brokers on one database sum up correctly.  The stored bytes of every
 * user are sampled into the current hour once a minute.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "broker.h"
#include "log.h"

#define NBUCKETS 1024
#define FLUSH_EVERY 5                /* seconds */
#define SAMPLE_EVERY 60

struct counter {
    struct counter *next;
    char user_id[37];
    long long hour;                  /* unix time of the hour's start */
    unsigned long long ingress, egress, requests;
};

struct br_usage {
    struct br_app *app;
    pthread_mutex_t lock;
    struct counter *buckets[NBUCKETS];
    atomic_ullong ingress_total, egress_total;
    pthread_t thread;
    int started;
    atomic_int stop;
};

static size_t bucket_of(const char *user_id, long long hour)
{
    uint32_t h = 2166136261u ^ (uint32_t)hour;
    for (const char *p = user_id; *p; p++)
        h = (h ^ (unsigned char)*p) * 16777619u;
    return h % NBUCKETS;
}

void br_usage_add(struct br_app *app, const char *user_id,
                  unsigned long long ingress, unsigned long long egress,
                  unsigned requests)
{
    struct br_usage *u = app->usage;
    if (u == NULL || user_id == NULL)
        return;
    long long hour = (long long)time(NULL) / 3600 * 3600;
    size_t b = bucket_of(user_id, hour);
    atomic_fetch_add_explicit(&u->ingress_total, ingress, memory_order_relaxed);
    atomic_fetch_add_explicit(&u->egress_total, egress, memory_order_relaxed);
    pthread_mutex_lock(&u->lock);
    struct counter *c = u->buckets[b];
    while (c && (c->hour != hour || strcmp(c->user_id, user_id) != 0))
        c = c->next;
    if (c == NULL && (c = calloc(1, sizeof *c)) != NULL) {
        snprintf(c->user_id, sizeof c->user_id, "%s", user_id);
        c->hour = hour;
        c->next = u->buckets[b];
        u->buckets[b] = c;
    }
    if (c) {
        c->ingress += ingress;
        c->egress += egress;
        c->requests += requests;
    }
    pthread_mutex_unlock(&u->lock);
}

void br_usage_totals(const struct br_app *app, unsigned long long *ingress,
                     unsigned long long *egress)
{
    struct br_usage *u = app->usage;
    *ingress = u ? atomic_load(&u->ingress_total) : 0;
    *egress = u ? atomic_load(&u->egress_total) : 0;
}

/* Return a counter that could not be written to its bucket, merging it
 * with one made meanwhile for the same user and hour. */
static void put_back(struct br_usage *u, struct counter *c)
{
    size_t b = bucket_of(c->user_id, c->hour);
    pthread_mutex_lock(&u->lock);
    struct counter *k = u->buckets[b];
    while (k && (k->hour != c->hour || strcmp(k->user_id, c->user_id) != 0))
        k = k->next;
    if (k) {
        k->ingress += c->ingress;
        k->egress += c->egress;
        k->requests += c->requests;
        free(c);
    } else {
        c->next = u->buckets[b];
        u->buckets[b] = c;
    }
    pthread_mutex_unlock(&u->lock);
}

/* Add every counter to the table.  Counters that cannot be written are
 * put back for the next round. */
static void flush(struct br_usage *u)
{
    struct counter *all = NULL;
    pthread_mutex_lock(&u->lock);
    for (size_t b = 0; b < NBUCKETS; b++) {
        struct counter *c = u->buckets[b];
        while (c) {
            struct counter *next = c->next;
            c->next = all;
            all = c;
            c = next;
        }
        u->buckets[b] = NULL;
    }
    pthread_mutex_unlock(&u->lock);

    while (all) {
        struct counter *c = all;
        all = c->next;
        char hour[24], in[24], out[24], req[24];
        snprintf(hour, sizeof hour, "%lld", c->hour);
        snprintf(in, sizeof in, "%llu", c->ingress);
        snprintf(out, sizeof out, "%llu", c->egress);
        snprintf(req, sizeof req, "%llu", c->requests);
        const char *p[] = { c->user_id, hour, in, out, req };
        struct shoal_err err;
        PGresult *r = br_db_exec(u->app->db,
            "INSERT INTO usage (user_id, hour, ingress, egress, requests)"
            " VALUES ($1, to_timestamp($2::bigint), $3, $4, $5)"
            " ON CONFLICT (user_id, hour) DO UPDATE SET"
            " ingress = usage.ingress + EXCLUDED.ingress,"
            " egress = usage.egress + EXCLUDED.egress,"
            " requests = usage.requests + EXCLUDED.requests", 5, p, &err);
        if (r == NULL) {
            shoal_log(SHOAL_LOG_WARN, NULL, "usage not written yet: %s", err.msg);
            put_back(u, c);                /* counted again next round */
            continue;
        }
        PQclear(r);
        free(c);
    }
}

/* The bytes every user (or only user_id) stores now, into the current
 * hour. */
static void sample(struct br_app *app, const char *user_id)
{
    struct shoal_err err;
    const char *p[] = { user_id };
    PGresult *r = br_db_exec(app->db,
        "INSERT INTO usage (user_id, hour, stored)"
        " SELECT us.user_id, date_trunc('hour', now()),"
        "  coalesce((SELECT sum(v.size) FROM files f JOIN versions v USING (file_id)"
        "   WHERE f.owner_id = us.user_id AND f.deleted_at IS NULL), 0)"
        " FROM users us"
        " WHERE ($1::uuid IS NULL OR us.user_id = $1::uuid)"
        " AND EXISTS (SELECT 1 FROM files f WHERE f.owner_id = us.user_id)"
        " ON CONFLICT (user_id, hour) DO UPDATE SET stored = EXCLUDED.stored",
        1, p, &err);
    if (r == NULL)
        shoal_log(SHOAL_LOG_WARN, NULL, "storage sample failed: %s", err.msg);
    PQclear(r);
}

static void *usage_main(void *arg)
{
    struct br_usage *u = arg;
    double last_sample = 0;
    while (!atomic_load(&u->stop)) {
        for (int i = 0; i < FLUSH_EVERY * 10 && !atomic_load(&u->stop); i++)
            usleep(100 * 1000);
        flush(u);
        if (shoal_mono() - last_sample >= SAMPLE_EVERY) {
            sample(u->app, NULL);
            last_sample = shoal_mono();
        }
    }
    flush(u);
    sample(u->app, NULL);
    return NULL;
}

int br_usage_start(struct br_app *app, struct shoal_err *err)
{
    struct br_usage *u = calloc(1, sizeof *u);
    if (u == NULL)
        return shoal_err_set(err, SHOAL_EINTERNAL, "out of memory");
    u->app = app;
    pthread_mutex_init(&u->lock, NULL);
    app->usage = u;
    if (pthread_create(&u->thread, NULL, usage_main, u) != 0) {
        app->usage = NULL;
        pthread_mutex_destroy(&u->lock);
        free(u);
        return shoal_err_set(err, SHOAL_EINTERNAL, "cannot start the usage thread");
    }
    u->started = 1;
    return 0;
}

void br_usage_stop(struct br_app *app)
{
    struct br_usage *u = app->usage;
    if (u == NULL)
        return;
    atomic_store(&u->stop, 1);
    if (u->started)
        pthread_join(u->thread, NULL);
    app->usage = NULL;
    for (size_t b = 0; b < NBUCKETS; b++)
        while (u->buckets[b]) {
            struct counter *c = u->buckets[b];
            u->buckets[b] = c->next;
            free(c);
        }
    pthread_mutex_destroy(&u->lock);
    free(u);
}

void br_usage_flush(struct br_app *app, const char *user_id)
{
    if (app->usage)
        flush(app->usage);
    sample(app, user_id);
}
