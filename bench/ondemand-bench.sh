#!/bin/sh
# SPDX-License-Identifier: MIT
# A release used before it is cloned (mount/serve --source) against a full
# clone first: (a) time to the first byte and to one small file through a
# loop mount, and bytes fetched; (b) a VM (qemu TCG) booting to
# multi-user.target with its root on `ihop serve --source`; (c) --fill to
# completion against clone; (d) sequential read throughput of a cold
# on-demand `ihop serve` against nbdkit's curl plugin reading the raw image
# from the same nginx (target >= 1x), over loopback and over emulated links
# (two private network namespaces joined by a veth pair shaped by tbf).
# Rounds take turns; medians and ratios.
# The measuring is bench/ondemand_bench.py's (see its --help); this installs
# what it needs, builds ihop, gives it a run directory under bench/work and,
# whatever happens, unmounts, stops and removes what was left in it.
#   bench/ondemand-bench.sh [--rounds N] [--boot-rounds N] [--no-boot] [--quick]
#                           [--links RATE,...|none] [--link-rounds N]
#                           [--drop-caches] [--store-dir DIR] [--rebuild-boot]   (as root)
set -eu
cd "$(dirname "$0")/.."
for a in "$@"; do
	case "$a" in -h | --help) exec /usr/bin/python3 bench/ondemand_bench.py --run-dir . --help ;; esac
done
if [ "$(id -u)" != 0 ]; then
	echo "ondemand-bench: run as root (FUSE and loop mounts, nginx, debootstrap, qemu)" >&2
	exit 2
fi
# nbdkit ships the curl plugin; nbdcopy is libnbd-bin's (in the base list);
# the links take ip and tc (iproute2) and curl.
scripts/install-deps.sh nbdkit iproute2 curl || { echo "ondemand-bench: installing packages failed" >&2; exit 2; }
ninja -C build >/dev/null || { echo "ondemand-bench: ninja -C build failed" >&2; exit 2; }
mkdir -p bench/work
run=$(mktemp -d "$PWD/bench/work/ondemand-run.XXXXXX")
child=

# shellcheck disable=SC2317,SC2013 # run by the trap; the pid file has one number a line
cleanup() {
	if [ -n "$child" ] && kill -0 "$child" 2>/dev/null; then
		kill -TERM "$child" 2>/dev/null || true
		wait "$child" 2>/dev/null || true
	fi
	# What the script left mounted under the run directory, the latest first
	# (a loop mount before the FUSE file it is made of; the links' network
	# namespaces, bind-mounted files, go once their processes are gone).
	awk -v run="$run/" 'index($5, run) == 1 { m[n++] = $5 } END { while (n) print m[--n] }' /proc/self/mountinfo |
		while read -r m; do
			umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true
		done
	# The processes it started (recorded by pid), if still running and still
	# theirs: their command line names the run directory.
	if [ -f "$run/pids" ]; then
		for sig in TERM KILL; do
			left=
			for pid in $(cat "$run/pids"); do
				if tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline" | grep -qF "$run"; then
					kill -"$sig" "$pid" 2>/dev/null || true
					left=1
				fi
			done
			[ -z "$left" ] || sleep 1
		done
	fi
	# Stores made elsewhere (--store-dir).
	if [ -f "$run/store-dirs" ]; then
		while read -r d; do
			rm -rf "$d"
		done <"$run/store-dirs"
	fi
	rm -rf "$run"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM HUP

# In the background so that a signal to this shell reaches the trap at once
# (the trap's cleanup stops the script first).
/usr/bin/python3 bench/ondemand_bench.py --run-dir "$run" "$@" &
child=$!
rc=0
wait "$child" || rc=$?
child=
exit "$rc"
