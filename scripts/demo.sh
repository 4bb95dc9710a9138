#!/bin/bash
# ihop end to end: publish two releases of an ext4 image on a local nginx,
# clone release 1 and then release 2 into one chunk store, show what release 2
# reused and downloaded, and prove the stored release is bit-perfect.
set -euo pipefail
cd "$(dirname "$0")/.."
top=$PWD
sh scripts/install-deps.sh
sh scripts/build.sh >/dev/null
ihop="$top/build/src/ihop"

work=$(mktemp -d /tmp/ihop-demo.XXXXXX)
chmod 755 "$work"  # nginx workers run unprivileged
nginx_pid=""
cleanup() {
        [ -n "$nginx_pid" ] && kill "$nginx_pid" 2>/dev/null && wait "$nginx_pid" 2>/dev/null
        rm -rf "$work"
}
trap cleanup EXIT

# Two releases of a 24 MiB ext4 image, made with bita (tests/fixtures/pair).
mkdir -p "$work/www" "$work/nginx"
cp tests/fixtures/pair/v1.ext4.cba tests/fixtures/pair/v2.ext4.cba "$work/www/"

port=$(/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
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
echo "== releases published at $url"

echo
echo "== ihop clone $url/v1.ext4.cba store/release_v1"
"$ihop" clone "$url/v1.ext4.cba" "$work/store/release_v1"

echo
echo "== ihop clone $url/v2.ext4.cba store/release_v2   (into the store that holds v1)"
"$ihop" clone "$url/v2.ext4.cba" "$work/store/release_v2"

served=$(awk '$1 == "/v2.ext4.cba" { s += $3 } END { print s + 0 }' "$work/nginx/access.log")
size=$(stat -c %s "$work/www/v2.ext4.cba")
echo
echo "== nginx served $served bytes of the $size-byte v2 archive ($((served * 100 / size))%)"

echo
echo "== is the stored release bit-perfect?"
want=$("$ihop" info "$work/www/v2.ext4.cba" | awk '$1 == "image" && $2 == "checksum:" { print $3 }')
got=$("$ihop" cat "$work/store/release_v2" | b2sum | awk '{ print $1 }')
echo "image checksum in the archive: $want"
echo "BLAKE2b-512 of the stored one: $got"
if [ "$want" = "$got" ]; then
        echo "bit-perfect: yes"
else
        echo "bit-perfect: NO"
        exit 1
fi
du -sh "$work/store" | awk '{ print "store size for both releases: " $1 }'
