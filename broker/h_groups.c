/*
 * h_groups.c - groups of users (/v1/groups), named by their owner and used
 * in the ACLs of shares.  A group is visible to its owner and its
 * members; only the owner changes or deletes it.
 */
#include <stdlib.h>
#include <string.h>

#include "broker.h"

#define MAX_MEMBERS 1000

/* The columns group_json reads; $1 is the caller in VISIBLE. */
#define GROUP_COLS \
    "g.group_id, g.name, g.owner_id," \
    " extract(epoch FROM g.created_at)::bigint," \
    " extract(epoch FROM g.updated_at)::bigint," \
    " coalesce((SELECT string_agg(m.user_id::text, ',' ORDER BY m.user_id)" \
    "  FROM group_members m WHERE m.group_id = g.group_id), '')"
#define VISIBLE \
    "(g.owner_id = $1::uuid OR EXISTS (SELECT 1 FROM group_members v" \
    " WHERE v.group_id = g.group_id AND v.user_id = $1::uuid))"

/* Row i of a GROUP_COLS result as a group object (new reference). */
static json_t *group_json(PGresult *r, int i)
{
    return json_pack("{s:s, s:s, s:s, s:o, s:o, s:o}",
                     "group_id", PQgetvalue(r, i, 0),
                     "name", PQgetvalue(r, i, 1),
                     "owner_id", PQgetvalue(r, i, 2),
                     "members", br_id_list_json(PQgetvalue(r, i, 5)),
                     "created_at", br_time_json(strtoll(PQgetvalue(r, i, 3), NULL, 10)),
                     "updated_at", br_time_json(strtoll(PQgetvalue(r, i, 4), NULL, 10)));
}

/* Group id as the caller me sees it (new reference), or NULL with err:
 * 404 when it does not exist or me is neither its owner nor a member. */
static json_t *group_load(PGconn *c, const char *me, const char *id,
                          struct shoal_err *err)
{
    return br_row_load(c, "SELECT " GROUP_COLS " FROM groups g"
                          " WHERE g.group_id = $2::uuid AND " VISIBLE,
                       me, id, "group", group_json, err);
}

/* Lock group id for a change by me: 0 when me owns it, -1 with 404 when
 * me cannot see it, 403 when me is only a member.  'whole' takes FOR
 * UPDATE (for a deletion), otherwise FOR NO KEY UPDATE, which lets new
 * ACL entries name the group meanwhile. */
static int group_lock_own(PGconn *c, const char *me, const char *id,
                          int whole, struct shoal_err *err)
{
    const char *p[] = { me, id };
    PGresult *r = br_db_query(c, whole
        ? "SELECT g.owner_id = $1::uuid, " VISIBLE " FROM groups g"
          " WHERE g.group_id = $2::uuid FOR UPDATE OF g"
        : "SELECT g.owner_id = $1::uuid, " VISIBLE " FROM groups g"
          " WHERE g.group_id = $2::uuid FOR NO KEY UPDATE OF g", 2, p, err);
    if (r == NULL)
        return -1;
    int found = PQntuples(r) == 1;
    int owner = found && PQgetvalue(r, 0, 0)[0] == 't';
    int visible = found && PQgetvalue(r, 0, 1)[0] == 't';
    PQclear(r);
    if (!visible)
        return shoal_err_set(err, SHOAL_ENOTFOUND, "group '%s' not found", id);
    if (!owner)
        return shoal_err_set(err, SHOAL_EFORBIDDEN,
                             "only the owner of group '%s' may change it", id);
    return 0;
}

/* Make the members of group id exactly the users of the array literal
 * ids: each must be registered (404 naming the first that is not). */
static int members_set(PGconn *c, const char *id, const char *ids,
                       struct shoal_err *err)
{
    const char *p[] = { id, ids };
    if (br_users_exist(c, ids, err) != 0)
        return -1;
    PGresult *r = br_db_query(c, "DELETE FROM group_members"
                                 " WHERE group_id = $1::uuid", 1, p, err);
    if (r == NULL)
        return -1;
    PQclear(r);
    r = br_db_query(c,
        "INSERT INTO group_members (group_id, user_id)"
        " SELECT DISTINCT $1::uuid, x FROM unnest($2::uuid[]) AS x", 2, p, err);
    if (r == NULL)
        return -1;
    PQclear(r);
    return 0;
}

BR_HANDLER(h_group_create)
{
    static const char *const keys[] = { "name", "members", NULL };
    struct br_app *app = br_app_of(req);
    json_t *body = shoal_req_body(req);
    const char *me = br_caller(req)->user_id, *name;
    char id[37], *ids = NULL;
    PGconn *c = NULL;
    PGresult *r = NULL;
    int rc = -1;

    if (shoal_json_only(body, keys, err) != 0 ||
        br_json_name(body, "name", &name, err) != 0)
        return -1;
    if (json_object_get(body, "members") != NULL &&
        (ids = br_json_uuids(body, "members", MAX_MEMBERS, NULL, err)) == NULL)
        return -1;

    shoal_uuid_v4(id);
    const char *p[] = { id, me, name };
    if ((c = br_db_get(app->db, err)) == NULL || br_db_begin(c, err) != 0)
        goto out;
    r = br_db_query(c, "INSERT INTO groups (group_id, owner_id, name)"
                       " VALUES ($1, $2, $3)", 3, p, err);
    if (r == NULL) {
        br_name_taken(err, "group");
        goto out;
    }
    if (ids && members_set(c, id, ids, err) != 0)
        goto out;
    *reply = group_load(c, me, id, err);
    if (br_reply_commit(c, reply, err) != 0)
        goto out;
    shoal_req_set_status(req, 201);
    rc = 0;
out:
    PQclear(r);
    br_db_put(app->db, c);
    free(ids);
    return rc;
}

BR_HANDLER(h_group_list)
{
    struct br_app *app = br_app_of(req);
    const char *p[] = { br_caller(req)->user_id };
    PGresult *r = br_db_exec(app->db,
        "SELECT " GROUP_COLS " FROM groups g WHERE " VISIBLE
        " ORDER BY g.name COLLATE \"C\", g.group_id", 1, p, err);
    return br_rows_reply(r, "groups", group_json, reply, err);
}

BR_HANDLER(h_group_get)
{
    return br_load_reply(req, group_load, reply, err);
}

BR_HANDLER(h_group_update)
{
    static const char *const keys[] = { "name", "members", NULL };
    struct br_app *app = br_app_of(req);
    json_t *body = shoal_req_body(req);
    const char *me = br_caller(req)->user_id, *name = NULL;
    char id[37], *ids = NULL;
    PGconn *c = NULL;
    PGresult *r = NULL;
    int rc = -1;

    if (br_param_uuid(req, "id", id, err) != 0 ||
        shoal_json_only(body, keys, err) != 0)
        return -1;
    if (json_object_get(body, "name") != NULL &&
        br_json_name(body, "name", &name, err) != 0)
        return -1;
    if (json_object_get(body, "members") != NULL &&
        (ids = br_json_uuids(body, "members", MAX_MEMBERS, NULL, err)) == NULL)
        return -1;

    const char *p[] = { id, name };
    if ((c = br_db_get(app->db, err)) == NULL || br_db_begin(c, err) != 0 ||
        group_lock_own(c, me, id, 0, err) != 0)
        goto out;
    r = br_db_query(c, "UPDATE groups SET name = coalesce($2, name),"
                       " updated_at = now() WHERE group_id = $1::uuid",
                    2, p, err);
    if (r == NULL) {
        br_name_taken(err, "group");
        goto out;
    }
    if (ids && members_set(c, id, ids, err) != 0)
        goto out;
    *reply = group_load(c, me, id, err);
    rc = br_reply_commit(c, reply, err);
    if (rc == 0)
        br_cache_acl_changed(app->cache);
out:
    PQclear(r);
    br_db_put(app->db, c);
    free(ids);
    return rc;
}

BR_HANDLER(h_group_delete)
{
    struct br_app *app = br_app_of(req);
    char id[37];
    PGconn *c = NULL;
    PGresult *r = NULL;
    int rc = -1;

    if (br_param_uuid(req, "id", id, err) != 0)
        return -1;
    const char *p[] = { id };
    if ((c = br_db_get(app->db, err)) == NULL || br_db_begin(c, err) != 0 ||
        group_lock_own(c, br_caller(req)->user_id, id, 1, err) != 0)
        goto out;
    /* Its members and the ACL entries naming it go with it (cascade). */
    r = br_db_query(c, "DELETE FROM groups WHERE group_id = $1::uuid", 1, p, err);
    if (r == NULL || br_db_commit(c, err) != 0)
        goto out;
    br_cache_acl_changed(app->cache);
    *reply = json_pack("{s:s, s:b}", "group_id", id, "deleted", 1);
    rc = 0;
out:
    PQclear(r);
    br_db_put(app->db, c);
    return rc;
}
