#include "cleanup.h"
#include "commands.h"
#include "log.h"
#include "store.h"
#include "store_usage.h"
#include "store_use.h"
#include "text_escape.h"
#include "units.h"

#include <errno.h>
#include <getopt.h>
#include <json-c/json.h>
#include <stdio.h>
#include <string.h>

static void ls_usage(FILE *f)
{
        fprintf(f, "Usage: ihop ls [--json] STORE\n"
                   "\n"
                   "List the releases in a chunk store: image size, chunks, bytes only that release\n"
                   "uses (what removing it would free) and bytes it shares with others; store totals.\n"
                   "Last, the releases in use (mounted or served), removed ones included.\n");
}

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
                return -1;
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
                        return -1;
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
        enum { OPT_JSON = 256 };
        static const struct option options[] = {
                { "help", no_argument, NULL, 'h' },
                { "json", no_argument, NULL, OPT_JSON },
                {}
        };
        _cleanup_store_ struct store *s = NULL;
        struct store_usage u;
        struct in_use iu = {};
        bool json = false;
        int c;

        while ((c = getopt_long(argc, argv, "h", options, NULL)) != -1) {
                switch (c) {
                case 'h':
                        ls_usage(stdout);
                        return 0;
                case OPT_JSON:
                        json = true;
                        break;
                default:
                        ls_usage(stderr);
                        return 2;
                }
        }
        if (argc - optind != 1) {
                ls_usage(stderr);
                return 2;
        }
        if (store_open(argv[optind], false, &s) < 0 || store_usage_load(s, &u) < 0)
                return 1;
        if (store_use_list(s, false, &iu.e, &iu.n) < 0) {
                store_usage_free(&u);
                return 1;
        }
        int r = 0;
        if (json)
                r = print_json(&u, &iu, argv[optind]);
        else
                print_table(&u, &iu, argv[optind]);
        store_usage_free(&u);
        store_use_list_free(iu.e, iu.n);
        if (r < 0)
                log_errno(-ENOMEM, "cannot list %s", argv[optind]);
        return r < 0 ? 1 : 0;
}
