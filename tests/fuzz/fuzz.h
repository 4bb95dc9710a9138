// SPDX-License-Identifier: MIT
/* What every fuzz target offers: libFuzzer's entry point. Each target is one
 * file, fuzz_NAME.c, built twice (tests/fuzz/meson.build): with clang and
 * libFuzzer for scripts/fuzz.sh, and with the replay main (replay.c) as a
 * test of the normal suite that runs the target's corpus and regressions. */
#pragma once

#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* For a target's own helpers that run per byte (a reference implementation,
 * say): no coverage instrumentation, so that libFuzzer's time and guidance
 * go to the code under test. */
#ifdef __clang__
#define FUZZ_NO_COVERAGE __attribute__((no_sanitize("coverage")))
#else
#define FUZZ_NO_COVERAGE
#endif
