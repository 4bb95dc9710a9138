// SPDX-License-Identifier: MIT
#include "chunk_set.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* Entries live in fixed blocks so that growing the set never moves them. */
#define BLOCK_SHIFT 12
#define BLOCK_SIZE (1u << BLOCK_SHIFT)

struct chunk_set {
        size_t key_len;
        size_t entry_size;
        uint8_t **blocks;
        size_t n_blocks;
        size_t count;
        uint32_t *slots; /* open addressing: entry number + 1, 0 for empty */
        size_t n_slots;  /* a power of two, at most half full */
};

int chunk_set_new(size_t key_len, size_t entry_size, struct chunk_set **out)
{
        struct chunk_set *s;

        if (key_len < HASH_MIN_LEN || key_len > HASH_MAX_LEN || entry_size < sizeof(struct chunk_entry))
                return -EINVAL;
        s = calloc(1, sizeof(*s));
        if (!s)
                return -ENOMEM;
        s->key_len = key_len;
        s->entry_size = entry_size;
        s->n_slots = 1024;
        s->slots = calloc(s->n_slots, sizeof(*s->slots));
        if (!s->slots) {
                free(s);
                return -ENOMEM;
        }
        *out = s;
        return 0;
}

void chunk_set_free(struct chunk_set *s)
{
        if (!s)
                return;
        for (size_t i = 0; i < s->n_blocks; i++)
                free(s->blocks[i]);
        free(s->blocks);
        free(s->slots);
        free(s);
}

size_t chunk_set_count(const struct chunk_set *s)
{
        return s->count;
}

struct chunk_entry *chunk_set_at(const struct chunk_set *s, size_t i)
{
        return (struct chunk_entry *)(s->blocks[i >> BLOCK_SHIFT] + (i & (BLOCK_SIZE - 1)) * s->entry_size);
}

/* The hashes are BLAKE2b output: their first bytes are as good a bucket
 * number as any mixing function would give. */
static size_t bucket_of(const struct chunk_set *s, const uint8_t *hash)
{
        uint64_t v = 0;

        memcpy(&v, hash, s->key_len < sizeof(v) ? s->key_len : sizeof(v));
        return (size_t)(v ^ (v >> 29)) & (s->n_slots - 1);
}

static size_t probe(const struct chunk_set *s, const uint8_t *hash)
{
        size_t b = bucket_of(s, hash);

        while (s->slots[b] && memcmp(chunk_set_at(s, s->slots[b] - 1)->hash, hash, s->key_len) != 0)
                b = (b + 1) & (s->n_slots - 1);
        return b;
}

struct chunk_entry *chunk_set_find(const struct chunk_set *s, const uint8_t *hash)
{
        size_t b = probe(s, hash);

        return s->slots[b] ? chunk_set_at(s, s->slots[b] - 1) : NULL;
}

static int grow_slots(struct chunk_set *s)
{
        size_t old_n = s->n_slots;
        uint32_t *old = s->slots;

        s->slots = calloc(old_n * 2, sizeof(*s->slots));
        if (!s->slots) {
                s->slots = old;
                return -ENOMEM;
        }
        s->n_slots = old_n * 2;
        for (size_t i = 0; i < old_n; i++)
                if (old[i])
                        s->slots[probe(s, chunk_set_at(s, old[i] - 1)->hash)] = old[i];
        free(old);
        return 0;
}

struct chunk_entry *chunk_set_add(struct chunk_set *s, const uint8_t *hash, bool *added)
{
        struct chunk_entry *e;
        size_t b;

        *added = false;
        b = probe(s, hash);
        if (s->slots[b])
                return chunk_set_at(s, s->slots[b] - 1);
        if (s->count >= UINT32_MAX - 1)
                return NULL;
        if ((s->count + 1) * 2 > s->n_slots) {
                if (grow_slots(s) < 0)
                        return NULL;
                b = probe(s, hash);
        }
        if ((s->count >> BLOCK_SHIFT) == s->n_blocks) {
                uint8_t **blocks = realloc(s->blocks, (s->n_blocks + 1) * sizeof(*blocks));
                if (!blocks)
                        return NULL;
                s->blocks = blocks;
                s->blocks[s->n_blocks] = malloc(BLOCK_SIZE * s->entry_size);
                if (!s->blocks[s->n_blocks])
                        return NULL;
                s->n_blocks++;
        }
        e = chunk_set_at(s, s->count);
        memset(e, 0, s->entry_size);
        memcpy(e->hash, hash, s->key_len);
        s->slots[b] = (uint32_t)++s->count;
        *added = true;
        return e;
}
