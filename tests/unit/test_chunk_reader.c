// SPDX-License-Identifier: MIT
/* chunk_reader.c: a chunk file read in blocks, hashed on the way; files
 * shorter or longer than the chunk, truncated hashes, read errors. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "chunk_reader.h"
#include "hash.h"

#include <errno.h>
#include <stdbool.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct ctx {
        char path[64];
        uint8_t *buf;  /* the reader's block */
        uint8_t *data; /* the file's content */
        struct chunk ch;
        int fd;
        struct chunk_reader rd;
};

static int setup(void **state)
{
        struct ctx *c = calloc(1, sizeof(*c));
        int fd;

        if (!c || !(c->buf = malloc(CHUNK_READ_BLOCK)))
                return -1;
        c->fd = -1;
        strcpy(c->path, "/tmp/ihop-test-chunk-reader-XXXXXX");
        fd = mkstemp(c->path);
        if (fd < 0)
                return -1;
        close(fd);
        *state = c;
        return 0;
}

static int teardown(void **state)
{
        struct ctx *c = *state;

        if (c->fd >= 0)
                close(c->fd);
        unlink(c->path);
        free(c->data);
        free(c->buf);
        free(c);
        return 0;
}

static int group_setup(void **state)
{
        (void)state;
        return hash_init_library() == 0 ? 0 : -1;
}

/* A file of file_len bytes, opened with open_flags, holding the chunk of
 * its first size bytes (or as many more of the same pattern), the chunk's
 * hash cut to hash_len; the reader started on it. */
static void start(struct ctx *c, size_t size, size_t file_len, size_t hash_len, int open_flags, bool hash)
{
        size_t len = size > file_len ? size : file_len;
        uint8_t digest[HASH_MAX_LEN];
        int fd;

        free(c->data);
        c->data = malloc(len ? len : 1);
        assert_non_null(c->data);
        for (size_t i = 0; i < len; i++)
                c->data[i] = (uint8_t)(i * 131 + (i >> 9));
        memset(&c->ch, 0, sizeof(c->ch));
        hash_buffer(c->data, size, digest);
        memcpy(c->ch.hash, digest, hash_len);
        c->ch.source_size = (uint32_t)size;

        fd = open(c->path, O_WRONLY | O_TRUNC | O_CLOEXEC);
        assert_true(fd >= 0);
        assert_int_equal(write(fd, c->data, file_len), (ssize_t)file_len);
        close(fd);
        if (c->fd >= 0)
                close(c->fd);
        c->fd = open(c->path, open_flags | O_CLOEXEC);
        assert_true(c->fd >= 0);
        chunk_reader_init(&c->rd, c->fd, &c->ch, hash_len, c->buf, hash);
}

/* Reads the whole chunk, checking that every block but the last is full and
 * that the blocks put together are the file's content; returns what next
 * returned last, and the bytes handed out in *got. */
static ssize_t read_all(struct ctx *c, size_t *got)
{
        ssize_t n;

        *got = 0;
        while ((n = chunk_reader_next(&c->rd)) > 0) {
                assert_true((size_t)n <= CHUNK_READ_BLOCK);
                assert_true((size_t)n == CHUNK_READ_BLOCK || *got + (size_t)n == c->ch.source_size);
                assert_memory_equal(c->buf, c->data + *got, (size_t)n);
                *got += (size_t)n;
        }
        return n;
}

static void test_multi_block_chunk_read_whole_and_matches(void **state)
{
        struct ctx *c = *state;
        const size_t sizes[] = { 1, CHUNK_READ_BLOCK - 1, CHUNK_READ_BLOCK, CHUNK_READ_BLOCK + 1,
                                 3 * CHUNK_READ_BLOCK + CHUNK_READ_BLOCK / 2 };
        size_t got;

        for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
                start(c, sizes[i], sizes[i], HASH_MAX_LEN, O_RDONLY, true);
                assert_int_equal(read_all(c, &got), 0);
                assert_int_equal(got, sizes[i]);
                assert_true(chunk_reader_complete(&c->rd));
                assert_true(chunk_reader_matches(&c->rd));
        }
}

static void test_empty_chunk_is_complete_at_once(void **state)
{
        struct ctx *c = *state;

        start(c, 0, 0, 32, O_RDONLY, true);
        assert_int_equal(chunk_reader_next(&c->rd), 0);
        assert_true(chunk_reader_complete(&c->rd));
        assert_true(chunk_reader_matches(&c->rd));
}

/* Archives keep truncated hashes: only the first hash_len bytes count. */
static void test_truncated_hash_compared_on_its_length(void **state)
{
        struct ctx *c = *state;
        size_t got;

        start(c, 5000, 5000, HASH_MIN_LEN, O_RDONLY, true);
        c->ch.hash[HASH_MIN_LEN] ^= 0xff; /* past the compared length: ignored */
        assert_int_equal(read_all(c, &got), 0);
        assert_true(chunk_reader_matches(&c->rd));

        start(c, 5000, 5000, HASH_MIN_LEN, O_RDONLY, true);
        c->ch.hash[HASH_MIN_LEN - 1] ^= 0x01; /* within it: not the chunk */
        assert_int_equal(read_all(c, &got), 0);
        assert_true(chunk_reader_complete(&c->rd));
        assert_false(chunk_reader_matches(&c->rd));
}

static void test_changed_byte_does_not_match(void **state)
{
        struct ctx *c = *state;
        size_t got;

        int fd;

        start(c, 2 * CHUNK_READ_BLOCK + 77, 2 * CHUNK_READ_BLOCK + 77, HASH_MAX_LEN, O_RDONLY, true);
        /* One bit, in the second block: every block is hashed. */
        c->data[CHUNK_READ_BLOCK + 5] ^= 0x10;
        fd = open(c->path, O_WRONLY | O_CLOEXEC);
        assert_true(fd >= 0);
        assert_int_equal(pwrite(fd, &c->data[CHUNK_READ_BLOCK + 5], 1, CHUNK_READ_BLOCK + 5), 1);
        close(fd);
        assert_int_equal(read_all(c, &got), 0);
        assert_true(chunk_reader_complete(&c->rd));
        assert_false(chunk_reader_matches(&c->rd));
}

/* A file cut inside the chunk: whole blocks before the cut are handed out,
 * the cut one is not, and the chunk is neither complete nor a match. */
static void test_short_file_ends_early_without_the_cut_block(void **state)
{
        struct ctx *c = *state;

        start(c, 3 * CHUNK_READ_BLOCK, CHUNK_READ_BLOCK + CHUNK_READ_BLOCK / 2, HASH_MAX_LEN, O_RDONLY, true);
        assert_int_equal(chunk_reader_next(&c->rd), CHUNK_READ_BLOCK);
        assert_memory_equal(c->buf, c->data, CHUNK_READ_BLOCK);
        assert_int_equal(chunk_reader_next(&c->rd), 0);
        assert_false(chunk_reader_complete(&c->rd));
        assert_false(chunk_reader_matches(&c->rd));
}

/* Bytes past the chunk's size are not the reader's business (the store
 * checks the file size before reading). */
static void test_longer_file_read_to_the_chunk_size_only(void **state)
{
        struct ctx *c = *state;
        size_t got;

        start(c, CHUNK_READ_BLOCK + 10, CHUNK_READ_BLOCK + 10 + 4096, HASH_MAX_LEN, O_RDONLY, true);
        assert_int_equal(read_all(c, &got), 0);
        assert_int_equal(got, CHUNK_READ_BLOCK + 10);
        assert_true(chunk_reader_matches(&c->rd));
}

/* Without hashing (the chunk is known good) no verdict is given. */
static void test_no_hashing_gives_no_match(void **state)
{
        struct ctx *c = *state;
        size_t got;

        start(c, 1000, 1000, HASH_MAX_LEN, O_RDONLY, false);
        assert_int_equal(read_all(c, &got), 0);
        assert_true(chunk_reader_complete(&c->rd));
        assert_false(chunk_reader_matches(&c->rd));
}

static void test_read_error_is_negative_errno(void **state)
{
        struct ctx *c = *state;

        start(c, 1000, 1000, HASH_MAX_LEN, O_WRONLY, true); /* pread fails: EBADF */
        assert_int_equal(chunk_reader_next(&c->rd), -EBADF);
        assert_false(chunk_reader_complete(&c->rd));
        assert_false(chunk_reader_matches(&c->rd));
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_multi_block_chunk_read_whole_and_matches, setup, teardown),
                cmocka_unit_test_setup_teardown(test_empty_chunk_is_complete_at_once, setup, teardown),
                cmocka_unit_test_setup_teardown(test_truncated_hash_compared_on_its_length, setup, teardown),
                cmocka_unit_test_setup_teardown(test_changed_byte_does_not_match, setup, teardown),
                cmocka_unit_test_setup_teardown(test_short_file_ends_early_without_the_cut_block, setup, teardown),
                cmocka_unit_test_setup_teardown(test_longer_file_read_to_the_chunk_size_only, setup, teardown),
                cmocka_unit_test_setup_teardown(test_no_hashing_gives_no_match, setup, teardown),
                cmocka_unit_test_setup_teardown(test_read_error_is_negative_errno, setup, teardown),
        };

        return cmocka_run_group_tests(tests, group_setup, NULL);
}
