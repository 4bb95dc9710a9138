// SPDX-License-Identifier: MIT
#include "compress.h"

#include "archive_writer.h"
#include "chunk_pipeline.h"
#include "chunk_set.h"
#include "cleanup.h"
#include "encoder.h"
#include "fsutil.h"
#include "log.h"
#include "worker_pool.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define INDEX_NONE UINT32_MAX

/* A chunk of the image, once each, in the set. */
struct unique_chunk {
        struct chunk_entry e;
        uint32_t index;          /* in the archive, once placed; INDEX_NONE before */
        bool ready;              /* data holds what to store */
        const uint8_t *data;     /* in the compressing job's out, or the image's */
};

/* What a pipeline job carries from its worker to the completer. */
struct job_state {
        struct unique_chunk *chunk;
        struct encoder_buf out;  /* the chunk compressed, when this job did it */
};

struct compress_state {
        const struct compress_options *o;
        int data_fd;
        struct encoder **encoders; /* one per worker */
        unsigned workers;
        struct job_state *jobs;    /* by pipeline job slot */
        size_t n_jobs;

        /* Shared by the workers and the completer. */
        pthread_mutex_t lock;
        pthread_cond_t ready_cond;
        struct chunk_set *set;     /* every chunk seen, by full hash */
        bool failed;               /* a worker failed: stop waiting for chunks */

        /* The completer's alone. */
        hash_state image_hash;
        struct release *release;   /* chunk offsets relative to the chunk data */
        size_t chunks_cap, order_cap;
        uint64_t data_size;
        size_t raw_chunks;
};

static void mark_failed(struct compress_state *s)
{
        pthread_mutex_lock(&s->lock);
        s->failed = true;
        pthread_cond_broadcast(&s->ready_cond);
        pthread_mutex_unlock(&s->lock);
}

/* Worker: the first worker to meet a chunk compresses it for every
 * occurrence; the data stays in its job until the completer stores it, which
 * happens no later than that job's own completion. */
static int compress_process(void *ctx, struct pipeline_job *job, unsigned worker)
{
        struct compress_state *s = ctx;
        struct job_state *js = &s->jobs[job->slot];
        struct unique_chunk *u;
        const uint8_t *data = job->data;
        size_t size = job->len;
        bool added;

        pthread_mutex_lock(&s->lock);
        u = (struct unique_chunk *)chunk_set_add(s->set, job->hash, &added);
        if (u && added)
                u->index = INDEX_NONE;
        pthread_mutex_unlock(&s->lock);
        if (!u) {
                mark_failed(s);
                return log_errno(-ENOMEM, "compressing %s", s->o->input_name);
        }
        js->chunk = u;
        if (!added)
                return 0;

        if (s->o->codec != CODEC_NONE) {
                ssize_t n = encoder_compress_buf(s->encoders[worker], job->data, job->len, &js->out);
                if (n < 0) {
                        mark_failed(s);
                        return log_errno((int)n, "cannot compress the chunk at offset %llu of %s (%s)",
                                         (unsigned long long)job->offset, s->o->input_name, codec_name(s->o->codec));
                }
                /* As bita: a chunk that does not get smaller is stored raw. */
                if ((size_t)n < job->len) {
                        data = js->out.data;
                        size = (size_t)n;
                }
        }
        pthread_mutex_lock(&s->lock);
        u->e.source_size = (uint32_t)job->len;
        u->e.archive_size = (uint32_t)size;
        u->data = data;
        u->ready = true;
        pthread_cond_broadcast(&s->ready_cond);
        pthread_mutex_unlock(&s->lock);
        return 0;
}

static int grow(void **array, size_t *cap, size_t need, size_t elem)
{
        if (need <= *cap)
                return 0;
        size_t n = *cap ? *cap * 2 : 1024;
        void *p = realloc(*array, n * elem);
        if (!p)
                return -ENOMEM;
        *array = p;
        *cap = n;
        return 0;
}

/* Places a chunk met for the first time: its data goes next in the archive. */
static int store_first_occurrence(struct compress_state *s, struct unique_chunk *u)
{
        struct release *r = s->release;
        struct chunk_entry *e = &u->e;
        struct chunk *c;
        bool ready;
        int err;

        pthread_mutex_lock(&s->lock);
        while (!u->ready && !s->failed)
                pthread_cond_wait(&s->ready_cond, &s->lock);
        ready = u->ready;
        pthread_mutex_unlock(&s->lock);
        if (!ready)
                return -ECANCELED; /* the worker has said why */

        if (r->n_chunks >= UINT32_MAX - 1)
                return log_errno(-EFBIG, "%s has too many chunks for an archive", s->o->input_name);
        if (grow((void **)&r->chunks, &s->chunks_cap, r->n_chunks + 1, sizeof(*r->chunks)) < 0)
                return log_errno(-ENOMEM, "compressing %s", s->o->input_name);
        err = write_full(s->data_fd, u->data, e->archive_size);
        if (err < 0)
                return log_errno(err, "cannot write the chunk data of %s next to %s", s->o->input_name,
                                 s->o->output);
        c = &r->chunks[r->n_chunks];
        memcpy(c->hash, e->hash, HASH_MAX_LEN);
        c->source_size = e->source_size;
        c->archive_size = e->archive_size;
        c->archive_offset = s->data_size;
        s->data_size += e->archive_size;
        if (e->archive_size == e->source_size)
                s->raw_chunks++;
        u->index = (uint32_t)r->n_chunks++;
        u->data = NULL;
        return 0;
}

/* Completer, in image order. */
static int compress_complete(void *ctx, struct pipeline_job *job)
{
        struct compress_state *s = ctx;
        struct release *r = s->release;
        struct job_state *js = &s->jobs[job->slot];
        struct unique_chunk *u = js->chunk;
        int err;

        hash_update(&s->image_hash, job->data, job->len);
        r->source_total_size += job->len;
        if (u->index == INDEX_NONE) {
                err = store_first_occurrence(s, u);
                if (err < 0)
                        return err;
        }
        if (grow((void **)&r->order, &s->order_cap, r->n_order + 1, sizeof(*r->order)) < 0)
                return log_errno(-ENOMEM, "compressing %s", s->o->input_name);
        r->order[r->n_order++] = u->index;
        /* The compressed data, if this job's, is in the archive now. */
        encoder_buf_trim(&js->out);
        return 0;
}

static int check_output(const struct compress_options *o)
{
        struct stat st;

        if (lstat(o->output, &st) < 0)
                return errno == ENOENT ? 0 : log_errno(-errno, "cannot look at %s", o->output);
        if (S_ISDIR(st.st_mode)) {
                log_error("%s is a directory", o->output);
                return -EISDIR;
        }
        if (!o->force) {
                log_error("%s exists (use -f to replace it)", o->output);
                return -EEXIST;
        }
        return 0;
}

static void state_free(struct compress_state *s)
{
        encoders_free(s->encoders, s->workers);
        for (size_t i = 0; s->jobs && i < s->n_jobs; i++)
                encoder_buf_free(&s->jobs[i].out);
        free(s->jobs);
        chunk_set_free(s->set);
        release_free(s->release);
        if (s->data_fd >= 0)
                close(s->data_fd);
        pthread_cond_destroy(&s->ready_cond);
}

static int compress_chunks(struct compress_state *s)
{
        const struct compress_options *o = s->o;
        struct pipeline_options po = {
                .fd = o->input_fd,
                .where = o->input_name,
                .chunker = &o->chunker,
                .workers = s->workers,
                .progress = o->progress ? "compress" : NULL,
        };
        struct pipeline_ops ops = { .process = compress_process, .complete = compress_complete };
        int err;

        if (chunk_set_new(HASH_MAX_LEN, sizeof(struct unique_chunk), &s->set) < 0)
                return log_errno(-ENOMEM, "compressing %s", o->input_name);
        s->release = calloc(1, sizeof(*s->release));
        s->n_jobs = pipeline_job_slots(&po);
        s->jobs = calloc(s->n_jobs, sizeof(*s->jobs));
        if (!s->release || !s->jobs)
                return log_errno(-ENOMEM, "compressing %s", o->input_name);
        if (o->codec != CODEC_NONE) {
                err = encoders_new(o->codec, o->level, s->workers, &s->encoders);
                if (err < 0)
                        return err;
        }
        hash_init(&s->image_hash);
        err = pipeline_run(&po, &ops, s, NULL);
        if (err < 0)
                return err;

        struct release *r = s->release;
        r->app_version = strdup("ihop " IHOP_VERSION);
        if (!r->app_version)
                return log_errno(-ENOMEM, "compressing %s", o->input_name);
        hash_final(&s->image_hash, r->source_checksum);
        r->source_checksum_len = HASH_MAX_LEN;
        r->chunker = o->chunker;
        r->hash_len = o->chunker.hash_length;
        return 0;
}

int compress_run(const struct compress_options *o, struct compress_result *res)
{
        struct compress_state s = {
                .o = o,
                .data_fd = -1,
                .lock = PTHREAD_MUTEX_INITIALIZER,
                .ready_cond = PTHREAD_COND_INITIALIZER,
        };
        _cleanup_free_ uint8_t *header = NULL;
        size_t header_len = 0;
        int err;

        s.workers = o->jobs ? o->jobs : pool_cpu_count();
        err = check_output(o);
        if (err < 0)
                return err;
        s.data_fd = archive_scratch_open(o->output);
        if (s.data_fd < 0)
                return s.data_fd;

        err = compress_chunks(&s);
        if (err == 0) {
                /* The dedup table is not needed any more: free it before the header is built. */
                chunk_set_free(s.set);
                s.set = NULL;
                err = archive_header_build(s.release, o->codec, o->level, o->metadata, o->n_metadata, &header,
                                           &header_len);
        }
        if (err == 0)
                err = archive_file_write(o->output, o->force, header, header_len, s.data_fd, s.data_size);
        if (err == 0) {
                *res = (struct compress_result){
                        .image_size = s.release->source_total_size,
                        .chunks = s.release->n_order,
                        .unique_chunks = s.release->n_chunks,
                        .raw_chunks = s.raw_chunks,
                        .chunk_data_size = s.data_size,
                        .header_size = header_len,
                };
                memcpy(res->header_checksum, header + header_len - HASH_MAX_LEN, HASH_MAX_LEN);
        }
        state_free(&s);
        return err;
}
