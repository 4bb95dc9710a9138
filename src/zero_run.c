#include "zero_run.h"

#include <string.h>

/* 64 bytes are tested at a time with a plain OR of words, which the compiler
 * vectorises; data that is not zero stops the scan in its first block. */
#define BLOCK 64

size_t zero_run_length(const uint8_t *data, size_t len)
{
        size_t i = 0;

        for (; i + BLOCK <= len; i += BLOCK) {
                uint64_t w[BLOCK / 8], acc = 0;
                memcpy(w, data + i, BLOCK);
                for (size_t j = 0; j < BLOCK / 8; j++)
                        acc |= w[j];
                if (acc)
                        break;
        }
        while (i < len && data[i] == 0)
                i++;
        return i;
}
