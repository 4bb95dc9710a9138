// SPDX-License-Identifier: MIT
#include "seed.h"

#include "chunk_pipeline.h"
#include "cleanup.h"
#include "log.h"
#include "worker_pool.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define SEED_BATCH_BYTES (32u << 20)

struct seed_run {
        const struct seed_target *t;
        struct store_batch *batches; /* one per worker */
        atomic_size_t chunks;
        atomic_uint_fast64_t bytes;
};

static const struct chunk **find_wanted(const struct seed_target *t, const uint8_t *hash)
{
        size_t lo = 0, hi = t->n_wanted;

        while (lo < hi) {
                size_t mid = lo + (hi - lo) / 2;
                int c = memcmp(t->wanted[mid]->hash, hash, t->hash_len);
                if (c == 0)
                        return &t->wanted[mid];
                if (c < 0)
                        lo = mid + 1;
                else
                        hi = mid;
        }
        return NULL;
}

static int seed_process(void *opaque, struct pipeline_job *job, unsigned worker)
{
        struct seed_run *run = opaque;
        const struct seed_target *t = run->t;
        const struct chunk **w = find_wanted(t, job->hash);
        struct chunk_writer cw;
        unsigned char no = 0;
        int err;

        if (!w || (*w)->source_size != job->len)
                return 0;
        size_t i = (size_t)(w - t->wanted);
        if (!atomic_compare_exchange_strong(&t->have[i], &no, 1))
                return 0; /* present already, or another worker has it */
        err = chunk_writer_begin(&cw, t->store, *w, t->hash_len);
        if (err == 0)
                err = chunk_writer_write(&cw, job->data, job->len);
        if (err == 0)
                err = chunk_writer_finish(&cw);
        else
                chunk_writer_abort(&cw);
        if (err == -EBADMSG) {
                /* Only a short hash can collide: not our chunk after all. */
                atomic_store(&t->have[i], 0);
                return 0;
        }
        if (err == 0)
                err = store_batch_add(&run->batches[worker], &cw);
        if (err < 0) {
                atomic_store(&t->have[i], 0);
                return err;
        }
        atomic_fetch_add(&run->chunks, 1);
        atomic_fetch_add(&run->bytes, job->len);
        if (run->batches[worker].bytes >= SEED_BATCH_BYTES)
                return store_batch_commit(&run->batches[worker]);
        return 0;
}

int seed_apply(const char *path, const struct seed_target *t, struct seed_stats *stats)
{
        static const struct pipeline_ops ops = { .process = seed_process };
        struct pipeline_options o = {
                .where = path, .chunker = t->chunker, .progress = "seed", .tolerate_read_errors = true,
                .small_memory = true,
        };
        struct pipeline_stats ps = {};
        struct seed_run run = { .t = t };
        unsigned workers = pool_cpu_count();
        int err, fd;

        memset(stats, 0, sizeof(*stats));
        fd = strcmp(path, "-") == 0 ? STDIN_FILENO : open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0) {
                log_warn("cannot open seed %s: %s; going on without it", path, strerror(errno));
                return 0;
        }
        run.batches = calloc(workers, sizeof(*run.batches));
        if (!run.batches) {
                if (fd != STDIN_FILENO)
                        close(fd);
                return -ENOMEM;
        }
        for (unsigned i = 0; i < workers; i++)
                store_batch_init(&run.batches[i], t->store);
        o.fd = fd;
        o.workers = workers;
        err = pipeline_run(&o, &ops, &run, &ps);
        /* Verified chunks are kept whatever happened to the rest. */
        for (unsigned i = 0; i < workers; i++) {
                int e = store_batch_commit(&run.batches[i]);
                if (err == 0)
                        err = e;
                store_batch_discard(&run.batches[i]);
                store_batch_free(&run.batches[i]);
        }
        free(run.batches);
        if (fd != STDIN_FILENO)
                close(fd);
        stats->chunks = atomic_load(&run.chunks);
        stats->bytes = atomic_load(&run.bytes);
        stats->read = ps.bytes;
        return err;
}
