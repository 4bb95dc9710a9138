// SPDX-License-Identifier: MIT
#include "nbd_io.h"

#include <errno.h>
#include <poll.h>
#include <stdint.h>
#include <sys/socket.h>
#include <time.h>

/* Milliseconds on CLOCK_MONOTONIC. */
int64_t nbd_now_ms(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Reads len bytes; with a deadline (ms on CLOCK_MONOTONIC, 0: none) a peer
 * that has not sent them all by then gets -ETIMEDOUT, however it trickles. */
int nbd_read_until(int fd, void *buf, size_t len, int64_t deadline)
{
        uint8_t *p = buf;

        while (len > 0) {
                if (deadline) {
                        int64_t left = deadline - nbd_now_ms();
                        struct pollfd pfd = { fd, POLLIN, 0 };
                        if (left <= 0)
                                return -ETIMEDOUT;
                        int r = poll(&pfd, 1, left > INT32_MAX ? INT32_MAX : (int)left);
                        if (r < 0 && errno == EINTR)
                                continue;
                        if (r < 0)
                                return -errno;
                        if (r == 0)
                                return -ETIMEDOUT;
                }
                ssize_t n = recv(fd, p, len, deadline ? MSG_DONTWAIT : MSG_WAITALL);
                if (n < 0 && (errno == EINTR || errno == EAGAIN))
                        continue;
                if (n < 0)
                        return -errno;
                if (n == 0)
                        return -ECONNRESET;
                p += n;
                len -= (size_t)n;
        }
        return 0;
}

int nbd_read_exact(int fd, void *buf, size_t len)
{
        return nbd_read_until(fd, buf, len, 0);
}

int nbd_write_iov(int fd, struct iovec *iov, int cnt, int flags)
{
        struct msghdr msg = { .msg_iov = iov, .msg_iovlen = (size_t)cnt };

        while (msg.msg_iovlen > 0) {
                ssize_t n = sendmsg(fd, &msg, MSG_NOSIGNAL | flags);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0)
                        return -errno;
                /* Step over what was sent, empty entries included: an empty
                 * entry left behind would be sent as 0 bytes, forever. */
                while (msg.msg_iovlen > 0 && (size_t)n >= msg.msg_iov->iov_len) {
                        n -= (ssize_t)msg.msg_iov->iov_len;
                        msg.msg_iov++;
                        msg.msg_iovlen--;
                }
                if (n > 0) {
                        msg.msg_iov->iov_base = (uint8_t *)msg.msg_iov->iov_base + n;
                        msg.msg_iov->iov_len -= (size_t)n;
                }
        }
        return 0;
}

int nbd_write_exact(int fd, const void *buf, size_t len)
{
        struct iovec iov = { (void *)buf, len };

        return nbd_write_iov(fd, &iov, 1, 0);
}

int nbd_discard(int fd, uint64_t len, int64_t deadline)
{
        uint8_t buf[16384];

        while (len > 0) {
                size_t n = len < sizeof(buf) ? (size_t)len : sizeof(buf);
                int err = nbd_read_until(fd, buf, n, deadline);
                if (err < 0)
                        return err;
                len -= n;
        }
        return 0;
}
