/* Random access to a stored release's image: the read path of `ihop mount`
 * and `ihop serve`, and so the product's hot path. An offset is mapped to
 * its chunk by binary search over the chunks' start offsets; chunk files stay
 * open once opened, so a read costs a lookup and a pread per chunk touched. */
#pragma once

#include "release.h"
#include "store.h"

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

struct image_map {
        struct store *store;
        struct release *release;
        uint64_t size;
        uint64_t *starts;       /* n_order + 1 chunk start offsets, the last = size */
        atomic_int *fds;        /* per unique chunk; -1 until opened */
        atomic_uchar *verified; /* per unique chunk: 0 unknown, 1 good, 2 bad */
        bool verify;
};

/* Opens "STORE/NAME" for reading; *name (when not NULL) gets the release name. */
int image_map_open(const char *arg, bool verify, struct image_map **out, char **name);

/* Takes ownership of store and release. */
int image_map_new(struct store *store, struct release *release, bool verify, struct image_map **out);
void image_map_free(struct image_map *m);

/* Reads len bytes at offset. -EINVAL past the end; -EIO (logged once per
 * chunk) when a chunk is missing, short or, with verify, corrupt. */
int image_map_read(struct image_map *m, void *buf, size_t len, uint64_t offset);
