// SPDX-License-Identifier: MIT
/* codec.c: streaming decoders against data compressed here by the
 * libraries themselves, fed whole and in small pieces, and against broken
 * streams. Also the real chunks of the fixture archives. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "archive.h"
#include "codec.h"
#include "hash.h"

#include <brotli/encode.h>
#include <errno.h>
#include <fcntl.h>
#include <lzma.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zstd.h>

/* ---- helpers ---------------------------------------------------------- */

struct buf {
        uint8_t *data;
        size_t len, cap;
        size_t calls;
        size_t fail_after; /* the sink fails once this many bytes have arrived (0: never) */
};

static int sink(const uint8_t *data, size_t len, void *opaque)
{
        struct buf *b = opaque;

        assert_true(len > 0);
        b->calls++;
        if (b->len + len > b->cap) {
                size_t cap = b->cap ? b->cap : 4096;
                while (cap < b->len + len)
                        cap *= 2;
                b->data = realloc(b->data, cap);
                assert_non_null(b->data);
                b->cap = cap;
        }
        memcpy(b->data + b->len, data, len);
        b->len += len;
        if (b->fail_after && b->len >= b->fail_after)
                return -EIO;
        return 0;
}

static void buf_reset(struct buf *b)
{
        free(b->data);
        memset(b, 0, sizeof(*b));
}

static uint64_t rng_state = 0x2545f4914f6cdd1dull;

static uint64_t rng(void)
{
        rng_state ^= rng_state >> 12;
        rng_state ^= rng_state << 25;
        rng_state ^= rng_state >> 27;
        return rng_state * 2685821657736338717ull;
}

/* Text-like data: compressible, but not trivially. */
static uint8_t *make_text(size_t len)
{
        static const char *const words[] = { "chunk ", "archive ", "store ", "release ", "brotli ", "zstd ",
                                              "lzma ", "bita ", "ihop ", "\n", "0123456789 ", "hash " };
        uint8_t *p = malloc(len);
        size_t i = 0;

        assert_non_null(p);
        while (i < len) {
                uint64_t r = rng();
                const char *w = words[r % 12];
                size_t n = strlen(w);
                if (r % 17 == 0) {
                        p[i++] = (uint8_t)(r >> 32);
                        continue;
                }
                for (size_t j = 0; j < n && i < len; j++)
                        p[i++] = (uint8_t)w[j];
        }
        return p;
}

static uint8_t *make_random(size_t len)
{
        uint8_t *p = malloc(len ? len : 1);

        assert_non_null(p);
        for (size_t i = 0; i < len; i++)
                p[i] = (uint8_t)(rng() >> 24);
        return p;
}

enum fmt { FMT_BROTLI, FMT_ZSTD, FMT_XZ, FMT_LZMA_ALONE };

static const char *const fmt_name[] = { "brotli", "zstd", "xz", "lzma_alone" };

static enum codec fmt_codec(enum fmt f)
{
        return f == FMT_BROTLI ? CODEC_BROTLI : f == FMT_ZSTD ? CODEC_ZSTD : CODEC_LZMA;
}

static uint8_t *compress(enum fmt f, const uint8_t *in, size_t len, size_t *out_len)
{
        uint8_t *out;
        size_t cap;

        switch (f) {
        case FMT_BROTLI: {
                cap = BrotliEncoderMaxCompressedSize(len);
                if (cap == 0)
                        cap = len + 1024;
                out = malloc(cap);
                assert_non_null(out);
                *out_len = cap;
                assert_int_equal(BrotliEncoderCompress(6, BROTLI_DEFAULT_WINDOW, BROTLI_MODE_GENERIC, len, in,
                                                       out_len, out),
                                 BROTLI_TRUE);
                return out;
        }
        case FMT_ZSTD: {
                cap = ZSTD_compressBound(len);
                out = malloc(cap);
                assert_non_null(out);
                *out_len = ZSTD_compress(out, cap, in, len, 3);
                assert_false(ZSTD_isError(*out_len));
                return out;
        }
        case FMT_XZ: {
                size_t pos = 0;
                cap = lzma_stream_buffer_bound(len);
                out = malloc(cap);
                assert_non_null(out);
                assert_int_equal(lzma_easy_buffer_encode(3, LZMA_CHECK_CRC64, NULL, in, len, out, &pos, cap),
                                 LZMA_OK);
                *out_len = pos;
                return out;
        }
        case FMT_LZMA_ALONE: {
                lzma_stream s = LZMA_STREAM_INIT;
                lzma_options_lzma opt;
                lzma_ret ret;
                cap = len + len / 2 + 4096;
                out = malloc(cap);
                assert_non_null(out);
                assert_false(lzma_lzma_preset(&opt, 3));
                assert_int_equal(lzma_alone_encoder(&s, &opt), LZMA_OK);
                s.next_in = in;
                s.avail_in = len;
                s.next_out = out;
                s.avail_out = cap;
                ret = lzma_code(&s, LZMA_FINISH);
                assert_int_equal(ret, LZMA_STREAM_END);
                *out_len = cap - s.avail_out;
                lzma_end(&s);
                return out;
        }
        }
        fail();
        return NULL;
}

/* Feeds in pieces of `piece` bytes (0: all at once). Returns the first error. */
static int decode(struct decoder *d, int raw, const uint8_t *in, size_t len, size_t piece, struct buf *out,
                  int *feed_err)
{
        int err;

        *feed_err = 0;
        assert_int_equal(decoder_begin(d, raw), 0);
        if (piece == 0)
                piece = len ? len : 1;
        for (size_t off = 0; off < len; off += piece) {
                size_t n = len - off < piece ? len - off : piece;
                err = decoder_feed(d, in + off, n, sink, out);
                if (err < 0) {
                        *feed_err = err;
                        return err;
                }
        }
        return decoder_end(d, sink, out);
}

/* ---- round trips ------------------------------------------------------ */

static void round_trip(enum fmt f, const uint8_t *plain, size_t len)
{
        static const size_t pieces[] = { 1, 7, 4096, 100000, 0 };
        size_t clen;
        uint8_t *comp = compress(f, plain, len, &clen);
        struct decoder *d = NULL;

        assert_int_equal(decoder_new(fmt_codec(f), &d), 0);
        for (size_t k = 0; k < sizeof(pieces) / sizeof(pieces[0]); k++) {
                struct buf out = { 0 };
                int feed_err;
                print_message("%s: %zu -> %zu bytes, pieces of %zu\n", fmt_name[f], len, clen, pieces[k]);
                assert_int_equal(decode(d, 0, comp, clen, pieces[k], &out, &feed_err), 0);
                assert_int_equal(out.len, len);
                if (len)
                        assert_memory_equal(out.data, plain, len);
                /* The stream is over: even one more byte is refused. */
                assert_int_equal(decoder_feed(d, (const uint8_t *)"x", 1, sink, &out), -EBADMSG);
                assert_int_equal(out.len, len);
                buf_reset(&out);
        }
        decoder_free(d);
        free(comp);
}

static void test_round_trip(void **state)
{
        const size_t text_len = 300000;
        uint8_t *text = make_text(text_len);
        uint8_t *zeros = calloc(1, 1u << 20);
        uint8_t *random = make_random(70000);

        assert_non_null(zeros);
        for (enum fmt f = FMT_BROTLI; f <= FMT_LZMA_ALONE; f++) {
                round_trip(f, text, text_len);
                /* A tiny input expanding to far more than the decoder's buffer. */
                round_trip(f, zeros, 1u << 20);
                /* Incompressible, larger than the output buffer. */
                round_trip(f, random, 70000);
                round_trip(f, text, 1);
        }
        free(random);
        free(zeros);
        free(text);
}

static void test_empty_stream(void **state)
{
        for (enum fmt f = FMT_BROTLI; f <= FMT_LZMA_ALONE; f++) {
                size_t clen;
                uint8_t *comp = compress(f, (const uint8_t *)"", 0, &clen);
                struct decoder *d = NULL;
                struct buf out = { 0 };
                int feed_err;

                assert_true(clen > 0);
                assert_int_equal(decoder_new(fmt_codec(f), &d), 0);
                assert_int_equal(decode(d, 0, comp, clen, 1, &out, &feed_err), 0);
                assert_int_equal(out.len, 0);
                assert_int_equal(out.calls, 0);
                /* No input at all is not a stream. */
                assert_int_equal(decode(d, 0, comp, 0, 0, &out, &feed_err), -EBADMSG);
                decoder_free(d);
                free(comp);
        }
}

/* One decoder, many chunks: each begin starts afresh, even after a failure. */
static void test_reuse(void **state)
{
        uint8_t *a = make_text(50000), *b = make_text(80000);

        for (enum fmt f = FMT_BROTLI; f <= FMT_LZMA_ALONE; f++) {
                size_t alen, blen;
                uint8_t *ca = compress(f, a, 50000, &alen), *cb = compress(f, b, 80000, &blen);
                struct decoder *d = NULL;
                struct buf out = { 0 };
                int feed_err;

                assert_int_equal(decoder_new(fmt_codec(f), &d), 0);
                for (int round = 0; round < 3; round++) {
                        assert_int_equal(decode(d, 0, ca, alen, 333, &out, &feed_err), 0);
                        assert_int_equal(out.len, 50000);
                        assert_memory_equal(out.data, a, 50000);
                        buf_reset(&out);
                        /* A half-fed chunk, abandoned. */
                        assert_int_equal(decoder_begin(d, 0), 0);
                        assert_int_equal(decoder_feed(d, cb, blen / 2, sink, &out), 0);
                        buf_reset(&out);
                        /* A raw chunk in between. */
                        assert_int_equal(decode(d, 1, a, 1000, 10, &out, &feed_err), 0);
                        assert_int_equal(out.len, 1000);
                        assert_memory_equal(out.data, a, 1000);
                        buf_reset(&out);
                        assert_int_equal(decode(d, 0, cb, blen, 0, &out, &feed_err), 0);
                        assert_int_equal(out.len, 80000);
                        assert_memory_equal(out.data, b, 80000);
                        buf_reset(&out);
                }
                decoder_free(d);
                free(ca);
                free(cb);
        }
        free(a);
        free(b);
}

/* ---- broken streams --------------------------------------------------- */

static void test_truncated(void **state)
{
        const size_t len = 200000;
        uint8_t *plain = make_text(len);

        for (enum fmt f = FMT_BROTLI; f <= FMT_LZMA_ALONE; f++) {
                size_t clen;
                uint8_t *comp = compress(f, plain, len, &clen);
                struct decoder *d = NULL;
                const size_t cuts[] = { clen - 1, clen - 2, clen - 5, clen / 2, 10, 1 };

                assert_int_equal(decoder_new(fmt_codec(f), &d), 0);
                for (size_t k = 0; k < sizeof(cuts) / sizeof(cuts[0]); k++) {
                        for (size_t piece = 0; piece <= 1; piece++) {
                                struct buf out = { 0 };
                                int feed_err;
                                print_message("%s: cut to %zu of %zu, pieces of %zu\n", fmt_name[f], cuts[k], clen,
                                              piece);
                                assert_int_equal(decode(d, 0, comp, cuts[k], piece, &out, &feed_err), -EBADMSG);
                                assert_int_equal(feed_err, 0); /* only the end can tell */
                                /* xz cut in its footer has already given out everything. */
                                assert_true(out.len <= len);
                                if (out.len)
                                        assert_memory_equal(out.data, plain, out.len);
                                buf_reset(&out);
                        }
                }
                decoder_free(d);
                free(comp);
        }
        free(plain);
}

static void test_garbage(void **state)
{
        for (enum fmt f = FMT_BROTLI; f <= FMT_LZMA_ALONE; f += 1) {
                if (f == FMT_LZMA_ALONE)
                        break; /* one LZMA decoder serves both formats */
                struct decoder *d = NULL;

                int at_feed = 0;

                assert_int_equal(decoder_new(fmt_codec(f), &d), 0);
                for (int iter = 0; iter < 200; iter++) {
                        size_t len = 1 + rng() % 5000;
                        uint8_t *g = make_random(len);
                        struct buf out = { 0 };
                        int feed_err;

                        if (f == FMT_XZ && iter % 2)
                                g[0] = 0xfd; /* looks like xz at first */
                        assert_int_equal(decode(d, 0, g, len, iter % 3 ? 0 : 1, &out, &feed_err), -EBADMSG);
                        if (feed_err == -EBADMSG)
                                at_feed++;
                        buf_reset(&out);
                        free(g);
                }
                /* Most garbage is seen for what it is before the end. */
                print_message("%s: %d of 200 garbage inputs refused while feeding\n", fmt_name[f], at_feed);
                assert_true(at_feed >= 150);
                /* Text is garbage too. */
                {
                        static const char text[] = "this is not a compressed stream at all, not even close";
                        struct buf out = { 0 };
                        int feed_err;
                        assert_int_equal(decode(d, 0, (const uint8_t *)text, sizeof(text), 0, &out, &feed_err),
                                         -EBADMSG);
                        buf_reset(&out);
                }
                decoder_free(d);
        }
}

/* A valid stream with a few bytes changed: refused, or decoded to
 * something (brotli has no checksum), never a crash. */
static void test_corrupted(void **state)
{
        const size_t len = 100000;
        uint8_t *plain = make_text(len);

        for (enum fmt f = FMT_BROTLI; f <= FMT_LZMA_ALONE; f++) {
                size_t clen;
                uint8_t *comp = compress(f, plain, len, &clen);
                struct decoder *d = NULL;
                int refused = 0;

                assert_int_equal(decoder_new(fmt_codec(f), &d), 0);
                for (int iter = 0; iter < 100; iter++) {
                        uint8_t *c = malloc(clen);
                        struct buf out = { 0 };
                        int feed_err, r;
                        assert_non_null(c);
                        memcpy(c, comp, clen);
                        c[rng() % clen] ^= (uint8_t)(1 + rng() % 255);
                        r = decode(d, 0, c, clen, iter % 2 ? 0 : 4096, &out, &feed_err);
                        if (r < 0) {
                                assert_int_equal(r, -EBADMSG);
                                refused++;
                        } else if (f == FMT_XZ) {
                                /* xz carries a CRC64 of the content: what it lets
                                 * through must be the original. */
                                assert_int_equal(out.len, len);
                                assert_memory_equal(out.data, plain, len);
                        }
                        buf_reset(&out);
                        free(c);
                }
                print_message("%s: %d of 100 corrupted streams refused\n", fmt_name[f], refused);
                assert_true(refused > 0);
                decoder_free(d);
                free(comp);
        }
        free(plain);
}

static void test_trailing_garbage(void **state)
{
        const size_t len = 100000;
        uint8_t *plain = make_text(len);

        for (enum fmt f = FMT_BROTLI; f <= FMT_LZMA_ALONE; f++) {
                size_t clen;
                uint8_t *comp = compress(f, plain, len, &clen);
                uint8_t *more = malloc(clen + 16);
                struct decoder *d = NULL;

                assert_non_null(more);
                memcpy(more, comp, clen);
                memcpy(more + clen, "GARBAGEGARBAGE!!", 16);
                assert_int_equal(decoder_new(fmt_codec(f), &d), 0);
                for (size_t extra = 1; extra <= 16; extra += 15) {
                        static const size_t pieces[] = { 0, 1, 4096 };
                        for (size_t k = 0; k < 3; k++) {
                                struct buf out = { 0 };
                                int feed_err;
                                print_message("%s: %zu trailing bytes, pieces of %zu\n", fmt_name[f], extra,
                                              pieces[k]);
                                assert_int_equal(decode(d, 0, more, clen + extra, pieces[k], &out, &feed_err),
                                                 -EBADMSG);
                                assert_int_equal(feed_err, -EBADMSG);
                                buf_reset(&out);
                        }
                }
                /* A second complete stream after the first is trailing data too. */
                {
                        uint8_t *twice = malloc(2 * clen);
                        struct buf out = { 0 };
                        int feed_err;
                        assert_non_null(twice);
                        memcpy(twice, comp, clen);
                        memcpy(twice + clen, comp, clen);
                        assert_int_equal(decode(d, 0, twice, 2 * clen, 0, &out, &feed_err), -EBADMSG);
                        assert_int_equal(feed_err, -EBADMSG);
                        buf_reset(&out);
                        /* ...also when it comes in a later feed (zstd would
                         * happily start a second frame). */
                        assert_int_equal(decoder_begin(d, 0), 0);
                        assert_int_equal(decoder_feed(d, comp, clen, sink, &out), 0);
                        assert_int_equal(out.len, len);
                        assert_int_equal(decoder_feed(d, comp, clen, sink, &out), -EBADMSG);
                        assert_int_equal(out.len, len);
                        buf_reset(&out);
                        free(twice);
                }
                decoder_free(d);
                free(more);
                free(comp);
        }
        free(plain);
}

/* ---- raw, errors from the sink, names ---------------------------------- */

static void test_raw(void **state)
{
        uint8_t *data = make_random(100000);
        static const enum codec codecs[] = { CODEC_NONE, CODEC_LZMA, CODEC_ZSTD, CODEC_BROTLI };

        for (size_t i = 0; i < 4; i++) {
                struct decoder *d = NULL;
                struct buf out = { 0 };
                int feed_err;

                assert_int_equal(decoder_new(codecs[i], &d), 0);
                /* raw=1 for every codec; CODEC_NONE is raw even when raw=0. */
                for (int raw = 1; raw >= (codecs[i] == CODEC_NONE ? 0 : 1); raw--) {
                        assert_int_equal(decode(d, raw, data, 100000, 1, &out, &feed_err), 0);
                        assert_int_equal(out.len, 100000);
                        assert_memory_equal(out.data, data, 100000);
                        buf_reset(&out);
                        assert_int_equal(decode(d, raw, data, 100000, 0, &out, &feed_err), 0);
                        assert_int_equal(out.len, 100000);
                        assert_memory_equal(out.data, data, 100000);
                        assert_int_equal(out.calls, 1);
                        buf_reset(&out);
                        /* Nothing at all is fine raw. */
                        assert_int_equal(decode(d, raw, data, 0, 0, &out, &feed_err), 0);
                        assert_int_equal(out.len, 0);
                }
                decoder_free(d);
        }
        free(data);
}

static void test_sink_error(void **state)
{
        const size_t len = 100000;
        uint8_t *plain = make_text(len);

        for (enum fmt f = FMT_BROTLI; f <= FMT_LZMA_ALONE; f++) {
                size_t clen;
                uint8_t *comp = compress(f, plain, len, &clen);
                struct decoder *d = NULL;
                struct buf out = { .fail_after = 1 };

                assert_int_equal(decoder_new(fmt_codec(f), &d), 0);
                assert_int_equal(decoder_begin(d, 0), 0);
                assert_int_equal(decoder_feed(d, comp, clen, sink, &out), -EIO);
                assert_int_equal(out.calls, 1);
                buf_reset(&out);
                decoder_free(d);
                free(comp);
        }
        {
                struct decoder *d = NULL;
                struct buf out = { .fail_after = 1 };
                assert_int_equal(decoder_new(CODEC_NONE, &d), 0);
                assert_int_equal(decoder_begin(d, 0), 0);
                assert_int_equal(decoder_feed(d, plain, 10, sink, &out), -EIO);
                buf_reset(&out);
                decoder_free(d);
        }
        free(plain);
}

static void test_names(void **state)
{
        assert_string_equal(codec_name(CODEC_NONE), "none");
        assert_string_equal(codec_name(CODEC_LZMA), "lzma");
        assert_string_equal(codec_name(CODEC_ZSTD), "zstd");
        assert_string_equal(codec_name(CODEC_BROTLI), "brotli");
        assert_string_equal(codec_name((enum codec)42), "unknown");
        decoder_free(NULL);
}

/* ---- the fixture archives' real chunks --------------------------------- */

static uint8_t *read_fixture(const char *name, size_t *len)
{
        const char *dir = getenv("FIXTURES");
        char path[4096];
        struct stat st;
        uint8_t *buf;
        int fd;

        if (!dir)
                fail_msg("FIXTURES is not set");
        snprintf(path, sizeof(path), "%s/%s", dir, name);
        fd = open(path, O_RDONLY);
        assert_true(fd >= 0);
        assert_int_equal(fstat(fd, &st), 0);
        buf = malloc((size_t)st.st_size);
        assert_non_null(buf);
        assert_int_equal(pread(fd, buf, (size_t)st.st_size, 0), st.st_size);
        close(fd);
        *len = (size_t)st.st_size;
        return buf;
}

/* Decodes every chunk of an archive, checking size and hash. Returns the
 * number of chunks that failed. */
static int decode_fixture(const char *name, enum codec expect, size_t piece)
{
        size_t len;
        uint8_t *file = read_fixture(name, &len);
        struct archive *a = NULL;
        struct decoder *d = NULL;
        int bad = 0;

        assert_int_equal(archive_parse(file, len, name, &a), 0);
        assert_int_equal(a->codec, expect);
        assert_int_equal(decoder_new(a->codec, &d), 0);
        for (size_t i = 0; i < a->release->n_chunks; i++) {
                const struct chunk *c = &a->release->chunks[i];
                struct buf out = { 0 };
                uint8_t digest[HASH_MAX_LEN];
                int feed_err, r;

                if (c->archive_offset + c->archive_size > len) {
                        bad++; /* the file is cut short */
                        continue;
                }
                r = decode(d, c->archive_size == c->source_size, file + c->archive_offset, c->archive_size, piece,
                           &out, &feed_err);
                if (r == 0 && out.len == c->source_size) {
                        hash_buffer(out.data, out.len, digest);
                        if (memcmp(digest, c->hash, a->release->hash_len) != 0)
                                r = -EBADMSG;
                } else if (r == 0) {
                        r = -EBADMSG;
                }
                if (r < 0) {
                        assert_int_equal(r, -EBADMSG);
                        bad++;
                }
                buf_reset(&out);
        }
        decoder_free(d);
        archive_free(a);
        free(file);
        return bad;
}

static void test_fixture_chunks(void **state)
{
        assert_int_equal(decode_fixture("zero-0_1_1-lzma.cba", CODEC_LZMA, 0), 0);
        assert_int_equal(decode_fixture("zero-0_1_1-lzma.cba", CODEC_LZMA, 1), 0);
        assert_int_equal(decode_fixture("zero-0_1_1-zstd.cba", CODEC_ZSTD, 0), 0);
        assert_int_equal(decode_fixture("zero-0_1_1-zstd.cba", CODEC_ZSTD, 1), 0);
        assert_int_equal(decode_fixture("zero-0_7_1-brotli.cba", CODEC_BROTLI, 0), 0);
        assert_int_equal(decode_fixture("zero-0_7_1-brotli.cba", CODEC_BROTLI, 1), 0);
        assert_int_equal(decode_fixture("rand-0_1_1-none.cba", CODEC_NONE, 0), 0);
        assert_int_equal(decode_fixture("pair/v1.ext4.cba", CODEC_BROTLI, 0), 0);
        assert_int_equal(decode_fixture("pair/v2.ext4.cba", CODEC_BROTLI, 65536), 0);
        /* One byte is missing from the fifth chunk (stored raw): it does not
         * match its hash, and the sixth runs past the end of the file. */
        assert_int_equal(decode_fixture("rand-0_7_1-corrupt-chunk.cba", CODEC_BROTLI, 0), 2);
}

static int group_setup(void **state)
{
        return hash_init_library() == 0 ? 0 : -1;
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_round_trip),
                cmocka_unit_test(test_empty_stream),
                cmocka_unit_test(test_reuse),
                cmocka_unit_test(test_truncated),
                cmocka_unit_test(test_garbage),
                cmocka_unit_test(test_corrupted),
                cmocka_unit_test(test_trailing_garbage),
                cmocka_unit_test(test_raw),
                cmocka_unit_test(test_sink_error),
                cmocka_unit_test(test_names),
                cmocka_unit_test(test_fixture_chunks),
        };

        return cmocka_run_group_tests(tests, group_setup, NULL);
}
