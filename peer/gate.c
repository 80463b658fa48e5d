/*
 * gate.c - who may read what from this peer.
 *
 * Inner circle: the peer asks the trust broker
 * GET /v1/sessions/{sid}?ip=…&file=… and keeps a yes, keyed by session,
 * address and file, for at most the TTL and never past the session's
 * expiry.  A no is never kept.
 *
 * Trust bubble: the live sessions of the users who trust this peer's user
 * (GET /v1/trust/sessions, pulled regularly) are known here: their
 * address and expiry are checked without a round trip.  Whether their user
 * may read the file still comes from the broker, once per user and file
 * per TTL.
 *
 * The cache is direct-mapped: a slot taken by another key is a miss, and
 * a miss only costs a question to the broker.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "http.h"
#include "log.h"
#include "serve.h"
#include "util.h"

#define SLOTS 4096                   /* a power of two */
#define KEY_MAX (37 + SHOAL_IP_MAX + 37 + 4)

struct slot {
    char key[KEY_MAX];
    char user_id[37];
    double until;                    /* wall clock */
};

struct bubble {
    char sid[37];
    char ip[SHOAL_IP_MAX];
    char user_id[37];
    double expires;
};

struct pr_gate {
    struct pr_link *link;
    double ttl;
    pthread_mutex_t lock;            /* guards slots and the bubble */
    struct slot *slots;
    struct bubble *bubble;           /* sorted by sid */
    size_t nbubble;
    atomic_ullong cached, in_bubble, asked, refused;
};

struct pr_gate *pr_gate_new(struct pr_link *l, double ttl)
{
    struct pr_gate *g = calloc(1, sizeof(*g));

    if (!g)
        return NULL;
    if (!(g->slots = calloc(SLOTS, sizeof(*g->slots)))) {
        free(g);
        return NULL;
    }
    g->link = l;
    g->ttl = ttl;
    pthread_mutex_init(&g->lock, NULL);
    return g;
}

void pr_gate_free(struct pr_gate *g)
{
    if (!g)
        return;
    /* session ids are bearer secrets */
    memset(g->slots, 0, SLOTS * sizeof(*g->slots));
    free(g->slots);
    free(g->bubble);
    pthread_mutex_destroy(&g->lock);
    free(g);
}

static size_t slot_of(const char *key)
{
    uint32_t h = 2166136261u;
    for (const char *p = key; *p; p++)
        h = (h ^ (unsigned char)*p) * 16777619u;
    return h & (SLOTS - 1);
}

/* 1 with user_id filled when key is cached and fresh at now. */
static int cache_get(struct pr_gate *g, const char *key, double now,
                     char user_id[37])
{
    struct slot *s = &g->slots[slot_of(key)];
    int hit = 0;

    pthread_mutex_lock(&g->lock);
    if (s->until > now && strcmp(s->key, key) == 0) {
        memcpy(user_id, s->user_id, 37);
        hit = 1;
    }
    pthread_mutex_unlock(&g->lock);
    return hit;
}

static void cache_put(struct pr_gate *g, const char *key, const char *user_id,
                      double until)
{
    struct slot *s = &g->slots[slot_of(key)];

    pthread_mutex_lock(&g->lock);
    snprintf(s->key, sizeof(s->key), "%s", key);
    snprintf(s->user_id, sizeof(s->user_id), "%s", user_id);
    s->until = until;
    pthread_mutex_unlock(&g->lock);
}

static int cmp_sid(const void *a, const void *b)
{
    return strcmp(((const struct bubble *)a)->sid,
                  ((const struct bubble *)b)->sid);
}

/* 1 with *out filled when sid is in the trust bubble. */
static int bubble_find(struct pr_gate *g, const char *sid, struct bubble *out)
{
    struct bubble want;
    int found = 0;

    snprintf(want.sid, sizeof(want.sid), "%s", sid);
    pthread_mutex_lock(&g->lock);
    const struct bubble *b = g->nbubble
        ? bsearch(&want, g->bubble, g->nbubble, sizeof(*b), cmp_sid) : NULL;
    if (b) {
        *out = *b;
        found = 1;
    }
    pthread_mutex_unlock(&g->lock);
    return found;
}

/* What the peer answers when the broker said no (b) about session sid
 * and file_id (may be NULL).  Always -1. */
static int refusal(const struct shoal_err *b, const char *sid,
                   const char *file_id, int *close, struct shoal_err *err)
{
    int about_file = file_id && strncmp(b->msg, "file", 4) == 0;

    switch (b->code) {
    case SHOAL_ENOTFOUND:
        if (about_file)
            return shoal_err_set(err, SHOAL_ENOTFOUND, "file '%s' not found",
                                 file_id);
        return shoal_err_set(err, SHOAL_ESESSION_UNKNOWN, "session '%.8s…' is"
                             " unknown or revoked", sid);
    case SHOAL_EGONE:
        if (about_file)
            return shoal_err_set(err, SHOAL_EGONE, "file '%s' was deleted",
                                 file_id);
        return shoal_err_set(err, SHOAL_ESESSION_EXPIRED, "session '%.8s…' "
                             "expired", sid);
    case SHOAL_EIPMISMATCH:
        *close = 1;
        return shoal_err_set(err, SHOAL_EIPMISMATCH, "session '%.8s…' is "
                             "bound to another address", sid);
    case SHOAL_EFORBIDDEN:
        return shoal_err_set(err, SHOAL_EFORBIDDEN, "the user of session "
                             "'%.8s…' may not read file '%s'", sid,
                             file_id ? file_id : "");
    default:
        return shoal_err_set(err, SHOAL_EUNAVAILABLE, "cannot ask the trust "
                             "broker about a session: %s", b->msg);
    }
}

/* Ask the broker; 0 with user_id and the session's expiry, or -1. */
static int ask(struct pr_gate *g, const char *sid, const char *ip,
               const char *file_id, char user_id[37], double *expires,
               int *close, struct shoal_err *err)
{
    struct shoal_err b;
    json_t *ans = NULL;
    const char *exp_text;
    time_t exp;
    char path[256];
    int rc = -1;

    if (file_id)
        snprintf(path, sizeof(path), "/v1/sessions/%s?ip=%s&file=%s", sid, ip,
                 file_id);
    else
        snprintf(path, sizeof(path), "/v1/sessions/%s?ip=%s", sid, ip);
    atomic_fetch_add(&g->asked, 1);
    shoal_err_clear(&b);
    if (pr_link_call(g->link, "GET", path, NULL, &ans, NULL, &b) < 0) {
        refusal(&b, sid, file_id, close, err);
        goto out;
    }
    if (shoal_json_uuid(ans, "user_id", user_id, &b) < 0 ||
        shoal_json_str(ans, "expires_at", &exp_text, &b) < 0 ||
        shoal_time_parse(exp_text, &exp, &b) < 0) {
        shoal_err_set(err, SHOAL_EUNAVAILABLE, "unexpected answer of the trust"
                      " broker about a session: %s", b.msg);
        goto out;
    }
    *expires = (double)exp;
    rc = 0;
out:
    memset(path, 0, sizeof(path));
    json_decref(ans);
    return rc;
}

int pr_gate_check(struct pr_gate *g, const char *sid_in, const char *ip,
                  const char *file_id, char user_id[37], int *close,
                  struct shoal_err *err)
{
    char sid[37];
    char key[KEY_MAX];
    char ukey[KEY_MAX];
    struct bubble b;
    double now = shoal_now();
    double expires;
    int rc = -1;

    *close = 0;
    if (shoal_uuid_normalize(sid_in, sid, "session", NULL) < 0) {
        atomic_fetch_add(&g->refused, 1);
        return shoal_err_set(err, SHOAL_ESESSION_UNKNOWN, "the bearer token "
                             "is not a session");
    }
    snprintf(key, sizeof(key), "%s|%s|%s", sid, ip, file_id ? file_id : "");
    if (cache_get(g, key, now, user_id)) {
        atomic_fetch_add(&g->cached, 1);
        rc = 0;
        goto out;
    }
    if (bubble_find(g, sid, &b)) {
        if (strcmp(b.ip, ip) != 0) {
            *close = 1;
            shoal_err_set(err, SHOAL_EIPMISMATCH, "session '%.8s…' is bound "
                          "to another address", sid);
            goto refused;
        }
        if (b.expires <= now) {
            shoal_err_set(err, SHOAL_ESESSION_EXPIRED, "session '%.8s…' "
                          "expired", sid);
            goto refused;
        }
        snprintf(ukey, sizeof(ukey), "u|%s|%s", b.user_id,
                 file_id ? file_id : "");
        if (!file_id || cache_get(g, ukey, now, user_id)) {
            memcpy(user_id, b.user_id, 37);
            atomic_fetch_add(&g->in_bubble, 1);
            rc = 0;
            goto out;
        }
    }
    if (ask(g, sid, ip, file_id, user_id, &expires, close, err) < 0)
        goto refused;
    cache_put(g, key, user_id, now + g->ttl < expires ? now + g->ttl : expires);
    if (file_id) {
        snprintf(ukey, sizeof(ukey), "u|%s|%s", user_id, file_id);
        cache_put(g, ukey, user_id, now + g->ttl);
    }
    rc = 0;
    goto out;
refused:
    atomic_fetch_add(&g->refused, 1);
out:
    memset(sid, 0, sizeof(sid));
    memset(key, 0, sizeof(key));
    return rc;
}

int pr_gate_pull(struct pr_gate *g, struct shoal_err *err)
{
    json_t *ans = NULL;
    json_t *list;
    json_t *s;
    struct bubble *bs = NULL;
    size_t i, n = 0;
    int rc = -1;

    if (pr_link_call(g->link, "GET", "/v1/trust/sessions", NULL, &ans, NULL,
                     err) < 0)
        return -1;
    if (shoal_json_array(ans, "sessions", &list, err) < 0) {
        pr_err_answer(err, "GET /v1/trust/sessions");
        goto out;
    }
    bs = calloc(json_array_size(list) + 1, sizeof(*bs));
    if (!bs) {
        shoal_err_set(err, SHOAL_EIO, "out of memory");
        goto out;
    }
    json_array_foreach(list, i, s) {
        const char *ip;
        const char *exp;
        time_t t;
        struct bubble *b = &bs[n];
        if (shoal_json_uuid(s, "session_id", b->sid, NULL) < 0 ||
            shoal_json_uuid(s, "user_id", b->user_id, NULL) < 0 ||
            shoal_json_str(s, "ip", &ip, NULL) < 0 ||
            shoal_ip_canonical(ip, b->ip) < 0 ||
            shoal_json_str(s, "expires_at", &exp, NULL) < 0 ||
            shoal_time_parse(exp, &t, NULL) < 0) {
            shoal_log(SHOAL_LOG_WARN, NULL, "trust bubble: skipping session "
                      "%zu of the answer", i);
            continue;
        }
        b->expires = (double)t;
        n++;
    }
    qsort(bs, n, sizeof(*bs), cmp_sid);
    pthread_mutex_lock(&g->lock);
    struct bubble *old = g->bubble;
    size_t nold = g->nbubble;
    g->bubble = bs;
    g->nbubble = n;
    pthread_mutex_unlock(&g->lock);
    if (old)
        memset(old, 0, nold * sizeof(*old));
    free(old);
    bs = NULL;
    rc = 0;
out:
    free(bs);
    json_decref(ans);
    return rc;
}

void pr_gate_stats(struct pr_gate *g, struct pr_gate_stats *out)
{
    out->cached = atomic_load(&g->cached);
    out->bubble = atomic_load(&g->in_bubble);
    out->asked = atomic_load(&g->asked);
    out->refused = atomic_load(&g->refused);
    pthread_mutex_lock(&g->lock);
    out->bubble_size = g->nbubble;
    pthread_mutex_unlock(&g->lock);
}
