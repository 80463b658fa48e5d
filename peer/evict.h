/*
 * evict.h - the choice 'shoal serve --max-storage' makes (evict.c): which
 * versions are served, which wait for room, which are evicted.  A pure
 * function of sizes, last uses and flags, so that it can be tested alone;
 * pr_serve_evict (serve.h) applies it to the daemon's table.
 */
#ifndef PR_EVICT_H
#define PR_EVICT_H

#include <stddef.h>
#include <stdint.h>

struct pr_evict_item {
    uint64_t size;                   /* bytes of the version */
    long long used_ms;               /* last served or added */
    int owned;                       /* seeded: never evicted */
    int complete;                    /* every piece in the store */
    int admitted;                    /* served now */
};

enum pr_evict_fate {
    PR_EVICT_SERVE,                  /* within the limit */
    PR_EVICT_WAIT,                   /* not evictable, and does not fit */
    PR_EVICT_OUT,                    /* evict it */
};

/*
 * fate[i] for each of the n items under limit bytes (0: no limit, all
 * served).  Versions that may not be evicted (owned, or incomplete: a
 * download may be under way) come first: those served already, then the
 * others in the order given, each served while the sum fits, else
 * waiting.  The room left goes to the evictable ones (kept by get and
 * complete): one bigger than the whole room goes, then the least recently
 * used (ties: the earlier in the order) until the rest fits.  Returns the
 * number of items evicted.
 */
size_t pr_evict_plan(const struct pr_evict_item *it, size_t n, uint64_t limit,
                     enum pr_evict_fate *fate);

#endif
