#!/bin/bash
# SPDX-License-Identifier: MIT
# ihop end to end: make two releases of a small ext4 image, compress and
# sign them with ihop compress --sign, publish them on a local nginx, clone
# release 1 and then release 2 into one chunk store trusting only the
# vendor's key, show what release 2 reused and downloaded, that release 1
# cannot come back as an update, prove the stored release is bit-perfect,
# and mount it.
set -euo pipefail
cd "$(dirname "$0")/.."
top=$PWD
sh scripts/install-deps.sh
sh scripts/build.sh >/dev/null
ihop="$top/build/src/ihop"

work=$(mktemp -d /tmp/ihop-demo.XXXXXX)
chmod 755 "$work"  # nginx workers run unprivileged
nginx_pid="" ihop_mount_pid=""
cleanup() {
        mountpoint -q "$work/mnt" 2>/dev/null && umount "$work/mnt"
        mountpoint -q "$work/v2.file" 2>/dev/null && umount "$work/v2.file"
        [ -n "$ihop_mount_pid" ] && wait "$ihop_mount_pid" 2>/dev/null
        [ -n "$nginx_pid" ] && kill "$nginx_pid" 2>/dev/null && wait "$nginx_pid" 2>/dev/null
        rm -rf "$work"
}
trap cleanup EXIT

echo "== two releases of a 32 MiB ext4 image"
# Release 1: some documentation, a "binary" and a data file; release 2
# changes one file and adds one, as a small update would.
mkdir -p "$work/tree/usr/share" "$work/tree/opt/app" "$work/www"
cp -r /usr/share/common-licenses "$work/tree/usr/share/"
head -c 6M /dev/urandom >"$work/tree/opt/app/app.bin"
seq 1 400000 >"$work/tree/opt/app/data.txt"
echo "release 1" >"$work/tree/VERSION"
make_image() {  # fixed UUID, hash seed and time: the same tree gives the same image
        E2FSPROGS_FAKE_TIME=1700000000 mke2fs -q -F -t ext4 -b 4096 -U 6f1b2a3c-4d5e-4f60-8a7b-9c0d1e2f3a4b \
                -E hash_seed=0d6c2b7e-1f3a-4c5d-9e8f-7a6b5c4d3e2f,root_owner=0:0 -d "$work/tree" "$1" 32M
}
make_image "$work/v1.ext4"
echo "release 2" >"$work/tree/VERSION"
head -c 512K /dev/urandom | dd of="$work/tree/opt/app/app.bin" bs=512K seek=3 conv=notrunc status=none
seq 1 20000 >"$work/tree/opt/app/new.txt"
make_image "$work/v2.ext4"

echo
echo "== ihop compress --sign (bita's format and defaults: RollSum chunks, brotli; minisign signatures)"
"$ihop" keygen -W -p "$work/vendor.pub" -s "$work/vendor.key"
"$ihop" -q compress -i "$work/v1.ext4" --sign "$work/vendor.key" --release-version 1 "$work/www/v1.ext4.cba" >/dev/null
"$ihop" -q compress -i "$work/v2.ext4" --sign "$work/vendor.key" --release-version 2 "$work/www/v2.ext4.cba" >/dev/null
ls -l "$work/www" | awk 'NR > 1 { print "  " $9 ": " $5 " bytes" }'

port=$(/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
mkdir -p "$work/nginx"
cat >"$work/nginx/nginx.conf" <<CONF
worker_processes 1;
pid $work/nginx/nginx.pid;
error_log $work/nginx/error.log;
events { worker_connections 64; }
http {
    log_format bytes '\$request_uri \$status \$body_bytes_sent';
    access_log $work/nginx/access.log bytes;
    client_body_temp_path $work/nginx;
    server {
        listen 127.0.0.1:$port;
        root $work/www;
    }
}
CONF
/usr/sbin/nginx -p "$work/nginx" -c "$work/nginx/nginx.conf" -g 'daemon off;' &
nginx_pid=$!
for _ in $(seq 50); do
        (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null && break
        sleep 0.1
done
url="http://127.0.0.1:$port"
echo
echo "== releases published at $url"

echo
echo "== ihop clone --trusted-key vendor.pub $url/v1.ext4.cba store/release_v1"
"$ihop" clone --trusted-key "$work/vendor.pub" "$url/v1.ext4.cba" "$work/store/release_v1"

echo
echo "== ihop clone --trusted-key vendor.pub $url/v2.ext4.cba store/release_v2   (into the store that holds v1)"
"$ihop" clone --trusted-key "$work/vendor.pub" "$url/v2.ext4.cba" "$work/store/release_v2"

served=$(awk '$1 == "/v2.ext4.cba" { s += $3 } END { print s + 0 }' "$work/nginx/access.log")
size=$(stat -c %s "$work/www/v2.ext4.cba")
echo
echo "== nginx served $served bytes of the $size-byte v2 archive ($((served * 100 / size))%)"

echo
echo "== release 1 offered again as an update: refused (the store has accepted version 2)"
if "$ihop" clone --trusted-key "$work/vendor.pub" "$url/v1.ext4.cba" "$work/store/old" 2>&1; then
        echo "rollback protection: NO"
        exit 1
fi
echo "rollback protection: yes"

echo
echo "== is the stored release bit-perfect?"
want=$(b2sum "$work/v2.ext4" | awk '{ print $1 }')
got=$("$ihop" cat "$work/store/release_v2" | b2sum | awk '{ print $1 }')
echo "BLAKE2b-512 of the original image:  ${want:0:32}..."
echo "BLAKE2b-512 of the stored release:  ${got:0:32}..."
[ "$want" = "$got" ] || { echo "bit-perfect: NO"; exit 1; }
echo "bit-perfect: yes"
"$ihop" ls "$work/store"

echo
if [ -e /dev/fuse ]; then
        echo "== ihop mount store/release_v2 v2.file   (FUSE; 'ihop mount ... /dev/nbdN' where the kernel has NBD)"
        touch "$work/v2.file"
        "$ihop" mount "$work/store/release_v2" "$work/v2.file" &
        ihop_mount_pid=$!
        for _ in $(seq 100); do
                [ "$(stat -c %s "$work/v2.file")" -gt 0 ] && break
                sleep 0.05
        done
        mkdir -p "$work/mnt"
        mount -o loop,ro "$work/v2.file" "$work/mnt"
        echo "mounted read-only: $(cat "$work/mnt/VERSION"), $(ls "$work/mnt/opt/app" | tr '\n' ' ')"
        cmp "$work/mnt/opt/app/app.bin" "$work/tree/opt/app/app.bin" && echo "opt/app/app.bin matches the release's tree"
        umount "$work/mnt"
        umount "$work/v2.file"
        wait "$ihop_mount_pid"
        ihop_mount_pid=""
else
        echo "== (no /dev/fuse here: skipping the mount part of the demo)"
fi
