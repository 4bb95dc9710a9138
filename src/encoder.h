// SPDX-License-Identifier: MIT
/* Chunk compression for writing archives, one chunk at a time, in the
 * formats bita writes and reads: a brotli stream (window 22 bits, as bita's
 * encoder defaults to), a zstd frame, or an .xz stream (what bita's lzma
 * crate writes: xz easy preset, CRC64 check). One encoder per thread. */
#pragma once

#include "codec.h"

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* Levels run from 1 to this, as bita accepts them (0 for CODEC_NONE). */
uint32_t encoder_max_level(enum codec c);

struct encoder;

/* -EINVAL when the level is out of range for the codec. */
int encoder_new(enum codec c, uint32_t level, struct encoder **out);
void encoder_free(struct encoder *e);
/* n encoders, one per worker thread; logs why they cannot be set up. */
int encoders_new(enum codec c, uint32_t level, unsigned n, struct encoder ***out);
void encoders_free(struct encoder **e, unsigned n);

/* How large an output buffer compressing len bytes may need. */
size_t encoder_bound(const struct encoder *e, size_t len);

/* Compresses in into out (of encoder_bound(len) bytes at least); returns the
 * compressed size or a negative errno. CODEC_NONE copies. */
ssize_t encoder_compress(struct encoder *e, const uint8_t *in, size_t len, uint8_t *out, size_t cap);

/* A caller's output buffer for compressing chunk after chunk: it grows to
 * the bound of the chunk at hand and is kept for the next one. */
struct encoder_buf {
        uint8_t *data;
        size_t cap;
};

/* Compresses in into b->data, growing it first when the bound needs it:
 * the compressed size, or a negative errno. */
ssize_t encoder_compress_buf(struct encoder *e, const uint8_t *in, size_t len, struct encoder_buf *b);
/* Frees a buffer one large chunk grew past what usual chunks need, so that
 * memory follows the usual chunk size, not the largest. */
void encoder_buf_trim(struct encoder_buf *b);
void encoder_buf_free(struct encoder_buf *b);
