/*
 * h_quota.c - storage limits: a user's quota (PUT by the operator, GET by
 * the operator or the user) and a share's allocation (PUT by the
 * operator).  'used' is counted from the versions of live files, every
 * version at its full size.
 */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <sodium.h>

#include "broker.h"

#define MAX_BYTES 9007199254740992LL    /* 2^53: exact in any JSON reader */

/* The quota reply of user $1, or no row when there is no such user. */
#define QUOTA_SELECT \
    "SELECT u.quota, (SELECT coalesce(sum(v.size), 0) FROM files f" \
    " JOIN versions v ON v.file_id = f.file_id" \
    " WHERE f.owner_id = u.user_id AND f.deleted_at IS NULL)" \
    " FROM users u WHERE u.user_id = $1::uuid"

/* obj[key], required: null (*out = NULL) or an integer from 0 to 2^53
 * (*out = its decimal text in buf). */
static int bytes_arg(const json_t *obj, const char *key, char buf[24],
                     const char **out, struct shoal_err *err)
{
    const json_t *v = json_object_get(obj, key);
    if (v == NULL)
        return shoal_err_set(err, SHOAL_EINVAL, "missing field '%s'", key);
    if (json_is_null(v)) {
        *out = NULL;
        return 0;
    }
    if (!json_is_integer(v) || json_integer_value(v) < 0 ||
        json_integer_value(v) > MAX_BYTES)
        return shoal_err_set(err, SHOAL_EINVAL,
                             "'%s' must be null or an integer from 0 to %lld",
                             key, MAX_BYTES);
    snprintf(buf, 24, "%lld", (long long)json_integer_value(v));
    *out = buf;
    return 0;
}

/* Row 0 of a QUOTA_SELECT result as the reply (new reference). */
static json_t *quota_json(PGresult *r, const char *id)
{
    json_t *q = PQgetisnull(r, 0, 0) ? json_null()
                : json_integer(strtoll(PQgetvalue(r, 0, 0), NULL, 10));
    return json_pack("{s:s, s:o, s:I}", "user_id", id, "quota", q,
                     "used", (json_int_t)strtoll(PQgetvalue(r, 0, 1), NULL, 10));
}

BR_HANDLER(h_quota_put)
{
    static const char *const keys[] = { "quota", NULL };
    struct br_app *app = br_app_of(req);
    json_t *body = shoal_req_body(req);
    char id[37], buf[24];
    const char *quota;
    PGconn *c = NULL;
    PGresult *r = NULL;
    int rc = -1;

    if (br_param_uuid(req, "id", id, err) != 0 ||
        shoal_json_only(body, keys, err) != 0 ||
        bytes_arg(body, "quota", buf, &quota, err) != 0)
        return -1;
    const char *p[] = { id, quota };
    if ((c = br_db_get(app->db, err)) == NULL || br_db_begin(c, err) != 0)
        goto out;
    /* The row lock orders this after a file creation counting the quota. */
    r = br_db_query(c, "UPDATE users SET quota = $2::bigint"
                       " WHERE user_id = $1::uuid", 2, p, err);
    if (r == NULL)
        goto out;
    PQclear(r);
    r = br_db_query(c, QUOTA_SELECT, 1, p, err);
    if (r == NULL)
        goto out;
    if (PQntuples(r) != 1) {
        shoal_err_set(err, SHOAL_ENOTFOUND, "user '%s' not found", id);
        goto out;
    }
    if (br_db_commit(c, err) != 0)
        goto out;
    *reply = quota_json(r, id);
    rc = *reply ? 0 : shoal_err_set(err, SHOAL_EINTERNAL, "out of memory");
out:
    PQclear(r);
    br_db_put(app->db, c);
    return rc;
}

/* 1 when bearer is the configured admin token, compared in a time that
 * depends on neither where they differ nor the token's length. */
static int is_admin_token(const struct br_app *app, const char *bearer)
{
    const char *tok = shoal_config_get(app->cfg, "admin_token");
    if (tok == NULL || tok[0] == '\0')
        return 0;
    unsigned char a[32], b[32];
    crypto_generichash(a, sizeof a, (const unsigned char *)tok, strlen(tok),
                       NULL, 0);
    crypto_generichash(b, sizeof b, (const unsigned char *)bearer,
                       strlen(bearer), NULL, 0);
    return sodium_memcmp(a, b, sizeof a) == 0;
}

/*
 * GET /v1/users/{id}/quota: the operator (admin token) or user {id}
 * itself (its session).  The route has no auth flag, so the Bearer
 * token is checked here, the same way the route flags would: the admin
 * token first, then a session (every answer of the session check).
 */
BR_HANDLER(h_quota_get)
{
    struct br_app *app = br_app_of(req);
    const char *h = shoal_req_header(req, "Authorization");
    char id[37];
    int admin;

    if (h == NULL || strncasecmp(h, "Bearer ", 7) != 0)
        return shoal_err_set(err, SHOAL_ESESSION_MISSING,
                             "missing 'Authorization: Bearer' header");
    for (h += 7; *h == ' '; h++)
        ;
    if (*h == '\0')
        return shoal_err_set(err, SHOAL_ESESSION_MISSING, "empty bearer token");
    admin = is_admin_token(app, h);
    if (!admin) {
        if (!shoal_uuid_valid(h))
            return shoal_err_set(err, SHOAL_EFORBIDDEN,
                                 "the token is neither the admin token nor a"
                                 " session");
        if (br_auth(req, h, err) != 0)
            return -1;
    }
    if ((admin ? br_param_uuid(req, "id", id, err)
               : br_param_self(req, "quota", id, err)) != 0)
        return -1;
    const char *p[] = { id };
    PGresult *r = br_db_exec(app->db, QUOTA_SELECT, 1, p, err);
    if (r == NULL)
        return -1;
    if (PQntuples(r) != 1) {
        PQclear(r);
        return shoal_err_set(err, SHOAL_ENOTFOUND, "user '%s' not found", id);
    }
    *reply = quota_json(r, id);
    PQclear(r);
    return *reply ? 0 : shoal_err_set(err, SHOAL_EINTERNAL, "out of memory");
}

BR_HANDLER(h_share_allocation_put)
{
    static const char *const keys[] = { "allocation", NULL };
    struct br_app *app = br_app_of(req);
    json_t *body = shoal_req_body(req);
    char id[37], buf[24], owner[37];
    const char *alloc;
    PGconn *c = NULL;
    PGresult *r = NULL;
    int rc = -1;

    if (br_param_uuid(req, "id", id, err) != 0 ||
        shoal_json_only(body, keys, err) != 0 ||
        bytes_arg(body, "allocation", buf, &alloc, err) != 0)
        return -1;
    const char *p[] = { id, alloc };
    if ((c = br_db_get(app->db, err)) == NULL || br_db_begin(c, err) != 0)
        goto out;
    r = br_db_query(c, "UPDATE shares SET allocation = $2::bigint,"
                       " updated_at = now() WHERE share_id = $1::uuid"
                       " RETURNING owner_id", 2, p, err);
    if (r == NULL)
        goto out;
    if (PQntuples(r) != 1) {
        shoal_err_set(err, SHOAL_ENOTFOUND, "share '%s' not found", id);
        goto out;
    }
    snprintf(owner, sizeof owner, "%s", PQgetvalue(r, 0, 0));
    /* The operator sees the share as its owner does. */
    *reply = br_share_load(c, owner, id, err);
    rc = br_reply_commit(c, reply, err);
out:
    PQclear(r);
    br_db_put(app->db, c);
    return rc;
}
