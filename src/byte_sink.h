// SPDX-License-Identifier: MIT
/* Where streamed bytes go, whoever produces them: an HTTP body, a range of
 * an archive, a decompressed chunk. Stages chain: a range's sink feeds the
 * decoder, whose sink writes the chunk. */
#pragma once

#include <stddef.h>
#include <stdint.h>

/* Receives the bytes in order; a negative errno return stops the stream
 * (an HTTP transfer is then not retried). */
typedef int (*byte_sink)(const uint8_t *data, size_t len, void *opaque);
