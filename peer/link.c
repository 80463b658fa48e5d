/*
 * link.c - calls to the broker from the threads of 'shoal serve', as the
 * peer's own user: a small pool of clients (one call per client at a
 * time; curl handles keep their connections), one session shared by all,
 * logged in again when it nears its expiry or the broker refuses it.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <sodium.h>

#include "client.h"
#include "log.h"
#include "serve.h"
#include "util.h"

#define POOL_MAX 8
#define CALL_TIMEOUT 10        /* seconds for one call to the broker */
#define RENEW_MARGIN 60        /* log in again this long before expiry */

struct pr_link {
    const struct pr_identity *id;
    const char *session_path;
    pthread_mutex_t lock;      /* guards everything below */
    struct pr_session s;
    unsigned gen;              /* bumped at every login */
    int have;                  /* s holds a session */
    struct shoal_client *pool[POOL_MAX];
    int npool;
};

static struct shoal_client *client_take(struct pr_link *l)
{
    struct shoal_client *c = NULL;

    pthread_mutex_lock(&l->lock);
    if (l->npool > 0)
        c = l->pool[--l->npool];
    pthread_mutex_unlock(&l->lock);
    return c ? c : shoal_client_new(l->id->broker, CALL_TIMEOUT);
}

static void client_give(struct pr_link *l, struct shoal_client *c)
{
    if (!c)
        return;
    pthread_mutex_lock(&l->lock);
    if (l->npool < POOL_MAX) {
        l->pool[l->npool++] = c;
        c = NULL;
    }
    pthread_mutex_unlock(&l->lock);
    shoal_client_free(c);
}

/* Log in (the caller holds the lock) on client c. */
static int login(struct pr_link *l, struct shoal_client *c,
                 struct shoal_err *err)
{
    struct pr_session s;
    struct shoal_err cerr;
    json_t *ans = NULL;
    json_t *body = json_pack("{s:s, s:s}", "user_id", l->id->user_id,
                             "auth_id", l->id->auth_id);
    int rc = -1;

    if (!body)
        return shoal_err_set(err, SHOAL_EIO, "out of memory");
    shoal_client_set_bearer(c, NULL);
    if (shoal_client_call(c, "POST", "/v1/sessions", body, &ans, NULL,
                          err) < 0)
        goto out;
    if (pr_session_from_json(ans, l->id->broker, &s, err) < 0) {
        pr_err_answer(err, "POST /v1/sessions");
        goto out;
    }
    l->s = s;
    l->have = 1;
    l->gen++;
    shoal_log(SHOAL_LOG_INFO, NULL, "logged in to '%s' as '%s'",
              l->id->broker, l->id->user_id);
    shoal_err_clear(&cerr);
    if (pr_session_save(l->session_path, &s, &cerr) < 0)
        shoal_log(SHOAL_LOG_WARN, NULL, "%s", cerr.msg);
    rc = 0;
out:
    json_decref(body);
    json_decref(ans);
    return rc;
}

/* The session to use now, copied into sid with its generation; logs in
 * when there is none, it expires soon, or generation stale has been
 * refused (stale 0: none was). */
static int session_now(struct pr_link *l, struct shoal_client *c,
                       unsigned stale, char sid[37], unsigned *gen,
                       struct shoal_err *err)
{
    int rc = 0;

    pthread_mutex_lock(&l->lock);
    if (!l->have || (stale && stale == l->gen) ||
        !pr_session_alive(&l->s, RENEW_MARGIN))
        rc = login(l, c, err);
    if (rc == 0) {
        memcpy(sid, l->s.session_id, 37);
        *gen = l->gen;
    }
    pthread_mutex_unlock(&l->lock);
    return rc;
}

struct pr_link *pr_link_new(const struct pr_identity *id,
                            const char *session_path, struct shoal_err *err)
{
    struct pr_link *l = calloc(1, sizeof(*l));
    struct pr_session s;
    struct shoal_client *c;
    char sid[37];
    unsigned gen;

    if (!l) {
        shoal_err_set(err, SHOAL_EIO, "out of memory");
        return NULL;
    }
    l->id = id;
    l->session_path = session_path;
    pthread_mutex_init(&l->lock, NULL);
    if (pr_session_load(session_path, &s) && strcmp(s.broker, id->broker) == 0 &&
        pr_session_alive(&s, RENEW_MARGIN)) {
        l->s = s;
        l->have = 1;
        l->gen = 1;
    }
    if (!(c = client_take(l))) {
        shoal_err_set(err, SHOAL_EIO, "out of memory");
        pr_link_free(l);
        return NULL;
    }
    int rc = session_now(l, c, 0, sid, &gen, err);
    client_give(l, c);
    sodium_memzero(sid, sizeof(sid));
    if (rc < 0) {
        pr_link_free(l);
        return NULL;
    }
    return l;
}

void pr_link_free(struct pr_link *l)
{
    if (!l)
        return;
    for (int i = 0; i < l->npool; i++)
        shoal_client_free(l->pool[i]);
    sodium_memzero(&l->s, sizeof(l->s));
    pthread_mutex_destroy(&l->lock);
    free(l);
}

int pr_link_session(struct pr_link *l, char sid[37], struct shoal_err *err)
{
    struct shoal_client *c = client_take(l);
    unsigned gen = 0;

    if (!c)
        return shoal_err_set(err, SHOAL_EIO, "out of memory");
    int rc = session_now(l, c, 0, sid, &gen, err);
    client_give(l, c);
    return rc;
}

const char *pr_link_user(const struct pr_link *l)
{
    return l->id->user_id;
}

int pr_link_call(struct pr_link *l, const char *method, const char *path,
                 const json_t *body, json_t **reply,
                 char xsign[SHOAL_XSIGN_MAX], struct shoal_err *err)
{
    struct shoal_client *c = client_take(l);
    char sid[37];
    unsigned gen = 0;
    int rc = -1;

    if (reply)
        *reply = NULL;
    if (xsign)
        xsign[0] = '\0';
    if (!c)
        return shoal_err_set(err, SHOAL_EIO, "out of memory");
    for (int attempt = 0; attempt < 2; attempt++) {
        if (session_now(l, c, attempt ? gen : 0, sid, &gen, err) < 0)
            break;
        shoal_client_set_bearer(c, sid);
        rc = shoal_client_call(c, method, path, body, reply, NULL, err);
        if (rc == 0 || !pr_session_refused(c, err))
            break;
        shoal_log(SHOAL_LOG_INFO, NULL, "the broker refused this peer's "
                  "session (%s): logging in again",
                  shoal_code_name(err->code));
        if (reply) {
            json_decref(*reply);
            *reply = NULL;
        }
    }
    if (rc == 0 && xsign) {
        const char *h = shoal_client_header(c, "X-Sign");
        if (h)
            snprintf(xsign, SHOAL_XSIGN_MAX, "%s", h);
    }
    sodium_memzero(sid, sizeof(sid));
    shoal_client_set_bearer(c, NULL);
    client_give(l, c);
    return rc;
}
