// SPDX-License-Identifier: MIT
/* The options that sign an archive, shared by sign and compress --sign:
 * the secret key, the release version and extra trusted comment text. */
#pragma once

#include "cli.h"

#include <stdbool.h>
#include <stdint.h>

enum {
        OPT_SIGN_SECRET_KEY = 's',
        OPT_SIGN_TRUSTED_COMMENT = 't',
        OPT_SIGN_RELEASE_VERSION = CLI_OPT_BASE_SIGNING,
        OPT_SIGN_SECRET_KEY_LONG, /* compress's --sign */
        OPT_SIGN_TRUSTED_COMMENT_LONG,
};

struct signing_cli {
        const char *secret_key;
        uint64_t version;
        bool version_given;
        const char *trusted_comment;
};

/* For sign (-s, --release-version, -t) and, as long options only, compress. */
const struct cli_option *signing_cli_options(void);
const struct cli_option *signing_cli_long_options(void);

/* Takes opt if it is one of those: 0 (taken, or none of them), CLI_USAGE
 * (logged) for a bad value. */
int signing_cli_parse(struct signing_cli *s, const struct cli_parser *p, int opt);
