/* Runs of zero bytes. Disk images are mostly unused space: zeros that the
 * chunker and the chunk hashing may skip over once they know it is zeros. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* How many bytes at the start of data are zero (len when all are). */
size_t zero_run_length(const uint8_t *data, size_t len);

static inline bool zero_run_all(const uint8_t *data, size_t len)
{
        return zero_run_length(data, len) == len;
}
