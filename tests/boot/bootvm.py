#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""A Debian system that boots from an ihop release, under qemu (TCG).

Used by tests/e2e/test_boot.py and bench/boot-bench.sh; also by hand:

    /usr/bin/python3 tests/boot/bootvm.py --work DIR [--klibc]   # builds, boots v1 once

The system is Debian bookworm made with debootstrap (minbase, systemd-sysv,
udev, kmod, busybox, initramfs-tools, cryptsetup-bin for veritysetup, the
kernel, and ihop's run-time libraries). That tree is cached (env
IHOP_TEST_BOOT_CACHE, else /var/cache/ihop-test-boot when writable, else
~/.cache/ihop-test-boot), keyed by the package list, so it is made once.
Each build then copies it, installs this source tree into it with
`meson install` (prefix /usr: the binary, the initramfs-tools hook and boot
script), adds the guest's test unit (guest-test.sh), and makes the
initramfs with the system's own `update-initramfs` in a chroot, its
configuration as the packages installed it (MODULES=most, no modules file),
as a user's would be: nothing but ihop's hook and boot script see to what
the store needs.

It makes two: one with busybox's tools (initramfs-tools recommends
busybox), then, busybox purged (`dpkg --purge`: a system debootstrapped
without Recommends never has it), one with klibc's only
(System.initrd_klibc). The ext4 images are written from that last tree
(neither the guest's test nor anything after switch_root uses busybox): v1
and v2, which differ in /etc/ihop-test-marker, and v1 with a dm-verity hash
tree appended (veritysetup format --hash-offset).

The images are compressed with the ihop under test; v1 and v1-verity are
cloned into a store, which goes at /store of an ext4 file system (label
ihopstore) on the guest's virtual disk, with v2.cba beside it, for the
booted system to clone, and beside them two files planted as someone with
the disk in hand could (PLANTED): a setuid-root binary and a device node
anyone may open, which the store's mount options (nosuid, nodev, noexec)
must make useless. The kernel and initramfs are the system's own, given to
qemu directly; the guest has no network. Console on the first serial port,
the test unit's results on the second.

The same system also boots with qemu itself as the NBD client: `ihop serve`
on the host exports a release of that store (NbdServer), qemu attaches it
as its only virtual disk (read-only, over a unix socket or TCP) and the
kernel mounts root=/dev/vda; ihop's boot script in the initramfs does
nothing then. By hand: --serve unix|tcp.
"""

import argparse
import hashlib
import os
import shutil
import signal
import socket
import stat
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
TOP = HERE.parents[1]
sys.path.insert(0, str(TOP / "tests" / "qemu"))
import nbdvm  # noqa: E402
SUITE = "bookworm"
MIRROR = os.environ.get("IHOP_TEST_MIRROR", "http://deb.debian.org/debian")
PACKAGES = ["systemd-sysv", "udev", "kmod", "busybox", "initramfs-tools", "cryptsetup-bin",
            "linux-image-amd64",
            # ihop's run-time libraries (libcurl is loaded only for http sources)
            "libprotobuf-c1", "libzstd1", "libbrotli1", "liblzma5", "libsodium23", "libfuse3-3",
            "libnl-genl-3-200", "libjson-c5"]
# The modules the booted system keeps (the rest only makes the images big).
KEPT_MODULES = ["kernel/fs", "kernel/drivers/block", "kernel/drivers/md", "kernel/drivers/virtio",
                "kernel/drivers/char", "kernel/crypto", "kernel/lib", "kernel/arch"]
STORE_LABEL = "ihopstore"
STORE_UUID = "5c2f7e1a-1b0d-4a8e-9d4b-1f0e3a6c7b21"
STOREPATH = "/store"
MARKER = "etc/ihop-test-marker"
# Files of the root file system whose sha256 the guest reports when its
# command line names them (ihoptest.hash=), for the host to compare with the
# same files read out of the image: the release marker, ihop, systemd, the C
# library and bash, some 4 MB.
HASHED_FILES = ["/" + MARKER, "/usr/bin/ihop", "/usr/lib/systemd/systemd",
                "/usr/lib/x86_64-linux-gnu/libc.so.6", "/usr/bin/bash"]
# Planted at the top of the store's file system, beside the store (mount
# options are the whole file system's, and ihop's commands on the store
# never meet these there): a setuid-root copy of id(1), which prints the
# user it runs as, and a character device with /dev/null's numbers that
# anyone may open. guest-test.sh tries both as user nobody.
PLANTED = {"suid": "planted-suid-id", "dev": "planted-null-dev"}


# The system cannot be built or booted here at all (no debootstrap, no qemu).
Unavailable = nbdvm.Unavailable
find_qemu = nbdvm.find_qemu


def run(cmd, timeout=600, **kw):
    r = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=timeout,
                       stdin=subprocess.DEVNULL, **kw)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(str(c) for c in cmd)} exited {r.returncode}:\n{r.stdout[-2000:]}"
                           f"\n{r.stderr[-4000:]}")
    return r


def default_cache_dir() -> Path:
    return nbdvm.default_cache_dir("IHOP_TEST_BOOT_CACHE", "ihop-test-boot")


def base_tree(cache: Path = None) -> Path:
    """The debootstrapped tree, made once per package list."""
    cache = cache or default_cache_dir()
    key = hashlib.sha256(" ".join([SUITE, MIRROR] + PACKAGES).encode()).hexdigest()[:16]
    tree = cache / f"rootfs-{SUITE}-{key}"
    if (tree / "etc" / "debian_version").exists():
        return tree
    if os.geteuid() != 0:
        raise Unavailable("debootstrap needs root")
    if not shutil.which("debootstrap"):
        raise Unavailable("debootstrap is not installed (apt-get install debootstrap)")
    cache.mkdir(parents=True, exist_ok=True)
    partial = cache / f"partial-{key}"
    shutil.rmtree(partial, ignore_errors=True)
    try:
        run(["debootstrap", "--variant=minbase", "--include=" + ",".join(PACKAGES), SUITE, partial, MIRROR],
            timeout=1800)
    except RuntimeError as e:
        shutil.rmtree(partial, ignore_errors=True)
        raise Unavailable(f"debootstrap failed: {e}")
    for junk in ["var/cache/apt/archives", "var/lib/apt/lists"]:
        for p in (partial / junk).glob("*"):
            if p.is_file():
                p.unlink()
    partial.rename(tree)
    return tree


@dataclass
class System:
    work: Path
    kernel: Path
    initrd: Path  # with busybox
    initrd_klibc: Path  # without: klibc's tools only
    images: dict  # name -> ext4 image (v1, v2, v1v)
    roothash: str
    hashoffset: int
    store_tree: Path  # what the store disk holds
    store_disk: Path
    digests: dict = field(default_factory=dict)  # name -> sha256 of the image


def build_ihop(work: Path) -> Path:
    """This source tree, built for the guest (prefix /usr) and installed into DESTDIR work/install."""
    build = work / "build"
    dest = work / "install"
    if not (build / "build.ninja").exists():
        run(["meson", "setup", build, TOP, "--prefix=/usr", "--buildtype=release", "-Dtests=disabled",
             "-Dfuzz=false"], timeout=300)
    run(["ninja", "-C", build], timeout=900)
    shutil.rmtree(dest, ignore_errors=True)
    run(["meson", "install", "-C", build, "--no-rebuild", "--destdir", dest], timeout=300)
    return dest


def prepare_root(base: Path, root: Path, installed: Path):
    shutil.rmtree(root, ignore_errors=True)
    run(["cp", "-a", base, root], timeout=600)
    run(["cp", "-a", f"{installed}/.", root])
    sbin = root / "usr/local/sbin"
    sbin.mkdir(parents=True, exist_ok=True)
    shutil.copy(HERE / "guest-test.sh", sbin / "ihop-boot-test")
    os.chmod(sbin / "ihop-boot-test", 0o755)
    units = root / "etc/systemd/system"
    shutil.copy(HERE / "ihop-boot-test.service", units / "ihop-boot-test.service")
    wants = units / "multi-user.target.wants"
    wants.mkdir(parents=True, exist_ok=True)
    (wants / "ihop-boot-test.service").unlink(missing_ok=True)
    (wants / "ihop-boot-test.service").symlink_to("/etc/systemd/system/ihop-boot-test.service")
    (root / "etc/hostname").write_text("ihop-test\n")
    # Root is read-only and needs no check: no fstab entry for it.
    (root / "etc/fstab").write_text("# root: the ihop release, read-only (see the kernel command line)\n")
    # A read-only root: what systemd would write goes to /run.
    (root / "etc/machine-id").write_text("")
    conf = root / "etc/initramfs-tools"
    # For the benchmark's baseline only; does nothing unless asked.
    (conf / "scripts/local-top").mkdir(parents=True, exist_ok=True)
    shutil.copy(HERE / "plain-verity", conf / "scripts/local-top/plain-verity")
    os.chmod(conf / "scripts/local-top/plain-verity", 0o755)
    # The rest of the configuration stays as the packages installed it.
    if "\nMODULES=most\n" not in (conf / "initramfs.conf").read_text():
        raise RuntimeError(f"{conf}/initramfs.conf is not initramfs-tools' own (MODULES=most)")
    if (conf / "modules").exists() and any(line.strip() and not line.startswith("#")
                                           for line in (conf / "modules").read_text().splitlines()):
        raise RuntimeError(f"{conf}/modules lists modules: not initramfs-tools' own")


def in_chroot(root: Path, cmd: list, timeout=900):
    """cmd run in root, with /proc mounted there meanwhile."""
    proc = root / "proc"
    run(["mount", "-t", "proc", "proc", proc])
    try:
        return run(["chroot", root] + cmd, timeout=timeout)
    finally:
        subprocess.run(["umount", proc], check=False)


def make_initramfs(root: Path, out: Path, busybox: bool) -> tuple:
    """The system's initramfs, made by its update-initramfs, with busybox in
    it or not (checked: busybox left in would hide a tool klibc lacks)."""
    kernels = sorted((root / "boot").glob("vmlinuz-*"))
    if not kernels:
        raise RuntimeError(f"no kernel in {root}/boot")
    release = kernels[-1].name[len("vmlinuz-"):]
    for p in (root / "boot").glob("initrd.img-*"):
        p.unlink()
    in_chroot(root, ["update-initramfs", "-c", "-k", release])
    files = in_chroot(root, ["lsinitramfs", f"/boot/initrd.img-{release}"], timeout=300).stdout.split()
    if ("usr/bin/busybox" in files or "bin/busybox" in files) != busybox:
        raise RuntimeError(f"the initramfs made {'without' if busybox else 'with'} busybox "
                           f"{'lacks' if busybox else 'holds'} it")
    out.mkdir(parents=True, exist_ok=True)
    kernel, initrd = out / "vmlinuz", out / "initrd.img"
    shutil.copy(kernels[-1], kernel)
    shutil.copy(root / "boot" / f"initrd.img-{release}", initrd)
    return kernel, initrd, release


def purge_busybox(root: Path):
    """busybox out of root, as dpkg removes it: its initramfs-tools hook goes
    with it. (Its trigger, update-initramfs -u, is make_initramfs's job.)"""
    in_chroot(root, ["dpkg", "--purge", "--no-triggers", "busybox"])


def plant(store_fs: Path, root: Path):
    """PLANTED into store_fs, owned by root (this runs as root)."""
    suid = store_fs / PLANTED["suid"]
    shutil.copy(root / "usr/bin/id", suid)
    os.chown(suid, 0, 0)
    os.chmod(suid, 0o4755)
    dev = store_fs / PLANTED["dev"]
    os.mknod(dev, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    os.chown(dev, 0, 0)
    os.chmod(dev, 0o666)


def prune(root: Path, release: str):
    """What the running system does not need, out of the images."""
    for d in ["usr/share/doc", "usr/share/man", "usr/share/locale", "usr/share/info", "var/cache/apt",
              "var/lib/apt/lists", "var/cache/debconf"]:
        shutil.rmtree(root / d, ignore_errors=True)
    for p in (root / "boot").glob("*"):
        p.unlink()
    modules = root / "usr/lib/modules" / release
    kept = root / "usr/lib/modules" / (release + ".kept")
    shutil.rmtree(kept, ignore_errors=True)
    kept.mkdir()
    for rel in KEPT_MODULES:
        if (modules / rel).exists():
            (kept / rel).parent.mkdir(parents=True, exist_ok=True)
            (modules / rel).rename(kept / rel)
    for p in modules.glob("modules.*"):
        p.rename(kept / p.name)
    shutil.rmtree(modules)
    kept.rename(modules)
    run(["chroot", root, "depmod", release], timeout=300)


def make_image(root: Path, marker: str, out: Path):
    (root / MARKER).write_text(marker + "\n")
    used = int(run(["du", "-sk", "--apparent-size", root]).stdout.split()[0])
    size_mib = used * 13 // 10 // 1024 + 64
    out.unlink(missing_ok=True)
    # 4 KiB blocks: dm-verity's device has 4 KiB sectors, and ext4 does not
    # mount with blocks smaller than its device's sectors.
    run(["mke2fs", "-q", "-t", "ext4", "-b", "4096", "-L", "ihoproot", "-E", "root_owner=0:0", "-d", root, out,
         f"{size_mib}M"], timeout=900)


def add_verity(image: Path, out: Path) -> tuple:
    """image with a dm-verity hash tree appended: (root hash, hash offset)."""
    shutil.copy(image, out)
    offset = out.stat().st_size
    r = run(["veritysetup", "format", out, out, f"--hash-offset={offset}"], timeout=600)
    for line in r.stdout.splitlines():
        if line.startswith("Root hash:"):
            return line.split(":", 1)[1].strip(), offset
    raise RuntimeError(f"veritysetup printed no root hash:\n{r.stdout}")


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def image_file_sha256(image: Path, path: str) -> str:
    """sha256 of a file of an ext4 image as debugfs (e2fsprogs) reads it:
    neither through ihop nor through a kernel mount."""
    r = subprocess.run(["debugfs", "-R", f"cat {path}", str(image)], capture_output=True, timeout=300,
                       stdin=subprocess.DEVNULL)
    # debugfs exits 0 whatever its command did; past its banner line, stderr
    # says what went wrong
    complaints = [line for line in r.stderr.decode(errors="replace").splitlines() if not line.startswith("debugfs ")]
    if r.returncode != 0 or complaints:
        raise RuntimeError(f"debugfs cannot read {path} of {image}: {r.stderr.decode(errors='replace')}")
    return hashlib.sha256(r.stdout).hexdigest()


def make_store_disk(tree: Path, out: Path):
    used = int(run(["du", "-sk", "--apparent-size", tree]).stdout.split()[0])
    size_mib = used * 13 // 10 // 1024 + 128  # room for the clone of v2 in the guest
    size_mib += used // 1024
    out.unlink(missing_ok=True)
    run(["mke2fs", "-q", "-t", "ext4", "-L", STORE_LABEL, "-U", STORE_UUID, "-E", "root_owner=0:0", "-d", tree, out,
         f"{size_mib}M"], timeout=900)


def build_system(work: Path, ihop: Path) -> System:
    """Everything the boots need, in work."""
    work.mkdir(parents=True, exist_ok=True)
    base = base_tree()
    installed = build_ihop(work)
    root = work / "root"
    prepare_root(base, root, installed)
    kernel, initrd, release = make_initramfs(root, work / "boot", busybox=True)
    purge_busybox(root)
    _, initrd_klibc, _ = make_initramfs(root, work / "boot-klibc", busybox=False)
    prune(root, release)
    images = {"v1": work / "v1.ext4", "v2": work / "v2.ext4"}
    make_image(root, "v1", images["v1"])
    make_image(root, "v2", images["v2"])
    store_tree = work / "storefs"
    shutil.rmtree(store_tree, ignore_errors=True)
    (store_tree / STOREPATH.lstrip("/")).mkdir(parents=True)
    plant(store_tree, root)
    shutil.rmtree(root)
    images["v1v"] = work / "v1v.img"
    roothash, offset = add_verity(images["v1"], images["v1v"])
    system = System(work, kernel, initrd, initrd_klibc, images, roothash, offset, store_tree, work / "store.img")
    for name, image in images.items():
        cba = work / f"{name}.cba"
        cba.unlink(missing_ok=True)
        run([ihop, "-q", "compress", "-i", image, cba], timeout=900)
        system.digests[name] = sha256_of(image)
    for name in ["v1", "v1v"]:
        run([ihop, "-q", "clone", work / f"{name}.cba", store_tree / STOREPATH.lstrip("/") / name], timeout=900)
    shutil.copy(work / "v2.cba", store_tree / "v2.cba")
    make_store_disk(store_tree, system.store_disk)
    return system


# --------------------------------------------------------------------------
# Boots


@dataclass
class Boot:
    results: dict = field(default_factory=dict)
    console: str = ""
    seconds: float = 0.0
    returncode: int = None
    timed_out: bool = False
    stopped_at: str = None  # the console pattern that ended it, if one did

    def console_tail(self, lines=80) -> str:
        return "\n".join(self.console.splitlines()[-lines:])


def cmdline(release: str, extra: str = "", roothash: str = None, hashoffset: int = None,
            store: str = f"LABEL={STORE_LABEL}") -> str:
    """store: the store's device as ihop.store= names it (LABEL=, UUID= or a path)."""
    words = ["console=ttyS0", "root=/dev/nbd0", f"ihop.store={store}",
             f"ihop.storepath={STOREPATH}", f"ihop.release={release}", "systemd.show_status=1"]
    if roothash:
        words += [f"ihop.roothash={roothash}", f"ihop.hashoffset={hashoffset}"]
    return " ".join(words + ([extra] if extra else []))


def served_cmdline(extra: str = "") -> str:
    """Root straight from the first virtual disk, read-only, no ihop.* for
    the initramfs: a release that qemu reads from `ihop serve`. The guest
    hashes HASHED_FILES."""
    words = ["console=ttyS0", "root=/dev/vda", "ro", "fsck.mode=skip", "systemd.show_status=1",
             "ihoptest.hash=" + ",".join(HASHED_FILES)]
    return " ".join(words + ([extra] if extra else []))


RESCUE_SHELL = "(initramfs)"


def boot(system: System, append: str, work: Path, disk: Path = None, timeout=300,
         stop_on=(RESCUE_SHELL,), plain_disk: Path = None, drives: list = None, klibc: bool = False) -> Boot:
    """Boots once; ends at power-off, at timeout, or as soon as the console
    shows one of stop_on (by default initramfs-tools' rescue shell, where a
    failed boot waits for ever). plain_disk: a root image as a second
    virtual disk (vdb), for booting without ihop. drives: qemu -drive
    values instead of the store's disk (and plain_disk), e.g. NbdServer.drive().
    klibc: with the initramfs made without busybox."""
    qemu = find_qemu()
    accel = os.environ.get("IHOP_TEST_ACCEL", "tcg")
    work.mkdir(parents=True, exist_ok=True)
    console, results = work / "console.log", work / "results.txt"
    for p in (console, results):
        p.unlink(missing_ok=True)
    # One vCPU, as in tests/qemu/nbdvm.py: with two under TCG, the kernel's
    # nbd receive workqueue can stall (a kernel matter, not ihop's).
    cmd = [qemu, "-accel", accel, "-cpu", "max", "-smp", "1", "-m", "1024",
           "-display", "none", "-nodefaults", "-no-reboot", "-nic", "none",
           "-kernel", str(system.kernel), "-initrd", str(system.initrd_klibc if klibc else system.initrd),
           "-append", append,
           "-serial", f"file:{console}", "-serial", f"file:{results}"]
    if drives is None:
        drives = [f"file={disk or system.store_disk},format=raw,if=virtio"]
        if plain_disk:
            drives.append(f"file={plain_disk},format=raw,if=virtio,readonly=on")
    for d in drives:
        cmd += ["-drive", d]
    b = Boot()
    start = time.monotonic()
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        while proc.poll() is None:
            if time.monotonic() - start > timeout:
                b.timed_out = True
                break
            if stop_on and console.exists():
                text = console.read_text(errors="replace")
                hit = next((p for p in stop_on if p in text), None)
                if hit:
                    time.sleep(1)  # the rest of that line
                    b.stopped_at = hit
                    break
            time.sleep(0.5)
    finally:
        if proc.poll() is None:
            proc.kill()
        out = proc.communicate()[0].decode(errors="replace")
    b.seconds = time.monotonic() - start
    b.returncode = proc.returncode
    b.console = (console.read_text(errors="replace") if console.exists() else "") + \
        (f"\n[qemu output]\n{out}" if out.strip() else "")
    if results.exists():
        for line in results.read_text(errors="replace").splitlines():
            if line.startswith("RESULT "):
                parts = line.rstrip("\r").split(" ", 2)
                b.results[parts[1]] = parts[2].strip() if len(parts) > 2 else ""
    return b


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class NbdServer:
    """`ihop serve` on the host, for qemu to be its NBD client: started when
    the `with` block begins (once it says it is serving), stopped with
    SIGTERM when it ends. Afterwards stderr, returncode, and whether the
    socket file is still there or the port still takes connections tell how
    it went."""

    def __init__(self, ihop, releases: list, work: Path, unix: Path = None, listen: str = None,
                 verify: bool = False):
        """releases: STORE/NAME paths; unix: a socket path, or listen:
        HOST:PORT (one of the two)."""
        assert (unix is None) != (listen is None)
        self.work, self.unix, self.listen = work, unix, listen
        self.argv = [str(ihop), "serve"] + (["--verify"] if verify else []) + \
            (["--unix", str(unix)] if unix else ["--listen", listen]) + [str(r) for r in releases]
        self.proc = None
        self.stderr = ""
        self.returncode = None
        self.socket_left = None  # after stop: the unix socket file still exists
        self.port_open = None  # after stop: the TCP port still accepts

    def drive(self, export: str) -> str:
        """A read-only virtio disk of export, for qemu's -drive."""
        if self.unix:
            uri = f"nbd+unix:///{export}?socket={self.unix}"
        else:
            uri = f"nbd://{self.listen}/{export}"
        return f"file={uri},format=raw,readonly=on,if=virtio"

    def start(self, timeout=60):
        self.work.mkdir(parents=True, exist_ok=True)
        self.errfile = self.work / "serve.err"
        with open(self.errfile, "wb") as err:
            self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                         stderr=err)
        # It says so once it listens (after every release's chunk files were checked).
        deadline = time.monotonic() + timeout
        while "serving " not in self.errfile.read_text(errors="replace"):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"{' '.join(self.argv)} did not start serving "
                                   f"(exit {self.returncode}):\n{self.stderr}")
            time.sleep(0.1)
        return self

    def stop(self, timeout=30):
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.returncode = self.proc.returncode
        self.proc = None
        self.stderr = self.errfile.read_text(errors="replace")
        if self.unix:
            self.socket_left = os.path.lexists(self.unix)
        else:
            host, port = self.listen.rsplit(":", 1)
            try:
                with socket.create_connection((host, int(port)), timeout=5):
                    self.port_open = True
            except OSError:
                self.port_open = False

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


def bench(system: System, rounds: int):
    """Kernel start to multi-user.target, root from the ihop release against
    the same image on a plain virtio disk, with and without dm-verity; each
    round boots every kind once, in a rotating order. Medians, and ihop's
    ratio to the plain disk's."""
    v1, v1v = system.images["v1"], system.images["v1v"]
    kinds = {
        "ihop": (cmdline("v1"), None),
        "plain": ("console=ttyS0 root=/dev/vdb ro", v1),
        "ihop+verity": (cmdline("v1v", roothash=system.roothash, hashoffset=system.hashoffset), None),
        "plain+verity": (f"console=ttyS0 ro ihoptest.plainverity={system.roothash}:{system.hashoffset}", v1v),
    }
    seconds = {k: [] for k in kinds}
    rss = []
    names = list(kinds)
    for r in range(rounds):
        order = names[r % len(names):] + names[:r % len(names)]
        for name in order:
            append, plain = kinds[name]
            b = boot(system, append, system.work / f"bench-{name}", plain_disk=plain)
            if "multi_user_us" not in b.results:
                raise RuntimeError(f"boot {name} did not reach its test:\n{b.console_tail()}")
            seconds[name].append(int(b.results["multi_user_us"]) / 1e6)
            if name == "ihop":
                rss.append(int(b.results["ihop_rss_kib"]))
            print(f"round {r + 1} {name:13s} {seconds[name][-1]:6.2f} s", flush=True)
    med = {k: statistics.median(v) for k, v in seconds.items()}
    print(f"\nkernel start to multi-user.target, median of {rounds} (TCG):")
    print(f"  ihop          {med['ihop']:6.2f} s   plain disk {med['plain']:6.2f} s   "
          f"ratio {med['ihop'] / med['plain']:.3f}x")
    print(f"  ihop+verity   {med['ihop+verity']:6.2f} s   plain disk {med['plain+verity']:6.2f} s   "
          f"ratio {med['ihop+verity'] / med['plain+verity']:.3f}x")
    print(f"resident memory of the root-storage ihop after boot: {statistics.median(rss) / 1024:.1f} MiB "
          f"(all of it locked)")
    worst = max(med["ihop"] / med["plain"], med["ihop+verity"] / med["plain+verity"])
    print(f"target ihop <= 1.25x the plain disk: {'met' if worst <= 1.25 else 'MISSED'}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ihop", default=os.environ.get("IHOP", str(TOP / "build" / "src" / "ihop")))
    ap.add_argument("--work", required=True)
    ap.add_argument("--release", default="v1")
    ap.add_argument("--append", default="", help="more kernel command line")
    ap.add_argument("--klibc", action="store_true", help="boot the initramfs made without busybox")
    ap.add_argument("--bench", type=int, metavar="ROUNDS", help="bench/boot-bench.sh: boot times, ROUNDS rounds")
    ap.add_argument("--serve", choices=["unix", "tcp"],
                    help="boot the release through `ihop serve` on the host, qemu its NBD client")
    args = ap.parse_args()
    work = Path(args.work)
    system = build_system(work, Path(args.ihop))
    if args.bench:
        bench(system, args.bench)
        return 0
    if args.serve:
        release = system.store_tree / STOREPATH.lstrip("/") / args.release
        where = {"unix": work / "serve.sock"} if args.serve == "unix" else {"listen": f"127.0.0.1:{free_port()}"}
        with NbdServer(args.ihop, [release], work / "boot-1", **where) as server:
            run = boot(system, served_cmdline(args.append), work / "boot-1", drives=[server.drive(args.release)])
        return nbdvm.report(run, [f"ihop serve: exit {server.returncode}", server.stderr.rstrip()])
    return nbdvm.report(boot(system, cmdline(args.release, args.append), work / "boot-1", klibc=args.klibc))


if __name__ == "__main__":
    sys.exit(main())
