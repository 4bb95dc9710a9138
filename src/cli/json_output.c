// SPDX-License-Identifier: MIT
#include "json_output.h"

#include "cleanup.h"
#include "hash.h"
#include "log.h"
#include "text_escape.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static bool enabled, printed;

static const struct cli_option options[] = {
        { .name = "json", .key = OPT_JSON, .help = "print the result (or the failure) as one JSON document" },
        {}
};

const struct cli_option *json_cli_options(void) { return options; }

int json_cli_parse(const struct cli_parser *p, int opt)
{
        if (opt == OPT_JSON)
                enabled = true;
        return 0;
}

bool json_output_enabled(void) { return enabled; }

void json_output_print(json_object *doc)
{
        if (!doc) {
                log_errno(-ENOMEM, "cannot print the result");
                return;
        }
        puts(json_object_to_json_string_ext(doc, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_NOSLASHESCAPE));
        fflush(stdout);
        json_object_put(doc);
        printed = true;
}

static const struct {
        int err;
        const char *code;
} codes[] = {
        { ENOENT, "not-found" },         { EEXIST, "exists" },
        { EBADMSG, "bad-data" },         { EKEYREJECTED, "untrusted-key" },
        { ESTALE, "downgrade" },         { EIO, "io" },
        { ENOSPC, "no-space" },          { EDQUOT, "no-space" },
        { EACCES, "permission" },        { EPERM, "permission" },
        { EROFS, "read-only" },          { ELOOP, "loop" },
        { ENOTDIR, "not-a-directory" },  { ENOTSUP, "unsupported" },
        { ENOMEM, "out-of-memory" },     { EINVAL, "invalid" },
        { ECANCELED, "cancelled" },      { EFBIG, "too-large" },
        { ETIMEDOUT, "timeout" },        { EBUSY, "busy" },
        { ENAMETOOLONG, "invalid" },     { E2BIG, "too-large" },
};

const char *json_error_code(int result)
{
        if (result == CLI_USAGE)
                return "usage";
        if (result == CLI_DAMAGED)
                return "damaged";
        for (size_t i = 0; i < sizeof(codes) / sizeof(codes[0]); i++)
                if (-result == codes[i].err)
                        return codes[i].code;
        return "error";
}

json_object *json_error_new(int result)
{
        json_object *e = json_object_new_object();
        const char *message = log_last_error();
        const char *name = result < 0 ? strerrorname_np(-result) : NULL;

        if (!e)
                return NULL;
        json_object_object_add(e, "code", json_object_new_string(json_error_code(result)));
        json_object_object_add(e, "errno", name ? json_object_new_string(name) : NULL);
        json_object_object_add(e, "message", json_text(message ? message : result < 0 ? strerror(-result) : ""));
        return e;
}

void json_output_failure(int result)
{
        if (!enabled || printed || result == 0)
                return;
        json_object *doc = json_object_new_object();
        if (!doc)
                return;
        json_object_object_add(doc, "ok", json_object_new_boolean(false));
        json_object_object_add(doc, "error", json_error_new(result));
        json_output_print(doc);
}

json_object *json_hex(const uint8_t *data, size_t len)
{
        char hex[2 * HASH_MAX_LEN + 1];

        if (len > HASH_MAX_LEN)
                len = HASH_MAX_LEN;
        hash_to_hex(data, len, hex);
        return json_object_new_string(hex);
}

json_object *json_text(const char *s)
{
        _cleanup_free_ char *t = text_escape_for_json(s);

        return t ? json_object_new_string(t) : NULL;
}
