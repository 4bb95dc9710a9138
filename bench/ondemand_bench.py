#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""ihop on-demand benchmark: a release used before it is cloned (--source).

Run by hand, as root, on Debian 12, through bench/ondemand-bench.sh (which
installs what it needs, builds ihop, and cleans up after it):

    bench/ondemand-bench.sh [--rounds N] [--no-boot] [--quick] [...]

Every archive and image is published by one nginx on 127.0.0.1 (a private
config; its access log, $body_bytes_sent, counts the bytes fetched), and for
(d) over links by a second one at the link's far end. Each measurement
starts from a fresh empty store. The machine is noisy: every part runs in
rounds, the two methods it compares taking turns in each round (which goes
first alternates), and the figures are medians over the rounds, ratios the
median of each round's ratio (on demand / its peer).

  (a) one file: `ihop mount --source URL STORE/v1 FILE` against
      `ihop clone URL STORE/v1` + `ihop mount STORE/v1 FILE`, then the same
      reads: a 4 KiB read of FILE at offset 0 ("first byte"), `mount -o
      loop,ro FILE DIR` ("mounted"), and reading a small file of the ext4
      image, a few KiB far from its start, checked against what debugfs reads
      ("file read"); each timed from the command's start. Bytes fetched: all
      the mount fetched (its own reads and the kernel's read-ahead included).
  (b) a boot (unless --no-boot): the Debian system of the boot tests
      (tests/boot/bootvm.py) under qemu (TCG), its root on
      `ihop serve --unix SOCK --source URL STORE/v1` (qemu the NBD client),
      against `ihop clone URL STORE/v1` + `ihop serve` of the stored
      release: command start to multi-user.target (the host's clock: the
      guest's test unit reports it on its second serial port), kernel start
      to multi-user.target (the guest's clock), bytes fetched by then and by
      power-off. The system is built once and cached in
      bench/work/ondemand-boot/.
  (c) `ihop serve --unix SOCK --source URL --fill STORE/v1` until STORE/v1
      (the release description) appears, against `ihop clone URL STORE/v1`:
      time and bytes fetched. The first round's filled release is checked
      with `ihop cat` (the image checksum).
  (d) sequential read throughput: the whole device of a cold
      `ihop serve --unix SOCK --source URL STORE/v1` read with
      `nbdcopy --no-extents URI null:`, against nbdkit's curl plugin reading
      the raw image from the same nginx (`nbdkit -r -U SOCK curl url=...`),
      read the same way; MB/s (image bytes over nbdcopy's wall time), the
      ratio (target >= 1x, over the links below). Then both again with one request at a time
      (nbdcopy --threads=1 --requests=1, as dd would read): nbdcopy's
      defaults read with one thread per core, that is as many sequential
      streams. After the read the store must hold the whole release
      (checked with `ihop cat` in the first round).
      Then, with nbdcopy's defaults, over emulated links (--links, default
      1gbit and 100mbit; --link-rounds): over loopback the read measures
      CPU, not a network (ihop decompresses, hashes and stores the release's
      unique chunks; nbdkit hands on what nginx sends from the page cache),
      while a device fetches over a link, where ihop fetches the compressed
      archive (46 MB of the 537 MB image) and nbdkit the whole raw image.
      The link: nginx in a private network namespace, ihop serve or nbdkit
      in another, joined by a veth pair (MTU 1500) whose two ends are each
      limited to the rate by a tbf qdisc, a full-duplex link as Ethernet
      is (see Link; the host's network is left alone). Rate only: this
      kernel has no netem, so no added latency and no loss; both servers
      stream (nbdcopy keeps 64 requests in flight, ihop reads ahead,
      nbdkit's curl plugin takes one request at a time), which a round trip
      would slow, nbdkit more. How near the rate the link lets a transfer
      go is checked first: curl, in the device's namespace, of about 2 s
      of the raw image (logged, and in the table). With the 512 MiB image a
      round takes about 10 s at 1gbit and 60 s at 100mbit (nbdkit moves
      537 MB at 12 MB/s).

Also the peak RSS (VmHWM at the end) of every on-demand ihop, and of the
peers. The page cache is not dropped unless --drop-caches: nginx serves from
memory (warmed once), as a fast server would; the stores are on the disk of
the run directory (bench/work), their writes part of ihop's cost.

The image: the clone benchmark's 512 MiB ext4 release (bench/work/v1.ext4,
debootstrap minbase, built by bench/clone-bench.py's code when missing) and
its archive with ihop compress's defaults (bench/work/v1.ext4.defaults.cba,
shared with bench/serve-bench.py); with --quick a 64 MiB ext4 image of part
of the same tree (/etc, /usr/bin, /usr/sbin) and one round.

Exit status: 0, 1 when the throughput target (>= 1x nbdkit, nbdcopy's
defaults) is missed over any of the links, or over loopback with --links
none (each is reported; the rest of the figures stand), 2 on any failure.
MB is 10^6 bytes, MiB 2^20.
"""

import argparse
import functools
import hashlib
import importlib.util
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from pathlib import Path

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
WORK = os.path.join(HERE, "work")
BOOT_WORK = os.path.join(WORK, "ondemand-boot")
QUICK_SIZE = "64M"
QUICK_DIRS = ["etc", "usr/bin", "usr/sbin"]
TARGET_RATIO = 1.0
STEP = 120  # seconds any one step may take (a boot: BOOT_TIMEOUT)
BOOT_TIMEOUT = 600
# (d) also one request at a time, as dd or cat of the device would read it
SINGLE = ("--threads=1", "--requests=1")


def log(msg=""):
    print(msg, flush=True)


class Failure(Exception):
    pass


def die(msg):
    raise Failure(msg)


def load(name, path):
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@functools.lru_cache(maxsize=None)
def load_clone_bench():
    """bench/clone-bench.py, whose image recipe and nginx config are shared."""
    return load("clone_bench", os.path.join(HERE, "clone-bench.py"))


def run(cmd, timeout=STEP, **kw):
    kw.setdefault("stdout", subprocess.PIPE)
    kw.setdefault("stderr", subprocess.STDOUT)
    try:
        p = subprocess.run([str(c) for c in cmd], text=True, timeout=timeout, stdin=subprocess.DEVNULL, **kw)
    except subprocess.TimeoutExpired:
        die("%s did not finish within %d s" % (" ".join(str(c) for c in cmd), timeout))
    if p.returncode != 0:
        out = p.stdout or ""
        die("%s failed (exit %d)%s" % (" ".join(str(c) for c in cmd), p.returncode,
                                       ":\n" + out[-4000:] if out else ""))
    return p


def mb(n):
    return n / 1e6


def vm_hwm_kib(pid):
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def mounted(path):
    path = os.path.realpath(path)
    with open("/proc/self/mountinfo") as f:
        return any(line.split()[4] == path for line in f)


def drop_caches():
    os.sync()
    with open("/proc/sys/vm/drop_caches", "w") as f:
        f.write("3\n")


# ------------------------------------------------------- processes, mounts --

class Run:
    """The run directory, and what was started in it: every process is
    recorded (pid and argv, in RUN/pids, for bench/ondemand-bench.sh's trap
    should this script die), every mount is undone at the end."""

    def __init__(self, path, ihop, store_dir=None):
        self.path = path
        self.ihop = ihop
        self.stores = None
        if store_dir:
            self.stores = tempfile.mkdtemp(prefix="ondemand-stores.", dir=store_dir)
            with open(os.path.join(path, "store-dirs"), "a") as f:
                f.write(self.stores + "\n")
        self.procs = []
        self.mounts = []
        self.n = 0

    def dir(self, name):
        self.n += 1
        d = os.path.join(self.path, "%02d-%s" % (self.n, name))
        os.makedirs(d)
        return d

    def store(self, d):
        """Where the store of the measurement in d goes."""
        return os.path.join(self.stores, os.path.basename(d), "store") if self.stores else os.path.join(d, "store")

    def start(self, cmd, stderr_path=None, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL):
        err = open(stderr_path, "wb") if stderr_path else stderr
        try:
            p = subprocess.Popen([str(c) for c in cmd], stdin=subprocess.DEVNULL, stdout=stdout, stderr=err)
        finally:
            if stderr_path:
                err.close()
        p.err_path = stderr_path
        self.procs.append(p)
        with open(os.path.join(self.path, "pids"), "a") as f:
            f.write("%d\n" % p.pid)
        return p

    def stop(self, p, sig=signal.SIGTERM, timeout=30):
        """Stops a process started here; its exit status."""
        if p.poll() is None:
            p.send_signal(sig)
            try:
                p.wait(timeout)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        return p.returncode

    def mount_loop(self, file, mnt):
        os.makedirs(mnt, exist_ok=True)
        self.mounts.append(mnt)
        run(["mount", "-o", "loop,ro", file, mnt])

    def fuse(self, file):
        self.mounts.append(file)

    def umount(self, path):
        if mounted(path):
            r = subprocess.run(["umount", path], capture_output=True, text=True, timeout=STEP)
            if r.returncode != 0:
                die("umount %s: %s" % (path, r.stderr.strip()))

    def cleanup(self):
        for m in reversed(self.mounts):
            if mounted(m):
                if subprocess.run(["umount", m], capture_output=True, timeout=STEP).returncode != 0:
                    subprocess.run(["umount", "-l", m], capture_output=True, timeout=STEP)
        for p in reversed(self.procs):
            self.stop(p, timeout=10)
        # Children started elsewhere (qemu, by bootvm.boot in its thread), by pid.
        for pid in children():
            try:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
            except OSError:
                pass
        if self.stores:
            shutil.rmtree(self.stores, ignore_errors=True)


def children():
    """The pids of this process's children still running."""
    me = str(os.getpid())
    out = []
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                with open("/proc/%s/stat" % pid) as f:
                    stat = f.read()
            except OSError:
                continue
            fields = stat[stat.rindex(")") + 2:].split()
            if fields[1] == me and fields[0] != "Z":
                out.append(int(pid))
    return out


def stderr_of(p):
    try:
        with open(p.err_path, errors="replace") as f:
            return f.read()
    except (OSError, TypeError):
        return ""


def wait_until(cond, what, proc=None, timeout=STEP, interval=0.005):
    deadline = time.monotonic() + timeout
    while not cond():
        if proc is not None and proc.poll() is not None:
            die("%s: %s exited %d before it:\n%s" % (what, " ".join(proc.args[:2]), proc.returncode,
                                                      stderr_of(proc)[-3000:]))
        if time.monotonic() > deadline:
            die("timed out waiting for %s" % what)
        time.sleep(interval)


def timed_ihop(r, args, label):
    """Runs ihop to the end: (wall seconds, peak RSS KiB from wait4)."""
    t = time.monotonic()
    p = r.start([r.ihop] + args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    out = p.stdout.read().decode(errors="replace")
    p.stdout.close()
    _, status, usage = os.wait4(p.pid, 0)
    wall = time.monotonic() - t
    p.returncode = os.waitstatus_to_exitcode(status)  # reaped here: Popen must not wait for it
    if p.returncode != 0:
        die("%s: ihop %s failed (exit %d):\n%s" % (label, " ".join(map(str, args)), p.returncode, out[-3000:]))
    return wall, usage.ru_maxrss


# ------------------------------------------------------------------ nginx --

class Nginx:
    """nginx with a private config (bench/clone-bench.py's), serving files
    under given names: on 127.0.0.1, or with a Link, at its server end (the
    process started in the link's server namespace)."""

    def __init__(self, r, files, name="nginx", link=None):
        self.dir = os.path.join(r.path, name)
        www = os.path.join(self.dir, "www")
        os.makedirs(www)
        for fname, path in files.items():
            os.symlink(os.path.abspath(path), os.path.join(www, fname))
        if link:
            # A namespace of its own: any port is free there.
            addr, self.port, prefix = link.SERVER_ADDR, 80, link.server
        else:
            addr, prefix = "127.0.0.1", []
            with socket.socket() as s:
                s.bind((addr, 0))
                self.port = s.getsockname()[1]
        self.url = "http://%s:%d" % (addr, self.port)
        self.access_log = os.path.join(self.dir, "access.log")
        conf = os.path.join(self.dir, "nginx.conf")
        with open(conf, "w") as f:
            # ihop keeps one connection for a whole run of range requests:
            # nginx's default would close it after 1000.
            f.write(load_clone_bench().nginx_config(self.dir, "%s:%d" % (addr, self.port), www,
                                                   "keepalive_requests 100000;"))
        self.r = r
        self.proc = r.start(prefix + ["/usr/sbin/nginx", "-p", self.dir, "-c", conf, "-g", "daemon off;"],
                            os.path.join(self.dir, "stderr"))

        def up():
            if link:
                # Only a process in the link's namespaces reaches it.
                return subprocess.run(link.device + ["curl", "-s", "-o", "/dev/null", self.url + "/"],
                                      stdin=subprocess.DEVNULL, timeout=30).returncode == 0
            try:
                socket.create_connection((addr, self.port), timeout=1).close()
                return True
            except OSError:
                return False
        wait_until(up, "nginx on %s" % self.url, self.proc, timeout=30, interval=0.05)

    def mark(self):
        return os.path.getsize(self.access_log) if os.path.exists(self.access_log) else 0

    def fetched(self, mark):
        """(requests, body bytes) served since mark; fails on an error status."""
        n = body = 0
        with open(self.access_log) as f:
            f.seek(mark)
            for line in f:
                parts = line.split()
                if len(parts) < 4:
                    continue
                if parts[1] not in ("200", "206"):
                    die("nginx answered %s to %s" % (parts[1], line.strip()))
                n += 1
                body += int(parts[2])
        return n, body

    def stop(self):
        self.r.stop(self.proc, signal.SIGQUIT, timeout=10)


# ------------------------------------------------------------------- link --

RATE_UNITS = {"bit": 1, "kbit": 10**3, "mbit": 10**6, "gbit": 10**9}


def link_rate(text):
    """A rate as tc writes it (100mbit, 1gbit, 1.5gbit: decimal units, as
    tc's): bits per second; None if it is not one."""
    for unit in sorted(RATE_UNITS, key=len, reverse=True):
        if text.endswith(unit):
            try:
                bits = float(text[:-len(unit)]) * RATE_UNITS[unit]
            except ValueError:
                return None
            return bits if bits >= 1e6 else None
    return None


class Link:
    """A network link of a given rate, emulated between two private network
    namespaces (the host's own network is never touched): "server", where
    nginx runs, and "device", where the NBD servers (ihop serve, nbdkit)
    run, joined by a veth pair whose two ends are each shaped by a tbf qdisc
    to the rate: a full-duplex link, each direction its own queue as on
    Ethernet, so that requests and ACKs never wait behind the responses
    (which they would with tbf on one loopback). Rate only: no latency, no
    loss, as this kernel has no netem. The namespaces are files bind-mounted
    in the run directory (unshare --net=FILE), held by no process: undone
    with the run's other mounts, by Run.cleanup or bench/ondemand-bench.sh's
    trap; the processes in them are started through nsenter, which execs
    them (their pids are theirs, stopped as any other). The NBD clients stay
    outside: the servers' unix sockets are files, reached from any
    namespace."""

    SERVER_ADDR, DEVICE_ADDR = "10.211.0.1", "10.211.0.2"

    def __init__(self, r):
        ns = {}
        for side in ("server", "device"):
            ns[side] = os.path.join(r.path, "netns-" + side)
            open(ns[side], "w").close()
            r.mounts.append(ns[side])
            run(["unshare", "--net=" + ns[side], "true"])
        self.server = ["nsenter", "--net=" + ns["server"]]
        self.device = ["nsenter", "--net=" + ns["device"]]
        self.ends = ((self.server, "server0", self.SERVER_ADDR), (self.device, "device0", self.DEVICE_ADDR))
        run(self.server + ["ip", "link", "add", "name", "server0", "type", "veth", "peer", "name", "device0",
                           "netns", ns["device"]])
        for prefix, dev, addr in self.ends:
            run(prefix + ["ip", "addr", "add", addr + "/24", "dev", dev])
            run(prefix + ["ip", "link", "set", dev, "up"])
        self.rate = None

    def set_rate(self, rate):
        """Shapes both directions to rate (tc's notation). tbf's bucket holds
        2 ms of the rate, at least 32 KiB: a smaller one loses throughput
        at 1 Gbit/s to the timer's granularity (a 16 KiB one gave 73 MB/s
        of curl, 128 KiB and up 119); a larger one would let more through at
        full speed after each pause. veth hands tbf TSO packets of up to
        64 KiB: those larger than the bucket are cut into MTU-sized ones,
        not dropped. The queue holds 20 ms (tbf's latency): the senders are
        local, their TCP stacks slow down rather than lose packets."""
        burst = max(int(link_rate(rate) / 8 * 0.002), 32768)
        for prefix, dev, _ in self.ends:
            run(prefix + ["tc", "qdisc", "replace", "dev", dev, "root", "tbf", "rate", rate, "burst", str(burst),
                          "latency", "20ms"])
        self.rate = rate

    def check(self, url, size):
        """What curl, in the device namespace, gets of url (of size bytes)
        over the link at its rate: about 2 s of transfer, at most the whole
        file. (bytes, MB/s)."""
        n = min(size, int(link_rate(self.rate) / 8 * 2))
        out = run(self.device + ["curl", "-s", "-S", "-f", "-r", "0-%d" % (n - 1), "-o", "/dev/null",
                                 "-w", "%{size_download} %{time_total}", url], timeout=600).stdout.split()
        if int(out[0]) != n:
            die("curl over the %s link got %s bytes of %s, not %d" % (self.rate, out[0], url, n))
        return n, mb(n) / float(out[1])


# ----------------------------------------------------------------- images --

def image_and_archive(args, ihop):
    """The image and its archive (bita's defaults), built when missing."""
    clone_bench = load_clone_bench()
    os.makedirs(WORK, exist_ok=True)
    margs = argparse.Namespace(mirror=args.mirror)
    if args.quick:
        rootfs = clone_bench.build_rootfs_v1(margs)
        c = clone_bench.Cached(os.path.join(WORK, "quick.ext4"),
                               rootfs.params + "subset %s\nmke2fs ext4 %s uuid %s seed %s time %s\n" %
                               (" ".join(QUICK_DIRS), QUICK_SIZE, clone_bench.FS_UUID, clone_bench.FS_HASH_SEED,
                                clone_bench.FS_FAKE_TIME))
        if not c.fresh():
            tree = c.path + ".tree"
            clone_bench.rmtree(tree)
            for d in QUICK_DIRS:
                os.makedirs(os.path.dirname(os.path.join(tree, d)), exist_ok=True)
                run(["cp", "-a", os.path.join(rootfs.path, d), os.path.join(tree, d)])
            log("%s: mke2fs -t ext4 -d (%s of %s, %s)" % (os.path.basename(c.path), ", ".join(QUICK_DIRS),
                                                          os.path.basename(rootfs.path), QUICK_SIZE))
            run(["mke2fs", "-q", "-F", "-t", "ext4", "-b", "4096", "-U", clone_bench.FS_UUID,
                 "-E", "hash_seed=%s,root_owner=0:0" % clone_bench.FS_HASH_SEED, "-d", tree, c.path, QUICK_SIZE],
                env=dict(os.environ, E2FSPROGS_FAKE_TIME=clone_bench.FS_FAKE_TIME))
            clone_bench.rmtree(tree)
            clone_bench.rmtree(c.path + ".defaults.cba")
            c.done()
        image = c.path
    else:
        image = os.path.join(WORK, "v1.ext4")
        if not os.path.exists(image):
            log("%s is missing: building it as bench/clone-bench.py does" % image)
            image = clone_bench.build_image(clone_bench.build_rootfs_v1(margs), "v1").path
    cba = image + ".defaults.cba"
    # The name and recipe of bench/serve-bench.py's: `ihop compress` with its defaults.
    if not os.path.exists(cba) or os.path.getmtime(cba) < os.path.getmtime(image):
        log("%s: ihop compress (defaults)" % os.path.basename(cba))
        run([ihop, "-q", "compress", "-f", "-i", image, cba + ".tmp"], timeout=1800)
        os.rename(cba + ".tmp", cba)
    return image, cba, clone_bench


def chunks_of(ihop, cba):
    """ihop info's line about the chunks: "N in the image, M unique"."""
    for line in run([ihop, "info", cba]).stdout.splitlines():
        if line.startswith("chunks:"):
            return " ".join(line.split()[1:])
    return "?"


def debugfs(image, command):
    r = subprocess.run(["debugfs", "-R", command, image], capture_output=True, timeout=STEP,
                       stdin=subprocess.DEVNULL)
    if r.returncode != 0:
        die("debugfs -R '%s' %s: %s" % (command, image, r.stderr.decode(errors="replace")))
    return r.stdout


def pick_file(image, dirs=("/usr/sbin", "/usr/bin", "/etc")):
    """A regular file of 2 to 16 KiB, the one of median first block among
    them (not near the image's start): (path, size, byte offset, sha256)."""
    files = []
    for d in dirs:
        for line in debugfs(image, "ls -p %s" % d).decode(errors="replace").splitlines():
            f = line.strip().strip("/").split("/")
            # /inode/mode/uid/gid/name/size/
            if len(f) >= 6 and f[1].startswith("100") and f[5].isdigit() and 2048 <= int(f[5]) <= 16384:
                files.append((d + "/" + f[4], int(f[5])))
    if not files:
        die("no file of 2 to 16 KiB in %s of %s" % (", ".join(dirs), image))
    cmds = os.path.join(WORK, "ondemand-bench.debugfs")
    with open(cmds, "w") as f:
        f.write("".join("bmap %s 0\n" % p for p, _ in files))
    out = subprocess.run(["debugfs", "-f", cmds, image], capture_output=True, text=True, timeout=STEP).stdout
    os.unlink(cmds)
    blocks = [int(x) for x in out.splitlines() if x.strip().isdigit()]
    if len(blocks) != len(files):
        die("debugfs bmap gave %d blocks for %d files" % (len(blocks), len(files)))
    placed = sorted((b, p, s) for (p, s), b in zip(files, blocks))
    block, path, size = placed[len(placed) // 2]
    return path, size, block * 4096, hashlib.sha256(debugfs(image, "cat %s" % path)).hexdigest()


# ------------------------------------------------------------------ parts --

class Sample(dict):
    """One measurement: named figures."""


def part_a_one(r, nginx, url, size, target, method, rnd, check):
    """(a): one method, one round."""
    d = r.dir("a-%s-%d" % (method, rnd))
    store, file, mnt = r.store(d), os.path.join(d, "v1.img"), os.path.join(d, "mnt")
    path, _, _, digest = target
    open(file, "w").close()
    s = Sample()
    if check.drop:
        drop_caches()
    mark = nginx.mark()
    t0 = time.monotonic()
    if method == "ondemand":
        p = r.start([r.ihop, "mount", "--source", url, store + "/v1", file], os.path.join(d, "mount.err"))
    else:
        s["clone_s"], s["clone_rss"] = timed_ihop(r, ["-q", "clone", url, store + "/v1"], "(a) clone")
        p = r.start([r.ihop, "mount", store + "/v1", file], os.path.join(d, "mount.err"))
    r.fuse(file)
    wait_until(lambda: os.stat(file).st_size == size, "ihop mount to show %s" % file, p)
    s["ready"] = time.monotonic() - t0
    fd = os.open(file, os.O_RDONLY)
    try:
        if len(os.pread(fd, 4096, 0)) != 4096:
            die("short read of %s" % file)
    except OSError as e:
        die("(a) %s: the first read of %s failed (%s); ihop mount said:\n%s" %
            (method, file, e, stderr_of(p)[-3000:]))
    finally:
        os.close(fd)
    s["first"] = time.monotonic() - t0
    r.mount_loop(file, mnt)
    s["mounted"] = time.monotonic() - t0
    with open(mnt + path, "rb") as f:
        data = f.read()
    s["file"] = time.monotonic() - t0
    if hashlib.sha256(data).hexdigest() != digest:
        die("(a) %s: %s read through the mount differs from what debugfs reads" % (method, path))
    s["rss"] = vm_hwm_kib(p.pid)
    r.umount(mnt)
    r.umount(file)
    try:
        rc = p.wait(STEP)
    except subprocess.TimeoutExpired:
        die("(a) ihop mount did not exit after umount")
    if rc != 0:
        die("(a) ihop mount exited %d:\n%s" % (rc, stderr_of(p)))
    s["requests"], s["bytes"] = nginx.fetched(mark)
    return s


def part_c_one(r, nginx, url, method, rnd, check):
    """(c): --fill to completion, or clone."""
    d = r.dir("c-%s-%d" % (method, rnd))
    store = r.store(d)
    s = Sample()
    if check.drop:
        drop_caches()
    mark = nginx.mark()
    t0 = time.monotonic()
    if method == "ondemand":
        p = r.start([r.ihop, "serve", "--unix", os.path.join(d, "sock"), "--source", url, "--fill", store + "/v1"],
                    os.path.join(d, "serve.err"))
        wait_until(lambda: os.path.exists(store + "/v1"), "the fill to complete (%s/v1)" % store, p,
                   timeout=1800, interval=0.01)
        s["time"] = time.monotonic() - t0
        s["rss"] = vm_hwm_kib(p.pid)
        rc = r.stop(p)
        if rc != 0:
            die("(c) ihop serve --fill exited %d:\n%s" % (rc, stderr_of(p)))
        if check.first:
            run([r.ihop, "cat", "-o", os.path.join(d, "cat.img"), store + "/v1"], timeout=600)
            os.unlink(os.path.join(d, "cat.img"))
    else:
        s["time"], s["rss"] = timed_ihop(r, ["-q", "clone", url, store + "/v1"], "(c) clone")
    s["requests"], s["bytes"] = nginx.fetched(mark)
    return s


def part_d_one(r, nginx, url, raw_url, size, method, rnd, check, nbdcopy_opts=(), link=None):
    """(d): sequential read of the whole device, cold; over a Link, the
    server (ihop serve or nbdkit) in its device namespace, nginx at its
    other end, nbdcopy outside (the unix socket reaches it)."""
    d = r.dir("d%s%s-%s-%d" % ("1" if nbdcopy_opts else "", "-" + link.rate if link else "", method, rnd))
    sock, store = os.path.join(d, "sock"), r.store(d)
    prefix = link.device if link else []
    s = Sample()
    if method == "ondemand":
        p = r.start(prefix + [r.ihop, "serve", "--unix", sock, "--source", url, store + "/v1"],
                    os.path.join(d, "serve.err"))
        uri = "nbd+unix:///v1?socket=" + sock
    else:
        p = r.start(prefix + ["nbdkit", "-f", "-r", "-U", sock, "curl", "url=" + raw_url],
                    os.path.join(d, "nbdkit.err"))
        uri = "nbd+unix:///?socket=" + sock
    wait_until(lambda: os.path.exists(sock), "%s to listen" % method, p, timeout=60)
    if check.drop:
        drop_caches()
    mark = nginx.mark()
    t0 = time.monotonic()
    run(["nbdcopy", "--no-extents"] + list(nbdcopy_opts) + [uri, "null:"], timeout=1800)
    s["time"] = time.monotonic() - t0
    s["mbps"] = mb(size) / s["time"]
    s["rss"] = vm_hwm_kib(p.pid)
    if method == "ondemand":
        # Every chunk was read: the release is an ordinary one now.
        wait_until(lambda: os.path.exists(store + "/v1"), "%s/v1 after the whole device was read" % store, p,
                   timeout=30, interval=0.02)
    rc = r.stop(p)
    if rc != 0 and method == "ondemand":
        die("(d) ihop serve exited %d:\n%s" % (rc, stderr_of(p)))
    s["requests"], s["bytes"] = nginx.fetched(mark)
    s["fetch_mbps"] = mb(s["bytes"]) / s["time"]
    if method == "ondemand" and check.first:
        run([r.ihop, "cat", "-o", os.path.join(d, "cat.img"), store + "/v1"], timeout=600)
        os.unlink(os.path.join(d, "cat.img"))
    return s


# ---------------------------------------------------------------- boot (b) --

def boot_system(ihop, rebuild):
    """The boot tests' system, built once into bench/work/ondemand-boot
    (keyed by tests/boot/'s files and the debootstrapped base tree; the
    guest's own ihop takes no part in these boots: the host's serves its
    root). Returns (bootvm module, System)."""
    sys.path.insert(0, os.path.join(ROOT, "tests", "boot"))
    import bootvm
    boot_dir = os.path.join(ROOT, "tests", "boot")
    h = hashlib.sha256()
    for name in sorted(os.listdir(boot_dir)):
        p = os.path.join(boot_dir, name)
        if os.path.isfile(p):
            h.update(name.encode() + b"\0")
            with open(p, "rb") as f:
                h.update(f.read())
    base = bootvm.base_tree()
    params = "base %s\ntests/boot %s\n" % (base.name, h.hexdigest())
    stamp = BOOT_WORK + ".params"
    work = Path(BOOT_WORK)
    fresh = False
    try:
        with open(stamp) as f:
            fresh = f.read() == params
    except FileNotFoundError:
        pass
    if fresh and not rebuild:
        for f in ["boot/vmlinuz", "boot/initrd.img", "v1.ext4", "v1.cba"]:
            if not (work / f).exists():
                fresh = False
    if not fresh or rebuild:
        log("building the boot tests' system into %s (tests/boot/bootvm.py; a minute or two)" % BOOT_WORK)
        if os.path.exists(stamp):
            os.unlink(stamp)
        t = time.monotonic()
        try:
            system = bootvm.build_system(work, Path(ihop))
        except Exception as e:  # noqa: BLE001 - bootvm raises RuntimeError and Unavailable
            die("building the boot system failed: %s" % e)
        with open(stamp, "w") as f:
            f.write(params)
        log("  built in %.0f s" % (time.monotonic() - t))
        return bootvm, system
    system = bootvm.System(work, work / "boot/vmlinuz", work / "boot/initrd.img",
                           {"v1": work / "v1.ext4"}, None, None, work / "storefs", work / "store.img")
    return bootvm, system


def part_b_one(r, nginx, bootvm, system, url, method, rnd, check):
    d = r.dir("b-%s-%d" % (method, rnd))
    store, sock = r.store(d), os.path.join(d, "sock")
    s = Sample()
    if check.drop:
        drop_caches()
    mark = nginx.mark()
    t0 = time.monotonic()
    if method == "ondemand":
        argv = [r.ihop, "serve", "--unix", sock, "--source", url, store + "/v1"]
    else:
        s["clone_s"], s["clone_rss"] = timed_ihop(r, ["-q", "clone", url, store + "/v1"], "(b) clone")
        argv = [r.ihop, "serve", "--unix", sock, store + "/v1"]
    p = r.start(argv, os.path.join(d, "serve.err"))
    wait_until(lambda: "serving " in stderr_of(p), "ihop serve to be serving", p, timeout=60)
    s["serving"] = time.monotonic() - t0
    # The boot tests' served boot, without their hashing of files after it.
    append = " ".join(w for w in bootvm.served_cmdline().split() if not w.startswith("ihoptest.hash="))
    drive = "file=nbd+unix:///v1?socket=%s,format=raw,readonly=on,if=virtio" % sock
    vmdir = Path(d) / "vm"
    results = vmdir / "results.txt"
    out = {}

    def go():
        try:
            out["boot"] = bootvm.boot(system, append, vmdir, drives=[drive], timeout=BOOT_TIMEOUT)
        except Exception as e:  # noqa: BLE001 - reported below
            out["error"] = e
    t_vm = time.monotonic()
    th = threading.Thread(target=go, daemon=True)
    th.start()
    while th.is_alive():
        if "mu" not in s:
            try:
                text = results.read_text(errors="replace")
            except FileNotFoundError:
                text = ""
            if "RESULT multi_user_us " in text:
                s["mu"] = time.monotonic() - t0
                s["vm_mu"] = time.monotonic() - t_vm
                s["requests_mu"], s["bytes_mu"] = nginx.fetched(mark)
        th.join(0.05)
    s["rss"] = vm_hwm_kib(p.pid)
    rc = r.stop(p)
    if "error" in out:
        die("(b) %s boot failed: %s" % (method, out["error"]))
    b = out["boot"]
    if b.results.get("multi_user") != "active" or "multi_user_us" not in b.results or "mu" not in s:
        die("(b) %s boot did not reach multi-user.target (ihop serve exit %s):\n%s\n%s" %
            (method, rc, b.console_tail(), stderr_of(p)[-2000:]))
    if b.results.get("marker") != "v1" or b.results.get("root_source") != "/dev/vda":
        die("(b) %s boot: root is not the served v1 (marker %r, root %r)" %
            (method, b.results.get("marker"), b.results.get("root_source")))
    if rc != 0:
        die("(b) ihop serve exited %d:\n%s" % (rc, stderr_of(p)))
    s["guest_mu"] = int(b.results["multi_user_us"]) / 1e6
    s["requests"], s["bytes"] = nginx.fetched(mark)
    return s


# ----------------------------------------------------------------- report --

def med(samples, key):
    xs = [s[key] for s in samples if s.get(key) is not None]
    return statistics.median(xs) if xs else None


def ratio(a, b, key):
    xs = [x[key] / y[key] for x, y in zip(a, b) if x.get(key) and y.get(key)]
    return statistics.median(xs) if xs else None


def table(title, head, rows, note=None):
    log("")
    log(title)
    w = [max(len(str(row[k])) for row in [head] + rows) for k in range(len(head))]
    for i, row in enumerate([head] + rows):
        log("  " + "  ".join(("%-*s" if k == 0 else "%*s") % (w[k], row[k]) for k in range(len(head))))
        if i == 0:
            log("  " + "  ".join("-" * w[k] for k in range(len(head))))
    if note:
        log("  " + note)


def fs(x):
    return "-" if x is None else "%.2f s" % x


def fx(x):
    return "-" if x is None else "%.3fx" % x


def fmb(x):
    return "-" if x is None else "%.2f MB" % mb(x)


def fmib(kib):
    return "-" if kib is None else "%.1f MiB" % (kib / 1024)


def pct(x, whole):
    return "-" if x is None else "%.1f %%" % (100.0 * x / whole)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="\n".join(__doc__.split("\n")[2:]))
    p.add_argument("--run-dir", required=True, help="an empty directory for stores, sockets, mounts and logs "
                   "(bench/ondemand-bench.sh makes one under bench/work and removes it)")
    p.add_argument("--rounds", type=int, help="rounds of (a), (c) and (d) (default 3; 1 with --quick)")
    p.add_argument("--boot-rounds", type=int, help="rounds of (b), a minute or two per boot (default: the "
                   "rounds, at most 2)")
    p.add_argument("--no-boot", action="store_true", help="skip (b), the boots")
    p.add_argument("--links", default="1gbit,100mbit", help="(d) also over emulated links of these rates, "
                   "comma-separated, as tc writes them, at least 1mbit; 'none' for loopback only (default "
                   "1gbit,100mbit: about 10 s and 60 s a round with the 512 MiB image)")
    p.add_argument("--link-rounds", type=int, help="rounds of (d) over the links, at most the rounds "
                   "(default: the rounds)")
    p.add_argument("--quick", action="store_true", help="a smoke test: a 64 MiB image, 1 round")
    p.add_argument("--ihop", default=os.path.join(ROOT, "build", "src", "ihop"), help="the ihop binary")
    p.add_argument("--drop-caches", action="store_true", help="drop the page cache before each measurement "
                   "(default: not dropped; nginx serves from memory)")
    p.add_argument("--store-dir", help="make the stores under this directory (default: the run directory, "
                   "under bench/work); e.g. /dev/shm to leave the disk out")
    p.add_argument("--rebuild-boot", action="store_true", help="rebuild the cached boot system")
    p.add_argument("--mirror", default="http://deb.debian.org/debian", help="Debian mirror, should debootstrap run")
    args = p.parse_args()
    rounds = args.rounds if args.rounds is not None else (1 if args.quick else 3)
    boot_rounds = args.boot_rounds if args.boot_rounds is not None else min(rounds, 2)
    link_rounds = args.link_rounds if args.link_rounds is not None else rounds
    if rounds < 1 or boot_rounds < 1 or link_rounds < 1:
        p.error("rounds must be at least 1")
    rates = [] if args.links == "none" else args.links.split(",")
    for rate in rates:
        if link_rate(rate) is None:
            p.error("--links: %r is not a rate of at least 1mbit as tc writes it (100mbit, 1gbit)" % rate)
    if len(set(rates)) != len(rates):
        p.error("--links: %s names a rate twice" % args.links)
    link_rounds = min(link_rounds, rounds)
    if os.geteuid() != 0:
        die("run as root (FUSE and loop mounts, nginx, debootstrap)")
    ihop = os.path.abspath(args.ihop)
    if not os.access(ihop, os.X_OK):
        die("%s is not there: build it (ninja -C build)" % ihop)

    image, cba, clone_bench = image_and_archive(args, ihop)
    size = os.path.getsize(image)
    cba_size = os.path.getsize(cba)
    target = pick_file(image)
    bootvm = system = None
    if not args.no_boot:
        bootvm, system = boot_system(ihop, args.rebuild_boot)
    boot_cba = os.path.join(BOOT_WORK, "v1.cba")

    r = Run(os.path.abspath(args.run_dir), ihop, args.store_dir)
    os.chmod(r.path, 0o755)
    nginx = link_nginx = None
    res = {}
    link_checks = {}
    try:
        files = {"v1.cba": cba, "v1.img": image}
        if system:
            files["boot-v1.cba"] = boot_cba
        nginx = Nginx(r, files)
        url, raw_url, boot_url = (nginx.url + "/" + n for n in ("v1.cba", "v1.img", "boot-v1.cba"))
        # Warm: every published file in the page cache, nginx's too.
        for path in files.values():
            with open(path, "rb") as f:
                while f.read(1 << 20):
                    pass
        log("")
        log("image %s: %.1f MB, archive %s: %.2f MB (%s)" %
            (image, mb(size), os.path.basename(cba), mb(cba_size), chunks_of(ihop, cba)))
        log("(a) reads %s: %d bytes at image offset %.1f MiB" % (target[0], target[1], target[2] / 2**20))
        if system:
            log("(b) boots %s: %.1f MB, archive %.2f MB" % (system.images["v1"], mb(os.path.getsize(system.images["v1"])),
                                                          mb(os.path.getsize(boot_cba))))
        log("stores in %s: %s" % (r.stores or r.path, clone_bench.describe_fs(r.stores or r.path)))
        log("page cache %s; rounds: %d, boots: %s, links: %s; load average %.2f" %
            ("dropped before each measurement" if args.drop_caches else "not dropped", rounds,
             "skipped" if args.no_boot else "%d" % boot_rounds,
             "%s (rounds: %d)" % (", ".join(rates), link_rounds) if rates else "none", os.getloadavg()[0]))
        link = None
        if rates:
            # (d) over links: nginx again, at the server end of an emulated link.
            link = Link(r)
            link_nginx = Nginx(r, {"v1.cba": cba, "v1.img": image}, "nginx-link", link)
            link_url, link_raw_url = (link_nginx.url + "/" + n for n in ("v1.cba", "v1.img"))
            for rate in rates:
                link.set_rate(rate)
                n, link_checks[rate] = link.check(link_raw_url, size)
                log("link %s (veth, tbf both ways): curl of %.0f MB of the raw image %.1f MB/s, %.1f %% of the "
                    "rate's %.1f MB/s (data is 1448 bytes of each 1514-byte frame tbf counts: 95.6 %%)" %
                    (rate, mb(n), link_checks[rate], 100 * link_checks[rate] / mb(link_rate(rate) / 8),
                     mb(link_rate(rate) / 8)))
        methods = ["ondemand", "peer"]
        res = {part: {m: [] for m in methods} for part in ("a", "b", "c", "d", "d1")}
        res["links"] = {rate: {m: [] for m in methods} for rate in rates}
        for rnd in range(rounds):
            order = methods if rnd % 2 == 0 else methods[::-1]
            check = argparse.Namespace(first=rnd == 0, drop=args.drop_caches)
            log("")
            log("round %d of %d (%s first)" % (rnd + 1, rounds, order[0]))
            for m in order:
                s = part_a_one(r, nginx, url, size, target, m, rnd, check)
                res["a"][m].append(s)
                log("  (a) %-8s first byte %6.2f s, mounted %6.2f s, file read %6.2f s, fetched %9d bytes in %d "
                    "requests, peak RSS %s" % (m, s["first"], s["mounted"], s["file"], s["bytes"], s["requests"],
                                               fmib(s["rss"])))
            for m in order:
                s = part_c_one(r, nginx, url, m, rnd, check)
                res["c"][m].append(s)
                log("  (c) %-8s %6.2f s, fetched %9d bytes in %d requests, peak RSS %s" %
                    (m, s["time"], s["bytes"], s["requests"], fmib(s["rss"])))
            for m in order:
                s = part_d_one(r, nginx, url, raw_url, size, m, rnd, check)
                res["d"][m].append(s)
                log("  (d) %-8s %6.2f s, %6.1f MB/s, fetched %9d bytes in %d requests, peak RSS %s" %
                    (m, s["time"], s["mbps"], s["bytes"], s["requests"], fmib(s["rss"])))
            for m in order:
                s = part_d_one(r, nginx, url, raw_url, size, m, rnd, check, SINGLE)
                res["d1"][m].append(s)
                log("  (d) %-8s %6.2f s, %6.1f MB/s, fetched %9d bytes in %d requests, peak RSS %s (%s)" %
                    (m, s["time"], s["mbps"], s["bytes"], s["requests"], fmib(s["rss"]), " ".join(SINGLE)))
            if link and rnd < link_rounds:
                for rate in rates:
                    link.set_rate(rate)
                    for m in order:
                        s = part_d_one(r, link_nginx, link_url, link_raw_url, size, m, rnd, check, link=link)
                        res["links"][rate][m].append(s)
                        log("  (d) %-8s %6.2f s, %6.1f MB/s, fetched %9d bytes in %d requests, peak RSS %s (over a "
                            "%s link)" % (m, s["time"], s["mbps"], s["bytes"], s["requests"], fmib(s["rss"]), rate))
            if system and rnd < boot_rounds:
                for m in order:
                    s = part_b_one(r, nginx, bootvm, system, boot_url, m, rnd, check)
                    res["b"][m].append(s)
                    log("  (b) %-8s multi-user %6.2f s from the start (guest: kernel start to multi-user %6.2f s), "
                        "fetched %d bytes by then, %d by power-off, peak RSS %s" %
                        (m, s["mu"], s["guest_mu"], s["bytes_mu"], s["bytes"], fmib(s["rss"])))
    finally:
        for n in (link_nginx, nginx):
            if n:
                n.stop()
        r.cleanup()

    # ------------------------------------------------------------- tables --
    A, C, D, D1, B = res["a"], res["c"], res["d"], res["d1"], res["b"]
    log("")
    log("ihop on-demand benchmark (%s, rounds: %d, over loopback; (d) also over emulated links): medians over "
        "the rounds; ratios: median of each round's on demand / peer" % (os.path.basename(image), rounds))
    table("(a) one file: %s (%d bytes at %.1f MiB), through mount -o loop,ro; times from the command's start" %
          (target[0], target[1], target[2] / 2**20),
          ("", "first byte", "mounted", "file read", "fetched", "of archive", "peak RSS"),
          [("mount --source", fs(med(A["ondemand"], "first")), fs(med(A["ondemand"], "mounted")),
            fs(med(A["ondemand"], "file")), fmb(med(A["ondemand"], "bytes")),
            pct(med(A["ondemand"], "bytes"), cba_size), fmib(max(s["rss"] for s in A["ondemand"]))),
           ("clone + mount", fs(med(A["peer"], "first")), fs(med(A["peer"], "mounted")), fs(med(A["peer"], "file")),
            fmb(med(A["peer"], "bytes")), pct(med(A["peer"], "bytes"), cba_size),
            "%s (clone %s)" % (fmib(max(s["rss"] for s in A["peer"])), fmib(max(s["clone_rss"] for s in A["peer"])))),
           ("on demand / clone", fx(ratio(A["ondemand"], A["peer"], "first")),
            fx(ratio(A["ondemand"], A["peer"], "mounted")), fx(ratio(A["ondemand"], A["peer"], "file")),
            fx(ratio(A["ondemand"], A["peer"], "bytes")), "", "")],
          "mount --source is ready (FILE has the image's size) after %s; clone + mount after %s (clone %s)" %
          (fs(med(A["ondemand"], "ready")), fs(med(A["peer"], "ready")), fs(med(A["peer"], "clone_s"))))
    if B["ondemand"]:
        bsize = os.path.getsize(boot_cba)
        table("(b) a boot (qemu TCG, root on ihop serve over a unix socket), rounds: %d" % len(B["ondemand"]),
              ("", "multi-user", "guest: kernel->m-u", "fetched by m-u", "of archive", "by power-off",
               "peak RSS"),
              [("serve --source", fs(med(B["ondemand"], "mu")), fs(med(B["ondemand"], "guest_mu")),
                fmb(med(B["ondemand"], "bytes_mu")), pct(med(B["ondemand"], "bytes_mu"), bsize),
                fmb(med(B["ondemand"], "bytes")), fmib(max(s["rss"] for s in B["ondemand"]))),
               ("clone + serve", fs(med(B["peer"], "mu")), fs(med(B["peer"], "guest_mu")),
                fmb(med(B["peer"], "bytes_mu")), pct(med(B["peer"], "bytes_mu"), bsize), fmb(med(B["peer"], "bytes")),
                "%s (clone %s)" % (fmib(max(s["rss"] for s in B["peer"])),
                                   fmib(max(s["clone_rss"] for s in B["peer"])))),
               ("on demand / clone", fx(ratio(B["ondemand"], B["peer"], "mu")),
                fx(ratio(B["ondemand"], B["peer"], "guest_mu")), fx(ratio(B["ondemand"], B["peer"], "bytes_mu")), "",
                fx(ratio(B["ondemand"], B["peer"], "bytes")), "")],
              "multi-user: command start to the guest's report of multi-user.target (host clock); clone + serve "
              "spends %s of it cloning" % fs(med(B["peer"], "clone_s")))
    table("(c) the whole release into the store",
          ("", "time", "image MB/s", "fetched", "of archive", "requests", "peak RSS"),
          [("serve --source --fill", fs(med(C["ondemand"], "time")), "%.0f" % (mb(size) / med(C["ondemand"], "time")),
            fmb(med(C["ondemand"], "bytes")), pct(med(C["ondemand"], "bytes"), cba_size),
            "%d" % med(C["ondemand"], "requests"), fmib(max(s["rss"] for s in C["ondemand"]))),
           ("clone", fs(med(C["peer"], "time")), "%.0f" % (mb(size) / med(C["peer"], "time")),
            fmb(med(C["peer"], "bytes")), pct(med(C["peer"], "bytes"), cba_size), "%d" % med(C["peer"], "requests"),
            fmib(max(s["rss"] for s in C["peer"]))),
           ("fill / clone", fx(ratio(C["ondemand"], C["peer"], "time")), "", fx(ratio(C["ondemand"], C["peer"], "bytes")),
            "", "", "")],
          "fill: from the command's start until STORE/v1, the release description, appears")
    L = res["links"]

    def d_rows(X, how):
        return [("ihop serve --source" + how, "%.1f" % med(X["ondemand"], "mbps"), fs(med(X["ondemand"], "time")),
                 fmb(med(X["ondemand"], "bytes")), "%.1f" % med(X["ondemand"], "fetch_mbps"),
                 "%d" % med(X["ondemand"], "requests"), fmib(max(s["rss"] for s in X["ondemand"]))),
                ("nbdkit curl (raw image)" + how, "%.1f" % med(X["peer"], "mbps"), fs(med(X["peer"], "time")),
                 fmb(med(X["peer"], "bytes")), "%.1f" % med(X["peer"], "fetch_mbps"),
                 "%d" % med(X["peer"], "requests"), fmib(max(s["rss"] for s in X["peer"]))),
                ("ihop / nbdkit" + how, fx(ratio(X["ondemand"], X["peer"], "mbps")), "",
                 fx(ratio(X["ondemand"], X["peer"], "bytes")), "", "", "")]
    # The target, per way of fetching: over loopback, then each link.
    ratios = [("over loopback", ratio(D["ondemand"], D["peer"], "mbps"))] + \
        [("over a %s link" % rate, ratio(L[rate]["ondemand"], L[rate]["peer"], "mbps")) for rate in rates]
    counted = ratios[1:] or ratios
    met = all(x >= TARGET_RATIO for _, x in counted)
    table("(d) sequential read of the whole device, cold: nbdcopy --no-extents URI null: (its defaults: %d threads, "
          "64 requests of 256 KiB in flight, one connection: neither server offers multi-conn), and over loopback "
          "also with %s%s" %
          (len(os.sched_getaffinity(0)), " ".join(SINGLE),
           "; over emulated links (veth, tbf both ways, rate only) with nbdcopy's defaults, rounds: %d" % link_rounds
           if rates else ""),
          ("", "MB/s", "time", "fetched", "fetched MB/s", "requests", "peak RSS"),
          d_rows(D, ", loopback") + d_rows(D1, ", loopback, 1 at a time") +
          [row for rate in rates for row in d_rows(L[rate], ", %s link" % rate)],
          "MB/s: image bytes (%d) over nbdcopy's wall time; fetched MB/s: what nginx sent over that time%s\n"
          "  target ihop >= %.0fx nbdkit (nbdcopy's defaults): %s%s" %
          (size, "".join("; curl over the %s link: %.1f MB/s" % (rate, link_checks[rate]) for rate in rates),
           TARGET_RATIO, ", ".join("%s %s %s" % (where, fx(x), "met" if x >= TARGET_RATIO else "MISSED")
                                   for where, x in ratios),
           " (the exit status counts the links: a device fetches over one, loopback measures CPU)"
           if rates else ""))
    log("")
    log("load average after: %.2f" % os.getloadavg()[0])
    return 0 if met else 1


if __name__ == "__main__":
    def stopped(*_):
        print("ondemand-bench: stopped by SIGTERM", file=sys.stderr, flush=True)
        sys.exit(143)
    signal.signal(signal.SIGTERM, stopped)
    try:
        sys.exit(main())
    except Failure as e:
        print("ondemand-bench: FAILED: %s" % e, file=sys.stderr, flush=True)
        sys.exit(2)
    except KeyboardInterrupt:
        print("ondemand-bench: interrupted", file=sys.stderr, flush=True)
        sys.exit(130)
    except Exception:  # noqa: BLE001 - a failure, not a missed target (exit 1)
        traceback.print_exc()
        print("ondemand-bench: FAILED (above)", file=sys.stderr, flush=True)
        sys.exit(2)
