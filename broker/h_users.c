/*
 * h_users.c - registration (POST /v1/users), public user records
 * (GET /v1/users/{id}) and operator invites (POST /v1/invites).
 */
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "broker.h"

#define INVITE_DEFAULT_TTL (7LL * 86400)
#define INVITE_MAX_TTL (365LL * 86400)

/* Mark the invite used by user_id, inside the caller's transaction. */
static int invite_take(PGconn *c, const struct br_app *app, const char *invite,
                       const char *user_id, struct shoal_err *err)
{
    unsigned char h[32];
    char hx[2 * 32 + 3];
    char canon[37];

    if (shoal_uuid_normalize(invite, canon, "invite", err) != 0)
        return -1;
    br_secret_hash(app, canon, h);
    br_bytea_text(h, sizeof h, hx);
    const char *p[] = { hx, user_id };
    PGresult *r = br_db_query(c,
        "UPDATE invites SET used_at = now(), used_by = $2"
        " WHERE token_hash = $1 AND used_at IS NULL AND expires_at > now()"
        " RETURNING 1", 2, p, err);
    sodium_memzero(canon, sizeof canon);
    if (r == NULL)
        return -1;
    int ok = PQntuples(r) == 1;
    PQclear(r);
    if (!ok)
        return shoal_err_set(err, SHOAL_EFORBIDDEN,
                             "invite unknown, used or expired");
    return 0;
}

BR_HANDLER(h_user_create)
{
    static const char *const keys[] = { "user_id", "public_key", "invite", NULL };
    struct br_app *app = br_app_of(req);
    json_t *body = shoal_req_body(req);
    char user_id[37], auth_id[37];
    const char *pk_b64, *invite;
    unsigned char pk[SHOAL_PK_BYTES], h[32];
    char pk_hx[2 * SHOAL_PK_BYTES + 3], h_hx[2 * 32 + 3];
    PGconn *c = NULL;
    int rc = -1;

    if (shoal_json_only(body, keys, err) != 0 ||
        shoal_json_uuid(body, "user_id", user_id, err) != 0 ||
        shoal_json_str(body, "public_key", &pk_b64, err) != 0 ||
        shoal_b64_decode_exact(pk_b64, pk, sizeof pk, "public_key", err) != 0 ||
        shoal_json_str_opt(body, "invite", &invite, err) != 0)
        return -1;
    if (app->invite_only && invite == NULL)
        return shoal_err_set(err, SHOAL_EFORBIDDEN,
                             "registration needs an invite on this broker");
    /* In open mode an invite is not needed, but a malformed one is still a
     * client error. */
    char invite_canon[37];
    if (invite && shoal_uuid_normalize(invite, invite_canon, "invite", err) != 0)
        return -1;

    shoal_uuid_v4(auth_id);
    br_secret_hash(app, auth_id, h);
    br_bytea_text(pk, sizeof pk, pk_hx);
    br_bytea_text(h, sizeof h, h_hx);

    if ((c = br_db_get(app->db, err)) == NULL || br_db_begin(c, err) != 0)
        goto out;
    if (app->invite_only && invite_take(c, app, invite, user_id, err) != 0)
        goto out;
    const char *p[] = { user_id, pk_hx, h_hx };
    PGresult *r = br_db_query(c,
        "INSERT INTO users (user_id, public_key, auth_hash) VALUES ($1, $2, $3)",
        3, p, err);
    if (r == NULL) {
        if (err && err->code == SHOAL_EEXISTS)
            shoal_err_set(err, SHOAL_EEXISTS, "user '%s' is already registered",
                          user_id);
        goto out;
    }
    PQclear(r);
    if (br_db_commit(c, err) != 0)
        goto out;
    *reply = json_pack("{s:s, s:s}", "user_id", user_id, "auth_id", auth_id);
    shoal_req_set_status(req, 201);
    rc = 0;
out:
    sodium_memzero(auth_id, sizeof auth_id);
    br_db_put(app->db, c);
    return rc;
}

BR_HANDLER(h_user_get)
{
    struct br_app *app = br_app_of(req);
    char id[37];

    if (br_param_uuid(req, "id", id, err) != 0)
        return -1;
    const char *p[] = { id };
    PGresult *r = br_db_exec(app->db,
        "SELECT public_key, extract(epoch FROM created_at)::bigint"
        " FROM users WHERE user_id = $1", 1, p, err);
    if (r == NULL)
        return -1;
    if (PQntuples(r) == 0) {
        PQclear(r);
        return shoal_err_set(err, SHOAL_ENOTFOUND, "user '%s' not found", id);
    }
    *reply = json_pack("{s:s, s:o*, s:o}", "user_id", id,
                       "public_key", br_bytea_b64_json(PQgetvalue(r, 0, 0)),
                       "created_at",
                       br_time_json(strtoll(PQgetvalue(r, 0, 1), NULL, 10)));
    PQclear(r);
    return 0;
}

BR_HANDLER(h_invite_create)
{
    static const char *const keys[] = { "expires_in", NULL };
    struct br_app *app = br_app_of(req);
    json_int_t ttl = INVITE_DEFAULT_TTL;
    size_t len;
    shoal_req_raw_body(req, &len);
    json_t *body = NULL;
    int rc = -1;

    /* The body is optional: an empty POST asks for the default expiry. */
    if (len > 0) {
        if (shoal_req_parse_json(req, &body, err) != 0 ||
            shoal_json_only(body, keys, err) != 0)
            goto out;
        if (json_object_get(body, "expires_in") &&
            shoal_json_int(body, "expires_in", &ttl, err) != 0)
            goto out;
        if (ttl < 1 || ttl > INVITE_MAX_TTL) {
            shoal_err_set(err, SHOAL_EINVAL,
                          "'expires_in' must be from 1 to %lld seconds",
                          INVITE_MAX_TTL);
            goto out;
        }
    }
    char token[37], ttl_s[24], hx[2 * 32 + 3];
    unsigned char h[32];
    shoal_uuid_v4(token);
    br_secret_hash(app, token, h);
    br_bytea_text(h, sizeof h, hx);
    snprintf(ttl_s, sizeof ttl_s, "%lld", (long long)ttl);
    const char *p[] = { hx, ttl_s };
    PGresult *r = br_db_exec(app->db,
        "INSERT INTO invites (token_hash, expires_at)"
        " VALUES ($1, now() + make_interval(secs => $2::bigint))"
        " RETURNING extract(epoch FROM expires_at)::bigint", 2, p, err);
    if (r != NULL) {
        *reply = json_pack("{s:s, s:o}", "invite", token, "expires_at",
                           br_time_json(strtoll(PQgetvalue(r, 0, 0), NULL, 10)));
        PQclear(r);
        shoal_req_set_status(req, 201);
        rc = 0;
    }
    sodium_memzero(token, sizeof token);
out:
    json_decref(body);
    return rc;
}
