#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""A throwaway VM for testing 'ihop mount' against a real kernel NBD driver.

Used by tests/e2e/test_kernel_nbd.py; also runnable by hand:

    /usr/bin/python3 tests/qemu/nbdvm.py --ihop build/src/ihop --store STORE

(STORE holding a release v1) boots the VM and prints its console and results.

The kernel is Debian's own, the package that linux-image-amd64 depends on,
fetched with 'apt-get download' and unpacked with 'dpkg -x' into a cache
directory (env IHOP_TEST_KERNEL_CACHE, else /var/cache/ihop-test-kernel when
writable, else ~/.cache/ihop-test-kernel), so it is downloaded once. Its
modules are plain .ko files that busybox insmod loads; the dependencies come
from each module's .modinfo section (the package has no modules.dep, depmod
runs at install time).

The initramfs, written here as a newc cpio without needing root: static
busybox and its applet links, ihop with every shared library ldd lists (and
the dynamic loader) at the same paths, nbd.ko and the file systems' modules
(ext4, squashfs, vfat) with what they need, the store at /store (the
release v1, and whatever other releases it holds), tests/qemu/nbd-disconnect and
tests/qemu/range-server (compiled here when a C compiler exists; with the
server, libcurl, which ihop loads when it first fetches over HTTP) and
tests/qemu/init.sh as /init. Larger stores go on a
virtual disk (a squashfs image, mounted by init.sh at /disk). qemu runs under TCG by
default (env IHOP_TEST_ACCEL=kvm to change), console on the first serial
port, results on the second (see init.sh).
"""

import argparse
import os
import re
import shutil
import stat
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
INIT = HERE / "init.sh"
DISCONNECT_SRC = HERE / "nbd-disconnect.c"
RANGE_SERVER_SRC = HERE / "range-server.c"

META_PACKAGE = "linux-image-amd64"
# What the guest insmods, dependencies first. crc32c_generic is no declared
# dependency of ext4 (ext4 asks the crypto API for "crc32c"), but without it
# mounting fails with ENOENT. Likewise vfat asks for its character sets by
# name: the kernel's defaults, CONFIG_FAT_DEFAULT_CODEPAGE=437 and
# CONFIG_FAT_DEFAULT_IOCHARSET="ascii" in Debian's config, without which a
# mount fails with EINVAL.
MODULES = ["nbd", "crc32c_generic", "ext4", "virtio_pci", "virtio_blk", "squashfs", "fat", "vfat", "nls_cp437",
           "nls_ascii"]
CMDLINE = "console=ttyS0 quiet panic=-1 rdinit=/init"


class Unavailable(Exception):
    """The VM cannot be run here at all (no qemu, no kernel to be had)."""


# --------------------------------------------------------------------------
# The kernel


@dataclass
class Kernel:
    release: str  # e.g. 6.1.0-56-amd64
    vmlinuz: Path
    modules: Path  # lib/modules/RELEASE


def default_cache_dir(env: str = "IHOP_TEST_KERNEL_CACHE", name: str = "ihop-test-kernel") -> Path:
    """Where downloads are kept between runs: $env, else /var/cache/NAME when
    writable, else ~/.cache/NAME."""
    if os.environ.get(env):
        return Path(os.environ[env])
    system = Path("/var/cache") / name
    try:
        system.mkdir(parents=True, exist_ok=True)
        if os.access(system, os.W_OK):
            return system
    except OSError:
        pass
    return Path.home() / ".cache" / name


def _run(cmd, timeout=300, **kw):
    return subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL, **kw)


def _kernel_in(unpacked: Path):
    """The Kernel in an unpacked linux-image package, or None."""
    images = sorted((unpacked / "boot").glob("vmlinuz-*"))
    if not images:
        return None
    release = images[-1].name[len("vmlinuz-"):]
    for base in (unpacked / "lib" / "modules", unpacked / "usr" / "lib" / "modules"):
        if (base / release).is_dir():
            return Kernel(release, images[-1], base / release)
    return None


def kernel_package() -> str:
    """The versioned package linux-image-amd64 currently depends on."""
    r = _run(["apt-cache", "depends", META_PACKAGE], timeout=60)
    if r.returncode != 0:
        raise Unavailable(f"'apt-cache depends {META_PACKAGE}' failed: {r.stderr.strip()}")
    m = re.search(r"Depends:\s*(linux-image-\S+)", r.stdout)
    if not m:
        raise Unavailable(f"'apt-cache depends {META_PACKAGE}' names no linux-image package:\n{r.stdout}")
    return m.group(1)


def _cached_kernel(cache: Path):
    """The newest kernel unpacked into cache before, or None."""
    for old in sorted(cache.glob("linux-image-*"), reverse=True):
        k = _kernel_in(old)
        if k:
            return k
    return None


def _download_kernel(cache: Path, package: str) -> Kernel:
    target = cache / package
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache, prefix=".download-") as tmp:
        r = _run(["apt-get", "download", "-q", package], cwd=tmp)
        debs = list(Path(tmp).glob("*.deb"))
        if r.returncode != 0 or not debs:
            raise Unavailable(f"'apt-get download {package}' failed ({r.returncode}): "
                              f"{(r.stderr or r.stdout).strip()[-2000:]}")
        unpacked = Path(tmp) / "root"
        r = _run(["dpkg", "-x", debs[0], unpacked])
        if r.returncode != 0:
            raise Unavailable(f"'dpkg -x {debs[0].name}' failed: {r.stderr.strip()}")
        if not _kernel_in(unpacked):
            raise Unavailable(f"{debs[0].name} holds no vmlinuz and modules")
        try:
            os.rename(unpacked, target)
        except OSError:
            if not _kernel_in(target):  # not another run's download either
                raise
    # Older kernels are of no more use: 400 MB each.
    for old in cache.glob("linux-image-*"):
        if old != target:
            shutil.rmtree(old, ignore_errors=True)
    return _kernel_in(target)


def ensure_kernel(cache: Path = None) -> Kernel:
    """Debian's current amd64 kernel, downloaded and unpacked once into cache;
    when that cannot be had (offline, not Debian), any kernel cached before."""
    cache = Path(cache or default_cache_dir())
    try:
        package = kernel_package()
        return _kernel_in(cache / package) or _download_kernel(cache, package)
    except (Unavailable, OSError, subprocess.SubprocessError) as e:
        k = _cached_kernel(cache)
        if k:
            return k
        raise Unavailable(f"no kernel to boot: {e} (and none cached in {cache})")


def module_files(kernel: Kernel, names) -> list:
    """Paths of the named modules and everything they depend on, dependencies
    first, read from each module's .modinfo 'depends=' entry."""
    index = {}
    for d, _, files in os.walk(kernel.modules / "kernel"):
        for f in files:
            if f.endswith(".ko"):
                index[f[:-3].replace("-", "_")] = Path(d) / f
    order = []

    def visit(name, trail):
        name = name.replace("-", "_")
        if name in order:
            return
        if name in trail:
            raise RuntimeError(f"module dependency loop: {trail + [name]}")
        if name not in index:
            raise Unavailable(f"kernel {kernel.release} has no module {name}.ko (compressed modules?)")
        m = re.search(rb"(?:^|\0)depends=([^\0]*)\0", index[name].read_bytes())
        for dep in (m.group(1).decode().split(",") if m and m.group(1) else []):
            visit(dep, trail + [name])
        order.append(name)

    for n in names:
        visit(n, [])
    return [(n, index[n]) for n in order]


# --------------------------------------------------------------------------
# The initramfs


class Cpio:
    """A newc ("070701") archive, built in memory: parents come first."""

    def __init__(self):
        self.entries = {}  # path without leading / -> (mode, data, rdev)

    def _parents(self, path):
        parts = path.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            self.entries.setdefault("/".join(parts[:i]), (stat.S_IFDIR | 0o755, b"", (0, 0)))

    def dir(self, path):
        path = path.strip("/")
        self._parents(path)
        self.entries[path] = (stat.S_IFDIR | 0o755, b"", (0, 0))

    def file(self, path, data: bytes, mode=0o644):
        path = path.strip("/")
        self._parents(path)
        self.entries[path] = (stat.S_IFREG | mode, data, (0, 0))

    def copy(self, path, source, mode=None):
        source = Path(source)
        if mode is None:
            mode = stat.S_IMODE(source.stat().st_mode)
        self.file(path, source.read_bytes(), mode)

    def symlink(self, path, target):
        path = path.strip("/")
        self._parents(path)
        self.entries[path] = (stat.S_IFLNK | 0o777, target.encode(), (0, 0))

    def chardev(self, path, major, minor, mode=0o600):
        path = path.strip("/")
        self._parents(path)
        self.entries[path] = (stat.S_IFCHR | mode, b"", (major, minor))

    def write(self, out: Path):
        with open(out, "wb") as f:
            names = sorted(self.entries) + ["TRAILER!!!"]
            for ino, name in enumerate(names, 1):
                mode, data, (major, minor) = self.entries.get(name, (0, b"", (0, 0)))
                raw = name.encode() + b"\0"
                fields = [ino, mode, 0, 0, 2 if stat.S_ISDIR(mode) else 1, 0, len(data),
                          0, 0, major, minor, len(raw), 0]
                header = b"070701" + b"".join(b"%08X" % v for v in fields)
                f.write(header + raw)
                f.write(b"\0" * (-(len(header) + len(raw)) % 4))
                f.write(data)
                f.write(b"\0" * (-len(data) % 4))


def shared_libraries(binary) -> list:
    """Absolute paths of everything the dynamic loader maps for binary
    (the loader itself included); empty for a static binary."""
    r = _run(["ldd", binary], timeout=60)
    if r.returncode != 0:
        if "not a dynamic executable" in r.stdout + r.stderr or "statically linked" in r.stdout:
            return []
        raise RuntimeError(f"ldd {binary} failed: {r.stderr.strip()}")
    libs = []
    for line in r.stdout.splitlines():
        line = line.strip()
        if "statically linked" in line:
            return []
        m = re.match(r"\S+ => (/\S+) \(", line) or re.match(r"(/\S+) \(", line)
        if m:
            libs.append(m.group(1))
        elif "=> not found" in line:
            raise RuntimeError(f"ldd {binary}: {line}")
    return libs


def add_binary(cpio: Cpio, path, source):
    cpio.copy(path, source, 0o755)
    for lib in shared_libraries(source):
        if lib.strip("/") not in cpio.entries:
            cpio.copy(lib, lib, 0o755)


def library_path(soname) -> str:
    """Where the dynamic loader finds soname (ldconfig's cache), or None."""
    r = _run(["ldconfig", "-p"], timeout=60)
    for line in r.stdout.splitlines():
        m = re.match(r"\s*(\S+) \((?:libc6,)?x86-64[^)]*\) => (\S+)$", line)
        if m and m.group(1) == soname:
            return m.group(2)
    return None


def find_busybox() -> str:
    for candidate in ("/bin/busybox", "/usr/bin/busybox", shutil.which("busybox")):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    raise Unavailable("busybox is not installed (apt-get install busybox-static)")


def build_helper(workdir: Path, source: Path):
    """A helper of the guest's, tests/qemu/NAME.c compiled to workdir/NAME,
    or None without a C compiler."""
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if not cc:
        return None
    out = workdir / source.stem
    r = _run([cc, "-O2", "-Wall", "-o", out, source], timeout=120)
    if r.returncode != 0:
        raise RuntimeError(f"cannot compile {source}: {r.stderr}")
    return out


def build_disconnect(workdir: Path):
    """tests/qemu/nbd-disconnect for the guest, or None without a C compiler."""
    return build_helper(workdir, DISCONNECT_SRC)


def build_initramfs(out: Path, ihop, store: Path, kernel: Kernel, workdir: Path) -> dict:
    """Writes the initramfs; returns a description of what went in."""
    cpio = Cpio()
    for d in ("proc", "sys", "dev", "mnt", "tmp", "sbin"):
        cpio.dir(d)
    cpio.chardev("dev/console", 5, 1)
    busybox = find_busybox()
    add_binary(cpio, "bin/busybox", busybox)
    applets = _run([busybox, "--list"], timeout=60).stdout.split()
    if "sh" not in applets or "insmod" not in applets:
        raise Unavailable(f"{busybox} lacks sh or insmod")
    for applet in applets:
        if applet not in ("busybox", "init", "linuxrc"):
            cpio.symlink(f"bin/{applet}", "busybox")
    add_binary(cpio, "bin/ihop", ihop)
    disconnect = build_disconnect(workdir)
    if disconnect:
        add_binary(cpio, "bin/nbd-disconnect", disconnect)
    range_server = build_helper(workdir, RANGE_SERVER_SRC)
    libcurl = library_path("libcurl.so.4")
    if range_server and libcurl:
        add_binary(cpio, "bin/range-server", range_server)
        # ihop loads libcurl when it first needs it (dlopen): ldd does not list it
        add_binary(cpio, libcurl, libcurl)
    else:
        range_server = None
    modules = module_files(kernel, MODULES)
    for name, path in modules:
        cpio.copy(f"modules/{name}.ko", path, 0o644)
    cpio.file("modules/order", "".join(f"{n}\n" for n, _ in modules).encode())
    store = Path(store)
    if not (store / "v1").is_file():
        raise RuntimeError(f"{store} holds no release v1")
    for d, _, files in os.walk(store):
        rel = Path(d).relative_to(store)
        cpio.dir(str(Path("store") / rel))
        for f in files:
            cpio.copy(str(Path("store") / rel / f), Path(d) / f)
    cpio.copy("init", INIT, 0o755)
    cpio.write(out)
    return {"modules": [n for n, _ in modules], "disconnect": disconnect is not None,
            "range_server": range_server is not None, "bytes": out.stat().st_size}


# --------------------------------------------------------------------------
# Running it


@dataclass
class VmRun:
    results: dict = field(default_factory=dict)  # key -> value (rest of the line)
    kmsgs: list = field(default_factory=list)  # the kernel's lines about nbd, ext4, I/O errors
    # the same of phases whose reads are meant to fail, apart: phase -> lines
    phase_kmsgs: dict = field(default_factory=dict)
    files: dict = field(default_factory=dict)  # phase -> {./path: sha256}
    console: str = ""
    seconds: float = 0.0
    returncode: int = None
    timed_out: bool = False

    def console_tail(self, lines=60) -> str:
        return "\n".join(self.console.splitlines()[-lines:])


def find_qemu() -> str:
    q = shutil.which("qemu-system-x86_64")
    if not q:
        raise Unavailable("qemu-system-x86_64 is not installed (apt-get install qemu-system-x86)")
    return q


def parse_results(text: str, run: VmRun):
    for line in text.splitlines():
        line = line.rstrip("\r")
        if line.startswith("RESULT "):
            parts = line.split(" ", 2)
            if len(parts) >= 2:
                run.results[parts[1]] = parts[2].strip() if len(parts) > 2 else ""
        elif line.startswith("KMSG "):
            run.kmsgs.append(line[5:])
        elif line.startswith("PKMSG "):
            parts = line.split(" ", 2)
            if len(parts) == 3:
                run.phase_kmsgs.setdefault(parts[1], []).append(parts[2])
        elif line.startswith("FILE "):
            parts = line.split(" ", 3)
            if len(parts) == 4:
                run.files.setdefault(parts[1], {})[parts[3]] = parts[2]


def make_disk(out: Path, tree: Path):
    """A squashfs image holding tree: the guest's virtual disk, for what is
    too big for the initramfs (each file of an initramfs takes a whole page
    of the guest's memory). squashfs, uncompressed: mksquashfs makes it in
    seconds where mke2fs -d takes minutes for tens of thousands of files,
    and its packed directory and inode tables make each lookup in the guest
    cheap."""
    out.unlink(missing_ok=True)
    r = _run(["mksquashfs", str(tree), str(out), "-noappend", "-quiet", "-no-progress", "-noI", "-noD", "-noF",
              "-noX", "-no-xattrs", "-all-root"], timeout=600)
    if r.returncode != 0:
        raise RuntimeError(f"mksquashfs {tree} failed: {r.stderr.strip()}")


def run_vm(kernel: Kernel, initrd: Path, workdir: Path, timeout=120, accel=None, disk: Path = None) -> VmRun:
    qemu = find_qemu()
    accel = accel or os.environ.get("IHOP_TEST_ACCEL", "tcg")
    console, results = workdir / "console.log", workdir / "results.txt"
    for p in (console, results):
        p.unlink(missing_ok=True)
    # One vCPU: with two, under TCG on a busy host, starting a kernel worker
    # thread sometimes takes so long that the nbd recv workqueue's rescuer
    # takes over all the recv works of a multi-connection device and runs
    # only the first, forever; replies on the other connections then wait
    # unread for the 30 s request timeout. Kernel behaviour, not ihop's; see
    # "[PATCH] nbd: Don't use workqueue to handle recv work" (Xie Yongji,
    # 2021, not merged). It showed in 1 boot of 5 with two vCPUs, in none of
    # 15 with one.
    cmd = [qemu, "-accel", accel, "-cpu", "max", "-smp", "1", "-m", "512",
           "-display", "none", "-nodefaults", "-no-reboot",
           "-kernel", str(kernel.vmlinuz), "-initrd", str(initrd), "-append", CMDLINE,
           "-serial", f"file:{console}", "-serial", f"file:{results}"]
    if disk:
        # read-only for the guest: it only reads the stores it holds
        cmd += ["-drive", f"file={disk},format=raw,if=virtio,readonly=on"]
    run = VmRun()
    start = time.monotonic()
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
        run.timed_out = True
    run.seconds = time.monotonic() - start
    run.returncode = proc.returncode
    run.console = (console.read_text(errors="replace") if console.exists() else "") + \
        (f"\n[qemu output]\n{out}" if out.strip() else "")
    if results.exists():
        parse_results(results.read_text(errors="replace"), run)
    return run


def report(run, extra=()) -> int:
    """Prints a guest run for a person (its console, results, extra lines,
    time) and returns the exit status of a run by hand: 0 when it got to
    "done"."""
    print(run.console)
    for k, v in run.results.items():
        print(f"{k} = {v}")
    for line in extra:
        print(line)
    print(f"{run.seconds:.1f} s, qemu exit {run.returncode}{', TIMED OUT' if run.timed_out else ''}")
    return 0 if "done" in run.results else 1


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ihop", default=os.environ.get("IHOP", str(HERE.parents[1] / "build" / "src" / "ihop")))
    ap.add_argument("--store", required=True, help="a store holding the release v1")
    ap.add_argument("--timeout", type=float, default=120)
    args = ap.parse_args()
    kernel = ensure_kernel()
    with tempfile.TemporaryDirectory(prefix="ihop-nbdvm-") as tmp:
        tmp = Path(tmp)
        info = build_initramfs(tmp / "initramfs.cpio", args.ihop, Path(args.store), kernel, tmp)
        print(f"kernel {kernel.release}, initramfs {info}", file=sys.stderr)
        run = run_vm(kernel, tmp / "initramfs.cpio", tmp, args.timeout)
    return report(run, [f"{phase}: {len(files)} files hashed" for phase, files in run.files.items()])


if __name__ == "__main__":
    sys.exit(main())
