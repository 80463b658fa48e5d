/*
 * cmd_whoami.c - shoal whoami: the identity, its broker and session, after
 * checking that the broker knows this user with this key
 * (GET /v1/users/{id}).
 */
#include <stdio.h>
#include <string.h>

#include "peer.h"
#include "util.h"

static int print_text(const struct pr_ctx *ctx, const char *created,
                      struct shoal_err *err)
{
    const struct pr_identity *id = ctx->id;
    int rc;

    rc = printf("user        %s\n"
                "public key  %s\n"
                "registered  %s\n"
                "broker      %s\n"
                "broker id   %s\n"
                "broker key  %s\n"
                "session     %s (%s, expires %s)\n"
                "identity    %s\n",
                id->user_id, id->public_key, created, id->broker,
                id->broker_id[0] ? id->broker_id : "(not pinned)",
                id->broker_key[0] ? id->broker_key : "(not pinned)",
                ctx->session.session_id, ctx->logged_in ? "new" : "cached",
                ctx->session.expires_at, ctx->identity_path);
    if (rc < 0)
        return shoal_err_set(err, SHOAL_EIO, "cannot write to stdout");
    return 0;
}

static int print_json(const struct pr_ctx *ctx, const char *created,
                      struct shoal_err *err)
{
    const struct pr_identity *id = ctx->id;
    json_t *v;
    int rc;

    v = json_pack("{s:s, s:s, s:s, s:s, s:s?, s:s?, s:s,"
                  " s:{s:s, s:s, s:s}}",
                  "user_id", id->user_id,
                  "public_key", id->public_key,
                  "created_at", created,
                  "broker", id->broker,
                  "broker_id", id->broker_id[0] ? id->broker_id : NULL,
                  "broker_key", id->broker_key[0] ? id->broker_key : NULL,
                  "identity", ctx->identity_path,
                  "session",
                  "session_id", ctx->session.session_id,
                  "expires_at", ctx->session.expires_at,
                  "state", ctx->logged_in ? "new" : "cached");
    if (!v)
        return shoal_err_set(err, SHOAL_EIO, "out of memory");
    rc = pr_json_print(v, err);
    json_decref(v);
    return rc;
}

int pr_cmd_whoami(struct pr_ctx *ctx, int argc, char **argv,
                  struct shoal_err *err)
{
    json_t *ans = NULL;
    const char *key;
    const char *created;
    char path[64];
    int rc;

    rc = pr_opts_none(argc, argv, err);
    if (rc < 0)
        return rc;
    snprintf(path, sizeof(path), "/v1/users/%s", ctx->id->user_id);
    if (pr_call(ctx, "GET", path, NULL, &ans, err) < 0)
        return -1;
    rc = -1;
    if (shoal_json_str(ans, "public_key", &key, err) < 0 ||
        shoal_json_str(ans, "created_at", &created, err) < 0) {
        pr_err_answer(err, "GET /v1/users/{id}");
        goto out;
    }
    if (strcmp(key, ctx->id->public_key) != 0) {
        shoal_err_set(err, SHOAL_EPROTO,
                      "broker '%s' holds another public key for user '%s'",
                      ctx->id->broker, ctx->id->user_id);
        goto out;
    }
    rc = ctx->json ? print_json(ctx, created, err)
                   : print_text(ctx, created, err);
out:
    json_decref(ans);
    return rc;
}
