/*
 * db_inject.c - the injector's tables: its system user and share, the
 * record of each injected URL (004_inject.sql), and the commit that makes
 * an injection a file version.
 *
 * The injector's system user has the broker's id as its user id and the
 * broker's signing key as its public key; nobody knows an Authentication
 * ID of it, so nobody logs in as it.  Its share "injected" is readable by
 * every registered user (shares.readable_by_all) and writable by nobody
 * else.  Both are made on the first injection.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "inject.h"
#include "log.h"

int br_inject_share(struct br_app *app, char share_id[37],
                    struct shoal_err *err)
{
    struct br_inject *inj = app->inject;
    int rc = -1;

    pthread_mutex_lock(&inj->lock);
    if (inj->share_id[0] != '\0') {
        memcpy(share_id, inj->share_id, 37);
        pthread_mutex_unlock(&inj->lock);
        return 0;
    }
    unsigned char unknown[32];
    char pk_hx[2 * SHOAL_PK_BYTES + 3], hash_hx[2 * 32 + 3], new_id[37];
    randombytes_buf(unknown, sizeof unknown);
    br_bytea_text(app->pk, SHOAL_PK_BYTES, pk_hx);
    br_bytea_text(unknown, sizeof unknown, hash_hx);
    shoal_uuid_v4(new_id);
    PGconn *c = br_db_get(app->db, err);
    if (c == NULL)
        goto out;
    const char *p[] = { app->broker_id, pk_hx, hash_hx };
    PGresult *r = br_db_query(c,
        "INSERT INTO users (user_id, public_key, auth_hash) VALUES ($1, $2, $3)"
        " ON CONFLICT (user_id) DO NOTHING", 3, p, err);
    if (r == NULL)
        goto out;
    PQclear(r);
    const char *q[] = { new_id, app->broker_id, BR_INJECT_OWNER_SHARE };
    r = br_db_query(c,
        "INSERT INTO shares (share_id, owner_id, name, readable_by_all)"
        " VALUES ($1, $2, $3, true) ON CONFLICT (owner_id, name) DO UPDATE"
        " SET readable_by_all = true RETURNING share_id", 3, q, err);
    if (r == NULL)
        goto out;
    snprintf(inj->share_id, sizeof inj->share_id, "%s", PQgetvalue(r, 0, 0));
    PQclear(r);
    memcpy(share_id, inj->share_id, 37);
    rc = 0;
out:
    br_db_put(app->db, c);
    pthread_mutex_unlock(&inj->lock);
    return rc;
}

int br_inject_pin(struct br_app *app, const char *injection_id,
                  const unsigned char hash[32], uint32_t len,
                  struct shoal_err *err)
{
    char hx[2 * 32 + 3], size[16];
    br_bytea_text(hash, 32, hx);
    snprintf(size, sizeof size, "%u", len);
    const char *p[] = { injection_id, app->broker_id, hx, size };
    PGresult *r = br_db_exec(app->db,
        "WITH pin AS (INSERT INTO inject_pins (injection_id, broker_id, hash)"
        "  VALUES ($1, $2, $3))"
        " INSERT INTO pieces (hash, size, refs) VALUES ($3, $4::integer, 1)"
        " ON CONFLICT (hash) DO UPDATE SET refs = pieces.refs + 1,"
        " size = EXCLUDED.size, freed_at = NULL", 4, p, err);
    if (r == NULL)
        return -1;
    PQclear(r);
    return 0;
}

/* Release pins (of injection key, or of broker key) on c: the hashes
 * whose count fell to 0, as a result of hex text and refs (PQclear), or
 * NULL with err. */
#define UNPIN_SQL(where) \
    "WITH gone AS (DELETE FROM inject_pins WHERE " where " = $1 RETURNING hash)," \
    " n AS (SELECT hash AS h, count(*) AS k FROM gone GROUP BY hash ORDER BY hash)" \
    " UPDATE pieces p SET refs = p.refs - n.k," \
    "  freed_at = CASE WHEN p.refs = n.k THEN now() ELSE p.freed_at END" \
    " FROM n WHERE p.hash = n.h RETURNING encode(p.hash, 'hex'), p.refs"

void br_inject_unpin(struct br_app *app, const char *key, int by_broker)
{
    struct shoal_err err;
    PGconn *c = br_db_get(app->db, &err);
    if (c == NULL) {
        shoal_log(SHOAL_LOG_WARN, NULL, "inject: pins not released: %s", err.msg);
        return;
    }
    const char *p[] = { key };
    PGresult *r = br_db_query(c, by_broker ? UNPIN_SQL("broker_id")
                                           : UNPIN_SQL("injection_id"), 1, p, &err);
    if (r == NULL) {
        shoal_log(SHOAL_LOG_WARN, NULL, "inject: pins not released: %s", err.msg);
        br_db_put(app->db, c);
        return;
    }
    for (int i = 0; i < PQntuples(r); i++) {
        unsigned char hash[32];
        if (strcmp(PQgetvalue(r, i, 1), "0") == 0 && app->store != NULL &&
            shoal_hex_decode_exact(PQgetvalue(r, i, 0), hash, 32, "hash", NULL) == 0)
            br_gc_remove(app, c, hash);
    }
    PQclear(r);
    br_db_put(app->db, c);
}

/* The bitfield of n pieces, all held, as "\x…" bytea text (new string). */
static char *all_held(uint64_t n)
{
    size_t bytes = (size_t)((n + 7) / 8);
    unsigned char *b = malloc(bytes ? bytes : 1);
    char *text = malloc(2 * bytes + 3);
    if (b == NULL || text == NULL) {
        free(b);
        free(text);
        return NULL;
    }
    memset(b, 0xff, bytes);
    if (n % 8 != 0)
        b[bytes - 1] = (unsigned char)(0xff << (8 - n % 8));
    br_bytea_text(b, bytes, text);
    free(b);
    return text;
}

/* The URL's file and its next version, the file row locked: 1 when the
 * URL has a live file, 0 when not, -1 with err. */
static int current_file(PGconn *c, const char *url, char file_id[37],
                        int *next, struct shoal_err *err)
{
    const char *p[] = { url };
    PGresult *r = br_db_query(c,
        "SELECT f.file_id, f.latest FROM injections i"
        " JOIN files f ON f.file_id = i.file_id AND f.deleted_at IS NULL"
        " WHERE i.url = $1 FOR UPDATE OF f", 1, p, err);
    if (r == NULL)
        return -1;
    int found = PQntuples(r) == 1;
    if (found) {
        snprintf(file_id, 37, "%s", PQgetvalue(r, 0, 0));
        *next = atoi(PQgetvalue(r, 0, 1)) + 1;
    }
    PQclear(r);
    return found;
}

/* The statements of one attempt at the commit, in c's open transaction. */
static int commit_once(struct br_app *app, PGconn *c, const char *share_id,
                       struct br_injected *in, struct shoal_err *err)
{
    char swarm_hex[65], ver[16], status[16], exp[24], ttl[24], held[24];
    char *bits = NULL;
    int rc = -1, next = 1;
    PGresult *r;

    int found = current_file(c, in->url, in->file_id, &next, err);
    if (found < 0)
        return -1;
    shoal_hex_encode(in->swarm, 32, swarm_hex);
    if (!found) {
        shoal_uuid_v4(in->file_id);
        const char *p[] = { in->file_id, share_id, app->broker_id, swarm_hex };
        r = br_db_query(c, "INSERT INTO files (file_id, share_id, owner_id, path,"
                           " name, latest) VALUES ($1, $2, $3, '', $4, 1)", 4, p, err);
        if (r == NULL)
            return -1;                 /* EEXISTS: injected meanwhile */
        PQclear(r);
    }
    if (br_version_insert(c, in->file_id, next, app->broker_id, in->size,
                          SHOAL_PIECE_DEFAULT, in->hashes, in->npieces, err) != 0)
        return -1;
    snprintf(ver, sizeof ver, "%d", next);
    if (found) {
        const char *p[] = { in->file_id, ver };
        r = br_db_query(c, "UPDATE files SET latest = $2::integer, updated_at = now()"
                           " WHERE file_id = $1", 2, p, err);
        if (r == NULL)
            return -1;
        PQclear(r);
    }

    struct shoal_xsign x;
    memset(&x, 0, sizeof x);
    memcpy(x.key, app->broker_id, sizeof x.key);
    x.version = (uint64_t)next;
    x.size = in->size;
    x.piece_size = SHOAL_PIECE_DEFAULT;
    memcpy(x.root, in->root, 32);
    x.expires = in->expires;
    x.has_meta = 1;
    memcpy(x.meta, in->meta_hash, 32);
    shoal_xsign_sign(&x, in->file_id, app->sk);
    shoal_xsign_format(&x, in->x_sign);
    in->version = next;

    snprintf(status, sizeof status, "%d", in->status);
    snprintf(exp, sizeof exp, "%lld", in->expires);
    const char *q[] = { in->url, swarm_hex, in->file_id, ver, app->broker_id,
                        status, in->meta, in->x_sign, exp };
    r = br_db_query(c,
        "INSERT INTO injections (url, swarm, file_id, version, broker_id,"
        " origin_status, meta, x_sign, expires_at) VALUES ($1, decode($2, 'hex'),"
        " $3, $4::integer, $5, $6::smallint, $7, $8, to_timestamp($9::bigint))"
        " ON CONFLICT (url) DO UPDATE SET file_id = EXCLUDED.file_id,"
        " version = EXCLUDED.version, broker_id = EXCLUDED.broker_id,"
        " origin_status = EXCLUDED.origin_status, meta = EXCLUDED.meta,"
        " x_sign = EXCLUDED.x_sign, expires_at = EXCLUDED.expires_at,"
        " injected_at = now(), failed_at = NULL, failure = NULL", 9, q, err);
    if (r == NULL)
        return -1;
    PQclear(r);

    /* The injector seeds what it filled: one announcement, for the current
     * version, lasting as long as the signature (at least peer_ttl). */
    if ((bits = all_held(in->npieces)) == NULL)
        return shoal_err_set(err, SHOAL_EINTERNAL, "out of memory");
    snprintf(held, sizeof held, "%llu", (unsigned long long)in->npieces);
    snprintf(ttl, sizeof ttl, "%lld", app->peer_ttl);
    const char *w[] = { in->file_id, app->broker_id, app->public_url };
    r = br_db_query(c, "DELETE FROM peers WHERE file_id = $1 AND user_id = $2"
                       " AND url = $3", 3, w, err);
    if (r == NULL)
        goto out;
    PQclear(r);
    const char *a[] = { in->file_id, ver, app->broker_id, app->public_url, bits,
                        held, exp, ttl };
    r = br_db_query(c,
        "INSERT INTO peers (file_id, version, user_id, url, have, held,"
        " announced_at, expires_at) VALUES ($1, $2::integer, $3, $4, $5,"
        " $6::bigint, now(), greatest(to_timestamp($7::bigint),"
        " now() + make_interval(secs => $8::bigint)))", 8, a, err);
    if (r == NULL)
        goto out;
    PQclear(r);

    /* The version counts the pieces now: the injection's pins go. */
    const char *u[] = { in->injection_id };
    r = br_db_query(c, UNPIN_SQL("injection_id"), 1, u, err);
    if (r == NULL)
        goto out;
    PQclear(r);
    /* Pinned before they were stored, the pieces cannot have gone: check
     * all the same rather than sign what is not here. */
    for (uint64_t i = 0; i < in->npieces; i++)
        if (!shoal_store_has(app->store, in->hashes[i])) {
            shoal_err_set(err, SHOAL_EIO, "piece %llu of the injection is"
                          " missing from the store", (unsigned long long)i);
            goto out;
        }
    rc = 0;
out:
    free(bits);
    return rc;
}

int br_inject_commit(struct br_app *app, const char *share_id,
                     struct br_injected *in, struct shoal_err *err)
{
    PGconn *c = br_db_get(app->db, err);
    int rc = -1;
    if (c == NULL)
        return -1;
    /* A first injection of the URL made by another request meanwhile
     * takes the file's name: the second attempt finds that file. */
    for (int attempt = 0; attempt < 2; attempt++) {
        struct shoal_err e;
        shoal_err_clear(&e);
        if (br_db_begin(c, err) != 0)
            break;
        if (commit_once(app, c, share_id, in, &e) == 0 && br_db_commit(c, &e) == 0) {
            rc = 0;
            break;
        }
        br_db_rollback(c);
        if (err)
            *err = e;
        if (e.code != SHOAL_EEXISTS)
            break;
    }
    br_db_put(app->db, c);
    if (rc == 0)
        br_cache_file_changed(app->cache, in->file_id);
    return rc;
}

void br_inject_failed(struct br_app *app, const char *url, const char *why)
{
    struct shoal_err err;
    const char *p[] = { url, why };
    PGresult *r = br_db_exec(app->db,
        "UPDATE injections SET failed_at = now(), failure = left($2, 256)"
        " WHERE url = $1", 2, p, &err);
    if (r == NULL)
        shoal_log(SHOAL_LOG_WARN, NULL, "inject: cannot note a failure: %s", err.msg);
    PQclear(r);
}

/* The kept headers of a metadata text (its lines after url and status)
 * as a new JSON object. */
static json_t *meta_headers(const char *meta)
{
    json_t *o = json_object();
    const char *p = meta;
    int line = 0;
    while (o && *p) {
        const char *nl = strchr(p, '\n');
        size_t n = nl ? (size_t)(nl - p) : strlen(p);
        const char *sep = memchr(p, ':', n);
        if (line++ >= 2 && sep != NULL && sep + 1 < p + n && sep[1] == ' ') {
            char *name = strndup(p, (size_t)(sep - p));
            json_t *v = json_stringn(sep + 2, (size_t)(p + n - sep - 2));
            if (name == NULL || v == NULL || json_object_set_new(o, name, v) != 0) {
                json_decref(o);
                o = NULL;
            }
            free(name);
        }
        p += n + (nl != NULL);
    }
    return o;
}

#define RECORD_SQL \
    "SELECT i.url, encode(i.swarm, 'hex'), i.file_id, i.version, i.broker_id," \
    " i.origin_status, i.meta, i.x_sign, extract(epoch FROM i.expires_at)::bigint," \
    " extract(epoch FROM i.injected_at)::bigint," \
    " extract(epoch FROM i.failed_at)::bigint, i.failure, v.size, v.npieces," \
    " encode(v.root, 'hex')" \
    " FROM injections i JOIN versions v USING (file_id, version)"

json_t *br_inject_record(struct br_app *app, const char *key, int by_swarm,
                         struct shoal_err *err)
{
    const char *p[] = { key };
    PGresult *r = br_db_exec(app->db, by_swarm
        ? RECORD_SQL " WHERE i.swarm = decode($1, 'hex')"
        : RECORD_SQL " WHERE i.url = $1", 1, p, err);
    if (r == NULL)
        return NULL;
    if (PQntuples(r) != 1) {
        PQclear(r);
        shoal_err_set(err, SHOAL_ENOTFOUND, by_swarm
                      ? "no injection in swarm '%.64s'"
                      : "'%.200s' was never injected", key);
        return NULL;
    }
    json_t *failure = json_null();
    if (!PQgetisnull(r, 0, 10))
        failure = json_pack("{s:o, s:o}",
                            "at", br_time_json(strtoll(PQgetvalue(r, 0, 10), NULL, 10)),
                            "message", shoal_json_string_lossy(PQgetvalue(r, 0, 11)));
    json_t *j = json_pack(
        "{s:s, s:s, s:s, s:i, s:s, s:I, s:I, s:s, s:s, s:o, s:o, s:s,"
        " s:{s:i, s:o}, s:o}",
        "url", PQgetvalue(r, 0, 0), "swarm", PQgetvalue(r, 0, 1),
        "file_id", PQgetvalue(r, 0, 2), "version", atoi(PQgetvalue(r, 0, 3)),
        "broker_id", PQgetvalue(r, 0, 4),
        "size", (json_int_t)strtoll(PQgetvalue(r, 0, 12), NULL, 10),
        "pieces", (json_int_t)strtoll(PQgetvalue(r, 0, 13), NULL, 10),
        "root", PQgetvalue(r, 0, 14), "x_sign", PQgetvalue(r, 0, 7),
        "expires_at", br_time_json(strtoll(PQgetvalue(r, 0, 8), NULL, 10)),
        "injected_at", br_time_json(strtoll(PQgetvalue(r, 0, 9), NULL, 10)),
        "meta", PQgetvalue(r, 0, 6),
        "origin", "status", atoi(PQgetvalue(r, 0, 5)),
        "headers", meta_headers(PQgetvalue(r, 0, 6)),
        "last_failure", failure);
    PQclear(r);
    if (j == NULL)
        shoal_err_set(err, SHOAL_EINTERNAL, "out of memory");
    return j;
}
