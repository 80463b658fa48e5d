/*
 * session.c - a live Bearer session with the broker of the identity: the
 * cached one while it lasts, a new one (POST /v1/sessions) otherwise, and
 * one new login when the broker refuses the session of a call; and what
 * the commands share around a call: reading a list from the answer,
 * editing a list of ids to send back, a DELETE.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <sodium.h>

#include "log.h"
#include "peer.h"
#include "util.h"

/* A cached session that expires within this many seconds is not reused. */
#define SESSION_MARGIN 30

int pr_err_answer(struct shoal_err *err, const char *what)
{
    char msg[SHOAL_ERR_MSG_MAX];

    if (!err)
        return -1;
    memcpy(msg, err->msg, sizeof(msg));
    msg[sizeof(msg) - 1] = '\0';
    return shoal_err_set(err, SHOAL_EPROTO, "unexpected answer to %s: %s",
                         what, msg);
}

static int ensure_client(struct pr_ctx *ctx, struct shoal_err *err)
{
    if (!ctx->id)
        return shoal_err_set(err, SHOAL_EIO, "no identity loaded");
    if (ctx->client)
        return 0;
    ctx->client = shoal_client_new(ctx->id->broker, 0);
    if (!ctx->client)
        return shoal_err_set(err, SHOAL_EIO, "out of memory");
    return 0;
}

int pr_login(struct pr_ctx *ctx, json_t **reply, struct shoal_err *err)
{
    struct shoal_err cerr;
    struct pr_session s;
    json_t *body = NULL;
    json_t *ans = NULL;
    int rc = -1;

    if (ensure_client(ctx, err) < 0)
        return -1;
    ctx->have_session = 0;
    shoal_client_set_bearer(ctx->client, NULL);
    body = json_pack("{s:s, s:s}", "user_id", ctx->id->user_id, "auth_id",
                     ctx->id->auth_id);
    if (!body)
        return shoal_err_set(err, SHOAL_EIO, "out of memory");
    if (shoal_client_call(ctx->client, "POST", "/v1/sessions", body, &ans,
                          NULL, err) < 0)
        goto out;
    if (pr_session_from_json(ans, ctx->id->broker, &s, err) < 0) {
        pr_err_answer(err, "POST /v1/sessions");
        goto out;
    }
    ctx->session = s;
    ctx->have_session = 1;
    ctx->logged_in = 1;
    shoal_client_set_bearer(ctx->client, s.session_id);
    shoal_log(SHOAL_LOG_DEBUG, NULL, "logged in as '%s' at '%s'",
              ctx->id->user_id, ctx->id->broker);
    /* The session works without its cache: a failure to keep it only
     * costs a login next time. */
    shoal_err_clear(&cerr);
    if (pr_session_save(ctx->session_path, &s, &cerr) < 0)
        pr_warn("%s", cerr.msg);
    if (reply) {
        *reply = ans;
        ans = NULL;
    }
    rc = 0;
out:
    json_decref(ans);
    json_decref(body);
    return rc;
}

struct shoal_client *pr_connect(struct pr_ctx *ctx, struct shoal_err *err)
{
    struct pr_session s;

    if (ensure_client(ctx, err) < 0)
        return NULL;
    if (ctx->have_session)
        return ctx->client;
    if (pr_session_load(ctx->session_path, &s) &&
        strcmp(s.broker, ctx->id->broker) == 0 &&
        pr_session_alive(&s, SESSION_MARGIN)) {
        ctx->session = s;
        ctx->have_session = 1;
        shoal_client_set_bearer(ctx->client, s.session_id);
        return ctx->client;
    }
    if (pr_login(ctx, NULL, err) < 0)
        return NULL;
    return ctx->client;
}

int pr_session_refused(struct shoal_client *c, const struct shoal_err *err)
{
    const char *conn;

    switch (err->code) {
    case SHOAL_ESESSION_EXPIRED:
    case SHOAL_ESESSION_UNKNOWN:
        return 1;
    case SHOAL_EIPMISMATCH:
        conn = shoal_client_header(c, "Connection");
        return conn && strcasecmp(conn, "close") == 0;
    default:
        return 0;
    }
}

int pr_call(struct pr_ctx *ctx, const char *method, const char *path,
            const json_t *body, json_t **reply, struct shoal_err *err)
{
    struct shoal_client_req req = { .body = body };

    return pr_call_req(ctx, method, path, &req, reply, err);
}

int pr_call_req(struct pr_ctx *ctx, const char *method, const char *path,
                const struct shoal_client_req *req, json_t **reply,
                struct shoal_err *err)
{
    if (reply)
        *reply = NULL;
    if (!pr_connect(ctx, err))
        return -1;
    if (shoal_client_call_req(ctx->client, method, path, req, reply, NULL,
                              err) == 0)
        return 0;
    if (ctx->relogged || !pr_session_refused(ctx->client, err))
        return -1;
    shoal_log(SHOAL_LOG_DEBUG, NULL, "broker refused the session (%s), "
              "logging in again", shoal_code_name(err->code));
    ctx->relogged = 1;
    if (pr_login(ctx, NULL, err) < 0)
        return -1;
    if (reply)
        *reply = NULL;
    return shoal_client_call_req(ctx->client, method, path, req, reply,
                                 NULL, err);
}

void pr_ctx_release(struct pr_ctx *ctx)
{
    shoal_client_free(ctx->client);
    ctx->client = NULL;
    pr_identity_free(ctx->id);
    ctx->id = NULL;
    free(ctx->identity_path);
    ctx->identity_path = NULL;
    free(ctx->session_path);
    ctx->session_path = NULL;
    sodium_memzero(&ctx->session, sizeof(ctx->session));
    ctx->have_session = 0;
}

int pr_call_array(struct pr_ctx *ctx, const char *method, const char *path,
                  const json_t *body, const char *key, const char *what,
                  json_t **ans, json_t **list, struct shoal_err *err)
{
    if (pr_call(ctx, method, path, body, ans, err) < 0)
        return -1;
    if (shoal_json_array(*ans, key, list, err) < 0) {
        json_decref(*ans);
        *ans = NULL;
        return pr_err_answer(err, what);
    }
    return 0;
}

int pr_ids_edit(json_t *ids, const char *id, int remove)
{
    json_t *v;
    size_t i;

    json_array_foreach(ids, i, v) {
        const char *s = json_string_value(v);
        if (s && strcasecmp(s, id) == 0) {
            if (!remove)
                return 0;
            json_array_remove(ids, i);
            return 1;
        }
    }
    if (remove)
        return 0;
    return json_array_append_new(ids, json_string(id)) < 0 ? -1 : 1;
}

int pr_delete(struct pr_ctx *ctx, const char *kind, const char *id,
              struct shoal_err *err)
{
    json_t *ans = NULL;
    char path[80];
    int rc;

    snprintf(path, sizeof(path), "/v1/%ss/%s", kind, id);
    if (pr_call(ctx, "DELETE", path, NULL, &ans, err) < 0)
        return -1;
    if (ctx->json)
        rc = pr_json_print(ans, err);
    else
        rc = pr_printf(err, "deleted %s %s\n", kind, id);
    json_decref(ans);
    return rc;
}
