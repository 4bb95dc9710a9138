// SPDX-License-Identifier: MIT
/* chunk_set.c: chunks by hash, in the order added; entries that never move,
 * with the caller's own fields after struct chunk_entry. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "chunk_set.h"

#include <errno.h>
#include <string.h>

/* More than one block of entries (4096) and many growths of the slots. */
#define N_CHUNKS 10000u

/* A caller's entry: the set knows only its size. */
struct wide_entry {
        struct chunk_entry e;
        uint64_t tag;
        const void *ptr;
        uint8_t pad[13];
};

static void hash_of(uint32_t i, uint8_t hash[HASH_MAX_LEN])
{
        memset(hash, 0, HASH_MAX_LEN);
        /* Spread over the bucket bytes, and a tail past a short key. */
        for (int k = 0; k < 8; k++)
                hash[k] = (uint8_t)((i * 2654435761u) >> (k * 4));
        memcpy(hash + 8, &i, sizeof(i));
        hash[HASH_MAX_LEN - 1] = 0x5a;
}

static void test_wide_entries_keep_their_fields_and_place(void **state)
{
        struct wide_entry *first[N_CHUNKS];
        struct chunk_set *s = NULL;
        uint8_t hash[HASH_MAX_LEN];
        bool added;

        (void)state;
        assert_int_equal(chunk_set_new(16, sizeof(struct wide_entry), &s), 0);
        for (uint32_t i = 0; i < N_CHUNKS; i++) {
                hash_of(i, hash);
                struct wide_entry *w = (struct wide_entry *)chunk_set_add(s, hash, &added);
                assert_non_null(w);
                assert_true(added);
                /* Zeroed whole, the caller's fields too. */
                assert_int_equal(w->tag, 0);
                assert_null(w->ptr);
                assert_int_equal(w->e.occurrences, 0);
                w->tag = 0x1234567800000000ull | i;
                w->ptr = &first[i];
                memset(w->pad, (int)(i & 0xff), sizeof(w->pad));
                w->e.source_size = i;
                first[i] = w;
        }
        assert_int_equal(chunk_set_count(s), N_CHUNKS);
        for (uint32_t i = 0; i < N_CHUNKS; i++) {
                hash_of(i, hash);
                struct wide_entry *w = (struct wide_entry *)chunk_set_find(s, hash);
                /* The same place as when added, in order, nothing overwritten. */
                assert_ptr_equal(w, first[i]);
                assert_ptr_equal(chunk_set_at(s, i), &w->e);
                assert_int_equal(w->tag, 0x1234567800000000ull | i);
                assert_ptr_equal(w->ptr, &first[i]);
                for (size_t k = 0; k < sizeof(w->pad); k++)
                        assert_int_equal(w->pad[k], i & 0xff);
                assert_int_equal(w->e.source_size, i);
                assert_ptr_equal(chunk_set_add(s, hash, &added), &w->e);
                assert_false(added);
        }
        chunk_set_free(s);
}

/* Keys are compared on their first key_len bytes only. */
static void test_key_length_bounds_the_comparison(void **state)
{
        struct chunk_set *s = NULL;
        uint8_t a[HASH_MAX_LEN], b[HASH_MAX_LEN];
        bool added;

        (void)state;
        hash_of(7, a);
        memcpy(b, a, sizeof(b));
        b[HASH_MIN_LEN] ^= 1;
        assert_int_equal(chunk_set_new(HASH_MIN_LEN, sizeof(struct chunk_entry), &s), 0);
        struct chunk_entry *e = chunk_set_add(s, a, &added);
        assert_true(added);
        assert_ptr_equal(chunk_set_find(s, b), e);
        b[HASH_MIN_LEN - 1] ^= 1;
        assert_null(chunk_set_find(s, b));
        chunk_set_free(s);
}

static void test_bad_parameters_refused(void **state)
{
        struct chunk_set *s = NULL;

        (void)state;
        assert_int_equal(chunk_set_new(HASH_MIN_LEN - 1, sizeof(struct chunk_entry), &s), -EINVAL);
        assert_int_equal(chunk_set_new(HASH_MAX_LEN + 1, sizeof(struct chunk_entry), &s), -EINVAL);
        assert_int_equal(chunk_set_new(HASH_MAX_LEN, sizeof(struct chunk_entry) - 1, &s), -EINVAL);
        assert_null(s);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_wide_entries_keep_their_fields_and_place),
                cmocka_unit_test(test_key_length_bounds_the_comparison),
                cmocka_unit_test(test_bad_parameters_refused),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
