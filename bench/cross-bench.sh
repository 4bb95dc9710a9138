#!/bin/bash
# SPDX-License-Identifier: MIT
# The device builds' figures: the stripped binary's size, and the peak
# resident memory of a clone of a 512 MiB ext4 release (bench/work/v1.ext4,
# made by clone-bench.sh, compressed with bita's defaults) from a file into
# an empty store, for each cross build present (build-arm64, build-armhf:
# scripts/cross-build.sh) and natively. The cross builds run under qemu
# user-mode emulation, whose own memory is in what the kernel reports: the
# figure given is the clone's peak less that of `ihop --version` under the
# same qemu (loader, libraries and qemu itself), median of ROUNDS rounds,
# the builds taking turns.
#   bench/cross-bench.sh [ROUNDS]   (default 3)
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}
work=$(mktemp -d /var/tmp/ihop-cross-bench.XXXXXX)
trap 'rm -rf "$work"' EXIT
image=bench/work/v1.ext4
[ -f "$image" ] || { echo "no $image: run bench/clone-bench.sh once first" >&2; exit 1; }
[ -f "$work/v1.cba" ] || build/src/ihop -q compress -i "$image" "$work/v1.cba" >/dev/null

sysroot_env() { # the wrapper scripts/cross-build.sh used with a sysroot
        [ -f "$1/sysroot.ini" ] || return 0
        sed -n "s/^exe_wrapper = \[\(.*\)\]$/\1/p" "$1/sysroot.ini" | tr -d "',"
}
builds=() runners=()
builds+=(native) runners+=("")
for arch in arm64 armhf; do
        dir=build-$arch
        [ -x "$dir/src/ihop" ] || continue
        wrapper=$(sysroot_env "$dir")
        if [ -z "$wrapper" ]; then
                case $arch in arm64) wrapper=qemu-aarch64-static ;; armhf) wrapper=qemu-arm-static ;; esac
        fi
        builds+=("$arch") runners+=("$wrapper $PWD/$dir/src/ihop")
done
runners[0]="$PWD/build/src/ihop"

peak_kib() { # command...: its peak RSS in KiB
        /usr/bin/time -f %M -o "$work/time" "$@" >/dev/null 2>"$work/err" || { cat "$work/err" >&2; return 1; }
        cat "$work/time"
}

declare -A clone_kib base_kib
for ((r = 0; r < rounds; r++)); do
        for ((i = 0; i < ${#builds[@]}; i++)); do
                k=$(( (i + r) % ${#builds[@]} ))
                b=${builds[$k]}
                rm -rf "$work/store"
                # shellcheck disable=SC2086
                c=$(peak_kib ${runners[$k]} clone "$work/v1.cba" "$work/store/v1")
                # shellcheck disable=SC2086
                v=$(peak_kib ${runners[$k]} --version)
                clone_kib[$b]+="$c "
                base_kib[$b]+="$v "
        done
done
median() { tr ' ' '\n' | grep . | sort -n | awk '{a[NR]=$1} END {print a[int((NR + 1) / 2)]}'; }
printf "%-8s %14s %16s %16s %14s\n" build "stripped bytes" "clone peak KiB" "--version KiB" "clone's own"
for ((i = 0; i < ${#builds[@]}; i++)); do
        b=${builds[$i]}
        case $b in
        native) size=$(strip -o "$work/s" build/src/ihop && stat -c %s "$work/s") ;;
        *) size=$(stat -c %s "build-$b/ihop.stripped") ;;
        esac
        c=$(median <<<"${clone_kib[$b]}")
        v=$(median <<<"${base_kib[$b]}")
        printf "%-8s %14s %16s %16s %14s\n" "$b" "$size" "$c" "$v" "$((c - v))"
done
