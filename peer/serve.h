/*
 * serve.h - what the peer holds to serve others, and how 'shoal serve'
 * lets them in: verified manifests and pieces on disk (held.c), calls to
 * the broker from many threads with the peer's own session (link.c), and
 * the check of every request's session (gate.c).
 *
 * On disk, under the data folder (--data-dir, else $XDG_DATA_HOME/shoal,
 * else ~/.local/share/shoal), mode 0700:
 *
 *   store/pieces/ab/<sha-256 hex>   the pieces (api/store.h), by hash
 *   store/tmp/                      pieces being written
 *   files/<file id>/<version>.json  the manifest of each version held, as
 *                                   the broker answered it (x_sign
 *                                   included), checked before it is kept
 *                                   and again when it is loaded; with
 *                                   "kept_by": "get" when 'shoal get'
 *                                   wrote it (a cache: evict.c)
 *   stats.json                      bytes uploaded and downloaded, in all
 *                                   and per version (for the seed ratio)
 *   holders.json, manifests/        peer exchange (pex.h)
 *
 * A manifest record is written (atomically) once every piece of its
 * version is in the store ('shoal seed'), or when 'shoal get' starts to
 * download the version into the store: a version may be held in part,
 * and what is held is what the store has (its /have).
 *
 *   serve.json                      {"pid", "url"} of the 'shoal serve'
 *                                   running on the folder, locked by it
 *                                   (flock) while it runs
 */
#ifndef PR_SERVE_H
#define PR_SERVE_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <jansson.h>

#include "err.h"
#include "http.h"
#include "identity.h"
#include "manifest.h"
#include "peer.h"
#include "piecemap.h"
#include "progress.h"
#include "store.h"

/* The commands of this part (main.c's table). */
int pr_cmd_serve(struct pr_ctx *ctx, int argc, char **argv,
                 struct shoal_err *err);
int pr_cmd_seed(struct pr_ctx *ctx, int argc, char **argv,
                struct shoal_err *err);

/* --- manifests and the data folder (held.c) --- */

/* A manifest that passed every check: signed by the pinned broker key,
 * body equal to what was signed, piece hashes giving the signed root. */
struct pr_version {
    char file_id[37];
    uint64_t version;
    uint64_t size;
    uint32_t piece_size;
    uint64_t npieces;
    unsigned char root[SHOAL_HASH_BYTES];
    unsigned char (*hashes)[SHOAL_HASH_BYTES];     /* npieces of them */
    char xsign[SHOAL_XSIGN_MAX];                   /* the X-Sign value */
    int64_t expires;                               /* of the signature */
    int kept;        /* the record was written by 'shoal get' (PR_RECORD_KEPT):
                      * a cache, evictable (evict.c); 0: owned (seeded) */
    /* A web object kept by 'shoal fetch' (PR_RECORD_FETCH), seeded under
     * the dCDN policy (webseed.h); url NULL for any other version. */
    char *url;                                     /* owned */
    int64_t injected_at;                           /* unix seconds */
    int64_t inj_expires;   /* of the injector's signature; 0: unknown */
};

void pr_version_free(struct pr_version *v);

/*
 * Check a manifest answer ans (GET /v1/files/{id}/manifest) of file_id
 * against the pinned broker of id.  xsign: the X-Sign header of the
 * answer, or NULL to use its x_sign.  The signature must not have expired
 * at now (0: do not look at the expiry).  New pr_version in *out, or -1
 * with SHOAL_EPROTO saying why the manifest is refused (SHOAL_EIO for an
 * identity without a pinned key).
 */
int pr_manifest_verify(const struct pr_identity *id, const char *file_id,
                       const json_t *ans, const char *xsign, int64_t now,
                       struct pr_version **out, struct shoal_err *err);

/* The data folder: override when not NULL, else from the environment.
 * New string (free()), or NULL with SHOAL_EIO. */
char *pr_data_dir(const char *override, struct shoal_err *err);

struct pr_held;

/* Open (creating it) the data folder dir: its store and its records. */
struct pr_held *pr_held_open(const char *dir, struct shoal_err *err);
void pr_held_close(struct pr_held *h);
/* The piece store (borrowed). */
struct shoal_store *pr_held_store(const struct pr_held *h);
/* The data folder (borrowed). */
const char *pr_held_dir(const struct pr_held *h);

/*
 * Read every piece of v from fd (a file of exactly v->size bytes, named
 * path in messages) and keep it in the store, checked against its hash.
 * *added (may be NULL) gets the number of pieces that were new to the
 * store.  -1 with err at the first piece that does not match (SHOAL_EPROTO
 * naming it; the pieces before it stay) or on an I/O failure.
 */
int pr_held_import(struct pr_held *h, const struct pr_version *v, int fd,
                   const char *path, struct pr_progress *progress,
                   uint64_t *added, struct shoal_err *err);

/* Keep the manifest ans (checked into v) of a version whose pieces are
 * in the store, or are being downloaded into it by 'shoal get':
 * files/<id>/<version>.json, written atomically. */
int pr_held_record(struct pr_held *h, const struct pr_version *v,
                   const json_t *ans, struct shoal_err *err);

/* --- versions kept by 'shoal get': a cache (evict.c) --- */

/* The field of a record written by 'shoal get' ("kept_by": "get"): the
 * version is a cache that 'shoal serve --max-storage' may evict.  A
 * record without it (written by 'shoal seed') is owned: never evicted.
 * pr_manifest_verify ignores the field. */
/* Bytes of pieces kept memory-mapped for ranges across pieces (address
 * space over the page cache; see piecemap.h). */
#define PR_SERVE_MAPS (1ULL << 30)

#define PR_RECORD_KEPT "kept_by"

/* A record written by 'shoal fetch' is a cache too ("kept_by": "fetch")
 * and says which web object it holds: its URL, when it was injected (RFC
 * 3339; when it was kept if the peer did not learn it), and the
 * injector's X-Sign (its expiry).  The checks ignore these fields;
 * pr_held_record_kept keeps them. */
#define PR_RECORD_FETCH "fetch"
#define PR_RECORD_URL "url"
#define PR_RECORD_INJECTED_AT "injected_at"
#define PR_RECORD_INJECT_XSIGN "inject_x_sign"

/* pr_held_record for a version kept by 'shoal get': ans is written with
 * PR_RECORD_KEPT, unless the record on disk is owned already, which then
 * stays owned (ans is written without it).  A record on disk kept by
 * 'shoal fetch' stays so, with its URL fields.  ans is not changed. */
int pr_held_record_kept(struct pr_held *h, const struct pr_version *v,
                        const json_t *ans, struct shoal_err *err);
/* The record of (file_id, version) on disk: 1 when kept by 'shoal get',
 * 0 when owned (or when it cannot be read: never evict on a doubt), -1
 * when there is none. */
int pr_held_kept(const struct pr_held *h, const char *file_id,
                 uint64_t version);
/* Remove the record of (file_id, version) (its pieces stay).  -1 with
 * err (SHOAL_EIO); none is fine. */
int pr_held_forget(struct pr_held *h, const char *file_id, uint64_t version,
                   struct shoal_err *err);

/*
 * Every record on disk that want(arg, file_id, version) asks for (want
 * NULL: all), checked again with id (signature, root), in the order of
 * their names: fn(arg, v) takes each new pr_version (and frees it); a
 * record that does not check out is skipped with a warning.  Returns the
 * number of records given to fn, or -1 with err when the folder cannot
 * be read.
 */
int pr_held_each(struct pr_held *h, const struct pr_identity *id,
                 int (*want)(void *arg, const char *file_id, uint64_t version),
                 void (*fn)(void *arg, struct pr_version *v), void *arg,
                 struct shoal_err *err);

/* serve.json: say that the serve at url runs on the data folder dir.
 * The file stays locked while the returned fd is open
 * (pr_held_serving_end).  -1 with err: SHOAL_EEXISTS when another
 * serve runs on dir. */
int pr_held_serving(const char *dir, const char *url, struct shoal_err *err);
void pr_held_serving_end(const char *dir, int fd);

/* The serve running on the data folder dir: 1 with its URL and pid, 0
 * when none runs (a serve.json left by one that died is not locked). */
int pr_serve_running(const char *dir, char url[PR_URL_MAX], long *pid);

/* stats.json: new reference (an empty object when there is none). */
json_t *pr_held_stats_load(const struct pr_held *h);
int pr_held_stats_save(const struct pr_held *h, const json_t *stats,
                       struct shoal_err *err);

/* --- the broker, from many threads (link.c) --- */

struct pr_link;

/* Calls to the broker of id as its user.  The session starts as the
 * cached one at session_path when alive, else a new login; it is renewed
 * when it expires or the broker refuses it.  NULL with err. */
struct pr_link *pr_link_new(const struct pr_identity *id,
                            const char *session_path, struct shoal_err *err);
void pr_link_free(struct pr_link *l);

/* One call (shoal_client_call), from any thread, with one new login and
 * retry when the broker refuses the peer's own session.  *reply (may be
 * NULL) gets a new reference.  With xsign not NULL, the X-Sign header of
 * the answer is copied there (empty when none). */
int pr_link_call(struct pr_link *l, const char *method, const char *path,
                 const json_t *body, json_t **reply,
                 char xsign[SHOAL_XSIGN_MAX], struct shoal_err *err);

/* The peer's own user id (borrowed). */
const char *pr_link_user(const struct pr_link *l);

/* The live session of the peer's own user into sid (a secret: wipe it
 * after use), logging in when there is none; for calls made outside
 * pr_link_call (the injector proxy's streams, proxy.c). */
int pr_link_session(struct pr_link *l, char sid[37], struct shoal_err *err);

/* --- who may read what (gate.c) --- */

struct pr_gate;

/* Check sessions through the broker of l (borrowed), caching a yes for
 * at most ttl seconds and never past the session's expiry. */
struct pr_gate *pr_gate_new(struct pr_link *l, double ttl);
void pr_gate_free(struct pr_gate *g);

/*
 * May session sid, presented from ip, read file_id (NULL: only whether
 * the session is good)?  0 with the session's user in user_id, or -1 with
 * err as the peer answers it: 403 session_unknown (unknown or revoked),
 * 401 session_expired, 409 ip_mismatch (*close set: close the
 * connection), 403 forbidden (no read access), 404 / 410 (the file is
 * unknown or deleted), 503 (the broker cannot be asked).
 */
int pr_gate_check(struct pr_gate *g, const char *sid, const char *ip,
                  const char *file_id, char user_id[37], int *close,
                  struct shoal_err *err);

/* Pull the trust bubble (GET /v1/trust/sessions) and use it from now on.
 * -1 with err (the previous bubble stays). */
int pr_gate_pull(struct pr_gate *g, struct shoal_err *err);

struct pr_gate_stats {
    unsigned long long cached;     /* answered from the cache */
    unsigned long long bubble;     /* sessions found in the trust bubble */
    unsigned long long asked;      /* questions to the broker */
    unsigned long long refused;
    unsigned long long bubble_size;
};
void pr_gate_stats(struct pr_gate *g, struct pr_gate_stats *out);

/* --- the daemon (serve.c: what it serves and how; cmd_serve.c: the
 *     command, announcements, the loop) --- */

/* One version in memory. */
struct pr_served {
    struct pr_version *v;            /* owned; xsign/expires under the lock */
    int refs;                        /* under the lock */
    int live;                        /* in the table (else freed at 0 refs) */
    int admitted;                    /* within --max-storage */
    int gone;                        /* the broker said it is no more */
    int announced;                   /* a live announcement stands */
    _Atomic unsigned long long uploaded;   /* bytes served, ever */
    _Atomic long long used_ms;       /* last served or added (unix ms): LRU */
    int warned;                      /* "does not fit" logged (evict.c) */
};

struct pr_srv {
    const struct pr_identity *id;
    struct pr_held *held;
    struct pr_link *link;
    struct pr_gate *gate;
    char advertise[PR_URL_MAX];
    uint64_t max_storage;            /* bytes, 0: no limit */
    double max_ratio;                /* 0: no limit */
    pthread_mutex_t lock;            /* guards the table */
    struct pr_served **tab;
    size_t n, cap;
    uint64_t admitted_bytes;
    _Atomic unsigned long long uploaded, downloaded;
    _Atomic unsigned long long (*count)[600];   /* per route and status */
    struct pr_rate *rate;            /* --max-upload-rate, or NULL */
    struct shoal_piecemap *maps;     /* ranges across pieces (piecemap.h) */
    struct pr_proxy *proxy;          /* --act-as-proxy (proxy.h), or NULL */
    _Atomic unsigned long long evicted, evicted_bytes;  /* evict.c */
    int64_t web_age;                 /* --max-web-age, seconds; 0: none */
    _Atomic unsigned long long retired[4];  /* by enum pr_web_fate */
};

extern const struct shoal_route pr_serve_routes[];
extern const size_t pr_serve_nroutes;

/* Let req in when its session bearer, from its address, passes the gate
 * (with file_id not NULL: may read that file), and name its user; else -1
 * with err as the gate says (a 409 closes the connection). */
int pr_serve_admit(struct shoal_req *req, const char *bearer,
                   const char *file_id, struct shoal_err *err);

/* shoal_auth_fn and shoal_observe_fn of the routes. */
int pr_serve_auth(struct shoal_req *req, const char *bearer,
                  struct shoal_err *err);
void pr_serve_observe(void *app, const struct shoal_route *route,
                      const char *method, int status, double secs);

/* Take v (a new version, or a record of one held already: its X-Sign is
 * then renewed when v's lasts longer). */
void pr_serve_add(struct pr_srv *srv, struct pr_version *v);
/* 1 when (file_id, version) is in the table. */
int pr_serve_has(struct pr_srv *srv, const char *file_id, uint64_t version);
/* The version (0: the latest held) of file_id that is served, held until
 * pr_serve_put; NULL when none. */
struct pr_served *pr_serve_get(struct pr_srv *srv, const char *file_id,
                               uint64_t version);
void pr_serve_put(struct pr_srv *srv, struct pr_served *s);
/* 1 when s has served its seed ratio. */
int pr_serve_seeded_out(const struct pr_srv *srv, const struct pr_served *s);
/* Forget every version. */
void pr_serve_clear(struct pr_srv *srv);

/* --- --max-storage: what is served, what is evicted (evict.c) --- */

/* Now, in unix milliseconds (the clock of used_ms). */
long long pr_serve_now_ms(void);

/*
 * Bring what srv holds within --max-storage: evict whole versions kept by
 * 'shoal get' (never owned ones, nor one whose pieces are not all in the
 * store), least recently used first, and admit (serve) the others that
 * fit; those that do not fit wait, with a warning.  An evicted version
 * leaves the table, its record is removed, and so are its pieces that no
 * other version in the table uses; evicted(arg, v, announced) is called
 * first for each (to withdraw its announcement).  Returns the number of
 * versions evicted.  From one thread at a time (the announce loop).
 */
size_t pr_serve_evict(struct pr_srv *srv,
                      void (*evicted)(void *arg, const struct pr_version *v,
                                      int announced),
                      void *arg);

/*
 * End the seeding of the web objects whose time is over (webseed.h):
 * superseded by a newer injection of the URL held here, older than
 * srv->web_age since their injection, or past the injector's signature.
 * Each leaves the table, its record is removed, and so are its pieces
 * that no other version in the table uses; retired(arg, v, announced) is
 * called first (to withdraw its announcement).  A record that 'shoal
 * seed' has made owned meanwhile stays.  Returns the number retired.
 * From one thread at a time (the announce loop).
 */
size_t pr_serve_retire(struct pr_srv *srv,
                       void (*retired)(void *arg, const struct pr_version *v,
                                       int announced),
                       void *arg);

/* --- the upload limit (rate.c) --- */

struct pr_rate;

/* A limit of bytes_per_sec (more than 0) shared by every caller; NULL
 * on ENOMEM or for 0. */
struct pr_rate *pr_rate_new(uint64_t bytes_per_sec);
void pr_rate_free(struct pr_rate *r);
/* How many of want bytes (at least 1 when want is) may be sent now by a
 * caller of limit arg (a struct pr_rate); sleeps first when the limit
 * says so.  Thread-safe; the pace function of struct shoal_pieceserve. */
size_t pr_rate_take(void *arg, size_t want);

/* --- sizes and durations on the command line (held.c) --- */

/* "123", "512K", "20GiB", "1.5G" (K, M, G, T, with or without "iB":
 * powers of 1024).  -1 when it does not parse. */
int pr_size_parse(const char *s, uint64_t *out);
/* "90", "90s", "5m", "2h", "0.5s".  -1 when it does not parse or is
 * negative. */
int pr_seconds_parse(const char *s, double *out);

#endif
