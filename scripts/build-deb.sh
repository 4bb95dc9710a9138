#!/bin/sh
# SPDX-License-Identifier: MIT
# Builds the Debian package from the committed tree (git HEAD, so that
# nothing local leaks in) with dpkg-buildpackage -b -us -uc, runs lintian
# on it, and with --install installs it and tries it: ihop --version (the
# package's version), man -w ihop, a clone and cat from a fixture, and
# purges it again. The .deb is left in build-deb/.
#
#   scripts/build-deb.sh [--install]
set -eu
cd "$(dirname "$0")/.."
root=$PWD
sh scripts/install-deps.sh debhelper lintian fakeroot dpkg-dev git

out=$root/build-deb
rm -rf "$out"
mkdir -p "$out/src"
git archive HEAD | tar -x -C "$out/src"
(cd "$out/src" && dpkg-buildpackage -b -us -uc) >"$out/build.log" 2>&1 || {
        tail -n 40 "$out/build.log"
        echo "dpkg-buildpackage failed: $out/build.log" >&2
        exit 1
}
deb=$(ls "$out"/ihop_*.deb)
echo "=== $deb"
dpkg-deb --info "$deb" | sed -n 's/^ \(Version\|Depends\|Recommends\|Installed-Size\):/\1:/p'
echo "=== lintian"
# Every tag, pedantic and experimental ones too; errors fail the build.
lintian --tag-display-limit 0 -I -E --pedantic "$deb" 2>&1 | grep -v "root privileges" | tee "$out/lintian.log" || true
grep -q "^E: " "$out/lintian.log" && { echo "lintian reports errors" >&2; exit 1; }

if [ "${1:-}" = --install ]; then
        echo "=== installed"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$deb" >/dev/null
        trap 'DEBIAN_FRONTEND=noninteractive apt-get purge -y -qq ihop >/dev/null' EXIT
        ihop --version
        want=$(dpkg-query -W -f='${Version}' ihop)
        [ "$(ihop --version)" = "ihop $want" ] || { echo "ihop --version is not the package's $want" >&2; exit 1; }
        man -w ihop
        man -w ihop-clone
        test -f /usr/share/bash-completion/completions/ihop
        test -x /usr/share/initramfs-tools/hooks/ihop
        work=$(mktemp -d)
        ihop clone tests/fixtures/pair/v1.ext4.cba "$work/store/v1"
        ihop verify "$work/store/v1"
        ihop cat -o "$work/v1.img" "$work/store/v1"
        echo "cat: $(stat -c %s "$work/v1.img") bytes, image checksum checked by cat"
        rm -rf "$work"
        echo "package OK"
fi
