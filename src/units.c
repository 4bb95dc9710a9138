// SPDX-License-Identifier: MIT
#include "units.h"

#include "log.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

const char *format_size(uint64_t bytes, char *buf, size_t len)
{
        static const char *const unit[] = { "B", "KiB", "MiB", "GiB", "TiB" };
        double v = (double)bytes;
        int i = 0;

        while (v >= 1024.0 && i < 4) {
                v /= 1024.0;
                i++;
        }
        if (i == 0)
                snprintf(buf, len, "%llu B", (unsigned long long)bytes);
        else
                snprintf(buf, len, "%.2f %s", v, unit[i]);
        return buf;
}

/* The decimal number s starts with; *end after it. */
static int parse_digits(const char *s, unsigned long long *v, char **end)
{
        /* strtoull would skip leading space and take a sign: " -1" is 2^64-1. */
        if (!s || !isdigit((unsigned char)*s))
                return -EINVAL;
        errno = 0;
        *v = strtoull(s, end, 10);
        return errno ? -EINVAL : 0;
}

int parse_uint(const char *s, uint64_t max, uint64_t *out)
{
        char *end;
        unsigned long long v;

        if (parse_digits(s, &v, &end) < 0 || *end || v > max)
                return -EINVAL;
        *out = v;
        return 0;
}

int parse_uint_prefix(const char *s, uint64_t *out, const char **end)
{
        unsigned long long v;
        char *e;

        if (parse_digits(s, &v, &e) < 0)
                return -EINVAL;
        *out = v;
        *end = e;
        return 0;
}

int parse_size(const char *s, uint64_t *out)
{
        static const struct { const char *suffix; unsigned shift; } units[] = {
                { "", 0 }, { "B", 0 },
                { "K", 10 }, { "KB", 10 }, { "KiB", 10 },
                { "M", 20 }, { "MB", 20 }, { "MiB", 20 },
                { "G", 30 }, { "GB", 30 }, { "GiB", 30 },
        };
        char *end;
        unsigned long long v;

        if (parse_digits(s, &v, &end) < 0)
                return -EINVAL;
        for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
                if (strcasecmp(end, units[i].suffix) != 0)
                        continue;
                if (units[i].shift && v > (UINT64_MAX >> units[i].shift))
                        return -ERANGE;
                *out = (uint64_t)v << units[i].shift;
                return 0;
        }
        return -EINVAL;
}

int parse_jobs(const char *s, unsigned *out)
{
        uint64_t v;

        if (parse_uint(s, 256, &v) < 0 || v == 0) {
                log_error("--jobs wants a number from 1 to 256, not '%s'", s);
                return -EINVAL;
        }
        *out = (unsigned)v;
        return 0;
}
