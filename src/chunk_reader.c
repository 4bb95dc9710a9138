// SPDX-License-Identifier: MIT
#include "chunk_reader.h"

#include "fsutil.h"

#include <string.h>

void chunk_reader_init(struct chunk_reader *r, int fd, const struct chunk *c, size_t hash_len, uint8_t *buf,
                       bool hash)
{
        r->fd = fd;
        r->chunk = c;
        r->hash_len = hash_len;
        r->buf = buf;
        r->off = 0;
        r->hashing = hash;
        if (hash)
                hash_init(&r->hash);
}

ssize_t chunk_reader_next(struct chunk_reader *r)
{
        uint64_t left = r->chunk->source_size - r->off;
        size_t want = left < CHUNK_READ_BLOCK ? (size_t)left : CHUNK_READ_BLOCK;
        ssize_t n;

        if (want == 0)
                return 0;
        n = pread_full(r->fd, r->buf, want, r->off);
        if (n < 0)
                return n;
        /* The file ends inside the chunk: a corrupt chunk, none of whose
         * bytes past the last whole block reach the caller. */
        if ((size_t)n < want)
                return 0;
        if (r->hashing)
                hash_update(&r->hash, r->buf, (size_t)n);
        r->off += (uint64_t)n;
        return n;
}

bool chunk_reader_complete(const struct chunk_reader *r)
{
        return r->off == r->chunk->source_size;
}

bool chunk_reader_matches(struct chunk_reader *r)
{
        uint8_t digest[HASH_MAX_LEN];

        if (!r->hashing)
                return false;
        hash_final(&r->hash, digest);
        r->hashing = false;
        return chunk_reader_complete(r) && memcmp(digest, r->chunk->hash, r->hash_len) == 0;
}
