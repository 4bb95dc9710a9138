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

/* What a client of `ihop serve` chose in the handshake beyond the
 * baseline: structured replies (reads answered in chunks, an error after
 * data no longer ends the connection) and, with them, the metadata context
 * "base:allocation" for NBD_CMD_BLOCK_STATUS (runs of zeros as holes). The
 * kernel (`ihop mount`) negotiates neither. */
struct nbd_features {
        bool structured_replies;
        uint32_t base_allocation_id; /* 0: the context was not chosen */
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
 * pieces. features: what the handshake chose (NULL: nothing beyond the
 * baseline). */
int nbd_transmission(int fd, struct image_map *map, uint64_t device_size, size_t reply_buffer_max,
                     unsigned workers, const struct nbd_features *features);

/* Negotiates on a fresh connection; on success *chosen is the export to serve.
 * Returns -ECONNABORTED when the client ends the negotiation, -ETIMEDOUT when
 * it has not chosen an export within timeout_ms (0: no limit). *engaged (when
 * not NULL) is set once the client has answered the greeting as an NBD
 * client does. *features gets what the client chose for the transmission. */
int nbd_handshake(int fd, const struct nbd_export *exports, size_t n, unsigned timeout_ms, atomic_bool *engaged,
                  const struct nbd_export **chosen, struct nbd_features *features);
