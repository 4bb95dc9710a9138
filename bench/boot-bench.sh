#!/bin/sh
# SPDX-License-Identifier: MIT
# Boot time from an ihop release against the same image on a plain virtio
# disk, with and without dm-verity, under qemu TCG: kernel start to
# multi-user.target, each kind booted once per round in a rotating order
# (the machine is noisy: the ratio is the figure). Also the resident memory
# of the root-storage ihop after boot. Builds the test system of
# tests/boot/bootvm.py (debootstrap once, cached) with build/src/ihop.
#   bench/boot-bench.sh [ROUNDS]   (default 5)
set -eu
cd "$(dirname "$0")/.."
work=$(mktemp -d /var/tmp/ihop-boot-bench.XXXXXX)
trap 'rm -rf "$work"' EXIT
/usr/bin/python3 tests/boot/bootvm.py --work "$work" --bench "${1:-5}"
