/*
 * webseed.h - the dCDN seeding policy of web objects (webseed.c): which
 * of the web objects a peer keeps ('shoal fetch') 'shoal serve' still
 * seeds.  A pure function of URLs, versions and times, so that it can be
 * tested alone; pr_serve_retire (serve.h, evict.c) applies it.
 * docs/protocol.md, section 13, "Seeding policy".
 *
 * Seeding of a web object ends when a newer injection of its URL is held
 * (supersession: only the newest is served), a week (--max-web-age) after
 * its injection, or when the injector's signature expires; besides, as
 * for any version, at the seed ratio and on eviction (--max-storage).
 */
#ifndef PR_WEBSEED_H
#define PR_WEBSEED_H

#include <stddef.h>
#include <stdint.h>

/* How long after its injection a web object is seeded: one week. */
#define PR_WEB_AGE_DEFAULT (7 * 86400)

struct pr_web_item {
    const char *url;                 /* the web object's URL (borrowed) */
    const char *file_id;             /* lowercase UUID (borrowed) */
    uint64_t version;
    int64_t injected_at;             /* unix seconds */
    int64_t inj_expires;             /* the injector's signature; 0: unknown */
};

enum pr_web_fate {
    PR_WEB_SEED,                     /* seeded on */
    PR_WEB_SUPERSEDED,               /* a newer injection of its URL is held */
    PR_WEB_AGED,                     /* max_age has passed since its injection */
    PR_WEB_EXPIRED,                  /* the injector's signature has expired */
};

/* "seed", "superseded", "age", "expired" (static). */
const char *pr_web_fate_name(enum pr_web_fate f);

/*
 * 1 when a is a newer injection than b (of the same URL): of one file,
 * the higher version; of two files (two injectors), the later injection,
 * then the higher version, then the greater file id (an order, even when
 * the times are the same).  0 otherwise.
 */
int pr_web_newer(const struct pr_web_item *a, const struct pr_web_item *b);

/*
 * The fate of one web object at now, supersession aside: PR_WEB_EXPIRED
 * when its signature has expired, PR_WEB_AGED when max_age seconds (0: no
 * limit) have passed since its injection, else PR_WEB_SEED.
 */
enum pr_web_fate pr_web_fate_of(const struct pr_web_item *it, int64_t now,
                                int64_t max_age);

/*
 * fate[i] for each of the n items at now: PR_WEB_SUPERSEDED for every
 * item of a URL but the newest (pr_web_newer), the fate of pr_web_fate_of
 * for the newest.  Returns the number of items whose seeding ends, or
 * (size_t)-1 on ENOMEM (fate then says PR_WEB_SEED for all).
 */
size_t pr_web_plan(const struct pr_web_item *it, size_t n, int64_t now,
                   int64_t max_age, enum pr_web_fate *fate);

#endif
