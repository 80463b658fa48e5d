/*
 * authhdrs.c - what the transfer engines share about their requests
 * (authhdrs.h).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

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

int pr_auth_refused(const struct shoal_err *err)
{
    return err->code == SHOAL_ESESSION_EXPIRED ||
           err->code == SHOAL_ESESSION_UNKNOWN;
}

void pr_answer_reset(struct pr_answer *a)
{
    a->len = 0;
    a->body[0] = '\0';
}

void pr_answer_keep(struct pr_answer *a, const char *data, size_t len)
{
    size_t room = sizeof(a->body) - 1 - a->len;

    if (len > room)
        len = room;
    memcpy(a->body + a->len, data, len);
    a->len += len;
    a->body[a->len] = '\0';
}

void pr_answer_error(const struct pr_answer *a, long status,
                     struct shoal_err *err)
{
    json_t *body = json_loadb(a->body, a->len, 0, NULL);

    shoal_err_clear(err);
    shoal_err_from_json(err, (int)status, body);
    json_decref(body);
}
