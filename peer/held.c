/*
 * held.c - what a peer holds to serve: verified manifests and their
 * pieces under the data folder (layout in serve.h), and the parsing of
 * sizes and durations its options take.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "serve.h"
#include "util.h"

/* Largest manifest record read back: 32 MiB of JSON is about 480 000
 * piece hashes, the most a broker accepts in one version. */
#define RECORD_MAX (48u << 20)

struct pr_held {
    char *dir;
    struct shoal_store *store;
};

void pr_version_free(struct pr_version *v)
{
    if (!v)
        return;
    free(v->hashes);
    free(v->url);
    free(v);
}

/* Refuse the manifest of file id with a message; always -1. */
static int refuse(struct shoal_err *err, const char *id, const char *why)
{
    return shoal_err_set(err, SHOAL_EPROTO, "refusing the manifest of file "
                         "'%s': %s", id, why);
}

/* The signature x (parsed from xsign) by the pinned broker key of id. */
static int check_signature(const struct pr_identity *id, const char *file_id,
                           const char *xsign, int64_t now,
                           struct shoal_xsign *x, struct shoal_err *err)
{
    unsigned char pk[SHOAL_PK_BYTES];
    struct shoal_err e;
    char why[SHOAL_ERR_MSG_MAX];

    shoal_err_clear(&e);
    if (shoal_xsign_parse(xsign, x, &e) < 0) {
        snprintf(why, sizeof(why), "malformed X-Sign signature (%.150s)", e.msg);
        return refuse(err, file_id, why);
    }
    if (!id->broker_key[0])
        return shoal_err_set(err, SHOAL_EIO, "identity has no pinned broker "
                             "key: cannot check signatures (register again)");
    if (shoal_b64_decode_exact(id->broker_key, pk, sizeof(pk), "broker_key",
                               NULL) < 0)
        return shoal_err_set(err, SHOAL_EIO, "identity's broker_key is not "
                             "a key: cannot check signatures");
    if (id->broker_id[0] && strcasecmp(x->key, id->broker_id)) {
        snprintf(why, sizeof(why), "signature by broker '%s', not by the "
                 "pinned broker '%s'", x->key, id->broker_id);
        return refuse(err, file_id, why);
    }
    shoal_err_clear(&e);
    if (shoal_xsign_verify(x, file_id, pk, now > 0 ? now : INT64_MIN, &e) < 0) {
        snprintf(why, sizeof(why), "%.150s (pinned broker key)",
                 e.msg[0] ? e.msg : "signature invalid");
        return refuse(err, file_id, why);
    }
    return 0;
}

/* The body of ans must say what x signed; its piece hashes must give the
 * signed root.  Fills v. */
static int check_body(const char *file_id, const json_t *ans,
                      const struct shoal_xsign *x, struct pr_version *v,
                      struct shoal_err *err)
{
    const char *fid = json_string_value(json_object_get(ans, "file_id"));
    const char *root_hex = json_string_value(json_object_get(ans, "root"));
    json_t *list = json_object_get(ans, "piece_hashes");
    unsigned char root[SHOAL_HASH_BYTES];
    json_int_t version, size, piece, pieces;
    char why[160];

    if (shoal_json_int(ans, "version", &version, NULL) < 0 ||
        shoal_json_int(ans, "size", &size, NULL) < 0 ||
        shoal_json_int(ans, "piece_size", &piece, NULL) < 0 ||
        shoal_json_int(ans, "pieces", &pieces, NULL) < 0 ||
        !fid || !root_hex || !json_is_array(list))
        return refuse(err, file_id, "a field is missing or mistyped");
    if (strcasecmp(fid, file_id) != 0)
        return refuse(err, file_id, "it is about another file");
    if (version < 1 || (uint64_t)version != x->version ||
        size < 0 || (uint64_t)size != x->size ||
        piece < 0 || (uint64_t)piece != x->piece_size)
        return refuse(err, file_id, "its version, size or piece size is not "
                      "the one signed");
    if (!shoal_piece_size_valid(x->piece_size))
        return refuse(err, file_id, "its piece size is not valid");
    if (shoal_hex_decode_exact(root_hex, root, sizeof(root), "root", NULL) < 0 ||
        memcmp(root, x->root, sizeof(root)) != 0)
        return refuse(err, file_id, "its root is not the one signed");
    v->version = x->version;
    v->size = x->size;
    v->piece_size = x->piece_size;
    v->npieces = shoal_piece_count(v->size, v->piece_size);
    memcpy(v->root, x->root, sizeof(v->root));
    v->expires = x->expires;
    if (pieces < 0 || (uint64_t)pieces != v->npieces ||
        json_array_size(list) != v->npieces) {
        snprintf(why, sizeof(why), "it lists %zu piece hashes, a file of "
                 "%" PRIu64 " bytes has %" PRIu64, json_array_size(list),
                 v->size, v->npieces);
        return refuse(err, file_id, why);
    }
    v->hashes = calloc(v->npieces ? v->npieces : 1, sizeof(*v->hashes));
    if (!v->hashes)
        return shoal_err_set(err, SHOAL_EIO, "out of memory");
    for (uint64_t i = 0; i < v->npieces; i++) {
        const char *h = json_string_value(json_array_get(list, (size_t)i));
        if (!h || shoal_hex_decode_exact(h, v->hashes[i], SHOAL_HASH_BYTES,
                                         "hash", NULL) < 0) {
            snprintf(why, sizeof(why), "piece hash %" PRIu64 " is not 64 hex "
                     "digits", i);
            return refuse(err, file_id, why);
        }
    }
    shoal_merkle_root((const unsigned char (*)[SHOAL_HASH_BYTES])v->hashes,
                      v->npieces, root);
    if (memcmp(root, v->root, sizeof(root)) != 0)
        return refuse(err, file_id, "its piece hashes do not give its root");
    return 0;
}

int pr_manifest_verify(const struct pr_identity *id, const char *file_id,
                       const json_t *ans, const char *xsign, int64_t now,
                       struct pr_version **out, struct shoal_err *err)
{
    const char *body = json_string_value(json_object_get(ans, "x_sign"));
    struct shoal_xsign x;
    struct pr_version *v;

    *out = NULL;
    if (!json_is_object(ans))
        return refuse(err, file_id, "it is not a JSON object");
    if (!xsign)
        xsign = body;
    if (!xsign)
        return refuse(err, file_id, "it carries no X-Sign signature");
    if (body && strcmp(body, xsign) != 0)
        return refuse(err, file_id, "its x_sign differs from its X-Sign header");
    if (strlen(xsign) >= SHOAL_XSIGN_MAX)
        return refuse(err, file_id, "its X-Sign is too long");
    if (check_signature(id, file_id, xsign, now, &x, err) < 0)
        return -1;
    v = calloc(1, sizeof(*v));
    if (!v)
        return shoal_err_set(err, SHOAL_EIO, "out of memory");
    if (check_body(file_id, ans, &x, v, err) < 0) {
        pr_version_free(v);
        return -1;
    }
    if (shoal_uuid_normalize(file_id, v->file_id, "file", err) < 0) {
        pr_version_free(v);
        return -1;
    }
    snprintf(v->xsign, sizeof(v->xsign), "%s", xsign);
    *out = v;
    return 0;
}

/* --- the data folder ------------------------------------------------ */

char *pr_data_dir(const char *override, struct shoal_err *err)
{
    const char *base = getenv("XDG_DATA_HOME");
    const char *tail = "/shoal";
    char *path;

    if (override) {
        if (!*override) {
            shoal_err_set(err, SHOAL_EIO, "data folder path is empty");
            return NULL;
        }
        if (!(path = strdup(override)))
            shoal_err_set(err, SHOAL_EIO, "out of memory");
        return path;
    }
    if (!base || base[0] != '/') {     /* XDG: relative values are ignored */
        base = getenv("HOME");
        tail = "/.local/share/shoal";
        if (!base || !*base) {
            struct passwd *pw = getpwuid(getuid());
            base = pw ? pw->pw_dir : NULL;
        }
    }
    if (!base || !*base) {
        shoal_err_set(err, SHOAL_EIO, "data folder unknown: neither "
                      "XDG_DATA_HOME nor HOME is set (use --data-dir DIR)");
        return NULL;
    }
    if (asprintf(&path, "%s%s", base, tail) < 0) {
        shoal_err_set(err, SHOAL_EIO, "out of memory");
        return NULL;
    }
    return path;
}

struct pr_held *pr_held_open(const char *dir, struct shoal_err *err)
{
    struct pr_held *h = calloc(1, sizeof(*h));
    char *sub = NULL;

    if (!h || !(h->dir = strdup(dir))) {
        free(h);
        shoal_err_set(err, SHOAL_EIO, "out of memory");
        return NULL;
    }
    if (shoal_mkdir_p(dir, 0700, err) < 0)
        goto fail;
    if (asprintf(&sub, "%s/store", dir) < 0) {
        sub = NULL;
        shoal_err_set(err, SHOAL_EIO, "out of memory");
        goto fail;
    }
    if (!(h->store = shoal_store_open(sub, err))) {
        if (err)
            err->code = SHOAL_EIO;
        goto fail;
    }
    free(sub);
    return h;
fail:
    free(sub);
    pr_held_close(h);
    return NULL;
}

void pr_held_close(struct pr_held *h)
{
    if (!h)
        return;
    shoal_store_close(h->store);
    free(h->dir);
    free(h);
}

struct shoal_store *pr_held_store(const struct pr_held *h)
{
    return h->store;
}

const char *pr_held_dir(const struct pr_held *h)
{
    return h->dir;
}

int pr_held_import(struct pr_held *h, const struct pr_version *v, int fd,
                   const char *path, struct pr_progress *progress,
                   uint64_t *added, struct shoal_err *err)
{
    char *buf = malloc(v->piece_size);
    uint64_t n = 0;
    int rc = -1;

    if (added)
        *added = 0;
    if (!buf)
        return shoal_err_set(err, SHOAL_EIO, "out of memory");
    for (uint64_t i = 0; i < v->npieces; i++) {
        uint32_t len = shoal_piece_len(v->size, v->piece_size, i);
        uint64_t off = i * (uint64_t)v->piece_size;
        size_t got = 0;
        while (got < len) {
            ssize_t r = pread(fd, buf + got, len - got, (off_t)(off + got));
            if (r < 0 && errno == EINTR)
                continue;
            if (r <= 0) {
                shoal_err_set(err, SHOAL_EIO, "cannot read '%s': %s", path,
                              r < 0 ? strerror(errno) : "it is shorter than "
                              "the file");
                goto out;
            }
            got += (size_t)r;
        }
        struct shoal_err e;
        shoal_err_clear(&e);
        int fresh = shoal_store_put(h->store, v->hashes[i], buf, len, &e);
        if (fresh < 0 && e.code == SHOAL_EUNPROCESSABLE) {
            shoal_err_set(err, SHOAL_EPROTO, "piece %" PRIu64 " of '%s' does "
                          "not match version %" PRIu64 " of file '%s'", i, path,
                          v->version, v->file_id);
            goto out;
        }
        if (fresh < 0) {
            shoal_err_set(err, SHOAL_EIO, "cannot store piece %" PRIu64
                          ": %s", i, e.msg);
            goto out;
        }
        n += (uint64_t)fresh;
        pr_progress_add(progress, len);
    }
    if (added)
        *added = n;
    rc = 0;
out:
    free(buf);
    return rc;
}

int pr_held_record(struct pr_held *h, const struct pr_version *v,
                   const json_t *ans, struct shoal_err *err)
{
    char *path = NULL;
    char *text = NULL;
    int rc = -1;

    if (asprintf(&path, "%s/files/%s/%" PRIu64 ".json", h->dir, v->file_id,
                 v->version) < 0) {
        path = NULL;
        shoal_err_set(err, SHOAL_EIO, "out of memory");
        goto out;
    }
    if (!(text = json_dumps(ans, JSON_COMPACT))) {
        shoal_err_set(err, SHOAL_EIO, "out of memory");
        goto out;
    }
    rc = shoal_file_write_atomic(path, text, strlen(text), 0600, err);
    if (rc < 0 && err)
        err->code = SHOAL_EIO;
out:
    free(text);
    free(path);
    return rc;
}

/* --- versions kept by 'shoal get' (serve.h, evict.c) ------------------ */

/* files/<id>/<version>.json of h: new string, NULL on ENOMEM. */
static char *record_path(const struct pr_held *h, const char *file_id,
                         uint64_t version)
{
    char *path;

    if (asprintf(&path, "%s/files/%s/%" PRIu64 ".json", h->dir, file_id,
                 version) < 0)
        return NULL;
    return path;
}

int pr_held_kept(const struct pr_held *h, const char *file_id,
                 uint64_t version)
{
    char *path = record_path(h, file_id, version);
    char *text = NULL;
    size_t len;
    json_t *doc = NULL;
    int rc = 0;

    if (!path)
        return 0;
    if (access(path, F_OK) != 0 && errno == ENOENT) {
        rc = -1;
    } else if (shoal_file_read(path, RECORD_MAX, &text, &len, NULL) == 0 &&
               (doc = json_loadb(text, len, 0, NULL))) {
        rc = json_object_get(doc, PR_RECORD_KEPT) != NULL;
    }
    json_decref(doc);
    free(text);
    free(path);
    return rc;
}

/* The record of (file_id, version) on disk: new reference, or NULL when
 * there is none or it cannot be read. */
static json_t *record_read(const struct pr_held *h, const char *file_id,
                           uint64_t version)
{
    char *path = record_path(h, file_id, version);
    char *text = NULL;
    size_t len;
    json_t *doc = NULL;

    if (path && shoal_file_read(path, RECORD_MAX, &text, &len, NULL) == 0)
        doc = json_loadb(text, len, 0, NULL);
    free(text);
    free(path);
    return doc;
}

int pr_held_record_kept(struct pr_held *h, const struct pr_version *v,
                        const json_t *ans, struct shoal_err *err)
{
    static const char *const web[] = { PR_RECORD_URL, PR_RECORD_INJECTED_AT,
                                       PR_RECORD_INJECT_XSIGN, NULL };
    json_t *doc, *old = NULL;
    const char *by;
    int rc;

    if (pr_held_kept(h, v->file_id, v->version) == 0)
        return pr_held_record(h, v, ans, err);      /* owned stays owned */
    if (!(doc = json_deep_copy(ans)))
        return shoal_err_set(err, SHOAL_EIO, "out of memory");
    /* kept by 'shoal fetch': a web object it stays (webseed.h) */
    old = record_read(h, v->file_id, v->version);
    by = json_string_value(json_object_get(old, PR_RECORD_KEPT));
    if (by && strcmp(by, PR_RECORD_FETCH) == 0) {
        for (int i = 0; web[i]; i++)
            if (json_object_get(old, web[i]))
                json_object_set(doc, web[i], json_object_get(old, web[i]));
    } else {
        by = "get";
    }
    rc = json_object_set_new(doc, PR_RECORD_KEPT, json_string(by)) < 0
         ? shoal_err_set(err, SHOAL_EIO, "out of memory")
         : pr_held_record(h, v, doc, err);
    json_decref(old);
    json_decref(doc);
    return rc;
}

int pr_held_forget(struct pr_held *h, const char *file_id, uint64_t version,
                   struct shoal_err *err)
{
    char *path = record_path(h, file_id, version);
    char *slash;

    if (!path)
        return shoal_err_set(err, SHOAL_EIO, "out of memory");
    if (unlink(path) != 0 && errno != ENOENT) {
        shoal_err_set(err, SHOAL_EIO, "cannot remove '%s': %s", path,
                      strerror(errno));
        free(path);
        return -1;
    }
    if ((slash = strrchr(path, '/'))) {
        *slash = '\0';
        rmdir(path);                 /* only when no other version is left */
    }
    free(path);
    return 0;
}

static int cmp_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The entries of folder path whose names pass keep, sorted.  New array
 * of new strings in *names (count in *n); -1 when it cannot be read. */
static int list_dir(const char *path, int (*keep)(const char *),
                    char ***names, size_t *n)
{
    DIR *d = opendir(path);
    struct dirent *e;
    size_t cap = 0;

    *names = NULL;
    *n = 0;
    if (!d)
        return errno == ENOENT ? 0 : -1;
    while ((e = readdir(d))) {
        if (!keep(e->d_name))
            continue;
        if (*n == cap) {
            cap = cap ? 2 * cap : 16;
            char **p = realloc(*names, cap * sizeof(*p));
            if (!p)
                break;
            *names = p;
        }
        if (!((*names)[*n] = strdup(e->d_name)))
            break;
        (*n)++;
    }
    closedir(d);
    if (*n)
        qsort(*names, *n, sizeof(**names), cmp_names);
    return 0;
}

static void names_free(char **names, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
}

static int is_uuid_name(const char *s)
{
    return shoal_uuid_valid(s) && !strpbrk(s, "ABCDEF");
}

/* "<version>.json", version a positive decimal without leading zeros */
static int is_record_name(const char *s)
{
    size_t i = 0;
    if (s[0] < '1' || s[0] > '9')
        return 0;
    while (s[i] >= '0' && s[i] <= '9')
        i++;
    return i <= 10 && strcmp(s + i, ".json") == 0;
}

/* The fields of a record kept by 'shoal fetch' (serve.h) into v: its URL,
 * when it was injected (0 when the record does not say: its seeding is
 * over), and the expiry of the injector's X-Sign when it is about v. */
static void web_fields(const json_t *ans, const char *path,
                       struct pr_version *v)
{
    const char *by = json_string_value(json_object_get(ans, PR_RECORD_KEPT));
    const char *url = json_string_value(json_object_get(ans, PR_RECORD_URL));
    const char *at, *xs;
    struct shoal_xsign x;
    time_t t;

    if (!by || strcmp(by, PR_RECORD_FETCH) != 0 || !url)
        return;
    at = json_string_value(json_object_get(ans, PR_RECORD_INJECTED_AT));
    xs = json_string_value(json_object_get(ans, PR_RECORD_INJECT_XSIGN));
    if (!(v->url = strdup(url)))
        return;
    if (at && shoal_time_parse(at, &t, NULL) == 0)
        v->injected_at = (int64_t)t;
    if (xs && strlen(xs) < SHOAL_XSIGN_MAX &&
        shoal_xsign_parse(xs, &x, NULL) == 0 && x.version == v->version &&
        x.size == v->size && memcmp(x.root, v->root, sizeof(x.root)) == 0)
        v->inj_expires = x.expires;
    else if (xs)
        shoal_log(SHOAL_LOG_WARN, NULL, "'%s': its %s is not about version "
                  "%" PRIu64 ": ignored", path, PR_RECORD_INJECT_XSIGN,
                  v->version);
}

/* Load and check one record; NULL (warned) when it does not check out. */
static struct pr_version *record_load(const struct pr_identity *id,
                                      const char *path, const char *file_id,
                                      const char *name)
{
    struct shoal_err e;
    struct pr_version *v = NULL;
    char *text = NULL;
    size_t len;
    json_t *ans;
    json_error_t je;

    shoal_err_clear(&e);
    if (shoal_file_read(path, RECORD_MAX, &text, &len, &e) < 0) {
        shoal_log(SHOAL_LOG_WARN, NULL, "skipping '%s': %s", path, e.msg);
        return NULL;
    }
    ans = json_loadb(text, len, 0, &je);
    free(text);
    if (!ans) {
        shoal_log(SHOAL_LOG_WARN, NULL, "skipping '%s': not JSON (%s)", path,
                  je.text);
        return NULL;
    }
    /* The signature is checked, not its expiry: an expired one is renewed
     * by whoever serves it. */
    if (pr_manifest_verify(id, file_id, ans, NULL, 0, &v, &e) < 0) {
        shoal_log(SHOAL_LOG_WARN, NULL, "skipping '%s': %s", path, e.msg);
    } else if (strtoull(name, NULL, 10) != v->version) {
        shoal_log(SHOAL_LOG_WARN, NULL, "skipping '%s': it holds version "
                  "%" PRIu64, path, v->version);
        pr_version_free(v);
        v = NULL;
    } else {
        v->kept = json_object_get(ans, PR_RECORD_KEPT) != NULL;
        web_fields(ans, path, v);
    }
    json_decref(ans);
    return v;
}

int pr_held_each(struct pr_held *h, const struct pr_identity *id,
                 int (*want)(void *arg, const char *file_id, uint64_t version),
                 void (*fn)(void *arg, struct pr_version *v), void *arg,
                 struct shoal_err *err)
{
    char *top = NULL;
    char **files = NULL;
    size_t nfiles = 0;
    int count = 0;

    if (asprintf(&top, "%s/files", h->dir) < 0)
        return shoal_err_set(err, SHOAL_EIO, "out of memory");
    if (list_dir(top, is_uuid_name, &files, &nfiles) < 0) {
        shoal_err_set(err, SHOAL_EIO, "cannot list '%s': %s", top,
                      strerror(errno));
        free(top);
        return -1;
    }
    for (size_t i = 0; i < nfiles; i++) {
        char *sub = NULL;
        char **recs = NULL;
        size_t nrecs = 0;
        if (asprintf(&sub, "%s/%s", top, files[i]) < 0)
            break;
        if (list_dir(sub, is_record_name, &recs, &nrecs) == 0) {
            for (size_t k = 0; k < nrecs; k++) {
                char *path = NULL;
                if (want && !want(arg, files[i], strtoull(recs[k], NULL, 10)))
                    continue;
                if (asprintf(&path, "%s/%s", sub, recs[k]) < 0)
                    break;
                struct pr_version *v = record_load(id, path, files[i], recs[k]);
                free(path);
                if (v) {
                    fn(arg, v);
                    count++;
                }
            }
        }
        names_free(recs, nrecs);
        free(sub);
    }
    names_free(files, nfiles);
    free(top);
    return count;
}

json_t *pr_held_stats_load(const struct pr_held *h)
{
    char *path = NULL;
    char *text = NULL;
    size_t len;
    json_t *v = NULL;

    if (asprintf(&path, "%s/stats.json", h->dir) >= 0 &&
        shoal_file_read(path, 16u << 20, &text, &len, NULL) == 0)
        v = json_loadb(text, len, 0, NULL);
    free(text);
    free(path);
    if (!json_is_object(v)) {
        json_decref(v);
        v = json_object();
    }
    return v;
}

int pr_held_stats_save(const struct pr_held *h, const json_t *stats,
                       struct shoal_err *err)
{
    char *path = NULL;
    char *text = json_dumps(stats, JSON_COMPACT | JSON_SORT_KEYS);
    int rc = -1;

    if (text && asprintf(&path, "%s/stats.json", h->dir) >= 0)
        rc = shoal_file_write_atomic(path, text, strlen(text), 0600, err);
    else
        shoal_err_set(err, SHOAL_EIO, "out of memory");
    free(text);
    free(path);
    return rc;
}

/* --- sizes and durations ------------------------------------------- */

int pr_size_parse(const char *s, uint64_t *out)
{
    char *end;
    double v;
    double mult = 1;

    if (!s || !*s || *s == '-' || *s == '+' || *s == ' ')
        return -1;
    errno = 0;
    v = strtod(s, &end);
    if (errno || end == s || !isfinite(v))
        return -1;
    switch (*end) {
    case 'k': case 'K': mult = 1024.0; end++; break;
    case 'm': case 'M': mult = 1024.0 * 1024; end++; break;
    case 'g': case 'G': mult = 1024.0 * 1024 * 1024; end++; break;
    case 't': case 'T': mult = 1024.0 * 1024 * 1024 * 1024; end++; break;
    default: break;
    }
    if (mult > 1 && (strcmp(end, "iB") == 0 || strcmp(end, "B") == 0))
        end += strlen(end);
    else if (mult == 1 && strcmp(end, "B") == 0)
        end++;
    if (*end || v * mult >= 18446744073709551615.0)
        return -1;
    *out = (uint64_t)(v * mult);
    return 0;
}

int pr_seconds_parse(const char *s, double *out)
{
    char *end;
    double v;

    if (!s || !*s || *s == '-' || *s == '+' || *s == ' ')
        return -1;
    errno = 0;
    v = strtod(s, &end);
    if (errno || end == s || !isfinite(v) || v < 0)
        return -1;
    if (strcmp(end, "m") == 0)
        v *= 60;
    else if (strcmp(end, "h") == 0)
        v *= 3600;
    else if (strcmp(end, "d") == 0)
        v *= 86400;
    else if (*end && strcmp(end, "s") != 0)
        return -1;
    *out = v;
    return 0;
}

/* --- serve.json: the serve running on the folder ------------------- */

int pr_held_serving(const char *dir, const char *url, struct shoal_err *err)
{
    char path[PATH_MAX];
    char text[PR_URL_MAX + 64];
    int fd;
    int n;

    snprintf(path, sizeof(path), "%s/serve.json", dir);
    if ((fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600)) < 0)
        return shoal_err_set(err, SHOAL_EIO, "cannot open '%s': %s", path,
                             strerror(errno));
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        char url2[PR_URL_MAX];
        long pid = 0;

        close(fd);
        if (pr_serve_running(dir, url2, &pid) == 1)
            return shoal_err_set(err, SHOAL_EEXISTS, "another shoal serve "
                                 "(pid %ld, %s) uses the data folder '%s'",
                                 pid, url2, dir);
        return shoal_err_set(err, SHOAL_EEXISTS, "another shoal serve uses "
                             "the data folder '%s'", dir);
    }
    n = snprintf(text, sizeof(text), "{\"pid\": %ld, \"url\": \"%s\"}\n",
                 (long)getpid(), url);
    if (ftruncate(fd, 0) != 0 || n < 0 || (size_t)n >= sizeof(text) ||
        pwrite(fd, text, (size_t)n, 0) != n) {
        shoal_err_set(err, SHOAL_EIO, "cannot write '%s': %s", path,
                      strerror(errno));
        close(fd);
        return -1;
    }
    return fd;
}

void pr_held_serving_end(const char *dir, int fd)
{
    char path[PATH_MAX];

    if (fd < 0)
        return;
    snprintf(path, sizeof(path), "%s/serve.json", dir);
    unlink(path);                    /* while the lock still holds */
    close(fd);
}

int pr_serve_running(const char *dir, char url[PR_URL_MAX], long *pid)
{
    char path[PATH_MAX];
    char text[PR_URL_MAX + 64];
    json_t *doc;
    const char *u;
    ssize_t n;
    int fd;
    int rc = 0;

    snprintf(path, sizeof(path), "%s/serve.json", dir);
    if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
        return 0;
    if (flock(fd, LOCK_SH | LOCK_NB) == 0 || errno != EWOULDBLOCK) {
        close(fd);                   /* left by a serve that is gone */
        return 0;
    }
    n = pread(fd, text, sizeof(text) - 1, 0);
    close(fd);
    if (n <= 0)
        return 0;
    text[n] = '\0';
    if ((doc = json_loads(text, 0, NULL)) &&
        (u = json_string_value(json_object_get(doc, "url"))) &&
        json_is_integer(json_object_get(doc, "pid")) &&
        pr_broker_url(u, url, NULL) == 0) {
        *pid = (long)json_integer_value(json_object_get(doc, "pid"));
        rc = *pid > 0;
    }
    json_decref(doc);
    return rc;
}
