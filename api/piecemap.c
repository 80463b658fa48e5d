/*
 * piecemap.c - a cache of read-only memory maps of stored pieces (see
 * piecemap.h).
 *
 * A table of live maps by hash (chained, a power of two of buckets) and a
 * list of them, most recently used first.  A map leaves the table when it
 * is evicted or its piece is removed; it is unmapped when it has left the
 * table and no response holds it.  mmap and munmap run outside the lock.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "piecemap.h"

struct shoal_pmap {
    unsigned char hash[SHOAL_HASH_BYTES];
    unsigned char *addr;
    size_t len;
    int refs;
    int live;                          /* in the table and the list */
    struct shoal_pmap *chain;          /* next in its bucket */
    struct shoal_pmap *prev, *next;    /* the list, most recent first */
};

struct shoal_piecemap {
    struct shoal_store *store;
    pthread_mutex_t lock;
    struct shoal_pmap **buckets;
    size_t nbuckets;                   /* a power of two */
    size_t nlive;
    struct shoal_pmap list;            /* sentinel of the list */
    uint64_t bytes, cap;
    uint64_t hits, misses;
};

static size_t bucket_of(const struct shoal_piecemap *m,
                        const unsigned char hash[SHOAL_HASH_BYTES])
{
    uint64_t h;
    memcpy(&h, hash, sizeof h);        /* a SHA-256: already uniform */
    return (size_t)h & (m->nbuckets - 1);
}

static void on_remove(void *ctx, const unsigned char hash[SHOAL_HASH_BYTES])
{
    shoal_piecemap_forget(ctx, hash);
}

struct shoal_piecemap *shoal_piecemap_new(struct shoal_store *store,
                                          uint64_t cap)
{
    struct shoal_piecemap *m = calloc(1, sizeof *m);
    if (m == NULL)
        return NULL;
    m->store = store;
    m->cap = cap;
    m->nbuckets = 1024;
    while (m->nbuckets < cap / (256 * 1024) && m->nbuckets < (1u << 20))
        m->nbuckets *= 2;
    if ((m->buckets = calloc(m->nbuckets, sizeof *m->buckets)) == NULL) {
        free(m);
        return NULL;
    }
    pthread_mutex_init(&m->lock, NULL);
    m->list.prev = m->list.next = &m->list;
    shoal_store_on_remove(store, on_remove, m);
    return m;
}

static void unmap(struct shoal_pmap *p)
{
    munmap(p->addr, p->len);
    free(p);
}

void shoal_piecemap_free(struct shoal_piecemap *m)
{
    if (m == NULL)
        return;
    shoal_store_on_remove(m->store, NULL, NULL);
    while (m->list.next != &m->list) {
        struct shoal_pmap *p = m->list.next;
        m->list.next = p->next;
        unmap(p);
    }
    free(m->buckets);
    pthread_mutex_destroy(&m->lock);
    free(m);
}

static void list_unlink(struct shoal_pmap *p)
{
    p->prev->next = p->next;
    p->next->prev = p->prev;
}

static void list_push(struct shoal_piecemap *m, struct shoal_pmap *p)
{
    p->next = m->list.next;
    p->prev = &m->list;
    m->list.next->prev = p;
    m->list.next = p;
}

/* The live map of hash (lock held), or NULL. */
static struct shoal_pmap *find(struct shoal_piecemap *m,
                               const unsigned char hash[SHOAL_HASH_BYTES])
{
    for (struct shoal_pmap *p = m->buckets[bucket_of(m, hash)]; p; p = p->chain)
        if (memcmp(p->hash, hash, SHOAL_HASH_BYTES) == 0)
            return p;
    return NULL;
}

/* Take p out of the table and the list (lock held); 1 when nothing holds
 * it and the caller must unmap it. */
static int retire(struct shoal_piecemap *m, struct shoal_pmap *p)
{
    struct shoal_pmap **pp = &m->buckets[bucket_of(m, p->hash)];
    while (*pp != p)
        pp = &(*pp)->chain;
    *pp = p->chain;
    list_unlink(p);
    p->live = 0;
    m->nlive--;
    m->bytes -= p->len;
    return p->refs == 0;
}

/* While over the cap, retire the least recently used maps that nothing
 * holds, at most max of them into drop (lock held; the caller unmaps
 * them).  Their number. */
static int evict(struct shoal_piecemap *m, struct shoal_pmap **drop, int max)
{
    int n = 0;
    struct shoal_pmap *q = m->list.prev;
    while (m->bytes > m->cap && q != &m->list && n < max) {
        struct shoal_pmap *prev = q->prev;
        if (q->refs == 0 && retire(m, q))
            drop[n++] = q;
        q = prev;
    }
    return n;
}

/* Map the piece, outside the lock. */
static struct shoal_pmap *map_piece(struct shoal_piecemap *m,
                                    const unsigned char hash[SHOAL_HASH_BYTES],
                                    uint64_t len, struct shoal_err *err)
{
    int fd;
    uint64_t size;

    if (shoal_store_open_piece(m->store, hash, &fd, &size, err) != 0)
        return NULL;
    if (size != len || len == 0 || len > SIZE_MAX) {
        close(fd);
        shoal_err_set(err, SHOAL_EIO, "a stored piece has %llu bytes, not %llu",
                      (unsigned long long)size, (unsigned long long)len);
        return NULL;
    }
    struct shoal_pmap *p = calloc(1, sizeof *p);
    void *addr = p ? mmap(NULL, (size_t)len, PROT_READ, MAP_SHARED | MAP_POPULATE,
                          fd, 0)
                   : MAP_FAILED;
    int e = errno;
    close(fd);
    if (addr == MAP_FAILED) {
        free(p);
        shoal_err_set(err, SHOAL_EIO, "cannot map a piece: %s", strerror(e));
        return NULL;
    }
    memcpy(p->hash, hash, SHOAL_HASH_BYTES);
    p->addr = addr;
    p->len = (size_t)len;
    return p;
}

struct shoal_pmap *shoal_piecemap_get(struct shoal_piecemap *m,
                                      const unsigned char hash[SHOAL_HASH_BYTES],
                                      uint64_t len, struct shoal_err *err)
{
    pthread_mutex_lock(&m->lock);
    struct shoal_pmap *p = find(m, hash);
    if (p != NULL && p->len == len) {
        p->refs++;
        m->hits++;
        list_unlink(p);
        list_push(m, p);
        pthread_mutex_unlock(&m->lock);
        return p;
    }
    pthread_mutex_unlock(&m->lock);

    struct shoal_pmap *made = map_piece(m, hash, len, err);
    if (made == NULL)
        return NULL;
    made->refs = 1;

    struct shoal_pmap *drop[8];
    int ndrop = 0;
    pthread_mutex_lock(&m->lock);
    m->misses++;
    if ((p = find(m, hash)) != NULL && retire(m, p))   /* another thread's */
        drop[ndrop++] = p;
    made->live = 1;
    size_t b = bucket_of(m, hash);
    made->chain = m->buckets[b];
    m->buckets[b] = made;
    list_push(m, made);
    m->nlive++;
    m->bytes += made->len;
    ndrop += evict(m, drop + ndrop, 8 - ndrop);
    pthread_mutex_unlock(&m->lock);
    for (int i = 0; i < ndrop; i++)
        unmap(drop[i]);
    return made;
}

const unsigned char *shoal_pmap_bytes(const struct shoal_pmap *p)
{
    return p->addr;
}

void shoal_piecemap_put(struct shoal_piecemap *m, struct shoal_pmap *p)
{
    if (p == NULL)
        return;
    struct shoal_pmap *drop[4];
    int ndrop = 0;
    pthread_mutex_lock(&m->lock);
    if (--p->refs == 0 && !p->live)
        drop[ndrop++] = p;
    else if (p->refs == 0)             /* maps held a while may have */
        ndrop = evict(m, drop, 4);     /* kept the cache over its size */
    pthread_mutex_unlock(&m->lock);
    for (int i = 0; i < ndrop; i++)
        unmap(drop[i]);
}

void shoal_piecemap_forget(struct shoal_piecemap *m,
                           const unsigned char hash[SHOAL_HASH_BYTES])
{
    pthread_mutex_lock(&m->lock);
    struct shoal_pmap *p = find(m, hash);
    int gone = p != NULL && retire(m, p);
    pthread_mutex_unlock(&m->lock);
    if (gone)
        unmap(p);
}

void shoal_piecemap_stats(struct shoal_piecemap *m, uint64_t *hits,
                          uint64_t *misses, uint64_t *bytes)
{
    pthread_mutex_lock(&m->lock);
    *hits = m->hits;
    *misses = m->misses;
    *bytes = m->bytes;
    pthread_mutex_unlock(&m->lock);
}
