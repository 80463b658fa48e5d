/*
 * injfind.c - where 'shoal fetch' finds injectors and injector proxies
 * (see proxy.h): the broker, the configuration, the cache of earlier
 * runs, peer exchange; and which injector keys the peer pins.
 */
#include <errno.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "client.h"
#include "pex.h"
#include "proxy.h"
#include "util.h"

#define PEX_ASK_MAX 8            /* peers asked GET /v1/proxies */
#define PEX_TIMEOUT 3            /* seconds per question */

json_t *pr_injconfig_load(const struct pr_ctx *ctx)
{
    char *copy, *path = NULL;
    json_t *cfg = NULL;

    if (!ctx->identity_path || !(copy = strdup(ctx->identity_path)))
        return NULL;
    if (asprintf(&path, "%s/" PR_INJ_CONFIG_FILE, dirname(copy)) >= 0) {
        json_error_t je;
        cfg = json_load_file(path, 0, &je);
        if (!cfg && access(path, F_OK) == 0)
            pr_warn("'%s' is not JSON (line %d): ignored", path, je.line);
        if (cfg && !json_is_object(cfg)) {
            pr_warn("'%s' is not a JSON object: ignored", path);
            json_decref(cfg);
            cfg = NULL;
        }
    }
    free(path);
    free(copy);
    return cfg;
}

int pr_injkey_pinned(const struct pr_ctx *ctx, const char *broker_id,
                     const char *pk_b64)
{
    const struct pr_identity *id = ctx->id;
    json_t *cfg, *e;
    size_t i;
    int yes = 0;

    if (!broker_id)
        return 0;
    if (id && id->broker_id[0] && strcasecmp(id->broker_id, broker_id) == 0)
        return !pk_b64 || strcmp(pk_b64, id->broker_key) == 0;
    if (!(cfg = pr_injconfig_load(ctx)))
        return 0;
    json_array_foreach(json_object_get(cfg, "injectors"), i, e) {
        const char *bid = json_string_value(json_object_get(e, "broker_id"));
        const char *pk = json_string_value(json_object_get(e, "public_key"));
        if (bid && pk && strcasecmp(bid, broker_id) == 0 &&
            (!pk_b64 || strcmp(pk, pk_b64) == 0)) {
            yes = 1;
            break;
        }
    }
    json_decref(cfg);
    return yes;
}

static int has_role(const json_t *roles, const char *role)
{
    size_t i;
    json_t *r;

    json_array_foreach(roles, i, r)
        if (json_is_string(r) && strcmp(json_string_value(r), role) == 0)
            return 1;
    return 0;
}

/* From the broker: its directory (injectors whose key is pinned) or the
 * swarm "injector proxies". */
static void from_broker(struct pr_ctx *ctx, int inj, json_t *list)
{
    struct shoal_err e;
    json_t *ans = NULL, *p;
    char swarm[65], path[128];
    size_t i;

    shoal_err_clear(&e);
    if (!ctx->id || !pr_connect(ctx, &e))
        return;
    if (inj) {
        if (pr_call(ctx, "GET", "/v1/brokers", NULL, &ans, &e) < 0)
            goto out;
        json_array_foreach(json_object_get(ans, "brokers"), i, p) {
            const char *bid = json_string_value(json_object_get(p, "broker_id"));
            const char *pk = json_string_value(json_object_get(p, "public_key"));
            if (has_role(json_object_get(p, "roles"), "injector") &&
                pr_injkey_pinned(ctx, bid, pk))
                pr_inj_list_add(list, json_string_value(json_object_get(p, "url")),
                                "broker", 0);
        }
    } else {
        pr_named_swarm(PR_SWARM_PROXIES, swarm);
        snprintf(path, sizeof(path), "/v1/swarms/%s/peers", swarm);
        if (pr_call(ctx, "GET", path, NULL, &ans, &e) < 0)
            goto out;
        json_array_foreach(json_object_get(ans, "peers"), i, p)
            pr_inj_list_add(list, json_string_value(json_object_get(p, "url")),
                            "broker", 0);
    }
out:
    if (e.code != SHOAL_OK)
        pr_warn("cannot ask the broker for %s: %s", inj ? "injectors"
                : "injector proxies", e.msg);
    json_decref(ans);
}

static json_t *cache_load(const char *dir)
{
    char *path = NULL;
    json_t *c = NULL;

    if (asprintf(&path, "%s/" PR_INJ_CACHE_FILE, dir) >= 0)
        c = json_load_file(path, 0, NULL);
    free(path);
    if (!json_is_object(c)) {
        json_decref(c);
        c = json_object();
    }
    return c;
}

/* From the peers this one has talked to (holders.json): what they know
 * (GET /v1/proxies). */
static void from_pex(struct pr_ctx *ctx, const char *dir, const char *kind,
                     json_t *list)
{
    json_t *holders = pr_holders_load(dir);
    json_t *asked = json_array();
    size_t i;
    json_t *h;

    if (!ctx->have_session || !asked)
        goto out;
    json_array_foreach(holders, i, h) {
        const char *url = json_string_value(json_object_get(h, "url"));
        const char *k = json_string_value(json_object_get(h, "kind"));
        struct shoal_client *c;
        struct shoal_err e;
        json_t *ans = NULL, *u;
        size_t j;
        if (json_array_size(asked) >= PEX_ASK_MAX)
            break;
        if (!url || !k || strcmp(k, "peer") != 0 ||
            pr_inj_list_add(asked, url, "pex", 0) != 1)
            continue;
        if (!(c = shoal_client_new(url, PEX_TIMEOUT)))
            break;
        shoal_client_set_bearer(c, ctx->session.session_id);
        shoal_err_clear(&e);
        if (shoal_client_call(c, "GET", "/v1/proxies", NULL, &ans, NULL,
                              &e) == 0)
            json_array_foreach(json_object_get(ans, kind), j, u)
                pr_inj_list_add(list, json_string_value(u), "pex", 0);
        json_decref(ans);
        shoal_client_free(c);
    }
out:
    json_decref(asked);
    json_decref(holders);
}

json_t *pr_injfind(struct pr_ctx *ctx, const char *dir, const char *kind)
{
    int inj = strcmp(kind, PR_SWARM_INJECTORS) == 0;
    json_t *list = json_array();
    json_t *cfg, *cache, *e;
    size_t i;

    if (!list)
        return NULL;
    from_broker(ctx, inj, list);
    if ((cfg = pr_injconfig_load(ctx))) {
        json_array_foreach(json_object_get(cfg, inj ? "injectors" : "proxies"),
                           i, e) {
            const char *bid = json_string_value(json_object_get(e, "broker_id"));
            const char *pk = json_string_value(json_object_get(e, "public_key"));
            const char *u = json_is_string(e) ? json_string_value(e)
                            : json_string_value(json_object_get(e, "url"));
            /* an injector is used only with a key to check it by */
            if (!inj || (bid && pk))
                pr_inj_list_add(list, u, "config", 0);
        }
        json_decref(cfg);
    }
    cache = cache_load(dir);
    json_array_foreach(json_object_get(cache, kind), i, e)
        pr_inj_list_add(list, json_string_value(json_object_get(e, "url")),
                        "cache", 0);
    json_decref(cache);
    from_pex(ctx, dir, kind, list);
    return list;
}

void pr_injfind_worked(const char *dir, const char *kind, const char *url)
{
    json_t *cache = cache_load(dir);
    char *path = NULL, *tmp = NULL;

    if (mkdir(dir, 0700) < 0 && errno != EEXIST)
        goto fail;
    if (pr_inj_cache_note(cache, kind, url, time(NULL)) < 0 ||
        asprintf(&path, "%s/" PR_INJ_CACHE_FILE, dir) < 0) {
        path = NULL;
        goto fail;
    }
    if (asprintf(&tmp, "%s.tmp", path) < 0) {
        tmp = NULL;
        goto fail;
    }
    if (json_dump_file(cache, tmp, JSON_COMPACT) < 0 || rename(tmp, path) < 0) {
        unlink(tmp);
        goto fail;
    }
    goto out;
fail:
    pr_warn("cannot remember '%s' in '%s'", url, path ? path : dir);
out:
    free(tmp);
    free(path);
    json_decref(cache);
}
