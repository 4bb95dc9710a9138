#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Reads past the open-file limit: `ihop serve` of the 2.5 GiB release of
~46,000 unique chunks ("big" of bench/serve-bench.py: the 512 MiB image and
2 GiB of random data, bita's default chunking), read through fio's NBD
engine, against nbdkit's file plugin on the raw image. Every read comes
from the page cache (a warm-up pass first), so the figures compare the
servers, not the disk: sequential 1 MiB reads (queue depth 8) and random
4 KiB reads (queue depth 16), fio's throughput and the server's CPU time
per MiB and per random read (/proc/PID/stat, all its threads).

  (a) the raise:
      'ihop root'     root, RLIMIT_NOFILE set to 1024:1024 before it starts
                      (prlimit): with CAP_SYS_RESOURCE, ihop raises it to
                      cover the release's chunk files (the limit it ran with
                      and its debug line are shown);
      'ihop user'     the degraded mode: uid 65534, no capabilities,
                      1024:1024: 768 chunk files open, the others opened for
                      each read;
      'nbdkit file'   the raw image.
      Target: 'ihop root' >= 0.9x nbdkit, sequential and random.
  (b) kernel memory: N chunk files kept open (--capacities: 1024, 4096,
      16384 and all of them by default), an `ihop serve` as root under
      RLIMIT_NOFILE N + 256 (what ihop sets aside for the rest) and without
      CAP_SYS_RESOURCE (dropped from its bounding set), so that it keeps N;
      each alone: caches dropped (echo 3 > /proc/sys/vm/drop_caches),
      /proc/slabinfo read ('before': dentry, the store's file system's inode
      cache, filp), the server started (its start looks at every chunk
      file), the release read whole (nbdcopy), slabinfo again ('after'),
      then caches dropped again (echo 3: an inode whose file has pages in
      the page cache stays) while the server still runs: 'pinned', what its
      open files keep from being reclaimed. Its resident memory after the
      read. nbdkit the same way, for comparison.
  (s) read speed with those N, all servers running, rounds as in (a).
  (h) where this machine's root cannot raise its hard limit: the reads of
      the raised mode, every chunk file read already open, on a region of
      the release (in its random data) whose chunk files the hard limit
      covers, against the degraded mode (768) and nbdkit on that region.
  (c) where there is kernel NBD (--vm): `ihop mount --root-storage` of the
      release on /dev/nbd0 under 1024:1024 (raised), the device read whole
      (dd, O_DIRECT): the limit it ran with, its resident and locked memory,
      the slab as in (b).

The machine is noisy: each round runs every server once, in a rotating
order; every figure is the median of the rounds, each ratio the median of
each round's ratio to nbdkit; the load average is printed with each round.

On this machine (the default), or with --vm inside a qemu guest that this
script builds and boots (bench/fd_bench_vm.py: the boot tests' Debian
system with fio, nbdkit, libnbd-bin and python3 added, cached in
bench/work/fd-vm/; the release cloned here into a store on an ext4 virtual
disk; this script run in it by its init). A guest is where root has
CAP_SYS_RESOURCE when this machine's root has not (a container whose
bounding set lacks it cannot raise a hard limit at all). Under TCG (the
default: --vm-accel kvm where KVM can boot Debian's kernel) its speeds are
an emulator's; its limits, kernel and resident memory are the real ones.

The image is the clone benchmark's v1 image (bench/work/v1.ext4, built by
bench/clone-bench.py; run that first) or any image given with --image.
Usage: bench/fd-bench.py [--vm] [--image IMG] [--runtime S] [--rounds N]
                         [--capacities N,...,all,max] [--parts a,b,s,h,c]   (as root)
"""

import argparse
import importlib.util
import json
import os
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.dirname(HERE)
IHOP = os.environ.get("IHOP", os.path.join(TOP, "build", "src", "ihop"))
RESERVED = 256  # descriptors ihop leaves to sockets and the rest (fd_cache.c)
FD_LIMIT = 1024
NOBODY = 65534
CAP_SYS_RESOURCE = 24

_spec = importlib.util.spec_from_file_location("serve_bench", os.path.join(HERE, "serve-bench.py"))
sb = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(sb)


def has_cap_sys_resource():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("CapEff:"):
                return bool(int(line.split()[1], 16) >> CAP_SYS_RESOURCE & 1)
    return False


def drop_caches(what):
    subprocess.run(["sync"], check=True)
    with open("/proc/sys/vm/drop_caches", "w") as f:
        f.write("%d\n" % what)


def fs_inode_cache(path):
    """The slab cache of the inodes of the file system path is on, and its type."""
    fstype = subprocess.run(["findmnt", "-n", "-o", "FSTYPE", "-T", path], capture_output=True, text=True,
                            check=True).stdout.strip()
    return {"ext4": "ext4_inode_cache", "ext3": "ext4_inode_cache", "xfs": "xfs_inode", "btrfs": "btrfs_inode",
            "f2fs": "f2fs_inode_cache", "tmpfs": "shmem_inode_cache"}.get(fstype, "inode_cache"), fstype


def slab(names):
    """name -> (active objects, object size) from /proc/slabinfo."""
    got = {}
    with open("/proc/slabinfo") as f:
        for line in f:
            w = line.split()
            if w and w[0] in names:
                got[w[0]] = (int(w[1]), int(w[3]))
    return got


def nofile_of(pid):
    with open("/proc/%d/limits" % pid) as f:
        for line in f:
            if line.startswith("Max open files"):
                w = line.split()
                return "%s:%s" % (w[3], w[4])
    return "?"


def vm_kib(pid, field):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def n_fds(pid):
    return len(os.listdir("/proc/%d/fd" % pid))


def loadavg():
    return "%.2f %.2f %.2f" % os.getloadavg()


class Servers:
    def __init__(self, work):
        self.work = work
        self.procs = {}

    def start(self, name, cmd, export, preexec=None, log=None):
        sock = os.path.join(self.work, "socks", name.replace(" ", "-") + ".sock")
        if os.path.exists(sock):  # left by a server of that name before (nbdkit leaves its own)
            os.unlink(sock)
        cmd = [c.replace("@SOCK@", sock) for c in cmd]
        err = open(log, "wb") if log else subprocess.DEVNULL
        p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err,
                             preexec_fn=preexec)
        if log:
            err.close()
        self.procs[name] = (p, "nbd+unix:///%s?socket=%s" % (export, sock), log)
        end = time.time() + 300
        while True:  # a socket file may be there before the server listens on it
            with socket.socket(socket.AF_UNIX) as c:
                try:
                    c.connect(sock)
                    break
                except OSError:
                    pass
            if p.poll() is not None or time.time() > end:
                raise SystemExit("%s did not start: %s" % (name, open(log).read() if log else cmd))
            time.sleep(0.05)
        return p

    def stop(self, name):
        p = self.procs.pop(name)[0]
        p.terminate()
        try:
            p.wait(timeout=20)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()

    def stop_all(self):
        for name in list(self.procs):
            self.stop(name)


def read_whole(uri):
    subprocess.run(["nbdcopy", "--no-extents", uri, "null:"], check=True, timeout=900)


def cpu_seconds(pid):
    """User and system time of every thread pid ever ran (/proc/PID/stat)."""
    with open("/proc/%d/stat" % pid) as f:
        w = f.read().rsplit(")", 1)[1].split()
    return (int(w[11]) + int(w[12])) / os.sysconf("SC_CLK_TCK")


def fio(uri, rw, bs, depth, runtime, region=(0, 100)):
    """region: (offset, size) in percent of the device."""
    out = subprocess.run(
        ["fio", "--name=bench", "--ioengine=nbd", "--uri=" + uri, "--rw=" + rw, "--bs=" + bs,
         "--iodepth=%d" % depth, "--offset=%d%%" % region[0], "--size=%d%%" % region[1], "--time_based",
         "--runtime=%d" % runtime, "--output-format=json"], capture_output=True, text=True, timeout=runtime + 60)
    if out.returncode != 0:
        raise SystemExit("fio failed on %s: %s" % (uri, out.stderr.strip()))
    job = json.loads(out.stdout[out.stdout.index("{"):])["jobs"][0]["read"]
    return job["bw_bytes"] / 1e6, job["iops"], job["total_ios"]


KEYS = ("seq", "rnd", "seq_cpu", "rnd_cpu")


def rounds(servers, names, peer, n_rounds, runtime, region=(0, 100)):
    """Every server once per round, in a rotating order: per name, lists of
    seq MB/s, random IOPS, the server's CPU time per MiB read sequentially
    and per random read (us), and each one's ratio to peer's in the same
    round (CPU: peer's over this one's, so that above 1 is better too)."""
    runs = {n: {k: [] for k in KEYS + tuple(k + "_ratio" for k in KEYS)} for n in names}
    for r in range(n_rounds):
        order = names[r % len(names):] + names[:r % len(names)]
        got = {}
        load = loadavg()
        for name in order:
            p, uri = servers.procs[name][:2]
            c0 = cpu_seconds(p.pid)
            seq = fio(uri, "read", "1M", 8, runtime, region)
            c1 = cpu_seconds(p.pid)
            rnd = fio(uri, "randread", "4k", 16, runtime, region)
            c2 = cpu_seconds(p.pid)
            got[name] = {"seq": seq[0], "rnd": rnd[1], "seq_cpu": (c1 - c0) * 1e6 / seq[2],
                         "rnd_cpu": (c2 - c1) * 1e6 / rnd[2]}
        for name in names:
            for k in KEYS:
                runs[name][k].append(got[name][k])
                a, b = got[name][k], got[peer][k]
                runs[name][k + "_ratio"].append(b / a if k.endswith("_cpu") else a / b)
        print("  round %d (load average %s before, %s after): %s" % (
            r + 1, load, loadavg(), ", ".join("%s %.0f MB/s %.0f IOPS %.0f/%.1f us CPU" % (
                n, got[n]["seq"], got[n]["rnd"], got[n]["seq_cpu"], got[n]["rnd_cpu"]) for n in order)),
            flush=True)
    return runs


def table(runs, names, extra=None):
    print("\n%-12s %8s %7s %9s %7s %9s %7s %9s %7s" % (
        "server", "seq MB/s", "/nbdkit", "rand IOPS", "/nbdkit", "CPU us/MiB", "nbdkit/", "CPU us/rd", "nbdkit/"))
    for name in names:
        m = {k: statistics.median(v) for k, v in runs[name].items()}
        print("%-12s %8.0f %6.2fx %9.0f %6.2fx %9.0f %6.2fx %9.2f %6.2fx%s" % (
            name, m["seq"], m["seq_ratio"], m["rnd"], m["rnd_ratio"], m["seq_cpu"], m["seq_cpu_ratio"],
            m["rnd_cpu"], m["rnd_cpu_ratio"], ("   " + extra[name]) if extra and name in extra else ""))
    print("per-round ratios to nbdkit (seq | random | CPU per MiB | CPU per random read):")
    for name in names:
        print("  %-12s %s" % (name, " | ".join(" ".join("%.2f" % x for x in runs[name][k + "_ratio"])
                                              for k in KEYS)))
    print("(ratios: the median of each round's ratio; CPU ratios are nbdkit's CPU time over ihop's: above 1, "
          "ihop spends less)")


def ihop_cmd(store):
    return [IHOP, "-v", "serve", "--unix", "@SOCK@", store]


def part_raise(servers, store, raw, chunks, args):
    print("\n(a) the raise: ihop serve under RLIMIT_NOFILE %d:%d set before it starts, %d chunk files" %
          (FD_LIMIT, FD_LIMIT, chunks), flush=True)
    lim = ["prlimit", "--nofile=%d:%d" % (FD_LIMIT, FD_LIMIT), "--"]
    user = ["setpriv", "--reuid=%d" % NOBODY, "--regid=%d" % NOBODY, "--clear-groups", "--inh-caps=-all",
            "--bounding-set=-all"]
    logs = {n: os.path.join(servers.work, n.replace(" ", "-") + ".log") for n in ("ihop root", "ihop user")}
    servers.start("ihop root", lim + ihop_cmd(store), "big", log=logs["ihop root"])
    servers.start("ihop user", lim + user + ihop_cmd(store), "big", log=logs["ihop user"])
    servers.start("nbdkit file", nbdkit_cmd(raw), "")
    names = ["ihop root", "ihop user", "nbdkit file"]
    for name in names:
        read_whole(servers.procs[name][1])
    extra = {}
    for name in ("ihop root", "ihop user"):
        p = servers.procs[name][0]
        line = [ln for ln in open(logs[name]).read().splitlines() if "open-file limit" in ln]
        extra[name] = "limit %s, %d fds open" % (nofile_of(p.pid), n_fds(p.pid))
        print("  %s: RLIMIT_NOFILE %s after the first read, %d descriptors open; %s" %
              (name, nofile_of(p.pid), n_fds(p.pid), line[0] if line else "(no line about the limit)"))
    runs = rounds(servers, names, "nbdkit file", args.rounds, args.runtime)
    table(runs, names, extra)
    for name in ("ihop root", "ihop user"):
        p = servers.procs[name][0]
        print("resident memory of %s: %.1f MiB (peak %.1f MiB)" %
              (name, vm_kib(p.pid, "VmRSS") / 1024, vm_kib(p.pid, "VmHWM") / 1024))
    root = {k: statistics.median(v) for k, v in runs["ihop root"].items()}
    ok = root["seq_ratio"] >= 0.9 and root["rnd_ratio"] >= 0.9
    print("target: 'ihop root' >= 0.90x nbdkit, sequential and random: %s" % ("met" if ok else "MISSED"))
    servers.stop_all()
    return ok


def slab_line(cache_names, before, after):
    parts, total = [], 0
    for n in cache_names:
        if n not in before or n not in after:
            continue
        d = (after[n][0] - before[n][0]) * after[n][1]
        total += d
        parts.append("%s %+d (%+.1f MiB)" % (n, after[n][0] - before[n][0], d / 2**20))
    return "%s; total %+.1f MiB" % (", ".join(parts), total / 2**20)


def measure_alone(servers, name, cmd, export, preexec, cache_names, reader):
    """One server alone: slab before it starts (ihop's start looks at every
    chunk file), after a full read, and pinned; RSS."""
    drop_caches(3)
    before = slab(cache_names)
    p = servers.start(name, cmd, export, preexec)
    reader(servers.procs[name][1])
    after = slab(cache_names)
    # the page cache too: an inode whose file has pages cached stays
    drop_caches(3)
    pinned = slab(cache_names)
    print("  %-14s limit %-12s %6d fds; RSS %6.1f MiB (peak %6.1f); slab after a full read: %s" % (
        name, nofile_of(p.pid), n_fds(p.pid), vm_kib(p.pid, "VmRSS") / 1024, vm_kib(p.pid, "VmHWM") / 1024,
        slab_line(cache_names, before, after)))
    print("  %-14s %s pinned once the kernel has dropped what it can: %s" % ("", " " * 12,
                                                                        slab_line(cache_names, before, pinned)),
          flush=True)
    servers.stop(name)


def capacities(args, chunks):
    """(b) and (s): the numbers of chunk files kept open that this process
    can give a server: 'all' is every chunk file, 'max' as many as its hard
    limit allows."""
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    caps = []
    for c in args.capacities.split(","):
        n = chunks if c == "all" else hard - RESERVED if c == "max" else int(c)
        if n + RESERVED > hard and not has_cap_sys_resource():
            print("capacity %s: %d descriptors are more than this process's hard limit, %d, which root cannot "
                  "raise here (no CAP_SYS_RESOURCE): not measured" % (c, n + RESERVED, hard))
        elif n not in caps:
            caps.append(n)
    return caps


def curve_cmd(store, n):
    """ihop under a limit of n + RESERVED that it cannot raise: set by
    prlimit (as root, past the hard limit where root may), then
    CAP_SYS_RESOURCE dropped from the bounding set, which takes it from
    root's exec of ihop."""
    return ["prlimit", "--nofile=%d:%d" % (n + RESERVED, n + RESERVED), "--",
            "setpriv", "--bounding-set=-sys_resource", "--"] + ihop_cmd(store)


def nbdkit_cmd(raw):
    return ["nbdkit", "-f", "-r", "-U", "@SOCK@", "file", "file=" + raw]


def part_slab(servers, store, raw, caps, cache_names):
    print("\n(b) kernel memory: chunk files kept open N, ihop as root without CAP_SYS_RESOURCE under RLIMIT_NOFILE "
          "N+%d, each alone; slab of %s" % (RESERVED, ", ".join(cache_names)), flush=True)
    for n in caps:
        measure_alone(servers, "ihop %d" % n, curve_cmd(store, n), "big", None, cache_names, read_whole)
    measure_alone(servers, "nbdkit file", nbdkit_cmd(raw), "", None, cache_names, read_whole)


def part_speed(servers, store, raw, caps, args):
    print("\n(s) read speed: chunk files kept open N, as in (b), all running, rounds taking turns", flush=True)
    names = []
    for n in caps:
        servers.start("ihop %d" % n, curve_cmd(store, n), "big")
        names.append("ihop %d" % n)
    servers.start("nbdkit file", nbdkit_cmd(raw), "")
    names.append("nbdkit file")
    for name in names:
        read_whole(servers.procs[name][1])
    runs = rounds(servers, names, "nbdkit file", args.rounds, args.runtime)
    table(runs, names)
    servers.stop_all()


def region_for(cba, start, files):
    """The largest region of the image from start percent, in whole
    percents, whose chunks are at most files (from the archive's chunk
    list): (start, size) in percent."""
    sys.path.insert(0, os.path.join(TOP, "tests", "e2e"))
    from bita_archive import parse_archive
    a = parse_archive(cba)
    spans, off = [], 0
    for i in a.order:
        spans.append((off, a.chunks[i].source_size, i))
        off += a.chunks[i].source_size
    size = 0
    for pct in range(1, 101 - start):
        lo, hi = off * start // 100, off * (start + pct) // 100
        if len({i for o, n, i in spans if o + n > lo and o < hi}) > files:
            break
        size = pct
    return start, size


def part_hits(servers, store, raw, chunks, args):
    """Where this host cannot raise the limit past its hard one: the reads
    of the raised mode, every chunk file read already open, measured on a
    region of the release whose chunk files the hard limit covers."""
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    n = min(hard - RESERVED, chunks)
    if has_cap_sys_resource() or n == chunks:
        print("\n(h) not needed here: every chunk file can stay open, (a) measures it")
        return
    # past the first fifth (the 512 MiB ext4 image, its chunks of zeros
    # read without a file): the random data, as many of its chunks as n
    # covers, less 5% for the chunks of other regions the cache keeps
    region = region_for(make_archive(raw), 25, n * 95 // 100)
    print("\n(h) reads that always find their chunk file open: the region [%d%%, %d%%) of the release (at most %d "
          "chunk files), ihop keeping %d open (RLIMIT_NOFILE %d), the degraded mode (768) and nbdkit on the same "
          "region" % (region[0], region[0] + region[1], n * 95 // 100, n, n + RESERVED), flush=True)
    names = ["ihop %d" % n, "ihop 768", "nbdkit file"]
    servers.start(names[0], curve_cmd(store, n), "big")
    servers.start(names[1], curve_cmd(store, 768), "big")
    servers.start(names[2], nbdkit_cmd(raw), "")
    for name in names:
        read_whole(servers.procs[name][1])
        # then the region twice: its files are those the cache holds
        for _ in range(2):
            fio(servers.procs[name][1], "read", "1M", 8, 1, region)
    runs = rounds(servers, names, "nbdkit file", args.rounds, args.runtime, region)
    table(runs, names)
    servers.stop_all()


def part_root_storage(store, chunks, cache_names):
    print("\n(c) ihop mount --root-storage on /dev/nbd0 under RLIMIT_NOFILE %d:%d" % (FD_LIMIT, FD_LIMIT))
    if subprocess.run(["modprobe", "nbd"], capture_output=True).returncode != 0 or not os.path.exists("/dev/nbd0"):
        print("  no kernel NBD here: not measured")
        return
    log = "/tmp/root-storage.log"
    drop_caches(3)
    before = slab(cache_names)
    with open(log, "wb") as err:
        p = subprocess.Popen(["prlimit", "--nofile=%d:%d" % (FD_LIMIT, FD_LIMIT), "--", IHOP, "-v", "mount",
                              "--root-storage", store, "/dev/nbd0"], stdin=subprocess.DEVNULL,
                             stdout=subprocess.DEVNULL, stderr=err)
    try:
        end = time.time() + 120
        while open("/sys/block/nbd0/size").read().strip() == "0":
            if p.poll() is not None or time.time() > end:
                raise SystemExit("mount --root-storage did not attach: %s" % open(log).read())
            time.sleep(0.1)
        t = time.time()
        subprocess.run(["dd", "if=/dev/nbd0", "of=/dev/null", "bs=1M", "iflag=direct"], check=True,
                       capture_output=True)
        took = time.time() - t
        after = slab(cache_names)
        drop_caches(3)
        pinned = slab(cache_names)
        size = int(open("/sys/block/nbd0/size").read()) * 512
        print("  limit %s, %d fds; RSS %.1f MiB (peak %.1f), locked %.1f MiB; dd of the device (O_DIRECT, 1 MiB): "
              "%.0f MB/s" % (nofile_of(p.pid), n_fds(p.pid), vm_kib(p.pid, "VmRSS") / 1024,
                             vm_kib(p.pid, "VmHWM") / 1024, vm_kib(p.pid, "VmLck") / 1024, size / took / 1e6))
        print("  slab after the read: %s" % slab_line(cache_names, before, after))
        print("  pinned once the kernel has dropped what it can: %s" % slab_line(cache_names, before, pinned))
        print("  " + "\n  ".join(ln for ln in open(log).read().splitlines() if "open-file limit" in ln))
    finally:
        # --root-storage ignores SIGTERM: the device is disconnected from
        # outside (tests/qemu/nbd-disconnect.c, which the VM has)
        subprocess.run(["nbd-disconnect", "/dev/nbd0"], capture_output=True)
        try:
            p.wait(timeout=30)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def make_archive(big):
    """The release's archive (serve-bench.py's 'big': bita's defaults, no
    compression), made once beside the image."""
    cba = big + ".cba"
    if not os.path.exists(cba):
        subprocess.run([IHOP, "-q", "compress", "--compression", "none", "-i", big, cba + ".tmp"], check=True,
                       stdout=subprocess.DEVNULL)
        os.rename(cba + ".tmp", cba)
    return cba


def run_here(args):
    if os.geteuid() != 0:
        raise SystemExit("fd-bench: run as root (drop_caches, prlimit, setpriv)")
    sb.PACKAGES = ["fio", "nbdkit", "libnbd-bin"]
    sb.ensure_packages()
    if not os.path.exists(args.image) and not os.path.exists(args.image + ".big"):
        raise SystemExit("%s is missing: run bench/clone-bench.py first (it builds it)" % args.image)
    work = tempfile.mkdtemp(prefix="fd-bench.", dir=args.work_dir)
    os.chmod(work, 0o755)  # the store is read by uid 65534 too
    os.mkdir(os.path.join(work, "socks"))
    os.chmod(os.path.join(work, "socks"), 0o1777)
    servers = Servers(work)
    ok = True
    try:
        raw = big = sb.big_image(args.image)  # nbdkit's; read-only
        if args.store:
            store = os.path.join(args.store, "big")
        else:
            cba = make_archive(big)
            store = os.path.join(work, "store", "big")
            subprocess.run([IHOP, "-q", "clone", cba, store], check=True, stdout=subprocess.DEVNULL)
        chunks = sb.unique_chunks(store)
        inode_cache, fstype = fs_inode_cache(store)
        cache_names = ["dentry", inode_cache, "filp"]
        print("release: %s, %d MiB, %d unique chunks; store %s (%s); %d s per fio run, %d rounds; "
              "CAP_SYS_RESOURCE here: %s; kernel %s; %d CPUs; load average %s" % (
                  big, os.path.getsize(big) >> 20, chunks, store, fstype, args.runtime, args.rounds,
                  "yes" if has_cap_sys_resource() else "no", os.uname().release, os.cpu_count(), loadavg()),
              flush=True)
        parts = args.parts.split(",")
        if "a" in parts:
            ok = part_raise(servers, store, raw, chunks, args) and ok
        if "b" in parts:
            part_slab(servers, store, raw, capacities(args, chunks), cache_names)
        if "s" in parts:
            part_speed(servers, store, raw, capacities(args, chunks), args)
        if "h" in parts:
            part_hits(servers, store, raw, chunks, args)
        if "c" in parts:
            part_root_storage(store, chunks, cache_names)
        print("\nload average at the end: %s" % loadavg())
        return 0 if ok else 1
    finally:
        servers.stop_all()
        shutil.rmtree(work, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--image", default=os.path.join(HERE, "work", "v1.ext4"))
    ap.add_argument("--runtime", type=int, default=6, help="seconds per fio run")
    ap.add_argument("--rounds", type=int, default=5, help="rounds (median reported)")
    ap.add_argument("--capacities", default="1024,4096,16384,all", help="(b): chunk files kept open")
    ap.add_argument("--parts", default="a,b,s",
                    help="a (the raise), b (kernel memory), s (read speed), h (reads that find their file open, "
                         "on a region), c (root-storage: needs kernel NBD)")
    ap.add_argument("--work-dir", default=None, help="where the store goes (default: $TMPDIR)")
    ap.add_argument("--store", help="a store that holds the release already, as 'big' (default: a new one)")
    ap.add_argument("--vm", action="store_true", help="run in a KVM guest (see above)")
    ap.add_argument("--vm-memory", type=int, default=7168, help="the guest's memory, MiB")
    ap.add_argument("--vm-accel", default="tcg", choices=["tcg", "kvm"],
                    help="qemu's accelerator for --vm (default: %(default)s)")
    args = ap.parse_args()
    if args.vm:
        import importlib
        sys.path.insert(0, HERE)
        return importlib.import_module("fd_bench_vm").main(args, sys.argv[1:])
    return run_here(args)


if __name__ == "__main__":
    sys.exit(main())
