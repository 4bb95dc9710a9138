// SPDX-License-Identifier: MIT
#include "chunking_options.h"
#include "cli.h"
#include "http_options.h"
#include "commands.h"
#include "diff.h"
#include "json_output.h"
#include "log.h"
#include "units.h"

#include <errno.h>
#include <stdio.h>

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

static json_object *side_json(const char *path, const struct diff_side *s)
{
        json_object *o = json_object_new_object();

        json_object_object_add(o, "path", json_text(path));
        json_object_object_add(o, "kind", json_object_new_string(s->is_archive ? "archive" : "image"));
        json_add_u64(o, "size", s->size);
        json_add_u64(o, "chunks", s->chunks);
        json_add_u64(o, "unique_chunks", s->unique);
        json_add_u64(o, "unique_bytes", s->unique_size);
        return o;
}

static void print_json(const struct diff_options *o, const struct diff_result *r)
{
        json_object *doc = json_object_new_object(), *fetch = json_object_new_object();
        char desc[256];

        json_object_object_add(doc, "ok", json_object_new_boolean(true));
        json_object_object_add(doc, "chunker", json_object_new_string(chunker_params_describe(&r->chunker, desc,
                                                                                              sizeof(desc))));
        json_add_u64(doc, "hash_bytes_compared", r->hash_len);
        json_object_object_add(doc, "a", side_json(o->a, &r->a));
        json_object_object_add(doc, "b", side_json(o->b, &r->b));
        json_add_u64(doc, "shared_chunks", r->shared);
        json_add_u64(doc, "shared_bytes", r->shared_size);
        json_add_u64(doc, "shared_bytes_of_b", r->shared_in_b);
        json_add_u64(doc, "only_a_chunks", r->only_a);
        json_add_u64(doc, "only_a_bytes", r->only_a_size);
        json_add_u64(doc, "only_b_chunks", r->only_b);
        json_add_u64(doc, "only_b_bytes", r->only_b_size);
        /* B given A: what a clone of B into a store holding A would fetch. */
        json_add_u64(fetch, "chunks", r->only_b);
        json_add_u64(fetch, "bytes", r->only_b_size);
        json_add_u64(fetch, "transfer_bytes", r->b.is_archive || r->fetch_estimated
                                                                                        ? r->fetch_size
                                                                                        : r->only_b_size);
        json_object_object_add(fetch, "transfer_estimated", json_object_new_boolean(!r->b.is_archive));
        json_object_object_add(doc, "b_given_a", fetch);
        json_output_print(doc);
}

int cmd_diff(int argc, char **argv)
{
        static const struct cli_option options[] = {
                { .name = "jobs", .key = 'j', .arg = "N", .help = "worker threads", .def = "one per CPU" },
                {}
        };
        const struct cli_command cmd = {
                .name = "diff",
                .synopsis = "[OPTIONS] A B",
                .description = "Show how much images A and B share when chunked as bita chunks them, and\n"
                               "what B costs to fetch into a store that holds A. A or B may be an archive\n"
                               "(file or URL): its dictionary is used, and an image compared with it is\n"
                               "chunked as the archive was. The compression options only estimate the\n"
                               "download when B is an image.\n",
                .options = options,
                .groups = { chunking_cli_options(), http_cli_options(), json_cli_options() },
                .min_operands = 2,
                .max_operands = 2,
        };
        struct chunking_options co;
        _cleanup_http_cli_ struct http_cli http;
        struct diff_options o = {};
        struct diff_result res;
        struct cli_parser p;
        int c, r;

        chunking_options_init(&co);
        http_cli_init(&http);
        cli_parser_init(&p, &cmd, argc, argv);
        while ((c = cli_next(&p)) > 0) {
                if (c == OPT_JSON) {
                        json_cli_parse(&p, c);
                        continue;
                }
                if (c >= CLI_OPT_BASE_HTTP) {
                        r = http_cli_parse(&http, &p, c);
                        if (r != 0)
                                return r;
                        continue;
                }
                r = c == 'j' ? parse_jobs(p.arg, &o.jobs) : chunking_options_parse(&co, c, p.arg);
                if (r < 0)
                        return CLI_USAGE;
        }
        if (c < 0)
                return p.result;
        if (chunking_options_finish(&co) < 0 || http_cli_finish(&http) != 0)
                return CLI_USAGE;
        o.a = p.operands[0];
        o.b = p.operands[1];
        o.chunker = co.chunker;
        o.chunker_given = co.chunker_given;
        o.codec = co.codec;
        o.level = co.level;
        o.http = &http.http;
        r = diff_run(&o, &res);
        if (r == 0 && json_output_enabled())
                print_json(&o, &res);
        else if (r == 0)
                print_result(&o, &res);
        return r;
}
