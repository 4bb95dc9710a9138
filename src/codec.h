// SPDX-License-Identifier: MIT
/* Chunk decompression, streaming: compressed bytes go in as they arrive,
 * plain bytes come out through a sink, so no chunk is ever held whole. */
#pragma once

#include "byte_sink.h"

#include <stddef.h>
#include <stdint.h>

enum codec { CODEC_NONE = 0, CODEC_LZMA = 1, CODEC_ZSTD = 2, CODEC_BROTLI = 3 };

const char *codec_name(enum codec c);
/* The codec named as codec_name names it; -EINVAL for an unknown name. */
int codec_from_name(const char *name, enum codec *out);

struct decoder;

int decoder_new(enum codec c, struct decoder **out);
void decoder_free(struct decoder *d);

/* Starts a new chunk; raw chunks (stored uncompressed) pass straight through. */
int decoder_begin(struct decoder *d, int raw);
/* -EBADMSG on corrupt data or data past the end of the compressed stream. */
int decoder_feed(struct decoder *d, const uint8_t *in, size_t len, byte_sink sink, void *opaque);
/* -EBADMSG when the compressed stream is incomplete. */
int decoder_end(struct decoder *d, byte_sink sink, void *opaque);
