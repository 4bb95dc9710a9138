// SPDX-License-Identifier: MIT
/* Printing text that others wrote (archive metadata and versions, names
 * found in a store) without handing the terminal an escape sequence, a
 * carriage return or a line of its own. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

/* Is data valid UTF-8 (no overlong forms, surrogates or code points past U+10FFFF)? */
bool utf8_valid(const void *data, size_t len);

/* data as one line of text: control characters (C0, DEL and the C1 range
 * U+0080..U+009F, which some terminals obey too) and backslash become C
 * escapes (\n, \r, \t, \\, \xNN), bytes that are not UTF-8 \xNN; the rest,
 * valid UTF-8, is unchanged. A new string; NULL when out of memory. */
char *text_escape(const void *data, size_t len);
char *text_escape_str(const char *s);

/* For JSON, whose writer escapes control characters itself: valid UTF-8 is
 * returned unchanged (copied), anything else as text_escape() has it, so
 * the document stays valid JSON. */
char *text_escape_for_json(const char *s);
