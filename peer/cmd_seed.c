/*
 * cmd_seed.c - shoal seed ID PATH [--version N] [--data-dir DIR]
 *
 * Offer a file already downloaded (or uploaded) to others: get the
 * version's signed manifest from the broker and check it as 'get' does
 * (the pinned broker key, the body against the signature, the piece
 * hashes against the root), check every piece of PATH against it while
 * storing it in the peer's piece store, and only then keep the manifest
 * in the data folder.  A running 'shoal serve' serves it from its next
 * announce round (or at once on SIGHUP).
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "serve.h"
#include "util.h"

int pr_cmd_seed(struct pr_ctx *ctx, int argc, char **argv,
                struct shoal_err *err)
{
    const char *version_arg = NULL;
    const char *data_dir = NULL;
    const struct pr_opt opts[] = {
        { "version", &version_arg, NULL },
        { "data-dir", &data_dir, NULL },
        { NULL, NULL, NULL },
    };
    struct pr_progress *progress = NULL;
    struct pr_version *v = NULL;
    struct pr_held *held = NULL;
    json_t *ans = NULL;
    struct stat st;
    uint64_t version = 0;
    uint64_t added = 0;
    char *dir = NULL;
    char url[128];
    char id[37];
    int fd = -1;
    int n;
    int rc = -1;

    if ((n = pr_opts_parse(opts, argc, argv, err)) < 0)
        return n;
    if (n < 2)
        return pr_usage_err(err, "'seed' needs a file ID and a PATH");
    if (n > 2)
        return pr_usage_err(err, "unexpected argument '%s'", argv[3]);
    if (shoal_uuid_normalize(argv[1], id, "ID", NULL) < 0)
        return pr_usage_err(err, "file ID '%s' is not a UUID", argv[1]);
    if (version_arg) {
        char *end;
        errno = 0;
        version = strtoull(version_arg, &end, 10);
        if (errno || end == version_arg || *end || version < 1 ||
            *version_arg == '-' || version > INT32_MAX)
            return pr_usage_err(err, "version '%s' must be a positive number",
                                version_arg);
    }
    const char *path = argv[2];
    if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0 || fstat(fd, &st) < 0) {
        shoal_err_set(err, SHOAL_EIO, "cannot open '%s': %s", path,
                      strerror(errno));
        goto out;
    }
    if (!S_ISREG(st.st_mode)) {
        shoal_err_set(err, SHOAL_EIO, "'%s' is not a regular file", path);
        goto out;
    }

    if (version)
        snprintf(url, sizeof(url), "/v1/files/%s/manifest?version=%" PRIu64,
                 id, version);
    else
        snprintf(url, sizeof(url), "/v1/files/%s/manifest", id);
    if (pr_call(ctx, "GET", url, NULL, &ans, err) < 0 ||
        pr_manifest_verify(ctx->id, id, ans,
                           shoal_client_header(ctx->client, "X-Sign"),
                           (int64_t)time(NULL), &v, err) < 0)
        goto out;
    if (version && v->version != version) {
        shoal_err_set(err, SHOAL_EPROTO, "refusing the manifest of file '%s':"
                      " it is not the version asked for", id);
        goto out;
    }
    if ((uint64_t)st.st_size != v->size) {
        shoal_err_set(err, SHOAL_EIO, "'%s' is %lld bytes, version %" PRIu64
                      " of file '%s' is %" PRIu64, path,
                      (long long)st.st_size, v->version, id, v->size);
        goto out;
    }
    if (!(dir = pr_data_dir(data_dir, err)) ||
        !(held = pr_held_open(dir, err)))
        goto out;
    progress = pr_progress_new("checking ", v->size);
    if (pr_held_import(held, v, fd, path, progress, &added, err) < 0)
        goto out;
    pr_progress_end(progress);
    if (pr_held_record(held, v, ans, err) < 0)
        goto out;

    if (ctx->json) {
        json_t *o = json_pack("{s:s, s:I, s:I, s:I, s:I, s:s}",
                              "file_id", id,
                              "version", (json_int_t)v->version,
                              "size", (json_int_t)v->size,
                              "pieces", (json_int_t)v->npieces,
                              "added", (json_int_t)added,
                              "data_dir", dir);
        if (!o) {
            shoal_err_set(err, SHOAL_EIO, "out of memory");
            goto out;
        }
        rc = pr_json_print(o, err);
        json_decref(o);
    } else {
        rc = pr_printf(err, "seeding version %" PRIu64 " of %s (%" PRIu64
                       " pieces, %" PRIu64 " new)\n", v->version, id,
                       v->npieces, added);
    }
out:
    pr_progress_free(progress);
    pr_held_close(held);
    pr_version_free(v);
    json_decref(ans);
    free(dir);
    if (fd >= 0)
        close(fd);
    return rc;
}
