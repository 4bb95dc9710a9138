// SPDX-License-Identifier: MIT
/* archive.c on the frame around the dictionary: the magic, the dictionary
 * size, the header checksum and the chunk data offset. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include "archive_spec.h"

#include <errno.h>

static void test_header_length(void **state)
{
        uint8_t pre[ARCHIVE_PRE_HEADER_SIZE];
        uint64_t hl = 0;

        memcpy(pre, MAGIC, 6);
        put_le64(pre + 6, 100);
        assert_int_equal(archive_header_length(pre, sizeof(pre), "t", &hl), 0);
        assert_int_equal(hl, 14 + 100 + 72);
        memcpy(pre, LEGACY_MAGIC, 6);
        assert_int_equal(archive_header_length(pre, sizeof(pre), "t", &hl), 0);
        assert_int_equal(hl, 14 + 100 + 72);

        put_le64(pre + 6, ARCHIVE_MAX_DICTIONARY_SIZE);
        assert_int_equal(archive_header_length(pre, sizeof(pre), "t", &hl), 0);
        assert_int_equal(hl, 14 + (uint64_t)ARCHIVE_MAX_DICTIONARY_SIZE + 72);

        hl = 12345;
        put_le64(pre + 6, (uint64_t)ARCHIVE_MAX_DICTIONARY_SIZE + 1);
        assert_int_equal(archive_header_length(pre, sizeof(pre), "t", &hl), -EBADMSG);
        put_le64(pre + 6, UINT64_MAX);
        assert_int_equal(archive_header_length(pre, sizeof(pre), "t", &hl), -EBADMSG);
        put_le64(pre + 6, UINT64_MAX - 14 - 72 + 1); /* would wrap the header length to 0 */
        assert_int_equal(archive_header_length(pre, sizeof(pre), "t", &hl), -EBADMSG);
        assert_int_equal(hl, 12345);

        put_le64(pre + 6, 100);
        static const char *const bad[] = { "BITA2\0", "bita1\0", "\0BITA2", "BITA1 ", "\0\0\0\0\0\0", "CBA\0\0\0" };
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                memcpy(pre, bad[i], 6);
                assert_int_equal(archive_header_length(pre, sizeof(pre), "t", &hl), -EBADMSG);
        }
        memcpy(pre, MAGIC, 6);
        for (size_t n = 0; n < ARCHIVE_PRE_HEADER_SIZE; n++)
                assert_int_equal(archive_header_length(pre, n, "t", &hl), -EBADMSG);
}

static void test_hostile_dictionary_size(void **state)
{
        struct spec s;
        size_t n, len;
        uint8_t *dict, *hdr;
        struct archive *a = NULL;

        spec_init(&s);
        hdr = spec_header(&s, &dict, &n, &len);
        assert_int_equal(archive_parse(hdr, len, "t", &a), 0);
        archive_free(a);
        a = NULL;

        /* Size fields that do not match the buffer, with the checksum redone. */
        static const uint64_t sizes[] = { UINT64_MAX, (uint64_t)ARCHIVE_MAX_DICTIONARY_SIZE + 1, 1ull << 63,
                                          UINT64_MAX - 85 };
        for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
                put_le64(hdr + 6, sizes[i]);
                hash_buffer(hdr, len - 64, hdr + len - 64);
                assert_int_equal(archive_parse(hdr, len, "t", &a), -EBADMSG);
                assert_null(a);
        }
        /* Larger than the buffer but allowed: the header is cut short. */
        put_le64(hdr + 6, n + 1);
        assert_int_equal(archive_parse(hdr, len, "t", &a), -EBADMSG);
        assert_null(a);
        /* Smaller: the checksum is looked for in the wrong place. */
        put_le64(hdr + 6, n - 1);
        hash_buffer(hdr, len - 64, hdr + len - 64);
        assert_int_equal(archive_parse(hdr, len, "t", &a), -EBADMSG);
        assert_null(a);
        free(hdr);
        free(dict);
}

static void test_hostile_magic(void **state)
{
        struct spec s;
        struct archive *a = NULL;
        static const uint8_t bad[][6] = { { 'B', 'I', 'T', 'A', '2', 0 }, { 'I', 'H', 'O', 'P', '1', 0 },
                                          { 0, 0, 'B', 'I', 'T', 'A' }, { 'b', 'I', 'T', 'A', '1', 0 } };

        spec_init(&s);
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                assert_int_equal(parse_spec_cdo(&s, bad[i], CDO_AUTO, &a, NULL), -EBADMSG);
                assert_null(a);
        }
}

static void test_hostile_checksum(void **state)
{
        struct spec s;
        size_t n, len;
        uint8_t *dict, *hdr;
        struct archive *a = NULL;

        spec_init(&s);
        hdr = spec_header(&s, &dict, &n, &len);
        for (size_t i = 6; i < len; i++) {
                hdr[i] ^= 0x80;
                assert_int_equal(archive_parse(hdr, len, "t", &a), -EBADMSG);
                assert_null(a);
                hdr[i] ^= 0x80;
        }
        assert_int_equal(archive_parse(hdr, len, "t", &a), 0);
        archive_free(a);
        free(hdr);
        free(dict);
}

static void test_hostile_chunk_data_offset(void **state)
{
        struct spec s;
        size_t n, len;
        uint8_t *dict, *hdr;
        struct archive *a = NULL;

        spec_init(&s);
        free(spec_header(&s, &dict, &n, &len));
        static const uint64_t inside[] = { 0, 1, 14, 100, 0 /* len - 1 */, 0 /* len - 64 */ };
        for (size_t i = 0; i < sizeof(inside) / sizeof(inside[0]); i++) {
                uint64_t cdo = i == 4 ? len - 1 : i == 5 ? len - 64 : inside[i];
                hdr = wrap_header(MAGIC, dict, n, cdo, &len);
                assert_int_equal(archive_parse(hdr, len, "t", &a), -EBADMSG);
                assert_null(a);
                free(hdr);
        }
        hdr = wrap_header(MAGIC, dict, n, len, &len);
        assert_int_equal(archive_parse(hdr, len, "t", &a), 0);
        archive_free(a);
        free(hdr);
        free(dict);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_header_length),
                cmocka_unit_test(test_hostile_dictionary_size),
                cmocka_unit_test(test_hostile_magic),
                cmocka_unit_test(test_hostile_checksum),
                cmocka_unit_test(test_hostile_chunk_data_offset),
        };

        return cmocka_run_group_tests(tests, archive_spec_setup, NULL);
}
