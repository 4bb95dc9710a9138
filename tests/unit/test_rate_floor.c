// SPDX-License-Identifier: MIT
/* rate_floor.c: the floor under a transfer's rate, fed the times and byte
 * counts a transfer's progress calls would give. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "rate_floor.h"

/* Progress calls every `every` seconds from `from` to `to` while bytes
 * come at `rate` a second (on top of *got): the time of the first call
 * that finds the rate below the floor, or -1. */
static double feed(struct rate_floor *f, double from, double to, double every, double rate, double *got)
{
        for (double t = from; t <= to + 1e-9; t += every) {
                *got += rate * every;
                if (rate_floor_below(f, t, (uint64_t)*got))
                        return t;
        }
        return -1;
}

static void test_a_drip_fails_once_a_window_has_passed(void **state)
{
        struct rate_floor f;
        double got = 0;
        (void)state;

        /* A byte every half second against 1 KiB/s over 30 s. */
        rate_floor_start(&f, 30, 1024);
        double at = feed(&f, 0.5, 100, 0.5, 2, &got);
        assert_true(at >= 30 && at <= 30 + 30.0 / RATE_FLOOR_STEPS + 0.5);
        assert_true(f.span_s >= 30 && f.span_bytes <= 70);
}

static void test_a_transfer_above_the_floor_never_fails(void **state)
{
        struct rate_floor f;
        double got = 0;
        (void)state;

        rate_floor_start(&f, 2, 1024);
        assert_true(feed(&f, 0.01, 120, 0.01, 1100, &got) < 0);
        /* Progress calls a second apart (libcurl's pace when little comes). */
        rate_floor_start(&f, 2, 1024);
        got = 0;
        assert_true(feed(&f, 1, 120, 1, 1030, &got) < 0);
}

static void test_a_trickle_after_a_fast_start_is_caught_a_window_later(void **state)
{
        struct rate_floor f;
        double got = 0;
        (void)state;

        /* 10 MB/s for 100 s, then 100 bytes a second. */
        rate_floor_start(&f, 10, 1024);
        assert_true(feed(&f, 0.1, 100, 0.1, 10e6, &got) < 0);
        double at = feed(&f, 100.1, 200, 0.1, 100, &got);
        assert_true(at > 100 && at <= 100 + 10 + 2 * 10.0 / RATE_FLOOR_STEPS + 0.2);
}

static void test_nothing_at_all_fails_with_the_window(void **state)
{
        struct rate_floor f;
        double got = 0;
        (void)state;

        /* Not a byte, calls a second apart: fails at the first call a
         * window after the start, not before. */
        rate_floor_start(&f, 5, 1);
        assert_true(feed(&f, 1, 4, 1, 0, &got) < 0);
        assert_true(feed(&f, 5, 5, 1, 0, &got) == 5);
        assert_true(f.span_s == 5 && f.span_bytes == 0);
}

static void test_no_floor_without_a_window_or_a_rate(void **state)
{
        struct rate_floor f;
        double got = 0;
        (void)state;

        rate_floor_start(&f, 0, 1024); /* --http-timeout 0 */
        assert_true(feed(&f, 1, 1000, 1, 0, &got) < 0);
        rate_floor_start(&f, 30, 0); /* --http-min-rate 0 */
        assert_true(feed(&f, 1, 1000, 1, 0, &got) < 0);
}

static void test_sparse_calls_judge_the_span_they_cover(void **state)
{
        struct rate_floor f;
        (void)state;

        /* Calls far apart: the span judged is the one the calls give, at
         * least a window long, and its average is what counts. */
        rate_floor_start(&f, 10, 100);
        assert_false(rate_floor_below(&f, 25, 2600)); /* 104 a second over 25 s */
        assert_false(rate_floor_below(&f, 40, 4100)); /* 100 a second over the last 15 s */
        assert_true(rate_floor_below(&f, 52, 5000));  /* 75 a second over the last 12 s */
        assert_true(f.span_s == 12 && f.span_bytes == 900);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_a_drip_fails_once_a_window_has_passed),
                cmocka_unit_test(test_a_transfer_above_the_floor_never_fails),
                cmocka_unit_test(test_a_trickle_after_a_fast_start_is_caught_a_window_later),
                cmocka_unit_test(test_nothing_at_all_fails_with_the_window),
                cmocka_unit_test(test_no_floor_without_a_window_or_a_rate),
                cmocka_unit_test(test_sparse_calls_judge_the_span_they_cover),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
