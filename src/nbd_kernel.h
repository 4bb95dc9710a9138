// SPDX-License-Identifier: MIT
/* A release as a kernel block device (/dev/nbdN): the kernel's NBD driver is
 * the client, over socketpairs, configured through its generic-netlink
 * interface (as current nbd-client does), or through the older ioctls where
 * netlink is missing. */
#pragma once

#include "image_map.h"

#include <stdbool.h>

/* 512-byte blocks: every file system mounts (one made with 1 KiB blocks
 * does not on a 4 KiB device). Four connections: requests in parallel. */
#define NBD_KERNEL_DEFAULT_BLOCK_SIZE 512u
#define NBD_KERNEL_DEFAULT_CONNECTIONS 4u

/* How long the kernel waits for a reply before it gives a connection up, for
 * the device that holds the root file system. The server is a process of
 * this machine, locked in memory: a late reply means load (a slow disk, a
 * starved CPU), never a lost peer, and the kernel's default (30 s, after
 * which a request fails or moves to another connection) would turn a busy
 * minute into I/O errors of the root file system. */
#define NBD_KERNEL_ROOT_TIMEOUT 3600u
/* The most --timeout takes. */
#define NBD_KERNEL_MAX_TIMEOUT 86400u
/* For a release read before it is cloned, the kernel waits this much longer
 * than a read may wait for its chunk (cmd_mount.c). */
#define NBD_KERNEL_SOURCE_TIMEOUT_MARGIN 30u

struct nbd_kernel_options {
        unsigned block_size;
        unsigned connections;
        unsigned timeout;  /* seconds; 0: the kernel's default */
        bool root_storage; /* netlink only; SIGINT/SIGTERM do not disconnect */
};

/* Attaches map to device and serves it until the device is disconnected or
 * (unless root_storage) SIGINT/SIGTERM arrives, then disconnects cleanly. */
int nbd_kernel_serve(struct image_map *map, const char *device, const struct nbd_kernel_options *o);
