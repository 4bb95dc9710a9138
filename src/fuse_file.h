/* A release exposed as a read-only regular file through FUSE, for kernels
 * without NBD: `mount -o loop,ro FILE /mnt` then works on it. */
#pragma once

#include "image_map.h"

/* Mounts map over the regular file `target` and serves it until unmounted or
 * interrupted (SIGINT/SIGTERM unmount cleanly). */
int fuse_file_serve(struct image_map *map, const char *release_name, const char *target);
