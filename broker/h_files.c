/*
 * h_files.c - files and their versions (metadata role): create, add a
 * version, list, read, the signed manifest, delete.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "broker.h"
#include "log.h"
#include "manifest.h"

#define PATH_MAX_LEN 1024
#define NAME_MAX_LEN 255
#define SIZE_MAX_JSON 9007199254740992LL      /* 2^53: exact in any JSON */

/* 1 when s has a control character (below 0x20, or 0x7f). */
static int has_control(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || *s == 0x7f)
            return 1;
    return 0;
}

/* A name: 1-255 bytes, no '/', not "." or "..", no control characters. */
static int name_valid(const char *s, size_t len)
{
    return len >= 1 && len <= NAME_MAX_LEN && strlen(s) == len &&
           !strchr(s, '/') && strcmp(s, ".") != 0 && strcmp(s, "..") != 0 &&
           !has_control(s);
}

/* A path: "" or segments that are names, joined by single '/'. */
static int path_valid(const char *s, size_t len)
{
    if (len == 0)
        return 1;
    if (len > PATH_MAX_LEN || strlen(s) != len || has_control(s))
        return 0;
    const char *seg = s;
    for (;;) {
        const char *slash = strchr(seg, '/');
        size_t n = slash ? (size_t)(slash - seg) : strlen(seg);
        if (n == 0 || n > NAME_MAX_LEN || (n == 1 && seg[0] == '.') ||
            (n == 2 && seg[0] == '.' && seg[1] == '.'))
            return 0;
        if (slash == NULL)
            return 1;
        seg = slash + 1;
    }
}

/* The content of a version from a request body: size, piece size and the
 * piece hashes (as one buffer), checked against each other. */
struct content {
    uint64_t size;
    uint32_t piece_size;
    uint64_t npieces;
    unsigned char (*hashes)[32];     /* owned */
    unsigned char root[32];
};

static int content_parse(const json_t *body, struct content *ct,
                         struct shoal_err *err)
{
    json_int_t size, ps = SHOAL_PIECE_DEFAULT;
    json_t *list;

    memset(ct, 0, sizeof *ct);
    if (shoal_json_int(body, "size", &size, err) != 0)
        return -1;
    if (size < 0 || size > SIZE_MAX_JSON)
        return shoal_err_set(err, SHOAL_EINVAL,
                             "'size' must be from 0 to 2^53 bytes");
    if (json_object_get(body, "piece_size") &&
        shoal_json_int(body, "piece_size", &ps, err) != 0)
        return -1;
    if (!shoal_piece_size_valid((uint64_t)ps))
        return shoal_err_set(err, SHOAL_EINVAL,
                             "'piece_size' must be a power of two from 16384"
                             " to 16777216");
    if (shoal_json_array(body, "piece_hashes", &list, err) != 0)
        return -1;
    ct->size = (uint64_t)size;
    ct->piece_size = (uint32_t)ps;
    ct->npieces = shoal_piece_count(ct->size, ct->piece_size);
    if (json_array_size(list) != ct->npieces)
        return shoal_err_set(err, SHOAL_EINVAL,
                             "%zu piece hashes for %llu pieces (size %llu,"
                             " piece size %u)", json_array_size(list),
                             (unsigned long long)ct->npieces,
                             (unsigned long long)ct->size, ct->piece_size);
    ct->hashes = malloc(ct->npieces ? ct->npieces * 32 : 1);
    if (ct->hashes == NULL)
        return shoal_err_set(err, SHOAL_EINTERNAL, "out of memory");
    for (size_t i = 0; i < ct->npieces; i++) {
        const char *h = json_string_value(json_array_get(list, i));
        if (h == NULL || strlen(h) != 64 ||
            shoal_hex_decode_exact(h, ct->hashes[i], 32, "piece_hashes", NULL) != 0) {
            free(ct->hashes);
            ct->hashes = NULL;
            return shoal_err_set(err, SHOAL_EINVAL,
                                 "'piece_hashes[%zu]' is not 64 lowercase hex"
                                 " digits", i);
        }
    }
    shoal_merkle_root((const unsigned char (*)[32])ct->hashes, ct->npieces,
                      ct->root);
    return 0;
}

/* "\x<hex>" text of bytes for a bytea parameter.  New string. */
static char *bytea_param(const void *bin, size_t len)
{
    char *s = malloc(2 * len + 3);
    if (s)
        br_bytea_text(bin, len, s);
    return s;
}

/* Refuse with 412 when adding 'more' bytes would pass the owner's quota
 * or the share's allocation.  The two rows are locked first, in their own
 * statement, so that concurrent creations queue there; the sums are read
 * by the next statement, whose snapshot (READ COMMITTED) includes what the
 * transactions before it committed. */
static int quota_check(PGconn *c, const char *owner, const char *share,
                       uint64_t more, struct shoal_err *err)
{
    char m[24];
    snprintf(m, sizeof m, "%llu", (unsigned long long)more);
    const char *p[] = { owner, share, m };
    PGresult *r = br_db_query(c,
        "SELECT (SELECT 1 FROM users WHERE user_id = $1 FOR NO KEY UPDATE),"
        " (SELECT 1 FROM shares WHERE share_id = $2 FOR NO KEY UPDATE)",
        2, p, err);
    if (r == NULL)
        return -1;
    PQclear(r);
    r = br_db_query(c,
        "SELECT (SELECT quota FROM users WHERE user_id = $1) < $3::bigint +"
        "  (SELECT coalesce(sum(v.size), 0) FROM files f JOIN versions v USING (file_id)"
        "   WHERE f.owner_id = $1 AND f.deleted_at IS NULL),"
        " (SELECT allocation FROM shares WHERE share_id = $2) < $3::bigint +"
        "  (SELECT coalesce(sum(v.size), 0) FROM files f JOIN versions v USING (file_id)"
        "   WHERE f.share_id = $2 AND f.deleted_at IS NULL)", 3, p, err);
    if (r == NULL)
        return -1;
    /* NULL (no quota, no allocation) compares to NULL: not over. */
    int user_over = PQgetvalue(r, 0, 0)[0] == 't';
    int share_over = PQgetvalue(r, 0, 1)[0] == 't';
    PQclear(r);
    if (user_over)
        return shoal_err_set(err, SHOAL_EQUOTA,
                             "%llu more bytes would pass the storage quota of"
                             " user '%s'", (unsigned long long)more, owner);
    if (share_over)
        return shoal_err_set(err, SHOAL_EQUOTA,
                             "%llu more bytes would pass the allocation of"
                             " share '%s'", (unsigned long long)more, share);
    return 0;
}

/* Insert version 'version' of file_id and count its piece references. */
static int version_insert(PGconn *c, const char *file_id, int version,
                          const char *by, const struct content *ct,
                          struct shoal_err *err)
{
    char ver[16], size[24], ps[16], np[24], root[67];
    char *hashes = bytea_param(ct->hashes, ct->npieces * 32);
    if (hashes == NULL)
        return shoal_err_set(err, SHOAL_EINTERNAL, "out of memory");
    snprintf(ver, sizeof ver, "%d", version);
    snprintf(size, sizeof size, "%llu", (unsigned long long)ct->size);
    snprintf(ps, sizeof ps, "%u", ct->piece_size);
    snprintf(np, sizeof np, "%llu", (unsigned long long)ct->npieces);
    br_bytea_text(ct->root, 32, root);
    const char *p[] = { file_id, ver, size, ps, np, root, hashes, by };
    PGresult *r = br_db_query(c,
        "INSERT INTO versions (file_id, version, size, piece_size, npieces,"
        " root, hashes, created_by) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        8, p, err);
    if (r == NULL)
        goto fail;
    PQclear(r);
    /* One reference per (version, index); in hash order, so that
     * concurrent transactions lock the rows in the same order. */
    const char *q[] = { hashes, np, size, ps };
    r = br_db_query(c,
        "INSERT INTO pieces (hash, size, refs)"
        " SELECT h, max(len), count(*) FROM ("
        "  SELECT substring($1::bytea from (i * 32 + 1)::integer for 32) AS h,"
        "   CASE WHEN i = $2::bigint - 1 THEN $3::bigint - i * $4::bigint"
        "   ELSE $4::bigint END AS len"
        "  FROM generate_series(0, $2::bigint - 1) AS i) x"
        " GROUP BY h ORDER BY h"
        " ON CONFLICT (hash) DO UPDATE SET refs = pieces.refs + EXCLUDED.refs,"
        " size = EXCLUDED.size, freed_at = NULL",
        4, q, err);
    if (r == NULL)
        goto fail;
    PQclear(r);
    free(hashes);
    return 0;
fail:
    free(hashes);
    return -1;
}

int br_version_insert(PGconn *c, const char *file_id, int version,
                      const char *by, uint64_t size, uint32_t piece_size,
                      const unsigned char (*hashes)[32], uint64_t npieces,
                      struct shoal_err *err)
{
    struct content ct = { .size = size, .piece_size = piece_size,
                          .npieces = npieces,
                          .hashes = (unsigned char (*)[32])hashes };
    shoal_merkle_root(hashes, npieces, ct.root);
    return version_insert(c, file_id, version, by, &ct, err);
}

#define FILE_COLUMNS \
    "f.file_id, f.share_id, f.path, f.name, f.owner_id, f.latest, v.size," \
    " v.piece_size, v.npieces, encode(v.root, 'hex')," \
    " extract(epoch FROM f.created_at)::bigint," \
    " extract(epoch FROM f.updated_at)::bigint"

static json_t *file_json(PGresult *r, int i)
{
    return json_pack("{s:s, s:s, s:s, s:s, s:s, s:I, s:I, s:I, s:I, s:s, s:o, s:o}",
        "file_id", PQgetvalue(r, i, 0), "share_id", PQgetvalue(r, i, 1),
        "path", PQgetvalue(r, i, 2), "name", PQgetvalue(r, i, 3),
        "owner_id", PQgetvalue(r, i, 4),
        "version", (json_int_t)strtoll(PQgetvalue(r, i, 5), NULL, 10),
        "size", (json_int_t)strtoll(PQgetvalue(r, i, 6), NULL, 10),
        "piece_size", (json_int_t)strtoll(PQgetvalue(r, i, 7), NULL, 10),
        "pieces", (json_int_t)strtoll(PQgetvalue(r, i, 8), NULL, 10),
        "root", PQgetvalue(r, i, 9),
        "created_at", br_time_json(strtoll(PQgetvalue(r, i, 10), NULL, 10)),
        "updated_at", br_time_json(strtoll(PQgetvalue(r, i, 11), NULL, 10)));
}

static json_t *file_reply(PGconn *c, const char *file_id, struct shoal_err *err)
{
    const char *p[] = { file_id };
    PGresult *r = br_db_query(c, "SELECT " FILE_COLUMNS " FROM files f"
                                 " JOIN versions v ON v.file_id = f.file_id"
                                 " AND v.version = f.latest"
                                 " WHERE f.file_id = $1", 1, p, err);
    if (r == NULL)
        return NULL;
    json_t *j = PQntuples(r) ? file_json(r, 0) : NULL;
    PQclear(r);
    if (j == NULL)
        shoal_err_set(err, SHOAL_EINTERNAL, "file '%s' vanished", file_id);
    return j;
}

BR_HANDLER(h_file_create)
{
    static const char *const keys[] = { "share_id", "path", "name", "size",
                                        "piece_size", "piece_hashes", NULL };
    struct br_app *app = br_app_of(req);
    const struct br_session *me = br_caller(req);
    json_t *body = shoal_req_body(req);
    char share[37], file_id[37];
    const char *path, *name;
    struct content ct = { 0 };
    PGconn *c = NULL;
    int rc = -1;

    if (shoal_json_only(body, keys, err) != 0 ||
        shoal_json_uuid(body, "share_id", share, err) != 0 ||
        shoal_json_str(body, "path", &path, err) != 0 ||
        shoal_json_str(body, "name", &name, err) != 0)
        return -1;
    if (!path_valid(path, json_string_length(json_object_get(body, "path"))))
        return shoal_err_set(err, SHOAL_EINVAL,
                             "'path' must be empty or names joined by '/'"
                             " (no '.', '..', empty or control characters,"
                             " at most %d bytes)", PATH_MAX_LEN);
    if (!name_valid(name, json_string_length(json_object_get(body, "name"))))
        return shoal_err_set(err, SHOAL_EINVAL,
                             "'name' must be 1 to %d bytes without '/' or"
                             " control characters, not '.' or '..'", NAME_MAX_LEN);
    if (content_parse(body, &ct, err) != 0)
        return -1;

    if ((c = br_db_get(app->db, err)) == NULL || br_db_begin(c, err) != 0 ||
        br_share_need(c, me->user_id, share, BR_ACCESS_WRITE, err) < 0 ||
        quota_check(c, me->user_id, share, ct.size, err) != 0)
        goto out;
    shoal_uuid_v4(file_id);
    const char *p[] = { file_id, share, me->user_id, path, name };
    PGresult *r = br_db_query(c,
        "INSERT INTO files (file_id, share_id, owner_id, path, name, latest)"
        " VALUES ($1, $2, $3, $4, $5, 1)", 5, p, err);
    if (r == NULL) {
        if (err && err->code == SHOAL_EEXISTS)
            shoal_err_set(err, SHOAL_EEXISTS,
                          "a file '%s' already exists at path '%s' of share '%s'",
                          name, path, share);
        goto out;
    }
    PQclear(r);
    if (version_insert(c, file_id, 1, me->user_id, &ct, err) != 0)
        goto out;
    *reply = file_reply(c, file_id, err);
    if (br_reply_commit(c, reply, err) != 0)
        goto out;
    shoal_req_set_status(req, 201);
    rc = 0;
out:
    br_db_put(app->db, c);
    free(ct.hashes);
    return rc;
}

BR_HANDLER(h_file_update)
{
    static const char *const keys[] = { "size", "piece_size", "piece_hashes", NULL };
    struct br_app *app = br_app_of(req);
    const struct br_session *me = br_caller(req);
    json_t *body = shoal_req_body(req);
    struct content ct = { 0 };
    struct br_file f;
    PGconn *c = NULL;
    int rc = -1;

    if (shoal_json_only(body, keys, err) != 0 || content_parse(body, &ct, err) != 0)
        return -1;
    if ((c = br_db_get(app->db, err)) == NULL || br_db_begin(c, err) != 0 ||
        br_file_open(c, req, BR_ACCESS_WRITE, &f, err) != 0)
        goto out;
    /* Versions of one file are numbered one after the other. */
    const char *p[] = { f.file_id };
    PGresult *r = br_db_query(c, "SELECT latest FROM files WHERE file_id = $1"
                                 " FOR UPDATE", 1, p, err);
    if (r == NULL)
        goto out;
    int next = atoi(PQgetvalue(r, 0, 0)) + 1;
    PQclear(r);
    if (quota_check(c, f.owner_id, f.share_id, ct.size, err) != 0 ||
        version_insert(c, f.file_id, next, me->user_id, &ct, err) != 0)
        goto out;
    r = br_db_query(c, "UPDATE files SET latest = latest + 1, updated_at = now()"
                       " WHERE file_id = $1", 1, p, err);
    if (r == NULL)
        goto out;
    PQclear(r);
    *reply = file_reply(c, f.file_id, err);
    rc = br_reply_commit(c, reply, err);
    if (rc == 0)
        br_cache_file_changed(app->cache, f.file_id);
out:
    br_db_put(app->db, c);
    free(ct.hashes);
    return rc;
}

BR_HANDLER(h_file_list)
{
    struct br_app *app = br_app_of(req);
    const struct br_session *me = br_caller(req);
    const char *share_q = shoal_req_query(req, "share");
    char share[37];
    int rc = -1;

    if (share_q == NULL)
        return shoal_err_set(err, SHOAL_EINVAL, "missing query parameter 'share'");
    if (shoal_uuid_normalize(share_q, share, "share", err) != 0)
        return -1;
    PGconn *c = br_db_get(app->db, err);
    if (c == NULL)
        return -1;
    if (br_share_need(c, me->user_id, share, BR_ACCESS_READ, err) < 0)
        goto out;
    const char *p[] = { share };
    PGresult *r = br_db_query(c, "SELECT " FILE_COLUMNS " FROM files f"
                                 " JOIN versions v ON v.file_id = f.file_id"
                                 " AND v.version = f.latest"
                                 " WHERE f.share_id = $1 AND f.deleted_at IS NULL"
                                 " ORDER BY f.path, f.name", 1, p, err);
    rc = br_rows_reply(r, "files", file_json, reply, err);
out:
    br_db_put(app->db, c);
    return rc;
}

BR_HANDLER(h_file_get)
{
    struct br_app *app = br_app_of(req);
    struct br_file f;
    PGconn *c = br_db_get(app->db, err);
    int rc = -1;
    if (c == NULL)
        return -1;
    if (br_file_open(c, req, BR_ACCESS_READ, &f, err) == 0 &&
        (*reply = file_reply(c, f.file_id, err)) != NULL)
        rc = 0;
    br_db_put(app->db, c);
    return rc;
}

BR_HANDLER(h_file_versions)
{
    struct br_app *app = br_app_of(req);
    struct br_file f;
    PGconn *c = br_db_get(app->db, err);
    int rc = -1;
    if (c == NULL)
        return -1;
    if (br_file_open(c, req, BR_ACCESS_READ, &f, err) != 0)
        goto out;
    const char *p[] = { f.file_id };
    PGresult *r = br_db_query(c,
        "SELECT version, size, piece_size, npieces, encode(root, 'hex'),"
        " created_by, extract(epoch FROM created_at)::bigint"
        " FROM versions WHERE file_id = $1 ORDER BY version", 1, p, err);
    if (r == NULL)
        goto out;
    json_t *list = json_array();
    for (int i = 0; i < PQntuples(r); i++)
        json_array_append_new(list, json_pack(
            "{s:I, s:I, s:I, s:I, s:s, s:s, s:o}",
            "version", (json_int_t)strtoll(PQgetvalue(r, i, 0), NULL, 10),
            "size", (json_int_t)strtoll(PQgetvalue(r, i, 1), NULL, 10),
            "piece_size", (json_int_t)strtoll(PQgetvalue(r, i, 2), NULL, 10),
            "pieces", (json_int_t)strtoll(PQgetvalue(r, i, 3), NULL, 10),
            "root", PQgetvalue(r, i, 4), "created_by", PQgetvalue(r, i, 5),
            "created_at", br_time_json(strtoll(PQgetvalue(r, i, 6), NULL, 10))));
    PQclear(r);
    *reply = json_pack("{s:s, s:o}", "file_id", f.file_id, "versions", list);
    rc = 0;
out:
    br_db_put(app->db, c);
    return rc;
}

BR_HANDLER(h_file_manifest)
{
    struct br_app *app = br_app_of(req);
    struct br_file f;
    struct br_vent *e;
    int rc = -1;
    if (br_file_vent_get(req, BR_ACCESS_READ, &f, &e, err) != 0)
        return -1;
    const struct br_version *v = br_vent_version(e);
    char xsign[SHOAL_XSIGN_MAX], root[65];
    struct shoal_xsign x;
    br_vent_xsign(app, e, f.file_id, xsign);
    if (shoal_xsign_parse(xsign, &x, err) != 0)
        goto out;
    shoal_hex_encode(v->root, 32, root);
    json_t *hashes = json_array();
    for (uint64_t i = 0; hashes && i < v->nhashes; i++) {
        char hx[65];
        shoal_hex_encode(v->hashes[i], 32, hx);
        json_array_append_new(hashes, json_string(hx));
    }
    *reply = json_pack("{s:s, s:i, s:I, s:I, s:I, s:s, s:o, s:s, s:o, s:s}",
        "file_id", f.file_id, "version", v->version,
        "size", (json_int_t)v->size, "piece_size", (json_int_t)v->piece_size,
        "pieces", (json_int_t)v->npieces, "root", root, "piece_hashes", hashes,
        "broker_id", app->broker_id, "expires_at", br_time_json(x.expires),
        "x_sign", xsign);
    shoal_req_add_header(req, "X-Sign", xsign);
    rc = *reply ? 0 : shoal_err_set(err, SHOAL_EINTERNAL, "out of memory");
out:
    br_vent_put(app, e);
    return rc;
}

BR_HANDLER(h_file_delete)
{
    struct br_app *app = br_app_of(req);
    struct br_file f;
    PGconn *c = NULL;
    PGresult *r = NULL;
    int rc = -1;

    if ((c = br_db_get(app->db, err)) == NULL || br_db_begin(c, err) != 0 ||
        br_file_open(c, req, BR_ACCESS_WRITE, &f, err) != 0)
        goto out;
    const char *p[] = { f.file_id };
    r = br_db_query(c, "UPDATE files SET deleted_at = now(), updated_at = now()"
                       " WHERE file_id = $1 AND deleted_at IS NULL RETURNING 1",
                    1, p, err);
    if (r == NULL)
        goto out;
    if (PQntuples(r) == 0) {            /* deleted meanwhile */
        shoal_err_set(err, SHOAL_EGONE, "file '%s' was deleted", f.file_id);
        goto out;
    }
    PQclear(r);
    /* Drop one reference per (version, index).  Pieces left without any
     * are freed: this broker removes its copies right after the commit,
     * the other file brokers on their next sweep (gc.c). */
    r = PQexecParams(c,
        "WITH refs AS (SELECT substring(v.hashes from (i * 32 + 1)::integer for 32) AS h"
        "  FROM versions v, generate_series(0, v.npieces - 1) AS i"
        "  WHERE v.file_id = $1),"
        " n AS (SELECT h, count(*) AS k FROM refs GROUP BY h ORDER BY h)"
        " UPDATE pieces p SET refs = p.refs - n.k,"
        "  freed_at = CASE WHEN p.refs = n.k THEN now() END"
        " FROM n WHERE p.hash = n.h RETURNING p.hash, p.refs",
        1, NULL, p, NULL, NULL, 1);
    if (r == NULL || PQresultStatus(r) != PGRES_TUPLES_OK) {
        shoal_err_set(err, SHOAL_EINTERNAL, "cannot count piece references");
        goto out;
    }
    /* The hashes whose count went to 0 (an int8 0 in binary). */
    int nfreed = 0, nrows = PQntuples(r);
    unsigned char (*freed)[32] = calloc(nrows ? (size_t)nrows : 1, 32);
    if (freed == NULL) {
        shoal_err_set(err, SHOAL_EINTERNAL, "out of memory");
        goto out;
    }
    for (int i = 0; i < nrows; i++)
        if (PQgetlength(r, i, 0) == 32 && PQgetlength(r, i, 1) == 8 &&
            memcmp(PQgetvalue(r, i, 1), "\0\0\0\0\0\0\0\0", 8) == 0)
            memcpy(freed[nfreed++], PQgetvalue(r, i, 0), 32);
    PQclear(r);
    r = br_db_query(c, "DELETE FROM versions WHERE file_id = $1", 1, p, err);
    if (r == NULL || br_db_commit(c, err) != 0) {
        free(freed);
        goto out;
    }
    br_cache_file_changed(app->cache, f.file_id);
    PQclear(r);
    r = NULL;
    for (int i = 0; i < nfreed; i++)
        br_gc_remove(app, c, freed[i]);
    free(freed);
    *reply = json_pack("{s:s, s:b}", "file_id", f.file_id, "deleted", 1);
    rc = 0;
out:
    PQclear(r);
    br_db_put(app->db, c);
    return rc;
}
