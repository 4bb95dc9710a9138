// SPDX-License-Identifier: MIT
#include "chunking_options.h"

#include "chunker.h"
#include "encoder.h"
#include "hash.h"
#include "log.h"
#include "units.h"

#include <errno.h>
#include <string.h>

/* bita's defaults. The table below shows each as --help and the README do
 * (the tests check that an archive made with those values given is the
 * one made with none). */
#define DEFAULT_AVG (64u << 10)
#define DEFAULT_MIN (16u << 10)
#define DEFAULT_MAX (16u << 20)
#define DEFAULT_WINDOW_ROLLSUM 64
#define DEFAULT_WINDOW_BUZHASH 16
#define DEFAULT_CODEC CODEC_BROTLI
#define DEFAULT_LEVEL 6
#define DEFAULT_HASH_LENGTH 64

static struct cli_option options[] = {
        { .help = "Chunking (as bita; sizes take B, KiB, MiB, GiB):" },
        { .name = "avg-chunk-size", .key = OPT_AVG_CHUNK_SIZE, .arg = "SIZE",
          .help = "average chunk size, rounded down to a power of two", .def = "64KiB" },
        { .name = "min-chunk-size", .key = OPT_MIN_CHUNK_SIZE, .arg = "SIZE", .help = "smallest chunk",
          .def = "16KiB" },
        { .name = "max-chunk-size", .key = OPT_MAX_CHUNK_SIZE, .arg = "SIZE", .help = "largest chunk",
          .def = "16MiB" },
        { .name = "hash-chunking", .key = OPT_HASH_CHUNKING, .arg = "HASH", .help = "RollSum or BuzHash",
          .def = "RollSum" },
        { .name = "rolling-window-size", .key = OPT_ROLLING_WINDOW_SIZE, .arg = "SIZE", .help = "rolling hash window",
          .def = "64 for RollSum, 16 for BuzHash" },
        { .name = "fixed-size", .key = OPT_FIXED_SIZE, .arg = "SIZE",
          .help = "fixed-size chunks instead of a rolling hash" },
        { .name = "hash-length", .key = OPT_HASH_LENGTH, .arg = "N",
          .help = "bytes of each chunk's BLAKE2b-512 kept, 4..64", .def = "%u", .number = DEFAULT_HASH_LENGTH },
        { .help = "Compression:" },
        { .name = "compression", .key = OPT_COMPRESSION, .arg = "TYPE", .help = "brotli, zstd, lzma or none",
          .def = "brotli" },
        /* zstd's highest level is libzstd's to say: filled in at run time. */
        { .name = "compression-level", .key = OPT_COMPRESSION_LEVEL, .arg = "N",
          .help = "1..11 for brotli, 1..%u for zstd, 1..9 for lzma", .def = "6" },
        {}
};

const struct cli_option *chunking_cli_options(void)
{
        for (struct cli_option *o = options; o->name || o->help; o++)
                if (o->key == OPT_COMPRESSION_LEVEL)
                        o->number = encoder_max_level(CODEC_ZSTD);
        return options;
}

void chunking_options_init(struct chunking_options *c)
{
        *c = (struct chunking_options){
                .chunker = { .algorithm = CHUNKING_ROLLSUM, .hash_length = DEFAULT_HASH_LENGTH },
                .codec = DEFAULT_CODEC,
                .level_arg = DEFAULT_LEVEL,
                .avg = DEFAULT_AVG,
                .min = DEFAULT_MIN,
                .max = DEFAULT_MAX,
        };
}

static int parse_size_arg(const char *name, const char *arg, uint64_t *out)
{
        if (parse_size(arg, out) < 0) {
                log_error("--%s wants a size (like 64KiB), not '%s'", name, arg);
                return -EINVAL;
        }
        return 0;
}

int chunking_options_parse(struct chunking_options *c, int opt, const char *arg)
{
        uint64_t v;
        int err = 0;

        switch (opt) {
        case OPT_AVG_CHUNK_SIZE:
                err = parse_size_arg("avg-chunk-size", arg, &c->avg);
                break;
        case OPT_MIN_CHUNK_SIZE:
                err = parse_size_arg("min-chunk-size", arg, &c->min);
                break;
        case OPT_MAX_CHUNK_SIZE:
                err = parse_size_arg("max-chunk-size", arg, &c->max);
                break;
        case OPT_ROLLING_WINDOW_SIZE:
                err = parse_size_arg("rolling-window-size", arg, &c->window);
                c->window_given = true;
                break;
        case OPT_FIXED_SIZE:
                err = parse_size_arg("fixed-size", arg, &c->fixed);
                c->fixed_given = true;
                break;
        case OPT_HASH_CHUNKING:
                if (strcmp(arg, "RollSum") == 0) {
                        c->chunker.algorithm = CHUNKING_ROLLSUM;
                } else if (strcmp(arg, "BuzHash") == 0) {
                        c->chunker.algorithm = CHUNKING_BUZHASH;
                } else {
                        log_error("--hash-chunking wants RollSum or BuzHash, not '%s'", arg);
                        return -EINVAL;
                }
                c->algorithm_given = true;
                break;
        case OPT_COMPRESSION:
                if (codec_from_name(arg, &c->codec) < 0) {
                        log_error("--compression wants brotli, zstd, lzma or none, not '%s'", arg);
                        return -EINVAL;
                }
                c->compression_given = true;
                return 1;
        case OPT_COMPRESSION_LEVEL:
                if (parse_uint(arg, UINT32_MAX, &c->level_arg) < 0) {
                        log_error("--compression-level wants a number, not '%s'", arg);
                        return -EINVAL;
                }
                c->compression_given = true;
                return 1;
        case OPT_HASH_LENGTH:
                if (parse_uint(arg, UINT32_MAX, &v) < 0 || v < HASH_MIN_LEN || v > HASH_MAX_LEN) {
                        log_error("--hash-length wants a number from %d to %d, not '%s'", HASH_MIN_LEN, HASH_MAX_LEN,
                                  arg);
                        return -EINVAL;
                }
                c->chunker.hash_length = (uint32_t)v;
                return 1;
        default:
                return 0;
        }
        if (err < 0)
                return err;
        c->chunker_given = true;
        return 1;
}

static int finish_chunker(struct chunking_options *c)
{
        struct chunker_params *p = &c->chunker;

        if (c->fixed_given) {
                if (c->algorithm_given) {
                        log_error("--fixed-size and --hash-chunking cannot be used together");
                        return -EINVAL;
                }
                if (c->fixed == 0 || c->fixed > CHUNKER_MAX_CHUNK_SIZE) {
                        log_error("--fixed-size must be from 1 byte to %u MiB", CHUNKER_MAX_CHUNK_SIZE >> 20);
                        return -EINVAL;
                }
                p->algorithm = CHUNKING_FIXED_SIZE;
                p->max_chunk_size = (uint32_t)c->fixed;
                return chunker_check_params(p);
        }
        if (c->avg < 4) {
                log_error("--avg-chunk-size must be at least 4 bytes");
                return -EINVAL;
        }
        if (c->min > c->avg) {
                log_error("the minimum chunk size can't be bigger than the target average chunk size");
                return -EINVAL;
        }
        if (c->max < c->avg) {
                log_error("the maximum chunk size can't be smaller than the target average chunk size");
                return -EINVAL;
        }
        if (c->max > CHUNKER_MAX_CHUNK_SIZE) {
                log_error("--max-chunk-size must be at most %u MiB", CHUNKER_MAX_CHUNK_SIZE >> 20);
                return -EINVAL;
        }
        if (!c->window_given)
                c->window = p->algorithm == CHUNKING_BUZHASH ? DEFAULT_WINDOW_BUZHASH : DEFAULT_WINDOW_ROLLSUM;
        if (c->window == 0 || c->window > c->max) {
                log_error("--rolling-window-size must be from 1 byte to the maximum chunk size");
                return -EINVAL;
        }
        p->filter_bits = chunker_filter_bits_for_average(c->avg);
        p->min_chunk_size = (uint32_t)c->min;
        p->max_chunk_size = (uint32_t)c->max;
        p->window_size = (uint32_t)c->window;
        return chunker_check_params(p);
}

int chunking_options_finish(struct chunking_options *c)
{
        int err = finish_chunker(c);

        if (err < 0)
                return err;
        if (c->codec == CODEC_NONE) {
                c->level = 0;
                return 0;
        }
        uint32_t max = encoder_max_level(c->codec);
        if (c->level_arg < 1 || c->level_arg > max) {
                log_error("%s compression level out of range (valid range is 1-%u)", codec_name(c->codec), max);
                return -EINVAL;
        }
        c->level = (uint32_t)c->level_arg;
        return 0;
}

const char *chunker_params_describe(const struct chunker_params *p, char *buf, size_t len)
{
        char a[32], b[32], c[32];

        if (p->algorithm == CHUNKING_FIXED_SIZE)
                snprintf(buf, len, "fixed size, %s", format_size(p->max_chunk_size, a, sizeof(a)));
        else
                snprintf(buf, len, "%s, window %u, average %s (filter bits %u), min %s, max %s",
                         chunking_algorithm_name(p->algorithm), p->window_size,
                         format_size(chunker_average_for_filter_bits(p->filter_bits), a, sizeof(a)),
                         p->filter_bits, format_size(p->min_chunk_size, b, sizeof(b)),
                         format_size(p->max_chunk_size, c, sizeof(c)));
        return buf;
}
