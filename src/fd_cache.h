// SPDX-License-Identifier: MIT
/* A bounded cache of open files for the read path. A release of a real root
 * file system has tens of thousands of chunk files, far more than a process
 * may keep open (an initramfs process gets 1024), so only the most recently
 * used stay open; the rest are opened again when read.
 *
 * Every cached file has a key: an atomic int owned by the caller (one per
 * chunk), which the cache sets to the file's slot while it is cached and to
 * -1 once it is not. A hit costs two atomic operations and no lock; a file
 * in use is pinned, so it is never closed under a reader. */
#pragma once

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/resource.h>

struct fd_cache;

/* A file handed out by fd_cache_get, to be given back with fd_cache_put. */
struct fd_ref {
        int fd;
        int slot; /* -1: not cached (every slot pinned), closed by fd_cache_put */
};

/* Opens the file behind a key: an fd, or negative errno. */
typedef int (*fd_cache_open_fn)(void *opaque);

/* A cache of at most capacity open files (at least 1). */
int fd_cache_new(size_t capacity, struct fd_cache **out);
void fd_cache_free(struct fd_cache *c);

/* The process's cache, shared by every release it reads. NULL only when
 * out of memory. It is sized at its first fd_cache_get, once every release
 * the process reads has said how many files it has (fd_cache_expect): the
 * open-file limit is raised to cover them where the process may
 * (fd_limit.h; the soft limit to the hard one in any case), and the cache
 * holds as many as the limit leaves once the sockets and files a server
 * needs besides are set aside, at most one per 128 KiB of memory and 65536
 * (the kernel memory each open file pins: fd_cache.c). */
struct fd_cache *fd_cache_shared(void);

/* A release to be read through the shared cache has n_files files. Said
 * before the first read: files announced later get no descriptors. */
void fd_cache_expect(size_t n_files);

/* How many files c keeps open at most (the shared cache: 0 until sized). */
size_t fd_cache_capacity(const struct fd_cache *c);

/* How the shared cache is sized, exposed for the unit tests: the most files
 * it keeps open on a machine of ram bytes, and its capacity for files (0:
 * none said) under an open-file limit (soft) of limit. */
size_t fd_cache_most_open(uint64_t ram);
size_t fd_cache_capacity_for(size_t files, rlim_t limit, uint64_t ram);

/* The open file of key, opening it with open_fn on a miss. When the process
 * is out of descriptors (EMFILE, ENFILE) files nobody is reading are closed
 * and the open is tried again; what open_fn returns otherwise is returned. */
int fd_cache_get(struct fd_cache *c, atomic_int *key, fd_cache_open_fn open_fn, void *opaque,
                 struct fd_ref *ref);
void fd_cache_put(struct fd_cache *c, struct fd_ref *ref);
/* fd_cache_put of a file found stale (its content replaced under its name):
 * it is closed and its key forgotten, unless another reader holds it too
 * (then one of them drops it later). */
void fd_cache_put_stale(struct fd_cache *c, struct fd_ref *ref);

/* Closes the cached files of keys[0..n): their owner is going away. No
 * fd_cache_get or put on these keys may run at the same time. */
void fd_cache_forget(struct fd_cache *c, atomic_int *keys, size_t n);
