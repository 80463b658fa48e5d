/*
 * cmd_get.c - shoal get ID [-o OUT] [--version N] [-j PER_SOURCE]
 *                          [--sources] [--stall SECS] [--data-dir DIR]
 *                          [--keep | --no-keep]
 *
 * 1. GET /v1/files/{id}/manifest and trust it only when its X-Sign is a
 *    valid, unexpired signature by the pinned broker key, the body says
 *    what the signature says, and the piece hashes give the signed root;
 * 2. open OUT in place (no temporary copy) at its final size; when it
 *    held something already, hash the pieces in it and keep the good ones;
 * 3. download the others from the broker and every peer that holds
 *    them (fetch.c), each piece checked against its hash before it is
 *    written; --sources then tells who served what.
 *
 * The data folder (--data-dir, as for serve) keeps, after each download,
 * the verified manifest and the holders that served it (pex.h).  When the
 * broker cannot be reached, the manifest kept there (or a seeded
 * version's record) is used, checked as in 1., and the holders are found
 * through the peers known there (protocol.md, section 12).
 *
 * When a serve runs on the data folder (serve.json), or with --keep, every
 * verified piece is also kept in the folder's store, with the version's
 * record, so that 'shoal serve' serves it (serve.h); --no-keep never
 * keeps (a second copy of the file costs disk space and time).  With a
 * serve running, the download is part of the swarm: the serve takes the
 * version in at once
 * (SIGHUP) and shares each piece as it arrives, the download announces
 * what it holds every REFRESH_SWARM seconds and takes pieces from the
 * peers that hold them meanwhile (fetch_swarm.c), never from its own
 * serve.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "fetch.h"
#include "log.h"
#include "pex.h"
#include "serve.h"
#include "transfer.h"
#include "util.h"

/* Seconds between two looks at the tracker during a download: in a
 * swarm (a serve runs on the data folder and shares what arrives), and
 * alone. */
#define REFRESH_SWARM 0.5
#define REFRESH_ALONE 5.0

/* A manifest that passed every check. */
struct manifest {
    uint64_t version;
    uint64_t size;
    uint32_t piece_size;
    uint64_t count;
    unsigned char root[SHOAL_HASH_BYTES];
    unsigned char (*hashes)[SHOAL_HASH_BYTES];     /* count of them */
    char xsign[SHOAL_XSIGN_MAX];                   /* the X-Sign checked */
    int cached;                    /* from the data folder, not the broker */
};

/* Refuse the manifest of file id with a message; always -1. */
static int refuse(struct shoal_err *err, const char *id, const char *why)
{
    return shoal_err_set(err, SHOAL_EPROTO, "refusing the manifest of file "
                         "'%s': %s", id, why);
}

/* The piece hashes of a manifest, decoded as they arrive (the answer's
 * piece_hashes never exists as JSON). */
struct hash_sink {
    const char *id;
    unsigned char (*hashes)[SHOAL_HASH_BYTES];    /* n of them, owned */
    uint64_t n;
    uint64_t cap;
};

static int hash_take(void *arg, size_t i, json_t *v, struct shoal_err *err)
{
    struct hash_sink *s = arg;
    unsigned char (*p)[SHOAL_HASH_BYTES];
    char why[64];
    uint64_t cap;

    if (i == 0)
        s->n = 0;               /* an answer starts */
    if (s->n == s->cap) {
        cap = s->cap ? 2 * s->cap : 1024;
        p = realloc(s->hashes, cap * sizeof(*p));
        if (!p)
            return shoal_err_set(err, SHOAL_EIO, "out of memory");
        s->hashes = p;
        s->cap = cap;
    }
    if (!json_is_string(v) ||
        shoal_hex_decode_exact(json_string_value(v), s->hashes[s->n],
                               SHOAL_HASH_BYTES, "hash", NULL) < 0) {
        snprintf(why, sizeof(why), "piece hash %zu is not 64 hex digits", i);
        return refuse(err, s->id, why);
    }
    s->n++;
    return 0;
}

/* The signature: X-Sign (header, else the body's x_sign) by the pinned
 * broker key over this file. */
static int check_signature(const struct pr_ctx *ctx, const char *id,
                           const json_t *ans, const char *header,
                           struct shoal_xsign *x, struct shoal_err *err)
{
    const char *body = json_string_value(json_object_get(ans, "x_sign"));
    unsigned char pk[SHOAL_PK_BYTES];
    struct shoal_err e;
    char why[SHOAL_ERR_MSG_MAX];

    if (!header)
        header = body;
    if (!header)
        return refuse(err, id, "it carries no X-Sign signature");
    if (body && strcmp(body, header) != 0)
        return refuse(err, id, "its x_sign differs from its X-Sign header");
    shoal_err_clear(&e);
    if (shoal_xsign_parse(header, x, &e) < 0) {
        snprintf(why, sizeof(why), "malformed X-Sign signature (%.150s)", e.msg);
        return refuse(err, id, why);
    }
    if (!ctx->id->broker_key[0])
        return shoal_err_set(err, SHOAL_EIO, "identity has no pinned broker "
                             "key: cannot check signatures (register again)");
    if (shoal_b64_decode_exact(ctx->id->broker_key, pk, sizeof(pk),
                               "broker_key", NULL) < 0)
        return shoal_err_set(err, SHOAL_EIO, "identity's broker_key is not "
                             "a key: cannot check signatures");
    if (ctx->id->broker_id[0] && strcasecmp(x->key, ctx->id->broker_id)) {
        snprintf(why, sizeof(why), "signature by broker '%s', not by the "
                 "pinned broker '%s'", x->key, ctx->id->broker_id);
        return refuse(err, id, why);
    }
    shoal_err_clear(&e);
    if (shoal_xsign_verify(x, id, pk, (int64_t)time(NULL), &e) < 0) {
        snprintf(why, sizeof(why), "%.150s (pinned broker key)",
                 e.msg[0] ? e.msg : "signature invalid");
        return refuse(err, id, why);
    }
    return 0;
}

/* Everything the body says must be what was signed; the piece hashes
 * (in hs, from the body's piece_hashes, taken into m) must give the
 * signed root. */
static int check_body(const char *id, const json_t *ans,
                      const struct shoal_xsign *x, struct hash_sink *hs,
                      struct manifest *m, struct shoal_err *err)
{
    unsigned char root[SHOAL_HASH_BYTES];
    const char *file_id = json_string_value(json_object_get(ans, "file_id"));
    const char *root_hex = json_string_value(json_object_get(ans, "root"));
    json_t *list = json_object_get(ans, "piece_hashes");
    json_int_t version;
    json_int_t size;
    json_int_t piece;
    json_int_t pieces;
    char why[160];

    if (shoal_json_int(ans, "version", &version, NULL) < 0 ||
        shoal_json_int(ans, "size", &size, NULL) < 0 ||
        shoal_json_int(ans, "piece_size", &piece, NULL) < 0 ||
        shoal_json_int(ans, "pieces", &pieces, NULL) < 0 ||
        !file_id || !root_hex || !json_is_array(list) ||
        json_array_size(list) != 0)     /* its elements went to hs */
        return refuse(err, id, "a field is missing or mistyped");
    if (strcasecmp(file_id, id) != 0)
        return refuse(err, id, "it is about another file");
    if (version < 1 || (uint64_t)version != x->version ||
        size < 0 || (uint64_t)size != x->size ||
        piece < 0 || (uint64_t)piece != x->piece_size)
        return refuse(err, id, "its version, size or piece size is not the "
                      "one signed");
    if (!shoal_piece_size_valid(x->piece_size))
        return refuse(err, id, "its piece size is not valid");
    if (shoal_hex_decode_exact(root_hex, root, sizeof(root), "root",
                               NULL) < 0 ||
        memcmp(root, x->root, sizeof(root)) != 0)
        return refuse(err, id, "its root is not the one signed");
    m->version = x->version;
    m->size = x->size;
    m->piece_size = x->piece_size;
    m->count = shoal_piece_count(m->size, m->piece_size);
    memcpy(m->root, x->root, sizeof(m->root));
    if (pieces < 0 || (uint64_t)pieces != m->count || hs->n != m->count) {
        snprintf(why, sizeof(why), "it lists %" PRIu64 " piece hashes, a "
                 "file of %" PRIu64 " bytes has %" PRIu64, hs->n, m->size,
                 m->count);
        return refuse(err, id, why);
    }
    m->hashes = hs->hashes ? hs->hashes : calloc(1, sizeof(*m->hashes));
    hs->hashes = NULL;
    if (!m->hashes)
        return shoal_err_set(err, SHOAL_EIO, "out of memory");
    shoal_merkle_root((const unsigned char (*)[SHOAL_HASH_BYTES])m->hashes,
                      m->count, root);
    if (memcmp(root, m->root, sizeof(root)) != 0)
        return refuse(err, id, "its piece hashes do not give its root");
    return 0;
}

/* GET the manifest of id (version 0: the latest) and check it into m. */
static int manifest_get(struct pr_ctx *ctx, const char *id, uint64_t version,
                        struct manifest *m, struct shoal_err *err)
{
    struct shoal_client_req req;
    struct hash_sink hs;
    struct shoal_xsign x;
    json_t *ans = NULL;
    char url[128];
    int rc = -1;

    if (version)
        snprintf(url, sizeof(url), "/v1/files/%s/manifest?version=%" PRIu64,
                 id, version);
    else
        snprintf(url, sizeof(url), "/v1/files/%s/manifest", id);
    memset(&hs, 0, sizeof(hs));
    hs.id = id;
    memset(&req, 0, sizeof(req));
    req.each_key = "piece_hashes";
    req.each = hash_take;
    req.each_arg = &hs;
    if (pr_call_req(ctx, "GET", url, &req, &ans, err) < 0)
        goto out;
    if (!json_is_object(ans)) {
        refuse(err, id, "it is not a JSON object");
        goto out;
    }
    const char *xsign = shoal_client_header(ctx->client, "X-Sign");
    if (!xsign)
        xsign = json_string_value(json_object_get(ans, "x_sign"));
    if (check_signature(ctx, id, ans, xsign, &x, err) < 0 ||
        check_body(id, ans, &x, &hs, m, err) < 0)
        goto out;
    if (strlen(xsign) >= sizeof(m->xsign)) {
        refuse(err, id, "its X-Sign is too long");
        goto out;
    }
    snprintf(m->xsign, sizeof(m->xsign), "%s", xsign);
    if (version && m->version != version) {
        refuse(err, id, "it is not the version asked for");
        goto out;
    }
    rc = 0;
out:
    free(hs.hashes);
    json_decref(ans);
    return rc;
}

/* 1 when a failure with code means the broker cannot answer. */
static int broker_down(enum shoal_code code)
{
    return code == SHOAL_ENET || code == SHOAL_EUNAVAILABLE ||
           code == SHOAL_EBADGATEWAY;
}

/*
 * The manifest of id from the broker; when the broker cannot answer, the
 * one kept in the data folder dir (checked again, unexpired signature).
 */
static int manifest_find(struct pr_ctx *ctx, const char *dir, const char *id,
                         uint64_t version, struct manifest *m,
                         struct shoal_err *err)
{
    struct pr_version *v = NULL;
    struct shoal_err e;

    if (manifest_get(ctx, id, version, m, err) == 0)
        return 0;
    if (!dir || !err || !broker_down(err->code))
        return -1;
    shoal_err_clear(&e);
    if (pr_manifest_cache_load(dir, ctx->id, id, version, &v, &e) < 0) {
        shoal_log(SHOAL_LOG_DEBUG, NULL, "%s", e.msg);
        return -1;
    }
    pr_warn("the broker cannot be reached (%s): using the manifest of "
            "version %" PRIu64 " kept in '%s'", err->msg, v->version, dir);
    m->version = v->version;
    m->size = v->size;
    m->piece_size = v->piece_size;
    m->count = v->npieces;
    memcpy(m->root, v->root, sizeof(m->root));
    memcpy(m->xsign, v->xsign, sizeof(m->xsign));
    m->hashes = v->hashes;
    m->cached = 1;
    v->hashes = NULL;
    pr_version_free(v);
    shoal_err_clear(err);
    return 0;
}

/* Keep what this download learnt in the data folder dir: the manifest
 * and who served it.  Failures are logged only. */
static void remember(const char *dir, const char *id, const struct manifest *m,
                     const struct pr_fetch_report *report)
{
    struct shoal_err e;

    if (!dir)
        return;
    shoal_err_clear(&e);
    if (!m->cached &&
        pr_manifest_cache_save(dir, id, m->version, m->size, m->piece_size,
                               (const unsigned char (*)[SHOAL_HASH_BYTES])
                                   m->hashes,
                               m->count, m->root, m->xsign, &e) < 0)
        shoal_log(SHOAL_LOG_DEBUG, NULL, "cannot keep the manifest of file "
                  "'%s': %s", id, e.msg);
    if (report)
        pr_holders_record(dir, id, m->version, m->count, report->sources,
                          report->n);
}

/* Keep the pieces of m in the data folder dir, to serve them: its store,
 * and the record of the version (serve.h) written now, so that a serve
 * running on dir shares the pieces as they arrive.  NULL (a warning) when
 * the folder cannot be used. */
static struct pr_held *keep_open(const char *dir, const char *id,
                                 const struct manifest *m)
{
    struct pr_version v;
    struct pr_held *h;
    struct shoal_err e;
    json_t *doc;

    shoal_err_clear(&e);
    if (!(h = pr_held_open(dir, &e))) {
        pr_warn("not keeping the pieces to serve them: %s", e.msg);
        return NULL;
    }
    memset(&v, 0, sizeof(v));
    snprintf(v.file_id, sizeof(v.file_id), "%s", id);
    v.version = m->version;
    v.npieces = m->count;
    doc = pr_manifest_doc(id, m->version, m->size, m->piece_size,
                          (const unsigned char (*)[SHOAL_HASH_BYTES])m->hashes,
                          m->count, m->root, m->xsign);
    if (!doc || pr_held_record_kept(h, &v, doc, &e) < 0) {  /* a cache */
        pr_warn("not keeping the pieces to serve them: %s",
                doc ? e.msg : "out of memory");
        pr_held_close(h);
        h = NULL;
    }
    json_decref(doc);
    return h;
}

/* OUT when -o is not given: the file's name, in the current folder.
 * New string (free()). */
static char *default_out(struct pr_ctx *ctx, const char *id,
                         struct shoal_err *err)
{
    json_t *file = NULL;
    const char *name;
    char url[64];
    char *out = NULL;

    snprintf(url, sizeof(url), "/v1/files/%s", id);
    if (pr_call(ctx, "GET", url, NULL, &file, err) < 0)
        return NULL;
    if (shoal_json_str(file, "name", &name, err) < 0) {
        pr_err_answer(err, "GET /v1/files/{id}");
    } else if (!*name || strchr(name, '/') || strcmp(name, ".") == 0 ||
               strcmp(name, "..") == 0) {
        shoal_err_set(err, SHOAL_EPROTO, "file name '%s' is not a safe local "
                      "name: give -o OUT", name);
    } else if (!(out = strdup(name))) {
        shoal_err_set(err, SHOAL_EIO, "out of memory");
    }
    json_decref(file);
    return out;
}

/*
 * Open OUT at m->size.  When it held something already, hash the pieces
 * that lie within what it held and list only the bad or missing ones in
 * *todo; otherwise every piece.  *reused gets how many were good.
 */
static int out_open(const char *path, const struct manifest *m,
                    struct pr_progress *progress, int *fdp, uint64_t **todo,
                    uint64_t *n, struct shoal_err *err)
{
    unsigned char (*have)[SHOAL_HASH_BYTES] = NULL;
    struct stat st;
    uint64_t held = 0;          /* bytes of OUT that may be reused */
    uint64_t nhave = 0;
    uint64_t i;
    int fd;

    *n = 0;
    *todo = calloc(m->count ? m->count : 1, sizeof(**todo));
    if (!*todo)
        return shoal_err_set(err, SHOAL_EIO, "out of memory");
    fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0666);
    if (fd < 0 || fstat(fd, &st) < 0) {
        shoal_err_set(err, SHOAL_EIO, "cannot open '%s': %s", path,
                      strerror(errno));
        if (fd >= 0)
            close(fd);
        goto fail;
    }
    *fdp = fd;
    if (S_ISREG(st.st_mode)) {
        held = (uint64_t)st.st_size < m->size ? (uint64_t)st.st_size :
               m->size;
        if ((uint64_t)st.st_size != m->size &&
            ftruncate(fd, (off_t)m->size) < 0) {
            shoal_err_set(err, SHOAL_EIO, "cannot size '%s': %s", path,
                          strerror(errno));
            goto fail;
        }
    }
    if (held > 0) {
        /* the last piece within held may be cut short: it then fails */
        nhave = shoal_piece_count(held, m->piece_size);
        have = calloc(nhave, sizeof(*have));
        if (!have) {
            shoal_err_set(err, SHOAL_EIO, "out of memory");
            goto fail;
        }
        pr_progress_phase(progress, "checking ", held);
        if (pr_hash_file(fd, held, m->piece_size, have, progress, err) < 0)
            goto fail;
        pr_progress_end(progress);
    }
    for (i = 0; i < m->count; i++)
        if (i >= nhave || memcmp(have[i], m->hashes[i], SHOAL_HASH_BYTES))
            (*todo)[(*n)++] = i;
    free(have);
    return 0;
fail:
    free(have);
    free(*todo);
    *todo = NULL;
    return -1;
}

/* The --stall value: seconds, more than 0 and at most an hour. */
static int stall_parse(const char *s, double *out, struct shoal_err *err)
{
    char *end;
    double v;

    errno = 0;
    v = strtod(s, &end);
    if (errno || end == s || *end || !(v > 0.0) || v > 3600.0)
        return pr_usage_err(err, "stall '%s' must be seconds, more than 0 "
                            "and at most 3600", s);
    *out = v;
    return 0;
}

/* The answer of get, with the sources when asked.  New reference. */
static json_t *get_json(const char *id, const struct pr_fetch *f,
                        const char *out, uint64_t bytes, uint64_t fetched,
                        uint64_t count, const struct pr_fetch_report *report,
                        int show_sources)
{
    json_t *v = json_pack("{s:s, s:I, s:I, s:o, s:I, s:I, s:I}",
                          "file_id", id,
                          "version", (json_int_t)f->version,
                          "size", (json_int_t)f->size,
                          "path", shoal_json_string_lossy(out),
                          "downloaded", (json_int_t)bytes,
                          "fetched", (json_int_t)fetched,
                          "reused", (json_int_t)(count - fetched));

    if (v && show_sources &&
        json_object_set_new(v, "sources",
                            pr_fetch_report_json(report)) < 0) {
        json_decref(v);
        v = NULL;
    }
    return v;
}

int pr_cmd_get(struct pr_ctx *ctx, int argc, char **argv,
               struct shoal_err *err)
{
    const char *out_arg = NULL;
    const char *out_long = NULL;
    const char *version_arg = NULL;
    const char *jobs = NULL;
    const char *jobs_long = NULL;
    const char *stall_arg = NULL;
    const char *data_arg = NULL;
    int show_sources = 0;
    int no_keep = 0;
    int keep = 0;
    const struct pr_opt opts[] = {
        { "o", &out_arg, NULL },
        { "output", &out_long, NULL },
        { "version", &version_arg, NULL },
        { "j", &jobs, NULL },
        { "jobs", &jobs_long, NULL },
        { "sources", NULL, &show_sources },
        { "stall", &stall_arg, NULL },
        { "data-dir", &data_arg, NULL },
        { "no-keep", NULL, &no_keep },
        { "keep", NULL, &keep },
        { NULL, NULL, NULL },
    };
    struct pr_progress *progress = NULL;
    struct pr_fetch_report *report = NULL;
    struct pr_held *held = NULL;
    char serve_url[PR_URL_MAX];
    long serve_pid = 0;
    struct manifest m;
    struct pr_fetch f;
    uint64_t *todo = NULL;
    uint64_t ntodo = 0;
    uint64_t version = 0;
    uint64_t bytes = 0;
    uint64_t i;
    char *out = NULL;
    char *dir = NULL;
    char id[37];
    int njobs = PR_JOBS_DEFAULT;
    double stall = PR_FETCH_STALL_DEFAULT;
    int fd = -1;
    int n;
    int rc = -1;

    memset(&m, 0, sizeof(m));
    n = pr_opts_parse(opts, argc, argv, err);
    if (n < 0)
        return n;
    if (n < 1)
        return pr_usage_err(err, "'get' needs a file ID");
    if (n > 1)
        return pr_usage_err(err, "unexpected argument '%s'", argv[2]);
    if (shoal_uuid_normalize(argv[1], id, "ID", NULL) < 0)
        return pr_usage_err(err, "file ID '%s' is not a UUID", argv[1]);
    if (out_long)
        out_arg = out_long;
    if (out_arg && !*out_arg)
        return pr_usage_err(err, "option '-o' is empty");
    if (jobs_long)
        jobs = jobs_long;
    if (jobs && pr_jobs_parse(jobs, &njobs, err) < 0)
        return PR_USAGE;
    if (stall_arg && stall_parse(stall_arg, &stall, err) < 0)
        return PR_USAGE;
    if (version_arg) {
        char *end;

        errno = 0;
        version = strtoull(version_arg, &end, 10);
        if (errno || end == version_arg || *end || version < 1 ||
            *version_arg == '-' || version > INT32_MAX)
            return pr_usage_err(err, "version '%s' must be a positive "
                                "number", version_arg);
    }

    if (data_arg && !*data_arg)
        return pr_usage_err(err, "option '--data-dir' is empty");
    if (keep && no_keep)
        return pr_usage_err(err, "--keep and --no-keep exclude each other");
    {
        struct shoal_err e;
        shoal_err_clear(&e);
        if (!(dir = pr_data_dir(data_arg, &e)))
            shoal_log(SHOAL_LOG_DEBUG, NULL, "no data folder: %s", e.msg);
    }

    if (manifest_find(ctx, dir, id, version, &m, err) < 0)
        goto out;
    out = out_arg ? strdup(out_arg) : default_out(ctx, id, err);
    if (!out) {
        if (out_arg)
            shoal_err_set(err, SHOAL_EIO, "out of memory");
        goto out;
    }
    progress = pr_progress_new("checking ", m.size);
    if (out_open(out, &m, progress, &fd, &todo, &ntodo, err) < 0)
        goto out;
    for (i = 0; i < ntodo; i++)
        bytes += shoal_piece_len(m.size, m.piece_size, todo[i]);

    memset(&f, 0, sizeof(f));
    f.ctx = ctx;
    f.file_id = id;
    f.version = m.version;
    f.size = m.size;
    f.piece_size = m.piece_size;
    f.fd = fd;
    f.local = out;
    f.hashes = (const unsigned char (*)[SHOAL_HASH_BYTES])m.hashes;
    f.jobs = njobs;
    f.stall = stall;
    f.progress = progress;
    f.data_dir = dir;
    f.refresh = REFRESH_ALONE;
    if (dir && !no_keep && pr_serve_running(dir, serve_url, &serve_pid) != 1)
        serve_pid = 0;
    if (dir && (keep || serve_pid > 0) && (held = keep_open(dir, id, &m))) {
        f.keep = pr_held_store(held);
        if (serve_pid > 0) {
            /* its serve shares what arrives, and is not a source */
            f.self_url = f.announce_url = serve_url;
            f.refresh = REFRESH_SWARM;
            kill((pid_t)serve_pid, SIGHUP);  /* take the version in now */
        }
    }
    pr_progress_phase(progress, "downloading", bytes);
    rc = pr_fetch_run(&f, todo, ntodo, &report, err);
    pr_progress_end(progress);
    if (serve_pid > 0 && pr_serve_running(dir, serve_url, &serve_pid) == 1)
        kill((pid_t)serve_pid, SIGHUP);      /* announce what it holds now */
    if (show_sources)
        pr_fetch_report_print(report, stderr);
    if (rc < 0)
        goto out;
    rc = close(fd);
    fd = -1;
    if (rc < 0) {
        shoal_err_set(err, SHOAL_EIO, "cannot write '%s': %s", out,
                      strerror(errno));
        goto out;
    }
    remember(dir, id, &m, report);

    if (ctx->json) {
        json_t *v = get_json(id, &f, out, bytes, ntodo, m.count, report,
                             show_sources);
        if (!v) {
            shoal_err_set(err, SHOAL_EIO, "out of memory");
            rc = -1;
            goto out;
        }
        rc = pr_json_print(v, err);
        json_decref(v);
    } else {
        rc = pr_printf(err, "%s\n", out);
    }
out:
    pr_fetch_report_free(report);
    pr_held_close(held);
    pr_progress_free(progress);
    if (fd >= 0)
        close(fd);
    free(todo);
    free(out);
    free(dir);
    free(m.hashes);
    return rc;
}
