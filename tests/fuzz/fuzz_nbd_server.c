// SPDX-License-Identifier: MIT
/* The NBD server fed a client's byte stream: nbd_handshake, then
 * nbd_transmission, run on one end of a socketpair; a thread writes the
 * input into the other end, shuts it down for writing, and reads and drops
 * the replies until the server closes its end. The input is what a client
 * sends, from its first byte (the client flags after the server's greeting).
 *
 * The exports are a tiny real release, made once in a temporary store
 * (removed at exit): 3 chunks at 4 positions, FUZZ_EXPORT_SIZE bytes, the
 * one used twice all zeros (block status reports it as a hole). The
 * default export "tiny" is served as `ihop serve` does; "tiny-padded" is the
 * same release with the device rounded up to 4 KiB, as `ihop mount` serves
 * the kernel, so that the zeros past the image are read too. */
#include "fuzz.h"

#include "image_map.h"
#include "nbd_server.h"
#include "release_file.h"
#include "store.h"

#include <errno.h>
#include <ftw.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static const uint32_t chunk_sizes[] = { 1000, 700, 333 };
static const uint32_t chunk_order[] = { 0, 1, 0, 2 };
#define FUZZ_EXPORT_SIZE 3033u /* 1000 + 700 + 1000 + 333 */
#define FUZZ_HASH_LEN 32u

static char store_dir[64];
static struct image_map *map;
static struct nbd_export exports[2];

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
        return remove(path);
}

static void remove_store(void)
{
        image_map_free(map);
        nftw(store_dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static void chunk_data(size_t i, uint8_t *out)
{
        for (uint32_t k = 0; k < chunk_sizes[i]; k++)
                out[k] = i == 0 ? 0 : (uint8_t)(k * 7 + i * 101 + (k >> 8));
}

static void make_export(void)
{
        const size_t n_chunks = sizeof(chunk_sizes) / sizeof(chunk_sizes[0]);
        const size_t n_order = sizeof(chunk_order) / sizeof(chunk_order[0]);
        struct release *r = calloc(1, sizeof(*r));
        struct store *s = NULL;
        struct store_batch batch;
        uint8_t data[1000], digest[HASH_MAX_LEN];
        hash_state image;
        char arg[128];

        if (hash_init_library() < 0 || !r)
                abort();
        snprintf(store_dir, sizeof(store_dir), "%s/ihop-fuzz-nbd-XXXXXX", P_tmpdir);
        if (!mkdtemp(store_dir) || store_open(store_dir, true, &s) < 0)
                abort();
        atexit(remove_store);
        r->app_version = strdup("fuzz");
        r->chunks = calloc(n_chunks, sizeof(*r->chunks));
        r->order = malloc(sizeof(chunk_order));
        if (!r->app_version || !r->chunks || !r->order)
                abort();
        r->n_chunks = n_chunks;
        r->n_order = n_order;
        memcpy(r->order, chunk_order, sizeof(chunk_order));
        r->hash_len = FUZZ_HASH_LEN;
        r->chunker = (struct chunker_params){ CHUNKING_ROLLSUM, 15, 16 << 10, 16 << 20, 64, FUZZ_HASH_LEN };
        r->source_total_size = FUZZ_EXPORT_SIZE;
        store_batch_init(&batch, s);
        for (size_t i = 0; i < n_chunks; i++) {
                struct chunk_writer w;
                chunk_data(i, data);
                hash_buffer(data, chunk_sizes[i], digest);
                memcpy(r->chunks[i].hash, digest, FUZZ_HASH_LEN);
                r->chunks[i].source_size = chunk_sizes[i];
                if (chunk_writer_begin(&w, s, &r->chunks[i], FUZZ_HASH_LEN) < 0 ||
                    chunk_writer_write(&w, data, chunk_sizes[i]) < 0 || chunk_writer_finish(&w) < 0 ||
                    store_batch_add(&batch, &w) < 0)
                        abort();
        }
        if (store_batch_commit(&batch) < 0)
                abort();
        store_batch_free(&batch);
        hash_init(&image);
        for (size_t i = 0; i < n_order; i++) {
                chunk_data(chunk_order[i], data);
                hash_update(&image, data, chunk_sizes[chunk_order[i]]);
        }
        hash_final(&image, r->source_checksum);
        r->source_checksum_len = HASH_MAX_LEN;
        if (release_file_write(s, "tiny", r) < 0)
                abort();
        release_free(r);
        store_close(s);
        snprintf(arg, sizeof(arg), "%s/tiny", store_dir);
        if (image_map_open(arg, false, &map, NULL) < 0 || map->size != FUZZ_EXPORT_SIZE)
                abort();
        exports[0] = (struct nbd_export){ "tiny", map };
        exports[1] = (struct nbd_export){ "tiny-padded", map };
}

struct client {
        int fd;
        const uint8_t *data;
        size_t len;
};

/* Writes the input and drains the replies at once: the server blocks when
 * its replies are not read. Ends when the server closes its end. */
static void *client_thread(void *arg)
{
        struct client *c = arg;
        uint8_t sink[16384];
        size_t off = 0;
        bool sending = true;

        for (;;) {
                if (sending && off == c->len) {
                        shutdown(c->fd, SHUT_WR);
                        sending = false;
                }
                struct pollfd p = { c->fd, POLLIN | (sending ? POLLOUT : 0), 0 };
                if (poll(&p, 1, -1) < 0) {
                        if (errno == EINTR)
                                continue;
                        abort();
                }
                if (p.revents & (POLLIN | POLLHUP | POLLERR)) {
                        ssize_t n = recv(c->fd, sink, sizeof(sink), MSG_DONTWAIT);
                        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR))
                                break;
                }
                if (sending && (p.revents & POLLOUT)) {
                        ssize_t n = send(c->fd, c->data + off, c->len - off, MSG_DONTWAIT | MSG_NOSIGNAL);
                        if (n > 0)
                                off += (size_t)n;
                        else if (n < 0 && errno != EAGAIN && errno != EINTR)
                                off = c->len; /* the server hung up: stop sending */
                }
        }
        return NULL;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        const struct nbd_export *chosen = NULL;
        struct nbd_features features;
        pthread_t thread;
        int sv[2];

        if (!map)
                make_export();
        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
                abort();
        struct client c = { sv[1], data, size };
        if (pthread_create(&thread, NULL, client_thread, &c) != 0)
                abort();
        /* A handshake timeout as `ihop serve` has (its deadline path), and
         * a reply buffer smaller than the export, so that reads are sent
         * both whole and in pieces, by the session's thread or by workers. */
        atomic_bool engaged = false;
        if (nbd_handshake(sv[0], exports, 2, 10000, &engaged, &chosen, &features) == 0) {
                uint64_t device_size = map->size;
                if (chosen == &exports[1])
                        device_size = (map->size + 4095) / 4096 * 4096;
                nbd_transmission(sv[0], chosen->map, device_size, 1024, size & 1 ? 2 : 0, &features);
        }
        close(sv[0]);
        pthread_join(thread, NULL);
        close(sv[1]);
        return 0;
}
