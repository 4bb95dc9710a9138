// SPDX-License-Identifier: MIT
/* The transmission phase: requests read off the connection, replies written
 * back, in any order (the protocol matches them by cookie). With workers,
 * reads that would wait on the storage are answered by up to that many
 * threads of the connection's own, so that for a client with many requests
 * in flight (qemu, nbdcopy, fio) such a read no longer holds up the ones
 * behind it; the others (data in the page cache) are answered at once, by
 * the thread that reads the requests, with no hand-over. */
#include "nbd_server.h"

#include "log.h"
#include "nbd_io.h"
#include "nbd_proto.h"

#include <endian.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

/* Reads waiting for a worker; a client with more in flight waits for TCP. */
#define QUEUE_MAX 16u
#define WORKER_STACK_SIZE (256u << 10)

struct __attribute__((packed)) simple_reply {
        uint32_t magic, error;
        uint64_t cookie;
};

/* Once a client has chosen structured replies, reads (and block status)
 * are answered in chunks of these. */
struct __attribute__((packed)) structured_reply {
        uint32_t magic;
        uint16_t flags, type;
        uint64_t cookie;
        uint32_t length; /* of what follows */
};

struct __attribute__((packed)) data_chunk {
        struct structured_reply hdr;
        uint64_t offset; /* the data follows */
};

struct __attribute__((packed)) error_chunk {
        struct structured_reply hdr;
        uint32_t error;
        uint16_t message_len; /* 0: no message */
};

struct __attribute__((packed)) error_offset_chunk {
        struct error_chunk e;
        uint64_t offset;
};

struct __attribute__((packed)) block_status_chunk {
        struct structured_reply hdr;
        uint32_t context_id; /* the descriptors follow */
};

struct __attribute__((packed)) block_descriptor {
        uint32_t length, flags;
};

/* Any reply's header, or a whole reply that carries no data. */
#define REPLY_HEADER_MAX sizeof(struct error_offset_chunk)

/* Descriptors one block status reply gives at most: a client that asked
 * about more asks again from where they end (a few KiB of reply). */
#define BLOCK_STATUS_MAX_DESCRIPTORS 256u

struct read_request {
        uint64_t cookie; /* as the client sent it: echoed, never interpreted */
        uint64_t offset;
        uint32_t length;
};

struct session {
        int fd;
        struct image_map *map;
        uint64_t device_size;
        size_t buffer_max;
        unsigned max_workers;
        bool structured;             /* replies to reads */
        uint32_t base_allocation_id; /* 0: no block status */

        pthread_mutex_t send_lock; /* a reply goes out whole */

        pthread_mutex_t lock; /* the rest */
        pthread_cond_t queued; /* workers: a read to answer, or the end */
        pthread_cond_t room;   /* the reader: a place in the queue */
        struct read_request queue[QUEUE_MAX];
        unsigned head, count;
        unsigned n_workers, idle;
        pthread_t workers[NBD_MAX_WORKERS];
        bool ending;
        int err; /* the first failure: it ends the session */
};

static struct structured_reply structured_header(uint64_t cookie, uint16_t type, uint16_t flags, uint32_t length)
{
        return (struct structured_reply){ htobe32(NBD_STRUCTURED_REPLY_MAGIC), htobe16(flags), htobe16(type), cookie,
                                          htobe32(length) };
}

/* The reply to a request that failed with error (0: one that succeeded and
 * returns nothing), into out (REPLY_HEADER_MAX bytes): a structured one
 * where the client expects it. Returns its length. */
static size_t format_status(bool structured, uint64_t cookie, uint32_t error, void *out)
{
        if (!structured) {
                struct simple_reply r = { htobe32(NBD_SIMPLE_REPLY_MAGIC), htobe32(error), cookie };
                memcpy(out, &r, sizeof(r));
                return sizeof(r);
        }
        if (error == 0) {
                struct structured_reply r = structured_header(cookie, NBD_REPLY_TYPE_NONE, NBD_REPLY_FLAG_DONE, 0);
                memcpy(out, &r, sizeof(r));
                return sizeof(r);
        }
        struct error_chunk e = {
                structured_header(cookie, NBD_REPLY_TYPE_ERROR, NBD_REPLY_FLAG_DONE,
                                  sizeof(e) - sizeof(struct structured_reply)),
                htobe32(error), 0,
        };
        memcpy(out, &e, sizeof(e));
        return sizeof(e);
}

/* The header of a read's reply carrying len bytes read at offset, into out
 * (REPLY_HEADER_MAX bytes); done: the last of the reply. Returns its length. */
static size_t format_data_header(const struct session *s, uint64_t cookie, uint64_t offset, size_t len, bool done,
                                 void *out)
{
        if (!s->structured)
                return format_status(false, cookie, 0, out);
        struct data_chunk c = {
                structured_header(cookie, NBD_REPLY_TYPE_OFFSET_DATA, done ? NBD_REPLY_FLAG_DONE : 0,
                                  (uint32_t)(sizeof(uint64_t) + len)),
                htobe64(offset),
        };
        memcpy(out, &c, sizeof(c));
        return sizeof(c);
}

static int send_status(struct session *s, bool structured, uint64_t cookie, uint32_t error)
{
        uint8_t reply[REPLY_HEADER_MAX];
        size_t len = format_status(structured, cookie, error, reply);

        pthread_mutex_lock(&s->send_lock);
        int err = nbd_write_exact(s->fd, reply, len);
        pthread_mutex_unlock(&s->send_lock);
        return err;
}

/* A read's failure, answered as reads are. */
static int send_read_error(struct session *s, uint64_t cookie, uint32_t error)
{
        return send_status(s, s->structured, cookie, error);
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
static int read_padded(struct image_map *map, uint8_t *buf, size_t len, uint64_t off, bool nowait)
{
        if (off >= map->size) {
                memset(buf, 0, len);
                return 0;
        }
        if (len > map->size - off) {
                size_t in_image = (size_t)(map->size - off); /* less than len: a size_t */
                memset(buf + in_image, 0, len - in_image);
                len = in_image;
        }
        return nowait ? image_map_read_nowait(map, buf, len, off) : image_map_read(map, buf, len, off);
}

struct reply_buffer {
        uint8_t *data;
        size_t size;
};

/* Answers a read. Up to the buffer's size (buffer_max) a reply is read
 * whole before it is sent, so any failure is answered with an error. A
 * larger one is sent in pieces of that size, so that what a connection holds
 * stays bounded whatever its client asks: its chunks are opened (and with
 * verify, checked) before the reply begins, so that once it has, only an
 * I/O error of the storage can interrupt it, and a simple reply cannot be
 * taken back: the connection is then closed, as the protocol requires.
 * With nowait, -EAGAIN (and nothing sent) when the read would wait on the
 * storage before its reply begins (image_map_read_nowait). */
static int reply_read(struct session *s, struct reply_buffer *b, const struct read_request *r, bool nowait)
{
        uint8_t hdr[REPLY_HEADER_MAX];
        size_t max = s->buffer_max, piece = r->length < max ? r->length : max;
        uint64_t off = r->offset, len = r->length;
        int err;

        if (off > s->device_size || len > s->device_size - off)
                return send_read_error(s, r->cookie, NBD_EINVAL);
        if (len == 0) /* reads nothing: an empty reply, and no buffer touched */
                return send_status(s, s->structured, r->cookie, 0);
        if (piece > b->size) {
                uint8_t *nb = realloc(b->data, piece);
                if (!nb)
                        return send_read_error(s, r->cookie, NBD_ENOMEM);
                b->data = nb;
                b->size = piece;
        }
        if (len > piece && off < s->map->size) {
                uint64_t in_image = s->map->size - off < len ? s->map->size - off : len;
                err = nowait ? image_map_check_range_nowait(s->map, off, in_image)
                             : image_map_check_range(s->map, off, in_image);
                if (err == -EAGAIN && nowait)
                        return err;
                if (err < 0)
                        return send_read_error(s, r->cookie, nbd_errno(err));
        }
        err = read_padded(s->map, b->data, piece, off, nowait);
        if (err == -EAGAIN && nowait)
                return err;
        if (err < 0)
                return send_read_error(s, r->cookie, nbd_errno(err));

        /* Structured, each piece is a chunk of its own, and a failure after
         * the first is an error chunk for its offset; simple, the pieces
         * follow one header and a failure can only end the connection. */
        struct iovec iov[2] = { { hdr, format_data_header(s, r->cookie, off, piece, piece == len, hdr) },
                                { b->data, piece } };
        pthread_mutex_lock(&s->send_lock);
        for (uint64_t done = piece;;) {
                err = nbd_write_iov(s->fd, iov, 2, done < len ? MSG_MORE : 0);
                if (err < 0 || done == len)
                        break;
                piece = len - done < max ? (size_t)(len - done) : max;
                err = read_padded(s->map, b->data, piece, off + done, false);
                if (err < 0 && s->structured) {
                        struct error_offset_chunk e = {
                                { structured_header(r->cookie, NBD_REPLY_TYPE_ERROR_OFFSET, NBD_REPLY_FLAG_DONE,
                                                    sizeof(e) - sizeof(struct structured_reply)),
                                  htobe32(nbd_errno(err)), 0 },
                                htobe64(off + done),
                        };
                        err = nbd_write_exact(s->fd, &e, sizeof(e));
                        break;
                }
                if (err < 0) {
                        log_error("a read of %" PRIu64 " bytes at offset %" PRIu64
                                  " failed after its reply began: closing the connection",
                                  len, off);
                        err = -EIO;
                        break;
                }
                /* (sendmsg may have moved both entries on) */
                iov[0] = (struct iovec){ hdr, s->structured ? format_data_header(s, r->cookie, off + done, piece,
                                                                                  done + piece == len, hdr)
                                                             : 0 };
                iov[1] = (struct iovec){ b->data, piece };
                done += piece;
        }
        pthread_mutex_unlock(&s->send_lock);
        return err;
}

/* Records the session's first failure and ends it: the reader, blocked in
 * recv, sees its socket shut. (lock held) */
static void fail(struct session *s, int err)
{
        if (s->err == 0)
                s->err = err;
        s->ending = true;
        shutdown(s->fd, SHUT_RDWR);
        pthread_cond_broadcast(&s->queued);
        pthread_cond_broadcast(&s->room);
}

static void *worker(void *arg)
{
        struct session *s = arg;
        struct reply_buffer b = {};

        pthread_mutex_lock(&s->lock);
        for (;;) {
                while (s->count == 0 && !s->ending)
                        pthread_cond_wait(&s->queued, &s->lock);
                if (s->count == 0)
                        break; /* ending, and every read queued is answered */
                struct read_request r = s->queue[s->head];
                s->head = (s->head + 1) % QUEUE_MAX;
                s->count--;
                s->idle--;
                pthread_cond_signal(&s->room);
                pthread_mutex_unlock(&s->lock);

                int err = reply_read(s, &b, &r, false);

                pthread_mutex_lock(&s->lock);
                s->idle++;
                if (err < 0)
                        fail(s, err);
        }
        pthread_mutex_unlock(&s->lock);
        free(b.data);
        return NULL;
}

/* Hands a read to the workers, starting one more when none is idle. */
static int queue_read(struct session *s, const struct read_request *r)
{
        int err = 0;

        pthread_mutex_lock(&s->lock);
        while (s->count == QUEUE_MAX && !s->ending)
                pthread_cond_wait(&s->room, &s->lock);
        if (s->ending) {
                err = s->err ? s->err : -ECONNRESET;
        } else {
                s->queue[(s->head + s->count) % QUEUE_MAX] = *r;
                s->count++;
                if (s->idle < s->count && s->n_workers < s->max_workers) {
                        pthread_attr_t attr;
                        pthread_attr_init(&attr);
                        pthread_attr_setstacksize(&attr, WORKER_STACK_SIZE);
                        if (pthread_create(&s->workers[s->n_workers], &attr, worker, s) == 0) {
                                s->n_workers++;
                                s->idle++;
                        }
                        pthread_attr_destroy(&attr);
                }
                if (s->n_workers == 0)
                        err = -EAGAIN; /* not one worker could be started */
                pthread_cond_signal(&s->queued);
        }
        pthread_mutex_unlock(&s->lock);
        return err;
}

/* Requests as they arrive. A client with many in flight has sent several
 * by the time one is answered: one recv takes them all. */
#define INPUT_BUFFER 4096u

struct input {
        uint8_t data[INPUT_BUFFER];
        size_t start, end;
};

/* Replies of the thread that reads the requests, gathered while requests
 * wait in the input: one write carries many (a reply is then a memcpy, not
 * a syscall and a socket buffer of its own). Sent before the reader could
 * wait for more requests, so no reply waits on the client. The buffer is
 * also where that thread reads a reply too large to gather. */
struct output {
        struct reply_buffer b;
        size_t len;
};

static int flush_output(struct session *s, struct output *o)
{
        int err = 0;

        if (o->len == 0)
                return 0;
        pthread_mutex_lock(&s->send_lock);
        err = nbd_write_exact(s->fd, o->b.data, o->len);
        pthread_mutex_unlock(&s->send_lock);
        o->len = 0;
        return err;
}

/* len bytes of the input (len <= INPUT_BUFFER). Only when the input has
 * none left does it flush the replies gathered and wait for the client. */
static int input_take(struct session *s, struct input *in, struct output *o, void *out, size_t len)
{
        while (in->end - in->start < len) {
                if (in->start > 0) {
                        memmove(in->data, in->data + in->start, in->end - in->start);
                        in->end -= in->start;
                        in->start = 0;
                }
                ssize_t n = recv(s->fd, in->data + in->end, INPUT_BUFFER - in->end, MSG_DONTWAIT);
                if (n < 0 && errno == EAGAIN) {
                        int err = flush_output(s, o);
                        if (err < 0)
                                return err;
                        n = recv(s->fd, in->data + in->end, INPUT_BUFFER - in->end, 0);
                }
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0)
                        return -errno;
                if (n == 0)
                        return -ECONNRESET;
                in->end += (size_t)n;
        }
        memcpy(out, in->data + in->start, len);
        in->start += len;
        return 0;
}

/* A write's payload, read away: what the input holds, then the socket. */
static int input_discard(struct session *s, struct input *in, uint64_t len)
{
        size_t held = in->end - in->start < len ? in->end - in->start : (size_t)len;

        in->start += held;
        return nbd_discard(s->fd, len - held, 0);
}

/* Room for need more bytes of replies: those gathered are sent first if
 * they do not fit, and the buffer grows if even an empty one is too small. */
static int output_reserve(struct session *s, struct output *o, size_t need)
{
        if (o->b.size - o->len >= need)
                return 0;
        int err = flush_output(s, o);
        if (err < 0 || o->b.size >= need)
                return err;
        uint8_t *nb = realloc(o->b.data, need);
        if (!nb)
                return -ENOMEM;
        o->b.data = nb;
        o->b.size = need;
        return 0;
}

/* A reply without data, gathered. */
static int output_status(struct session *s, struct output *o, bool structured, uint64_t cookie, uint32_t error)
{
        uint8_t reply[REPLY_HEADER_MAX];
        size_t len = format_status(structured, cookie, error, reply);
        int err = output_reserve(s, o, len);

        if (err == -ENOMEM)
                return send_status(s, structured, cookie, error);
        if (err < 0)
                return err;
        memcpy(o->b.data + o->len, reply, len);
        o->len += len;
        return 0;
}

/* Answers a read in the thread that reads the requests: gathered into the
 * output when it fits the reply buffer; with workers, -EAGAIN (and nothing
 * answered) when it would wait on the storage. */
static int answer_read(struct session *s, struct output *o, const struct read_request *r)
{
        uint8_t hdr[REPLY_HEADER_MAX];
        bool nowait = s->max_workers > 0;
        size_t hdr_len = format_data_header(s, r->cookie, r->offset, r->length, true, hdr);
        int err;

        if (r->offset > s->device_size || r->length > s->device_size - r->offset)
                return output_status(s, o, s->structured, r->cookie, NBD_EINVAL);
        if (r->length == 0)
                return output_status(s, o, s->structured, r->cookie, 0);
        if (r->length > s->buffer_max) {
                /* Streamed in pieces from the output's buffer: empty it. */
                err = flush_output(s, o);
                return err < 0 ? err : reply_read(s, &o->b, r, nowait);
        }
        err = output_reserve(s, o, hdr_len + r->length);
        if (err == -ENOMEM)
                return send_read_error(s, r->cookie, NBD_ENOMEM);
        if (err < 0)
                return err;
        err = read_padded(s->map, o->b.data + o->len + hdr_len, r->length, r->offset, nowait);
        if (err == -EAGAIN && nowait)
                return err;
        if (err < 0)
                return output_status(s, o, s->structured, r->cookie, nbd_errno(err));
        memcpy(o->b.data + o->len, hdr, hdr_len);
        o->len += hdr_len + r->length;
        return 0;
}

/* NBD_CMD_BLOCK_STATUS for "base:allocation": the runs of the range over
 * chunks of zeros (a hole that reads as zeros) and over the others (data),
 * from the map, with no chunk file touched; and the device's tail past the
 * image, zeros. */
static int answer_block_status(struct session *s, struct output *o, uint64_t cookie, uint16_t flags,
                               uint64_t offset, uint32_t length)
{
        size_t most = flags & NBD_CMD_FLAG_REQ_ONE ? 1 : BLOCK_STATUS_MAX_DESCRIPTORS, n = 0;
        struct block_descriptor d[BLOCK_STATUS_MAX_DESCRIPTORS];
        bool zero[BLOCK_STATUS_MAX_DESCRIPTORS];
        uint64_t at = offset, end = offset + length;

        if (!s->base_allocation_id || length == 0 || offset > s->device_size || length > s->device_size - offset)
                return output_status(s, o, s->structured, cookie, NBD_EINVAL);
        while (at < end && n < most) {
                bool z = true;
                uint64_t run = end - at;
                if (at < s->map->size)
                        run = image_map_extent(s->map, at, (end < s->map->size ? end : s->map->size) - at, &z);
                /* Within one request, so each fits its 32 bits. */
                if (n > 0 && zero[n - 1] == z) {
                        d[n - 1].length += (uint32_t)run;
                } else {
                        zero[n] = z;
                        d[n++] = (struct block_descriptor){ (uint32_t)run, z ? NBD_STATE_HOLE | NBD_STATE_ZERO : 0 };
                }
                at += run;
        }

        size_t len = sizeof(struct block_status_chunk) + n * sizeof(d[0]);
        int err = output_reserve(s, o, len);
        if (err == -ENOMEM)
                return send_status(s, true, cookie, NBD_ENOMEM);
        if (err < 0)
                return err;
        struct block_status_chunk c = {
                structured_header(cookie, NBD_REPLY_TYPE_BLOCK_STATUS, NBD_REPLY_FLAG_DONE,
                                  (uint32_t)(len - sizeof(struct structured_reply))),
                htobe32(s->base_allocation_id),
        };
        uint8_t *p = o->b.data + o->len;
        memcpy(p, &c, sizeof(c));
        for (size_t i = 0; i < n; i++) {
                struct block_descriptor be = { htobe32(d[i].length), htobe32(d[i].flags) };
                memcpy(p + sizeof(c) + i * sizeof(be), &be, sizeof(be));
        }
        o->len += len;
        return 0;
}

/* Reads requests until the client disconnects or the session fails. */
static int read_requests(struct session *s, struct input *in, struct output *o)
{
        for (;;) {
                struct __attribute__((packed)) {
                        uint32_t magic;
                        uint16_t flags, type;
                        uint64_t cookie, offset;
                        uint32_t length;
                } req = {};
                int err = input_take(s, in, o, &req, sizeof(req));
                if (err == -ECONNRESET)
                        return 0;
                if (err < 0)
                        return err;
                if (be32toh(req.magic) != NBD_REQUEST_MAGIC)
                        return -EPROTO;
                struct read_request r = { req.cookie, be64toh(req.offset), be32toh(req.length) };

                switch (be16toh(req.type)) {
                case NBD_CMD_READ:
                        /* A read that waits on no device (its data in the
                         * page cache, its files open or found by a cached
                         * lookup) costs a few syscalls: answered at once,
                         * it is served as fast as by one thread alone. One
                         * that would wait on the storage goes to a worker,
                         * and the reads behind it go on. */
                        if (r.length > NBD_MAX_REQUEST) {
                                err = output_status(s, o, s->structured, r.cookie, NBD_EINVAL);
                        } else {
                                err = answer_read(s, o, &r);
                                if (err == -EAGAIN && s->max_workers)
                                        err = queue_read(s, &r);
                        }
                        break;
                case NBD_CMD_WRITE:
                        /* The payload follows the request: consume it to stay in sync. */
                        err = input_discard(s, in, r.length);
                        if (err == 0)
                                err = output_status(s, o, false, r.cookie, NBD_EPERM);
                        break;
                case NBD_CMD_TRIM:
                case NBD_CMD_WRITE_ZEROES:
                        err = output_status(s, o, false, r.cookie, NBD_EPERM);
                        break;
                case NBD_CMD_FLUSH:
                case NBD_CMD_CACHE:
                        err = output_status(s, o, false, r.cookie, 0);
                        break;
                case NBD_CMD_BLOCK_STATUS:
                        err = answer_block_status(s, o, r.cookie, be16toh(req.flags), r.offset, r.length);
                        break;
                case NBD_CMD_DISC:
                        return flush_output(s, o);
                default:
                        err = output_status(s, o, false, r.cookie, NBD_EINVAL);
                        break;
                }
                if (err < 0)
                        return err;
        }
}

int nbd_transmission(int fd, struct image_map *map, uint64_t device_size, size_t reply_buffer_max,
                     unsigned workers, const struct nbd_features *features)
{
        struct session s = {
                .fd = fd, .map = map, .device_size = device_size,
                .buffer_max = reply_buffer_max ? reply_buffer_max : 1,
                .max_workers = workers < NBD_MAX_WORKERS ? workers : NBD_MAX_WORKERS,
                .structured = features && features->structured_replies,
                .base_allocation_id = features && features->structured_replies ? features->base_allocation_id : 0,
        };
        struct input *in = malloc(sizeof(*in));
        struct output out = {};
        int err;

        if (!in)
                return -ENOMEM;
        in->start = in->end = 0;
        pthread_mutex_init(&s.send_lock, NULL);
        pthread_mutex_init(&s.lock, NULL);
        pthread_cond_init(&s.queued, NULL);
        pthread_cond_init(&s.room, NULL);

        err = read_requests(&s, in, &out);
        if (err == 0)
                err = flush_output(&s, &out);

        /* The reads already queued are answered before the session ends
         * (NBD_CMD_DISC asks for that); a failure ends it at once. */
        pthread_mutex_lock(&s.lock);
        if (err < 0)
                fail(&s, err);
        s.ending = true;
        pthread_cond_broadcast(&s.queued);
        pthread_mutex_unlock(&s.lock);
        for (unsigned i = 0; i < s.n_workers; i++)
                pthread_join(s.workers[i], NULL);
        if (s.err < 0 && err == 0)
                err = s.err;

        free(out.b.data);
        free(in);
        pthread_cond_destroy(&s.room);
        pthread_cond_destroy(&s.queued);
        pthread_mutex_destroy(&s.lock);
        pthread_mutex_destroy(&s.send_lock);
        return err;
}
