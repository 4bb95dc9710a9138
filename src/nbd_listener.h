// SPDX-License-Identifier: MIT
/* Serving NBD clients on a listening socket (`ihop serve`): a thread per
 * client, counted, each holding a bounded amount of memory whatever its
 * client does. Clients that connect and never finish the handshake cannot
 * take every place: they are timed out, and when places run short one is
 * dropped for a newcomer: one that has not even answered the greeting,
 * else one that has spent a second on a handshake that takes milliseconds. */
#pragma once

#include "nbd_server.h"

#include <stddef.h>

/* Clients served at once; more wait in the listen queue. */
#define NBD_LISTENER_MAX_CLIENTS 128u
/* Clients in the handshake at once: places left for sessions. */
#define NBD_LISTENER_MAX_HANDSHAKES 16u
/* Threads a session answers reads with, and the reply bytes each holds at
 * once: 128 sessions hold 16 MiB, or 64 MiB should each keep 4 reads in
 * flight that its client never takes. */
#define NBD_LISTENER_WORKERS 4u
#define NBD_LISTENER_REPLY_BUFFER (128u << 10)
#define NBD_LISTENER_DEFAULT_HANDSHAKE_TIMEOUT_S 10u

struct nbd_listener_options {
        const struct nbd_export *exports; /* the first is the default export */
        size_t n_exports;
        unsigned handshake_timeout_ms;    /* 0: none */
};

/* Serves clients of listen_fd until stop_fd becomes readable, then ends
 * every session and returns once each client's thread has. */
int nbd_listener_run(int listen_fd, int stop_fd, const struct nbd_listener_options *o);
