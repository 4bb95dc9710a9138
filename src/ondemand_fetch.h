// SPDX-License-Identifier: MIT
/* The inside of an on-demand release (ondemand.h): its state, shared by
 * the provider the image map calls (ondemand.c) and the fetching
 * (ondemand_fetch.c). Reads that miss queue a job (a range of the archive)
 * and wait for their chunk; workers, each with its connection, take the
 * jobs: reads first, then read-ahead, then the fill. A chunk is readable
 * from its temp file as soon as it is checked, and durable and in the
 * store with its batch. Everything below the lock is guarded by it. */
#pragma once

#include "archive_source.h"
#include "codec.h"
#include "http.h"
#include "image_map.h"
#include "release.h"
#include "store.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

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
/* Chunks in one fetch at most (a range of tiny compressed chunks). */
#define RANGE_MAX_CHUNKS 1024u
/* The fill waits this long after a failure, doubling up to the most. */
#define FILL_RETRY_FIRST_S 1u
#define FILL_RETRY_MOST_S 30u

/* Readers wait for a chunk on one of these slots (struct ondemand, arrived). */
#define WAIT_SLOTS 64u

enum {
        OD_MISSING,  /* not in the store: a read or the fill fetches it */
        OD_FAILED,   /* missing, and a read's fetch of it failed: the reads waiting on it fail */
        OD_FETCHING, /* in a job, queued or running */
        OD_VERIFIED, /* checked, readable through early[], not yet durable */
        OD_PRESENT,  /* durable, in the store */
};

static inline bool fetchable(uint8_t state)
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
        unsigned read_wait_s;           /* a read's wait for a chunk at most; 0: no limit */
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
        uint32_t *zeros;    /* the chunks of zeros missing at the start */
        size_t n_zeros;
        bool zeros_due;     /* every other chunk is in: for the next worker free */
        bool zeros_started;
        uint8_t *desc;      /* the description, as it is to be written */
        size_t desc_len;
        atomic_bool stopping;
};

/* Chunk idx's new state (lock held); the readers that may wait on it wake. */
void od_set_state(struct ondemand *od, uint32_t idx, uint8_t s);

/* idx is in the store (lock held): when it was the last, a worker writes
 * the description. */
void od_now_present(struct ondemand *od, uint32_t idx);

/* Queues a read's fetch of idx, missing (lock held): 0, or -ENOMEM (said). */
int od_queue_read(struct ondemand *od, uint32_t idx);

/* A read's wait for idx ran out (lock held): the job holding idx, if no
 * worker has taken it yet, is dropped (its chunks missing again); true
 * then, false when idx is being fetched. */
bool od_unqueue(struct ondemand *od, uint32_t idx);

/* A worker's thread (arg: its struct od_worker), until stopping. */
void *od_work(void *arg);

/* Frees the jobs no worker took (the workers stopped). */
void od_drop_queued(struct ondemand *od);

/* Every chunk durable, then the description: the release is complete. A
 * release under the name written meanwhile (a clone) is kept. */
void od_describe(struct ondemand *od);

/* Writes the chunks of zeros that were missing at the start (marked
 * fetching since), once every other chunk is in: their content is known
 * from their hash, so they are never fetched (and written last, they cost
 * the first reads nothing); failing that, they are fetched like the rest. */
void od_write_zeros(struct ondemand *od);

/* Does STORE/NAME hold r's image (size and checksum)? 0, or negative errno
 * (said). */
int od_holds_image(struct store *store, const char *name, const struct release *r, bool *same);
