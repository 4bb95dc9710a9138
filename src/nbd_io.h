// SPDX-License-Identifier: MIT
/* Socket I/O of the NBD server: whole messages in and out, retried over
 * short transfers and EINTR; negative errno on failure. */
#pragma once

#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

/* Milliseconds on CLOCK_MONOTONIC, for deadlines. */
int64_t nbd_now_ms(void);

/* Reads len bytes; -ECONNRESET at end of stream. With a deadline (ms on
 * CLOCK_MONOTONIC, 0: none) a peer that has not sent them all by then gets
 * -ETIMEDOUT, however it trickles. */
int nbd_read_until(int fd, void *buf, size_t len, int64_t deadline);
int nbd_read_exact(int fd, void *buf, size_t len);

/* Reads len bytes away (a payload nobody wants). */
int nbd_discard(int fd, uint64_t len, int64_t deadline);

/* Writes every byte of iov (flags: MSG_MORE, say; never SIGPIPE). */
int nbd_write_iov(int fd, struct iovec *iov, int cnt, int flags);
int nbd_write_exact(int fd, const void *buf, size_t len);
