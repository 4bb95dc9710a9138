#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Two ihop binaries, A and B, on the same work, taking turns: is B slower?

    bench/ab-bench.py [--runs N] [--image IMG] A/ihop B/ihop

For each job, N runs of A and N of B, alternating (A B A B ...), so that
whatever else the machine does falls on both alike; reported: the median
wall time, CPU time (user + system) and peak RSS of each, and B's ratio to
A. The jobs, on the clone benchmark's image (bench/work/v1.ext4, built by
bench/clone-bench.py) or IMG:

  compress   ihop compress -f IMG OUT.cba (bita's defaults)
  clone      ihop clone OUT.cba into an empty store (from the file)
  reclone    the same clone into a store that holds every chunk (checks only)
  verify     ihop verify of the cloned release (every chunk hashed)
  cat        ihop cat of it to a file

Each binary compresses with its own code, and the clones read the archive
that A made, so both clone the same bytes. The page cache is warm: the
figures compare the code, not the disk.
"""

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def timed(cmd):
    """(wall s, cpu s, peak RSS KiB) of one run of cmd, which must succeed."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.monotonic()
    p = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    wall = time.monotonic() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if p.returncode != 0:
        raise SystemExit("%s failed: %s" % (" ".join(cmd), p.stderr.strip()))
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    # ru_maxrss of the children is the largest of any so far: measure each
    # run in its own process tree with /usr/bin/time instead.
    return wall, cpu


def peak_rss_kib(cmd):
    out = subprocess.run(["/usr/bin/time", "-f", "%M", *cmd], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                         text=True)
    if out.returncode != 0:
        raise SystemExit("%s failed: %s" % (" ".join(cmd), out.stderr.strip()))
    return int(out.stderr.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("a")
    ap.add_argument("b")
    ap.add_argument("--image", default=os.path.join(HERE, "work", "v1.ext4"))
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    if not os.path.exists(args.image):
        raise SystemExit("%s is missing: run bench/clone-bench.py first (it builds it)" % args.image)
    if not os.path.exists("/usr/bin/time"):
        raise SystemExit("/usr/bin/time is missing (apt-get install time)")
    bins = {"A": os.path.abspath(args.a), "B": os.path.abspath(args.b)}
    work = tempfile.mkdtemp(prefix="ab-bench.")
    try:
        cba = os.path.join(work, "a.cba")
        subprocess.run([bins["A"], "-q", "compress", "-i", args.image, cba], check=True, stdout=subprocess.DEVNULL)
        full = os.path.join(work, "full")
        subprocess.run([bins["A"], "-q", "clone", cba, full + "/rel"], check=True, stdout=subprocess.DEVNULL)

        def jobs(binary, tag):
            out = os.path.join(work, "out-" + tag)
            store = os.path.join(work, "store-" + tag)
            return {
                "compress": ([binary, "-q", "compress", "-f", "-i", args.image, out + ".cba"], None),
                "clone": ([binary, "-q", "clone", cba, store + "/rel"], lambda: shutil.rmtree(store)),
                "reclone": ([binary, "-q", "clone", "-f", cba, full + "/rel"], None),
                "verify": ([binary, "-q", "verify", full + "/rel"], None),
                "cat": ([binary, "cat", full + "/rel", "-o", out + ".img"], None),
            }

        names = list(jobs(bins["A"], "A"))
        results = {n: {"A": [], "B": []} for n in names}
        rss = {n: {} for n in names}
        for r in range(args.runs):
            for tag in ("A", "B") if r % 2 == 0 else ("B", "A"):
                for name, (cmd, after) in jobs(bins[tag], tag).items():
                    results[name][tag].append(timed(cmd))
                    if after:
                        after()
        for tag in ("A", "B"):
            for name, (cmd, after) in jobs(bins[tag], tag).items():
                rss[name][tag] = peak_rss_kib(cmd)
                if after:
                    after()

        print("A: %s\nB: %s\nimage: %s (%d MiB), %d runs each, alternating\n" %
              (bins["A"], bins["B"], args.image, os.path.getsize(args.image) >> 20, args.runs))
        print("%-9s %10s %10s %7s %10s %10s %7s %9s %9s" %
              ("job", "wall A s", "wall B s", "B/A", "cpu A s", "cpu B s", "B/A", "RSS A", "RSS B"))
        for name in names:
            wa = statistics.median(w for w, _ in results[name]["A"])
            wb = statistics.median(w for w, _ in results[name]["B"])
            ca = statistics.median(c for _, c in results[name]["A"])
            cb = statistics.median(c for _, c in results[name]["B"])
            print("%-9s %10.3f %10.3f %6.2fx %10.3f %10.3f %6.2fx %7.1fM %7.1fM" %
                  (name, wa, wb, wb / wa, ca, cb, cb / ca, rss[name]["A"] / 1024, rss[name]["B"] / 1024))
        print("\n(medians; B/A above 1 means B is slower)")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
