// SPDX-License-Identifier: MIT
#include "cli.h"
#include "commands.h"
#include "hash.h"
#include "http.h"
#include "json_output.h"
#include "log.h"
#include "progress_view.h"

#include <stdio.h>
#include <string.h>

/* Long-running servers report each problem; the other commands stop at the
 * first, and what follows from it (other threads giving up) is shown with -v. */
#define REPORTS_EVERY_ERROR 1u

static const struct {
        const char *name;
        int (*run)(int argc, char **argv);
        const char *summary;
        unsigned flags;
} commands[] = {
        { "clone", cmd_clone, "fetch a release from a bita archive into a chunk store", 0 },
        { "compress", cmd_compress, "make a bita archive of an image, as bita compress does", 0 },
        { "sign", cmd_sign, "sign an archive as a release version, minisign-compatible", 0 },
        { "keygen", cmd_keygen, "make a minisign key pair for signing releases", 0 },
        { "cat", cmd_cat, "write a stored release's image out, checked against its checksum", 0 },
        { "info", cmd_info, "describe a bita archive or a stored release", 0 },
        { "ls", cmd_ls, "list the releases in a store, with what each uses alone and shares", 0 },
        { "verify", cmd_verify, "re-hash a release's chunks and image; --repair fetches bad ones", 0 },
        { "rm", cmd_rm, "remove a release from its store (gc frees its chunks)", 0 },
        { "gc", cmd_gc, "remove chunks no release uses and leftovers of interrupted clones", 0 },
        { "diff", cmd_diff, "show what two images or archives share, in chunks", 0 },
        { "mount", cmd_mount, "expose a release as a read-only block device (NBD) or file (FUSE)",
          REPORTS_EVERY_ERROR },
        { "serve", cmd_serve, "serve stored releases read-only over the NBD protocol", REPORTS_EVERY_ERROR },
};

static void print_commands(FILE *f)
{
        fprintf(f, "\nCommands ('ihop COMMAND --help' for a command's options):\n");
        for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
                fprintf(f, "  %-8s %s\n", commands[i].name, commands[i].summary);
}

/* The one place a command's result becomes the exit status: 0 success,
 * 1 failure (verify: also a damaged release), 2 usage error. */
static int exit_status(const char *command, int r)
{
        if (r == 0)
                return 0;
        if (r < 0 && !log_error_was_shown())
                log_errno(r, "%s failed", command);
        json_output_failure(r); /* with --json, the failure as a document too */
        return r == CLI_USAGE ? 2 : 1;
}

char *program_argv0;

int main(int argc, char **argv)
{
        enum { OPT_VERSION = CLI_OPT_BASE };
        static const struct cli_option options[] = {
                { .name = "verbose", .key = 'v',
                  .help = "say more: debug messages, and every error of a command that stops at its first" },
                { .name = "quiet", .key = 'q', .help = "only warnings and errors" },
                { .name = "version", .key = OPT_VERSION, .help = "print ihop's version" },
                {}
        };
        static const struct cli_command cmd = {
                .synopsis = "[OPTIONS] COMMAND [ARGS]",
                .print_more = print_commands,
                .options = options,
                .min_operands = 1,
                .max_operands = -1,
                .options_first = true,
        };
        struct cli_parser p;
        int c;

        program_argv0 = argv[0];
        cli_parser_init(&p, &cmd, argc, argv);
        while ((c = cli_next(&p)) > 0) {
                switch (c) {
                case 'v':
                        log_set_level(LOG_DEBUG);
                        break;
                case 'q':
                        log_set_level(LOG_WARN);
                        break;
                case OPT_VERSION:
                        printf("ihop %s\n", IHOP_VERSION);
                        return 0;
                }
        }
        if (c < 0)
                return exit_status("ihop", p.result);
        progress_view_init();
        if (hash_init_library() < 0) {
                log_error("cannot initialise libsodium");
                return 1;
        }
        for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
                if (strcmp(p.operands[0], commands[i].name) == 0) {
                        log_set_first_error_only(!(commands[i].flags & REPORTS_EVERY_ERROR));
                        int r = commands[i].run(p.n_operands, p.operands);
                        http_global_cleanup();
                        return exit_status(commands[i].name, r);
                }
        }
        log_error("unknown command '%s'", p.operands[0]);
        return exit_status("ihop", cli_usage_error(&p));
}
