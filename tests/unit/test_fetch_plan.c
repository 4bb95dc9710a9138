// SPDX-License-Identifier: MIT
/* fetch_plan.c: grouping chunks into byte ranges. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "fetch_plan.h"

#include <stdlib.h>
#include <string.h>

/* Chunks at (offset, size); ptrs point into them in the given order. */
static void setup_chunks(struct chunk *c, const struct chunk **ptrs, const uint64_t (*place)[2], size_t n)
{
        memset(c, 0, n * sizeof(*c));
        for (size_t i = 0; i < n; i++) {
                c[i].archive_offset = place[i][0];
                c[i].archive_size = (uint32_t)place[i][1];
                c[i].source_size = (uint32_t)place[i][1] * 2;
                c[i].hash[0] = (uint8_t)i;
                ptrs[i] = &c[i];
        }
}

static void check_range(const struct fetch_range *r, uint64_t start, uint64_t len, size_t first, size_t count)
{
        assert_int_equal(r->start, start);
        assert_int_equal(r->len, len);
        assert_int_equal(r->first, first);
        assert_int_equal(r->count, count);
}

/* Every range covers exactly its chunks, back to back, in sorted order. */
static void check_consistent(const struct chunk **ptrs, size_t n, const struct fetch_range *r, size_t k,
                             uint64_t max_range)
{
        size_t next = 0;

        for (size_t i = 0; i < n; i++)
                if (i)
                        assert_true(ptrs[i - 1]->archive_offset <= ptrs[i]->archive_offset);
        for (size_t j = 0; j < k; j++) {
                uint64_t pos = r[j].start;
                assert_int_equal(r[j].first, next);
                assert_true(r[j].count >= 1);
                for (size_t i = r[j].first; i < r[j].first + r[j].count; i++) {
                        assert_int_equal(ptrs[i]->archive_offset, pos);
                        pos += ptrs[i]->archive_size;
                }
                assert_int_equal(pos, r[j].start + r[j].len);
                if (r[j].count > 1)
                        assert_true(r[j].len <= max_range);
                /* Not mergeable with the next one. */
                if (j + 1 < k)
                        assert_true(r[j].start + r[j].len != r[j + 1].start ||
                                    r[j].len + ptrs[r[j + 1].first]->archive_size > max_range);
                next += r[j].count;
        }
        assert_int_equal(next, n);
}

static void test_adjacent_coalesced(void **state)
{
        static const uint64_t place[][2] = { { 100, 10 }, { 110, 20 }, { 130, 30 }, { 160, 1 } };
        struct chunk c[4];
        const struct chunk *p[4];
        struct fetch_range *r = NULL;
        size_t k = 99;

        setup_chunks(c, p, place, 4);
        assert_int_equal(fetch_plan_build(p, 4, FETCH_MAX_RANGE, &r, &k), 0);
        assert_int_equal(k, 1);
        check_range(&r[0], 100, 61, 0, 4);
        check_consistent(p, 4, r, k, FETCH_MAX_RANGE);
        free(r);
}

static void test_gap_splits(void **state)
{
        static const uint64_t place[][2] = { { 0, 10 }, { 10, 10 }, { 21, 10 }, { 31, 5 }, { 1000, 7 } };
        struct chunk c[5];
        const struct chunk *p[5];
        struct fetch_range *r = NULL;
        size_t k = 0;

        setup_chunks(c, p, place, 5);
        assert_int_equal(fetch_plan_build(p, 5, FETCH_MAX_RANGE, &r, &k), 0);
        assert_int_equal(k, 3);
        check_range(&r[0], 0, 20, 0, 2);
        check_range(&r[1], 21, 15, 2, 2);
        check_range(&r[2], 1000, 7, 4, 1);
        check_consistent(p, 5, r, k, FETCH_MAX_RANGE);
        free(r);
}

static void test_cap_splits(void **state)
{
        /* Ten back-to-back chunks of 100 bytes, cap 250: ranges of 2. */
        uint64_t place[10][2];
        struct chunk c[10];
        const struct chunk *p[10];
        struct fetch_range *r = NULL;
        size_t k = 0;

        for (int i = 0; i < 10; i++) {
                place[i][0] = 5000 + 100 * (uint64_t)i;
                place[i][1] = 100;
        }
        setup_chunks(c, p, (const uint64_t(*)[2])place, 10);
        assert_int_equal(fetch_plan_build(p, 10, 250, &r, &k), 0);
        assert_int_equal(k, 5);
        for (size_t j = 0; j < 5; j++)
                check_range(&r[j], 5000 + 200 * j, 200, 2 * j, 2);
        check_consistent(p, 10, r, k, 250);
        free(r);

        /* A cap met exactly still coalesces. */
        setup_chunks(c, p, (const uint64_t(*)[2])place, 10);
        assert_int_equal(fetch_plan_build(p, 10, 300, &r, &k), 0);
        assert_int_equal(k, 4);
        check_range(&r[0], 5000, 300, 0, 3);
        check_range(&r[1], 5300, 300, 3, 3);
        check_range(&r[2], 5600, 300, 6, 3);
        check_range(&r[3], 5900, 100, 9, 1);
        free(r);

        /* The default cap over real-sized chunks. */
        for (int i = 0; i < 10; i++) {
                place[i][0] = 3 * (uint64_t)i << 20;
                place[i][1] = 3u << 20;
        }
        setup_chunks(c, p, (const uint64_t(*)[2])place, 10);
        assert_int_equal(fetch_plan_build(p, 10, FETCH_MAX_RANGE, &r, &k), 0);
        assert_int_equal(k, 5);
        for (size_t j = 0; j < 5; j++)
                check_range(&r[j], (uint64_t)6 * j << 20, 6u << 20, 2 * j, 2);
        check_consistent(p, 10, r, k, FETCH_MAX_RANGE);
        free(r);
}

static void test_oversized_chunk(void **state)
{
        static const uint64_t place[][2] = { { 0, 10 }, { 10, 1000 }, { 1010, 10 }, { 1020, 10 } };
        struct chunk c[4];
        const struct chunk *p[4];
        struct fetch_range *r = NULL;
        size_t k = 0;

        setup_chunks(c, p, place, 4);
        assert_int_equal(fetch_plan_build(p, 4, 100, &r, &k), 0);
        assert_int_equal(k, 3);
        check_range(&r[0], 0, 10, 0, 1);
        check_range(&r[1], 10, 1000, 1, 1);
        check_range(&r[2], 1010, 20, 2, 2);
        check_consistent(p, 4, r, k, 100);
        free(r);

        /* Alone, too. */
        setup_chunks(c, p, &place[1], 1);
        assert_int_equal(fetch_plan_build(p, 1, 100, &r, &k), 0);
        assert_int_equal(k, 1);
        check_range(&r[0], 10, 1000, 0, 1);
        free(r);
}

static void test_unsorted(void **state)
{
        static const uint64_t place[][2] = { { 300, 50 }, { 0, 100 }, { 1000, 1 }, { 100, 200 }, { 350, 5 } };
        struct chunk c[5];
        const struct chunk *p[5];
        struct fetch_range *r = NULL;
        size_t k = 0;

        setup_chunks(c, p, place, 5);
        assert_int_equal(fetch_plan_build(p, 5, FETCH_MAX_RANGE, &r, &k), 0);
        /* The pointer array itself is now sorted, and the ranges index it. */
        assert_ptr_equal(p[0], &c[1]);
        assert_ptr_equal(p[1], &c[3]);
        assert_ptr_equal(p[2], &c[0]);
        assert_ptr_equal(p[3], &c[4]);
        assert_ptr_equal(p[4], &c[2]);
        assert_int_equal(k, 2);
        check_range(&r[0], 0, 355, 0, 4);
        check_range(&r[1], 1000, 1, 4, 1);
        check_consistent(p, 5, r, k, FETCH_MAX_RANGE);
        free(r);
}

static void test_empty(void **state)
{
        struct chunk c;
        const struct chunk *p[1] = { &c };
        struct fetch_range *r = NULL;
        size_t k = 42;

        assert_int_equal(fetch_plan_build(p, 0, FETCH_MAX_RANGE, &r, &k), 0);
        assert_int_equal(k, 0);
        free(r);
}

/* Many chunks in random order, with gaps here and there. */
static void test_random(void **state)
{
        enum { N = 2000 };
        uint64_t (*place)[2] = calloc(N, sizeof(*place));
        struct chunk *c = calloc(N, sizeof(*c));
        const struct chunk **p = calloc(N, sizeof(*p));
        struct fetch_range *r = NULL;
        uint64_t pos = 1 << 20, x = 88172645463325252ull;
        size_t k = 0;

        assert_non_null(place);
        assert_non_null(c);
        assert_non_null(p);
        for (size_t i = 0; i < N; i++) {
                x ^= x << 13, x ^= x >> 7, x ^= x << 17;
                place[i][0] = pos;
                place[i][1] = 1 + x % 100000;
                pos += place[i][1] + (x % 7 == 0 ? 1 + x % 13 : 0);
        }
        /* Shuffle. */
        for (size_t i = N - 1; i > 0; i--) {
                x ^= x << 13, x ^= x >> 7, x ^= x << 17;
                size_t j = x % (i + 1);
                uint64_t t0 = place[i][0], t1 = place[i][1];
                place[i][0] = place[j][0], place[i][1] = place[j][1];
                place[j][0] = t0, place[j][1] = t1;
        }
        setup_chunks(c, p, (const uint64_t(*)[2])place, N);
        assert_int_equal(fetch_plan_build(p, N, 1u << 20, &r, &k), 0);
        assert_true(k > 1 && k < N);
        check_consistent(p, N, r, k, 1u << 20);
        free(r);
        free(p);
        free(c);
        free(place);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_adjacent_coalesced),
                cmocka_unit_test(test_gap_splits),
                cmocka_unit_test(test_cap_splits),
                cmocka_unit_test(test_oversized_chunk),
                cmocka_unit_test(test_unsorted),
                cmocka_unit_test(test_empty),
                cmocka_unit_test(test_random),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
