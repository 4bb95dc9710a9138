// SPDX-License-Identifier: MIT
#include "codec.h"

#include <brotli/decode.h>
#include <errno.h>
#include <lzma.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <zstd.h>

#define DECODER_OUT_SIZE (64u << 10)
/* Old bita lzma archives use xz preset 6 (8 MiB dictionary); leave room. */
#define LZMA_MEMLIMIT (256u << 20)

struct decoder {
        enum codec codec;
        bool raw;
        bool finished; /* the compressed stream ended; more input is an error */
        BrotliDecoderState *brotli;
        ZSTD_DCtx *zstd;
        lzma_stream lzma;
        bool lzma_active;
        uint8_t out[DECODER_OUT_SIZE];
};

const char *codec_name(enum codec c)
{
        switch (c) {
        case CODEC_NONE:
                return "none";
        case CODEC_LZMA:
                return "lzma";
        case CODEC_ZSTD:
                return "zstd";
        case CODEC_BROTLI:
                return "brotli";
        }
        return "unknown";
}

int codec_from_name(const char *name, enum codec *out)
{
        static const enum codec all[] = { CODEC_NONE, CODEC_LZMA, CODEC_ZSTD, CODEC_BROTLI };

        for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++) {
                if (strcmp(name, codec_name(all[i])) == 0) {
                        *out = all[i];
                        return 0;
                }
        }
        return -EINVAL;
}

int decoder_new(enum codec c, struct decoder **out)
{
        struct decoder *d = calloc(1, sizeof(*d));

        if (!d)
                return -ENOMEM;
        d->codec = c;
        d->lzma = (lzma_stream)LZMA_STREAM_INIT;
        if (c == CODEC_ZSTD && !(d->zstd = ZSTD_createDCtx())) {
                free(d);
                return -ENOMEM;
        }
        *out = d;
        return 0;
}

void decoder_free(struct decoder *d)
{
        if (!d)
                return;
        if (d->brotli)
                BrotliDecoderDestroyInstance(d->brotli);
        if (d->zstd)
                ZSTD_freeDCtx(d->zstd);
        if (d->lzma_active)
                lzma_end(&d->lzma);
        free(d);
}

int decoder_begin(struct decoder *d, int raw)
{
        d->raw = raw || d->codec == CODEC_NONE;
        d->finished = false;
        if (d->raw)
                return 0;
        switch (d->codec) {
        case CODEC_BROTLI:
                /* Brotli 1.0 has no reset: a fresh state per chunk. */
                if (d->brotli)
                        BrotliDecoderDestroyInstance(d->brotli);
                d->brotli = BrotliDecoderCreateInstance(NULL, NULL, NULL);
                return d->brotli ? 0 : -ENOMEM;
        case CODEC_ZSTD:
                ZSTD_DCtx_reset(d->zstd, ZSTD_reset_session_only);
                return 0;
        case CODEC_LZMA:
                /* bita has written both .xz and legacy .lzma streams. */
                if (lzma_auto_decoder(&d->lzma, LZMA_MEMLIMIT, 0) != LZMA_OK)
                        return -ENOMEM;
                d->lzma_active = true;
                return 0;
        case CODEC_NONE:
                break;
        }
        return 0;
}

static int feed_brotli(struct decoder *d, const uint8_t *in, size_t len, byte_sink sink, void *opaque)
{
        size_t avail_in = len;
        const uint8_t *next_in = in;

        for (;;) {
                size_t avail_out = sizeof(d->out);
                uint8_t *next_out = d->out;
                BrotliDecoderResult res = BrotliDecoderDecompressStream(d->brotli, &avail_in, &next_in,
                                                                        &avail_out, &next_out, NULL);
                size_t produced = sizeof(d->out) - avail_out;
                if (produced) {
                        int err = sink(d->out, produced, opaque);
                        if (err < 0)
                                return err;
                }
                switch (res) {
                case BROTLI_DECODER_RESULT_ERROR:
                        return -EBADMSG;
                case BROTLI_DECODER_RESULT_SUCCESS:
                        d->finished = true;
                        return avail_in ? -EBADMSG : 0;
                case BROTLI_DECODER_RESULT_NEEDS_MORE_INPUT:
                        return 0;
                case BROTLI_DECODER_RESULT_NEEDS_MORE_OUTPUT:
                        break;
                }
        }
}

static int feed_zstd(struct decoder *d, const uint8_t *in, size_t len, byte_sink sink, void *opaque)
{
        ZSTD_inBuffer input = { in, len, 0 };

        for (;;) {
                ZSTD_outBuffer output = { d->out, sizeof(d->out), 0 };
                size_t ret = ZSTD_decompressStream(d->zstd, &output, &input);
                if (ZSTD_isError(ret))
                        return -EBADMSG;
                if (output.pos) {
                        int err = sink(d->out, output.pos, opaque);
                        if (err < 0)
                                return err;
                }
                if (ret == 0) {
                        d->finished = true;
                        return input.pos < input.size ? -EBADMSG : 0;
                }
                if (input.pos == input.size && output.pos < output.size)
                        return 0;
        }
}

static int feed_lzma(struct decoder *d, const uint8_t *in, size_t len, lzma_action action, byte_sink sink,
                     void *opaque)
{
        d->lzma.next_in = in;
        d->lzma.avail_in = len;
        for (;;) {
                d->lzma.next_out = d->out;
                d->lzma.avail_out = sizeof(d->out);
                lzma_ret ret = lzma_code(&d->lzma, action);
                size_t produced = sizeof(d->out) - d->lzma.avail_out;
                if (produced) {
                        int err = sink(d->out, produced, opaque);
                        if (err < 0)
                                return err;
                }
                if (ret == LZMA_STREAM_END) {
                        d->finished = true;
                        return d->lzma.avail_in ? -EBADMSG : 0;
                }
                if (ret != LZMA_OK)
                        return -EBADMSG;
                if (d->lzma.avail_in == 0 && d->lzma.avail_out != 0 && action == LZMA_RUN)
                        return 0;
        }
}

int decoder_feed(struct decoder *d, const uint8_t *in, size_t len, byte_sink sink, void *opaque)
{
        if (len == 0)
                return 0;
        if (d->raw)
                return sink(in, len, opaque);
        if (d->finished)
                return -EBADMSG;
        switch (d->codec) {
        case CODEC_BROTLI:
                return feed_brotli(d, in, len, sink, opaque);
        case CODEC_ZSTD:
                return feed_zstd(d, in, len, sink, opaque);
        case CODEC_LZMA:
                return feed_lzma(d, in, len, LZMA_RUN, sink, opaque);
        case CODEC_NONE:
                break;
        }
        return sink(in, len, opaque);
}

int decoder_end(struct decoder *d, byte_sink sink, void *opaque)
{
        if (d->raw || d->finished)
                return 0;
        if (d->codec == CODEC_LZMA) {
                /* .lzma streams without an end marker end when the input does. */
                int err = feed_lzma(d, NULL, 0, LZMA_FINISH, sink, opaque);
                if (err < 0)
                        return err;
                return d->finished ? 0 : -EBADMSG;
        }
        return -EBADMSG;
}
