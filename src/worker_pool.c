// SPDX-License-Identifier: MIT
#include "worker_pool.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#define TICK_MS 200

struct pool {
        pthread_mutex_t lock;
        pthread_cond_t done_cond;
        unsigned running;
        int err;
        pool_work work;
        void *ctx;
};

struct slot {
        struct pool *pool;
        unsigned index;
};

static void *pool_thread(void *arg)
{
        struct slot *s = arg;
        struct pool *p = s->pool;
        int err = p->work(p->ctx, s->index);

        pthread_mutex_lock(&p->lock);
        if (err < 0 && p->err == 0)
                p->err = err;
        p->running--;
        pthread_cond_signal(&p->done_cond);
        pthread_mutex_unlock(&p->lock);
        return NULL;
}

unsigned pool_cpu_count(void)
{
        long n = sysconf(_SC_NPROCESSORS_ONLN);

        return n > 0 ? (unsigned)n : 1;
}

static int run_pool(unsigned n, size_t stack_size, pool_work work, void *ctx, pool_tick tick)
{
        struct pool p = { .lock = PTHREAD_MUTEX_INITIALIZER, .work = work, .ctx = ctx };
        pthread_t *threads = calloc(n, sizeof(*threads));
        struct slot *slots = calloc(n, sizeof(*slots));
        pthread_condattr_t attr;
        pthread_attr_t thread_attr;
        unsigned started = 0;

        if (!threads || !slots) {
                free(threads);
                free(slots);
                return -ENOMEM;
        }
        pthread_condattr_init(&attr);
        pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
        pthread_cond_init(&p.done_cond, &attr);
        pthread_condattr_destroy(&attr);

        pthread_attr_init(&thread_attr);
        if (stack_size)
                pthread_attr_setstacksize(&thread_attr, stack_size);
        pthread_mutex_lock(&p.lock);
        for (unsigned i = 0; i < n; i++) {
                slots[i] = (struct slot){ &p, i };
                if (pthread_create(&threads[i], &thread_attr, pool_thread, &slots[i]) != 0) {
                        if (p.err == 0)
                                p.err = -EAGAIN;
                        break;
                }
                started++;
                p.running++;
        }
        while (p.running > 0) {
                struct timespec ts;
                clock_gettime(CLOCK_MONOTONIC, &ts);
                ts.tv_nsec += TICK_MS * 1000000L;
                if (ts.tv_nsec >= 1000000000L) {
                        ts.tv_sec++;
                        ts.tv_nsec -= 1000000000L;
                }
                pthread_cond_timedwait(&p.done_cond, &p.lock, &ts);
                if (tick && p.running > 0) {
                        pthread_mutex_unlock(&p.lock);
                        tick(ctx);
                        pthread_mutex_lock(&p.lock);
                }
        }
        pthread_mutex_unlock(&p.lock);
        for (unsigned i = 0; i < started; i++)
                pthread_join(threads[i], NULL);
        pthread_attr_destroy(&thread_attr);
        pthread_cond_destroy(&p.done_cond);
        free(threads);
        free(slots);
        return p.err;
}

int pool_run(unsigned n, pool_work work, void *ctx, pool_tick tick)
{
        return run_pool(n, 0, work, ctx, tick);
}

int pool_run_light(unsigned n, pool_work work, void *ctx, pool_tick tick)
{
        return run_pool(n, POOL_LIGHT_STACK_SIZE, work, ctx, tick);
}
