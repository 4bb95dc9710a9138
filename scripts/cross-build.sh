#!/bin/sh
# SPDX-License-Identifier: MIT
# Cross-builds ihop for a device architecture with Debian's cross toolchain
# and the libraries' -dev packages of that architecture (multiarch), into
# build-ARCH/, and prints the size of the stripped binary.
#
#   scripts/cross-build.sh arm64|armhf [--test]
#
# --test also runs, under qemu user-mode emulation: the unit tests (meson's
# exe_wrapper from cross/ARCH.ini), then tests/cross, a round trip of the
# cross-built binary (compress, clone, cat, verify, serve read by nbdcopy on
# the host) against the native one. Installs what it needs first (as root).
#
# IHOP_CROSS_SYSROOT=DIR takes the libraries from DIR instead (the ARCH
# packages unpacked with dpkg -x, as scripts/cross-sysroot.sh makes it):
# for a machine whose apt cannot install them beside its own, as when a
# mirror's index for ARCH lags behind the host's packages.
set -eu
cd "$(dirname "$0")/.."
arch=${1:-}
case $arch in
arm64) triplet=aarch64-linux-gnu qemu=qemu-aarch64-static ;;
armhf) triplet=arm-linux-gnueabihf qemu=qemu-arm-static ;;
*) echo "usage: $0 arm64|armhf [--test]" >&2; exit 2 ;;
esac

libs="libprotobuf-c-dev libbrotli-dev libzstd-dev liblzma-dev libsodium-dev libcmocka-dev libnl-genl-3-dev
  libfuse3-dev libjson-c-dev libcurl4-openssl-dev"
sysroot=${IHOP_CROSS_SYSROOT:-}
extra="crossbuild-essential-$arch qemu-user-static"
if [ -z "$sysroot" ]; then
        dpkg --print-foreign-architectures | grep -qx "$arch" || dpkg --add-architecture "$arch"
        for p in $libs; do extra="$extra $p:$arch"; done
fi
sh scripts/install-deps.sh $extra

dir=build-$arch
wrapper=$qemu
if [ -n "$sysroot" ]; then
        # Meson takes the later cross file's keys over the first's.
        sysroot=$(cd "$sysroot" && pwd)
        libdir=$sysroot/usr/lib/$triplet
        libs_path=$libdir:$sysroot/lib/$triplet
        wrapper="$qemu -L /usr/$triplet -E LD_LIBRARY_PATH=$libs_path"
        mkdir -p "$dir"
        cat >"$dir/sysroot.ini" <<INI
[binaries]
exe_wrapper = ['$qemu', '-L', '/usr/$triplet', '-E', 'LD_LIBRARY_PATH=$libs_path']
[properties]
sys_root = '$sysroot'
pkg_config_libdir = ['$libdir/pkgconfig', '$sysroot/usr/share/pkgconfig']
[built-in options]
c_args = ['-isystem', '$sysroot/usr/include/$triplet']
c_link_args = ['-Wl,-rpath-link,$libdir', '-Wl,-rpath-link,$sysroot/lib/$triplet', '-L$libdir', '-L$sysroot/lib/$triplet']
INI
fi
if [ ! -f "$dir/build.ninja" ]; then
        if [ -n "$sysroot" ]; then
                meson setup "$dir" --cross-file "cross/$arch.ini" --cross-file "$dir/sysroot.ini" >/dev/null
        else
                meson setup "$dir" --cross-file "cross/$arch.ini" >/dev/null
        fi
fi
ninja -C "$dir" >/dev/null
"$triplet-strip" -o "$dir/ihop.stripped" "$dir/src/ihop"
echo "$dir/src/ihop: $(stat -c %s "$dir/ihop.stripped") bytes stripped ($arch)"

if [ "${2:-}" = --test ]; then
        echo "=== unit tests ($dir, $qemu)"
        meson test -C "$dir" --print-errorlogs
        echo "=== round trip ($dir, $qemu)"
        [ -x build/src/ihop ] || sh scripts/build.sh
        # 32 bits: also an image past 4 GiB (sizes and offsets past 2^31, 2^32).
        large=0
        [ "$arch" = armhf ] && large=1
        IHOP="$PWD/build/src/ihop" IHOP_CROSS="$PWD/$dir/src/ihop" IHOP_CROSS_QEMU="$wrapper" IHOP_CROSS_LARGE=$large \
                /usr/bin/python3 -m pytest -p no:cacheprovider -q tests/cross
fi
