// SPDX-License-Identifier: MIT
#include "pb_fields.h"

#include "log.h"

#include <errno.h>

/* ihop's enums are numbered as the dictionary's: converting is a cast,
 * once the value is known to be one of them. */
_Static_assert((int)CHUNKING_BUZHASH == CHUNK_DICTIONARY__CHUNKER_PARAMETERS__CHUNKING_ALGORITHM__BUZHASH &&
                       (int)CHUNKING_ROLLSUM == CHUNK_DICTIONARY__CHUNKER_PARAMETERS__CHUNKING_ALGORITHM__ROLLSUM &&
                       (int)CHUNKING_FIXED_SIZE ==
                               CHUNK_DICTIONARY__CHUNKER_PARAMETERS__CHUNKING_ALGORITHM__FIXED_SIZE,
               "chunking algorithms numbered as in chunk_dictionary.proto");
_Static_assert((int)CODEC_NONE == CHUNK_DICTIONARY__CHUNK_COMPRESSION__COMPRESSION_TYPE__NONE &&
                       (int)CODEC_LZMA == CHUNK_DICTIONARY__CHUNK_COMPRESSION__COMPRESSION_TYPE__LZMA &&
                       (int)CODEC_ZSTD == CHUNK_DICTIONARY__CHUNK_COMPRESSION__COMPRESSION_TYPE__ZSTD &&
                       (int)CODEC_BROTLI == CHUNK_DICTIONARY__CHUNK_COMPRESSION__COMPRESSION_TYPE__BROTLI,
               "codecs numbered as in chunk_dictionary.proto");

int chunker_params_from_pb(const ChunkDictionary__ChunkerParameters *p, const char *where, const char *holder,
                           struct chunker_params *out)
{
        if (!p) {
                log_error("%s: %s has no chunker parameters", where, holder);
                return -EBADMSG;
        }
        /* An enum field holds whatever number the sender wrote. */
        if ((unsigned)p->chunking_algorithm > CHUNKING_FIXED_SIZE) {
                log_error("%s: unknown chunking algorithm %d", where, (int)p->chunking_algorithm);
                return -EBADMSG;
        }
        out->algorithm = (enum chunking_algorithm)p->chunking_algorithm;
        out->filter_bits = p->chunk_filter_bits;
        out->min_chunk_size = p->min_chunk_size;
        out->max_chunk_size = p->max_chunk_size;
        out->window_size = p->rolling_hash_window_size;
        out->hash_length = p->chunk_hash_length;
        return 0;
}

void chunker_params_to_pb(const struct chunker_params *p, ChunkDictionary__ChunkerParameters *out)
{
        chunk_dictionary__chunker_parameters__init(out);
        out->chunking_algorithm = (ChunkDictionary__ChunkerParameters__ChunkingAlgorithm)p->algorithm;
        out->max_chunk_size = p->max_chunk_size;
        out->chunk_hash_length = p->hash_length;
        if (p->algorithm != CHUNKING_FIXED_SIZE) {
                out->chunk_filter_bits = p->filter_bits;
                out->min_chunk_size = p->min_chunk_size;
                out->rolling_hash_window_size = p->window_size;
        }
}

int codec_from_pb(const ChunkDictionary__ChunkCompression *c, const char *where, enum codec *codec,
                  uint32_t *level)
{
        if (!c) {
                log_error("%s: the dictionary does not say how chunks are compressed", where);
                return -EBADMSG;
        }
        if ((unsigned)c->compression > CODEC_BROTLI) {
                log_error("%s: unknown chunk compression %d", where, (int)c->compression);
                return -EBADMSG;
        }
        *codec = (enum codec)c->compression;
        *level = c->compression_level;
        return 0;
}

void codec_to_pb(enum codec codec, uint32_t level, ChunkDictionary__ChunkCompression *out)
{
        chunk_dictionary__chunk_compression__init(out);
        out->compression = (ChunkDictionary__ChunkCompression__CompressionType)codec;
        out->compression_level = codec == CODEC_NONE ? 0 : level;
}
