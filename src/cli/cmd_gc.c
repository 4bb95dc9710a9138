// SPDX-License-Identifier: MIT
#include "cleanup.h"
#include "cli.h"
#include "commands.h"
#include "gc.h"
#include "log.h"
#include "store.h"
#include "units.h"

#include <stdio.h>

int cmd_gc(int argc, char **argv)
{
        static const struct cli_option options[] = {
                { .name = "dry-run", .key = 'n',
                  .help = "print what would go and how much space returns; remove nothing" },
                {}
        };
        static const struct cli_command cmd = {
                .name = "gc",
                .synopsis = "[--dry-run] STORE",
                .description = "Remove the chunks no release in STORE uses, and temp files left by interrupted\n"
                               "clones. Waits for running clones to finish (the store lock). Releases in use\n"
                               "(mounted or served) count as releases, even after 'ihop rm'.\n",
                .options = options,
                .min_operands = 1,
                .max_operands = 1,
        };
        _cleanup_store_ struct store *s = NULL;
        struct cli_parser p;
        struct gc_result r;
        bool dry_run = false;
        char a[32], b[32];
        int c, err;

        cli_parser_init(&p, &cmd, argc, argv);
        while ((c = cli_next(&p)) > 0)
                if (c == 'n')
                        dry_run = true;
        if (c < 0)
                return p.result;
        err = store_open(p.operands[0], false, &s);
        if (err == 0)
                err = store_lock(s, STORE_LOCK_EXCLUSIVE);
        if (err == 0)
                err = store_gc(s, dry_run, &r);
        if (err < 0)
                return err;
        printf("%s %zu unused chunks and %zu temp files: %s %s; %zu chunks (%s) in use stay\n",
               dry_run ? "would remove" : "removed", r.chunks_removed, r.tmp_removed,
               format_size(r.bytes_removed, a, sizeof(a)), dry_run ? "would be freed" : "freed", r.chunks_kept,
               format_size(r.bytes_kept, b, sizeof(b)));
        if (r.chunks_kept_in_use)
                printf("kept %zu chunks (%s) for releases in use (mounted or served) that no release description "
                       "names any more\n",
                       r.chunks_kept_in_use, format_size(r.bytes_kept_in_use, a, sizeof(a)));
        return 0;
}

int cmd_rm(int argc, char **argv)
{
        static const struct cli_command cmd = {
                .name = "rm",
                .synopsis = "STORE/NAME...",
                .description = "Remove releases from their store. Their chunks stay until 'ihop gc STORE';\n"
                               "those of a release still mounted or served stay until it no longer is.\n",
                .min_operands = 1,
                .max_operands = -1,
        };
        struct cli_parser p;
        int c, err, ret = 0;

        cli_parser_init(&p, &cmd, argc, argv);
        while ((c = cli_next(&p)) > 0)
                ;
        if (c < 0)
                return p.result;
        err = cli_check_release_operands(p.operands, p.n_operands);
        if (err != 0)
                return err;
        for (int i = optind; i < argc; i++) {
                _cleanup_free_ char *store_path = NULL, *name = NULL;
                _cleanup_store_ struct store *s = NULL;
                err = store_split_release_path(argv[i], &store_path, &name);
                if (err == 0)
                        err = store_open(store_path, false, &s);
                if (err == 0)
                        err = store_lock(s, STORE_LOCK_EXCLUSIVE);
                if (err < 0) {
                        ret = err;
                        continue;
                }
                err = store_release_remove(s, name);
                if (err < 0) {
                        ret = err;
                        continue;
                }
                printf("removed release %s; 'ihop gc %s' frees the chunks only it used\n", argv[i], store_path);
        }
        return ret;
}
