// SPDX-License-Identifier: MIT
/* Runs one function on n threads and waits for all of them, calling a
 * progress callback from the waiting thread now and then. */
#pragma once

#include <stddef.h>

/* Returns 0 or a negative errno; the first failure wins. */
typedef int (*pool_work)(void *ctx, unsigned index);
typedef void (*pool_tick)(void *ctx);

int pool_run(unsigned n, pool_work work, void *ctx, pool_tick tick);

/* pool_run on small stacks, for work that calls nothing deep (system calls,
 * hashing): glibc keeps the stacks of ended threads for reuse, up to 40 MiB
 * of them, and a process that locks itself in memory afterwards (mount
 * --root-storage) would lock every page of them. */
#define POOL_LIGHT_STACK_SIZE (128u << 10)
int pool_run_light(unsigned n, pool_work work, void *ctx, pool_tick tick);

/* Online CPUs, at least 1. */
unsigned pool_cpu_count(void);
