// SPDX-License-Identifier: MIT
/* How far a long job has come: the library reports, the program shows it
 * (on a terminal, as JSON lines for an update agent: src/cli/progress_view.c).
 * A job is a sequence of phases; each reports often (the worker pool's
 * tick, or its own loop), and once more, final, when it is over. Reports
 * are passed on at most every PROGRESS_INTERVAL_MS, final ones always. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#define PROGRESS_INTERVAL_MS 250

struct progress {
        /* A stable name: "check" (the store's chunks), "seed", "fetch",
         * "compress", "verify", "scan" (diff). */
        const char *phase;
        const char *what;  /* the file, archive or release it works on, for people */
        uint64_t bytes_done, bytes_total;   /* bytes_total 0: not known (a pipe) */
        uint64_t chunks_done, chunks_total; /* chunks_total 0: not counted */
        bool final;
};

typedef void (*progress_sink)(const struct progress *p, void *opaque);

/* Where reports go (NULL: nowhere, the default). */
void progress_set_sink(progress_sink sink, void *opaque);
bool progress_wanted(void);

/* Passes p on, unless it is not final and the last one went out less
 * than PROGRESS_INTERVAL_MS ago. Thread-safe. */
void progress_report(const struct progress *p);
