// SPDX-License-Identifier: MIT
/* A release: how an image is put together from chunks. Built from a bita
 * archive's dictionary or from a store's release description, and checked
 * the same way whichever it came from. */
#pragma once

#include "hash.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum chunking_algorithm { CHUNKING_BUZHASH = 0, CHUNKING_ROLLSUM = 1, CHUNKING_FIXED_SIZE = 2 };

struct chunker_params {
        enum chunking_algorithm algorithm;
        uint32_t filter_bits;
        uint32_t min_chunk_size;
        uint32_t max_chunk_size; /* also the fixed size for CHUNKING_FIXED_SIZE */
        uint32_t window_size;
        uint32_t hash_length;
};

struct chunk {
        uint8_t hash[HASH_MAX_LEN];
        uint32_t source_size;
        uint32_t archive_size;   /* archive chunks only */
        uint64_t archive_offset; /* absolute, archive chunks only */
};

struct release {
        char *app_version;
        uint8_t source_checksum[HASH_MAX_LEN];
        size_t source_checksum_len;
        uint64_t source_total_size;
        struct chunker_params chunker;
        size_t hash_len;
        struct chunk *chunks; /* unique chunks, in order of first occurrence */
        size_t n_chunks;
        uint32_t *order; /* indices into chunks, in image order */
        size_t n_order;
};

void release_free(struct release *r);

/* Checks what no parser can: hash length, indices, sizes and their sum.
 * Logs why, naming `where`, and returns -EBADMSG on a bad release. */
int release_validate(const struct release *r, const char *where);

const char *chunking_algorithm_name(enum chunking_algorithm a);
