// SPDX-License-Identifier: MIT
/* --json: a command's result as one JSON document on standard output, for
 * an update agent; a failure too, with a stable code:
 *
 *   {"ok": false, "error": {"code": "untrusted-key", "errno": "EKEYREJECTED",
 *                           "message": "refusing ...: ... is not trusted ..."}}
 *
 * The message is the error line ihop also writes to stderr. The codes are
 * documented in the README ("Machine-readable results") and do not change. */
#pragma once

#include "cli.h"

#include <json-c/json.h>
#include <stdbool.h>
#include <stdint.h>

enum { OPT_JSON = CLI_OPT_BASE_JSON };

const struct cli_option *json_cli_options(void);
/* Takes OPT_JSON; 0 either way. */
int json_cli_parse(const struct cli_parser *p, int opt);
bool json_output_enabled(void);

/* Prints doc (and frees it) as the command's document. */
void json_output_print(json_object *doc);

/* The stable code of a command's result: "usage", "damaged", "not-found"... */
const char *json_error_code(int result);
/* {"code", "errno", "message"} for a failed result. */
json_object *json_error_new(int result);

/* For main: with --json, a failed command that printed no document gets
 * {"ok": false, "error": ...}. */
void json_output_failure(int result);

/* Small helpers for the documents. */
static inline void json_add_u64(json_object *o, const char *key, uint64_t v)
{
        json_object_object_add(o, key, json_object_new_uint64(v));
}
json_object *json_hex(const uint8_t *data, size_t len);
/* Untrusted text as JSON keeps it (valid UTF-8) or escapes it (text_escape). */
json_object *json_text(const char *s);
