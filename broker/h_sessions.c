/*
 * h_sessions.c - sessions: log in, list own, log out, and the inner-circle
 * check a serving peer makes (GET /v1/sessions/{sid}?ip=…[&file=…]).
 */
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "broker.h"

BR_HANDLER(h_session_create)
{
    static const char *const keys[] = { "user_id", "auth_id", NULL };
    struct br_app *app = br_app_of(req);
    json_t *body = shoal_req_body(req);
    char user_id[37], auth_id[37], sid[37], ttl[24];
    unsigned char want[32], got[32];
    int rc = -1;

    if (shoal_json_only(body, keys, err) != 0 ||
        shoal_json_uuid(body, "user_id", user_id, err) != 0 ||
        shoal_json_uuid(body, "auth_id", auth_id, err) != 0)
        goto out;

    const char *p[] = { user_id };
    PGresult *r = br_db_exec(app->db,
        "SELECT auth_hash FROM users WHERE user_id = $1", 1, p, err);
    if (r == NULL)
        goto out;
    if (PQntuples(r) == 0) {
        PQclear(r);
        shoal_err_set(err, SHOAL_ENOTFOUND, "user '%s' not found", user_id);
        goto out;
    }
    const char *stored = PQgetvalue(r, 0, 0);
    int bad = strlen(stored) != 2 + 64 ||
              shoal_hex_decode_exact(stored + 2, want, sizeof want, "auth_hash",
                                     NULL) != 0;
    PQclear(r);
    if (bad) {
        shoal_err_set(err, SHOAL_EINTERNAL, "stored credentials are damaged");
        goto out;
    }
    br_secret_hash(app, auth_id, got);
    if (shoal_ct_equal(want, got, sizeof want) != 0) {
        shoal_err_set(err, SHOAL_EAUTH, "wrong Authentication ID for user '%s'",
                      user_id);
        goto out;
    }

    shoal_uuid_v4(sid);
    snprintf(ttl, sizeof ttl, "%lld", app->session_ttl);
    const char *q[] = { sid, user_id, shoal_req_ip(req), ttl };
    r = br_db_exec(app->db,
        "INSERT INTO sessions (session_id, user_id, ip, expires_at)"
        " VALUES ($1, $2, $3, now() + make_interval(secs => $4::bigint))"
        " RETURNING extract(epoch FROM expires_at)::bigint", 4, q, err);
    if (r == NULL)
        goto out;
    *reply = json_pack("{s:s, s:s, s:s, s:o}", "session_id", sid,
                       "user_id", user_id, "ip", shoal_req_ip(req),
                       "expires_at",
                       br_time_json(strtoll(PQgetvalue(r, 0, 0), NULL, 10)));
    PQclear(r);
    shoal_req_set_status(req, 201);
    rc = 0;
out:
    sodium_memzero(auth_id, sizeof auth_id);
    sodium_memzero(got, sizeof got);
    return rc;
}

BR_HANDLER(h_session_list)
{
    struct br_app *app = br_app_of(req);
    const struct br_session *me = br_caller(req);
    const char *p[] = { me->user_id };
    PGresult *r = br_db_exec(app->db,
        "SELECT session_id, host(ip), extract(epoch FROM created_at)::bigint,"
        " extract(epoch FROM expires_at)::bigint FROM sessions"
        " WHERE user_id = $1 AND expires_at > now()"
        " ORDER BY created_at, session_id", 1, p, err);
    if (r == NULL)
        return -1;
    json_t *list = json_array();
    for (int i = 0; i < PQntuples(r); i++) {
        const char *sid = PQgetvalue(r, i, 0);
        json_array_append_new(list, json_pack(
            "{s:s, s:s, s:o, s:o, s:b}", "session_id", sid,
            "ip", PQgetvalue(r, i, 1),
            "created_at", br_time_json(strtoll(PQgetvalue(r, i, 2), NULL, 10)),
            "expires_at", br_time_json(strtoll(PQgetvalue(r, i, 3), NULL, 10)),
            "current", strcmp(sid, me->session_id) == 0));
    }
    PQclear(r);
    *reply = json_pack("{s:o}", "sessions", list);
    return 0;
}

BR_HANDLER(h_session_delete)
{
    struct br_app *app = br_app_of(req);
    const struct br_session *me = br_caller(req);
    char sid[37];

    if (br_param_uuid(req, "sid", sid, err) != 0)
        return -1;
    const char *p[] = { sid, me->user_id };
    PGresult *r = br_db_exec(app->db,
        "DELETE FROM sessions WHERE session_id = $1 AND user_id = $2"
        " AND expires_at > now() RETURNING 1", 2, p, err);
    if (r == NULL)
        return -1;
    int found = PQntuples(r) == 1;
    PQclear(r);
    br_cache_evict(app->cache, sid);
    /* Another user's session is reported exactly like an unknown one. */
    if (!found)
        return shoal_err_set(err, SHOAL_ENOTFOUND, "session '%.8s…' not found",
                             sid);
    *reply = json_pack("{s:s, s:b}", "session_id", sid, "revoked", 1);
    return 0;
}

/*
 * May user (the session's) read file_id, as far as caller (who asks) may
 * learn?  The access of user (BR_ACCESS_READ or more), or -1 with err:
 * 404 when the file is unknown or neither caller nor user may read its
 * share (nobody involved may know it exists), 410 when it was deleted,
 * 403 when the caller may read it but user may not.  Through the caches.
 */
static int file_access(struct br_app *app, const char *caller,
                       const char *user, const char *file_id,
                       struct shoal_err *err)
{
    struct br_file_row row;
    int theirs = BR_ACCESS_NONE, mine = BR_ACCESS_NONE, rc = -1;

    PGconn *c = br_db_get(app->db, err);
    if (c == NULL)
        return -1;
    int found = br_file_find(app->cache, c, file_id, &row, err);
    if (found < 0)
        goto out;
    if (found == 1 &&
        (theirs = br_access_find(app->cache, c, user, row.share_id, err)) < 0)
        goto out;
    if (found == 1 && theirs == BR_ACCESS_NONE && strcmp(caller, user) != 0 &&
        (mine = br_access_find(app->cache, c, caller, row.share_id, err)) < 0)
        goto out;
    if (found == 0 || (theirs == BR_ACCESS_NONE && mine == BR_ACCESS_NONE))
        shoal_err_set(err, SHOAL_ENOTFOUND, "file '%s' not found", file_id);
    else if (row.deleted)
        shoal_err_set(err, SHOAL_EGONE, "file '%s' was deleted", file_id);
    else if (theirs == BR_ACCESS_NONE)
        shoal_err_set(err, SHOAL_EFORBIDDEN, "user '%s' may not read file '%s'",
                      user, file_id);
    else
        rc = theirs;
out:
    br_db_put(app->db, c);
    return rc;
}

BR_HANDLER(h_session_check)
{
    static const char *const access_names[] = { "none", "read", "write",
                                                "owner" };
    struct br_app *app = br_app_of(req);
    char sid[37], ip[SHOAL_IP_MAX], file_id[37];
    int access = BR_ACCESS_NONE;

    if (br_param_uuid(req, "sid", sid, err) != 0)
        return -1;
    const char *ip_q = shoal_req_query(req, "ip");
    if (ip_q == NULL || ip_q[0] == '\0')
        return shoal_err_set(err, SHOAL_EINVAL, "missing query parameter 'ip'");
    if (shoal_ip_canonical(ip_q, ip) != 0)
        return shoal_err_set(err, SHOAL_EINVAL, "'%.64s' is not an IP address",
                             ip_q);
    const char *file_q = shoal_req_query(req, "file");
    if (file_q != NULL &&
        shoal_uuid_normalize(file_q, file_id, "file", err) != 0)
        return -1;

    struct br_session_row row;
    int found = br_session_find(app, sid, &row, err);
    if (found < 0)
        return -1;
    if (found == 0)
        return shoal_err_set(err, SHOAL_ENOTFOUND, "session '%.8s…' not found",
                             sid);
    if (row.expires_at <= time(NULL))
        return shoal_err_set(err, SHOAL_EGONE, "session '%.8s…' expired", sid);
    if (strcmp(row.ip, ip) != 0)
        return shoal_err_set(err, SHOAL_EIPMISMATCH,
                             "session '%.8s…' is not bound to '%s'", sid, ip);
    if (file_q != NULL &&
        (access = file_access(app, br_caller(req)->user_id, row.user_id,
                              file_id, err)) < 0)
        return -1;
    *reply = json_pack("{s:s, s:s, s:s, s:s, s:o}", "session_id", sid,
                       "user_id", row.user_id, "public_key", row.public_key,
                       "ip", ip, "expires_at",
                       br_time_json((long long)row.expires_at));
    if (*reply != NULL && file_q != NULL &&
        (json_object_set_new(*reply, "file_id", json_string(file_id)) != 0 ||
         json_object_set_new(*reply, "access",
                             json_string(access_names[access])) != 0)) {
        json_decref(*reply);
        *reply = NULL;
    }
    if (*reply == NULL)
        return shoal_err_set(err, SHOAL_EINTERNAL, "out of memory");
    return 0;
}
