// SPDX-License-Identifier: MIT
#include "cleanup.h"
#include "cli.h"
#include "clone.h"
#include "commands.h"
#include "http_options.h"
#include "json_output.h"
#include "log.h"
#include "progress_view.h"
#include "release_file.h"
#include "store.h"
#include "verify.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

/* With --json: one release's object, built as it is checked. */
struct verify_report {
        json_object *obj, *missing, *corrupt, *unavailable;
};

static void add_damaged(bool missing, const char *path, void *opaque)
{
        struct verify_report *rep = opaque;

        json_object_array_add(missing ? rep->missing : rep->corrupt, json_text(path));
}

static void add_unavailable(const char *path, void *opaque)
{
        struct verify_report *rep = opaque;

        json_object_array_add(rep->unavailable, json_text(path));
}

/* 0 when the release is whole, CLI_DAMAGED when not, or a negative errno. */
static int verify_one(const char *arg, struct verify_report *rep, struct verify_result *res)
{
        _cleanup_store_ struct store *s = NULL;
        struct release *r = NULL;
        int err;

        memset(res, 0, sizeof(*res));
        if (rep) {
                /* Checked again after a repair: the lists start over. */
                json_object_object_add(rep->obj, "missing_chunks", rep->missing = json_object_new_array());
                json_object_object_add(rep->obj, "corrupt_chunks", rep->corrupt = json_object_new_array());
        }
        err = release_file_open(arg, &s, NULL, &r);
        if (err == 0)
                err = release_verify(s, r, rep ? add_damaged : NULL, rep, res);
        release_free(r);
        if (err < 0)
                return err;
        return res->missing == 0 && res->corrupt == 0 && res->image_ok ? 0 : CLI_DAMAGED;
}

static int repair(const char *source, const char *arg, const struct http_options *http, struct verify_report *rep)
{
        struct repair_options o = { .source = source, .release = arg, .http = *http };
        struct repair_result res;
        int err;

        if (rep) {
                json_object *r = json_object_new_object();
                json_object_object_add(rep->obj, "repair", r);
                json_object_object_add(r, "unavailable_chunks", rep->unavailable = json_object_new_array());
                o.unavailable = add_unavailable;
                o.opaque = rep;
                err = clone_repair(&o, &res);
                json_add_u64(r, "fetched_chunks", res.chunks_fetched);
                json_object_object_add(r, "error", err < 0 ? json_error_new(err) : NULL);
                return err;
        }
        err = clone_repair(&o, &res);
        if (err == 0)
                printf("repaired %s: fetched %zu chunks again\n", arg, res.chunks_fetched);
        return err;
}

static const char *image_state(const struct verify_result *r, bool shout)
{
        if (r->image_ok)
                return "matches";
        if (r->missing || r->corrupt)
                return "not computable";
        return shout ? "MISMATCH" : "mismatch";
}

/* What verify_one found, into the release's object. */
static void report_result(struct verify_report *rep, int err, const struct verify_result *r)
{
        json_object_object_add(rep->obj, "status",
                               json_object_new_string(err < 0 ? "error" : err == 0 ? "ok" : "damaged"));
        json_add_u64(rep->obj, "chunks_checked", r->chunks_checked);
        json_add_u64(rep->obj, "missing", r->missing);
        json_add_u64(rep->obj, "corrupt", r->corrupt);
        json_object_object_add(rep->obj, "image_checksum", err < 0 ? NULL : json_object_new_string(image_state(r, false)));
        json_object_object_add(rep->obj, "error", err < 0 ? json_error_new(err) : NULL);
}

int cmd_verify(int argc, char **argv)
{
        enum { OPT_REPAIR = CLI_OPT_BASE };
        static const struct cli_option options[] = {
                { .name = "repair", .key = OPT_REPAIR, .arg = "SOURCE",
                  .help = "fetch the damaged chunks again from the release's archive (a path or URL; it must hold "
                          "the same image). Only chunk files the release names are written, each checked against "
                          "the release's own hash; the release description never is" },
                {}
        };
        const struct cli_command cmd = {
                .name = "verify",
                .synopsis = "[--repair SOURCE [HTTP OPTIONS]] STORE/NAME...",
                .description = "Re-hash every chunk of each release and check its image checksum; missing and\n"
                               "corrupt chunks are listed by name. Exit status 1 when any release is damaged.\n",
                .options = options,
                .groups = { http_cli_options(), progress_cli_options(), json_cli_options() },
                .min_operands = 1,
                .max_operands = -1,
        };
        struct cli_parser p;
        _cleanup_http_cli_ struct http_cli http;
        const char *source = NULL;
        int c, err, ret = 0;

        http_cli_init(&http);
        cli_parser_init(&p, &cmd, argc, argv);
        while ((c = cli_next(&p)) > 0) {
                if (c == OPT_REPAIR)
                        source = p.arg;
                else if ((err = http_cli_parse(&http, &p, c)) != 0 || (err = progress_cli_parse(&p, c)) != 0 ||
                         (err = json_cli_parse(&p, c)) != 0)
                        return err;
        }
        if (c < 0)
                return p.result;
        if (source && p.n_operands != 1)
                return cli_usage_error(&p);
        if (http_cli_finish(&http) != 0)
                return CLI_USAGE;
        err = cli_check_release_operands(p.operands, p.n_operands);
        if (err != 0)
                return err;
        json_object *doc = json_output_enabled() ? json_object_new_object() : NULL;
        json_object *list = doc ? json_object_new_array() : NULL;
        /* A release that cannot be checked outweighs one found damaged. */
        for (int i = 0; i < p.n_operands; i++) {
                const char *arg = p.operands[i];
                struct verify_report report = {}, *rep = doc ? &report : NULL;
                struct verify_result r;
                if (rep) {
                        rep->obj = json_object_new_object();
                        json_object_array_add(list, rep->obj);
                        json_object_object_add(rep->obj, "release", json_text(arg));
                }
                err = verify_one(arg, rep, &r);
                if (rep)
                        report_result(rep, err, &r);
                else if (err >= 0)
                        printf("%s: %s (%zu chunks checked, %zu missing, %zu corrupt, image checksum %s)\n", arg,
                               err == 0 ? "OK" : "DAMAGED", r.chunks_checked, r.missing, r.corrupt,
                               image_state(&r, true));
                if (err < 0) {
                        ret = err;
                        continue;
                }
                if (err == 0)
                        continue;
                if (source) {
                        err = repair(source, arg, &http.http, rep);
                        if (err == 0)
                                err = verify_one(arg, rep, &r);
                        if (rep)
                                report_result(rep, err, &r); /* as it stands after the repair */
                        if (err == 0) {
                                if (!rep)
                                        printf("%s: OK after repair\n", arg);
                                continue;
                        }
                        log_error("%s could not be repaired", arg);
                }
                if (ret == 0 || err < 0)
                        ret = err;
        }
        if (doc) {
                json_object_object_add(doc, "ok", json_object_new_boolean(ret == 0));
                json_object_object_add(doc, "releases", list);
                json_output_print(doc);
        }
        return ret;
}
