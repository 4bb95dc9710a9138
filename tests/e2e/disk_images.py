# SPDX-License-Identifier: MIT
"""Disk images the design names, built on the host from trees of files:
file systems (ext4, squashfs, vfat) and a whole disk with a GPT holding
one of each at offsets that fall on no chunk or 4 KiB boundary.

Used by test_disk_images.py (read through FUSE, loop and NBD on this host)
and test_kernel_nbd.py (read through the kernel's NBD driver in a VM)."""

import hashlib
import shutil
import subprocess
from pathlib import Path

import pytest

from ihop_run import TIMEOUT, run

SECTOR = 512
GPT_FILE_SYSTEMS = ("ext4", "squashfs", "vfat")  # partitions 1, 2, 3, in this order


def need(*tools):
    for t in tools:
        if not shutil.which(t):
            pytest.fail(f"{t} is missing (scripts/install-deps.sh installs it)")


def ok(r):
    assert r.returncode == 0, f"{r.args}: {r.stderr}"
    return r


def make_tree(root: Path, seed: bytes, names_ok_for_fat=False):
    """Files of many sizes (some chunk-sized, some tiny), nested directories."""
    root.mkdir(parents=True)
    rnd = hashlib.shake_256(seed)
    data = rnd.digest(3 << 20)
    (root / "boot").mkdir()
    (root / "boot" / "kernel.img").write_bytes(data[: (1 << 20) + 123])
    (root / "etc").mkdir()
    (root / "etc" / "release").write_text(f"release {seed.decode()}\n")
    (root / "opt").mkdir()
    (root / "opt" / "app.bin").write_bytes(data[1 << 20:] + bytes(300_000))
    (root / "opt" / "empty").write_bytes(b"")
    (root / "opt" / "lines.txt").write_text("".join(f"{i}\n" for i in range(20_000)))
    if not names_ok_for_fat:
        (root / "opt" / "link").symlink_to("app.bin")


def mkfs_ext4(image: Path, src: Path, size_mib: int):
    ok(run(["mke2fs", "-q", "-F", "-t", "ext4", "-b", "4096", "-d", src, image, f"{size_mib}M"],
           timeout=TIMEOUT))


def mkfs_squashfs(image: Path, src: Path, *options):
    ok(run(["mksquashfs", src, image, "-noappend", "-all-root", "-quiet", "-no-progress", *options],
           timeout=TIMEOUT))


def mkfs_vfat(image: Path, src: Path, size_kib: int):
    ok(run(["mkfs.vfat", "-C", image, str(size_kib)], timeout=TIMEOUT))
    for p in sorted(src.iterdir()):
        ok(run(["mcopy", "-s", "-i", image, p, "::/"], timeout=TIMEOUT))


def write_at(disk: Path, offset: int, part: Path):
    with open(disk, "r+b") as d, open(part, "rb") as p:
        d.seek(offset)
        shutil.copyfileobj(p, d)


def sectors(path: Path) -> int:
    return -(-path.stat().st_size // SECTOR)


def make_gpt_disk(d: Path):
    """d/disk.img: GPT, ext4 / squashfs / vfat at odd sectors, its size no
    multiple of 4 KiB; returns (disk, {file system: the tree it holds})."""
    need("sfdisk", "mkfs.vfat", "mcopy", "mksquashfs", "mke2fs")
    trees = {}
    for name in GPT_FILE_SYSTEMS:
        trees[name] = d / f"tree-{name}"
        make_tree(trees[name], name.encode(), names_ok_for_fat=name == "vfat")
    mkfs_ext4(d / "p1.img", trees["ext4"], 12)
    mkfs_squashfs(d / "p2.img", trees["squashfs"])
    mkfs_vfat(d / "p3.img", trees["vfat"], 8192)
    # Starts on odd sectors: no partition begins on a 4 KiB (or chunk) boundary.
    starts, sizes, at = [], [], 2051
    for p in ("p1", "p2", "p3"):
        starts.append(at)
        sizes.append(sectors(d / f"{p}.img"))
        at += sizes[-1] + 13
        at += at % 8 == 0  # never on a 4 KiB boundary
    total = (at + 40) * SECTOR + 3 * SECTOR  # backup GPT after the last; not a 4 KiB multiple
    disk = d / "disk.img"
    with open(disk, "wb") as f:
        f.truncate(total)
    script = "label: gpt\n" + "".join(f"start={s}, size={n}, type=L\n" for s, n in zip(starts, sizes))
    ok(subprocess.run(["sfdisk", "-q", "--no-reread", "--no-tell-kernel", str(disk)], input=script, text=True,
                      capture_output=True, timeout=TIMEOUT))
    for p, s in zip(("p1", "p2", "p3"), starts):
        write_at(disk, s * SECTOR, d / f"{p}.img")
        (d / f"{p}.img").unlink()
    assert total % 4096 != 0 and all(s * SECTOR % 4096 for s in starts)
    return disk, trees
