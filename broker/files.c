/*
 * files.c - what the file handlers share: a file with the caller's access
 * to it, the version a request names, a version and its piece hashes,
 * signing a version.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "broker.h"
#include "log.h"
#include "manifest.h"

/* br_file_open, from the caches when cached is 1. */
static int file_open(PGconn *c, const struct shoal_req *req, enum br_access want,
                     int cached, struct br_file *f, struct shoal_err *err)
{
    struct br_app *app = br_app_of(req);
    const struct br_session *me = br_caller(req);
    struct br_file_row row;
    char id[37];
    int found, access = BR_ACCESS_NONE;

    memset(f, 0, sizeof *f);
    if (br_param_uuid(req, "id", id, err) != 0)
        return -1;
    struct br_cache *cache = cached ? app->cache : NULL;
    found = br_file_find(cache, c, id, &row, err);
    if (found == 1)
        access = br_access_find(cache, c, me->user_id, row.share_id, err);
    if (found < 0)
        return -1;
    if (found == 0)
        return shoal_err_set(err, SHOAL_ENOTFOUND, "file '%s' not found", id);
    if (access < 0)
        return -1;
    memcpy(f->file_id, id, sizeof id);
    memcpy(f->share_id, row.share_id, sizeof f->share_id);
    memcpy(f->owner_id, row.owner_id, sizeof f->owner_id);
    f->latest = row.latest;
    f->access = (enum br_access)access;
    /* Whoever may not read the share may not know the file exists. */
    if (f->access == BR_ACCESS_NONE)
        return shoal_err_set(err, SHOAL_ENOTFOUND, "file '%s' not found", id);
    if (row.deleted)
        return shoal_err_set(err, SHOAL_EGONE, "file '%s' was deleted", id);
    if (want >= BR_ACCESS_WRITE && f->access < BR_ACCESS_WRITE)
        return shoal_err_set(err, SHOAL_EFORBIDDEN,
                             "no write access to the share of file '%s'", id);
    return 0;
}

int br_file_open(PGconn *c, const struct shoal_req *req, enum br_access want,
                 struct br_file *f, struct shoal_err *err)
{
    /* Reads may use the caches; writes see the database as it is now. */
    return file_open(c, req, want, want < BR_ACCESS_WRITE, f, err);
}

int br_version_arg(const struct shoal_req *req, const struct br_file *f,
                   int *version, struct shoal_err *err)
{
    const char *v = shoal_req_query(req, "version");
    if (v == NULL) {
        *version = f->latest;
        return 0;
    }
    char *end;
    long n = strtol(v, &end, 10);
    if (*v < '1' || *v > '9' || *end != '\0' || n < 1 || n > 2147483647)
        return shoal_err_set(err, SHOAL_EINVAL,
                             "'version' must be a positive integer, not '%.32s'", v);
    *version = (int)n;
    return 0;
}

int br_file_vent_get(const struct shoal_req *req, enum br_access want,
                     struct br_file *f, struct br_vent **e,
                     struct shoal_err *err)
{
    struct br_app *app = br_app_of(req);
    int version;

    *e = NULL;
    PGconn *c = br_db_get(app->db, err);
    if (c == NULL)
        return -1;
    int rc = file_open(c, req, want, 1, f, err) != 0 ||
             br_version_arg(req, f, &version, err) != 0 ||
             br_vent_get(app, c, f->file_id, version, e, err) != 0 ? -1 : 0;
    br_db_put(app->db, c);
    return rc;
}

int br_version_load(PGconn *c, const char *file_id, int version,
                    uint64_t first_piece, uint64_t npieces_wanted,
                    struct br_version *v, struct shoal_err *err)
{
    char ver[16], from[24], len[24];
    memset(v, 0, sizeof *v);
    snprintf(ver, sizeof ver, "%d", version);
    /* bytea positions are 32-bit signed: 2^25 hashes (1 GiB of them, the
     * most a bytea holds) is more than any version has. */
    if (first_piece > (1ULL << 25))
        first_piece = 1ULL << 25;
    if (npieces_wanted > (1ULL << 25))
        npieces_wanted = 1ULL << 25;
    snprintf(from, sizeof from, "%llu",
             (unsigned long long)(first_piece * SHOAL_HASH_BYTES + 1));
    snprintf(len, sizeof len, "%llu",
             (unsigned long long)(npieces_wanted * SHOAL_HASH_BYTES));
    const char *p[] = { file_id, ver, from, len };
    /* Binary results: the hashes come back as raw bytes. */
    PGresult *r = PQexecParams(c,
        "SELECT size, piece_size, npieces, root,"
        " substring(hashes from $3::integer for $4::integer),"
        " extract(epoch FROM created_at)::bigint, created_by::text"
        " FROM versions WHERE file_id = $1 AND version = $2::integer",
        4, NULL, p, NULL, NULL, 1);
    if (r == NULL || PQresultStatus(r) != PGRES_TUPLES_OK) {
        PQclear(r);
        if (PQstatus(c) != CONNECTION_OK)
            return shoal_err_set(err, SHOAL_EUNAVAILABLE, "database unavailable");
        shoal_log(SHOAL_LOG_ERROR, NULL, "version query failed: %s",
                  PQerrorMessage(c));
        return shoal_err_set(err, SHOAL_EINTERNAL, "database error");
    }
    if (PQntuples(r) == 0) {
        PQclear(r);
        return shoal_err_set(err, SHOAL_ENOTFOUND,
                             "file '%s' has no version %d", file_id, version);
    }
    /* int8/int4 in network byte order */
    const unsigned char *s = (const unsigned char *)PQgetvalue(r, 0, 0);
    const unsigned char *ps = (const unsigned char *)PQgetvalue(r, 0, 1);
    const unsigned char *np = (const unsigned char *)PQgetvalue(r, 0, 2);
    const unsigned char *ct = (const unsigned char *)PQgetvalue(r, 0, 5);
    for (int i = 0; i < 8; i++) {
        v->size = v->size << 8 | s[i];
        v->npieces = v->npieces << 8 | np[i];
        v->created_at = v->created_at << 8 | ct[i];
    }
    for (int i = 0; i < 4; i++)
        v->piece_size = v->piece_size << 8 | ps[i];
    v->version = version;
    memcpy(v->root, PQgetvalue(r, 0, 3), SHOAL_HASH_BYTES);
    snprintf(v->created_by, sizeof v->created_by, "%s", PQgetvalue(r, 0, 6));
    size_t hl = (size_t)PQgetlength(r, 0, 4);
    v->first = first_piece;
    v->nhashes = hl / SHOAL_HASH_BYTES;
    if (hl > 0) {
        v->hashes = malloc(hl);
        if (v->hashes == NULL) {
            PQclear(r);
            return shoal_err_set(err, SHOAL_EINTERNAL, "out of memory");
        }
        memcpy(v->hashes, PQgetvalue(r, 0, 4), hl);
    }
    PQclear(r);
    return 0;
}

void br_version_free(struct br_version *v)
{
    free(v->hashes);
    v->hashes = NULL;
}

void br_version_xsign(const struct br_app *app, const char *file_id,
                      const struct br_version *v, char out[SHOAL_XSIGN_MAX],
                      long long *expires)
{
    struct shoal_xsign x;
    memset(&x, 0, sizeof x);
    memcpy(x.key, app->broker_id, sizeof x.key);
    x.version = (uint64_t)v->version;
    x.size = v->size;
    x.piece_size = v->piece_size;
    memcpy(x.root, v->root, sizeof x.root);
    /* Whole hours, so that every answer within an hour carries the same
     * statement. */
    long long now = (long long)time(NULL);
    x.expires = (now + app->sign_ttl + 3599) / 3600 * 3600;
    shoal_xsign_sign(&x, file_id, app->sk);
    shoal_xsign_format(&x, out);
    if (expires)
        *expires = x.expires;
}
