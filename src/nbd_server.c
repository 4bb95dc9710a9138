// SPDX-License-Identifier: MIT
#include "nbd_server.h"

#include "cleanup.h"
#include "log.h"
#include "nbd_io.h"
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

uint16_t nbd_transmission_flags(void)
{
        return NBD_FLAG_HAS_FLAGS | NBD_FLAG_READ_ONLY | NBD_FLAG_SEND_FLUSH | NBD_FLAG_CAN_MULTI_CONN;
}

static int send_option_reply(int fd, uint32_t option, uint32_t type, const void *data, uint32_t len)
{
        struct __attribute__((packed)) {
                uint64_t magic;
                uint32_t option, type, length;
        } hdr = { htobe64(NBD_REP_MAGIC), htobe32(option), htobe32(type), htobe32(len) };
        struct iovec iov[2] = { { &hdr, sizeof(hdr) }, { (void *)data, len } };

        return nbd_write_iov(fd, iov, len ? 2 : 1, 0);
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

static int negotiate(int fd, const struct nbd_export *exports, size_t n, int64_t deadline, atomic_bool *engaged,
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
        err = nbd_write_exact(fd, &hello, sizeof(hello));
        if (err == 0)
                err = nbd_read_until(fd, &client_flags, sizeof(client_flags), deadline);
        if (err < 0)
                return err;
        client_flags = be32toh(client_flags);
        if (!(client_flags & NBD_FLAG_C_FIXED_NEWSTYLE) || (client_flags & ~3u))
                return -EPROTO;
        if (engaged)
                atomic_store(engaged, true);

        while (!*chosen) {
                struct __attribute__((packed)) {
                        uint64_t magic;
                        uint32_t option, length;
                } opt;
                err = nbd_read_until(fd, &opt, sizeof(opt), deadline);
                if (err < 0)
                        return err;
                if (be64toh(opt.magic) != NBD_OPTS_MAGIC)
                        return -EPROTO;
                uint32_t option = be32toh(opt.option), len = be32toh(opt.length);
                if (len > sizeof(data)) {
                        /* Too long to be genuine: read it away and refuse. */
                        err = nbd_discard(fd, len, deadline);
                        if (err == 0)
                                err = send_option_reply(fd, option, NBD_REP_ERR_INVALID, NULL, 0);
                        if (err < 0)
                                return err;
                        continue;
                }
                err = nbd_read_until(fd, data, len, deadline);
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
                        err = nbd_write_exact(fd, &reply, reply_len);
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

int nbd_handshake(int fd, const struct nbd_export *exports, size_t n, unsigned timeout_ms, atomic_bool *engaged,
                  const struct nbd_export **chosen)
{
        int err;

        /* A client that stops reading our replies must not hold us either. */
        if (timeout_ms)
                set_send_timeout(fd, timeout_ms);
        err = negotiate(fd, exports, n, timeout_ms ? nbd_now_ms() + timeout_ms : 0, engaged, chosen);
        if (err == -EAGAIN)
                err = -ETIMEDOUT;
        if (timeout_ms)
                set_send_timeout(fd, 0);
        return err;
}
