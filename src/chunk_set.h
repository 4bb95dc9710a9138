// SPDX-License-Identifier: MIT
/* A set of chunks keyed by their hash, in the order they were added: how
 * compress stores identical chunks once and diff finds what two images
 * share. Entries never move once added, so threads may keep pointers to
 * them; locking is the caller's. A caller that keeps more per chunk makes
 * its entries a struct that begins with struct chunk_entry. */
#pragma once

#include "hash.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct chunk_entry {
        uint8_t hash[HASH_MAX_LEN];
        uint32_t source_size;
        uint32_t archive_size;   /* compressed size, when known */
        uint32_t occurrences;
};

struct chunk_set;

/* Hashes are compared on their first key_len bytes (4..64): an archive keeps
 * truncated hashes. entry_size: sizeof(struct chunk_entry), or of the
 * caller's struct that begins with one. */
int chunk_set_new(size_t key_len, size_t entry_size, struct chunk_set **out);
void chunk_set_free(struct chunk_set *s);

struct chunk_entry *chunk_set_find(const struct chunk_set *s, const uint8_t *hash);
/* Finds the entry for hash or adds a zeroed one (all entry_size bytes);
 * *added says which. NULL when out of memory. */
struct chunk_entry *chunk_set_add(struct chunk_set *s, const uint8_t *hash, bool *added);

size_t chunk_set_count(const struct chunk_set *s);
/* The i-th entry added. */
struct chunk_entry *chunk_set_at(const struct chunk_set *s, size_t i);
