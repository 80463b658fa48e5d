/*
 * cmd_put.c - shoal put FILE [--share NAME|ID] [--path P] [--name N]
 * [--piece-size N] [-j CONNECTIONS]
 *
 * 1. find the share (the caller's "default" one, made on first use) and a
 *    live file at (share, path, name) in it;
 * 2. hash FILE once, piece by piece, on every core (pread, no whole-file
 *    buffer), and compute the Merkle root;
 * 3. POST /v1/files for a new file, PUT /v1/files/{id} for a new version
 *    when the root differs, nothing when it is the same (the body is
 *    written from the binary hashes as it is sent: no JSON copy of the
 *    list);
 * 4. GET /have and upload the pieces the broker lacks over N parallel
 *    keep-alive connections (transfer.c).  Running put again resumes.
 *
 * The broker needs every piece hash before it takes a piece (the file is
 * created with them), so the hashing pass runs first, spread over the
 * cores; uploading then reads the file a second time.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "transfer.h"
#include "util.h"

#define SIZE_MAX_JSON (UINT64_C(1) << 53)    /* the broker's size limit */

/*
 * The piece hashes travel in one JSON body (67 bytes a piece) and brokers
 * take at most 32 MiB on /v1/files: without --piece-size, a file that
 * would have more pieces than this gets larger pieces (1 MiB from
 * 128 GiB, 2 MiB from 256 GiB, ...), which keeps the body near 17 MiB.
 */
#define AUTO_PIECES_MAX 262144

/* "524288", "512K", "512KiB", "1M", "16MiB" into *out (a valid piece
 * size).  PR_USAGE otherwise. */
static int piece_size_parse(const char *s, uint32_t *out,
                            struct shoal_err *err)
{
    unsigned long long v;
    char *end;

    errno = 0;
    v = strtoull(s, &end, 10);
    if (errno || end == s || *s == '-')
        goto bad;
    if (*end == 'K' || *end == 'k') {
        v *= 1024;
        end++;
    } else if (*end == 'M' || *end == 'm') {
        v *= 1024 * 1024;
        end++;
    }
    if (strcmp(end, "iB") == 0 || strcmp(end, "B") == 0)
        end += strlen(end);
    if (*end || !shoal_piece_size_valid(v))
        goto bad;
    *out = (uint32_t)v;
    return 0;
bad:
    return pr_usage_err(err, "piece size '%s' must be a power of two from "
                        "16K to 16M", s);
}

/* The live file at (path, name) in the share: *file new reference or
 * NULL. */
static int file_lookup(struct pr_ctx *ctx, const char *share_id,
                       const char *path, const char *name, json_t **file,
                       struct shoal_err *err)
{
    json_t *ans = NULL;
    json_t *files;
    json_t *v;
    char url[80];
    size_t i;

    *file = NULL;
    snprintf(url, sizeof(url), "/v1/files?share=%s", share_id);
    if (pr_call_array(ctx, "GET", url, NULL, "files", "GET /v1/files", &ans,
                      &files, err) < 0)
        return -1;
    json_array_foreach(files, i, v) {
        const char *p = json_string_value(json_object_get(v, "path"));
        const char *n = json_string_value(json_object_get(v, "name"));

        if (p && n && strcmp(p, path) == 0 && strcmp(n, name) == 0) {
            *file = json_incref(v);
            break;
        }
    }
    json_decref(ans);
    return 0;
}

/* The fields put needs from a file object.  -1 with SHOAL_EPROTO. */
static int file_fields(const json_t *file, const char *what, char id[37],
                       uint64_t *version, uint64_t *size, uint32_t *piece,
                       const char **root, struct shoal_err *err)
{
    json_int_t v;
    json_int_t s;
    json_int_t p;

    if (shoal_json_uuid(file, "file_id", id, err) < 0 ||
        shoal_json_int(file, "version", &v, err) < 0 ||
        shoal_json_int(file, "size", &s, err) < 0 ||
        shoal_json_int(file, "piece_size", &p, err) < 0 ||
        shoal_json_str(file, "root", root, err) < 0)
        return pr_err_answer(err, what);
    if (v < 1 || s < 0 || !shoal_piece_size_valid((uint64_t)p)) {
        shoal_err_set(err, SHOAL_EPROTO, "bad version, size or piece_size");
        return pr_err_answer(err, what);
    }
    *version = (uint64_t)v;
    *size = (uint64_t)s;
    *piece = (uint32_t)p;
    return 0;
}

/* The pieces of version the broker lacks, into *todo (new, free()) and
 * *n.  *held gets how many it holds. */
static int missing_pieces(struct pr_ctx *ctx, const char *id,
                          uint64_t version, uint64_t count, uint64_t **todo,
                          uint64_t *n, uint64_t *held, struct shoal_err *err)
{
    json_t *ans = NULL;
    json_int_t pieces;
    const char *have;
    unsigned char *bits = NULL;
    size_t nbytes = (size_t)((count + 7) / 8);
    char url[128];
    uint64_t i;
    int rc = -1;

    *todo = NULL;
    *n = 0;
    *held = 0;
    snprintf(url, sizeof(url), "/v1/files/%s/have?version=%" PRIu64, id,
             version);
    if (pr_call(ctx, "GET", url, NULL, &ans, err) < 0)
        return -1;
    if (shoal_json_int(ans, "pieces", &pieces, err) < 0 ||
        shoal_json_str(ans, "have", &have, err) < 0) {
        pr_err_answer(err, "GET /v1/files/{id}/have");
        goto out;
    }
    if ((uint64_t)pieces != count) {
        shoal_err_set(err, SHOAL_EPROTO, "broker counts %lld pieces, not %"
                      PRIu64, (long long)pieces, count);
        goto out;
    }
    bits = calloc(nbytes ? nbytes : 1, 1);
    *todo = calloc(count ? count : 1, sizeof(**todo));
    if (!bits || !*todo) {
        shoal_err_set(err, SHOAL_EIO, "out of memory");
        goto out;
    }
    if (nbytes && shoal_b64_decode_exact(have, bits, nbytes, "have",
                                         err) < 0) {
        pr_err_answer(err, "GET /v1/files/{id}/have");
        goto out;
    }
    for (i = 0; i < count; i++) {
        if (bits[i / 8] & (0x80 >> (i % 8)))
            (*held)++;
        else
            (*todo)[(*n)++] = i;
    }
    rc = 0;
out:
    if (rc < 0) {
        free(*todo);
        *todo = NULL;
    }
    free(bits);
    json_decref(ans);
    return rc;
}

/*
 * The body of POST /v1/files or PUT /v1/files/{id}, made as it is sent
 * (shoal_client_read_fn): the fields of a small object, then
 * "piece_hashes" written from the hashes, so that the list is never
 * held as JSON.
 */
#define HASH_ITEM (2 * SHOAL_HASH_BYTES + 3)     /* "<hex>", */

struct hash_body {
    char *head;            /* {<fields>,"piece_hashes":[ */
    size_t head_len;
    const unsigned char (*hashes)[SHOAL_HASH_BYTES];
    uint64_t items;        /* bytes of the list (no ',' after the last) */
    uint64_t len;          /* of the whole body, "]}" included */
};

/* b for fields (borrowed) and count hashes (borrowed until
 * hash_body_free).  -1 on ENOMEM. */
static int hash_body_init(struct hash_body *b, const json_t *fields,
                          const unsigned char (*hashes)[SHOAL_HASH_BYTES],
                          uint64_t count, struct shoal_err *err)
{
    static const char list[] = ",\"piece_hashes\":[";
    char *text = shoal_json_dump(fields);
    size_t n = text ? strlen(text) : 0;
    char *p;

    memset(b, 0, sizeof(*b));
    if (!text || n < 2 || text[n - 1] != '}' ||
        !(p = realloc(text, n - 1 + sizeof(list)))) {
        free(text);
        return shoal_err_set(err, SHOAL_EIO, "out of memory");
    }
    memcpy(p + n - 1, list, sizeof(list));      /* in place of the '}' */
    b->head = p;
    b->head_len = n - 1 + sizeof(list) - 1;
    b->hashes = hashes;
    b->items = count ? count * HASH_ITEM - 1 : 0;
    b->len = b->head_len + b->items + 2;
    return 0;
}

static void hash_body_free(struct hash_body *b)
{
    free(b->head);
    b->head = NULL;
}

static int hash_body_read(void *arg, uint64_t off, char *buf, size_t size)
{
    const struct hash_body *b = arg;
    char item[HASH_ITEM];           /* the hex's NUL goes where '"' will */
    const char *from;
    uint64_t at;
    uint64_t n;

    while (size > 0) {
        if (off < b->head_len) {
            from = b->head + off;
            n = b->head_len - off;
        } else if ((at = off - b->head_len) < b->items) {
            item[0] = '"';
            shoal_hex_encode(b->hashes[at / HASH_ITEM], SHOAL_HASH_BYTES,
                             item + 1);
            item[HASH_ITEM - 2] = '"';
            item[HASH_ITEM - 1] = ',';
            from = item + at % HASH_ITEM;
            n = HASH_ITEM - at % HASH_ITEM;
            if (n > b->items - at)
                n = b->items - at;      /* the last has no ',' */
        } else if ((at -= b->items) < 2) {
            from = "]}" + at;
            n = 2 - at;
        } else {
            return -1;                  /* past the end */
        }
        if (n > size)
            n = size;
        memcpy(buf, from, (size_t)n);
        buf += n;
        off += n;
        size -= (size_t)n;
    }
    return 0;
}

/* The piece size of a new file when none is given. */
static uint32_t auto_piece_size(uint64_t size)
{
    uint32_t p = SHOAL_PIECE_DEFAULT;

    while (p < SHOAL_PIECE_MAX &&
           shoal_piece_count(size, p) > AUTO_PIECES_MAX)
        p *= 2;
    return p;
}

struct put_args {
    const char *file;
    const char *share;
    const char *path;
    const char *name;
    uint32_t piece_size;         /* 0: not given */
    int jobs;
};

static int put_args_parse(int argc, char **argv, struct put_args *a,
                          struct shoal_err *err)
{
    const char *piece = NULL;
    const char *jobs = NULL;
    const char *jobs_long = NULL;
    const struct pr_opt opts[] = {
        { "share", &a->share, NULL },
        { "path", &a->path, NULL },
        { "name", &a->name, NULL },
        { "piece-size", &piece, NULL },
        { "j", &jobs, NULL },
        { "jobs", &jobs_long, NULL },
        { NULL, NULL, NULL },
    };
    int n;

    n = pr_opts_parse(opts, argc, argv, err);
    if (n < 0)
        return n;
    if (n < 1)
        return pr_usage_err(err, "'put' needs a FILE");
    if (n > 1)
        return pr_usage_err(err, "unexpected argument '%s'", argv[2]);
    a->file = argv[1];
    if (!a->path)
        a->path = "";
    if (piece && piece_size_parse(piece, &a->piece_size, err) < 0)
        return PR_USAGE;
    a->jobs = PR_JOBS_DEFAULT;
    if (jobs_long)
        jobs = jobs_long;
    if (jobs && pr_jobs_parse(jobs, &a->jobs, err) < 0)
        return PR_USAGE;
    if (a->share && !*a->share)
        return pr_usage_err(err, "option '--share' is empty");
    return 0;
}

int pr_cmd_put(struct pr_ctx *ctx, int argc, char **argv,
               struct shoal_err *err)
{
    struct put_args a;
    struct pr_progress *progress = NULL;
    struct pr_xfer x;
    struct stat st;
    json_t *old = NULL;
    json_t *file = NULL;
    json_t *body = NULL;
    json_t *jname = NULL;
    unsigned char (*hashes)[SHOAL_HASH_BYTES] = NULL;
    unsigned char root[SHOAL_HASH_BYTES];
    char root_hex[2 * SHOAL_HASH_BYTES + 1];
    char share_id[37];
    char id[37];
    char url[80];
    char *base = NULL;
    const char *action;
    const char *froot;
    uint64_t *todo = NULL;
    uint64_t ntodo = 0;
    uint64_t held = 0;
    uint64_t size;
    uint64_t count;
    uint64_t fversion;
    uint64_t fsize;
    uint64_t bytes = 0;
    uint64_t i;
    uint32_t fpiece;
    int fd = -1;
    int rc;

    memset(&a, 0, sizeof(a));
    rc = put_args_parse(argc, argv, &a, err);
    if (rc < 0)
        return rc;
    rc = -1;
    fd = open(a.file, O_RDONLY | O_CLOEXEC);
    if (fd < 0 || fstat(fd, &st) < 0) {
        shoal_err_set(err, SHOAL_EIO, "cannot open '%s': %s", a.file,
                      strerror(errno));
        goto out;
    }
    if (!S_ISREG(st.st_mode)) {
        shoal_err_set(err, SHOAL_EIO, "'%s' is not a regular file", a.file);
        goto out;
    }
    size = (uint64_t)st.st_size;
    if (size > SIZE_MAX_JSON) {
        shoal_err_set(err, SHOAL_EIO, "'%s' is larger than 2^53 bytes",
                      a.file);
        goto out;
    }
    if (!a.name) {
        base = strdup(a.file);
        if (!base) {
            shoal_err_set(err, SHOAL_EIO, "out of memory");
            goto out;
        }
        a.name = basename(base);
    }
    /* a name that is not UTF-8 is sent (and so looked up) with '?' for
     * the bytes that are not ASCII */
    jname = shoal_json_string_lossy(a.name);
    if (!jname) {
        shoal_err_set(err, SHOAL_EIO, "out of memory");
        goto out;
    }
    a.name = json_string_value(jname);

    /* where it goes, and what is there already */
    if (pr_share_find(ctx, a.share, 1, NULL, share_id, err) < 0)
        goto out;
    if (file_lookup(ctx, share_id, a.path, a.name, &old, err) < 0)
        goto out;
    if (old && file_fields(old, "GET /v1/files", id, &fversion, &fsize,
                           &fpiece, &froot, err) < 0)
        goto out;
    if (!a.piece_size)
        a.piece_size = old ? fpiece : auto_piece_size(size);

    /* hash it */
    count = shoal_piece_count(size, a.piece_size);
    hashes = calloc(count ? count : 1, sizeof(*hashes));
    progress = pr_progress_new("hashing  ", size);
    if (!hashes) {
        shoal_err_set(err, SHOAL_EIO, "out of memory");
        goto out;
    }
    if (pr_hash_file(fd, size, a.piece_size, hashes, progress, err) < 0) {
        char msg[SHOAL_ERR_MSG_MAX];

        memcpy(msg, err->msg, sizeof(msg));
        shoal_err_set(err, SHOAL_EIO, "'%s': %s", a.file, msg);
        goto out;
    }
    pr_progress_end(progress);
    shoal_merkle_root((const unsigned char (*)[SHOAL_HASH_BYTES])hashes,
                      count, root);
    shoal_hex_encode(root, sizeof(root), root_hex);

    /* the file, or its new version */
    if (old && strcmp(froot, root_hex) == 0 && fsize == size &&
        fpiece == a.piece_size) {
        action = "unchanged";
        file = json_incref(old);
    } else {
        struct shoal_client_req req;
        struct hash_body hb;

        body = json_pack("{s:I, s:i}", "size", (json_int_t)size,
                         "piece_size", (int)a.piece_size);
        if (!body || (!old &&
            (json_object_set_new(body, "share_id",
                                 json_string(share_id)) < 0 ||
             json_object_set_new(body, "path", json_string(a.path)) < 0 ||
             json_object_set(body, "name", jname) < 0))) {
            shoal_err_set(err, SHOAL_EIO, "out of memory");
            goto out;
        }
        if (hash_body_init(&hb, body, (const unsigned char (*)[32])hashes,
                           count, err) < 0)
            goto out;
        memset(&req, 0, sizeof(req));
        req.read = hash_body_read;
        req.read_arg = &hb;
        req.len = hb.len;
        if (old) {
            action = "updated";
            snprintf(url, sizeof(url), "/v1/files/%s", id);
            rc = pr_call_req(ctx, "PUT", url, &req, &file, err);
        } else {
            action = "created";
            rc = pr_call_req(ctx, "POST", "/v1/files", &req, &file, err);
        }
        hash_body_free(&hb);
        json_decref(body);
        body = NULL;
        if (rc < 0 && err->code == SHOAL_ETOOLARGE) {
            char msg[SHOAL_ERR_MSG_MAX];

            memcpy(msg, err->msg, sizeof(msg));
            shoal_err_set(err, SHOAL_ETOOLARGE, "%" PRIu64 " piece hashes "
                          "are too many for the broker (%.150s): give a "
                          "larger --piece-size", count, msg);
        }
        if (rc < 0)
            goto out;
        rc = -1;
    }
    if (file_fields(file, old ? "PUT /v1/files/{id}" : "POST /v1/files", id,
                    &fversion, &fsize, &fpiece, &froot, err) < 0)
        goto out;
    if (strcmp(froot, root_hex) != 0 || fsize != size ||
        fpiece != a.piece_size) {
        shoal_err_set(err, SHOAL_EPROTO, "broker recorded another root, size "
                      "or piece size for file '%s' than was sent", id);
        goto out;
    }

    /* the pieces it lacks */
    if (missing_pieces(ctx, id, fversion, count, &todo, &ntodo, &held,
                       err) < 0)
        goto out;
    for (i = 0; i < ntodo; i++)
        bytes += shoal_piece_len(size, a.piece_size, todo[i]);
    memset(&x, 0, sizeof(x));
    x.ctx = ctx;
    x.file_id = id;
    x.version = fversion;
    x.size = size;
    x.piece_size = a.piece_size;
    x.fd = fd;
    x.local = a.file;
    x.jobs = a.jobs;
    x.progress = progress;
    pr_progress_phase(progress, "uploading", bytes);
    if (pr_xfer_upload(&x, todo, ntodo, err) < 0)
        goto out;
    pr_progress_end(progress);

    if (ntodo > 0) {
        uint64_t n2;
        uint64_t held2;

        free(todo);
        todo = NULL;
        if (missing_pieces(ctx, id, fversion, count, &todo, &n2, &held2,
                           err) < 0)
            goto out;
        if (n2 > 0) {
            shoal_err_set(err, SHOAL_EINCOMPLETE, "broker still lacks %"
                          PRIu64 " pieces of file '%s': run put again", n2,
                          id);
            goto out;
        }
    }

    if (ctx->json) {
        json_t *out = json_deep_copy(file);

        if (!out || json_object_set_new(out, "action",
                                        json_string(action)) < 0 ||
            json_object_set_new(out, "uploaded",
                                json_integer((json_int_t)ntodo)) < 0 ||
            json_object_set_new(out, "skipped",
                                json_integer((json_int_t)held)) < 0 ||
            json_object_set_new(out, "bytes_uploaded",
                                json_integer((json_int_t)bytes)) < 0) {
            json_decref(out);
            shoal_err_set(err, SHOAL_EIO, "out of memory");
            goto out;
        }
        rc = pr_json_print(out, err);
        json_decref(out);
    } else {
        rc = pr_printf(err, "%s\n", id);
    }
out:
    pr_progress_free(progress);
    if (fd >= 0)
        close(fd);
    free(todo);
    free(hashes);
    free(base);
    json_decref(body);
    json_decref(jname);
    json_decref(file);
    json_decref(old);
    return rc;
}
