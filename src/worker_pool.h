// SPDX-License-Identifier: MIT
/* Runs one function on n threads and waits for all of them, calling a
 * progress callback from the waiting thread now and then. */
#pragma once

/* Returns 0 or a negative errno; the first failure wins. */
typedef int (*pool_work)(void *ctx, unsigned index);
typedef void (*pool_tick)(void *ctx);

int pool_run(unsigned n, pool_work work, void *ctx, pool_tick tick);

/* Online CPUs, at least 1. */
unsigned pool_cpu_count(void);
