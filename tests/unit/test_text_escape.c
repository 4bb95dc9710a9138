// SPDX-License-Identifier: MIT
/* text_escape.c: what an archive or a store says reaches the terminal as
 * one line of plain text: control characters and bytes that are not UTF-8
 * escaped, valid UTF-8 unchanged. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "text_escape.h"

#include <stdlib.h>
#include <string.h>

static void expect(const char *in, size_t len, const char *want)
{
        char *out = text_escape(in, len);

        assert_non_null(out);
        assert_string_equal(out, want);
        free(out);
}

static void test_plain_text_and_utf8_unchanged(void **state)
{
        expect("", 0, "");
        expect("rev-c 2.1", 9, "rev-c 2.1");
        expect("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80", 14, "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80");
        expect("\xc2\xa0", 2, "\xc2\xa0"); /* U+00A0: past the C1 range */
}

static void test_control_characters_escaped(void **state)
{
        /* A terminal title change, a screen clear, a forged line. */
        expect("\x1b]0;owned\x07", 10, "\\x1b]0;owned\\x07");
        expect("\x1b[2J", 4, "\\x1b[2J");
        expect("a\nimage checksum: 00", 20, "a\\nimage checksum: 00");
        expect("a\rb\tc", 5, "a\\rb\\tc");
        expect("a\\x41", 5, "a\\\\x41"); /* a backslash cannot fake an escape */
        expect("\x7f", 1, "\\x7f");
        expect("a\0b", 3, "a\\x00b");
        /* C1 (U+009B is a one-byte CSI for some terminals), both of its bytes. */
        expect("\xc2\x9b" "31m", 5, "\\xc2\\x9b31m");
        expect("\xc2\x80", 2, "\\xc2\\x80");
}

static void test_invalid_utf8_escaped(void **state)
{
        expect("\xff\xfe", 2, "\\xff\\xfe");
        expect("\xc3", 1, "\\xc3");                   /* cut short */
        expect("\xc0\xaf", 2, "\\xc0\\xaf");          /* overlong '/' */
        expect("\xe0\x80\xaf", 3, "\\xe0\\x80\\xaf");  /* overlong */
        expect("\xed\xa0\x80", 3, "\\xed\\xa0\\x80");  /* a UTF-16 surrogate */
        expect("\xf4\x90\x80\x80", 4, "\\xf4\\x90\\x80\\x80"); /* past U+10FFFF */
        expect("ok\xe2\x82", 4, "ok\\xe2\\x82");
        assert_false(utf8_valid("\xe2\x82", 2));
        assert_true(utf8_valid("\xe2\x82\xac", 3));
        assert_true(utf8_valid("\x1b", 1)); /* valid UTF-8, though a control character */
}

static void test_json_form(void **state)
{
        char *s = text_escape_for_json("caf\xc3\xa9 \x1b[1m a\\b");
        assert_string_equal(s, "caf\xc3\xa9 \x1b[1m a\\b"); /* json-c escapes these itself */
        free(s);
        s = text_escape_for_json("bad\xff");
        assert_string_equal(s, "bad\\xff");
        free(s);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_plain_text_and_utf8_unchanged),
                cmocka_unit_test(test_control_characters_escaped),
                cmocka_unit_test(test_invalid_utf8_escaped),
                cmocka_unit_test(test_json_form),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
