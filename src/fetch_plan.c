// SPDX-License-Identifier: MIT
#include "fetch_plan.h"

#include <errno.h>
#include <stdlib.h>

static int by_archive_offset(const void *a, const void *b)
{
        const struct chunk *x = *(const struct chunk *const *)a, *y = *(const struct chunk *const *)b;

        return x->archive_offset < y->archive_offset ? -1 : x->archive_offset > y->archive_offset;
}

int fetch_plan_build(const struct chunk **chunks, size_t n, uint64_t max_range, struct fetch_range **out,
                     size_t *n_out)
{
        struct fetch_range *ranges;
        size_t k = 0;

        qsort(chunks, n, sizeof(*chunks), by_archive_offset);
        ranges = calloc(n ? n : 1, sizeof(*ranges));
        if (!ranges)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
                const struct chunk *c = chunks[i];
                struct fetch_range *last = k ? &ranges[k - 1] : NULL;

                if (last && last->start + last->len == c->archive_offset && last->len + c->archive_size <= max_range) {
                        last->len += c->archive_size;
                        last->count++;
                        continue;
                }
                ranges[k++] = (struct fetch_range){ c->archive_offset, c->archive_size, i, 1 };
        }
        *out = ranges;
        *n_out = k;
        return 0;
}
