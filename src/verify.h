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

/* Prints a line per missing or corrupt chunk; the return value is 0 even
 * when problems are found (they are in res), negative on I/O failure. */
int release_verify(struct store *s, const struct release *r, struct verify_result *res);
