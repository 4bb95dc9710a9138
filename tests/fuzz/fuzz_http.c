// SPDX-License-Identifier: MIT
/* What a server's answer to a range request can make of ihop: its header
 * lines as http_response_header reads them (status lines, Content-Range,
 * Retry-After), the verdict http_response_check gives for the range asked
 * for, and where a redirect may lead (http_redirect_decide).
 *
 * Input: 2 bytes status (big-endian), 8 bytes start, 4 bytes length of the
 * range asked for, 1 byte of flags, then lines separated by '\n': every
 * line is a header line; the first two are also the redirect's current URL
 * and Location. Each line is copied into a buffer of exactly its length, so
 * that a read past it is an ASan report. The target aborts when a verdict
 * contradicts what was parsed, or a redirect is let through that must not. */
#include "fuzz.h"

#include "http_redirect.h"
#include "http_response.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define NOW ((time_t)1767225600) /* 2026-01-01 */

static uint64_t be(const uint8_t *p, size_t n)
{
        uint64_t v = 0;

        for (size_t i = 0; i < n; i++)
                v = v << 8 | p[i];
        return v;
}

static bool starts_with(const char *s, size_t len, const char *prefix)
{
        size_t n = strlen(prefix);

        return len >= n && strncasecmp(s, prefix, n) == 0;
}

/* Does u start with a scheme (RFC 3986: ALPHA *( ALPHA / DIGIT / "+" /
 * "-" / "." ) ":")? */
static bool has_scheme(const char *u, size_t len)
{
        size_t i = 0;

        if (len == 0 || !((u[0] | 0x20) >= 'a' && (u[0] | 0x20) <= 'z'))
                return false;
        while (i < len && ((u[i] | 0x20) >= 'a' && (u[i] | 0x20) <= 'z' ? true
                           : (u[i] >= '0' && u[i] <= '9') || u[i] == '+' || u[i] == '-' || u[i] == '.'))
                i++;
        return i < len && u[i] == ':';
}

/* "scheme://authority" of an absolute URL: its length, or 0. */
static size_t origin_len(const char *u, size_t len)
{
        const char *sep = len >= 3 ? memmem(u, len, "://", 3) : NULL;

        if (!sep || !has_scheme(u, len) || memchr(u, ':', len) != sep)
                return 0;
        for (size_t i = (size_t)(sep - u) + 3; i < len; i++)
                if (u[i] == '/' || u[i] == '?' || u[i] == '#')
                        return i;
        return len;
}

struct origin {
        const char *scheme, *host;
        size_t scheme_len, host_len;
        unsigned long port;
};

/* Splits "scheme://[userinfo@]host[:port]" (an origin_len prefix); the
 * port defaults to the scheme's. False when the port is not a number. */
static bool split_origin(const char *u, size_t len, struct origin *o)
{
        const char *sep = memmem(u, len, "://", 3), *h, *end = u + len, *at, *colon;

        o->scheme = u;
        o->scheme_len = (size_t)(sep - u);
        h = sep + 3;
        while ((at = memchr(h, '@', (size_t)(end - h))))
                h = at + 1;
        if (h < end && *h == '[') {
                const char *close = memchr(h, ']', (size_t)(end - h));
                if (!close)
                        return false;
                colon = close + 1 < end && close[1] == ':' ? close + 1 : NULL;
                o->host = h + 1;
                o->host_len = (size_t)(close - h - 1);
        } else {
                colon = memchr(h, ':', (size_t)(end - h));
                o->host = h;
                o->host_len = (size_t)((colon ? colon : end) - h);
        }
        o->port = o->scheme_len == 5 ? 443 : 80;
        if (colon && colon + 1 < end) {
                o->port = 0;
                for (const char *p = colon + 1; p < end; p++) {
                        if (*p < '0' || *p > '9' || o->port > 65535)
                                return false;
                        o->port = o->port * 10 + (unsigned long)(*p - '0');
                }
        }
        return true;
}

static void check_redirect(const char *from, size_t from_len, const char *to, size_t to_len)
{
        enum http_redirect d = http_redirect_decide(from, from_len, to, to_len);
        bool followed = d == HTTP_REDIRECT_SAME_ORIGIN || d == HTTP_REDIRECT_OTHER_ORIGIN;

        if (d == HTTP_REDIRECT_DOWNGRADE && !starts_with(from, from_len, "https:"))
                abort(); /* only https can be downgraded */
        if (followed && starts_with(from, from_len, "https:") && starts_with(to, to_len, "http:"))
                abort(); /* an http target from https is never followed */
        if (followed && has_scheme(to, to_len) && !starts_with(to, to_len, "http:") &&
            !starts_with(to, to_len, "https:"))
                abort(); /* a target of another scheme is never followed */
        if (d == HTTP_REDIRECT_SAME_ORIGIN && origin_len(to, to_len)) {
                /* The headers go on to an absolute target only where the
                 * origin (scheme, host, port; not the user info) is the very
                 * same; a relative one stays where it is. */
                struct origin a, b;
                if (!split_origin(from, origin_len(from, from_len), &a) ||
                    !split_origin(to, origin_len(to, to_len), &b))
                        abort();
                if (a.scheme_len != b.scheme_len || strncasecmp(a.scheme, b.scheme, a.scheme_len) != 0 ||
                    a.host_len != b.host_len || strncasecmp(a.host, b.host, a.host_len) != 0 || a.port != b.port)
                        abort();
        }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        struct http_response r;
        char reason[160];
        const char *line[2] = { NULL, NULL };
        size_t line_len[2] = { 0, 0 };
        char *copies[2] = { NULL, NULL };
        size_t n_lines = 0;

        if (size < 15)
                return 0;
        long status = (long)be(data, 2);
        uint64_t start = be(data + 2, 8), len = be(data + 10, 4);
        bool need_total = data[14] & 1;
        const char *text = (const char *)data + 15;
        size_t text_len = size - 15;

        http_response_init(&r);
        while (text_len > 0 || n_lines == 0) {
                const char *nl = memchr(text, '\n', text_len);
                size_t n = nl ? (size_t)(nl - text) + 1 : text_len;
                char *copy = malloc(n ? n : 1);
                if (!copy)
                        break;
                memcpy(copy, text, n);
                http_response_header(&r, copy, n, NOW);
                if (n_lines < 2) {
                        /* the URLs without their line ends */
                        line_len[n_lines] = nl ? n - 1 : n;
                        copies[n_lines] = copy;
                        line[n_lines] = copy;
                } else {
                        free(copy);
                }
                n_lines++;
                text += n;
                text_len -= n;
                if (n == 0)
                        break;
        }

        if (r.retry_after_s > HTTP_MAX_RETRY_AFTER_S)
                abort();
        if (r.range_valid && !(r.range_first <= r.range_last && (!r.total_known || r.range_last < r.range_total)))
                abort();
        memset(reason, 'x', sizeof(reason));
        enum http_verdict v = http_response_check(&r, status, start, len, need_total, reason, sizeof(reason));
        if (v != HTTP_VERDICT_OK && !memchr(reason, '\0', sizeof(reason)))
                abort(); /* a reason that runs off its buffer */
        if (v == HTTP_VERDICT_OK &&
            (status != 206 || !r.range_valid || len == 0 || r.range_first != start ||
             r.range_last != start + len - 1 || (need_total && !r.total_known)))
                abort(); /* a body accepted for bytes that were not asked for */

        if (line[0] && line[1])
                check_redirect(line[0], line_len[0], line[1], line_len[1]);
        free(copies[0]);
        free(copies[1]);
        return 0;
}
