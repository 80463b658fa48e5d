/*
 * fetch_swarm.c - a download that is part of a swarm: it tells the
 * tracker which pieces its peer keeps as they arrive, and looks at the
 * tracker again and again for peers that joined since it started and
 * for the pieces the known ones hold now (protocol.md, section 12).
 *
 * Downloaders that start together would all ask the seed for the same
 * first pieces: each takes the pieces in its own random order, in blocks
 * of a few so that a request may still cover a run of them.  And once
 * they see each other on the tracker, each takes its own share of the
 * blocks first (block b is the share of the downloader of rank b mod
 * members, counting those with an incomplete copy in the order of their
 * URLs): among pieces equally rare, those of its share come first, so a
 * seed sends each piece to about one of them, and they trade the rest.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "fetch_int.h"
#include "log.h"
#include "pieceserve.h"

uint64_t *fx_shuffle(const struct engine *e, const uint64_t *todo,
                     uint64_t n)
{
    uint64_t nblocks = (n + SHUFFLE_BLOCK - 1) / SHUFFLE_BLOCK;
    uint64_t *block;
    uint64_t *out;
    uint64_t i, k = 0;

    if (!e->f->announce_url || n == 0)
        return NULL;
    block = malloc(nblocks * sizeof(*block));
    out = malloc(n * sizeof(*out));
    if (!block || !out) {
        free(block);
        free(out);
        return NULL;                     /* the caller's order then */
    }
    for (i = 0; i < nblocks; i++)
        block[i] = i;
    for (i = nblocks; i > 1; i--) {      /* Fisher-Yates */
        uint64_t j = randombytes_uniform(i > UINT32_MAX ? UINT32_MAX
                                                        : (uint32_t)i);
        uint64_t t = block[i - 1];

        block[i - 1] = block[j];
        block[j] = t;
    }
    for (i = 0; i < nblocks; i++) {
        uint64_t a = block[i] * SHUFFLE_BLOCK;
        uint64_t b = a + SHUFFLE_BLOCK < n ? a + SHUFFLE_BLOCK : n;

        while (a < b)
            out[k++] = todo[a++];
    }
    free(block);
    return out;
}

/* POST /v1/files/{id}/peers: the pieces of the version in f->keep, as
 * held by the serve at f->announce_url (none yet, too: the others count
 * this downloader in).  Best effort. */
static void announce(const struct engine *e)
{
    const struct pr_fetch *f = e->f;
    struct shoal_err err;
    uint64_t held = 0;
    json_t *body = NULL;
    json_t *ans = NULL;
    char path[96];
    char *have = shoal_pieceserve_have(f->keep, f->hashes, e->count, &held);

    if (!have)
        goto out;
    body = json_pack("{s:s, s:s, s:I}", "url", f->announce_url, "have", have,
                     "version", (json_int_t)f->version);
    if (!body)
        goto out;
    snprintf(path, sizeof(path), "/v1/files/%s/peers", f->file_id);
    shoal_err_clear(&err);
    if (pr_call(f->ctx, "POST", path, body, &ans, &err) < 0)
        shoal_log(SHOAL_LOG_DEBUG, NULL, "cannot announce the %" PRIu64
                  " pieces kept of file '%s': %s", held, f->file_id, err.msg);
out:
    free(have);
    json_decref(body);
    json_decref(ans);
}

/* The pieces source si did not hold and n does: si holds them now. */
static void merge(struct engine *e, int si, const struct pr_source *n)
{
    struct pr_source *s = &e->src[si];
    uint64_t p;
    int more = 0;

    if (!s->live || !s->have)
        return;                          /* dropped, or holds them all */
    for (p = 0; p < e->count; p++) {
        if (pr_source_has(s, p) || !pr_source_has(n, p))
            continue;
        s->have[p / 8] |= (unsigned char)(0x80u >> (p % 8));
        s->held++;
        if (e->pc[p].need) {
            e->pc[p].avail++;
            more = 1;
        }
    }
    if (more) {
        e->resort = 1;
        e->check_orphans = 1;
    }
}

/* A holder the download did not know: a source from now on (its fields
 * move out of n).  0, or -1 on ENOMEM (n is left as it was). */
static int join(struct engine *e, struct pr_source *n)
{
    int si = e->nsrc;
    struct slot *slots;
    uint64_t p;
    int k;

    if (si >= PR_FETCH_SOURCES_MAX)
        return 0;
    if (!(slots = calloc((size_t)e->jobs, sizeof(*slots))))
        return -1;
    for (k = 0; k < e->jobs; k++) {
        slots[k].e = e;
        slots[k].src = si;
    }
    e->src[si] = *n;
    memset(n, 0, sizeof(*n));
    memset(&e->run[si], 0, sizeof(e->run[si]));
    e->run[si].slots = slots;
    for (p = 0; p < e->count; p++)
        if (e->pc[p].need && pr_source_has(&e->src[si], p))
            e->pc[p].avail++;
    e->nsrc++;
    e->nlive++;
    e->cap += e->jobs;
    e->resort = 1;
    e->check_orphans = 1;
    curl_multi_setopt(e->multi, CURLMOPT_MAXCONNECTS,
                      (long)(e->nsrc * e->jobs + 1));
    shoal_log(SHOAL_LOG_INFO, NULL, "peer '%s' joined: it holds %" PRIu64
              " of the %" PRIu64 " pieces", e->src[si].url, e->src[si].held,
              e->count);
    pr_progress_sources(e->f->progress, e->nlive);
    return 0;
}

/* The pieces to fetch, the share of this downloader in view first (each
 * part in the order it had).  Left as it was on ENOMEM. */
static void share_first(struct engine *e, const struct pr_swarm_view *view)
{
    uint64_t *tmp = malloc(e->nshuffled * sizeof(*tmp));
    uint64_t i, k = 0;
    int pass;

    if (!tmp)
        return;
    for (pass = 0; pass < 2; pass++)
        for (i = 0; i < e->nshuffled; i++) {
            uint64_t p = e->shuffled[i];
            int mine = (int)((p / SHUFFLE_BLOCK) %
                             (uint64_t)view->members) == view->rank;

            if (mine == (pass == 0))
                tmp[k++] = p;
        }
    memcpy(e->shuffled, tmp, e->nshuffled * sizeof(*tmp));
    free(tmp);
    e->view = *view;
    e->share_left = 0;
    for (i = 0; i < e->nshuffled; i++)
        e->share_left += in_share(e, e->shuffled[i]) &&
                         !e->pc[e->shuffled[i]].done;
    e->resort = 1;
    shoal_log(SHOAL_LOG_DEBUG, NULL, "swarm: %d downloaders, this one's "
              "share is blocks %d mod %d", view->members, view->rank,
              view->members);
}

void fx_refresh(struct engine *e)
{
    struct pr_source *fresh = NULL;
    struct pr_swarm_view view = { 0, 0 };
    struct shoal_err err;
    int nfresh = 0;
    int i, si;

    if (e->f->announce_url && e->f->keep)
        announce(e);
    shoal_err_clear(&err);
    if (pr_sources_peers(e->f, &fresh, &nfresh, &view, &err) < 0) {
        fx_fatal_set(e, SHOAL_EIO, "out of memory");
        return;
    }
    for (i = 0; i < nfresh; i++) {
        for (si = 0; si < e->nsrc; si++)
            if (strcmp(e->src[si].url, fresh[i].url) == 0)
                break;
        if (si < e->nsrc)
            merge(e, si, &fresh[i]);
        else if (join(e, &fresh[i]) < 0) {
            fx_fatal_set(e, SHOAL_EIO, "out of memory");
            break;
        }
    }
    pr_sources_free(fresh, nfresh);
    if (e->shuffled && view.members > 0 &&
        (view.members != e->view.members || view.rank != e->view.rank))
        share_first(e, &view);
}
