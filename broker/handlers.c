/*
 * handlers.c - small helpers every handler file uses (path parameters,
 * replies made of rows, committing a reply), and role names.
 */
#include <stdlib.h>
#include <string.h>

#include "broker.h"

static const char *const role_names[] = {
    "trust", "metadata", "file", "injector", "accounting",
};
#define NROLES (sizeof role_names / sizeof role_names[0])

int br_roles_parse(const char *s, unsigned *out, struct shoal_err *err)
{
    unsigned roles = 0;
    char *copy = strdup(s ? s : ""), *save = NULL;
    if (copy == NULL)
        return shoal_err_set(err, SHOAL_EINTERNAL, "out of memory");
    for (char *t = strtok_r(copy, ", ", &save); t; t = strtok_r(NULL, ", ", &save)) {
        size_t i;
        for (i = 0; i < NROLES; i++)
            if (strcmp(t, role_names[i]) == 0)
                break;
        if (i == NROLES) {
            shoal_err_set(err, SHOAL_EINVAL, "unknown role '%.40s'", t);
            free(copy);
            return -1;
        }
        roles |= 1u << i;
    }
    free(copy);
    if (roles == 0)
        return shoal_err_set(err, SHOAL_EINVAL, "no role given");
    *out = roles;
    return 0;
}

json_t *br_roles_json(unsigned roles)
{
    json_t *a = json_array();
    for (size_t i = 0; a && i < NROLES; i++)
        if (roles & (1u << i))
            json_array_append_new(a, json_string(role_names[i]));
    return a;
}

struct br_app *br_app_of(const struct shoal_req *req)
{
    return shoal_req_app(req);
}

int br_param_uuid(const struct shoal_req *req, const char *name,
                  char out[37], struct shoal_err *err)
{
    const char *v = shoal_req_param(req, name);
    if (v == NULL)
        return shoal_err_set(err, SHOAL_EINVAL, "missing '%s'", name);
    return shoal_uuid_normalize(v, out, name, err);
}

int br_param_self(const struct shoal_req *req, const char *what, char id[37],
                  struct shoal_err *err)
{
    if (br_param_uuid(req, "id", id, err) != 0)
        return -1;
    if (strcmp(id, br_caller(req)->user_id) != 0)
        return shoal_err_set(err, SHOAL_EFORBIDDEN,
                             "the %s of '%s' belongs to another user",
                             what, id);
    return 0;
}

int br_reply_commit(PGconn *c, json_t **reply, struct shoal_err *err)
{
    if (*reply == NULL)
        return -1;
    if (br_db_commit(c, err) != 0) {
        json_decref(*reply);
        *reply = NULL;
        return -1;
    }
    return 0;
}

int br_rows_reply(PGresult *r, const char *key, br_row_fn *row,
                  json_t **reply, struct shoal_err *err)
{
    if (r == NULL)
        return -1;
    json_t *list = json_array();
    for (int i = 0; list && i < PQntuples(r); i++)
        json_array_append_new(list, row(r, i));
    PQclear(r);
    *reply = json_pack("{s:o}", key, list);
    return *reply ? 0 : shoal_err_set(err, SHOAL_EINTERNAL, "out of memory");
}

json_t *br_row_load(PGconn *c, const char *sql, const char *viewer,
                    const char *id, const char *what, br_row_fn *row,
                    struct shoal_err *err)
{
    const char *p[] = { viewer, id };
    PGresult *r = br_db_query(c, sql, 2, p, err);
    if (r == NULL)
        return NULL;
    json_t *j = NULL;
    if (PQntuples(r) != 1)
        shoal_err_set(err, SHOAL_ENOTFOUND, "%s '%s' not found", what, id);
    else if ((j = row(r, 0)) == NULL)
        shoal_err_set(err, SHOAL_EINTERNAL, "out of memory");
    PQclear(r);
    return j;
}

int br_load_reply(struct shoal_req *req, br_load_fn *load, json_t **reply,
                  struct shoal_err *err)
{
    struct br_app *app = br_app_of(req);
    char id[37];

    if (br_param_uuid(req, "id", id, err) != 0)
        return -1;
    PGconn *c = br_db_get(app->db, err);
    if (c == NULL)
        return -1;
    *reply = load(c, br_caller(req)->user_id, id, err);
    br_db_put(app->db, c);
    return *reply ? 0 : -1;
}

json_t *br_time_json(long long t)
{
    char buf[32];
    shoal_time_format((time_t)t, buf);
    return json_string(buf);
}

json_t *br_bytea_b64_json(const char *pg_hex)
{
    if (pg_hex == NULL || strncmp(pg_hex, "\\x", 2) != 0)
        return NULL;
    size_t n = strlen(pg_hex + 2) / 2;
    unsigned char buf[64];
    if (n == 0 || n > sizeof buf ||
        shoal_hex_decode_exact(pg_hex + 2, buf, n, "bytea", NULL) != 0)
        return NULL;
    char *b64 = shoal_b64_encode(buf, n);
    json_t *s = b64 ? json_string(b64) : NULL;
    free(b64);
    return s;
}

void br_bytea_text(const unsigned char *bin, size_t len, char *out)
{
    out[0] = '\\';
    out[1] = 'x';
    shoal_hex_encode(bin, len, out + 2);
}
