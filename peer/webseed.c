/*
 * webseed.c - the dCDN seeding policy of web objects (see webseed.h).
 */
#include <stdlib.h>
#include <string.h>

#include "webseed.h"

const char *pr_web_fate_name(enum pr_web_fate f)
{
    switch (f) {
    case PR_WEB_SUPERSEDED: return "superseded";
    case PR_WEB_AGED: return "age";
    case PR_WEB_EXPIRED: return "expired";
    case PR_WEB_SEED: break;
    }
    return "seed";
}

int pr_web_newer(const struct pr_web_item *a, const struct pr_web_item *b)
{
    int same = strcmp(a->file_id, b->file_id);

    if (same == 0)
        return a->version > b->version;
    if (a->injected_at != b->injected_at)
        return a->injected_at > b->injected_at;
    if (a->version != b->version)
        return a->version > b->version;
    return same > 0;
}

enum pr_web_fate pr_web_fate_of(const struct pr_web_item *it, int64_t now,
                                int64_t max_age)
{
    if (it->inj_expires && it->inj_expires <= now)
        return PR_WEB_EXPIRED;
    if (max_age > 0 && now - it->injected_at >= max_age)
        return PR_WEB_AGED;
    return PR_WEB_SEED;
}

/* By URL, the newest first. */
static int by_url_newest(const void *pa, const void *pb)
{
    const struct pr_web_item *a = *(const struct pr_web_item *const *)pa;
    const struct pr_web_item *b = *(const struct pr_web_item *const *)pb;
    int c = strcmp(a->url, b->url);

    if (c)
        return c;
    if (pr_web_newer(a, b))
        return -1;
    return pr_web_newer(b, a) ? 1 : 0;
}

size_t pr_web_plan(const struct pr_web_item *it, size_t n, int64_t now,
                   int64_t max_age, enum pr_web_fate *fate)
{
    const struct pr_web_item **order;
    size_t out = 0;

    for (size_t i = 0; i < n; i++)
        fate[i] = PR_WEB_SEED;
    if (n == 0)
        return 0;
    if (!(order = malloc(n * sizeof(*order))))
        return (size_t)-1;
    for (size_t i = 0; i < n; i++)
        order[i] = &it[i];
    qsort(order, n, sizeof(*order), by_url_newest);
    for (size_t i = 0; i < n; i++) {
        size_t k = (size_t)(order[i] - it);
        if (i > 0 && strcmp(order[i - 1]->url, order[i]->url) == 0)
            fate[k] = PR_WEB_SUPERSEDED;
        else
            fate[k] = pr_web_fate_of(order[i], now, max_age);
        out += fate[k] != PR_WEB_SEED;
    }
    free(order);
    return out;
}
