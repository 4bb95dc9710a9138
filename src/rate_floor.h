// SPDX-License-Identifier: MIT
/* The floor under a transfer's rate: a server that sends a byte now and
 * then never lets the idle timeout fire, and would hold a fetch for ever.
 * A transfer fails once the bytes it received over the last window (a
 * span of at least window_s seconds, ending now) average less than
 * min_rate a second, as libcurl's CURLOPT_LOW_SPEED_LIMIT/TIME do, but
 * over a sliding window: a trickle is caught window_s (and a step) after
 * it began, however fast the transfer was before. Pure arithmetic on the
 * times and counts it is given, so the tests give it their own. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

/* Samples a window holds, at least window_s / RATE_FLOOR_STEPS apart: how
 * late a trickle is caught, at most, past window_s. */
#define RATE_FLOOR_STEPS 8u

struct rate_floor {
        double window_s;   /* 0: no floor */
        uint64_t min_rate; /* bytes a second; 0: no floor */
        double t[RATE_FLOOR_STEPS + 2];     /* seconds since the transfer began */
        uint64_t got[RATE_FLOOR_STEPS + 2]; /* bytes received by then */
        unsigned n;                         /* samples taken, the first at 0 */
        /* Once below: what the window held, for the message. */
        double span_s;
        uint64_t span_bytes;
};

/* A transfer beginning (at time 0, nothing received). */
void rate_floor_start(struct rate_floor *f, unsigned window_s, uint64_t min_rate);

/* received bytes by now (seconds since the start, never decreasing):
 * true when the window ending now averages less than min_rate a second
 * (span_s and span_bytes then say over what). */
bool rate_floor_below(struct rate_floor *f, double now, uint64_t received);
