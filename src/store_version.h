// SPDX-License-Identifier: MIT
/* Rollback protection: the highest signed release version a store has
 * accepted, in STORE/.release-version:
 *
 *   ihop-release-version=N\n
 *   checksum=<BLAKE2b-512 of the line above, newline included, in hex>\n
 *
 * A hidden file, which the original ihop's store reader never looks at.
 * It is replaced atomically and durably (temp file, fsync, rename, fsync
 * of STORE) and only ever raised; concurrent clones raise it one at a time
 * (an flock on STORE/chunks, so the store gains no lock file). A damaged
 * file is refused, never read as 0: rollback protection fails closed. */
#pragma once

#include "store.h"

#include <stdbool.h>
#include <stdint.h>

#define STORE_VERSION_FILE ".release-version"

/* The remembered version; *known false (and 0) when none was ever
 * accepted. Logs why not. */
int store_version_read(struct store *s, uint64_t *version, bool *known);

/* Accepts version into the store: -ESTALE (logged, naming `what`) when it
 * is lower than the remembered one and !allow_lower; else the remembered
 * version becomes the higher of the two, durably, before this returns. */
int store_version_accept(struct store *s, uint64_t version, bool allow_lower, const char *what);

/* The one-line refusal of a version lower than the store's; returns -ESTALE. */
int store_version_refuse(struct store *s, uint64_t version, uint64_t remembered, const char *what);
