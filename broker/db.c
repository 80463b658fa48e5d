/*
 * db.c - a small pool of PostgreSQL connections shared by the handler
 * threads.  A connection that broke is reset when it comes back.
 */
#include <stdlib.h>
#include <string.h>

#include "broker.h"
#include "log.h"

struct br_db {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    unsigned n, nfree;
    PGconn **all;
    PGconn **free;       /* stack of idle connections */
    char *conninfo;
};

PGconn *br_db_connect(const char *conninfo)
{
    /* Defaults first; the operator's conninfo, expanded last, overrides
     * them.  They bound how long a lost or silent server can hold a
     * thread: connecting, and unanswered TCP traffic. */
    static const char *const keys[] = {
        "connect_timeout", "keepalives", "keepalives_idle",
        "keepalives_interval", "keepalives_count", "tcp_user_timeout",
        "application_name", "dbname", NULL,
    };
    const char *values[] = {
        "10", "1", "30", "10", "3", "30000", "shoal-broker", conninfo, NULL,
    };
    PGconn *c = PQconnectdbParams(keys, values, 1);
    if (c != NULL && PQstatus(c) == CONNECTION_OK) {
        /* Hours and days of usage are UTC hours and days. */
        PGresult *r = PQexec(c, "SET TIME ZONE 'UTC'");
        PQclear(r);
    }
    return c;
}

static PGconn *connect_one(const char *conninfo, struct shoal_err *err)
{
    PGconn *c = br_db_connect(conninfo);
    if (c == NULL || PQstatus(c) != CONNECTION_OK) {
        /* The conninfo may hold a password: name only the failure. */
        shoal_err_set(err, SHOAL_EUNAVAILABLE, "cannot connect to the database: %s",
                      c ? PQerrorMessage(c) : "out of memory");
        size_t n = strlen(err ? err->msg : "");
        while (err && n > 0 && (err->msg[n - 1] == '\n'))
            err->msg[--n] = '\0';
        PQfinish(c);
        return NULL;
    }
    return c;
}

static void quiet_notice(void *arg, const char *msg)
{
    (void)arg;
    (void)msg;
}

struct br_db *br_db_open(const char *conninfo, unsigned n,
                         struct shoal_err *err)
{
    struct br_db *db = calloc(1, sizeof *db);
    if (db == NULL || n == 0) {
        free(db);
        shoal_err_set(err, SHOAL_EINVAL, "need at least one database connection");
        return NULL;
    }
    pthread_mutex_init(&db->lock, NULL);
    pthread_cond_init(&db->cond, NULL);
    db->all = calloc(n, sizeof *db->all);
    db->free = calloc(n, sizeof *db->free);
    db->conninfo = strdup(conninfo);
    if (db->all == NULL || db->free == NULL || db->conninfo == NULL) {
        shoal_err_set(err, SHOAL_EINTERNAL, "out of memory");
        br_db_close(db);
        return NULL;
    }
    for (unsigned i = 0; i < n; i++) {
        PGconn *c = connect_one(conninfo, err);
        if (c == NULL) {
            br_db_close(db);
            return NULL;
        }
        PQsetNoticeProcessor(c, quiet_notice, NULL);
        db->all[db->n++] = c;
        db->free[db->nfree++] = c;
    }
    return db;
}

void br_db_close(struct br_db *db)
{
    if (db == NULL)
        return;
    for (unsigned i = 0; i < db->n; i++)
        PQfinish(db->all[i]);
    free(db->all);
    free(db->free);
    free(db->conninfo);
    pthread_cond_destroy(&db->cond);
    pthread_mutex_destroy(&db->lock);
    free(db);
}

PGconn *br_db_get(struct br_db *db, struct shoal_err *err)
{
    pthread_mutex_lock(&db->lock);
    while (db->nfree == 0)
        pthread_cond_wait(&db->cond, &db->lock);
    PGconn *c = db->free[--db->nfree];
    pthread_mutex_unlock(&db->lock);
    if (PQstatus(c) != CONNECTION_OK) {
        PQreset(c);
        if (PQstatus(c) != CONNECTION_OK) {
            br_db_put(db, c);
            shoal_err_set(err, SHOAL_EUNAVAILABLE, "database unavailable");
            return NULL;
        }
    }
    return c;
}

void br_db_put(struct br_db *db, PGconn *conn)
{
    if (conn == NULL)
        return;
    /* A connection left inside a transaction by a failed path. */
    if (PQstatus(conn) == CONNECTION_OK &&
        PQtransactionStatus(conn) != PQTRANS_IDLE) {
        PGresult *r = PQexec(conn, "ROLLBACK");
        PQclear(r);
    }
    pthread_mutex_lock(&db->lock);
    db->free[db->nfree++] = conn;
    pthread_cond_signal(&db->cond);
    pthread_mutex_unlock(&db->lock);
}

PGresult *br_db_query(PGconn *conn, const char *sql, int nparams,
                      const char *const *params, struct shoal_err *err)
{
    PGresult *r = PQexecParams(conn, sql, nparams, NULL, params, NULL, NULL, 0);
    ExecStatusType st = r ? PQresultStatus(r) : PGRES_FATAL_ERROR;
    if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK)
        return r;

    const char *state = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
    if (state && strcmp(state, "23505") == 0) {
        shoal_err_set(err, SHOAL_EEXISTS, "already exists");
    } else if (state && strcmp(state, "23503") == 0) {
        shoal_err_set(err, SHOAL_ENOTFOUND, "referenced object not found");
    } else if (PQstatus(conn) != CONNECTION_OK) {
        shoal_err_set(err, SHOAL_EUNAVAILABLE, "database unavailable");
    } else {
        char msg[300];
        snprintf(msg, sizeof msg, "%s", PQerrorMessage(conn));
        msg[strcspn(msg, "\n")] = '\0';
        shoal_log(SHOAL_LOG_ERROR, NULL, "database error %s: %s",
                  state ? state : "-", msg);
        shoal_err_set(err, SHOAL_EINTERNAL, "database error");
    }
    PQclear(r);
    return NULL;
}

PGresult *br_db_exec(struct br_db *db, const char *sql, int nparams,
                     const char *const *params, struct shoal_err *err)
{
    PGconn *c = br_db_get(db, err);
    if (c == NULL)
        return NULL;
    PGresult *r = br_db_query(c, sql, nparams, params, err);
    br_db_put(db, c);
    return r;
}

int br_db_begin(PGconn *conn, struct shoal_err *err)
{
    PGresult *r = br_db_query(conn, "BEGIN", 0, NULL, err);
    if (r == NULL)
        return -1;
    PQclear(r);
    return 0;
}

int br_db_commit(PGconn *conn, struct shoal_err *err)
{
    PGresult *r = br_db_query(conn, "COMMIT", 0, NULL, err);
    if (r == NULL)
        return -1;
    PQclear(r);
    return 0;
}

void br_db_rollback(PGconn *conn)
{
    PGresult *r = PQexec(conn, "ROLLBACK");
    PQclear(r);
}
