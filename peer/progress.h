/*
 * progress.h - a progress line on stderr for long transfers: bytes done
 * of the total, rate and time left, redrawn at most 10 times a second.
 *
 * It draws only when stderr is a terminal; otherwise every call is a
 * cheap no-op, so callers use it unconditionally.  One thread only.
 */
#ifndef PR_PROGRESS_H
#define PR_PROGRESS_H

#include <stdint.h>

struct pr_progress;

/* A new progress line for total bytes, labelled label (borrowed static
 * string, e.g. "hashing").  Draws nothing when stderr is not a terminal.
 * Returns NULL on ENOMEM (every function accepts NULL). */
struct pr_progress *pr_progress_new(const char *label, uint64_t total);

/* Start a new phase: another label and total, rate reset. */
void pr_progress_phase(struct pr_progress *p, const char *label,
                       uint64_t total);

/* Count delta more bytes done (negative when a failed try gives back what
 * it had counted), and redraw when the last draw is 0.1 s old. */
void pr_progress_add(struct pr_progress *p, int64_t delta);

/* Set the bytes done to an absolute figure, then as pr_progress_add. */
void pr_progress_set(struct pr_progress *p, uint64_t done);

/* Show n live sources on the line from now on (n < 0: show none, the
 * default). */
void pr_progress_sources(struct pr_progress *p, int n);

/* Draw the final state and end the line (when anything was drawn). */
void pr_progress_end(struct pr_progress *p);

/* End the line and free.  Accepts NULL. */
void pr_progress_free(struct pr_progress *p);

#endif
