#!/bin/sh
# SPDX-License-Identifier: MIT
# Builds ihop into build/ (and, with "asan", an ASan+UBSan build into build-asan/).
set -eu
cd "$(dirname "$0")/.."
if [ ! -f build/build.ninja ]; then
        meson setup build >/dev/null
fi
ninja -C build
if [ "${1:-}" = asan ]; then
        if [ ! -f build-asan/build.ninja ]; then
                meson setup build-asan -Db_sanitize=address,undefined -Db_lundef=false -Dbuildtype=debug >/dev/null
        fi
        ninja -C build-asan
fi
