#include "cleanup.h"
#include "cli.h"
#include "clone.h"
#include "commands.h"
#include "log.h"
#include "release_file.h"
#include "store.h"
#include "verify.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <string.h>

static void verify_usage(FILE *f)
{
        fprintf(f, "Usage: ihop verify [--repair SOURCE] STORE/NAME...\n"
                   "\n"
                   "Re-hash every chunk of each release and check its image checksum; missing and\n"
                   "corrupt chunks are listed by name. Exit status 1 when any release is damaged.\n"
                   "\n"
                   "  --repair SOURCE   fetch the damaged chunks again from the release's archive\n"
                   "                    (a path or URL; it must hold the same image). Only chunk\n"
                   "                    files the release names are written, each checked against\n"
                   "                    the release's own hash; the release description never is\n");
}

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

static int repair(const char *source, const char *arg)
{
        struct repair_options o = { .source = source, .release = arg, .http = HTTP_OPTIONS_DEFAULT };
        struct repair_result res;
        int err;

        err = clone_repair(&o, &res);
        if (err == 0)
                printf("repaired %s: fetched %zu chunks again\n", arg, res.chunks_fetched);
        return err;
}

int cmd_verify(int argc, char **argv)
{
        enum { OPT_REPAIR = 256 };
        static const struct option options[] = {
                { "help", no_argument, NULL, 'h' },
                { "repair", required_argument, NULL, OPT_REPAIR },
                {}
        };
        const char *source = NULL;
        int c, err, ret = 0;

        while ((c = getopt_long(argc, argv, "h", options, NULL)) != -1) {
                switch (c) {
                case 'h':
                        verify_usage(stdout);
                        return 0;
                case OPT_REPAIR:
                        source = optarg;
                        break;
                default:
                        verify_usage(stderr);
                        return CLI_USAGE;
                }
        }
        if (optind >= argc || (source && argc - optind != 1)) {
                verify_usage(stderr);
                return CLI_USAGE;
        }
        err = cli_check_release_operands(argv + optind, argc - optind);
        if (err != 0)
                return err;
        /* A release that cannot be checked outweighs one found damaged. */
        for (int i = optind; i < argc; i++) {
                struct verify_result r;
                err = verify_one(argv[i], &r);
                if (err < 0) {
                        ret = err;
                        continue;
                }
                printf("%s: %s (%zu chunks checked, %zu missing, %zu corrupt, image checksum %s)\n", argv[i],
                       err == 0 ? "OK" : "DAMAGED", r.chunks_checked, r.missing, r.corrupt,
                       r.image_ok ? "matches" : (r.missing || r.corrupt ? "not computable" : "MISMATCH"));
                if (err == 0)
                        continue;
                if (source) {
                        err = repair(source, argv[i]);
                        if (err == 0)
                                err = verify_one(argv[i], &r);
                        if (err == 0) {
                                printf("%s: OK after repair\n", argv[i]);
                                continue;
                        }
                        log_error("%s could not be repaired", argv[i]);
                }
                if (ret == 0 || err < 0)
                        ret = err;
        }
        return ret;
}
