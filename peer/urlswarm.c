/*
 * urlswarm.c - the checked sources of an injected web object for 'shoal
 * fetch': the URL's swarm (pieces from its holders) and the injector
 * (POST /v1/inject, X-Sign in the trailer).  See urlfetch.h.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <sodium.h>

#include "serve.h"
#include "urlfetch.h"
#include "util.h"

#define INJ_PIECE SHOAL_PIECE_DEFAULT   /* the injector's piece size */
#define ERRBODY_MAX 65536

void pr_swarm_of(const char *url, char out[65])
{
    struct shoal_sha256_ctx *c = shoal_sha256_new();
    unsigned char md[SHOAL_HASH_BYTES];

    if (!c) {
        out[0] = '\0';
        return;
    }
    shoal_sha256_update(c, "url:", 4);
    shoal_sha256_update(c, url, strlen(url));
    shoal_sha256_final(c, md);
    shoal_hex_encode(md, sizeof(md), out);
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
    unsigned char pk[SHOAL_PK_BYTES];
    unsigned char md[SHOAL_HASH_BYTES];
    struct shoal_err e;
    char why[SHOAL_ERR_MSG_MAX];
    size_t ulen = strlen(url);

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
    if (shoal_b64_decode_exact(id->broker_key, pk, sizeof(pk), "broker_key",
                               NULL) < 0)
        return shoal_err_set(err, SHOAL_EIO, "identity's broker_key is not "
                             "a key: cannot check signatures");
    if (strcasecmp(inj->x.key, id->broker_id) != 0) {
        snprintf(why, sizeof(why), "not signed by a pinned injector "
                 "(by '%s')", inj->x.key);
        return refuse(err, url, why);
    }
    if (shoal_xsign_verify(&inj->x, inj->file_id, pk, now, &e) < 0) {
        snprintf(why, sizeof(why), "%.150s (pinned injector key)",
                 e.msg[0] ? e.msg : "signature invalid");
        return refuse(err, url, why);
    }
    if (!meta)
        return refuse(err, url, "it carries no metadata");
    shoal_sha256(meta, strlen(meta), md);
    if (memcmp(md, inj->x.meta, sizeof(md)) != 0)
        return refuse(err, url, "its metadata does not match the signature");
    if (strncmp(meta, "url: ", 5) != 0 || strncmp(meta + 5, url, ulen) != 0 ||
        meta[5 + ulen] != '\n')
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

struct piecebuf {
    unsigned char *buf;
    size_t len, cap;
    int over;
};

static size_t piece_write(char *p, size_t sz, size_t n, void *arg)
{
    struct piecebuf *b = arg;
    size_t len = sz * n;

    if (len > b->cap - b->len) {
        b->over = 1;
        return 0;
    }
    memcpy(b->buf + b->len, p, len);
    b->len += len;
    return len;
}

/* Holders of rec: peers first, then file brokers.  New array of borrowed
 * URL strings. */
static const char **holders_of(const json_t *rec, size_t *n)
{
    const json_t *peers = json_object_get(rec, "peers");
    size_t cnt = json_array_size(peers), k = 0;
    const char **out = calloc(cnt + 1, sizeof(*out));

    if (!out)
        return NULL;
    for (int pass = 0; pass < 2; pass++) {
        size_t i;
        json_t *p;
        json_array_foreach(peers, i, p) {
            const char *kind = json_string_value(json_object_get(p, "kind"));
            const char *u = json_string_value(json_object_get(p, "url"));
            int broker = kind && strcmp(kind, "broker") == 0;
            if (!u || broker != pass)
                continue;
            if (strncmp(u, "http://", 7) && strncmp(u, "https://", 8))
                continue;
            out[k++] = u;
        }
    }
    *n = k;
    return out;
}

int pr_swarm_download(struct pr_ctx *ctx, const char *url, const json_t *rec,
                      int fd, struct pr_inj *inj, json_t **ans,
                      struct shoal_err *err)
{
    const char *fid = json_string_value(json_object_get(rec, "file_id"));
    const char *xs = json_string_value(json_object_get(rec, "x_sign"));
    const char *meta = json_string_value(json_object_get(rec, "meta"));
    struct pr_version *v = NULL;
    struct piecebuf pb = { 0 };
    struct curl_slist *hdr = NULL;
    const char **holders = NULL;
    char *bad = NULL;
    size_t nh = 0;
    CURL *c = NULL;
    char auth[80];
    char ebuf[CURL_ERROR_SIZE];
    int rc = -1;

    *ans = NULL;
    if (pr_inj_check(ctx, url, fid, xs, meta, (int64_t)time(NULL), inj,
                     err) < 0 ||
        manifest_get(ctx, url, inj, ans, &v, err) < 0)
        goto out;
    if (!(holders = holders_of(rec, &nh)) || !(bad = calloc(nh + 1, 1)) ||
        !(pb.buf = malloc(v->piece_size ? v->piece_size : 1)) ||
        !(c = curl_easy_init())) {
        shoal_err_set(err, SHOAL_EIO, "out of memory");
        goto out;
    }
    if (nh == 0) {
        shoal_err_set(err, SHOAL_ENOTFOUND, "the swarm of '%.100s' lists no "
                      "holder", url);
        goto out;
    }
    if (ftruncate(fd, (off_t)v->size) < 0) {
        shoal_err_set(err, SHOAL_EIO, "cannot size the output: %s",
                      strerror(errno));
        goto out;
    }
    snprintf(auth, sizeof(auth), "Authorization: Bearer %s",
             ctx->session.session_id);
    hdr = curl_slist_append(NULL, auth);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdr);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, piece_write);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &pb);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, ebuf);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_PROXY, "");
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, 10L);
    curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, 1L);
    curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, 15L);
    for (uint64_t n = 0; n < v->npieces; n++) {
        uint32_t want = shoal_piece_len(v->size, v->piece_size, n);
        int got = 0;
        for (size_t h = 0; h < nh && !got; h++) {
            unsigned char md[SHOAL_HASH_BYTES];
            char *u = NULL;
            long status = 0;
            CURLcode cc;
            if (bad[h])
                continue;
            if (asprintf(&u, "%s/v1/files/%s/pieces/%" PRIu64 "?version=%"
                         PRIu64, holders[h], inj->file_id, n, v->version) < 0) {
                shoal_err_set(err, SHOAL_EIO, "out of memory");
                goto out;
            }
            pb.len = 0;
            pb.cap = want;
            pb.over = 0;
            ebuf[0] = '\0';
            curl_easy_setopt(c, CURLOPT_URL, u);
            cc = curl_easy_perform(c);
            free(u);
            curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
            if (cc != CURLE_OK && !pb.over) {
                pr_warn("holder '%s' cannot be reached: %s", holders[h],
                        ebuf[0] ? ebuf : curl_easy_strerror(cc));
                bad[h] = 1;
                continue;
            }
            if (!pb.over && status != 200) {
                pr_warn("holder '%s' answered %ld for piece %" PRIu64,
                        holders[h], status, n);
                bad[h] = 1;
                continue;
            }
            shoal_sha256(pb.buf, pb.len, md);
            if (pb.over || pb.len != want ||
                memcmp(md, v->hashes[n], sizeof(md)) != 0) {
                pr_warn("holder '%s' sent a piece %" PRIu64 " that does not "
                        "match the signed manifest: dropped", holders[h], n);
                bad[h] = 1;
                continue;
            }
            for (size_t done = 0; done < pb.len;) {
                ssize_t w = pwrite(fd, pb.buf + done, pb.len - done,
                                   (off_t)(n * v->piece_size + done));
                if (w < 0 && errno == EINTR)
                    continue;
                if (w <= 0) {
                    shoal_err_set(err, SHOAL_EIO, "cannot write the output: %s",
                                  strerror(errno));
                    goto out;
                }
                done += (size_t)w;
            }
            got = 1;
        }
        if (!got) {
            shoal_err_set(err, SHOAL_EINCOMPLETE, "no holder in the swarm of "
                          "'%.100s' sent a good piece %" PRIu64, url, n);
            goto out;
        }
    }
    rc = 0;
out:
    if (rc < 0) {
        json_decref(*ans);
        *ans = NULL;
    }
    if (c)
        curl_easy_cleanup(c);
    curl_slist_free_all(hdr);
    free(pb.buf);
    free(bad);
    free(holders);
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

int pr_urlobj_keep(struct pr_ctx *ctx, const char *dir,
                   const struct pr_inj *inj, int fd, const json_t *ans,
                   struct shoal_err *err)
{
    json_t *man = ans ? json_incref((json_t *)ans) : NULL;
    struct pr_version *v = NULL;
    struct pr_held *held = NULL;
    char *d = NULL;
    int rc = -1;

    if (manifest_get(ctx, inj->file_id, inj, &man, &v, err) < 0 ||
        !(d = pr_data_dir(dir, err)) || !(held = pr_held_open(d, err)) ||
        pr_held_import(held, v, fd, "the fetched object", NULL, NULL,
                       err) < 0 ||
        pr_held_record(held, v, man, err) < 0)
        goto out;
    rc = 0;
out:
    pr_held_close(held);
    pr_version_free(v);
    json_decref(man);
    free(d);
    return rc;
}
