/*
 * h_peers.c - the tracker: a peer announces which pieces of a file
 * version its 'shoal serve' holds (POST /v1/files/{id}/peers) and
 * withdraws (DELETE); readers of the file ask who holds what (GET), the
 * file brokers first.  Announcements last peer_ttl unless refreshed;
 * main.c purges the stale ones.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "broker.h"
#include "pieceserve.h"

#define PEER_URL_MAX 2048            /* as the CHECK of 003_peers.sql */
#define PEERS_MAX 200                /* announcements one GET lists */

/* broker.h; also checks the url of a bad-source report (h_reports.c). */
int br_peer_url_check(const char *url, size_t len, struct shoal_err *err)
{
    if (len == 0 || len > PEER_URL_MAX || strlen(url) != len ||
        !br_url_valid(url) || strpbrk(url, "?#") != NULL)
        return shoal_err_set(err, SHOAL_EINVAL,
                             "'url' must be an absolute http or https base URL"
                             " without query or fragment, of at most %d bytes",
                             PEER_URL_MAX);
    return 0;
}

/* The bitfield b64 of version v decoded into a new buffer *bits (free())
 * of ceil(npieces / 8) bytes, with the number of bits set in *held.  400
 * when it is not base64 of that length, or sets a bit past the last
 * piece. */
static int have_decode(const char *b64, const struct br_version *v,
                       unsigned char **bits, uint64_t *held,
                       struct shoal_err *err)
{
    size_t n = (size_t)((v->npieces + 7) / 8);
    unsigned char *b = malloc(n ? n : 1);
    uint64_t count = 0;

    *bits = NULL;
    if (b == NULL)
        return shoal_err_set(err, SHOAL_EINTERNAL, "out of memory");
    if (shoal_b64_decode_exact(b64, b, n, "have", NULL) != 0) {
        free(b);
        return shoal_err_set(err, SHOAL_EINVAL,
                             "'have' must be base64 of %zu bytes, a bit for"
                             " each of the %llu pieces of version %d", n,
                             (unsigned long long)v->npieces, v->version);
    }
    if (v->npieces % 8 != 0 && (b[n - 1] & (0xffu >> (v->npieces % 8))) != 0) {
        free(b);
        return shoal_err_set(err, SHOAL_EINVAL,
                             "'have' sets a bit past the last of the %llu"
                             " pieces of version %d",
                             (unsigned long long)v->npieces, v->version);
    }
    for (size_t i = 0; i < n; i++)
        count += (uint64_t)__builtin_popcount(b[i]);
    *bits = b;
    *held = count;
    return 0;
}

/* --- POST /v1/files/{id}/peers ---------------------------------------- */

#define ANNOUNCE_SQL \
    "WITH old AS (SELECT expires_at > now() AS live FROM peers" \
    "  WHERE file_id = $1 AND version = $2::integer AND user_id = $3" \
    "  AND url = $4)" \
    " INSERT INTO peers (file_id, version, user_id, url, have, held," \
    "  announced_at, expires_at)" \
    " VALUES ($1, $2::integer, $3, $4, $5, $6::bigint, now()," \
    "  now() + make_interval(secs => $7::bigint))" \
    " ON CONFLICT (file_id, version, user_id, url) DO UPDATE SET" \
    "  have = EXCLUDED.have, held = EXCLUDED.held," \
    "  announced_at = EXCLUDED.announced_at, expires_at = EXCLUDED.expires_at" \
    " RETURNING extract(epoch FROM announced_at)::bigint," \
    "  extract(epoch FROM expires_at)::bigint," \
    "  coalesce((SELECT live FROM old), false)"

BR_HANDLER(h_peer_announce)
{
    static const char *const keys[] = { "url", "have", "version", NULL };
    struct br_app *app = br_app_of(req);
    const struct br_session *me = br_caller(req);
    json_t *body = shoal_req_body(req);
    const char *url, *have;
    json_int_t ver = 0;
    struct br_file f;
    struct br_vent *e = NULL;
    unsigned char *bits = NULL;
    char *bits_text = NULL, *b64 = NULL;
    uint64_t held = 0;
    PGconn *c = NULL;
    int rc = -1;

    if (shoal_json_only(body, keys, err) != 0 ||
        shoal_json_str(body, "url", &url, err) != 0 ||
        br_peer_url_check(url, json_string_length(json_object_get(body, "url")),
                 err) != 0 ||
        shoal_json_str(body, "have", &have, err) != 0)
        return -1;
    if (json_object_get(body, "version") != NULL) {
        if (shoal_json_int(body, "version", &ver, err) != 0)
            return -1;
        if (ver < 1 || ver > 2147483647)
            return shoal_err_set(err, SHOAL_EINVAL,
                                 "field 'version' must be a positive integer");
    }
    if ((c = br_db_get(app->db, err)) == NULL)
        return -1;
    if (br_file_open(c, req, BR_ACCESS_READ, &f, err) != 0 ||
        br_vent_get(app, c, f.file_id, ver ? (int)ver : f.latest, &e, err) != 0)
        goto out;
    const struct br_version *v = br_vent_version(e);
    size_t nbytes = (size_t)((v->npieces + 7) / 8);
    if (have_decode(have, v, &bits, &held, err) != 0)
        goto out;
    if ((bits_text = malloc(2 * nbytes + 3)) == NULL ||
        (b64 = shoal_b64_encode(bits, nbytes)) == NULL) {
        shoal_err_set(err, SHOAL_EINTERNAL, "out of memory");
        goto out;
    }
    br_bytea_text(bits, nbytes, bits_text);
    char version_t[16], held_t[24], ttl_t[24];
    snprintf(version_t, sizeof version_t, "%d", v->version);
    snprintf(held_t, sizeof held_t, "%llu", (unsigned long long)held);
    snprintf(ttl_t, sizeof ttl_t, "%lld", app->peer_ttl);
    const char *p[] = { f.file_id, version_t, me->user_id, url, bits_text,
                        held_t, ttl_t };
    PGresult *r = br_db_query(c, ANNOUNCE_SQL, 7, p, err);
    if (r == NULL)
        goto out;
    int refreshed = PQgetvalue(r, 0, 2)[0] == 't';
    *reply = json_pack("{s:s, s:i, s:I, s:s, s:s, s:s, s:I, s:b, s:o, s:o}",
                       "file_id", f.file_id, "version", v->version,
                       "pieces", (json_int_t)v->npieces,
                       "user_id", me->user_id, "url", url, "have", b64,
                       "held", (json_int_t)held, "complete", held == v->npieces,
                       "announced_at",
                       br_time_json(strtoll(PQgetvalue(r, 0, 0), NULL, 10)),
                       "expires_at",
                       br_time_json(strtoll(PQgetvalue(r, 0, 1), NULL, 10)));
    PQclear(r);
    if (*reply == NULL) {
        shoal_err_set(err, SHOAL_EINTERNAL, "out of memory");
        goto out;
    }
    shoal_req_set_status(req, refreshed ? 200 : 201);
    rc = 0;
out:
    br_db_put(app->db, c);
    br_vent_put(app, e);
    free(bits);
    free(bits_text);
    free(b64);
    return rc;
}

/* --- GET /v1/files/{id}/peers ----------------------------------------- */

/* The file brokers of the directory, this one first, onto list: this
 * broker with its bitfield (unless it holds no piece of v), the others
 * with null ones (ask their /have). */
static int list_brokers(struct br_app *app, const struct br_version *v,
                        json_t *list, struct shoal_err *err)
{
    const char *p[] = { app->broker_id };
    PGresult *r = br_db_exec(app->db,
        "SELECT broker_id, url FROM brokers"
        " WHERE ',' || roles || ',' LIKE '%,file,%'"
        " ORDER BY broker_id <> $1::uuid, broker_id", 1, p, err);
    if (r == NULL)
        return -1;
    int rc = 0;
    for (int i = 0; rc == 0 && i < PQntuples(r); i++) {
        const char *id = PQgetvalue(r, i, 0);
        json_t *have = json_null(), *held = json_null(), *complete = json_null();
        if (strcmp(id, app->broker_id) == 0) {
            uint64_t n = 0;
            char *b64 = app->store ? shoal_pieceserve_have(
                app->store, (const unsigned char (*)[SHOAL_HASH_BYTES])v->hashes,
                v->nhashes, &n) : NULL;
            if (app->store != NULL && b64 == NULL) {
                rc = shoal_err_set(err, SHOAL_EINTERNAL, "out of memory");
                break;
            }
            if (b64 == NULL || (n == 0 && v->npieces > 0)) {
                free(b64);
                continue;
            }
            have = json_string(b64);
            held = json_integer((json_int_t)n);
            complete = json_boolean(n == v->npieces);
            free(b64);
        }
        json_t *o = json_pack("{s:s, s:s, s:s, s:o, s:o, s:o}", "kind", "broker",
                              "broker_id", id, "url", PQgetvalue(r, i, 1),
                              "have", have, "held", held,
                              "complete", complete);
        if (o == NULL || json_array_append_new(list, o) != 0)
            rc = shoal_err_set(err, SHOAL_EINTERNAL, "out of memory");
    }
    PQclear(r);
    return rc;
}

/* The live announcements of v onto list, most pieces first. */
static int list_peers(struct br_app *app, const char *file_id,
                      const struct br_version *v, json_t *list,
                      struct shoal_err *err)
{
    char version_t[16], max_t[16];
    snprintf(version_t, sizeof version_t, "%d", v->version);
    snprintf(max_t, sizeof max_t, "%d", PEERS_MAX);
    const char *p[] = { file_id, version_t, max_t };
    PGresult *r = br_db_exec(app->db,
        "SELECT user_id, url, translate(encode(have, 'base64'), E'\\n', ''),"
        " held, extract(epoch FROM announced_at)::bigint,"
        " extract(epoch FROM expires_at)::bigint FROM peers"
        " WHERE file_id = $1 AND version = $2::integer AND expires_at > now()"
        " ORDER BY held DESC, announced_at DESC, user_id, url"
        " LIMIT $3::integer", 3, p, err);
    if (r == NULL)
        return -1;
    int rc = 0;
    for (int i = 0; rc == 0 && i < PQntuples(r); i++) {
        long long held = strtoll(PQgetvalue(r, i, 3), NULL, 10);
        json_t *o = json_pack("{s:s, s:s, s:s, s:s, s:I, s:b, s:o, s:o}",
            "kind", "peer", "user_id", PQgetvalue(r, i, 0),
            "url", PQgetvalue(r, i, 1), "have", PQgetvalue(r, i, 2),
            "held", (json_int_t)held, "complete",
            (uint64_t)held == v->npieces,
            "announced_at", br_time_json(strtoll(PQgetvalue(r, i, 4), NULL, 10)),
            "expires_at", br_time_json(strtoll(PQgetvalue(r, i, 5), NULL, 10)));
        if (o == NULL || json_array_append_new(list, o) != 0)
            rc = shoal_err_set(err, SHOAL_EINTERNAL, "out of memory");
    }
    PQclear(r);
    return rc;
}

int br_peers_list(struct br_app *app, const char *file_id,
                  const struct br_version *v, json_t *list,
                  struct shoal_err *err)
{
    if (list_brokers(app, v, list, err) != 0 ||
        list_peers(app, file_id, v, list, err) != 0)
        return -1;
    return 0;
}

BR_HANDLER(h_peer_list)
{
    struct br_app *app = br_app_of(req);
    struct br_file f;
    struct br_vent *e;
    json_t *list = NULL;
    int rc = -1;

    if (br_file_vent_get(req, BR_ACCESS_READ, &f, &e, err) != 0)
        return -1;
    const struct br_version *v = br_vent_version(e);
    if ((list = json_array()) == NULL) {
        shoal_err_set(err, SHOAL_EINTERNAL, "out of memory");
        goto out;
    }
    if (list_brokers(app, v, list, err) != 0 ||
        list_peers(app, f.file_id, v, list, err) != 0)
        goto out;
    *reply = json_pack("{s:s, s:i, s:I, s:O}", "file_id", f.file_id,
                       "version", v->version, "pieces", (json_int_t)v->npieces,
                       "peers", list);
    if (*reply == NULL) {
        shoal_err_set(err, SHOAL_EINTERNAL, "out of memory");
        goto out;
    }
    rc = 0;
out:
    json_decref(list);
    br_vent_put(app, e);
    return rc;
}

/* --- DELETE /v1/files/{id}/peers?url=…[&version=N] -------------------- */

BR_HANDLER(h_peer_withdraw)
{
    struct br_app *app = br_app_of(req);
    const struct br_session *me = br_caller(req);
    struct br_file any = { .latest = 0 }, f;
    char id[37], version_t[16];
    int version;

    if (br_param_uuid(req, "id", id, err) != 0)
        return -1;
    const char *url = shoal_req_query(req, "url");
    if (url == NULL)
        return shoal_err_set(err, SHOAL_EINVAL, "missing query parameter 'url'");
    /* No version: every version (br_version_arg answers latest, 0). */
    if (br_peer_url_check(url, strlen(url), err) != 0 ||
        br_version_arg(req, &any, &version, err) != 0)
        return -1;
    snprintf(version_t, sizeof version_t, "%d", version);
    PGconn *c = br_db_get(app->db, err);
    if (c == NULL)
        return -1;
    /* The caller's own announcements go whatever happened to the file or
     * to the caller's access since; expired ones go too, uncounted. */
    const char *p[] = { id, me->user_id, url, version_t };
    PGresult *r = br_db_query(c,
        "WITH gone AS (DELETE FROM peers WHERE file_id = $1 AND user_id = $2"
        "  AND url = $3 AND ($4::integer = 0 OR version = $4::integer)"
        "  RETURNING expires_at > now() AS live)"
        " SELECT count(*) FILTER (WHERE live) FROM gone", 4, p, err);
    int rc = -1;
    if (r == NULL)
        goto out;
    long long n = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
    PQclear(r);
    if (n > 0) {
        *reply = json_pack("{s:s, s:s, s:I}", "file_id", id, "url", url,
                           "withdrawn", (json_int_t)n);
        rc = *reply ? 0 : shoal_err_set(err, SHOAL_EINTERNAL, "out of memory");
        goto out;
    }
    /* Nothing to withdraw: say why as every file route would. */
    if (br_file_open(c, req, BR_ACCESS_READ, &f, err) == 0)
        shoal_err_set(err, SHOAL_ENOTFOUND,
                      "no announcement of '%.200s' for file '%s'", url, id);
out:
    br_db_put(app->db, c);
    return rc;
}
