// SPDX-License-Identifier: MIT
#include "clone.h"
#include "cleanup.h"
#include "cli.h"
#include "commands.h"
#include "http_options.h"
#include "json_output.h"
#include "log.h"
#include "progress_view.h"
#include "store.h"
#include "trust_options.h"
#include "units.h"

#include <errno.h>
#include <inttypes.h>
#include <malloc.h>
#include <stdio.h>
#include <string.h>

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
        if (r->signature_checked) {
                char id[MINISIGN_KEY_ID_STR_MAX];
                printf("signed by trusted key %s, release version %" PRIu64 "\n",
                       minisign_key_id_str(r->signer_id, id), r->release_version);
        }
}

static void print_json(const char *store, const char *name, const struct clone_result *r, bool http)
{
        json_object *doc = json_object_new_object(), *sig = NULL;

        if (!doc)
                return json_output_print(NULL);
        if (r->signature_checked) {
                char id[MINISIGN_KEY_ID_STR_MAX];
                sig = json_object_new_object();
                json_object_object_add(sig, "key_id", json_object_new_string(minisign_key_id_str(r->signer_id, id)));
                json_add_u64(sig, "release_version", r->release_version);
        }
        json_object_object_add(doc, "ok", json_object_new_boolean(true));
        json_object_object_add(doc, "store", json_text(store));
        json_object_object_add(doc, "release", json_text(name));
        json_add_u64(doc, "image_size", r->image_size);
        json_add_u64(doc, "chunks", r->chunks_total);
        json_add_u64(doc, "unique_chunks", r->chunks_unique);
        json_add_u64(doc, "reused_chunks", r->chunks_reused);
        json_add_u64(doc, "reused_bytes", r->bytes_reused);
        json_add_u64(doc, "recovered_chunks", r->chunks_recovered);
        json_add_u64(doc, "seeded_chunks", r->chunks_seeded);
        json_add_u64(doc, "seeded_bytes", r->bytes_seeded);
        json_add_u64(doc, "fetched_chunks", r->chunks_fetched);
        json_add_u64(doc, "fetched_bytes", r->bytes_fetched);
        json_add_u64(doc, "fetched_archive_bytes", r->bytes_fetched_compressed);
        json_object_object_add(doc, "downloaded_bytes", http ? json_object_new_uint64(r->bytes_downloaded) : NULL);
        json_add_u64(doc, "corrupt_chunks_replaced", r->chunks_corrupt_in_store);
        json_add_u64(doc, "archive_size", r->archive_size);
        json_add_u64(doc, "header_size", r->header_size);
        json_object_object_add(doc, "signature", sig);
        json_output_print(doc);
}

int cmd_clone(int argc, char **argv)
{
        enum { OPT_VERIFY_HEADER = CLI_OPT_BASE, OPT_NAIVE, OPT_SEED };
        static const struct cli_option options[] = {
                { .name = "verify-header", .key = OPT_VERIFY_HEADER, .arg = "HASH",
                  .help = "refuse the archive unless its header checksum is HASH" },
                { .name = "naive", .key = OPT_NAIVE, .help = "trust chunks already in the store without hashing them" },
                { .name = "seed", .key = OPT_SEED, .arg = "FILE|DEVICE|-",
                  .help = "take matching chunks from FILE (e.g. the current root partition or the previous image) "
                          "before downloading; repeatable; '-' is standard input" },
                { .name = "force", .key = 'f', .help = "replace an existing release NAME" },
                { .name = "jobs", .key = 'j', .arg = "N", .help = "parallel requests",
                  .def = "4 over HTTP, one per CPU locally" },
                {}
        };
        const struct cli_command cmd = {
                .name = "clone",
                .synopsis = "[OPTIONS] SOURCE STORE/NAME",
                .description = "Fetch the release in the bita archive SOURCE (a file path or an http(s) URL)\n"
                               "into the chunk store STORE as release NAME, downloading only the chunks the\n"
                               "store does not already hold. Every chunk is verified before it is stored.\n"
                               "NAME is a plain file name: not hidden, not 'chunks', without '.tmp-'.\n",
                .options = options,
                .groups = { trust_cli_options(), http_cli_options(), progress_cli_options(), json_cli_options() },
                .min_operands = 2,
                .max_operands = 2,
        };
        struct clone_options o = {};
        _cleanup_http_cli_ struct http_cli http;
        _cleanup_trust_cli_ struct trust_cli trust = {};
        struct clone_result res;
        struct cli_parser p;
        _cleanup_free_ char *store_path = NULL, *name = NULL;
        int c, r, ret = CLI_USAGE;

        http_cli_init(&http);
        cli_parser_init(&p, &cmd, argc, argv);
        while ((c = cli_next(&p)) > 0) {
                switch (c) {
                case 'f':
                        o.force = true;
                        break;
                case 'j':
                        if (parse_jobs(p.arg, &o.jobs) < 0)
                                goto out;
                        break;
                case OPT_VERIFY_HEADER:
                        r = hash_from_hex(p.arg, o.header_checksum, sizeof(o.header_checksum));
                        if (r < HASH_MIN_LEN) {
                                log_error("--verify-header wants a hex checksum, not '%s'", p.arg);
                                goto out;
                        }
                        o.header_checksum_len = (size_t)r;
                        break;
                case OPT_NAIVE:
                        o.naive = true;
                        break;
                case OPT_SEED:
                        r = cli_list_append(&o.seeds, &o.n_seeds, p.arg);
                        if (r < 0) {
                                ret = r;
                                goto out;
                        }
                        break;
                default:
                        r = trust_cli_parse(&trust, &p, c);
                        if (r == 0)
                                r = http_cli_parse(&http, &p, c);
                        if (r == 0)
                                r = progress_cli_parse(&p, c);
                        if (r == 0)
                                r = json_cli_parse(&p, c);
                        if (r != 0) {
                                ret = r;
                                goto out;
                        }
                        break;
                }
        }
        if (c < 0) {
                ret = p.result;
                goto out;
        }
        ret = trust_cli_finish(&trust);
        if (ret == 0)
                ret = http_cli_finish(&http);
        if (ret != 0)
                goto out;
        o.source = p.operands[0];
        ret = store_split_release_path(p.operands[1], &store_path, &name);
        if (ret < 0) {
                if (ret == -EINVAL) /* the name cannot be a release's: logged */
                        ret = CLI_USAGE;
                goto out;
        }
        o.store_path = store_path;
        o.name = name;
        o.http = http.http;
        o.trust = trust_cli_policy(&trust);

        /* A device's budget: without these, each worker thread keeps an arena
         * of its own and freed decoder windows in it, some MiB in all. */
        mallopt(M_ARENA_MAX, 2);
        mallopt(M_MMAP_THRESHOLD, 256 << 10);
        ret = clone_run(&o, &res);
        if (ret == 0 && json_output_enabled())
                print_json(store_path, name, &res, strstr(o.source, "://") != NULL);
        else if (ret == 0)
                print_summary(name, &res, strstr(o.source, "://") != NULL);
out:
        free(o.seeds);
        return ret;
}
