// SPDX-License-Identifier: MIT
#include "rate_floor.h"

#define SLOTS (RATE_FLOOR_STEPS + 2u)

void rate_floor_start(struct rate_floor *f, unsigned window_s, uint64_t min_rate)
{
        *f = (struct rate_floor){ .window_s = window_s, .min_rate = min_rate, .n = 1 };
}

bool rate_floor_below(struct rate_floor *f, double now, uint64_t received)
{
        if (f->window_s <= 0 || f->min_rate == 0)
                return false;
        /* A sample a step after the last: samples cover a window and a step
         * or two, which is all the check below looks back. */
        if (now - f->t[(f->n - 1) % SLOTS] >= f->window_s / RATE_FLOOR_STEPS) {
                f->t[f->n % SLOTS] = now;
                f->got[f->n % SLOTS] = received;
                f->n++;
        }
        /* The newest sample a window old: the span from it to now is the
         * shortest one of at least a window that the samples give. */
        unsigned oldest = f->n > SLOTS ? f->n - SLOTS : 0;
        for (unsigned k = f->n; k-- > oldest;) {
                double span = now - f->t[k % SLOTS];
                if (span < f->window_s)
                        continue;
                uint64_t bytes = received - f->got[k % SLOTS];
                if ((double)bytes >= (double)f->min_rate * span)
                        return false;
                f->span_s = span;
                f->span_bytes = bytes;
                return true;
        }
        return false; /* not a window yet */
}
