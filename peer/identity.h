/*
 * identity.h - the peer's identity file and its session cache.
 *
 * Identity file (mode 0600, written atomically):
 *   {"user_id","public_key","secret_key","auth_id","broker","broker_id",
 *    "broker_key"}
 * kept at --identity PATH, else $XDG_CONFIG_HOME/shoal/identity.json, else
 * $HOME/.config/shoal/identity.json.  A file that group or others may
 * access is refused.  The secret key and the Authentication ID live in
 * this file only: never print or log them.
 *
 * Session cache "<identity path>.session" (mode 0600):
 *   {"session_id","expires_at","broker"}
 */
#ifndef PR_IDENTITY_H
#define PR_IDENTITY_H

#include <time.h>
#include <jansson.h>

#include "err.h"

#define PR_URL_MAX 1024      /* broker URL, with the NUL */
#define PR_KEY_B64_MAX 96    /* base64 of a 64-byte key is 88 characters */

struct pr_identity {
    char user_id[37];
    char public_key[PR_KEY_B64_MAX];   /* base64 of 32 bytes */
    char secret_key[PR_KEY_B64_MAX];   /* base64 of 64 bytes: secret */
    char auth_id[37];                  /* secret */
    char broker[PR_URL_MAX];           /* URL, no trailing slash */
    char broker_id[37];                /* pinned broker, "" when none */
    char broker_key[PR_KEY_B64_MAX];   /* its public key, "" when none */
};

struct pr_session {
    char session_id[37];
    char expires_at[32];               /* RFC 3339 as the broker sent it */
    char broker[PR_URL_MAX];           /* URL of the broker it belongs to */
};

/* The identity path: override when not NULL, else from the environment.
 * New string (free()), or NULL with SHOAL_EIO when no home is known. */
char *pr_identity_path(const char *override, struct shoal_err *err);

/* "<identity path>.session".  New string (free()), NULL on ENOMEM. */
char *pr_session_path(const char *identity_path);

/* 1 when something exists at path (even unreadable), 0 when not. */
int pr_path_exists(const char *path);

/* A zeroed identity.  New (pr_identity_free), NULL on ENOMEM. */
struct pr_identity *pr_identity_new(void);

/* Wipe and free an identity.  Accepts NULL. */
void pr_identity_free(struct pr_identity *id);

/*
 * Load and check the identity at path.  -1 with SHOAL_EIO when it is
 * missing (the message says to register), not private (mode & 077),
 * unreadable or malformed.
 */
int pr_identity_load(const char *path, struct pr_identity *id,
                     struct shoal_err *err);

/* Write the identity at path, mode 0600, atomically. */
int pr_identity_save(const char *path, const struct pr_identity *id,
                     struct shoal_err *err);

/*
 * Read the session cache.  Returns 1 with *s filled, 0 when there is no
 * usable cache (absent, not private, malformed: it will be replaced).
 */
int pr_session_load(const char *path, struct pr_session *s);

/* Write the session cache, mode 0600, atomically. */
int pr_session_save(const char *path, const struct pr_session *s,
                    struct shoal_err *err);

/* Remove the session cache; an absent file is fine. */
int pr_session_remove(const char *path, struct shoal_err *err);

/* Fill s from an answer of POST /v1/sessions (session_id, expires_at).
 * -1 with SHOAL_EINVAL naming the field. */
int pr_session_from_json(const json_t *reply, const char *broker,
                         struct pr_session *s, struct shoal_err *err);

/* 1 when s expires later than now + margin seconds, 0 otherwise (also
 * when its expiry cannot be read). */
int pr_session_alive(const struct pr_session *s, time_t margin);

/* Copy a broker URL into out without trailing slashes.  -1 with
 * SHOAL_EINVAL when it is not http:// or https:// or is too long. */
int pr_broker_url(const char *url, char out[PR_URL_MAX],
                  struct shoal_err *err);

#endif
