// SPDX-License-Identifier: MIT
/* pb_fields.c: chunker parameters and chunk compression between the
 * dictionary's protobuf fields and ihop's types, both ways. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "pb_fields.h"

#include <errno.h>

static void test_chunker_params_round_trip(void **state)
{
        (void)state;
        for (int alg = CHUNKING_BUZHASH; alg <= CHUNKING_FIXED_SIZE; alg++) {
                const struct chunker_params in = { (enum chunking_algorithm)alg, 15, 16 << 10, 16 << 20, 64, 32 };
                ChunkDictionary__ChunkerParameters pb;
                struct chunker_params out;

                chunker_params_to_pb(&in, &pb);
                assert_int_equal(pb.max_chunk_size, 16 << 20);
                assert_int_equal(pb.chunk_hash_length, 32);
                assert_int_equal(chunker_params_from_pb(&pb, "test", "the dictionary", &out), 0);
                assert_int_equal(out.algorithm, alg);
                assert_int_equal(out.max_chunk_size, in.max_chunk_size);
                assert_int_equal(out.hash_length, in.hash_length);
                if (alg == CHUNKING_FIXED_SIZE) {
                        /* As bita writes them: nothing but size and hash length. */
                        assert_int_equal(pb.chunk_filter_bits, 0);
                        assert_int_equal(pb.min_chunk_size, 0);
                        assert_int_equal(pb.rolling_hash_window_size, 0);
                } else {
                        assert_int_equal(out.filter_bits, in.filter_bits);
                        assert_int_equal(out.min_chunk_size, in.min_chunk_size);
                        assert_int_equal(out.window_size, in.window_size);
                }
        }
}

static void test_chunker_params_missing_or_unknown_refused(void **state)
{
        ChunkDictionary__ChunkerParameters pb = CHUNK_DICTIONARY__CHUNKER_PARAMETERS__INIT;
        const int bad[] = { 3, 7, -1, 0x7fffffff };
        struct chunker_params out;

        (void)state;
        assert_int_equal(chunker_params_from_pb(NULL, "test", "the dictionary", &out), -EBADMSG);
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                pb.chunking_algorithm = (ChunkDictionary__ChunkerParameters__ChunkingAlgorithm)bad[i];
                assert_int_equal(chunker_params_from_pb(&pb, "test", "the dictionary", &out), -EBADMSG);
        }
}

static void test_codec_round_trip_and_unknown_refused(void **state)
{
        ChunkDictionary__ChunkCompression pb;
        const int bad[] = { 4, -1, 1000 };
        enum codec codec;
        uint32_t level;

        (void)state;
        for (int c = CODEC_NONE; c <= CODEC_BROTLI; c++) {
                codec_to_pb((enum codec)c, 9, &pb);
                assert_int_equal(codec_from_pb(&pb, "test", &codec, &level), 0);
                assert_int_equal(codec, c);
                /* No level without compression. */
                assert_int_equal(level, c == CODEC_NONE ? 0 : 9);
        }
        assert_int_equal(codec_from_pb(NULL, "test", &codec, &level), -EBADMSG);
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                pb.compression = (ChunkDictionary__ChunkCompression__CompressionType)bad[i];
                assert_int_equal(codec_from_pb(&pb, "test", &codec, &level), -EBADMSG);
        }
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_chunker_params_round_trip),
                cmocka_unit_test(test_chunker_params_missing_or_unknown_refused),
                cmocka_unit_test(test_codec_round_trip_and_unknown_refused),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
