/*
 * cmd_serve.c - shoal serve [--listen ADDR:PORT] [--advertise URL]
 *               [--data-dir DIR] [--max-storage SIZE] [--max-seed-ratio R]
 *               [--max-upload-rate RATE] [--auth-ttl SECS]
 *               [--announce-interval SECS] [--trust-interval SECS]
 *               [--max-web-age SECS]
 *               [--act-as-proxy [--proxy-connect] [--proxy-allow CIDR,…]
 *                [--proxy-ports PORT,…]]
 *
 * The peer as a daemon: it serves the versions held in its data folder
 * (serve.c), announces each to the tracker (POST /v1/files/{id}/peers)
 * at start and then every announce interval (by default half the life
 * the broker gives an announcement), pulls its trust bubble every trust
 * interval, takes in versions added meanwhile by 'shoal seed' (every
 * announce round, or at once on SIGHUP), renews X-Sign signatures that
 * near their expiry, sends at most RATE bytes a second of content and
 * pieces in all (bytes, K, M, G suffixes as for sizes; no limit by
 * default), keeps within --max-storage by evicting the versions 'shoal
 * get' kept, least recently used first (evict.c), ends the seeding of the
 * web objects 'shoal fetch' kept once superseded, --max-web-age (a week)
 * after their injection or past the injector's signature (webseed.h),
 * and on SIGTERM or SIGINT withdraws its announcements
 * (DELETE) and stops.  With --act-as-proxy it is also an injector proxy
 * (proxy.h), announced in the swarm "injector proxies".
 */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "addr.h"
#include "log.h"
#include "pex.h"
#include "pieceserve.h"
#include "proxy.h"
#include "serve.h"
#include "util.h"
#include "webseed.h"

#define LISTEN_DEFAULT "127.0.0.1:7070"
#define RATIO_DEFAULT 3.0
#define AUTH_TTL_DEFAULT 60.0
#define TRUST_INTERVAL_DEFAULT 30.0
#define ANNOUNCE_DEFAULT 150.0       /* before the broker says its peer_ttl */
#define RENEW_BEFORE 86400           /* renew X-Sign this close to expiry */

struct opts {
    const char *listen;
    const char *advertise;
    const char *data_dir;
    uint64_t max_storage;
    uint64_t max_upload_rate;        /* bytes a second, 0: no limit */
    double ratio;
    double auth_ttl;
    double announce;                 /* 0: from the broker's answers */
    double trust;
    double web_age;                  /* --max-web-age, 0: no limit */
    int act_as_proxy;                /* --act-as-proxy (proxy.h) */
    int proxy_connect;               /* --proxy-connect */
    const char *proxy_allow;         /* --proxy-allow CIDR,… */
    const char *proxy_ports;         /* --proxy-ports PORT,… (NULL: 80,443) */
};

/* url percent-encoded for a query string into out. */
static void query_escape(const char *s, char *out, size_t cap)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t n = 0;

    for (; *s && n + 4 < cap; s++) {
        unsigned char c = (unsigned char)*s;
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
            (c >= '0' && c <= '9') || strchr("-._~", c)) {
            out[n++] = (char)c;
        } else {
            out[n++] = '%';
            out[n++] = hex[c >> 4];
            out[n++] = hex[c & 15];
        }
    }
    out[n] = '\0';
}

/* --- the tracker ---------------------------------------------------- */

/* Announce s; *ttl gets the life the broker gave it (seconds). */
static int announce(struct pr_srv *srv, struct pr_served *s, double *ttl,
                    struct shoal_err *err)
{
    const struct pr_version *v = s->v;
    uint64_t held = 0;
    json_t *body = NULL;
    json_t *ans = NULL;
    char path[96];
    const char *a, *e;
    time_t ta, te;
    int rc = -1;

    char *have = shoal_pieceserve_have(
        pr_held_store(srv->held),
        (const unsigned char (*)[SHOAL_HASH_BYTES])v->hashes, v->npieces,
        &held);
    if (!have || !(body = json_pack("{s:s, s:s, s:I}", "url", srv->advertise,
                                    "have", have,
                                    "version", (json_int_t)v->version))) {
        shoal_err_set(err, SHOAL_EIO, "out of memory");
        goto out;
    }
    snprintf(path, sizeof(path), "/v1/files/%s/peers", v->file_id);
    if (pr_link_call(srv->link, "POST", path, body, &ans, NULL, err) < 0)
        goto out;
    if (shoal_json_str(ans, "announced_at", &a, NULL) == 0 &&
        shoal_json_str(ans, "expires_at", &e, NULL) == 0 &&
        shoal_time_parse(a, &ta, NULL) == 0 &&
        shoal_time_parse(e, &te, NULL) == 0 && te > ta)
        *ttl = (double)(te - ta);
    rc = 0;
out:
    free(have);
    json_decref(body);
    json_decref(ans);
    return rc;
}

/* The holders of v the tracker lists, noted in known (this peer's
 * holders.json, pex.h; what it answers on GET /v1/peers).  1 when known
 * changed. */
static int learn(struct pr_srv *srv, const struct pr_version *v, json_t *known)
{
    struct shoal_err e;
    json_t *ans = NULL;
    json_t *p;
    char path[128];
    char norm[PR_URL_MAX];
    time_t now = time(NULL);
    size_t i;
    int changed = 0;

    snprintf(path, sizeof(path), "/v1/files/%s/peers?version=%" PRIu64,
             v->file_id, v->version);
    shoal_err_clear(&e);
    if (pr_link_call(srv->link, "GET", path, NULL, &ans, NULL, &e) < 0) {
        shoal_log(SHOAL_LOG_DEBUG, NULL, "tracker: cannot list the holders of "
                  "file '%s': %s", v->file_id, e.msg);
        return 0;
    }
    json_array_foreach(json_object_get(ans, "peers"), i, p) {
        const char *kind = json_string_value(json_object_get(p, "kind"));
        const char *url = json_string_value(json_object_get(p, "url"));
        const char *have = json_string_value(json_object_get(p, "have"));
        if (i >= PR_HOLDERS_PER_FILE)
            break;
        /* a broker without a bitfield is not known to hold anything */
        if (!kind || !url || !have || pr_broker_url(url, norm, NULL) < 0 ||
            strcmp(norm, srv->advertise) == 0 ||
            (strcmp(kind, "peer") != 0 && strcmp(kind, "broker") != 0))
            continue;
        if (pr_holders_note(known, norm, kind, v->file_id, v->version, have,
                            now) == 0)
            changed = 1;
    }
    json_decref(ans);
    return changed;
}

/* Withdraw the announcements of file_id (version 0: every version). */
static int withdraw(struct pr_srv *srv, const char *file_id, uint64_t version,
                    struct shoal_err *err)
{
    char url[3 * PR_URL_MAX + 1];
    char path[3 * PR_URL_MAX + 128];

    query_escape(srv->advertise, url, sizeof(url));
    if (version)
        snprintf(path, sizeof(path), "/v1/files/%s/peers?url=%s&version=%"
                 PRIu64, file_id, url, version);
    else
        snprintf(path, sizeof(path), "/v1/files/%s/peers?url=%s", file_id, url);
    return pr_link_call(srv->link, "DELETE", path, NULL, NULL, NULL, err);
}

/* The broker says s is no more (deleted, or no longer readable by this
 * peer's user): it is not served nor announced from now on. */
static void set_gone(struct pr_srv *srv, struct pr_served *s)
{
    pthread_mutex_lock(&srv->lock);
    s->gone = 1;
    pthread_mutex_unlock(&srv->lock);
}

/* A new X-Sign for s when its signature nears its expiry. */
static void renew(struct pr_srv *srv, struct pr_served *s)
{
    struct shoal_err e;
    struct pr_version *nv = NULL;
    json_t *ans = NULL;
    char xsign[SHOAL_XSIGN_MAX];
    char path[128];

    pthread_mutex_lock(&srv->lock);
    int64_t expires = s->v->expires;
    pthread_mutex_unlock(&srv->lock);
    if (expires - (int64_t)time(NULL) > RENEW_BEFORE)
        return;
    snprintf(path, sizeof(path), "/v1/files/%s/manifest?version=%" PRIu64,
             s->v->file_id, s->v->version);
    shoal_err_clear(&e);
    if (pr_link_call(srv->link, "GET", path, NULL, &ans, xsign, &e) < 0) {
        if (e.code == SHOAL_EGONE || e.code == SHOAL_ENOTFOUND) {
            shoal_log(SHOAL_LOG_WARN, NULL, "no longer serving version %" PRIu64
                      " of file '%s': %s", s->v->version, s->v->file_id, e.msg);
            set_gone(srv, s);
        } else {
            shoal_log(SHOAL_LOG_WARN, NULL, "cannot renew the signature of file"
                      " '%s': %s", s->v->file_id, e.msg);
        }
        goto out;
    }
    if (pr_manifest_verify(srv->id, s->v->file_id, ans, xsign[0] ? xsign : NULL,
                           (int64_t)time(NULL), &nv, &e) < 0 ||
        memcmp(nv->root, s->v->root, SHOAL_HASH_BYTES) != 0 ||
        (s->v->kept ? pr_held_record_kept(srv->held, nv, ans, &e)  /* evict.c */
                    : pr_held_record(srv->held, nv, ans, &e)) < 0) {
        shoal_log(SHOAL_LOG_WARN, NULL, "cannot renew the signature of file "
                  "'%s': %s", s->v->file_id, e.msg[0] ? e.msg : "another root");
        goto out;
    }
    pthread_mutex_lock(&srv->lock);
    memcpy(s->v->xsign, nv->xsign, sizeof(nv->xsign));
    s->v->expires = nv->expires;
    pthread_mutex_unlock(&srv->lock);
    shoal_log(SHOAL_LOG_INFO, NULL, "renewed the signature of version %" PRIu64
              " of file '%s'", s->v->version, s->v->file_id);
out:
    pr_version_free(nv);
    json_decref(ans);
}

static int want_record(void *arg, const char *file_id, uint64_t version)
{
    return !pr_serve_has(arg, file_id, version);
}

static void take_record(void *arg, struct pr_version *v)
{
    pr_serve_add(arg, v);
}

/* --max-storage evicted v (evict.c), or the seeding of the web object v
 * is over (webseed.h): its announcement goes now. */
static void evicted(void *arg, const struct pr_version *v, int announced)
{
    struct pr_srv *srv = arg;
    struct shoal_err e;

    shoal_err_clear(&e);
    if (announced && withdraw(srv, v->file_id, v->version, &e) < 0 &&
        e.code != SHOAL_ENOTFOUND)
        shoal_log(SHOAL_LOG_WARN, NULL, "cannot withdraw file '%s': %s",
                  v->file_id, e.msg);
}

/* Versions added since the last look. */
static void rescan(struct pr_srv *srv)
{
    struct shoal_err e;

    shoal_err_clear(&e);
    if (pr_held_each(srv->held, srv->id, want_record, take_record, srv, &e) < 0)
        shoal_log(SHOAL_LOG_WARN, NULL, "%s", e.msg);
}

/* The entries of the table, each held (pr_serve_put them). */
static struct pr_served **snapshot(struct pr_srv *srv, size_t *n)
{
    pthread_mutex_lock(&srv->lock);
    struct pr_served **all = calloc(srv->n + 1, sizeof(*all));
    *n = 0;
    for (size_t i = 0; all && i < srv->n; i++) {
        all[(*n)++] = srv->tab[i];
        srv->tab[i]->refs++;
    }
    pthread_mutex_unlock(&srv->lock);
    return all;
}

/* One round: new records, signatures, announcements. */
static void announce_round(struct pr_srv *srv, double *ttl)
{
    size_t n;
    struct pr_served **all;

    json_t *known = NULL;
    int learnt = 0;

    rescan(srv);
    pr_serve_retire(srv, evicted, srv);    /* web objects (webseed.h) */
    pr_serve_evict(srv, evicted, srv);     /* --max-storage (evict.c) */
    pr_proxy_announce(srv);                /* injector proxy (proxy.c) */
    if (!(all = snapshot(srv, &n)))
        return;
    known = pr_holders_load(pr_held_dir(srv->held));
    for (size_t i = 0; i < n; i++) {
        struct pr_served *s = all[i];
        struct shoal_err e;
        shoal_err_clear(&e);
        if (s->admitted && !s->gone)
            renew(srv, s);
        int serve = s->admitted && !s->gone && !pr_serve_seeded_out(srv, s) &&
                    s->v->expires > (int64_t)time(NULL);
        if (serve) {
            if (announce(srv, s, ttl, &e) == 0) {
                s->announced = 1;
                if (known && learn(srv, s->v, known))
                    learnt = 1;
            } else {
                shoal_log(SHOAL_LOG_WARN, NULL, "cannot announce version %"
                          PRIu64 " of file '%s': %s", s->v->version,
                          s->v->file_id, e.msg);
                if (e.code == SHOAL_EGONE || e.code == SHOAL_ENOTFOUND)
                    set_gone(srv, s);
            }
        } else if (s->announced) {
            if (withdraw(srv, s->v->file_id, s->v->version, &e) < 0 &&
                e.code != SHOAL_ENOTFOUND)
                shoal_log(SHOAL_LOG_WARN, NULL, "cannot withdraw file '%s': %s",
                          s->v->file_id, e.msg);
            else
                shoal_log(SHOAL_LOG_INFO, NULL, "stopped announcing version %"
                          PRIu64 " of file '%s'", s->v->version, s->v->file_id);
            s->announced = 0;
        }
        pr_serve_put(srv, all[i]);
    }
    free(all);
    if (learnt) {
        struct shoal_err e;
        shoal_err_clear(&e);
        if (pr_holders_save(pr_held_dir(srv->held), known, &e) < 0)
            shoal_log(SHOAL_LOG_WARN, NULL, "cannot keep the holders the "
                      "tracker listed: %s", e.msg);
    }
    json_decref(known);
}

/* Clean shutdown: every announcement goes. */
static void withdraw_all(struct pr_srv *srv)
{
    size_t n;
    struct pr_served **all = snapshot(srv, &n);

    pr_proxy_withdraw(srv);                /* injector proxy (proxy.c) */
    for (size_t i = 0; all && i < n; i++) {
        struct shoal_err e;
        int first = 1, announced = 0;
        for (size_t k = 0; k < n; k++)
            if (strcmp(all[k]->v->file_id, all[i]->v->file_id) == 0) {
                first &= k >= i;
                announced |= all[k]->announced;
            }
        shoal_err_clear(&e);
        if (first && announced &&
            withdraw(srv, all[i]->v->file_id, 0, &e) < 0 &&
            e.code != SHOAL_ENOTFOUND)
            shoal_log(SHOAL_LOG_WARN, NULL, "cannot withdraw file '%s': %s",
                      all[i]->v->file_id, e.msg);
    }
    for (size_t i = 0; all && i < n; i++)
        pr_serve_put(srv, all[i]);
    free(all);
}

/* --- byte counts kept across runs (stats.json) ------------------------ */

static void stats_load(struct pr_srv *srv)
{
    json_t *st = pr_held_stats_load(srv->held);
    json_t *per = json_object_get(st, "versions");
    json_t *used = json_object_get(st, "used");        /* LRU (evict.c) */
    char key[64];

    atomic_store(&srv->uploaded,
                 (unsigned long long)json_integer_value(json_object_get(st, "uploaded")));
    atomic_store(&srv->downloaded,
                 (unsigned long long)json_integer_value(json_object_get(st, "downloaded")));
    pthread_mutex_lock(&srv->lock);
    for (size_t i = 0; i < srv->n; i++) {
        struct pr_served *s = srv->tab[i];
        snprintf(key, sizeof(key), "%s/%" PRIu64, s->v->file_id, s->v->version);
        json_int_t up = json_integer_value(json_object_get(per, key));
        if (up > 0)
            atomic_store(&s->uploaded, (unsigned long long)up);
        json_int_t ms = json_integer_value(json_object_get(used, key));
        if (ms > 0)
            atomic_store(&s->used_ms, (long long)ms);
    }
    pthread_mutex_unlock(&srv->lock);
    json_decref(st);
}

static void stats_save(struct pr_srv *srv)
{
    json_t *per = json_object();
    json_t *used = json_object();                     /* LRU (evict.c) */
    struct shoal_err e;
    char key[64];

    pthread_mutex_lock(&srv->lock);
    for (size_t i = 0; per && used && i < srv->n; i++) {
        struct pr_served *s = srv->tab[i];
        snprintf(key, sizeof(key), "%s/%" PRIu64, s->v->file_id, s->v->version);
        json_object_set_new(per, key, json_integer(
            (json_int_t)atomic_load(&s->uploaded)));
        json_object_set_new(used, key, json_integer(
            (json_int_t)atomic_load(&s->used_ms)));
    }
    pthread_mutex_unlock(&srv->lock);
    json_t *st = json_pack("{s:I, s:I, s:o, s:o}",
                           "uploaded", (json_int_t)atomic_load(&srv->uploaded),
                           "downloaded", (json_int_t)atomic_load(&srv->downloaded),
                           "versions", per, "used", used);
    shoal_err_clear(&e);
    if (!st || pr_held_stats_save(srv->held, st, &e) < 0)
        shoal_log(SHOAL_LOG_WARN, NULL, "cannot save the byte counts: %s",
                  e.msg[0] ? e.msg : "out of memory");
    json_decref(st);
}

/* --- the command ---------------------------------------------------- */

/* listen must be IP:PORT or [IPv6]:PORT; *any set when the address is
 * the unspecified one (others cannot reach it as such). */
static int listen_check(const char *listen, int *any, struct shoal_err *err)
{
    const char *colon = strrchr(listen, ':');
    char host[SHOAL_IP_MAX + 2];
    char canon[SHOAL_IP_MAX];
    char *end;
    size_t hlen = colon ? (size_t)(colon - listen) : 0;

    if (hlen == 0 || hlen >= sizeof(host))
        return pr_usage_err(err, "--listen '%s' is not ADDR:PORT", listen);
    memcpy(host, listen, hlen);
    host[hlen] = '\0';
    if (hlen > 2 && host[0] == '[' && host[hlen - 1] == ']') {
        memmove(host, host + 1, hlen - 2);
        host[hlen - 2] = '\0';
    } else if (strchr(host, ':')) {
        return pr_usage_err(err, "--listen '%s': write an IPv6 address in "
                            "brackets, [::1]:7070", listen);
    }
    errno = 0;
    long port = strtol(colon + 1, &end, 10);
    if (shoal_ip_canonical(host, canon) < 0 || colon[1] < '0' ||
        colon[1] > '9' || *end || errno || port > 65535)
        return pr_usage_err(err, "--listen '%s' is not an IP address and a "
                            "port", listen);
    *any = strcmp(canon, "0.0.0.0") == 0 || strcmp(canon, "::") == 0;
    return 0;
}

static int parse_opts(int argc, char **argv, struct opts *o,
                      struct shoal_err *err)
{
    const char *max_storage = NULL, *ratio = NULL, *auth_ttl = NULL;
    const char *announce_s = NULL, *trust = NULL, *upload_rate = NULL;
    const char *web_age = NULL;
    const struct pr_opt table[] = {
        { "listen", &o->listen, NULL },
        { "advertise", &o->advertise, NULL },
        { "data-dir", &o->data_dir, NULL },
        { "max-storage", &max_storage, NULL },
        { "max-seed-ratio", &ratio, NULL },
        { "max-upload-rate", &upload_rate, NULL },
        { "auth-ttl", &auth_ttl, NULL },
        { "announce-interval", &announce_s, NULL },
        { "trust-interval", &trust, NULL },
        { "max-web-age", &web_age, NULL },
        { "act-as-proxy", NULL, &o->act_as_proxy },
        { "proxy-connect", NULL, &o->proxy_connect },
        { "proxy-allow", &o->proxy_allow, NULL },
        { "proxy-ports", &o->proxy_ports, NULL },
        { NULL, NULL, NULL },
    };
    char *end;
    int n;

    memset(o, 0, sizeof(*o));
    o->listen = LISTEN_DEFAULT;
    o->ratio = RATIO_DEFAULT;
    o->auth_ttl = AUTH_TTL_DEFAULT;
    o->trust = TRUST_INTERVAL_DEFAULT;
    o->web_age = PR_WEB_AGE_DEFAULT;
    if ((n = pr_opts_parse(table, argc, argv, err)) < 0)
        return n;
    if (n > 0)
        return pr_usage_err(err, "unexpected argument '%s'", argv[1]);
    if (max_storage && pr_size_parse(max_storage, &o->max_storage) < 0)
        return pr_usage_err(err, "--max-storage '%s' is not a size (e.g. "
                            "20GiB)", max_storage);
    if (upload_rate && (pr_size_parse(upload_rate, &o->max_upload_rate) < 0 ||
                        o->max_upload_rate == 0))
        return pr_usage_err(err, "--max-upload-rate '%s' is not a rate of "
                            "bytes a second above 0 (e.g. 2M)", upload_rate);
    if (ratio) {
        errno = 0;
        o->ratio = strtod(ratio, &end);
        if (errno || end == ratio || *end || !(o->ratio >= 0) ||
            o->ratio > 1e9)
            return pr_usage_err(err, "--max-seed-ratio '%s' is not a number "
                                "of 0 or more", ratio);
    }
    if (auth_ttl && (pr_seconds_parse(auth_ttl, &o->auth_ttl) < 0 ||
                     o->auth_ttl > 86400))
        return pr_usage_err(err, "--auth-ttl '%s' is not a duration of at "
                            "most a day", auth_ttl);
    if (announce_s && (pr_seconds_parse(announce_s, &o->announce) < 0 ||
                       o->announce < 0.1))
        return pr_usage_err(err, "--announce-interval '%s' is not a duration"
                            " of 0.1s or more", announce_s);
    if (trust && (pr_seconds_parse(trust, &o->trust) < 0 || o->trust < 0.1))
        return pr_usage_err(err, "--trust-interval '%s' is not a duration of "
                            "0.1s or more", trust);
    if (web_age && (pr_seconds_parse(web_age, &o->web_age) < 0 ||
                    o->web_age > 1e10))
        return pr_usage_err(err, "--max-web-age '%s' is not a duration (e.g."
                            " 7d; 0: no limit)", web_age);
    if ((o->proxy_connect || o->proxy_allow) && !o->act_as_proxy)
        return pr_usage_err(err, "--proxy-connect and --proxy-allow need "
                            "--act-as-proxy");
    if (o->proxy_allow) {
        struct shoal_cidr_list *l = NULL;
        struct shoal_err e;
        shoal_err_clear(&e);
        if (shoal_cidr_list_parse(o->proxy_allow, &l, &e) < 0)
            return pr_usage_err(err, "--proxy-allow '%.100s': %s",
                                o->proxy_allow, e.msg);
        shoal_cidr_list_free(l);
    }
    if (o->proxy_ports) {              /* --proxy-ports (injlist.h) */
        struct pr_connect_ports ports;
        struct shoal_err e;
        shoal_err_clear(&e);
        if (!o->proxy_connect)
            return pr_usage_err(err, "--proxy-ports needs --proxy-connect");
        if (pr_connect_ports_parse(o->proxy_ports, &ports, &e) < 0)
            return pr_usage_err(err, "--proxy-ports '%.100s': %s (e.g. "
                                "80,443,8080)", o->proxy_ports, e.msg);
    }
    int any = 0;
    if (listen_check(o->listen, &any, err) < 0)
        return PR_USAGE;
    if (any && !o->advertise)
        return pr_usage_err(err, "--listen '%s' is not an address others can "
                            "reach: give --advertise URL", o->listen);
    return 0;
}

/* The URL others reach listen at (port: the one bound) into out. */
static void default_advertise(const char *listen, unsigned port,
                              char out[PR_URL_MAX])
{
    const char *colon = strrchr(listen, ':');

    snprintf(out, PR_URL_MAX, "http://%.*s:%u", (int)(colon - listen), listen,
             port);
}

static void interval_wait(sigset_t *set, double secs, int *sig)
{
    struct timespec ts;
    siginfo_t info;

    if (secs < 0.01)
        secs = 0.01;
    ts.tv_sec = (time_t)secs;
    ts.tv_nsec = (long)((secs - (double)ts.tv_sec) * 1e9);
    int s = sigtimedwait(set, &info, &ts);
    *sig = s > 0 ? s : 0;
}

static void run_loop(struct pr_srv *srv, const struct opts *o, sigset_t *set)
{
    double ttl = 0;
    double now = shoal_mono();
    double next_trust = now + o->trust;
    double next_announce;
    int sig = 0;

    announce_round(srv, &ttl);
    stats_save(srv);
    next_announce = shoal_mono() +
                    (o->announce ? o->announce : ttl > 0 ? ttl / 2 : ANNOUNCE_DEFAULT);
    for (;;) {
        now = shoal_mono();
        double wake = next_trust < next_announce ? next_trust : next_announce;
        interval_wait(set, wake - now, &sig);
        if (sig == SIGTERM || sig == SIGINT)
            break;
        now = shoal_mono();
        if (now >= next_trust) {
            struct shoal_err e;
            shoal_err_clear(&e);
            if (pr_gate_pull(srv->gate, &e) < 0)
                shoal_log(SHOAL_LOG_WARN, NULL, "cannot pull the trust bubble:"
                          " %s", e.msg);
            next_trust = shoal_mono() + o->trust;
        }
        if (now >= next_announce || sig == SIGHUP) {
            announce_round(srv, &ttl);
            stats_save(srv);
            next_announce = shoal_mono() +
                            (o->announce ? o->announce
                                         : ttl > 0 ? ttl / 2 : ANNOUNCE_DEFAULT);
        }
    }
    shoal_log(SHOAL_LOG_INFO, NULL, "stopping: withdrawing the announcements");
}

int pr_cmd_serve(struct pr_ctx *ctx, int argc, char **argv,
                 struct shoal_err *err)
{
    struct opts o;
    struct pr_srv srv;
    struct shoal_server *server = NULL;
    char *dir = NULL;
    sigset_t set, old;
    int lockfd = -1;
    int masked = 0;
    int rc;

    memset(&srv, 0, sizeof(srv));
    pthread_mutex_init(&srv.lock, NULL);
    if ((rc = parse_opts(argc, argv, &o, err)) < 0)
        goto out_early;
    rc = -1;
    if (o.advertise && pr_broker_url(o.advertise, srv.advertise, err) < 0) {
        rc = pr_usage_err(err, "--advertise '%s' is not an http:// or "
                          "https:// URL", o.advertise);
        goto out_early;
    }
    if (!getenv("SHOAL_LOG_LEVEL"))
        shoal_log_set_level(SHOAL_LOG_INFO);
    srv.id = ctx->id;
    srv.max_storage = o.max_storage;
    srv.max_ratio = o.ratio;
    srv.web_age = (int64_t)o.web_age;
    if (o.web_age > 0 && srv.web_age == 0)
        srv.web_age = 1;             /* under a second: as short as can be */
    if (o.max_upload_rate && !(srv.rate = pr_rate_new(o.max_upload_rate))) {
        shoal_err_set(err, SHOAL_EIO, "out of memory");
        goto out;
    }
    srv.count = calloc(pr_serve_nroutes + 1, sizeof(*srv.count));
    if (!srv.count) {
        shoal_err_set(err, SHOAL_EIO, "out of memory");
        goto out;
    }
    if (!(dir = pr_data_dir(o.data_dir, err)) ||
        !(srv.held = pr_held_open(dir, err)) ||
        !(srv.link = pr_link_new(ctx->id, ctx->session_path, err)))
        goto out;
    if (!(srv.gate = pr_gate_new(srv.link, o.auth_ttl)) ||
        !(srv.maps = shoal_piecemap_new(pr_held_store(srv.held), PR_SERVE_MAPS))) {
        shoal_err_set(err, SHOAL_EIO, "out of memory");
        goto out;
    }
    if (o.act_as_proxy &&              /* injector proxy (proxy.c) */
        !(srv.proxy = pr_proxy_new(ctx->id->broker, srv.link, o.proxy_connect,
                                   o.proxy_allow, o.proxy_ports, err))) {
        goto out;
    }
    struct shoal_err e;
    shoal_err_clear(&e);
    if (pr_gate_pull(srv.gate, &e) < 0)
        shoal_log(SHOAL_LOG_WARN, NULL, "cannot pull the trust bubble: %s",
                  e.msg);
    rescan(&srv);
    stats_load(&srv);

    /* Signals go to sigtimedwait in this thread only: the server's
     * threads inherit the mask. */
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &set, &old);
    masked = 1;
    signal(SIGPIPE, SIG_IGN);

    struct shoal_server_opts so = {
        .listen = o.listen,
        .thread_per_connection = 1,
        .idle_timeout = 30,
        .request_timeout = 30,
        .routes = pr_serve_routes,
        .nroutes = pr_serve_nroutes,
        .auth = pr_serve_auth,
        .observe = pr_serve_observe,
        .app = &srv,
        .server_header = "shoal/" PR_VERSION,
        .extra_header_name = "X-Peer-Id",
        .extra_header_value = ctx->id->user_id,
    };
    if (!(server = shoal_server_start(&so, err)))
        goto out;
    if (!srv.advertise[0])
        default_advertise(o.listen, shoal_server_port(server), srv.advertise);
    /* 'shoal get' on this folder finds it there (and one serve a folder) */
    if ((lockfd = pr_held_serving(dir, srv.advertise, err)) < 0)
        goto out;
    size_t nheld = 0;
    pthread_mutex_lock(&srv.lock);
    nheld = srv.n;
    pthread_mutex_unlock(&srv.lock);
    if (ctx->json) {
        json_t *v = json_pack("{s:s, s:I, s:s, s:s, s:I}", "url", srv.advertise,
                              "port", (json_int_t)shoal_server_port(server),
                              "user_id", ctx->id->user_id, "data_dir", dir,
                              "versions", (json_int_t)nheld);
        if (!v || pr_json_print(v, err) < 0) {
            json_decref(v);
            goto out;
        }
        json_decref(v);
    } else if (pr_printf(err, "serving %zu file versions at %s\n", nheld,
                         srv.advertise) < 0 || fflush(stdout) != 0) {
        goto out;
    }
    run_loop(&srv, &o, &set);
    withdraw_all(&srv);
    shoal_server_stop(server);
    server = NULL;
    stats_save(&srv);
    rc = 0;
out:
    shoal_server_stop(server);
    pr_held_serving_end(dir, lockfd);
    if (masked)
        pthread_sigmask(SIG_SETMASK, &old, NULL);
    pr_serve_clear(&srv);
    pr_gate_free(srv.gate);
    shoal_piecemap_free(srv.maps);
    pr_proxy_free(srv.proxy);
    pr_link_free(srv.link);
    pr_held_close(srv.held);
    pr_rate_free(srv.rate);
    free(srv.count);
    free(dir);
out_early:
    pthread_mutex_destroy(&srv.lock);
    return rc;
}
