// SPDX-License-Identifier: MIT
/* The chunking and compression options of `ihop compress` and `ihop diff`,
 * with bita's names, defaults and checks, so a bita command line works
 * unchanged. Their defaults and --help text live in chunking_options.c. */
#pragma once

#include "cli.h"
#include "codec.h"
#include "release.h"

#include <stdbool.h>
#include <stdint.h>

/* Above the long-only options of the commands that take these. */
enum {
        OPT_AVG_CHUNK_SIZE = CLI_OPT_BASE_CHUNKING,
        OPT_MIN_CHUNK_SIZE,
        OPT_MAX_CHUNK_SIZE,
        OPT_HASH_CHUNKING,
        OPT_ROLLING_WINDOW_SIZE,
        OPT_FIXED_SIZE,
        OPT_COMPRESSION,
        OPT_COMPRESSION_LEVEL,
        OPT_HASH_LENGTH,
};

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

/* The options' table, for a command's struct cli_command (.groups). */
const struct cli_option *chunking_cli_options(void);

/* Takes one option of chunking_cli_options() (cli_next's key and value):
 * 1, or 0 when opt is none of them, or -EINVAL (logged) for a bad value. */
int chunking_options_parse(struct chunking_options *c, int opt, const char *arg);

/* bita's checks (min <= avg <= max, level range per codec, ...); logs and
 * returns -EINVAL on a bad combination. */
int chunking_options_finish(struct chunking_options *c);

/* How info and diff show a chunker, from its parameters:
 * "RollSum, window 64, average 64.00 KiB (filter bits 15), min ..., max ..." */
const char *chunker_params_describe(const struct chunker_params *p, char *buf, size_t len);
