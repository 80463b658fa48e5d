/*
 * h_inject.c - the injector role: POST /v1/inject fetches a URL from its
 * origin (origin.c), streams the body back chunked while it hashes and
 * stores it as 512 KiB pieces, records it as a new version of the URL's
 * file (db_inject.c) and ends with X-Sign as a trailer; GET /v1/inject
 * and GET /v1/swarms/{swarm} return the record; POST /v1/challenge proves
 * the injector holds its key.
 *
 * A piece is named by its hash, which is known only once the piece is
 * whole: whole pieces go to storing threads (inject_store.c) that hash,
 * pin (db_inject.c, so that no sweeper removes a piece before the version
 * counts it) and store them while the body goes on to the caller.  The
 * version is committed and signed, and X-Sign sent, only once every piece
 * is stored.  Memory per injection: a few piece buffers (inject_store.c),
 * the origin buffer (origin.c) and 32 bytes per piece for the hashes.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <curl/curl.h>
#include <sodium.h>

#include "inject.h"
#include "injmeta.h"
#include "log.h"
#include "urlcanon.h"

#define NONCE_MIN 16                  /* bytes of a challenge nonce */
#define NONCE_MAX 64
#define MAX_SIZE_CAP (1ULL << 53)     /* JSON sizes stay exact */
#define TTL_MAX (3650LL * 86400)

/* --- set-up ------------------------------------------------------------- */

int br_inject_start(struct br_app *app, struct shoal_err *err)
{
    const struct shoal_config *cfg = app->cfg;
    struct br_inject *inj;
    unsigned long long max_size;

    if (!(app->roles & BR_ROLE_INJECTOR))
        return 0;
    if ((inj = calloc(1, sizeof *inj)) == NULL)
        return shoal_err_set(err, SHOAL_EINTERNAL, "out of memory");
    pthread_mutex_init(&inj->lock, NULL);
    app->inject = inj;
    if (shoal_cidr_list_parse(shoal_config_get(cfg, "inject_allow"), &inj->allow,
                              err) != 0) {
        char why[SHOAL_ERR_MSG_MAX];
        snprintf(why, sizeof why, "%s", err ? err->msg : "");
        return shoal_err_set(err, SHOAL_EINVAL, "inject_allow: %s", why);
    }
    if (shoal_config_size(cfg, "inject_max_size", &max_size, err) != 0 ||
        shoal_config_seconds(cfg, "inject_timeout", &inj->timeout, err) != 0 ||
        shoal_config_seconds(cfg, "inject_ttl", &inj->ttl, err) != 0)
        return -1;
    if (max_size < 1 || max_size > MAX_SIZE_CAP || inj->timeout < 1 ||
        inj->timeout > 86400 || inj->ttl < 0 || inj->ttl > TTL_MAX)
        return shoal_err_set(err, SHOAL_EINVAL,
                             "out of range: inject_max_size 1-8PiB,"
                             " inject_timeout 1s-1d, inject_ttl 0-3650d");
    inj->max_size = max_size;
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
        return shoal_err_set(err, SHOAL_EINTERNAL, "cannot start libcurl");
    inj->curl_started = 1;
    if ((inj->pool = br_origin_pool_new()) == NULL)
        return shoal_err_set(err, SHOAL_EINTERNAL, "out of memory");
    /* Injections cut short by a crash: their pieces are counted again
     * only by versions (the sweeper removes the others). */
    br_inject_unpin(app, app->broker_id, 1);
    return 0;
}

void br_inject_stop(struct br_app *app)
{
    struct br_inject *inj = app->inject;
    if (inj == NULL)
        return;
    br_origin_pool_free(inj->pool);
    shoal_cidr_list_free(inj->allow);
    pthread_mutex_destroy(&inj->lock);
    int started = inj->curl_started;
    free(inj);
    app->inject = NULL;
    if (started)
        curl_global_cleanup();
}

/* 404 unless this broker injects (which needs a piece store too). */
static int need_injector(const struct br_app *app, struct shoal_err *err)
{
    if (app->inject == NULL)
        return shoal_err_set(err, SHOAL_ENOTFOUND,
                             "this broker does not play the injector role");
    if (app->store == NULL)
        return shoal_err_set(err, SHOAL_ENOTFOUND,
                             "this broker injects only with the file role on");
    return 0;
}

/* url (len bytes as received) must be an absolute http or https URL of
 * RFC 3986 characters, with a host, without credentials: 0 with its
 * canonical form (urlcanon.h) in *canon, a new string the caller frees. */
static int inject_url(const char *url, size_t len, char **canon,
                      struct shoal_err *err)
{
    *canon = NULL;
    if (len == 0 || len > BR_INJECT_URL_MAX || strlen(url) != len)
        return shoal_err_set(err, SHOAL_EINVAL,
                             "'url' must be 1 to %d bytes without NUL",
                             BR_INJECT_URL_MAX);
    return shoal_url_canon(url, canon, err);
}

/* --- POST /v1/inject ----------------------------------------------------- */

struct injection {
    struct br_app *app;
    struct br_origin *o;
    char *url;
    char *meta;
    char share_id[37];
    char user_id[37];                  /* the caller, billed the egress */
    char id[37];                       /* this injection's, for its pins */
    char req_id[SHOAL_REQ_ID_LEN + 1];
    unsigned char swarm[32];
    unsigned char meta_hash[32];
    int status;
    long long expires;
    struct br_inject_store *st;        /* the pieces on their way to disk */
    uint64_t size;                     /* bytes stored */
    uint64_t sent;                     /* bytes handed to the client */
    int finished, failed;
};

/* The end of the body: the last piece, the version, the record. */
static int finish(struct injection *in, struct br_injected *rec,
                  struct shoal_err *err)
{
    const unsigned char (*hashes)[32] = NULL;
    uint64_t n = 0;

    if (br_inject_store_finish(in->st, &hashes, &n, &in->size, err) != 0)
        return -1;
    memset(rec, 0, sizeof *rec);
    rec->injection_id = in->id;
    rec->url = in->url;
    rec->swarm = in->swarm;
    rec->status = in->status;
    rec->meta = in->meta;
    memcpy(rec->meta_hash, in->meta_hash, 32);
    rec->size = in->size;
    rec->npieces = n;
    rec->hashes = hashes;
    shoal_merkle_root(rec->hashes, rec->npieces, rec->root);
    rec->expires = in->expires;
    return br_inject_commit(in->app, in->share_id, rec, err);
}

/* Give up: release the pins (the pieces that nothing else counts go),
 * and note the failure on the URL's record. */
static void give_up(struct injection *in, const char *why)
{
    int pinned = br_inject_store_stop(in->st);   /* no pin taken after it */

    in->failed = 1;
    br_inject_store_free(in->st);
    in->st = NULL;
    if (pinned)
        br_inject_unpin(in->app, in->id, 0);
    br_inject_failed(in->app, in->url, why);
    /* last: once it is logged, nothing of the injection is left */
    shoal_log(SHOAL_LOG_WARN, in->req_id, "inject '%.200s' failed after %llu"
              " bytes: %s", in->url, (unsigned long long)in->sent, why);
}

static long inject_read(void *cls, char *buf, size_t max,
                        struct shoal_trailers *tr)
{
    struct injection *in = cls;
    struct shoal_err err;
    struct br_injected rec;

    shoal_err_clear(&err);
    if (in->finished || in->failed)
        return in->finished ? 0 : -1;
    long n = br_origin_read(in->o, buf, max, &err);
    if (n > 0) {
        if (br_inject_store_feed(in->st, buf, (size_t)n, &err) != 0) {
            give_up(in, err.msg);
            return -1;
        }
        in->sent += (uint64_t)n;
        return n;
    }
    if (n < 0 || finish(in, &rec, &err) != 0) {
        give_up(in, err.msg);
        return -1;
    }
    in->finished = 1;
    if (shoal_trailer_add(tr, "X-Sign", rec.x_sign) != 0 ||
        shoal_trailer_add(tr, "X-Inject-File", rec.file_id) != 0) {
        shoal_log(SHOAL_LOG_ERROR, in->req_id, "inject: cannot add the trailers");
        return -1;
    }
    shoal_log(SHOAL_LOG_INFO, in->req_id, "injected '%.200s' as file %s version"
              " %d: %llu bytes, status %d", in->url, rec.file_id, rec.version,
              (unsigned long long)in->size, in->status);
    return 0;
}

static void injection_free(void *cls)
{
    struct injection *in = cls;
    if (in == NULL)
        return;
    if (!in->finished && !in->failed)
        give_up(in, "the client went away before the end of the body");
    if (in->sent > 0)
        br_usage_add(in->app, in->user_id, 0, in->sent, 0);
    br_origin_close(in->o);
    br_inject_store_free(in->st);
    free(in->url);
    free(in->meta);
    free(in);
}

/* The origin's Content-Type when it is a plain visible-ASCII value. */
static const char *content_type(const struct br_origin *o)
{
    const char *ct = br_origin_header(o, "content-type");
    if (ct == NULL || ct[0] == '\0' || strlen(ct) > 256)
        return "application/octet-stream";
    for (const char *p = ct; *p; p++)
        if ((unsigned char)*p < 0x20 || (unsigned char)*p >= 0x7f)
            return "application/octet-stream";
    return ct;
}

BR_HANDLER(h_inject)
{
    static const char *const keys[] = { "url", NULL };
    struct br_app *app = br_app_of(req);
    json_t *body = shoal_req_body(req);
    struct injection *in = NULL;
    const char *given, *url;
    char *canon = NULL;
    char *meta_b64 = NULL;

    (void)reply;
    if (need_injector(app, err) != 0 ||
        shoal_json_only(body, keys, err) != 0 ||
        shoal_json_str(body, "url", &given, err) != 0 ||
        inject_url(given, json_string_length(json_object_get(body, "url")),
                   &canon, err) != 0)
        return -1;
    if ((in = calloc(1, sizeof *in)) == NULL) {
        free(canon);
        return shoal_err_set(err, SHOAL_EINTERNAL, "out of memory");
    }
    in->app = app;
    snprintf(in->user_id, sizeof in->user_id, "%s", br_caller(req)->user_id);
    snprintf(in->req_id, sizeof in->req_id, "%s", shoal_req_id(req));
    shoal_uuid_v4(in->id);
    /* From here on the URL is the canonical one: fetched, signed,
     * recorded, and the swarm's name. */
    url = in->url = canon;
    if ((in->st = br_inject_store_new(app, in->id, err)) == NULL)
        goto fail;
    shoal_url_swarm(url, in->swarm);
    if (br_inject_share(app, in->share_id, err) != 0)
        goto fail;
    if (br_origin_open(app->inject, url, &in->o, err) != 0) {
        if (err && err->code == SHOAL_EBADGATEWAY)
            br_inject_failed(app, url, err->msg);
        goto fail;
    }

    /* What the signature will say besides the bytes. */
    const char *const *names, *const *values;
    size_t nh = br_origin_headers(in->o, &names, &values);
    in->status = br_origin_status(in->o);
    long long now = (long long)time(NULL);
    long long fresh = shoal_inject_freshness(br_origin_header(in->o, "cache-control"),
                                             br_origin_header(in->o, "expires"),
                                             br_origin_header(in->o, "date"), now);
    in->expires = now + (fresh < 0 || fresh > app->inject->ttl ? app->inject->ttl
                                                               : fresh);
    if ((in->meta = shoal_inject_meta(url, in->status, names, values, nh)) == NULL ||
        (meta_b64 = shoal_b64_encode((const unsigned char *)in->meta,
                                     strlen(in->meta))) == NULL) {
        shoal_err_set(err, SHOAL_EINTERNAL, "out of memory");
        goto fail;
    }
    shoal_sha256(in->meta, strlen(in->meta), in->meta_hash);

    char status[16], swarm_hex[65];
    snprintf(status, sizeof status, "%d", in->status);
    shoal_hex_encode(in->swarm, 32, swarm_hex);
    shoal_req_add_header(req, "X-Origin-Status", status);
    shoal_req_add_header(req, "X-Inject-Meta", meta_b64);
    shoal_req_add_header(req, "X-Swarm", swarm_hex);
    shoal_req_add_header(req, "Trailer", "X-Sign, X-Inject-File");
    free(meta_b64);
    meta_b64 = NULL;
    /* From here on the response owns the injection. */
    if (shoal_req_set_stream(req, 200, content_type(in->o), inject_read, in,
                             injection_free) != 0)
        return shoal_err_set(err, SHOAL_EINTERNAL, "out of memory");
    return 0;
fail:
    free(meta_b64);
    in->failed = 1;                    /* nothing was stored yet */
    injection_free(in);
    return -1;
}

/* --- GET /v1/inject?url=…, GET /v1/swarms/{swarm} -------------------------- */

/* The record, with X-Sign and X-Inject-File headers. */
static int record_reply(struct shoal_req *req, json_t *rec, json_t **reply,
                        struct shoal_err *err)
{
    if (rec == NULL)
        return -1;
    shoal_req_add_header(req, "X-Sign",
                         json_string_value(json_object_get(rec, "x_sign")));
    shoal_req_add_header(req, "X-Inject-File",
                         json_string_value(json_object_get(rec, "file_id")));
    *reply = rec;
    (void)err;
    return 0;
}

BR_HANDLER(h_inject_get)
{
    struct br_app *app = br_app_of(req);
    const char *url = shoal_req_query(req, "url");
    char *canon = NULL;
    if (url == NULL)
        return shoal_err_set(err, SHOAL_EINVAL, "missing query parameter 'url'");
    if (inject_url(url, strlen(url), &canon, err) != 0)
        return -1;
    int rc = record_reply(req, br_inject_record(app, canon, 0, err), reply, err);
    free(canon);
    return rc;
}

BR_HANDLER(h_swarm_get)
{
    struct br_app *app = br_app_of(req);
    const char *swarm = shoal_req_param(req, "swarm");
    unsigned char bin[32];
    struct br_vent *e = NULL;
    json_t *rec = NULL, *list = NULL;
    PGconn *c = NULL;
    int rc = -1;

    if (swarm == NULL || strlen(swarm) != 64 ||
        shoal_hex_decode_exact(swarm, bin, sizeof bin, "swarm", NULL) != 0)
        return shoal_err_set(err, SHOAL_EINVAL,
                             "swarm must be 64 lowercase hex digits,"
                             " sha256(\"url:\" + url)");
    if ((rec = br_inject_record(app, swarm, 1, err)) == NULL)
        return -1;
    const char *file_id = json_string_value(json_object_get(rec, "file_id"));
    int version = (int)json_integer_value(json_object_get(rec, "version"));
    if ((c = br_db_get(app->db, err)) == NULL)
        goto out;
    if (br_vent_get(app, c, file_id, version, &e, err) != 0)
        goto out;
    br_db_put(app->db, c);
    c = NULL;
    if ((list = json_array()) == NULL) {
        shoal_err_set(err, SHOAL_EINTERNAL, "out of memory");
        goto out;
    }
    if (br_peers_list(app, file_id, br_vent_version(e), list, err) != 0 ||
        json_object_set_new(rec, "peers", list) != 0)
        goto out;
    list = NULL;
    rc = record_reply(req, rec, reply, err);
    rec = NULL;
out:
    json_decref(list);
    json_decref(rec);
    br_db_put(app->db, c);
    br_vent_put(app, e);
    return rc;
}

/* --- POST /v1/challenge -------------------------------------------------- */

BR_HANDLER(h_challenge)
{
    static const char *const keys[] = { "nonce", NULL };
    struct br_app *app = br_app_of(req);
    json_t *body = shoal_req_body(req);
    unsigned char bin[NONCE_MAX], sig[SHOAL_SIG_BYTES];
    char text[256];
    const char *nonce, *end = NULL;
    size_t len = 0;

    if (app->inject == NULL)
        return shoal_err_set(err, SHOAL_ENOTFOUND,
                             "this broker does not play the injector role");
    if (shoal_json_only(body, keys, err) != 0 ||
        shoal_json_str(body, "nonce", &nonce, err) != 0)
        return -1;
    size_t nlen = json_string_length(json_object_get(body, "nonce"));
    char *canon = NULL;
    if (nlen > 4 * ((NONCE_MAX + 2) / 3) || strlen(nonce) != nlen ||
        sodium_base642bin(bin, sizeof bin, nonce, nlen, NULL, &len, &end,
                          sodium_base64_VARIANT_ORIGINAL) != 0 ||
        end != nonce + nlen || len < NONCE_MIN ||
        (canon = shoal_b64_encode(bin, len)) == NULL || strcmp(canon, nonce) != 0) {
        free(canon);
        return shoal_err_set(err, SHOAL_EINVAL,
                             "'nonce' must be padded base64 of %d to %d bytes",
                             NONCE_MIN, NONCE_MAX);
    }
    free(canon);
    int n = shoal_challenge_text(app->broker_id, nonce, text, sizeof text);
    if (n < 0)
        return shoal_err_set(err, SHOAL_EINTERNAL, "challenge text too long");
    shoal_sign(app->sk, (const unsigned char *)text, (size_t)n, sig);
    char *sig_b64 = shoal_b64_encode(sig, sizeof sig);
    char *pk_b64 = shoal_b64_encode(app->pk, sizeof app->pk);
    if (sig_b64 && pk_b64)
        *reply = json_pack("{s:s, s:s, s:s, s:s}", "broker_id", app->broker_id,
                           "nonce", nonce, "public_key", pk_b64,
                           "signature", sig_b64);
    free(sig_b64);
    free(pk_b64);
    return *reply ? 0 : shoal_err_set(err, SHOAL_EINTERNAL, "out of memory");
}
