/*
 * log.c - JSON lines to stderr or a file, one write() per line.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "util.h"

static const char *const level_names[] = {
    [SHOAL_LOG_DEBUG] = "debug",
    [SHOAL_LOG_INFO] = "info",
    [SHOAL_LOG_WARN] = "warn",
    [SHOAL_LOG_ERROR] = "error",
    [SHOAL_LOG_OFF] = "off",
};

static atomic_int min_level = SHOAL_LOG_INFO;
/* The log stream; the lock keeps a line whole and the fd alive while it
 * is written. */
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static int log_fd = STDERR_FILENO;

void shoal_log_set_level(enum shoal_log_level level)
{
    if (level > SHOAL_LOG_OFF)
        level = SHOAL_LOG_OFF;
    atomic_store(&min_level, (int)level);
}

int shoal_log_level_parse(const char *s, enum shoal_log_level *out)
{
    int i;

    if (s == NULL)
        return -1;
    for (i = SHOAL_LOG_DEBUG; i <= SHOAL_LOG_OFF; i++) {
        if (strcmp(s, level_names[i]) == 0) {
            *out = (enum shoal_log_level)i;
            return 0;
        }
    }
    return -1;
}

int shoal_log_open(const char *path)
{
    int fd;
    int old;

    fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (fd < 0)
        return -1;
    if (pthread_mutex_lock(&lock) != 0) {
        close(fd);
        return -1;
    }
    old = log_fd;
    log_fd = fd;
    pthread_mutex_unlock(&lock);
    if (old != STDERR_FILENO)
        close(old);
    return 0;
}

int shoal_log_enabled(enum shoal_log_level level)
{
    return level < SHOAL_LOG_OFF && (int)level >= atomic_load(&min_level);
}

/* "2026-11-21T19:48:35.123Z" into out[64]. */
static void timestamp(char out[64])
{
    struct timespec ts;
    struct tm tm;

    if (clock_gettime(CLOCK_REALTIME, &ts) != 0) {
        ts.tv_sec = time(NULL);
        ts.tv_nsec = 0;
    }
    if (gmtime_r(&ts.tv_sec, &tm) == NULL) {
        snprintf(out, 64, "1970-01-01T00:00:00.000Z");
        return;
    }
    snprintf(out, 64, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ",
             tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
             tm.tm_min, tm.tm_sec, (int)(ts.tv_nsec / 1000000L));
}

/* Write one line under the lock. */
static void emit(const char *line, size_t len)
{
    int e = errno;

    if (pthread_mutex_lock(&lock) != 0)
        return;
    if (shoal_write_all(log_fd, line, len) != 0) {
        /* Nowhere to report a failed log write: the line is dropped. */
    }
    pthread_mutex_unlock(&lock);
    errno = e;      /* callers log between a failure and its errno */
}

void shoal_log_fields(enum shoal_log_level level, const char *req,
                      json_t *fields, const char *fmt, ...)
{
    static const char oom[] = "{\"level\":\"error\",\"msg\":\"log line lost: out of memory\"}\n";
    char ts[64];
    char *msg = NULL;
    char *text = NULL;
    char *line = NULL;
    json_t *obj = NULL;
    const char *key;
    json_t *v;
    va_list ap;
    size_t len;
    int n;

    if (!shoal_log_enabled(level))
        return;
    va_start(ap, fmt);
    n = vasprintf(&msg, fmt, ap);
    va_end(ap);
    if (n < 0) {
        msg = NULL;
        goto fail;
    }
    timestamp(ts);
    obj = json_object();
    if (obj == NULL ||
        json_object_set_new(obj, "ts", json_string(ts)) != 0 ||
        json_object_set_new(obj, "level", json_string(level_names[level])) != 0 ||
        (req != NULL && json_object_set_new(obj, "req", shoal_json_string_lossy(req)) != 0) ||
        json_object_set_new(obj, "msg", shoal_json_string_lossy(msg)) != 0)
        goto fail;
    if (json_is_object(fields)) {
        json_object_foreach(fields, key, v) {
            if (json_object_get(obj, key) != NULL)
                continue;
            if (json_object_set(obj, key, v) != 0)
                goto fail;
        }
    }
    text = json_dumps(obj, JSON_COMPACT | JSON_PRESERVE_ORDER);
    if (text == NULL)
        goto fail;
    len = strlen(text);
    line = malloc(len + 2);
    if (line == NULL)
        goto fail;
    memcpy(line, text, len);
    line[len] = '\n';
    line[len + 1] = '\0';
    emit(line, len + 1);
    goto out;
fail:
    emit(oom, sizeof(oom) - 1);
out:
    free(line);
    free(text);
    json_decref(obj);
    free(msg);
}
