/*
 * h_reports.c - bad-source reports: a downloader says which source sent
 * a piece that failed its hash check (POST /v1/files/{id}/reports, by a
 * reader of the file); the operator lists them (GET /v1/reports, admin).
 * A reporter reports one source, version and piece once: reporting it
 * again refreshes the stored report.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "broker.h"

#define REPORTS_DEFAULT 100          /* reports one GET lists */
#define REPORTS_MAX 1000

/* The columns a report row is read with, for row_json. */
#define REPORT_COLS \
    "report_id, file_id, version, piece, url, reason, reporter_id," \
    " peer_user_id, extract(epoch FROM reported_at)::bigint"

/* Row i of a result with REPORT_COLS as a report object: new reference. */
static json_t *row_json(PGresult *r, int i)
{
    const char *peer = PQgetisnull(r, i, 7) ? NULL : PQgetvalue(r, i, 7);
    return json_pack("{s:s, s:s, s:i, s:I, s:s, s:s, s:s, s:s?, s:o}",
        "report_id", PQgetvalue(r, i, 0), "file_id", PQgetvalue(r, i, 1),
        "version", atoi(PQgetvalue(r, i, 2)),
        "piece", (json_int_t)strtoll(PQgetvalue(r, i, 3), NULL, 10),
        "url", PQgetvalue(r, i, 4), "reason", PQgetvalue(r, i, 5),
        "reporter_id", PQgetvalue(r, i, 6), "peer_user_id", peer,
        "reported_at", br_time_json(strtoll(PQgetvalue(r, i, 8), NULL, 10)));
}

/* --- POST /v1/files/{id}/reports -------------------------------------- */

/* $1 report_id, $2 file, $3 version, $4 piece, $5 url, $6 reason,
 * $7 reporter.  The peer is the user whose latest announcement of url
 * for that version the tracker holds, if any.  The last column is true
 * for a new report. */
#define REPORT_SQL \
    "INSERT INTO reports AS r (report_id, file_id, version, piece, url," \
    "  reason, reporter_id, peer_user_id)" \
    " VALUES ($1, $2, $3::integer, $4::bigint, $5, $6, $7," \
    "  (SELECT user_id FROM peers WHERE file_id = $2 AND" \
    "   version = $3::integer AND url = $5" \
    "   ORDER BY announced_at DESC LIMIT 1))" \
    " ON CONFLICT (file_id, version, piece, url, reporter_id) DO UPDATE SET" \
    "  reason = EXCLUDED.reason, peer_user_id = EXCLUDED.peer_user_id," \
    "  reported_at = now()" \
    " RETURNING " REPORT_COLS ", xmax = 0"

BR_HANDLER(h_report_create)
{
    static const char *const keys[] = { "url", "piece", "version", "reason",
                                        NULL };
    struct br_app *app = br_app_of(req);
    const struct br_session *me = br_caller(req);
    json_t *body = shoal_req_body(req);
    const char *url, *reason;
    json_int_t piece, ver;
    struct br_file f;
    PGconn *c = NULL;
    PGresult *r = NULL;
    int rc = -1;

    if (shoal_json_only(body, keys, err) != 0 ||
        shoal_json_str(body, "url", &url, err) != 0 ||
        br_peer_url_check(url, json_string_length(json_object_get(body, "url")),
                          err) != 0 ||
        shoal_json_int(body, "piece", &piece, err) != 0 ||
        shoal_json_int(body, "version", &ver, err) != 0 ||
        br_json_name(body, "reason", &reason, err) != 0)
        return -1;
    if (piece < 0)
        return shoal_err_set(err, SHOAL_EINVAL,
                             "field 'piece' must be a piece index (0 or more)");
    if (ver < 1 || ver > 2147483647)
        return shoal_err_set(err, SHOAL_EINVAL,
                             "field 'version' must be a positive integer");
    if ((c = br_db_get(app->db, err)) == NULL)
        return -1;
    if (br_file_open(c, req, BR_ACCESS_READ, &f, err) != 0)
        goto out;

    char version_t[16], piece_t[24], id[37];
    snprintf(version_t, sizeof version_t, "%d", (int)ver);
    snprintf(piece_t, sizeof piece_t, "%lld", (long long)piece);
    const char *vp[] = { f.file_id, version_t };
    if ((r = br_db_query(c, "SELECT npieces FROM versions"
                            " WHERE file_id = $1 AND version = $2::integer",
                         2, vp, err)) == NULL)
        goto out;
    if (PQntuples(r) != 1) {
        shoal_err_set(err, SHOAL_ENOTFOUND, "version %d of file '%s' not found",
                      (int)ver, f.file_id);
        goto out;
    }
    long long npieces = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
    PQclear(r);
    r = NULL;
    if (piece >= npieces) {
        shoal_err_set(err, SHOAL_EINVAL, "field 'piece' is %lld, past the last"
                      " of the %lld pieces of version %d", (long long)piece,
                      npieces, (int)ver);
        goto out;
    }
    shoal_uuid_v4(id);
    const char *p[] = { id, f.file_id, version_t, piece_t, url, reason,
                        me->user_id };
    if ((r = br_db_query(c, REPORT_SQL, 7, p, err)) == NULL)
        goto out;
    int created = PQgetvalue(r, 0, 9)[0] == 't';
    if ((*reply = row_json(r, 0)) == NULL) {
        shoal_err_set(err, SHOAL_EINTERNAL, "out of memory");
        goto out;
    }
    shoal_req_set_status(req, created ? 201 : 200);
    rc = 0;
out:
    PQclear(r);
    br_db_put(app->db, c);
    return rc;
}

/* --- GET /v1/reports?file=…&limit=N (admin) ---------------------------- */

BR_HANDLER(h_report_list)
{
    struct br_app *app = br_app_of(req);
    const char *file_q = shoal_req_query(req, "file");
    const char *limit_q = shoal_req_query(req, "limit");
    char file[37], limit_t[16];
    long limit = REPORTS_DEFAULT;

    if (file_q != NULL && shoal_uuid_normalize(file_q, file, "file", err) != 0)
        return -1;
    if (limit_q != NULL) {
        char *end;
        limit = strtol(limit_q, &end, 10);
        if (*limit_q < '1' || *limit_q > '9' || *end != '\0' || limit < 1 ||
            limit > REPORTS_MAX)
            return shoal_err_set(err, SHOAL_EINVAL,
                                 "'limit' must be an integer from 1 to %d,"
                                 " not '%.32s'", REPORTS_MAX, limit_q);
    }
    snprintf(limit_t, sizeof limit_t, "%ld", limit);
    const char *p[] = { file_q ? file : NULL, limit_t };
    PGresult *r = br_db_exec(app->db,
        "SELECT " REPORT_COLS " FROM reports"
        " WHERE $1::uuid IS NULL OR file_id = $1::uuid"
        " ORDER BY reported_at DESC, report_id LIMIT $2::integer", 2, p, err);
    return br_rows_reply(r, "reports", row_json, reply, err);
}
