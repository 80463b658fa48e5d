/*
 * urlswarm.c - the checked sources of an injected web object for 'shoal
 * fetch': the URL's swarm (pieces from its holders) and the injector
 * (POST /v1/inject, X-Sign in the trailer).  See urlfetch.h.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <sodium.h>

#include "fetch.h"
#include "injlist.h"
#include "log.h"
#include "progress.h"
#include "proxy.h"
#include "serve.h"
#include "store.h"
#include "transfer.h"
#include "urlcanon.h"
#include "urlfetch.h"
#include "util.h"

#define INJ_PIECE SHOAL_PIECE_DEFAULT   /* the injector's piece size */
#define ERRBODY_MAX 65536
#define INJ_KEYS_MAX 8                  /* keys pinned for one injector */

void pr_swarm_of(const char *url, char out[65])
{
    unsigned char md[SHOAL_HASH_BYTES];
    char *canon = NULL;

    /* the canonical URL's swarm; one that has none, as given (no
     * injector takes it) */
    if (shoal_url_canon(url, &canon, NULL) < 0)
        canon = NULL;
    shoal_url_swarm(canon ? canon : url, md);
    shoal_hex_encode(md, sizeof(md), out);
    free(canon);
}

static int refuse(struct shoal_err *err, const char *url, const char *why)
{
    (void)url;                   /* the caller's message names it */
    return shoal_err_set(err, SHOAL_EPROTO, "refused: %s", why);
}

int pr_inj_check(const struct pr_ctx *ctx, const char *url,
                 const char *file_id, const char *xsign, const char *meta,
                 int64_t now, struct pr_inj *inj, struct shoal_err *err)
{
    const struct pr_identity *id = ctx->id;
    unsigned char pk[INJ_KEYS_MAX][SHOAL_PK_BYTES];
    unsigned char md[SHOAL_HASH_BYTES];
    size_t npk = 0;
    struct shoal_err e;
    char why[SHOAL_ERR_MSG_MAX];
    size_t ulen;

    memset(inj, 0, sizeof(*inj));
    shoal_err_clear(&e);
    if (!xsign || !*xsign)
        return refuse(err, url, "it carries no X-Sign signature");
    if (!file_id ||
        shoal_uuid_normalize(file_id, inj->file_id, "file", NULL) < 0)
        return refuse(err, url, "it names no file");
    if (strlen(xsign) >= SHOAL_XSIGN_MAX ||
        shoal_xsign_parse(xsign, &inj->x, &e) < 0) {
        snprintf(why, sizeof(why), "malformed X-Sign (%.150s)", e.msg);
        return refuse(err, url, why);
    }
    if (!inj->x.has_meta)
        return refuse(err, url, "its X-Sign is not an injector's (no meta)");
    if (!id->broker_key[0] || !id->broker_id[0])
        return shoal_err_set(err, SHOAL_EIO, "identity has no pinned "
                             "injector key: cannot check signatures "
                             "(register again)");
    if (strcasecmp(inj->x.key, id->broker_id) == 0) {
        /* the broker pinned at register: its key only */
        if (shoal_b64_decode_exact(id->broker_key, pk[0], sizeof(pk[0]),
                                   "broker_key", NULL) < 0)
            return shoal_err_set(err, SHOAL_EIO, "identity's broker_key is "
                                 "not a key: cannot check signatures");
        npk = 1;
    } else {
        /* the extra injector keys of the configuration (injlist.h) */
        json_t *cfg = pr_injconfig_load(ctx);
        npk = pr_injkeys_config(cfg, inj->x.key, pk, INJ_KEYS_MAX);
        json_decref(cfg);
    }
    if (npk == 0) {
        snprintf(why, sizeof(why), "not signed by a pinned injector "
                 "(by '%s')", inj->x.key);
        return refuse(err, url, why);
    }
    for (size_t k = 0; k < npk; k++) {
        shoal_err_clear(&e);
        if (shoal_xsign_verify(&inj->x, inj->file_id, pk[k], now, &e) == 0)
            break;
        if (k + 1 == npk) {
            snprintf(why, sizeof(why), "%.150s (pinned injector key)",
                     e.msg[0] ? e.msg : "signature invalid");
            return refuse(err, url, why);
        }
    }
    if (!meta)
        return refuse(err, url, "it carries no metadata");
    shoal_sha256(meta, strlen(meta), md);
    if (memcmp(md, inj->x.meta, sizeof(md)) != 0)
        return refuse(err, url, "its metadata does not match the signature");
    /* signed for the canonical form of the URL asked for (urlcanon.h) */
    char *canon = NULL;
    if (shoal_url_canon(url, &canon, NULL) < 0)
        return refuse(err, url, "the URL asked for cannot name a web object");
    ulen = strlen(canon);
    int other = strncmp(meta, "url: ", 5) != 0 ||
                strncmp(meta + 5, canon, ulen) != 0 || meta[5 + ulen] != '\n';
    free(canon);
    if (other)
        return refuse(err, url, "it was signed for another URL");
    snprintf(inj->xsign, sizeof(inj->xsign), "%s", xsign);
    return 0;
}

/* The manifest of inj's version from the broker, checked against the
 * pinned key and matched with the injection.  New reference in *ans and
 * new version in *v. */
static int manifest_get(struct pr_ctx *ctx, const char *url,
                        const struct pr_inj *inj, json_t **ans,
                        struct pr_version **v, struct shoal_err *err)
{
    char path[128];

    *v = NULL;
    if (!*ans) {
        snprintf(path, sizeof(path), "/v1/files/%s/manifest?version=%" PRIu64,
                 inj->file_id, inj->x.version);
        if (pr_call(ctx, "GET", path, NULL, ans, err) < 0)
            return -1;
    }
    if (pr_manifest_verify(ctx->id, inj->file_id, *ans, NULL, 0, v, err) < 0)
        return -1;
    if ((*v)->version != inj->x.version || (*v)->size != inj->x.size ||
        (*v)->piece_size != inj->x.piece_size ||
        memcmp((*v)->root, inj->x.root, SHOAL_HASH_BYTES) != 0) {
        pr_version_free(*v);
        *v = NULL;
        return refuse(err, url, "its manifest is not the one the injector "
                      "signed");
    }
    return 0;
}

/* --- pieces from the swarm's holders ------------------------------------ */

int pr_swarm_download(struct pr_ctx *ctx, const char *url, const json_t *rec,
                      int fd, const char *keep_dir, struct pr_inj *inj,
                      json_t **ans, struct shoal_err *err)
{
    struct pr_held *held = NULL;
    const char *fid = json_string_value(json_object_get(rec, "file_id"));
    const char *xs = json_string_value(json_object_get(rec, "x_sign"));
    const char *meta = json_string_value(json_object_get(rec, "meta"));
    struct pr_fetch_report *report = NULL;
    struct pr_progress *progress = NULL;
    struct pr_version *v = NULL;
    struct pr_fetch f;
    uint64_t *todo = NULL;
    int rc = -1;

    *ans = NULL;
    if (pr_inj_check(ctx, url, fid, xs, meta, (int64_t)time(NULL), inj,
                     err) < 0 ||
        manifest_get(ctx, url, inj, ans, &v, err) < 0)
        goto out;
    /* when the injector made it (the record's word: the signature does
     * not say), never later than now */
    const char *at = json_string_value(json_object_get(rec, "injected_at"));
    time_t t;
    if (at && shoal_time_parse(at, &t, NULL) == 0 && t > 0)
        inj->injected_at = (int64_t)t < (int64_t)time(NULL)
                           ? (int64_t)t : (int64_t)time(NULL);
    if (!(todo = calloc(v->npieces ? v->npieces : 1, sizeof(*todo)))) {
        shoal_err_set(err, SHOAL_EIO, "out of memory");
        goto out;
    }
    for (uint64_t i = 0; i < v->npieces; i++)
        todo[i] = i;
    if (ftruncate(fd, (off_t)v->size) < 0) {
        shoal_err_set(err, SHOAL_EIO, "cannot size the output: %s",
                      strerror(errno));
        goto out;
    }
    /* Every holder the tracker lists for the signed version (the same as
     * the swarm's), at once; each piece checked before it is written, and
     * kept in keep_dir's store as it arrives (on the engine's extra
     * keeping threads), so that pr_urlobj_keep finds them there.
     * Zero-initialised: the fields not named here mean "off". */
    if (keep_dir) {
        struct shoal_err ke;
        shoal_err_clear(&ke);
        if (!(held = pr_held_open(keep_dir, &ke)))
            shoal_log(SHOAL_LOG_DEBUG, NULL, "not keeping while fetching: %s",
                      ke.msg);
    }
    progress = pr_progress_new("downloading", v->size);
    f = (struct pr_fetch){
        .ctx = ctx,
        .file_id = inj->file_id,
        .version = v->version,
        .size = v->size,
        .piece_size = v->piece_size,
        .hashes = (const unsigned char (*)[SHOAL_HASH_BYTES])v->hashes,
        .fd = fd,
        .local = "the output",
        .jobs = PR_JOBS_DEFAULT,
        .progress = progress,
        .keep = held ? pr_held_store(held) : NULL,
    };
    if (pr_fetch_run(&f, todo, v->npieces, &report, err) < 0)
        goto out;
    pr_progress_end(progress);
    rc = 0;
out:
    if (rc < 0) {
        json_decref(*ans);
        *ans = NULL;
    }
    pr_progress_free(progress);
    pr_fetch_report_free(report);
    pr_held_close(held);
    free(todo);
    pr_version_free(v);
    return rc;
}

/* --- the injector ------------------------------------------------------- */

struct inj_rx {
    int fd;
    long status;
    uint64_t size;
    struct shoal_sha256_ctx *piece;    /* the piece being received */
    uint32_t in_piece;
    unsigned char (*hashes)[SHOAL_HASH_BYTES];
    uint64_t nhashes, cap;
    char *errbody;                     /* answer of a failure */
    size_t errlen;
    int werr;                          /* errno of a failed write */
    int nomem;
    char xsign[SHOAL_XSIGN_MAX];
    char file[64];
    char *meta_b64;
};

static int close_piece(struct inj_rx *r)
{
    if (r->nhashes == r->cap) {
        uint64_t cap = r->cap ? r->cap * 2 : 64;
        void *p = realloc(r->hashes, cap * SHOAL_HASH_BYTES);
        if (!p)
            return -1;
        r->hashes = p;
        r->cap = cap;
    }
    shoal_sha256_final(r->piece, r->hashes[r->nhashes++]);
    r->piece = NULL;
    r->in_piece = 0;
    return 0;
}

static size_t inj_write(char *p, size_t sz, size_t n, void *arg)
{
    struct inj_rx *r = arg;
    size_t len = sz * n;
    size_t done = 0;

    if (r->status != 200) {
        size_t keep = len;
        if (r->errlen + keep > ERRBODY_MAX)
            keep = ERRBODY_MAX - r->errlen;
        char *b = realloc(r->errbody, r->errlen + keep + 1);
        if (!b)
            return 0;
        r->errbody = b;
        memcpy(b + r->errlen, p, keep);
        r->errlen += keep;
        b[r->errlen] = '\0';
        return len;
    }
    while (done < len) {
        ssize_t w = write(r->fd, p + done, len - done);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            r->werr = errno ? errno : EIO;
            return 0;
        }
        done += (size_t)w;
    }
    for (size_t off = 0; off < len;) {
        size_t take = INJ_PIECE - r->in_piece;
        if (take > len - off)
            take = len - off;
        if (!r->piece && !(r->piece = shoal_sha256_new())) {
            r->nomem = 1;
            return 0;
        }
        shoal_sha256_update(r->piece, p + off, take);
        r->in_piece += (uint32_t)take;
        off += take;
        if (r->in_piece == INJ_PIECE && close_piece(r) < 0) {
            r->nomem = 1;
            return 0;
        }
    }
    r->size += len;
    return len;
}

/* Copy the value of header line h called name (any case) into out. */
static int header_take(const char *h, size_t len, const char *name,
                       char *out, size_t cap)
{
    size_t n = strlen(name);

    if (len <= n || strncasecmp(h, name, n) != 0 || h[n] != ':')
        return 0;
    h += n + 1;
    len -= n + 1;
    while (len && (*h == ' ' || *h == '\t')) {
        h++;
        len--;
    }
    while (len && (h[len - 1] == '\r' || h[len - 1] == '\n' ||
                   h[len - 1] == ' '))
        len--;
    if (len >= cap)
        len = cap - 1;
    memcpy(out, h, len);
    out[len] = '\0';
    return 1;
}

static size_t inj_header(char *h, size_t sz, size_t n, void *arg)
{
    struct inj_rx *r = arg;
    size_t len = sz * n;
    char meta[8192];

    if (len > 5 && strncmp(h, "HTTP/", 5) == 0) {
        const char *sp = memchr(h, ' ', len);
        r->status = sp ? strtol(sp + 1, NULL, 10) : 0;
        return len;
    }
    header_take(h, len, "X-Sign", r->xsign, sizeof(r->xsign));
    header_take(h, len, "X-Inject-File", r->file, sizeof(r->file));
    if (header_take(h, len, "X-Inject-Meta", meta, sizeof(meta))) {
        free(r->meta_b64);
        r->meta_b64 = strdup(meta);
    }
    return len;
}

/* Hash fd (size bytes) in pieces of ps into a new array *out. */
static int hash_fd(int fd, uint64_t size, uint32_t ps,
                   unsigned char (**out)[SHOAL_HASH_BYTES], uint64_t *n)
{
    uint64_t cnt = shoal_piece_count(size, ps);
    unsigned char (*h)[SHOAL_HASH_BYTES] = calloc(cnt ? cnt : 1,
                                                  SHOAL_HASH_BYTES);
    unsigned char *buf = malloc(65536);

    if (!h || !buf)
        goto fail;
    for (uint64_t i = 0; i < cnt; i++) {
        struct shoal_sha256_ctx *c = shoal_sha256_new();
        uint32_t left = shoal_piece_len(size, ps, i);
        off_t off = (off_t)(i * ps);
        if (!c)
            goto fail;
        while (left) {
            ssize_t r = pread(fd, buf, left < 65536 ? left : 65536, off);
            if (r < 0 && errno == EINTR)
                continue;
            if (r <= 0) {
                shoal_sha256_free(c);
                goto fail;
            }
            shoal_sha256_update(c, buf, (size_t)r);
            left -= (uint32_t)r;
            off += r;
        }
        shoal_sha256_final(c, h[i]);
    }
    free(buf);
    *out = h;
    *n = cnt;
    return 0;
fail:
    free(buf);
    free(h);
    return -1;
}

int pr_inject_fetch(struct pr_ctx *ctx, const char *url, int fd,
                    struct pr_inj *inj, uint64_t *bytes,
                    struct shoal_err *err)
{
    struct inj_rx r = { .fd = fd };
    struct curl_slist *hdr = NULL;
    unsigned char (*hashes)[SHOAL_HASH_BYTES] = NULL;
    unsigned char root[SHOAL_HASH_BYTES];
    json_t *body = NULL;
    char *payload = NULL, *endpoint = NULL, *meta = NULL;
    char auth[80];
    char ebuf[CURL_ERROR_SIZE] = "";
    CURL *c = NULL;
    CURLcode cc;
    uint64_t nh = 0;
    int rc = -1;

    if (!pr_connect(ctx, err))
        return -1;
    body = json_pack("{s:s}", "url", url);
    payload = body ? json_dumps(body, JSON_COMPACT) : NULL;
    if (!payload || asprintf(&endpoint, "%s/v1/inject", ctx->id->broker) < 0 ||
        !(c = curl_easy_init())) {
        endpoint = NULL;
        shoal_err_set(err, SHOAL_EIO, "out of memory");
        goto out;
    }
    snprintf(auth, sizeof(auth), "Authorization: Bearer %s",
             ctx->session.session_id);
    hdr = curl_slist_append(hdr, auth);
    hdr = curl_slist_append(hdr, "Content-Type: application/json");
    curl_easy_setopt(c, CURLOPT_URL, endpoint);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, payload);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdr);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, inj_write);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &r);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, inj_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, &r);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, ebuf);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_PROXY, "");
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, 10L);
    curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, 1L);
    curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, 60L);
    cc = curl_easy_perform(c);
    if (r.werr) {
        shoal_err_set(err, SHOAL_EIO, "cannot write the output: %s",
                      strerror(r.werr));
        goto out;
    }
    if (r.nomem) {
        shoal_err_set(err, SHOAL_EIO, "out of memory");
        goto out;
    }
    if (cc != CURLE_OK) {
        shoal_err_set(err, SHOAL_ENET, "injection of '%.100s' failed: %s",
                      url, ebuf[0] ? ebuf : curl_easy_strerror(cc));
        goto out;
    }
    if (r.status != 200) {
        json_t *e = r.errbody ? json_loads(r.errbody, 0, NULL) : NULL;
        shoal_err_from_json(err, (int)r.status, e);
        json_decref(e);
        goto out;
    }
    if (r.piece && close_piece(&r) < 0) {
        shoal_err_set(err, SHOAL_EIO, "out of memory");
        goto out;
    }
    if (!r.xsign[0]) {
        refuse(err, url, "the injector sent no X-Sign trailer");
        goto out;
    }
    if (r.meta_b64) {
        size_t len = strlen(r.meta_b64), got = 0;
        if (!(meta = malloc(len + 1)) ||
            sodium_base642bin((unsigned char *)meta, len, r.meta_b64, len,
                              NULL, &got, NULL,
                              sodium_base64_VARIANT_ORIGINAL) != 0) {
            refuse(err, url, "its X-Inject-Meta is not base64");
            goto out;
        }
        meta[got] = '\0';
        if (strlen(meta) != got) {
            refuse(err, url, "its metadata holds a NUL byte");
            goto out;
        }
    }
    if (pr_inj_check(ctx, url, r.file, r.xsign, meta, (int64_t)time(NULL),
                     inj, err) < 0)
        goto out;
    if (inj->x.size != r.size) {
        refuse(err, url, "the size signed is not the size received");
        goto out;
    }
    if (inj->x.piece_size == INJ_PIECE) {
        hashes = r.hashes;
        nh = r.nhashes;
        r.hashes = NULL;
    } else if (hash_fd(fd, r.size, inj->x.piece_size, &hashes, &nh) < 0) {
        shoal_err_set(err, SHOAL_EIO, "cannot read back the output: %s",
                      strerror(errno));
        goto out;
    }
    shoal_merkle_root((const unsigned char (*)[SHOAL_HASH_BYTES])hashes, nh,
                      root);
    if (memcmp(root, inj->x.root, sizeof(root)) != 0) {
        refuse(err, url, "the bytes received do not give the signed root");
        goto out;
    }
    *bytes = r.size;
    inj->injected_at = (int64_t)time(NULL);    /* made just now */
    rc = 0;
out:
    if (c)
        curl_easy_cleanup(c);
    curl_slist_free_all(hdr);
    shoal_sha256_free(r.piece);
    free(r.hashes);
    free(r.errbody);
    free(r.meta_b64);
    free(hashes);
    free(meta);
    free(payload);
    free(endpoint);
    json_decref(body);
    return rc;
}

/* --- keeping it --------------------------------------------------------- */

#define KEEP_THREADS 8          /* pieces stored at once (fsyncs overlap) */

/* The pieces of v, read from fd, into store: shared by the threads. */
struct keeper {
    pthread_mutex_t lock;
    const struct pr_version *v;
    struct shoal_store *store;
    int fd;
    uint64_t next;              /* the next piece to take */
    int failed;
    struct shoal_err err;       /* the first failure */
};

/* Read piece i of k->v from k->fd into buf and store it: its bytes were
 * checked against its hash as they arrived (fetch engine, injector
 * stream), so the store does not hash them again. */
static int keep_piece(struct keeper *k, uint64_t i, char *buf,
                      struct shoal_err *err)
{
    uint32_t len = shoal_piece_len(k->v->size, k->v->piece_size, i);
    uint64_t off = i * (uint64_t)k->v->piece_size;
    size_t got = 0;

    if (shoal_store_has(k->store, k->v->hashes[i]))
        return 0;                       /* kept while it arrived */
    while (got < len) {
        ssize_t r = pread(k->fd, buf + got, len - got, (off_t)(off + got));
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return shoal_err_set(err, SHOAL_EIO, "cannot read back the "
                                 "output: %s", r < 0 ? strerror(errno) :
                                 "it is shorter than the object");
        got += (size_t)r;
    }
    if (shoal_store_put_checked(k->store, k->v->hashes[i], buf, len, err) < 0)
        return -1;
    return 0;
}

static void *keeper_main(void *arg)
{
    struct keeper *k = arg;
    char *buf = malloc(k->v->piece_size ? k->v->piece_size : 1);
    struct shoal_err e;

    shoal_err_clear(&e);
    for (;;) {
        uint64_t i;
        int rc;

        pthread_mutex_lock(&k->lock);
        if (!buf && !k->failed) {
            k->failed = 1;
            shoal_err_set(&k->err, SHOAL_EIO, "out of memory");
        }
        i = k->next++;
        if (k->failed || i >= k->v->npieces) {
            pthread_mutex_unlock(&k->lock);
            break;
        }
        pthread_mutex_unlock(&k->lock);
        rc = keep_piece(k, i, buf, &e);
        if (rc < 0) {
            pthread_mutex_lock(&k->lock);
            if (!k->failed) {
                k->failed = 1;
                k->err = e;
            }
            pthread_mutex_unlock(&k->lock);
            break;
        }
    }
    free(buf);
    return NULL;
}

/* Every piece of v from fd into store, on up to KEEP_THREADS threads. */
static int keep_pieces(struct shoal_store *store, const struct pr_version *v,
                       int fd, struct shoal_err *err)
{
    struct keeper k = { .v = v, .store = store, .fd = fd };
    pthread_t t[KEEP_THREADS];
    int n = 0;

    pthread_mutex_init(&k.lock, NULL);
    while (n < KEEP_THREADS && (uint64_t)n < v->npieces &&
           pthread_create(&t[n], NULL, keeper_main, &k) == 0)
        n++;
    if (n == 0 && v->npieces > 0)
        keeper_main(&k);                /* no thread: this one does it all */
    for (int i = 0; i < n; i++)
        pthread_join(t[i], NULL);
    pthread_mutex_destroy(&k.lock);
    if (k.failed) {
        if (err)
            *err = k.err;
        return -1;
    }
    return 0;
}

json_t *pr_urlobj_record(const json_t *ans, const char *url,
                         int64_t injected_at, const char *xsign)
{
    json_t *doc = json_deep_copy(ans);
    char at[32];

    shoal_time_format((time_t)injected_at, at);
    if (!doc ||
        json_object_set_new(doc, PR_RECORD_KEPT,
                            json_string(PR_RECORD_FETCH)) < 0 ||
        json_object_set_new(doc, PR_RECORD_URL, json_string(url)) < 0 ||
        json_object_set_new(doc, PR_RECORD_INJECTED_AT, json_string(at)) < 0 ||
        json_object_set_new(doc, PR_RECORD_INJECT_XSIGN,
                            json_string(xsign)) < 0) {
        json_decref(doc);
        return NULL;
    }
    return doc;
}

int pr_urlobj_keep(struct pr_ctx *ctx, const char *dir, const char *url,
                   const struct pr_inj *inj, int fd, const json_t *ans,
                   struct shoal_err *err)
{
    json_t *man = ans ? json_incref((json_t *)ans) : NULL;
    json_t *doc = NULL;
    struct pr_version *v = NULL;
    struct pr_held *held = NULL;
    char *d = NULL;
    int rc = -1;

    if (manifest_get(ctx, inj->file_id, inj, &man, &v, err) < 0 ||
        !(d = pr_data_dir(dir, err)) || !(held = pr_held_open(d, err)) ||
        keep_pieces(pr_held_store(held), v, fd, err) < 0)
        goto out;
    if (pr_held_kept(held, v->file_id, v->version) == 0) {
        rc = pr_held_record(held, v, man, err);     /* owned stays owned */
        goto out;
    }
    if (!(doc = pr_urlobj_record(man, url, inj->injected_at
                                 ? inj->injected_at : (int64_t)time(NULL),
                                 inj->xsign))) {
        shoal_err_set(err, SHOAL_EIO, "out of memory");
        goto out;
    }
    if (pr_held_record(held, v, doc, err) < 0)
        goto out;
    rc = 0;
out:
    pr_held_close(held);
    pr_version_free(v);
    json_decref(doc);
    json_decref(man);
    free(d);
    return rc;
}
