/*
 * cmd_sessions.c - shoal sessions: the live sessions of this user
 * (GET /v1/sessions), the one this peer uses marked with '*'.
 */
#include <stdio.h>
#include <string.h>

#include "peer.h"
#include "util.h"

/* obj[key] as a string, or "-" when absent. */
static const char *field(const json_t *obj, const char *key)
{
    const char *s = json_string_value(json_object_get(obj, key));

    return s ? s : "-";
}

static int print_table(const struct pr_ctx *ctx, const json_t *list,
                       struct shoal_err *err)
{
    const json_t *s;
    size_t i;

    if (printf("  %-36s  %-15s  %-20s  %s\n", "SESSION", "IP", "CREATED",
               "EXPIRES") < 0)
        goto fail;
    json_array_foreach(list, i, s) {
        const json_t *cur = json_object_get(s, "current");
        const char *sid = field(s, "session_id");
        int mark = cur ? json_is_true(cur)
                       : strcmp(sid, ctx->session.session_id) == 0;

        if (printf("%c %-36s  %-15s  %-20s  %s\n", mark ? '*' : ' ', sid,
                   field(s, "ip"), field(s, "created_at"),
                   field(s, "expires_at")) < 0)
            goto fail;
    }
    return 0;
fail:
    return shoal_err_set(err, SHOAL_EIO, "cannot write to stdout");
}

int pr_cmd_sessions(struct pr_ctx *ctx, int argc, char **argv,
                    struct shoal_err *err)
{
    json_t *ans = NULL;
    json_t *list;
    int rc;

    rc = pr_opts_none(argc, argv, err);
    if (rc < 0)
        return rc;
    if (pr_call_array(ctx, "GET", "/v1/sessions", NULL, "sessions",
                      "GET /v1/sessions", &ans, &list, err) < 0)
        return -1;
    if (ctx->json)
        rc = pr_json_print(ans, err);
    else
        rc = print_table(ctx, list, err);
    json_decref(ans);
    return rc;
}
