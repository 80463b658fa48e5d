/*
 * handlers.c - small helpers every handler file uses, and role names.
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
