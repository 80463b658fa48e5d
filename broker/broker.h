/*
 * broker.h - what the broker's files share: the application state, the
 * database pool, the authenticated session, metrics, and every handler.
 */
#ifndef BR_BROKER_H
#define BR_BROKER_H

#include <pthread.h>
#include <stdatomic.h>
#include <time.h>
#include <libpq-fe.h>

#include "config.h"
#include "err.h"
#include "http.h"
#include "keys.h"
#include "util.h"

#define BR_VERSION "0.1.0"

/* --- database pool (db.c) --- */

struct br_db;

/* One connection to conninfo (a libpq conninfo string or URL) with
 * shoal's timeouts and keepalives unless conninfo sets them.  Check
 * PQstatus. */
PGconn *br_db_connect(const char *conninfo);

/* Open n connections to conninfo.  NULL with err when the first fails. */
struct br_db *br_db_open(const char *conninfo, unsigned n,
                         struct shoal_err *err);
void br_db_close(struct br_db *db);

/* Borrow a connection (waits while all are busy); give it back with
 * br_db_put.  NULL with SHOAL_EUNAVAILABLE when the database is down. */
PGconn *br_db_get(struct br_db *db, struct shoal_err *err);
void br_db_put(struct br_db *db, PGconn *conn);

/*
 * Run a parameterised statement.  Returns the result (PQclear it) or NULL
 * with err set: SHOAL_EEXISTS for a unique violation, SHOAL_ENOTFOUND for
 * a foreign-key violation, SHOAL_EUNAVAILABLE when the connection is
 * lost, SHOAL_EINTERNAL otherwise.  The database's message is logged,
 * never sent to the client.
 */
PGresult *br_db_query(PGconn *conn, const char *sql, int nparams,
                      const char *const *params, struct shoal_err *err);

/* br_db_get + br_db_query + br_db_put. */
PGresult *br_db_exec(struct br_db *db, const char *sql, int nparams,
                     const char *const *params, struct shoal_err *err);

/* BEGIN / COMMIT / ROLLBACK on a borrowed connection. */
int br_db_begin(PGconn *conn, struct shoal_err *err);
int br_db_commit(PGconn *conn, struct shoal_err *err);
void br_db_rollback(PGconn *conn);

/* --- metrics (metrics.c) --- */

struct br_metrics;
struct br_metrics *br_metrics_new(const struct shoal_route *routes,
                                  size_t nroutes);
void br_metrics_free(struct br_metrics *m);
/* shoal_observe_fn; app is the struct br_app. */
void br_metrics_observe(void *app, const struct shoal_route *route,
                        const char *method, int status, double secs);

/* --- sessions and their cache (cache.c) --- */

/* A session as stored, with its user's public key. */
struct br_session_row {
    char session_id[37];
    char user_id[37];
    char ip[SHOAL_IP_MAX];
    time_t expires_at;
    char public_key[48];             /* base64 */
};

struct br_cache;

/* A cache of session rows kept exact by LISTEN shoal_session (see
 * cache.c); entries live at most ttl seconds.  NULL with err set. */
struct br_cache *br_cache_new(const char *conninfo, double ttl,
                              struct shoal_err *err);
void br_cache_free(struct br_cache *c);
/* Forget a session now (this broker deleted it). */
void br_cache_evict(struct br_cache *c, const char *sid);

struct br_app;
/* Find session sid (canonical lowercase): 1 with *out filled, 0 when there
 * is no such session, -1 with err set on a database failure. */
int br_session_find(struct br_app *app, const char *sid,
                    struct br_session_row *out, struct shoal_err *err);

/* --- the application --- */

enum br_role {
    BR_ROLE_TRUST = 1 << 0,
    BR_ROLE_METADATA = 1 << 1,
    BR_ROLE_FILE = 1 << 2,
    BR_ROLE_INJECTOR = 1 << 3,
    BR_ROLE_ACCOUNTING = 1 << 4,
};

struct br_app {
    struct shoal_config *cfg;
    struct br_db *db;
    struct br_metrics *metrics;
    struct br_cache *cache;        /* NULL: every lookup asks the database */
    char broker_id[37];
    char public_url[256];
    unsigned roles;
    char roles_text[128];          /* "trust,metadata,…" */
    unsigned char pk[SHOAL_PK_BYTES];
    unsigned char sk[SHOAL_SK_BYTES];
    unsigned char auth_key[32];    /* keys the Authentication ID hashes */
    long long session_ttl;         /* seconds */
    long long purge_after;         /* seconds after expiry */
    int invite_only;
};

/* Parse "trust,metadata" into role bits; -1 with SHOAL_EINVAL. */
int br_roles_parse(const char *s, unsigned *out, struct shoal_err *err);
/* The role names of bits as a new JSON array. */
json_t *br_roles_json(unsigned roles);

/* --- sessions (auth.c) --- */

/* The authenticated caller, stored on the request by br_auth. */
struct br_session {
    char session_id[37];
    char user_id[37];
    char ip[SHOAL_IP_MAX];
    time_t expires_at;
};

/* shoal_auth_fn for SHOAL_ROUTE_AUTH routes. */
int br_auth(struct shoal_req *req, const char *bearer, struct shoal_err *err);

/* The caller of an authenticated route (borrowed). */
const struct br_session *br_caller(const struct shoal_req *req);

/* The keyed hash of a UUID secret (Authentication ID, invite). */
void br_secret_hash(const struct br_app *app, const char *uuid,
                    unsigned char out[32]);

/* --- the route table (routes.c) --- */

extern const struct shoal_route br_routes[];
extern const size_t br_nroutes;

/* --- migrations (migrate.c) --- */
int br_migrate(PGconn *conn, struct shoal_err *err);

/* --- handlers --- */
#define BR_HANDLER(name) \
    int name(struct shoal_req *req, json_t **reply, struct shoal_err *err)

BR_HANDLER(h_health);
BR_HANDLER(h_metrics);
BR_HANDLER(h_user_create);
BR_HANDLER(h_user_get);
BR_HANDLER(h_session_create);
BR_HANDLER(h_session_list);
BR_HANDLER(h_session_check);
BR_HANDLER(h_session_delete);
BR_HANDLER(h_trusted_get);
BR_HANDLER(h_trusted_put);
BR_HANDLER(h_trust_sessions);
BR_HANDLER(h_broker_list);
BR_HANDLER(h_broker_create);
BR_HANDLER(h_broker_delete);
BR_HANDLER(h_invite_create);

/* Small shared helpers for handlers (handlers.c). */

/* The app of a request. */
struct br_app *br_app_of(const struct shoal_req *req);
/* Path parameter 'name' as a canonical lowercase UUID into out. */
int br_param_uuid(const struct shoal_req *req, const char *name,
                  char out[37], struct shoal_err *err);
/* RFC 3339 text of a Unix time as a new JSON string. */
json_t *br_time_json(long long t);
/* Base64 of a bytea column value in text format ("\x…" hex) as a new JSON
 * string, or NULL on a malformed value. */
json_t *br_bytea_b64_json(const char *pg_hex);
/* The "\x…" text form of bytes for a bytea parameter into out
 * (2*len+3 bytes). */
void br_bytea_text(const unsigned char *bin, size_t len, char *out);

#endif
