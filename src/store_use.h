// SPDX-License-Identifier: MIT
/* Releases in use: what `ihop mount` and `ihop serve` read stays in the
 * store for as long as they run, whatever `ihop rm` and `ihop gc` do
 * meanwhile (the release a device boots from may be removed while it runs).
 *
 * A process using release NAME registers it as STORE/.in-use/NAME.XXXXXX
 * (a hidden directory: no release is ever named so, and the original
 * ihop's layout is otherwise untouched), and holds a shared flock on that
 * file for as long as it runs. gc reads every registration whose lock is
 * held as it reads a release description, and keeps the chunks it names.
 *
 * - The registration holds the description's content, not its name: a hard
 *   link of the very file the process read (checked byte for byte, since a
 *   clone --force may have replaced NAME in between), or, where no hard
 *   link can be made (a file system without them, protected_hardlinks, a
 *   description replaced meanwhile), a copy of the bytes the process read.
 *   So `ihop rm NAME`, or a clone replacing NAME, changes nothing for gc:
 *   the content the process serves stays described, no extra file per chunk.
 * - Live or stale is the kernel's to say: the flock goes with the process,
 *   however it ends (SIGKILL and power cuts included); gc tries an
 *   exclusive flock without waiting and only gets it when no process holds
 *   the registration. A stale one (its process gone) is removed and
 *   reported by gc. flock is per inode: a stale hard link that shares its
 *   inode with a live registration (the same description, used by another
 *   process) counts as live until that one ends, pinning nothing more. The
 *   lock is on the open file, so the daemon `mount --detach` forks keeps it.
 * - No race with gc: registering happens under the store lock, taken
 *   shared before the description is read and let go once the registration
 *   holds its flock (store_unlock); gc holds the lock exclusively from
 *   before it lists the releases until its last removal. Either gc ran
 *   before the description was read (and the release's completeness check
 *   that follows sees what it left), or it sees the registration. A mount
 *   starting while gc runs waits for it, saying so.
 * - Registrations are not made durable: after a reboot none can be live.
 * - A store this process cannot write (mounted read-only, or another user's)
 *   cannot register: that is a warning, not a failure, since no gc can run
 *   on a read-only store either (for another user's, that user's gc could).
 *
 * A registration ends with store_use_end() (unlinked, lock let go) when
 * the process stops using the release. */
#pragma once

#include "store.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct store_use;

/* Registers release NAME of s as in use by this process until
 * store_use_end(); desc (len bytes) is its description as the caller read
 * it, holding the store lock shared (store_lock) from before that read until
 * this returns. On a store that cannot take it (read-only, not writable by this
 * user) *out is NULL, a warning says why, and 0 is returned; other failures
 * are logged and returned. */
int store_use_begin(struct store *s, const char *name, const uint8_t *desc, size_t len, struct store_use **out);

/* Ends the registration (NULL: nothing to do). */
void store_use_end(struct store_use *u);

/* One file of STORE/.in-use. */
struct store_use_entry {
        char *file;    /* its name there: "NAME.XXXXXX" */
        char *release; /* NAME */
        bool live;     /* a process holds it */
        uint64_t size;
        uint8_t *desc; /* live ones, with read_descriptions: the content */
        size_t len;
};

/* Every registration of the store, each tested live or stale; the listing
 * is complete or fails (gc decides from it). With read_descriptions, the
 * content of each live one is read. No .in-use directory: none. Logs why
 * it fails. */
int store_use_list(struct store *s, bool read_descriptions, struct store_use_entry **out, size_t *n);
void store_use_list_free(struct store_use_entry *e, size_t n);
