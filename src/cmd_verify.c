#include "archive_source.h"
#include "cleanup.h"
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
                   "                    (a path or URL; it must hold the same image)\n");
}

static int verify_one(const char *arg, struct verify_result *res)
{
        _cleanup_store_ struct store *s = NULL;
        struct release *r = NULL;
        int err;

        err = release_file_open(arg, &s, NULL, &r);
        if (err == 0)
                err = release_verify(s, r, res);
        release_free(r);
        return err;
}

/* The archive must describe the very image the release holds. */
static int check_same_image(const char *source, const char *arg)
{
        struct http_options http = HTTP_OPTIONS_DEFAULT;
        _cleanup_store_ struct store *s = NULL;
        _cleanup_archive_ struct archive *a = NULL;
        struct archive_source *src = NULL;
        struct source_conn conn = {};
        struct release *r = NULL;
        int err;

        err = release_file_open(arg, &s, NULL, &r);
        if (err == 0)
                err = archive_source_open(source, &http, &src);
        if (err == 0)
                err = source_conn_open(src, &conn);
        if (err == 0)
                err = archive_source_read_header(src, &conn, &a);
        if (err == 0 && (a->release->source_checksum_len != r->source_checksum_len ||
                         memcmp(a->release->source_checksum, r->source_checksum, r->source_checksum_len) != 0)) {
                log_error("%s holds another image than release %s: cannot repair from it", source, arg);
                err = -EINVAL;
        }
        source_conn_close(&conn);
        archive_source_close(src);
        release_free(r);
        return err;
}

static int repair(const char *source, const char *arg)
{
        _cleanup_free_ char *store_path = NULL, *name = NULL;
        struct clone_options o = {
                .source = source, .force = true,
                .http = HTTP_OPTIONS_DEFAULT,
        };
        struct clone_result res;
        int err;

        err = check_same_image(source, arg);
        if (err < 0)
                return err;
        err = store_split_release_path(arg, &store_path, &name);
        if (err < 0)
                return err;
        o.store_path = store_path;
        o.name = name;
        /* A clone over the damaged release keeps every good chunk and fetches the rest. */
        err = clone_run(&o, &res);
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
        int c, ret = 0;

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
                        return 2;
                }
        }
        if (optind >= argc || (source && argc - optind != 1)) {
                verify_usage(stderr);
                return 2;
        }
        for (int i = optind; i < argc; i++) {
                struct verify_result r;
                if (verify_one(argv[i], &r) < 0) {
                        ret = 1;
                        continue;
                }
                bool ok = r.missing == 0 && r.corrupt == 0 && r.image_ok;
                printf("%s: %s (%zu chunks checked, %zu missing, %zu corrupt, image checksum %s)\n", argv[i],
                       ok ? "OK" : "DAMAGED", r.chunks_checked, r.missing, r.corrupt,
                       r.image_ok ? "matches" : (r.missing || r.corrupt ? "not computable" : "MISMATCH"));
                if (ok)
                        continue;
                if (!source) {
                        ret = 1;
                        continue;
                }
                if (repair(source, argv[i]) < 0 || verify_one(argv[i], &r) < 0 || r.missing || r.corrupt ||
                    !r.image_ok) {
                        log_error("%s could not be repaired", argv[i]);
                        ret = 1;
                } else {
                        printf("%s: OK after repair\n", argv[i]);
                }
        }
        return ret;
}
