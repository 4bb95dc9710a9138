// SPDX-License-Identifier: MIT
#include "cleanup.h"
#include "cli.h"
#include "clone.h"
#include "commands.h"
#include "http_options.h"
#include "log.h"
#include "progress_view.h"
#include "release_file.h"
#include "store.h"
#include "verify.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

/* 0 when the release is whole, CLI_DAMAGED when not, or a negative errno. */
static int verify_one(const char *arg, struct verify_result *res)
{
        _cleanup_store_ struct store *s = NULL;
        struct release *r = NULL;
        int err;

        err = release_file_open(arg, &s, NULL, &r);
        if (err == 0)
                err = release_verify(s, r, res);
        release_free(r);
        if (err < 0)
                return err;
        return res->missing == 0 && res->corrupt == 0 && res->image_ok ? 0 : CLI_DAMAGED;
}

static int repair(const char *source, const char *arg, const struct http_options *http)
{
        struct repair_options o = { .source = source, .release = arg, .http = *http };
        struct repair_result res;
        int err;

        err = clone_repair(&o, &res);
        if (err == 0)
                printf("repaired %s: fetched %zu chunks again\n", arg, res.chunks_fetched);
        return err;
}

int cmd_verify(int argc, char **argv)
{
        enum { OPT_REPAIR = CLI_OPT_BASE };
        static const struct cli_option options[] = {
                { .name = "repair", .key = OPT_REPAIR, .arg = "SOURCE",
                  .help = "fetch the damaged chunks again from the release's archive (a path or URL; it must hold "
                          "the same image). Only chunk files the release names are written, each checked against "
                          "the release's own hash; the release description never is" },
                {}
        };
        const struct cli_command cmd = {
                .name = "verify",
                .synopsis = "[--repair SOURCE [HTTP OPTIONS]] STORE/NAME...",
                .description = "Re-hash every chunk of each release and check its image checksum; missing and\n"
                               "corrupt chunks are listed by name. Exit status 1 when any release is damaged.\n",
                .options = options,
                .groups = { http_cli_options(), progress_cli_options() },
                .min_operands = 1,
                .max_operands = -1,
        };
        struct cli_parser p;
        _cleanup_http_cli_ struct http_cli http;
        const char *source = NULL;
        int c, err, ret = 0;

        http_cli_init(&http);
        cli_parser_init(&p, &cmd, argc, argv);
        while ((c = cli_next(&p)) > 0) {
                if (c == OPT_REPAIR)
                        source = p.arg;
                else if ((err = http_cli_parse(&http, &p, c)) != 0 || (err = progress_cli_parse(&p, c)) != 0)
                        return err;
        }
        if (c < 0)
                return p.result;
        if (source && p.n_operands != 1)
                return cli_usage_error(&p);
        err = cli_check_release_operands(p.operands, p.n_operands);
        if (err != 0)
                return err;
        /* A release that cannot be checked outweighs one found damaged. */
        for (int i = 0; i < p.n_operands; i++) {
                const char *arg = p.operands[i];
                struct verify_result r;
                err = verify_one(arg, &r);
                if (err < 0) {
                        ret = err;
                        continue;
                }
                printf("%s: %s (%zu chunks checked, %zu missing, %zu corrupt, image checksum %s)\n", arg,
                       err == 0 ? "OK" : "DAMAGED", r.chunks_checked, r.missing, r.corrupt,
                       r.image_ok ? "matches" : (r.missing || r.corrupt ? "not computable" : "MISMATCH"));
                if (err == 0)
                        continue;
                if (source) {
                        err = repair(source, arg, &http.http);
                        if (err == 0)
                                err = verify_one(arg, &r);
                        if (err == 0) {
                                printf("%s: OK after repair\n", arg);
                                continue;
                        }
                        log_error("%s could not be repaired", arg);
                }
                if (ret == 0 || err < 0)
                        ret = err;
        }
        return ret;
}
