// SPDX-License-Identifier: MIT
/* What ihop reads from an HTTP response's header lines, and whether the
 * response can be used for the range asked for. The bytes come from the
 * server and are untrusted: this module parses them without libcurl, so it
 * can be unit-tested and fuzzed on its own.
 *
 * Entry points for fuzzing: http_response_header() takes any bytes (no NUL
 * terminator needed, any length, any byte values) and never fails;
 * http_response_check() takes any numbers. Neither allocates. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

/* The longest a Retry-After is honoured, so a server cannot park us. */
#define HTTP_MAX_RETRY_AFTER_S 60

struct http_response {
        /* Content-Range: seen at all, and then whether it was a well-formed
         * "bytes FIRST-LAST/TOTAL" (TOTAL may be a star: unknown) with
         * FIRST <= LAST < TOTAL, given once. */
        bool range_seen;
        bool range_valid;
        uint64_t range_first, range_last;
        bool total_known; /* false for a "*" total */
        uint64_t range_total;
        /* Retry-After in seconds from now (delta-seconds or an HTTP-date),
         * capped at HTTP_MAX_RETRY_AFTER_S; 0 when absent or unreadable. */
        unsigned retry_after_s;
};

/* Empties r, as before the first header line of a response. */
void http_response_init(struct http_response *r);

/* Takes one header line as libcurl's header callback gets it: `len` bytes
 * at `line`, not NUL-terminated, ending in CRLF, LF or neither. A status
 * line ("HTTP/...") starts a new response (after a 1xx, or a redirect) and
 * forgets what the previous one said. Content-Range and Retry-After are
 * read, any other line is ignored. `now` (seconds since the epoch) turns an
 * HTTP-date Retry-After into seconds. */
void http_response_header(struct http_response *r, const char *line, size_t len, time_t now);

enum http_verdict {
        HTTP_VERDICT_OK,        /* the body is exactly the bytes asked for */
        HTTP_VERDICT_RETRY,     /* unusable, but another attempt may do better */
        HTTP_VERDICT_PERMANENT, /* unusable, and asking again will not help */
        HTTP_VERDICT_NO_RANGES, /* a 200: the server ignores range requests */
};

/* Whether a response with HTTP `status` and headers `r` carries bytes
 * [start, start + len) of the resource, as a request for that range wants:
 * a 206 whose Content-Range is exactly that range. `need_total`: the caller
 * needs the resource's size, so a "*" total is unusable. Anything but OK
 * writes why (one line, no URL) to reason. */
enum http_verdict http_response_check(const struct http_response *r, long status, uint64_t start, uint64_t len,
                                      bool need_total, char *reason, size_t reason_size);
