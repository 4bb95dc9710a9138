// SPDX-License-Identifier: MIT
/* Random access to a stored release's image: the read path of `ihop mount`
 * and `ihop serve`, and so the product's hot path. An offset is mapped to
 * its chunk by binary search over the chunks' start offsets; the most
 * recently read chunk files stay open (fd_cache.h), so a read costs a lookup
 * and a pread per chunk touched, plus an open for a file not read lately. */
#pragma once

#include "fd_cache.h"
#include "release.h"
#include "store.h"
#include "store_use.h"

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

/* Where the chunks missing from the store come from while the map is read
 * (ondemand.h); a stored release, whose chunks are all there, has none. */
struct chunk_provider {
        /* An open file of chunk idx of the release (an index into
         * release->chunks) whose content the provider checked against the
         * chunk's hash: the store's, or one on its way there. Waits on the
         * network if need be. An fd, -EMFILE or -ENFILE (the cache makes
         * room and asks again), or -EIO (said why). */
        int (*open)(struct chunk_provider *p, uint32_t idx);
        /* A read found chunk idx in the store, for the first time (another
         * process may have stored it). Waits on nothing but a lock. */
        void (*found)(struct chunk_provider *p, uint32_t idx);
        /* Chunk idx in the store was found corrupt (under verify): a checked
         * copy in its place, as open returns it. */
        int (*replace)(struct chunk_provider *p, uint32_t idx);
        /* A stop: every open waiting on the network fails with -EIO at
         * once, and those after it too, unsaid; fetches in flight give up.
         * Waits on nothing but a lock; any thread, any number of times. */
        void (*cancel)(struct chunk_provider *p);
        void (*free)(struct chunk_provider *p);
};

struct image_map {
        struct store *store;
        struct release *release;
        uint64_t size;
        uint64_t *starts;    /* n_order + 1 chunk start offsets, the last = size */
        struct fd_cache *files; /* the process's open chunk files */
        atomic_int *cached;  /* per unique chunk: its key in files */
        atomic_uchar *state; /* per unique chunk: what is known of it */
        bool verify;
        struct store_use *use; /* the release registered as in use, or NULL */
        struct chunk_provider *provider; /* NULL: every chunk is in the store */
};

/* Opens "STORE/NAME" for reading, registered as in use (store_use.h) until
 * image_map_free(); *name (when not NULL) gets the release name. */
int image_map_open(const char *arg, bool verify, struct image_map **out, char **name);

/* Takes ownership of store and release. */
int image_map_new(struct store *store, struct release *release, bool verify, struct image_map **out);
void image_map_free(struct image_map *m);

/* The first step of a stop, before the threads that read the map are
 * joined: a read waiting for a chunk on its way (ondemand.h) fails with
 * EIO at once, as does any read of a chunk not in the store after it; the
 * rest reads as before. Nothing for a map without a provider. */
void image_map_cancel(struct image_map *m);

/* Reads len bytes at offset. -EINVAL past the end; -EIO (logged once per
 * chunk) when a chunk is missing, short or, with verify, corrupt. */
int image_map_read(struct image_map *m, void *buf, size_t len, uint64_t offset);

/* Would a read of [offset, offset + len) find every chunk it touches? Opens
 * (and with verify, checks) those not read before; -EINVAL or -EIO as
 * image_map_read. For a reader that must answer before it has read it all:
 * after this, only an I/O error of the storage can fail the read. */
int image_map_check_range(struct image_map *m, uint64_t offset, uint64_t len);

/* image_map_read and image_map_check_range for a server thread that must
 * not wait on the storage: -EAGAIN where they would (a chunk file whose
 * directory entry is not in the kernel's cache, data not in the page cache,
 * a first check with verify) and instead of any failure, which the waiting
 * call then reports. The thread answers the rest at once and hands these to
 * threads that may wait. check_range_nowait also leaves the files open. */
int image_map_read_nowait(struct image_map *m, void *buf, size_t len, uint64_t offset);
int image_map_check_range_nowait(struct image_map *m, uint64_t offset, uint64_t len);

/* The run of the image from offset (< size) over chunks that are all zeros,
 * or all not: returns its length, at most max_len (<= size - offset), and
 * sets *zero. From the map alone: no chunk file is touched. (NBD block
 * status: a run of zeros is reported as such, so a client may skip it.) */
uint64_t image_map_extent(const struct image_map *m, uint64_t offset, uint64_t max_len, bool *zero);

/* Is chunk idx (used more than once) all zeros, its hash that of zeros of
 * its size? Such a chunk is read without its file. */
bool image_map_chunk_is_zero(const struct image_map *m, uint32_t idx);

/* The state of each of the release's chunks in the store (presence and
 * size; a chunk of the wrong size is CHUNK_CORRUPT), looked at from many
 * threads (a cold store waits on the device for each). arg names the
 * release in messages. */
int image_map_scan(struct image_map *m, enum chunk_state *state, const char *arg);
