// SPDX-License-Identifier: MIT
#include "diff.h"

#include "archive.h"
#include "archive_source.h"
#include "chunk_pipeline.h"
#include "chunk_set.h"
#include "chunker.h"
#include "cleanup.h"
#include "encoder.h"
#include "fsutil.h"
#include "http.h"
#include "log.h"
#include "worker_pool.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct diff_input {
        const char *path;
        struct archive *archive; /* NULL for an image */
        struct chunk_set *set;   /* unique chunks, with occurrences */
        struct diff_side side;
};

static void input_clear(struct diff_input *in)
{
        archive_free(in->archive);
        chunk_set_free(in->set);
}

/* An archive is a regular file; anything else (a block device, a FIFO
 * something writes an image into) is an image, read as a stream, and is
 * not opened here: a FIFO would wait for its writer, and lose to this
 * probe the bytes it read. */
static bool has_archive_magic(const char *path)
{
        uint8_t magic[ARCHIVE_MAGIC_LEN];
        _cleanup_close_ int fd = open_regular_at(AT_FDCWD, path, 0, NULL);

        return fd >= 0 && pread_full(fd, magic, sizeof(magic), 0) == (ssize_t)sizeof(magic) &&
               archive_magic_ok(magic, sizeof(magic));
}

/* An archive's chunks, from its dictionary. */
static int load_archive_chunks(struct diff_input *in, size_t key_len)
{
        const struct release *r = in->archive->release;
        int err = chunk_set_new(key_len, sizeof(struct chunk_entry), &in->set);

        if (err < 0)
                return log_errno(err, "reading %s", in->path);
        for (size_t i = 0; i < r->n_order; i++) {
                const struct chunk *c = &r->chunks[r->order[i]];
                bool added;
                struct chunk_entry *e = chunk_set_add(in->set, c->hash, &added);
                if (!e)
                        return log_errno(-ENOMEM, "reading %s", in->path);
                if (added) {
                        e->source_size = c->source_size;
                        e->archive_size = c->archive_size;
                }
                e->occurrences++;
        }
        return 0;
}

struct scan_state {
        struct diff_input *in;
        const struct chunk_set *other; /* A's chunks when scanning B, else NULL */
        struct encoder **encoders;     /* set to estimate B's new chunks' compressed size */
        struct encoder_buf *out;       /* per worker, with encoders */
        size_t key_len;
        pthread_mutex_t lock;
};

/* Worker: a chunk of B that A lacks is compressed once, to learn its size. */
static int scan_process(void *ctx, struct pipeline_job *job, unsigned worker)
{
        struct scan_state *s = ctx;
        struct chunk_entry *e;
        bool added;

        if (!s->encoders || chunk_set_find(s->other, job->hash))
                return 0;
        pthread_mutex_lock(&s->lock);
        e = chunk_set_add(s->in->set, job->hash, &added);
        pthread_mutex_unlock(&s->lock);
        if (!e)
                return log_errno(-ENOMEM, "reading %s", s->in->path);
        if (!added)
                return 0;
        ssize_t n = encoder_compress_buf(s->encoders[worker], job->data, job->len, &s->out[worker]);
        encoder_buf_trim(&s->out[worker]);
        if (n < 0)
                return log_errno((int)n, "cannot compress a chunk of %s", s->in->path);
        pthread_mutex_lock(&s->lock);
        e->archive_size = (size_t)n < job->len ? (uint32_t)n : (uint32_t)job->len;
        pthread_mutex_unlock(&s->lock);
        return 0;
}

static int scan_complete(void *ctx, struct pipeline_job *job)
{
        struct scan_state *s = ctx;
        struct chunk_entry *e;
        bool added;

        pthread_mutex_lock(&s->lock);
        e = chunk_set_add(s->in->set, job->hash, &added);
        if (e) {
                e->source_size = (uint32_t)job->len;
                e->occurrences++;
        }
        pthread_mutex_unlock(&s->lock);
        return e ? 0 : log_errno(-ENOMEM, "reading %s", s->in->path);
}

static int scan_image(struct diff_input *in, const struct diff_options *o, const struct chunker_params *chunker,
                      size_t key_len, const struct chunk_set *other)
{
        struct scan_state s = { .in = in, .other = other, .key_len = key_len, .lock = PTHREAD_MUTEX_INITIALIZER };
        unsigned workers = o->jobs ? o->jobs : pool_cpu_count();
        struct pipeline_options po = {
                .where = in->path, .chunker = chunker, .workers = workers, .progress = "scan",
        };
        struct pipeline_ops ops = { .process = scan_process, .complete = scan_complete };
        _cleanup_close_ int fd = open(in->path, O_RDONLY | O_CLOEXEC);
        int err;

        if (fd < 0)
                return log_errno(-errno, "cannot open %s", in->path);
        po.fd = fd;
        err = chunk_set_new(key_len, sizeof(struct chunk_entry), &in->set);
        if (err < 0)
                return log_errno(err, "reading %s", in->path);
        if (other && o->codec != CODEC_NONE) {
                s.out = calloc(workers, sizeof(*s.out));
                if (!s.out)
                        return log_errno(-ENOMEM, "reading %s", in->path);
                err = encoders_new(o->codec, o->level, workers, &s.encoders);
        }
        if (err == 0)
                err = pipeline_run(&po, &ops, &s, NULL);
        encoders_free(s.encoders, workers);
        for (unsigned i = 0; s.out && i < workers; i++)
                encoder_buf_free(&s.out[i]);
        free(s.out);
        return err;
}

static void count_side(struct diff_input *in)
{
        in->side.is_archive = in->archive != NULL;
        in->side.unique = chunk_set_count(in->set);
        for (size_t i = 0; i < in->side.unique; i++) {
                const struct chunk_entry *e = chunk_set_at(in->set, i);
                in->side.chunks += e->occurrences;
                in->side.size += (uint64_t)e->source_size * e->occurrences;
                in->side.unique_size += e->source_size;
        }
}

static bool same_chunking(const struct chunker_params *x, const struct chunker_params *y)
{
        if (x->algorithm != y->algorithm || x->max_chunk_size != y->max_chunk_size)
                return false;
        return x->algorithm == CHUNKING_FIXED_SIZE ||
               (x->filter_bits == y->filter_bits && x->min_chunk_size == y->min_chunk_size &&
                x->window_size == y->window_size);
}

/* Images are chunked as an archive among the inputs was, else as asked. */
static int choose_chunker(const struct diff_options *o, struct diff_input *a, struct diff_input *b,
                          struct chunker_params *out)
{
        const struct diff_input *first = a->archive ? a : b->archive ? b : NULL;

        *out = o->chunker;
        if (!first)
                return 0;
        *out = first->archive->release->chunker;
        if (a->archive && b->archive) {
                if (!same_chunking(&a->archive->release->chunker, &b->archive->release->chunker))
                        log_warn("%s and %s were chunked differently: few chunks can match", a->path, b->path);
                else if (o->chunker_given)
                        log_warn("the chunking options are not used: both inputs are archives");
                return 0;
        }
        if (o->chunker_given && !same_chunking(&o->chunker, out))
                log_warn("the chunking options are ignored: the image is chunked as %s was", first->path);
        return chunker_check_params(out);
}

static void compare(const struct diff_input *a, const struct diff_input *b, struct diff_result *res)
{
        for (size_t i = 0; i < chunk_set_count(a->set); i++) {
                const struct chunk_entry *e = chunk_set_at(a->set, i);
                if (chunk_set_find(b->set, e->hash)) {
                        res->shared++;
                        res->shared_size += e->source_size;
                } else {
                        res->only_a++;
                        res->only_a_size += e->source_size;
                }
        }
        for (size_t i = 0; i < chunk_set_count(b->set); i++) {
                const struct chunk_entry *e = chunk_set_at(b->set, i);
                if (chunk_set_find(a->set, e->hash)) {
                        res->shared_in_b += (uint64_t)e->source_size * e->occurrences;
                        continue;
                }
                res->only_b++;
                res->only_b_size += e->source_size;
                res->fetch_size += e->archive_size ? e->archive_size : e->source_size;
        }
}

int diff_run(const struct diff_options *o, struct diff_result *res)
{
        struct diff_input a = { .path = o->a }, b = { .path = o->b };
        struct diff_input *inputs[2] = { &a, &b };
        size_t key_len = HASH_MAX_LEN;
        int err = 0;

        memset(res, 0, sizeof(*res));
        for (int i = 0; i < 2 && err == 0; i++) {
                struct diff_input *in = inputs[i];
                if (http_is_url(in->path) || has_archive_magic(in->path)) {
                        err = archive_source_load_header(in->path, o->http, &in->archive, NULL);
                        if (err == 0 && in->archive->release->hash_len < key_len)
                                key_len = in->archive->release->hash_len;
                } else if (access(in->path, R_OK) < 0) {
                        err = log_errno(-errno, "cannot open %s", in->path);
                }
        }
        if (err == 0)
                err = choose_chunker(o, &a, &b, &res->chunker);
        /* A first: B's chunks A lacks are the ones worth compressing. */
        for (int i = 0; i < 2 && err == 0; i++) {
                struct diff_input *in = inputs[i];
                if (in->archive)
                        err = load_archive_chunks(in, key_len);
                else
                        err = scan_image(in, o, &res->chunker, key_len, i == 1 ? a.set : NULL);
        }
        if (err == 0) {
                count_side(&a);
                count_side(&b);
                res->a = a.side;
                res->b = b.side;
                res->hash_len = key_len;
                res->fetch_estimated = !b.archive && o->codec != CODEC_NONE;
                compare(&a, &b, res);
        }
        input_clear(&a);
        input_clear(&b);
        return err;
}
