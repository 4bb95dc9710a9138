#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Compress benchmark (issue: ihop compress): `ihop compress` and `casync make`
on the same 512 MiB ext4 release, in the same run.

  * ihop compress, bita's defaults (RollSum, 64 KiB average, brotli 6), all cores
  * ihop compress --compression zstd, all cores
  * casync make (Debian's casync: the same job for casync's chunk stores;
    64 KiB average chunks; its default compression, zstd, and gzip)

Reported: wall time, MB/s of image, peak RSS (/usr/bin/time -v) and the
size of what each wrote (the .cba archive; casync's index plus chunk store).
Targets: ihop compress faster than casync make, and an archive no larger
than bita's for the same settings (bita's brotli-6 archive of such an image
is about 11% of the image).

The image is the clone benchmark's bench/work/v1.ext4 (run
bench/clone-bench.py first) or one given with --image.
Usage: bench/compress-bench.py [--image IMG] [--runs N]
"""

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.dirname(HERE)
IHOP = os.environ.get("IHOP", os.path.join(TOP, "build", "src", "ihop"))


def ensure_packages():
    missing = [p for p in ("casync", "time")
               if "ok installed" not in subprocess.run(["dpkg-query", "-W", "-f=${Status}", p],
                                                       capture_output=True, text=True).stdout]
    if missing:
        subprocess.run(["apt-get", "update", "-qq"], check=True)
        subprocess.run(["apt-get", "install", "-y", "-qq"] + missing, check=True,
                       env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"))


def timed(cmd):
    with tempfile.NamedTemporaryFile(prefix="time.") as t:
        r = subprocess.run(["/usr/bin/time", "-v", "-o", t.name] + cmd, capture_output=True, text=True)
        tv = open(t.name).read()
    if r.returncode != 0:
        raise SystemExit("%s failed: %s" % (cmd[0], r.stderr.strip()))
    wall = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): (\S+)", tv).group(1)
    secs = sum(float(x) * 60 ** i for i, x in enumerate(reversed(wall.split(":"))))
    rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", tv).group(1))
    cpu = float(re.search(r"User time \(seconds\): (\S+)", tv).group(1)) + \
        float(re.search(r"System time \(seconds\): (\S+)", tv).group(1))
    return secs, rss, cpu


def du(path):
    if os.path.isfile(path):
        return os.path.getsize(path)
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(path) for f in fs)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--image", default=os.path.join(HERE, "work", "v1.ext4"))
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    ensure_packages()
    if not os.path.exists(args.image):
        raise SystemExit("%s is missing: run bench/clone-bench.py first (it builds it)" % args.image)
    size = os.path.getsize(args.image)
    work = tempfile.mkdtemp(prefix="compress-bench.", dir=os.path.join(HERE, "work"))
    try:
        jobs = {
            "ihop compress (brotli 6)": lambda o: [IHOP, "-q", "compress", "-f", "-i", args.image, o + ".cba"],
            "ihop compress (zstd)": lambda o: [IHOP, "-q", "compress", "-f", "--compression", "zstd",
                                                "-i", args.image, o + ".cba"],
            "casync make (zstd)": lambda o: ["casync", "make", "--store=" + o + ".castr", o + ".caibx", args.image],
            "casync make (gzip)": lambda o: ["casync", "make", "--compression=gzip", "--store=" + o + ".castr",
                                            o + ".caibx", args.image],
        }
        # Runs take turns (ihop, casync, ihop, ...), so that a slow spell of
        # a shared machine does not fall on one tool's runs only.
        results = {}
        for i in range(args.runs):
            for name, cmd in jobs.items():
                best = results.get(name)
                out = os.path.join(work, "%s-%d" % (re.sub(r"\W+", "_", name), i))
                secs, rss, cpu = timed(cmd(out))
                written = sum(du(out + ext) for ext in (".cba", ".castr", ".caibx") if os.path.exists(out + ext))
                for ext in (".cba", ".castr", ".caibx"):
                    p = out + ext
                    if os.path.isdir(p):
                        shutil.rmtree(p)
                    elif os.path.exists(p):
                        os.unlink(p)
                if best is None or secs < best[0]:
                    results[name] = (secs, rss, cpu, written)
        print("image: %s, %.1f MB; best of %d runs; %d CPUs" % (args.image, size / 1e6, args.runs, os.cpu_count()))
        print("%-26s %9s %9s %9s %12s %8s %10s" % ("", "wall s", "MB/s", "CPU s", "output MB", "% image", "peak RSS"))
        for name, (secs, rss, cpu, written) in results.items():
            print("%-26s %9.2f %9.1f %9.2f %12.2f %7.1f%% %7.1f MiB" %
                  (name, secs, size / 1e6 / secs, cpu, written / 1e6, 100.0 * written / size, rss / 1024))
        cas_t = results["casync make (zstd)"][0]
        ratio = results["ihop compress (brotli 6)"][3] / size
        for name in ("ihop compress (zstd)", "ihop compress (brotli 6)"):
            t = results[name][0]
            print("target: %s faster than casync make (its default, zstd): %s (%.2fx)" %
                  (name, "yes" if t < cas_t else "NO", cas_t / t))
        print("target: brotli-6 archive <= ~11%% of the image (bita's): %s (%.1f%%)" %
              ("yes" if ratio <= 0.11 else "NO", 100 * ratio))
        return 0
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
