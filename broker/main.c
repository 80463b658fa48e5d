/*
 * main.c - shoal-broker: configuration, keys, database, migrations, the
 * HTTP server, the purge of expired sessions and lapsed tracker
 * announcements, and a clean stop on SIGINT or SIGTERM.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#include "broker.h"
#include "log.h"

static const struct shoal_config_key config_keys[] = {
    { "listen", "127.0.0.1:8080", "address and port to serve on" },
    { "public_url", NULL, "URL peers use to reach this broker (default http://LISTEN)" },
    { "database_url", NULL, "PostgreSQL conninfo or postgresql:// URL (required)" },
    { "data_dir", "./var/broker", "folder for the signing key, the hashing key and the broker id" },
    { "roles", "trust,metadata,file,injector,accounting", "roles this broker plays" },
    { "admin_token", NULL, "bearer token of operator calls (none: admin calls refused)" },
    { "registration", "open", "open, or invite (an operator invite is required)" },
    { "session_ttl", "24h", "how long a session lives" },
    { "session_purge_after", "1h", "how long an expired session is kept before it is deleted" },
    { "session_cache_ttl", "60s", "longest time a session is served from memory (0: no cache)" },
    { "version_cache", "64MiB", "memory for versions and their piece hashes" },
    { "map_cache", "1GiB", "pieces kept memory-mapped for ranges across pieces (page cache, not memory of its own); 0: off" },
    { "sign_ttl", "7d", "how long a manifest signature (X-Sign) stays valid" },
    { "peer_ttl", "5m", "how long a tracker announcement lasts unless the peer refreshes it" },
    { "inject_allow", NULL, "CIDR blocks an injector may fetch from although they are loopback, private, link-local, multicast or reserved" },
    { "inject_max_size", "1GiB", "largest web object one injection takes" },
    { "inject_timeout", "20s", "an origin silent this long (connecting, or between bytes) is abandoned; keep it below idle_timeout" },
    { "inject_ttl", "7d", "longest life of an injected object's signature (the origin may ask for less)" },
    { "connection_threads", "on", "one thread per connection (fastest file serving); off: an event-loop pool of 'threads'" },
    { "threads", "4", "HTTP worker threads of the pool (connection_threads off)" },
    { "db_connections", "4", "PostgreSQL connections in the pool" },
    { "max_connections", "1000", "open HTTP connections above which new ones are refused" },
    { "idle_timeout", "30s", "an HTTP connection idle this long is closed" },
    { "request_timeout", "30s", "a request must arrive whole within this time" },
    { "body_limit", "1MiB", "largest request body accepted" },
    { "connection_memory", "128KiB", "buffer memory of each HTTP connection: uploads arrive in chunks this large" },
    { "trusted_proxies", NULL, "comma-separated proxy addresses whose X-Forwarded-For is believed" },
    { "log_level", "info", "debug, info, warn, error or off" },
    { "log_file", NULL, "append JSON log lines to this file instead of stderr" },
};
#define NKEYS (sizeof config_keys / sizeof config_keys[0])

/* Longest session_ttl or purge delay: PostgreSQL's timestamps and our
 * 64-bit arithmetic hold far more, but nothing sensible needs more. */
#define MAX_DURATION (3650LL * 86400)

static void usage(const struct shoal_config *cfg, FILE *out)
{
    fprintf(out,
            "usage: shoal-broker [--config FILE] [--KEY VALUE]...\n"
            "       shoal-broker --print-routes | --help | --version\n\n"
            "Runs the shoal broker.  Each KEY can also be set in the file as\n"
            "'key = value' or in the environment as SHOAL_KEY; flags win over\n"
            "the environment, which wins over the file.\n\nkeys:\n");
    shoal_config_usage(cfg, out);
}

/* The broker's id, kept in data_dir/broker.id, made on first start. */
static int load_broker_id(const char *dir, char id[37], struct shoal_err *err)
{
    char path[4096], *text = NULL;
    size_t len;
    snprintf(path, sizeof path, "%s/broker.id", dir);
    if (access(path, F_OK) != 0) {
        shoal_uuid_v4(id);
        char line[40];
        snprintf(line, sizeof line, "%s\n", id);
        return shoal_file_write_atomic(path, line, strlen(line), 0600, err);
    }
    if (shoal_file_read(path, 64, &text, &len, err) != 0)
        return -1;
    text[strcspn(text, "\r\n")] = '\0';
    int rc = shoal_uuid_normalize(text, id, path, err);
    free(text);
    return rc;
}

/* Put this broker in the directory (or refresh its row). */
static int announce(struct br_app *app, struct shoal_err *err)
{
    char pk_hx[2 * SHOAL_PK_BYTES + 3];
    br_bytea_text(app->pk, sizeof app->pk, pk_hx);
    const char *p[] = { app->broker_id, app->public_url, app->roles_text, pk_hx };
    PGresult *r = br_db_exec(app->db,
        "INSERT INTO brokers (broker_id, url, roles, public_key)"
        " VALUES ($1, $2, $3, $4) ON CONFLICT (broker_id) DO UPDATE SET"
        " url = EXCLUDED.url, roles = EXCLUDED.roles,"
        " public_key = EXCLUDED.public_key, updated_at = now()", 4, p, err);
    if (r == NULL)
        return -1;
    PQclear(r);
    return 0;
}

static void purge(struct br_app *app)
{
    struct shoal_err err;
    char after[24];
    snprintf(after, sizeof after, "%lld", app->purge_after);
    const char *p[] = { after };
    PGresult *r = br_db_exec(app->db,
        "DELETE FROM sessions WHERE expires_at"
        " < now() - make_interval(secs => $1::bigint)", 1, p, &err);
    if (r == NULL) {
        shoal_log(SHOAL_LOG_WARN, NULL, "session purge failed: %s", err.msg);
        return;
    }
    const char *n = PQcmdTuples(r);
    if (n[0] && strcmp(n, "0") != 0)
        shoal_log(SHOAL_LOG_INFO, NULL, "purged %s expired sessions", n);
    PQclear(r);
    r = br_db_exec(app->db, "DELETE FROM invites WHERE expires_at < now() - interval '30 days'",
                   0, NULL, &err);
    PQclear(r);
    /* Peers that stopped refreshing their announcements are forgotten. */
    r = br_db_exec(app->db, "DELETE FROM peers WHERE expires_at <= now()",
                   0, NULL, &err);
    if (r == NULL)
        shoal_log(SHOAL_LOG_WARN, NULL, "peer purge failed: %s", err.msg);
    PQclear(r);
}

static int setup_log(const struct shoal_config *cfg, struct shoal_err *err)
{
    enum shoal_log_level lvl;
    const char *lv = shoal_config_get(cfg, "log_level");
    if (shoal_log_level_parse(lv, &lvl) != 0)
        return shoal_err_set(err, SHOAL_EINVAL, "unknown log_level '%s'", lv);
    shoal_log_set_level(lvl);
    const char *lf = shoal_config_get(cfg, "log_file");
    if (lf && shoal_log_open(lf) != 0)
        return shoal_err_set(err, SHOAL_EIO, "cannot open log file '%s'", lf);
    return 0;
}

/* Open files for every connection we may hold. */
static void raise_fd_limit(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max > 65536 ? 65536 : rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

int main(int argc, char **argv)
{
    struct br_app app;
    struct shoal_err err;
    struct shoal_server *srv = NULL;
    struct shoal_config *cfg = NULL;
    char **rest = calloc((size_t)argc + 1, sizeof *rest);
    int nrest = 0, rc = 1;
    long long v;
    unsigned long long body_limit;

    /* Block the stop signals before any thread starts, so that every thread
     * inherits the mask and only sigtimedwait below receives them. */
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);

    memset(&app, 0, sizeof app);
    shoal_err_clear(&err);
    cfg = shoal_config_new(config_keys, NKEYS, "SHOAL_");
    if (rest == NULL || cfg == NULL || shoal_crypto_init(&err) != 0)
        goto fail;
    if (shoal_config_load(cfg, argc, argv, rest, &nrest, &err) != 0)
        goto fail;
    for (int i = 0; i < nrest; i++) {
        if (strcmp(rest[i], "--help") == 0 || strcmp(rest[i], "-h") == 0) {
            usage(cfg, stdout);
            rc = 0;
            goto out;
        }
        if (strcmp(rest[i], "--version") == 0) {
            printf("shoal-broker %s\n", BR_VERSION);
            rc = 0;
            goto out;
        }
        if (strcmp(rest[i], "--print-routes") == 0) {
            for (size_t k = 0; k < br_nroutes; k++)
                printf("%s %s\n", br_routes[k].method, br_routes[k].pattern);
            rc = 0;
            goto out;
        }
        fprintf(stderr, "shoal-broker: unknown argument '%s'\n", rest[i]);
        usage(cfg, stderr);
        rc = 2;
        goto out;
    }
    if (setup_log(cfg, &err) != 0)
        goto fail;

    app.cfg = cfg;
    const char *dburl = shoal_config_get(cfg, "database_url");
    const char *dir = shoal_config_get(cfg, "data_dir");
    const char *reg = shoal_config_get(cfg, "registration");
    if (dburl == NULL || dburl[0] == '\0') {
        shoal_err_set(&err, SHOAL_EINVAL,
                      "no database: set database_url (SHOAL_DATABASE_URL)");
        goto fail;
    }
    if (strcmp(reg, "open") != 0 && strcmp(reg, "invite") != 0) {
        shoal_err_set(&err, SHOAL_EINVAL,
                      "registration must be 'open' or 'invite', not '%s'", reg);
        goto fail;
    }
    app.invite_only = strcmp(reg, "invite") == 0;
    if (br_roles_parse(shoal_config_get(cfg, "roles"), &app.roles, &err) != 0)
        goto fail;
    json_t *rn = br_roles_json(app.roles);
    size_t ri;
    json_t *rv;
    json_array_foreach(rn, ri, rv) {
        strcat(app.roles_text, ri ? "," : "");
        strcat(app.roles_text, json_string_value(rv));
    }
    json_decref(rn);
    if (shoal_config_seconds(cfg, "session_ttl", &app.session_ttl, &err) != 0 ||
        shoal_config_seconds(cfg, "session_purge_after", &app.purge_after, &err) != 0)
        goto fail;
    if (app.session_ttl < 1 || app.session_ttl > MAX_DURATION ||
        app.purge_after < 0 || app.purge_after > MAX_DURATION) {
        shoal_err_set(&err, SHOAL_EINVAL,
                      "session_ttl must be 1s to 3650d, session_purge_after 0 to 3650d");
        goto fail;
    }

    char path[4096];
    if (shoal_mkdir_p(dir, 0700, &err) != 0)
        goto fail;
    snprintf(path, sizeof path, "%s/signing.key", dir);
    if (shoal_keypair_load_or_create(path, app.pk, app.sk, &err) != 0)
        goto fail;
    snprintf(path, sizeof path, "%s/auth.key", dir);
    if (shoal_secret_load_or_create(path, app.auth_key, &err) != 0 ||
        load_broker_id(dir, app.broker_id, &err) != 0)
        goto fail;

    if (shoal_config_long(cfg, "db_connections", &v, &err) != 0)
        goto fail;
    if (v < 1 || v > 200) {
        shoal_err_set(&err, SHOAL_EINVAL, "db_connections must be 1 to 200");
        goto fail;
    }
    app.db = br_db_open(dburl, (unsigned)v, &err);
    if (app.db == NULL)
        goto fail;
    PGconn *mc = br_db_get(app.db, &err);
    if (mc == NULL)
        goto fail;
    int mrc = br_migrate(mc, &err);
    br_db_put(app.db, mc);
    if (mrc != 0)
        goto fail;
    if (shoal_config_seconds(cfg, "sign_ttl", &app.sign_ttl, &err) != 0)
        goto fail;
    if (app.sign_ttl < 60 || app.sign_ttl > MAX_DURATION) {
        shoal_err_set(&err, SHOAL_EINVAL, "sign_ttl must be 60s to 3650d");
        goto fail;
    }
    if (shoal_config_seconds(cfg, "peer_ttl", &app.peer_ttl, &err) != 0)
        goto fail;
    if (app.peer_ttl < 1 || app.peer_ttl > 86400) {
        shoal_err_set(&err, SHOAL_EINVAL, "peer_ttl must be 1s to 1d");
        goto fail;
    }
    if (br_inject_start(&app, &err) != 0)
        goto fail;
    if (app.roles & BR_ROLE_FILE) {
        snprintf(path, sizeof path, "%s/store", dir);
        if ((app.store = shoal_store_open(path, &err)) == NULL)
            goto fail;
    }
    unsigned long long mbudget;
    if (shoal_config_size(cfg, "map_cache", &mbudget, &err) != 0)
        goto fail;
    if (mbudget > (1ULL << 40)) {
        shoal_err_set(&err, SHOAL_EINVAL, "map_cache must be at most 1TiB");
        goto fail;
    }
    if (app.store != NULL && mbudget > 0 &&
        (app.maps = shoal_piecemap_new(app.store, mbudget)) == NULL) {
        shoal_err_set(&err, SHOAL_EINTERNAL, "out of memory");
        goto fail;
    }
    unsigned long long vbudget;
    if (shoal_config_size(cfg, "version_cache", &vbudget, &err) != 0)
        goto fail;
    if (vbudget > (1ULL << 40)) {
        shoal_err_set(&err, SHOAL_EINVAL, "version_cache must be at most 1TiB");
        goto fail;
    }
    if ((app.vcache = br_vcache_new((size_t)vbudget)) == NULL) {
        shoal_err_set(&err, SHOAL_EINTERNAL, "out of memory");
        goto fail;
    }
    if (br_usage_start(&app, &err) != 0 || br_gc_start(&app, &err) != 0)
        goto fail;
    long long cache_ttl;
    if (shoal_config_seconds(cfg, "session_cache_ttl", &cache_ttl, &err) != 0)
        goto fail;
    if (cache_ttl < 0 || cache_ttl > 86400) {
        shoal_err_set(&err, SHOAL_EINVAL, "session_cache_ttl must be 0 to 1d");
        goto fail;
    }
    if (cache_ttl > 0 &&
        (app.cache = br_cache_new(dburl, (double)cache_ttl, &err)) == NULL)
        goto fail;

    struct shoal_server_opts o;
    memset(&o, 0, sizeof o);
    long long threads, maxc, idle, reqt;
    unsigned long long conn_mem;
    if (shoal_config_long(cfg, "threads", &threads, &err) != 0 ||
        shoal_config_size(cfg, "connection_memory", &conn_mem, &err) != 0 ||
        shoal_config_long(cfg, "max_connections", &maxc, &err) != 0 ||
        shoal_config_seconds(cfg, "idle_timeout", &idle, &err) != 0 ||
        shoal_config_seconds(cfg, "request_timeout", &reqt, &err) != 0 ||
        shoal_config_size(cfg, "body_limit", &body_limit, &err) != 0)
        goto fail;
    if (threads < 1 || threads > 256 || maxc < 1 || maxc > 1000000 ||
        idle < 0 || idle > 86400 || reqt < 0 || reqt > 86400 ||
        body_limit < 1 || body_limit > (1ULL << 30) ||
        conn_mem < (16u << 10) || conn_mem > (16u << 20)) {
        shoal_err_set(&err, SHOAL_EINVAL,
                      "out of range: threads 1-256, max_connections 1-1000000,"
                      " idle_timeout and request_timeout 0-1d, body_limit 1-1GiB,"
                      " connection_memory 16KiB-16MiB");
        goto fail;
    }
    app.metrics = br_metrics_new(br_routes, br_nroutes);
    if (app.metrics == NULL) {
        shoal_err_set(&err, SHOAL_EINTERNAL, "out of memory");
        goto fail;
    }
    raise_fd_limit();
    o.listen = shoal_config_get(cfg, "listen");
    o.threads = (unsigned)threads;
    if (shoal_config_bool(cfg, "connection_threads", &o.thread_per_connection,
                          &err) != 0)
        goto fail;
    o.max_connections = (unsigned)maxc;
    o.idle_timeout = (unsigned)idle;
    o.request_timeout = (unsigned)reqt;
    o.body_limit = (size_t)body_limit;
    o.connection_memory = (size_t)conn_mem;
    o.trusted_proxies = shoal_config_get(cfg, "trusted_proxies");
    o.admin_token = shoal_config_get(cfg, "admin_token");
    o.routes = br_routes;
    o.nroutes = br_nroutes;
    o.auth = br_auth;
    o.observe = br_metrics_observe;
    o.app = &app;
    o.server_header = "shoal-broker/" BR_VERSION;
    o.extra_header_name = "X-Broker-Id";
    o.extra_header_value = app.broker_id;

    srv = shoal_server_start(&o, &err);
    if (srv == NULL)
        goto fail;
    const char *pub = shoal_config_get(cfg, "public_url");
    if (pub && pub[0])
        snprintf(app.public_url, sizeof app.public_url, "%s", pub);
    else
        snprintf(app.public_url, sizeof app.public_url, "http://%.*s:%u",
                 (int)(strrchr(o.listen, ':') - o.listen), o.listen,
                 shoal_server_port(srv));
    if (announce(&app, &err) != 0)
        goto fail;
    shoal_log(SHOAL_LOG_INFO, NULL, "shoal-broker %s listening on %s (port %u),"
              " broker id %s, roles %s", BR_VERSION, o.listen,
              shoal_server_port(srv), app.broker_id, app.roles_text);

    /* Purge expired sessions and announcements regularly until a stop
     * signal arrives. */
    long long every = app.purge_after / 2;
    if (every > app.peer_ttl / 2)
        every = app.peer_ttl / 2;
    if (every < 1)
        every = 1;
    if (every > 60)
        every = 60;
    purge(&app);
    for (;;) {
        struct timespec ts = { .tv_sec = (time_t)every };
        int sig = sigtimedwait(&sigs, NULL, &ts);
        if (sig == SIGINT || sig == SIGTERM) {
            shoal_log(SHOAL_LOG_INFO, NULL, "stopping on signal %d", sig);
            break;
        }
        purge(&app);
    }
    rc = 0;
    goto out;
fail:
    shoal_log(SHOAL_LOG_ERROR, NULL, "shoal-broker: %s", err.msg);
    fprintf(stderr, "shoal-broker: %s\n", err.msg);
    rc = 1;
out:
    shoal_server_stop(srv);
    br_gc_stop(&app);
    br_usage_stop(&app);
    br_vcache_free(app.vcache);
    br_inject_stop(&app);
    shoal_piecemap_free(app.maps);
    shoal_store_close(app.store);
    br_cache_free(app.cache);
    br_db_close(app.db);
    br_metrics_free(app.metrics);
    sodium_memzero(app.sk, sizeof app.sk);
    sodium_memzero(app.auth_key, sizeof app.auth_key);
    shoal_config_free(cfg);
    free(rest);
    return rc;
}
