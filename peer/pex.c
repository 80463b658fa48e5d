/*
 * pex.c - the caches of peer exchange in the data folder (layout and
 * limits in pex.h): the holders a peer knows of, and the manifests get
 * keeps to download without the broker.
 */
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "pex.h"
#include "util.h"

/* Largest manifest kept or read back (as held.c's records). */
#define MANIFEST_MAX (48u << 20)

/* --- holders.json ------------------------------------------------------ */

/* seen_at of entry e, or 0 when it has none that parses. */
static time_t seen_of(const json_t *e)
{
    const char *s = json_string_value(json_object_get(e, "seen_at"));
    time_t t;

    return s && shoal_time_parse(s, &t, NULL) == 0 ? t : 0;
}

/* 1 when e has the shape of an entry. */
static int entry_ok(const json_t *e)
{
    const char *url = json_string_value(json_object_get(e, "url"));
    const char *kind = json_string_value(json_object_get(e, "kind"));
    const char *fid = json_string_value(json_object_get(e, "file_id"));
    const json_t *have = json_object_get(e, "have");
    json_int_t v = json_integer_value(json_object_get(e, "version"));
    char norm[PR_URL_MAX];

    return url && kind && fid && v >= 1 && shoal_uuid_valid(fid) &&
           (strcmp(kind, "peer") == 0 || strcmp(kind, "broker") == 0) &&
           (!have || json_is_null(have) || json_is_string(have)) &&
           pr_broker_url(url, norm, NULL) == 0 && strcmp(norm, url) == 0;
}

json_t *pr_holders_load(const char *dir)
{
    json_t *out = json_array();
    json_t *doc = NULL;
    json_t *list, *e;
    char *path = NULL;
    char *text = NULL;
    size_t len, i;
    time_t now = time(NULL);

    if (!out || !dir || asprintf(&path, "%s/holders.json", dir) < 0)
        return out;
    if (shoal_file_read(path, PR_HOLDERS_FILE_MAX, &text, &len, NULL) == 0)
        doc = json_loadb(text, len, 0, NULL);
    list = json_object_get(doc, "holders");
    json_array_foreach(list, i, e) {
        time_t t = seen_of(e);
        if (i >= 2 * PR_HOLDERS_MAX)
            break;
        if (entry_ok(e) && t > 0 && now - t < PR_HOLDERS_AGE && t <= now + 60)
            json_array_append(out, e);
    }
    json_decref(doc);
    free(text);
    free(path);
    return out;
}

int pr_holders_note(json_t *list, const char *url, const char *kind,
                    const char *file_id, uint64_t version, const char *have,
                    time_t now)
{
    char ts[32];
    json_t *e;
    size_t i;

    shoal_time_format(now, ts);
    json_array_foreach(list, i, e) {
        const char *u = json_string_value(json_object_get(e, "url"));
        const char *f = json_string_value(json_object_get(e, "file_id"));
        if (u && f && strcmp(u, url) == 0 && strcasecmp(f, file_id) == 0 &&
            (uint64_t)json_integer_value(json_object_get(e, "version")) ==
                version) {
            json_array_remove(list, i);
            break;
        }
    }
    e = json_pack("{s:s, s:s, s:s, s:I, s:o, s:s}", "url", url, "kind", kind,
                  "file_id", file_id, "version", (json_int_t)version,
                  "have", have ? json_string(have) : json_null(),
                  "seen_at", ts);
    return e && json_array_append_new(list, e) == 0 ? 0 : -1;
}

static int newest_first(const void *a, const void *b)
{
    time_t ta = seen_of(*(json_t *const *)a);
    time_t tb = seen_of(*(json_t *const *)b);

    return ta < tb ? 1 : ta > tb ? -1 : 0;
}

int pr_holders_save(const char *dir, json_t *list, struct shoal_err *err)
{
    size_t n = json_array_size(list);
    json_t **all = calloc(n ? n : 1, sizeof(*all));
    json_t *keep = json_array();
    json_t *doc = NULL;
    char *path = NULL;
    char *text = NULL;
    time_t now = time(NULL);
    int rc = -1;

    if (!all || !keep) {
        shoal_err_set(err, SHOAL_EIO, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < n; i++)
        all[i] = json_array_get(list, i);
    qsort(all, n, sizeof(*all), newest_first);
    for (size_t i = 0; i < n && json_array_size(keep) < PR_HOLDERS_MAX; i++) {
        const char *fid = json_string_value(json_object_get(all[i], "file_id"));
        size_t same = 0;
        if (!fid || now - seen_of(all[i]) >= PR_HOLDERS_AGE)
            continue;
        for (size_t k = 0; k < json_array_size(keep); k++)
            same += strcasecmp(json_string_value(json_object_get(
                json_array_get(keep, k), "file_id")), fid) == 0;
        if (same < PR_HOLDERS_PER_FILE)
            json_array_append(keep, all[i]);
    }
    if (!(doc = json_pack("{s:O}", "holders", keep)) ||
        !(text = json_dumps(doc, JSON_COMPACT)) ||
        asprintf(&path, "%s/holders.json", dir) < 0) {
        path = NULL;
        shoal_err_set(err, SHOAL_EIO, "out of memory");
        goto out;
    }
    rc = shoal_file_write_atomic(path, text, strlen(text), 0600, err);
out:
    free(path);
    free(text);
    json_decref(doc);
    json_decref(keep);
    free(all);
    return rc;
}

void pr_holders_record(const char *dir, const char *file_id, uint64_t version,
                       uint64_t pieces, const struct pr_source *s, int n)
{
    json_t *list = pr_holders_load(dir);
    struct shoal_err e;
    size_t nbytes = (size_t)((pieces + 7) / 8);
    time_t now = time(NULL);

    shoal_err_clear(&e);
    for (int i = 0; list && i < n; i++) {
        char *have = NULL;
        if (!s[i].live || s[i].held == 0)
            continue;
        if (s[i].have && !(have = shoal_b64_encode(s[i].have, nbytes)))
            break;
        int rc = pr_holders_note(list, s[i].url, s[i].kind == PR_SOURCE_PEER ?
                                 "peer" : "broker", file_id, version, have,
                                 now);
        free(have);
        if (rc < 0)
            break;
    }
    if (!list || pr_holders_save(dir, list, &e) < 0)
        shoal_log(SHOAL_LOG_DEBUG, NULL, "cannot record the holders of file "
                  "'%s': %s", file_id, e.msg[0] ? e.msg : "out of memory");
    json_decref(list);
}

/* --- manifests/ -------------------------------------------------------- */

/* Drop the oldest manifests kept beyond PR_MANIFESTS_MAX, and those
 * older than PR_HOLDERS_AGE. */
static void manifests_prune(const char *dir)
{
    struct kept { char fid[37]; char name[16]; time_t t; } *all = NULL;
    size_t n = 0;
    char *top = NULL;
    char path[PATH_MAX];
    DIR *d = NULL;
    struct dirent *de;
    time_t now = time(NULL);

    if (asprintf(&top, "%s/manifests", dir) < 0)
        return;
    if (!(all = calloc(4 * PR_MANIFESTS_MAX, sizeof(*all))) ||
        !(d = opendir(top)))
        goto out;
    while ((de = readdir(d)) && n < 4 * PR_MANIFESTS_MAX) {
        DIR *sd;
        struct dirent *se;
        if (!shoal_uuid_valid(de->d_name) ||
            snprintf(path, sizeof(path), "%s/%.36s", top, de->d_name) >=
                (int)sizeof(path) || !(sd = opendir(path)))
            continue;
        while ((se = readdir(sd)) && n < 4 * PR_MANIFESTS_MAX) {
            struct stat st;
            if (se->d_name[0] == '.' || strlen(se->d_name) >= 16 ||
                snprintf(path, sizeof(path), "%s/%.36s/%.15s", top,
                         de->d_name, se->d_name) >= (int)sizeof(path) ||
                stat(path, &st) < 0 || !S_ISREG(st.st_mode))
                continue;
            snprintf(all[n].fid, sizeof(all[n].fid), "%.36s", de->d_name);
            snprintf(all[n].name, sizeof(all[n].name), "%.15s", se->d_name);
            all[n].t = st.st_mtime;
            n++;
        }
        closedir(sd);
    }
    /* the newest PR_MANIFESTS_MAX that are young enough stay */
    for (size_t i = 0; i < n; i++) {
        size_t newer = 0;
        for (size_t k = 0; k < n; k++)
            newer += all[k].t > all[i].t || (all[k].t == all[i].t && k < i);
        if ((newer >= PR_MANIFESTS_MAX || now - all[i].t >= PR_HOLDERS_AGE) &&
            snprintf(path, sizeof(path), "%s/%s/%s", top, all[i].fid,
                     all[i].name) < (int)sizeof(path))
            unlink(path);
    }
out:
    if (d)
        closedir(d);
    free(all);
    free(top);
}

json_t *pr_manifest_doc(const char *file_id, uint64_t version, uint64_t size,
                        uint32_t piece_size,
                        const unsigned char (*hashes)[SHOAL_HASH_BYTES],
                        uint64_t npieces, const unsigned char *root,
                        const char *xsign)
{
    char hex[2 * SHOAL_HASH_BYTES + 1];
    char rhex[2 * SHOAL_HASH_BYTES + 1];
    json_t *list = json_array();
    json_t *doc = NULL;

    for (uint64_t i = 0; list && i < npieces; i++) {
        shoal_hex_encode(hashes[i], SHOAL_HASH_BYTES, hex);
        if (json_array_append_new(list, json_string(hex)) < 0)
            goto out;
    }
    shoal_hex_encode(root, SHOAL_HASH_BYTES, rhex);
    if (list)
        doc = json_pack("{s:s, s:I, s:I, s:I, s:I, s:s, s:O, s:s}",
                        "file_id", file_id, "version", (json_int_t)version,
                        "size", (json_int_t)size,
                        "piece_size", (json_int_t)piece_size,
                        "pieces", (json_int_t)npieces, "root", rhex,
                        "piece_hashes", list, "x_sign", xsign);
out:
    json_decref(list);
    return doc;
}

int pr_manifest_cache_save(const char *dir, const char *file_id,
                           uint64_t version, uint64_t size,
                           uint32_t piece_size,
                           const unsigned char (*hashes)[SHOAL_HASH_BYTES],
                           uint64_t npieces, const unsigned char *root,
                           const char *xsign, struct shoal_err *err)
{
    json_t *doc = NULL;
    char *text = NULL;
    char *path = NULL;
    int rc = -1;

    if (npieces > MANIFEST_MAX / 70)
        return shoal_err_set(err, SHOAL_EIO, "manifest too large to keep");
    if (!(doc = pr_manifest_doc(file_id, version, size, piece_size, hashes,
                                npieces, root, xsign)) ||
        !(text = json_dumps(doc, JSON_COMPACT)) ||
        asprintf(&path, "%s/manifests/%s/%" PRIu64 ".json", dir, file_id,
                 version) < 0) {
        path = NULL;
        shoal_err_set(err, SHOAL_EIO, "out of memory");
        goto out;
    }
    rc = shoal_file_write_atomic(path, text, strlen(text), 0600, err);
    if (rc == 0)
        manifests_prune(dir);
out:
    free(path);
    free(text);
    json_decref(doc);
    return rc;
}

/* The highest "<n>.json" in folder sub (0 when none). */
static uint64_t highest(const char *sub)
{
    DIR *d = opendir(sub);
    struct dirent *de;
    uint64_t best = 0;
    int guard = 0;

    while (d && (de = readdir(d)) && guard++ < 100000) {
        char *end;
        unsigned long long v = strtoull(de->d_name, &end, 10);
        if (de->d_name[0] >= '1' && de->d_name[0] <= '9' &&
            strcmp(end, ".json") == 0 && v > best && v <= INT32_MAX)
            best = v;
    }
    if (d)
        closedir(d);
    return best;
}

/* Load and check dir/<kind>/<file_id>/<version>.json; NULL when absent or
 * when it does not check out (err says why). */
static struct pr_version *load_one(const char *dir, const char *kind,
                                   const struct pr_identity *id,
                                   const char *file_id, uint64_t version,
                                   struct shoal_err *err)
{
    struct pr_version *v = NULL;
    char *path = NULL;
    char *text = NULL;
    json_t *ans = NULL;
    size_t len;

    if (version == 0) {
        char *sub = NULL;
        if (asprintf(&sub, "%s/%s/%s", dir, kind, file_id) < 0)
            return NULL;
        version = highest(sub);
        free(sub);
        if (version == 0)
            return NULL;
    }
    if (asprintf(&path, "%s/%s/%s/%" PRIu64 ".json", dir, kind, file_id,
                 version) < 0)
        return NULL;
    if (shoal_file_read(path, MANIFEST_MAX, &text, &len, NULL) == 0 &&
        (ans = json_loadb(text, len, 0, NULL)) &&
        pr_manifest_verify(id, file_id, ans, NULL, (int64_t)time(NULL), &v,
                           err) == 0 && v->version != version) {
        pr_version_free(v);
        v = NULL;
    }
    json_decref(ans);
    free(text);
    free(path);
    return v;
}

int pr_manifest_cache_load(const char *dir, const struct pr_identity *id,
                           const char *file_id, uint64_t version,
                           struct pr_version **out, struct shoal_err *err)
{
    struct shoal_err e;
    struct pr_version *a, *b;

    shoal_err_clear(&e);
    a = load_one(dir, "files", id, file_id, version, &e);
    b = load_one(dir, "manifests", id, file_id, version, &e);
    if (a && b && b->version > a->version) {
        pr_version_free(a);
        a = NULL;
    }
    if (a) {
        pr_version_free(b);
        *out = a;
        return 0;
    }
    if (b) {
        *out = b;
        return 0;
    }
    *out = NULL;
    if (e.msg[0])
        return shoal_err_set(err, SHOAL_ENOTFOUND, "no usable manifest of "
                             "file '%s' kept here: %s", file_id, e.msg);
    return shoal_err_set(err, SHOAL_ENOTFOUND, "no manifest of file '%s' "
                         "kept here", file_id);
}
