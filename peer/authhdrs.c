/*
 * authhdrs.c - the session headers of a transfer engine (authhdrs.h).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "authhdrs.h"

int pr_auth_hdrs_renew(struct pr_auth_hdrs *h, const char *session_id,
                       const char *const *extra, struct shoal_err *err)
{
    struct curl_slist *l = NULL;
    struct curl_slist *t;
    char auth[128];

    if (h->cur) {
        struct curl_slist **o = realloc(h->old,
                                        (size_t)(h->nold + 1) * sizeof(*o));
        if (!o)
            return shoal_err_set(err, SHOAL_EIO, "out of memory");
        h->old = o;
    }
    snprintf(auth, sizeof(auth), "Authorization: Bearer %s", session_id);
    t = curl_slist_append(NULL, auth);
    explicit_bzero(auth, sizeof(auth));
    for (; t && extra && *extra; extra++)
        t = curl_slist_append(l = t, *extra);
    if (!t) {
        curl_slist_free_all(l);
        return shoal_err_set(err, SHOAL_EIO, "out of memory");
    }
    if (h->cur)
        h->old[h->nold++] = h->cur;
    h->cur = t;
    return 0;
}

void pr_auth_hdrs_free(struct pr_auth_hdrs *h)
{
    curl_slist_free_all(h->cur);
    for (int i = 0; i < h->nold; i++)
        curl_slist_free_all(h->old[i]);
    free(h->old);
    memset(h, 0, sizeof(*h));
}
