// SPDX-License-Identifier: MIT
/* Reading an image, cutting it into chunks and hashing them on all cores:
 *
 *   reader (1 thread)   reads, runs the chunker, fills jobs in image order
 *   workers (N)         hash each job's chunk, then call ops->process
 *   completer (1)       calls ops->complete on the jobs in image order
 *
 * A bounded number of jobs (and of chunk bytes) is in flight: the reader
 * waits for the completer, so memory does not grow with the image, and the
 * input may be a pipe. */
#pragma once

#include "hash.h"
#include "release.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct pipeline_job {
        uint64_t seq;            /* chunk number in the image */
        uint64_t offset;         /* in the image */
        uint8_t *data;
        size_t len;
        uint8_t hash[HASH_MAX_LEN];
        /* The job's place among the pipeline's (0..pipeline_job_slots()-1),
         * for callbacks that keep state of their own from process to
         * complete: no two jobs in flight share it. */
        size_t slot;
        /* internal */
        size_t cap;
        size_t written;          /* bytes of data that may not be zero */
        int state;
};

struct pipeline_ops {
        /* On a worker thread (0..workers-1), after the hash is set. */
        int (*process)(void *ctx, struct pipeline_job *job, unsigned worker);
        /* On the completer thread, in image order; the job's data is
         * released after it returns. */
        int (*complete)(void *ctx, struct pipeline_job *job);
};

struct pipeline_options {
        int fd;
        const char *where;       /* the input, for messages */
        const struct chunker_params *chunker;
        unsigned workers;        /* 0: one per CPU */
        const char *progress;    /* the phase it reports progress as (progress.h), NULL for none */
        /* A seed may be a failing disk: a read error then ends the input
         * (with a warning) instead of failing the run. */
        bool tolerate_read_errors;
        /* On a device: large chunk buffers are unmapped after use rather
         * than pooled for the next ones, for memory over speed. */
        bool small_memory;
};

struct pipeline_stats {
        uint64_t bytes; /* read from the input */
};

/* How many jobs the pipeline will keep in flight with these options. */
size_t pipeline_job_slots(const struct pipeline_options *o);

/* Returns 0 or the first failure of any stage (logged where it happened;
 * the callbacks log their own). */
int pipeline_run(const struct pipeline_options *o, const struct pipeline_ops *ops, void *ctx,
                 struct pipeline_stats *stats);
