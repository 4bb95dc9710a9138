#include "clone.h"
#include "cleanup.h"
#include "cli.h"
#include "commands.h"
#include "log.h"
#include "store.h"
#include "units.h"

#include <errno.h>
#include <getopt.h>
#include <malloc.h>
#include <stdio.h>
#include <string.h>

static void clone_usage(FILE *f)
{
        fprintf(f,
                "Usage: ihop clone [OPTIONS] SOURCE STORE/NAME\n"
                "\n"
                "Fetch the release in the bita archive SOURCE (a file path or an http(s) URL)\n"
                "into the chunk store STORE as release NAME, downloading only the chunks the\n"
                "store does not already hold. Every chunk is verified before it is stored.\n"
                "NAME is a plain file name: not hidden, not 'chunks', without '.tmp-'.\n"
                "\n"
                "Options:\n"
                "  --verify-header HASH     refuse the archive unless its header checksum is HASH\n"
                "  --naive                  trust chunks already in the store without hashing them\n"
                "  --seed FILE|DEVICE|-     take matching chunks from FILE (e.g. the current root\n"
                "                           partition or the previous image) before downloading;\n"
                "                           repeatable; '-' is standard input\n"
                "  -f, --force              replace an existing release NAME\n"
                "  -j, --jobs N             parallel requests (default: 4 over HTTP, one per CPU locally)\n"
                "  --http-retry-count N     retries of a failed transfer (default %d)\n"
                "  --http-retry-delay SECS  delay before a retry (default %d)\n"
                "  --http-timeout SECS      fail an attempt after this long without data (default %d, 0: never)\n"
                "  --http-header 'K: V'     request header for SOURCE's origin only (repeatable)\n",
                HTTP_DEFAULT_RETRY_COUNT, HTTP_DEFAULT_RETRY_DELAY_S, HTTP_DEFAULT_TIMEOUT_S);
}

static void print_summary(const char *name, const struct clone_result *r, bool http)
{
        char a[32], b[32], c[32], d[32];

        printf("release %s: %s in %zu chunks (%zu unique)\n", name, format_size(r->image_size, a, sizeof(a)),
               r->chunks_total, r->chunks_unique);
        printf("reused %zu chunks (%s) from the store, fetched %zu chunks (%s)\n", r->chunks_reused,
               format_size(r->bytes_reused, a, sizeof(a)), r->chunks_fetched,
               format_size(r->bytes_fetched, b, sizeof(b)));
        if (r->chunks_seeded)
                printf("took %zu chunks (%s) from seeds\n", r->chunks_seeded, format_size(r->bytes_seeded, c, sizeof(c)));
        if (r->chunks_recovered)
                printf("recovered %zu complete chunks left by an interrupted clone\n", r->chunks_recovered);
        if (http)
                printf("downloaded %s (%llu bytes) of a %s archive (header %s)\n",
                       format_size(r->bytes_downloaded, c, sizeof(c)), (unsigned long long)r->bytes_downloaded,
                       format_size(r->archive_size, d, sizeof(d)), format_size(r->header_size, a, sizeof(a)));
        else
                printf("read %s of chunk data from a %s archive (header %s)\n",
                       format_size(r->bytes_fetched_compressed, c, sizeof(c)),
                       format_size(r->archive_size, d, sizeof(d)), format_size(r->header_size, a, sizeof(a)));
}

/* Appends one of argv's strings (which outlive the command) to a list. */
static int push_arg(const char ***list, size_t *n, const char *arg)
{
        const char **t = realloc(*list, (*n + 1) * sizeof(**list));

        if (!t)
                return log_errno(-ENOMEM, "reading the command line");
        t[(*n)++] = arg;
        *list = t;
        return 0;
}

int cmd_clone(int argc, char **argv)
{
        enum { OPT_VERIFY_HEADER = 256, OPT_NAIVE, OPT_SEED, OPT_RETRY_COUNT, OPT_RETRY_DELAY, OPT_TIMEOUT, OPT_HEADER };
        static const struct option options[] = {
                { "help", no_argument, NULL, 'h' },
                { "force", no_argument, NULL, 'f' },
                { "jobs", required_argument, NULL, 'j' },
                { "verify-header", required_argument, NULL, OPT_VERIFY_HEADER },
                { "naive", no_argument, NULL, OPT_NAIVE },
                { "seed", required_argument, NULL, OPT_SEED },
                { "http-retry-count", required_argument, NULL, OPT_RETRY_COUNT },
                { "http-retry-delay", required_argument, NULL, OPT_RETRY_DELAY },
                { "http-timeout", required_argument, NULL, OPT_TIMEOUT },
                { "http-header", required_argument, NULL, OPT_HEADER },
                {}
        };
        struct clone_options o = {
                .http = HTTP_OPTIONS_DEFAULT,
        };
        struct clone_result res;
        _cleanup_free_ char *store_path = NULL, *name = NULL;
        const char **headers = NULL;
        uint64_t v;
        int c, r, ret = CLI_USAGE;

        while ((c = getopt_long(argc, argv, "hfj:", options, NULL)) != -1) {
                switch (c) {
                case 'h':
                        clone_usage(stdout);
                        ret = 0;
                        goto out;
                case 'f':
                        o.force = true;
                        break;
                case 'j':
                        if (parse_jobs(optarg, &o.jobs) < 0)
                                goto out;
                        break;
                case OPT_VERIFY_HEADER:
                        r = hash_from_hex(optarg, o.header_checksum, sizeof(o.header_checksum));
                        if (r < HASH_MIN_LEN) {
                                log_error("--verify-header wants a hex checksum, not '%s'", optarg);
                                goto out;
                        }
                        o.header_checksum_len = (size_t)r;
                        break;
                case OPT_NAIVE:
                        o.naive = true;
                        break;
                case OPT_SEED:
                        r = push_arg(&o.seeds, &o.n_seeds, optarg);
                        if (r < 0) {
                                ret = r;
                                goto out;
                        }
                        break;
                case OPT_RETRY_COUNT:
                case OPT_RETRY_DELAY:
                case OPT_TIMEOUT:
                        if (parse_uint(optarg, 86400, &v) < 0) {
                                log_error("%s wants a number of %s, not '%s'", argv[optind - 1],
                                          c == OPT_RETRY_COUNT ? "retries" : "seconds", optarg);
                                goto out;
                        }
                        if (c == OPT_RETRY_COUNT)
                                o.http.retry_count = (unsigned)v;
                        else if (c == OPT_RETRY_DELAY)
                                o.http.retry_delay_s = (unsigned)v;
                        else
                                o.http.timeout_s = (unsigned)v;
                        break;
                case OPT_HEADER:
                        if (!strchr(optarg, ':')) {
                                log_error("--http-header wants 'Name: value', not '%s'", optarg);
                                goto out;
                        }
                        r = push_arg(&headers, &o.http.n_headers, optarg);
                        if (r < 0) {
                                ret = r;
                                goto out;
                        }
                        o.http.headers = headers;
                        break;
                default:
                        clone_usage(stderr);
                        goto out;
                }
        }
        if (argc - optind != 2) {
                clone_usage(stderr);
                goto out;
        }
        o.source = argv[optind];
        ret = store_split_release_path(argv[optind + 1], &store_path, &name);
        if (ret < 0) {
                if (ret == -EINVAL) /* the name cannot be a release's: logged */
                        ret = CLI_USAGE;
                goto out;
        }
        o.store_path = store_path;
        o.name = name;

        /* A device's budget: without these, each worker thread keeps an arena
         * of its own and freed decoder windows in it, some MiB in all. */
        mallopt(M_ARENA_MAX, 2);
        mallopt(M_MMAP_THRESHOLD, 256 << 10);
        ret = clone_run(&o, &res);
        if (ret == 0)
                print_summary(name, &res, strstr(o.source, "://") != NULL);
out:
        free(headers);
        free(o.seeds);
        return ret;
}
