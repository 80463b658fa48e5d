/*
 * vcache.c - versions in memory.  A version never changes once written,
 * so an entry needs no invalidation: it leaves when the byte budget needs
 * its room (least recently used first).  Entries are reference-counted:
 * a response that is still sending holds its entry.  Each entry also
 * keeps its X-Sign, signed again when the hour-rounded expiry moves.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "broker.h"

#define NBUCKETS 4096

struct br_vent {
    struct br_vent *prev, *next;     /* LRU list, most recent first */
    struct br_vent *hnext;           /* bucket chain */
    char key[48];                    /* "<file id>/<version>" */
    int refs;                        /* under the cache lock */
    int cached;                      /* in the table (else freed at 0 refs) */
    size_t bytes;
    struct br_version v;             /* every hash, first = 0 */
    pthread_mutex_t sign_lock;
    char xsign[SHOAL_XSIGN_MAX];
    long long xsign_exp;
};

struct br_vcache {
    pthread_mutex_t lock;
    struct br_vent *buckets[NBUCKETS];
    struct br_vent lru;              /* list head */
    size_t bytes, budget;
};

static size_t bucket_of(const char *key)
{
    uint32_t h = 2166136261u;
    for (const char *p = key; *p; p++)
        h = (h ^ (unsigned char)*p) * 16777619u;
    return h % NBUCKETS;
}

struct br_vcache *br_vcache_new(size_t budget)
{
    struct br_vcache *vc = calloc(1, sizeof *vc);
    if (vc == NULL)
        return NULL;
    pthread_mutex_init(&vc->lock, NULL);
    vc->lru.next = vc->lru.prev = &vc->lru;
    vc->budget = budget;
    return vc;
}

static void vent_free(struct br_vent *e)
{
    br_version_free(&e->v);
    pthread_mutex_destroy(&e->sign_lock);
    free(e);
}

static void unlink_lru(struct br_vent *e)
{
    e->prev->next = e->next;
    e->next->prev = e->prev;
}

static void push_front(struct br_vcache *vc, struct br_vent *e)
{
    e->next = vc->lru.next;
    e->prev = &vc->lru;
    vc->lru.next->prev = e;
    vc->lru.next = e;
}

/* Take e out of the table (the caller holds the lock). */
static void drop(struct br_vcache *vc, struct br_vent *e)
{
    struct br_vent **pp = &vc->buckets[bucket_of(e->key)];
    while (*pp && *pp != e)
        pp = &(*pp)->hnext;
    if (*pp)
        *pp = e->hnext;
    unlink_lru(e);
    vc->bytes -= e->bytes;
    e->cached = 0;
    if (e->refs == 0)
        vent_free(e);
}

void br_vcache_free(struct br_vcache *vc)
{
    if (vc == NULL)
        return;
    while (vc->lru.next != &vc->lru)
        drop(vc, vc->lru.next);
    pthread_mutex_destroy(&vc->lock);
    free(vc);
}

int br_vent_get(struct br_app *app, PGconn *conn, const char *file_id,
                int version, struct br_vent **out, struct shoal_err *err)
{
    struct br_vcache *vc = app->vcache;
    char key[48];
    snprintf(key, sizeof key, "%s/%d", file_id, version);

    pthread_mutex_lock(&vc->lock);
    for (struct br_vent *e = vc->buckets[bucket_of(key)]; e; e = e->hnext)
        if (strcmp(e->key, key) == 0) {
            e->refs++;
            unlink_lru(e);
            push_front(vc, e);
            pthread_mutex_unlock(&vc->lock);
            *out = e;
            return 0;
        }
    pthread_mutex_unlock(&vc->lock);

    struct br_vent *e = calloc(1, sizeof *e);
    if (e == NULL)
        return shoal_err_set(err, SHOAL_EINTERNAL, "out of memory");
    pthread_mutex_init(&e->sign_lock, NULL);
    if (br_version_load(conn, file_id, version, 0, UINT64_MAX / 64, &e->v,
                        err) != 0) {
        vent_free(e);
        return -1;
    }
    snprintf(e->key, sizeof e->key, "%s", key);
    e->bytes = sizeof *e + e->v.nhashes * 32;
    e->refs = 1;

    pthread_mutex_lock(&vc->lock);
    /* Another thread may have loaded it meanwhile: use theirs. */
    for (struct br_vent *o = vc->buckets[bucket_of(key)]; o; o = o->hnext)
        if (strcmp(o->key, key) == 0) {
            o->refs++;
            pthread_mutex_unlock(&vc->lock);
            vent_free(e);
            *out = o;
            return 0;
        }
    if (e->bytes <= vc->budget / 4) {
        while (vc->bytes + e->bytes > vc->budget && vc->lru.prev != &vc->lru)
            drop(vc, vc->lru.prev);
        size_t b = bucket_of(key);
        e->hnext = vc->buckets[b];
        vc->buckets[b] = e;
        push_front(vc, e);
        vc->bytes += e->bytes;
        e->cached = 1;
    }
    pthread_mutex_unlock(&vc->lock);
    *out = e;
    return 0;
}

void br_vent_put(struct br_app *app, struct br_vent *e)
{
    if (e == NULL)
        return;
    struct br_vcache *vc = app->vcache;
    pthread_mutex_lock(&vc->lock);
    int gone = --e->refs == 0 && !e->cached;
    pthread_mutex_unlock(&vc->lock);
    if (gone)
        vent_free(e);
}

const struct br_version *br_vent_version(const struct br_vent *e)
{
    return &e->v;
}

void br_vent_xsign(struct br_app *app, struct br_vent *e, const char *file_id,
                   char out[SHOAL_XSIGN_MAX])
{
    long long now = (long long)time(NULL);
    long long want = (now + app->sign_ttl + 3599) / 3600 * 3600;
    pthread_mutex_lock(&e->sign_lock);
    if (e->xsign_exp != want) {
        br_version_xsign(app, file_id, &e->v, e->xsign, &e->xsign_exp);
    }
    memcpy(out, e->xsign, SHOAL_XSIGN_MAX);
    pthread_mutex_unlock(&e->sign_lock);
}
