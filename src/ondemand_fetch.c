// SPDX-License-Identifier: MIT
#include "ondemand_fetch.h"

#include "chunk_fetch.h"
#include "fetch_plan.h"
#include "log.h"
#include "release_file.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* A sequential reader's next range is queued with its own, so that
 * fetching, decompressing, hashing and storing overlap with its reading;
 * at most this many such ranges wait for a worker. */
#define AHEAD_QUEUED_MAX 8u
/* The fill's ranges: short enough that a read waiting for a worker waits
 * little longer than for its own range. */
#define FILL_RANGE (4u << 20)
/* A fetched chunk becomes durable and takes its place in the store with
 * its batch (one syncfs each) of about this many bytes: what a killed fetch
 * loses. */
#define SETTLE_BYTES (2u << 20)
/* Until then it is readable from its temp file as soon as it is checked,
 * through one of at most this many descriptors (the rest of the process's
 * reserve, fd_cache.h, is for sockets and files being written). */
#define EARLY_MAX 128u

/* (lock held, as for everything that touches state) */
void od_set_state(struct ondemand *od, uint32_t idx, uint8_t s)
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
void od_now_present(struct ondemand *od, uint32_t idx)
{
        od_set_state(od, idx, OD_PRESENT);
        if (od->n_zeros && !od->zeros_started && od->n_present + od->n_zeros == od->r->n_chunks) {
                od->zeros_due = od->zeros_started = true;
                pthread_cond_broadcast(&od->work);
        }
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
        od_now_present(od, idx);
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
                od_set_state(od, j->indices[i], OD_FETCHING);
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

/* Takes the job holding idx out of q: it, or NULL when none there does. */
static struct job *take_job_holding(struct job_queue *q, uint32_t idx)
{
        for (struct job **pp = &q->head; *pp; pp = &(*pp)->next) {
                struct job *j = *pp;
                for (size_t i = 0; i < j->n; i++) {
                        if (j->indices[i] != idx)
                                continue;
                        if (!(*pp = j->next))
                                q->tail = pp;
                        return j;
                }
        }
        return NULL;
}

bool od_unqueue(struct ondemand *od, uint32_t idx)
{
        struct job *j = take_job_holding(&od->reads, idx);

        if (j)
                od->foreground--;
        else if ((j = take_job_holding(&od->aheads, idx)))
                od->n_aheads--;
        else
                return false;
        for (size_t i = 0; i < j->n; i++)
                od_set_state(od, j->indices[i], OD_MISSING);
        free(j);
        pthread_cond_broadcast(&od->work); /* the fill waits while a read is queued */
        return true;
}

/* Queues a read's fetch of idx (and of the range after it, for a reader
 * that reads on). */
int od_queue_read(struct ondemand *od, uint32_t idx)
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
                        od_set_state(od, j->indices[i], gone);
                else
                        od_now_present(od, j->indices[i]);
        }
        if (err < 0)
                x->stored = x->settled; /* none of those became durable */
        else
                x->settled = x->stored;
        if (last)
                for (size_t i = x->stored; i < j->n; i++)
                        od_set_state(od, j->indices[i], gone);
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
                        od_set_state(od, idx, OD_VERIFIED);
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
int od_holds_image(struct store *store, const char *name, const struct release *r, bool *same)
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
void od_describe(struct ondemand *od)
{
        bool same;
        int err = store_sync(od->store);

        /* Written under the shared store lock, as a clone writes its own: a
         * gc (exclusive) would otherwise remove the description's temp file
         * as a killed clone's, or find the release appear between its
         * listing of the releases and its scan of the store, and refuse. A
         * gc running makes this wait for its end, as it makes a clone. */
        if (err == 0)
                err = store_lock(od->store, STORE_LOCK_SHARED);
        if (err == 0) {
                err = store_release_create(od->store, od->name, od->desc, od->desc_len);
                store_unlock(od->store);
        }
        if (err == 0) {
                log_info("%s: every chunk is in the store: it is now an ordinary release", od->arg);
                return;
        }
        if (err == -EEXIST && (err = od_holds_image(od->store, od->name, od->r, &same)) == 0) {
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

/* A job failed at its chunk first: said once. A transfer's failure (why)
 * here, with what it means for the reads; any other was said where it
 * happened (a chunk's hash, the store), and what it means here is a
 * warning. */
static void say_failure(struct ondemand *od, const struct job *j, size_t first, int err, const char *why)
{
        unsigned long long at = j->picked[first]->archive_offset;

        if (j->kind == JOB_READ && why[0])
                log_error("%s: chunk at archive offset %llu could not be fetched (%s): its reads fail with EIO until "
                          "it can be",
                          od->arg, at, why);
        else if (j->kind == JOB_READ)
                log_warn("%s: chunk at archive offset %llu of %s could not be fetched (%s): its reads fail with EIO "
                         "until it can be",
                         od->arg, at, od->where, strerror(-err));
        else
                log_warn("%s: chunks from archive offset %llu could not be fetched (%s)", od->arg, at,
                         why[0] ? why : strerror(-err));
}

/* Fetches the job's range into the store: true when every chunk came in.
 * A stop is no failure. */
static bool run_job(struct ondemand *od, struct od_worker *w, const struct job *j)
{
        struct store_batch batch;
        struct fetched x = { .od = od, .job = j };
        char why[1024];
        struct chunk_fetch f = {
                .store = od->store, .hash_len = od->r->hash_len, .where = od->where, .codec = od->codec,
                .decoder = w->decoder, .batch = &batch, .chunks = j->picked, .n_chunks = j->n,
                .cancel = &od->stopping, .why = why, .why_size = sizeof(why), .stored = mark_stored, .opaque = &x,
        };
        bool said = false;

        store_batch_init(&batch, od->store);
        int err = chunk_fetch_range(&w->conn, j->start, j->len, &f);
        /* Said before settling wakes the reads that it fails. */
        if (err < 0 && x.stored < j->n && !atomic_load(&od->stopping)) {
                say_failure(od, j, x.stored, x.err < 0 ? x.err : err, x.err < 0 ? "" : why);
                said = true;
        }
        /* What was checked is kept, even when the range failed further on. */
        settle(&x, &batch, true);
        store_batch_free(&batch);
        if (x.settled == j->n || atomic_load(&od->stopping))
                return true;
        if (!said) /* the last batch could not be made durable */
                say_failure(od, j, x.settled, x.err < 0 ? x.err : -EIO, "");
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
                if (od->zeros_due) {
                        od->zeros_due = false; /* zeros_started stays: once */
                        pthread_mutex_unlock(&od->lock);
                        od_write_zeros(od);
                        pthread_mutex_lock(&od->lock);
                        continue;
                }
                if (od->describe_due) {
                        od->describe_due = false;
                        pthread_mutex_unlock(&od->lock);
                        od_describe(od);
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

void *od_work(void *arg)
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

void od_drop_queued(struct ondemand *od)
{
        for (struct job *j; (j = pop(&od->reads)) || (j = pop(&od->aheads));)
                free(j);
}

void od_write_zeros(struct ondemand *od)
{
        const struct release *r = od->r;
        struct store_batch b;
        int err = 0;

        store_batch_init(&b, od->store);
        for (size_t k = 0; k < od->n_zeros && err == 0 && !atomic_load(&od->stopping); k++)
                err = store_batch_add_zeros(&b, &r->chunks[od->zeros[k]], r->hash_len);
        if (err == 0 && !atomic_load(&od->stopping))
                err = store_batch_commit(&b);
        else if (err == 0)
                err = -ECANCELED;
        if (err < 0) {
                store_batch_discard(&b);
                if (err != -ECANCELED)
                        log_warn("%s: its chunks of zeros cannot be written into the store: they are fetched as the "
                                 "rest",
                                 od->arg);
        }
        store_batch_free(&b);
        pthread_mutex_lock(&od->lock);
        for (size_t k = 0; k < od->n_zeros; k++) {
                if (err < 0)
                        od_set_state(od, od->zeros[k], OD_MISSING);
                else
                        od_now_present(od, od->zeros[k]);
        }
        pthread_mutex_unlock(&od->lock);
}
