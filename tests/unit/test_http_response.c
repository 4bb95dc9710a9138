// SPDX-License-Identifier: MIT
/* http_response.c: header lines from an untrusted server (Content-Range,
 * Retry-After, status lines), and whether a response can be used. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "http_response.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Sun, 06 Nov 1994 08:49:37 GMT, RFC 9110's example date. */
#define NOW ((time_t)784111777)

/* Feeds a line from a buffer of exactly its length, so that a read past
 * the end (a NUL assumed) is caught by ASan. */
static void feed_n(struct http_response *r, const char *line, size_t len)
{
        char *copy = malloc(len ? len : 1);

        assert_non_null(copy);
        memcpy(copy, line, len);
        http_response_header(r, copy, len, NOW);
        free(copy);
}

static void feed(struct http_response *r, const char *line)
{
        feed_n(r, line, strlen(line));
}

static struct http_response with_line(const char *line)
{
        struct http_response r;

        http_response_init(&r);
        print_message("%s\n", line);
        feed(&r, line);
        return r;
}

static void range_ok(const char *line, uint64_t first, uint64_t last, bool total_known, uint64_t total)
{
        struct http_response r = with_line(line);

        assert_true(r.range_seen);
        assert_true(r.range_valid);
        assert_true(r.range_first == first);
        assert_true(r.range_last == last);
        assert_int_equal(r.total_known, total_known);
        if (total_known)
                assert_true(r.range_total == total);
}

static void range_bad(const char *line)
{
        struct http_response r = with_line(line);

        assert_true(r.range_seen);
        assert_false(r.range_valid);
}

static void not_a_range(const char *line)
{
        struct http_response r = with_line(line);

        assert_false(r.range_seen);
}

static void test_content_range_forms(void **state)
{
        range_ok("Content-Range: bytes 0-9/100\r\n", 0, 9, true, 100);
        range_ok("Content-Range: bytes 0-9/100\n", 0, 9, true, 100);
        range_ok("Content-Range: bytes 0-9/100", 0, 9, true, 100);
        range_ok("content-range: Bytes 5-5/6\r\n", 5, 5, true, 6);
        range_ok("CONTENT-RANGE:bytes 1-2/3\r\n", 1, 2, true, 3);
        range_ok("Content-Range: \t bytes 0-9/100 \t\r\n", 0, 9, true, 100);
        range_ok("Content-Range: bytes 10-19/*\r\n", 10, 19, false, 0);
        range_ok("Content-Range: bytes 0000000000000000000000000000000007-9/0000000000000000000000010\r\n", 7, 9,
                 true, 10);
        range_ok("Content-Range: bytes 0-18446744073709551614/18446744073709551615\r\n", 0, UINT64_MAX - 1, true,
                 UINT64_MAX);
        range_ok("Content-Range: bytes 18446744073709551606-18446744073709551615/*\r\n", UINT64_MAX - 9,
                 UINT64_MAX, false, 0);
}

static void test_content_range_refused(void **state)
{
        /* numbers that do not fit, negative or signed numbers */
        range_bad("Content-Range: bytes 0-18446744073709551616/18446744073709551617\r\n");
        range_bad("Content-Range: bytes 0-9/18446744073709551616\r\n");
        range_bad("Content-Range: bytes 99999999999999999999999999-9/100\r\n");
        range_bad("Content-Range: bytes -1-9/100\r\n");
        range_bad("Content-Range: bytes 0--9/100\r\n");
        range_bad("Content-Range: bytes +0-9/100\r\n");
        range_bad("Content-Range: bytes 0-9/-100\r\n");
        /* ranges that are not within the resource, or backwards */
        range_bad("Content-Range: bytes 9-0/100\r\n");
        range_bad("Content-Range: bytes 0-100/100\r\n");
        range_bad("Content-Range: bytes 0-0/0\r\n");
        /* garbage */
        range_bad("Content-Range: bytes 0-9/100x\r\n");
        range_bad("Content-Range: bytes 0-9/100 junk\r\n");
        range_bad("Content-Range: bytes 0-9/100, bytes 10-19/100\r\n");
        range_bad("Content-Range: bytes 0-9\r\n");
        range_bad("Content-Range: bytes 0-9/\r\n");
        range_bad("Content-Range: bytes 0x0-9/100\r\n");
        range_bad("Content-Range: bytes 0 - 9/100\r\n");
        range_bad("Content-Range: bytes 0-9 /100\r\n");
        range_bad("Content-Range: bytes 0-9/**\r\n");
        range_bad("Content-Range: bytes0-9/100\r\n");
        range_bad("Content-Range: items 0-9/100\r\n");
        range_bad("Content-Range: 0-9/100\r\n");
        range_bad("Content-Range: bytes */100\r\n");
        range_bad("Content-Range: \r\n");
        range_bad("Content-Range:");
        range_bad("Content-Range: bytes 0-9/100\r\n\r\n\x01");
        range_bad("Content-Range: bytes \xff-9/100\r\n");
        /* not the header at all */
        not_a_range("Content-Range : bytes 0-9/100\r\n");
        not_a_range("X-Content-Range: bytes 0-9/100\r\n");
        not_a_range("Content-Ranges: bytes 0-9/100\r\n");
        not_a_range(" Content-Range: bytes 0-9/100\r\n");
        not_a_range("Content-Range bytes 0-9/100\r\n");
        not_a_range("\r\n");
        not_a_range("");
}

static void test_content_range_bytes_not_lines(void **state)
{
        struct http_response r;
        static const char nul[] = "Content-Range: bytes 0-9/1\0" "00\r\n";

        /* Only the length given is read: the "0" after it is not part of the total. */
        http_response_init(&r);
        feed_n(&r, "Content-Range: bytes 0-9/100" "0", strlen("Content-Range: bytes 0-9/100"));
        assert_true(r.range_valid);
        assert_true(r.range_total == 100);

        /* A NUL inside the line is a byte like any other: garbage. */
        http_response_init(&r);
        feed_n(&r, nul, sizeof(nul) - 1);
        assert_true(r.range_seen);
        assert_false(r.range_valid);

        /* A line cut anywhere never reads past its end. */
        const char *full = "Content-Range: bytes 12345-67890/99999\r\n";
        for (size_t n = 0; n <= strlen(full); n++) {
                http_response_init(&r);
                feed_n(&r, full, n);
                assert_true(r.range_valid == (n >= strlen("Content-Range: bytes 12345-67890/99999")));
        }
}

static void test_two_content_ranges_are_refused(void **state)
{
        struct http_response r;

        http_response_init(&r);
        feed(&r, "Content-Range: bytes 0-9/100\r\n");
        feed(&r, "Content-Range: bytes 0-9/100\r\n");
        assert_true(r.range_seen);
        assert_false(r.range_valid);
}

static void test_status_line_starts_a_new_response(void **state)
{
        struct http_response r;

        http_response_init(&r);
        feed(&r, "HTTP/1.1 302 Found\r\n");
        feed(&r, "Content-Range: bytes 0-9/100\r\n");
        feed(&r, "Retry-After: 7\r\n");
        assert_true(r.range_valid);
        assert_int_equal(r.retry_after_s, 7);
        feed(&r, "HTTP/2 206\r\n");
        assert_false(r.range_seen);
        assert_int_equal(r.retry_after_s, 0);
        feed(&r, "Content-Range: bytes 10-19/100\r\n");
        assert_true(r.range_valid);
        assert_true(r.range_first == 10);
        /* "HTTP/" only at the start of a line, and case-sensitive */
        feed(&r, "X-Note: HTTP/1.1 200\r\n");
        feed(&r, "http/1.1 200\r\n");
        assert_true(r.range_valid);
}

static unsigned retry_after(const char *value)
{
        char line[256];
        struct http_response r;

        snprintf(line, sizeof(line), "Retry-After: %s\r\n", value);
        r = with_line(line);
        return r.retry_after_s;
}

static void test_retry_after_seconds(void **state)
{
        assert_int_equal(retry_after("5"), 5);
        assert_int_equal(retry_after("0"), 0);
        assert_int_equal(retry_after(" \t 7 \t"), 7);
        assert_int_equal(retry_after("60"), 60);
        assert_int_equal(retry_after("61"), HTTP_MAX_RETRY_AFTER_S);
        assert_int_equal(retry_after("86400"), HTTP_MAX_RETRY_AFTER_S);
        /* 2^32 + 5: read as 32 bits, it would be 5 */
        assert_int_equal(retry_after("4294967301"), HTTP_MAX_RETRY_AFTER_S);
        assert_int_equal(retry_after("99999999999999999999999999999999999999"), HTTP_MAX_RETRY_AFTER_S);
        assert_int_equal(retry_after("0000000000000000000000000000000000003"), 3);
        /* not delta-seconds, not a date: ignored */
        assert_int_equal(retry_after("-5"), 0);
        assert_int_equal(retry_after("+5"), 0);
        assert_int_equal(retry_after("5s"), 0);
        assert_int_equal(retry_after("5 6"), 0);
        assert_int_equal(retry_after("5.0"), 0);
        assert_int_equal(retry_after(""), 0);
        assert_int_equal(retry_after("soon"), 0);
        assert_int_equal(with_line("retry-after: 9").retry_after_s, 9);
        assert_int_equal(with_line("Retry-After : 9").retry_after_s, 0);
}

static void test_retry_after_ignored_value_keeps_the_last(void **state)
{
        struct http_response r;

        http_response_init(&r);
        feed(&r, "Retry-After: 5\r\n");
        feed(&r, "Retry-After: later\r\n");
        assert_int_equal(r.retry_after_s, 5);
        feed(&r, "Retry-After: 9\r\n");
        assert_int_equal(r.retry_after_s, 9);
}

static void test_retry_after_http_date(void **state)
{
        /* NOW is Sun, 06 Nov 1994 08:49:37 GMT */
        assert_int_equal(retry_after("Sun, 06 Nov 1994 08:50:07 GMT"), 30);
        assert_int_equal(retry_after("Sun, 06 Nov 1994 08:49:37 GMT"), 0);
        assert_int_equal(retry_after("Sun, 06 Nov 1994 08:49:07 GMT"), 0); /* in the past */
        assert_int_equal(retry_after("Thu, 01 Jan 1970 00:00:00 GMT"), 0);
        assert_int_equal(retry_after("Sun, 06 Nov 1994 09:49:37 GMT"), HTTP_MAX_RETRY_AFTER_S);
        assert_int_equal(retry_after("Fri, 31 Dec 9999 23:59:59 GMT"), HTTP_MAX_RETRY_AFTER_S);
        assert_int_equal(retry_after("Mon, 07 Nov 1994 00:00:00 GMT"), HTTP_MAX_RETRY_AFTER_S);
        assert_int_equal(retry_after("Sun, 06 Nov 1994 08:50:37 GMT"), 60);
        /* the two obsolete forms recipients must accept */
        assert_int_equal(retry_after("Sunday, 06-Nov-94 08:49:47 GMT"), 10);
        assert_int_equal(retry_after("Sun Nov  6 08:49:57 1994"), 20);
        assert_int_equal(retry_after("Sun Nov 06 08:49:57 1994"), 20);
        /* dates that do not exist, or are not HTTP-dates: ignored */
        assert_int_equal(retry_after("Sun, 31 Feb 1994 08:50:07 GMT"), 0);
        assert_int_equal(retry_after("Sun, 06 Nov 1994 24:00:00 GMT"), 0);
        assert_int_equal(retry_after("Sun, 06 Nov 1994 08:60:00 GMT"), 0);
        assert_int_equal(retry_after("Sun, 00 Nov 1994 08:50:07 GMT"), 0);
        assert_int_equal(retry_after("Sun, 06 Nov 1994 08:50:07 UTC"), 0);
        assert_int_equal(retry_after("Sun, 06 Nov 1994 08:50:07"), 0);
        assert_int_equal(retry_after("Sun, 6 Nov 1994 08:50:07 GMT"), 0);
        assert_int_equal(retry_after("sun, 06 nov 1994 08:50:07 GMT"), 0);
        assert_int_equal(retry_after("Sun, 06 Nov 1994 08:50:07 GMT junk"), 0);
        assert_int_equal(retry_after("Sun, 06 Nov 94 08:50:07 GMT"), 0);
        assert_int_equal(retry_after("Xyz, 06 Nov 1994 08:50:07 GMT"), 0);
        assert_int_equal(retry_after("Sun, 06 Nov 1994 -8:50:07 GMT"), 0);
}

static unsigned retry_after_at(const char *value, time_t now)
{
        char line[256];
        struct http_response r;

        snprintf(line, sizeof(line), "Retry-After: %s", value);
        http_response_init(&r);
        http_response_header(&r, line, strlen(line), now);
        return r.retry_after_s;
}

static void test_retry_after_leap_years_and_centuries(void **state)
{
        /* 2000-02-29 23:59:30 GMT */
        time_t leap = 951868770;

        assert_int_equal(retry_after_at("Wed, 01 Mar 2000 00:00:00 GMT", leap), 30);
        assert_int_equal(retry_after_at("Tue, 29 Feb 2000 23:59:40 GMT", leap), 10);
        /* 2100 is no leap year: no such day, ignored */
        assert_int_equal(retry_after_at("Mon, 29 Feb 2100 00:00:00 GMT", leap), 0);
        /* a two-digit year more than 50 years ahead is in the last century */
        assert_int_equal(retry_after_at("Wednesday, 01-Mar-00 00:00:00 GMT", leap), 30);
        assert_int_equal(retry_after_at("Monday, 01-Mar-49 00:00:00 GMT", leap), HTTP_MAX_RETRY_AFTER_S);
        assert_int_equal(retry_after_at("Monday, 01-Mar-99 00:00:10 GMT", leap), 0); /* 1999, not 2099 */
        /* any clock, even a nonsensical one, gives a bounded answer; the
         * extremes are time_t's own (32 bits on armhf before Debian 13) */
        const time_t min = sizeof(time_t) == 8 ? (time_t)INT64_MIN : (time_t)INT32_MIN;
        const time_t max = sizeof(time_t) == 8 ? (time_t)INT64_MAX : (time_t)INT32_MAX;
        assert_int_equal(retry_after_at("Fri, 31 Dec 9999 23:59:59 GMT", min), HTTP_MAX_RETRY_AFTER_S);
        assert_int_equal(retry_after_at("Thu, 01 Jan 1970 00:00:00 GMT", max), 0);
        assert_int_equal(retry_after_at("Sunday, 06-Nov-94 08:49:47 GMT", max), 0);
        /* A clock gmtime cannot read counts as 1970 ("94" is 1994, ahead);
         * 32-bit time_t's least is 1901-12-13, where "94" is 1894, past. */
        assert_int_equal(retry_after_at("Sunday, 06-Nov-94 08:49:47 GMT", min),
                         sizeof(time_t) == 8 ? HTTP_MAX_RETRY_AFTER_S : 0);
        /* past 2038 on a 32-bit clock: a date after it is still ahead */
        assert_int_equal(retry_after_at("Tue, 19 Jan 2038 03:14:17 GMT", (time_t)2147483637), 20);
}

static enum http_verdict check(const char *range_line, long status, uint64_t start, uint64_t len, bool need_total,
                               const char *reason_needle)
{
        struct http_response r;
        char reason[256] = "";
        enum http_verdict v;

        http_response_init(&r);
        if (range_line)
                feed(&r, range_line);
        v = http_response_check(&r, status, start, len, need_total, reason, sizeof(reason));
        print_message("%ld %s -> %d: %s\n", status, range_line ? range_line : "(no range)", v, reason);
        if (reason_needle)
                assert_non_null(strstr(reason, reason_needle));
        else
                assert_string_equal(reason, "");
        return v;
}

static void test_check_status(void **state)
{
        const char *ok = "Content-Range: bytes 0-9/100";

        assert_int_equal(check(ok, 206, 0, 10, true, NULL), HTTP_VERDICT_OK);
        assert_int_equal(check(NULL, 200, 0, 10, true, "answered 200, not 206"), HTTP_VERDICT_NO_RANGES);
        assert_int_equal(check(ok, 200, 0, 10, true, "range support"), HTTP_VERDICT_NO_RANGES);
        assert_int_equal(check(NULL, 404, 0, 10, true, "HTTP status 404"), HTTP_VERDICT_PERMANENT);
        assert_int_equal(check(NULL, 403, 0, 10, true, "HTTP status 403"), HTTP_VERDICT_PERMANENT);
        assert_int_equal(check("Content-Range: bytes */100", 416, 0, 10, true, "HTTP status 416"),
                         HTTP_VERDICT_PERMANENT);
        assert_int_equal(check(NULL, 408, 0, 10, true, "HTTP status 408"), HTTP_VERDICT_RETRY);
        assert_int_equal(check(NULL, 429, 0, 10, true, "HTTP status 429"), HTTP_VERDICT_RETRY);
        assert_int_equal(check(NULL, 500, 0, 10, true, "HTTP status 500"), HTTP_VERDICT_RETRY);
        assert_int_equal(check(NULL, 503, 0, 10, true, "HTTP status 503"), HTTP_VERDICT_RETRY);
        assert_int_equal(check(ok, 302, 0, 10, true, "HTTP status 302"), HTTP_VERDICT_RETRY);
        assert_int_equal(check(ok, 0, 0, 10, true, "HTTP status 0"), HTTP_VERDICT_RETRY);
        assert_int_equal(check(ok, -1, 0, 10, true, "HTTP status -1"), HTTP_VERDICT_RETRY);
}

static void test_check_range(void **state)
{
        assert_int_equal(check(NULL, 206, 0, 10, true, "no Content-Range (asked for bytes 0-9)"),
                         HTTP_VERDICT_RETRY);
        assert_int_equal(check("Content-Range: bytes 0-9/100x", 206, 0, 10, true, "malformed Content-Range"),
                         HTTP_VERDICT_RETRY);
        assert_int_equal(check("Content-Range: bytes 1-10/100", 206, 0, 10, true,
                               "wrong Content-Range (asked for bytes 0-9, got 1-10)"),
                         HTTP_VERDICT_RETRY);
        assert_int_equal(check("Content-Range: bytes 0-8/100", 206, 0, 10, true, "got 0-8"), HTTP_VERDICT_RETRY);
        assert_int_equal(check("Content-Range: bytes 0-10/100", 206, 0, 10, true, "got 0-10"), HTTP_VERDICT_RETRY);
        assert_int_equal(check("Content-Range: bytes 90-99/100", 206, 90, 10, true, NULL), HTTP_VERDICT_OK);
        /* the range runs past the resource's end */
        assert_int_equal(check("Content-Range: bytes 90-100/100", 206, 90, 11, true, "malformed"),
                         HTTP_VERDICT_RETRY);
        /* a "*" total: fine unless the size is needed */
        assert_int_equal(check("Content-Range: bytes 0-9/*", 206, 0, 10, false, NULL), HTTP_VERDICT_OK);
        assert_int_equal(check("Content-Range: bytes 0-9/*", 206, 0, 10, true, "did not say"),
                         HTTP_VERDICT_PERMANENT);
        /* the very end of the number range */
        assert_int_equal(check("Content-Range: bytes 18446744073709551606-18446744073709551615/*", 206,
                               UINT64_MAX - 9, 10, false, NULL),
                         HTTP_VERDICT_OK);
}

static void test_check_impossible_requests(void **state)
{
        /* Numbers no caller passes, but a fuzzer will: no overflow, a clear no. */
        assert_int_equal(check("Content-Range: bytes 0-9/100", 206, 0, 0, true, "no range of 0 bytes"),
                         HTTP_VERDICT_PERMANENT);
        assert_int_equal(check("Content-Range: bytes 0-9/100", 206, UINT64_MAX, 2, false, "no range"),
                         HTTP_VERDICT_PERMANENT);
        assert_int_equal(check("Content-Range: bytes 0-9/100", 206, 2, UINT64_MAX, false, "no range"),
                         HTTP_VERDICT_PERMANENT);
        assert_int_equal(check("Content-Range: bytes 0-18446744073709551614/18446744073709551615", 206, 0,
                               UINT64_MAX, true, NULL),
                         HTTP_VERDICT_OK);
}

static void test_check_reason_fits_any_buffer(void **state)
{
        struct http_response r;
        char reason[8];

        http_response_init(&r);
        memset(reason, 'x', sizeof(reason));
        assert_int_equal(http_response_check(&r, 206, 0, 10, true, reason, 5), HTTP_VERDICT_RETRY);
        assert_int_equal(reason[4], '\0');
        assert_int_equal(reason[5], 'x');
        assert_int_equal(http_response_check(&r, 500, 0, 10, true, NULL, 0), HTTP_VERDICT_RETRY);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_content_range_forms),
                cmocka_unit_test(test_content_range_refused),
                cmocka_unit_test(test_content_range_bytes_not_lines),
                cmocka_unit_test(test_two_content_ranges_are_refused),
                cmocka_unit_test(test_status_line_starts_a_new_response),
                cmocka_unit_test(test_retry_after_seconds),
                cmocka_unit_test(test_retry_after_ignored_value_keeps_the_last),
                cmocka_unit_test(test_retry_after_http_date),
                cmocka_unit_test(test_retry_after_leap_years_and_centuries),
                cmocka_unit_test(test_check_status),
                cmocka_unit_test(test_check_range),
                cmocka_unit_test(test_check_impossible_requests),
                cmocka_unit_test(test_check_reason_fits_any_buffer),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
