// SPDX-License-Identifier: MIT
/* bita archives as ihop reads them (archive_source.c, clone.c): the first 14
 * bytes give the header's length, the header is parsed and checked, the
 * archive's size is checked against its chunks, and each chunk's data is
 * decompressed and hashed as clone does. The input is an archive file, or
 * its start.
 *
 * Random bytes would never get past the header's BLAKE2b checksum, so the
 * target writes the right checksum into the header before parsing it: the
 * fuzzer reaches the dictionary decoding and every check after it. (The
 * checksum comparison itself is tested in test_archive_frame and the e2e tests.) */
#include "fuzz.h"

#include "archive.h"
#include "codec.h"
#include "hash.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

/* Bounds that keep one input fast: a decompression bomb of a few bytes must
 * not cost a second per execution. */
#define MAX_CHUNKS_DECODED 16
#define MAX_DECODED_SIZE (1u << 20)

struct chunk_check {
        hash_state hash;
        uint64_t left;
};

/* As clone's chunk writer: more output than the chunk's size is corrupt. */
static int check_sink(const uint8_t *data, size_t len, void *opaque)
{
        struct chunk_check *c = opaque;

        if (len > c->left)
                return -EBADMSG;
        hash_update(&c->hash, data, len);
        c->left -= len;
        return 0;
}

static void check_chunk(struct decoder *d, const struct release *r, const struct chunk *c, const uint8_t *data)
{
        struct chunk_check cc = { .left = c->source_size };
        uint8_t digest[HASH_MAX_LEN];
        const uint8_t *p = data + c->archive_offset;
        /* Two pieces, as over HTTP a chunk arrives in any number of them. */
        size_t half = c->archive_size / 2;
        int err;

        hash_init(&cc.hash);
        err = decoder_begin(d, c->archive_size == c->source_size);
        if (err == 0)
                err = decoder_feed(d, p, half, check_sink, &cc);
        if (err == 0)
                err = decoder_feed(d, p + half, c->archive_size - half, check_sink, &cc);
        if (err == 0)
                err = decoder_end(d, check_sink, &cc);
        hash_final(&cc.hash, digest);
        if (err == 0 && cc.left == 0 && memcmp(digest, c->hash, r->hash_len) == 0)
                return; /* a good chunk */
        if (err != 0 && err != -EBADMSG && err != -ENOMEM)
                abort(); /* the decoder's contract: corrupt data is -EBADMSG */
}

/* What the parser promises its callers, checked on every archive it accepts. */
static void check_accepted(const struct archive *a, size_t size)
{
        const struct release *r = a->release;
        uint64_t sum = 0;

        if (a->chunk_data_offset < a->header_size || a->chunk_data_end > size)
                abort();
        if (r->hash_len < HASH_MIN_LEN || r->hash_len > HASH_MAX_LEN)
                abort();
        for (size_t i = 0; i < r->n_chunks; i++) {
                const struct chunk *c = &r->chunks[i];
                if (c->source_size == 0 || c->archive_size == 0 || c->archive_offset < a->chunk_data_offset ||
                    c->archive_offset + c->archive_size > a->chunk_data_end)
                        abort();
        }
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
        _cleanup_archive_ struct archive *a = NULL;
        struct decoder *d = NULL;
        uint64_t header_len;
        uint8_t *header;

        if (!ready) {
                if (hash_init_library() < 0)
                        abort();
                ready = true;
        }
        if (archive_header_length(data, size, "fuzz input", &header_len) < 0)
                return 0;
        if (header_len > size) {
                /* The reader gets fewer bytes than the header needs. */
                if (archive_parse(data, size, "fuzz input", &a) == 0)
                        abort();
                return 0;
        }
        /* An exact-size copy, owned by the parser, as archive_source passes it. */
        header = malloc(header_len);
        if (!header)
                return 0;
        memcpy(header, data, header_len);
        hash_buffer(header, header_len - HASH_MAX_LEN, header + header_len - HASH_MAX_LEN);
        if (archive_parse_take(&header, header_len, "fuzz input", &a) < 0)
                return 0;
        if (header)
                abort(); /* the parser owns the buffer, whatever the outcome */
        if (archive_check_size(a, size, "fuzz input") < 0)
                return 0;
        check_accepted(a, size);
        if (decoder_new(a->codec, &d) < 0)
                return 0;
        for (size_t i = 0, decoded = 0; i < a->release->n_chunks && decoded < MAX_CHUNKS_DECODED; i++) {
                if (a->release->chunks[i].source_size > MAX_DECODED_SIZE)
                        continue;
                check_chunk(d, a->release, &a->release->chunks[i], data);
                decoded++;
        }
        decoder_free(d);
        return 0;
}
