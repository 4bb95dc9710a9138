// SPDX-License-Identifier: MIT
/* Runs of one repeated byte. Disk images are mostly unused space, zeros (or
 * 0xff, erased flash), that the chunker and the chunk hashing may step over
 * once they know it is a run. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* How many bytes at the start of data are `byte` (len when all are). */
size_t byte_run_length(const uint8_t *data, size_t len, uint8_t byte);

static inline bool byte_run_all(const uint8_t *data, size_t len, uint8_t byte)
{
        return byte_run_length(data, len, byte) == len;
}
