// SPDX-License-Identifier: MIT
/* A release as a kernel block device (/dev/nbdN): the kernel's NBD driver is
 * the client, over socketpairs, configured through its generic-netlink
 * interface (as current nbd-client does), or through the older ioctls where
 * netlink is missing. */
#pragma once

#include "image_map.h"

/* 512-byte blocks: every file system mounts (one made with 1 KiB blocks
 * does not on a 4 KiB device). Four connections: requests in parallel. */
#define NBD_KERNEL_DEFAULT_BLOCK_SIZE 512u
#define NBD_KERNEL_DEFAULT_CONNECTIONS 4u

/* Attaches map to device and serves it until the device is disconnected or
 * SIGINT/SIGTERM arrives, then disconnects cleanly. */
int nbd_kernel_serve(struct image_map *map, const char *device, unsigned block_size, unsigned connections);
