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

/* The id "base:allocation" gets when chosen: any but 0 would do. */
#define BASE_ALLOCATION_ID 1u

/* What the options so far have chosen. A metadata context is chosen for
 * one export: a client that goes on to another has chosen none for it. */
struct negotiation {
        struct nbd_features features;
        const struct nbd_export *context_export;
};

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

/* The export an option names: len bytes at name, not NUL-terminated. */
static const struct nbd_export *find_export_named(const struct nbd_export *exports, size_t n, const uint8_t *name,
                                                  uint32_t len)
{
        char s[NBD_MAX_OPTION_LEN + 1];

        memcpy(s, name, len); /* len <= NBD_MAX_OPTION_LEN: options are read into a buffer that size */
        s[len] = '\0';
        return find_export(exports, n, s);
}

static uint32_t get_be32(const uint8_t *p)
{
        uint32_t v;

        memcpy(&v, p, sizeof(v));
        return be32toh(v);
}

static uint16_t get_be16(const uint8_t *p)
{
        uint16_t v;

        memcpy(&v, p, sizeof(v));
        return be16toh(v);
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

/* "base:allocation" itself, or its namespace, which selects all of it. */
static bool selects_base_allocation(const uint8_t *query, uint32_t len)
{
        static const char name[] = NBD_META_BASE_ALLOCATION;

        return (len == sizeof(name) - 1 && memcmp(query, name, len) == 0) ||
               (len == 5 && memcmp(query, "base:", 5) == 0);
}

/* NBD_OPT_LIST_META_CONTEXT and NBD_OPT_SET_META_CONTEXT: an export's name
 * and queries; the reply names the contexts they select, of which ihop has
 * one. Both need structured replies first (the block status replies are
 * structured). LIST with no query lists every context; SET with none, or
 * with none ihop knows, chooses none. */
static int reply_meta_context(int fd, uint32_t option, const uint8_t *data, uint32_t len,
                              const struct nbd_export *exports, size_t n, struct negotiation *ng)
{
        uint32_t name_len, n_queries, at;
        bool selected = false;

        if (!ng->features.structured_replies || len < 8)
                return send_option_reply(fd, option, NBD_REP_ERR_INVALID, NULL, 0);
        name_len = get_be32(data);
        if (name_len > len - 8)
                return send_option_reply(fd, option, NBD_REP_ERR_INVALID, NULL, 0);
        n_queries = get_be32(data + 4 + name_len);
        at = 8 + name_len;
        /* Each query takes 4 bytes at least: the option's length bounds the loop. */
        for (uint32_t i = 0; i < n_queries; i++) {
                if (len - at < 4)
                        return send_option_reply(fd, option, NBD_REP_ERR_INVALID, NULL, 0);
                uint32_t query_len = get_be32(data + at);
                at += 4;
                if (query_len > len - at)
                        return send_option_reply(fd, option, NBD_REP_ERR_INVALID, NULL, 0);
                selected |= selects_base_allocation(data + at, query_len);
                at += query_len;
        }
        if (at != len)
                return send_option_reply(fd, option, NBD_REP_ERR_INVALID, NULL, 0);
        if (n_queries == 0 && option == NBD_OPT_LIST_META_CONTEXT)
                selected = true;
        const struct nbd_export *e = find_export_named(exports, n, data + 4, name_len);
        if (!e)
                return send_option_reply(fd, option, NBD_REP_ERR_UNKNOWN, NULL, 0);

        int err = 0;
        if (option == NBD_OPT_SET_META_CONTEXT) {
                ng->context_export = selected ? e : NULL;
                ng->features.base_allocation_id = selected ? BASE_ALLOCATION_ID : 0;
        }
        if (selected) {
                /* A listed context's id is reserved: zero. */
                uint32_t id = htobe32(option == NBD_OPT_SET_META_CONTEXT ? BASE_ALLOCATION_ID : 0);
                uint8_t reply[4 + sizeof(NBD_META_BASE_ALLOCATION) - 1];
                memcpy(reply, &id, 4);
                memcpy(reply + 4, NBD_META_BASE_ALLOCATION, sizeof(NBD_META_BASE_ALLOCATION) - 1);
                err = send_option_reply(fd, option, NBD_REP_META_CONTEXT, reply, sizeof(reply));
        }
        return err < 0 ? err : send_option_reply(fd, option, NBD_REP_ACK, NULL, 0);
}

/* NBD_OPT_INFO and NBD_OPT_GO: name, then a list of information requests. */
static int reply_info(int fd, uint32_t option, const uint8_t *data, uint32_t len,
                      const struct nbd_export *exports, size_t n, const struct nbd_export **chosen)
{
        uint32_t name_len;
        uint16_t n_req;

        if (len < 6)
                return send_option_reply(fd, option, NBD_REP_ERR_INVALID, NULL, 0);
        name_len = get_be32(data);
        if (name_len > len - 6)
                return send_option_reply(fd, option, NBD_REP_ERR_INVALID, NULL, 0);
        n_req = get_be16(data + 4 + name_len);
        if (len != 6 + name_len + 2u * n_req)
                return send_option_reply(fd, option, NBD_REP_ERR_INVALID, NULL, 0);
        const struct nbd_export *e = find_export_named(exports, n, data + 4, name_len);
        if (!e)
                return send_option_reply(fd, option, NBD_REP_ERR_UNKNOWN, NULL, 0);

        struct __attribute__((packed)) {
                uint16_t type;
                uint64_t size;
                uint16_t flags;
        } info = { htobe16(NBD_INFO_EXPORT), htobe64(e->map->size), htobe16(nbd_transmission_flags()) };
        int err = send_option_reply(fd, option, NBD_REP_INFO, &info, sizeof(info));
        for (uint16_t i = 0; err == 0 && i < n_req; i++) {
                if (get_be16(data + 6 + name_len + 2u * i) != NBD_INFO_BLOCK_SIZE)
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
                     const struct nbd_export **chosen, struct negotiation *ng)
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
                        const struct nbd_export *e = find_export_named(exports, n, data, len);
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
                case NBD_OPT_STRUCTURED_REPLY:
                        if (len == 0)
                                ng->features.structured_replies = true;
                        err = send_option_reply(fd, option, len ? NBD_REP_ERR_INVALID : NBD_REP_ACK, NULL, 0);
                        break;
                case NBD_OPT_LIST_META_CONTEXT:
                case NBD_OPT_SET_META_CONTEXT:
                        err = reply_meta_context(fd, option, data, len, exports, n, ng);
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
                  const struct nbd_export **chosen, struct nbd_features *features)
{
        struct negotiation ng = {};
        int err;

        /* A client that stops reading our replies must not hold us either. */
        if (timeout_ms)
                set_send_timeout(fd, timeout_ms);
        err = negotiate(fd, exports, n, timeout_ms ? nbd_now_ms() + timeout_ms : 0, engaged, chosen, &ng);
        if (err == 0 && *chosen != ng.context_export)
                ng.features.base_allocation_id = 0;
        *features = ng.features;
        if (err == -EAGAIN)
                err = -ETIMEDOUT;
        if (timeout_ms)
                set_send_timeout(fd, 0);
        return err;
}
