/* The chunking and compression options of `ihop compress` and `ihop diff`,
 * with bita's names, defaults and checks, so a bita command line works
 * unchanged. Defaults live here and in the usage text printed from here. */
#pragma once

#include "codec.h"
#include "release.h"

#include <getopt.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

enum {
        OPT_AVG_CHUNK_SIZE = 0x1000,
        OPT_MIN_CHUNK_SIZE,
        OPT_MAX_CHUNK_SIZE,
        OPT_HASH_CHUNKING,
        OPT_ROLLING_WINDOW_SIZE,
        OPT_FIXED_SIZE,
        OPT_COMPRESSION,
        OPT_COMPRESSION_LEVEL,
        OPT_HASH_LENGTH,
};

#define CHUNKING_LONG_OPTIONS                                                          \
        { "avg-chunk-size", required_argument, NULL, OPT_AVG_CHUNK_SIZE },             \
        { "min-chunk-size", required_argument, NULL, OPT_MIN_CHUNK_SIZE },             \
        { "max-chunk-size", required_argument, NULL, OPT_MAX_CHUNK_SIZE },             \
        { "hash-chunking", required_argument, NULL, OPT_HASH_CHUNKING },               \
        { "rolling-window-size", required_argument, NULL, OPT_ROLLING_WINDOW_SIZE },   \
        { "fixed-size", required_argument, NULL, OPT_FIXED_SIZE },                     \
        { "compression", required_argument, NULL, OPT_COMPRESSION },                   \
        { "compression-level", required_argument, NULL, OPT_COMPRESSION_LEVEL },       \
        { "hash-length", required_argument, NULL, OPT_HASH_LENGTH }

struct chunking_options {
        /* The result, once chunking_options_finish has checked it. */
        struct chunker_params chunker; /* hash_length included */
        enum codec codec;
        uint32_t level;
        bool chunker_given;            /* a chunking option was on the command line */
        bool compression_given;

        /* As given, before the checks. */
        uint64_t avg, min, max, window, fixed, level_arg;
        bool algorithm_given, window_given, fixed_given;
};

void chunking_options_init(struct chunking_options *c);

/* Takes one getopt result: 1 when it was one of ours, 0 when not, -EINVAL
 * (logged) for a bad value. */
int chunking_options_parse(struct chunking_options *c, int opt, const char *arg);

/* bita's checks (min <= avg <= max, level range per codec, ...); logs and
 * returns -EINVAL on a bad combination. */
int chunking_options_finish(struct chunking_options *c);

void chunking_options_usage(FILE *f);

/* How info and diff show a chunker, from its parameters:
 * "RollSum, window 64, average 64.00 KiB (filter bits 15), min ..., max ..." */
const char *chunker_params_describe(const struct chunker_params *p, char *buf, size_t len);
