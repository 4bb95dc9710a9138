// SPDX-License-Identifier: MIT
/* A release exposed as a read-only regular file through FUSE, for kernels
 * without NBD: `mount -o loop,ro FILE /mnt` then works on it. */
#pragma once

#include "image_map.h"

#include <stdbool.h>

/* Mounts map over the regular file `target` and serves it until unmounted or
 * interrupted (SIGINT/SIGTERM unmount cleanly). Only the mounting user can
 * read it, unless allow_other (FUSE's allow_other: every user, file mode 0444;
 * for a user other than root, /etc/fuse.conf must have user_allow_other). */
int fuse_file_serve(struct image_map *map, const char *release_name, const char *target, bool allow_other);
