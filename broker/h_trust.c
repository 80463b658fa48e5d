/*
 * h_trust.c - trust bubbles: a user's list of trusted users, and the live
 * sessions of everyone who trusts the caller.
 */
#include <stdlib.h>
#include <string.h>

#include "broker.h"

#define MAX_TRUSTED 1000

static json_t *trusted_reply(PGresult *r, const char *id)
{
    json_t *ids = json_array();
    for (int i = 0; ids && i < PQntuples(r); i++)
        json_array_append_new(ids, json_string(PQgetvalue(r, i, 0)));
    return json_pack("{s:s, s:o}", "user_id", id, "user_ids", ids);
}

BR_HANDLER(h_trusted_get)
{
    struct br_app *app = br_app_of(req);
    char id[37];

    /* The caller must be {id}: trust lists are private. */
    if (br_param_self(req, "trust list", id, err) != 0)
        return -1;
    const char *p[] = { id };
    PGresult *r = br_db_exec(app->db,
        "SELECT trusted_id FROM trust WHERE user_id = $1 ORDER BY trusted_id",
        1, p, err);
    if (r == NULL)
        return -1;
    *reply = trusted_reply(r, id);
    PQclear(r);
    return 0;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* The body's user_ids as a PostgreSQL array literal "{a,b}" (new string),
 * sorted, without duplicates.  NULL with err set. */
static char *id_array(const json_t *list, const char *me,
                      struct shoal_err *err)
{
    size_t n = json_array_size(list);
    char (*ids)[37] = NULL;
    const char **sorted = NULL;
    char *text = NULL;

    if (n > MAX_TRUSTED) {
        shoal_err_set(err, SHOAL_EINVAL, "at most %d trusted users", MAX_TRUSTED);
        return NULL;
    }
    ids = calloc(n ? n : 1, sizeof *ids);
    sorted = calloc(n ? n : 1, sizeof *sorted);
    text = malloc(n * 37 + 3);
    if (ids == NULL || sorted == NULL || text == NULL) {
        shoal_err_set(err, SHOAL_EINTERNAL, "out of memory");
        goto fail;
    }
    for (size_t i = 0; i < n; i++) {
        if (br_json_uuid_at(list, "user_ids", i, ids[i], err) != 0)
            goto fail;
        if (strcmp(ids[i], me) == 0) {
            shoal_err_set(err, SHOAL_EINVAL, "a user cannot list itself as trusted");
            goto fail;
        }
        sorted[i] = ids[i];
    }
    qsort(sorted, n, sizeof *sorted, cmp_str);
    char *w = text;
    *w++ = '{';
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (i > 0 && strcmp(sorted[i], sorted[i - 1]) == 0)
            continue;
        if (k++ > 0)
            *w++ = ',';
        memcpy(w, sorted[i], 36);
        w += 36;
    }
    *w++ = '}';
    *w = '\0';
    free(ids);
    free(sorted);
    return text;
fail:
    free(ids);
    free(sorted);
    free(text);
    return NULL;
}

BR_HANDLER(h_trusted_put)
{
    static const char *const keys[] = { "user_id", "user_ids", NULL };
    struct br_app *app = br_app_of(req);
    json_t *body = shoal_req_body(req), *list;
    char id[37], *arr = NULL;
    PGconn *c = NULL;
    PGresult *r = NULL;
    int rc = -1;

    if (br_param_self(req, "trust list", id, err) != 0 ||
        shoal_json_only(body, keys, err) != 0 ||
        shoal_json_array(body, "user_ids", &list, err) != 0 ||
        (arr = id_array(list, id, err)) == NULL)
        return -1;
    /* A GET reply may be sent back as it is: user_id, if given, is {id}. */
    if (json_object_get(body, "user_id") != NULL) {
        char same[37];
        if (shoal_json_uuid(body, "user_id", same, err) != 0 ||
            (strcmp(same, id) != 0 &&
             shoal_err_set(err, SHOAL_EINVAL, "'user_id' differs from the path") != 0)) {
            free(arr);
            return -1;
        }
    }

    const char *p[] = { id, arr };
    if ((c = br_db_get(app->db, err)) == NULL || br_db_begin(c, err) != 0)
        goto out;
    /* Two replacements of one list at once take turns on the user's row. */
    r = br_db_query(c, "SELECT 1 FROM users WHERE user_id = $1 FOR UPDATE",
                    1, p, err);
    if (r == NULL)
        goto out;
    PQclear(r);
    r = NULL;
    /* Name the first listed user that does not exist (the list is
     * sorted: the least). */
    if (br_users_exist(c, arr, err) != 0)
        goto out;
    r = br_db_query(c, "DELETE FROM trust WHERE user_id = $1", 1, p, err);
    if (r == NULL)
        goto out;
    PQclear(r);
    r = br_db_query(c,
        "INSERT INTO trust (user_id, trusted_id) SELECT $1, unnest($2::uuid[])",
        2, p, err);
    if (r == NULL)
        goto out;
    PQclear(r);
    r = br_db_query(c, "SELECT trusted_id FROM trust WHERE user_id = $1"
                       " ORDER BY trusted_id", 1, p, err);
    if (r == NULL || br_db_commit(c, err) != 0)
        goto out;
    *reply = trusted_reply(r, id);
    rc = 0;
out:
    PQclear(r);
    br_db_put(app->db, c);
    free(arr);
    return rc;
}

/* Row i of the trust bubble query as a session object (new reference). */
static json_t *bubble_json(PGresult *r, int i)
{
    return json_pack(
        "{s:s, s:s, s:s, s:o*, s:o}", "session_id", PQgetvalue(r, i, 0),
        "ip", PQgetvalue(r, i, 1), "user_id", PQgetvalue(r, i, 2),
        "public_key", br_bytea_b64_json(PQgetvalue(r, i, 3)),
        "expires_at", br_time_json(strtoll(PQgetvalue(r, i, 4), NULL, 10)));
}

BR_HANDLER(h_trust_sessions)
{
    struct br_app *app = br_app_of(req);
    const char *p[] = { br_caller(req)->user_id };
    PGresult *r = br_db_exec(app->db,
        "SELECT s.session_id, host(s.ip), s.user_id, u.public_key,"
        " extract(epoch FROM s.expires_at)::bigint"
        " FROM trust t JOIN sessions s ON s.user_id = t.user_id"
        " JOIN users u ON u.user_id = s.user_id"
        " WHERE t.trusted_id = $1 AND s.expires_at > now()"
        " ORDER BY s.user_id, s.session_id", 1, p, err);
    return br_rows_reply(r, "sessions", bubble_json, reply, err);
}
