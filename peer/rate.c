/*
 * rate.c - the upload limit of 'shoal serve' (--max-upload-rate): one
 * token bucket that every connection draws from.
 *
 * A sender asks for up to want bytes.  When the bucket holds enough, they
 * go at once.  Otherwise the sender reserves a chunk (a twentieth of a
 * second's worth, at least 1 byte, at most 256 KiB), which drives the
 * bucket into debt, and sleeps until the debt it ran up is paid: senders
 * queue one behind the other in the order they came, none spins, and
 * together they never send more than rate bytes a second over any period
 * longer than the burst (a tenth of a second's worth).
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <time.h>

#include "serve.h"
#include "util.h"

#define CHUNK_MAX (256u << 10)

struct pr_rate {
    pthread_mutex_t lock;
    double rate;                     /* bytes per second */
    double burst;                    /* most tokens saved up */
    double chunk;                    /* bytes reserved when short */
    double tokens;                   /* may be negative: reserved ahead */
    double last;                     /* shoal_mono() of the last refill */
};

struct pr_rate *pr_rate_new(uint64_t bytes_per_sec)
{
    struct pr_rate *r;

    if (bytes_per_sec == 0 || !(r = calloc(1, sizeof(*r))))
        return NULL;
    pthread_mutex_init(&r->lock, NULL);
    r->rate = (double)bytes_per_sec;
    r->chunk = r->rate / 20;
    if (r->chunk > CHUNK_MAX)
        r->chunk = CHUNK_MAX;
    if (r->chunk < 1)
        r->chunk = 1;
    r->burst = r->rate / 10 > r->chunk ? r->rate / 10 : r->chunk;
    r->tokens = 0;                   /* no burst at start */
    r->last = shoal_mono();
    return r;
}

void pr_rate_free(struct pr_rate *r)
{
    if (!r)
        return;
    pthread_mutex_destroy(&r->lock);
    free(r);
}

static void sleep_for(double secs)
{
    struct timespec ts;

    if (secs <= 0)
        return;
    ts.tv_sec = (time_t)secs;
    ts.tv_nsec = (long)((secs - (double)ts.tv_sec) * 1e9);
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

size_t pr_rate_take(void *arg, size_t want)
{
    struct pr_rate *r = arg;
    double now = shoal_mono();
    double wait = 0;
    size_t n;

    if (want == 0)
        return 0;
    pthread_mutex_lock(&r->lock);
    r->tokens += (now - r->last) * r->rate;
    r->last = now;
    if (r->tokens > r->burst)
        r->tokens = r->burst;
    if (r->tokens >= (double)want) {
        n = want;
    } else if (r->tokens >= r->chunk) {
        n = (size_t)r->tokens;
    } else {
        n = want < (size_t)r->chunk ? want : (size_t)r->chunk;
        wait = ((double)n - r->tokens) / r->rate;
    }
    r->tokens -= (double)n;
    pthread_mutex_unlock(&r->lock);
    sleep_for(wait);
    return n;
}
