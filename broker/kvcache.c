/*
 * kvcache.c - a fixed-size table of small values by string key, for
 * caches that must stay exact: every entry can be evicted the moment the
 * database announces a change, and a value read from the database before
 * an eviction is never stored after it (per-slot eviction epochs).
 *
 * A slot holds one entry; a new key landing on a taken slot replaces it
 * (it is a cache).  Entries also age out after ttl seconds.
 */
#include <stdlib.h>
#include <string.h>

#include "broker.h"

#define NLOCKS 64

struct br_kv {
    size_t nslots;                   /* power of two */
    size_t vsize;
    size_t stride;                   /* bytes per slot */
    unsigned char *slots;            /* key[KEY_MAX], stored, value */
    atomic_uint *epochs;
    pthread_mutex_t locks[NLOCKS];
    double ttl;
};

#define KEY_MAX 80

struct slot_head {
    char key[KEY_MAX];               /* "" when empty */
    double stored;                   /* monotonic */
};

static struct slot_head *slot(struct br_kv *kv, size_t i)
{
    return (struct slot_head *)(void *)(kv->slots + i * kv->stride);
}

static size_t slot_of(const struct br_kv *kv, const char *key)
{
    uint32_t h = 2166136261u;        /* FNV-1a */
    for (const char *p = key; *p; p++)
        h = (h ^ (unsigned char)*p) * 16777619u;
    return h & (kv->nslots - 1);
}

struct br_kv *br_kv_new(size_t nslots, size_t vsize, double ttl)
{
    struct br_kv *kv = calloc(1, sizeof *kv);
    if (kv == NULL)
        return NULL;
    size_t n = 1;
    while (n < nslots)
        n <<= 1;
    kv->nslots = n;
    kv->vsize = vsize;
    kv->stride = (sizeof(struct slot_head) + vsize + 15) / 16 * 16;
    kv->ttl = ttl;
    kv->slots = calloc(n, kv->stride);
    kv->epochs = calloc(n, sizeof *kv->epochs);
    if (kv->slots == NULL || kv->epochs == NULL) {
        free(kv->slots);
        free(kv->epochs);
        free(kv);
        return NULL;
    }
    for (int i = 0; i < NLOCKS; i++)
        pthread_mutex_init(&kv->locks[i], NULL);
    return kv;
}

void br_kv_free(struct br_kv *kv)
{
    if (kv == NULL)
        return;
    for (int i = 0; i < NLOCKS; i++)
        pthread_mutex_destroy(&kv->locks[i]);
    free(kv->slots);
    free(kv->epochs);
    free(kv);
}

unsigned br_kv_epoch(struct br_kv *kv, const char *key)
{
    return atomic_load(&kv->epochs[slot_of(kv, key)]);
}

int br_kv_get(struct br_kv *kv, const char *key, void *val)
{
    size_t i = slot_of(kv, key);
    int hit = 0;
    pthread_mutex_t *l = &kv->locks[i % NLOCKS];
    pthread_mutex_lock(l);
    struct slot_head *s = slot(kv, i);
    if (strcmp(s->key, key) == 0) {
        if (shoal_mono() - s->stored < kv->ttl) {
            memcpy(val, s + 1, kv->vsize);
            hit = 1;
        } else {
            s->key[0] = '\0';
        }
    }
    pthread_mutex_unlock(l);
    return hit;
}

void br_kv_put(struct br_kv *kv, const char *key, const void *val,
               unsigned epoch)
{
    if (strlen(key) >= KEY_MAX)
        return;
    size_t i = slot_of(kv, key);
    pthread_mutex_t *l = &kv->locks[i % NLOCKS];
    pthread_mutex_lock(l);
    if (atomic_load(&kv->epochs[i]) == epoch) {
        struct slot_head *s = slot(kv, i);
        strcpy(s->key, key);
        s->stored = shoal_mono();
        memcpy(s + 1, val, kv->vsize);
    }
    pthread_mutex_unlock(l);
}

void br_kv_evict(struct br_kv *kv, const char *key)
{
    size_t i = slot_of(kv, key);
    pthread_mutex_t *l = &kv->locks[i % NLOCKS];
    pthread_mutex_lock(l);
    struct slot_head *s = slot(kv, i);
    if (strcmp(s->key, key) == 0)
        s->key[0] = '\0';
    atomic_fetch_add(&kv->epochs[i], 1);
    pthread_mutex_unlock(l);
}

void br_kv_clear(struct br_kv *kv)
{
    for (size_t i = 0; i < kv->nslots; i++) {
        pthread_mutex_t *l = &kv->locks[i % NLOCKS];
        pthread_mutex_lock(l);
        slot(kv, i)->key[0] = '\0';
        atomic_fetch_add(&kv->epochs[i], 1);
        pthread_mutex_unlock(l);
    }
}
