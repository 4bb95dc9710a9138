// SPDX-License-Identifier: MIT
/* pb_budget.c: the allocator that bounds what protobuf-c may allocate for a
 * dictionary, alone and under archive_parse against a flood of descriptors. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include "archive_spec.h"
#include "unit_helpers.h"
#include "pb_budget.h"

#include <errno.h>
#include <stdbool.h>

/* prefix followed by count empty ChunkDescriptors (field 7, length 0). */
static uint8_t *flood_header(const uint8_t *prefix, size_t n_prefix, size_t count, size_t *len)
{
        uint8_t *dict = malloc(n_prefix + 2 * count), *hdr;

        assert_non_null(dict);
        if (n_prefix)
                memcpy(dict, prefix, n_prefix);
        for (size_t i = 0; i < count; i++) {
                dict[n_prefix + 2 * i] = (7 << 3) | 2;
                dict[n_prefix + 2 * i + 1] = 0;
        }
        hdr = wrap_header(MAGIC, dict, n_prefix + 2 * count, CDO_AUTO, len);
        free(dict);
        return hdr;
}

/* Millions of empty descriptors: two bytes each packed, a struct each
 * unpacked. The budget must stop the decoder long before that. */
static void test_hostile_empty_descriptor_flood(void **state)
{
        const size_t count = 2u << 20; /* 4 MiB of dictionary */
        struct archive *a = NULL;
        struct spec s;
        size_t len, n;
        uint8_t *hdr, *prefix;
        long before, after;
        bool measure;

        hdr = flood_header(NULL, 0, count, &len);
        assert_int_equal(len, 14 + (4u << 20) + 72);
        measure = reset_hwm();
        before = vm_hwm_kib();
        assert_int_equal(archive_parse(hdr, len, "flood", &a), -EBADMSG);
        assert_null(a);
        after = vm_hwm_kib();
        if (measure && before > 0 && after > 0) {
                /* Unbudgeted, 2M descriptors cost over 150 MiB; budgeted, about 35. */
                print_message("peak RSS grew by %ld KiB\n", after - before);
                assert_true(after - before < 96 * 1024);
        }
        free(hdr);

        /* The same flood behind a valid prefix (parameters, compression). */
        spec_init_empty(&s);
        prefix = spec_pack(&s, &n);
        hdr = flood_header(prefix, n, count, &len);
        assert_int_equal(archive_parse(hdr, len, "flood", &a), -EBADMSG);
        assert_null(a);
        free(hdr);

        /* A few thousand fit the budget, then fail the checks (0-byte hashes). */
        hdr = flood_header(prefix, n, 4000, &len);
        assert_int_equal(archive_parse(hdr, len, "few", &a), -EBADMSG);
        assert_null(a);
        free(hdr);
        /* The prefix alone is a valid, empty release. */
        hdr = flood_header(prefix, n, 0, &len);
        assert_int_equal(archive_parse(hdr, len, "none", &a), 0);
        archive_free(a);
        free(hdr);
        free(prefix);
}

/* The budget allocator: refuses past its budget, refunds on free. */
static void test_pb_budget(void **state)
{
        struct pb_budget b;
        void *p, *q, *r;

        pb_budget_init(&b, 1000);
        assert_int_equal(b.left, 1000);
        p = b.allocator.alloc(b.allocator.allocator_data, 600);
        assert_non_null(p);
        assert_true(((uintptr_t)p % _Alignof(max_align_t)) == 0);
        memset(p, 0xaa, 600);
        assert_int_equal(b.left, 400);
        assert_null(b.allocator.alloc(b.allocator.allocator_data, 401));
        assert_int_equal(b.left, 400);
        q = b.allocator.alloc(b.allocator.allocator_data, 400);
        assert_non_null(q);
        assert_int_equal(b.left, 0);
        assert_null(b.allocator.alloc(b.allocator.allocator_data, 1));
        b.allocator.free(b.allocator.allocator_data, p);
        assert_int_equal(b.left, 600);
        r = b.allocator.alloc(b.allocator.allocator_data, 600);
        assert_non_null(r);
        b.allocator.free(b.allocator.allocator_data, q);
        b.allocator.free(b.allocator.allocator_data, r);
        b.allocator.free(b.allocator.allocator_data, NULL);
        assert_int_equal(b.left, 1000);
        assert_null(b.allocator.alloc(b.allocator.allocator_data, SIZE_MAX));
        assert_int_equal(b.left, 1000);

        /* Through protobuf-c: unpack and free give the whole budget back. */
        {
                struct spec s;
                size_t n;
                uint8_t *dict;
                ChunkDictionary__ChunkDictionary *d;

                spec_init(&s);
                dict = spec_pack(&s, &n);
                pb_budget_init(&b, 1u << 20);
                d = chunk_dictionary__chunk_dictionary__unpack(&b.allocator, n, dict);
                assert_non_null(d);
                assert_true(b.left < 1u << 20);
                chunk_dictionary__chunk_dictionary__free_unpacked(d, &b.allocator);
                assert_int_equal(b.left, 1u << 20);
                /* Too small a budget: no dictionary, and nothing kept. */
                pb_budget_init(&b, 200);
                assert_null(chunk_dictionary__chunk_dictionary__unpack(&b.allocator, n, dict));
                assert_int_equal(b.left, 200);
                free(dict);
        }
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_hostile_empty_descriptor_flood),
                cmocka_unit_test(test_pb_budget),
        };

        return cmocka_run_group_tests(tests, archive_spec_setup, NULL);
}
