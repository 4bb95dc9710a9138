// SPDX-License-Identifier: MIT
#include "chunk_pipeline.h"

#include "byte_run.h"
#include "chunker.h"
#include "cleanup.h"
#include "log.h"
#include "progress.h"
#include "units.h"
#include "worker_pool.h"

#include <errno.h>
#include <linux/fs.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define READ_SIZE (1u << 20)
#define JOBS_PER_WORKER 8
#define MIN_JOBS 16
/* With small_memory: enough to keep the workers busy, and little more. */
#define SMALL_MEMORY_READ_SIZE (256u << 10)
#define SMALL_MEMORY_JOBS_PER_WORKER 3
/* The reader waits while this much chunk data is in flight, so that even
 * 16 MiB chunks (bita's maximum by default) keep memory bounded. */
#define MAX_BYTES_IN_FLIGHT (32u << 20)
/* A job keeps a chunk buffer up to this size for its next chunk; larger
 * ones go to a pool shared by all jobs, which keeps at most POOL_MAX bytes
 * (none with small_memory). Runs of large chunks (0xff of erased flash, at
 * bita's 16 MiB maximum) then reuse a few buffers instead of faulting fresh
 * pages in for every chunk, and memory stays bounded whatever the chunk
 * sizes. Chunks of zeros need no pool: see struct buffer. */
#define SMALL_BUFFER (1u << 20)
/* With small_memory, what a job's buffer keeps between chunks: page aligned,
 * twice bita's default average chunk. */
#define KEPT_WRITTEN (128u << 10)
#define POOL_MAX (32u << 20)
#define POOL_SLOTS 16

/* Chunks of one repeated byte (an image's unused space, zeros or 0xff, cut
 * at the maximum chunk size) come again and again with the same few sizes:
 * their hashes are kept by byte and size. Smaller ones are not worth the
 * lock. */
#define RUN_HASH_SLOTS 8
#define RUN_HASH_MIN_SIZE (64u << 10)

struct run_hash {
        size_t len;
        uint8_t byte;
        uint8_t hash[HASH_MAX_LEN];
};

enum job_state { JOB_FREE = 0, JOB_READY, JOB_WORKING, JOB_DONE };

/* written: how far from the start the buffer may hold anything but zeros.
 * Past it lie pages of the mapping never written, which the kernel fills
 * with zeros: zeros appended there need no copy and take no memory, so a
 * 16 MiB chunk of an image's unused space costs neither. */
struct buffer {
        uint8_t *data;
        size_t cap;
        size_t written;
};

struct pipeline {
        const struct pipeline_options *o;
        const struct pipeline_ops *ops;
        void *ctx;
        unsigned workers;
        struct pipeline_job *jobs;
        size_t n_jobs;
        pthread_mutex_t lock;
        pthread_cond_t cond_free, cond_ready, cond_done;
        uint64_t next_fill, next_work, next_complete; /* sequence numbers */
        bool eof;
        int err;
        size_t bytes_in_flight;
        atomic_uint_fast64_t bytes_read; /* also read by the progress tick */
        uint64_t size;                   /* of the input, when known: progress's total */
        struct buffer pool[POOL_SLOTS];
        size_t pool_n, pool_bytes;
        struct run_hash run_hashes[RUN_HASH_SLOTS];
        size_t n_run_hashes, next_run_hash;
};

/* Under p->lock: keeps a buffer for later chunks if the pool has room. */
static void pool_put(struct pipeline *p, struct buffer b)
{
        if (!b.data)
                return;
        if (!p->o->small_memory && p->pool_n < POOL_SLOTS && p->pool_bytes + b.cap <= POOL_MAX) {
                p->pool[p->pool_n++] = b;
                p->pool_bytes += b.cap;
                return;
        }
        munmap(b.data, b.cap);
}

/* Under p->lock: the smallest pooled buffer of at least need bytes. */
static bool pool_take(struct pipeline *p, size_t need, struct buffer *out)
{
        size_t best = SIZE_MAX;

        for (size_t i = 0; i < p->pool_n; i++)
                if (p->pool[i].cap >= need && (best == SIZE_MAX || p->pool[i].cap < p->pool[best].cap))
                        best = i;
        if (best == SIZE_MAX)
                return false;
        *out = p->pool[best];
        p->pool[best] = p->pool[--p->pool_n];
        p->pool_bytes -= out->cap;
        return true;
}

static void pipeline_fail(struct pipeline *p, int err)
{
        pthread_mutex_lock(&p->lock);
        if (p->err == 0)
                p->err = err;
        pthread_cond_broadcast(&p->cond_free);
        pthread_cond_broadcast(&p->cond_ready);
        pthread_cond_broadcast(&p->cond_done);
        pthread_mutex_unlock(&p->lock);
}

static int acquire_job(struct pipeline *p, struct pipeline_job **out)
{
        struct pipeline_job *job;
        int err;

        pthread_mutex_lock(&p->lock);
        for (;;) {
                job = &p->jobs[p->next_fill % p->n_jobs];
                if (p->err || (job->state == JOB_FREE && (p->bytes_in_flight < MAX_BYTES_IN_FLIGHT ||
                                                          p->next_complete == p->next_fill)))
                        break;
                pthread_cond_wait(&p->cond_free, &p->lock);
        }
        err = p->err;
        pthread_mutex_unlock(&p->lock);
        if (err)
                return err;
        job->seq = p->next_fill;
        job->len = 0;
        *out = job;
        return 0;
}

static void submit_job(struct pipeline *p, struct pipeline_job *job)
{
        pthread_mutex_lock(&p->lock);
        job->state = JOB_READY;
        p->bytes_in_flight += job->len;
        p->next_fill++;
        pthread_cond_broadcast(&p->cond_ready);
        pthread_mutex_unlock(&p->lock);
}

/* Chunk buffers are anonymous mappings grown with mremap: a chunk growing
 * to 16 MiB is never copied on the way, and only the pages written take
 * memory. A pooled buffer large enough is taken instead when there is one. */
static int job_reserve(struct pipeline *p, struct pipeline_job *job, size_t need)
{
        struct buffer b;
        bool pooled;
        void *data;
        size_t cap;

        if (need <= job->cap)
                return 0;
        /* A job holding zeros it never wrote grows its own mapping, which
         * keeps them: a pooled buffer's bytes are not zeros. */
        pthread_mutex_lock(&p->lock);
        pooled = job->len <= job->written && pool_take(p, need, &b);
        pthread_mutex_unlock(&p->lock);
        if (pooled) {
                if (job->len)
                        memcpy(b.data, job->data, job->len);
                pthread_mutex_lock(&p->lock);
                pool_put(p, (struct buffer){ job->data, job->cap, job->written });
                pthread_mutex_unlock(&p->lock);
                job->data = b.data;
                job->cap = b.cap;
                job->written = b.written > job->len ? b.written : job->len;
                return 0;
        }
        for (cap = job->cap ? job->cap : SMALL_BUFFER; cap < need; cap *= 2)
                ;
        if (job->data)
                data = mremap(job->data, job->cap, cap, MREMAP_MAYMOVE);
        else
                data = mmap(NULL, cap, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (data == MAP_FAILED)
                return -ENOMEM;
        job->data = data;
        job->cap = cap;
        return 0;
}

/* Past the written mark the buffer holds zeros already: only the blocks of
 * d that are not zeros are copied there, so a chunk that is mostly unused
 * space takes memory for its data only. */
#define SPARSE_BLOCK 4096u

static int job_append(struct pipeline *p, struct pipeline_job *job, const uint8_t *d, size_t n)
{
        int err = job_reserve(p, job, job->len + n);
        uint8_t *dst;
        size_t i = 0;

        if (err < 0)
                return err;
        dst = job->data + job->len; /* after the reserve, which may move it */
        if (job->len < job->written) {
                i = n < job->written - job->len ? n : job->written - job->len;
                memcpy(dst, d, i);
        }
        while (i < n) {
                size_t pos = job->len + i;
                size_t block = SPARSE_BLOCK - pos % SPARSE_BLOCK;
                if (block > n - i)
                        block = n - i;
                if (!byte_run_all(d + i, block, 0)) {
                        memcpy(dst + i, d + i, block);
                        job->written = pos + block;
                }
                i += block;
        }
        job->len += n;
        return 0;
}

static int reader_run(struct pipeline *p)
{
        _cleanup_chunker_ struct chunker *chunker = NULL;
        const size_t read_size = p->o->small_memory ? SMALL_MEMORY_READ_SIZE : READ_SIZE;
        _cleanup_free_ uint8_t *buf = malloc(read_size);
        struct pipeline_job *job = NULL;
        uint64_t offset = 0;
        int err;

        if (!buf)
                return log_errno(-ENOMEM, "reading %s", p->o->where);
        err = chunker_new(p->o->chunker, &chunker);
        if (err < 0)
                return err;
        for (;;) {
                ssize_t n = read(p->o->fd, buf, read_size);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        if (!p->o->tolerate_read_errors)
                                return log_errno(-errno, "cannot read %s", p->o->where);
                        log_warn("cannot read %s after %llu bytes: %s; using what was read", p->o->where,
                                 (unsigned long long)offset, strerror(errno));
                        /* The chunk cut short by the error is not a real chunk:
                         * its slot is simply never submitted. */
                        if (job)
                                job->len = 0;
                        job = NULL;
                        break;
                }
                if (n == 0)
                        break;
                atomic_fetch_add_explicit(&p->bytes_read, (uint64_t)n, memory_order_relaxed);
                const uint8_t *d = buf;
                size_t left = (size_t)n;
                while (left > 0) {
                        bool boundary;
                        if (!job) {
                                err = acquire_job(p, &job);
                                if (err < 0)
                                        return err;
                                job->offset = offset;
                        }
                        size_t k = chunker_scan(chunker, d, left, &boundary);
                        if (job_append(p, job, d, k) < 0)
                                return log_errno(-ENOMEM, "reading %s", p->o->where);
                        d += k;
                        left -= k;
                        offset += k;
                        if (boundary && job->len > 0) {
                                submit_job(p, job);
                                job = NULL;
                        }
                }
        }
        /* What is left at the end of the input is the last chunk. */
        if (job && job->len > 0)
                submit_job(p, job);
        pthread_mutex_lock(&p->lock);
        p->eof = true;
        pthread_cond_broadcast(&p->cond_ready);
        pthread_cond_broadcast(&p->cond_done);
        pthread_mutex_unlock(&p->lock);
        return 0;
}

static bool run_hash_find(struct pipeline *p, uint8_t byte, size_t len, uint8_t out[HASH_MAX_LEN])
{
        bool found = false;

        pthread_mutex_lock(&p->lock);
        for (size_t i = 0; i < p->n_run_hashes && !found; i++) {
                if (p->run_hashes[i].len == len && p->run_hashes[i].byte == byte) {
                        memcpy(out, p->run_hashes[i].hash, HASH_MAX_LEN);
                        found = true;
                }
        }
        pthread_mutex_unlock(&p->lock);
        return found;
}

static void run_hash_keep(struct pipeline *p, uint8_t byte, size_t len, const uint8_t hash[HASH_MAX_LEN])
{
        pthread_mutex_lock(&p->lock);
        struct run_hash *r = &p->run_hashes[p->next_run_hash++ % RUN_HASH_SLOTS];
        r->len = len;
        r->byte = byte;
        memcpy(r->hash, hash, HASH_MAX_LEN);
        if (p->n_run_hashes < RUN_HASH_SLOTS)
                p->n_run_hashes++;
        pthread_mutex_unlock(&p->lock);
}

static void chunk_hash(struct pipeline *p, const struct pipeline_job *job, uint8_t out[HASH_MAX_LEN])
{
        bool run = job->len >= RUN_HASH_MIN_SIZE && byte_run_all(job->data, job->len, job->data[0]);

        if (run && run_hash_find(p, job->data[0], job->len, out))
                return;
        hash_buffer(job->data, job->len, out);
        if (run)
                run_hash_keep(p, job->data[0], job->len, out);
}

static int worker_run(struct pipeline *p, unsigned worker)
{
        for (;;) {
                struct pipeline_job *job = NULL;
                int err;

                pthread_mutex_lock(&p->lock);
                while (!p->err) {
                        if (p->next_work < p->next_fill) {
                                job = &p->jobs[p->next_work++ % p->n_jobs];
                                job->state = JOB_WORKING;
                                break;
                        }
                        if (p->eof)
                                break;
                        pthread_cond_wait(&p->cond_ready, &p->lock);
                }
                pthread_mutex_unlock(&p->lock);
                if (!job)
                        return 0;

                chunk_hash(p, job, job->hash);
                err = p->ops->process ? p->ops->process(p->ctx, job, worker) : 0;

                pthread_mutex_lock(&p->lock);
                job->state = JOB_DONE;
                pthread_cond_broadcast(&p->cond_done);
                pthread_mutex_unlock(&p->lock);
                if (err < 0)
                        return err;
        }
}

/* Under p->lock, once the job is complete. */
static void release_job(struct pipeline *p, struct pipeline_job *job)
{
        if (job->cap > SMALL_BUFFER) {
                pool_put(p, (struct buffer){ job->data, job->cap, job->written });
                job->data = NULL;
                job->cap = 0;
                job->written = 0;
        } else if (p->o->small_memory && job->written > KEPT_WRITTEN) {
                /* Else each job would keep as much memory as the largest
                 * chunk it ever held; the pages given back read as zeros. */
                if (madvise(job->data + KEPT_WRITTEN, job->written - KEPT_WRITTEN, MADV_DONTNEED) == 0)
                        job->written = KEPT_WRITTEN;
        }
}

static int completer_run(struct pipeline *p)
{
        for (;;) {
                struct pipeline_job *job = NULL;
                int err;

                pthread_mutex_lock(&p->lock);
                while (!p->err) {
                        struct pipeline_job *next = &p->jobs[p->next_complete % p->n_jobs];
                        if (p->next_complete < p->next_fill && next->state == JOB_DONE) {
                                job = next;
                                break;
                        }
                        if (p->eof && p->next_complete == p->next_fill)
                                break;
                        pthread_cond_wait(&p->cond_done, &p->lock);
                }
                pthread_mutex_unlock(&p->lock);
                if (!job)
                        return 0;

                err = p->ops->complete ? p->ops->complete(p->ctx, job) : 0;
                pthread_mutex_lock(&p->lock);
                p->bytes_in_flight -= job->len;
                release_job(p, job);
                job->state = JOB_FREE;
                p->next_complete++;
                pthread_cond_broadcast(&p->cond_free);
                pthread_mutex_unlock(&p->lock);
                if (err < 0)
                        return err;
        }
}

static int pipeline_thread(void *ctx, unsigned index)
{
        struct pipeline *p = ctx;
        int err;

        if (index == 0)
                err = reader_run(p);
        else if (index == 1)
                err = completer_run(p);
        else
                err = worker_run(p, index - 2);
        if (err < 0)
                pipeline_fail(p, err);
        return err;
}

static void report_progress(struct pipeline *p, bool final)
{
        struct progress pr = {
                .phase = p->o->progress, .what = p->o->where, .final = final, .bytes_total = p->size,
                .bytes_done = atomic_load_explicit(&p->bytes_read, memory_order_relaxed),
        };

        if (p->o->progress)
                progress_report(&pr);
}

static void pipeline_tick(void *ctx) { report_progress(ctx, false); }

/* The input's size when it has one (a file or a block device), else 0. */
static uint64_t input_size(int fd)
{
        struct stat st;
        uint64_t size = 0;

        if (fstat(fd, &st) < 0)
                return 0;
        if (S_ISREG(st.st_mode))
                return (uint64_t)st.st_size;
        if (S_ISBLK(st.st_mode) && ioctl(fd, BLKGETSIZE64, &size) == 0)
                return size;
        return 0;
}

size_t pipeline_job_slots(const struct pipeline_options *o)
{
        unsigned workers = o->workers ? o->workers : pool_cpu_count();
        size_t n;

        if (o->small_memory)
                return (size_t)workers * SMALL_MEMORY_JOBS_PER_WORKER + 2;
        n = (size_t)workers * JOBS_PER_WORKER;
        return n < MIN_JOBS ? MIN_JOBS : n;
}

int pipeline_run(const struct pipeline_options *o, const struct pipeline_ops *ops, void *ctx,
                 struct pipeline_stats *stats)
{
        struct pipeline p = {
                .o = o,
                .ops = ops,
                .ctx = ctx,
                .lock = PTHREAD_MUTEX_INITIALIZER,
                .cond_free = PTHREAD_COND_INITIALIZER,
                .cond_ready = PTHREAD_COND_INITIALIZER,
                .cond_done = PTHREAD_COND_INITIALIZER,
        };
        int err;

        p.workers = o->workers ? o->workers : pool_cpu_count();
        p.n_jobs = pipeline_job_slots(o);
        p.jobs = calloc(p.n_jobs, sizeof(*p.jobs));
        if (!p.jobs)
                return log_errno(-ENOMEM, "reading %s", o->where);
        for (size_t i = 0; i < p.n_jobs; i++)
                p.jobs[i].slot = i;

        p.size = o->progress ? input_size(o->fd) : 0;
        err = pool_run(p.workers + 2, pipeline_thread, &p, pipeline_tick);
        if (err == 0)
                err = p.err;
        if (err == 0)
                report_progress(&p, true);
        for (size_t i = 0; i < p.n_jobs; i++) {
                if (p.jobs[i].data)
                        munmap(p.jobs[i].data, p.jobs[i].cap);
        }
        for (size_t i = 0; i < p.pool_n; i++)
                munmap(p.pool[i].data, p.pool[i].cap);
        free(p.jobs);
        if (stats) {
                stats->bytes = atomic_load(&p.bytes_read);
        }
        return err;
}
