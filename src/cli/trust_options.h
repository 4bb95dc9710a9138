// SPDX-License-Identifier: MIT
/* The options of the commands that take signed releases (clone): which
 * keys to trust, where the signature is, and whether an older release
 * version may replace a newer one. Keys are read as the options are
 * parsed, so a bad key file stops the command before it fetches anything. */
#pragma once

#include "archive_trust.h"
#include "cli.h"
#include "trusted_keys.h"

#include <stdbool.h>

enum {
        OPT_TRUSTED_KEY = CLI_OPT_BASE_TRUST,
        OPT_TRUSTED_KEYS,
        OPT_SIGNATURE,
        OPT_ALLOW_DOWNGRADE,
};

struct trust_cli {
        struct trusted_keys keys;
        const char *signature;
        bool allow_downgrade;
};

void trust_cli_free(struct trust_cli *t);
#define _cleanup_trust_cli_ __attribute__((cleanup(trust_cli_free)))

const struct cli_option *trust_cli_options(void);

/* Takes opt if it is one of trust_cli_options(): 0 (taken, or none of
 * them), or a negative errno (logged) when a key cannot be read. */
int trust_cli_parse(struct trust_cli *t, const struct cli_parser *p, int opt);

/* After the options: CLI_USAGE (logged) for --signature or
 * --allow-downgrade without a trusted key, else 0. */
int trust_cli_finish(const struct trust_cli *t);

/* What clone and --source take from the options (t's keys, borrowed). */
struct trust_policy trust_cli_policy(const struct trust_cli *t);
