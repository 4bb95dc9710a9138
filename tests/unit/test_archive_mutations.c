// SPDX-License-Identifier: MIT
/* archive.c on random input: random dictionaries, and valid ones with
 * random bytes changed or cut short. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include "archive_spec.h"

#include <errno.h>

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static uint64_t rng(void)
{
        /* xorshift64* */
        rng_state ^= rng_state >> 12;
        rng_state ^= rng_state << 25;
        rng_state ^= rng_state >> 27;
        return rng_state * 2685821657736338717ull;
}

static void test_hostile_garbage(void **state)
{
        uint8_t dict[1024];
        struct archive *a = NULL;

        for (int iter = 0; iter < 3000; iter++) {
                size_t n = 1 + rng() % sizeof(dict), len;
                uint8_t *hdr;
                for (size_t i = 0; i < n; i++)
                        dict[i] = (uint8_t)rng();
                hdr = wrap_header(iter & 1 ? MAGIC : LEGACY_MAGIC, dict, n, CDO_AUTO, &len);
                assert_int_equal(archive_parse(hdr, len, "garbage", &a), -EBADMSG);
                assert_null(a);
                free(hdr);
        }
        /* An empty dictionary lacks everything. */
        {
                size_t len;
                uint8_t *hdr = wrap_header(MAGIC, NULL, 0, CDO_AUTO, &len);
                assert_int_equal(archive_parse(hdr, len, "empty", &a), -EBADMSG);
                assert_null(a);
                free(hdr);
        }
}

/* Valid dictionaries with random bytes changed (checksum redone): refused,
 * or accepted only when self-consistent. Never a crash or a leak. */
static void test_hostile_mutations(void **state)
{
        struct spec s;
        size_t n;
        uint8_t *orig, *dict;
        int accepted = 0, refused = 0;

        spec_init(&s);
        orig = spec_pack(&s, &n);
        dict = malloc(n);
        assert_non_null(dict);
        for (int iter = 0; iter < 20000; iter++) {
                struct archive *a = NULL;
                size_t len, m = n;
                uint8_t *hdr;
                int flips = 1 + (int)(rng() % 4), r;

                memcpy(dict, orig, n);
                for (int k = 0; k < flips; k++)
                        dict[rng() % n] = (uint8_t)rng();
                if (rng() % 8 == 0)
                        m = rng() % n; /* cut short too */
                hdr = wrap_header(MAGIC, dict, m, CDO_AUTO, &len);
                r = archive_parse(hdr, len, "mutant", &a);
                if (r == 0) {
                        uint64_t sum = 0;
                        const struct release *rel = a->release;
                        accepted++;
                        assert_true(rel->hash_len >= HASH_MIN_LEN && rel->hash_len <= HASH_MAX_LEN);
                        for (size_t i = 0; i < rel->n_order; i++) {
                                assert_true(rel->order[i] < rel->n_chunks);
                                sum += rel->chunks[rel->order[i]].source_size;
                        }
                        assert_int_equal(sum, rel->source_total_size);
                        for (size_t i = 0; i < rel->n_chunks; i++) {
                                assert_true(rel->chunks[i].source_size > 0);
                                assert_true(rel->chunks[i].archive_offset >= a->chunk_data_offset);
                                assert_true(rel->chunks[i].archive_offset + rel->chunks[i].archive_size <=
                                            a->chunk_data_end);
                        }
                        archive_free(a);
                } else {
                        assert_int_equal(r, -EBADMSG);
                        assert_null(a);
                        refused++;
                }
                free(hdr);
        }
        print_message("mutants: %d accepted, %d refused\n", accepted, refused);
        assert_true(refused > 0);
        free(dict);
        free(orig);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_hostile_garbage),
                cmocka_unit_test(test_hostile_mutations),
        };

        return cmocka_run_group_tests(tests, archive_spec_setup, NULL);
}
