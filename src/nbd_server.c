#include "nbd_server.h"

#include "cleanup.h"
#include "log.h"
#include "nbd_proto.h"

#include <endian.h>
#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/uio.h>
#include <inttypes.h>
#include <poll.h>
#include <time.h>

/* Client-sent option payloads beyond this are refused (names are short). */
#define NBD_MAX_OPTION_LEN 4096u

/* Milliseconds on CLOCK_MONOTONIC. */
static int64_t now_ms(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Reads len bytes; with a deadline (ms on CLOCK_MONOTONIC, 0: none) a peer
 * that has not sent them all by then gets -ETIMEDOUT, however it trickles. */
static int read_until(int fd, void *buf, size_t len, int64_t deadline)
{
        uint8_t *p = buf;

        while (len > 0) {
                if (deadline) {
                        int64_t left = deadline - now_ms();
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

static int read_exact(int fd, void *buf, size_t len)
{
        return read_until(fd, buf, len, 0);
}

static int write_iov_flags(int fd, struct iovec *iov, int cnt, int flags)
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

static int write_iov(int fd, struct iovec *iov, int cnt)
{
        return write_iov_flags(fd, iov, cnt, 0);
}

static int write_exact(int fd, const void *buf, size_t len)
{
        struct iovec iov = { (void *)buf, len };

        return write_iov(fd, &iov, 1);
}

static int discard(int fd, uint64_t len, int64_t deadline)
{
        uint8_t buf[16384];

        while (len > 0) {
                size_t n = len < sizeof(buf) ? (size_t)len : sizeof(buf);
                int err = read_until(fd, buf, n, deadline);
                if (err < 0)
                        return err;
                len -= n;
        }
        return 0;
}

uint16_t nbd_transmission_flags(void)
{
        return NBD_FLAG_HAS_FLAGS | NBD_FLAG_READ_ONLY | NBD_FLAG_SEND_FLUSH | NBD_FLAG_CAN_MULTI_CONN;
}

struct __attribute__((packed)) simple_reply {
        uint32_t magic, error;
        uint64_t cookie;
};

static int send_error(int fd, uint64_t cookie, uint32_t error)
{
        struct simple_reply hdr = { htobe32(NBD_SIMPLE_REPLY_MAGIC), htobe32(error), cookie };

        return write_exact(fd, &hdr, sizeof(hdr));
}

static uint32_t nbd_errno(int err)
{
        switch (err) {
        case -EINVAL:
                return NBD_EINVAL;
        case -ENOMEM:
                return NBD_ENOMEM;
        default:
                return NBD_EIO;
        }
}

/* Reads [off, off + len) of the device: the image, then zeros up to the
 * device size (the kernel's device is rounded up to its block size). */
static int read_padded(struct image_map *map, uint8_t *buf, size_t len, uint64_t off)
{
        if (off >= map->size) {
                memset(buf, 0, len);
                return 0;
        }
        if (len > map->size - off) {
                uint64_t in_image = map->size - off;
                memset(buf + in_image, 0, len - in_image);
                len = (size_t)in_image;
        }
        return image_map_read(map, buf, len, off);
}

struct reply_buffer {
        uint8_t *data;
        size_t size, max;
};

/* Answers a read. Up to the buffer's size (max) a reply is read whole
 * before it is sent, so any failure is answered with an error. A larger one
 * is sent in pieces of that size, so that what a connection holds stays
 * bounded whatever its client asks: its chunks are opened (and with
 * verify, checked) before the reply begins, so that once it has, only an
 * I/O error of the storage can interrupt it, and a simple reply cannot be
 * taken back: the connection is then closed, as the protocol requires. */
static int reply_read(int fd, struct image_map *map, uint64_t device_size, struct reply_buffer *b, uint64_t cookie,
                      uint64_t off, uint32_t len)
{
        struct simple_reply hdr = { htobe32(NBD_SIMPLE_REPLY_MAGIC), 0, cookie };
        size_t piece = len < b->max ? len : b->max;
        int err;

        if (off > device_size || len > device_size - off)
                return send_error(fd, cookie, NBD_EINVAL);
        if (piece > b->size) {
                uint8_t *nb = realloc(b->data, piece);
                if (!nb)
                        return send_error(fd, cookie, NBD_ENOMEM);
                b->data = nb;
                b->size = piece;
        }
        if (len > piece && off < map->size) {
                uint64_t in_image = map->size - off < len ? map->size - off : len;
                err = image_map_check_range(map, off, in_image);
                if (err < 0)
                        return send_error(fd, cookie, nbd_errno(err));
        }
        /* len == 0 reads nothing: an empty reply, and no buffer touched. */
        err = piece ? read_padded(map, b->data, piece, off) : 0;
        if (err < 0)
                return send_error(fd, cookie, nbd_errno(err));

        struct iovec iov[2] = { { &hdr, sizeof(hdr) }, { b->data, piece } };
        int cnt = piece ? 2 : 1;
        for (uint64_t done = piece;;) {
                err = write_iov_flags(fd, iov, cnt, done < len ? MSG_MORE : 0);
                if (err < 0 || done == len)
                        return err;
                piece = len - done < b->max ? (size_t)(len - done) : b->max;
                err = read_padded(map, b->data, piece, off + done);
                if (err < 0) {
                        log_error("a read of %" PRIu32 " bytes at offset %" PRIu64
                                  " failed after its reply began: closing the connection",
                                  len, off);
                        return -EIO;
                }
                iov[0] = (struct iovec){ b->data, piece };
                cnt = 1;
                done += piece;
        }
}

int nbd_transmission(int fd, struct image_map *map, uint64_t device_size, size_t reply_buffer_max)
{
        struct reply_buffer b = { .max = reply_buffer_max ? reply_buffer_max : 1 };
        int err = 0;

        while (err == 0) {
                struct __attribute__((packed)) {
                        uint32_t magic;
                        uint16_t flags, type;
                        uint64_t cookie, offset;
                        uint32_t length;
                } req;
                err = read_exact(fd, &req, sizeof(req));
                if (err == -ECONNRESET) {
                        err = 0;
                        break;
                }
                if (err < 0)
                        break;
                if (be32toh(req.magic) != NBD_REQUEST_MAGIC) {
                        err = -EPROTO;
                        break;
                }
                uint16_t type = be16toh(req.type);
                uint64_t offset = be64toh(req.offset);
                uint32_t length = be32toh(req.length);

                switch (type) {
                case NBD_CMD_READ:
                        err = length > NBD_MAX_REQUEST ? send_error(fd, req.cookie, NBD_EINVAL)
                                                       : reply_read(fd, map, device_size, &b, req.cookie, offset,
                                                                    length);
                        break;
                case NBD_CMD_WRITE:
                        /* The payload follows the request: consume it to stay in sync. */
                        err = discard(fd, length, 0);
                        if (err == 0)
                                err = send_error(fd, req.cookie, NBD_EPERM);
                        break;
                case NBD_CMD_TRIM:
                case NBD_CMD_WRITE_ZEROES:
                        err = send_error(fd, req.cookie, NBD_EPERM);
                        break;
                case NBD_CMD_FLUSH:
                case NBD_CMD_CACHE:
                        err = send_error(fd, req.cookie, 0);
                        break;
                case NBD_CMD_DISC:
                        free(b.data);
                        return 0;
                default:
                        err = send_error(fd, req.cookie, NBD_EINVAL);
                        break;
                }
        }
        free(b.data);
        return err;
}

static int send_option_reply(int fd, uint32_t option, uint32_t type, const void *data, uint32_t len)
{
        struct __attribute__((packed)) {
                uint64_t magic;
                uint32_t option, type, length;
        } hdr = { htobe64(NBD_REP_MAGIC), htobe32(option), htobe32(type), htobe32(len) };
        struct iovec iov[2] = { { &hdr, sizeof(hdr) }, { (void *)data, len } };

        return write_iov(fd, iov, len ? 2 : 1);
}

static const struct nbd_export *find_export(const struct nbd_export *exports, size_t n, const char *name)
{
        /* The empty name is the default export, the first one. */
        if (name[0] == '\0' && n > 0)
                return &exports[0];
        for (size_t i = 0; i < n; i++)
                if (strcmp(exports[i].name, name) == 0)
                        return &exports[i];
        return NULL;
}

static int reply_list(int fd, const struct nbd_export *exports, size_t n)
{
        for (size_t i = 0; i < n; i++) {
                uint8_t data[4 + 256];
                uint32_t len = (uint32_t)strlen(exports[i].name);
                uint32_t be = htobe32(len);
                memcpy(data, &be, 4);
                memcpy(data + 4, exports[i].name, len);
                int err = send_option_reply(fd, NBD_OPT_LIST, NBD_REP_SERVER, data, 4 + len);
                if (err < 0)
                        return err;
        }
        return send_option_reply(fd, NBD_OPT_LIST, NBD_REP_ACK, NULL, 0);
}

/* NBD_OPT_INFO and NBD_OPT_GO: name, then a list of information requests. */
static int reply_info(int fd, uint32_t option, const uint8_t *data, uint32_t len,
                      const struct nbd_export *exports, size_t n, const struct nbd_export **chosen)
{
        char name[NBD_MAX_OPTION_LEN + 1];
        uint32_t name_len;
        uint16_t n_req;

        if (len < 6)
                return send_option_reply(fd, option, NBD_REP_ERR_INVALID, NULL, 0);
        memcpy(&name_len, data, 4);
        name_len = be32toh(name_len);
        if (name_len > len - 6)
                return send_option_reply(fd, option, NBD_REP_ERR_INVALID, NULL, 0);
        memcpy(&n_req, data + 4 + name_len, 2);
        n_req = be16toh(n_req);
        if (len != 6 + name_len + 2u * n_req)
                return send_option_reply(fd, option, NBD_REP_ERR_INVALID, NULL, 0);
        memcpy(name, data + 4, name_len);
        name[name_len] = '\0';
        const struct nbd_export *e = find_export(exports, n, name);
        if (!e)
                return send_option_reply(fd, option, NBD_REP_ERR_UNKNOWN, NULL, 0);

        struct __attribute__((packed)) {
                uint16_t type;
                uint64_t size;
                uint16_t flags;
        } info = { htobe16(NBD_INFO_EXPORT), htobe64(e->map->size), htobe16(nbd_transmission_flags()) };
        int err = send_option_reply(fd, option, NBD_REP_INFO, &info, sizeof(info));
        for (uint16_t i = 0; err == 0 && i < n_req; i++) {
                uint16_t want;
                memcpy(&want, data + 6 + name_len + 2u * i, 2);
                if (be16toh(want) != NBD_INFO_BLOCK_SIZE)
                        continue;
                struct __attribute__((packed)) {
                        uint16_t type;
                        uint32_t min, preferred, max;
                } bs = { htobe16(NBD_INFO_BLOCK_SIZE), htobe32(1), htobe32(4096), htobe32(NBD_MAX_REQUEST) };
                err = send_option_reply(fd, option, NBD_REP_INFO, &bs, sizeof(bs));
        }
        if (err == 0)
                err = send_option_reply(fd, option, NBD_REP_ACK, NULL, 0);
        if (err == 0 && option == NBD_OPT_GO)
                *chosen = e;
        return err;
}

static int negotiate(int fd, const struct nbd_export *exports, size_t n, int64_t deadline,
                     const struct nbd_export **chosen)
{
        struct __attribute__((packed)) {
                uint64_t init, opts;
                uint16_t flags;
        } hello = { htobe64(NBD_INIT_MAGIC), htobe64(NBD_OPTS_MAGIC),
                    htobe16(NBD_FLAG_FIXED_NEWSTYLE | NBD_FLAG_NO_ZEROES) };
        uint8_t data[NBD_MAX_OPTION_LEN];
        uint32_t client_flags;
        int err;

        *chosen = NULL;
        err = write_exact(fd, &hello, sizeof(hello));
        if (err == 0)
                err = read_until(fd, &client_flags, sizeof(client_flags), deadline);
        if (err < 0)
                return err;
        client_flags = be32toh(client_flags);
        if (!(client_flags & NBD_FLAG_C_FIXED_NEWSTYLE) || (client_flags & ~3u))
                return -EPROTO;

        while (!*chosen) {
                struct __attribute__((packed)) {
                        uint64_t magic;
                        uint32_t option, length;
                } opt;
                err = read_until(fd, &opt, sizeof(opt), deadline);
                if (err < 0)
                        return err;
                if (be64toh(opt.magic) != NBD_OPTS_MAGIC)
                        return -EPROTO;
                uint32_t option = be32toh(opt.option), len = be32toh(opt.length);
                if (len > sizeof(data)) {
                        /* Too long to be genuine: read it away and refuse. */
                        err = discard(fd, len, deadline);
                        if (err == 0)
                                err = send_option_reply(fd, option, NBD_REP_ERR_INVALID, NULL, 0);
                        if (err < 0)
                                return err;
                        continue;
                }
                err = read_until(fd, data, len, deadline);
                if (err < 0)
                        return err;
                switch (option) {
                case NBD_OPT_EXPORT_NAME: {
                        char name[NBD_MAX_OPTION_LEN + 1];
                        memcpy(name, data, len);
                        name[len] = '\0';
                        const struct nbd_export *e = find_export(exports, n, name);
                        if (!e)
                                return -ENOENT; /* this option has no error reply: hang up */
                        struct __attribute__((packed)) {
                                uint64_t size;
                                uint16_t flags;
                                uint8_t zeroes[124];
                        } reply = { htobe64(e->map->size), htobe16(nbd_transmission_flags()), {} };
                        size_t reply_len = client_flags & NBD_FLAG_C_NO_ZEROES ? 10 : sizeof(reply);
                        err = write_exact(fd, &reply, reply_len);
                        if (err < 0)
                                return err;
                        *chosen = e;
                        break;
                }
                case NBD_OPT_ABORT:
                        send_option_reply(fd, option, NBD_REP_ACK, NULL, 0);
                        return -ECONNABORTED;
                case NBD_OPT_LIST:
                        err = len ? send_option_reply(fd, option, NBD_REP_ERR_INVALID, NULL, 0)
                                  : reply_list(fd, exports, n);
                        break;
                case NBD_OPT_INFO:
                case NBD_OPT_GO:
                        err = reply_info(fd, option, data, len, exports, n, chosen);
                        break;
                default:
                        err = send_option_reply(fd, option, NBD_REP_ERR_UNSUP, NULL, 0);
                        break;
                }
                if (err < 0)
                        return err;
        }
        return 0;
}

static void set_send_timeout(int fd, unsigned ms)
{
        struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };

        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
}

int nbd_handshake(int fd, const struct nbd_export *exports, size_t n, unsigned timeout_ms,
                  const struct nbd_export **chosen)
{
        int err;

        /* A client that stops reading our replies must not hold us either. */
        if (timeout_ms)
                set_send_timeout(fd, timeout_ms);
        err = negotiate(fd, exports, n, timeout_ms ? now_ms() + timeout_ms : 0, chosen);
        if (err == -EAGAIN)
                err = -ETIMEDOUT;
        if (timeout_ms)
                set_send_timeout(fd, 0);
        return err;
}
