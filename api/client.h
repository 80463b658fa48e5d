/*
 * client.h - the HTTP client over libcurl, for JSON REST calls.
 *
 * A client holds one curl easy handle (keep-alive across calls) and
 * belongs to one thread at a time.
 */
#ifndef SHOAL_CLIENT_H
#define SHOAL_CLIENT_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>
#include "err.h"

struct shoal_client;

/* A new client for base_url ("http://127.0.0.1:8080", no trailing slash
 * needed).  timeout: seconds for a whole call (0: 30).  NULL on ENOMEM. */
struct shoal_client *shoal_client_new(const char *base_url, long timeout);
void shoal_client_free(struct shoal_client *c);

/* Bearer token sent with every later call (copied; NULL clears it). */
void shoal_client_set_bearer(struct shoal_client *c, const char *token);

/* Source address to connect from (e.g. "127.0.0.2"), or NULL. */
void shoal_client_set_source(struct shoal_client *c, const char *ip);

/*
 * One call: method ("GET", "POST", "PUT", "DELETE"), path ("/v1/users",
 * query string included), optional JSON body (borrowed).
 * On a 2xx answer returns 0 and, when the answer has a JSON body, a new
 * reference in *reply (NULL otherwise; reply may be NULL to ignore it).
 * On any other answer returns -1 with err filled from the error body
 * (shoal_err_from_json) and err->status the HTTP status; on a transport
 * failure -1 with SHOAL_ENET.  *status (may be NULL) gets the HTTP status
 * or 0.
 */
int shoal_client_call(struct shoal_client *c, const char *method,
                      const char *path, const json_t *body, json_t **reply,
                      int *status, struct shoal_err *err);

/*
 * Fill buf with the size bytes of a request body that start at offset:
 * 0, or -1 to abort the call.  The same part may be asked for again (a
 * call sent again on a new connection starts over).
 */
typedef int shoal_client_read_fn(void *arg, uint64_t offset, char *buf,
                                 size_t size);

/*
 * Take one element (borrowed) of an answer's array; index counts from 0
 * in each answer.  0, or -1 with err set to abort the call.
 */
typedef int shoal_client_each_fn(void *arg, size_t index, json_t *elem,
                                 struct shoal_err *err);

/*
 * What a call sends beyond its method and path, and how it takes a large
 * answer.  Fields left zero are not used.
 */
struct shoal_client_req {
    const json_t *body;            /* a JSON body (borrowed), or NULL */
    shoal_client_read_fn *read;    /* else a JSON body of len bytes that */
    void *read_arg;                /* read makes as it is sent */
    uint64_t len;
    /* When the answer is 2xx JSON, the elements of the array under key
     * each_key of its top-level object go to each, one at a time as they
     * arrive, and the reply shows that array empty: the whole array is
     * never held. */
    const char *each_key;
    shoal_client_each_fn *each;
    void *each_arg;
};

/* shoal_client_call with a body or an answer that req describes.  The
 * elements each took belong to an answer that may still fail. */
int shoal_client_call_req(struct shoal_client *c, const char *method,
                          const char *path,
                          const struct shoal_client_req *req, json_t **reply,
                          int *status, struct shoal_err *err);

/* The value of a header of the last answer (borrowed until the next
 * call), or NULL. */
const char *shoal_client_header(const struct shoal_client *c,
                                const char *name);

#endif
