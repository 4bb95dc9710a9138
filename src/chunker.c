// SPDX-License-Identifier: MIT
#include "chunker.h"

#include "byte_run.h"
#include "log.h"
#include "rolling_hash.h"

#include <errno.h>
#include <stdlib.h>

struct chunker {
        enum chunking_algorithm algorithm;
        uint32_t mask;
        size_t min, max;
        /* Bytes of a chunk that need not be hashed: only the last `window`
         * bytes before min matter to the hash at the first possible boundary. */
        size_t skip;
        size_t pos; /* bytes of the current chunk seen so far */
        struct rollsum rollsum;
        struct buzhash buzhash;
};

uint32_t chunker_filter_bits_for_average(uint64_t avg)
{
        uint32_t a = avg > UINT32_MAX ? UINT32_MAX : (uint32_t)avg;

        /* bita: 30 - leading_zeros(avg), so avg 64 KiB gives 15 bits and a
         * boundary on average every 2^(bits+1) bytes. */
        return a < 2 ? 0 : 30 - (uint32_t)__builtin_clz(a);
}

uint64_t chunker_average_for_filter_bits(uint32_t bits)
{
        return bits < 63 ? 1ull << (bits + 1) : 0;
}

int chunker_check_params(const struct chunker_params *p)
{
        switch (p->algorithm) {
        case CHUNKING_FIXED_SIZE:
                if (p->max_chunk_size == 0 || p->max_chunk_size > CHUNKER_MAX_CHUNK_SIZE) {
                        log_error("the fixed chunk size must be from 1 byte to %u MiB", CHUNKER_MAX_CHUNK_SIZE >> 20);
                        return -EINVAL;
                }
                return 0;
        case CHUNKING_ROLLSUM:
        case CHUNKING_BUZHASH:
                break;
        default:
                log_error("unknown chunking algorithm %d", (int)p->algorithm);
                return -EINVAL;
        }
        if (p->filter_bits < 1 || p->filter_bits > 30) {
                log_error("chunk filter bits %u are outside 1..30 (an average chunk size of 4 bytes to 2 GiB)",
                          p->filter_bits);
                return -EINVAL;
        }
        if (p->max_chunk_size == 0 || p->max_chunk_size > CHUNKER_MAX_CHUNK_SIZE) {
                log_error("the maximum chunk size must be from 1 byte to %u MiB", CHUNKER_MAX_CHUNK_SIZE >> 20);
                return -EINVAL;
        }
        if (p->min_chunk_size > p->max_chunk_size) {
                log_error("the minimum chunk size %u is larger than the maximum %u", p->min_chunk_size,
                          p->max_chunk_size);
                return -EINVAL;
        }
        /* bita cannot hash with an empty window, and one larger than the
         * largest chunk would make it index past a chunk's end. */
        if (p->window_size == 0 || p->window_size > p->max_chunk_size) {
                log_error("the rolling hash window must be from 1 byte to the maximum chunk size, not %u",
                          p->window_size);
                return -EINVAL;
        }
        return 0;
}

int chunker_new(const struct chunker_params *p, struct chunker **out)
{
        struct chunker *c;
        int err;

        err = chunker_check_params(p);
        if (err < 0)
                return err;
        c = calloc(1, sizeof(*c));
        if (!c)
                return -ENOMEM;
        c->algorithm = p->algorithm;
        c->max = p->max_chunk_size;
        if (p->algorithm != CHUNKING_FIXED_SIZE) {
                c->min = p->min_chunk_size;
                c->mask = UINT32_MAX >> (32 - p->filter_bits);
                c->skip = c->min >= p->window_size ? c->min - p->window_size : 0;
                err = p->algorithm == CHUNKING_ROLLSUM ? rollsum_init(&c->rollsum, p->window_size)
                                                       : buzhash_init(&c->buzhash, p->window_size);
                if (err < 0) {
                        free(c);
                        return err;
                }
        }
        *out = c;
        return 0;
}

void chunker_free(struct chunker *c)
{
        if (!c)
                return;
        rollsum_free(&c->rollsum);
        buzhash_free(&c->buzhash);
        free(c);
}

static size_t min_size(size_t a, size_t b)
{
        return a < b ? a : b;
}

static size_t scan_fixed(struct chunker *c, size_t len, bool *boundary)
{
        size_t n = min_size(c->max - c->pos, len);

        c->pos += n;
        if (c->pos == c->max) {
                c->pos = 0;
                *boundary = true;
        }
        return n;
}

/* The rolling hash of the chunker, chosen by a constant so the compiler
 * makes one tight loop per algorithm. The hashes are worked on in local
 * copies: their ring buffers could otherwise alias their sums, and the
 * compiler would write every sum back to memory after every byte. */
struct hashes {
        struct rollsum rollsum;
        struct buzhash buzhash;
};

static inline __attribute__((always_inline)) void hash_input(struct hashes *h, bool buz, uint8_t b)
{
        if (buz)
                buzhash_input(&h->buzhash, b);
        else
                rollsum_input(&h->rollsum, b);
}

static inline __attribute__((always_inline)) uint32_t hash_sum(const struct hashes *h, bool buz)
{
        return buz ? buzhash_sum(&h->buzhash) : rollsum_sum(&h->rollsum);
}

/* A run of one byte skipped at once needs a window of that byte behind it:
 * checked at most every RUN_CHECK_INTERVAL bytes, and only for windows small
 * enough that looking at the whole window costs little next to that. */
#define RUN_CHECK_INTERVAL 4096u
#define RUN_CHECK_MAX_WINDOW 4096u

static inline __attribute__((always_inline)) bool hashes_window_is_run(const struct hashes *h, bool buz, uint8_t b)
{
        if (buz)
                return buzhash_window_is_run(&h->buzhash, b);
        return h->rollsum.window <= RUN_CHECK_MAX_WINDOW && rollsum_window_is_run(&h->rollsum, b);
}

static inline __attribute__((always_inline)) void hashes_skip_run(struct hashes *h, bool buz, size_t n)
{
        if (buz)
                buzhash_skip_run(&h->buzhash, n);
        /* RollSum: nothing changes, the ring holds the byte at every index. */
}

static inline __attribute__((always_inline)) void hashes_load(struct hashes *h, const struct chunker *c, bool buz)
{
        if (buz)
                h->buzhash = c->buzhash;
        else
                h->rollsum = c->rollsum;
}

static inline __attribute__((always_inline)) void hashes_store(struct chunker *c, const struct hashes *h, bool buz)
{
        if (buz)
                c->buzhash = h->buzhash;
        else
                c->rollsum = h->rollsum;
}

/* The phases of a chunk, as positions in it:
 *   [0, skip - 1)       not hashed (when skip > 0)
 *   [.., min - 1)       hashed, no boundary possible yet
 *   [min - 1, max)      hashed, a boundary after any byte whose sum matches
 * bita skips to skip - 1, not skip, so it hashes window + 1 bytes before its
 * first check; reproduced as is, as it decides where boundaries fall. n bytes
 * of data are already taken (by the BuzHash warm-up). */
static inline __attribute__((always_inline)) size_t scan_rolling(struct chunker *c, bool buz, const uint8_t *data,
                                                                 size_t len, size_t n, bool *boundary)
{
        const uint32_t mask = c->mask;
        struct hashes h;
        size_t k;

        if (c->skip > 0 && c->pos < c->skip - 1) {
                k = min_size(c->skip - 1 - c->pos, len - n);
                n += k;
                c->pos += k;
                if (c->pos < c->skip - 1)
                        return n;
        }
        hashes_load(&h, c, buz);
        if (c->min > 0 && c->pos < c->min - 1) {
                k = min_size(c->min - 1 - c->pos, len - n);
                for (size_t i = 0; i < k; i++)
                        hash_input(&h, buz, data[n + i]);
                n += k;
                c->pos += k;
                if (c->pos < c->min - 1) {
                        hashes_store(c, &h, buz);
                        return n;
                }
        }
        k = min_size(c->max - c->pos, len - n);
        for (size_t i = 0; i < k;) {
                size_t end = min_size(k, i + RUN_CHECK_INTERVAL);
                for (; i < end; i++) {
                        hash_input(&h, buz, data[n + i]);
                        uint32_t s = hash_sum(&h, buz);
                        if ((s | mask) == s) {
                                hashes_store(c, &h, buz);
                                c->pos = 0;
                                *boundary = true;
                                return n + i + 1;
                        }
                }
                /* Unused space in an image (zeros, or 0xff of erased flash):
                 * with the window full of one byte and more of it ahead, the
                 * state and so the sum stay as they are, and that sum has
                 * just been no boundary. */
                uint8_t last = data[n + i - 1];
                if (i < k && data[n + i] == last && hashes_window_is_run(&h, buz, last)) {
                        size_t run = byte_run_length(data + n + i, k - i, last);
                        hashes_skip_run(&h, buz, run);
                        i += run;
                }
        }
        hashes_store(c, &h, buz);
        n += k;
        c->pos += k;
        if (c->pos >= c->max) {
                c->pos = 0;
                *boundary = true;
        }
        return n;
}

static size_t scan_rollsum(struct chunker *c, const uint8_t *data, size_t len, bool *boundary)
{
        return scan_rolling(c, false, data, len, 0, boundary);
}

static size_t scan_buzhash(struct chunker *c, const uint8_t *data, size_t len, bool *boundary)
{
        struct buzhash *h = &c->buzhash;
        size_t n = 0;

        /* The warm-up covers the stream's first window bytes, whatever chunk
         * they are in; bita counts them as part of that chunk. */
        while (!h->full && n < len) {
                buzhash_warm_up(h, data[n++]);
                c->pos++;
        }
        if (!h->full)
                return n;
        return scan_rolling(c, true, data, len, n, boundary);
}

size_t chunker_scan(struct chunker *c, const uint8_t *data, size_t len, bool *boundary)
{
        *boundary = false;
        if (len == 0)
                return 0;
        switch (c->algorithm) {
        case CHUNKING_FIXED_SIZE:
                return scan_fixed(c, len, boundary);
        case CHUNKING_ROLLSUM:
                return scan_rollsum(c, data, len, boundary);
        case CHUNKING_BUZHASH:
                return scan_buzhash(c, data, len, boundary);
        }
        return len;
}
