#include "cleanup.h"
#include "commands.h"
#include "gc.h"
#include "log.h"
#include "store.h"
#include "units.h"

#include <getopt.h>
#include <stdio.h>

static void gc_usage(FILE *f)
{
        fprintf(f, "Usage: ihop gc [--dry-run] STORE\n"
                   "\n"
                   "Remove the chunks no release in STORE uses, and temp files left by interrupted\n"
                   "clones. Waits for running clones to finish (the store lock). Releases in use\n"
                   "(mounted or served) count as releases, even after 'ihop rm'.\n"
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
        int c;

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
                        return 2;
                }
        }
        if (argc - optind != 1) {
                gc_usage(stderr);
                return 2;
        }
        if (store_open(argv[optind], false, &s) < 0 || store_lock(s, STORE_LOCK_EXCLUSIVE) < 0)
                return 1;
        if (store_gc(s, dry_run, &r) < 0)
                return 1;
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

static void rm_usage(FILE *f)
{
        fprintf(f, "Usage: ihop rm STORE/NAME...\n"
                   "\n"
                   "Remove releases from their store. Their chunks stay until 'ihop gc STORE';\n"
                   "those of a release still mounted or served stay until it no longer is.\n");
}

int cmd_rm(int argc, char **argv)
{
        static const struct option options[] = { { "help", no_argument, NULL, 'h' }, {} };
        int c, ret = 0;

        while ((c = getopt_long(argc, argv, "h", options, NULL)) != -1) {
                rm_usage(c == 'h' ? stdout : stderr);
                return c == 'h' ? 0 : 2;
        }
        if (optind >= argc) {
                rm_usage(stderr);
                return 2;
        }
        for (int i = optind; i < argc; i++) {
                _cleanup_free_ char *store_path = NULL, *name = NULL;
                _cleanup_store_ struct store *s = NULL;
                if (store_split_release_path(argv[i], &store_path, &name) < 0 || store_open(store_path, false, &s) < 0 ||
                    store_lock(s, STORE_LOCK_EXCLUSIVE) < 0) {
                        ret = 1;
                        continue;
                }
                if (store_release_remove(s, name) < 0) {
                        ret = 1;
                        continue;
                }
                printf("removed release %s; 'ihop gc %s' frees the chunks only it used\n", argv[i], store_path);
        }
        return ret;
}
