// SPDX-License-Identifier: MIT
/* Serving releases over the NBD protocol: the handshake (fixed newstyle) for
 * `ihop serve`, and the transmission phase shared with `ihop mount`, where the
 * kernel's NBD driver is the client. */
#pragma once

#include "image_map.h"

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* What every export of ihop's is: read-only, flushes are no-ops, and any
 * number of connections see the same content. (A function, not a macro:
 * this header goes where <linux/nbd.h> is, which names them differently.) */
uint16_t nbd_transmission_flags(void);

struct nbd_export {
        const char *name;
        struct image_map *map;
};

/* Threads one connection may answer reads with. */
#define NBD_MAX_WORKERS 16u

/* Answers requests on fd until the client disconnects; returns 0 on NBD_CMD_DISC
 * or EOF, negative errno when the connection broke. The device may be larger
 * than the image (rounded up to the kernel's block size): the tail reads as zeros.
 * Reads that must open chunk files are answered by up to `workers` threads
 * of the connection's own, the others at once; replies go out in any order
 * (workers 0: one after the other, by the calling thread). Each holds at
 * most reply_buffer_max bytes of reply at a time: larger reads are sent in
 * pieces. */
int nbd_transmission(int fd, struct image_map *map, uint64_t device_size, size_t reply_buffer_max,
                     unsigned workers);

/* Negotiates on a fresh connection; on success *chosen is the export to serve.
 * Returns -ECONNABORTED when the client ends the negotiation, -ETIMEDOUT when
 * it has not chosen an export within timeout_ms (0: no limit). *engaged (when
 * not NULL) is set once the client has answered the greeting as an NBD
 * client does. */
int nbd_handshake(int fd, const struct nbd_export *exports, size_t n, unsigned timeout_ms, atomic_bool *engaged,
                  const struct nbd_export **chosen);
