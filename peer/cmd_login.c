/*
 * cmd_login.c - shoal login (a new session, cached) and shoal logout
 * (revoke the cached session and forget it).
 */
#include <stdio.h>
#include <string.h>

#include "peer.h"
#include "util.h"

int pr_cmd_login(struct pr_ctx *ctx, int argc, char **argv,
                 struct shoal_err *err)
{
    json_t *ans = NULL;
    int rc;

    rc = pr_opts_none(argc, argv, err);
    if (rc < 0)
        return rc;
    if (pr_login(ctx, &ans, err) < 0)
        return -1;
    if (ctx->json) {
        rc = pr_json_print(ans, err);
    } else if (printf("session %s expires %s\n", ctx->session.session_id,
                      ctx->session.expires_at) < 0) {
        rc = shoal_err_set(err, SHOAL_EIO, "cannot write to stdout");
    }
    json_decref(ans);
    return rc;
}

static int print_logout(const struct pr_ctx *ctx, const char *sid,
                        int revoked, struct shoal_err *err)
{
    json_t *v;
    int rc;

    if (!ctx->json) {
        if (!sid)
            rc = printf("not logged in\n");
        else if (revoked)
            rc = printf("logged out (session %s revoked)\n", sid);
        else
            rc = printf("logged out (session %s had already ended)\n", sid);
        return rc < 0 ? shoal_err_set(err, SHOAL_EIO,
                                      "cannot write to stdout") : 0;
    }
    v = json_pack("{s:s?, s:b}", "session_id", sid, "revoked", revoked);
    if (!v)
        return shoal_err_set(err, SHOAL_EIO, "out of memory");
    rc = pr_json_print(v, err);
    json_decref(v);
    return rc;
}

int pr_cmd_logout(struct pr_ctx *ctx, int argc, char **argv,
                  struct shoal_err *err)
{
    struct pr_session s;
    char path[64];
    int revoked = 0;
    int rc;

    rc = pr_opts_none(argc, argv, err);
    if (rc < 0)
        return rc;
    if (!pr_session_load(ctx->session_path, &s)) {
        if (pr_session_remove(ctx->session_path, err) < 0)
            return -1;
        return print_logout(ctx, NULL, 0, err);
    }
    if (strcmp(s.broker, ctx->id->broker) != 0) {
        pr_warn("session '%s' belongs to broker '%s': it is forgotten, not "
                "revoked", s.session_id, s.broker);
    } else {
        ctx->client = shoal_client_new(ctx->id->broker, 0);
        if (!ctx->client)
            return shoal_err_set(err, SHOAL_EIO, "out of memory");
        shoal_client_set_bearer(ctx->client, s.session_id);
        snprintf(path, sizeof(path), "/v1/sessions/%s", s.session_id);
        if (shoal_client_call(ctx->client, "DELETE", path, NULL, NULL, NULL,
                              err) == 0) {
            revoked = 1;
        } else {
            switch (err->code) {
            case SHOAL_ESESSION_EXPIRED:
            case SHOAL_ESESSION_UNKNOWN:
            case SHOAL_ENOTFOUND:
            case SHOAL_EGONE:
                break;          /* the session had already ended */
            case SHOAL_EIPMISMATCH:
                pr_warn("session '%s' is bound to another address: it stays "
                        "live until it expires", s.session_id);
                break;
            default:
                return -1;      /* keep the cache: 'logout' may be retried */
            }
        }
    }
    shoal_err_clear(err);
    if (pr_session_remove(ctx->session_path, err) < 0)
        return -1;
    return print_logout(ctx, s.session_id, revoked, err);
}
