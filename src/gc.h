/* Garbage collection: chunk files no release uses, and temp files left by
 * interrupted clones, go. Runs under the exclusive store lock. */
#pragma once

#include "store.h"

#include <stdbool.h>
#include <stdint.h>

struct gc_result {
        size_t chunks_kept, chunks_removed, tmp_removed;
        uint64_t bytes_kept, bytes_removed; /* file sizes */
};

/* With dry_run nothing is removed; what would go is printed either way. */
int store_gc(struct store *s, bool dry_run, struct gc_result *res);
