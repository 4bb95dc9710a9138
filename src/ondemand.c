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
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* Workers, each with its connection to the archive: fetches at once. */
#define HTTP_WORKERS 4u
#define FILE_WORKERS 2u
/* A read's fetch: at least its chunk, and the missing ones after it up to
 * this much of the archive; doubled for each read that follows on from the
 * last of its stream, up to FETCH_MAX_RANGE (the read-ahead of a sequential
 * reader). */
#define RANGE_FIRST (256u << 10)
/* Sequential readers told apart (a kernel or nbdcopy reads several regions
 * at once); the least recently used makes room for a new one. */
#define STREAMS 8u
/* A sequential reader's next range is queued with its own, so that
 * fetching, decompressing, hashing and storing overlap with its reading;
 * at most this many such ranges wait for a worker. */
#define AHEAD_QUEUED_MAX 8u
/* Chunks in one fetch at most (a range of tiny compressed chunks). */
#define RANGE_MAX_CHUNKS 1024u
/* The fill's ranges: short enough that a read waiting for a worker waits
 * little longer than for its own range. */
#define FILL_RANGE (4u << 20)
/* The fill waits this long after a failure, doubling up to the most. */
#define FILL_RETRY_FIRST_S 1u
#define FILL_RETRY_MOST_S 30u
/* A fetched chunk becomes durable and takes its place in the store with
 * its batch (one syncfs each) of about this many bytes: what a killed fetch
 * loses. */
#define SETTLE_BYTES (2u << 20)
/* Until then it is readable from its temp file as soon as it is checked,
 * through one of at most this many descriptors (the rest of the process's
 * reserve, fd_cache.h, is for sockets and files being written). */
#define EARLY_MAX 128u

#define WAIT_SLOTS 64u

enum {
        OD_MISSING,  /* not in the store: a read or the fill fetches it */
        OD_FAILED,   /* missing, and a read's fetch of it failed: the reads waiting on it fail */
        OD_FETCHING, /* in a job, queued or running */
        OD_VERIFIED, /* checked, readable through early[], not yet durable */
        OD_PRESENT,  /* durable, in the store */
};

static bool fetchable(uint8_t state)
{
        return state == OD_MISSING || state == OD_FAILED;
}

enum job_kind { JOB_READ, JOB_AHEAD, JOB_FILL };

/* A range of the archive to fetch: chunks back to back, in archive order. */
struct job {
        struct job *next;
        enum job_kind kind;
        uint64_t start, len;
        size_t n;
        uint32_t indices[RANGE_MAX_CHUNKS];
        const struct chunk *picked[RANGE_MAX_CHUNKS];
};

struct job_queue {
        struct job *head, **tail;
};

struct stream {
        uint64_t next;  /* where in the archive its last range ended */
        uint64_t range; /* its next range's length */
        uint64_t used;  /* od->clock when last used */
};

struct od_worker {
        struct ondemand *od;
        struct source_conn conn;
        struct decoder *decoder;
        pthread_t thread;
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
        struct od_worker workers[HTTP_WORKERS];
        unsigned n_conns;   /* workers with a connection */
        unsigned n_started; /* workers running */

        pthread_mutex_t lock;
        /* Readers wait for a chunk on the slot of its index: a chunk that
         * comes in wakes those that may wait for it, not every reader. */
        pthread_cond_t arrived[WAIT_SLOTS];
        pthread_cond_t work;    /* a job, a job done, stopping: for workers */
        uint8_t *state;         /* per chunk of r */
        int *early;             /* per chunk: its temp file while OD_VERIFIED, else -1 */
        unsigned n_early;
        size_t n_present, n_missing;
        uint32_t *by_offset; /* chunk indices in archive order */
        size_t *rank;        /* a chunk's place in by_offset */
        struct stream streams[STREAMS];
        uint64_t clock;
        struct job_queue reads, aheads;
        unsigned n_aheads;
        unsigned foreground; /* read jobs queued or running: the fill waits */
        unsigned filling, fill_max;
        size_t fill_cursor;  /* in by_offset */
        struct timespec fill_after;
        unsigned fill_retry;
        bool described;     /* the description is in the store, or a worker is to write it */
        bool describe_due;  /* for the next worker free */
        uint8_t *desc;      /* the description, as it is to be written */
        size_t desc_len;
        atomic_bool stopping;
};

static int by_archive_offset(const void *a, const void *b, void *chunks)
{
        const struct chunk *c = chunks;
        uint64_t x = c[*(const uint32_t *)a].archive_offset, y = c[*(const uint32_t *)b].archive_offset;

        return x < y ? -1 : x > y;
}

/* (lock held, as for everything that touches state) */
static void set_state(struct ondemand *od, uint32_t idx, uint8_t s)
{
        uint8_t was = od->state[idx];

        od->n_missing -= fetchable(was);
        od->n_missing += fetchable(s);
        od->n_present -= was == OD_PRESENT;
        od->n_present += s == OD_PRESENT;
        if (was == OD_VERIFIED) {
                close(od->early[idx]);
                od->early[idx] = -1;
                od->n_early--;
        }
        od->state[idx] = s;
        if (s != OD_FETCHING)
                pthread_cond_broadcast(&od->arrived[idx % WAIT_SLOTS]);
}

/* idx is in the store: when it was the last, a worker writes the description. */
static void now_present(struct ondemand *od, uint32_t idx)
{
        set_state(od, idx, OD_PRESENT);
        if (od->n_present == od->r->n_chunks && !od->described) {
                od->described = od->describe_due = true;
                pthread_cond_broadcast(&od->work);
        }
}

/* A chunk not fetched here may have been stored by another process since
 * (a clone into the same store): then it is not fetched again. */
static bool stored_meanwhile(struct ondemand *od, uint32_t idx)
{
        enum chunk_state st;

        if (store_chunk_state(od->store, &od->r->chunks[idx], od->r->hash_len, false, &st) < 0 ||
            st != CHUNK_PRESENT)
                return false;
        now_present(od, idx);
        return true;
}

static void push(struct job_queue *q, struct job *j)
{
        j->next = NULL;
        *q->tail = j;
        q->tail = &j->next;
}

static struct job *pop(struct job_queue *q)
{
        struct job *j = q->head;

        if (j && !(q->head = j->next))
                q->tail = &q->head;
        return j;
}

/* A job for idx, then those after it in the archive that are missing and
 * follow on byte for byte, up to max bytes in all; its chunks are marked
 * fetching. NULL when out of memory (said). */
static struct job *make_job(struct ondemand *od, uint32_t idx, uint64_t max, enum job_kind kind)
{
        const struct chunk *first = &od->r->chunks[idx];
        uint64_t end = first->archive_offset + first->archive_size;
        struct job *j = malloc(sizeof(*j));

        if (!j) {
                log_errno(-ENOMEM, "%s: cannot fetch a chunk", od->arg);
                return NULL;
        }
        j->kind = kind;
        j->n = 0;
        j->picked[j->n] = first;
        j->indices[j->n++] = idx;
        for (size_t k = od->rank[idx] + 1; k < od->r->n_chunks && j->n < RANGE_MAX_CHUNKS; k++) {
                uint32_t i = od->by_offset[k];
                const struct chunk *c = &od->r->chunks[i];
                if (!fetchable(od->state[i]) || c->archive_offset != end ||
                    end + c->archive_size - first->archive_offset > max || stored_meanwhile(od, i))
                        break;
                j->picked[j->n] = c;
                j->indices[j->n++] = i;
                end += c->archive_size;
        }
        for (size_t i = 0; i < j->n; i++)
                set_state(od, j->indices[i], OD_FETCHING);
        j->start = first->archive_offset;
        j->len = end - j->start;
        return j;
}

/* The stream a read at archive offset at continues, or a new one in
 * place of the least recently used. */
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

/* Queues the range that follows stream s's last, if it is missing and
 * follows on. */
static void queue_ahead(struct ondemand *od, unsigned s, uint32_t last)
{
        size_t k = od->rank[last] + 1;

        if (k >= od->r->n_chunks || od->n_aheads == AHEAD_QUEUED_MAX)
                return;
        uint32_t next = od->by_offset[k];
        if (!fetchable(od->state[next]) || od->r->chunks[next].archive_offset != od->streams[s].next ||
            stored_meanwhile(od, next))
                return;
        struct job *j = make_job(od, next, od->streams[s].range, JOB_AHEAD);
        if (!j)
                return;
        od->streams[s].next = j->start + j->len;
        push(&od->aheads, j);
        od->n_aheads++;
}

/* Queues a read's fetch of idx (and of the range after it, for a reader
 * that reads on). */
static int queue_read(struct ondemand *od, uint32_t idx)
{
        unsigned s = stream_of(od, od->r->chunks[idx].archive_offset);
        struct job *j = make_job(od, idx, od->streams[s].range, JOB_READ);

        if (!j)
                return -ENOMEM;
        od->streams[s].next = j->start + j->len;
        push(&od->reads, j);
        od->foreground++;
        if (od->streams[s].range > RANGE_FIRST)
                queue_ahead(od, s, j->indices[j->n - 1]);
        pthread_cond_broadcast(&od->work);
        return 0;
}

/* One job being fetched: each chunk is readable once checked, and becomes
 * durable and present with its batch. */
struct fetched {
        struct ondemand *od;
        const struct job *job;
        size_t stored;  /* the job's chunks [0, stored) are in the batch or settled */
        size_t settled; /* [0, settled) are present */
        int err;        /* a commit's failure */
};

/* Commits the batch: its chunks become present. With last, the chunks
 * never stored are missing again (failed, for a read's: its waiting reads
 * fail). */
static void settle(struct fetched *x, struct store_batch *b, bool last)
{
        struct ondemand *od = x->od;
        const struct job *j = x->job;
        uint8_t gone = j->kind == JOB_READ ? OD_FAILED : OD_MISSING;
        int err = b->n ? store_batch_commit(b) : 0;

        if (err < 0) {
                store_batch_discard(b);
                x->err = err;
        }
        pthread_mutex_lock(&od->lock);
        for (size_t i = x->settled; i < x->stored; i++) {
                if (err < 0)
                        set_state(od, j->indices[i], gone);
                else
                        now_present(od, j->indices[i]);
        }
        if (err < 0)
                x->stored = x->settled; /* none of those became durable */
        else
                x->settled = x->stored;
        if (last)
                for (size_t i = x->stored; i < j->n; i++)
                        set_state(od, j->indices[i], gone);
        pthread_mutex_unlock(&od->lock);
}

static int mark_stored(struct chunk_fetch *f, size_t index)
{
        struct fetched *x = f->opaque;
        struct ondemand *od = x->od;
        uint32_t idx = x->job->indices[index];

        /* Past the budget (or out of descriptors), readers wait for the batch. */
        pthread_mutex_lock(&od->lock);
        if (od->n_early < EARLY_MAX) {
                int fd = chunk_writer_open_finished(&f->writer);
                if (fd >= 0) {
                        set_state(od, idx, OD_VERIFIED);
                        od->early[idx] = fd;
                        od->n_early++;
                }
        }
        pthread_mutex_unlock(&od->lock);
        x->stored = index + 1;
        if (f->batch->bytes >= SETTLE_BYTES && x->err == 0)
                settle(x, f->batch, false);
        return x->err;
}

/* Does STORE/NAME hold the archive's image? */
static int holds_image(struct store *store, const char *name, const struct release *r, bool *same)
{
        struct release *have = NULL;
        int err = release_file_read(store, name, &have);

        if (err < 0)
                return err;
        *same = have->source_total_size == r->source_total_size &&
                have->source_checksum_len == r->source_checksum_len &&
                memcmp(have->source_checksum, r->source_checksum, r->source_checksum_len) == 0;
        release_free(have);
        return 0;
}

/* Every chunk durable, then the description: the release is complete. A
 * release under the name that appeared meanwhile (a clone) is kept. */
static void describe(struct ondemand *od)
{
        bool same;
        int err = store_sync(od->store);

        if (err == 0)
                err = store_release_create(od->store, od->name, od->desc, od->desc_len);
        if (err == 0) {
                log_info("%s: every chunk is in the store: it is now an ordinary release", od->arg);
                return;
        }
        if (err == -EEXIST && (err = holds_image(od->store, od->name, od->r, &same)) == 0) {
                if (same)
                        log_info("%s: every chunk is in the store, and the release was written meanwhile", od->arg);
                else
                        log_error("%s: every chunk is in the store, but a release of another image took the name "
                                  "meanwhile: it is left as it is",
                                  od->arg);
                return;
        }
        /* Why was said where it failed. */
        log_warn("%s: every chunk is in the store, but it is no release until its description is written (when "
                 "next opened)",
                 od->arg);
}

/* Fetches the job's range into the store: true when every chunk came in. */
static bool run_job(struct ondemand *od, struct od_worker *w, const struct job *j)
{
        struct store_batch batch;
        struct fetched x = { .od = od, .job = j };
        struct chunk_fetch f = {
                .store = od->store, .hash_len = od->r->hash_len, .where = od->where, .codec = od->codec,
                .decoder = w->decoder, .batch = &batch, .chunks = j->picked, .n_chunks = j->n,
                .cancel = &od->stopping, .stored = mark_stored, .opaque = &x,
        };

        store_batch_init(&batch, od->store);
        int err = chunk_fetch_range(&w->conn, j->start, j->len, &f);
        /* What was checked is kept, even when the range failed further on. */
        settle(&x, &batch, true);
        store_batch_free(&batch);
        if (x.settled == j->n || atomic_load(&od->stopping))
                return true;
        const struct chunk *c = j->picked[x.settled];
        err = x.err < 0 ? x.err : err < 0 ? err : -EIO;
        if (j->kind == JOB_READ)
                log_error("%s: chunk at archive offset %llu of %s could not be fetched (%s): its reads fail with "
                          "EIO until it can be",
                          od->arg, (unsigned long long)c->archive_offset, od->where, strerror(-err));
        else
                log_warn("%s: chunks from archive offset %llu of %s could not be fetched (%s)", od->arg,
                         (unsigned long long)c->archive_offset, od->where, strerror(-err));
        return false;
}

static bool fill_wanted(const struct ondemand *od)
{
        return od->fill && !od->described && od->n_missing > 0 && od->foreground == 0 && od->filling < od->fill_max;
}

/* The next missing chunk in archive order from the fill's cursor, as a
 * job, or NULL when every missing one is being fetched. */
static struct job *fill_job(struct ondemand *od)
{
        size_t n = od->r->n_chunks;

        for (size_t k = 0; k < n; k++) {
                size_t pos = (od->fill_cursor + k) % n;
                uint32_t idx = od->by_offset[pos];
                if (fetchable(od->state[idx]) && !stored_meanwhile(od, idx)) {
                        od->fill_cursor = pos;
                        return make_job(od, idx, FILL_RANGE, JOB_FILL);
                }
        }
        return NULL;
}

static bool before(const struct timespec *a, const struct timespec *b)
{
        return a->tv_sec < b->tv_sec || (a->tv_sec == b->tv_sec && a->tv_nsec < b->tv_nsec);
}

/* What a worker does next: reads first, then read-ahead, then the fill
 * (while no read waits); NULL once stopping. */
static struct job *next_job(struct ondemand *od)
{
        for (;;) {
                struct job *j;
                struct timespec now;
                if (atomic_load(&od->stopping))
                        return NULL;
                if (od->describe_due) {
                        od->describe_due = false;
                        pthread_mutex_unlock(&od->lock);
                        describe(od);
                        pthread_mutex_lock(&od->lock);
                        continue;
                }
                if ((j = pop(&od->reads)))
                        return j;
                if ((j = pop(&od->aheads))) {
                        od->n_aheads--;
                        return j;
                }
                if (!fill_wanted(od)) {
                        pthread_cond_wait(&od->work, &od->lock);
                        continue;
                }
                clock_gettime(CLOCK_MONOTONIC, &now);
                if (before(&now, &od->fill_after)) {
                        pthread_cond_timedwait(&od->work, &od->lock, &od->fill_after);
                        continue;
                }
                if ((j = fill_job(od))) {
                        od->filling++;
                        return j;
                }
                pthread_cond_wait(&od->work, &od->lock);
        }
}

static void job_done(struct ondemand *od, struct job *j, bool ok)
{
        if (j->kind == JOB_READ)
                od->foreground--;
        if (j->kind == JOB_FILL) {
                od->filling--;
                if (ok) {
                        od->fill_retry = FILL_RETRY_FIRST_S;
                } else if (!atomic_load(&od->stopping)) {
                        log_warn("%s: filling goes on in %u s", od->arg, od->fill_retry);
                        clock_gettime(CLOCK_MONOTONIC, &od->fill_after);
                        od->fill_after.tv_sec += od->fill_retry;
                        od->fill_retry = od->fill_retry * 2 < FILL_RETRY_MOST_S ? od->fill_retry * 2 : FILL_RETRY_MOST_S;
                }
        }
        free(j);
        pthread_cond_broadcast(&od->work);
}

static void *work(void *arg)
{
        struct od_worker *w = arg;
        struct ondemand *od = w->od;
        struct job *j;

        pthread_mutex_lock(&od->lock);
        while ((j = next_job(od))) {
                pthread_mutex_unlock(&od->lock);
                bool ok = run_job(od, w, j);
                pthread_mutex_lock(&od->lock);
                job_done(od, j, ok);
        }
        pthread_mutex_unlock(&od->lock);
        return NULL;
}

/* The provider's open: the chunk's file in the store, or its checked temp
 * file on the way there, fetched first if need be. */
static int od_open(struct chunk_provider *p, uint32_t idx)
{
        struct ondemand *od = (struct ondemand *)p;
        const struct chunk *c = &od->r->chunks[idx];
        bool waited = false;
        int fd;

        pthread_mutex_lock(&od->lock);
        for (;;) {
                uint8_t s = od->state[idx];
                if (s == OD_PRESENT || s == OD_VERIFIED || atomic_load(&od->stopping))
                        break;
                if (s == OD_FETCHING) {
                        pthread_cond_wait(&od->arrived[idx % WAIT_SLOTS], &od->lock);
                        waited = true;
                        continue;
                }
                /* The read's own fetch failed (said why); the chunk is
                 * fetched again by a later read. */
                if (s == OD_FAILED && waited)
                        break;
                if (od->n_started == 0 || queue_read(od, idx) < 0)
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
                now_present(od, idx);
        pthread_mutex_unlock(&od->lock);
}

static void od_free(struct chunk_provider *p)
{
        struct ondemand *od = (struct ondemand *)p;

        pthread_mutex_lock(&od->lock);
        atomic_store(&od->stopping, true);
        for (unsigned i = 0; i < WAIT_SLOTS; i++)
                pthread_cond_broadcast(&od->arrived[i]);
        pthread_cond_broadcast(&od->work);
        pthread_mutex_unlock(&od->lock);
        for (unsigned i = 0; i < od->n_started; i++)
                pthread_join(od->workers[i].thread, NULL);
        if (od->describe_due) /* the last chunk came in as it stopped */
                describe(od);
        for (struct job *j; (j = pop(&od->reads)) || (j = pop(&od->aheads));)
                free(j);
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

        if (!od || od->n_present == od->r->n_chunks)
                return 0;
        od->fill_max = od->n_conns > 2 ? od->n_conns - 2 : 1;
        /* The stop signals blocked in the fetching threads: one that the
         * caller takes through a signalfd (nbd_kernel.c blocks them in its
         * own thread only, later) must not fall to one of them and kill
         * the process with its default action. (Not every signal: a
         * SIGSEGV blocked would bypass ASan's handler.) */
        sigset_t stop, old;
        sigemptyset(&stop);
        sigaddset(&stop, SIGINT);
        sigaddset(&stop, SIGTERM);
        pthread_sigmask(SIG_BLOCK, &stop, &old);
        int err = 0;
        for (unsigned i = 0; i < od->n_conns && !err; i++) {
                pthread_mutex_lock(&od->lock);
                err = pthread_create(&od->workers[i].thread, NULL, work, &od->workers[i]);
                od->n_started += err == 0;
                pthread_mutex_unlock(&od->lock);
        }
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        if (err)
                return log_errno(-err, "%s: cannot start a fetching thread", od->arg);
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
        unsigned n = od->src->is_http ? HTTP_WORKERS : FILE_WORKERS;
        for (unsigned i = 0; i < n; i++) {
                err = source_conn_open(od->src, &od->workers[i].conn);
                if (err < 0)
                        return log_errno(err, "cannot set up a connection to %s", od->where);
                od->n_conns++;
        }
        err = archive_trust_read_header(&trust, store, od->src, &od->workers[0].conn, out, NULL);
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

/* A release NAME already in the store must be this archive's image. */
static int check_existing(struct ondemand *od, struct store *store, const struct release *r)
{
        bool same;
        int err;

        if (!store_release_exists(store, od->name))
                return 0;
        err = holds_image(store, od->name, r, &same);
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
        return 0;
}

static int open_locked(struct ondemand *od, const struct ondemand_options *o, bool verify, struct store *store,
                       struct image_map **out)
{
        _cleanup_archive_ struct archive *a = NULL;
        struct image_map *m = NULL;
        int err;

        err = open_archive(od, o, store, &a);
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
        err = store_use_begin(store, od->name, od->desc, od->desc_len, &m->use);
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
        od->provider = (struct chunk_provider){ od_open, od_found, od_free };
        od->http = o->http;
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
        for (unsigned i = 0; i < WAIT_SLOTS; i++)
                pthread_cond_init(&od->arrived[i], NULL);
        pthread_condattr_t monotonic;
        pthread_condattr_init(&monotonic);
        pthread_condattr_setclock(&monotonic, CLOCK_MONOTONIC); /* the fill's retry times */
        pthread_cond_init(&od->work, &monotonic);
        pthread_condattr_destroy(&monotonic);
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
