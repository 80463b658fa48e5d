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

/* One line of ls. */
static int file_row(const struct pr_ctx *ctx, const json_t *v,
                    struct shoal_err *err)
{
    const char *id = json_string_value(json_object_get(v, "file_id"));
    const char *dir = json_string_value(json_object_get(v, "path"));
    const char *name = json_string_value(json_object_get(v, "name"));
    json_int_t version = json_integer_value(json_object_get(v, "version"));
    json_int_t size = json_integer_value(json_object_get(v, "size"));

    (void)ctx;
    return pr_printf(err, "%s  v%-4lld %14lld  %s%s%s\n", id ? id : "?",
                     (long long)version, (long long)size,
                     dir ? dir : "", dir && *dir ? "/" : "",
                     name ? name : "");
}

int pr_cmd_ls(struct pr_ctx *ctx, int argc, char **argv,
              struct shoal_err *err)
{
    const char *share_arg = NULL;
    const struct pr_opt opts[] = {
        { "share", &share_arg, NULL },
        { NULL, NULL, NULL },
    };
    json_t *ans = NULL;
    json_t *files;
    char share_id[37];
    char path[80];
    int n;
    int rc = -1;

    n = pr_opts_parse(opts, argc, argv, err);
    if (n < 0)
        return n;
    if (n > 0)
        return pr_usage_err(err, "unexpected argument '%s'", argv[1]);
    if (pr_share_find(ctx, share_arg, 0, NULL, share_id, err) < 0) {
        if (share_arg || !err || err->code != SHOAL_ENOTFOUND)
            return -1;
        /* no default share yet: nothing stored */
        ans = json_pack("{s:[]}", "files");
        if (!ans)
            return shoal_err_set(err, SHOAL_EIO, "out of memory");
    } else {
        snprintf(path, sizeof(path), "/v1/files?share=%s", share_id);
        if (pr_call(ctx, "GET", path, NULL, &ans, err) < 0)
            goto out;
    }
    if (shoal_json_array(ans, "files", &files, err) < 0) {
        pr_err_answer(err, "GET /v1/files");
        goto out;
    }
    rc = pr_list_print(ctx, ans, files, file_row, err);
out:
    json_decref(ans);
    return rc;
}

int pr_cmd_rm(struct pr_ctx *ctx, int argc, char **argv,
              struct shoal_err *err)
{
    char id[37];
    int rc;

    rc = id_arg(argc, argv, id, err);
    if (rc < 0)
        return rc;
    return pr_delete(ctx, "file", id, err);
}

/* One line of versions. */
static int version_row(const struct pr_ctx *ctx, const json_t *v,
                       struct shoal_err *err)
{
    const char *root = json_string_value(json_object_get(v, "root"));
    const char *at = json_string_value(json_object_get(v, "created_at"));
    json_int_t version = json_integer_value(json_object_get(v, "version"));
    json_int_t size = json_integer_value(json_object_get(v, "size"));

    (void)ctx;
    return pr_printf(err, "v%-4lld %14lld  %s  %s\n", (long long)version,
                     (long long)size, at ? at : "?", root ? root : "?");
}

int pr_cmd_versions(struct pr_ctx *ctx, int argc, char **argv,
                    struct shoal_err *err)
{
    json_t *ans = NULL;
    json_t *list;
    char id[37];
    char path[80];
    int rc;

    rc = id_arg(argc, argv, id, err);
    if (rc < 0)
        return rc;
    snprintf(path, sizeof(path), "/v1/files/%s/versions", id);
    if (pr_call_array(ctx, "GET", path, NULL, "versions",
                      "GET /v1/files/{id}/versions", &ans, &list, err) < 0)
        return -1;
    rc = pr_list_print(ctx, ans, list, version_row, err);
    json_decref(ans);
    return rc;
}
