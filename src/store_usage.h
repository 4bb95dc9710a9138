// SPDX-License-Identifier: MIT
/* Which chunks the releases of a store use, and how much of the store each
 * release owns alone or shares: the accounting behind `ihop ls` and `ihop gc`. */
#pragma once

#include "release.h"
#include "store.h"
#include "store_use.h"

#include <stdint.h>

struct chunk_key {
        uint8_t hash[HASH_MAX_LEN];
        uint8_t len;
        uint32_t size;
        uint32_t n_releases; /* how many releases use it */
        uint32_t release;    /* the first release using it */
};

struct release_usage {
        char *name;
        struct release *release;
        uint64_t unique_bytes; /* in chunks no other release uses */
        uint64_t shared_bytes; /* in chunks other releases use too */
        size_t unique_chunks, shared_chunks;
};

struct store_usage {
        struct release_usage *releases;
        size_t n_releases;
        struct chunk_key *chunks; /* every chunk some release uses, sorted by hash */
        size_t n_chunks;
        uint64_t referenced_bytes;
};

/* Reads every release of the store. A release that cannot be read fails the
 * whole call: nothing may be collected on an incomplete picture. */
int store_usage_load(struct store *s, struct store_usage *u);

/* The same for the live registrations among e (store_use_list, with their
 * descriptions read): the releases in use, named as they were registered.
 * One that cannot be parsed fails the whole call. */
int store_usage_load_in_use(struct store *s, const struct store_use_entry *e, size_t n, struct store_usage *u);
void store_usage_free(struct store_usage *u);

/* Is the chunk with this hash (len bytes) used by some release? */
bool store_usage_references(const struct store_usage *u, const uint8_t *hash, size_t len);
