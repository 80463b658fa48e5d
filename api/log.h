/*
 * log.h - logging as JSON lines.
 *
 * Each line is one JSON object:
 *   {"ts":"2026-11-21T19:48:35.123Z","level":"info","req":"9f3a…","msg":"…", …}
 * "req" (the request id) is present only when one is given.  Extra fields
 * come from a JSON object the caller passes.  Lines go to the log stream
 * (stderr unless shoal_log_open() names a file), written with one write()
 * so that lines from several threads never interleave.
 *
 * Never pass a secret (Authentication ID, private key, epoch secret) to
 * these functions.
 */
#ifndef SHOAL_LOG_H
#define SHOAL_LOG_H

#include <jansson.h>

enum shoal_log_level {
    SHOAL_LOG_DEBUG = 0,
    SHOAL_LOG_INFO,
    SHOAL_LOG_WARN,
    SHOAL_LOG_ERROR,
    SHOAL_LOG_OFF
};

/* Set the lowest level written (default info). */
void shoal_log_set_level(enum shoal_log_level level);

/* Parse "debug", "info", "warn", "error", "off".  -1 when unknown. */
int shoal_log_level_parse(const char *s, enum shoal_log_level *out);

/* Send lines to the file at path (appended, mode 0600) instead of stderr.
 * -1 when it cannot be opened. */
int shoal_log_open(const char *path);

/* 1 when a line of this level would be written. */
int shoal_log_enabled(enum shoal_log_level level);

/* Write a line.  req may be NULL.  fields may be NULL; it is borrowed and
 * its keys are added to the line (ts, level, req and msg win). */
void shoal_log_fields(enum shoal_log_level level, const char *req,
                      json_t *fields, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

#define shoal_log(level, req, ...) shoal_log_fields(level, req, NULL, __VA_ARGS__)

#endif
