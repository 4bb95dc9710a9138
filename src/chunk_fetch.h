// SPDX-License-Identifier: MIT
/* Fetching chunks from an archive into a store: a byte range of the archive
 * that holds chunks back to back is streamed, split at chunk boundaries,
 * each chunk decompressed into its temp file as it arrives, checked against
 * its hash and handed to a batch (store.h) that makes it durable. The one
 * path by which clone, repair and on-demand reads store what they download:
 * nothing unchecked is ever renamed into the store. */
#pragma once

#include "archive_source.h"
#include "codec.h"
#include "release.h"
#include "store.h"

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct chunk_fetch {
        struct store *store;
        size_t hash_len;   /* as the store names and checks the chunks */
        const char *where; /* the archive, for messages */
        enum codec codec;
        struct decoder *decoder; /* of codec, reused from range to range */
        struct store_batch *batch;
        const struct chunk *const *chunks; /* the range's, in archive order */
        size_t n_chunks;

        /* Optional. */
        const atomic_bool *cancel; /* once set, the fetch stops with -ECANCELED */
        /* A transfer's failure worded here for the caller to say, not
         * logged (source_read_range_quiet); empty for the others. */
        char *why;
        size_t why_size;
        void (*received)(struct chunk_fetch *f, uint64_t compressed_bytes);
        int (*stored)(struct chunk_fetch *f, size_t index); /* chunks[index] is in the batch */
        void *opaque; /* the caller's */

        /* Where the stream is: chunk, its compressed bytes so far. */
        size_t index;
        uint64_t chunk_received;
        bool open;
        struct chunk_writer writer;
};

/* Streams [start, start + len) of the archive, chunks[0..n_chunks) back to
 * back, into f->batch. Each chunk that fails its checks is named in one
 * line (-EBADMSG). On any failure the chunk being written is dropped; the
 * ones finished before it stay in the batch, for the caller to commit. */
int chunk_fetch_range(struct source_conn *conn, uint64_t start, uint64_t len, struct chunk_fetch *f);
