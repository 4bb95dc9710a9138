// SPDX-License-Identifier: MIT
/* Content-defined chunking exactly as bita does it (RollSum, BuzHash) and
 * fixed-size chunking, streaming: the caller feeds the image in pieces of
 * any size and the chunker says where chunks end. It keeps only the rolling
 * hash state, never the data, so memory does not depend on the image.
 *
 * Boundaries do not depend on how the input is cut into pieces, and are
 * bita's: the rolling hash runs on across chunks (bita never resets it); in
 * each chunk the bytes up to (min - window - 1) are not hashed at all, the
 * next `window` bytes are hashed without looking for a boundary, and from
 * byte min - 1 on a chunk ends after the first byte whose hash has all
 * filter bits set, or at max_chunk_size. BuzHash first warms up on the
 * stream's first `window` bytes (in the first chunk, never again). What is
 * left at the end of the input is the last chunk. */
#pragma once

#include "release.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* A chunk is held in memory while it is hashed and compressed, so ihop
 * refuses larger ones; the format (and bita) would allow up to 4 GiB. */
#define CHUNKER_MAX_CHUNK_SIZE (1u << 30)

struct chunker;

/* bita's rounding of an average chunk size to filter bits: the average
 * actually aimed at is the power of two at or below avg. */
uint32_t chunker_filter_bits_for_average(uint64_t avg);
uint64_t chunker_average_for_filter_bits(uint32_t bits);

/* Checks that parameters make sense for the algorithm (logs why not and
 * returns -EINVAL). */
int chunker_check_params(const struct chunker_params *p);

int chunker_new(const struct chunker_params *p, struct chunker **out);
void chunker_free(struct chunker *c);
static inline void chunker_freep(struct chunker **c) { chunker_free(*c); }
#define _cleanup_chunker_ __attribute__((cleanup(chunker_freep)))

/* Looks at the next len bytes of the input. Returns how many of them belong
 * to the current chunk; *boundary tells whether the chunk ends after them
 * (the rest of data then starts the next chunk: call again with it). */
size_t chunker_scan(struct chunker *c, const uint8_t *data, size_t len, bool *boundary);
