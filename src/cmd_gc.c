#include "cleanup.h"
#include "cli.h"
#include "commands.h"
#include "fsutil.h"
#include "gc.h"
#include "log.h"
#include "store.h"
#include "units.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <string.h>

static void gc_usage(FILE *f)
{
        fprintf(f, "Usage: ihop gc [--dry-run] STORE\n"
                   "\n"
                   "Remove the chunks no release in STORE uses, and temp files left by interrupted\n"
                   "clones. Waits for running clones to finish (the store lock).\n"
                   "\n"
                   "  -n, --dry-run   print what would go and how much space returns; remove nothing\n");
}

int cmd_gc(int argc, char **argv)
{
        static const struct option options[] = {
                { "help", no_argument, NULL, 'h' },
                { "dry-run", no_argument, NULL, 'n' },
                {}
        };
        _cleanup_store_ struct store *s = NULL;
        struct gc_result r;
        bool dry_run = false;
        char a[32], b[32];
        int c, err;

        while ((c = getopt_long(argc, argv, "hn", options, NULL)) != -1) {
                switch (c) {
                case 'h':
                        gc_usage(stdout);
                        return 0;
                case 'n':
                        dry_run = true;
                        break;
                default:
                        gc_usage(stderr);
                        return CLI_USAGE;
                }
        }
        if (argc - optind != 1) {
                gc_usage(stderr);
                return CLI_USAGE;
        }
        err = store_open(argv[optind], false, &s);
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
        return 0;
}

static void rm_usage(FILE *f)
{
        fprintf(f, "Usage: ihop rm STORE/NAME...\n"
                   "\n"
                   "Remove releases from their store. Their chunks stay until 'ihop gc STORE'.\n");
}

int cmd_rm(int argc, char **argv)
{
        static const struct option options[] = { { "help", no_argument, NULL, 'h' }, {} };
        int c, err, ret = 0;

        while ((c = getopt_long(argc, argv, "h", options, NULL)) != -1) {
                rm_usage(c == 'h' ? stdout : stderr);
                return c == 'h' ? 0 : CLI_USAGE;
        }
        if (optind >= argc) {
                rm_usage(stderr);
                return CLI_USAGE;
        }
        err = cli_check_release_operands(argv + optind, argc - optind);
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
                if (unlinkat(s->dirfd, name, 0) < 0) {
                        ret = -errno;
                        if (ret == -ENOENT)
                                log_error("release %s does not exist", argv[i]);
                        else
                                log_errno(ret, "cannot remove release %s", argv[i]);
                        continue;
                }
                if (fsync(s->dirfd) < 0)
                        log_warn("cannot sync %s: %s", store_path, strerror(errno));
                printf("removed release %s; 'ihop gc %s' frees the chunks only it used\n", argv[i], store_path);
        }
        return ret;
}
