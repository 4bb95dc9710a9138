// SPDX-License-Identifier: MIT
/* Hand-built bita archive headers for the archive tests: the frame around a
 * dictionary (magic, size, dictionary, chunk data offset, checksum), and a
 * small valid dictionary, built with protobuf-c, whose parts the tests break
 * one at a time. Every header carries a correct checksum, so that it is the
 * dictionary checks that must refuse a hostile one. */
#pragma once

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "archive.h"
#include "chunk_dictionary.pb-c.h"
#include "hash.h"

#include <endian.h>
#include <stdlib.h>
#include <string.h>

static inline void put_le64(uint8_t *p, uint64_t v)
{
        v = htole64(v);
        memcpy(p, &v, sizeof(v));
}

#define CDO_AUTO UINT64_MAX

/* magic | u64 n | dict | u64 chunk data offset | BLAKE2b-512 of all before. */
static inline uint8_t *wrap_header(const uint8_t *magic, const uint8_t *dict, size_t n, uint64_t cdo, size_t *len)
{
        size_t total = ARCHIVE_PRE_HEADER_SIZE + n + ARCHIVE_TRAILER_SIZE;
        uint8_t *buf = malloc(total);

        assert_non_null(buf);
        memcpy(buf, magic, 6);
        put_le64(buf + 6, n);
        if (n)
                memcpy(buf + ARCHIVE_PRE_HEADER_SIZE, dict, n);
        put_le64(buf + ARCHIVE_PRE_HEADER_SIZE + n, cdo == CDO_AUTO ? total : cdo);
        hash_buffer(buf, total - 64, buf + total - 64);
        *len = total;
        return buf;
}

static const uint8_t MAGIC[6] = { 'B', 'I', 'T', 'A', '1', 0 };
static const uint8_t LEGACY_MAGIC[6] = { 0, 'B', 'I', 'T', 'A', '1' };

/* A small valid dictionary whose parts the tests break one at a time. */
#define SPEC_CHUNKS 3
#define SPEC_ORDER 4
#define SPEC_HASH_LEN 32

struct spec {
        ChunkDictionary__ChunkDictionary d;
        ChunkDictionary__ChunkerParameters cp;
        ChunkDictionary__ChunkCompression cc;
        ChunkDictionary__ChunkDescriptor desc[SPEC_CHUNKS];
        ChunkDictionary__ChunkDescriptor *descp[SPEC_CHUNKS];
        ChunkDictionary__ChunkDictionary__MetadataEntry meta;
        ChunkDictionary__ChunkDictionary__MetadataEntry *metap[1];
        uint32_t order[SPEC_ORDER];
        uint8_t hash[SPEC_CHUNKS][HASH_MAX_LEN + 8];
        uint8_t source_checksum[HASH_MAX_LEN + 8];
        uint8_t meta_value[5];
};

static const uint32_t spec_source_size[SPEC_CHUNKS] = { 1000, 2000, 3000 };
static const uint32_t spec_archive_size[SPEC_CHUNKS] = { 500, 600, 700 };
static const uint64_t spec_archive_offset[SPEC_CHUNKS] = { 0, 500, 1100 };
static const uint32_t spec_order[SPEC_ORDER] = { 0, 1, 0, 2 };
#define SPEC_TOTAL (1000u + 2000u + 1000u + 3000u)

static inline void spec_init(struct spec *s)
{
        memset(s, 0, sizeof(*s));
        chunk_dictionary__chunk_dictionary__init(&s->d);
        chunk_dictionary__chunker_parameters__init(&s->cp);
        chunk_dictionary__chunk_compression__init(&s->cc);
        chunk_dictionary__chunk_dictionary__metadata_entry__init(&s->meta);

        s->cp.chunking_algorithm = CHUNK_DICTIONARY__CHUNKER_PARAMETERS__CHUNKING_ALGORITHM__ROLLSUM;
        s->cp.chunk_filter_bits = 15;
        s->cp.min_chunk_size = 16384;
        s->cp.max_chunk_size = 16777216;
        s->cp.rolling_hash_window_size = 64;
        s->cp.chunk_hash_length = SPEC_HASH_LEN;
        s->cc.compression = CHUNK_DICTIONARY__CHUNK_COMPRESSION__COMPRESSION_TYPE__ZSTD;
        s->cc.compression_level = 19;

        for (size_t i = 0; i < SPEC_CHUNKS; i++) {
                chunk_dictionary__chunk_descriptor__init(&s->desc[i]);
                for (size_t j = 0; j < sizeof(s->hash[i]); j++)
                        s->hash[i][j] = (uint8_t)(0x10 * (i + 1) + j);
                s->desc[i].checksum.data = s->hash[i];
                s->desc[i].checksum.len = SPEC_HASH_LEN;
                s->desc[i].source_size = spec_source_size[i];
                s->desc[i].archive_size = spec_archive_size[i];
                s->desc[i].archive_offset = spec_archive_offset[i];
                s->descp[i] = &s->desc[i];
        }
        memcpy(s->order, spec_order, sizeof(spec_order));
        for (size_t j = 0; j < sizeof(s->source_checksum); j++)
                s->source_checksum[j] = (uint8_t)(0xa0 ^ j);
        memcpy(s->meta_value, "v\0a\xffl", 5);
        s->meta.key = (char *)"the-key";
        s->meta.value.data = s->meta_value;
        s->meta.value.len = 5;
        s->metap[0] = &s->meta;

        s->d.application_version = (char *)"test 1.0";
        s->d.source_checksum.data = s->source_checksum;
        s->d.source_checksum.len = HASH_MAX_LEN;
        s->d.source_total_size = SPEC_TOTAL;
        s->d.chunker_params = &s->cp;
        s->d.chunk_compression = &s->cc;
        s->d.n_rebuild_order = SPEC_ORDER;
        s->d.rebuild_order = s->order;
        s->d.n_chunk_descriptors = SPEC_CHUNKS;
        s->d.chunk_descriptors = s->descp;
        s->d.n_metadata = 1;
        s->d.metadata = s->metap;
}

static inline uint8_t *spec_pack(const struct spec *s, size_t *n)
{
        size_t len = chunk_dictionary__chunk_dictionary__get_packed_size(&s->d);
        uint8_t *buf = malloc(len ? len : 1);

        assert_non_null(buf);
        assert_int_equal(chunk_dictionary__chunk_dictionary__pack(&s->d, buf), len);
        *n = len;
        return buf;
}

/* A valid spec of an empty image: no chunks, no order, no metadata. */
static inline void spec_init_empty(struct spec *s)
{
        spec_init(s);
        s->d.n_metadata = 0;
        s->d.n_chunk_descriptors = 0;
        s->d.n_rebuild_order = 0;
        s->d.source_total_size = 0;
}

/* The spec's dictionary packed into *dict (*n bytes, for the caller to free)
 * and framed with MAGIC, the chunk data right after it: the header (*len). */
static inline uint8_t *spec_header(const struct spec *s, uint8_t **dict, size_t *n, size_t *len)
{
        *dict = spec_pack(s, n);
        return wrap_header(MAGIC, *dict, *n, CDO_AUTO, len);
}

/* archive_parse of the spec framed with magic and chunk data offset cdo
 * (CDO_AUTO: right after the header); the header's length goes to
 * *header_len when asked for. */
static inline int parse_spec_cdo(const struct spec *s, const uint8_t *magic, uint64_t cdo,
                                 struct archive **out, size_t *header_len)
{
        size_t n, len;
        uint8_t *dict = spec_pack(s, &n);
        uint8_t *hdr = wrap_header(magic, dict, n, cdo, &len);
        int r;

        *out = NULL;
        r = archive_parse(hdr, len, "test", out);
        if (header_len)
                *header_len = len;
        free(hdr);
        free(dict);
        return r;
}

/* The group setup of every archive test: BLAKE2b (libsodium) ready. */
static inline int archive_spec_setup(void **state)
{
        return hash_init_library() == 0 ? 0 : -1;
}
