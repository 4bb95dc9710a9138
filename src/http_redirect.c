// SPDX-License-Identifier: MIT
#include "http_redirect.h"

#include <stdbool.h>
#include <string.h>

enum scheme { SCHEME_HTTP, SCHEME_HTTPS, SCHEME_OTHER };

struct origin {
        enum scheme scheme;
        bool known; /* the authority was read strictly: host and port can be trusted */
        const char *host;
        size_t host_len;
        unsigned port;
};

static bool is_alpha(char c)
{
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static bool is_digit(char c)
{
        return c >= '0' && c <= '9';
}

static bool is_hex(char c)
{
        return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

static char ascii_lower(char c)
{
        return c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
}

static bool equal_ignoring_case(const char *a, size_t a_len, const char *b, size_t b_len)
{
        if (a_len != b_len)
                return false;
        for (size_t i = 0; i < a_len; i++)
                if (ascii_lower(a[i]) != ascii_lower(b[i]))
                        return false;
        return true;
}

/* The length of the URL's scheme (RFC 3986: ALPHA *( ALPHA / DIGIT / "+" /
 * "-" / "." ) then ":"), or 0 when it has none: a relative reference. */
static size_t scheme_length(const char *s, size_t n)
{
        size_t i;

        if (n == 0 || !is_alpha(s[0]))
                return 0;
        for (i = 1; i < n && (is_alpha(s[i]) || is_digit(s[i]) || s[i] == '+' || s[i] == '-' || s[i] == '.'); i++)
                ;
        return i < n && s[i] == ':' ? i : 0;
}

static enum scheme scheme_of(const char *s, size_t n)
{
        if (equal_ignoring_case(s, n, "http", 4))
                return SCHEME_HTTP;
        if (equal_ignoring_case(s, n, "https", 5))
                return SCHEME_HTTPS;
        return SCHEME_OTHER;
}

static bool is_userinfo_char(char c)
{
        /* unreserved, pct-encoded, sub-delims and ':' */
        return is_alpha(c) || is_digit(c) || (c && strchr("-._~%!$&'()*+,;=:", c));
}

static bool is_host_char(char c)
{
        return is_alpha(c) || is_digit(c) || c == '-' || c == '.' || c == '_';
}

/* Reads the authority at s (just after "//") into o's host and port;
 * false when it is not of the strict form this module vouches for. */
static bool read_authority(const char *s, size_t n, struct origin *o)
{
        const char *p = s, *end = s, *at;

        /* It ends where the path, query or fragment starts (RFC 3986 3.2). */
        while (end < s + n && *end != '/' && *end != '?' && *end != '#')
                end++;
        at = memchr(p, '@', (size_t)(end - p));
        if (at) {
                if (memchr(at + 1, '@', (size_t)(end - at - 1)))
                        return false;
                for (; p < at; p++)
                        if (!is_userinfo_char(*p))
                                return false;
                p = at + 1;
        }
        if (p < end && *p == '[') {
                const char *close = memchr(p, ']', (size_t)(end - p));
                if (!close || close == p + 1)
                        return false;
                for (const char *q = p + 1; q < close; q++)
                        if (!is_hex(*q) && *q != ':' && *q != '.')
                                return false;
                o->host = p + 1;
                o->host_len = (size_t)(close - p - 1);
                p = close + 1;
        } else {
                o->host = p;
                while (p < end && *p != ':') {
                        if (!is_host_char(*p))
                                return false;
                        p++;
                }
                o->host_len = (size_t)(p - o->host);
                if (o->host_len == 0)
                        return false;
        }
        o->port = o->scheme == SCHEME_HTTPS ? 443 : 80;
        if (p == end)
                return true;
        if (*p++ != ':')
                return false;
        if (p == end)
                return true; /* "host:" is the default port */
        o->port = 0;
        for (; p < end; p++) {
                if (!is_digit(*p))
                        return false;
                o->port = o->port * 10 + (unsigned)(*p - '0');
                if (o->port > 65535)
                        return false;
        }
        return true;
}

/* The origin of an absolute URL: its scheme, and its host and port when
 * they follow "scheme://" in the strict form. */
static void read_absolute(const char *s, size_t n, size_t scheme_len, struct origin *o)
{
        const char *rest = s + scheme_len + 1;
        size_t rest_len = n - scheme_len - 1;

        o->scheme = scheme_of(s, scheme_len);
        o->known = o->scheme != SCHEME_OTHER && rest_len >= 2 && rest[0] == '/' && rest[1] == '/' &&
                   read_authority(rest + 2, rest_len - 2, o);
}

enum http_redirect http_redirect_decide(const char *from, size_t from_len, const char *to, size_t to_len)
{
        struct origin f = { 0 }, t = { 0 };
        size_t n;

        n = scheme_length(from, from_len);
        if (n == 0)
                return HTTP_REDIRECT_BAD_URL;
        read_absolute(from, from_len, n, &f);
        if (f.scheme == SCHEME_OTHER)
                return HTTP_REDIRECT_BAD_URL;

        /* Spaces and control bytes are trimmed, skipped or rejected
         * depending on the parser: no telling where such a URL leads. */
        if (to_len == 0)
                return HTTP_REDIRECT_BAD_URL;
        for (size_t i = 0; i < to_len; i++)
                if ((unsigned char)to[i] <= 0x20 || (unsigned char)to[i] >= 0x7f)
                        return HTTP_REDIRECT_BAD_URL;

        n = scheme_length(to, to_len);
        if (n > 0) {
                read_absolute(to, to_len, n, &t);
                if (t.scheme == SCHEME_OTHER)
                        return HTTP_REDIRECT_BAD_URL;
        } else if (to_len >= 2 && to[0] == '/' && to[1] == '/') {
                /* A network-path reference: another authority, the same scheme. */
                t.scheme = f.scheme;
                t.known = read_authority(to + 2, to_len - 2, &t);
        } else if (memchr(to, '\\', to_len)) {
                /* Some parsers read a backslash as a slash ("/\host"). */
                return HTTP_REDIRECT_OTHER_ORIGIN;
        } else {
                /* A path, query or fragment: the same server. */
                return HTTP_REDIRECT_SAME_ORIGIN;
        }
        if (f.scheme == SCHEME_HTTPS && t.scheme == SCHEME_HTTP)
                return HTTP_REDIRECT_DOWNGRADE;
        if (f.known && t.known && f.scheme == t.scheme && f.port == t.port &&
            equal_ignoring_case(f.host, f.host_len, t.host, t.host_len))
                return HTTP_REDIRECT_SAME_ORIGIN;
        return HTTP_REDIRECT_OTHER_ORIGIN;
}
