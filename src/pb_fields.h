// SPDX-License-Identifier: MIT
/* The fields of chunk_dictionary.proto that archives and release
 * descriptions share, as ihop's own types and back: the one place that
 * knows both. */
#pragma once

#include "chunk_dictionary.pb-c.h"
#include "codec.h"
#include "release.h"

/* Chunker parameters as a dictionary holds them. NULL or an unknown
 * algorithm: logged ("WHERE: HOLDER has no chunker parameters"), -EBADMSG. */
int chunker_params_from_pb(const ChunkDictionary__ChunkerParameters *p, const char *where, const char *holder,
                           struct chunker_params *out);
/* As bita fills them: for fixed size only the size (max_chunk_size) and
 * the hash length; the rest means nothing there and stays 0. */
void chunker_params_to_pb(const struct chunker_params *p, ChunkDictionary__ChunkerParameters *out);

/* Chunk compression; an unknown type is logged and -EBADMSG. */
int codec_from_pb(const ChunkDictionary__ChunkCompression *c, const char *where, enum codec *codec,
                  uint32_t *level);
void codec_to_pb(enum codec codec, uint32_t level, ChunkDictionary__ChunkCompression *out);
