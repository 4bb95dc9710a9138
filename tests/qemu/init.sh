#!/bin/sh
# SPDX-License-Identifier: MIT
# /init of the throwaway VM in which tests/e2e/test_kernel_nbd.py runs
# 'ihop mount' against a real kernel NBD driver. Busybox ash; nbdvm.py puts
# it into the initramfs together with ihop, the modules and a store at /store.
#
# Results go to the second serial port (ttyS1, which nothing else writes to)
# as "RESULT key value..." and "FILE phase sha256 ./path" lines, and the
# RESULT lines are echoed on the console (ttyS0) for people reading the log;
# "KMSG line" lines carry what the kernel said about nbd, ext4 and I/O
# errors. "RESULT done 1" is the last line. The host decides what is right;
# this script only reports. Should reading the device stall (15 s), the state
# of ihop's threads and of the driver goes to the console ("=== DIAG").
#
# The phases run one after the other on /dev/nbd0, so each one also shows
# that the one before left the device free for the next attach:
#   nomod  ihop mount before nbd.ko is loaded; and on a partition's node
#   a      defaults (block size 512, 4 connections); a second ihop mount on
#          the busy device; SIGTERM
#   b      --block-size 4096 --connections 1 --verify; the device is then
#          disconnected from outside (ioctl NBD_DISCONNECT) and ihop must end
#   c      --detach --pid-file --connections 16: returns once attached; SIGINT
#   d      the ioctl interface (IHOP_NBD_INTERFACE=ioctl), as on kernels
#          without the netlink family; SIGTERM
#   r      --root-storage: refused with the ioctl interface; with netlink,
#          from an "initramfs" (/etc/initrd-release): '@' in argv[0], locked
#          in memory, OOM-exempt, the kernel's timeout, SIGTERM and SIGINT
#          ignored; then disconnected from outside
#   many   each release /disk/store/rN... (tens of thousands of chunk
#          files, on the virtual disk) under 'ulimit -n 1024', with
#          --root-storage -v: the limit ihop raised it to, its resident and
#          locked memory; disconnected from outside
#   gpt    /store/disk, a whole disk with a GPT (ext4, squashfs, vfat at odd
#          sectors), --detach: the partitions are there as soon as it
#          returns; each one read whole, mounted, every entry reported
#   sq     /store/squashfs, a squashfs root file system as a whole release,
#          --block-size 4096: read whole, mounted, every entry reported
#   od     --source /disk/v1.cba (the archive on the virtual disk, no
#          network) into an empty store on tmpfs: the ext4 mounted and its
#          files read first (scattered fetches), then the whole device; the
#          release then appears in that store and verifies; SIGTERM
#   odf    --source --fill --detach into another empty store: the release
#          appears without a read, the device reads whole; SIGINT
#   ods    --source http://127.0.0.1:8080/... from range-server in the guest,
#          which drips, goes silent or stalls: reads end in EIO within the
#          bound, and read right once it recovers; SIGTERM while a read is
#          stuck; odsd: the same stop, --detach with the HTTP defaults
#          (the kernel's log of these goes apart: their reads fail)

export PATH=/bin:/sbin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t debugfs debugfs /sys/kernel/debug 2>/dev/null

OUT=/dev/ttyS1
DEV=/dev/nbd0
SYS=/sys/block/nbd0
STORE=/store/v1

res() {
        echo "RESULT $*" >"$OUT"
        echo "RESULT $*"
}

# t PHASE: seconds since boot, to see where the time goes.
t() { res "$1.t" "$(cut -d' ' -f1 /proc/uptime)"; }

size() { cat $SYS/size 2>/dev/null || echo none; }

# A process is alive while /proc has it and it is not a zombie; no pid
# (a pid file never written) is none (/proc//stat is /proc/stat).
alive() {
        [ -n "$1" ] || return 1
        st=$(sed 's/.*) //' /proc/"$1"/stat 2>/dev/null | cut -c1)
        [ -n "$st" ] && [ "$st" != Z ]
}

# wait_size PID [SECONDS]: until the device has a size, PID died, or
# SECONDS (default 30) went by.
wait_size() {
        i=0
        while [ "$(size)" = 0 ] && [ $i -lt $((${2:-30} * 10)) ] && alive "$1"; do
                sleep 0.1
                i=$((i + 1))
        done
}

# wait_zero: until the device is back to size 0, at most 10 s.
wait_zero() {
        i=0
        while [ "$(size)" != 0 ] && [ $i -lt 100 ]; do
                sleep 0.1
                i=$((i + 1))
        done
}

# stop_detached PHASE PID: SIGINT to a detached ihop (PID may be empty): it
# must end, and the device go back to size 0.
stop_detached() {
        if [ -n "$2" ]; then
                kill -INT "$2"
                wait_gone "$2" 20
                res "$1.alive_after" "$(alive "$2" && echo 1 || echo 0)"
        fi
        wait_zero
        res "$1.size_after" "$(size)"
}

# wait_exit PID SECONDS: PID's exit status (a child of ours); killed with
# SIGKILL (status 137) if it has not ended in time.
wait_exit() {
        wait_gone "$1" "$2"
        alive "$1" && kill -KILL "$1"
        wait "$1"
}

# wait_gone PID SECONDS: until PID (not a child of ours: a daemon) has
# ended, or SECONDS went by.
wait_gone() {
        i=0
        while alive "$1" && [ $i -lt $(($2 * 10)) ]; do
                sleep 0.1
                i=$((i + 1))
        done
}

# diag WHAT: what ihop's threads and the NBD driver are doing, on the
# console; and as results, how many ihop threads are neither waiting for a
# request nor for a signal, and how many of the kernel's nbd recv works run.
diag() {
        echo "=== DIAG $1"
        busy=0
        works=0
        for task in /proc/[0-9]*/task/[0-9]*; do
                comm=$(cat "$task"/comm 2>/dev/null)
                stack=$(cat "$task"/stack 2>/dev/null)
                case "$comm" in
                ihop | sha256sum | mount | *nbd*)
                        echo "--- $task $comm $(sed 's/.*) //' "$task"/stat | cut -c1)"
                        echo "$stack"
                        ;;
                esac
                case "$comm/$stack" in
                ihop/*unix_stream_read_generic* | ihop/*do_sys_poll*) ;;
                ihop/*) busy=$((busy + 1)) ;;
                esac
                case "$stack" in
                *recv_work*) works=$((works + 1)) ;;
                esac
        done
        for f in /sys/kernel/debug/nbd/nbd0/tasks /sys/kernel/debug/block/nbd0/hctx*/busy; do
                echo "--- $f"
                cat "$f"
        done
        echo w >/proc/sysrq-trigger
        dmesg | tail -n 40
        echo "=== END DIAG"
        res diag.what "$1"
        res diag.ihop_busy $busy
        res diag.recv_works $works
}

# stall_watch WHAT: in the background, diag once if WHAT still runs after 15 s
# (a request the kernel waits on times out after 30 s); ended by stall_unwatch.
W=0
stall_watch() {
        W=$((W + 1))
        (
                i=0
                while [ ! -e /tmp/unwatch.$W ] && [ $i -lt 150 ]; do
                        sleep 0.1
                        i=$((i + 1))
                done
                [ -e /tmp/unwatch.$W ] || diag "$1"
        ) &
}
stall_unwatch() { touch /tmp/unwatch.$W; }

# attrs PHASE: the attached device's size, read-only flag and block size.
attrs() {
        res "$1.size" "$(size)"
        res "$1.ro" "$(cat $SYS/ro)"
        res "$1.lbs" "$(cat $SYS/queue/logical_block_size)"
}

# devsum PHASE: the SHA-256 of the whole device.
devsum() {
        t "$1.dev"
        stall_watch "$1: reading $DEV"
        res "$1.dev" "$(sha256sum $DEV | cut -d' ' -f1)"
        stall_unwatch
}

# ext4 PHASE: the device mounted read-only as ext4, a "FILE PHASE sha256
# ./path" line for every file, unmounted.
ext4() {
        t "$1.mount"
        mount -o ro -t ext4 $DEV /mnt 2>/tmp/"$1".mount
        res "$1.mount" $? "$(head -n1 /tmp/"$1".mount)"
        if grep -q ' /mnt ' /proc/mounts; then
                stall_watch "$1: reading the files"
                (cd /mnt && find . -type f -exec sha256sum {} +) |
                        while read -r h f; do echo "FILE $1 $h $f" >"$OUT"; done
                stall_unwatch
                res "$1.files" "$(find /mnt -type f | wc -l)"
                t "$1.umount"
                umount /mnt
                res "$1.umount" $?
        fi
}

# checks PHASE: what every phase reports about the attached device.
checks() {
        attrs "$1"
        devsum "$1"
        ext4 "$1"
}

# wait_file PATH PID SECONDS: until PATH exists, PID died, or SECONDS went by.
wait_file() {
        i=0
        while [ ! -e "$1" ] && [ $i -lt $(($3 * 10)) ] && alive "$2"; do
                sleep 0.1
                i=$((i + 1))
        done
}

# tree PHASE DIR: a "FILE PHASE VALUE ./path" line for every entry under DIR,
# VALUE the SHA-256 of a file, "symlink:TARGET" or "dir"; then their number.
tree() {
        stall_watch "$1: reading the files"
        (cd "$2" && find . -mindepth 1) | while read -r f; do
                if [ -L "$2/$f" ]; then
                        v="symlink:$(readlink "$2/$f")"
                elif [ -d "$2/$f" ]; then
                        v=dir
                elif [ -f "$2/$f" ]; then
                        v=$(sha256sum <"$2/$f" | cut -d' ' -f1)
                else
                        v=other
                fi
                echo "FILE $1 $v $f" >"$OUT"
        done
        stall_unwatch
        res "$1.entries" "$(cd "$2" && find . -mindepth 1 | wc -l)"
}

# parts: the partitions the kernel shows of the device, as
# "nbd0p1:START:SIZE ..." (512-byte sectors), from sysfs: this opens nothing.
parts() {
        l=
        for p in "$SYS"/nbd0p*; do
                [ -e "$p" ] && l="$l ${p##*/}:$(cat "$p"/start):$(cat "$p"/size)"
        done
        echo "${l# }"
}

# log PHASE: ihop's own messages, on the console and in one result line.
log() {
        sed "s/^/[$1] /" /tmp/"$1".log
        res "$1.mounted" "$(grep -m1 'mounted on' /tmp/"$1".log)"
}

res boot 1
res kernel "$(uname -r)"

t nomod
# --- nomod: no NBD in the kernel yet
timeout -s KILL 20 ihop mount $STORE $DEV >/tmp/nomod.log 2>&1
res nomod.rc $?
res nomod.msg "$(head -n1 /tmp/nomod.log)"
# a partition's node (nbd0p1: major 43, minor 1) is not device 0
mknod /tmp/nbd0p1 b 43 1
timeout -s KILL 20 ihop mount $STORE /tmp/nbd0p1 >/tmp/part.log 2>&1
res part.rc $?
res part.msg "$(head -n1 /tmp/part.log)"

while read -r m; do
        insmod /modules/"$m".ko
        res "insmod.$m" $?
done </modules/order

# The virtual disk, when there is one: stores too big for the initramfs.
mkdir -p /disk
i=0
while [ ! -b /dev/vda ] && [ $i -lt 50 ]; do
        sleep 0.1
        i=$((i + 1))
done
if [ -b /dev/vda ]; then
        mount -o ro -t squashfs /dev/vda /disk
        res disk.mount $?
        # Warm the kernel's caches of the disk's directories and inodes in
        # their own order: looked up cold in a release's order, 32,768 chunk
        # files cost minutes under TCG (each lookup reads metadata blocks
        # at random), in the same order as find, seconds. What is tested is
        # reading them under a descriptor limit, not TCG's speed.
        t disk.warm
        find /disk -type f >/dev/null
        t disk.warmed
fi

t a
# --- a: defaults, busy device, SIGTERM
ihop mount $STORE $DEV >/tmp/a.log 2>&1 </dev/null &
pid=$!
wait_size $pid
res a.alive "$(alive $pid && echo 1 || echo 0)"
timeout -s KILL 20 ihop mount $STORE $DEV >/tmp/busy.log 2>&1 </dev/null
res a.busy.rc $?
res a.busy.msg "$(head -n1 /tmp/busy.log)"
checks a
kill -TERM $pid
wait_exit $pid 20
res a.exit $?
wait_zero
res a.size_after "$(size)"
log a

t b
# --- b: 4096-byte blocks, one connection, --verify; disconnected from outside
ihop mount --block-size 4096 --connections 1 --verify $STORE $DEV >/tmp/b.log 2>&1 </dev/null &
pid=$!
wait_size $pid
res b.alive "$(alive $pid && echo 1 || echo 0)"
checks b
if [ -x /bin/nbd-disconnect ]; then
        nbd-disconnect $DEV
        res b.disconnect $?
else
        res b.disconnect none
        kill -TERM $pid
fi
wait_exit $pid 20
res b.exit $?
wait_zero
res b.size_after "$(size)"
log b

t c
# --- c: --detach returns once the device is attached; SIGINT
timeout -s KILL 30 ihop mount --detach --pid-file /tmp/c.pid --connections 16 $STORE $DEV \
        >/tmp/c.log 2>&1 </dev/null
res c.rc $?
res c.size "$(size)"
dpid=$(cat /tmp/c.pid 2>/dev/null)
res c.pid "${dpid:-none}"
stall_watch "c: reading $DEV"
res c.dev "$(sha256sum $DEV | cut -d' ' -f1)"
stall_unwatch
stop_detached c "$dpid"
sed "s/^/[c] /" /tmp/c.log

t d
# --- d: the ioctl fallback (NBD_SET_SOCK, NBD_DO_IT), one connection
IHOP_NBD_INTERFACE=ioctl ihop mount $STORE $DEV >/tmp/d.log 2>&1 </dev/null &
pid=$!
wait_size $pid
res d.alive "$(alive $pid && echo 1 || echo 0)"
checks d
kill -TERM $pid
wait_exit $pid 20
res d.exit $?
wait_zero
res d.size_after "$(size)"
log d

t r
# --- r: --root-storage
IHOP_NBD_INTERFACE=ioctl timeout -s KILL 20 ihop mount --root-storage $STORE $DEV >/tmp/r-ioctl.log 2>&1 </dev/null
res r.ioctl.rc $?
res r.ioctl.msg "$(tail -n1 /tmp/r-ioctl.log)"
res r.ioctl.size "$(size)"
mkdir -p /etc
touch /etc/initrd-release
timeout -s KILL 30 ihop mount --root-storage --detach --pid-file /tmp/r.pid $STORE $DEV >/tmp/r.log 2>&1 </dev/null
res r.rc $?
rpid=$(cat /tmp/r.pid 2>/dev/null)
res r.pid "${rpid:-none}"
if [ -n "$rpid" ]; then
        res r.argv0 "$(tr '\0' '\n' </proc/"$rpid"/cmdline | head -n1)"
        res r.comm "$(cat /proc/"$rpid"/comm)"
        res r.oom "$(cat /proc/"$rpid"/oom_score_adj)"
        res r.vmlck_kib "$(grep VmLck /proc/"$rpid"/status | tr -s ' \t' ' ' | cut -d' ' -f2)"
        res r.rss_kib "$(grep VmRSS /proc/"$rpid"/status | tr -s ' \t' ' ' | cut -d' ' -f2)"
        res r.io_timeout_ms "$(cat $SYS/queue/io_timeout 2>/dev/null || echo none)"
        kill -TERM "$rpid"
        kill -INT "$rpid"
        sleep 1
        res r.alive_after_signals "$(alive "$rpid" && echo 1 || echo 0)"
        stall_watch "r: reading $DEV"
        res r.dev "$(sha256sum $DEV | cut -d' ' -f1)"
        stall_unwatch
        if [ -x /bin/nbd-disconnect ]; then
                nbd-disconnect $DEV
                res r.disconnect $?
        else
                res r.disconnect none
                kill -KILL "$rpid"
        fi
        wait_gone "$rpid" 20
        res r.alive_after_disconnect "$(alive "$rpid" && echo 1 || echo 0)"
fi
rm -f /etc/initrd-release
wait_zero
res r.size_after "$(size)"
sed "s/^/[r] /" /tmp/r.log

t many
# --- many: releases with more chunk files than a process of an initramfs
# may open (ulimit -n 1024), each as the root storage daemon: ihop, root
# here, raises the limit to cover them (at most one per 64 KiB of memory)
res many.memtotal_kib "$(grep MemTotal /proc/meminfo | tr -s ' ' | cut -d' ' -f2)"
for rel in $(ls /disk/store 2>/dev/null | grep '^r[0-9]'); do
        (ulimit -n 1024 && exec ihop -v mount --root-storage /disk/store/"$rel" $DEV) >/tmp/many.log 2>&1 </dev/null &
        pid=$!
        t "many.$rel.start"
        wait_size $pid 120
        t "many.$rel.attached"
        res "many.$rel.alive" "$(alive $pid && echo 1 || echo 0)"
        stall_watch "many: reading $DEV ($rel)"
        res "many.$rel.dev" "$(sha256sum $DEV | cut -d' ' -f1)"
        stall_unwatch
        # the limit is raised when the first read sizes the cache
        res "many.$rel.nofile" "$(grep 'Max open files' /proc/$pid/limits | tr -s ' ' | cut -d' ' -f4,5)"
        res "many.$rel.fds" "$(ls /proc/$pid/fd | wc -l)"
        res "many.$rel.rss_kib" "$(grep VmRSS /proc/$pid/status | tr -s ' \t' ' ' | cut -d' ' -f2)"
        res "many.$rel.vmlck_kib" "$(grep VmLck /proc/$pid/status | tr -s ' \t' ' ' | cut -d' ' -f2)"
        # --root-storage outlives SIGTERM: the device is disconnected from outside
        if [ -x /bin/nbd-disconnect ]; then
                nbd-disconnect $DEV
                res "many.$rel.disconnect" $?
        else
                res "many.$rel.disconnect" none
                kill -KILL $pid
        fi
        wait_exit $pid 20
        res "many.$rel.exit" $?
        wait_zero
        sed "s/^/[many $rel] /" /tmp/many.log
        res "many.$rel.limit_line" "$(grep -m1 'open-file limit' /tmp/many.log)"
        res "many.$rel.errors" "$(grep -c error /tmp/many.log)"
done

t gpt
# --- gpt: a whole disk with a GPT; block size 512, --detach
if [ -f /store/disk ]; then
        timeout -s KILL 60 ihop mount --detach --pid-file /tmp/gpt.pid /store/disk $DEV >/tmp/gpt.log 2>&1 </dev/null
        res gpt.rc $?
        # As --detach returned, before anything here opens the device: a
        # script mounting nbd0p1 next must find it.
        res gpt.parts_at_return "$(parts)"
        gpid=$(cat /tmp/gpt.pid 2>/dev/null)
        res gpt.size "$(size)"
        # Later, still without opening it: would they come at all?
        i=0
        while [ ! -e $SYS/nbd0p3 ] && [ $i -lt 50 ]; do
                sleep 0.1
                i=$((i + 1))
        done
        res gpt.parts "$(parts)"
        n=0
        for fs in ext4 squashfs vfat; do # partitions 1, 2, 3: see disk_images.py
                n=$((n + 1))
                part=gpt.p$n
                res "$part.node" "$([ -b ${DEV}p$n ] && echo 1 || echo 0)"
                t "$part.dev"
                stall_watch "gpt: reading ${DEV}p$n"
                res "$part.dev" "$(sha256sum ${DEV}p$n | cut -d' ' -f1)"
                stall_unwatch
                mount -o ro -t $fs ${DEV}p$n /mnt 2>/tmp/$part.mount
                res "$part.mount" $? "$(head -n1 /tmp/$part.mount)"
                if grep -q ' /mnt ' /proc/mounts; then
                        tree "$part" /mnt
                        umount /mnt
                        res "$part.umount" $?
                fi
        done
        stop_detached gpt "$gpid"
        sed "s/^/[gpt] /" /tmp/gpt.log
fi

t sq
# --- sq: a squashfs root file system as the whole release, 4096-byte blocks
if [ -f /store/squashfs ]; then
        ihop mount --block-size 4096 /store/squashfs $DEV >/tmp/sq.log 2>&1 </dev/null &
        pid=$!
        wait_size $pid
        res sq.alive "$(alive $pid && echo 1 || echo 0)"
        res sq.size "$(size)"
        res sq.ro "$(cat $SYS/ro)"
        res sq.lbs "$(cat $SYS/queue/logical_block_size)"
        # none: the previous release's partitions must not linger
        res sq.parts "$(parts)"
        stall_watch "sq: reading $DEV"
        res sq.dev "$(sha256sum $DEV | cut -d' ' -f1)"
        stall_unwatch
        mount -o ro -t squashfs $DEV /mnt 2>/tmp/sq.mount
        res sq.mount $? "$(head -n1 /tmp/sq.mount)"
        if grep -q ' /mnt ' /proc/mounts; then
                tree sq /mnt
                umount /mnt
                res sq.umount $?
        fi
        kill -TERM $pid
        wait_exit $pid 20
        res sq.exit $?
        wait_zero
        res sq.size_after "$(size)"
        log sq
fi

# free_dev: should ihop have died without disconnecting, the device is
# disconnected from outside, so that the next phase finds it free.
free_dev() {
        if [ "$(size)" != 0 ] && [ -x /bin/nbd-disconnect ]; then
                nbd-disconnect $DEV
                wait_zero
        fi
}

# verify PHASE RELEASE: ihop verify, its status and last line.
verify() {
        timeout -s KILL 60 ihop verify "$2" >/tmp/"$1".verify 2>&1
        res "$1.verify" $? "$(tail -n1 /tmp/"$1".verify)"
}

t od
# --- od: --source, a release not in the (empty) store: its chunks are
# fetched from the archive on the virtual disk as the kernel reads them
if [ -f /disk/v1.cba ]; then
        ihop mount --source /disk/v1.cba /tmp/od/v1 $DEV >/tmp/od.log 2>&1 </dev/null &
        pid=$!
        wait_size $pid
        res od.alive "$(alive $pid && echo 1 || echo 0)"
        res od.release_at_start "$([ -e /tmp/od/v1 ] && echo 1 || echo 0)"
        attrs od
        res od.io_timeout_ms "$(cat $SYS/queue/io_timeout 2>/dev/null || echo none)"
        # The file system's scattered reads first, then the rest of the device.
        ext4 od
        devsum od
        # Every chunk was read: the release description follows the last one.
        wait_file /tmp/od/v1 $pid 10
        t od.release
        res od.release "$([ -f /tmp/od/v1 ] && echo 1 || echo 0)"
        kill -TERM $pid
        wait_exit $pid 20
        res od.exit $?
        wait_zero
        res od.size_after "$(size)"
        free_dev
        log od
        verify od /tmp/od/v1
        rm -rf /tmp/od
fi

t odf
# --- odf: --source --fill --detach: the release completes without a read
if [ -f /disk/v1.cba ]; then
        timeout -s KILL 30 ihop mount --source /disk/v1.cba --fill --detach --pid-file /tmp/odf.pid \
                /tmp/odf/v1 $DEV >/tmp/odf.log 2>&1 </dev/null
        res odf.rc $?
        res odf.size "$(size)"
        fpid=$(cat /tmp/odf.pid 2>/dev/null)
        res odf.pid "${fpid:-none}"
        wait_file /tmp/odf/v1 "$fpid" 60
        t odf.release
        res odf.release "$([ -f /tmp/odf/v1 ] && echo 1 || echo 0)"
        devsum odf
        stop_detached odf "$fpid"
        free_dev
        sed "s/^/[odf] /" /tmp/odf.log
        verify odf /tmp/odf/v1
        rm -rf /tmp/odf
fi

# What the kernel said about the device, for the host to judge; then the
# log is emptied for the phases whose reads are meant to fail.
KMSG='nbd|EXT4|FAT-fs|SQUASHFS|I/O error'
dmesg | grep -E "$KMSG" | sed 's/^/[dmesg] /'
dmesg | grep -E "$KMSG" | while read -r l; do echo "KMSG $l" >"$OUT"; done
dmesg -c >/dev/null

# ms: milliseconds since boot (to 10 ms).
ms() { awk '{ printf "%d\n", $1 * 1000 }' /proc/uptime; }

# wait_requests N: until the range server has logged more than N requests
# (at most 10 s).
wait_requests() {
        i=0
        while [ "$(wc -l </tmp/http.log)" -le "$1" ] && [ $i -lt 100 ]; do
                sleep 0.1
                i=$((i + 1))
        done
}

# stop_stuck PHASE PID BLOCK: a read of BLOCK stuck on the server, then
# SIGTERM to ihop (PID): how long it took to end, the read's status, the
# device's size after.
stop_stuck() {
        n=$(wc -l </tmp/http.log)
        timeout -s KILL 60 dd if=$DEV of=/dev/null bs=4096 count=1 skip="$3" iflag=direct 2>/tmp/"$1".stuck &
        ddpid=$!
        wait_requests "$n" # the read's fetch is under way: the read waits on it
        res "$1.stuck_alive" "$(alive $ddpid && echo 1 || echo 0)"
        t0=$(ms)
        kill -TERM "$2"
        wait_gone "$2" 20
        res "$1.stop_ms" $(($(ms) - t0))
        res "$1.alive_after" "$(alive "$2" && echo 1 || echo 0)"
        wait_exit $ddpid 10
        res "$1.stuck_rc" $?
        wait_zero
        res "$1.size_after" "$(size)"
}

t ods
# --- ods: --source over HTTP, from a server in the guest (on its loopback)
# that drips, goes silent or stalls half way as it is told: each read of
# a chunk not fetched yet ends in EIO within the bound, (0 + 1) x (1 + 0 +
# 2) = 3 s, and reads right once the server recovers; SIGTERM while a read
# is stuck ends ihop within 2 s, the device disconnected. odsd: the same
# stop with the HTTP defaults (a read would wait 132 s), --detach.
if [ -f /disk/stalls.cba ] && [ -x /bin/range-server ]; then
        ip link set lo up
        echo ok >/tmp/http.mode
        : >/tmp/http.log
        range-server 8080 /disk/stalls.cba /tmp/http.mode /tmp/http.log &
        hpid=$!
        i=0
        while ! grep -q ':1F90 00000000:0000 0A' /proc/net/tcp && [ $i -lt 50 ]; do
                sleep 0.1
                i=$((i + 1))
        done
        URL=http://127.0.0.1:8080/stalls.cba
        ihop mount --source $URL --http-timeout 1 --http-retry-count 0 --http-retry-delay 0 /tmp/ods/s $DEV \
                >/tmp/ods.log 2>&1 </dev/null &
        pid=$!
        wait_size $pid
        res ods.alive "$(alive $pid && echo 1 || echo 0)"
        # chunk k of 256 KiB: 4 KiB blocks 64k.. (chunk 0 is read at attach)
        for mb in drip:320 silent:576 stall:832; do
                m=${mb%:*}
                blk=${mb#*:}
                echo "$m" >/tmp/http.mode
                t0=$(ms)
                timeout -s KILL 60 dd if=$DEV of=/dev/null bs=4096 count=1 skip="$blk" iflag=direct \
                        2>/tmp/ods."$m".dd
                res "ods.$m.rc" $?
                res "ods.$m.ms" $(($(ms) - t0))
                res "ods.$m.msg" "$(head -n1 /tmp/ods."$m".dd)"
                res "ods.$m.alive" "$(alive $pid && echo 1 || echo 0)"
                echo ok >/tmp/http.mode
                res "ods.$m.after" "$(timeout -s KILL 60 dd if=$DEV bs=4096 count=1 skip="$blk" iflag=direct \
                        2>/dev/null | sha256sum | cut -d' ' -f1)"
        done
        echo drip >/tmp/http.mode
        stop_stuck ods $pid 192
        wait $pid
        res ods.exit $?
        res ods.release "$([ -e /tmp/ods/s ] && echo 1 || echo 0)"
        res ods.temps "$(find /tmp/ods -name '*.tmp-*' | wc -l)"
        free_dev
        log ods

        t odsd
        echo ok >/tmp/http.mode
        timeout -s KILL 30 ihop mount --detach --pid-file /tmp/odsd.pid --source $URL /tmp/odsd/s $DEV \
                >/tmp/odsd.log 2>&1 </dev/null
        res odsd.rc $?
        dpid=$(cat /tmp/odsd.pid 2>/dev/null)
        if [ -n "$dpid" ]; then
                echo silent >/tmp/http.mode
                stop_stuck odsd "$dpid" 448
        fi
        res odsd.temps "$(find /tmp/odsd -name '*.tmp-*' | wc -l)"
        free_dev
        sed "s/^/[odsd] /" /tmp/odsd.log
        kill $hpid
        dmesg | grep -E "$KMSG" | while read -r l; do echo "PKMSG ods $l" >"$OUT"; done
        rm -rf /tmp/ods /tmp/odsd
fi

t end
res done 1
sync
poweroff -f
echo o >/proc/sysrq-trigger
