/*
 * range.c - the HTTP Range header (see range.h).
 */
#include <stddef.h>

#include "range.h"

/* Decimal digits at *p into *out; -1 when none or on overflow. */
static int number(const char **p, uint64_t *out)
{
    uint64_t v = 0;
    const char *s = *p;
    if (*s < '0' || *s > '9')
        return -1;
    for (; *s >= '0' && *s <= '9'; s++) {
        unsigned d = (unsigned)(*s - '0');
        if (v > (UINT64_MAX - d) / 10)
            return -1;
        v = v * 10 + d;
    }
    *p = s;
    *out = v;
    return 0;
}

static const char *skip_ws(const char *p)
{
    while (*p == ' ' || *p == '\t')
        p++;
    return p;
}

enum shoal_range shoal_range_parse(const char *value, uint64_t size,
                                   uint64_t *first, uint64_t *last)
{
    uint64_t a = 0, b = 0;
    int have_a, have_b;
    const char *p;

    if (value == NULL)
        return SHOAL_RANGE_WHOLE;
    p = skip_ws(value);
    if ((p[0] | 0x20) != 'b' || (p[1] | 0x20) != 'y' || (p[2] | 0x20) != 't' ||
        (p[3] | 0x20) != 'e' || (p[4] | 0x20) != 's')
        return SHOAL_RANGE_WHOLE;
    p = skip_ws(p + 5);
    if (*p++ != '=')
        return SHOAL_RANGE_WHOLE;
    p = skip_ws(p);
    have_a = number(&p, &a) == 0;
    if (*p++ != '-')
        return SHOAL_RANGE_WHOLE;
    have_b = number(&p, &b) == 0;
    p = skip_ws(p);
    if (*p != '\0' || (!have_a && !have_b))
        return SHOAL_RANGE_WHOLE;          /* several ranges, or garbage */

    if (!have_a) {                         /* suffix: the last b bytes */
        if (b == 0 || size == 0)
            return SHOAL_RANGE_UNSAT;
        *first = b >= size ? 0 : size - b;
        *last = size - 1;
        return SHOAL_RANGE_PART;
    }
    if (have_b && b < a)
        return SHOAL_RANGE_UNSAT;
    if (a >= size)
        return SHOAL_RANGE_UNSAT;
    *first = a;
    *last = (!have_b || b >= size) ? size - 1 : b;
    return SHOAL_RANGE_PART;
}
