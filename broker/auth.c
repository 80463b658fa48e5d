/*
 * auth.c - the Bearer session check that runs before every authenticated
 * route, and the keyed hashing of secrets.
 */
#include <stdlib.h>
#include <string.h>

#include "broker.h"

void br_secret_hash(const struct br_app *app, const char *uuid,
                    unsigned char out[32])
{
    unsigned char raw[16];
    /* Hash the 16 bytes, so that case and form never matter. */
    if (shoal_uuid_parse(uuid, raw, "secret", NULL) != 0)
        memset(raw, 0, sizeof raw);
    shoal_keyed_hash(app->auth_key, raw, sizeof raw, out);
}

static void session_free(void *p)
{
    free(p);
}

int br_auth(struct shoal_req *req, const char *bearer, struct shoal_err *err)
{
    struct br_app *app = br_app_of(req);
    char sid[37];

    if (shoal_uuid_normalize(bearer, sid, "session", NULL) != 0)
        return shoal_err_set(err, SHOAL_ESESSION_UNKNOWN, "unknown session");

    struct br_session_row row;
    int found = br_session_find(app, sid, &row, err);
    if (found < 0)
        return -1;
    if (found == 0)
        return shoal_err_set(err, SHOAL_ESESSION_UNKNOWN,
                             "session '%.8s…' unknown or revoked", sid);
    struct br_session *s = calloc(1, sizeof *s);
    if (s == NULL)
        return shoal_err_set(err, SHOAL_EINTERNAL, "out of memory");
    memcpy(s->session_id, sid, sizeof sid);
    memcpy(s->user_id, row.user_id, sizeof s->user_id);
    memcpy(s->ip, row.ip, sizeof s->ip);
    s->expires_at = row.expires_at;

    if (s->expires_at <= time(NULL)) {
        free(s);
        return shoal_err_set(err, SHOAL_ESESSION_EXPIRED,
                             "session '%.8s…' expired", sid);
    }
    if (strcmp(s->ip, shoal_req_ip(req)) != 0) {
        free(s);
        shoal_req_close(req);
        return shoal_err_set(err, SHOAL_EIPMISMATCH,
                             "session '%.8s…' is bound to another address", sid);
    }
    br_usage_add(app, s->user_id, 0, 0, 1);
    shoal_req_set_user(req, s, session_free);
    return 0;
}

const struct br_session *br_caller(const struct shoal_req *req)
{
    return shoal_req_user(req);
}
