/*
 * err.h - the one error type of shoal and its HTTP mapping.
 *
 * A fallible function returns 0 or -1 and fills an optional
 * struct shoal_err (like jansson's json_error_t).  Every error response on
 * the wire has one shape:
 *   {"error": {"code": "session_expired", "message": "session 'a1b2…' expired"}}
 * and the client parses it back into a struct shoal_err.
 */
#ifndef SHOAL_ERR_H
#define SHOAL_ERR_H

#include <jansson.h>

enum shoal_code {
    SHOAL_OK = 0,
    SHOAL_EINVAL,            /* 400 invalid_request */
    SHOAL_EJSON,             /* 400 malformed_json */
    SHOAL_ESESSION_MISSING,  /* 400 session_missing */
    SHOAL_EAUTH,             /* 401 invalid_auth_id */
    SHOAL_ESESSION_EXPIRED,  /* 401 session_expired */
    SHOAL_EPAYMENT,          /* 402 balance_exhausted */
    SHOAL_EFORBIDDEN,        /* 403 forbidden */
    SHOAL_ESESSION_UNKNOWN,  /* 403 session_unknown (unknown or revoked) */
    SHOAL_ENOTFOUND,         /* 404 not_found */
    SHOAL_EMETHOD,           /* 405 method_not_allowed */
    SHOAL_EEXISTS,           /* 409 already_exists */
    SHOAL_EIPMISMATCH,       /* 409 ip_mismatch */
    SHOAL_EINCOMPLETE,       /* 409 incomplete (pieces still missing) */
    SHOAL_ENOTEMPTY,         /* 409 not_empty (a share that holds files) */
    SHOAL_EGONE,             /* 410 gone */
    SHOAL_EQUOTA,            /* 412 over_quota */
    SHOAL_ETOOLARGE,         /* 413 body_too_large */
    SHOAL_EMEDIA,            /* 415 unsupported_media_type */
    SHOAL_ERANGE,            /* 416 range_not_satisfiable */
    SHOAL_EUNPROCESSABLE,    /* 422 unprocessable */
    SHOAL_EINTERNAL,         /* 500 internal */
    SHOAL_EUNAVAILABLE,      /* 503 unavailable */
    SHOAL_ESTORAGE,          /* 507 insufficient_storage */
    SHOAL_EBADGATEWAY,       /* 502 bad_gateway (an injector's origin failed) */
    /* client side only: never sent by a server */
    SHOAL_ENET,              /* could not reach the server */
    SHOAL_EIO,               /* local file or system error */
    SHOAL_EPROTO,            /* the server answered something unexpected */
    SHOAL_CODE_COUNT
};

#define SHOAL_ERR_MSG_MAX 256

struct shoal_err {
    enum shoal_code code;
    int status;                    /* HTTP status (0 when none) */
    char msg[SHOAL_ERR_MSG_MAX];
};

/* Fill err (if not NULL) with code, its HTTP status and a printf message.
 * Always returns -1 so that reporting is one line. */
int shoal_err_set(struct shoal_err *err, enum shoal_code code,
                  const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Reset err to SHOAL_OK with an empty message. */
void shoal_err_clear(struct shoal_err *err);

/* HTTP status of a code (500 for client-side codes). */
int shoal_code_status(enum shoal_code code);

/* Wire name of a code ("session_expired"); static string. */
const char *shoal_code_name(enum shoal_code code);

/* Code for a wire name; SHOAL_EPROTO when unknown. */
enum shoal_code shoal_code_from_name(const char *name);

/* The error body {"error":{"code":…,"message":…}}.  New reference. */
json_t *shoal_err_to_json(const struct shoal_err *err);

/* Parse an error body received with HTTP status 'status' into err.
 * When the body is not an error body, err gets SHOAL_EPROTO with the
 * status.  Always returns -1. */
int shoal_err_from_json(struct shoal_err *err, int status, const json_t *body);

#endif
