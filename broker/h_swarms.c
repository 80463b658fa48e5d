/*
 * h_swarms.c - the named swarms that are not a file's (a URL's swarm is
 * GET /v1/swarms/{swarm}, h_inject.c):
 *
 *   sha256("injectors")         the brokers of the directory with the
 *                               injector role: listed, never announced to
 *   sha256("injector proxies")  the peers whose 'shoal serve
 *                               --act-as-proxy' forwards injections: they
 *                               announce themselves (POST), withdraw
 *                               (DELETE); an announcement lasts peer_ttl
 *
 * GET/POST/DELETE /v1/swarms/{swarm}/peers; 404 for any other swarm.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "broker.h"

#define NAME_INJECTORS "injectors"
#define NAME_PROXIES "injector proxies"
#define PEERS_MAX 200                /* members one GET lists */
#define PER_USER_MAX 16              /* live URLs of one user per swarm */

/* The name of the named swarm {swarm} of req into *name (static), or -1
 * with err: 400 for a malformed swarm, 404 for one that is not named. */
static int swarm_arg(struct shoal_req *req, const char **name,
                     struct shoal_err *err)
{
    static const char *const names[] = { NAME_INJECTORS, NAME_PROXIES };
    const char *swarm = shoal_req_param(req, "swarm");
    unsigned char bin[32], md[SHOAL_HASH_BYTES];

    if (swarm == NULL || strlen(swarm) != 64 ||
        shoal_hex_decode_exact(swarm, bin, sizeof bin, "swarm", NULL) != 0)
        return shoal_err_set(err, SHOAL_EINVAL, "swarm must be 64 lowercase "
                             "hex digits, sha256 of the swarm's name");
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        shoal_sha256(names[i], strlen(names[i]), md);
        if (memcmp(md, bin, sizeof md) == 0) {
            *name = names[i];
            return 0;
        }
    }
    return shoal_err_set(err, SHOAL_ENOTFOUND, "swarm '%.64s' is not a named "
                         "swarm ('injectors', 'injector proxies'); a URL's "
                         "swarm is GET /v1/swarms/{swarm}", swarm);
}

static json_t *injector_json(PGresult *r, int i)
{
    return json_pack("{s:s, s:s, s:s, s:o*}", "kind", "broker",
                     "broker_id", PQgetvalue(r, i, 0),
                     "url", PQgetvalue(r, i, 1),
                     "public_key", br_bytea_b64_json(PQgetvalue(r, i, 2)));
}

static json_t *proxy_json(PGresult *r, int i)
{
    return json_pack("{s:s, s:s, s:s, s:o, s:o}", "kind", "peer",
                     "user_id", PQgetvalue(r, i, 0),
                     "url", PQgetvalue(r, i, 1),
                     "announced_at",
                     br_time_json(strtoll(PQgetvalue(r, i, 2), NULL, 10)),
                     "expires_at",
                     br_time_json(strtoll(PQgetvalue(r, i, 3), NULL, 10)));
}

BR_HANDLER(h_swarm_peers_list)
{
    struct br_app *app = br_app_of(req);
    const char *name;
    const char *swarm = shoal_req_param(req, "swarm");
    PGresult *r;

    if (swarm_arg(req, &name, err) != 0)
        return -1;
    if (strcmp(name, NAME_INJECTORS) == 0) {
        const char *p[] = { app->broker_id };
        r = br_db_exec(app->db,
            "SELECT broker_id, url, public_key FROM brokers"
            " WHERE ',' || roles || ',' LIKE '%,injector,%'"
            " ORDER BY broker_id <> $1::uuid, broker_id", 1, p, err);
        if (br_rows_reply(r, "peers", injector_json, reply, err) != 0)
            return -1;
    } else {
        const char *p[] = { swarm };
        r = br_db_exec(app->db,
            "SELECT user_id, url, extract(epoch FROM announced_at)::bigint,"
            " extract(epoch FROM expires_at)::bigint FROM swarm_peers"
            " WHERE swarm = decode($1, 'hex') AND expires_at > now()"
            " ORDER BY announced_at DESC LIMIT 200", 1, p, err);   /* PEERS_MAX */
        if (br_rows_reply(r, "peers", proxy_json, reply, err) != 0)
            return -1;
    }
    json_object_set_new(*reply, "swarm", json_string(swarm));
    json_object_set_new(*reply, "name", json_string(name));
    return 0;
}

#define ANNOUNCE_SQL \
    "WITH gone AS (DELETE FROM swarm_peers WHERE swarm = decode($1, 'hex')" \
    "  AND expires_at <= now())," \
    " old AS (SELECT expires_at > now() AS live FROM swarm_peers" \
    "  WHERE swarm = decode($1, 'hex') AND user_id = $2 AND url = $3)," \
    " mine AS (SELECT count(*) AS n FROM swarm_peers" \
    "  WHERE swarm = decode($1, 'hex') AND user_id = $2 AND url <> $3" \
    "  AND expires_at > now())" \
    " INSERT INTO swarm_peers (swarm, user_id, url, announced_at, expires_at)" \
    " SELECT decode($1, 'hex'), $2, $3, now()," \
    "  now() + make_interval(secs => $4::bigint)" \
    " WHERE (SELECT n FROM mine) < 16" /* PER_USER_MAX */ \
    " ON CONFLICT (swarm, user_id, url) DO UPDATE SET" \
    "  announced_at = EXCLUDED.announced_at, expires_at = EXCLUDED.expires_at" \
    " RETURNING extract(epoch FROM announced_at)::bigint," \
    "  extract(epoch FROM expires_at)::bigint," \
    "  coalesce((SELECT live FROM old), false)"

BR_HANDLER(h_swarm_peers_announce)
{
    static const char *const keys[] = { "url", NULL };
    struct br_app *app = br_app_of(req);
    const struct br_session *me = br_caller(req);
    const char *swarm = shoal_req_param(req, "swarm");
    json_t *body = shoal_req_body(req);
    const char *name, *url;
    char ttl[24];

    if (swarm_arg(req, &name, err) != 0)
        return -1;
    if (strcmp(name, NAME_INJECTORS) == 0)
        return shoal_err_set(err, SHOAL_EFORBIDDEN, "the swarm 'injectors' "
                             "lists the brokers with the injector role "
                             "(GET /v1/brokers): it takes no announcements");
    if (shoal_json_only(body, keys, err) != 0 ||
        shoal_json_str(body, "url", &url, err) != 0 ||
        br_peer_url_check(url, json_string_length(json_object_get(body, "url")),
                          err) != 0)
        return -1;
    snprintf(ttl, sizeof ttl, "%lld", app->peer_ttl);
    const char *p[] = { swarm, me->user_id, url, ttl };
    PGresult *r = br_db_exec(app->db, ANNOUNCE_SQL, 4, p, err);
    if (r == NULL)
        return -1;
    if (PQntuples(r) != 1) {
        PQclear(r);
        return shoal_err_set(err, SHOAL_EEXISTS, "user '%s' announces %d "
                             "URLs in the swarm '%s' already: withdraw one "
                             "first", me->user_id, PER_USER_MAX, name);
    }
    int refreshed = PQgetvalue(r, 0, 2)[0] == 't';
    *reply = json_pack("{s:s, s:s, s:s, s:s, s:o, s:o}", "swarm", swarm,
                       "name", name, "user_id", me->user_id, "url", url,
                       "announced_at",
                       br_time_json(strtoll(PQgetvalue(r, 0, 0), NULL, 10)),
                       "expires_at",
                       br_time_json(strtoll(PQgetvalue(r, 0, 1), NULL, 10)));
    PQclear(r);
    if (*reply == NULL)
        return shoal_err_set(err, SHOAL_EINTERNAL, "out of memory");
    shoal_req_set_status(req, refreshed ? 200 : 201);
    return 0;
}

BR_HANDLER(h_swarm_peers_withdraw)
{
    struct br_app *app = br_app_of(req);
    const struct br_session *me = br_caller(req);
    const char *swarm = shoal_req_param(req, "swarm");
    const char *url = shoal_req_query(req, "url");
    const char *name;

    if (swarm_arg(req, &name, err) != 0)
        return -1;
    if (url == NULL)
        return shoal_err_set(err, SHOAL_EINVAL, "missing query parameter "
                             "'url'");
    if (br_peer_url_check(url, strlen(url), err) != 0)
        return -1;
    const char *p[] = { swarm, me->user_id, url };
    PGresult *r = br_db_exec(app->db,
        "DELETE FROM swarm_peers WHERE swarm = decode($1, 'hex')"
        " AND user_id = $2 AND url = $3", 3, p, err);
    if (r == NULL)
        return -1;
    int n = atoi(PQcmdTuples(r));
    PQclear(r);
    if (n == 0)
        return shoal_err_set(err, SHOAL_ENOTFOUND, "'%.200s' is not announced"
                             " in the swarm '%s'", url, name);
    *reply = json_pack("{s:s, s:s, s:s, s:b}", "swarm", swarm, "name", name,
                       "url", url, "withdrawn", 1);
    return *reply ? 0 : shoal_err_set(err, SHOAL_EINTERNAL, "out of memory");
}
