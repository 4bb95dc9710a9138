// SPDX-License-Identifier: MIT
#include "cleanup.h"
#include "cli.h"
#include "commands.h"
#include "log.h"
#include "store.h"
#include "store_usage.h"
#include "store_use.h"
#include "text_escape.h"
#include "units.h"

#include <errno.h>
#include <json-c/json.h>
#include <stdio.h>
#include <string.h>

/* The releases in use, as listed by store_use_list: live ones only. */
struct in_use {
        struct store_use_entry *e;
        size_t n;
};

static bool is_release(const struct store_usage *u, const char *name)
{
        for (size_t i = 0; i < u->n_releases; i++)
                if (strcmp(u->releases[i].name, name) == 0)
                        return true;
        return false;
}

static void print_in_use(const struct store_usage *u, const struct in_use *iu)
{
        bool first = true;

        for (size_t i = 0; i < iu->n; i++) {
                _cleanup_free_ char *name = NULL;
                if (!iu->e[i].live)
                        continue;
                name = text_escape_str(iu->e[i].release);
                printf("%s%s%s", first ? "in use (mounted or served): " : ", ", name ? name : "?",
                       is_release(u, iu->e[i].release) ? "" : " (removed)");
                first = false;
        }
        if (!first)
                putchar('\n');
}

static void print_table(const struct store_usage *u, const struct in_use *iu, const char *store)
{
        char a[32], b[32], c[32];

        printf("%-24s %12s %8s %12s %12s\n", "RELEASE", "SIZE", "CHUNKS", "UNIQUE", "SHARED");
        for (size_t i = 0; i < u->n_releases; i++) {
                const struct release_usage *r = &u->releases[i];
                /* Names are whatever files the store holds: escaped for the terminal. */
                _cleanup_free_ char *name = text_escape_str(r->name);
                printf("%-24s %12s %8zu %12s %12s\n", name ? name : "?",
                       format_size(r->release->source_total_size, a, sizeof(a)), r->release->n_order,
                       format_size(r->unique_bytes, b, sizeof(b)), format_size(r->shared_bytes, c, sizeof(c)));
        }
        printf("store %s: %zu release%s, %zu chunks, %s of chunk data\n", store, u->n_releases,
               u->n_releases == 1 ? "" : "s", u->n_chunks, format_size(u->referenced_bytes, a, sizeof(a)));
        print_in_use(u, iu);
}

static int print_json(const struct store_usage *u, const struct in_use *iu, const char *store)
{
        json_object *root = json_object_new_object(), *list = json_object_new_array();
        json_object *used = json_object_new_array();

        if (!root || !list || !used) {
                json_object_put(used);
                json_object_put(list);
                json_object_put(root);
                return -ENOMEM;
        }
        for (size_t i = 0; i < iu->n; i++) {
                _cleanup_free_ char *name = iu->e[i].live ? text_escape_for_json(iu->e[i].release) : NULL;
                if (name)
                        json_object_array_add(used, json_object_new_string(name));
        }
        for (size_t i = 0; i < u->n_releases; i++) {
                const struct release_usage *r = &u->releases[i];
                json_object *o = json_object_new_object();
                _cleanup_free_ char *name = text_escape_for_json(r->name);
                if (!name) {
                        json_object_put(o);
                        json_object_put(used);
                        json_object_put(list);
                        json_object_put(root);
                        return -ENOMEM;
                }
                json_object_object_add(o, "name", json_object_new_string(name));
                json_object_object_add(o, "size", json_object_new_uint64(r->release->source_total_size));
                json_object_object_add(o, "chunks", json_object_new_uint64(r->release->n_order));
                json_object_object_add(o, "unique_chunks", json_object_new_uint64(r->unique_chunks));
                json_object_object_add(o, "unique_bytes", json_object_new_uint64(r->unique_bytes));
                json_object_object_add(o, "shared_chunks", json_object_new_uint64(r->shared_chunks));
                json_object_object_add(o, "shared_bytes", json_object_new_uint64(r->shared_bytes));
                json_object_array_add(list, o);
        }
        json_object_object_add(root, "store", json_object_new_string(store));
        json_object_object_add(root, "releases", list);
        json_object_object_add(root, "chunks", json_object_new_uint64(u->n_chunks));
        json_object_object_add(root, "chunk_bytes", json_object_new_uint64(u->referenced_bytes));
        json_object_object_add(root, "in_use", used);
        puts(json_object_to_json_string_ext(root, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_NOSLASHESCAPE));
        json_object_put(root);
        return 0;
}

int cmd_ls(int argc, char **argv)
{
        enum { OPT_JSON = CLI_OPT_BASE };
        static const struct cli_option options[] = {
                { .name = "json", .key = OPT_JSON, .help = "print the same as a JSON document" },
                {}
        };
        static const struct cli_command cmd = {
                .name = "ls",
                .synopsis = "[--json] STORE",
                .description = "List the releases in a chunk store: image size, chunks, bytes only that\n"
                               "release uses (what removing it would free) and bytes it shares with others;\n"
                               "store totals. Last, the releases in use (mounted or served), removed ones\n"
                               "included.\n",
                .options = options,
                .min_operands = 1,
                .max_operands = 1,
        };
        _cleanup_store_ struct store *s = NULL;
        struct cli_parser p;
        struct store_usage u;
        struct in_use iu = {};
        bool json = false;
        int c, err;

        cli_parser_init(&p, &cmd, argc, argv);
        while ((c = cli_next(&p)) > 0)
                if (c == OPT_JSON)
                        json = true;
        if (c < 0)
                return p.result;
        const char *store = p.operands[0];
        err = store_open(store, false, &s);
        if (err == 0)
                err = store_usage_load(s, &u);
        if (err < 0)
                return err;
        err = store_use_list(s, false, &iu.e, &iu.n);
        if (err == 0 && json)
                err = print_json(&u, &iu, store);
        else if (err == 0)
                print_table(&u, &iu, store);
        store_usage_free(&u);
        store_use_list_free(iu.e, iu.n);
        return err; /* an error nobody logged (out of memory) main reports */
}
