// SPDX-License-Identifier: MIT
#include "ondemand.h"

#include "archive_source.h"
#include "archive_trust.h"
#include "chunk_fetch.h"
#include "cleanup.h"
#include "fetch_plan.h"
#include "log.h"
#include "release_file.h"
#include "store.h"
#include "store_use.h"
#include "units.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Connections to the archive: reads waiting on the network at once. */
#define ONDEMAND_CONNECTIONS 4u
/* A read's fetch: at least its chunk, and the missing ones after it up to
 * this much of the archive; doubled for each read that follows on from the
 * last of its stream, up to FETCH_MAX_RANGE (the read-ahead of a sequential
 * reader). */
#define RANGE_FIRST (256u << 10)
/* Sequential readers told apart (a kernel or nbdcopy reads several regions
 * at once); the least recently used makes room for a new one. */
#define STREAMS 8u
/* A sequential reader's next range is fetched by one of these while the
 * reader waits on its own: fetching, decompressing, hashing and storing
 * overlap (one range ahead, so a reader that stops costs one range). */
#define PREFETCHERS 2u
#define PREFETCH_QUEUE 8u
/* Chunks in one fetch at most (a range of tiny compressed chunks). */
#define RANGE_MAX_CHUNKS 1024u
/* The fill's ranges: short enough that a read waiting on one of its chunks
 * waits little longer than for its own. */
#define FILL_RANGE (4u << 20)
/* The fill waits this long after a failure, doubling up to the most. */
#define FILL_RETRY_FIRST_S 1u
#define FILL_RETRY_MOST_S 30u

enum { OD_MISSING, OD_FETCHING, OD_PRESENT };

enum fetch_kind { FETCH_READ, FETCH_AHEAD, FETCH_FILL };

struct stream {
        uint64_t next;  /* where in the archive its last range ended */
        uint64_t range; /* its next range's length */
        uint64_t used;  /* od->clock when last used */
};

struct ahead {
        uint32_t idx;    /* the first chunk of the range to fetch */
        unsigned stream; /* for whom */
};

struct od_conn {
        struct source_conn conn;
        struct decoder *decoder;
        bool busy;
};

struct ondemand {
        struct chunk_provider provider; /* first: the map hands it back */
        struct http_options http;       /* the caller's, cancelled when stopping */
        const char *where;              /* the archive, for messages */
        char *arg;                      /* STORE/NAME */
        char *name;
        bool fill;
        struct store *store;      /* the map's */
        const struct release *r;  /* the map's: the archive's release */
        struct archive_source *src;
        enum codec codec;
        struct od_conn conns[ONDEMAND_CONNECTIONS];
        unsigned n_conns;

        pthread_mutex_t lock;
        pthread_cond_t changed; /* a chunk's state, a connection, foreground, stopping */
        uint8_t *state;         /* per chunk of r */
        size_t n_present;
        uint32_t *by_offset; /* chunk indices in archive order */
        size_t *rank;        /* a chunk's place in by_offset */
        struct stream streams[STREAMS];
        uint64_t clock;
        struct ahead queue[PREFETCH_QUEUE];
        unsigned queue_head, queue_len;
        pthread_t prefetchers[PREFETCHERS];
        unsigned n_prefetchers;
        unsigned foreground; /* reads' fetches in flight: the fill waits */
        bool described;       /* the description is in the store */
        atomic_bool stopping;
        bool filler_started;
        pthread_t filler;
};

static int by_archive_offset(const void *a, const void *b, void *chunks)
{
        const struct chunk *c = chunks;
        uint64_t x = c[*(const uint32_t *)a].archive_offset, y = c[*(const uint32_t *)b].archive_offset;

        return x < y ? -1 : x > y;
}

static struct od_conn *take_conn(struct ondemand *od)
{
        for (;;) {
                for (unsigned i = 0; i < od->n_conns; i++)
                        if (!od->conns[i].busy) {
                                od->conns[i].busy = true;
                                return &od->conns[i];
                        }
                pthread_cond_wait(&od->changed, &od->lock);
        }
}

/* One range being fetched: its chunks are made durable and present a
 * piece at a time, so that a read waiting on one goes on before the range
 * is over, and a killed fetch of a long range keeps what it had. */
#define SETTLE_BYTES (1u << 20)

struct fetched {
        struct ondemand *od;
        const uint32_t *indices; /* the range's chunks */
        size_t n;
        size_t stored;  /* indices[0..stored) are in the batch or settled */
        size_t settled; /* indices[0..settled) are present */
        int err;        /* a commit's failure */
        bool complete;  /* the last chunk of the release came in */
};

/* Commits the batch: the chunks in it become present, readers waiting on
 * them go on. With last, the chunks never stored go back to missing. */
static void settle(struct fetched *x, struct store_batch *b, bool last)
{
        struct ondemand *od = x->od;
        int err = b->n ? store_batch_commit(b) : 0;

        if (err < 0) {
                store_batch_discard(b);
                x->stored = x->settled; /* none of those became durable */
                x->err = err;
        }
        pthread_mutex_lock(&od->lock);
        for (size_t i = x->settled; i < x->stored; i++)
                od->state[x->indices[i]] = OD_PRESENT;
        od->n_present += x->stored - x->settled;
        x->settled = x->stored;
        if (last)
                for (size_t i = x->stored; i < x->n; i++)
                        od->state[x->indices[i]] = OD_MISSING;
        if (od->n_present == od->r->n_chunks && !od->described)
                x->complete = od->described = true;
        pthread_cond_broadcast(&od->changed);
        pthread_mutex_unlock(&od->lock);
}

static int mark_stored(struct chunk_fetch *f, size_t index)
{
        struct fetched *x = f->opaque;

        x->stored = index + 1;
        if (f->batch->bytes >= SETTLE_BYTES && x->err == 0)
                settle(x, f->batch, false);
        return x->err;
}

/* The chunks picked (lock held): idx, then those after it in the archive
 * that are missing and follow on byte for byte, up to max bytes in all. */
static size_t pick_range(struct ondemand *od, uint32_t idx, uint64_t max, const struct chunk **picked,
                         uint32_t *indices)
{
        const struct chunk *first = &od->r->chunks[idx];
        uint64_t end = first->archive_offset + first->archive_size;
        size_t n = 0;

        picked[n] = first;
        indices[n++] = idx;
        for (size_t k = od->rank[idx] + 1; k < od->r->n_chunks; k++) {
                uint32_t j = od->by_offset[k];
                const struct chunk *c = &od->r->chunks[j];
                if (n == RANGE_MAX_CHUNKS || od->state[j] != OD_MISSING || c->archive_offset != end ||
                    end + c->archive_size - first->archive_offset > max)
                        break;
                picked[n] = c;
                indices[n++] = j;
                end += c->archive_size;
        }
        return n;
}

/* Every chunk durable, then the description: the release is complete. */
static void describe(struct ondemand *od)
{
        int err = store_sync(od->store);

        if (err == 0)
                err = release_file_write(od->store, od->name, od->r);
        if (err < 0) {
                log_errno(err, "%s: every chunk is in the store, but its description cannot be written", od->arg);
                return;
        }
        log_info("%s: every chunk is in the store: it is now an ordinary release", od->arg);
}

/* The stream a read at archive offset at continues, or a new one in
 * place of the least recently used; its next range's length. (lock held) */
static unsigned stream_of(struct ondemand *od, uint64_t at)
{
        unsigned s = 0;

        for (unsigned i = 0; i < STREAMS; i++) {
                if (od->streams[i].next == at) {
                        s = i;
                        uint64_t r = od->streams[s].range * 2;
                        od->streams[s].range = r < FETCH_MAX_RANGE ? r : FETCH_MAX_RANGE;
                        od->streams[s].used = ++od->clock;
                        return s;
                }
                if (od->streams[i].used < od->streams[s].used)
                        s = i;
        }
        od->streams[s] = (struct stream){ UINT64_MAX, RANGE_FIRST, ++od->clock };
        return s;
}

/* Asks a prefetcher for the range after the one just picked for stream s,
 * if it is missing and follows on. (lock held) */
static void queue_ahead(struct ondemand *od, unsigned s, uint32_t last)
{
        size_t k = od->rank[last] + 1;

        if (k >= od->r->n_chunks || od->queue_len == PREFETCH_QUEUE || od->n_prefetchers == 0)
                return;
        uint32_t next = od->by_offset[k];
        if (od->state[next] != OD_MISSING || od->r->chunks[next].archive_offset != od->streams[s].next)
                return;
        od->queue[(od->queue_head + od->queue_len++) % PREFETCH_QUEUE] = (struct ahead){ next, s };
        pthread_cond_broadcast(&od->changed);
}

/* Fetches idx with the missing chunks that follow it, and stores them: for
 * a read (FETCH_READ: as far as its stream has grown, s ignored), ahead of
 * stream s's reader (FETCH_AHEAD: as far as that stream, unless it has
 * moved on), or for the fill (max bytes of the archive). Returns 0 once idx
 * is in the store, -EIO when it could not be fetched (said why). */
static int fetch_chunk(struct ondemand *od, uint32_t idx, enum fetch_kind kind, uint64_t max, unsigned s)
{
        const struct chunk *c = &od->r->chunks[idx];
        bool waited = false;
        int err;

        pthread_mutex_lock(&od->lock);
        if (kind == FETCH_AHEAD && (od->state[idx] != OD_MISSING || od->streams[s].next != c->archive_offset)) {
                pthread_mutex_unlock(&od->lock); /* a read got there first, or the reader went elsewhere */
                return 0;
        }
        while (od->state[idx] == OD_FETCHING) {
                pthread_cond_wait(&od->changed, &od->lock);
                waited = true;
        }
        if (od->state[idx] == OD_PRESENT || waited) {
                /* Fetched meanwhile, or its fetch failed: that one answered for it. */
                err = od->state[idx] == OD_PRESENT ? 0 : -EIO;
                pthread_mutex_unlock(&od->lock);
                return err;
        }
        if (kind == FETCH_READ)
                s = stream_of(od, c->archive_offset);
        if (kind != FETCH_FILL)
                max = od->streams[s].range;
        _cleanup_free_ const struct chunk **picked = calloc(RANGE_MAX_CHUNKS, sizeof(*picked));
        _cleanup_free_ uint32_t *indices = calloc(RANGE_MAX_CHUNKS, sizeof(*indices));
        if (!picked || !indices) {
                pthread_mutex_unlock(&od->lock);
                log_errno(-ENOMEM, "%s: cannot fetch a chunk", od->arg);
                return -EIO;
        }
        size_t n = pick_range(od, idx, max, picked, indices);
        for (size_t i = 0; i < n; i++)
                od->state[indices[i]] = OD_FETCHING;
        uint64_t start = c->archive_offset, len = picked[n - 1]->archive_offset + picked[n - 1]->archive_size - start;
        if (kind != FETCH_FILL)
                od->streams[s].next = start + len;
        if (kind == FETCH_READ) {
                od->foreground++;
                /* A reader past its first range reads on: fetch its next one meanwhile. */
                if (od->streams[s].range > RANGE_FIRST)
                        queue_ahead(od, s, indices[n - 1]);
        }
        struct od_conn *conn = take_conn(od);
        pthread_mutex_unlock(&od->lock);

        struct store_batch batch;
        struct fetched x = { .od = od, .indices = indices, .n = n };
        struct chunk_fetch f = {
                .store = od->store, .hash_len = od->r->hash_len, .where = od->where, .codec = od->codec,
                .decoder = conn->decoder, .batch = &batch, .chunks = picked, .n_chunks = n,
                .cancel = &od->stopping, .stored = mark_stored, .opaque = &x,
        };
        store_batch_init(&batch, od->store);
        err = chunk_fetch_range(&conn->conn, start, len, &f);
        /* What was checked is kept, even when the range failed further on. */
        settle(&x, &batch, true);
        store_batch_free(&batch);

        pthread_mutex_lock(&od->lock);
        conn->busy = false;
        if (kind == FETCH_READ)
                od->foreground--;
        pthread_cond_broadcast(&od->changed);
        pthread_mutex_unlock(&od->lock);

        if (x.complete)
                describe(od);
        if (x.settled > 0)
                return 0;
        if (!atomic_load(&od->stopping))
                log_error("%s: chunk at archive offset %llu of %s could not be fetched (%s): its reads fail with "
                          "EIO until it can be",
                          od->arg, (unsigned long long)c->archive_offset, od->where,
                          strerror(-(x.err < 0 ? x.err : err < 0 ? err : EIO)));
        return -EIO;
}

static int od_fetch(struct chunk_provider *p, uint32_t idx)
{
        return fetch_chunk((struct ondemand *)p, idx, FETCH_READ, 0, 0);
}

/* Waits up to secs, or until stopping: false once stopping. */
static bool pause_unless_stopping(struct ondemand *od, unsigned secs)
{
        struct timespec until;

        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += secs;
        pthread_mutex_lock(&od->lock);
        while (!atomic_load(&od->stopping) && pthread_cond_timedwait(&od->changed, &od->lock, &until) == 0)
                ;
        pthread_mutex_unlock(&od->lock);
        return !atomic_load(&od->stopping);
}

/* The fill: every missing chunk in archive order, in ranges of FILL_RANGE,
 * each started only while no read waits on a fetch. */
static void *fill(void *arg)
{
        struct ondemand *od = arg;
        unsigned retry = FILL_RETRY_FIRST_S;

        for (size_t k = 0; k < od->r->n_chunks && !atomic_load(&od->stopping);) {
                uint32_t idx = od->by_offset[k];
                pthread_mutex_lock(&od->lock);
                while (od->foreground > 0 && !atomic_load(&od->stopping))
                        pthread_cond_wait(&od->changed, &od->lock);
                bool present = od->state[idx] == OD_PRESENT;
                pthread_mutex_unlock(&od->lock);
                if (present || fetch_chunk(od, idx, FETCH_FILL, FILL_RANGE, 0) == 0) {
                        k++;
                        retry = FILL_RETRY_FIRST_S;
                        continue;
                }
                if (atomic_load(&od->stopping))
                        break;
                log_warn("%s: filling goes on in %u s", od->arg, retry);
                if (!pause_unless_stopping(od, retry))
                        break;
                retry = retry * 2 < FILL_RETRY_MOST_S ? retry * 2 : FILL_RETRY_MOST_S;
        }
        return NULL;
}

static void *prefetch(void *arg)
{
        struct ondemand *od = arg;

        pthread_mutex_lock(&od->lock);
        for (;;) {
                while (od->queue_len == 0 && !atomic_load(&od->stopping))
                        pthread_cond_wait(&od->changed, &od->lock);
                if (atomic_load(&od->stopping))
                        break;
                struct ahead a = od->queue[od->queue_head];
                od->queue_head = (od->queue_head + 1) % PREFETCH_QUEUE;
                od->queue_len--;
                pthread_mutex_unlock(&od->lock);
                fetch_chunk(od, a.idx, FETCH_AHEAD, 0, a.stream);
                pthread_mutex_lock(&od->lock);
        }
        pthread_mutex_unlock(&od->lock);
        return NULL;
}

static void od_free(struct chunk_provider *p)
{
        struct ondemand *od = (struct ondemand *)p;

        pthread_mutex_lock(&od->lock);
        atomic_store(&od->stopping, true);
        pthread_cond_broadcast(&od->changed);
        pthread_mutex_unlock(&od->lock);
        if (od->filler_started)
                pthread_join(od->filler, NULL);
        for (unsigned i = 0; i < od->n_prefetchers; i++)
                pthread_join(od->prefetchers[i], NULL);
        for (unsigned i = 0; i < od->n_conns; i++) {
                source_conn_close(&od->conns[i].conn);
                decoder_free(od->conns[i].decoder);
        }
        archive_source_close(od->src);
        pthread_cond_destroy(&od->changed);
        pthread_mutex_destroy(&od->lock);
        free(od->state);
        free(od->by_offset);
        free(od->rank);
        free(od->arg);
        free(od->name);
        free(od);
}

int ondemand_start(struct image_map *m)
{
        struct ondemand *od = (struct ondemand *)m->provider;
        int err;

        if (!od || od->n_present == od->r->n_chunks)
                return 0;
        for (unsigned i = 0; i < PREFETCHERS; i++) {
                pthread_mutex_lock(&od->lock);
                err = pthread_create(&od->prefetchers[od->n_prefetchers], NULL, prefetch, od);
                od->n_prefetchers += err == 0;
                pthread_mutex_unlock(&od->lock);
                if (err)
                        return log_errno(-err, "%s: cannot start a prefetcher", od->arg);
        }
        if (!od->fill || od->described)
                return 0;
        err = pthread_create(&od->filler, NULL, fill, od);
        if (err)
                return log_errno(-err, "%s: cannot start the fill", od->arg);
        od->filler_started = true;
        return 0;
}

/* The archive's connections and header (trusted as clone trusts it). */
static int open_archive(struct ondemand *od, const struct ondemand_options *o, struct store *store,
                        struct archive **out)
{
        struct archive_trust trust = {
                .source = o->source, .http = &od->http, .trusted = o->trusted, .signature = o->signature,
                .allow_downgrade = o->allow_downgrade,
        };
        int err = archive_source_open(o->source, &od->http, &od->src);

        if (err < 0)
                return err;
        od->where = od->src->where;
        unsigned n = od->src->is_http ? ONDEMAND_CONNECTIONS : 2;
        for (unsigned i = 0; i < n; i++) {
                err = source_conn_open(od->src, &od->conns[i].conn);
                if (err < 0)
                        return log_errno(err, "cannot set up a connection to %s", od->where);
                od->n_conns++;
        }
        err = archive_trust_read_header(&trust, store, od->src, &od->conns[0].conn, out, NULL);
        if (err < 0)
                return err;
        od->codec = (*out)->codec;
        for (unsigned i = 0; i < od->n_conns; i++) {
                err = decoder_new(od->codec, &od->conns[i].decoder);
                if (err < 0)
                        return log_errno(err, "cannot create a decoder");
        }
        return 0;
}

/* A release NAME already in the store must be this archive's image. */
static int check_existing(struct ondemand *od, struct store *store, const struct release *r)
{
        struct release *have = NULL;
        int err;

        if (!store_release_exists(store, od->name))
                return 0;
        err = release_file_read(store, od->name, &have);
        if (err < 0)
                return err;
        bool same = have->source_total_size == r->source_total_size &&
                    have->source_checksum_len == r->source_checksum_len &&
                    memcmp(have->source_checksum, r->source_checksum, r->source_checksum_len) == 0;
        release_free(have);
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
        od->by_offset = calloc(n, sizeof(*od->by_offset));
        od->rank = calloc(n, sizeof(*od->rank));
        if (!st || !od->state || !od->by_offset || !od->rank)
                return log_errno(-ENOMEM, "cannot map release %s", od->arg);
        err = image_map_scan(m, st, od->arg);
        if (err < 0)
                return err;
        for (size_t i = 0; i < r->n_chunks; i++) {
                od->state[i] = st[i] == CHUNK_PRESENT ? OD_PRESENT : OD_MISSING;
                od->n_present += st[i] == CHUNK_PRESENT;
                od->by_offset[i] = (uint32_t)i;
        }
        qsort_r(od->by_offset, r->n_chunks, sizeof(*od->by_offset), by_archive_offset, r->chunks);
        for (size_t k = 0; k < r->n_chunks; k++)
                od->rank[od->by_offset[k]] = k;
        return 0;
}

static int open_locked(struct ondemand *od, const struct ondemand_options *o, bool verify, struct store *store,
                       struct image_map **out)
{
        _cleanup_archive_ struct archive *a = NULL;
        _cleanup_free_ uint8_t *desc = NULL;
        struct image_map *m = NULL;
        size_t desc_len;
        int err;

        err = open_archive(od, o, store, &a);
        if (err < 0)
                return err;
        err = check_existing(od, store, a->release);
        if (err == 0)
                err = release_file_encode(a->release, &desc, &desc_len);
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
        err = store_use_begin(store, od->name, desc, desc_len, &m->use);
        if (err == 0)
                err = take_stock(od, m);
        return err;
}

int ondemand_open(const char *arg, const struct ondemand_options *o, bool verify, struct image_map **out,
                  char **name)
{
        _cleanup_free_ char *store_path = NULL;
        struct ondemand *od = calloc(1, sizeof(*od));
        struct store *store = NULL;
        struct image_map *m = NULL;
        char size[32];
        int err;

        *out = NULL;
        if (!od)
                return -ENOMEM;
        od->provider = (struct chunk_provider){ od_fetch, od_free };
        od->http = o->http;
        od->http.cancel = &od->stopping;
        od->fill = o->fill;
        for (unsigned i = 0; i < STREAMS; i++)
                od->streams[i] = (struct stream){ UINT64_MAX, RANGE_FIRST, 0 };
        pthread_mutex_init(&od->lock, NULL);
        pthread_cond_init(&od->changed, NULL);
        od->arg = strdup(arg);
        err = od->arg ? store_split_release_path(arg, &store_path, &od->name) : -ENOMEM;
        if (err == 0)
                err = store_open(store_path, true, &store);
        if (err == 0)
                err = store_lock(store, STORE_LOCK_SHARED);
        if (err == 0)
                err = open_locked(od, o, verify, store, &m);
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
        uint64_t missing_bytes = 0;
        for (size_t i = 0; i < od->r->n_chunks; i++)
                if (od->state[i] != OD_PRESENT)
                        missing_bytes += od->r->chunks[i].archive_size;
        log_info("%s: on demand from %s: %zu of %zu chunks in the store, %s of the archive to fetch as read%s",
                 arg, od->where, od->n_present, od->r->n_chunks, format_size(missing_bytes, size, sizeof(size)),
                 od->fill ? " or filled" : "");
        if (od->n_present == od->r->n_chunks && !od->described) {
                od->described = true;
                describe(od);
        }
        if (name) {
                *name = strdup(od->name);
                if (!*name) {
                        image_map_free(m);
                        return -ENOMEM;
                }
        }
        *out = m;
        return 0;
}
