/* Serving releases over the NBD protocol: the handshake (fixed newstyle) for
 * `ihop serve`, and the transmission phase shared with `ihop mount`, where the
 * kernel's NBD driver is the client. */
#pragma once

#include "image_map.h"

#include <stdbool.h>

struct nbd_export {
        const char *name;
        struct image_map *map;
};

/* Answers requests on fd until the client disconnects; returns 0 on NBD_CMD_DISC
 * or EOF, negative errno when the connection broke. The device may be larger
 * than the image (rounded up to the kernel's block size): the tail reads as zeros. */
int nbd_transmission(int fd, struct image_map *map, uint64_t device_size);

/* Negotiates on a fresh connection; on success *chosen is the export to serve.
 * Returns -ECONNABORTED when the client ends the negotiation. */
int nbd_handshake(int fd, const struct nbd_export *exports, size_t n, const struct nbd_export **chosen);
