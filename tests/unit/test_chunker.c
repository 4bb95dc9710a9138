// SPDX-License-Identifier: MIT
/* The chunker against bita's own test vectors (tests/fixtures/golden), fed
 * whole and in odd-sized pieces: streaming must not move a boundary. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "chunker.h"
#include "hash.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define SUM_LEN 16 /* the vectors keep the first 16 bytes of each chunk's BLAKE2b-512 */

struct chunks {
        uint8_t (*sums)[SUM_LEN];
        size_t n, cap;
        uint64_t total;
};

static void chunks_add(struct chunks *c, hash_state *st, uint64_t size)
{
        uint8_t h[HASH_MAX_LEN];

        hash_final(st, h);
        if (c->n == c->cap) {
                c->cap = c->cap ? 2 * c->cap : 1024;
                c->sums = realloc(c->sums, c->cap * SUM_LEN);
                assert_non_null(c->sums);
        }
        memcpy(c->sums[c->n++], h, SUM_LEN);
        c->total += size;
        hash_init(st);
}

/* Pieces of `piece` bytes; piece 0 means a pseudo-random size for each piece. */
static void chunk_buffer(const struct chunker_params *p, const uint8_t *data, size_t len, size_t piece,
                         struct chunks *out)
{
        struct chunker *c = NULL;
        hash_state st;
        uint64_t chunk_size = 0;
        uint32_t rng = 12345;
        size_t off = 0;

        memset(out, 0, sizeof(*out));
        assert_int_equal(chunker_new(p, &c), 0);
        hash_init(&st);
        while (off < len) {
                size_t want = piece;
                if (want == 0) {
                        rng = rng * 1103515245u + 12345u;
                        want = 1 + (rng >> 16) % 5000;
                }
                size_t n = want < len - off ? want : len - off;
                const uint8_t *d = data + off;
                off += n;
                while (n > 0) {
                        bool boundary;
                        size_t k = chunker_scan(c, d, n, &boundary);
                        assert_true(k <= n);
                        assert_true(k > 0 || boundary);
                        hash_update(&st, d, k);
                        chunk_size += k;
                        d += k;
                        n -= k;
                        if (boundary) {
                                assert_true(chunk_size > 0);
                                assert_true(chunk_size <= p->max_chunk_size);
                                chunks_add(out, &st, chunk_size);
                                chunk_size = 0;
                        }
                }
        }
        if (chunk_size > 0)
                chunks_add(out, &st, chunk_size);
        chunker_free(c);
}

static uint8_t *read_whole(const char *path, size_t *len)
{
        struct stat st;
        int fd = open(path, O_RDONLY);
        uint8_t *buf;

        assert_true(fd >= 0);
        assert_int_equal(fstat(fd, &st), 0);
        buf = malloc(st.st_size ? st.st_size : 1);
        assert_non_null(buf);
        assert_int_equal(read(fd, buf, st.st_size), st.st_size);
        close(fd);
        *len = st.st_size;
        return buf;
}

static const char *fixtures(void)
{
        const char *f = getenv("FIXTURES");
        return f ? f : "tests/fixtures";
}

/* bita's tests/chunking.rs: <algo>_<source>_<avg>_<min>_<max>_<window>.sums
 * with the filter from the average as FilterBits::from_size, or
 * fixed_<source>_<size>.sums. */
static bool params_from_name(const char *name, struct chunker_params *p, char *source, size_t source_len)
{
        char algo[16], src[32];
        unsigned avg, min, max, win, size;

        memset(p, 0, sizeof(*p));
        if (sscanf(name, "fixed_%31[a-z]_%u.sums", src, &size) == 2) {
                p->algorithm = CHUNKING_FIXED_SIZE;
                p->max_chunk_size = size;
        } else if (sscanf(name, "%15[a-z]_%31[a-z]_%u_%u_%u_%u.sums", algo, src, &avg, &min, &max, &win) == 6) {
                if (strcmp(algo, "rollsum") == 0)
                        p->algorithm = CHUNKING_ROLLSUM;
                else if (strcmp(algo, "buzhash") == 0)
                        p->algorithm = CHUNKING_BUZHASH;
                else
                        return false;
                p->filter_bits = chunker_filter_bits_for_average(avg);
                p->min_chunk_size = min;
                p->max_chunk_size = max;
                p->window_size = win;
        } else {
                return false;
        }
        snprintf(source, source_len, "%s.img", src);
        return true;
}

static int seen[3];

static void check_golden(const char *name)
{
        struct chunker_params p;
        char source[64], path[4096];
        size_t img_len, sums_len;
        static const size_t pieces[] = { 1 << 20, 1, 7, 0, 4096 };

        assert_true(params_from_name(name, &p, source, sizeof(source)));
        snprintf(path, sizeof(path), "%s/%s", fixtures(), source);
        uint8_t *img = read_whole(path, &img_len);
        snprintf(path, sizeof(path), "%s/golden/%s", fixtures(), name);
        uint8_t *sums = read_whole(path, &sums_len);
        assert_true(sums_len > 0 && sums_len % SUM_LEN == 0);

        for (size_t i = 0; i < sizeof(pieces) / sizeof(pieces[0]); i++) {
                struct chunks c;
                chunk_buffer(&p, img, img_len, pieces[i], &c);
                if (c.n != sums_len / SUM_LEN || memcmp(c.sums, sums, sums_len) != 0) {
                        size_t j = 0;
                        while (j < c.n && j < sums_len / SUM_LEN && memcmp(c.sums[j], sums + j * SUM_LEN, SUM_LEN) == 0)
                                j++;
                        fail_msg("%s, pieces of %zu: %zu chunks, bita's vector has %zu; first difference at chunk %zu",
                                 name, pieces[i], c.n, sums_len / SUM_LEN, j);
                }
                assert_int_equal(c.total, img_len);
                free(c.sums);
        }
        seen[p.algorithm]++;
        free(img);
        free(sums);
}

static void test_golden_vectors(void **state)
{
        char dir[4096];
        DIR *d;
        struct dirent *e;
        size_t n = 0;

        (void)state;
        snprintf(dir, sizeof(dir), "%s/golden", fixtures());
        d = opendir(dir);
        assert_non_null(d);
        while ((e = readdir(d))) {
                size_t l = strlen(e->d_name);
                if (l < 5 || strcmp(e->d_name + l - 5, ".sums") != 0)
                        continue;
                check_golden(e->d_name);
                n++;
        }
        closedir(d);
        /* bita ships 6 vectors per chunker; all three chunkers are covered. */
        assert_int_equal(n, 18);
        assert_int_equal(seen[CHUNKING_ROLLSUM], 6);
        assert_int_equal(seen[CHUNKING_BUZHASH], 6);
        assert_int_equal(seen[CHUNKING_FIXED_SIZE], 6);
}

static void test_filter_bits_as_bita(void **state)
{
        (void)state;
        /* bita's CLI test: the 64 KiB default average is FilterBits(15). */
        assert_int_equal(chunker_filter_bits_for_average(64 << 10), 15);
        assert_int_equal(chunker_filter_bits_for_average(256), 7);
        assert_int_equal(chunker_filter_bits_for_average(1023), 8); /* rounded down to 512 */
        assert_int_equal(chunker_average_for_filter_bits(15), 64 << 10);
}

static const struct chunker_params small_rolling[] = {
        /* bita's streaming_chunker tests: sources smaller than the window
         * and than the minimum chunk come out as one chunk. */
        { CHUNKING_ROLLSUM, 5, 0, 40, 10, 64 },
        { CHUNKING_BUZHASH, 5, 0, 40, 10, 64 },
        { CHUNKING_ROLLSUM, 5, 10, 40, 5, 64 },
        { CHUNKING_BUZHASH, 5, 10, 40, 5, 64 },
        { CHUNKING_FIXED_SIZE, 0, 0, 40, 0, 64 },
};

static void test_small_inputs(void **state)
{
        static const uint8_t src[5] = { 0x1f, 0x55, 0x39, 0x5e, 0xfa };
        (void)state;

        for (size_t i = 0; i < sizeof(small_rolling) / sizeof(small_rolling[0]); i++) {
                struct chunks c;
                chunk_buffer(&small_rolling[i], src, sizeof(src), 1, &c);
                assert_int_equal(c.n, 1);
                assert_int_equal(c.total, sizeof(src));
                free(c.sums);
                chunk_buffer(&small_rolling[i], src, 0, 1, &c);
                assert_int_equal(c.n, 0); /* empty input, no chunk */
                free(c.sums);
        }
}

/* bita's single_byte_per_source_read data; one byte at a time and all at
 * once must agree, for chunks that end at max size and by the hash. */
static void test_pieces_agree_on_generated_data(void **state)
{
        static const struct chunker_params params[] = {
                { CHUNKING_ROLLSUM, 10, 20, 600, 10, 64 },
                { CHUNKING_BUZHASH, 10, 20, 600, 10, 64 },
                { CHUNKING_BUZHASH, 4, 3, 64, 64, 64 }, /* warm-up of a whole max-size chunk */
        };
        uint8_t data[10000];
        size_t seed = 0xa3;
        (void)state;

        for (size_t v = 0; v < sizeof(data); v++) {
                seed ^= seed * 4;
                data[v] = (uint8_t)(seed ^ v);
        }
        for (size_t i = 0; i < sizeof(params) / sizeof(params[0]); i++) {
                struct chunks whole, bytes;
                chunk_buffer(&params[i], data, sizeof(data), sizeof(data), &whole);
                chunk_buffer(&params[i], data, sizeof(data), 1, &bytes);
                assert_true(whole.n > 1);
                assert_int_equal(whole.n, bytes.n);
                assert_memory_equal(whole.sums, bytes.sums, whole.n * SUM_LEN);
                free(whole.sums);
                free(bytes.sums);
        }
}

/* Runs of one byte, as in the unused space of a disk image (zeros, 0xff of
 * erased flash), are skipped over when fed in large pieces and hashed byte
 * by byte when fed one byte at a time: both must find the same boundaries,
 * around runs of every length near the window, the interval the chunker
 * checks for runs, and min and max, and with windows too large for the
 * skip. */
static void test_byte_runs_cut_as_byte_by_byte(void **state)
{
        static const struct chunker_params params[] = {
                { CHUNKING_ROLLSUM, 12, 2048, 256 << 10, 64, 64 },
                { CHUNKING_ROLLSUM, 12, 0, 256 << 10, 4096, 64 },
                { CHUNKING_ROLLSUM, 12, 8192, 256 << 10, 5000, 64 },
                { CHUNKING_ROLLSUM, 15, 16 << 10, 1 << 20, 64, 64 },
                { CHUNKING_BUZHASH, 12, 2048, 256 << 10, 16, 64 },
                { CHUNKING_BUZHASH, 12, 0, 256 << 10, 64, 64 },
        };
        static const size_t runs[] = { 1, 15, 16, 17, 63, 64, 65, 66, 4095, 4096, 4097, 8200, 20000,
                                       300000, 1100000 };
        static const uint8_t fill[] = { 0x00, 0xff, 0x00, 0x55 };
        const size_t len = 8 << 20;
        uint8_t *data = calloc(1, len);
        uint32_t rng = 99;
        size_t off = 0, max_size_chunks = 0;
        (void)state;

        assert_non_null(data);
        for (size_t r = 0; off < len; r++) {
                rng = rng * 1103515245u + 12345u;
                size_t n = 1 + (rng >> 8) % 40000;
                for (size_t i = 0; i < n && off < len; i++) {
                        rng = rng * 1103515245u + 12345u;
                        data[off++] = (uint8_t)(rng >> 24);
                }
                size_t run = runs[r % (sizeof(runs) / sizeof(runs[0]))];
                if (run > len - off)
                        run = len - off;
                memset(data + off, fill[r % sizeof(fill)], run);
                off += run;
        }
        for (size_t i = 0; i < sizeof(params) / sizeof(params[0]); i++) {
                struct chunks whole, bytes, pieces;
                chunk_buffer(&params[i], data, len, len, &whole);
                chunk_buffer(&params[i], data, len, 1, &bytes);
                chunk_buffer(&params[i], data, len, 0, &pieces);
                assert_true(whole.n > 10);
                assert_int_equal(whole.n, bytes.n);
                assert_memory_equal(whole.sums, bytes.sums, whole.n * SUM_LEN);
                assert_int_equal(whole.n, pieces.n);
                assert_memory_equal(whole.sums, pieces.sums, whole.n * SUM_LEN);
                free(whole.sums);
                free(bytes.sums);
                free(pieces.sums);
        }
        /* The long runs do give chunks cut at the maximum inside them. */
        struct chunker *c = NULL;
        assert_int_equal(chunker_new(&params[0], &c), 0);
        for (size_t pos = 0, start = 0; pos < len;) {
                bool boundary;
                pos += chunker_scan(c, data + pos, len - pos, &boundary);
                if (boundary) {
                        max_size_chunks += pos - start == params[0].max_chunk_size;
                        start = pos;
                }
        }
        chunker_free(c);
        assert_true(max_size_chunks > 0);
        free(data);
}

static void test_bad_params_refused(void **state)
{
        static const struct chunker_params bad[] = {
                { CHUNKING_ROLLSUM, 0, 16, 1024, 64, 64 },     /* no filter bits */
                { CHUNKING_ROLLSUM, 15, 16, 1024, 0, 64 },     /* empty window */
                { CHUNKING_BUZHASH, 15, 16, 32, 64, 64 },      /* window over max */
                { CHUNKING_ROLLSUM, 15, 2048, 1024, 64, 64 },  /* min over max */
                { CHUNKING_FIXED_SIZE, 0, 0, 0, 0, 64 },       /* fixed size 0 */
                { CHUNKING_FIXED_SIZE, 0, 0, (1u << 30) + 1, 0, 64 },
        };
        (void)state;

        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                struct chunker *c = NULL;
                assert_int_equal(chunker_new(&bad[i], &c), -EINVAL);
                assert_null(c);
        }
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_golden_vectors),
                cmocka_unit_test(test_filter_bits_as_bita),
                cmocka_unit_test(test_small_inputs),
                cmocka_unit_test(test_pieces_agree_on_generated_data),
                cmocka_unit_test(test_byte_runs_cut_as_byte_by_byte),
                cmocka_unit_test(test_bad_params_refused),
        };

        if (hash_init_library() < 0)
                return 1;
        return cmocka_run_group_tests(tests, NULL, NULL);
}
