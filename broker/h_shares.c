/*
 * h_shares.c - shares (/v1/shares): named folders of files with an owner
 * and an ACL of users and groups.  Whoever may not read a share is told
 * it does not exist (404); readers and writers get 403 for what only the
 * owner may do.
 */
#include <stdlib.h>
#include <string.h>

#include "broker.h"

#define MAX_ACL 1000                    /* entries of the four lists, as sent */

/* The access of user $1 to share s: the rule of br_share_access. */
#define ACCESS_EXPR \
    "CASE WHEN s.owner_id = $1::uuid THEN 3 ELSE coalesce((" \
    " SELECT max(a.perm) FROM share_acl a WHERE a.share_id = s.share_id" \
    " AND (a.user_id = $1::uuid OR a.group_id IN" \
    "  (SELECT m.group_id FROM group_members m WHERE m.user_id = $1::uuid))" \
    "), 0) END"
/* The ids of one list of the ACL, "a,b" (NULL when empty). */
#define ACL_LIST(perm, col) \
    "(SELECT string_agg(a." col "::text, ',' ORDER BY a." col ")" \
    " FROM share_acl a WHERE a.share_id = s.share_id AND a.perm = " perm \
    " AND a." col " IS NOT NULL AND x.access = 3)"
/* The columns share_json reads, as user $1 sees them. */
#define SHARE_SELECT \
    "SELECT s.share_id, s.name, s.owner_id, s.allocation," \
    " (SELECT coalesce(sum(v.size), 0) FROM files f" \
    "  JOIN versions v ON v.file_id = f.file_id" \
    "  WHERE f.share_id = s.share_id AND f.deleted_at IS NULL)," \
    " x.access, extract(epoch FROM s.created_at)::bigint," \
    " extract(epoch FROM s.updated_at)::bigint, " \
    ACL_LIST("1", "user_id") ", " ACL_LIST("1", "group_id") ", " \
    ACL_LIST("2", "user_id") ", " ACL_LIST("2", "group_id") \
    " FROM shares s CROSS JOIN LATERAL (SELECT " ACCESS_EXPR " AS access) x"

static const char *const access_names[] = { "none", "read", "write", "owner" };

/* Row i of a SHARE_SELECT result as a share object (new reference). */
static json_t *share_json(PGresult *r, int i)
{
    int access = atoi(PQgetvalue(r, i, 5));
    if (access < BR_ACCESS_READ || access > BR_ACCESS_OWNER)
        return NULL;
    json_t *acl = json_null();
    if (access == BR_ACCESS_OWNER)
        acl = json_pack("{s:{s:o, s:o}, s:{s:o, s:o}}",
                        "read", "users", br_id_list_json(PQgetvalue(r, i, 8)),
                        "groups", br_id_list_json(PQgetvalue(r, i, 9)),
                        "write", "users", br_id_list_json(PQgetvalue(r, i, 10)),
                        "groups", br_id_list_json(PQgetvalue(r, i, 11)));
    json_t *alloc = PQgetisnull(r, i, 3) ? json_null()
                    : json_integer(strtoll(PQgetvalue(r, i, 3), NULL, 10));
    return json_pack("{s:s, s:s, s:s, s:o, s:I, s:s, s:o, s:o, s:o}",
                     "share_id", PQgetvalue(r, i, 0),
                     "name", PQgetvalue(r, i, 1),
                     "owner_id", PQgetvalue(r, i, 2),
                     "allocation", alloc,
                     "used", (json_int_t)strtoll(PQgetvalue(r, i, 4), NULL, 10),
                     "access", access_names[access],
                     "acl", acl,
                     "created_at", br_time_json(strtoll(PQgetvalue(r, i, 6), NULL, 10)),
                     "updated_at", br_time_json(strtoll(PQgetvalue(r, i, 7), NULL, 10)));
}

json_t *br_share_load(PGconn *c, const char *viewer, const char *id,
                      struct shoal_err *err)
{
    return br_row_load(c, SHARE_SELECT
                          " WHERE s.share_id = $2::uuid AND x.access > 0",
                       viewer, id, "share", share_json, err);
}

/* Lock share id for a change by me: 0 when me owns it, -1 with 404 when
 * me may not read it, 403 when me may only read or write.  'whole' takes
 * FOR UPDATE, which also holds off new files (their insert takes a key
 * share lock); otherwise FOR NO KEY UPDATE, which does not. */
static int share_lock_own(PGconn *c, const char *me, const char *id,
                          int whole, struct shoal_err *err)
{
    const char *p[] = { id };
    PGresult *r = br_db_query(c, whole
        ? "SELECT 1 FROM shares WHERE share_id = $1::uuid FOR UPDATE"
        : "SELECT 1 FROM shares WHERE share_id = $1::uuid FOR NO KEY UPDATE",
        1, p, err);
    if (r == NULL)
        return -1;
    PQclear(r);
    return br_share_need(c, me, id, BR_ACCESS_OWNER, err) < 0 ? -1 : 0;
}

BR_HANDLER(h_share_create)
{
    static const char *const keys[] = { "name", NULL };
    struct br_app *app = br_app_of(req);
    json_t *body = shoal_req_body(req);
    const char *me = br_caller(req)->user_id, *name;
    char id[37];
    PGconn *c = NULL;
    int rc = -1;

    if (shoal_json_only(body, keys, err) != 0 ||
        br_json_name(body, "name", &name, err) != 0)
        return -1;
    shoal_uuid_v4(id);
    const char *p[] = { id, me, name };
    if ((c = br_db_get(app->db, err)) == NULL || br_db_begin(c, err) != 0)
        goto out;
    PGresult *r = br_db_query(c, "INSERT INTO shares (share_id, owner_id, name)"
                                 " VALUES ($1, $2, $3)", 3, p, err);
    if (r == NULL) {
        br_name_taken(err, "share");
        goto out;
    }
    PQclear(r);
    *reply = br_share_load(c, me, id, err);
    if (br_reply_commit(c, reply, err) != 0)
        goto out;
    shoal_req_set_status(req, 201);
    rc = 0;
out:
    br_db_put(app->db, c);
    return rc;
}

BR_HANDLER(h_share_list)
{
    struct br_app *app = br_app_of(req);
    const char *p[] = { br_caller(req)->user_id };
    /* The candidates first (owned, or named by an ACL entry), so that the
     * access of every share of the database is not computed. */
    PGresult *r = br_db_exec(app->db, SHARE_SELECT
        " WHERE (s.owner_id = $1::uuid OR s.share_id IN"
        "  (SELECT a.share_id FROM share_acl a WHERE a.user_id = $1::uuid"
        "   OR a.group_id IN (SELECT m.group_id FROM group_members m"
        "    WHERE m.user_id = $1::uuid)))"
        " AND x.access > 0 ORDER BY s.name COLLATE \"C\", s.share_id",
        1, p, err);
    return br_rows_reply(r, "shares", share_json, reply, err);
}

BR_HANDLER(h_share_get)
{
    return br_load_reply(req, br_share_load, reply, err);
}

BR_HANDLER(h_share_update)
{
    static const char *const keys[] = { "name", NULL };
    struct br_app *app = br_app_of(req);
    json_t *body = shoal_req_body(req);
    const char *me = br_caller(req)->user_id, *name;
    char id[37];
    PGconn *c = NULL;
    int rc = -1;

    if (br_param_uuid(req, "id", id, err) != 0 ||
        shoal_json_only(body, keys, err) != 0 ||
        br_json_name(body, "name", &name, err) != 0)
        return -1;
    const char *p[] = { id, name };
    if ((c = br_db_get(app->db, err)) == NULL || br_db_begin(c, err) != 0 ||
        share_lock_own(c, me, id, 0, err) != 0)
        goto out;
    PGresult *r = br_db_query(c, "UPDATE shares SET name = $2, updated_at = now()"
                                 " WHERE share_id = $1::uuid", 2, p, err);
    if (r == NULL) {
        br_name_taken(err, "share");
        goto out;
    }
    PQclear(r);
    *reply = br_share_load(c, me, id, err);
    rc = br_reply_commit(c, reply, err);
    if (rc == 0)
        br_cache_acl_changed(app->cache);
out:
    br_db_put(app->db, c);
    return rc;
}

BR_HANDLER(h_share_delete)
{
    struct br_app *app = br_app_of(req);
    char id[37];
    PGconn *c = NULL;
    PGresult *r = NULL;
    int rc = -1;

    if (br_param_uuid(req, "id", id, err) != 0)
        return -1;
    const char *p[] = { id };
    /* The whole-row lock keeps files from being added meanwhile. */
    if ((c = br_db_get(app->db, err)) == NULL || br_db_begin(c, err) != 0 ||
        share_lock_own(c, br_caller(req)->user_id, id, 1, err) != 0)
        goto out;
    r = br_db_query(c, "SELECT 1 FROM files WHERE share_id = $1::uuid"
                       " AND deleted_at IS NULL LIMIT 1", 1, p, err);
    if (r == NULL)
        goto out;
    if (PQntuples(r) > 0) {
        shoal_err_set(err, SHOAL_ENOTEMPTY, "share '%s' still holds files", id);
        goto out;
    }
    PQclear(r);
    /* Deleted files keep their rows (they answer 410) but no versions:
     * they go with the share. */
    r = br_db_query(c, "DELETE FROM files WHERE share_id = $1::uuid", 1, p, err);
    if (r == NULL)
        goto out;
    PQclear(r);
    r = br_db_query(c, "DELETE FROM shares WHERE share_id = $1::uuid", 1, p, err);
    if (r == NULL || br_db_commit(c, err) != 0)
        goto out;
    br_cache_acl_changed(app->cache);
    *reply = json_pack("{s:s, s:b}", "share_id", id, "deleted", 1);
    rc = 0;
out:
    PQclear(r);
    br_db_put(app->db, c);
    return rc;
}

/* One half of the ACL body ("read" or "write"): an object with exactly
 * "users" and "groups", as array literals (new strings) in *users and
 * *groups; *n grows by their lengths. */
static int acl_half(const json_t *body, const char *key, char **users,
                    char **groups, size_t *n, struct shoal_err *err)
{
    static const char *const keys[] = { "users", "groups", NULL };
    const json_t *half = json_object_get(body, key);
    size_t k;
    struct shoal_err why;

    if (!json_is_object(half))
        return shoal_err_set(err, SHOAL_EINVAL, "'%s' must be an object", key);
    if (shoal_json_only(half, keys, &why) != 0)
        return shoal_err_set(err, SHOAL_EINVAL, "'%s': %s", key, why.msg);
    if ((*users = br_json_uuids(half, "users", MAX_ACL, &k, &why)) == NULL)
        return shoal_err_set(err, SHOAL_EINVAL, "'%s': %s", key, why.msg);
    *n += k;
    if ((*groups = br_json_uuids(half, "groups", MAX_ACL, &k, &why)) == NULL)
        return shoal_err_set(err, SHOAL_EINVAL, "'%s': %s", key, why.msg);
    *n += k;
    return 0;
}

BR_HANDLER(h_share_acl_put)
{
    static const char *const keys[] = { "read", "write", NULL };
    struct br_app *app = br_app_of(req);
    json_t *body = shoal_req_body(req);
    const char *me = br_caller(req)->user_id;
    char id[37], *ru = NULL, *rg = NULL, *wu = NULL, *wg = NULL;
    size_t n = 0;
    PGconn *c = NULL;
    PGresult *r = NULL;
    int rc = -1;

    if (br_param_uuid(req, "id", id, err) != 0 ||
        shoal_json_only(body, keys, err) != 0 ||
        acl_half(body, "read", &ru, &rg, &n, err) != 0 ||
        acl_half(body, "write", &wu, &wg, &n, err) != 0)
        goto out;
    if (n > MAX_ACL) {
        shoal_err_set(err, SHOAL_EINVAL, "the acl holds more than %d entries",
                      MAX_ACL);
        goto out;
    }

    const char *p[] = { id, me, ru, wu, rg, wg };
    const char *pc[] = { me, ru, wu, rg, wg };
    if ((c = br_db_get(app->db, err)) == NULL || br_db_begin(c, err) != 0)
        goto out;
    /* Take the key share locks the new entries need on the listed users
     * and groups before the share's row, so that nothing is waited for
     * while the share is held: a file creation holding its user's row
     * and waiting for the share, or a group deletion cascading to the
     * entries, then finishes first instead of deadlocking with us. */
    r = br_db_query(c,
        "SELECT 1 FROM users WHERE user_id = ANY ($1::uuid[] || $2::uuid[])"
        " ORDER BY user_id FOR KEY SHARE", 2, pc + 1, err);
    if (r == NULL)
        goto out;
    PQclear(r);
    r = br_db_query(c,
        "SELECT 1 FROM groups WHERE group_id = ANY ($1::uuid[] || $2::uuid[])"
        " ORDER BY group_id FOR KEY SHARE", 2, pc + 3, err);
    if (r == NULL)
        goto out;
    PQclear(r);
    r = NULL;
    if (share_lock_own(c, me, id, 0, err) != 0)
        goto out;
    /* Name the first user that is not registered, then the first group
     * the owner cannot see (it does not exist, as far as the owner may
     * know). */
    r = br_db_query(c,
        "SELECT k, x FROM ("
        " SELECT 1 AS k, x, i FROM unnest($2::uuid[] || $3::uuid[])"
        "  WITH ORDINALITY AS t(x, i)"
        "  WHERE NOT EXISTS (SELECT 1 FROM users u WHERE u.user_id = x)"
        " UNION ALL"
        " SELECT 2, x, i FROM unnest($4::uuid[] || $5::uuid[])"
        "  WITH ORDINALITY AS t(x, i)"
        "  WHERE NOT EXISTS (SELECT 1 FROM groups g WHERE g.group_id = x"
        "   AND (g.owner_id = $1::uuid OR EXISTS (SELECT 1 FROM group_members m"
        "    WHERE m.group_id = x AND m.user_id = $1::uuid)))"
        ") q ORDER BY k, i LIMIT 1", 5, pc, err);
    if (r == NULL)
        goto out;
    if (PQntuples(r) > 0) {
        shoal_err_set(err, SHOAL_ENOTFOUND, "%s '%s' not found",
                      PQgetvalue(r, 0, 0)[0] == '1' ? "user" : "group",
                      PQgetvalue(r, 0, 1));
        goto out;
    }
    PQclear(r);
    r = br_db_query(c, "DELETE FROM share_acl WHERE share_id = $1::uuid",
                    1, p, err);
    if (r == NULL)
        goto out;
    PQclear(r);
    /* write implies read: an id in both lists is one writer; the owner
     * always has every right and is left out. */
    r = br_db_query(c,
        "INSERT INTO share_acl (share_id, user_id, perm)"
        " SELECT $1::uuid, x, max(perm) FROM"
        " (SELECT unnest($3::uuid[]) AS x, 1 AS perm"
        "  UNION ALL SELECT unnest($4::uuid[]), 2) t"
        " WHERE x <> $2::uuid GROUP BY x", 4, p, err);
    if (r == NULL)
        goto out;
    PQclear(r);
    const char *pg[] = { id, rg, wg };
    r = br_db_query(c,
        "INSERT INTO share_acl (share_id, group_id, perm)"
        " SELECT $1::uuid, x, max(perm) FROM"
        " (SELECT unnest($2::uuid[]) AS x, 1 AS perm"
        "  UNION ALL SELECT unnest($3::uuid[]), 2) t GROUP BY x", 3, pg, err);
    if (r == NULL)
        goto out;
    PQclear(r);
    r = br_db_query(c, "UPDATE shares SET updated_at = now()"
                       " WHERE share_id = $1::uuid", 1, p, err);
    if (r == NULL)
        goto out;
    *reply = br_share_load(c, me, id, err);
    rc = br_reply_commit(c, reply, err);
    if (rc == 0)
        br_cache_acl_changed(app->cache);
out:
    PQclear(r);
    br_db_put(app->db, c);
    free(ru);
    free(rg);
    free(wu);
    free(wg);
    return rc;
}
