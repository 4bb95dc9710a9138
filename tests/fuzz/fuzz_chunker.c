// SPDX-License-Identifier: MIT
/* The streaming chunker (chunker.c, with rolling_hash.c and byte_run.c)
 * against a plain byte-at-a-time reference written here from the rules in
 * chunker.h: fed in pieces of sizes taken from the input, the chunker must
 * cut exactly where the reference cuts, for RollSum, BuzHash and fixed-size
 * chunking, whatever the pieces. Any difference aborts.
 *
 * Input layout:
 *   byte 0      algorithm (mod 3)
 *   byte 1      filter bits, 1 + (mod 16): small, so boundaries happen
 *   bytes 2-3   max chunk size, 1 + u16-LE
 *   bytes 4-5   min chunk size, u16-LE mod (max + 1)
 *   bytes 6-7   window, 1 + u16-LE mod min(max, 8192) (past the chunker's
 *               4096-byte run-check window)
 *   byte 8      number of piece sizes k (mod 8), then k u16-LE piece sizes,
 *               used in turn (0: the rest at once; no sizes: all at once)
 *   the rest    the data (at most 64 KiB), as a program: a byte b < 0xe0
 *               is followed by (b & 0x7f) + 1 literal bytes; b >= 0xe0 is
 *               a run of the next byte value, ((b & 0x1f) << 8 | the byte
 *               after) + 1 bytes long (runs are what the chunker steps over
 *               without hashing). Runs are rare in random input, so most
 *               inputs stay small and fast. */
#include "fuzz.h"

#include "chunker.h"
#include "rolling_hash.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_DATA (64u << 10)
#define MAX_PIECES 8

struct input {
        const uint8_t *p;
        size_t left;
};

FUZZ_NO_COVERAGE static uint32_t take(struct input *in, size_t n)
{
        uint32_t v = 0;

        for (size_t i = 0; i < n; i++) {
                uint32_t b = in->left ? (in->left--, *in->p++) : 0;
                v |= b << (8 * i);
        }
        return v;
}

FUZZ_NO_COVERAGE static size_t expand_data(struct input *in, uint8_t *out)
{
        size_t len = 0;

        while (in->left > 0 && len < MAX_DATA) {
                uint8_t op = (uint8_t)take(in, 1);
                size_t n;
                if (op < 0xe0) {
                        n = (size_t)(op & 0x7f) + 1;
                        if (n > in->left)
                                n = in->left;
                        if (n > MAX_DATA - len)
                                n = MAX_DATA - len;
                        memcpy(out + len, in->p, n);
                        in->p += n;
                        in->left -= n;
                } else {
                        uint8_t byte = (uint8_t)take(in, 1);
                        n = ((size_t)(op & 0x1f) << 8 | take(in, 1)) + 1;
                        if (n > MAX_DATA - len)
                                n = MAX_DATA - len;
                        memset(out + len, byte, n);
                }
                len += n;
        }
        return len;
}

/* The reference: one byte at a time, the hashes kept with the whole history
 * of the bytes they took in (no ring buffers, no skipping). */
struct reference {
        struct chunker_params p;
        uint32_t mask;
        size_t pos;            /* bytes of the current chunk so far */
        uint8_t *hashed;       /* every byte the rolling hash took in, in order */
        size_t n_hashed;
        uint32_t s1, s2;       /* RollSum */
        uint32_t buz;          /* BuzHash */
        uint8_t last;          /* BuzHash: the byte value repeating... */
        uint64_t repeated;     /* ...and how often it came again in a row */
};

FUZZ_NO_COVERAGE static uint32_t rotate(uint32_t v, uint32_t n)
{
        n %= 32;
        return n ? (v << n) | (v >> (32 - n)) : v;
}

FUZZ_NO_COVERAGE static uint8_t out_byte(const struct reference *r)
{
        uint32_t w = r->p.window_size;
        return r->n_hashed >= w ? r->hashed[r->n_hashed - w] : 0;
}

FUZZ_NO_COVERAGE static void reference_hash(struct reference *r, uint8_t b)
{
        uint32_t w = r->p.window_size;

        if (r->p.algorithm == CHUNKING_ROLLSUM) {
                /* bita's rsync-style sums: the window starts as w zero bytes. */
                uint32_t out = out_byte(r);
                r->s1 += (uint32_t)b - out;
                r->s2 += r->s1 - w * (out + ROLLSUM_CHAR_OFFSET);
                r->hashed[r->n_hashed++] = b;
                return;
        }
        /* BuzHash ignores a byte that repeats a full window's worth of the same byte. */
        if (b == r->last) {
                r->repeated++;
        } else {
                r->repeated = 0;
                r->last = b;
        }
        if (r->repeated >= w)
                return;
        r->buz = rotate(r->buz, 1) ^ rotate(buzhash_table[out_byte(r)], w) ^ buzhash_table[b];
        r->hashed[r->n_hashed++] = b;
}

FUZZ_NO_COVERAGE static uint32_t reference_sum(const struct reference *r)
{
        if (r->p.algorithm == CHUNKING_ROLLSUM)
                return (r->s1 << 16) | (r->s2 & 0xffff);
        return r->buz;
}

/* Does a chunk end after this byte? */
FUZZ_NO_COVERAGE static bool reference_byte(struct reference *r, uint8_t b)
{
        const struct chunker_params *p = &r->p;
        size_t min = p->min_chunk_size, window = p->window_size;
        bool cut = false;

        if (p->algorithm == CHUNKING_FIXED_SIZE) {
                cut = ++r->pos == p->max_chunk_size;
        } else if (p->algorithm == CHUNKING_BUZHASH && r->n_hashed < window) {
                /* Warm-up on the stream's first window bytes: each byte's
                 * table word rotated by its distance from the window's end. */
                r->buz ^= rotate(buzhash_table[b], (uint32_t)(window - 1 - r->n_hashed));
                r->hashed[r->n_hashed++] = b;
                r->pos++;
        } else if (min > window && r->pos + 1 < min - window) {
                r->pos++; /* too far before min to matter to the hash */
        } else if (r->pos + 1 < min) {
                reference_hash(r, b);
                r->pos++;
        } else {
                reference_hash(r, b);
                r->pos++;
                uint32_t s = reference_sum(r);
                cut = (s & r->mask) == r->mask;
        }
        if (r->pos == p->max_chunk_size)
                cut = true;
        if (cut)
                r->pos = 0;
        return cut;
}

FUZZ_NO_COVERAGE static size_t reference_cuts(const struct chunker_params *p, const uint8_t *data, size_t len, size_t *cuts)
{
        struct reference r = { .p = *p };
        size_t n = 0;

        r.hashed = malloc(len ? len : 1);
        if (!r.hashed)
                abort();
        r.mask = p->filter_bits ? UINT32_MAX >> (32 - p->filter_bits) : 0;
        r.s1 = p->window_size * ROLLSUM_CHAR_OFFSET;
        r.s2 = p->window_size * (p->window_size - 1) * ROLLSUM_CHAR_OFFSET;
        for (size_t i = 0; i < len; i++)
                if (reference_byte(&r, data[i]))
                        cuts[n++] = i + 1;
        free(r.hashed);
        return n;
}

static size_t chunker_cuts(const struct chunker_params *p, const uint8_t *data, size_t len,
                           const uint16_t *pieces, size_t n_pieces, size_t *cuts)
{
        struct chunker *c = NULL;
        size_t off = 0, start = 0, n = 0, turn = 0;

        if (chunker_new(p, &c) < 0)
                abort(); /* the parameters were drawn within the valid bounds */
        while (off < len) {
                size_t piece = n_pieces ? pieces[turn++ % n_pieces] : 0;
                if (piece == 0 || piece > len - off)
                        piece = len - off;
                while (piece > 0) {
                        bool boundary;
                        size_t k = chunker_scan(c, data + off, piece, &boundary);
                        if (k > piece || (k == 0 && !boundary))
                                abort();
                        off += k;
                        piece -= k;
                        if (boundary) {
                                if (off == start || off - start > p->max_chunk_size)
                                        abort();
                                cuts[n++] = start = off;
                        }
                }
        }
        chunker_free(c);
        return n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        static uint8_t buf[MAX_DATA];
        static size_t expected[MAX_DATA], got[MAX_DATA];
        struct input in = { data, size };
        struct chunker_params p = { 0 };
        uint16_t pieces[MAX_PIECES];
        size_t n_pieces, len, n_expected, n_got;

        p.algorithm = (enum chunking_algorithm)(take(&in, 1) % 3);
        p.filter_bits = 1 + take(&in, 1) % 16;
        p.max_chunk_size = 1 + take(&in, 2);
        p.min_chunk_size = take(&in, 2) % (p.max_chunk_size + 1);
        p.window_size = 1 + take(&in, 2) % (p.max_chunk_size < 8192 ? p.max_chunk_size : 8192);
        p.hash_length = HASH_MAX_LEN;
        if (p.algorithm == CHUNKING_FIXED_SIZE)
                p.filter_bits = p.min_chunk_size = p.window_size = 0;
        n_pieces = take(&in, 1) % MAX_PIECES;
        for (size_t i = 0; i < n_pieces; i++)
                pieces[i] = (uint16_t)take(&in, 2);
        len = expand_data(&in, buf);

        n_expected = reference_cuts(&p, buf, len, expected);
        n_got = chunker_cuts(&p, buf, len, pieces, n_pieces, got);
        for (size_t i = 0; i < n_expected || i < n_got; i++) {
                if (i < n_expected && i < n_got && expected[i] == got[i])
                        continue;
                fprintf(stderr,
                        "chunker differs from the reference: %s filter bits %u min %u max %u window %u, "
                        "%zu bytes in %zu piece sizes: cut %zu at %zu, reference at %zu (%zu cuts, reference %zu)\n",
                        chunking_algorithm_name(p.algorithm), p.filter_bits, p.min_chunk_size,
                        p.max_chunk_size, p.window_size, len, n_pieces, i, i < n_got ? got[i] : 0,
                        i < n_expected ? expected[i] : 0, n_got, n_expected);
                abort();
        }
        return 0;
}
