// SPDX-License-Identifier: MIT
/* The two rolling hashes bita chunks with, bit for bit as bita computes
 * them (its 32-bit wrapping arithmetic included), so that ihop finds the
 * same chunk boundaries. The per-byte steps are inline: the chunker calls
 * them for nearly every byte of an image. */
#pragma once

#include "byte_run.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* rsync/bup style: two running sums over the window. Every sum starts as if
 * the window were full of bytes of value 0 with this offset added. */
#define ROLLSUM_CHAR_OFFSET 31u

struct rollsum {
        uint32_t s1, s2;
        uint32_t window;
        uint32_t next; /* index of the oldest byte in ring */
        uint8_t *ring;
};

int rollsum_init(struct rollsum *r, uint32_t window);
void rollsum_free(struct rollsum *r);

static inline void rollsum_input(struct rollsum *r, uint8_t in)
{
        uint32_t out = r->ring[r->next];

        r->s1 += (uint32_t)in - out;
        r->s2 += r->s1 - r->window * (out + ROLLSUM_CHAR_OFFSET);
        r->ring[r->next] = in;
        if (++r->next == r->window)
                r->next = 0;
}

static inline uint32_t rollsum_sum(const struct rollsum *r)
{
        return (r->s1 << 16) | (r->s2 & 0xffff);
}

/* While the window holds one byte value b only, s1 is window * (b + offset)
 * and another b changes neither sum: the state is fixed, whatever the
 * ring's index. */
static inline bool rollsum_window_is_run(const struct rollsum *r, uint8_t b)
{
        return byte_run_all(r->ring, r->window, b);
}

/* Cyclic polynomial over a table of 256 random words. Unlike RollSum it has
 * an explicit warm-up over the first `window` bytes of the stream, and it
 * stops taking input while one byte value repeats: a window full of the same
 * byte hashes the same whatever comes next of that byte. */
struct buzhash {
        uint32_t sum;
        uint32_t window;
        uint32_t next;
        bool full;              /* warm-up done; never reset */
        uint8_t last_input;
        uint64_t repeated;      /* how often last_input came again in a row */
        uint32_t *ring;         /* table values of the bytes in the window */
};

extern const uint32_t buzhash_table[256]; /* already mixed with bita's seed */

int buzhash_init(struct buzhash *b, uint32_t window);
void buzhash_free(struct buzhash *b);

static inline uint32_t rotl32(uint32_t v, uint32_t n)
{
        n &= 31; /* as Rust's rotate_left: the count is taken modulo 32 */
        return n ? (v << n) | (v >> (32 - n)) : v;
}

/* One byte of the warm-up; sets full after the window's worth. */
static inline void buzhash_warm_up(struct buzhash *b, uint8_t in)
{
        uint32_t v = buzhash_table[in];

        b->sum ^= rotl32(v, b->window - (b->next + 1));
        b->full = b->next >= b->window - 1;
        b->ring[b->next] = v;
        if (++b->next == b->window)
                b->next = 0;
}

static inline void buzhash_input(struct buzhash *b, uint8_t in)
{
        uint32_t v, out;

        if (in == b->last_input) {
                b->repeated++;
        } else {
                b->repeated = 0;
                b->last_input = in;
        }
        if (b->repeated >= b->window)
                return;
        v = buzhash_table[in];
        out = b->ring[b->next];
        b->sum = rotl32(b->sum, 1) ^ rotl32(out, b->window) ^ v;
        b->ring[b->next] = v;
        if (++b->next == b->window)
                b->next = 0;
}

static inline uint32_t buzhash_sum(const struct buzhash *b)
{
        return b->sum;
}

/* Once a window's worth of one byte came in a row, more of it is ignored
 * (above): only the repeat count moves. */
static inline bool buzhash_window_is_run(const struct buzhash *b, uint8_t byte)
{
        return b->last_input == byte && b->repeated >= b->window;
}

static inline void buzhash_skip_run(struct buzhash *b, size_t n)
{
        b->repeated += n;
}
