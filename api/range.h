/*
 * range.h - the HTTP Range header (RFC 9110, bytes, one range).
 */
#ifndef SHOAL_RANGE_H
#define SHOAL_RANGE_H

#include <stdint.h>

enum shoal_range {
    SHOAL_RANGE_WHOLE = 0,   /* no Range, or one to ignore: send it all */
    SHOAL_RANGE_PART = 1,    /* bytes *first .. *last (inclusive) */
    SHOAL_RANGE_UNSAT = -1,  /* 416 with Content-Range: bytes * /size */
};

/*
 * Read a Range header value (NULL: none) for a resource of size bytes.
 * "bytes=a-b", "bytes=a-" and "bytes=-n" are understood (a last position
 * past the end is cut to the end).  A range starting at or past the end,
 * a reversed one ("bytes=5-3") and "bytes=-0" are unsatisfiable.  Several
 * ranges, another unit, or anything malformed are ignored, as RFC 9110
 * allows: the whole resource is sent.
 */
enum shoal_range shoal_range_parse(const char *value, uint64_t size,
                                   uint64_t *first, uint64_t *last);

#endif
