/*
 * inject.h - what the injector's files share (origin.c fetches from the
 * origin, db_inject.c keeps the records, h_inject.c serves the routes).
 */
#ifndef BR_INJECT_H
#define BR_INJECT_H

#include <pthread.h>
#include <stdint.h>

#include "addr.h"
#include "broker.h"

#define BR_INJECT_URL_MAX 2048        /* bytes of an injected URL */
#define BR_INJECT_REDIRECTS 5         /* redirects followed, one by one */
#define BR_INJECT_OWNER_SHARE "injected"

struct br_origin_pool;

/* The injector role's settings and state (app->inject). */
struct br_inject {
    struct br_origin_pool *pool;      /* idle origin connections */
    int curl_started;                 /* curl_global_init done */
    struct shoal_cidr_list *allow;    /* inject_allow */
    uint64_t max_size;                /* inject_max_size, bytes */
    long long timeout;                /* inject_timeout, seconds */
    long long ttl;                    /* inject_ttl: longest signature life */
    pthread_mutex_t lock;             /* guards share_id */
    char share_id[37];                /* the injector's share, "" until made */
};

/* --- one fetch from an origin (origin.c) --- */

struct br_origin;

/* Fetch url (GET, no credentials), following at most BR_INJECT_REDIRECTS
 * redirects one by one, and wait for the headers of the final answer.
 * Every address connected to (after DNS, for every hop) must be public or
 * admitted by inj->allow: else nothing connects and -1 with 403
 * forbidden.  -1 with 502 bad_gateway when the origin cannot be reached,
 * stalls for inj->timeout, answers other than 2xx, redirects badly or
 * declares a body over inj->max_size.  0 with a new fetch in *out. */
int br_origin_open(const struct br_inject *inj, const char *url,
                   struct br_origin **out, struct shoal_err *err);

/* The final answer's status, and its n header fields (borrowed). */
int br_origin_status(const struct br_origin *o);
size_t br_origin_headers(const struct br_origin *o, const char *const **names,
                         const char *const **values);
/* The value of the first header field called name (any case), or NULL. */
const char *br_origin_header(const struct br_origin *o, const char *name);

/* Up to max bytes of the body into buf, waiting for them (at most
 * inj->timeout without a byte): their number, 0 at the end of the body,
 * -1 with 502 bad_gateway (stalled, cut, over inj->max_size). */
long br_origin_read(struct br_origin *o, char *buf, size_t max,
                    struct shoal_err *err);

/* Stop and free (accepts NULL).  When the body was read to its end, the
 * connection stays open in inj->pool for the next fetch. */
void br_origin_close(struct br_origin *o);

/* The injector's idle origin connections (origin.c): NULL when out of
 * memory; free closes them. */
struct br_origin_pool *br_origin_pool_new(void);
void br_origin_pool_free(struct br_origin_pool *p);

/* --- storing an injection's pieces on other threads (inject_store.c) --- */

struct br_inject_store;

/* Start storing the pieces of injection injection_id (its pins carry that
 * id): no thread runs until the first whole piece.  NULL with err. */
struct br_inject_store *br_inject_store_new(struct br_app *app,
                                            const char *injection_id,
                                            struct shoal_err *err);

/* Append n body bytes.  Each whole piece is hashed, pinned and stored on
 * other threads; this waits only while every piece buffer is taken.  -1
 * with err once storing has failed (the caller gives up). */
int br_inject_store_feed(struct br_inject_store *s, const char *data, size_t n,
                         struct shoal_err *err);

/* The end of the body: hand over the last piece and wait until every
 * piece is stored (fsynced, renamed, pinned).  0 with the piece hashes
 * (borrowed until br_inject_store_free), their number and the bytes;
 * -1 with err. */
int br_inject_store_finish(struct br_inject_store *s,
                           const unsigned char (**hashes)[32], uint64_t *n,
                           uint64_t *size, struct shoal_err *err);

/* Stop the threads (pieces not stored yet are dropped): once it returns
 * no pin is taken any more.  1 when a pin may have been taken, else 0
 * (also for NULL). */
int br_inject_store_stop(struct br_inject_store *s);

/* Stop (as br_inject_store_stop) and free.  Accepts NULL. */
void br_inject_store_free(struct br_inject_store *s);

/* --- records (db_inject.c) --- */

/* The share injected objects go to, made on first use with the
 * injector's system user (user id = broker id, key = the broker's). */
int br_inject_share(struct br_app *app, char share_id[37],
                    struct shoal_err *err);

/* Count one reference to the piece hash (len bytes) for the injection
 * injection_id, before the piece is stored: no sweeper removes it until
 * the pin is released. */
int br_inject_pin(struct br_app *app, const char *injection_id,
                  const unsigned char hash[32], uint32_t len,
                  struct shoal_err *err);

/* Release the pins of a failed injection (by_broker 0) or every pin this
 * broker left (by_broker 1, at start), and remove this broker's copies of
 * the pieces nothing counts any more (when it has a store). */
void br_inject_unpin(struct br_app *app, const char *key, int by_broker);

/* What an injection made, to be recorded. */
struct br_injected {
    const char *injection_id;                /* its pins are released */
    const char *url;
    const unsigned char *swarm;              /* 32 bytes */
    int status;                              /* the origin's */
    const char *meta;                        /* metadata text */
    unsigned char meta_hash[32];
    uint64_t size;
    uint64_t npieces;
    const unsigned char (*hashes)[32];
    unsigned char root[32];
    long long expires;
    /* filled by br_inject_commit: */
    char file_id[37];
    int version;
    char x_sign[SHOAL_XSIGN_MAX];
};

/* In one transaction: a new file (first injection of the URL) or a new
 * version of the URL's file, the signed record, the injector's tracker
 * announcement, the release of the injection's pins.  Fails (nothing
 * kept, the pins stay) when a piece is missing from the store. */
int br_inject_commit(struct br_app *app, const char *share_id,
                     struct br_injected *in, struct shoal_err *err);

/* Note a failed injection of url on its record, if it has one. */
void br_inject_failed(struct br_app *app, const char *url, const char *why);

/* The record of url (by_swarm 0) or of the swarm whose hex is key
 * (by_swarm 1), as JSON: a new reference, or NULL with err (404 when
 * there is none). */
json_t *br_inject_record(struct br_app *app, const char *key, int by_swarm,
                         struct shoal_err *err);

#endif
