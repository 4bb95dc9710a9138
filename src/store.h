// SPDX-License-Identifier: MIT
/* The chunk store, on disk as the original ihop kept it:
 *
 *   STORE/chunks/<first 2 hash bytes, hex>/<full hash, hex>.chunk   uncompressed chunk data
 *   STORE/NAME                                                      a release description
 *   STORE/.in-use/NAME.XXXXXX                                       a release in use (store_use.h)
 *
 * A chunk appears under its final name only once its content is verified
 * and durable (store_batch_commit), so a crash leaves at worst a temp file:
 * "<hex>.chunk.tmp-PID.N" beside it, or ".NAME.tmp-XXXXXX" for a release
 * description. No release name contains ".tmp-", so the two never meet.
 *
 * Below STORE (which may itself be a symlink) nothing is followed: chunks/,
 * its fan-out directories and chunk files are opened without following
 * symlinks, and one found there is refused, never read or written through.
 *
 * struct store is this module's alone: the files below STORE are read,
 * written, listed and removed through the functions here, which keep those
 * rules in one place. */
#pragma once

#include "dir_iter.h"
#include "hash.h"
#include "release.h"

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define STORE_CHUNKS_DIR "chunks"
#define STORE_IN_USE_DIR ".in-use"
#define STORE_TMP_MARK ".tmp-"
/* "chunks/" + 4 + "/" + 128 + ".chunk" + temp suffix + NUL */
#define STORE_CHUNK_PATH_MAX 192
/* A chunk's path as messages show it: "STORE/chunks/abcd/abcd…ef.chunk". */
#define STORE_CHUNK_SHOWN_MAX (PATH_MAX + STORE_CHUNK_PATH_MAX)
/* A description of a 64 GiB image in bita's smallest chunks stays well below this. */
#define STORE_RELEASE_MAX_SIZE (64u << 20)
/* Every release description starts with these bytes ("IHOP1\0"). */
#define STORE_RELEASE_MAGIC_LEN 6
extern const uint8_t store_release_magic[STORE_RELEASE_MAGIC_LEN];

struct store;

enum store_lock_mode {
        STORE_LOCK_SHARED,    /* clones, and mount and serve while they register: many at once */
        STORE_LOCK_EXCLUSIVE, /* gc and rm: alone */
};

/* Takes the store lock (flock on the STORE directory), waiting for it if needed;
 * held until store_unlock() or store_close(). gc holds it exclusively, so it never removes a
 * chunk that a running clone has stored or is about to name in a release. */
int store_lock(struct store *s, enum store_lock_mode mode);
/* Lets go of the lock before store_close(): a mount or serve holds it only
 * while it registers its release as in use (store_use.h), not for its life. */
void store_unlock(struct store *s);

/* Opens STORE (creating it when create is set). */
int store_open(const char *path, bool create, struct store **out);
void store_close(struct store *s);
static inline void store_closep(struct store **s) { store_close(*s); }
#define _cleanup_store_ __attribute__((cleanup(store_closep)))

/* STORE as it was given to store_open, for messages. */
const char *store_path(const struct store *s);

/* Path of a chunk relative to the store's chunks/ directory: "abcd/abcd…ef.chunk". */
void store_chunk_relpath(const uint8_t *hash, size_t hash_len, char buf[STORE_CHUNK_PATH_MAX]);

/* The chunk's path as every message names it: "STORE/chunks/abcd/abcd…ef.chunk"; returns buf. */
const char *store_chunk_path(const struct store *s, const uint8_t *hash, size_t hash_len,
                             char buf[STORE_CHUNK_SHOWN_MAX]);

/* Release names are plain file names: no '/', not "chunks", not hidden, and
 * without STORE_TMP_MARK (temp files are never taken for releases). */
bool store_release_name_valid(const char *name);

/* Splits "STORE/NAME" into its parts (newly allocated). */
int store_split_release_path(const char *arg, char **store_path, char **name);

enum chunk_state { CHUNK_MISSING = 0, CHUNK_PRESENT = 1, CHUNK_CORRUPT = 2 };

/* Is the chunk in the store? With verify, its content is hashed; without,
 * presence and size are trusted. Negative errno when the store cannot be read. */
int store_chunk_state(struct store *s, const struct chunk *c, size_t hash_len, bool verify,
                      enum chunk_state *state);

/* A missing chunk may sit complete in a temp file of a killed clone: if one
 * verifies, it is made durable and moved into place; stale ones are removed. */
int store_chunk_recover(struct store *s, const struct chunk *c, size_t hash_len, bool *recovered);

/* Is the file's content exactly the chunk (size and hash)? */
bool store_fd_holds_chunk(int fd, const struct chunk *c, size_t hash_len);

/* Opens a stored chunk for reading (the read path's one syscall on a cache
 * miss): -ELOOP when its fan-out directory or the file is a symlink. */
int store_chunk_open(struct store *s, const struct chunk *c, size_t hash_len);

/* store_chunk_open only if it reads no directory from the device:
 * -EAGAIN when it would, -EOPNOTSUPP when the kernel cannot tell. */
int store_chunk_open_cached(struct store *s, const struct chunk *c, size_t hash_len);
/* The same, for reading a chunk's content: -EBADMSG when the file is no
 * regular file of the chunk's size (a corrupt chunk), -ENOENT when missing. */
int store_chunk_open_sized(struct store *s, const struct chunk *c, size_t hash_len);

/* Logs, in one line, why the chunk's file could not be opened (`action`: "read",
 * "open"...), naming the symlink or non-directory on the way; returns err. */
int store_log_chunk_error(struct store *s, const uint8_t *hash, size_t hash_len, int err, const char *action);

/* Writing one chunk: streamed into a temp file beside its final name, hashed on the way. */
struct chunk_writer {
        struct store *store;
        const struct chunk *chunk;
        size_t hash_len;
        int fd;
        uint64_t written;
        hash_state hash;
        char tmp[STORE_CHUNK_PATH_MAX];
};

int chunk_writer_begin(struct chunk_writer *w, struct store *s, const struct chunk *c, size_t hash_len);
/* -EBADMSG when more data arrives than the chunk's size. */
int chunk_writer_write(struct chunk_writer *w, const uint8_t *data, size_t len);
/* Checks size and hash; on success the temp file waits for a batch commit. */
int chunk_writer_finish(struct chunk_writer *w);
/* The finished writer's temp file, open for reading (an fd or negative
 * errno): its content is checked, though neither durable nor in place until
 * its batch is committed. For a reader that needs the chunk now; the fd
 * goes on reading it once committed (a rename keeps the file). */
int chunk_writer_open_finished(const struct chunk_writer *w);
void chunk_writer_abort(struct chunk_writer *w);

/* Verified chunks waiting to be made durable and renamed into place. */
struct store_batch {
        struct store *store;
        char (*tmp)[STORE_CHUNK_PATH_MAX];
        char (*final)[STORE_CHUNK_PATH_MAX];
        size_t n, cap;
        uint64_t bytes;
};

void store_batch_init(struct store_batch *b, struct store *s);
/* Takes over the finished writer's temp file; on failure (-ENOMEM) it is removed. */
int store_batch_add(struct store_batch *b, const struct chunk_writer *w);
/* Writes chunk c as zeros of its size into the batch, checked against its
 * hash like any: -EBADMSG (not logged) when c is not a chunk of zeros. */
int store_batch_add_zeros(struct store_batch *b, const struct chunk *c, size_t hash_len);
/* syncfs, then rename every temp file to its final name. */
int store_batch_commit(struct store_batch *b);
/* Unlinks the temp files of an uncommitted batch. */
void store_batch_discard(struct store_batch *b);
void store_batch_free(struct store_batch *b);

/* Makes every rename so far durable (before a release description names them). */
int store_sync(struct store *s);

/* Is name a temp file of a process that no longer runs (a killed clone)? */
bool store_tmp_is_stale(const char *name);

/* Does buf (len bytes) start as a release description does? */
bool store_release_magic_ok(const uint8_t *buf, size_t len);

/* Names of the release descriptions in a store, sorted (NULL-terminated):
 * what is not a regular file holding a description (a FIFO, a device...)
 * is left out, without being opened. */
int store_list_releases(struct store *s, char ***names, size_t *n);
void store_free_names(char **names);

/* Is there a file named NAME at the top of the store (a release, or what clone would replace)? */
bool store_release_exists(struct store *s, const char *name);

/* Can this process write the store (STORE and STORE/chunks)? 0, -EROFS
 * (a read-only file system or mount), or -EACCES / -EPERM (not this
 * user's to write). Quiet: for a caller that must refuse at its start what
 * would otherwise fail at each write. Other failures to tell are 0: the
 * writes say what they are. */
int store_check_writable(struct store *s);

/* Reads STORE/NAME whole, at most STORE_RELEASE_MAX_SIZE bytes, never
 * through a symlink and never blocking on a FIFO or a device; logs why not
 * (-ENOENT: no such release; -ELOOP: a symlink; -EBADMSG: not a regular
 * file, or too large to be a description). */
int store_release_read(struct store *s, const char *name, uint8_t **buf, size_t *len);

/* Replaces STORE/NAME with buf atomically and durably (temp file
 * ".NAME.tmp-XXXXXX", fsync, rename, fsync of STORE); logs why not. */
int store_release_write(struct store *s, const char *name, const uint8_t *buf, size_t len);
/* The same, but never replacing: -EEXIST (not logged) when STORE/NAME exists. */
int store_release_create(struct store *s, const char *name, const uint8_t *buf, size_t len);

/* Removes release NAME, durably; its chunks stay until gc. -ENOENT (logged)
 * when there is no such release. Wants the exclusive store lock. */
int store_release_remove(struct store *s, const char *name);

/* The store's directories, for the modules that walk them: gc and the
 * registry of releases in use (store_use.h). */
enum store_dir {
        STORE_DIR_TOP,    /* STORE itself */
        STORE_DIR_CHUNKS, /* STORE/chunks */
        STORE_DIR_IN_USE, /* STORE/.in-use, which may not exist yet */
};

/* A new descriptor of the directory (the caller's to close), never opened
 * through a symlink; with create, STORE_DIR_IN_USE is made when missing.
 * Negative errno, quiet. */
int store_dir_open(struct store *s, enum store_dir d, bool create);

/* Lists the directory (dir_iter.h), never opened through a symlink: -ENOENT
 * when STORE_DIR_IN_USE does not exist. Quiet. */
int store_dir_iter_open(struct store *s, enum store_dir d, struct dir_iter *it);
