/*
 * evict.c - 'shoal serve --max-storage': the versions kept by 'shoal get'
 * are a cache, evicted least recently used first when what the peer holds
 * exceeds the limit; the versions it owns ('shoal seed') never are.  The
 * choice (pr_evict_plan, evict.h) and its application to the daemon's
 * table (pr_serve_evict, serve.h); likewise the end of the seeding of the
 * web objects 'shoal fetch' kept (pr_web_plan, webseed.h;
 * pr_serve_retire).
 *
 * What counts is the size of each version held, whole (a piece two
 * versions share counts twice), as for the admission of versions.
 */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "evict.h"
#include "log.h"
#include "serve.h"
#include "webseed.h"

/* --- the choice ------------------------------------------------------- */

static int evictable(const struct pr_evict_item *it)
{
    return !it->owned && it->complete;
}

size_t pr_evict_plan(const struct pr_evict_item *it, size_t n, uint64_t limit,
                     enum pr_evict_fate *fate)
{
    uint64_t used = 0;
    unsigned __int128 rest = 0;      /* a sum of sizes: may pass 2^64 */
    size_t out = 0;

    for (size_t i = 0; i < n; i++)
        fate[i] = PR_EVICT_SERVE;
    if (limit == 0)
        return 0;
    /* What may not be evicted: served already first, then the others. */
    for (int pass = 0; pass < 2; pass++)
        for (size_t i = 0; i < n; i++) {
            if (evictable(&it[i]) || (pass == 0) != (it[i].admitted != 0))
                continue;
            if (it[i].size <= limit - used) {
                used += it[i].size;
            } else {
                fate[i] = PR_EVICT_WAIT;
            }
        }
    /* The cache gets the room left: what can never fit goes first. */
    uint64_t room = limit - used;
    for (size_t i = 0; i < n; i++) {
        if (!evictable(&it[i]))
            continue;
        if (it[i].size > room) {
            fate[i] = PR_EVICT_OUT;
            out++;
        } else {
            rest += it[i].size;
        }
    }
    /* Then the least recently used, until the rest fits. */
    while (rest > room) {
        size_t lru = n;
        for (size_t i = 0; i < n; i++)
            if (evictable(&it[i]) && fate[i] == PR_EVICT_SERVE &&
                (lru == n || it[i].used_ms < it[lru].used_ms))
                lru = i;
        if (lru == n)
            break;
        fate[lru] = PR_EVICT_OUT;
        rest -= it[lru].size;
        out++;
    }
    return out;
}

/* --- the daemon's table --------------------------------------------- */

long long pr_serve_now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* 1 when every piece of v is in the store. */
static int complete(struct pr_srv *srv, const struct pr_version *v)
{
    for (uint64_t i = 0; i < v->npieces; i++)
        if (!shoal_store_has(pr_held_store(srv->held), v->hashes[i]))
            return 0;
    return 1;
}

static int hash_cmp(const void *a, const void *b)
{
    return memcmp(a, b, SHOAL_HASH_BYTES);
}

/* The piece hashes of every version in the table, sorted: new array
 * (free()) of *n hashes, NULL on ENOMEM. */
static unsigned char (*hashes_in_use(struct pr_srv *srv,
                                     size_t *n))[SHOAL_HASH_BYTES]
{
    unsigned char (*all)[SHOAL_HASH_BYTES];
    size_t total = 0;

    pthread_mutex_lock(&srv->lock);
    for (size_t i = 0; i < srv->n; i++)
        total += (size_t)srv->tab[i]->v->npieces;
    all = malloc((total ? total : 1) * sizeof(*all));
    *n = 0;
    for (size_t i = 0; all && i < srv->n; i++) {
        const struct pr_version *v = srv->tab[i]->v;
        memcpy(all[*n], v->hashes, (size_t)v->npieces * sizeof(*all));
        *n += (size_t)v->npieces;
    }
    pthread_mutex_unlock(&srv->lock);
    if (all && *n)
        qsort(all, *n, sizeof(*all), hash_cmp);
    return all;
}

/* Take s out of the table, the lock held (it lives on while held). */
static void unlist(struct pr_srv *srv, struct pr_served *s)
{
    for (size_t i = 0; i < srv->n; i++)
        if (srv->tab[i] == s) {
            memmove(&srv->tab[i], &srv->tab[i + 1],
                    (srv->n - i - 1) * sizeof(*srv->tab));
            srv->n--;
            break;
        }
    s->live = 0;
    if (s->admitted)
        srv->admitted_bytes -= s->v->size;
    s->admitted = 0;
}

/* Remove the record of s and its pieces that no version in the table
 * uses; count it as evicted, or, with why (a fate of webseed.h), as a
 * web object whose seeding is over. */
static void drop(struct pr_srv *srv, struct pr_served *s, const char *why)
{
    const struct pr_version *v = s->v;
    struct shoal_err e;
    size_t nuse = 0;
    uint64_t removed = 0;

    shoal_err_clear(&e);
    if (pr_held_forget(srv->held, v->file_id, v->version, &e) < 0)
        shoal_log(SHOAL_LOG_WARN, NULL, "evicting version %" PRIu64 " of file "
                  "'%s': %s", v->version, v->file_id, e.msg);
    unsigned char (*use)[SHOAL_HASH_BYTES] = hashes_in_use(srv, &nuse);
    for (uint64_t i = 0; use && i < v->npieces; i++) {
        if (nuse && bsearch(v->hashes[i], use, nuse, sizeof(*use), hash_cmp))
            continue;
        shoal_err_clear(&e);
        if (shoal_store_remove(pr_held_store(srv->held), v->hashes[i], &e) < 0)
            shoal_log(SHOAL_LOG_WARN, NULL, "evicting version %" PRIu64 " of "
                      "file '%s': %s", v->version, v->file_id, e.msg);
        else
            removed++;
    }
    free(use);
    if (why) {
        shoal_log(SHOAL_LOG_INFO, NULL, "stopped seeding version %" PRIu64
                  " of file '%s' (%s): %s; %" PRIu64 " pieces removed",
                  v->version, v->file_id, v->url ? v->url : "", why, removed);
        return;
    }
    atomic_fetch_add(&srv->evicted, 1);
    atomic_fetch_add(&srv->evicted_bytes, v->size);
    shoal_log(SHOAL_LOG_INFO, NULL, "evicted version %" PRIu64 " of file '%s' "
              "(%" PRIu64 " bytes, %" PRIu64 " pieces removed) to stay within "
              "--max-storage %" PRIu64, v->version, v->file_id, v->size,
              removed, srv->max_storage);
}

size_t pr_serve_evict(struct pr_srv *srv,
                      void (*evicted)(void *arg, const struct pr_version *v,
                                      int announced),
                      void *arg)
{
    struct pr_served **all = NULL;
    struct pr_evict_item *it = NULL;
    enum pr_evict_fate *fate = NULL;
    size_t n = 0, out = 0;

    if (!srv->max_storage)
        return 0;
    /* A victim found owned on disk ('shoal seed' of a version kept by
     * get) is marked so and the choice made again: at most once each. */
    for (int round = 0; round < 64; round++) {
        int again = 0;

        pthread_mutex_lock(&srv->lock);
        n = 0;
        all = calloc(srv->n + 1, sizeof(*all));
        it = calloc(srv->n + 1, sizeof(*it));
        fate = calloc(srv->n + 1, sizeof(*fate));
        for (size_t i = 0; all && it && fate && i < srv->n; i++) {
            struct pr_served *s = srv->tab[i];
            if (s->gone)
                continue;
            s->refs++;
            all[n] = s;
            it[n].size = s->v->size;
            it[n].used_ms = atomic_load(&s->used_ms);
            it[n].owned = !s->v->kept;
            it[n].admitted = s->admitted;
            n++;
        }
        pthread_mutex_unlock(&srv->lock);
        if (!all || !it || !fate) {
            shoal_log(SHOAL_LOG_ERROR, NULL, "out of memory: not enforcing "
                      "--max-storage");
            goto out;
        }
        for (size_t i = 0; i < n; i++)
            it[i].complete = it[i].owned || complete(srv, all[i]->v);
        out = pr_evict_plan(it, n, srv->max_storage, fate);
        for (size_t i = 0; i < n; i++)
            if (fate[i] == PR_EVICT_OUT &&
                pr_held_kept(srv->held, all[i]->v->file_id,
                             all[i]->v->version) == 0) {
                pthread_mutex_lock(&srv->lock);
                all[i]->v->kept = 0;
                pthread_mutex_unlock(&srv->lock);
                again = 1;
            }
        if (!again)
            break;
        for (size_t i = 0; i < n; i++)
            pr_serve_put(srv, all[i]);
        free(all);
        free(it);
        free(fate);
        all = NULL;
        it = NULL;
        fate = NULL;
        out = 0;
    }
    if (!all)
        return 0;

    pthread_mutex_lock(&srv->lock);
    for (size_t i = 0; i < n; i++) {
        struct pr_served *s = all[i];
        if (!s->live)
            continue;
        if (fate[i] == PR_EVICT_OUT) {
            unlist(srv, s);
        } else if (fate[i] == PR_EVICT_SERVE && !s->admitted) {
            s->admitted = 1;
            s->warned = 0;
            srv->admitted_bytes += s->v->size;
        } else if (fate[i] == PR_EVICT_WAIT && s->admitted) {
            s->admitted = 0;         /* not expected: the served come first */
            srv->admitted_bytes -= s->v->size;
        }
    }
    pthread_mutex_unlock(&srv->lock);
    for (size_t i = 0; i < n; i++) {
        struct pr_served *s = all[i];
        const struct pr_version *v = s->v;
        if (fate[i] == PR_EVICT_OUT) {
            if (evicted)
                evicted(arg, v, s->announced);
            s->announced = 0;
            drop(srv, s, NULL);
        } else if (fate[i] == PR_EVICT_WAIT && !s->warned) {
            s->warned = 1;
            shoal_log(SHOAL_LOG_WARN, NULL, "not serving version %" PRIu64
                      " of file '%s': its %" PRIu64 " bytes do not fit in "
                      "--max-storage %" PRIu64 "%s", v->version, v->file_id,
                      v->size, srv->max_storage, v->kept ? " (a download "
                      "under way)" : " beside the versions it owns");
        } else if (fate[i] == PR_EVICT_SERVE && it[i].admitted == 0) {
            shoal_log(SHOAL_LOG_INFO, NULL, "serving version %" PRIu64 " of "
                      "file '%s' (%" PRIu64 " bytes)", v->version, v->file_id,
                      v->size);
        }
    }
out:
    for (size_t i = 0; all && i < n; i++)
        pr_serve_put(srv, all[i]);
    free(all);
    free(it);
    free(fate);
    return out;
}

/* --- web objects whose seeding is over (webseed.h) ------------------- */

size_t pr_serve_retire(struct pr_srv *srv,
                       void (*retired)(void *arg, const struct pr_version *v,
                                       int announced),
                       void *arg)
{
    struct pr_served **all = NULL;
    struct pr_web_item *it = NULL;
    enum pr_web_fate *fate = NULL;
    size_t n = 0, out = 0;

    pthread_mutex_lock(&srv->lock);
    all = calloc(srv->n + 1, sizeof(*all));
    it = calloc(srv->n + 1, sizeof(*it));
    fate = calloc(srv->n + 1, sizeof(*fate));
    for (size_t i = 0; all && it && fate && i < srv->n; i++) {
        struct pr_served *s = srv->tab[i];
        if (s->gone || !s->v->kept || !s->v->url)
            continue;
        s->refs++;
        all[n] = s;
        it[n].url = s->v->url;
        it[n].file_id = s->v->file_id;
        it[n].version = s->v->version;
        it[n].injected_at = s->v->injected_at;
        it[n].inj_expires = s->v->inj_expires;
        n++;
    }
    pthread_mutex_unlock(&srv->lock);
    if (!all || !it || !fate ||
        pr_web_plan(it, n, (int64_t)time(NULL), srv->web_age, fate) ==
            (size_t)-1) {
        shoal_log(SHOAL_LOG_ERROR, NULL, "out of memory: not applying the "
                  "seeding policy of web objects");
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        struct pr_served *s = all[i];
        const char *why;
        if (fate[i] == PR_WEB_SEED)
            continue;
        /* 'shoal seed' made it owned meanwhile: it stays */
        if (pr_held_kept(srv->held, s->v->file_id, s->v->version) == 0) {
            pthread_mutex_lock(&srv->lock);
            s->v->kept = 0;
            pthread_mutex_unlock(&srv->lock);
            continue;
        }
        pthread_mutex_lock(&srv->lock);
        int live = s->live;
        if (live)
            unlist(srv, s);
        pthread_mutex_unlock(&srv->lock);
        if (!live)
            continue;
        if (retired)
            retired(arg, s->v, s->announced);
        s->announced = 0;
        why = fate[i] == PR_WEB_SUPERSEDED ? "a newer injection of its URL "
              "is held" : fate[i] == PR_WEB_AGED ? "its injection is older "
              "than --max-web-age" : "the injector's signature has expired";
        drop(srv, s, why);
        atomic_fetch_add(&srv->retired[fate[i]], 1);
        out++;
    }
out:
    for (size_t i = 0; all && i < n; i++)
        pr_serve_put(srv, all[i]);
    free(all);
    free(it);
    free(fate);
    return out;
}
