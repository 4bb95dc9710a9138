// SPDX-License-Identifier: MIT
/* Checking a stored release: every chunk re-hashed, the image checksum
 * recomputed, missing and corrupt chunks reported by name. */
#pragma once

#include "release.h"
#include "store.h"

#include <stdbool.h>
#include <stddef.h>

struct verify_result {
        size_t chunks_checked, missing, corrupt;
        bool image_ok;
};

/* Called per missing or corrupt chunk with its path as messages show it. */
typedef void (*verify_damaged_fn)(bool missing, const char *path, void *opaque);

/* Tells damaged (NULL: prints "missing PATH" or "corrupt PATH" lines) of
 * every missing or corrupt chunk; the return value is 0 even when problems
 * are found (they are in res), negative on I/O failure. */
int release_verify(struct store *s, const struct release *r, verify_damaged_fn damaged, void *opaque,
                   struct verify_result *res);
