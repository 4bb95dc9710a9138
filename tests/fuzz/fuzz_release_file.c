// SPDX-License-Identifier: MIT
/* Release descriptions (STORE/NAME) as release_file_read parses them. The
 * input is a description file. Random bytes would never match the size
 * field and the BLAKE2b checksum, so the target sets both to what the
 * input's length and content make them before parsing: the fuzzer reaches
 * the dictionary decoding and every check after it. (The framing checks
 * themselves are tested in test_release_file.) */
#include "fuzz.h"

#include "hash.h"
#include "release_file.h"

#include <endian.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#define PRE_SIZE 14u /* "IHOP1\0" and the u64-LE size */

/* What the parser promises its callers, checked on every description it accepts. */
static void check_accepted(const struct release *r)
{
        uint64_t sum = 0;

        if (r->hash_len < HASH_MIN_LEN || r->hash_len > HASH_MAX_LEN || r->source_checksum_len == 0 ||
            r->source_checksum_len > HASH_MAX_LEN || !r->app_version)
                abort();
        for (size_t i = 0; i < r->n_chunks; i++)
                if (r->chunks[i].source_size == 0)
                        abort();
        for (size_t i = 0; i < r->n_order; i++) {
                if (r->order[i] >= r->n_chunks)
                        abort();
                sum += r->chunks[r->order[i]].source_size;
        }
        if (sum != r->source_total_size)
                abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        static bool ready;
        struct release *r = NULL;
        uint8_t *buf;

        if (!ready) {
                if (hash_init_library() < 0)
                        abort();
                ready = true;
        }
        buf = malloc(size ? size : 1);
        if (!buf)
                return 0;
        memcpy(buf, data, size);
        if (size >= PRE_SIZE + HASH_MAX_LEN) {
                uint64_t n = htole64(size - PRE_SIZE - HASH_MAX_LEN);
                memcpy(buf + 6, &n, sizeof(n));
                hash_buffer(buf, size - HASH_MAX_LEN, buf + size - HASH_MAX_LEN);
        }
        if (release_file_parse(buf, size, "fuzz input", &r) == 0) {
                check_accepted(r);
                release_free(r);
        } else if (r) {
                abort(); /* nothing is handed out on failure */
        }
        free(buf);
        return 0;
}
