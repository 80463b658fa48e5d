/*
 * progress.c - the progress line on stderr (only on a terminal).
 */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "progress.h"
#include "util.h"

#define REDRAW_EVERY 0.1        /* seconds between two draws, at least */

struct pr_progress {
    int tty;                /* 1 when stderr is a terminal */
    int drawn;              /* 1 when the current line has been drawn */
    const char *label;
    uint64_t total;
    int64_t done;
    int sources;            /* live sources to show, or -1 */
    double start;           /* shoal_mono() at the start of the phase */
    double last;            /* shoal_mono() of the last draw */
};

struct pr_progress *pr_progress_new(const char *label, uint64_t total)
{
    struct pr_progress *p = calloc(1, sizeof(*p));

    if (!p)
        return NULL;
    p->tty = isatty(STDERR_FILENO);
    p->label = label;
    p->total = total;
    p->sources = -1;
    p->start = shoal_mono();
    return p;
}

/* "12.3 MiB" into out. */
static void human(double v, char out[16])
{
    static const char *const units[] = { "B", "KiB", "MiB", "GiB", "TiB" };
    size_t u = 0;

    while (v >= 1024.0 && u + 1 < sizeof(units) / sizeof(units[0])) {
        v /= 1024.0;
        u++;
    }
    if (u == 0)
        snprintf(out, 16, "%.0f %s", v, units[u]);
    else
        snprintf(out, 16, "%.1f %s", v, units[u]);
}

static void draw(struct pr_progress *p, double now)
{
    char done[16];
    char total[16];
    char rate[16];
    char eta[24] = "--:--";
    char src[24] = "";
    double secs = now - p->start;
    uint64_t d = p->done > 0 ? (uint64_t)p->done : 0;
    double r = secs > 0.05 ? (double)d / secs : 0.0;
    int pct = p->total ? (int)((double)d * 100.0 / (double)p->total) : 100;

    human((double)d, done);
    human((double)p->total, total);
    human(r, rate);
    if (r > 0.0 && p->total >= d) {
        unsigned long left = (unsigned long)((double)(p->total - d) / r);
        if (left >= 3600)
            snprintf(eta, sizeof(eta), "%lu:%02lu:%02lu", left / 3600,
                     left / 60 % 60, left % 60);
        else
            snprintf(eta, sizeof(eta), "%lu:%02lu", left / 60, left % 60);
    }
    if (p->sources >= 0)
        snprintf(src, sizeof(src), " %d source%s", p->sources,
                 p->sources == 1 ? "" : "s");
    fprintf(stderr, "\r%s %s / %s %3d%% %s/s ETA %s%s\x1b[K", p->label, done,
            total, pct > 100 ? 100 : pct, rate, eta, src);
    fflush(stderr);
    p->drawn = 1;
    p->last = now;
}

static void maybe_draw(struct pr_progress *p)
{
    double now;

    if (!p->tty)
        return;
    now = shoal_mono();
    if (!p->drawn || now - p->last >= REDRAW_EVERY)
        draw(p, now);
}

void pr_progress_phase(struct pr_progress *p, const char *label,
                       uint64_t total)
{
    if (!p)
        return;
    pr_progress_end(p);
    p->label = label;
    p->total = total;
    p->done = 0;
    p->start = shoal_mono();
}

void pr_progress_add(struct pr_progress *p, int64_t delta)
{
    if (!p)
        return;
    p->done += delta;
    maybe_draw(p);
}

void pr_progress_set(struct pr_progress *p, uint64_t done)
{
    if (!p)
        return;
    p->done = (int64_t)done;
    maybe_draw(p);
}

void pr_progress_sources(struct pr_progress *p, int n)
{
    if (!p)
        return;
    p->sources = n;
    maybe_draw(p);
}

void pr_progress_end(struct pr_progress *p)
{
    if (!p || !p->tty || !p->drawn)
        return;
    draw(p, shoal_mono());
    fputc('\n', stderr);
    fflush(stderr);
    p->drawn = 0;
}

void pr_progress_free(struct pr_progress *p)
{
    if (!p)
        return;
    pr_progress_end(p);
    free(p);
}
