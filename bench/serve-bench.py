#!/usr/bin/python3
"""Read-path benchmark for `ihop serve` (issue: mount and serve).

Serves the same 512 MiB release four ways over unix sockets, and reads it
through fio's NBD engine (libnbd) in the same run:

  * ihop serve            - put together from the chunk store on every read
  * ihop serve --verify   - the same, each chunk hashed on its first read
  * nbdkit file plugin    - the raw image file (read-only)
  * qemu-nbd              - the raw image file (read-only)

Workloads: sequential 1 MiB reads (queue depth 8) and random 4 KiB reads
(queue depth 16), each after a warm-up pass, so every server reads from the
page cache and the figures compare the servers, not the disk. Also reports
the resident memory of `ihop serve` after the runs.

The release is the clone benchmark's v1 image (bench/work/v1.ext4, built by
bench/clone-bench.py; run that first) or any image given with --image.
Usage: bench/serve-bench.py [--image IMG] [--runtime SECONDS]
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.dirname(HERE)
IHOP = os.environ.get("IHOP", os.path.join(TOP, "build", "src", "ihop"))
PACKAGES = ["fio", "nbdkit", "qemu-utils", "libnbd-bin", "python3-brotli"]


def ensure_packages():
    missing = [p for p in PACKAGES
               if subprocess.run(["dpkg-query", "-W", "-f=${Status}", p],
                                 capture_output=True, text=True).stdout.find("ok installed") < 0]
    if missing:
        subprocess.run(["apt-get", "update", "-qq"], check=True)
        subprocess.run(["apt-get", "install", "-y", "-qq"] + missing, check=True,
                       env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"))


def wait_for_socket(path, proc, timeout=10):
    end = time.time() + timeout
    while time.time() < end:
        if os.path.exists(path):
            return
        if proc.poll() is not None:
            raise SystemExit("server exited early: %s" % proc.args)
        time.sleep(0.05)
    raise SystemExit("server did not create %s" % path)


def fio(uri, rw, bs, depth, runtime):
    out = subprocess.run(
        ["fio", "--name=bench", "--ioengine=nbd", "--uri=" + uri, "--rw=" + rw, "--bs=" + bs,
         "--iodepth=%d" % depth, "--size=100%", "--time_based", "--runtime=%d" % runtime,
         "--output-format=json"], capture_output=True, text=True, timeout=runtime + 60)
    if out.returncode != 0:
        raise SystemExit("fio failed on %s: %s" % (uri, out.stderr.strip()))
    # the nbd engine prints a line of its own before the JSON
    job = json.loads(out.stdout[out.stdout.index("{"):])["jobs"][0]["read"]
    return job["bw_bytes"] / 1e6, job["iops"]


def rss_kib(pid):
    fields = {}
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            k, _, v = line.partition(":")
            fields[k] = v.strip()
    return int(fields["VmRSS"].split()[0]), int(fields["VmHWM"].split()[0])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--image", default=os.path.join(HERE, "work", "v1.ext4"))
    ap.add_argument("--runtime", type=int, default=8, help="seconds per fio run")
    args = ap.parse_args()
    ensure_packages()
    if not os.path.exists(args.image):
        raise SystemExit("%s is missing: run bench/clone-bench.py first (it builds it)" % args.image)
    cba = args.image + ".cba"
    if not os.path.exists(cba):
        subprocess.run(["/usr/bin/python3", os.path.join(HERE, "make_cba.py"), args.image, cba], check=True)

    work = tempfile.mkdtemp(prefix="serve-bench.")
    procs = []
    try:
        store = os.path.join(work, "store")
        subprocess.run([IHOP, "-q", "clone", cba, store + "/rel"], check=True, stdout=subprocess.DEVNULL)
        raw = os.path.join(work, "raw.img")
        subprocess.run([IHOP, "cat", store + "/rel", "-o", raw], check=True)
        size = os.path.getsize(raw)

        servers = {}
        def start(name, cmd, sock, export):
            p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            procs.append(p)
            wait_for_socket(sock, p)
            servers[name] = (p, "nbd+unix:///%s?socket=%s" % (export, sock))

        s = os.path.join(work, "ihop.sock")
        start("ihop serve", [IHOP, "serve", "--unix", s, store + "/rel"], s, "rel")
        s = os.path.join(work, "ihopv.sock")
        start("ihop serve --verify", [IHOP, "serve", "--verify", "--unix", s, store + "/rel"], s, "rel")
        s = os.path.join(work, "nbdkit.sock")
        start("nbdkit file", ["nbdkit", "-f", "-r", "-U", s, "file", "file=" + raw], s, "")
        s = os.path.join(work, "qemu.sock")
        start("qemu-nbd", ["qemu-nbd", "-r", "-f", "raw", "-t", "--shared=16", "-k", s, raw], s, "")

        print("release: %s (%d MiB), %d s per run" % (args.image, size >> 20, args.runtime))
        for name, (_, uri) in servers.items():  # warm-up: page cache, and --verify's first reads
            subprocess.run(["nbdcopy", "--no-extents", uri, "null:"], check=True, timeout=300)

        results = {}
        for name, (_, uri) in servers.items():
            seq = fio(uri, "read", "1M", 8, args.runtime)
            rnd = fio(uri, "randread", "4k", 16, args.runtime)
            results[name] = (seq, rnd)

        raw_best_bw = max(results[n][0][0] for n in ("nbdkit file", "qemu-nbd"))
        raw_best_iops = max(results[n][1][1] for n in ("nbdkit file", "qemu-nbd"))
        print("\n%-22s %14s %10s %14s %10s" % ("server", "seq 1M MB/s", "vs raw", "rand 4k IOPS", "vs raw"))
        for name, ((bw, _), (_, iops)) in results.items():
            print("%-22s %14.0f %9.2fx %14.0f %9.2fx" % (name, bw, bw / raw_best_bw, iops, iops / raw_best_iops))
        for name in ("ihop serve", "ihop serve --verify"):
            rss, hwm = rss_kib(servers[name][0].pid)
            print("%s: resident %.1f MiB now, %.1f MiB peak" % (name, rss / 1024, hwm / 1024))
        print("\ntarget: ihop serve >= 0.90x the best raw-file server, with and without --verify")
        ok = all(results[n][0][0] >= 0.9 * raw_best_bw and results[n][1][1] >= 0.9 * raw_best_iops
                 for n in ("ihop serve", "ihop serve --verify"))
        print("target met" if ok else "target MISSED")
        return 0 if ok else 1
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
