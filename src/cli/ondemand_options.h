// SPDX-License-Identifier: MIT
/* The options of the commands that can read a release before it is cloned
 * (mount, serve): --source, --fill, and with them the HTTP and trust
 * options of clone, which apply to every source. */
#pragma once

#include "cli.h"
#include "http_options.h"
#include "ondemand.h"
#include "trust_options.h"

#include <stdbool.h>

enum {
        OPT_SOURCE = CLI_OPT_BASE_ONDEMAND,
        OPT_FILL,
};

struct ondemand_cli {
        struct http_cli http;
        struct trust_cli trust;
        const char *source; /* the last --source given */
        bool fill;
};

void ondemand_cli_init(struct ondemand_cli *o);
void ondemand_cli_free(struct ondemand_cli *o);
#define _cleanup_ondemand_cli_ __attribute__((cleanup(ondemand_cli_free)))

const struct cli_option *ondemand_cli_options(void);

/* Takes opt if it is --source, --fill or one of the HTTP and trust options:
 * 0 (taken, or none of them), CLI_USAGE or a negative errno (logged). */
int ondemand_cli_parse(struct ondemand_cli *o, const struct cli_parser *p, int opt);

/* After the options: CLI_USAGE (logged) when they make no sense together;
 * any_source: whether some release has a --source. */
int ondemand_cli_finish(const struct ondemand_cli *o, bool any_source);

/* What ondemand_open takes for the release read from source. */
struct ondemand_options ondemand_cli_options_for(const struct ondemand_cli *o, const char *source);
