/*
 * pexfind.c - peer exchange on the wire: the holders 'shoal serve'
 * lists on GET /v1/peers?file=ID, and how 'shoal get' finds holders
 * through the peers it knows when the tracker cannot be asked
 * (protocol.md, sections 12 and 13).
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "log.h"
#include "pex.h"
#include "pieceserve.h"
#include "util.h"

#define ANSWER_MAX 64                /* entries of one /v1/peers answer */
#define SELF_MAX 16                  /* versions of one file listed */

/* --- get: the holders known here, then one hop ---------------------- */

/* 1 when url is the identity's broker. */
static int is_home(const struct pr_fetch *f, const char *url)
{
    return strcmp(url, f->ctx->id->broker) == 0;
}

/* Add the entry e (of holders.json or of an answer) when it is about f's
 * version. */
static int take(const struct pr_fetch *f, int skip_home, const json_t *e,
                pr_pex_add_fn *add, void *arg)
{
    const char *url = json_string_value(json_object_get(e, "url"));
    const char *kind = json_string_value(json_object_get(e, "kind"));
    const char *fid = json_string_value(json_object_get(e, "file_id"));
    const char *have = json_string_value(json_object_get(e, "have"));
    char norm[PR_URL_MAX];

    if (!url || !kind || !fid || strcasecmp(fid, f->file_id) != 0 ||
        (uint64_t)json_integer_value(json_object_get(e, "version")) !=
            f->version || pr_broker_url(url, norm, NULL) < 0)
        return 0;
    if (strcmp(kind, "broker") == 0) {
        if (is_home(f, norm))
            return skip_home ? 0 : add(arg, PR_SOURCE_BROKER, norm, NULL, have);
        return add(arg, PR_SOURCE_FILE_BROKER, norm, NULL, have);
    }
    if (strcmp(kind, "peer") != 0)
        return 0;
    return add(arg, PR_SOURCE_PEER, norm, NULL, have);
}

/* GET url/v1/peers?file=&version= with the session: the entries, a new
 * reference, or NULL. */
static json_t *ask(const struct pr_fetch *f, const char *url)
{
    struct shoal_client *c = shoal_client_new(url, PR_PEX_TIMEOUT);
    struct shoal_err e;
    json_t *ans = NULL;
    json_t *list = NULL;
    char path[160];

    if (!c)
        return NULL;
    shoal_client_set_bearer(c, f->ctx->session.session_id);
    snprintf(path, sizeof(path), "/v1/peers?file=%s&version=%" PRIu64,
             f->file_id, f->version);
    shoal_err_clear(&e);
    if (shoal_client_call(c, "GET", path, NULL, &ans, NULL, &e) < 0)
        shoal_log(SHOAL_LOG_DEBUG, NULL, "peer exchange: '%s' cannot say who "
                  "holds file '%s': %s", url, f->file_id, e.msg);
    else if (json_is_array(json_object_get(ans, "peers")))
        list = json_incref(json_object_get(ans, "peers"));
    json_decref(ans);
    shoal_client_free(c);
    return list;
}

int pr_pex_find(const struct pr_fetch *f, int skip_home, pr_pex_add_fn *add,
                void *arg)
{
    json_t *known = pr_holders_load(f->data_dir);
    json_t *e;
    char *asked[PR_PEX_ASK_MAX];
    size_t i;
    int nasked = 0;
    int rc = 0;

    if (!f->data_dir || !known) {
        json_decref(known);
        return 0;
    }
    /* the peers known here are asked first: what a peer says of itself
     * is fresher than what was kept of it */
    json_array_foreach(known, i, e) {
        const char *url = json_string_value(json_object_get(e, "url"));
        const char *kind = json_string_value(json_object_get(e, "kind"));
        const char *fid = json_string_value(json_object_get(e, "file_id"));
        if (nasked < PR_PEX_ASK_MAX && strcmp(kind, "peer") == 0 &&
            strcasecmp(fid, f->file_id) == 0 &&
            (asked[nasked] = strdup(url)))
            nasked++;
    }
    /* one hop: what the peers known here know (not asked further) */
    for (int k = 0; k < nasked; k++) {
        json_t *list = ask(f, asked[k]);
        size_t j;
        json_array_foreach(list, j, e) {
            if (j >= ANSWER_MAX)
                break;
            if (take(f, skip_home, e, add, arg) < 0) {
                json_decref(list);
                rc = -1;
                goto out;
            }
        }
        json_decref(list);
    }
    json_array_foreach(known, i, e) {
        if (take(f, skip_home, e, add, arg) < 0) {
            rc = -1;
            goto out;
        }
    }
out:
    for (int k = 0; k < nasked; k++)
        free(asked[k]);
    json_decref(known);
    return rc;
}

/* --- serve: GET /v1/peers?file=ID[&version=N] ---------------------- */

int pr_serve_h_peers(struct shoal_req *req, json_t **reply,
                     struct shoal_err *err)
{
    struct pr_srv *srv = shoal_req_app(req);
    struct pr_served *self[SELF_MAX];
    const char *file = shoal_req_query(req, "file");
    const char *vq = shoal_req_query(req, "version");
    json_t *list = NULL;
    json_t *known = NULL;
    json_t *e;
    uint64_t version = 0;
    size_t nself = 0, i;
    char id[37];
    char ts[32];

    if (!file || shoal_uuid_normalize(file, id, "file", NULL) < 0)
        return shoal_err_set(err, SHOAL_EINVAL, "'file' must be a file id, "
                             "not '%.64s'", file ? file : "");
    if (vq) {
        char *end;
        unsigned long long n = strtoull(vq, &end, 10);
        if (*vq < '1' || *vq > '9' || *end || n > 2147483647)
            return shoal_err_set(err, SHOAL_EINVAL, "'version' must be a "
                                 "positive integer, not '%.32s'", vq);
        version = n;
    }
    if (!(list = json_array()))
        goto nomem;
    /* this peer itself, for the versions it serves */
    pthread_mutex_lock(&srv->lock);
    for (i = 0; i < srv->n && nself < SELF_MAX; i++) {
        struct pr_served *s = srv->tab[i];
        if (s->admitted && !s->gone && strcmp(s->v->file_id, id) == 0 &&
            (!version || s->v->version == version)) {
            s->refs++;
            self[nself++] = s;
        }
    }
    pthread_mutex_unlock(&srv->lock);
    shoal_time_format(time(NULL), ts);
    for (i = 0; i < nself; i++) {
        struct pr_served *s = self[i];
        uint64_t held = 0;
        char *have = shoal_pieceserve_have(
            pr_held_store(srv->held),
            (const unsigned char (*)[SHOAL_HASH_BYTES])s->v->hashes,
            s->v->npieces, &held);
        if (have && held > 0 && !pr_serve_seeded_out(srv, s))
            json_array_append_new(list, json_pack(
                "{s:s, s:s, s:s, s:I, s:s, s:s}", "url", srv->advertise,
                "kind", "peer", "file_id", id,
                "version", (json_int_t)s->v->version, "have", have,
                "seen_at", ts));
        free(have);
    }
    for (i = 0; i < nself; i++)
        pr_serve_put(srv, self[i]);
    /* the holders this peer knows of (shared with its own get) */
    known = pr_holders_load(pr_held_dir(srv->held));
    json_array_foreach(known, i, e) {
        const char *u = json_string_value(json_object_get(e, "url"));
        const char *f = json_string_value(json_object_get(e, "file_id"));
        if (json_array_size(list) >= ANSWER_MAX)
            break;
        if (strcasecmp(f, id) != 0 || strcmp(u, srv->advertise) == 0 ||
            (version && (uint64_t)json_integer_value(
                            json_object_get(e, "version")) != version))
            continue;
        json_array_append(list, e);
    }
    json_decref(known);
    /* "o" steals list, also when the pack fails */
    if (!(*reply = json_pack("{s:s, s:o}", "file_id", id, "peers", list)))
        return shoal_err_set(err, SHOAL_EINTERNAL, "out of memory");
    return 0;
nomem:
    json_decref(list);
    return shoal_err_set(err, SHOAL_EINTERNAL, "out of memory");
}
