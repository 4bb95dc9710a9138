#include "cleanup.h"
#include "commands.h"
#include "image_map.h"
#include "log.h"
#include "release_file.h"
#include "store.h"
#ifdef HAVE_FUSE
#include "fuse_file.h"
#endif

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

static void mount_usage(FILE *f)
{
        fprintf(f, "Usage: ihop mount [--verify] STORE/NAME FILE\n"
                   "\n"
                   "Expose release NAME read-only, put together from the chunk store on every read.\n"
                   "FILE is a regular file: the release appears as that file through FUSE, so\n"
                   "'mount -o loop,ro FILE /mnt' works. Runs until unmounted or interrupted.\n"
                   "\n"
                   "  --verify   hash each chunk on its first read; a corrupt chunk reads as EIO\n");
}

static int open_map(const char *arg, bool verify, struct image_map **map, char **name)
{
        _cleanup_free_ char *store_path = NULL;
        struct store *s = NULL;
        struct release *r = NULL;
        int err;

        err = store_split_release_path(arg, &store_path, name);
        if (err < 0)
                return err;
        err = store_open(store_path, false, &s);
        if (err == 0)
                err = release_file_read(s, *name, &r);
        if (err == 0)
                err = image_map_new(s, r, verify, map);
        if (err < 0) {
                release_free(r);
                store_close(s);
        }
        return err;
}

int cmd_mount(int argc, char **argv)
{
        enum { OPT_VERIFY = 256 };
        static const struct option options[] = {
                { "help", no_argument, NULL, 'h' },
                { "verify", no_argument, NULL, OPT_VERIFY },
                {}
        };
        _cleanup_free_ char *name = NULL;
        struct image_map *map = NULL;
        bool verify = false;
        struct stat st;
        int c, err;

        while ((c = getopt_long(argc, argv, "+h", options, NULL)) != -1) {
                switch (c) {
                case 'h':
                        mount_usage(stdout);
                        return 0;
                case OPT_VERIFY:
                        verify = true;
                        break;
                default:
                        mount_usage(stderr);
                        return 2;
                }
        }
        if (argc - optind != 2) {
                mount_usage(stderr);
                return 2;
        }
        const char *target = argv[optind + 1];
        if (stat(target, &st) < 0) {
                log_errno(-errno, "cannot mount on %s", target);
                return 1;
        }
        if (!S_ISREG(st.st_mode)) {
                log_error("%s: mount target must be a regular file (FUSE)", target);
                return 1;
        }
        err = open_map(argv[optind], verify, &map, &name);
        if (err < 0)
                return 1;
#ifdef HAVE_FUSE
        err = fuse_file_serve(map, name, target);
#else
        log_error("this ihop was built without FUSE support (libfuse3)");
        err = -ENOTSUP;
#endif
        image_map_free(map);
        return err < 0 ? 1 : 0;
}
