// SPDX-License-Identifier: MIT
/* Whether to follow an HTTP redirect, and with which headers, decided from
 * the two URLs alone (no libcurl, no network), so that it can be
 * unit-tested and fuzzed.
 *
 * The rules: only http and https are followed; https never goes to http
 * (that would hand the request, and what it carries, to anyone on the path);
 * the extra request headers (--http-header: API keys) go only to the origin
 * they were given for, the same scheme, host and port (RFC 6454). */
#pragma once

#include <stddef.h>

enum http_redirect {
        HTTP_REDIRECT_SAME_ORIGIN,  /* follow, with the extra headers */
        HTTP_REDIRECT_OTHER_ORIGIN, /* follow, without them */
        HTTP_REDIRECT_DOWNGRADE,    /* refuse: from https to http */
        HTTP_REDIRECT_BAD_URL,      /* refuse: not an http or https URL */
};

/* Decides on a redirect from the absolute http(s) URL `from` to `to`, an
 * absolute URL (what libcurl's CURLINFO_REDIRECT_URL gives) or a reference
 * relative to `from` (a raw Location value). Both are byte ranges, need no
 * NUL terminator and may hold any bytes.
 *
 * Origins are compared on a strict reading of the authority (host names
 * of letters, digits, '-', '.', '_'; IP literals; a decimal port; at most
 * one '@'); whatever this reading cannot vouch for is another origin, so
 * an odd URL can cost the headers, never leak them. A target with a byte
 * outside printable ASCII (space included) is refused as a bad URL. */
enum http_redirect http_redirect_decide(const char *from, size_t from_len, const char *to, size_t to_len);
