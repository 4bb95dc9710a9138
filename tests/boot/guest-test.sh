#!/bin/sh
# SPDX-License-Identifier: MIT
# Runs inside the booted test system (tests/boot/bootvm.py) once systemd has
# finished starting it, as ihop-boot-test.service. Reports on the second
# serial port (/dev/ttyS1) as "RESULT key value" lines, what the host then
# judges; then does what ihoptest.do= on the kernel command line asks, and
# powers the machine off. "RESULT done 1" is the last line.
#
#   ihoptest.do=clone:NAME   clone /run/ihop/store/../NAME.cba into the store
#                            as NAME (the update)
#   ihoptest.do=rmgc         ihop rm of the running release, ihop gc, then
#                            read the whole root device again
#   (nothing)                report only
#
# and ihoptest.hash=PATH,PATH... reports the sha256 of each of those files
# ("RESULT sha256:PATH HEX").

OUT=/dev/ttyS1
# Root is read-only: what this writes goes to /run.
LOGS=/run/ihop-boot-test
mkdir -p "$LOGS"
res() {
	echo "RESULT $*" >"$OUT"
	echo "RESULT $*"
}

DO=
HASH=
for x in $(cat /proc/cmdline); do
	case "$x" in
	ihoptest.do=*) DO=${x#ihoptest.do=} ;;
	ihoptest.hash=*) HASH=${x#ihoptest.hash=} ;;
	ihop.release=*) RELEASE=${x#ihop.release=} ;;
	ihop.storepath=*) STOREPATH=${x#ihop.storepath=} ;;
	esac
done
STORE=/run/ihop/store$STOREPATH

# Ordered after multi-user.target, so that it is reached; the system is
# still "starting" until this unit ends.
res multi_user "$(systemctl is-active multi-user.target)"
res multi_user_us "$(systemctl show -p ActiveEnterTimestampMonotonic --value multi-user.target)"
res failed_units "$(systemctl list-units --failed --plain --no-legend 2>&1 | cut -d' ' -f1 | tr '\n' ' ')"
ROOT_DEV=$(findmnt -n -o SOURCE /)
res root_source "$ROOT_DEV"
res root_options "$(findmnt -n -o OPTIONS /)"
res root_bytes "$(blockdev --getsize64 "$ROOT_DEV" 2>&1)"
res root_ro "$(blockdev --getro "$ROOT_DEV" 2>&1)"
res store_mount "$(findmnt -n -o SOURCE,FSTYPE,OPTIONS /run/ihop/store | tr -s ' ' ' ')"
# What bootvm.py planted on the store's file system, offline: a setuid-root
# id(1) and a device node with /dev/null's numbers, mode 666. Run and opened
# as user nobody, each says what came of it and its exit status.
if findmnt -n /run/ihop/store >/dev/null; then
	for f in planted-suid-id planted-null-dev; do
		res "stat:$f" "$(stat -c '%a %u:%g %F %t,%T' /run/ihop/store/$f 2>&1)"
	done
	out=$(setpriv --reuid=65534 --regid=65534 --clear-groups /run/ihop/store/planted-suid-id -u 2>&1)
	res planted_suid_run "$out rc=$?"
	out=$(setpriv --reuid=65534 --regid=65534 --clear-groups head -c 1 /run/ihop/store/planted-null-dev 2>&1)
	res planted_dev_open "$out rc=$?"
fi
res marker "$(cat /etc/ihop-test-marker 2>&1)"
for f in $(echo "$HASH" | tr ',' ' '); do
	res "sha256:$f" "$(sha256sum "$f" 2>&1 | cut -d' ' -f1)"
done

# The root storage daemon: the ihop process whose comm is ihop. (One grep
# of every comm: a cat per process costs seconds under TCG.)
pid=$(grep -lx ihop /proc/[0-9]*/comm 2>/dev/null | head -n1 | cut -d/ -f3)
res ihop_pid "${pid:-none}"
if [ -n "$pid" ]; then
	res ihop_argv0 "$(tr '\0' '\n' </proc/"$pid"/cmdline | head -n1)"
	res ihop_uid "$(awk '/^Uid:/ {print $2}' /proc/"$pid"/status)"
	res ihop_oom "$(cat /proc/"$pid"/oom_score_adj)"
	res ihop_vmlck_kib "$(awk '/^VmLck:/ {print $2}' /proc/"$pid"/status)"
	res ihop_rss_kib "$(awk '/^VmRSS:/ {print $2}' /proc/"$pid"/status)"
	# What it maps: files of the initramfs (deleted since switch_root), not
	# of the root file system it serves.
	res ihop_mapped_from_root "$(awk '$6 ~ /^\// && $7 != "(deleted)" {print $6}' /proc/"$pid"/maps | sort -u | tr '\n' ' ')"
	res ihop_mapped_deleted "$(awk '$7 == "(deleted)" {print $6}' /proc/"$pid"/maps | sort -u | tr '\n' ' ')"
	# Regular files it holds open (sockets, pipes and devices aside).
	files=
	for fd in /proc/"$pid"/fd/*; do
		target=$(readlink "$fd")
		[ -f "$target" ] && files="$files $target"
	done
	res ihop_open_files "$files"
fi
res in_use "$(ls "$STORE"/.in-use 2>/dev/null | tr '\n' ' ')"

case "$DO" in
clone:*)
	name=${DO#clone:}
	ihop clone "/run/ihop/store/$name.cba" "$STORE/$name" >$LOGS/clone.log 2>&1
	res clone.rc $?
	res clone.last "$(tail -n1 $LOGS/clone.log)"
	res ls "$(ihop ls "$STORE" 2>&1 | tr '\n' '|')"
	;;
rmgc)
	ihop rm "$STORE/$RELEASE" >$LOGS/rm.log 2>&1
	res rm.rc $?
	ihop gc "$STORE" >$LOGS/gc.log 2>&1
	res gc.rc $?
	res gc.last "$(tail -n1 $LOGS/gc.log)"
	# O_DIRECT: what ihop serves now, not the page cache of the device
	# (which the mounted root shares, superblock in memory included).
	res root_sha256 "$(dd if=/dev/nbd0 bs=1M iflag=direct status=none | sha256sum | cut -d' ' -f1)"
	res files_sha256 "$(find /usr/bin -type f -exec cat {} + | sha256sum | cut -d' ' -f1)"
	;;
esac

res done 1
sync
systemctl poweroff
