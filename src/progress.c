// SPDX-License-Identifier: MIT
#include "progress.h"

#include <pthread.h>
#include <stddef.h>
#include <time.h>

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static progress_sink current_sink;
static void *current_opaque;
static int64_t last_ms = INT64_MIN;

static int64_t now_ms(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void progress_set_sink(progress_sink sink, void *opaque)
{
        pthread_mutex_lock(&lock);
        current_sink = sink;
        current_opaque = opaque;
        last_ms = INT64_MIN;
        pthread_mutex_unlock(&lock);
}

bool progress_wanted(void)
{
        pthread_mutex_lock(&lock);
        bool wanted = current_sink != NULL;
        pthread_mutex_unlock(&lock);
        return wanted;
}

void progress_report(const struct progress *p)
{
        pthread_mutex_lock(&lock);
        if (current_sink) {
                int64_t now = now_ms();
                if (p->final || last_ms == INT64_MIN || now - last_ms >= PROGRESS_INTERVAL_MS) {
                        last_ms = p->final ? INT64_MIN : now;
                        current_sink(p, current_opaque);
                }
        }
        pthread_mutex_unlock(&lock);
}
