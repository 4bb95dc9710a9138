// SPDX-License-Identifier: MIT
#include "encoder.h"

#include "log.h"

#include <brotli/encode.h>
#include <errno.h>
#include <lzma.h>
#include <stdlib.h>
#include <string.h>
#include <zstd.h>

/* bita's brotli encoder (the Rust port) keeps brotli's default window, 4 MiB.
 * The decoder's ring buffer is as large as the window of any chunk longer
 * than one meta-block: 1 MiB (not brotli's default 4 MiB) keeps a device's
 * clone small whatever its chunks, and costs nothing on 64 KiB chunks. */
#define BROTLI_WINDOW_BITS 20

struct encoder {
        enum codec codec;
        uint32_t level;
        ZSTD_CCtx *zstd;
        lzma_options_lzma lzma_preset;
};

uint32_t encoder_max_level(enum codec c)
{
        switch (c) {
        case CODEC_BROTLI:
                return BROTLI_MAX_QUALITY; /* 11 */
        case CODEC_ZSTD:
                return (uint32_t)ZSTD_maxCLevel();
        case CODEC_LZMA:
                return 9;
        case CODEC_NONE:
                break;
        }
        return 0;
}

int encoder_new(enum codec c, uint32_t level, struct encoder **out)
{
        struct encoder *e;

        if (c != CODEC_NONE && (level < 1 || level > encoder_max_level(c)))
                return -EINVAL;
        e = calloc(1, sizeof(*e));
        if (!e)
                return -ENOMEM;
        e->codec = c;
        e->level = level;
        if (c == CODEC_ZSTD && !(e->zstd = ZSTD_createCCtx())) {
                free(e);
                return -ENOMEM;
        }
        if (c == CODEC_LZMA && lzma_lzma_preset(&e->lzma_preset, level)) {
                free(e);
                return -EINVAL;
        }
        *out = e;
        return 0;
}

void encoder_free(struct encoder *e)
{
        if (!e)
                return;
        ZSTD_freeCCtx(e->zstd);
        free(e);
}

int encoders_new(enum codec c, uint32_t level, unsigned n, struct encoder ***out)
{
        struct encoder **e = calloc(n, sizeof(*e));
        int err = 0;

        if (!e)
                return log_errno(-ENOMEM, "cannot set up %s compression", codec_name(c));
        for (unsigned i = 0; i < n && err == 0; i++)
                err = encoder_new(c, level, &e[i]);
        if (err < 0) {
                encoders_free(e, n);
                return log_errno(err, "cannot set up %s compression at level %u", codec_name(c), level);
        }
        *out = e;
        return 0;
}

void encoders_free(struct encoder **e, unsigned n)
{
        for (unsigned i = 0; e && i < n; i++)
                encoder_free(e[i]);
        free(e);
}

size_t encoder_bound(const struct encoder *e, size_t len)
{
        switch (e->codec) {
        case CODEC_BROTLI:
                return BrotliEncoderMaxCompressedSize(len);
        case CODEC_ZSTD:
                return ZSTD_compressBound(len);
        case CODEC_LZMA:
                return lzma_stream_buffer_bound(len);
        case CODEC_NONE:
                break;
        }
        return len;
}

static ssize_t compress_lzma(struct encoder *e, const uint8_t *in, size_t len, uint8_t *out, size_t cap)
{
        lzma_options_lzma opt = e->lzma_preset;
        lzma_filter filters[] = {
                { .id = LZMA_FILTER_LZMA2, .options = &opt },
                { .id = LZMA_VLI_UNKNOWN, .options = NULL },
        };
        size_t out_pos = 0;
        uint32_t dict = LZMA_DICT_SIZE_MIN;

        /* The preset's dictionary (8 MiB at level 6, 64 MiB at 9) is sized
         * for whole files; a dictionary larger than the chunk finds no more
         * matches, yet its match finder tables are allocated and cleared for
         * every chunk, and every reader must allocate it to decode. So: the
         * preset's settings with the dictionary cut to the chunk size. */
        while (dict < len && dict < opt.dict_size)
                dict <<= 1;
        if (dict < opt.dict_size)
                opt.dict_size = dict;
        switch (lzma_stream_buffer_encode(filters, LZMA_CHECK_CRC64, NULL, in, len, out, &out_pos, cap)) {
        case LZMA_OK:
                return (ssize_t)out_pos;
        case LZMA_MEM_ERROR:
                return -ENOMEM;
        default:
                return -EIO;
        }
}

ssize_t encoder_compress(struct encoder *e, const uint8_t *in, size_t len, uint8_t *out, size_t cap)
{
        size_t n;

        switch (e->codec) {
        case CODEC_BROTLI:
                n = cap;
                if (!BrotliEncoderCompress((int)e->level, BROTLI_WINDOW_BITS, BROTLI_MODE_GENERIC, len, in, &n, out))
                        return -EIO;
                return (ssize_t)n;
        case CODEC_ZSTD:
                n = ZSTD_compressCCtx(e->zstd, out, cap, in, len, (int)e->level);
                if (ZSTD_isError(n))
                        return -EIO;
                return (ssize_t)n;
        case CODEC_LZMA:
                return compress_lzma(e, in, len, out, cap);
        case CODEC_NONE:
                break;
        }
        if (cap < len)
                return -ENOBUFS;
        memcpy(out, in, len);
        return (ssize_t)len;
}

/* What a buffer keeps between chunks, as the pipeline's chunk buffers do:
 * far above the usual chunk (bita's default average is 64 KiB), far below
 * its largest (16 MiB). */
#define ENCODER_BUF_KEEP (1u << 20)

ssize_t encoder_compress_buf(struct encoder *e, const uint8_t *in, size_t len, struct encoder_buf *b)
{
        size_t bound = encoder_bound(e, len);

        if (b->cap < bound) {
                /* No realloc: the old content is not needed, so not copied. */
                encoder_buf_free(b);
                b->data = malloc(bound);
                if (!b->data)
                        return -ENOMEM;
                b->cap = bound;
        }
        return encoder_compress(e, in, len, b->data, b->cap);
}

void encoder_buf_trim(struct encoder_buf *b)
{
        if (b->cap > ENCODER_BUF_KEEP)
                encoder_buf_free(b);
}

void encoder_buf_free(struct encoder_buf *b)
{
        free(b->data);
        b->data = NULL;
        b->cap = 0;
}
