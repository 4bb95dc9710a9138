// SPDX-License-Identifier: MIT
/* Garbage collection: chunk files no release uses, and temp files left by
 * interrupted clones, go. Runs under the exclusive store lock. A release in
 * use (mounted or served, store_use.h) counts as a release, even removed;
 * registrations whose process is gone go too. */
#pragma once

#include "store.h"

#include <stdbool.h>
#include <stdint.h>

struct gc_result {
        size_t chunks_kept, chunks_removed, tmp_removed;
        uint64_t bytes_kept, bytes_removed; /* file sizes */
        /* Of chunks_kept, those kept only for releases in use. */
        size_t chunks_kept_in_use;
        uint64_t bytes_kept_in_use;
        size_t stale_removed; /* registrations of processes gone */
};

/* With dry_run nothing is removed; what would go is printed either way. */
int store_gc(struct store *s, bool dry_run, struct gc_result *res);
