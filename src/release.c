// SPDX-License-Identifier: MIT
#include "release.h"

#include "log.h"

#include <errno.h>
#include <stdlib.h>

void release_free(struct release *r)
{
        if (!r)
                return;
        free(r->app_version);
        free(r->chunks);
        free(r->order);
        free(r);
}

const char *chunking_algorithm_name(enum chunking_algorithm a)
{
        switch (a) {
        case CHUNKING_BUZHASH:
                return "BuzHash";
        case CHUNKING_ROLLSUM:
                return "RollSum";
        case CHUNKING_FIXED_SIZE:
                return "fixed size";
        }
        return "unknown";
}

int release_validate(const struct release *r, const char *where)
{
        uint64_t sum = 0;

        if (r->hash_len < HASH_MIN_LEN || r->hash_len > HASH_MAX_LEN) {
                log_error("%s: chunk hash length %zu is outside %d..%d", where, r->hash_len,
                          HASH_MIN_LEN, HASH_MAX_LEN);
                return -EBADMSG;
        }
        if (r->source_checksum_len == 0) {
                log_error("%s: the image checksum is missing", where);
                return -EBADMSG;
        }
        for (size_t i = 0; i < r->n_chunks; i++) {
                if (r->chunks[i].source_size == 0) {
                        log_error("%s: chunk %zu has size 0", where, i);
                        return -EBADMSG;
                }
        }
        for (size_t i = 0; i < r->n_order; i++) {
                uint32_t idx = r->order[i];
                if (idx >= r->n_chunks) {
                        log_error("%s: image position %zu names chunk %u, but there are only %zu chunks",
                                  where, i, idx, r->n_chunks);
                        return -EBADMSG;
                }
                sum += r->chunks[idx].source_size;
                if (sum > r->source_total_size) {
                        log_error("%s: chunk sizes add up to more than the image size %llu", where,
                                  (unsigned long long)r->source_total_size);
                        return -EBADMSG;
                }
        }
        if (sum != r->source_total_size) {
                log_error("%s: chunk sizes add up to %llu bytes, but the image is %llu bytes", where,
                          (unsigned long long)sum, (unsigned long long)r->source_total_size);
                return -EBADMSG;
        }
        return 0;
}
