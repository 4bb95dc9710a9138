// SPDX-License-Identifier: MIT
/* units.c: size and integer arguments, and sizes for messages. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "units.h"

#include <errno.h>
#include <string.h>

static void size_ok(const char *s, uint64_t expect)
{
        uint64_t v = 0xdeadbeef;

        print_message("parse_size(\"%s\")\n", s);
        assert_int_equal(parse_size(s, &v), 0);
        assert_int_equal(v, expect);
}

static void size_bad(const char *s, int err)
{
        uint64_t v = 0xdeadbeef;

        print_message("parse_size(\"%s\")\n", s);
        assert_int_equal(parse_size(s, &v), err);
        assert_int_equal(v, 0xdeadbeef); /* untouched on failure */
}

static void test_parse_size(void **state)
{
        size_ok("64KiB", 64u << 10);
        size_ok("16MiB", 16u << 20);
        size_ok("1GiB", 1u << 30);
        size_ok("123", 123);
        size_ok("0", 0);
        size_ok("1K", 1024);
        size_ok("1k", 1024);
        size_ok("2KB", 2048);
        size_ok("3kib", 3072);
        size_ok("5M", 5u << 20);
        size_ok("5MB", 5u << 20);
        size_ok("7G", 7ull << 30);
        size_ok("4096B", 4096);
        size_ok("512b", 512);
        size_ok("18446744073709551615", UINT64_MAX);
        size_ok("17179869183G", 17179869183ull << 30); /* the largest that fits */

        size_bad("12x", -EINVAL);
        size_bad("", -EINVAL);
        size_bad("-1", -EINVAL);
        size_bad("+1", -EINVAL);
        size_bad("K", -EINVAL);
        size_bad("KiB", -EINVAL);
        size_bad("1T", -EINVAL);
        size_bad("1 KiB", -EINVAL);
        size_bad("1KiBx", -EINVAL);
        size_bad("1.5M", -EINVAL);
        size_bad("0x10", -EINVAL);
        size_bad("abc", -EINVAL);
        /* Leading junk that strtoull would skip or accept. */
        size_bad(" 1", -EINVAL);
        size_bad(" -1", -EINVAL);
        size_bad("\t-5K", -EINVAL);
        size_bad("\n2", -EINVAL);
        /* Overflow: of the number itself, and of the shift. */
        size_bad("18446744073709551616", -EINVAL);
        size_bad("99999999999999999999999", -EINVAL);
        size_bad("17179869184G", -ERANGE);
        size_bad("17592186044416M", -ERANGE);
        size_bad("18014398509481984K", -ERANGE);
        size_bad("18446744073709551615K", -ERANGE);
        assert_int_equal(parse_size(NULL, &(uint64_t){ 0 }), -EINVAL);
}

static void uint_ok(const char *s, uint64_t max, uint64_t expect)
{
        uint64_t v = 0xdeadbeef;

        print_message("parse_uint(\"%s\", %llu)\n", s, (unsigned long long)max);
        assert_int_equal(parse_uint(s, max, &v), 0);
        assert_int_equal(v, expect);
}

static void uint_bad(const char *s, uint64_t max)
{
        uint64_t v = 0xdeadbeef;

        print_message("parse_uint(\"%s\", %llu)\n", s, (unsigned long long)max);
        assert_int_equal(parse_uint(s, max, &v), -EINVAL);
        assert_int_equal(v, 0xdeadbeef);
}

static void test_parse_uint(void **state)
{
        uint_ok("0", 0, 0);
        uint_ok("0", 10, 0);
        uint_ok("10", 10, 10);
        uint_ok("256", 256, 256);
        uint_ok("86400", 86400, 86400);
        uint_ok("007", 10, 7);
        uint_ok("18446744073709551615", UINT64_MAX, UINT64_MAX);

        uint_bad("11", 10);
        uint_bad("257", 256);
        uint_bad("1", 0);
        uint_bad("", 10);
        uint_bad("-1", UINT64_MAX);
        uint_bad("+1", UINT64_MAX);
        uint_bad("-0", UINT64_MAX);
        uint_bad("1x", UINT64_MAX);
        uint_bad("1K", UINT64_MAX);
        uint_bad("x", UINT64_MAX);
        uint_bad("1 ", UINT64_MAX);
        uint_bad(" 1", UINT64_MAX);
        uint_bad(" -1", UINT64_MAX);
        uint_bad("\t-1", UINT64_MAX);
        uint_bad("18446744073709551616", UINT64_MAX);
        uint_bad("99999999999999999999", UINT64_MAX);
        assert_int_equal(parse_uint(NULL, 10, &(uint64_t){ 0 }), -EINVAL);
}

static void test_parse_uint_prefix(void **state)
{
        const char *end;
        uint64_t v;

        assert_int_equal(parse_uint_prefix("42\tx", &v, &end), 0);
        assert_int_equal(v, 42);
        assert_string_equal(end, "\tx");
        assert_int_equal(parse_uint_prefix("18446744073709551615", &v, &end), 0);
        assert_true(v == UINT64_MAX && *end == '\0');
        assert_int_equal(parse_uint_prefix("18446744073709551616", &v, &end), -EINVAL);
        assert_int_equal(parse_uint_prefix("", &v, &end), -EINVAL);
        assert_int_equal(parse_uint_prefix(" 1", &v, &end), -EINVAL);
        assert_int_equal(parse_uint_prefix("-1", &v, &end), -EINVAL);
        assert_int_equal(parse_uint_prefix("+1", &v, &end), -EINVAL);
}

static void test_format_size(void **state)
{
        char buf[32];

        assert_string_equal(format_size(0, buf, sizeof(buf)), "0 B");
        assert_ptr_equal(format_size(0, buf, sizeof(buf)), buf);
        assert_string_equal(format_size(1, buf, sizeof(buf)), "1 B");
        assert_string_equal(format_size(1023, buf, sizeof(buf)), "1023 B");
        assert_string_equal(format_size(1024, buf, sizeof(buf)), "1.00 KiB");
        assert_string_equal(format_size(1536, buf, sizeof(buf)), "1.50 KiB");
        assert_string_equal(format_size(64u << 10, buf, sizeof(buf)), "64.00 KiB");
        assert_string_equal(format_size((1u << 20) - 1, buf, sizeof(buf)), "1024.00 KiB");
        assert_string_equal(format_size(1u << 20, buf, sizeof(buf)), "1.00 MiB");
        assert_string_equal(format_size(3u << 19, buf, sizeof(buf)), "1.50 MiB");
        assert_string_equal(format_size(128u << 20, buf, sizeof(buf)), "128.00 MiB");
        assert_string_equal(format_size(1u << 30, buf, sizeof(buf)), "1.00 GiB");
        assert_string_equal(format_size(5ull << 40, buf, sizeof(buf)), "5.00 TiB");
        assert_string_equal(format_size(2048ull << 40, buf, sizeof(buf)), "2048.00 TiB");
        format_size(UINT64_MAX, buf, sizeof(buf));
        assert_string_equal(buf, "16777216.00 TiB");
        /* A short buffer is cut, never overrun. */
        char small[6];
        memset(small, 'z', sizeof(small));
        format_size(1536, small, 5);
        assert_string_equal(small, "1.50");
        assert_int_equal(small[5], 'z');
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_parse_size),
                cmocka_unit_test(test_parse_uint),
                cmocka_unit_test(test_parse_uint_prefix),
                cmocka_unit_test(test_format_size),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
