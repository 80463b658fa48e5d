/*
 * authhdrs.h - the request headers of a transfer engine (upload or
 * download), carrying the current session.  A renewed session makes new
 * headers; the old lists stay alive until the engine ends, because
 * requests started before the renewal still point at them.
 */
#ifndef PR_AUTHHDRS_H
#define PR_AUTHHDRS_H

#include <curl/curl.h>

#include "err.h"

struct pr_auth_hdrs {
    struct curl_slist *cur;          /* the headers of new requests */
    struct curl_slist **old;         /* replaced, still used by requests */
    int nold;
};

/* New current headers: "Authorization: Bearer <session_id>" then the
 * lines of extra (NULL-terminated, may be NULL).  The previous list is
 * kept.  -1 with SHOAL_EIO on ENOMEM (nothing changed then). */
int pr_auth_hdrs_renew(struct pr_auth_hdrs *h, const char *session_id,
                       const char *const *extra, struct shoal_err *err);

/* Free every list h holds. */
void pr_auth_hdrs_free(struct pr_auth_hdrs *h);

#endif
