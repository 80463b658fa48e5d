/*
 * cache.c - the caches that keep the hot paths (the Bearer check, the
 * inner-circle check, serving content) off the database, kept exact by
 * the database itself.
 *
 * Triggers (schemas/sql) announce every change that could make an entry
 * wrong: a deleted session on channel 'shoal_session' (its id), a changed
 * or deleted file on 'shoal_file' (its id), and any change to shares, ACLs,
 * groups or their members on 'shoal_acl' (every access entry is dropped).
 * A listener thread on its own connection applies them on every broker
 * that shares the database.  While the listener has no connection the
 * caches are emptied and bypassed, so a missed announcement can never
 * keep a stale entry alive.  Entries also age out after the configured
 * time as a last safety net.  Negative answers (no such session, no
 * access) are never cached, so what another broker creates is seen at
 * once.
 */
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "broker.h"
#include "log.h"

#define NSLOTS 16384
#define HEARTBEAT 5.0                /* seconds of silence before a ping */

struct br_cache {
    struct br_kv *sessions;          /* session id -> br_session_row */
    struct br_kv *files;             /* file id -> br_file_row */
    struct br_kv *access;            /* "user/share" -> int */
    atomic_int usable;               /* 0 while the listener is down */
    atomic_int stop;
    pthread_t thread;
    int started;
    char *conninfo;
};

static void clear_all(struct br_cache *c)
{
    br_kv_clear(c->sessions);
    br_kv_clear(c->files);
    br_kv_clear(c->access);
}

void br_cache_evict(struct br_cache *c, const char *sid)
{
    if (c)
        br_kv_evict(c->sessions, sid);
}

static int usable(const struct br_cache *c)
{
    return c != NULL && atomic_load(&((struct br_cache *)c)->usable);
}

int br_session_find(struct br_app *app, const char *sid,
                    struct br_session_row *out, struct shoal_err *err)
{
    struct br_cache *c = app->cache;
    if (usable(c) && br_kv_get(c->sessions, sid, out))
        return 1;
    unsigned epoch = c ? br_kv_epoch(c->sessions, sid) : 0;
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
    if (usable(c))
        br_kv_put(c->sessions, sid, out, epoch);
    return 1;
}

int br_file_find(struct br_cache *c, PGconn *conn, const char *file_id,
                 struct br_file_row *out, struct shoal_err *err)
{
    if (usable(c) && br_kv_get(c->files, file_id, out))
        return 1;
    unsigned epoch = c ? br_kv_epoch(c->files, file_id) : 0;
    const char *p[] = { file_id };
    PGresult *r = br_db_query(conn,
        "SELECT share_id, owner_id, latest, deleted_at IS NOT NULL"
        " FROM files WHERE file_id = $1", 1, p, err);
    if (r == NULL)
        return -1;
    if (PQntuples(r) == 0) {
        PQclear(r);
        return 0;
    }
    memset(out, 0, sizeof *out);
    snprintf(out->share_id, sizeof out->share_id, "%s", PQgetvalue(r, 0, 0));
    snprintf(out->owner_id, sizeof out->owner_id, "%s", PQgetvalue(r, 0, 1));
    out->latest = atoi(PQgetvalue(r, 0, 2));
    out->deleted = PQgetvalue(r, 0, 3)[0] == 't';
    PQclear(r);
    if (usable(c))
        br_kv_put(c->files, file_id, out, epoch);
    return 1;
}

int br_access_find(struct br_cache *c, PGconn *conn, const char *user_id,
                   const char *share_id, struct shoal_err *err)
{
    char key[80];
    int access;
    snprintf(key, sizeof key, "%s/%s", user_id, share_id);
    if (usable(c) && br_kv_get(c->access, key, &access))
        return access;
    unsigned epoch = c ? br_kv_epoch(c->access, key) : 0;
    access = br_share_access(conn, user_id, share_id, err);
    if (access > BR_ACCESS_NONE && usable(c))
        br_kv_put(c->access, key, &access, epoch);
    return access;
}

void br_cache_acl_changed(struct br_cache *c)
{
    if (c)
        br_kv_clear(c->access);
}

void br_cache_file_changed(struct br_cache *c, const char *file_id)
{
    if (c)
        br_kv_evict(c->files, file_id);
}

/* Apply one announcement. */
static void heard(struct br_cache *c, const PGnotify *n)
{
    if (strcmp(n->relname, "shoal_session") == 0)
        br_kv_evict(c->sessions, n->extra);
    else if (strcmp(n->relname, "shoal_file") == 0)
        br_kv_evict(c->files, n->extra);
    else if (strcmp(n->relname, "shoal_acl") == 0)
        br_kv_clear(c->access);
}

/* Listen for changes until told to stop; reconnect after failures. */
static void *listener_main(void *arg)
{
    struct br_cache *c = arg;
    PGconn *conn = NULL;
    double last = shoal_mono();

    while (!atomic_load(&c->stop)) {
        if (conn == NULL || PQstatus(conn) != CONNECTION_OK) {
            atomic_store(&c->usable, 0);
            clear_all(c);
            PQfinish(conn);
            conn = br_db_connect(c->conninfo);
            PGresult *r = PQstatus(conn) == CONNECTION_OK
                ? PQexec(conn, "LISTEN shoal_session; LISTEN shoal_file;"
                               " LISTEN shoal_acl") : NULL;
            int ok = r && PQresultStatus(r) == PGRES_COMMAND_OK;
            PQclear(r);
            if (!ok) {
                PQfinish(conn);
                conn = NULL;
                sleep(1);
                continue;
            }
            /* Anything changed before LISTEN took effect was cleared
             * above; from now on every change is heard. */
            clear_all(c);
            atomic_store(&c->usable, 1);
            last = shoal_mono();
        }
        struct pollfd pfd = { .fd = PQsocket(conn), .events = POLLIN };
        int n = poll(&pfd, 1, 500);
        if (n < 0)
            continue;
        if (n == 0 && shoal_mono() - last > HEARTBEAT) {
            /* A silent connection may be a dead one: ask.  Failing, the
             * caches are bypassed until the listener is back. */
            PGresult *r = PQexec(conn, "SELECT 1");
            int ok = r && PQresultStatus(r) == PGRES_TUPLES_OK;
            PQclear(r);
            last = shoal_mono();
            if (!ok) {
                shoal_log(SHOAL_LOG_WARN, NULL, "cache listener lost its connection");
                PQfinish(conn);
                conn = NULL;
                continue;
            }
        }
        if (n > 0) {
            last = shoal_mono();
            if (PQconsumeInput(conn) == 0) {
                shoal_log(SHOAL_LOG_WARN, NULL, "cache listener lost its connection");
                PQfinish(conn);
                conn = NULL;
                continue;
            }
        }
        PGnotify *nt;
        while ((nt = PQnotifies(conn)) != NULL) {
            heard(c, nt);
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
    c->sessions = br_kv_new(NSLOTS, sizeof(struct br_session_row), ttl);
    c->files = br_kv_new(NSLOTS, sizeof(struct br_file_row), ttl);
    c->access = br_kv_new(NSLOTS, sizeof(int), ttl);
    c->conninfo = strdup(conninfo);
    if (!c->sessions || !c->files || !c->access || !c->conninfo)
        goto nomem;
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
    if (c->started)
        pthread_join(c->thread, NULL);
    br_kv_free(c->sessions);
    br_kv_free(c->files);
    br_kv_free(c->access);
    free(c->conninfo);
    free(c);
}
