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
#include "manifest.h"
#include "piecemap.h"
#include "store.h"
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

/* A file row, as cached. */
struct br_file_row {
    char share_id[37];
    char owner_id[37];
    int latest;
    int deleted;
};

/* Find file_id through cache c (NULL: straight from the database): 1 with
 * *out filled, 0 when unknown, -1 with err. */
int br_file_find(struct br_cache *c, PGconn *conn, const char *file_id,
                 struct br_file_row *out, struct shoal_err *err);

/* br_share_access through cache c (NULL: none); only positive answers
 * are kept. */
int br_access_find(struct br_cache *c, PGconn *conn, const char *user_id,
                   const char *share_id, struct shoal_err *err);

/* This broker changed access (ACL, group members, a share) or a file row:
 * forget what its caches hold now, before answering, instead of when the
 * announcement comes back through the listener.  c may be NULL. */
void br_cache_acl_changed(struct br_cache *c);
void br_cache_file_changed(struct br_cache *c, const char *file_id);

/* --- an exact cache of small values (kvcache.c) --- */

struct br_kv;
/* nslots (rounded up to a power of two) values of vsize bytes, each kept
 * at most ttl seconds.  NULL on ENOMEM. */
struct br_kv *br_kv_new(size_t nslots, size_t vsize, double ttl);
void br_kv_free(struct br_kv *kv);
/* Read before fetching a value from the database; hand to br_kv_put. */
unsigned br_kv_epoch(struct br_kv *kv, const char *key);
/* 1 with the value copied to val, 0 on a miss. */
int br_kv_get(struct br_kv *kv, const char *key, void *val);
/* Store, unless key's slot saw an eviction since epoch was read. */
void br_kv_put(struct br_kv *kv, const char *key, const void *val,
               unsigned epoch);
void br_kv_evict(struct br_kv *kv, const char *key);
void br_kv_clear(struct br_kv *kv);

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
    struct shoal_store *store;     /* the file role's pieces (NULL: role off) */
    struct shoal_piecemap *maps;   /* maps of its pieces, or NULL (map_cache 0) */
    struct br_usage *usage;        /* metering (usage.c) */
    struct br_vcache *vcache;      /* versions in memory (vcache.c) */
    struct br_gc *gc;              /* freeing pieces (gc.c) */
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
    long long sign_ttl;            /* seconds a manifest signature lasts */
    long long peer_ttl;            /* seconds a tracker announcement lasts */
    struct br_inject *inject;      /* the injector role (inject.h; NULL: off) */
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

/* --- access to shares (acl.c) --- */

enum br_access {
    BR_ACCESS_NONE = 0,      /* unknown share, or the caller may not read */
    BR_ACCESS_READ = 1,
    BR_ACCESS_WRITE = 2,
    BR_ACCESS_OWNER = 3,
};

/* The access user_id has to share_id (canonical UUIDs): its owner, or
 * the best of the ACL entries naming the user or a group it is in.  -1
 * with err on a database failure. */
int br_share_access(PGconn *c, const char *user_id, const char *share_id,
                    struct shoal_err *err);

/* br_share_access, at least want: the access, or -1 with err set: 404
 * when user_id may not read the share, 403 when it may but less than
 * want (BR_ACCESS_WRITE or BR_ACCESS_OWNER). */
int br_share_need(PGconn *c, const char *user_id, const char *share_id,
                  enum br_access want, struct shoal_err *err);

/* Longest name of a share or a group, in bytes. */
#define BR_NAME_MAX 255

/* obj[key] must be a name: a string of 1 to BR_NAME_MAX bytes without
 * control characters (< 0x20, 0x7f).  *out is borrowed from obj. */
int br_json_name(const json_t *obj, const char *key, const char **out,
                 struct shoal_err *err);

/* After a failed insert or rename of a share or group (kind): a unique
 * violation in err is reworded as the caller owning a kind of that name.
 * Always returns -1. */
int br_name_taken(struct shoal_err *err, const char *kind);

/* Entry i of the JSON array list (obj[key]) as a canonical lowercase UUID
 * into id; SHOAL_EINVAL naming "key[i]" when it is not one. */
int br_json_uuid_at(const json_t *list, const char *key, size_t i,
                    char id[37], struct shoal_err *err);

/* obj[key] must be an array of at most max canonical UUIDs.  Returns them
 * lowercase, in order and with any duplicates, as a PostgreSQL array
 * literal "{a,b}" (new string: free()), and their number in *count (may
 * be NULL); NULL with SHOAL_EINVAL naming the bad entry. */
char *br_json_uuids(const json_t *obj, const char *key, size_t max,
                    size_t *count, struct shoal_err *err);

/* 1 when url is an absolute http or https URL made only of characters
 * RFC 3986 allows (percent-escapes included), with a host (h_brokers.c). */
int br_url_valid(const char *url);

/* "a,b" (UUIDs of 36 characters, as string_agg makes them; "" for none)
 * as a new JSON array of strings. */
json_t *br_id_list_json(const char *s);

/* 0 when every user of the array literal ids ("{a,b}") is registered,
 * else -1 with 404 naming the first that is not (in the order of ids). */
int br_users_exist(PGconn *c, const char *ids, struct shoal_err *err);

/* Share id as user viewer sees it (h_shares.c): a new reference, or NULL
 * with err, 404 when viewer may not read it. */
json_t *br_share_load(PGconn *c, const char *viewer, const char *id,
                      struct shoal_err *err);

/* --- files and versions (files.c) --- */

/* A file as the caller sees it. */
struct br_file {
    char file_id[37];
    char share_id[37];
    char owner_id[37];
    int latest;                      /* latest version */
    enum br_access access;           /* the caller's, on the share */
};

/* Load file {id} of the request for the caller: 404 when unknown or not
 * readable by the caller, 410 when deleted, 403 when want is
 * BR_ACCESS_WRITE and the caller may only read. */
int br_file_open(PGconn *c, const struct shoal_req *req, enum br_access want,
                 struct br_file *f, struct shoal_err *err);

/* The version a request names with ?version=N, else the latest. */
int br_version_arg(const struct shoal_req *req, const struct br_file *f,
                   int *version, struct shoal_err *err);

struct br_vent;
/* br_file_open, then the version br_version_arg names held from the
 * version cache in *e (NULL on failure; release with br_vent_put), on a
 * connection borrowed for the call: its answers are theirs and
 * br_vent_get's (404 when there is no such version).  The file and the
 * caller's access come from the caches, also for BR_ACCESS_WRITE (a
 * piece upload: it changes no row, and fills an immutable version; the
 * caches follow a revocation or a delete within the notification's
 * delay). */
int br_file_vent_get(const struct shoal_req *req, enum br_access want,
                     struct br_file *f, struct br_vent **e,
                     struct shoal_err *err);

/* A version, with the hashes of pieces first .. first+nhashes-1. */
struct br_version {
    int version;
    uint64_t size;
    uint32_t piece_size;
    uint64_t npieces;
    unsigned char root[32];
    long long created_at;
    char created_by[37];
    uint64_t first;                  /* index of hashes[0] */
    uint64_t nhashes;
    unsigned char (*hashes)[32];     /* owned; br_version_free */
};

/* Load a version and the hashes of npieces_wanted pieces from first_piece
 * (fewer when the version has fewer; 0 for none).  404 when missing. */
int br_version_load(PGconn *c, const char *file_id, int version,
                    uint64_t first_piece, uint64_t npieces_wanted,
                    struct br_version *v, struct shoal_err *err);
void br_version_free(struct br_version *v);

/* Insert version 'version' of file_id (size bytes in pieces of
 * piece_size, with these npieces hashes) made by user 'by', and count its
 * piece references, inside c's open transaction (h_files.c). */
int br_version_insert(PGconn *c, const char *file_id, int version,
                      const char *by, uint64_t size, uint32_t piece_size,
                      const unsigned char (*hashes)[32], uint64_t npieces,
                      struct shoal_err *err);

/* The holders of version v of file_id, as GET /v1/files/{id}/peers lists
 * them (file brokers, then live announcements), appended to the JSON
 * array list (h_peers.c). */
int br_peers_list(struct br_app *app, const char *file_id,
                  const struct br_version *v, json_t *list,
                  struct shoal_err *err);

/* url (len bytes as received: an embedded NUL makes strlen shorter) must
 * be a base URL: absolute http or https (br_url_valid), without query or
 * fragment, at most 2048 bytes; 400 naming 'url' otherwise (h_peers.c). */
int br_peer_url_check(const char *url, size_t len, struct shoal_err *err);

/* The X-Sign header value for a version, signed now; *expires (may be
 * NULL) gets its expiry. */
void br_version_xsign(const struct br_app *app, const char *file_id,
                      const struct br_version *v, char out[SHOAL_XSIGN_MAX],
                      long long *expires);

/* --- metering (usage.c) --- */

struct br_usage;
/* Count for user_id, in the current hour: bytes received, bytes served,
 * requests.  Cheap: memory only, flushed by a thread. */
void br_usage_add(struct br_app *app, const char *user_id,
                  unsigned long long ingress, unsigned long long egress,
                  unsigned requests);
/* This broker's totals since it started (for /metrics). */
void br_usage_totals(const struct br_app *app, unsigned long long *ingress,
                     unsigned long long *egress);
int br_usage_start(struct br_app *app, struct shoal_err *err);
void br_usage_stop(struct br_app *app);
/* Write this broker's counts now, and sample the stored bytes of user_id
 * (NULL: everyone's), so that a report includes everything up to now. */
void br_usage_flush(struct br_app *app, const char *user_id);

/* Body callback of PUT /v1/files/{id}/pieces/{n} (h_pieces.c). */
int br_piece_body(struct shoal_req *req, const char *data, size_t len,
                  struct shoal_err *err);

/* --- versions in memory (vcache.c) --- */

struct br_vcache;
/* A cache of at most budget bytes. NULL on ENOMEM. */
struct br_vcache *br_vcache_new(size_t budget);
void br_vcache_free(struct br_vcache *vc);
/* Version 'version' of file_id with all its hashes, from memory or the
 * database; hold it until br_vent_put.  404 when there is no such version. */
int br_vent_get(struct br_app *app, PGconn *conn, const char *file_id,
                int version, struct br_vent **out, struct shoal_err *err);
void br_vent_put(struct br_app *app, struct br_vent *e);
/* The version of an entry (borrowed while the entry is held). */
const struct br_version *br_vent_version(const struct br_vent *e);
/* The entry's X-Sign, signed again only when its expiry moves. */
void br_vent_xsign(struct br_app *app, struct br_vent *e, const char *file_id,
                   char out[SHOAL_XSIGN_MAX]);

/* --- freeing pieces (gc.c) --- */

struct br_gc;
/* Remove this broker's copy of a piece if, with its row locked, no
 * version counts it (c: a borrowed connection outside any transaction). */
void br_gc_remove(struct br_app *app, PGconn *c, const unsigned char hash[32]);
/* The sweeper thread (nothing when the file role is off). */
int br_gc_start(struct br_app *app, struct shoal_err *err);
void br_gc_stop(struct br_app *app);

/* --- the injector (h_inject.c) --- */

/* Read the inject_* keys and set up app->inject when the broker plays the
 * injector role; -1 with SHOAL_EINVAL on a bad value. */
int br_inject_start(struct br_app *app, struct shoal_err *err);
void br_inject_stop(struct br_app *app);

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
BR_HANDLER(h_file_create);
BR_HANDLER(h_file_update);
BR_HANDLER(h_file_list);
BR_HANDLER(h_file_get);
BR_HANDLER(h_file_versions);
BR_HANDLER(h_file_manifest);
BR_HANDLER(h_file_delete);
BR_HANDLER(h_file_content);
BR_HANDLER(h_piece_put);
BR_HANDLER(h_piece_get);
BR_HANDLER(h_piece_have);
BR_HANDLER(h_usage);
BR_HANDLER(h_group_create);
BR_HANDLER(h_group_list);
BR_HANDLER(h_group_get);
BR_HANDLER(h_group_update);
BR_HANDLER(h_group_delete);
BR_HANDLER(h_share_create);
BR_HANDLER(h_share_list);
BR_HANDLER(h_share_get);
BR_HANDLER(h_share_update);
BR_HANDLER(h_share_delete);
BR_HANDLER(h_share_acl_put);
BR_HANDLER(h_share_allocation_put);
BR_HANDLER(h_quota_get);
BR_HANDLER(h_quota_put);
BR_HANDLER(h_peer_announce);
BR_HANDLER(h_peer_list);
BR_HANDLER(h_peer_withdraw);
BR_HANDLER(h_report_create);
BR_HANDLER(h_report_list);
BR_HANDLER(h_inject);
BR_HANDLER(h_inject_get);
BR_HANDLER(h_swarm_get);
BR_HANDLER(h_swarm_peers_list);          /* h_swarms.c */
BR_HANDLER(h_swarm_peers_announce);
BR_HANDLER(h_swarm_peers_withdraw);
BR_HANDLER(h_challenge);

/* Small shared helpers for handlers (handlers.c). */

/* The app of a request. */
struct br_app *br_app_of(const struct shoal_req *req);
/* Path parameter 'name' as a canonical lowercase UUID into out. */
int br_param_uuid(const struct shoal_req *req, const char *name,
                  char out[37], struct shoal_err *err);
/* Path parameter {id} into id, which must be the caller's own user id:
 * 403 "the <what> of '<id>' belongs to another user" otherwise. */
int br_param_self(const struct shoal_req *req, const char *what, char id[37],
                  struct shoal_err *err);

/* Commit c and keep *reply; 0, or -1 when *reply is NULL (err set by
 * whoever failed to make it) or the commit fails (*reply dropped). */
int br_reply_commit(PGconn *c, json_t **reply, struct shoal_err *err);

/* Row i of a result as a JSON object (new reference; NULL on failure). */
typedef json_t *br_row_fn(PGresult *r, int i);

/* The rows of r as {key: [row(r, 0), …]} in *reply (new reference); r is
 * cleared here.  r NULL (its query failed, err set): -1. */
int br_rows_reply(PGresult *r, const char *key, br_row_fn *row,
                  json_t **reply, struct shoal_err *err);

/* The one row sql finds with $1 viewer and $2 id, as row(r, 0): a new
 * reference, or NULL with err, 404 "<what> '<id>' not found" when sql
 * finds none. */
json_t *br_row_load(PGconn *c, const char *sql, const char *viewer,
                    const char *id, const char *what, br_row_fn *row,
                    struct shoal_err *err);

/* Resource id as user viewer sees it: a new reference, or NULL with err. */
typedef json_t *br_load_fn(PGconn *c, const char *viewer, const char *id,
                           struct shoal_err *err);

/* GET of the resource at path parameter {id} for the caller, through
 * load, into *reply (new reference). */
int br_load_reply(struct shoal_req *req, br_load_fn *load, json_t **reply,
                  struct shoal_err *err);

/* RFC 3339 text of a Unix time as a new JSON string. */
json_t *br_time_json(long long t);
/* Base64 of a bytea column value in text format ("\x…" hex) as a new JSON
 * string, or NULL on a malformed value. */
json_t *br_bytea_b64_json(const char *pg_hex);
/* The "\x…" text form of bytes for a bytea parameter into out
 * (2*len+3 bytes). */
void br_bytea_text(const unsigned char *bin, size_t len, char *out);

#endif
