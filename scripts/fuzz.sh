#!/bin/bash
# SPDX-License-Identifier: MIT
# Builds the libFuzzer targets of tests/fuzz (clang, ASan+UBSan) into
# build-fuzz/ and runs each for SECONDS (default 30), starting from its seed
# and regression corpora. New corpus entries and crash inputs go under
# build-fuzz/work/TARGET/, never into the repository.
#
#   scripts/fuzz.sh [TARGET|all] [SECONDS]
#
# Prints, per target, executions per second, coverage (libFuzzer's cov:),
# total CPU time and PASS or FAIL, then "fuzz: N passed, N failed". Exits
# non-zero when a target found something (crash, leak, UBSan report,
# timeout) or did not build.
set -uo pipefail
cd "$(dirname "$0")/.."
which=${1:-all}
seconds=${2:-30}
case $seconds in
''|*[!0-9]*) echo "usage: $0 [TARGET|all] [SECONDS]" >&2; exit 2 ;;
esac

targets=()
for f in tests/fuzz/fuzz_*.c; do
        t=${f#tests/fuzz/fuzz_}
        t=${t%.c}
        if [ "$which" = all ] || [ "$which" = "$t" ]; then
                targets+=("$t")
        fi
done
if [ ${#targets[@]} -eq 0 ]; then
        echo "no fuzz target named $which (tests/fuzz/fuzz_*.c)" >&2
        exit 2
fi

sh scripts/install-deps.sh || exit 1
if [ ! -f build-fuzz/build.ninja ]; then
        CC=clang-14 meson setup build-fuzz -Dfuzz=true -Db_sanitize=address,undefined -Db_lundef=false \
                -Dbuildtype=debugoptimized -Dtests=disabled >/dev/null || exit 1
fi

# libFuzzer's options: stop at the first UBSan report as at any crash, a
# hang of 20 s is a finding, and the target's own log lines (rejected
# inputs, by the million) are dropped while libFuzzer's and the sanitizers'
# reports stay on stderr.
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
export ASAN_OPTIONS=detect_leaks=1
passed=0 failed=0
for t in "${targets[@]}"; do
        work=build-fuzz/work/$t
        mkdir -p "$work/corpus" "$work/artifacts"
        log=$work/log
        if ! ninja -C build-fuzz "tests/fuzz/fuzz_$t" >"$log" 2>&1; then
                cat "$log"
                echo "FAIL fuzz_$t: does not build"
                failed=$((failed + 1))
                continue
        fi
        dirs=("$work/corpus" "tests/fuzz/corpus/$t")
        [ -d "tests/fuzz/regressions/$t" ] && dirs+=("tests/fuzz/regressions/$t")
        opts=(-max_total_time="$seconds" -timeout=20 -print_final_stats=1 -close_fd_mask=2
              -artifact_prefix="$work/artifacts/")
        [ -f "tests/fuzz/fuzz_$t.dict" ] && opts+=(-dict="tests/fuzz/fuzz_$t.dict")
        TIMEFORMAT='%U %S'
        # libFuzzer writes new inputs into the first directory only: the scratch one.
        { time "build-fuzz/tests/fuzz/fuzz_$t" "${opts[@]}" "${dirs[@]}" >"$log" 2>&1; } 2>"$work/cpu"
        rc=$?
        execs=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log")
        cov=$(grep -oE 'cov: [0-9]+' "$log" | tail -n1 | grep -oE '[0-9]+')
        cpu=$(awk '{ printf "%.1f", $1 + $2 }' "$work/cpu")
        summary="fuzz_$t: ${execs:-?} exec/s, cov: ${cov:-?}, cpu ${cpu:-?} s"
        if [ "$rc" -eq 0 ]; then
                echo "PASS $summary"
                passed=$((passed + 1))
        else
                # The run's own log lacks the target's messages (closed
                # stderr): the input is run once more, with them.
                input=$(sed -n 's/.*Test unit written to //p' "$log" | tail -n1)
                if [ -n "$input" ] && [ -f "$input" ]; then
                        echo "--- fuzz_$t $input"
                        "build-fuzz/tests/fuzz/fuzz_$t" -timeout=20 "$input" 2>&1 | grep -v '^ihop: ' | tail -n 30
                        echo "---"
                else
                        tail -n 30 "$log"
                fi
                echo "FAIL $summary (exit $rc; log: $log; input: ${input:-none})"
                failed=$((failed + 1))
        fi
done
echo "fuzz: ${passed} passed, ${failed} failed"
[ "$failed" -eq 0 ]
