// SPDX-License-Identifier: MIT
/* Reading a stored chunk's file, [0, its size) in blocks, hashing it on the
 * way: the one loop behind the store's content check, verify and cat. The
 * caller owns the buffer (reused from chunk to chunk) and does with each
 * block what it needs (feed the image hash, write it out) between calls.
 *
 *     chunk_reader_init(&rd, fd, c, hash_len, buf, true);
 *     while ((n = chunk_reader_next(&rd)) > 0)
 *             use(buf, n);
 *     if (n < 0) ... read error
 *     else if (!chunk_reader_matches(&rd)) ... short or corrupt
 */
#pragma once

#include "hash.h"
#include "release.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* Larger than most chunks (bita's default average is 64 KiB): they take one
 * read. Small enough to stay in the L2 cache between the read and hashing or
 * writing it; a larger block saves a read per 128 KiB, microseconds against
 * the ~100 µs BLAKE2b takes for it. */
#define CHUNK_READ_BLOCK (128u << 10)

struct chunk_reader {
        int fd;
        const struct chunk *chunk;
        size_t hash_len;
        uint8_t *buf; /* CHUNK_READ_BLOCK bytes */
        uint64_t off; /* read so far */
        bool hashing;
        hash_state hash;
};

/* Starts on the file fd of chunk c; with hash, the data read is hashed for
 * chunk_reader_matches (off when the caller knows the chunk good already). */
void chunk_reader_init(struct chunk_reader *r, int fd, const struct chunk *c, size_t hash_len, uint8_t *buf,
                       bool hash);

/* Reads the next block into buf: its length (a full block but for the
 * chunk's last); 0 once the chunk's size has been read, or when the file
 * ends before it (chunk_reader_complete tells which; the block cut short is
 * not handed out); a negative errno when reading fails. */
ssize_t chunk_reader_next(struct chunk_reader *r);

/* Was all of the chunk's size read (the file is not shorter)? */
bool chunk_reader_complete(const struct chunk_reader *r);

/* Once next returned 0 with hashing on: was the chunk read whole, and is
 * what was read the chunk (its hash)? Ends the hashing: call it once. */
bool chunk_reader_matches(struct chunk_reader *r);
