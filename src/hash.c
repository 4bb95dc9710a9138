// SPDX-License-Identifier: MIT
#include "hash.h"

#include <errno.h>
#include <string.h>

int hash_init_library(void)
{
        return sodium_init() < 0 ? -EIO : 0;
}

void hash_init(hash_state *st)
{
        crypto_generichash_init(st, NULL, 0, HASH_MAX_LEN);
}

void hash_update(hash_state *st, const void *data, size_t len)
{
        crypto_generichash_update(st, data, len);
}

void hash_final(hash_state *st, uint8_t out[HASH_MAX_LEN])
{
        crypto_generichash_final(st, out, HASH_MAX_LEN);
}

void hash_buffer(const void *data, size_t len, uint8_t out[HASH_MAX_LEN])
{
        crypto_generichash(out, HASH_MAX_LEN, data, len, NULL, 0);
}

void hash_to_hex(const uint8_t *hash, size_t len, char *out)
{
        static const char digits[] = "0123456789abcdef";

        for (size_t i = 0; i < len; i++) {
                out[2 * i] = digits[hash[i] >> 4];
                out[2 * i + 1] = digits[hash[i] & 0xf];
        }
        out[2 * len] = '\0';
}

static int hex_value(char c)
{
        if (c >= '0' && c <= '9')
                return c - '0';
        if (c >= 'a' && c <= 'f')
                return c - 'a' + 10;
        if (c >= 'A' && c <= 'F')
                return c - 'A' + 10;
        return -1;
}

int hash_from_hex(const char *hex, uint8_t *out, size_t max)
{
        size_t n = strlen(hex);

        if (n == 0 || n % 2 || n / 2 > max)
                return -EINVAL;
        for (size_t i = 0; i < n / 2; i++) {
                int hi = hex_value(hex[2 * i]), lo = hex_value(hex[2 * i + 1]);
                if (hi < 0 || lo < 0)
                        return -EINVAL;
                out[i] = (uint8_t)(hi << 4 | lo);
        }
        return (int)(n / 2);
}
