/*
 * gc.c - removing pieces no version references any more from this file
 * broker's store.
 *
 * A freed piece keeps its row in 'pieces' with refs 0 (see 002_files.sql).
 * A copy is removed only inside a transaction that holds that row locked
 * and sees refs still 0: a new version that counts the piece again must
 * take the same lock, so it either comes first (refs > 0: the copy stays)
 * or after the removal (the piece is then missing, and /have says so).
 *
 * The broker that frees pieces removes its copies at once; a thread
 * sweeps the other freed rows every few seconds (pieces freed through
 * another broker), scans the whole store for orphans once at start (a
 * broker that was down while rows were freed and deleted), and deletes
 * rows freed more than a day ago.
 */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "broker.h"
#include "log.h"

#define SWEEP_EVERY 5                /* seconds */
#define EXPIRE_EVERY 3600
#define BATCH 512

struct br_gc {
    struct br_app *app;
    pthread_t thread;
    int started;
    atomic_int stop;
};

void br_gc_remove(struct br_app *app, PGconn *c,
                  const unsigned char hash[32])
{
    struct shoal_err err;
    char hx[2 * 32 + 3];
    PGresult *r;

    if (app->store == NULL || !shoal_store_has(app->store, hash))
        return;
    br_bytea_text(hash, 32, hx);
    const char *p[] = { hx };
    if (br_db_begin(c, &err) != 0)
        return;
    /* An orphan has no row: make one, so that there is a row to lock. */
    r = br_db_query(c, "INSERT INTO pieces (hash, size, refs, freed_at)"
                       " VALUES ($1, 0, 0, now()) ON CONFLICT DO NOTHING", 1, p, &err);
    if (r == NULL)
        goto fail;
    PQclear(r);
    r = br_db_query(c, "SELECT refs FROM pieces WHERE hash = $1 FOR UPDATE",
                    1, p, &err);
    if (r == NULL)
        goto fail;
    int unused = PQntuples(r) == 1 && strcmp(PQgetvalue(r, 0, 0), "0") == 0;
    PQclear(r);
    if (unused && shoal_store_remove(app->store, hash, &err) != 0)
        shoal_log(SHOAL_LOG_WARN, NULL, "piece removal: %s", err.msg);
    if (br_db_commit(c, &err) == 0)
        return;
fail:
    br_db_rollback(c);
    shoal_log(SHOAL_LOG_WARN, NULL, "piece removal postponed: %s", err.msg);
}

/* Remove this broker's copies of every freed piece. */
static void sweep_freed(struct br_app *app)
{
    struct shoal_err err;
    PGconn *c = br_db_get(app->db, &err);
    if (c == NULL)
        return;
    PGresult *r = PQexecParams(c, "SELECT hash FROM pieces WHERE refs = 0",
                               0, NULL, NULL, NULL, NULL, 1);
    if (r != NULL && PQresultStatus(r) == PGRES_TUPLES_OK) {
        int n = PQntuples(r);
        unsigned char (*hashes)[32] = calloc(n ? (size_t)n : 1, 32);
        int k = 0;
        for (int i = 0; hashes && i < n; i++)
            if (PQgetlength(r, i, 0) == 32 &&
                shoal_store_has(app->store, (const unsigned char *)PQgetvalue(r, i, 0)))
                memcpy(hashes[k++], PQgetvalue(r, i, 0), 32);
        PQclear(r);
        r = NULL;
        for (int i = 0; i < k && !atomic_load(&app->gc->stop); i++)
            br_gc_remove(app, c, hashes[i]);
        free(hashes);
    }
    PQclear(r);
    br_db_put(app->db, c);
}

/* Orphans: stored pieces with no row that counts them. */
struct scan {
    struct br_app *app;
    unsigned char (*batch)[32];
    int n;
};

static void check_batch(struct scan *sc)
{
    struct shoal_err err;
    if (sc->n == 0)
        return;
    /* The hashes as a bytea[] literal: {"\\x..","\\x.."} */
    size_t cap = (size_t)sc->n * (2 * 32 + 8) + 4;
    char *arr = malloc(cap), *w = arr;
    PGconn *c = arr ? br_db_get(sc->app->db, &err) : NULL;
    if (c == NULL) {
        free(arr);
        sc->n = 0;
        return;
    }
    *w++ = '{';
    for (int i = 0; i < sc->n; i++) {
        if (i)
            *w++ = ',';
        memcpy(w, "\"\\\\x", 4);
        w += 4;
        shoal_hex_encode(sc->batch[i], 32, w);
        w += 64;
        *w++ = '"';
    }
    *w++ = '}';
    *w = '\0';
    const char *p[] = { arr };
    PGresult *r = PQexecParams(c, "SELECT hash FROM pieces WHERE hash = ANY($1::bytea[])"
                                  " AND refs > 0", 1, NULL, p, NULL, NULL, 1);
    if (r != NULL && PQresultStatus(r) == PGRES_TUPLES_OK) {
        for (int i = 0; i < sc->n; i++) {
            int used = 0;
            for (int j = 0; j < PQntuples(r) && !used; j++)
                used = memcmp(PQgetvalue(r, j, 0), sc->batch[i], 32) == 0;
            if (!used)
                br_gc_remove(sc->app, c, sc->batch[i]);
        }
    }
    PQclear(r);
    br_db_put(sc->app->db, c);
    free(arr);
    sc->n = 0;
}

static int scan_one(void *arg, const unsigned char hash[32])
{
    struct scan *sc = arg;
    if (atomic_load(&sc->app->gc->stop))
        return 1;
    memcpy(sc->batch[sc->n++], hash, 32);
    if (sc->n == BATCH)
        check_batch(sc);
    return 0;
}

static void scan_orphans(struct br_app *app)
{
    struct shoal_err err;
    struct scan sc = { .app = app, .batch = calloc(BATCH, 32) };
    if (sc.batch == NULL)
        return;
    if (shoal_store_each(app->store, scan_one, &sc, &err) < 0)
        shoal_log(SHOAL_LOG_WARN, NULL, "orphan scan: %s", err.msg);
    check_batch(&sc);
    free(sc.batch);
}

static void expire(struct br_app *app)
{
    struct shoal_err err;
    PGresult *r = br_db_exec(app->db, "DELETE FROM pieces WHERE refs = 0"
                             " AND freed_at < now() - interval '1 day'", 0, NULL, &err);
    PQclear(r);
}

static void *gc_main(void *arg)
{
    struct br_app *app = arg;
    double last_expire = 0;
    scan_orphans(app);
    while (!atomic_load(&app->gc->stop)) {
        for (int i = 0; i < SWEEP_EVERY * 10 && !atomic_load(&app->gc->stop); i++)
            usleep(100 * 1000);
        sweep_freed(app);
        if (shoal_mono() - last_expire > EXPIRE_EVERY) {
            expire(app);
            last_expire = shoal_mono();
        }
    }
    return NULL;
}

int br_gc_start(struct br_app *app, struct shoal_err *err)
{
    if (app->store == NULL)
        return 0;
    struct br_gc *gc = calloc(1, sizeof *gc);
    if (gc == NULL)
        return shoal_err_set(err, SHOAL_EINTERNAL, "out of memory");
    gc->app = app;
    app->gc = gc;
    if (pthread_create(&gc->thread, NULL, gc_main, app) != 0) {
        app->gc = NULL;
        free(gc);
        return shoal_err_set(err, SHOAL_EINTERNAL, "cannot start the piece sweeper");
    }
    gc->started = 1;
    return 0;
}

void br_gc_stop(struct br_app *app)
{
    struct br_gc *gc = app->gc;
    if (gc == NULL)
        return;
    atomic_store(&gc->stop, 1);
    if (gc->started)
        pthread_join(gc->thread, NULL);
    app->gc = NULL;
    free(gc);
}
