// SPDX-License-Identifier: MIT
/* Seeds: data the device already has (the running root partition, the last
 * image file) cut with the archive's own chunker; every chunk whose hash a
 * clone still wants is stored from there instead of being downloaded. */
#pragma once

#include "release.h"
#include "store.h"

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

struct seed_target {
        struct store *store;
        const struct chunker_params *chunker; /* the archive's */
        size_t hash_len;
        const struct chunk **wanted;          /* sorted by hash */
        size_t n_wanted;
        atomic_uchar *have;                   /* per wanted chunk: 1 once present */
};

struct seed_stats {
        size_t chunks;
        uint64_t bytes;     /* stored from the seed */
        uint64_t read;      /* read from the seed */
};

/* path "-" is standard input. A seed that cannot be opened or read is a
 * warning: what was read until then is used. Failing to store is an error. */
int seed_apply(const char *path, const struct seed_target *t, struct seed_stats *stats);
