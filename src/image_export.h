// SPDX-License-Identifier: MIT
/* Putting a stored release's image back together, in order, and checking it
 * against the image checksum the archive carried. */
#pragma once

#include "release.h"
#include "store.h"

/* Writes the image to fd (fd < 0: only checks). Logs and returns -EBADMSG on
 * a checksum mismatch, -ENOENT when a chunk is missing. */
int image_export(struct store *s, const struct release *r, int fd, const char *out_name);
