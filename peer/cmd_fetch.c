/*
 * cmd_fetch.c - shoal fetch URL [-o FILE] [-X METHOD] [-d DATA]
 *               [-H 'Name: value']... [--no-origin] [--no-proxy]
 *               [--data-dir DIR]
 *
 * A static request (classify.h) asks the origin and the URL's swarm at
 * once (one libcurl multi); the origin's answer is taken when it is a
 * 2xx, else the swarm's copy when its injector signature checks out,
 * else the injector is asked to inject (POST /v1/inject) and its
 * trailer's X-Sign is checked over the bytes received.  A domain where
 * the swarm or the injector served last time prefers a valid swarm copy
 * over waiting for the origin.  What came from the swarm or the injector
 * is kept in the data folder, so that 'shoal serve' seeds it (a cache,
 * under the dCDN policy: webseed.h).  A dynamic
 * request goes to the origin only, as one request: directly, or, when the
 * origin cannot be reached (or --no-origin), through an injector proxy
 * with HTTP CONNECT (proxy.h); a static one whose injector cannot be
 * reached injects through the other injectors, then the proxies.  The
 * method that worked is remembered per domain and tried first next time.
 *
 * The body goes to a temporary file (next to FILE, or unlinked in the
 * data folder for stdout) and is renamed or copied once it is whole and
 * checked: memory does not grow with the size.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>

#include "classify.h"
#include "proxy.h"
#include "serve.h"
#include "urlcanon.h"
#include "urlfetch.h"
#include "util.h"

#define MAX_HEADERS 64
#define SWARM_MAX (4u << 20)             /* a swarm record, bytes */
#define METHODS_FILE "fetch-methods.json"
#define PROXY_TRIES 4                    /* injectors or proxies tried */

struct opts {
    const char *url;
    const char *output;
    const char *method;
    const char *data;
    const char *data_dir;
    const char *headers[MAX_HEADERS];
    size_t nheaders;
    int no_origin;
    int no_proxy;
};

static int parse_args(int argc, char **argv, struct opts *o,
                      struct shoal_err *err)
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char **slot = NULL;
        if (!strcmp(a, "--no-origin")) {
            o->no_origin = 1;
            continue;
        }
        if (!strcmp(a, "--no-proxy")) {
            o->no_proxy = 1;
            continue;
        }
        if (!strcmp(a, "-o") || !strcmp(a, "--output"))
            slot = &o->output;
        else if (!strcmp(a, "-X") || !strcmp(a, "--method"))
            slot = &o->method;
        else if (!strcmp(a, "-d") || !strcmp(a, "--data"))
            slot = &o->data;
        else if (!strcmp(a, "--data-dir"))
            slot = &o->data_dir;
        else if (!strcmp(a, "-H") || !strcmp(a, "--header")) {
            if (o->nheaders == MAX_HEADERS)
                return pr_usage_err(err, "more than %d headers",
                                    MAX_HEADERS);
            slot = &o->headers[o->nheaders++];
        } else if (a[0] == '-' && a[1]) {
            return pr_usage_err(err, "unknown option '%s'", a);
        } else {
            if (o->url)
                return pr_usage_err(err, "unexpected argument '%s'", a);
            o->url = a;
            continue;
        }
        if (i + 1 >= argc)
            return pr_usage_err(err, "option '%s' needs a value", a);
        *slot = argv[++i];
    }
    if (!o->url)
        return pr_usage_err(err, "'fetch' needs a URL");
    if (strncasecmp(o->url, "http://", 7) && strncasecmp(o->url, "https://", 8))
        return pr_usage_err(err, "URL '%s' is not http:// or https://",
                            o->url);
    char dom[256];
    if (pr_url_domain(o->url, dom, sizeof(dom)) < 0 || strchr(o->url, ' ') ||
        strlen(o->url) > 2048)
        return pr_usage_err(err, "URL '%.100s' is not a URL with a host",
                            o->url);
    for (size_t i = 0; i < o->nheaders; i++)
        if (!pr_header_valid(o->headers[i]))
            return pr_usage_err(err, "header '%s' is not 'Name: value'",
                                o->headers[i]);
    if (o->method && (!*o->method || strpbrk(o->method, " \r\n:/")))
        return pr_usage_err(err, "method '%s' is not a method", o->method);
    if (o->output && !*o->output)
        return pr_usage_err(err, "output path is empty");
    return 0;
}

/* --- per domain: which method worked ----------------------------------- */

static json_t *methods_load(const char *dir)
{
    char *path = NULL;
    json_t *m = NULL;

    if (asprintf(&path, "%s/" METHODS_FILE, dir) >= 0)
        m = json_load_file(path, 0, NULL);
    free(path);
    if (!json_is_object(m)) {
        json_decref(m);
        m = json_object();
    }
    return m;
}

static const char *methods_get(const json_t *m, const char *domain)
{
    return json_string_value(json_object_get(json_object_get(m, domain),
                                             "method"));
}

/* Remember method for domain; a failure is only a warning. */
static void methods_save(const char *dir, const char *domain,
                         const char *method)
{
    json_t *m = methods_load(dir);
    char *path = NULL, *tmp = NULL;
    char now[32];

    shoal_time_format(time(NULL), now);
    if (mkdir(dir, 0700) < 0 && errno != EEXIST)
        pr_warn("cannot create '%s': %s", dir, strerror(errno));
    json_object_set_new(m, domain, json_pack("{s:s, s:s}", "method", method,
                                             "at", now));
    if (asprintf(&path, "%s/" METHODS_FILE, dir) < 0)
        path = NULL;
    if (path && asprintf(&tmp, "%s.tmp", path) < 0)
        tmp = NULL;
    if (!path || !tmp || json_dump_file(m, tmp, JSON_COMPACT) < 0 ||
        rename(tmp, path) < 0) {
        pr_warn("cannot remember the method of '%s' in '%s'", domain,
                path ? path : dir);
        if (tmp)
            unlink(tmp);
    }
    free(tmp);
    free(path);
    json_decref(m);
}

/* --- the origin and the swarm lookup, at once --------------------------- */

struct sink {                    /* the origin's body into the output */
    int fd;
    uint64_t bytes;
    int werr;
    CURL *c;
};

struct membuf {
    char *p;
    size_t len;
    int over;
};

static size_t sink_write(char *p, size_t sz, size_t n, void *arg)
{
    struct sink *s = arg;
    size_t len = sz * n, done = 0;
    long status = 0;

    curl_easy_getinfo(s->c, CURLINFO_RESPONSE_CODE, &status);
    if (status < 200 || status > 299)
        return len;              /* an error page: not the object */
    while (done < len) {
        ssize_t w = write(s->fd, p + done, len - done);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            s->werr = errno ? errno : EIO;
            return 0;
        }
        done += (size_t)w;
    }
    s->bytes += len;
    return len;
}

static size_t mem_write(char *p, size_t sz, size_t n, void *arg)
{
    struct membuf *b = arg;
    size_t len = sz * n;
    char *q;

    if (b->len + len > SWARM_MAX) {
        b->over = 1;
        return 0;
    }
    if (!(q = realloc(b->p, b->len + len + 1)))
        return 0;
    memcpy(q + b->len, p, len);
    b->p = q;
    b->len += len;
    b->p[b->len] = '\0';
    return len;
}

static void common_opts(CURL *c, char *ebuf)
{
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, ebuf);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_PROXY, "");
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, 10L);
    curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, 1L);
    curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, 30L);
}

struct race {
    const struct opts *o;
    int is_static;
    int prefer_swarm;
    struct pr_ctx *ctx;
    /* origin */
    CURL *oc;
    struct curl_slist *ohdr;
    struct curl_slist *phdr;     /* to the proxy only (CONNECT) */
    struct sink sink;
    char oerr[CURL_ERROR_SIZE];
    int odone, ook;
    int ostarted;                /* the origin was asked */
    long ostatus;
    struct shoal_err origin_err;
    /* swarm */
    CURL *sc;
    struct curl_slist *shdr;
    struct membuf sbuf;
    char serr[CURL_ERROR_SIZE];
    int sdone;
    long sstatus;
    json_t *record;              /* the 200 answer, new reference */
    int svalid;                  /* record's signature checks out */
    struct shoal_err swarm_err;
};

static int origin_start(struct race *r, int fd)
{
    const struct opts *o = r->o;

    if (!(r->oc = curl_easy_init()))
        return -1;
    r->sink.fd = fd;
    r->sink.c = r->oc;
    common_opts(r->oc, r->oerr);
    curl_easy_setopt(r->oc, CURLOPT_URL, o->url);
    curl_easy_setopt(r->oc, CURLOPT_WRITEFUNCTION, sink_write);
    curl_easy_setopt(r->oc, CURLOPT_WRITEDATA, &r->sink);
    curl_easy_setopt(r->oc, CURLOPT_USERAGENT, "shoal/" PR_VERSION);
    curl_easy_setopt(r->oc, CURLOPT_FOLLOWLOCATION, 1L);
    curl_easy_setopt(r->oc, CURLOPT_MAXREDIRS, 5L);
    curl_easy_setopt(r->oc, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(r->oc, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
    for (size_t i = 0; i < o->nheaders; i++)
        r->ohdr = curl_slist_append(r->ohdr, o->headers[i]);
    if (r->ohdr)
        curl_easy_setopt(r->oc, CURLOPT_HTTPHEADER, r->ohdr);
    if (o->data) {
        curl_easy_setopt(r->oc, CURLOPT_POSTFIELDS, o->data);
        curl_easy_setopt(r->oc, CURLOPT_POSTFIELDSIZE, (long)strlen(o->data));
    }
    if (o->method) {
        if (!strcmp(o->method, "HEAD"))
            curl_easy_setopt(r->oc, CURLOPT_NOBODY, 1L);
        else if (strcmp(o->method, "GET") || o->data)
            curl_easy_setopt(r->oc, CURLOPT_CUSTOMREQUEST, o->method);
    }
    return 0;
}

static int swarm_start(struct race *r, const char *swarm)
{
    char *u = NULL;
    char auth[80];

    if (!(r->sc = curl_easy_init()) ||
        asprintf(&u, "%s/v1/swarms/%s", r->ctx->id->broker, swarm) < 0)
        return -1;
    snprintf(auth, sizeof(auth), "Authorization: Bearer %s",
             r->ctx->session.session_id);
    r->shdr = curl_slist_append(NULL, auth);
    common_opts(r->sc, r->serr);
    curl_easy_setopt(r->sc, CURLOPT_URL, u);
    curl_easy_setopt(r->sc, CURLOPT_HTTPHEADER, r->shdr);
    curl_easy_setopt(r->sc, CURLOPT_WRITEFUNCTION, mem_write);
    curl_easy_setopt(r->sc, CURLOPT_WRITEDATA, &r->sbuf);
    free(u);
    return 0;
}

static void origin_finish(struct race *r, CURLcode cc)
{
    r->odone = 1;
    curl_easy_getinfo(r->oc, CURLINFO_RESPONSE_CODE, &r->ostatus);
    if (r->sink.werr) {
        shoal_err_set(&r->origin_err, SHOAL_EIO, "cannot write the output: "
                      "%s", strerror(r->sink.werr));
    } else if (cc != CURLE_OK) {
        shoal_err_set(&r->origin_err, SHOAL_ENET, "%s",
                      r->oerr[0] ? r->oerr : curl_easy_strerror(cc));
    } else if (r->ostatus < 200 || r->ostatus > 299) {
        shoal_err_set(&r->origin_err, r->ostatus == 404 || r->ostatus == 410 ?
                      SHOAL_ENOTFOUND : SHOAL_EBADGATEWAY,
                      "origin answered %ld", r->ostatus);
    } else {
        r->ook = 1;
    }
}

static void swarm_finish(struct race *r, CURLcode cc)
{
    json_t *rec;

    r->sdone = 1;
    curl_easy_getinfo(r->sc, CURLINFO_RESPONSE_CODE, &r->sstatus);
    if (cc != CURLE_OK) {
        shoal_err_set(&r->swarm_err, SHOAL_ENET, "%s",
                      r->serr[0] ? r->serr : curl_easy_strerror(cc));
        return;
    }
    rec = r->sbuf.p ? json_loads(r->sbuf.p, 0, NULL) : NULL;
    if (r->sstatus != 200) {
        shoal_err_from_json(&r->swarm_err, (int)r->sstatus, rec);
        json_decref(rec);
        return;
    }
    if (!json_is_object(rec)) {
        json_decref(rec);
        shoal_err_set(&r->swarm_err, SHOAL_EPROTO, "the record is not "
                      "JSON");
        return;
    }
    r->record = rec;
    struct pr_inj inj;
    r->svalid = pr_inj_check(r->ctx, r->o->url,
                    json_string_value(json_object_get(rec, "file_id")),
                    json_string_value(json_object_get(rec, "x_sign")),
                    json_string_value(json_object_get(rec, "meta")),
                    (int64_t)time(NULL), &inj, &r->swarm_err) == 0;
}

static int race_run(struct race *r, struct shoal_err *err);

/* race_run, then what the origin did: 1 when it delivered the object,
 * 0 when it did not (r->origin_err says why), -1 with err when the race
 * failed or the output could not be written. */
static int origin_race(struct race *r, struct shoal_err *err)
{
    if (race_run(r, err) < 0)
        return -1;
    if (r->ook)
        return 1;
    if (r->sink.werr) {
        *err = r->origin_err;
        return -1;
    }
    return 0;
}

/* Run the origin request and the swarm lookup (each when started) until
 * the origin answers well, or a valid swarm copy is preferred, or both
 * are done. */
static int race_run(struct race *r, struct shoal_err *err)
{
    CURLM *m = curl_multi_init();
    int running = 1;
    int origin_added = 0;

    if (!m)
        return shoal_err_set(err, SHOAL_EIO, "out of memory");

    /* A domain the swarm served last time asks the swarm first, and the
     * origin only when the swarm has no valid copy. */
    if (r->oc && !(r->prefer_swarm && r->sc && !r->sdone)) {
        curl_multi_add_handle(m, r->oc);
        origin_added = 1;
    }
    int swarm_added = r->sc && !r->sdone;

    if (swarm_added)
        curl_multi_add_handle(m, r->sc);
    while (running || (r->oc && !origin_added)) {
        if (r->oc && !origin_added && r->sdone && !r->svalid) {
            curl_multi_add_handle(m, r->oc);
            origin_added = 1;
            running = 1;
        }
        CURLMsg *msg;
        int left;
        if (curl_multi_perform(m, &running) != CURLM_OK)
            break;
        while ((msg = curl_multi_info_read(m, &left))) {
            if (msg->msg != CURLMSG_DONE)
                continue;
            if (msg->easy_handle == r->oc)
                origin_finish(r, msg->data.result);
            else if (msg->easy_handle == r->sc)
                swarm_finish(r, msg->data.result);
        }
        if (r->ook)
            break;
        if (r->svalid && (r->prefer_swarm || (r->odone && !r->ook)))
            break;
        if (r->sc && !r->sdone && !running)
            break;               /* cannot happen: the lookup ended unseen */
        if (running)
            curl_multi_poll(m, NULL, 0, 1000, NULL);
    }
    if (r->oc && origin_added) {
        r->ostarted = 1;
        curl_multi_remove_handle(m, r->oc);
        if (!r->odone)
            shoal_err_set(&r->origin_err, SHOAL_ENET, "abandoned for "
                          "the swarm");
    }
    if (swarm_added)
        curl_multi_remove_handle(m, r->sc);
    curl_multi_cleanup(m);
    return 0;
}

static void race_free(struct race *r)
{
    if (r->oc)
        curl_easy_cleanup(r->oc);
    if (r->sc)
        curl_easy_cleanup(r->sc);
    curl_slist_free_all(r->ohdr);
    curl_slist_free_all(r->phdr);
    curl_slist_free_all(r->shdr);
    free(r->sbuf.p);
    json_decref(r->record);
}

/* --- output ------------------------------------------------------------ */

/* A temporary file for the body: next to out, or unlinked in dir. */
static int out_open(const char *out, const char *dir, char **tmp,
                    struct shoal_err *err)
{
    int fd;

    *tmp = NULL;
    if (out && strcmp(out, "-") != 0) {
        if (asprintf(tmp, "%s.shoal-XXXXXX", out) < 0)
            return shoal_err_set(err, SHOAL_EIO, "out of memory");
    } else {
        if (mkdir(dir, 0700) < 0 && errno != EEXIST)
            return shoal_err_set(err, SHOAL_EIO, "cannot create '%s': %s",
                                 dir, strerror(errno));
        if (asprintf(tmp, "%s/fetch-XXXXXX", dir) < 0)
            return shoal_err_set(err, SHOAL_EIO, "out of memory");
    }
    if ((fd = mkostemp(*tmp, O_CLOEXEC)) < 0) {
        shoal_err_set(err, SHOAL_EIO, "cannot create '%s': %s", *tmp,
                      strerror(errno));
        free(*tmp);
        *tmp = NULL;
        return -1;
    }
    if (!out || strcmp(out, "-") == 0) {
        unlink(*tmp);
        free(*tmp);
        *tmp = NULL;
    }
    return fd;
}

static int out_reset(int fd, struct shoal_err *err)
{
    if (ftruncate(fd, 0) < 0 || lseek(fd, 0, SEEK_SET) < 0)
        return shoal_err_set(err, SHOAL_EIO, "cannot reset the output: %s",
                             strerror(errno));
    return 0;
}

/* Deliver fd's bytes: rename tmp to out, or copy them to stdout. */
static int out_finish(int fd, const char *tmp, const char *out,
                      struct shoal_err *err)
{
    char buf[65536];
    off_t off = 0;

    if (tmp) {
        if (fchmod(fd, 0644) < 0 || rename(tmp, out) < 0)
            return shoal_err_set(err, SHOAL_EIO, "cannot write '%s': %s", out,
                                 strerror(errno));
        return 0;
    }
    for (;;) {
        ssize_t r = pread(fd, buf, sizeof(buf), off);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return shoal_err_set(err, SHOAL_EIO, "cannot read back: %s",
                                 strerror(errno));
        if (r == 0)
            break;
        if (fwrite(buf, 1, (size_t)r, stdout) != (size_t)r)
            return shoal_err_set(err, SHOAL_EIO, "cannot write to stdout");
        off += r;
    }
    if (fflush(stdout) != 0)
        return shoal_err_set(err, SHOAL_EIO, "cannot write to stdout");
    return 0;
}

/* --- the command ------------------------------------------------------- */

/* err gets code's error with the story of every source tried. */
static int fail_all(struct shoal_err *err, const char *url,
                    const struct shoal_err *last, const char *story)
{
    shoal_err_set(err, last->code, "cannot fetch '%.40s': %s", url, story);
    if (last->status)
        err->status = last->status;
    return -1;
}

static void story_add(char *story, size_t cap, const char *what,
                      const struct shoal_err *e)
{
    size_t len = strlen(story);

    const char *msg = e->msg[0] ? e->msg : shoal_code_name(e->code);

    pr_warn("%s: %s", what, msg);
    snprintf(story + len, cap - len, "%s%s: %.60s", len ? "; " : "", what,
             msg);
}

static int load_identity(struct pr_ctx *ctx, struct shoal_err *err)
{
    if (ctx->id)
        return 0;
    if (!(ctx->id = pr_identity_new()))
        return shoal_err_set(err, SHOAL_EIO, "out of memory");
    return pr_identity_load(ctx->identity_path, ctx->id, err);
}

/* --- through injector proxies (proxy.h) --------------------------------- */

/* The origin's request made anew (the output emptied), not started. */
static int origin_again(struct race *r, int fd, struct shoal_err *err)
{
    if (r->oc)
        curl_easy_cleanup(r->oc);
    r->oc = NULL;
    curl_slist_free_all(r->ohdr);
    curl_slist_free_all(r->phdr);
    r->ohdr = r->phdr = NULL;
    memset(&r->sink, 0, sizeof(r->sink));
    r->odone = r->ook = r->ostarted = 0;
    r->ostatus = 0;
    r->oerr[0] = '\0';
    shoal_err_clear(&r->origin_err);
    if (out_reset(fd, err) < 0)
        return -1;
    if (origin_start(r, fd) < 0)
        return shoal_err_set(err, SHOAL_EIO, "out of memory");
    return 0;
}

/* The dynamic request again, through the proxy at purl with HTTP
 * CONNECT (the proxy authenticates ctx's session); r's origin state is
 * made anew. */
static int via_proxy(struct pr_ctx *ctx, struct race *r, int fd,
                     const char *purl, struct shoal_err *err)
{
    char auth[80];

    if (origin_again(r, fd, err) < 0)
        return -1;
    snprintf(auth, sizeof(auth), "Authorization: Bearer %s",
             ctx->session.session_id);
    r->phdr = curl_slist_append(NULL, auth);
    curl_easy_setopt(r->oc, CURLOPT_PROXY, purl);
    curl_easy_setopt(r->oc, CURLOPT_HTTPPROXYTUNNEL, 1L);
    curl_easy_setopt(r->oc, CURLOPT_PROXYHEADER, r->phdr);
    curl_easy_setopt(r->oc, CURLOPT_HEADEROPT, (long)CURLHEADER_SEPARATE);
    r->prefer_swarm = 0;
    return race_run(r, err);
}

/* The injection of url through base (an injector or a proxy): it answers
 * POST /v1/inject as the injector does, with the same trailers. */
static int inject_via(struct pr_ctx *ctx, const char *base, const char *url,
                      int fd, struct pr_inj *inj, uint64_t *bytes,
                      struct shoal_err *err)
{
    char saved[PR_URL_MAX];
    int rc;

    if (out_reset(fd, err) < 0 || !pr_connect(ctx, err))
        return -1;
    /* pr_inject_fetch (urlswarm.c) posts to ctx->id->broker once it has a
     * session: pointed at base for this one call.  The answer is checked
     * against the pinned keys as any injection is. */
    memcpy(saved, ctx->id->broker, sizeof(saved));
    snprintf(ctx->id->broker, sizeof(ctx->id->broker), "%s", base);
    rc = pr_inject_fetch(ctx, url, fd, inj, bytes, err);
    memcpy(ctx->id->broker, saved, sizeof(saved));
    return rc;
}

/*
 * Try what --no-origin / the origin's failure leaves: for a static
 * request (inj not NULL) the other injectors then the proxies, each
 * asked to inject; for a dynamic one the proxies, with CONNECT.  *used
 * gets the URL that worked (borrowed from *found, a new list the caller
 * frees).  0 with the source's name in *source, or -1 with the last
 * failure in last (story told).
 */
static int try_proxies(struct pr_ctx *ctx, struct race *r, const char *dir,
                       int fd, struct pr_inj *inj, uint64_t *bytes,
                       const char **source, json_t **found, const char **used,
                       char *story, size_t cap, struct shoal_err *last)
{
    static const char *const kinds[] = { PR_SWARM_INJECTORS, PR_SWARM_PROXIES };

    *found = json_array();
    for (int k = inj ? 0 : 1; k < 2 && *found; k++) {
        json_t *list = pr_injfind(ctx, dir, kinds[k]);
        size_t i, tried = 0;
        json_t *e;
        json_array_foreach(list, i, e) {
            const char *u = json_string_value(json_object_get(e, "url"));
            struct shoal_err e2;
            char what[PR_URL_MAX + 16];
            if (tried >= PROXY_TRIES)
                break;
            if (k == 0 && strcmp(u, ctx->id->broker) == 0)
                continue;                      /* asked already */
            tried++;
            json_array_append(*found, json_object_get(e, "url"));
            u = json_string_value(json_array_get(*found,
                                                 json_array_size(*found) - 1));
            shoal_err_clear(&e2);
            int rc = inj ? inject_via(ctx, u, r->o->url, fd, inj, bytes, &e2)
                         : via_proxy(ctx, r, fd, u, &e2);
            if (rc == 0 && (inj || r->ook)) {
                *source = k == 0 ? "injector" : "proxy";
                *used = u;
                pr_injfind_worked(dir, kinds[k], u);
                json_decref(list);
                return 0;
            }
            if (r->sink.werr) {
                *last = r->origin_err;
                json_decref(list);
                return -1;
            }
            *last = rc == 0 ? r->origin_err : e2;
            snprintf(what, sizeof(what), "%s '%s'", k == 0 ? "injector"
                     : "proxy", u);
            story_add(story, cap, what, last);
        }
        json_decref(list);
    }
    if (!*found)
        return shoal_err_set(last, SHOAL_EIO, "out of memory");
    if (json_array_size(*found) == 0) {
        shoal_err_set(last, SHOAL_ENET, "no injector proxy found");
        story_add(story, cap, "proxy", last);
    }
    return -1;
}

int pr_cmd_fetch(struct pr_ctx *ctx, int argc, char **argv,
                 struct shoal_err *err)
{
    struct opts o = { 0 };
    struct race r = { 0 };
    struct pr_inj inj = { 0 };
    struct shoal_err e;
    json_t *methods = NULL, *ans = NULL, *found = NULL;
    const char *via = NULL;                /* the injector or proxy used */
    const char *why = "";
    const char *source = NULL;
    const char *remembered;
    char *dir = NULL, *tmp = NULL;
    char *canon = NULL;                    /* o.url once canonical */
    char domain[256], swarm[65];
    char story[SHOAL_ERR_MSG_MAX] = "";
    uint64_t bytes = 0;
    int have_inj = 0;
    int fd = -1;
    int rc = -1;

    if ((rc = parse_args(argc, argv, &o, err)) < 0)
        return rc;
    rc = -1;
    if (curl_global_init(CURL_GLOBAL_ALL) != CURLE_OK)
        return shoal_err_set(err, SHOAL_EIO, "cannot initialise libcurl");
    pr_url_domain(o.url, domain, sizeof(domain));
    r.o = &o;
    r.ctx = ctx;
    r.is_static = pr_classify(o.method, o.data != NULL, o.url, o.headers,
                              o.nheaders, &why) == PR_CLASS_STATIC;
    if (!r.is_static && o.no_origin && o.no_proxy) {
        rc = pr_usage_err(err, "'%s' is a dynamic request (%s): it goes to "
                          "the origin, directly or through a proxy, and "
                          "--no-origin and --no-proxy forbid both", o.url,
                          why);
        goto out;
    }
    /* A static request names a web object: from here on its URL is the
     * canonical one (urlcanon.h), asked of the origin, the swarm and the
     * injector, checked in the signature and kept in the record. */
    if (r.is_static) {
        shoal_err_clear(&e);
        if (shoal_url_canon(o.url, &canon, &e) < 0) {
            rc = pr_usage_err(err, "URL '%.100s' cannot name a web object: "
                              "%s", o.url, e.msg);
            goto out;
        }
        o.url = canon;
        pr_url_domain(o.url, domain, sizeof(domain));
    }
    if (!(dir = pr_data_dir(o.data_dir, err)) ||
        (fd = out_open(o.output, dir, &tmp, err)) < 0)
        goto out;
    methods = methods_load(dir);
    remembered = methods_get(methods, domain);
    r.prefer_swarm = o.no_origin || (remembered &&
                     (!strcmp(remembered, "swarm") ||
                      !strcmp(remembered, "injector") ||
                      !strcmp(remembered, "proxy")));

    if (!r.is_static) {          /* the origin, directly or by a proxy */
        int proxy_first = !o.no_proxy && (o.no_origin || (remembered &&
                                          !strcmp(remembered, "proxy")));
        struct shoal_err last;
        shoal_err_clear(&last);
        for (int pass = 0; pass < 2; pass++) {
            if (pass == 0 ? proxy_first : !proxy_first) {
                /* a proxy, when allowed and the origin was not reached */
                if (o.no_proxy || (pass == 1 && r.origin_err.code != SHOAL_ENET))
                    continue;
                shoal_err_clear(&e);
                if (load_identity(ctx, &e) < 0 || !pr_connect(ctx, &e)) {
                    story_add(story, sizeof(story), "proxy", &e);
                    last = e;
                    continue;
                }
                if (try_proxies(ctx, &r, dir, fd, NULL, &bytes, &source,
                                &found, &via, story, sizeof(story), &e) == 0) {
                    bytes = r.sink.bytes;
                    goto done;
                }
                if (r.sink.werr) {
                    *err = r.origin_err;
                    goto out;
                }
                last = e;
            } else if (!o.no_origin) {
                int got;
                if (origin_again(&r, fd, err) < 0 ||
                    (got = origin_race(&r, err)) < 0)
                    goto out;
                if (got) {
                    source = "origin";
                    bytes = r.sink.bytes;
                    goto done;
                }
                story_add(story, sizeof(story), "origin", &r.origin_err);
                last = r.origin_err;
            }
        }
        fail_all(err, o.url, &last, story);
        goto out;
    }

    shoal_err_clear(&e);
    if (r.is_static) {
        if (load_identity(ctx, &e) < 0 || !pr_connect(ctx, &e)) {
            if (o.no_origin) {
                *err = e;
                goto out;
            }
            story_add(story, sizeof(story), "swarm", &e);
        } else {
            pr_swarm_of(o.url, swarm);
            if (swarm_start(&r, swarm) < 0) {
                shoal_err_set(err, SHOAL_EIO, "out of memory");
                goto out;
            }
        }
    }
    if (!o.no_origin && origin_start(&r, fd) < 0) {
        shoal_err_set(err, SHOAL_EIO, "out of memory");
        goto out;
    }
    int got = origin_race(&r, err);
    if (got < 0)
        goto out;
    if (got) {
        source = "origin";
        bytes = r.sink.bytes;
        goto done;
    }
    if (r.oc && r.ostarted)
        story_add(story, sizeof(story), "origin", &r.origin_err);
    if (!r.is_static) {
        fail_all(err, o.url, &r.origin_err, story);
        goto out;
    }
    if (!ctx->client)                          /* no broker: nothing else */
        goto fail;
    if (out_reset(fd, err) < 0)
        goto out;
    if (r.record && r.svalid) {
        shoal_err_clear(&e);
        if (pr_swarm_download(ctx, o.url, r.record, fd, dir, &inj, &ans,
                              &e) == 0) {
            source = "swarm";
            bytes = inj.x.size;
            have_inj = 1;
            goto done;
        }
        r.swarm_err = e;
        if (out_reset(fd, err) < 0)
            goto out;
        if (r.oc && !r.ostarted) {       /* asked the swarm first: now it */
            r.prefer_swarm = 0;
            if ((got = origin_race(&r, err)) < 0)
                goto out;
            if (got) {
                source = "origin";
                bytes = r.sink.bytes;
                goto done;
            }
            story_add(story, sizeof(story), "origin", &r.origin_err);
            if (out_reset(fd, err) < 0)
                goto out;
        }
    }
    if (r.sc)
        story_add(story, sizeof(story), "swarm", &r.swarm_err);
    shoal_err_clear(&e);
    if (pr_inject_fetch(ctx, o.url, fd, &inj, &bytes, &e) == 0) {
        source = "injector";
        have_inj = 1;
        goto done;
    }
    story_add(story, sizeof(story), "injector", &e);
    if (!o.no_proxy && e.code == SHOAL_ENET) {   /* other injectors, proxies */
        if (try_proxies(ctx, &r, dir, fd, &inj, &bytes, &source, &found, &via,
                        story, sizeof(story), &e) == 0) {
            have_inj = 1;
            goto done;
        }
    }
    fail_all(err, o.url, &e, story);
    goto out;
fail:
    fail_all(err, o.url, r.oc ? &r.origin_err : &e, story);
    goto out;

done:
    if (have_inj) {
        shoal_err_clear(&e);
        if (pr_urlobj_keep(ctx, dir, o.url, &inj, fd, ans, &e) < 0)
            pr_warn("fetched '%s' but cannot keep it to seed: %s", o.url,
                    e.msg);
    }
    if (out_finish(fd, tmp, o.output, err) < 0)
        goto out;
    free(tmp);
    tmp = NULL;
    methods_save(dir, domain, source);
    if (ctx->json) {
        char exp[32] = "";
        json_t *j;
        if (have_inj)
            shoal_time_format((time_t)inj.x.expires, exp);
        int to_file = o.output && strcmp(o.output, "-") != 0;
        j = json_pack("{s:s, s:s, s:s, s:I}", "url", o.url,
                      "class", r.is_static ? "static" : "dynamic",
                      "source", source, "bytes", (json_int_t)bytes);
        if (j && to_file)
            json_object_set_new(j, "output", json_string(o.output));
        if (j && via)
            json_object_set_new(j, "via", json_string(via));
        if (j && have_inj) {
            json_object_set_new(j, "file_id", json_string(inj.file_id));
            json_object_set_new(j, "version",
                                json_integer((json_int_t)inj.x.version));
            json_object_set_new(j, "expires_at", json_string(exp));
            json_object_set_new(j, "signed_by", json_string(inj.x.key));
        }
        if (!j) {
            shoal_err_set(err, SHOAL_EIO, "out of memory");
            goto out;
        }
        if (to_file) {
            rc = pr_json_print(j, err);
        } else {                 /* stdout holds the body: report on stderr */
            char *text = json_dumps(j, JSON_COMPACT);
            fprintf(stderr, "%s\n", text ? text : "{}");
            free(text);
            rc = 0;
        }
        json_decref(j);
    } else {
        if (o.output && strcmp(o.output, "-"))
            rc = pr_printf(err, "fetched '%s' from the %s: %" PRIu64
                           " bytes in '%s'\n", o.url, source, bytes, o.output);
        else
            rc = 0;
    }
out:
    race_free(&r);
    json_decref(found);
    json_decref(methods);
    json_decref(ans);
    if (fd >= 0)
        close(fd);
    if (tmp) {
        unlink(tmp);
        free(tmp);
    }
    free(dir);
    free(canon);
    curl_global_cleanup();
    return rc;
}
