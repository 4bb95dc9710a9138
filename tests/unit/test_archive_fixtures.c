// SPDX-License-Identifier: MIT
/* archive.c on the real archives of tests/fixtures, made by bita 0.1.1 to
 * 0.13: every field read back, chunk hashes and image checksums checked
 * against the data, the corrupt fixtures refused. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include "archive_spec.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

static uint8_t *read_whole(const char *path, size_t *len)
{
        struct stat st;
        uint8_t *buf;
        ssize_t n;
        int fd = open(path, O_RDONLY | O_CLOEXEC);

        if (fd < 0)
                fail_msg("cannot open %s: %s", path, strerror(errno));
        assert_int_equal(fstat(fd, &st), 0);
        buf = malloc(st.st_size ? (size_t)st.st_size : 1);
        assert_non_null(buf);
        n = pread(fd, buf, (size_t)st.st_size, 0);
        assert_int_equal(n, st.st_size);
        close(fd);
        *len = (size_t)st.st_size;
        return buf;
}

static void fixture_path(const char *name, char *out, size_t len)
{
        const char *dir = getenv("FIXTURES");

        if (!dir)
                fail_msg("FIXTURES is not set");
        snprintf(out, len, "%s/%s", dir, name);
}

static uint64_t get_le64(const uint8_t *p)
{
        uint64_t v;

        memcpy(&v, p, sizeof(v));
        return le64toh(v);
}

struct fixture {
        const char *name;
        bool legacy;
        enum codec codec;
        enum chunking_algorithm algorithm;
        const char *version;
        uint64_t total;
        size_t n_chunks, n_order;
        uint64_t chunk_data_offset;
        int fits; /* 1: archive_check_size accepts the real file, 0: refuses */
};

/* Counts and offsets read with an independent decoder (Python, by hand).
 * The corrupt-chunk archive lacks one byte of its fifth chunk, so its last
 * chunk runs one byte past the end of the file. */
static const struct fixture fixtures[] = {
        { "rand-0_1_1-none.cba", true, CODEC_NONE, CHUNKING_BUZHASH, "0.1.1", 262144, 5, 5, 588, 1 },
        { "zero-0_1_1-lzma.cba", true, CODEC_LZMA, CHUNKING_BUZHASH, "0.1.1", 134217728, 1, 8, 279, 1 },
        { "zero-0_1_1-zstd.cba", true, CODEC_ZSTD, CHUNKING_BUZHASH, "0.1.1", 134217728, 1, 8, 279, 1 },
        { "zero-0_7_1-brotli.cba", false, CODEC_BROTLI, CHUNKING_ROLLSUM, "0.7.1", 134217728, 1, 8, 274, 1 },
        { "rand-0_7_1-corrupt-chunk.cba", false, CODEC_BROTLI, CHUNKING_ROLLSUM, "0.7.0", 262144, 6, 6, 670, 0 },
        { "rand-0_11_0-brotli-trunc.cba", false, CODEC_BROTLI, CHUNKING_ROLLSUM, "0.11.0", 102400, 2, 2, 349, 0 },
        { "pair/v1.ext4.cba", false, CODEC_BROTLI, CHUNKING_ROLLSUM, "0.13.0", 25165824, 267, 281, 22086, 1 },
        { "pair/v2.ext4.cba", false, CODEC_BROTLI, CHUNKING_ROLLSUM, "0.13.0", 25165824, 278, 292, 23000, 1 },
};

static void check_fixture(const struct fixture *f)
{
        char path[4096];
        size_t len;
        uint8_t *file;
        uint64_t header_len, sum = 0, compressed = 0, end = 0;
        struct archive *a = NULL;
        const struct release *r;

        fixture_path(f->name, path, sizeof(path));
        file = read_whole(path, &len);
        print_message("%s\n", f->name);

        assert_memory_equal(file, f->legacy ? LEGACY_MAGIC : MAGIC, 6);
        assert_int_equal(archive_header_length(file, ARCHIVE_PRE_HEADER_SIZE, path, &header_len), 0);
        assert_int_equal(header_len, ARCHIVE_PRE_HEADER_SIZE + get_le64(file + 6) + ARCHIVE_TRAILER_SIZE);
        assert_int_equal(header_len, f->chunk_data_offset);
        /* Fewer than 14 bytes cannot say how long the header is. */
        assert_int_equal(archive_header_length(file, ARCHIVE_PRE_HEADER_SIZE - 1, path, &header_len), -EBADMSG);

        /* A header cut short by one byte, or to its pre-header, is refused. */
        assert_int_equal(archive_parse(file, (size_t)f->chunk_data_offset - 1, path, &a), -EBADMSG);
        assert_null(a);
        assert_int_equal(archive_parse(file, ARCHIVE_PRE_HEADER_SIZE, path, &a), -EBADMSG);
        assert_null(a);

        assert_int_equal(archive_parse(file, (size_t)f->chunk_data_offset, path, &a), 0);
        assert_non_null(a);
        r = a->release;
        assert_int_equal(a->codec, f->codec);
        assert_int_equal(a->header_size, f->chunk_data_offset);
        assert_int_equal(a->chunk_data_offset, f->chunk_data_offset);
        assert_memory_equal(a->header_checksum, file + f->chunk_data_offset - 64, 64);
        assert_int_equal(r->hash_len, 64);
        assert_int_equal(r->chunker.hash_length, 64);
        assert_int_equal(r->chunker.algorithm, f->algorithm);
        assert_int_equal(r->chunker.filter_bits, 15);
        assert_int_equal(r->chunker.min_chunk_size, 16384);
        assert_int_equal(r->chunker.max_chunk_size, 16777216);
        assert_int_equal(r->chunker.window_size, f->algorithm == CHUNKING_BUZHASH ? 16 : 64);
        assert_string_equal(r->app_version, f->version);
        assert_int_equal(r->source_checksum_len, 64);
        assert_int_equal(r->source_total_size, f->total);
        assert_int_equal(r->n_chunks, f->n_chunks);
        assert_int_equal(r->n_order, f->n_order);

        for (size_t i = 0; i < r->n_order; i++) {
                assert_true(r->order[i] < r->n_chunks);
                sum += r->chunks[r->order[i]].source_size;
        }
        assert_int_equal(sum, r->source_total_size);
        for (size_t i = 0; i < r->n_chunks; i++) {
                const struct chunk *c = &r->chunks[i];
                assert_true(c->source_size > 0);
                assert_true(c->archive_size > 0);
                /* Offsets are absolute: at or after the chunk data. */
                assert_true(c->archive_offset >= a->chunk_data_offset);
                if (f->codec == CODEC_NONE)
                        assert_int_equal(c->archive_size, c->source_size);
                compressed += c->archive_size;
                if (c->archive_offset + c->archive_size > end)
                        end = c->archive_offset + c->archive_size;
        }
        assert_int_equal(a->compressed_size, compressed);
        assert_int_equal(a->chunk_data_end, end);
        /* bita writes the first chunk right at the chunk data offset. */
        assert_int_equal(r->chunks[0].archive_offset, a->chunk_data_offset);

        if (f->fits == 1) {
                assert_int_equal(a->chunk_data_end, len);
                assert_int_equal(archive_check_size(a, len, path), 0);
                assert_int_equal(archive_check_size(a, len + 1, path), 0);
                assert_int_equal(archive_check_size(a, len - 1, path), -EBADMSG);
        } else if (f->fits == 0) {
                assert_true(a->chunk_data_end > len);
                assert_int_equal(archive_check_size(a, len, path), -EBADMSG);
                assert_int_equal(archive_check_size(a, a->chunk_data_end, path), 0);
        }
        archive_free(a);
        free(file);
}

static void test_fixtures_parse(void **state)
{
        for (size_t i = 0; i < sizeof(fixtures) / sizeof(fixtures[0]); i++)
                check_fixture(&fixtures[i]);
}

/* The uncompressed archive's chunks can be hashed straight from the file:
 * that checks hashes, absolute offsets, order and the source checksum. */
static void test_fixture_none_content(void **state)
{
        char path[4096];
        size_t len;
        uint8_t *file, digest[HASH_MAX_LEN];
        struct archive *a = NULL;
        hash_state whole;

        fixture_path("rand-0_1_1-none.cba", path, sizeof(path));
        file = read_whole(path, &len);
        assert_int_equal(archive_parse(file, len, path, &a), 0);
        const struct release *r = a->release;
        for (size_t i = 0; i < r->n_chunks; i++) {
                const struct chunk *c = &r->chunks[i];
                assert_true(c->archive_offset + c->archive_size <= len);
                hash_buffer(file + c->archive_offset, c->source_size, digest);
                assert_memory_equal(digest, c->hash, r->hash_len);
        }
        hash_init(&whole);
        for (size_t i = 0; i < r->n_order; i++) {
                const struct chunk *c = &r->chunks[r->order[i]];
                hash_update(&whole, file + c->archive_offset, c->source_size);
        }
        hash_final(&whole, digest);
        assert_memory_equal(digest, r->source_checksum, 64);
        archive_free(a);
        free(file);
}

/* The zero archives: one 16 MiB chunk of zeros, eight times. */
static void test_fixture_zero_hashes(void **state)
{
        static const char *const names[] = { "zero-0_1_1-lzma.cba", "zero-0_1_1-zstd.cba", "zero-0_7_1-brotli.cba" };
        uint8_t *zeros = calloc(1, 16u << 20);
        uint8_t chunk_digest[HASH_MAX_LEN], image_digest[HASH_MAX_LEN];
        hash_state st;

        assert_non_null(zeros);
        hash_buffer(zeros, 16u << 20, chunk_digest);
        hash_init(&st);
        for (int i = 0; i < 8; i++)
                hash_update(&st, zeros, 16u << 20);
        hash_final(&st, image_digest);

        for (size_t k = 0; k < 3; k++) {
                char path[4096];
                size_t len;
                uint8_t *file;
                struct archive *a = NULL;

                fixture_path(names[k], path, sizeof(path));
                file = read_whole(path, &len);
                assert_int_equal(archive_parse(file, len, path, &a), 0);
                assert_int_equal(a->release->chunks[0].source_size, 16u << 20);
                assert_memory_equal(a->release->chunks[0].hash, chunk_digest, 64);
                assert_memory_equal(a->release->source_checksum, image_digest, 64);
                for (size_t i = 0; i < a->release->n_order; i++)
                        assert_int_equal(a->release->order[i], 0);
                archive_free(a);
                free(file);
        }
        free(zeros);
}

static void test_fixture_corrupt_header(void **state)
{
        char path[4096];
        size_t len;
        uint64_t header_len;
        uint8_t *file;
        struct archive *a = NULL;

        fixture_path("rand-0_7_1-corrupt-header.cba", path, sizeof(path));
        file = read_whole(path, &len);
        assert_int_equal(archive_header_length(file, len, path, &header_len), 0);
        assert_true(header_len <= len);
        assert_int_equal(archive_parse(file, (size_t)header_len, path, &a), -EBADMSG);
        assert_null(a);
        assert_int_equal(archive_parse(file, len, path, &a), -EBADMSG);
        assert_null(a);
        free(file);
}

/* A good header with one byte changed anywhere is refused. */
static void test_fixture_any_flip_refused(void **state)
{
        char path[4096];
        size_t len;
        uint8_t *file;

        fixture_path("zero-0_7_1-brotli.cba", path, sizeof(path));
        file = read_whole(path, &len);
        for (size_t i = 0; i < 274; i++) {
                struct archive *a = NULL;
                file[i] ^= 0x01;
                assert_int_equal(archive_parse(file, len, path, &a), -EBADMSG);
                assert_null(a);
                file[i] ^= 0x01;
        }
        free(file);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_fixtures_parse),
                cmocka_unit_test(test_fixture_none_content),
                cmocka_unit_test(test_fixture_zero_hashes),
                cmocka_unit_test(test_fixture_corrupt_header),
                cmocka_unit_test(test_fixture_any_flip_refused),
        };

        return cmocka_run_group_tests(tests, archive_spec_setup, NULL);
}
