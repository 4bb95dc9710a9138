#!/bin/sh
# SPDX-License-Identifier: MIT
# Installs what ihop needs to build, test and run its demo on Debian 12,
# and the packages given as arguments (what a script needs beside them).
#   scripts/install-deps.sh [PACKAGE[:ARCH]...]
set -eu
PACKAGES="build-essential meson ninja-build pkg-config protobuf-c-compiler libprotobuf-c-dev
  libcurl4-openssl-dev libbrotli-dev libzstd-dev liblzma-dev libsodium-dev libcmocka-dev
  libnl-genl-3-dev libfuse3-dev fuse3 libjson-c-dev
  python3 python3-pytest python3-brotli nginx-light openssl e2fsprogs coreutils libnbd-bin zstd file
  qemu-system-x86 qemu-utils busybox-static cpio squashfs-tools debootstrap cryptsetup-bin minisign tinyproxy
  scdoc bash-completion man-db fdisk dosfstools mtools
  clang-14 libclang-rt-14-dev $*"
missing=""
for p in $PACKAGES; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
        echo "installing:$missing"
        # One index that fails (another architecture's, on a mirror being
        # synced) need not stop the rest: the install says what is missing.
        apt-get update -qq || echo "apt-get update failed: installing from the indexes apt has" >&2
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi
