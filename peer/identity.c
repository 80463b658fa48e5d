/*
 * identity.c - the identity file and the session cache of the peer.
 */
#include <errno.h>
#include <fcntl.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#include "identity.h"
#include "keys.h"
#include "util.h"

#define PRIVATE_FILE_MAX (64 * 1024)

char *pr_identity_path(const char *override, struct shoal_err *err)
{
    const char *base;
    const char *tail;
    char *path;

    if (override) {
        if (!*override) {
            shoal_err_set(err, SHOAL_EIO, "identity path is empty");
            return NULL;
        }
        path = strdup(override);
        if (!path)
            shoal_err_set(err, SHOAL_EIO, "out of memory");
        return path;
    }
    base = getenv("XDG_CONFIG_HOME");
    tail = "/shoal/identity.json";
    if (!base || base[0] != '/') {     /* XDG: relative values are ignored */
        base = getenv("HOME");
        tail = "/.config/shoal/identity.json";
        if (!base || !*base) {
            struct passwd *pw = getpwuid(getuid());
            base = pw ? pw->pw_dir : NULL;
        }
    }
    if (!base || !*base) {
        shoal_err_set(err, SHOAL_EIO,
                      "identity path unknown: neither XDG_CONFIG_HOME nor "
                      "HOME is set (use --identity PATH)");
        return NULL;
    }
    if (asprintf(&path, "%s%s", base, tail) < 0) {
        shoal_err_set(err, SHOAL_EIO, "out of memory");
        return NULL;
    }
    return path;
}

char *pr_session_path(const char *identity_path)
{
    char *path;

    if (asprintf(&path, "%s.session", identity_path) < 0)
        return NULL;
    return path;
}

int pr_path_exists(const char *path)
{
    struct stat st;

    return lstat(path, &st) == 0 || errno != ENOENT;
}

struct pr_identity *pr_identity_new(void)
{
    return calloc(1, sizeof(struct pr_identity));
}

void pr_identity_free(struct pr_identity *id)
{
    if (!id)
        return;
    sodium_memzero(id, sizeof(*id));
    free(id);
}

int pr_broker_url(const char *url, char out[PR_URL_MAX], struct shoal_err *err)
{
    size_t len;
    size_t scheme;

    if (strncmp(url, "http://", 7) == 0)
        scheme = 7;
    else if (strncmp(url, "https://", 8) == 0)
        scheme = 8;
    else
        return shoal_err_set(err, SHOAL_EINVAL,
                             "broker URL '%s' does not start with http:// or "
                             "https://", url);
    len = strlen(url);
    while (len > 0 && url[len - 1] == '/')
        len--;
    if (len >= PR_URL_MAX)
        return shoal_err_set(err, SHOAL_EINVAL, "broker URL is too long");
    if (len <= scheme || strchr(url, ' ') || strchr(url, '?') || strchr(url, '#'))
        return shoal_err_set(err, SHOAL_EINVAL, "broker URL '%s' is not valid",
                             url);
    memcpy(out, url, len);
    out[len] = '\0';
    return 0;
}

/*
 * Read a small file that must be private to its owner into a new buffer
 * (wipe and free it).  what names it in messages.  Sets *absent when the
 * file does not exist.
 */
static int read_private(const char *path, const char *what, char **out,
                        size_t *outlen, int *absent, struct shoal_err *err)
{
    struct stat st;
    char *buf = NULL;
    size_t len = 0;
    int fd;

    *absent = 0;
    fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0) {
        if (errno == ENOENT)
            *absent = 1;
        return shoal_err_set(err, SHOAL_EIO, "cannot open %s '%s': %s", what,
                             path, strerror(errno));
    }
    if (fstat(fd, &st) < 0) {
        shoal_err_set(err, SHOAL_EIO, "cannot stat %s '%s': %s", what, path,
                      strerror(errno));
        goto fail;
    }
    if (!S_ISREG(st.st_mode)) {
        shoal_err_set(err, SHOAL_EIO, "%s '%s' is not a regular file", what,
                      path);
        goto fail;
    }
    if (st.st_mode & 077) {
        shoal_err_set(err, SHOAL_EIO,
                      "%s '%s' is accessible by group or others (mode %04o): "
                      "run 'chmod 600 %s'", what, path,
                      (unsigned)(st.st_mode & 07777), path);
        goto fail;
    }
    if (st.st_size > PRIVATE_FILE_MAX) {
        shoal_err_set(err, SHOAL_EIO, "%s '%s' is too large", what, path);
        goto fail;
    }
    buf = malloc(PRIVATE_FILE_MAX + 1);
    if (!buf) {
        shoal_err_set(err, SHOAL_EIO, "out of memory");
        goto fail;
    }
    for (;;) {
        ssize_t n = read(fd, buf + len, PRIVATE_FILE_MAX - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            shoal_err_set(err, SHOAL_EIO, "cannot read %s '%s': %s", what,
                          path, strerror(errno));
            goto fail;
        }
        if (n == 0)
            break;
        len += (size_t)n;
        if (len == PRIVATE_FILE_MAX) {
            shoal_err_set(err, SHOAL_EIO, "%s '%s' is too large", what, path);
            goto fail;
        }
    }
    close(fd);
    buf[len] = '\0';
    *out = buf;
    *outlen = len;
    return 0;
fail:
    if (buf) {
        sodium_memzero(buf, PRIVATE_FILE_MAX + 1);
        free(buf);
    }
    close(fd);
    return -1;
}

/* Copy obj[key], a string shorter than size, into out. */
static int copy_str(const json_t *obj, const char *key, char *out, size_t size,
                    int optional, struct shoal_err *err)
{
    const char *s;

    if (optional) {
        json_t *v = json_object_get(obj, key);
        if (!v || json_is_null(v)) {
            out[0] = '\0';
            return 0;
        }
    }
    if (shoal_json_str(obj, key, &s, err) < 0)
        return -1;
    if (strlen(s) >= size)
        return shoal_err_set(err, SHOAL_EINVAL, "field '%s' is too long", key);
    strcpy(out, s);
    return 0;
}

/* Fill id from the parsed identity and check every field. */
static int identity_fields(const json_t *root, struct pr_identity *id,
                           struct shoal_err *err)
{
    unsigned char pk[SHOAL_PK_BYTES];
    unsigned char sk[SHOAL_SK_BYTES];
    char broker[PR_URL_MAX];
    int rc = -1;

    if (shoal_json_uuid(root, "user_id", id->user_id, err) < 0 ||
        copy_str(root, "public_key", id->public_key, sizeof(id->public_key),
                 0, err) < 0 ||
        copy_str(root, "secret_key", id->secret_key, sizeof(id->secret_key),
                 0, err) < 0 ||
        shoal_json_uuid(root, "auth_id", id->auth_id, err) < 0 ||
        copy_str(root, "broker", broker, sizeof(broker), 0, err) < 0 ||
        pr_broker_url(broker, id->broker, err) < 0 ||
        copy_str(root, "broker_id", id->broker_id, sizeof(id->broker_id), 1,
                 err) < 0 ||
        copy_str(root, "broker_key", id->broker_key, sizeof(id->broker_key),
                 1, err) < 0)
        goto out;
    if (shoal_b64_decode_exact(id->public_key, pk, sizeof(pk), "public_key",
                               err) < 0 ||
        shoal_b64_decode_exact(id->secret_key, sk, sizeof(sk), "secret_key",
                               err) < 0)
        goto out;
    /* An Ed25519 secret key of libsodium ends with its public key. */
    if (memcmp(sk + 32, pk, sizeof(pk)) != 0) {
        shoal_err_set(err, SHOAL_EINVAL,
                      "field 'secret_key' does not match 'public_key'");
        goto out;
    }
    if (id->broker_id[0] && !shoal_uuid_valid(id->broker_id)) {
        shoal_err_set(err, SHOAL_EINVAL, "field 'broker_id' is not a UUID");
        goto out;
    }
    if (id->broker_key[0] &&
        shoal_b64_decode_exact(id->broker_key, pk, sizeof(pk), "broker_key",
                               err) < 0)
        goto out;
    rc = 0;
out:
    sodium_memzero(sk, sizeof(sk));
    return rc;
}

int pr_identity_load(const char *path, struct pr_identity *id,
                     struct shoal_err *err)
{
    struct shoal_err ferr;
    json_error_t jerr;
    json_t *root = NULL;
    char *text = NULL;
    size_t len = 0;
    int absent;
    int rc = -1;

    if (read_private(path, "identity", &text, &len, &absent, err) < 0) {
        if (absent)
            shoal_err_set(err, SHOAL_EIO,
                          "no identity at '%s' (run 'shoal register --broker "
                          "URL' first)", path);
        return -1;
    }
    root = json_loadb(text, len, 0, &jerr);
    if (!root || !json_is_object(root)) {
        shoal_err_set(err, SHOAL_EIO, "identity '%s' is not a JSON object",
                      path);
        goto out;
    }
    shoal_err_clear(&ferr);
    if (identity_fields(root, id, &ferr) < 0) {
        shoal_err_set(err, SHOAL_EIO, "identity '%s' is damaged: %s", path,
                      ferr.msg);
        sodium_memzero(id, sizeof(*id));
        goto out;
    }
    rc = 0;
out:
    json_decref(root);
    sodium_memzero(text, len);
    free(text);
    return rc;
}

/* Write v as indented JSON at path, mode 0600, and wipe the text. */
static int save_private(const char *path, const json_t *v,
                        struct shoal_err *err)
{
    char *text;
    size_t len;
    int rc;

    text = json_dumps(v, JSON_INDENT(2));
    if (!text)
        return shoal_err_set(err, SHOAL_EIO, "out of memory");
    len = strlen(text);
    text[len] = '\n';   /* replaces the NUL: written with its length */
    rc = shoal_file_write_atomic(path, text, len + 1, 0600, err);
    sodium_memzero(text, len + 1);
    free(text);
    return rc;
}

static json_t *str_or_null(const char *s)
{
    return *s ? json_string(s) : json_null();
}

int pr_identity_save(const char *path, const struct pr_identity *id,
                     struct shoal_err *err)
{
    json_t *root;
    int rc;

    root = json_pack("{s:s, s:s, s:s, s:s, s:s, s:o, s:o}",
                     "user_id", id->user_id,
                     "public_key", id->public_key,
                     "secret_key", id->secret_key,
                     "auth_id", id->auth_id,
                     "broker", id->broker,
                     "broker_id", str_or_null(id->broker_id),
                     "broker_key", str_or_null(id->broker_key));
    if (!root)
        return shoal_err_set(err, SHOAL_EIO, "cannot build identity '%s'",
                             path);
    rc = save_private(path, root, err);
    json_decref(root);
    return rc;
}

int pr_session_from_json(const json_t *reply, const char *broker,
                         struct pr_session *s, struct shoal_err *err)
{
    time_t t;

    memset(s, 0, sizeof(*s));
    if (shoal_json_uuid(reply, "session_id", s->session_id, err) < 0 ||
        copy_str(reply, "expires_at", s->expires_at, sizeof(s->expires_at), 0,
                 err) < 0)
        return -1;
    if (shoal_time_parse(s->expires_at, &t, err) < 0)
        return -1;
    if (strlen(broker) >= sizeof(s->broker))
        return shoal_err_set(err, SHOAL_EINVAL, "broker URL is too long");
    strcpy(s->broker, broker);
    return 0;
}

int pr_session_load(const char *path, struct pr_session *s)
{
    struct shoal_err err;
    json_t *root = NULL;
    char *text = NULL;
    size_t len = 0;
    const char *broker;
    int absent;
    int found = 0;

    memset(s, 0, sizeof(*s));
    if (read_private(path, "session cache", &text, &len, &absent, &err) < 0)
        return 0;
    root = json_loadb(text, len, 0, NULL);
    if (root && json_is_object(root) &&
        shoal_json_str(root, "broker", &broker, &err) == 0 &&
        pr_session_from_json(root, broker, s, &err) == 0)
        found = 1;
    else
        memset(s, 0, sizeof(*s));
    json_decref(root);
    sodium_memzero(text, len);
    free(text);
    return found;
}

int pr_session_save(const char *path, const struct pr_session *s,
                    struct shoal_err *err)
{
    json_t *root;
    int rc;

    root = json_pack("{s:s, s:s, s:s}", "session_id", s->session_id,
                     "expires_at", s->expires_at, "broker", s->broker);
    if (!root)
        return shoal_err_set(err, SHOAL_EIO, "cannot build session cache");
    rc = save_private(path, root, err);
    json_decref(root);
    return rc;
}

int pr_session_remove(const char *path, struct shoal_err *err)
{
    if (unlink(path) < 0 && errno != ENOENT)
        return shoal_err_set(err, SHOAL_EIO,
                             "cannot remove session cache '%s': %s", path,
                             strerror(errno));
    return 0;
}

int pr_session_alive(const struct pr_session *s, time_t margin)
{
    time_t t;

    if (shoal_time_parse(s->expires_at, &t, NULL) < 0)
        return 0;
    return t > time(NULL) + margin;
}
