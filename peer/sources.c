/*
 * sources.c - who holds the pieces of a file version: the tracker's list
 * (GET /v1/files/{id}/peers, protocol.md section 12) turned into the
 * sources of a download, and the report of who served what.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "fetch.h"
#include "log.h"
#include "pex.h"
#include "util.h"

const char *pr_source_kind_name(enum pr_source_kind kind)
{
    switch (kind) {
    case PR_SOURCE_BROKER:
        return "broker";
    case PR_SOURCE_FILE_BROKER:
        return "file-broker";
    default:
        return "peer";
    }
}

void pr_sources_free(struct pr_source *s, int n)
{
    int i;

    for (i = 0; s && i < n; i++) {
        free(s[i].url);
        free(s[i].id);
        free(s[i].have);
    }
    free(s);
}

/* The sources being gathered. */
struct list {
    const struct pr_fetch *f;
    uint64_t count;              /* pieces of the version */
    struct pr_source *s;
    int n;
    char self[PR_URL_MAX];       /* f->self_url normalised, or "" */
    int peers_only;              /* a refresh: the peers alone */
    struct pr_swarm_view *view;  /* a refresh: the downloaders counted */
};

/* The tracker's entry of a peer: count it in l->view when it is another
 * downloader (an incomplete copy). */
static void view_count(struct list *l, const json_t *e, const char *url)
{
    char norm[PR_URL_MAX];

    if (!l->view || json_is_true(json_object_get(e, "complete")) ||
        pr_broker_url(url, norm, NULL) < 0 || strcmp(norm, l->self) == 0)
        return;
    l->view->members++;
    if (strcmp(norm, l->self) < 0)
        l->view->rank++;
}

/* Add a source; have (may be NULL: every piece) is decoded from base64.
 * 0 when added or skipped (a duplicate URL, a bad or empty bitfield),
 * -1 on ENOMEM. */
static int list_add(struct list *l, enum pr_source_kind kind,
                    const char *url, const char *id, const char *have,
                    struct shoal_err *err)
{
    size_t nbytes = (size_t)((l->count + 7) / 8);
    struct pr_source *s;
    char norm[PR_URL_MAX];
    uint64_t p;
    int i;

    if (l->n >= PR_FETCH_SOURCES_MAX)
        return 0;
    if (pr_broker_url(url, norm, NULL) < 0) {
        shoal_log(SHOAL_LOG_DEBUG, NULL, "tracker: skipping a holder with "
                  "an unusable URL");
        return 0;
    }
    for (i = 0; i < l->n; i++)
        if (strcmp(l->s[i].url, norm) == 0)
            return 0;
    if (l->self[0] && strcmp(l->self, norm) == 0)
        return 0;                       /* this peer's own serve */
    s = &l->s[l->n];
    memset(s, 0, sizeof(*s));
    s->kind = kind;
    s->live = 1;
    s->held = l->count;
    if (!(s->url = strdup(norm)) || (id && !(s->id = strdup(id))))
        goto enomem;
    if (have) {
        if (!(s->have = calloc(nbytes ? nbytes : 1, 1)))
            goto enomem;
        if (shoal_b64_decode_exact(have, s->have, nbytes, "have",
                                   NULL) < 0) {
            shoal_log(SHOAL_LOG_DEBUG, NULL, "tracker: skipping '%s': its "
                      "bitfield is not %zu bytes of base64", norm, nbytes);
            goto skip;
        }
        s->held = 0;
        for (p = 0; p < l->count; p++)
            s->held += pr_source_has(s, p) ? 1 : 0;
        if (s->held == l->count) {      /* complete: no bitfield needed */
            free(s->have);
            s->have = NULL;
        }
    }
    if (s->held == 0)
        goto skip;
    l->n++;
    return 0;
skip:
    free(s->url);
    free(s->id);
    free(s->have);
    return 0;
enomem:
    free(s->url);
    free(s->id);
    free(s->have);
    return shoal_err_set(err, SHOAL_EIO, "out of memory");
}

/* The bitfield of another file broker: its GET /v1/files/{id}/have with
 * the session.  New string (free()), or NULL when it cannot say. */
static char *broker_have(const struct list *l, const char *url)
{
    const struct pr_fetch *f = l->f;
    struct shoal_client *c = shoal_client_new(url, 10);
    struct shoal_err e;
    json_t *ans = NULL;
    const char *have;
    char *out = NULL;
    char path[128];

    if (!c)
        return NULL;
    shoal_client_set_bearer(c, f->ctx->session.session_id);
    snprintf(path, sizeof(path), "/v1/files/%s/have?version=%" PRIu64,
             f->file_id, f->version);
    shoal_err_clear(&e);
    if (shoal_client_call(c, "GET", path, NULL, &ans, NULL, &e) < 0)
        shoal_log(SHOAL_LOG_DEBUG, NULL, "file broker '%s' cannot say what "
                  "it holds: %s", url, e.msg);
    else if ((have = json_string_value(json_object_get(ans, "have"))))
        out = strdup(have);
    json_decref(ans);
    shoal_client_free(c);
    return out;
}

/* 1 when the tracker's broker entry e is the broker of the identity. */
static int is_home(const struct pr_ctx *ctx, const char *broker_id,
                   const char *url)
{
    char norm[PR_URL_MAX];

    if (ctx->id->broker_id[0] && broker_id)
        return strcasecmp(ctx->id->broker_id, broker_id) == 0;
    return url && pr_broker_url(url, norm, NULL) == 0 &&
           strcmp(norm, ctx->id->broker) == 0;
}

/* Take the tracker's answer ans into l.  -1 with err on ENOMEM only;
 * *usable is 0 when the answer is not about this version. */
static int list_take(struct list *l, const json_t *ans, int *usable,
                     struct shoal_err *err)
{
    const struct pr_fetch *f = l->f;
    json_t *peers = json_object_get(ans, "peers");
    json_t *pieces = json_object_get(ans, "pieces");
    json_t *e;
    size_t i;
    int pass;

    *usable = json_is_array(peers) && json_is_integer(pieces) &&
              (uint64_t)json_integer_value(pieces) == l->count;
    if (!*usable)
        return 0;
    /* the brokers first (the identity's own first of all), then peers */
    for (pass = l->peers_only ? 2 : 0; pass < 3; pass++) {
        json_array_foreach(peers, i, e) {
            const char *kind = json_string_value(json_object_get(e, "kind"));
            const char *url = json_string_value(json_object_get(e, "url"));
            const char *have = json_string_value(json_object_get(e, "have"));
            const char *bid = json_string_value(json_object_get(e,
                                                                "broker_id"));
            const char *uid = json_string_value(json_object_get(e, "user_id"));
            char *asked = NULL;
            int rc;

            if (!kind || !url)
                continue;
            if (strcmp(kind, "broker") == 0) {
                int home = is_home(f->ctx, bid, url);

                if (pass == 0 && home)
                    rc = list_add(l, PR_SOURCE_BROKER, f->ctx->id->broker,
                                  bid, have, err);
                else if (pass == 1 && !home) {
                    if (!have && !(have = asked = broker_have(l, url)))
                        continue;
                    rc = list_add(l, PR_SOURCE_FILE_BROKER, url, bid, have,
                                  err);
                } else
                    continue;
            } else if (strcmp(kind, "peer") == 0 && pass == 2) {
                view_count(l, e, url);
                if (!have)
                    continue;
                rc = list_add(l, PR_SOURCE_PEER, url, uid, have, err);
            } else {
                continue;
            }
            free(asked);
            if (rc < 0)
                return -1;
        }
    }
    return 0;
}

/* pr_pex_add_fn of pr_pex_find: one source into the list. */
struct pex_arg {
    struct list *l;
    struct shoal_err *err;
};

static int pex_add(void *arg, enum pr_source_kind kind, const char *url,
                   const char *id, const char *have)
{
    struct pex_arg *a = arg;

    return list_add(a->l, kind, url, id, have, a->err);
}

/* 1 when a tracker failure with code means the broker cannot answer
 * (rather than a refusal): the holders known here are asked instead. */
static int tracker_down(enum shoal_code code)
{
    return code == SHOAL_ENET || code == SHOAL_EUNAVAILABLE ||
           code == SHOAL_EINTERNAL || code == SHOAL_EBADGATEWAY ||
           code == SHOAL_EPROTO;
}

/* A new list for f: room for PR_FETCH_SOURCES_MAX.  -1 on ENOMEM. */
static int list_init(struct list *l, const struct pr_fetch *f,
                     struct shoal_err *err)
{
    memset(l, 0, sizeof(*l));
    l->f = f;
    l->count = shoal_piece_count(f->size, f->piece_size);
    if (f->self_url && pr_broker_url(f->self_url, l->self, NULL) < 0)
        l->self[0] = '\0';
    l->s = calloc(PR_FETCH_SOURCES_MAX, sizeof(*l->s));
    if (!l->s)
        return shoal_err_set(err, SHOAL_EIO, "out of memory");
    return 0;
}

/* GET /v1/files/{id}/peers?version=V into *ans, the failure in e. */
static int tracker_ask(const struct pr_fetch *f, json_t **ans,
                       struct shoal_err *e)
{
    char path[128];

    snprintf(path, sizeof(path), "/v1/files/%s/peers?version=%" PRIu64,
             f->file_id, f->version);
    shoal_err_clear(e);
    return pr_call(f->ctx, "GET", path, NULL, ans, e);
}

int pr_sources_peers(const struct pr_fetch *f, struct pr_source **out,
                     int *n, struct pr_swarm_view *view,
                     struct shoal_err *err)
{
    struct list l;
    struct shoal_err e;
    json_t *ans = NULL;
    int usable = 0;

    *out = NULL;
    *n = 0;
    if (list_init(&l, f, err) < 0)
        return -1;
    l.peers_only = 1;
    if (view && l.self[0]) {
        view->members = 1;           /* this peer */
        view->rank = 0;
        l.view = view;
    }
    if (tracker_ask(f, &ans, &e) < 0) {
        shoal_log(SHOAL_LOG_DEBUG, NULL, "tracker: %s", e.msg);
        if (view)
            view->members = 0;
    } else if (list_take(&l, ans, &usable, err) < 0) {
        json_decref(ans);
        pr_sources_free(l.s, l.n);
        return -1;
    }
    json_decref(ans);
    *out = l.s;
    *n = l.n;
    return 0;
}

int pr_sources_find(const struct pr_fetch *f, struct pr_source **out,
                    int *n, struct shoal_err *err)
{
    struct list l;
    struct shoal_err e;
    json_t *ans = NULL;
    int usable = 0;

    *out = NULL;
    *n = 0;
    if (list_init(&l, f, err) < 0)
        return -1;
    if (!f->broker_only) {
        if (tracker_ask(f, &ans, &e) < 0) {
            struct pex_arg pa = { &l, err };
            if (tracker_down(e.code) && f->data_dir) {
                shoal_log(SHOAL_LOG_INFO, NULL, "tracker: %s; asking the "
                          "holders known here", e.msg);
                /* a broker that answers 5xx may still serve content */
                if ((e.code != SHOAL_ENET &&
                     list_add(&l, PR_SOURCE_BROKER, f->ctx->id->broker,
                              f->ctx->id->broker_id[0] ?
                              f->ctx->id->broker_id : NULL, NULL, err) < 0) ||
                    pr_pex_find(f, 1, pex_add, &pa) < 0)
                    goto fail;
                usable = l.n > 0;
            }
            if (!usable)
                shoal_log(SHOAL_LOG_DEBUG, NULL, "tracker: %s; downloading "
                          "from the broker alone", e.msg);
        } else if (list_take(&l, ans, &usable, err) < 0)
            goto fail;
        else if (!usable)
            shoal_log(SHOAL_LOG_DEBUG, NULL, "tracker: its answer is not "
                      "about version %" PRIu64 "; downloading from the "
                      "broker alone", f->version);
        json_decref(ans);
        ans = NULL;
    }
    if (!usable) {
        pr_sources_free(l.s, l.n);
        l.s = calloc(PR_FETCH_SOURCES_MAX, sizeof(*l.s));
        l.n = 0;
        if (!l.s || list_add(&l, PR_SOURCE_BROKER, f->ctx->id->broker,
                             f->ctx->id->broker_id[0] ?
                             f->ctx->id->broker_id : NULL, NULL, err) < 0)
            goto fail;
    }
    *out = l.s;
    *n = l.n;
    return 0;
fail:
    json_decref(ans);
    pr_sources_free(l.s, l.n);
    if (!l.s)
        shoal_err_set(err, SHOAL_EIO, "out of memory");
    return -1;
}

/* --- the report ---------------------------------------------------------- */

void pr_fetch_report_print(const struct pr_fetch_report *r, FILE *out)
{
    int i;

    for (i = 0; r && i < r->n; i++) {
        const struct pr_source *s = &r->sources[i];

        fprintf(out, "source %s %s: %" PRIu64 " piece%s, %" PRIu64 " bytes",
                pr_source_kind_name(s->kind), s->url, s->pieces,
                s->pieces == 1 ? "" : "s", s->bytes);
        if (!s->live)
            fprintf(out, ", dropped: %s", s->why);
        fputc('\n', out);
    }
    fflush(out);
}

json_t *pr_fetch_report_json(const struct pr_fetch_report *r)
{
    json_t *a = json_array();
    int i;

    for (i = 0; a && r && i < r->n; i++) {
        const struct pr_source *s = &r->sources[i];
        json_t *o = json_pack("{s:s, s:o, s:o, s:I, s:I, s:I, s:o}",
                              "kind", pr_source_kind_name(s->kind),
                              "url", shoal_json_string_lossy(s->url),
                              "id", s->id ? json_string(s->id) : json_null(),
                              "held", (json_int_t)s->held,
                              "pieces", (json_int_t)s->pieces,
                              "bytes", (json_int_t)s->bytes,
                              "dropped", s->live ? json_null() :
                              shoal_json_string_lossy(s->why));

        if (!o || json_array_append_new(a, o) < 0) {
            json_decref(a);
            return NULL;
        }
    }
    return a;
}

void pr_fetch_report_free(struct pr_fetch_report *r)
{
    if (!r)
        return;
    pr_sources_free(r->sources, r->n);
    free(r);
}
