#!/bin/bash
# SPDX-License-Identifier: MIT
# Runs test files over and over under load, to find the tests that fail
# only now and then (a timing the test assumed). Each round runs every file
# once, in its own pytest, against the build given; stress-ng keeps the
# CPUs busy beside it (one worker per core, half of them on I/O), so that
# the servers under test are slow to be scheduled, as on a loaded CI host.
#
#   scripts/soak.sh [--rounds N] [--build DIR] [--no-load] FILE...
#
# Prints one line per run ("round 3 tests/e2e/x.py: 12 passed"), the
# failures' pytest output in full, and last, per file, "FILE: N runs, N
# failed". Exit status 1 if any run failed.
set -uo pipefail
cd "$(dirname "$0")/.."
rounds=20 build=build load=yes
while [ $# -gt 0 ]; do
        case "$1" in
        --rounds) rounds=$2; shift 2 ;;
        --build) build=$2; shift 2 ;;
        --no-load) load=no; shift ;;
        -*) echo "soak.sh: unknown option $1" >&2; exit 2 ;;
        *) break ;;
        esac
done
[ $# -gt 0 ] || { echo "usage: scripts/soak.sh [--rounds N] [--build DIR] [--no-load] FILE..." >&2; exit 2; }
[ -x "$build/src/ihop" ] || { echo "soak.sh: no $build/src/ihop: build it first (scripts/build.sh asan)" >&2; exit 2; }
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1

stress=
if [ "$load" = yes ]; then
        sh scripts/install-deps.sh stress-ng >/dev/null || exit 1
        cpus=$(nproc)
        # Bounded like everything else: the load ends with this script or
        # after a day, whichever comes first.
        stress-ng --cpu "$cpus" --io "$(( (cpus + 1) / 2 ))" --timeout 86400 --quiet &
        stress=$!
        trap 'kill "$stress" 2>/dev/null; wait "$stress" 2>/dev/null' EXIT
fi

declare -A runs failed
out=$(mktemp)
trap 'rm -f "$out"; [ -n "$stress" ] && kill "$stress" 2>/dev/null' EXIT
for ((i = 1; i <= rounds; i++)); do
        for f in "$@"; do
                IHOP="$PWD/$build/src/ihop" timeout 1800 /usr/bin/python3 -m pytest -p no:cacheprovider -q "$f" >"$out" 2>&1
                rc=$?
                runs[$f]=$(( ${runs[$f]:-0} + 1 ))
                echo "round $i $f: $(grep -E '[0-9]+ (passed|failed|error)' "$out" | tail -n1 | tr -d '=' | sed 's/^ *//')"
                if [ "$rc" -ne 0 ]; then
                        failed[$f]=$(( ${failed[$f]:-0} + 1 ))
                        sed 's/^/    /' "$out"
                fi
        done
done
echo
status=0
for f in "$@"; do
        echo "$f: ${runs[$f]} runs, ${failed[$f]:-0} failed"
        [ "${failed[$f]:-0}" -eq 0 ] || status=1
done
echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
exit $status
