// SPDX-License-Identifier: MIT
/* archive.c on the dictionary: a valid one read back field by field, and
 * each of its parts broken in turn (rebuild order, hash lengths, sizes,
 * where chunks lie in the archive, missing messages, unknown enums). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include "archive_spec.h"

#include <errno.h>

static void expect_refused(const struct spec *s)
{
        struct archive *a = NULL;

        assert_int_equal(parse_spec_cdo(s, MAGIC, CDO_AUTO, &a, NULL), -EBADMSG);
        assert_null(a);
}

static void check_spec_archive(const struct archive *a, uint64_t cdo)
{
        const struct release *r = a->release;

        assert_int_equal(a->codec, CODEC_ZSTD);
        assert_int_equal(a->compression_level, 19);
        assert_int_equal(a->chunk_data_offset, cdo);
        assert_string_equal(r->app_version, "test 1.0");
        assert_int_equal(r->hash_len, SPEC_HASH_LEN);
        assert_int_equal(r->chunker.algorithm, CHUNKING_ROLLSUM);
        assert_int_equal(r->chunker.filter_bits, 15);
        assert_int_equal(r->chunker.min_chunk_size, 16384);
        assert_int_equal(r->chunker.max_chunk_size, 16777216);
        assert_int_equal(r->chunker.window_size, 64);
        assert_int_equal(r->source_total_size, SPEC_TOTAL);
        assert_int_equal(r->source_checksum_len, 64);
        for (size_t j = 0; j < 64; j++)
                assert_int_equal(r->source_checksum[j], (uint8_t)(0xa0 ^ j));
        assert_int_equal(r->n_chunks, SPEC_CHUNKS);
        assert_int_equal(r->n_order, SPEC_ORDER);
        assert_memory_equal(r->order, spec_order, sizeof(spec_order));
        for (size_t i = 0; i < SPEC_CHUNKS; i++) {
                const struct chunk *c = &r->chunks[i];
                for (size_t j = 0; j < SPEC_HASH_LEN; j++)
                        assert_int_equal(c->hash[j], (uint8_t)(0x10 * (i + 1) + j));
                assert_int_equal(c->source_size, spec_source_size[i]);
                assert_int_equal(c->archive_size, spec_archive_size[i]);
                assert_int_equal(c->archive_offset, cdo + spec_archive_offset[i]);
        }
        assert_int_equal(a->compressed_size, 500 + 600 + 700);
        assert_int_equal(a->chunk_data_end, cdo + 1100 + 700);
        assert_int_equal(a->n_metadata, 1);
        assert_string_equal(a->metadata[0].key, "the-key");
        assert_int_equal(a->metadata[0].value_len, 5);
        assert_memory_equal(a->metadata[0].value, "v\0a\xffl", 5);
}

static void test_built_valid(void **state)
{
        struct spec s;
        struct archive *a = NULL;
        size_t header_len;

        spec_init(&s);
        assert_int_equal(parse_spec_cdo(&s, MAGIC, CDO_AUTO, &a, &header_len), 0);
        assert_non_null(a);
        assert_int_equal(a->header_size, header_len);
        check_spec_archive(a, header_len);
        assert_int_equal(archive_check_size(a, header_len + 1800, "test"), 0);
        assert_int_equal(archive_check_size(a, header_len + 1799, "test"), -EBADMSG);
        archive_free(a);

        /* The chunk data may start further on; offsets follow it. */
        assert_int_equal(parse_spec_cdo(&s, MAGIC, 1u << 20, &a, &header_len), 0);
        check_spec_archive(a, 1u << 20);
        assert_int_equal(archive_check_size(a, (1u << 20) + 1800, "test"), 0);
        assert_int_equal(archive_check_size(a, (1u << 20) + 1799, "test"), -EBADMSG);
        archive_free(a);

        /* The legacy magic reads the same. */
        assert_int_equal(parse_spec_cdo(&s, LEGACY_MAGIC, CDO_AUTO, &a, &header_len), 0);
        check_spec_archive(a, header_len);
        archive_free(a);

        /* Every codec bita knows maps to ours. */
        static const struct { int pb; enum codec c; } codecs[] = {
                { CHUNK_DICTIONARY__CHUNK_COMPRESSION__COMPRESSION_TYPE__NONE, CODEC_NONE },
                { CHUNK_DICTIONARY__CHUNK_COMPRESSION__COMPRESSION_TYPE__LZMA, CODEC_LZMA },
                { CHUNK_DICTIONARY__CHUNK_COMPRESSION__COMPRESSION_TYPE__ZSTD, CODEC_ZSTD },
                { CHUNK_DICTIONARY__CHUNK_COMPRESSION__COMPRESSION_TYPE__BROTLI, CODEC_BROTLI },
        };
        for (size_t i = 0; i < 4; i++) {
                s.cc.compression = (ChunkDictionary__ChunkCompression__CompressionType)codecs[i].pb;
                assert_int_equal(parse_spec_cdo(&s, MAGIC, CDO_AUTO, &a, NULL), 0);
                assert_int_equal(a->codec, codecs[i].c);
                archive_free(a);
        }
        spec_init(&s);
        static const struct { int pb; enum chunking_algorithm c; } algos[] = {
                { CHUNK_DICTIONARY__CHUNKER_PARAMETERS__CHUNKING_ALGORITHM__BUZHASH, CHUNKING_BUZHASH },
                { CHUNK_DICTIONARY__CHUNKER_PARAMETERS__CHUNKING_ALGORITHM__ROLLSUM, CHUNKING_ROLLSUM },
                { CHUNK_DICTIONARY__CHUNKER_PARAMETERS__CHUNKING_ALGORITHM__FIXED_SIZE, CHUNKING_FIXED_SIZE },
        };
        for (size_t i = 0; i < 3; i++) {
                s.cp.chunking_algorithm = (ChunkDictionary__ChunkerParameters__ChunkingAlgorithm)algos[i].pb;
                assert_int_equal(parse_spec_cdo(&s, MAGIC, CDO_AUTO, &a, NULL), 0);
                assert_int_equal(a->release->chunker.algorithm, algos[i].c);
                archive_free(a);
        }

        /* The hash length bounds themselves are fine. */
        spec_init(&s);
        for (uint32_t hl = HASH_MIN_LEN; hl <= HASH_MAX_LEN; hl += HASH_MAX_LEN - HASH_MIN_LEN) {
                s.cp.chunk_hash_length = hl;
                for (size_t i = 0; i < SPEC_CHUNKS; i++)
                        s.desc[i].checksum.len = hl;
                assert_int_equal(parse_spec_cdo(&s, MAGIC, CDO_AUTO, &a, NULL), 0);
                assert_int_equal(a->release->hash_len, hl);
                assert_memory_equal(a->release->chunks[2].hash, s.hash[2], hl);
                archive_free(a);
        }

        /* No metadata, no chunks, an empty image. */
        spec_init_empty(&s);
        assert_int_equal(parse_spec_cdo(&s, MAGIC, CDO_AUTO, &a, &header_len), 0);
        assert_int_equal(a->release->n_chunks, 0);
        assert_int_equal(a->n_metadata, 0);
        assert_int_equal(a->compressed_size, 0);
        assert_int_equal(a->chunk_data_end, header_len);
        archive_free(a);
}

static void test_hostile_order(void **state)
{
        struct spec s;

        spec_init(&s);
        s.order[3] = SPEC_CHUNKS; /* one past the end */
        expect_refused(&s);
        s.order[3] = UINT32_MAX;
        expect_refused(&s);
        /* Order names chunks when there are none. */
        spec_init(&s);
        s.d.n_chunk_descriptors = 0;
        expect_refused(&s);
}

static void test_hostile_hash_length(void **state)
{
        struct spec s;
        static const uint32_t bad[] = { 0, 1, 3, 65, 128, UINT32_MAX };

        for (size_t k = 0; k < sizeof(bad) / sizeof(bad[0]); k++) {
                spec_init(&s);
                s.cp.chunk_hash_length = bad[k];
                /* Descriptors agree with the parameters, as far as they can. */
                for (size_t i = 0; i < SPEC_CHUNKS; i++)
                        s.desc[i].checksum.len = bad[k] <= HASH_MAX_LEN + 8 ? bad[k] : HASH_MAX_LEN + 8;
                expect_refused(&s);
        }
        /* A descriptor hash of the wrong length. */
        static const size_t wrong[] = { 0, 4, SPEC_HASH_LEN - 1, SPEC_HASH_LEN + 1, 64, 65, 72 };
        for (size_t k = 0; k < sizeof(wrong) / sizeof(wrong[0]); k++) {
                spec_init(&s);
                s.desc[1].checksum.len = wrong[k];
                expect_refused(&s);
        }
        /* The whole-image checksum: missing, or longer than BLAKE2b-512. */
        spec_init(&s);
        s.d.source_checksum.len = 0;
        expect_refused(&s);
        s.d.source_checksum.len = 65;
        expect_refused(&s);
        s.d.source_checksum.len = 72;
        expect_refused(&s);
}

static void test_hostile_sizes(void **state)
{
        struct spec s;

        /* A chunk of size 0, used or not. */
        spec_init(&s);
        s.desc[2].source_size = 0;
        s.d.source_total_size = SPEC_TOTAL - 3000;
        expect_refused(&s);
        spec_init(&s);
        s.d.n_rebuild_order = 2;
        s.d.source_total_size = 3000;
        s.desc[2].source_size = 0;
        expect_refused(&s);

        /* Sizes that do not add up. */
        spec_init(&s);
        s.d.source_total_size = SPEC_TOTAL + 1;
        expect_refused(&s);
        s.d.source_total_size = SPEC_TOTAL - 1;
        expect_refused(&s);
        s.d.source_total_size = 0;
        expect_refused(&s);
        s.d.source_total_size = UINT64_MAX;
        expect_refused(&s);
        spec_init(&s);
        s.d.n_rebuild_order = 3; /* the image lacks its last chunk */
        expect_refused(&s);

        /* Huge chunks: a sum of 2^32 + 7000 would be 7000 in 32 bits. */
        spec_init(&s);
        s.desc[0].source_size = UINT32_MAX;
        s.desc[1].source_size = SPEC_TOTAL + 1;
        s.d.n_rebuild_order = 2;
        s.d.source_total_size = SPEC_TOTAL;
        expect_refused(&s);
        /* Many huge chunks against a small total. */
        spec_init(&s);
        uint32_t many[1000];
        for (size_t i = 0; i < 1000; i++)
                many[i] = 0;
        s.desc[0].source_size = UINT32_MAX;
        s.d.rebuild_order = many;
        s.d.n_rebuild_order = 1000;
        s.d.source_total_size = 1000;
        expect_refused(&s);
        /* ...and a total that the same sum, wrapped at 2^64, would not reach. */
        s.d.source_total_size = (uint64_t)UINT32_MAX * 999;
        expect_refused(&s);
        s.d.source_total_size = (uint64_t)UINT32_MAX * 1000;
        {
                struct archive *a = NULL;
                assert_int_equal(parse_spec_cdo(&s, MAGIC, CDO_AUTO, &a, NULL), 0);
                assert_int_equal(a->release->source_total_size, (uint64_t)UINT32_MAX * 1000);
                archive_free(a);
        }
}

static void test_hostile_archive_place(void **state)
{
        struct spec s;
        size_t n, len;
        uint8_t *dict;

        spec_init(&s);
        s.desc[1].archive_offset = UINT64_MAX;
        expect_refused(&s);
        s.desc[1].archive_offset = UINT64_MAX - 10;
        expect_refused(&s);

        /* The header length (= chunk data offset) once an offset needs a
         * 10-byte varint, as every value >= 2^63 does. */
        spec_init(&s);
        s.desc[2].archive_offset = UINT64_MAX - 100000;
        free(spec_header(&s, &dict, &n, &len));
        free(dict);

        /* offset + chunk data offset fits; adding the size wraps. */
        s.desc[2].archive_offset = UINT64_MAX - len - 10;
        expect_refused(&s);
        /* offset + chunk data offset wraps to 0. */
        s.desc[2].archive_offset = UINT64_MAX - len + 1;
        expect_refused(&s);
        /* offset + chunk data offset + size = UINT64_MAX exactly: fits. */
        s.desc[2].archive_offset = UINT64_MAX - len - 700;
        {
                struct archive *a = NULL;
                size_t len2;
                assert_int_equal(parse_spec_cdo(&s, MAGIC, CDO_AUTO, &a, &len2), 0);
                assert_int_equal(len2, len);
                assert_int_equal(a->release->chunks[2].archive_offset, UINT64_MAX - 700);
                assert_int_equal(a->chunk_data_end, UINT64_MAX);
                assert_int_equal(archive_check_size(a, UINT64_MAX - 1, "t"), -EBADMSG);
                archive_free(a);
        }

        /* A huge chunk data offset with modest relative offsets. */
        spec_init(&s);
        {
                struct archive *a = NULL;
                assert_int_equal(parse_spec_cdo(&s, MAGIC, UINT64_MAX - 1000, &a, NULL), -EBADMSG);
                assert_null(a);
                assert_int_equal(parse_spec_cdo(&s, MAGIC, UINT64_MAX - 1800, &a, NULL), 0);
                assert_int_equal(a->chunk_data_end, UINT64_MAX);
                archive_free(a);
        }

        /* A chunk with no bytes in the archive. */
        spec_init(&s);
        s.desc[0].archive_size = 0;
        expect_refused(&s);
}

static void test_hostile_missing_parts(void **state)
{
        struct spec s;

        spec_init(&s);
        s.d.chunker_params = NULL;
        expect_refused(&s);
        spec_init(&s);
        s.d.chunk_compression = NULL;
        expect_refused(&s);
        spec_init(&s);
        s.d.chunker_params = NULL;
        s.d.chunk_compression = NULL;
        expect_refused(&s);
}

static void test_hostile_unknown_enums(void **state)
{
        struct spec s;
        static const int bad_codecs[] = { 4, 5, 99, -1, INT32_MAX };
        static const int bad_algos[] = { 3, 4, 1000, -1 };

        for (size_t i = 0; i < sizeof(bad_codecs) / sizeof(bad_codecs[0]); i++) {
                spec_init(&s);
                s.cc.compression = (ChunkDictionary__ChunkCompression__CompressionType)bad_codecs[i];
                expect_refused(&s);
        }
        for (size_t i = 0; i < sizeof(bad_algos) / sizeof(bad_algos[0]); i++) {
                spec_init(&s);
                s.cp.chunking_algorithm = (ChunkDictionary__ChunkerParameters__ChunkingAlgorithm)bad_algos[i];
                expect_refused(&s);
        }
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_built_valid),
                cmocka_unit_test(test_hostile_order),
                cmocka_unit_test(test_hostile_hash_length),
                cmocka_unit_test(test_hostile_sizes),
                cmocka_unit_test(test_hostile_archive_place),
                cmocka_unit_test(test_hostile_missing_parts),
                cmocka_unit_test(test_hostile_unknown_enums),
        };

        return cmocka_run_group_tests(tests, archive_spec_setup, NULL);
}
