#!/bin/sh
# SPDX-License-Identifier: MIT
# A sysroot for scripts/cross-build.sh: the ARCH packages of ihop's
# libraries (and theirs), downloaded with apt and unpacked with dpkg -x
# into DIR, absolute symlinks made relative so that they resolve inside it.
# For a machine whose apt cannot install them beside its own packages
# (multiarch wants one version of a library for every architecture, which
# a mirror whose ARCH index lags cannot give).
#
#   scripts/cross-sysroot.sh arm64|armhf DIR
#   IHOP_CROSS_SYSROOT=DIR scripts/cross-build.sh ARCH --test
set -eu
arch=${1:-}
dir=${2:-}
case $arch in
arm64 | armhf) ;;
*) echo "usage: $0 arm64|armhf DIR" >&2; exit 2 ;;
esac
[ -n "$dir" ] || { echo "usage: $0 arm64|armhf DIR" >&2; exit 2; }

# The libraries ihop links (and libcurl's headers), and what they link.
pkgs="libprotobuf-c-dev libprotobuf-c1 libbrotli-dev libbrotli1 libzstd-dev libzstd1 liblzma-dev liblzma5
  libsodium-dev libsodium23 libcmocka-dev libcmocka0 libnl-genl-3-dev libnl-genl-3-200 libnl-3-dev libnl-3-200
  libfuse3-dev libfuse3-3 libjson-c-dev libjson-c5 libcurl4-openssl-dev"

added=""
if ! dpkg --print-foreign-architectures | grep -qx "$arch"; then
        dpkg --add-architecture "$arch"
        added=yes
fi
# Only ARCH's main index is needed; another that fails is apt's warning.
apt-get update -qq 2>/dev/null || true
mkdir -p "$dir/debs"
dir=$(cd "$dir" && pwd)
list=""
for p in $pkgs; do list="$list $p:$arch"; done
(cd "$dir/debs" && apt-get download $list >/dev/null 2>&1) || status=$?
if [ -n "$added" ]; then
        dpkg --remove-architecture "$arch"
        apt-get update -qq 2>/dev/null || true
fi
[ "${status:-0}" -eq 0 ] || { echo "cannot download the $arch packages" >&2; exit 1; }

rm -rf "$dir/root"
mkdir "$dir/root"
for d in "$dir"/debs/*.deb; do
        dpkg -x "$d" "$dir/root"
done
# /usr/lib/T/libfoo.so -> /lib/T/libfoo.so.1 would point out of the sysroot.
find "$dir/root" -type l | while read -r link; do
        target=$(readlink "$link")
        case $target in
        /*) ln -sfn "$(realpath -m --relative-to="$(dirname "$link")" "$dir/root$target")" "$link" ;;
        esac
done
# The SONAME links ldconfig would make, which the linker follows from one
# library to the next (libnl-genl-3.so needs libnl-3.so.200).
find "$dir/root" -type f -name "lib*.so.*" | while read -r lib; do
        soname=$(readelf -d "$lib" 2>/dev/null | sed -n 's/.*(SONAME).*\[\(.*\)\]/\1/p')
        [ -n "$soname" ] && [ ! -e "$(dirname "$lib")/$soname" ] && ln -s "$(basename "$lib")" "$(dirname "$lib")/$soname"
        true
done
echo "$dir/root: $(ls "$dir"/debs | wc -l) $arch packages"
