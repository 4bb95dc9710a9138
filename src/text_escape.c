// SPDX-License-Identifier: MIT
#include "text_escape.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Length of the valid UTF-8 sequence at s (1..4), 0 if there is none. */
static size_t utf8_sequence_length(const unsigned char *s, size_t len)
{
        unsigned char c = s[0];
        size_t n;
        unsigned char lo = 0x80, hi = 0xbf; /* allowed range of the second byte */

        if (c < 0x80)
                return 1;
        if (c >= 0xc2 && c <= 0xdf)
                n = 2;
        else if (c >= 0xe0 && c <= 0xef) {
                n = 3;
                if (c == 0xe0)
                        lo = 0xa0; /* overlong */
                else if (c == 0xed)
                        hi = 0x9f; /* UTF-16 surrogates */
        } else if (c >= 0xf0 && c <= 0xf4) {
                n = 4;
                if (c == 0xf0)
                        lo = 0x90; /* overlong */
                else if (c == 0xf4)
                        hi = 0x8f; /* past U+10FFFF */
        } else
                return 0;
        if (len < n || s[1] < lo || s[1] > hi)
                return 0;
        for (size_t i = 2; i < n; i++)
                if (s[i] < 0x80 || s[i] > 0xbf)
                        return 0;
        return n;
}

bool utf8_valid(const void *data, size_t len)
{
        const unsigned char *s = data;

        for (size_t i = 0; i < len;) {
                size_t n = utf8_sequence_length(s + i, len - i);
                if (n == 0)
                        return false;
                i += n;
        }
        return true;
}

char *text_escape(const void *data, size_t len)
{
        const unsigned char *s = data;
        char *out, *o;

        if (len > (SIZE_MAX - 1) / 4)
                return NULL;
        out = o = malloc(4 * len + 1); /* \xNN at most per byte */
        if (!out)
                return NULL;
        for (size_t i = 0; i < len;) {
                size_t n = utf8_sequence_length(s + i, len - i);
                bool c1 = n == 2 && s[i] == 0xc2 && s[i + 1] < 0xa0;
                if (n == 1 && s[i] >= 0x20 && s[i] != 0x7f && s[i] != '\\') {
                        *o++ = (char)s[i++];
                } else if (n > 1 && !c1) {
                        memcpy(o, s + i, n);
                        o += n;
                        i += n;
                } else if (s[i] == '\n' || s[i] == '\r' || s[i] == '\t' || s[i] == '\\') {
                        *o++ = '\\';
                        *o++ = s[i] == '\n' ? 'n' : s[i] == '\r' ? 'r' : s[i] == '\t' ? 't' : '\\';
                        i++;
                } else {
                        /* A control character (C1: both bytes), or a byte that is not UTF-8. */
                        size_t k = c1 ? 2 : 1;
                        for (size_t j = 0; j < k; j++)
                                o += sprintf(o, "\\x%02x", s[i + j]);
                        i += k;
                }
        }
        *o = '\0';
        return out;
}

char *text_escape_str(const char *s)
{
        return text_escape(s, strlen(s));
}

char *text_escape_for_json(const char *s)
{
        size_t len = strlen(s);

        return utf8_valid(s, len) ? strdup(s) : text_escape(s, len);
}
