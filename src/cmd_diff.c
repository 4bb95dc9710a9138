#include "chunking_options.h"
#include "cli.h"
#include "commands.h"
#include "diff.h"
#include "log.h"
#include "units.h"

#include <getopt.h>
#include <stdio.h>

static void diff_usage(FILE *f)
{
        fprintf(f, "Usage: ihop diff [OPTIONS] A B\n"
                   "\n"
                   "Show how much images A and B share when chunked as bita chunks them, and\n"
                   "what B costs to fetch into a store that holds A. A or B may be an archive\n"
                   "(file or URL): its dictionary is used, and an image compared with it is\n"
                   "chunked as the archive was. The compression options only estimate the\n"
                   "download when B is an image.\n"
                   "\n"
                   "Options:\n"
                   "  -j, --jobs N                  worker threads (default: one per CPU)\n");
        chunking_options_usage(f);
}

static const char *size_str(uint64_t v, char *buf, size_t len)
{
        char h[32];

        snprintf(buf, len, "%s (%llu bytes)", format_size(v, h, sizeof(h)), (unsigned long long)v);
        return buf;
}

static void print_side(const char *label, const char *path, const struct diff_side *s)
{
        char a[64];

        printf("%-18s %s (%s), %s in %zu chunks, %zu unique\n", label, path, s->is_archive ? "archive" : "image",
               size_str(s->size, a, sizeof(a)), s->chunks, s->unique);
}

static void print_result(const struct diff_options *o, const struct diff_result *r)
{
        char a[64], b[64], desc[256];

        printf("%-18s %s\n", "chunker:", chunker_params_describe(&r->chunker, desc, sizeof(desc)));
        if (r->hash_len < HASH_MAX_LEN)
                printf("%-18s the first %zu bytes of each chunk's hash\n", "compared:", r->hash_len);
        print_side("a:", o->a, &r->a);
        print_side("b:", o->b, &r->b);
        printf("%-18s %zu chunks, %s, covering %s of b\n", "shared:", r->shared, size_str(r->shared_size, a, sizeof(a)),
               size_str(r->shared_in_b, b, sizeof(b)));
        printf("%-18s %zu chunks, %s\n", "only in a:", r->only_a, size_str(r->only_a_size, a, sizeof(a)));
        printf("%-18s %zu chunks, %s\n", "only in b:", r->only_b, size_str(r->only_b_size, a, sizeof(a)));
        if (r->b.is_archive)
                printf("%-18s fetch %zu chunks: %s, %s from the archive\n", "b given a:", r->only_b,
                       size_str(r->only_b_size, a, sizeof(a)), size_str(r->fetch_size, b, sizeof(b)));
        else if (r->fetch_estimated)
                printf("%-18s fetch %zu chunks: %s, about %s compressed (%s %u)\n", "b given a:", r->only_b,
                       size_str(r->only_b_size, a, sizeof(a)), size_str(r->fetch_size, b, sizeof(b)),
                       codec_name(o->codec), o->level);
        else
                printf("%-18s fetch %zu chunks: %s uncompressed\n", "b given a:", r->only_b,
                       size_str(r->only_b_size, a, sizeof(a)));
}

int cmd_diff(int argc, char **argv)
{
        static const struct option options[] = {
                { "help", no_argument, NULL, 'h' },
                { "jobs", required_argument, NULL, 'j' },
                CHUNKING_LONG_OPTIONS,
                {}
        };
        struct chunking_options co;
        struct diff_options o = {};
        struct diff_result res;
        int c, r;

        chunking_options_init(&co);
        while ((c = getopt_long(argc, argv, "hj:", options, NULL)) != -1) {
                switch (c) {
                case 'h':
                        diff_usage(stdout);
                        return 0;
                case 'j':
                        if (parse_jobs(optarg, &o.jobs) < 0)
                                return CLI_USAGE;
                        break;
                default:
                        r = chunking_options_parse(&co, c, optarg);
                        if (r < 0)
                                return CLI_USAGE;
                        if (r == 0) {
                                diff_usage(stderr);
                                return CLI_USAGE;
                        }
                }
        }
        if (argc - optind != 2) {
                diff_usage(stderr);
                return CLI_USAGE;
        }
        if (chunking_options_finish(&co) < 0)
                return CLI_USAGE;
        o.a = argv[optind];
        o.b = argv[optind + 1];
        o.chunker = co.chunker;
        o.chunker_given = co.chunker_given;
        o.codec = co.codec;
        o.level = co.level;
        r = diff_run(&o, &res);
        if (r == 0)
                print_result(&o, &res);
        return r;
}
