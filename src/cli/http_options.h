// SPDX-License-Identifier: MIT
/* The HTTP options of the commands that read an archive, which may be a
 * URL: clone, info, diff and verify --repair. Their defaults live in
 * http.h; their --help text in http_options.c. */
#pragma once

#include "cli.h"
#include "http.h"

#include <stddef.h>

enum {
        OPT_HTTP_RETRY_COUNT = CLI_OPT_BASE_HTTP,
        OPT_HTTP_RETRY_DELAY,
        OPT_HTTP_TIMEOUT,
        OPT_HTTP_HEADER,
        OPT_HTTP_CACERT,
        OPT_HTTP_CERT,
        OPT_HTTP_KEY,
        OPT_HTTP_MIRROR,
        OPT_HTTP_MIN_RATE,
};

struct http_cli {
        struct http_options http;
        const char **headers; /* argv's strings, listed for http.headers */
        const char **mirrors; /* the same for http.mirrors */
};

void http_cli_init(struct http_cli *h);
void http_cli_free(struct http_cli *h);
#define _cleanup_http_cli_ __attribute__((cleanup(http_cli_free)))

/* The options' table, for a command's struct cli_command (.groups). */
const struct cli_option *http_cli_options(void);

/* Takes opt if it is one of http_cli_options() (cli_next's key and value):
 * 0 (taken, or none of them), CLI_USAGE (logged) for a bad value, -ENOMEM. */
int http_cli_parse(struct http_cli *h, const struct cli_parser *p, int opt);

/* After the options: CLI_USAGE (logged) for --http-key without --http-cert. */
int http_cli_finish(const struct http_cli *h);
