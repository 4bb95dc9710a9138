#!/bin/bash
# SPDX-License-Identifier: MIT
# The whole test suite: unit tests (cmocka) and end-to-end tests (pytest,
# real nginx), on a normal build and on an ASan+UBSan build, then every fuzz
# target for 20 s (scripts/fuzz.sh, one pass or fail each), then an arm64
# cross build's unit tests and round trip under qemu-user
# (scripts/cross-build.sh). Installs what it needs first. Ends with one
# line: "N passed, N failed".
#
# Two lanes, one per core. Emulation takes one core for minutes: the boot
# tests (a Debian system booted from a release, and from ihop serve) in qemu
# under TCG, then the arm64 cross build under qemu-user, run beside
# everything else, and their output follows the rest. The kernel-NBD tests
# (Debian's kernel in qemu, /dev/nbd0 attached by ihop mount) run last in
# the main lane, on the ASan build: the normal build's kernel-NBD path is
# the one the boot tests boot through.
set -uo pipefail
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
cd "$(dirname "$0")/.."
sh scripts/install-deps.sh || exit 1
sh scripts/build.sh asan || exit 1

passed=0 failed=0 skipped=0
log=$(mktemp)
kernel_logs=$(mktemp -d)
trap 'rm -rf "$log" "$kernel_logs"' EXIT

# meson prints "Ok: N", "Fail: N", "Skipped: N", ... at the end of a run.
count_meson() {
        local n
        for key in Ok Expected\ Fail; do
                n=$(sed -n "s/^${key}: *\([0-9]*\) *$/\1/p" "$log" | tail -n1)
                passed=$((passed + ${n:-0}))
        done
        for key in Fail Unexpected\ Pass Timeout; do
                n=$(sed -n "s/^${key}: *\([0-9]*\) *$/\1/p" "$log" | tail -n1)
                failed=$((failed + ${n:-0}))
        done
        n=$(sed -n "s/^Skipped: *\([0-9]*\) *$/\1/p" "$log" | tail -n1)
        skipped=$((skipped + ${n:-0}))
        grep -q "^Ok:" "$log" || failed=$((failed + 1))
}

# pytest's last line: "== 40 passed, 1 failed, 2 skipped in 12.3s =="
count_pytest() {
        local last n
        last=$(grep -E "[0-9]+ (passed|failed|error)" "$log" | tail -n1)
        [ -n "$last" ] || { failed=$((failed + 1)); return; }
        n=$(grep -oE "[0-9]+ passed" <<<"$last" | grep -oE "[0-9]+"); passed=$((passed + ${n:-0}))
        n=$(grep -oE "[0-9]+ failed" <<<"$last" | grep -oE "[0-9]+"); failed=$((failed + ${n:-0}))
        n=$(grep -oE "[0-9]+ errors?" <<<"$last" | grep -oE "[0-9]+"); failed=$((failed + ${n:-0}))
        n=$(grep -oE "[0-9]+ skipped" <<<"$last" | grep -oE "[0-9]+"); skipped=$((skipped + ${n:-0}))
}

# scripts/fuzz.sh's last line: "fuzz: 3 passed, 1 failed"
count_fuzz() {
        local n
        n=$(sed -n 's/^fuzz: \([0-9]*\) passed, \([0-9]*\) failed$/\1 \2/p' "$log" | tail -n1)
        [ -n "$n" ] || { failed=$((failed + 1)); return; }
        passed=$((passed + ${n% *}))
        failed=$((failed + ${n#* }))
}

KERNEL_TESTS=tests/e2e/test_kernel_nbd.py
BOOT_TESTS=tests/e2e/test_boot.py
(
        IHOP="$PWD/build/src/ihop" /usr/bin/python3 -m pytest -p no:cacheprovider -q "$BOOT_TESTS" \
                >"$kernel_logs/boot" 2>&1
        # The device's architecture: cross-built, its unit tests and a round
        # trip against the native build under qemu user-mode emulation.
        sh scripts/cross-build.sh arm64 --test >"$kernel_logs/cross" 2>&1
) &
kernel_lane=$!

for b in build build-asan; do
        echo "=== unit tests ($b)"
        meson test -C "$b" --print-errorlogs 2>&1 | tee "$log"
        count_meson
        echo "=== end-to-end tests ($b)"
        IHOP="$PWD/$b/src/ihop" /usr/bin/python3 -m pytest -p no:cacheprovider -q --ignore="$KERNEL_TESTS" \
                --ignore="$BOOT_TESTS" tests/e2e 2>&1 | tee "$log"
        count_pytest
done

echo "=== fuzz targets"
bash scripts/fuzz.sh all 20 2>&1 | tee "$log"
count_fuzz

echo "=== kernel NBD tests (build-asan)"
IHOP="$PWD/build-asan/src/ihop" /usr/bin/python3 -m pytest -p no:cacheprovider -q "$KERNEL_TESTS" 2>&1 | tee "$log"
count_pytest

wait "$kernel_lane"
for t in boot:"boot tests (build)" cross:"cross build (arm64) under qemu-user"; do
        echo "=== ${t#*:}"
        cp "$kernel_logs/${t%%:*}" "$log"
        cat "$log"
        [ "${t%%:*}" = cross ] && count_meson
        count_pytest
done

echo
echo "${skipped} skipped"
echo "${passed} passed, ${failed} failed"
[ "$failed" -eq 0 ]
