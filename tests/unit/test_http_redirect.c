// SPDX-License-Identifier: MIT
/* http_redirect.c: which redirects are followed, and with the extra
 * headers or without. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "http_redirect.h"

#include <stdlib.h>
#include <string.h>

static const char *const names[] = {
        [HTTP_REDIRECT_SAME_ORIGIN] = "same origin",
        [HTTP_REDIRECT_OTHER_ORIGIN] = "other origin",
        [HTTP_REDIRECT_DOWNGRADE] = "downgrade",
        [HTTP_REDIRECT_BAD_URL] = "bad URL",
};

/* Both URLs from buffers of exactly their length (no NUL), so that ASan
 * catches a read past either. */
static enum http_redirect decide_n(const char *from, size_t from_len, const char *to, size_t to_len)
{
        char *f = malloc(from_len ? from_len : 1), *t = malloc(to_len ? to_len : 1);
        enum http_redirect d;

        assert_non_null(f);
        assert_non_null(t);
        memcpy(f, from, from_len);
        memcpy(t, to, to_len);
        d = http_redirect_decide(f, from_len, t, to_len);
        free(f);
        free(t);
        return d;
}

static void expect(const char *from, const char *to, enum http_redirect want)
{
        enum http_redirect got = decide_n(from, strlen(from), to, strlen(to));

        print_message("%s -> %s: %s\n", from, to, names[got]);
        assert_string_equal(names[got], names[want]);
}

static void test_same_origin(void **state)
{
        expect("http://a.example/x.cba", "http://a.example/y.cba", HTTP_REDIRECT_SAME_ORIGIN);
        expect("http://a.example/x.cba", "http://a.example:80/y.cba", HTTP_REDIRECT_SAME_ORIGIN);
        expect("http://a.example:80/x.cba", "http://a.example/y.cba", HTTP_REDIRECT_SAME_ORIGIN);
        expect("http://a.example/x.cba", "http://a.example:/y.cba", HTTP_REDIRECT_SAME_ORIGIN);
        expect("http://a.example/x.cba", "http://a.example:0080/y", HTTP_REDIRECT_SAME_ORIGIN);
        expect("https://a.example/x.cba", "https://a.example:443/y.cba", HTTP_REDIRECT_SAME_ORIGIN);
        expect("http://127.0.0.1:8080/x", "http://127.0.0.1:8080/y?z=1#f", HTTP_REDIRECT_SAME_ORIGIN);
        expect("http://a.example", "http://a.example", HTTP_REDIRECT_SAME_ORIGIN);
        expect("http://a.example?q", "http://a.example#f", HTTP_REDIRECT_SAME_ORIGIN);
        expect("https://[::1]/x", "https://[::1]:443/y", HTTP_REDIRECT_SAME_ORIGIN);
        expect("https://[2001:DB8::1]/x", "https://[2001:db8::1]/y", HTTP_REDIRECT_SAME_ORIGIN);
        expect("http://my_host.example/x", "http://my_host.example/y", HTTP_REDIRECT_SAME_ORIGIN);
        /* userinfo is not part of the origin */
        expect("https://a.example/x", "https://user:pass@a.example/y", HTTP_REDIRECT_SAME_ORIGIN);
        expect("https://user@a.example/x", "https://a.example/y", HTTP_REDIRECT_SAME_ORIGIN);
}

static void test_case_differences(void **state)
{
        expect("http://a.example/x", "HTTP://A.EXAMPLE/y", HTTP_REDIRECT_SAME_ORIGIN);
        expect("HtTpS://A.Example/x", "https://a.example/y", HTTP_REDIRECT_SAME_ORIGIN);
        expect("https://a.example/x", "HTTPS://a.EXAMPLE:443/Y", HTTP_REDIRECT_SAME_ORIGIN);
        /* the path's case matters to the server, not to the origin */
        expect("https://a.example/x", "https://a.example/X", HTTP_REDIRECT_SAME_ORIGIN);
}

static void test_other_port(void **state)
{
        expect("http://127.0.0.1:8080/x", "http://127.0.0.1:8081/x", HTTP_REDIRECT_OTHER_ORIGIN);
        expect("http://a.example/x", "http://a.example:8080/x", HTTP_REDIRECT_OTHER_ORIGIN);
        expect("https://a.example/x", "https://a.example:80/x", HTTP_REDIRECT_OTHER_ORIGIN);
        expect("http://a.example:8080/x", "http://a.example/x", HTTP_REDIRECT_OTHER_ORIGIN);
        expect("https://[::1]/x", "https://[::1]:8443/x", HTTP_REDIRECT_OTHER_ORIGIN);
}

static void test_other_host(void **state)
{
        expect("http://a.example/x", "http://b.example/x", HTTP_REDIRECT_OTHER_ORIGIN);
        expect("http://a.example/x", "http://a.example.evil/x", HTTP_REDIRECT_OTHER_ORIGIN);
        expect("http://a.example/x", "http://evil-a.example/x", HTTP_REDIRECT_OTHER_ORIGIN);
        expect("http://a.example/x", "http://example/x", HTTP_REDIRECT_OTHER_ORIGIN);
        expect("https://[::1]/x", "https://[::2]/x", HTTP_REDIRECT_OTHER_ORIGIN);
        expect("https://127.0.0.1/x", "https://[::1]/x", HTTP_REDIRECT_OTHER_ORIGIN);
        /* the same host spelled otherwise: not vouched for, so another origin */
        expect("http://a.example/x", "http://a.example./x", HTTP_REDIRECT_OTHER_ORIGIN);
        expect("http://127.0.0.1/x", "http://127.1/x", HTTP_REDIRECT_OTHER_ORIGIN);
        expect("http://a.example/x", "http://%61.example/x", HTTP_REDIRECT_OTHER_ORIGIN);
        expect("https://[::1]/x", "https://[0:0:0:0:0:0:0:1]/x", HTTP_REDIRECT_OTHER_ORIGIN);
}

static void test_scheme_change(void **state)
{
        /* https to http: refused, whatever the host */
        expect("https://a.example/x", "http://a.example/x", HTTP_REDIRECT_DOWNGRADE);
        expect("https://a.example/x", "http://b.example/x", HTTP_REDIRECT_DOWNGRADE);
        expect("https://a.example/x", "HTTP://a.example:443/x", HTTP_REDIRECT_DOWNGRADE);
        expect("HTTPS://a.example/x", "Http://a.example/x", HTTP_REDIRECT_DOWNGRADE);
        expect("https://a.example/x", "http:a.example/x", HTTP_REDIRECT_DOWNGRADE);
        expect("https://a.example/x", "http://user@a.example/x", HTTP_REDIRECT_DOWNGRADE);
        /* http to https: followed, but it is another origin */
        expect("http://a.example/x", "https://a.example/x", HTTP_REDIRECT_OTHER_ORIGIN);
        expect("http://a.example:443/x", "https://a.example/x", HTTP_REDIRECT_OTHER_ORIGIN);
        expect("http://a.example/x", "https://b.example/x", HTTP_REDIRECT_OTHER_ORIGIN);
        /* http to http, https to https: as any other redirect */
        expect("http://a.example/x", "http://b.example/x", HTTP_REDIRECT_OTHER_ORIGIN);
        expect("https://a.example/x", "https://b.example/x", HTTP_REDIRECT_OTHER_ORIGIN);
}

static void test_relative_references(void **state)
{
        expect("https://a.example/dir/x.cba", "/y.cba", HTTP_REDIRECT_SAME_ORIGIN);
        expect("https://a.example/dir/x.cba", "y.cba", HTTP_REDIRECT_SAME_ORIGIN);
        expect("https://a.example/dir/x.cba", "../y.cba", HTTP_REDIRECT_SAME_ORIGIN);
        expect("https://a.example/dir/x.cba", "./y:z.cba", HTTP_REDIRECT_SAME_ORIGIN);
        expect("https://a.example/dir/x.cba", "?v=2", HTTP_REDIRECT_SAME_ORIGIN);
        expect("https://a.example/dir/x.cba", "#part", HTTP_REDIRECT_SAME_ORIGIN);
        expect("https://a.example/dir/x.cba", "/y@evil.example", HTTP_REDIRECT_SAME_ORIGIN);
        /* network-path references name a host, and keep the scheme */
        expect("https://a.example/x", "//b.example/y", HTTP_REDIRECT_OTHER_ORIGIN);
        expect("https://a.example/x", "//a.example/y", HTTP_REDIRECT_SAME_ORIGIN);
        expect("https://a.example/x", "//a.example:443/y", HTTP_REDIRECT_SAME_ORIGIN);
        expect("http://a.example/x", "//a.example:443/y", HTTP_REDIRECT_OTHER_ORIGIN);
        expect("https://a.example/x", "//good.example@evil.example/y", HTTP_REDIRECT_OTHER_ORIGIN);
        expect("https://a.example/x", "///evil.example/y", HTTP_REDIRECT_OTHER_ORIGIN);
        /* some parsers take a backslash for a slash: "/\\evil" may be "//evil" */
        expect("https://a.example/x", "/\\evil.example/y", HTTP_REDIRECT_OTHER_ORIGIN);
        expect("https://a.example/x", "\\\\evil.example/y", HTTP_REDIRECT_OTHER_ORIGIN);
        expect("https://a.example/x", "y\\z", HTTP_REDIRECT_OTHER_ORIGIN);
}

static void test_userinfo_tricks(void **state)
{
        expect("https://good.example/x", "https://good.example@evil.example/x", HTTP_REDIRECT_OTHER_ORIGIN);
        expect("https://good.example/x", "https://good.example:443@evil.example/x", HTTP_REDIRECT_OTHER_ORIGIN);
        expect("https://good.example/x", "https://evil.example#@good.example/x", HTTP_REDIRECT_OTHER_ORIGIN);
        expect("https://good.example/x", "https://evil.example?@good.example/x", HTTP_REDIRECT_OTHER_ORIGIN);
        expect("https://good.example/x", "https://evil.example/@good.example/x", HTTP_REDIRECT_OTHER_ORIGIN);
        expect("https://good.example/x", "https://evil.example\\@good.example/x", HTTP_REDIRECT_OTHER_ORIGIN);
        expect("https://good.example/x", "https://a@b@good.example/x", HTTP_REDIRECT_OTHER_ORIGIN);
        expect("https://good.example/x", "https://evil.example%40good.example/x", HTTP_REDIRECT_OTHER_ORIGIN);
        expect("https://good.example/x", "https://good.example%2f@evil.example/x", HTTP_REDIRECT_OTHER_ORIGIN);
        expect("https://good.example/x", "https://[good.example]/x", HTTP_REDIRECT_OTHER_ORIGIN);
        expect("https://good.example/x", "https://good.example:443:443/x", HTTP_REDIRECT_OTHER_ORIGIN);
}

static void test_odd_authorities_are_another_origin(void **state)
{
        expect("http://a.example/x", "http:/a.example/x", HTTP_REDIRECT_OTHER_ORIGIN);
        expect("http://a.example/x", "http:a.example/x", HTTP_REDIRECT_OTHER_ORIGIN);
        expect("http://a.example/x", "http:///a.example/x", HTTP_REDIRECT_OTHER_ORIGIN);
        expect("http://a.example/x", "http://", HTTP_REDIRECT_OTHER_ORIGIN);
        expect("http://a.example/x", "http:", HTTP_REDIRECT_OTHER_ORIGIN);
        expect("http://a.example/x", "http://:80/x", HTTP_REDIRECT_OTHER_ORIGIN);
        expect("http://a.example/x", "http://a.example:99999/x", HTTP_REDIRECT_OTHER_ORIGIN);
        expect("http://a.example/x", "http://a.example:65616/x", HTTP_REDIRECT_OTHER_ORIGIN); /* 80 + 65536 */
        expect("http://a.example/x", "http://a.example:8x/x", HTTP_REDIRECT_OTHER_ORIGIN);
        expect("http://a.example/x", "http://a.example:-80/x", HTTP_REDIRECT_OTHER_ORIGIN);
        expect("http://a.example/x", "http://[::1/x", HTTP_REDIRECT_OTHER_ORIGIN);
        expect("http://a.example/x", "http://[]/x", HTTP_REDIRECT_OTHER_ORIGIN);
        expect("http://a.example/x", "http://[::1]x/x", HTTP_REDIRECT_OTHER_ORIGIN);
        expect("http://[fe80::1%25eth0]/x", "http://[fe80::1%25eth0]/y", HTTP_REDIRECT_OTHER_ORIGIN);
        /* the same spelling on both sides is the same origin */
        expect("http://a.example./x", "http://a.example./y", HTTP_REDIRECT_SAME_ORIGIN);
        /* an odd URL given: no absolute target can be vouched for, relative ones can */
        expect("http://%61.example/x", "http://%61.example/y", HTTP_REDIRECT_OTHER_ORIGIN);
        expect("http://%61.example/x", "/y", HTTP_REDIRECT_SAME_ORIGIN);
}

static void test_bad_urls_are_refused(void **state)
{
        expect("https://a.example/x", "ftp://a.example/x", HTTP_REDIRECT_BAD_URL);
        expect("https://a.example/x", "file:///etc/passwd", HTTP_REDIRECT_BAD_URL);
        expect("http://a.example/x", "FILE:///etc/passwd", HTTP_REDIRECT_BAD_URL);
        expect("https://a.example/x", "gopher://a.example/x", HTTP_REDIRECT_BAD_URL);
        expect("https://a.example/x", "ldap://a.example/x", HTTP_REDIRECT_BAD_URL);
        expect("https://a.example/x", "javascript:alert(1)", HTTP_REDIRECT_BAD_URL);
        expect("https://a.example/x", "data:text/plain,x", HTTP_REDIRECT_BAD_URL);
        expect("https://a.example/x", "httpx://a.example/x", HTTP_REDIRECT_BAD_URL);
        expect("https://a.example/x", "http+unix://a.example/x", HTTP_REDIRECT_BAD_URL);
        expect("https://a.example/x", "a.example:443/x", HTTP_REDIRECT_BAD_URL); /* the scheme "a.example" */
        /* spaces and control bytes: parsers disagree on them */
        expect("https://a.example/x", "", HTTP_REDIRECT_BAD_URL);
        expect("https://a.example/x", " https://a.example/y", HTTP_REDIRECT_BAD_URL);
        expect("https://a.example/x", " //evil.example/y", HTTP_REDIRECT_BAD_URL);
        expect("https://a.example/x", "/a b", HTTP_REDIRECT_BAD_URL);
        expect("https://a.example/x", "/y\r\nX-Injected: 1", HTTP_REDIRECT_BAD_URL);
        expect("https://a.example/x", "/y\t", HTTP_REDIRECT_BAD_URL);
        expect("https://a.example/x", "/\x7f", HTTP_REDIRECT_BAD_URL);
        expect("https://a.example/x", "https://\xc3\xa4.example/y", HTTP_REDIRECT_BAD_URL);
        /* a URL we would never have fetched */
        expect("ftp://a.example/x", "/y", HTTP_REDIRECT_BAD_URL);
        expect("", "/y", HTTP_REDIRECT_BAD_URL);
        expect("/x", "/y", HTTP_REDIRECT_BAD_URL);
}

static void test_byte_ranges_not_strings(void **state)
{
        const char from[] = "http://a.example/x.cbaJUNK";
        const char to[] = "http://a.example:8080/y";
        const char nul[] = "/y\0//evil.example/";

        /* Only the lengths given count: to ends before ":8080". */
        assert_int_equal(decide_n(from, strlen("http://a.example/x.cba"), to, strlen("http://a.example")),
                         HTTP_REDIRECT_SAME_ORIGIN);
        assert_int_equal(decide_n(from, strlen(from), to, strlen(to)), HTTP_REDIRECT_OTHER_ORIGIN);
        /* A NUL is a byte like any other: refused, not a string's end. */
        assert_int_equal(decide_n(from, strlen(from), nul, sizeof(nul) - 1), HTTP_REDIRECT_BAD_URL);
        /* Every prefix of a tricky target, every prefix of the origin. */
        const char *tricky = "https://good.example:443@[::1]:8443/p?q#f";
        for (size_t i = 0; i <= strlen(tricky); i++)
                for (size_t j = 0; j <= strlen(from); j++)
                        (void)decide_n(from, j, tricky, i);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_same_origin),
                cmocka_unit_test(test_case_differences),
                cmocka_unit_test(test_other_port),
                cmocka_unit_test(test_other_host),
                cmocka_unit_test(test_scheme_change),
                cmocka_unit_test(test_relative_references),
                cmocka_unit_test(test_userinfo_tricks),
                cmocka_unit_test(test_odd_authorities_are_another_origin),
                cmocka_unit_test(test_bad_urls_are_refused),
                cmocka_unit_test(test_byte_ranges_not_strings),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
