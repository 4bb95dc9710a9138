# SPDX-License-Identifier: MIT
"""Every image the design names, read on this host (the kernel-NBD side is
in the qemu tests):

- A whole disk with a GPT holding ext4, squashfs and vfat partitions at
  offsets that fall on no chunk or 4 KiB boundary: `ihop serve` gives
  nbdinfo its size and nbdcopy the disk byte for byte, and the partition
  table read through NBD is the source's; the release mounted
  through FUSE and attached with `losetup -P -r` (partx -a, since this
  host's losetup does not scan at attach) shows the three partitions:
  ext4 and squashfs mount read-only with every file intact, the vfat one
  (this host's kernel has no vfat) is read file by file with mtools from
  its partition device.
- A disk with an MBR whose last partition runs to the image's end, in the
  middle of its last, partial 4 KiB block: read through FUSE and loop.
- A squashfs root file system as a release: FUSE + loop, every file.
- nbdfuse (libnbd) exposes a served release as a file that loop-mounts."""

import json
import os
import subprocess
import time
from pathlib import Path

import pytest

from disk_images import SECTOR, make_gpt_disk, make_tree, mkfs_squashfs, need, ok, sectors, write_at
from ihop_run import IHOP, TIMEOUT, ihop, run
from test_fuse_mount import STEP, fuse_mount, mounted_at, tree, umount  # noqa: F401


@pytest.fixture(scope="module")
def gpt_disk(tmp_path_factory):
    """disk.img: GPT, ext4 / squashfs / vfat at odd sectors, and the trees they hold."""
    return make_gpt_disk(tmp_path_factory.mktemp("gpt"))


@pytest.fixture(scope="module")
def gpt_release(gpt_disk, tmp_path_factory):
    disk, _ = gpt_disk
    d = tmp_path_factory.mktemp("gpt-release")
    ok(ihop("compress", "-i", disk, d / "disk.cba"))
    ok(ihop("clone", d / "disk.cba", d / "store" / "disk"))
    return d / "store" / "disk"


def sfdisk_json(path) -> dict:
    return json.loads(ok(run(["sfdisk", "-J", str(path)], timeout=TIMEOUT)).stdout)["partitiontable"]


def test_serve_gives_nbdcopy_the_disk_and_its_partition_table(gpt_disk, gpt_release, tmp_path):
    disk, _ = gpt_disk
    sock = tmp_path / "s.sock"
    p = subprocess.Popen([IHOP, "serve", "--unix", str(sock), str(gpt_release)], stdin=subprocess.DEVNULL,
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + STEP
        while not sock.exists() and time.monotonic() < deadline and p.poll() is None:
            time.sleep(0.02)
        uri = f"nbd+unix:///disk?socket={sock}"
        info = json.loads(ok(run(["nbdinfo", "--json", uri], timeout=TIMEOUT)).stdout)
        assert info["exports"][0]["export-size"] == disk.stat().st_size
        ok(run(["nbdcopy", uri, tmp_path / "copy.img"], timeout=TIMEOUT))
    finally:
        p.terminate()
        p.wait(STEP)
    assert (tmp_path / "copy.img").read_bytes() == disk.read_bytes()
    src, served = sfdisk_json(disk), sfdisk_json(tmp_path / "copy.img")
    served["device"] = src["device"]
    for a, b in zip(src["partitions"], served["partitions"]):
        b["node"] = a["node"]
    assert served == src and len(src["partitions"]) == 3


class Loop:
    """losetup -r -f --show FILE, partitions added with partx -a."""

    def __init__(self, file: Path):
        self.dev = ok(run(["losetup", "-r", "-f", "--show", str(file)], timeout=STEP)).stdout.strip()
        ok(run(["partx", "-a", self.dev], timeout=STEP))

    def part(self, n) -> str:
        path = f"{self.dev}p{n}"
        deadline = time.monotonic() + STEP
        while not os.path.exists(path) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert os.path.exists(path), f"{path} did not appear"
        return path

    def detach(self):
        run(["partx", "-d", self.dev], timeout=STEP)
        for _ in range(50):
            if run(["losetup", "-d", self.dev], timeout=STEP).returncode == 0:
                return
            time.sleep(0.1)


def mounted_tree(dev: str, fstype: str, where: Path) -> dict:
    where.mkdir()
    ok(run(["mount", "-t", fstype, "-o", "ro", dev, where], timeout=STEP))
    try:
        return tree(where)
    finally:
        umount(str(where))


def vfat_tree(dev: str, src: Path) -> dict:
    """Every file of the source tree, read back with mtools from the partition."""
    out = {}
    for p in sorted(src.rglob("*")):
        rel = p.relative_to(src)
        if p.is_file():
            r = subprocess.run(["mcopy", "-n", "-i", dev, f"::/{rel}", "-"], capture_output=True, timeout=TIMEOUT)
            assert r.returncode == 0, r.stderr
            out[str(rel)] = r.stdout
    return out


def test_fuse_and_loop_show_the_partitions_and_every_file(gpt_disk, gpt_release, tmp_path, fuse_mount):
    disk, trees = gpt_disk
    m = fuse_mount(gpt_release, tmp_path / "disk.file", disk.stat().st_size)
    loop = Loop(m.target)
    try:
        assert mounted_tree(loop.part(1), "ext4", tmp_path / "p1") == {
            **tree(trees["ext4"]), "lost+found": ("d", None)}
        assert mounted_tree(loop.part(2), "squashfs", tmp_path / "p2") == tree(trees["squashfs"])
        want = {k: v[1] for k, v in tree(trees["vfat"]).items() if v[0] == "f"}
        assert vfat_tree(loop.part(3), trees["vfat"]) == want
    finally:
        loop.detach()
    assert m.unmount() == 0


def test_a_partition_ending_in_the_last_partial_block_reads_whole(tmp_path, fuse_mount):
    """MBR, no backup table at the end: partition 2 runs to the image's last
    byte, 1536 bytes into a 4 KiB block the image does not fill."""
    need("sfdisk", "mksquashfs")
    src = tmp_path / "tree"
    make_tree(src, b"tail")
    mkfs_squashfs(tmp_path / "p2.img", src)
    p2 = sectors(tmp_path / "p2.img")
    p2_sectors = -(-p2 // 8) * 8
    start = 4099  # 3 sectors past a 4 KiB boundary: so is the image's end
    total = (start + p2_sectors) * SECTOR
    disk = tmp_path / "tail.img"
    with open(disk, "wb") as f:
        f.truncate(total)
    script = f"label: dos\nstart=2048, size={start - 2048 - 1}, type=83\nstart={start}, size={p2_sectors}, type=83\n"
    ok(subprocess.run(["sfdisk", "-q", "--no-reread", "--no-tell-kernel", str(disk)], input=script, text=True,
                      capture_output=True, timeout=TIMEOUT))
    write_at(disk, start * SECTOR, tmp_path / "p2.img")
    assert total % 4096 == 1536
    ok(ihop("compress", "-i", disk, tmp_path / "tail.cba"))
    ok(ihop("clone", tmp_path / "tail.cba", tmp_path / "store" / "tail"))
    m = fuse_mount(tmp_path / "store" / "tail", tmp_path / "tail.file", total)
    loop = Loop(m.target)
    try:
        part = loop.part(2)
        with open(part, "rb") as f:
            data = f.read()
        assert len(data) == p2_sectors * SECTOR
        assert data == disk.read_bytes()[start * SECTOR:]
        assert mounted_tree(part, "squashfs", tmp_path / "mnt") == tree(src)
    finally:
        loop.detach()
    assert m.unmount() == 0


def test_a_squashfs_root_file_system_as_a_release(tmp_path, fuse_mount):
    need("mksquashfs")
    src = tmp_path / "rootfs"
    make_tree(src, b"squash")
    mkfs_squashfs(tmp_path / "root.sqfs", src)
    ok(ihop("compress", "-i", tmp_path / "root.sqfs", tmp_path / "root.cba"))
    ok(ihop("clone", tmp_path / "root.cba", tmp_path / "store" / "root"))
    m = fuse_mount(tmp_path / "store" / "root", tmp_path / "root.file", (tmp_path / "root.sqfs").stat().st_size)
    (tmp_path / "mnt").mkdir()
    ok(run(["mount", "-t", "squashfs", "-o", "loop,ro", m.target, tmp_path / "mnt"], timeout=STEP))
    try:
        assert tree(tmp_path / "mnt") == tree(src)
    finally:
        umount(str(tmp_path / "mnt"))
    assert m.unmount() == 0


def test_nbdfuse_exposes_a_served_release_that_loop_mounts(tmp_path):
    need("nbdfuse", "mksquashfs")
    src = tmp_path / "rootfs"
    make_tree(src, b"nbdfuse")
    mkfs_squashfs(tmp_path / "root.sqfs", src)
    ok(ihop("compress", "-i", tmp_path / "root.sqfs", tmp_path / "root.cba"))
    ok(ihop("clone", tmp_path / "root.cba", tmp_path / "store" / "root"))
    sock = tmp_path / "s.sock"
    serve = subprocess.Popen([IHOP, "serve", "--unix", str(sock), str(tmp_path / "store" / "root")],
                             stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    fuse_dir = tmp_path / "nbd"
    fuse_dir.mkdir()
    nbdfuse = None
    try:
        deadline = time.monotonic() + STEP
        while not sock.exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        nbdfuse = subprocess.Popen(["nbdfuse", "-r", str(fuse_dir), f"nbd+unix:///root?socket={sock}"],
                                   stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        file = fuse_dir / "nbd"
        deadline = time.monotonic() + STEP
        while not (mounted_at(fuse_dir) and file.exists()) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert file.stat().st_size == (tmp_path / "root.sqfs").stat().st_size
        (tmp_path / "mnt").mkdir()
        ok(run(["mount", "-t", "squashfs", "-o", "loop,ro", file, tmp_path / "mnt"], timeout=STEP))
        try:
            assert tree(tmp_path / "mnt") == tree(src)
        finally:
            umount(str(tmp_path / "mnt"))
    finally:
        if mounted_at(fuse_dir):
            umount(str(fuse_dir))
        if nbdfuse is not None:
            try:
                nbdfuse.wait(STEP)
            except subprocess.TimeoutExpired:
                nbdfuse.kill()
                nbdfuse.wait(STEP)
        serve.terminate()
        serve.wait(STEP)
