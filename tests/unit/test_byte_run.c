// SPDX-License-Identifier: MIT
/* byte_run_length against the obvious byte loop: every length around the
 * 64-byte blocks it tests at once, the first other byte at every position,
 * and unaligned starts. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "byte_run.h"

#include <string.h>

static size_t slow_run(const uint8_t *d, size_t len, uint8_t b)
{
        size_t i = 0;

        while (i < len && d[i] == b)
                i++;
        return i;
}

static void test_matches_a_byte_loop(void **state)
{
        static const uint8_t bytes[] = { 0x00, 0xff, 0x55, 0x01 };
        uint8_t buf[300 + 8];
        (void)state;

        for (size_t bi = 0; bi < sizeof(bytes); bi++) {
                uint8_t b = bytes[bi];
                for (size_t start = 0; start < 8; start++) {
                        uint8_t *d = buf + start;
                        for (size_t len = 0; len <= 300; len += (len < 140 ? 1 : 7)) {
                                memset(buf, b, sizeof(buf));
                                assert_int_equal(byte_run_length(d, len, b), len);
                                assert_true(byte_run_all(d, len, b));
                                for (size_t other = 0; other < len; other++) {
                                        /* one bit off, the smallest difference */
                                        d[other] = (uint8_t)(b ^ (1u << (other % 8)));
                                        assert_int_equal(byte_run_length(d, len, b), other);
                                        assert_int_equal(byte_run_length(d, len, b), slow_run(d, len, b));
                                        assert_false(byte_run_all(d, len, b));
                                        d[other] = b;
                                }
                        }
                }
        }
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_matches_a_byte_loop),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
