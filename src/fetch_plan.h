// SPDX-License-Identifier: MIT
/* Which byte ranges to request: chunks that lie back to back in the archive
 * go in one request, up to a size cap, so an update costs few round trips
 * without ever reading a byte it does not need. */
#pragma once

#include "release.h"

#include <stddef.h>
#include <stdint.h>

#define FETCH_MAX_RANGE (8u << 20)

struct fetch_range {
        uint64_t start, len; /* absolute bytes in the archive */
        size_t first, count; /* chunks[first .. first+count) */
};

/* Sorts chunks by archive offset and groups them into ranges. */
int fetch_plan_build(const struct chunk **chunks, size_t n, uint64_t max_range, struct fetch_range **out,
                     size_t *n_out);
