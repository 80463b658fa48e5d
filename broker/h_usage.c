/*
 * h_usage.c - GET /v1/usage: what a user used, per hour or day, as JSON
 * or CSV.  A session sees its own user; the admin token sees anyone's
 * (everyone's when no user is named).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "broker.h"

#define MAX_SPAN (400LL * 86400)     /* longest from..to */

static int time_arg(const struct shoal_req *req, const char *name,
                    long long def, long long *out, struct shoal_err *err)
{
    const char *v = shoal_req_query(req, name);
    time_t t;
    if (v == NULL) {
        *out = def;
        return 0;
    }
    if (shoal_time_parse(v, &t, NULL) != 0)
        return shoal_err_set(err, SHOAL_EINVAL,
                             "'%s' must be an RFC 3339 time, not '%.40s'", name, v);
    *out = (long long)t;
    return 0;
}

BR_HANDLER(h_usage)
{
    struct br_app *app = br_app_of(req);
    const char *user_q = shoal_req_query(req, "user");
    const char *gran = shoal_req_query(req, "granularity");
    const char *format = shoal_req_query(req, "format");
    char user[37] = "";
    long long now = (long long)time(NULL), from, to;

    if (user_q && shoal_uuid_normalize(user_q, user, "user", err) != 0)
        return -1;
    if (!shoal_req_is_admin(req)) {
        const char *me = br_caller(req)->user_id;
        if (user[0] && strcmp(user, me) != 0)
            return shoal_err_set(err, SHOAL_EFORBIDDEN,
                                 "the usage of user '%s' is not yours", user);
        memcpy(user, me, sizeof user);
    }
    if (gran == NULL)
        gran = "hour";
    if (strcmp(gran, "hour") != 0 && strcmp(gran, "day") != 0)
        return shoal_err_set(err, SHOAL_EINVAL,
                             "'granularity' must be 'hour' or 'day'");
    if (format == NULL)
        format = "json";
    if (strcmp(format, "json") != 0 && strcmp(format, "csv") != 0)
        return shoal_err_set(err, SHOAL_EINVAL, "'format' must be 'json' or 'csv'");
    if (time_arg(req, "to", now, &to, err) != 0 ||
        time_arg(req, "from", to - 86400, &from, err) != 0)
        return -1;
    if (from >= to || to - from > MAX_SPAN)
        return shoal_err_set(err, SHOAL_EINVAL,
                             "'from' must be before 'to', at most 400 days apart");

    /* What this broker counted so far is in the table before we read. */
    br_usage_flush(app, user[0] ? user : NULL);
    char f[24], t[24];
    snprintf(f, sizeof f, "%lld", from);
    snprintf(t, sizeof t, "%lld", to);
    const char *p[] = { f, t, gran, user[0] ? user : NULL };
    PGresult *r = br_db_exec(app->db,
        "SELECT user_id, extract(epoch FROM date_trunc($3, hour))::bigint AS period,"
        " sum(ingress), sum(egress), sum(requests), coalesce(max(stored), 0),"
        " coalesce(sum(stored), 0)"
        " FROM usage WHERE hour >= date_trunc('hour', to_timestamp($1::bigint))"
        " AND hour < to_timestamp($2::bigint)"
        " AND ($4::uuid IS NULL OR user_id = $4::uuid)"
        " GROUP BY user_id, period ORDER BY period, user_id", 4, p, err);
    if (r == NULL)
        return -1;

    int rc = 0;
    if (strcmp(format, "csv") == 0) {
        char *buf = NULL;
        size_t len = 0;
        FILE *out = open_memstream(&buf, &len);
        if (out == NULL) {
            PQclear(r);
            return shoal_err_set(err, SHOAL_EINTERNAL, "out of memory");
        }
        fprintf(out, "user_id,period_start,ingress_bytes,egress_bytes,requests,"
                     "stored_bytes,stored_byte_hours\r\n");
        for (int i = 0; i < PQntuples(r); i++) {
            char when[32];
            shoal_time_format((time_t)strtoll(PQgetvalue(r, i, 1), NULL, 10), when);
            fprintf(out, "%s,%s,%s,%s,%s,%s,%s\r\n", PQgetvalue(r, i, 0), when,
                    PQgetvalue(r, i, 2), PQgetvalue(r, i, 3), PQgetvalue(r, i, 4),
                    PQgetvalue(r, i, 5), PQgetvalue(r, i, 6));
        }
        fclose(out);
        rc = shoal_req_set_body(req, 200, "text/csv; charset=utf-8", buf, len);
        free(buf);
        if (rc != 0)
            shoal_err_set(err, SHOAL_EINTERNAL, "out of memory");
    } else {
        json_t *rows = json_array();
        for (int i = 0; i < PQntuples(r); i++)
            json_array_append_new(rows, json_pack(
                "{s:s, s:o, s:I, s:I, s:I, s:I, s:I}",
                "user_id", PQgetvalue(r, i, 0),
                "period_start", br_time_json(strtoll(PQgetvalue(r, i, 1), NULL, 10)),
                "ingress_bytes", (json_int_t)strtoll(PQgetvalue(r, i, 2), NULL, 10),
                "egress_bytes", (json_int_t)strtoll(PQgetvalue(r, i, 3), NULL, 10),
                "requests", (json_int_t)strtoll(PQgetvalue(r, i, 4), NULL, 10),
                "stored_bytes", (json_int_t)strtoll(PQgetvalue(r, i, 5), NULL, 10),
                "stored_byte_hours",
                (json_int_t)strtoll(PQgetvalue(r, i, 6), NULL, 10)));
        *reply = json_pack("{s:s?, s:o, s:o, s:s, s:o}",
                           "user_id", user[0] ? user : NULL,
                           "from", br_time_json(from), "to", br_time_json(to),
                           "granularity", gran, "rows", rows);
    }
    PQclear(r);
    return rc;
}
