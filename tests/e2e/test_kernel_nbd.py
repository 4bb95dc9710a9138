# SPDX-License-Identifier: MIT
"""'ihop mount STORE/NAME /dev/nbdN' against a real kernel NBD driver.

The host may have no NBD (and no KVM), so the test boots Debian's own kernel
in qemu under TCG with an initramfs holding ihop, its libraries, busybox, the
nbd, ext4, squashfs and vfat modules and a store: v1 cloned from
tests/fixtures/pair/v1.ext4.cba, and the releases disk (a GPT disk) and
squashfs compressed here (see tests/qemu/nbdvm.py and tests/qemu/init.sh).
One boot runs every phase, one after the other on /dev/nbd0:

  nomod  ihop mount before nbd.ko is loaded: a clear error; and on a
         partition's node (nbd0p1), refused rather than taken for nbd0
  a      defaults (block size 512, 4 connections, netlink); a second mount on
         the busy device fails clearly and harms nothing; SIGTERM disconnects
         and ihop exits 0
  b      --block-size 4096 --connections 1 --verify; the device is disconnected
         from outside (ioctl NBD_DISCONNECT): ihop notices and exits 0
  c      --detach --pid-file --connections 16: the device is attached when the
         command returns; SIGINT to the daemon disconnects
  d      the ioctl interface (IHOP_NBD_INTERFACE=ioctl: NBD_SET_SOCK and
         NBD_DO_IT), the fallback for kernels without the netlink family;
         SIGTERM disconnects and ihop exits 0
  many   releases of 2,048, 6,144 and 32,768 unique chunks (512-byte
         chunks of random data), each mounted --root-storage -v under
         'ulimit -n 1024', as an initramfs starts it: more chunk files than
         that limit; ihop, root, raises it to keep them open (the two larger
         ones only in part: they are above one file per 128 KiB of the
         guest's memory); the whole device is read; disconnected from
         outside
  gpt    a whole disk with a GPT (tests/e2e/disk_images.py): ext4, squashfs
         and vfat partitions starting on odd sectors, the disk's size no
         multiple of 4 KiB; --detach: nbd0p1..3 are there when it returns
         (ihop has the kernel read the partition table, as nbd-client does;
         without udev nobody else would), each partition reads as its part
         of the image and mounts read-only with every file, symlink and
         directory of its source tree; SIGINT disconnects
  sq     a squashfs root file system as the whole release (made without
         padding: it ends inside a 4 KiB block), --block-size 4096: the
         device is the image padded with zeros, no partitions of the GPT
         disk before it linger, it mounts with every entry of its tree
  od     --source: v1 not in the store (an empty one on the guest's tmpfs),
         its chunks fetched as the kernel reads them from v1.ext4.cba on the
         virtual disk (a path: the guest has no network); the ext4 mounted
         with every file read first, then the whole device: the release
         then is an ordinary one of that store ('ihop verify' passes);
         SIGTERM disconnects and ihop exits 0
  odf    --source --fill --detach into another empty store: the release
         completes without a read, the device reads as the image; SIGINT
  ods    --source http://127.0.0.1:8080/stalls.cba from tests/qemu/range-server
         in the guest (on its loopback), an archive of random 256 KiB chunks
         made here: when the server drips, goes silent or stalls half way,
         an O_DIRECT read of a chunk not fetched yet ends in EIO within the
         bound of --http-timeout 1 --http-retry-count 0 --http-retry-delay 0
         (3 s), said in one line, and ihop stays up; once the server
         recovers the read returns the image's bytes; SIGTERM while a read
         is stuck on the dripping server ends ihop within 2 s, status 0,
         the read failed, the device disconnected, no release, no temp file
  odsd   the same stop, --detach with the HTTP defaults (a read would wait
         132 s), the server silent

The guest only reports (SHA-256 -- busybox has no b2sum -- of the whole
device and of every file of the mounted file systems, sizes, partitions,
exit codes, what the kernel logged); the expected values are computed here
on the host independently: the image with 'ihop cat', the files of v1 with
debugfs (e2fsprogs) 'rdump' of that image, those of the GPT disk and the
squashfs image from the trees they were made of, the partition table with
'sfdisk -J' of the disk image. Any NBD error in the kernel log fails, except
the kernel's own recv workqueue stall, recognised from the guest's
diagnostics (see test_kernel_saw_no_nbd_errors), and in ods, whose reads
are meant to fail, the errors of those reads (the guest logs them apart).

The kernel package is downloaded once into a cache (see nbdvm.py); the boot
then takes about 2.5 minutes here (TCG, one vCPU), most of it in 'many',
about 5 s in gpt and sq, 14 s in od and odf, about 15 s in ods and odsd. The test is skipped only when
no VM can be booted here at all (no qemu, no kernel to be had); set
IHOP_REQUIRE_KERNEL_TEST=1 to make that a failure instead.
"""

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "qemu"))
import nbdvm  # noqa: E402
from bita_archive import parse_archive  # noqa: E402
from disk_images import GPT_FILE_SYSTEMS, make_gpt_disk, make_tree, mkfs_squashfs  # noqa: E402

IHOP = os.environ.get("IHOP", str(ROOT / "build" / "src" / "ihop"))
FIXTURE = ROOT / "tests" / "fixtures" / "pair" / "v1.ext4.cba"
VM_TIMEOUT = 480  # seconds for the whole boot (about 150 here when the host is idle, 300 when busy)
TIMEOUT = 120  # seconds for every host command

# What the kernel logs when a server breaks the protocol or fails a request.
PROTOCOL_ERRORS = re.compile(r"Wrong magic|Double reply|Suspicious reply|Unexpected reply|Unexpected request|"
                             r"Receive data failed|Receive control failed|Other side returned error|"
                             r"Send control failed|Send data failed|I/O error|Connection timed out")

# phase -> (NBD block size, connections, whether the guest mounts the ext4)
PHASES = {"a": (512, 4, True), "b": (4096, 1, True), "c": (512, 16, False), "d": (512, 1, True),
          "od": (512, 4, True)}
# release -> unique chunks of 512 bytes, for the 'many' phase
MANY = {"r2k": 2048, "r6k": 6144, "r32k": 32768}
# ods: the server's behaviour -> the 4 KiB block read (chunk k of 256 KiB:
# blocks 64k..), what the fetch's one error line says; and the bound on a
# read of --http-timeout 1 --http-retry-count 0 --http-retry-delay 0
ODS_READS = {"drip": 320, "silent": 576, "stall": 832}
ODS_SAID = {"drip": "less than 1024 bytes a second", "silent": "no data for 1 s", "stall": "no data for 1 s"}
ODS_BOUND_MS = (0 + 1) * (1 + 0 + 2) * 1000
ODS_CHUNK = 256 << 10


def sha256_file(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def padded_sha256(path, block_size) -> str:
    """A device holding the image at path: the image, then zeros up to a whole block."""
    size = Path(path).stat().st_size
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    h.update(bytes(-size % block_size))
    return h.hexdigest()


def tree_entries(root: Path) -> dict:
    """Every entry under root as the guest reports it: './path' -> the
    SHA-256 of a file, 'symlink:TARGET' or 'dir'."""
    entries = {}
    for p in sorted(root.rglob("*")):
        key = "./" + str(p.relative_to(root))
        if p.is_symlink():
            entries[key] = "symlink:" + os.readlink(p)
        elif p.is_dir():
            entries[key] = "dir"
        else:
            entries[key] = sha256_file(p)
    return entries


def run(*args, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([str(a) for a in args], capture_output=True, timeout=TIMEOUT,
                          stdin=subprocess.DEVNULL, **kw)


def add_release(image: Path, release: Path):
    """ihop compress image into an archive, cloned as release."""
    archive = image.with_suffix(".cba")
    r = run(IHOP, "compress", "-i", image, archive)
    assert r.returncode == 0, f"ihop compress failed: {r.stderr.decode(errors='replace')}"
    r = run(IHOP, "clone", archive, release)
    assert r.returncode == 0, f"ihop clone failed: {r.stderr.decode(errors='replace')}"
    archive.unlink()


def not_runnable(why: str):
    """No VM can be booted here: skip, loudly, or fail if CI demands the test."""
    msg = (f"KERNEL NBD TEST NOT RUN -- ihop mount on /dev/nbdN IS UNTESTED HERE: {why}")
    if os.environ.get("IHOP_REQUIRE_KERNEL_TEST") == "1":
        pytest.fail(msg + " (IHOP_REQUIRE_KERNEL_TEST=1)")
    pytest.skip(msg)


class Expected:
    """What the guest must see, computed on the host without ihop's NBD code."""

    def __init__(self, image: Path, rdump: Path):
        self.image_size = image.stat().st_size
        self.image = image
        self.files = {}
        for d, _, files in os.walk(rdump):
            for f in files:
                p = Path(d) / f
                if p.is_file() and not p.is_symlink():
                    self.files["./" + str(p.relative_to(rdump))] = sha256_file(p)
        self._device = {}

    def device_size(self, block_size) -> int:
        return -(-self.image_size // block_size) * block_size

    def device_sha256(self, block_size) -> str:
        """The device: the image, then zeros up to a whole block."""
        if block_size not in self._device:
            self._device[block_size] = padded_sha256(self.image, block_size)
        return self._device[block_size]


class ExpectedGpt:
    """The GPT disk: its partitions as sfdisk reads the image, each one's
    bytes, and the tree each file system was made of."""

    def __init__(self, disk: Path, trees: dict):
        self.size = disk.stat().st_size
        table = json.loads(run("sfdisk", "-J", disk, check=True).stdout)["partitiontable"]
        parts = sorted(table["partitions"], key=lambda p: p["start"])
        assert [p["node"] for p in parts] == [f"{disk}{n}" for n in (1, 2, 3)], parts
        # as /sys/block/nbd0/nbd0pN/{start,size} give them, in 512-byte sectors
        assert table["sectorsize"] == 512
        self.parts = " ".join(f"nbd0p{n}:{p['start']}:{p['size']}" for n, p in enumerate(parts, 1))
        self.part_sha256 = {}
        with open(disk, "rb") as f:
            for n, p in enumerate(parts, 1):
                f.seek(p["start"] * 512)
                data = f.read(p["size"] * 512)
                assert len(data) == p["size"] * 512
                self.part_sha256[n] = hashlib.sha256(data).hexdigest()
        self.entries = {fs: tree_entries(trees[fs]) for fs in GPT_FILE_SYSTEMS}
        self.entries["ext4"]["./lost+found"] = "dir"  # mke2fs makes it


class ExpectedImage:
    """A whole-image release (the squashfs one): its bytes and its tree."""

    def __init__(self, image: Path, tree: Path):
        self.size = image.stat().st_size
        self.image = image
        self.entries = tree_entries(tree)

    def device_size(self, block_size) -> int:
        return -(-self.size // block_size) * block_size


class Vm:
    def __init__(self, run: nbdvm.VmRun, expected: Expected, info: dict, kernel: nbdvm.Kernel):
        self.run, self.expected, self.info, self.kernel = run, expected, info, kernel

    def get(self, key) -> str:
        """One result of the guest; its absence fails with the console's tail."""
        if key not in self.run.results:
            state = "timed out" if self.run.timed_out else f"exited {self.run.returncode}"
            pytest.fail(f"the guest reported no {key!r} (qemu {state} after {self.run.seconds:.1f} s); "
                        f"console:\n{self.run.console_tail()}")
        return self.run.results[key]

    def log(self, phase) -> str:
        """ihop's own messages in that phase, from the console."""
        return "\n".join(l for l in self.run.console.splitlines() if l.startswith(f"[{phase}] "))


@pytest.fixture(scope="module")
def vm(tmp_path_factory):
    try:
        nbdvm.find_qemu()
        nbdvm.find_busybox()
        kernel = nbdvm.ensure_kernel()
    except nbdvm.Unavailable as e:
        not_runnable(str(e))
    assert os.access(IHOP, os.X_OK), f"no ihop binary at {IHOP} (env IHOP)"
    assert shutil.which("debugfs"), "debugfs (e2fsprogs) is needed to read the image's files"

    work = tmp_path_factory.mktemp("kernel-nbd")
    store = work / "store"
    r = run(IHOP, "clone", FIXTURE, store / "v1")
    assert r.returncode == 0, f"ihop clone failed: {r.stderr.decode(errors='replace')}"
    image = work / "v1.img"
    with open(image, "wb") as f:
        r = subprocess.run([IHOP, "cat", str(store / "v1")], stdout=f, stderr=subprocess.PIPE,
                           stdin=subprocess.DEVNULL, timeout=TIMEOUT)
    assert r.returncode == 0, f"ihop cat failed: {r.stderr.decode(errors='replace')}"
    rdump = work / "rdump"
    rdump.mkdir()
    r = run("debugfs", "-R", f"rdump / {rdump}", image)
    assert r.returncode == 0, f"debugfs rdump failed: {r.stderr.decode(errors='replace')}"
    expected = Expected(image, rdump)
    assert len(expected.files) > 100, "debugfs found too few files in the image"
    many = {}
    disk_store = work / "disk" / "store"
    for name, chunks in MANY.items():
        data = os.urandom(chunks * 512)
        (work / f"{name}.img").write_bytes(data)
        many[name] = hashlib.sha256(data).hexdigest()
        r = run(IHOP, "compress", "--fixed-size", "512", "--compression", "none", "-i", work / f"{name}.img",
                work / f"{name}.cba")
        assert r.returncode == 0, r.stderr.decode(errors="replace")
        r = run(IHOP, "clone", work / f"{name}.cba", disk_store / name)
        assert r.returncode == 0, r.stderr.decode(errors="replace")
        (work / f"{name}.img").unlink()
        (work / f"{name}.cba").unlink()
    expected.many = many

    # gpt: the disk of tests/e2e/disk_images.py
    (work / "gpt").mkdir()
    gpt, trees = make_gpt_disk(work / "gpt")
    add_release(gpt, store / "disk")
    expected.gpt = ExpectedGpt(gpt, trees)
    # sq: a squashfs image ending inside a 4 KiB block (-nopad), made the
    # same on every run (fixed times) so that it always does
    make_tree(work / "sq-tree", b"squashfs-root")
    sq = work / "squashfs.img"
    mkfs_squashfs(sq, work / "sq-tree", "-nopad", "-all-time", "0", "-mkfs-time", "0")
    assert sq.stat().st_size % 4096 != 0, "the squashfs image fills its last 4 KiB block"
    add_release(sq, store / "squashfs")
    expected.sq = ExpectedImage(sq, work / "sq-tree")
    # od, odf: the archive itself, for --source in the guest
    shutil.copyfile(FIXTURE, work / "disk" / "v1.cba")
    # ods: random data in 256 KiB chunks, uncompressed: a read's fetch is
    # its chunk alone, and half of it is what the stalling server sends
    stalls = os.urandom(16 * ODS_CHUNK)
    (work / "stalls.img").write_bytes(stalls)
    r = run(IHOP, "compress", "--fixed-size", "256KiB", "--compression", "none", "-i", work / "stalls.img",
            work / "disk" / "stalls.cba")
    assert r.returncode == 0, r.stderr.decode(errors="replace")
    expected.stalls = stalls
    expected.stalls_archive = parse_archive(work / "disk" / "stalls.cba")
    disk = work / "disk.img"
    nbdvm.make_disk(disk, work / "disk")
    shutil.rmtree(work / "disk")

    initrd = work / "initramfs.cpio"
    info = nbdvm.build_initramfs(initrd, IHOP, store, kernel, work)
    vm_run = nbdvm.run_vm(kernel, initrd, work, timeout=VM_TIMEOUT, disk=disk)
    (work / "console.txt").write_text(vm_run.console)
    print(f"\nkernel NBD VM: kernel {kernel.release}, {vm_run.seconds:.1f} s, "
          f"initramfs {info['bytes'] >> 20} MiB, console in {work / 'console.txt'}")
    return Vm(vm_run, expected, info, kernel)


def test_vm_ran_to_the_end(vm):
    assert not vm.run.timed_out, f"qemu ran past {VM_TIMEOUT} s; console:\n{vm.run.console_tail()}"
    assert vm.get("boot") == "1"
    assert vm.get("kernel") == vm.kernel.release
    assert vm.get("done") == "1"
    assert vm.run.returncode == 0, vm.run.console_tail()


def test_modules_load(vm):
    for m in vm.info["modules"]:
        assert vm.get(f"insmod.{m}") == "0", f"insmod {m} failed"


def test_without_nbd_module_a_clear_error(vm):
    assert vm.get("nomod.rc") == "1"
    msg = vm.get("nomod.msg")
    assert msg.startswith("ihop: error: /dev/nbd0 does not exist"), msg
    assert "no NBD support" in msg, msg


def test_partition_node_is_not_the_whole_device(vm):
    assert vm.get("part.rc") == "1"
    assert vm.get("part.msg") == "ihop: error: /tmp/nbd0p1 is not an NBD device (/dev/nbdN)"


@pytest.mark.parametrize("phase", PHASES)
def test_device_attached_read_only_with_its_size(vm, phase):
    block_size, connections, _ = PHASES[phase]
    if phase != "c":
        assert vm.get(f"{phase}.alive") == "1", f"ihop died:\n{vm.log(phase)}"
    size = vm.expected.device_size(block_size)
    assert int(vm.get(f"{phase}.size")) == size // 512, "size in 512-byte sectors"
    if phase != "c":
        assert vm.get(f"{phase}.ro") == "1"
        assert vm.get(f"{phase}.lbs") == str(block_size)
        interface = "ioctl" if phase == "d" else "netlink"
        assert vm.get(f"{phase}.mounted") == (
            f"ihop: release mounted on /dev/nbd0 ({size} bytes, block size {block_size}, "
            f"{connections} connection{'s' if connections > 1 else ''}, {interface})"), vm.log(phase)


@pytest.mark.parametrize("phase", PHASES)
def test_device_reads_as_the_image(vm, phase):
    block_size = PHASES[phase][0]
    assert vm.get(f"{phase}.dev") == vm.expected.device_sha256(block_size), \
        f"/dev/nbd0 differs from 'ihop cat' (block size {block_size})"


@pytest.mark.parametrize("phase", [p for p, (_, _, mounts) in PHASES.items() if mounts])
def test_ext4_mounts_and_files_match_debugfs(vm, phase):
    assert vm.get(f"{phase}.mount").split(" ", 1)[0] == "0", vm.get(f"{phase}.mount")
    got = vm.run.files.get(phase, {})
    assert int(vm.get(f"{phase}.files")) == len(got), "FILE lines went missing"
    want = vm.expected.files
    missing = sorted(set(want) - set(got))
    extra = sorted(set(got) - set(want))
    wrong = sorted(p for p in set(got) & set(want) if got[p] != want[p])
    assert not (missing or extra or wrong), \
        f"missing {missing[:10]}, unexpected {extra[:10]}, different content {wrong[:10]}"
    assert vm.get(f"{phase}.umount") == "0"


def test_second_mount_on_busy_device_fails_clearly(vm):
    assert vm.get("a.busy.rc") == "1"
    msg = vm.get("a.busy.msg")
    assert msg == "ihop: error: /dev/nbd0 is busy (already connected)", msg
    # The first attach went on serving: the device and files read right
    # after the attempt (test_device_reads_as_the_image[a]).


def test_sigterm_disconnects_and_exits_0(vm):
    assert vm.get("a.exit") == "0", vm.log("a")
    assert vm.get("a.size_after") == "0", "the device is still attached after ihop ended"
    assert "disconnecting /dev/nbd0" in vm.log("a")


def test_disconnect_from_outside_ends_ihop(vm):
    if not vm.info["disconnect"]:
        pytest.skip("no C compiler to build tests/qemu/nbd-disconnect.c; SIGTERM was used instead")
    assert vm.get("b.disconnect") == "0"
    assert vm.get("b.exit") == "0", vm.log("b")
    assert vm.get("b.size_after") == "0"


def test_detach_returns_once_attached_and_sigint_disconnects(vm):
    assert vm.get("c.rc") == "0", vm.log("c")
    assert vm.get("c.pid").isdigit()
    assert vm.get("c.alive_after") == "0", "the daemon did not end on SIGINT"
    assert vm.get("c.size_after") == "0"


def test_ioctl_fallback_serves_and_disconnects(vm):
    assert vm.get("d.exit") == "0", vm.log("d")
    assert vm.get("d.size_after") == "0", "the device is still attached after ihop ended"
    assert "disconnecting /dev/nbd0" in vm.log("d")


def address_sanitized(binary) -> bool:
    return b"__asan_init" in Path(binary).read_bytes()


def test_root_storage_refuses_the_ioctl_interface(vm):
    """With the ioctl interface systemd's shutdown would take the device
    away from under the mounted root: --root-storage refuses it, in one
    line, before the device is attached."""
    assert vm.get("r.ioctl.rc") not in ("0", "137"), vm.log("r")
    assert "netlink" in vm.get("r.ioctl.msg")
    assert vm.get("r.ioctl.size") == "0"


def test_root_storage_is_a_root_storage_daemon(vm):
    """Started from an initramfs, --root-storage marks argv[0] with '@' (and
    leaves comm alone), locks itself in memory, is exempt from the OOM
    killer, gives the kernel a long timeout, outlives SIGTERM and SIGINT
    still serving the image, and ends once the device is disconnected."""
    assert vm.get("r.rc") == "0", vm.log("r")
    assert vm.get("r.pid").isdigit()
    assert vm.get("r.argv0").startswith("@"), vm.get("r.argv0")
    assert vm.get("r.comm") == "ihop"
    assert vm.get("r.oom") == "-1000"
    if address_sanitized(IHOP):
        # ASan's mlockall does nothing (its shadow memory cannot be locked)
        assert vm.get("r.vmlck_kib") == "0"
    else:
        assert int(vm.get("r.vmlck_kib")) > 0
        assert int(vm.get("r.vmlck_kib")) >= int(vm.get("r.rss_kib")) * 9 // 10
    assert vm.get("r.io_timeout_ms") == str(3600 * 1000)
    assert vm.get("r.alive_after_signals") == "1"
    assert vm.get("r.dev") == vm.expected.device_sha256(512), "/dev/nbd0 differs from 'ihop cat'"
    if vm.get("r.disconnect") != "none":
        assert vm.get("r.alive_after_disconnect") == "0"
    assert vm.get("r.size_after") == "0"


def test_virtual_disk_mounts(vm):
    assert vm.get("disk.mount") == "0"


# Descriptors ihop leaves to sockets and the rest, and the memory it takes
# per chunk file kept open at most (src/fd_cache.c).
FD_RESERVED = 256
RAM_PER_FILE_KIB = 128


@pytest.mark.parametrize("name", MANY)
def test_root_storage_raises_the_limit_of_an_initramfs_to_cover_the_chunk_files(vm, name):
    """A release of far more chunk files than a process of an initramfs may
    open (ulimit -n 1024), attached as the root storage daemon by root:
    ihop raises the limit (soft and hard) to keep them all open plus 256,
    or, for a release above what the guest's memory allows (one file per
    128 KiB of it: some 3,800 in a guest of 512 MiB), only that many; says
    so at debug level; and reads whole through /dev/nbd0."""
    chunks = MANY[name]
    most = min(65536, int(vm.get("many.memtotal_kib")) // RAM_PER_FILE_KIB)
    assert 2048 < most < 6144, "the premise: r2k fits the guest's memory, r6k and r32k are above it"
    kept = min(chunks, most)
    limit = kept + FD_RESERVED
    assert vm.get(f"many.{name}.alive") == "1", vm.log(f"many {name}")
    assert vm.get(f"many.{name}.dev") == vm.expected.many[name], \
        f"/dev/nbd0 differs from the {MANY[name]}-chunk image"
    assert vm.get(f"many.{name}.nofile") == f"{limit} {limit}", vm.log(f"many {name}")
    line = vm.get(f"many.{name}.limit_line")
    if kept == chunks:
        assert f"open-file limit raised from 1024 to {limit}: all {chunks} chunk files of the releases read " \
               f"stay open, {FD_RESERVED} descriptors are for the rest" in line, line
    else:
        assert f"open-file limit raised from 1024 to {limit}: {kept} of the {chunks} chunk files of the " \
               f"releases read stay open (no more: one per 128 KiB of memory, at most 65536), " \
               f"{FD_RESERVED} descriptors are for the rest" in line, line
    # the whole device read: every chunk file opened, the last `kept` still open
    assert kept < int(vm.get(f"many.{name}.fds")) <= limit
    assert vm.get(f"many.{name}.errors") == "0", vm.log(f"many {name}")
    if vm.get(f"many.{name}.disconnect") != "none":
        assert vm.get(f"many.{name}.disconnect") == "0"
        assert vm.get(f"many.{name}.exit") == "0", vm.log(f"many {name}")


def test_gpt_disk_partitions_appear(vm):
    """ihop mount --detach of a whole disk: when it returns, the kernel has
    read the GPT (nothing here opened the device before looking), and
    shows the partitions where sfdisk finds them in the image, with their
    device nodes."""
    assert vm.get("gpt.rc") == "0", vm.log("gpt")
    assert int(vm.get("gpt.size")) == vm.expected.gpt.size // 512, "size in 512-byte sectors"
    assert vm.get("gpt.parts") == vm.expected.gpt.parts, "the kernel found another partition table"
    assert vm.get("gpt.parts_at_return") == vm.expected.gpt.parts, \
        "the partitions were not there yet when 'ihop mount --detach' returned"
    for n in (1, 2, 3):
        assert vm.get(f"gpt.p{n}.node") == "1", f"/dev/nbd0p{n} is no block device"


@pytest.mark.parametrize("n", [1, 2, 3])
def test_gpt_partition_reads_as_its_part_of_the_image(vm, n):
    assert vm.get(f"gpt.p{n}.dev") == vm.expected.gpt.part_sha256[n], \
        f"/dev/nbd0p{n} differs from its sectors of the disk image"


@pytest.mark.parametrize("n,fs", list(enumerate(GPT_FILE_SYSTEMS, 1)))
def test_gpt_partitions_mount_and_files_match(vm, n, fs):
    phase = f"gpt.p{n}"
    assert vm.get(f"{phase}.mount").split(" ", 1)[0] == "0", f"mount -t {fs}: {vm.get(phase + '.mount')}"
    got = vm.run.files.get(phase, {})
    assert int(vm.get(f"{phase}.entries")) == len(got), "FILE lines went missing"
    assert_same_entries(got, vm.expected.gpt.entries[fs])
    assert vm.get(f"{phase}.umount") == "0"


def test_gpt_disk_sigint_disconnects(vm):
    assert vm.get("gpt.alive_after") == "0", "the daemon did not end on SIGINT"
    assert vm.get("gpt.size_after") == "0"


def test_squashfs_release_4096_blocks(vm):
    """A squashfs image as the whole release, on 4096-byte NBD blocks: the
    device is a whole number of blocks, the part of its last block past
    the image's end reads as zeros; the GPT disk's partitions of the phase
    before are gone."""
    assert vm.get("sq.alive") == "1", vm.log("sq")
    size = vm.expected.sq.device_size(4096)
    assert int(vm.get("sq.size")) == size // 512, "size in 512-byte sectors"
    assert vm.get("sq.ro") == "1"
    assert vm.get("sq.lbs") == "4096"
    assert vm.get("sq.mounted") == (
        f"ihop: release mounted on /dev/nbd0 ({size} bytes, block size 4096, 4 connections, netlink)"), vm.log("sq")
    assert vm.get("sq.parts") == "", "partitions on a device holding a squashfs image"
    assert vm.get("sq.dev") == padded_sha256(vm.expected.sq.image, 4096), \
        "/dev/nbd0 differs from the squashfs image padded to 4 KiB"


def test_squashfs_release_mounts_and_files_match(vm):
    assert vm.get("sq.mount").split(" ", 1)[0] == "0", vm.get("sq.mount")
    got = vm.run.files.get("sq", {})
    assert int(vm.get("sq.entries")) == len(got), "FILE lines went missing"
    assert_same_entries(got, vm.expected.sq.entries)
    assert vm.get("sq.umount") == "0"
    assert vm.get("sq.exit") == "0", vm.log("sq")
    assert vm.get("sq.size_after") == "0"


def test_on_demand_release_appears_once_the_whole_device_was_read(vm):
    """mount --source into an empty store: ready at once with no chunk in
    the store and no release, the kernel's timeout above the longest a
    read may wait for its chunk; the release appears once the files and then the
    whole device were read (each test_*[od] above checks what was read)
    and verifies; SIGTERM disconnects and ihop exits 0."""
    log = vm.log("od")
    assert "ihop: /tmp/od/v1: on demand from /disk/v1.cba: 0 of " in log, log
    assert vm.get("od.release_at_start") == "0", "a release before its chunks were read"
    # No --timeout given: the kernel waits 30 s more than a read may wait
    # for its chunk, (3 + 1) x (30 + 1 + 2) s with the HTTP defaults.
    assert vm.get("od.io_timeout_ms") == str((4 * 33 + 30) * 1000)
    assert vm.get("od.release") == "1", f"no release /tmp/od/v1 after the whole device was read:\n{log}"
    assert "/tmp/od/v1: every chunk is in the store: it is now an ordinary release" in log, log
    assert vm.get("od.exit") == "0", log
    assert vm.get("od.size_after") == "0", "the device is still attached after ihop ended"
    assert "disconnecting /dev/nbd0" in log
    assert vm.get("od.verify").startswith("0 /tmp/od/v1: OK "), vm.get("od.verify")


def test_on_demand_fill_completes_the_release_without_a_read(vm):
    """mount --source --fill --detach: attached when it returns; the fill
    fetches every chunk with nothing reading the device, the release
    appears and verifies, the device reads as the image; SIGINT ends the
    daemon."""
    log = vm.log("odf")
    assert vm.get("odf.rc") == "0", log
    assert int(vm.get("odf.size")) == vm.expected.device_size(512) // 512, "size in 512-byte sectors"
    assert vm.get("odf.pid").isdigit()
    assert "ihop: /tmp/odf/v1: on demand from /disk/v1.cba: 0 of " in log and "or filled" in log, log
    assert vm.get("odf.release") == "1", f"the fill did not complete the release in 60 s:\n{log}"
    assert "/tmp/odf/v1: every chunk is in the store: it is now an ordinary release" in log, log
    assert vm.get("odf.dev") == vm.expected.device_sha256(512), "/dev/nbd0 differs from 'ihop cat'"
    assert vm.get("odf.alive_after") == "0", "the daemon did not end on SIGINT"
    assert vm.get("odf.size_after") == "0"
    assert vm.get("odf.verify").startswith("0 /tmp/odf/v1: OK "), vm.get("odf.verify")


def ods_ran(vm, phase="ods"):
    if not vm.info.get("range_server"):
        pytest.skip("no C compiler to build tests/qemu/range-server.c: the ods phases did not run")
    if phase == "ods":
        assert vm.get("ods.alive") == "1", vm.log("ods")
    else:
        assert vm.get("odsd.rc") == "0", vm.log("odsd")


@pytest.mark.parametrize("mode", ODS_READS)
def test_on_demand_read_from_a_server_that_never_ends_fails_within_the_bound(vm, mode):
    """A read of /dev/nbd0 whose chunk the server drips, withholds or stalls
    half way ends in EIO within the bound, the fetch's failure said in one
    line; ihop stays up, and once the server recovers the same read returns
    the image's bytes."""
    ods_ran(vm)
    log = vm.log("ods")
    assert vm.get(f"ods.{mode}.rc") == "1", vm.get(f"ods.{mode}.msg")
    assert "Input/output error" in vm.get(f"ods.{mode}.msg")
    assert int(vm.get(f"ods.{mode}.ms")) <= ODS_BOUND_MS + 1500, f"the read took {vm.get(f'ods.{mode}.ms')} ms"
    assert vm.get(f"ods.{mode}.alive") == "1", log
    block = ODS_READS[mode]
    want = vm.expected.stalls[block * 4096:(block + 1) * 4096]
    assert vm.get(f"ods.{mode}.after") == hashlib.sha256(want).hexdigest(), "a wrong read after the recovery"
    at = vm.expected.stalls_archive.chunks[block * 4096 // ODS_CHUNK].archive_offset
    said = [l for l in log.splitlines() if "ihop: error:" in l and f"archive offset {at} " in l]
    assert len(said) == 1 and ODS_SAID[mode] in said[0], log
    # one error line for each of the three failing reads, none for the stop
    assert sum("ihop: error:" in l for l in log.splitlines()) == len(ODS_READS), log


@pytest.mark.parametrize("phase", ["ods", "odsd"])
def test_on_demand_sigterm_ends_ihop_within_2_s_while_a_read_is_stuck(vm, phase):
    """SIGTERM while a read waits on a dripping (ods) or silent (odsd, the
    HTTP defaults, --detach) server: ihop ends within 2 s, the stuck read
    fails, the device is disconnected; no release of the incomplete one,
    no temp file."""
    ods_ran(vm, phase)
    assert vm.get(f"{phase}.stuck_alive") == "1", "the read was not stuck when the signal came"
    assert int(vm.get(f"{phase}.stop_ms")) <= 2000, f"ihop took {vm.get(f'{phase}.stop_ms')} ms to end"
    assert vm.get(f"{phase}.alive_after") == "0"
    assert vm.get(f"{phase}.stuck_rc") == "1", "the stuck read did not fail"
    assert vm.get(f"{phase}.size_after") == "0", "the device is still attached after ihop ended"
    assert vm.get(f"{phase}.temps") == "0"
    assert "disconnecting /dev/nbd0" in vm.log(phase)
    if phase == "ods":
        assert vm.get("ods.exit") == "0", vm.log(phase)
        assert vm.get("ods.release") == "0", "an incomplete release was described"


def test_on_demand_stall_phases_kernel_saw_only_the_failed_reads(vm):
    """The reads of ods failed with EIO, which the kernel logs; nothing
    else went wrong with the protocol (no timeout, no reply out of turn)."""
    ods_ran(vm)
    lines = vm.run.phase_kmsgs.get("ods", [])
    assert any("I/O error" in l or "Other side returned error" in l for l in lines), \
        "the kernel logged no failed read: the reads did not reach it"
    allowed = re.compile(r"Other side returned error|I/O error")
    bad = [l for l in lines if PROTOCOL_ERRORS.search(l) and not allowed.search(l)]
    assert not bad, "\n".join(bad)


def assert_same_entries(got: dict, want: dict):
    missing = sorted(set(want) - set(got))
    extra = sorted(set(got) - set(want))
    wrong = sorted((p, got[p], want[p]) for p in set(got) & set(want) if got[p] != want[p])
    assert not (missing or extra or wrong), \
        f"missing {missing[:10]}, unexpected {extra[:10]}, different (path, got, want) {wrong[:10]}"
    assert len(want) >= 8, "the source tree is too small to tell anything"


def test_kernel_saw_no_nbd_errors(vm):
    vm.get("done")
    bad = [l for l in vm.run.kmsgs if PROTOCOL_ERRORS.search(l)]
    if not bad:
        return
    r = vm.run.results
    phase = r.get("diag.what", "").split(":")[0]
    kernel_stall = (any("Connection timed out" in l for l in bad) and phase in PHASES and
                    r.get("diag.ihop_busy") == "0" and int(r.get("diag.recv_works", "0")) < PHASES[phase][1])
    if kernel_stall:
        # Every ihop thread sat waiting for a request while the kernel ran
        # fewer recv works than there are connections: its workqueue's rescuer
        # took them all (a kernel bug, see tests/qemu/nbdvm.py), a reply
        # waited unread until the 30 s timeout and came late ("Unexpected
        # reply"). The reads themselves are checked by the other tests.
        pytest.skip("KERNEL STALL, NOT AN IHOP FAULT: the nbd recv workqueue's rescuer ran only "
                    f"{r['diag.recv_works']} recv work(s) during {r['diag.what']!r}; ihop was idle. "
                    "Kernel said:\n" + "\n".join(bad))
    pytest.fail("the kernel logged NBD errors:\n" + "\n".join(bad) + "\nconsole:\n" + vm.run.console_tail(120))

