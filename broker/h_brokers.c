/*
 * h_brokers.c - the service broker directory: list (any session), add and
 * remove (operator, with the admin token).
 */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "broker.h"

#define URL_MAX 2048

static json_t *broker_json(PGresult *r, int i)
{
    unsigned roles = 0;
    br_roles_parse(PQgetvalue(r, i, 2), &roles, NULL);
    return json_pack("{s:s, s:s, s:o, s:o*, s:o}",
                     "broker_id", PQgetvalue(r, i, 0),
                     "url", PQgetvalue(r, i, 1),
                     "roles", br_roles_json(roles),
                     "public_key", br_bytea_b64_json(PQgetvalue(r, i, 3)),
                     "updated_at",
                     br_time_json(strtoll(PQgetvalue(r, i, 4), NULL, 10)));
}

#define BROKER_COLUMNS \
    "broker_id, url, roles, public_key, extract(epoch FROM updated_at)::bigint"

BR_HANDLER(h_broker_list)
{
    struct br_app *app = br_app_of(req);
    PGresult *r = br_db_exec(app->db, "SELECT " BROKER_COLUMNS
                             " FROM brokers ORDER BY broker_id", 0, NULL, err);
    return br_rows_reply(r, "brokers", broker_json, reply, err);
}

int br_url_valid(const char *url)
{
    static const char allowed[] = "abcdefghijklmnopqrstuvwxyz"
                                  "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
                                  "-._~:/?#[]@!$&'()*+,;=%";
    const char *rest;
    if (strncmp(url, "http://", 7) == 0)
        rest = url + 7;
    else if (strncmp(url, "https://", 8) == 0)
        rest = url + 8;
    else
        return 0;
    if (*rest == '\0' || *rest == '/' || *rest == '?' || *rest == '#')
        return 0;
    for (const char *p = url; *p; p++) {
        if (strchr(allowed, *p) == NULL)
            return 0;
        if (*p == '%' && !(isxdigit((unsigned char)p[1]) &&
                           isxdigit((unsigned char)p[2])))
            return 0;
    }
    return 1;
}

/* Role names from a JSON array into bits. */
static int roles_of(const json_t *a, unsigned *out, struct shoal_err *err)
{
    char buf[256] = "";
    size_t i;
    json_t *v;

    if (json_array_size(a) == 0)
        return shoal_err_set(err, SHOAL_EINVAL, "'roles' must not be empty");
    json_array_foreach(a, i, v) {
        const char *s = json_string_value(v);
        if (s == NULL || strlen(s) > 20 || strchr(s, ',') || strchr(s, ' '))
            return shoal_err_set(err, SHOAL_EINVAL, "'roles[%zu]' is not a role", i);
        if (strlen(buf) + strlen(s) + 2 > sizeof buf)
            return shoal_err_set(err, SHOAL_EINVAL, "too many roles");
        strcat(buf, i ? "," : "");
        strcat(buf, s);
    }
    struct shoal_err why;
    if (br_roles_parse(buf, out, &why) != 0)
        return shoal_err_set(err, SHOAL_EINVAL, "'roles': %s", why.msg);
    return 0;
}

BR_HANDLER(h_broker_create)
{
    static const char *const keys[] = { "broker_id", "url", "roles",
                                        "public_key", NULL };
    struct br_app *app = br_app_of(req);
    json_t *body = shoal_req_body(req), *roles_a;
    char id[37], pk_hx[2 * SHOAL_PK_BYTES + 3], roles_t[128];
    const char *url, *pk_b64;
    unsigned char pk[SHOAL_PK_BYTES];
    unsigned roles;

    if (shoal_json_only(body, keys, err) != 0)
        return -1;
    if (json_object_get(body, "broker_id") != NULL) {
        if (shoal_json_uuid(body, "broker_id", id, err) != 0)
            return -1;
    } else {
        shoal_uuid_v4(id);
    }
    if (shoal_json_str(body, "url", &url, err) != 0 ||
        shoal_json_array(body, "roles", &roles_a, err) != 0 ||
        roles_of(roles_a, &roles, err) != 0 ||
        shoal_json_str(body, "public_key", &pk_b64, err) != 0 ||
        shoal_b64_decode_exact(pk_b64, pk, sizeof pk, "public_key", err) != 0)
        return -1;
    size_t ulen = strlen(url);
    if (ulen == 0 || ulen > URL_MAX ||
        ulen != json_string_length(json_object_get(body, "url")) ||
        !br_url_valid(url))
        return shoal_err_set(err, SHOAL_EINVAL,
                             "'url' must be an absolute http or https URL of at"
                             " most %d characters", URL_MAX);

    json_t *names = br_roles_json(roles);
    size_t i;
    json_t *v;
    roles_t[0] = '\0';
    json_array_foreach(names, i, v) {
        strcat(roles_t, i ? "," : "");
        strcat(roles_t, json_string_value(v));
    }
    json_decref(names);
    br_bytea_text(pk, sizeof pk, pk_hx);
    const char *p[] = { id, url, roles_t, pk_hx };
    PGresult *r = br_db_exec(app->db,
        "INSERT INTO brokers (broker_id, url, roles, public_key)"
        " VALUES ($1, $2, $3, $4) RETURNING " BROKER_COLUMNS, 4, p, err);
    if (r == NULL) {
        if (err && err->code == SHOAL_EEXISTS)
            shoal_err_set(err, SHOAL_EEXISTS, "broker '%s' already exists", id);
        return -1;
    }
    *reply = broker_json(r, 0);
    PQclear(r);
    shoal_req_set_status(req, 201);
    return 0;
}

BR_HANDLER(h_broker_delete)
{
    struct br_app *app = br_app_of(req);
    char id[37];

    if (br_param_uuid(req, "id", id, err) != 0)
        return -1;
    const char *p[] = { id };
    PGresult *r = br_db_exec(app->db,
        "DELETE FROM brokers WHERE broker_id = $1 RETURNING 1", 1, p, err);
    if (r == NULL)
        return -1;
    int found = PQntuples(r) == 1;
    PQclear(r);
    if (!found)
        return shoal_err_set(err, SHOAL_ENOTFOUND, "broker '%s' not found", id);
    *reply = json_pack("{s:s, s:b}", "broker_id", id, "deleted", 1);
    return 0;
}
