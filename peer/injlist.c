/*
 * injlist.c - the pure rules of injector proxies and their discovery
 * (see injlist.h).
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "injlist.h"
#include "manifest.h"
#include "util.h"

#define URL_MAX 1024

void pr_named_swarm(const char *name, char out[65])
{
    unsigned char md[SHOAL_HASH_BYTES];

    shoal_sha256(name, strlen(name), md);
    shoal_hex_encode(md, sizeof(md), out);
}

int pr_authority_parse(const char *s, char host[PR_HOST_MAX], unsigned *port)
{
    const char *colon, *h = s, *hend;
    size_t hlen;

    if (!s || !*s)
        return -1;
    if (*s == '[') {
        if (!(hend = strchr(s, ']')) || hend[1] != ':')
            return -1;
        h = s + 1;
        colon = hend + 1;
        for (const char *p = h; p < hend; p++)
            if (!isxdigit((unsigned char)*p) && *p != ':' && *p != '.')
                return -1;
    } else {
        if (!(colon = strrchr(s, ':')))
            return -1;
        hend = colon;
        for (const char *p = h; p < hend; p++)
            if (!isalnum((unsigned char)*p) && *p != '-' && *p != '.')
                return -1;
    }
    hlen = (size_t)(hend - h);
    if (hlen == 0 || hlen >= PR_HOST_MAX)
        return -1;
    /* the port: 1 to 5 digits, no sign, no leading zero, 1..65535 */
    const char *d = colon + 1;
    size_t nd = strlen(d);
    if (nd == 0 || nd > 5 || d[0] == '0')
        return -1;
    unsigned long v = 0;
    for (size_t i = 0; i < nd; i++) {
        if (d[i] < '0' || d[i] > '9')
            return -1;
        v = v * 10 + (unsigned long)(d[i] - '0');
    }
    if (v > 65535)
        return -1;
    memcpy(host, h, hlen);
    host[hlen] = '\0';
    *port = (unsigned)v;
    return 0;
}

int pr_connect_ports_parse(const char *s, struct pr_connect_ports *out,
                           struct shoal_err *err)
{
    const char *p = s ? s : PR_CONNECT_PORTS_DEFAULT;

    memset(out, 0, sizeof(*out));
    for (;;) {
        size_t nd = strcspn(p, ",");
        unsigned long v = 0;
        int ok = nd > 0 && nd <= 5 && p[0] != '0';
        for (size_t i = 0; ok && i < nd; i++) {
            if (p[i] < '0' || p[i] > '9')
                ok = 0;
            else
                v = v * 10 + (unsigned long)(p[i] - '0');
        }
        if (nd == 0) {
            memset(out, 0, sizeof(*out));
            return shoal_err_set(err, SHOAL_EINVAL, "an empty entry");
        }
        if (!ok || v > 65535) {
            memset(out, 0, sizeof(*out));
            return shoal_err_set(err, SHOAL_EINVAL, "'%.*s' is not a port "
                                 "(1 to 65535)", (int)(nd > 16 ? 16 : nd), p);
        }
        if (pr_connect_port_ok(out, (unsigned)v)) {
            memset(out, 0, sizeof(*out));
            return shoal_err_set(err, SHOAL_EINVAL, "port %lu is given twice",
                                 v);
        }
        if (out->n == PR_CONNECT_PORTS_MAX) {
            memset(out, 0, sizeof(*out));
            return shoal_err_set(err, SHOAL_EINVAL, "more than %d ports",
                                 PR_CONNECT_PORTS_MAX);
        }
        out->port[out->n++] = (unsigned)v;
        if (!p[nd])
            return 0;
        p += nd + 1;
    }
}

int pr_connect_port_ok(const struct pr_connect_ports *ports, unsigned port)
{
    for (size_t i = 0; i < ports->n; i++)
        if (ports->port[i] == port)
            return 1;
    return 0;
}

void pr_connect_ports_name(const struct pr_connect_ports *ports, char *out,
                           size_t cap)
{
    size_t len = 0;

    if (cap == 0)
        return;
    out[0] = '\0';
    for (size_t i = 0; i < ports->n && len < cap; i++) {
        const char *sep = i == 0 ? "" : i + 1 == ports->n ? " and " : ", ";
        int w = snprintf(out + len, cap - len, "%s%u", sep, ports->port[i]);
        if (w < 0)
            return;
        len += (size_t)w;
    }
}

/* url without trailing slashes into out; -1 when it is not an http(s)
 * base URL (no query, fragment, space or control byte). */
static int base_url(const char *url, char out[URL_MAX])
{
    size_t len, scheme;

    if (!url)
        return -1;
    if (strncmp(url, "http://", 7) == 0)
        scheme = 7;
    else if (strncmp(url, "https://", 8) == 0)
        scheme = 8;
    else
        return -1;
    len = strlen(url);
    while (len > scheme && url[len - 1] == '/')
        len--;
    if (len <= scheme || len >= URL_MAX || url[scheme] == '/')
        return -1;
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)url[i] <= ' ' || url[i] == '?' || url[i] == '#' ||
            (unsigned char)url[i] >= 0x7f)
            return -1;
    memcpy(out, url, len);
    out[len] = '\0';
    return 0;
}

static int list_has(const json_t *list, const char *url)
{
    size_t i;
    json_t *e;

    json_array_foreach(list, i, e) {
        const char *u = json_string_value(json_object_get(e, "url"));
        if (u && strcmp(u, url) == 0)
            return 1;
    }
    return 0;
}

int pr_inj_list_add(json_t *list, const char *url, const char *from,
                    time_t seen_at)
{
    char u[URL_MAX];
    json_t *e;

    if (!json_is_array(list) || base_url(url, u) < 0)
        return -1;
    if (list_has(list, u) || json_array_size(list) >= PR_INJ_LIST_MAX)
        return 0;
    if (!(e = json_pack("{s:s, s:s}", "url", u, "from", from)))
        return -1;
    if (seen_at) {
        char ts[32];
        shoal_time_format(seen_at, ts);
        json_object_set_new(e, "seen_at", json_string(ts));
    }
    return json_array_append_new(list, e) == 0 ? 1 : -1;
}

int pr_inj_cache_note(json_t *cache, const char *kind, const char *url,
                      time_t now)
{
    json_t *old = json_object_get(cache, kind);
    json_t *fresh = json_array();
    char u[URL_MAX];
    size_t i;
    json_t *e;
    int rc = -1;

    if (!fresh || !json_is_object(cache) || base_url(url, u) < 0)
        goto out;
    if (pr_inj_list_add(fresh, u, "cache", now) < 0)
        goto out;
    json_array_foreach(old, i, e) {
        const char *eu = json_string_value(json_object_get(e, "url"));
        const char *seen = json_string_value(json_object_get(e, "seen_at"));
        time_t t;
        if (!eu || !seen || shoal_time_parse(seen, &t, NULL) < 0 ||
            t > now + 86400 || now - t > PR_INJ_CACHE_AGE)
            continue;
        (void)pr_inj_list_add(fresh, eu, "cache", t);  /* bad: dropped */
    }
    if (json_object_set(cache, kind, fresh) < 0)
        goto out;
    rc = 0;
out:
    json_decref(fresh);
    return rc;
}

size_t pr_injkeys_config(const json_t *cfg, const char *broker_id,
                         unsigned char (*pk)[32], size_t max)
{
    size_t i, n = 0;
    json_t *e;

    if (!broker_id)
        return 0;
    json_array_foreach(json_object_get(cfg, "injectors"), i, e) {
        const char *bid = json_string_value(json_object_get(e, "broker_id"));
        const char *key = json_string_value(json_object_get(e, "public_key"));
        if (n == max)
            break;
        if (!bid || !key || strcasecmp(bid, broker_id) != 0 ||
            shoal_b64_decode_exact(key, pk[n], 32, "public_key", NULL) < 0)
            continue;
        n++;
    }
    return n;
}
