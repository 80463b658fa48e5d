/*
 * authhdrs.h - what the transfer engines (upload, transfer.c; download,
 * fetch_req.c) share about their requests: the headers carrying the
 * current session (a renewed session makes new headers; the old lists
 * stay alive until the engine ends, because requests started before the
 * renewal still point at them), and the error answer of a request.
 */
#ifndef PR_AUTHHDRS_H
#define PR_AUTHHDRS_H

#include <curl/curl.h>

#include <stddef.h>

#include "err.h"

#define PR_ANSWER_MAX 4096           /* kept of an error answer's body */

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

/* 1 when an answer (as err) refused the session itself: expired, unknown
 * or revoked.  The headers are then renewed with a new session. */
int pr_auth_refused(const struct shoal_err *err);

/* The start of a request's answer body (JSON), NUL-terminated. */
struct pr_answer {
    char body[PR_ANSWER_MAX];
    size_t len;
};

void pr_answer_reset(struct pr_answer *a);

/* Keep what still fits of data. */
void pr_answer_keep(struct pr_answer *a, const char *data, size_t len);

/* err from the answer's status and JSON error body (shoal_err_from_json). */
void pr_answer_error(const struct pr_answer *a, long status,
                     struct shoal_err *err);

#endif
