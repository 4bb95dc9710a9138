// SPDX-License-Identifier: MIT
#include "ondemand.h"

#include "archive_source.h"
#include "archive_trust.h"
#include "cleanup.h"
#include "log.h"
#include "ondemand_fetch.h"
#include "release_file.h"
#include "store.h"
#include "store_use.h"
#include "units.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static int by_archive_offset(const void *a, const void *b, void *chunks)
{
        const struct chunk *c = chunks;
        uint64_t x = c[*(const uint32_t *)a].archive_offset, y = c[*(const uint32_t *)b].archive_offset;

        return x < y ? -1 : x > y;
}

/* A read's wait for idx has run out (lock held): the chunk is still on
 * its way, or its job still waits for a connection (then it is dropped: a
 * later read queues it again, and the queue keeps no backlog of reads long
 * given up), or a fetch of it that was no read's failed meanwhile (said as
 * a warning). Said here, once for the read: no fetch failed for it. */
static void wait_expired(struct ondemand *od, uint32_t idx)
{
        unsigned long long at = od->r->chunks[idx].archive_offset;

        if (od->state[idx] != OD_FETCHING)
                log_error("%s: chunk at archive offset %llu of %s not fetched within %u s: the read fails with EIO",
                          od->arg, at, od->where, od->read_wait_s);
        else if (od_unqueue(od, idx))
                log_error("%s: chunk at archive offset %llu of %s: no connection came free for it within %u s: the "
                          "read fails with EIO",
                          od->arg, at, od->where, od->read_wait_s);
        else
                log_error("%s: chunk at archive offset %llu of %s still on its way after %u s: the read fails with "
                          "EIO (the fetch goes on)",
                          od->arg, at, od->where, od->read_wait_s);
}

/* The provider's open: the chunk's file in the store, or its checked temp
 * file on the way there, fetched first if need be. The wait is bounded
 * (read_wait_s), and ends at once on a cancel. */
static int od_open(struct chunk_provider *p, uint32_t idx)
{
        struct ondemand *od = (struct ondemand *)p;
        const struct chunk *c = &od->r->chunks[idx];
        bool waited = false, expired = false;
        struct timespec deadline;
        int fd;

        clock_gettime(CLOCK_MONOTONIC, &deadline);
        deadline.tv_sec += od->read_wait_s;
        pthread_mutex_lock(&od->lock);
        for (;;) {
                uint8_t s = od->state[idx];
                if (s == OD_PRESENT || s == OD_VERIFIED || atomic_load(&od->stopping))
                        break;
                /* The read's own fetch failed (said why); the chunk is
                 * fetched again by a later read. */
                if (s == OD_FAILED && waited)
                        break;
                if (expired) {
                        wait_expired(od, idx);
                        break;
                }
                if (s == OD_FETCHING) {
                        pthread_cond_t *arrived = &od->arrived[idx % WAIT_SLOTS];
                        if (!od->read_wait_s)
                                pthread_cond_wait(arrived, &od->lock);
                        else
                                expired = pthread_cond_timedwait(arrived, &od->lock, &deadline) == ETIMEDOUT;
                        waited = true;
                        continue;
                }
                if (od->n_started == 0) {
                        log_error("%s: a chunk is missing and nothing fetches it: reads of it fail with EIO", od->arg);
                        break;
                }
                if (od_queue_read(od, idx) < 0)
                        break;
        }
        uint8_t s = od->state[idx];
        if (s == OD_VERIFIED) {
                fd = fcntl(od->early[idx], F_DUPFD_CLOEXEC, 0);
                pthread_mutex_unlock(&od->lock);
                return fd >= 0 ? fd : log_errno(-errno, "%s: cannot read a chunk just fetched", od->arg);
        }
        pthread_mutex_unlock(&od->lock);
        if (s != OD_PRESENT)
                return -EIO;
        fd = store_chunk_open(od->store, c, od->r->hash_len);
        if (fd == -EMFILE || fd == -ENFILE || fd >= 0)
                return fd;
        log_errno(fd, "%s: cannot open a chunk just fetched", od->arg);
        return -EIO;
}

/* The provider's found: a read opened idx in the store, maybe stored by
 * another process since the release was opened. */
static void od_found(struct chunk_provider *p, uint32_t idx)
{
        struct ondemand *od = (struct ondemand *)p;

        pthread_mutex_lock(&od->lock);
        if (fetchable(od->state[idx]))
                od_now_present(od, idx);
        pthread_mutex_unlock(&od->lock);
}

/* The provider's replace: chunk idx in the store is corrupt, so it is
 * fetched again (a checked copy renamed over it), unless another reader
 * has done so meanwhile. */
static int od_replace(struct chunk_provider *p, uint32_t idx)
{
        struct ondemand *od = (struct ondemand *)p;
        const struct chunk *c = &od->r->chunks[idx];
        int fd = store_chunk_open(od->store, c, od->r->hash_len);

        if (fd >= 0 && store_fd_holds_chunk(fd, c, od->r->hash_len))
                return fd;
        if (fd >= 0)
                close(fd);
        pthread_mutex_lock(&od->lock);
        uint8_t s = od->state[idx];
        if (s == OD_PRESENT || fetchable(s)) { /* else a fetch of it is under way */
                char hex[2 * HASH_MAX_LEN + 1];
                hash_to_hex(c->hash, od->r->hash_len, hex);
                log_warn("%s: chunk %s in the store is corrupt: it is fetched again from %s", od->arg, hex, od->where);
                if (s == OD_PRESENT)
                        od_set_state(od, idx, OD_MISSING);
        }
        pthread_mutex_unlock(&od->lock);
        return od_open(p, idx);
}

/* The provider's cancel: the workers' transfers see stopping at their
 * next progress call (http_options.cancel), the readers and idle workers
 * are woken here. */
static void od_cancel(struct chunk_provider *p)
{
        struct ondemand *od = (struct ondemand *)p;

        pthread_mutex_lock(&od->lock);
        atomic_store(&od->stopping, true);
        for (unsigned i = 0; i < WAIT_SLOTS; i++)
                pthread_cond_broadcast(&od->arrived[i]);
        pthread_cond_broadcast(&od->work);
        pthread_mutex_unlock(&od->lock);
}

static void od_free(struct chunk_provider *p)
{
        struct ondemand *od = (struct ondemand *)p;

        od_cancel(p);
        for (unsigned i = 0; i < od->n_started; i++)
                pthread_join(od->workers[i].thread, NULL);
        if (od->describe_due) /* the last chunk came in as it stopped */
                od_describe(od);
        od_drop_queued(od);
        for (unsigned i = 0; i < od->n_conns; i++) {
                source_conn_close(&od->workers[i].conn);
                decoder_free(od->workers[i].decoder);
        }
        if (od->early)
                for (size_t i = 0; i < od->r->n_chunks; i++)
                        if (od->early[i] >= 0)
                                close(od->early[i]);
        archive_source_close(od->src);
        for (unsigned i = 0; i < WAIT_SLOTS; i++)
                pthread_cond_destroy(&od->arrived[i]);
        pthread_cond_destroy(&od->work);
        pthread_mutex_destroy(&od->lock);
        free(od->desc);
        free(od->zeros);
        free(od->state);
        free(od->early);
        free(od->by_offset);
        free(od->rank);
        free(od->arg);
        free(od->name);
        free(od);
}

int ondemand_start(struct image_map *m)
{
        struct ondemand *od = (struct ondemand *)m->provider;

        /* Complete, a release needs workers only to repair a chunk that
         * verify finds corrupt. */
        if (!od || (od->n_present == od->r->n_chunks && !m->verify))
                return 0;
        od->fill_max = od->n_conns > 2 ? od->n_conns - 2 : 1;
        od->zeros_due = od->zeros_started = od->n_zeros > 0 && od->n_present + od->n_zeros == od->r->n_chunks;
        /* The stop signals blocked in the fetching threads: one that the
         * caller takes through a signalfd (nbd_kernel.c blocks them in its
         * own thread only, later) must not fall to one of them and kill
         * the process with its default action, and one that FUSE's main
         * thread must see (it ends its loop) must not be taken here. (Not
         * every signal: a SIGSEGV blocked would bypass ASan's handler.) */
        sigset_t stop, old;
        sigemptyset(&stop);
        sigaddset(&stop, SIGINT);
        sigaddset(&stop, SIGTERM);
        sigaddset(&stop, SIGHUP); /* a FUSE mount's third stop signal (fuse_file.c) */
        pthread_sigmask(SIG_BLOCK, &stop, &old);
        int err = 0;
        for (unsigned i = 0; i < od->n_conns && !err; i++) {
                pthread_mutex_lock(&od->lock);
                err = pthread_create(&od->workers[i].thread, NULL, od_work, &od->workers[i]);
                od->n_started += err == 0;
                pthread_mutex_unlock(&od->lock);
        }
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        if (err)
                return log_errno(-err, "%s: cannot start a fetching thread", od->arg);
        return 0;
}

/* The archive's connections and header (trusted as clone trusts it; the
 * store takes the signed version only when open_locked commits it). */
static int open_archive(struct ondemand *od, const struct archive_trust *trust, struct store *store,
                        struct archive **out, struct archive_trust_result *trusted)
{
        int err = archive_source_open(trust->source, &od->http, &od->src);

        if (err < 0)
                return err;
        od->where = od->src->where;
        unsigned n = od->src->is_http ? HTTP_WORKERS : FILE_WORKERS;
        for (unsigned i = 0; i < n; i++) {
                err = source_conn_open(od->src, &od->workers[i].conn);
                if (err < 0)
                        return log_errno(err, "cannot set up a connection to %s", od->where);
                od->n_conns++;
        }
        err = archive_trust_read_header(trust, store, od->src, &od->workers[0].conn, out, trusted);
        if (err < 0)
                return err;
        od->codec = (*out)->codec;
        for (unsigned i = 0; i < od->n_conns; i++) {
                err = decoder_new(od->codec, &od->workers[i].decoder);
                if (err < 0)
                        return log_errno(err, "cannot create a decoder");
        }
        return 0;
}

/* A store this process cannot write keeps nothing fetched: every read of a
 * missing chunk would fail with EIO. err: store_check_writable's. */
static int refuse_unwritable(struct ondemand *od, struct store *store, const char *source, int err)
{
        if (err == -EROFS)
                log_error("%s: store %s is read-only: nothing fetched from %s could be kept in it (only a release "
                          "complete there is served from a read-only store)",
                          od->arg, store_path(store), source);
        else
                log_error("%s: cannot write store %s (%s): nothing fetched from %s could be kept in it (only a "
                          "release complete there is served from a store that cannot be written)",
                          od->arg, store_path(store), strerror(-err), source);
        return err;
}

/* A release NAME already in the store must be this archive's image. */
static int check_existing(struct ondemand *od, struct store *store, const struct release *r)
{
        bool same;
        int err;

        if (!store_release_exists(store, od->name))
                return 0;
        err = od_holds_image(store, od->name, r, &same);
        if (err < 0)
                return err;
        if (!same) {
                log_error("%s exists and holds another image than %s (ihop rm it first, or choose another name)",
                          od->arg, od->where);
                return -EEXIST;
        }
        od->described = true;
        return 0;
}

/* What the store holds of the release, and its order in the archive. */
static int take_stock(struct ondemand *od, struct image_map *m)
{
        const struct release *r = od->r;
        size_t n = r->n_chunks ? r->n_chunks : 1;
        _cleanup_free_ enum chunk_state *st = calloc(n, sizeof(*st));
        int err;

        od->state = calloc(n, sizeof(*od->state));
        od->early = malloc(n * sizeof(*od->early));
        od->by_offset = calloc(n, sizeof(*od->by_offset));
        od->rank = calloc(n, sizeof(*od->rank));
        if (!st || !od->state || !od->early || !od->by_offset || !od->rank)
                return log_errno(-ENOMEM, "cannot map release %s", od->arg);
        for (size_t i = 0; i < n; i++)
                od->early[i] = -1;
        err = image_map_scan(m, st, od->arg);
        if (err < 0)
                return err;
        for (size_t i = 0; i < r->n_chunks; i++) {
                od->state[i] = st[i] == CHUNK_PRESENT ? OD_PRESENT : OD_MISSING;
                od->n_present += st[i] == CHUNK_PRESENT;
                od->n_missing += st[i] != CHUNK_PRESENT;
                od->by_offset[i] = (uint32_t)i;
        }
        qsort_r(od->by_offset, r->n_chunks, sizeof(*od->by_offset), by_archive_offset, r->chunks);
        for (size_t k = 0; k < r->n_chunks; k++)
                od->rank[od->by_offset[k]] = k;
        /* The chunks of zeros missing: a worker writes them once the rest is
         * in (their content is known); nothing fetches them meanwhile. */
        od->zeros = calloc(n, sizeof(*od->zeros));
        if (!od->zeros)
                return log_errno(-ENOMEM, "cannot map release %s", od->arg);
        for (uint32_t i = 0; i < r->n_chunks; i++)
                if (od->state[i] == OD_MISSING && image_map_chunk_is_zero(m, i)) {
                        od->state[i] = OD_FETCHING;
                        od->n_missing--;
                        od->zeros[od->n_zeros++] = i;
                }
        return 0;
}

/* Everything that can refuse the release, then the store takes its signed
 * version: before any chunk of it is fetched or written (the workers and
 * the description come after this), never for a release refused. With
 * *from_store, the store cannot be written and holds the whole release:
 * it is served as it is, nothing fetched. */
static int open_locked(struct ondemand *od, const struct ondemand_options *o, bool verify, struct store *store,
                       struct image_map **out, bool *from_store)
{
        struct archive_trust trust = { .source = o->source, .http = &od->http, .policy = o->trust };
        struct archive_trust_result trusted;
        _cleanup_archive_ struct archive *a = NULL;
        struct image_map *m = NULL;
        int writable = store_check_writable(store);
        int err;

        /* No release under the name: a store that cannot be written could
         * serve none of it. Said before anything is fetched. */
        if (writable < 0 && !store_release_exists(store, od->name))
                return refuse_unwritable(od, store, o->source, writable);
        err = open_archive(od, &trust, store, &a, &trusted);
        if (err < 0)
                return err;
        err = check_existing(od, store, a->release);
        if (err == 0)
                err = release_file_encode(a->release, &od->desc, &od->desc_len);
        if (err < 0)
                return err;
        err = image_map_new(store, a->release, verify, &m);
        if (err < 0)
                return log_errno(err, "cannot map release %s", od->arg);
        a->release = NULL; /* the map's now, with the store */
        od->store = m->store;
        od->r = m->release;
        m->provider = &od->provider;
        *out = m;
        err = take_stock(od, m);
        if (err < 0)
                return err;
        /* Served from a store that cannot be written only when it needs no
         * write: described, every chunk in (the chunks of zeros too). */
        *from_store = writable < 0;
        if (writable < 0 && (!od->described || od->n_present < od->r->n_chunks))
                return refuse_unwritable(od, store, o->source, writable);
        err = archive_trust_commit(&trust, store, &trusted);
        if (err < 0)
                return err;
        /* Still under the store lock: gc cannot have run since the stock was taken. */
        return store_use_begin(store, od->name, od->desc, od->desc_len, &m->use);
}

/* How long a read waits for a chunk at most (0: for ever, as with
 * --http-timeout 0): at each URL, as long as the chunk's fetch takes to
 * fail when the server sends nothing, drips or stalls (retries + 1
 * attempts, each ended timeout_s into its idle time or its rate's window
 * and within the second libcurl takes to call back, a retry delay apart),
 * and a second per attempt to spare, for the failure to be said by the
 * fetch. Past it, whatever holds the chunk up (a transfer slow but above
 * the floor, every connection busy, a long Retry-After), the read fails
 * with EIO on its own (README, "Before it is cloned"). */
unsigned ondemand_read_wait_s(const struct http_options *h)
{
        if (!h->timeout_s)
                return 0;
        uint64_t w = (uint64_t)(1 + h->n_mirrors) * (h->retry_count + 1u) *
                     ((uint64_t)h->timeout_s + h->retry_delay_s + 2);
        return w < UINT_MAX ? (unsigned)w : UINT_MAX;
}

int ondemand_open(const char *arg, const struct ondemand_options *o, bool verify, struct image_map **out,
                  char **name)
{
        _cleanup_free_ char *store_path = NULL;
        struct ondemand *od = calloc(1, sizeof(*od));
        struct store *store = NULL;
        struct image_map *m = NULL;
        bool from_store = false;
        char size[32];
        int err;

        *out = NULL;
        if (!od)
                return -ENOMEM;
        od->provider = (struct chunk_provider){ od_open, od_found, od_replace, od_cancel, od_free };
        od->http = o->http;
        od->read_wait_s = ondemand_read_wait_s(&o->http);
        od->http.cancel = &od->stopping;
        od->fill = o->fill;
        for (unsigned i = 0; i < STREAMS; i++)
                od->streams[i] = (struct stream){ UINT64_MAX, RANGE_FIRST, 0 };
        od->reads.tail = &od->reads.head;
        od->aheads.tail = &od->aheads.head;
        od->fill_retry = FILL_RETRY_FIRST_S;
        for (unsigned i = 0; i < HTTP_WORKERS; i++)
                od->workers[i].od = od;
        pthread_mutex_init(&od->lock, NULL);
        pthread_condattr_t monotonic;
        pthread_condattr_init(&monotonic);
        pthread_condattr_setclock(&monotonic, CLOCK_MONOTONIC); /* reads' deadlines, the fill's retry times */
        for (unsigned i = 0; i < WAIT_SLOTS; i++)
                pthread_cond_init(&od->arrived[i], &monotonic);
        pthread_cond_init(&od->work, &monotonic);
        pthread_condattr_destroy(&monotonic);
        od->arg = strdup(arg);
        err = od->arg ? store_split_release_path(arg, &store_path, &od->name) : -ENOMEM;
        if (err == 0)
                err = store_open(store_path, true, &store);
        if (err == 0)
                err = store_lock(store, STORE_LOCK_SHARED);
        if (err == 0)
                err = open_locked(od, o, verify, store, &m, &from_store);
        if (store)
                store_unlock(store);
        if (err < 0) {
                if (m)
                        image_map_free(m); /* the store and od with it */
                else {
                        store_close(store);
                        od_free(&od->provider);
                }
                return err;
        }
        if (name) {
                *name = strdup(od->name);
                if (!*name) {
                        image_map_free(m);
                        return -ENOMEM;
                }
        }
        if (from_store) {
                /* The map alone, as `mount` without --source makes it: under
                 * verify, a chunk found corrupt reads as EIO, since no copy
                 * fetched again could be kept. */
                log_info("%s: store %s cannot be written, but holds the whole release: it is served from there, "
                         "nothing is fetched from %s",
                         arg, store_path, od->where);
                m->provider = NULL;
                od_free(&od->provider);
                *out = m;
                return 0;
        }
        uint64_t missing_bytes = 0;
        for (size_t i = 0; i < od->r->n_chunks; i++)
                if (fetchable(od->state[i])) /* not the chunks of zeros, written here */
                        missing_bytes += od->r->chunks[i].archive_size;
        log_info("%s: on demand from %s: %zu of %zu chunks in the store, %s of the archive to fetch as read%s",
                 arg, od->where, od->n_present, od->r->n_chunks, format_size(missing_bytes, size, sizeof(size)),
                 od->fill ? " or filled" : "");
        if (od->n_present == od->r->n_chunks && !od->described) {
                od->described = true;
                od_describe(od);
        }
        *out = m;
        return 0;
}
