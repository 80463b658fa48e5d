/*
 * acl.c - who may do what with a share, and the checks of the fields that
 * shares, groups and trust lists have in common (names, lists of ids).
 */
#include <stdlib.h>
#include <string.h>

#include "broker.h"

int br_share_access(PGconn *c, const char *user_id, const char *share_id,
                    struct shoal_err *err)
{
    const char *p[] = { user_id, share_id };
    /* The same rule as the share list of h_shares.c; a share readable by
     * all (the injector's, 004_inject.sql) gives every user read. */
    PGresult *r = br_db_query(c,
        "SELECT CASE WHEN s.owner_id = $1::uuid THEN 3 ELSE greatest(coalesce(("
        "  SELECT max(a.perm) FROM share_acl a WHERE a.share_id = s.share_id"
        "  AND (a.user_id = $1::uuid OR a.group_id IN"
        "   (SELECT m.group_id FROM group_members m WHERE m.user_id = $1::uuid))"
        " ), 0), CASE WHEN s.readable_by_all THEN 1 ELSE 0 END) END"
        " FROM shares s WHERE s.share_id = $2::uuid", 2, p, err);
    if (r == NULL)
        return -1;
    int access = BR_ACCESS_NONE;
    if (PQntuples(r) == 1)
        access = atoi(PQgetvalue(r, 0, 0));
    PQclear(r);
    if (access < BR_ACCESS_NONE || access > BR_ACCESS_OWNER)
        access = BR_ACCESS_NONE;
    return access;
}

int br_share_need(PGconn *c, const char *user_id, const char *share_id,
                  enum br_access want, struct shoal_err *err)
{
    int access = br_share_access(c, user_id, share_id, err);
    if (access < 0)
        return -1;
    if (access == BR_ACCESS_NONE)
        return shoal_err_set(err, SHOAL_ENOTFOUND, "share '%s' not found",
                             share_id);
    if (access >= (int)want)
        return access;
    if (want == BR_ACCESS_OWNER)
        return shoal_err_set(err, SHOAL_EFORBIDDEN,
                             "only the owner of share '%s' may do this",
                             share_id);
    return shoal_err_set(err, SHOAL_EFORBIDDEN,
                         "no write access to share '%s'", share_id);
}

int br_name_taken(struct shoal_err *err, const char *kind)
{
    if (err && err->code == SHOAL_EEXISTS)
        shoal_err_set(err, SHOAL_EEXISTS,
                      "the caller already owns a %s of that name", kind);
    return -1;
}

int br_json_name(const json_t *obj, const char *key, const char **out,
                 struct shoal_err *err)
{
    const json_t *v = json_object_get(obj, key);
    if (!json_is_string(v))
        return shoal_err_set(err, SHOAL_EINVAL, "'%s' must be a string", key);
    const char *s = json_string_value(v);
    size_t len = json_string_length(v);
    if (len == 0 || len > BR_NAME_MAX)
        return shoal_err_set(err, SHOAL_EINVAL,
                             "'%s' must be 1 to %d bytes long", key, BR_NAME_MAX);
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch < 0x20 || ch == 0x7f)
            return shoal_err_set(err, SHOAL_EINVAL,
                                 "'%s' holds a control character at byte %zu",
                                 key, i);
    }
    *out = s;
    return 0;
}

int br_json_uuid_at(const json_t *list, const char *key, size_t i,
                    char id[37], struct shoal_err *err)
{
    const json_t *v = json_array_get(list, i);
    char what[64];
    snprintf(what, sizeof what, "%s[%zu]", key, i);
    if (!json_is_string(v))
        return shoal_err_set(err, SHOAL_EINVAL, "'%s' must be a string", what);
    return shoal_uuid_normalize(json_string_value(v), id, what, err);
}

char *br_json_uuids(const json_t *obj, const char *key, size_t max,
                    size_t *count, struct shoal_err *err)
{
    const json_t *list = json_object_get(obj, key);
    if (!json_is_array(list)) {
        shoal_err_set(err, SHOAL_EINVAL, "'%s' must be an array", key);
        return NULL;
    }
    size_t n = json_array_size(list);
    if (n > max) {
        shoal_err_set(err, SHOAL_EINVAL, "'%s' holds more than %zu entries",
                      key, max);
        return NULL;
    }
    char *text = malloc(n * 37 + 3), *w = text;
    if (text == NULL) {
        shoal_err_set(err, SHOAL_EINTERNAL, "out of memory");
        return NULL;
    }
    *w++ = '{';
    for (size_t i = 0; i < n; i++) {
        char id[37];
        if (br_json_uuid_at(list, key, i, id, err) != 0) {
            free(text);
            return NULL;
        }
        if (i > 0)
            *w++ = ',';
        memcpy(w, id, 36);
        w += 36;
    }
    *w++ = '}';
    *w = '\0';
    if (count)
        *count = n;
    return text;
}

json_t *br_id_list_json(const char *s)
{
    json_t *a = json_array();
    size_t len = strlen(s);
    for (size_t at = 0; a && at + 36 <= len; at += 37)
        json_array_append_new(a, json_stringn(s + at, 36));
    return a;
}

int br_users_exist(PGconn *c, const char *ids, struct shoal_err *err)
{
    const char *p[] = { ids };
    PGresult *r = br_db_query(c,
        "SELECT x FROM unnest($1::uuid[]) WITH ORDINALITY AS t(x, i)"
        " WHERE NOT EXISTS (SELECT 1 FROM users u WHERE u.user_id = x)"
        " ORDER BY i LIMIT 1", 1, p, err);
    if (r == NULL)
        return -1;
    int rc = 0;
    if (PQntuples(r) > 0)
        rc = shoal_err_set(err, SHOAL_ENOTFOUND, "user '%s' not found",
                           PQgetvalue(r, 0, 0));
    PQclear(r);
    return rc;
}
