/*
 * migrate.c - apply the migrations carried in the binary, each once, in
 * order, each in its own transaction, recorded in schema_migrations.
 * A session-level advisory lock makes brokers that start together on one
 * database take turns: the second finds the work done.
 */
#include <stdio.h>
#include <stdlib.h>

#include "broker.h"
#include "log.h"
#include "migrate.h"

/* An arbitrary constant naming shoal's migration lock. */
#define MIGRATION_LOCK "7305863427716203"

static int exec_simple(PGconn *c, const char *sql, struct shoal_err *err)
{
    PGresult *r = PQexec(c, sql);
    ExecStatusType st = PQresultStatus(r);
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
        shoal_log(SHOAL_LOG_ERROR, NULL, "migration statement failed: %s",
                  PQerrorMessage(c));
        PQclear(r);
        return shoal_err_set(err, SHOAL_EINTERNAL, "migration failed");
    }
    PQclear(r);
    return 0;
}

static int applied(PGconn *c, unsigned version, int *yes,
                   struct shoal_err *err)
{
    char v[16];
    snprintf(v, sizeof v, "%u", version);
    const char *p[] = { v };
    PGresult *r = br_db_query(c, "SELECT 1 FROM schema_migrations WHERE version = $1",
                              1, p, err);
    if (r == NULL)
        return -1;
    *yes = PQntuples(r) > 0;
    PQclear(r);
    return 0;
}

int br_migrate(PGconn *c, struct shoal_err *err)
{
    int rc = -1;

    if (exec_simple(c, "SELECT pg_advisory_lock(" MIGRATION_LOCK ")", err) != 0)
        return -1;
    if (exec_simple(c,
                    "CREATE TABLE IF NOT EXISTS schema_migrations ("
                    " version integer PRIMARY KEY,"
                    " name text NOT NULL,"
                    " applied_at timestamptz NOT NULL DEFAULT now())",
                    err) != 0)
        goto out;
    for (unsigned i = 0; i < br_nmigrations; i++) {
        const struct br_migration *m = &br_migrations[i];
        int yes;
        if (applied(c, m->version, &yes, err) != 0)
            goto out;
        if (yes)
            continue;
        if (exec_simple(c, "BEGIN", err) != 0)
            goto out;
        if (exec_simple(c, m->sql, err) != 0) {
            br_db_rollback(c);
            shoal_err_set(err, SHOAL_EINTERNAL, "migration '%s' failed", m->name);
            goto out;
        }
        char v[16];
        snprintf(v, sizeof v, "%u", m->version);
        const char *p[] = { v, m->name };
        PGresult *r = br_db_query(c, "INSERT INTO schema_migrations (version, name)"
                                     " VALUES ($1, $2)", 2, p, err);
        if (r == NULL) {
            br_db_rollback(c);
            goto out;
        }
        PQclear(r);
        if (exec_simple(c, "COMMIT", err) != 0)
            goto out;
        shoal_log(SHOAL_LOG_INFO, NULL, "applied migration '%s'", m->name);
    }
    rc = 0;
out:
    exec_simple(c, "SELECT pg_advisory_unlock(" MIGRATION_LOCK ")", NULL);
    return rc;
}
