/*
 * cmd_files.c - shoal ls [--share NAME|ID] | rm ID | versions ID: the
 * files of a share, deleting a file, the versions of a file.
 */
#include <stdio.h>
#include <string.h>

#include "peer.h"
#include "util.h"

/* The one FILE ID argument of rm and versions, lowercase, into id. */
static int id_arg(int argc, char **argv, char id[37], struct shoal_err *err)
{
    int n = pr_opts_parse(NULL, argc, argv, err);

    if (n < 0)
        return n;
    if (n < 1)
        return pr_usage_err(err, "'%s' needs a file ID", argv[0]);
    if (n > 1)
        return pr_usage_err(err, "unexpected argument '%s'", argv[2]);
    if (shoal_uuid_normalize(argv[1], id, "ID", NULL) < 0)
        return pr_usage_err(err, "file ID '%s' is not a UUID", argv[1]);
    return 0;
}

int pr_cmd_ls(struct pr_ctx *ctx, int argc, char **argv,
              struct shoal_err *err)
{
    const char *share_arg = NULL;
    const struct pr_opt opts[] = {
        { "share", &share_arg, NULL },
        { NULL, NULL, NULL },
    };
    json_t *share = NULL;
    json_t *ans = NULL;
    json_t *files;
    json_t *v;
    char share_id[37];
    char path[80];
    size_t i;
    int n;
    int rc = -1;

    n = pr_opts_parse(opts, argc, argv, err);
    if (n < 0)
        return n;
    if (n > 0)
        return pr_usage_err(err, "unexpected argument '%s'", argv[1]);
    if (pr_share_find(ctx, share_arg, 0, &share, err) < 0) {
        if (share_arg || !err || err->code != SHOAL_ENOTFOUND)
            return -1;
        /* no default share yet: nothing stored */
        ans = json_pack("{s:[]}", "files");
        if (!ans)
            return shoal_err_set(err, SHOAL_EIO, "out of memory");
    } else {
        if (shoal_json_uuid(share, "share_id", share_id, err) < 0) {
            pr_err_answer(err, "GET /v1/shares");
            goto out;
        }
        snprintf(path, sizeof(path), "/v1/files?share=%s", share_id);
        if (pr_call(ctx, "GET", path, NULL, &ans, err) < 0)
            goto out;
    }
    if (shoal_json_array(ans, "files", &files, err) < 0) {
        pr_err_answer(err, "GET /v1/files");
        goto out;
    }
    if (ctx->json) {
        rc = pr_json_print(ans, err);
        goto out;
    }
    rc = 0;
    json_array_foreach(files, i, v) {
        const char *id = json_string_value(json_object_get(v, "file_id"));
        const char *dir = json_string_value(json_object_get(v, "path"));
        const char *name = json_string_value(json_object_get(v, "name"));
        json_int_t version = json_integer_value(json_object_get(v, "version"));
        json_int_t size = json_integer_value(json_object_get(v, "size"));

        rc = pr_printf(err, "%s  v%-4lld %14lld  %s%s%s\n", id ? id : "?",
                       (long long)version, (long long)size,
                       dir ? dir : "", dir && *dir ? "/" : "",
                       name ? name : "");
        if (rc < 0)
            break;
    }
out:
    json_decref(ans);
    json_decref(share);
    return rc;
}

int pr_cmd_rm(struct pr_ctx *ctx, int argc, char **argv,
              struct shoal_err *err)
{
    json_t *ans = NULL;
    char id[37];
    char path[64];
    int rc;

    rc = id_arg(argc, argv, id, err);
    if (rc < 0)
        return rc;
    snprintf(path, sizeof(path), "/v1/files/%s", id);
    if (pr_call(ctx, "DELETE", path, NULL, &ans, err) < 0)
        return -1;
    if (ctx->json)
        rc = pr_json_print(ans, err);
    else
        rc = pr_printf(err, "deleted file %s\n", id);
    json_decref(ans);
    return rc;
}

int pr_cmd_versions(struct pr_ctx *ctx, int argc, char **argv,
                    struct shoal_err *err)
{
    json_t *ans = NULL;
    json_t *list;
    json_t *v;
    char id[37];
    char path[80];
    size_t i;
    int rc;

    rc = id_arg(argc, argv, id, err);
    if (rc < 0)
        return rc;
    snprintf(path, sizeof(path), "/v1/files/%s/versions", id);
    if (pr_call(ctx, "GET", path, NULL, &ans, err) < 0)
        return -1;
    if (shoal_json_array(ans, "versions", &list, err) < 0) {
        json_decref(ans);
        return pr_err_answer(err, "GET /v1/files/{id}/versions");
    }
    if (ctx->json) {
        rc = pr_json_print(ans, err);
    } else {
        json_array_foreach(list, i, v) {
            const char *root = json_string_value(json_object_get(v, "root"));
            const char *at = json_string_value(json_object_get(v,
                                                               "created_at"));

            rc = pr_printf(err, "v%-4lld %14lld  %s  %s\n",
                           (long long)json_integer_value(
                               json_object_get(v, "version")),
                           (long long)json_integer_value(
                               json_object_get(v, "size")),
                           at ? at : "?", root ? root : "?");
            if (rc < 0)
                break;
        }
    }
    json_decref(ans);
    return rc;
}
