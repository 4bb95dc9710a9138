// SPDX-License-Identifier: MIT
/* Human-readable sizes for messages, and size arguments with suffixes. */
#pragma once

#include <stddef.h>
#include <stdint.h>

/* "1.5 MiB"; buf must hold at least 32 bytes. */
const char *format_size(uint64_t bytes, char *buf, size_t len);

/* Parses "123", "64KiB", "16MiB", "1GiB" (also K/M/G, KB/MB/GB as powers of 1024). */
int parse_size(const char *s, uint64_t *out);

/* Parses a non-negative decimal integer no larger than max. */
int parse_uint(const char *s, uint64_t max, uint64_t *out);
/* The decimal digits s starts with (no space, no sign) as a number below
 * 2^64; *end after them. -EINVAL when there is no digit or it is larger. */
int parse_uint_prefix(const char *s, uint64_t *out, const char **end);

/* --jobs N: 1..256 threads or requests; logs and returns -EINVAL otherwise. */
int parse_jobs(const char *s, unsigned *out);
