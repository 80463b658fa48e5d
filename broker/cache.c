/*
 * cache.c - the session cache that keeps the inner-circle check and the
 * Bearer check off the database.
 *
 * A session row never changes once written: it is only deleted (logout,
 * purge, user removal).  A trigger (schemas/sql/001_trust.sql) notifies
 * channel 'shoal_session' with the session id of every deleted row; a
 * listener thread on its own connection evicts it here, on every broker
 * sharing the database.  When the listener loses its connection, the cache
 * is emptied and bypassed until it is back, so a missed notification can
 * never keep a revoked session alive.  Entries also age out after
 * session_cache_ttl as a last safety net.  Unknown sessions are never
 * cached, so a session created through another broker is seen at once.
 */
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "broker.h"
#include "log.h"

#define NSLOTS 16384                 /* power of two */
#define NLOCKS 64
#define HEARTBEAT 5.0                /* seconds of silence before a ping */

struct slot {
    struct br_session_row row;       /* row.session_id[0] == 0: empty */
    double stored;                   /* monotonic */
};

struct br_cache {
    struct slot *slots;
    /* Bumped on every eviction in a slot: a row read from the database
     * before an eviction must not be stored after it (it may be the very
     * session just deleted). */
    atomic_uint *epochs;
    pthread_mutex_t locks[NLOCKS];
    double ttl;
    atomic_int usable;               /* 0 while the listener is down */
    atomic_int stop;
    pthread_t thread;
    int started;
    char *conninfo;
};

static size_t slot_of(const char *sid)
{
    uint32_t h = 2166136261u;        /* FNV-1a */
    for (const char *p = sid; *p; p++)
        h = (h ^ (unsigned char)*p) * 16777619u;
    return h & (NSLOTS - 1);
}

static void clear_all(struct br_cache *c)
{
    for (size_t i = 0; i < NSLOTS; i++) {
        pthread_mutex_t *l = &c->locks[i % NLOCKS];
        pthread_mutex_lock(l);
        c->slots[i].row.session_id[0] = '\0';
        atomic_fetch_add(&c->epochs[i], 1);
        pthread_mutex_unlock(l);
    }
}

void br_cache_evict(struct br_cache *c, const char *sid)
{
    if (c == NULL)
        return;
    size_t i = slot_of(sid);
    pthread_mutex_t *l = &c->locks[i % NLOCKS];
    pthread_mutex_lock(l);
    if (strcmp(c->slots[i].row.session_id, sid) == 0)
        c->slots[i].row.session_id[0] = '\0';
    atomic_fetch_add(&c->epochs[i], 1);
    pthread_mutex_unlock(l);
}

static int cache_get(struct br_cache *c, const char *sid,
                     struct br_session_row *out)
{
    if (c == NULL || !atomic_load(&c->usable))
        return 0;
    size_t i = slot_of(sid);
    int hit = 0;
    pthread_mutex_t *l = &c->locks[i % NLOCKS];
    pthread_mutex_lock(l);
    struct slot *s = &c->slots[i];
    if (strcmp(s->row.session_id, sid) == 0) {
        if (shoal_mono() - s->stored < c->ttl) {
            *out = s->row;
            hit = 1;
        } else {
            s->row.session_id[0] = '\0';
        }
    }
    pthread_mutex_unlock(l);
    return hit;
}

/* The eviction epoch of sid's slot, read before asking the database. */
static unsigned cache_epoch(struct br_cache *c, const char *sid)
{
    return c ? atomic_load(&c->epochs[slot_of(sid)]) : 0;
}

/* Store a row read from the database, unless its slot saw an eviction
 * since 'epoch' was read. */
static void cache_put(struct br_cache *c, const struct br_session_row *row,
                      unsigned epoch)
{
    if (c == NULL || !atomic_load(&c->usable))
        return;
    size_t i = slot_of(row->session_id);
    pthread_mutex_t *l = &c->locks[i % NLOCKS];
    pthread_mutex_lock(l);
    if (atomic_load(&c->epochs[i]) == epoch) {
        c->slots[i].row = *row;
        c->slots[i].stored = shoal_mono();
    }
    pthread_mutex_unlock(l);
}

int br_session_find(struct br_app *app, const char *sid,
                    struct br_session_row *out, struct shoal_err *err)
{
    if (cache_get(app->cache, sid, out))
        return 1;
    unsigned epoch = cache_epoch(app->cache, sid);
    const char *p[] = { sid };
    PGresult *r = br_db_exec(app->db,
        "SELECT s.user_id, host(s.ip), extract(epoch FROM s.expires_at)::bigint,"
        " u.public_key FROM sessions s JOIN users u USING (user_id)"
        " WHERE s.session_id = $1", 1, p, err);
    if (r == NULL)
        return -1;
    if (PQntuples(r) == 0) {
        PQclear(r);
        return 0;
    }
    memset(out, 0, sizeof *out);
    snprintf(out->session_id, sizeof out->session_id, "%s", sid);
    snprintf(out->user_id, sizeof out->user_id, "%s", PQgetvalue(r, 0, 0));
    /* Compared as addresses: both sides in the same canonical text. */
    if (shoal_ip_canonical(PQgetvalue(r, 0, 1), out->ip) != 0)
        snprintf(out->ip, sizeof out->ip, "%s", PQgetvalue(r, 0, 1));
    out->expires_at = (time_t)strtoll(PQgetvalue(r, 0, 2), NULL, 10);
    json_t *pk = br_bytea_b64_json(PQgetvalue(r, 0, 3));
    snprintf(out->public_key, sizeof out->public_key, "%s",
             pk ? json_string_value(pk) : "");
    json_decref(pk);
    PQclear(r);
    cache_put(app->cache, out, epoch);
    return 1;
}

/* Listen for deletions until told to stop; reconnect after failures. */
static void *listener_main(void *arg)
{
    struct br_cache *c = arg;
    PGconn *conn = NULL;
    double heard = shoal_mono();

    while (!atomic_load(&c->stop)) {
        if (conn == NULL || PQstatus(conn) != CONNECTION_OK) {
            atomic_store(&c->usable, 0);
            clear_all(c);
            PQfinish(conn);
            conn = br_db_connect(c->conninfo);
            PGresult *r = PQstatus(conn) == CONNECTION_OK
                              ? PQexec(conn, "LISTEN shoal_session") : NULL;
            int ok = r && PQresultStatus(r) == PGRES_COMMAND_OK;
            PQclear(r);
            if (!ok) {
                PQfinish(conn);
                conn = NULL;
                sleep(1);
                continue;
            }
            /* Anything deleted before LISTEN took effect was cleared
             * above; from now on every deletion is heard. */
            clear_all(c);
            atomic_store(&c->usable, 1);
        }
        struct pollfd pfd = { .fd = PQsocket(conn), .events = POLLIN };
        int n = poll(&pfd, 1, 500);
        if (n < 0)
            continue;
        if (n == 0 && shoal_mono() - heard > HEARTBEAT) {
            /* A silent connection may be a dead one: ask.  Failing, the
             * cache is bypassed until the listener is back. */
            PGresult *r = PQexec(conn, "SELECT 1");
            int ok = r && PQresultStatus(r) == PGRES_TUPLES_OK;
            PQclear(r);
            heard = shoal_mono();
            if (!ok) {
                shoal_log(SHOAL_LOG_WARN, NULL,
                          "session cache listener lost its connection");
                PQfinish(conn);
                conn = NULL;
                continue;
            }
        }
        if (n > 0)
            heard = shoal_mono();
        if (n > 0 && PQconsumeInput(conn) == 0) {
            shoal_log(SHOAL_LOG_WARN, NULL,
                      "session cache listener lost its connection");
            PQfinish(conn);
            conn = NULL;
            continue;
        }
        PGnotify *nt;
        while ((nt = PQnotifies(conn)) != NULL) {
            br_cache_evict(c, nt->extra);
            PQfreemem(nt);
        }
    }
    atomic_store(&c->usable, 0);
    PQfinish(conn);
    return NULL;
}

struct br_cache *br_cache_new(const char *conninfo, double ttl,
                              struct shoal_err *err)
{
    struct br_cache *c = calloc(1, sizeof *c);
    if (c == NULL)
        goto nomem;
    c->slots = calloc(NSLOTS, sizeof *c->slots);
    c->epochs = calloc(NSLOTS, sizeof *c->epochs);
    c->conninfo = strdup(conninfo);
    if (c->slots == NULL || c->epochs == NULL || c->conninfo == NULL)
        goto nomem;
    for (int i = 0; i < NLOCKS; i++)
        pthread_mutex_init(&c->locks[i], NULL);
    c->ttl = ttl;
    if (pthread_create(&c->thread, NULL, listener_main, c) != 0) {
        shoal_err_set(err, SHOAL_EINTERNAL, "cannot start the cache listener");
        br_cache_free(c);
        return NULL;
    }
    c->started = 1;
    return c;
nomem:
    br_cache_free(c);
    shoal_err_set(err, SHOAL_EINTERNAL, "out of memory");
    return NULL;
}

void br_cache_free(struct br_cache *c)
{
    if (c == NULL)
        return;
    atomic_store(&c->stop, 1);
    if (c->started) {
        pthread_join(c->thread, NULL);
        for (int i = 0; i < NLOCKS; i++)
            pthread_mutex_destroy(&c->locks[i]);
    }
    free(c->slots);
    free(c->epochs);
    free(c->conninfo);
    free(c);
}
