// SPDX-License-Identifier: MIT
#include "byte_run.h"

#include <string.h>

/* 64 bytes are tested at a time with plain word operations, which the
 * compiler vectorises; other data stops the scan in its first block. */
#define BLOCK 64

size_t byte_run_length(const uint8_t *data, size_t len, uint8_t byte)
{
        const uint64_t pattern = 0x0101010101010101ull * byte;
        size_t i = 0;

        for (; i + BLOCK <= len; i += BLOCK) {
                uint64_t w[BLOCK / 8], acc = 0;
                memcpy(w, data + i, BLOCK);
                for (size_t j = 0; j < BLOCK / 8; j++)
                        acc |= w[j] ^ pattern;
                if (acc)
                        break;
        }
        while (i < len && data[i] == byte)
                i++;
        return i;
}
