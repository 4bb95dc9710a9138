// SPDX-License-Identifier: MIT
/* Walking a directory without ever taking a failed readdir() for its end:
 * errno is cleared before each readdir() and checked after (as casync's
 * FOREACH_DIRENT_ALL). gc decides what to delete from such listings, so it
 * must know they were complete. */
#pragma once

#include <dirent.h>
#include <stdbool.h>
#include <stddef.h>

struct dir_iter {
        DIR *dir;
};

/* Opens name (relative to dirfd; "." for dirfd itself) for listing, never
 * through a symlink: -ENOTDIR when name is one, or not a directory. */
int dir_iter_open(struct dir_iter *it, int dirfd, const char *name);

/* The next entry, "." and ".." skipped: 1 with *entry set, 0 at the end,
 * negative errno when the directory cannot be read. */
int dir_iter_next(struct dir_iter *it, const struct dirent **entry);

/* The listed directory's descriptor, for *at() calls on its entries. */
int dir_iter_fd(const struct dir_iter *it);

void dir_iter_close(struct dir_iter *it);

/* Whether a listing keeps an entry (name, in the directory being listed). */
typedef bool (*dir_name_filter)(const struct dir_iter *it, const char *name, void *opaque);

/* The names of the entries keep() takes, sorted, as a NULL-terminated list
 * of *n names (free with dir_names_free): a negative errno, unlogged, when
 * the directory cannot be read to its end or memory runs out; never a
 * listing cut short. */
int dir_iter_names(struct dir_iter *it, dir_name_filter keep, void *opaque, char ***names, size_t *n);
void dir_names_free(char **names);

static inline void dir_iter_closep(struct dir_iter *it) { dir_iter_close(it); }
#define _cleanup_dir_iter_ __attribute__((cleanup(dir_iter_closep)))
