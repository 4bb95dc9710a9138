# SPDX-License-Identifier: MIT
"""`ihop mount STORE/NAME FILE`: the release appears as FILE through FUSE.

The ext4 release pair/v1 is mounted as a file, checked byte for byte against
`ihop cat`, loop-mounted read-only by the kernel, and its files compared with
what debugfs (e2fsprogs) reads from the `ihop cat` image on the host. Every
mount is undone within its test; every subprocess runs with a timeout."""

import errno
import hashlib
import os
import shutil
import stat
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from bita_archive import parse_archive
from ihop_run import FIXTURES, IHOP, clone_ok, run

pytestmark = pytest.mark.skipif(not os.path.exists("/dev/fuse"), reason="/dev/fuse is missing: no FUSE here")

PAIR_V1 = "pair/v1.ext4.cba"
STEP = 30  # seconds: timeout of one subprocess or one wait
DEBUGFS = shutil.which("debugfs") or "/usr/sbin/debugfs"


def mounted_at(path) -> bool:
    path = os.path.realpath(path)
    with open("/proc/self/mounts") as f:
        return any(line.split()[1] == path for line in f)


def umount(path, attempts=50) -> subprocess.CompletedProcess:
    """umount, retried briefly while busy (a loop device lets go of its file
    asynchronously)."""
    for _ in range(attempts):
        r = run(["umount", path], timeout=STEP)
        if r.returncode == 0 or "busy" not in r.stderr:
            return r
        time.sleep(0.1)
    return r


class FuseMount:
    """`ihop mount [OPTS] RELEASE FILE` running in the foreground."""

    def __init__(self, release, target: Path, size, *opts):
        self.target = Path(target)
        self.target.touch()
        self.errfile = self.target.with_name(self.target.name + ".stderr")
        with open(self.errfile, "wb") as err:
            self.proc = subprocess.Popen([IHOP, "mount", *opts, str(release), str(self.target)],
                                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err)
        deadline = time.monotonic() + STEP
        while os.stat(self.target).st_size != size:
            assert self.proc.poll() is None, f"ihop mount exited {self.proc.returncode}: {self.stderr}"
            assert time.monotonic() < deadline, f"{self.target} never got the image's size: {self.stderr}"
            time.sleep(0.02)
        assert mounted_at(self.target)

    @property
    def stderr(self) -> str:
        return self.errfile.read_text(errors="replace")

    def unmount(self) -> int:
        """umount FILE; returns ihop's exit status."""
        r = umount(self.target)
        assert r.returncode == 0, f"umount {self.target}: {r.stderr}"
        try:
            return self.proc.wait(STEP)
        except subprocess.TimeoutExpired:
            raise AssertionError("ihop mount did not exit after umount")

    def cleanup(self):
        if mounted_at(self.target):
            if run(["umount", self.target], timeout=STEP).returncode != 0:
                run(["umount", "-l", self.target], timeout=STEP)
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(STEP)


@pytest.fixture
def fuse_mount():
    mounts = []

    def start(release, target, size, *opts):
        m = FuseMount(release, target, size, *opts)
        mounts.append(m)
        return m

    yield start
    for m in reversed(mounts):
        m.cleanup()


@pytest.fixture
def loop_mount():
    """mount -o loop,ro FILE DIR; undone at teardown if the test did not."""
    dirs = []

    def mount(file, directory):
        directory.mkdir()
        r = run(["mount", "-o", "loop,ro", file, directory], timeout=STEP)
        assert r.returncode == 0, f"mount -o loop,ro {file}: {r.stderr.strip()}"
        dirs.append(directory)
        return directory

    yield mount
    for d in dirs:
        if mounted_at(d):
            if umount(d).returncode != 0:
                run(["umount", "-l", d], timeout=STEP)


@pytest.fixture(scope="module")
def v1_archive():
    return parse_archive(FIXTURES / PAIR_V1)


@pytest.fixture
def v1(tmp_path, v1_archive):
    """A private store holding pair/v1 and the image `ihop cat` makes of it:
    (store, image path, image bytes)."""
    store = tmp_path / "store"
    clone_ok(FIXTURES / PAIR_V1, store / "v1")
    image = tmp_path / "v1.img"
    with open(image, "wb") as out:
        r = subprocess.run([IHOP, "cat", str(store / "v1")], stdout=out, stderr=subprocess.PIPE,
                           stdin=subprocess.DEVNULL, timeout=STEP)
    assert r.returncode == 0, r.stderr
    data = image.read_bytes()
    assert hashlib.blake2b(data).digest() == v1_archive.source_checksum
    return store, image, data


def debugfs_cat(image, path) -> bytes:
    r = subprocess.run([DEBUGFS, "-R", f"cat {path}", str(image)], capture_output=True, timeout=STEP,
                       stdin=subprocess.DEVNULL)
    assert r.returncode == 0, r.stderr
    return r.stdout


def tree(root: Path) -> dict:
    """{relative path: ("f", bytes) | ("l", target) | ("d", None)} of a directory tree."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            rel = str(p.relative_to(root))
            st = os.lstat(p)
            if stat.S_ISLNK(st.st_mode):
                out[rel] = ("l", os.readlink(p))
            elif stat.S_ISDIR(st.st_mode):
                out[rel] = ("d", None)
            elif stat.S_ISREG(st.st_mode):
                out[rel] = ("f", p.read_bytes())
            else:
                out[rel] = ("?", st.st_mode)
    return out


def b2sum(path) -> str:
    r = run(["b2sum", path], timeout=STEP)
    assert r.returncode == 0, r.stderr
    return r.stdout.split()[0]


def pick_victim(archive, store):
    """A chunk of the middle of the image used exactly once: its image offset,
    size and chunk file."""
    layout, off, uses = [], 0, {}
    for i in archive.order:
        c = archive.chunks[i]
        layout.append((off, c.source_size, c))
        uses[c.hash] = uses.get(c.hash, 0) + 1
        off += c.source_size
    candidates = [(abs(pos - len(layout) // 2), pos) for pos, (o, n, c) in enumerate(layout)
                  if uses[c.hash] == 1 and n >= 16384]
    _, pos = min(candidates)
    off, n, c = layout[pos]
    hx = c.hash.hex()
    p = Path(store) / "chunks" / hx[:4] / f"{hx}.chunk"
    assert p.is_file() and p.stat().st_size == n, p
    return off, n, p


# --------------------------------------------------------------------------


@pytest.mark.parametrize("verify", [False, True], ids=["plain", "verify"])
def test_mount_file_then_loop_mount_ext4(tmp_path, v1, v1_archive, fuse_mount, loop_mount, verify):
    store, image, data = v1
    target = tmp_path / "v1.file"
    m = fuse_mount(store / "v1", target, len(data), *(["--verify"] if verify else []))

    # The file is the image, bit for bit, and read-only.
    st = os.stat(target)
    assert stat.S_ISREG(st.st_mode) and st.st_size == len(data) == v1_archive.source_total_size
    assert b2sum(target) == hashlib.blake2b(data).hexdigest() == v1_archive.source_checksum.hex()
    with open(target, "rb") as f:  # scattered reads too
        for off in (0, 1, 4095, 1 << 20, len(data) - 1, len(data) - 70000):
            assert os.pread(f.fileno(), 70000, off) == data[off:off + 70000]
        assert os.pread(f.fileno(), 100, len(data)) == b""
    for flags in (os.O_WRONLY, os.O_RDWR, os.O_WRONLY | os.O_TRUNC, os.O_RDWR | os.O_APPEND):
        with pytest.raises(OSError) as e:
            os.close(os.open(target, flags))
        assert e.value.errno in (errno.EROFS, errno.EACCES), e.value
    with pytest.raises(OSError) as e:
        os.truncate(target, 0)
    assert e.value.errno in (errno.EROFS, errno.EACCES, errno.EPERM), e.value
    assert os.stat(target).st_size == len(data)

    # The kernel mounts it as ext4; its files are what debugfs reads from the image.
    mnt = loop_mount(target, tmp_path / "mnt")
    dump = tmp_path / "dump"
    dump.mkdir()
    r = run([DEBUGFS, "-R", f"rdump / {dump}", image], timeout=STEP)
    assert r.returncode == 0, r.stderr
    want = tree(dump)
    got = tree(mnt)
    files = [p for p, (kind, _) in want.items() if kind == "f"]
    assert len(files) > 100, "debugfs dumped too few files to compare"
    assert sorted(got) == sorted(want)
    for p in want:
        assert got[p] == want[p], f"{p} differs between the loop mount and debugfs"
    # The largest files and one small one, each read by debugfs's own cat.
    largest = sorted(files, key=lambda p: len(want[p][1]), reverse=True)[:3]
    for p in largest + ["VERSION"]:
        body = debugfs_cat(image, "/" + p)
        assert body == (mnt / p).read_bytes() and body, p
    # Writing to the read-only ext4 mount fails too.
    with pytest.raises(OSError) as e:
        (mnt / "new-file").write_bytes(b"x")
    assert e.value.errno == errno.EROFS

    r = umount(mnt)
    assert r.returncode == 0, r.stderr
    assert not mounted_at(mnt)
    assert m.unmount() == 0, m.stderr
    assert not mounted_at(target)
    # FILE is the plain empty file it was before.
    assert os.stat(target).st_size == 0
    assert "error" not in m.stderr and "warning" not in m.stderr, m.stderr


def test_mount_verify_corrupt_chunk_reads_eio(tmp_path, v1, v1_archive, fuse_mount):
    store, image, data = v1
    off, n, path = pick_victim(v1_archive, store)
    body = bytearray(path.read_bytes())
    k = len(body) // 2
    body[k] ^= 0xFF
    path.write_bytes(bytes(body))

    target = tmp_path / "v1.file"
    m = fuse_mount(store / "v1", target, len(data), "--verify")
    far = [(0, 1 << 20), (len(data) - (1 << 20), 1 << 20)]
    far = [(o, ln) for o, ln in far if o + ln + (1 << 20) < off or o > off + n + (1 << 20)]
    assert len(far) == 2, "the corrupt chunk is too near the ends of the image"
    with open(target, "rb", buffering=0) as f:
        fd = f.fileno()
        for o, ln in far:
            assert os.pread(fd, ln, o) == data[o:o + ln]
        for o, ln in [(off + k, 1), (off, n), (off + n // 4, 4096), (off + k, 1)]:
            with pytest.raises(OSError) as e:
                os.pread(fd, ln, o)
            assert e.value.errno == errno.EIO, (o, ln)
        # Reading the whole file through fails at the bad chunk, not before.
        f.seek(0)
        done = 0
        with pytest.raises(OSError) as e:
            while True:
                b = f.read(1 << 16)
                if not b:
                    break
                assert b == data[done:done + len(b)]
                done += len(b)
        assert e.value.errno == errno.EIO
        assert done <= off + k and done >= off - (1 << 20), (done, off)
        for o, ln in far:  # and still fine elsewhere
            assert os.pread(fd, ln, o) == data[o:o + ln]
    assert "corrupt" in m.stderr and path.name in m.stderr, m.stderr
    assert m.unmount() == 0, m.stderr

    # Without --verify the flipped byte shows: the EIO above is --verify's doing.
    m = fuse_mount(store / "v1", target, len(data))
    with open(target, "rb") as f:
        got = os.pread(f.fileno(), n, off)
    assert [i for i in range(n) if got[i] != data[off + i]] == [k]
    assert m.unmount() == 0, m.stderr


def test_mount_incomplete_release_fails(tmp_path, v1):
    store, _, _ = v1
    chunk = next((store / "chunks").rglob("*.chunk"))
    chunk.unlink()
    target = tmp_path / "target.file"
    target.write_bytes(b"untouched")
    r = run([IHOP, "mount", store / "v1", target], timeout=STEP)
    assert r.returncode != 0
    assert r.stderr.startswith("ihop: error: ") and len(r.stderr.splitlines()) == 1, r.stderr
    assert "incomplete: 1 of its" in r.stderr and chunk.name in r.stderr, r.stderr
    assert not mounted_at(target)
    assert target.read_bytes() == b"untouched"


def test_mount_missing_release_fails(tmp_path, v1):
    store, _, _ = v1
    target = tmp_path / "target.file"
    target.write_bytes(b"untouched")
    r = run([IHOP, "mount", store / "no-such-release", target], timeout=STEP)
    assert r.returncode != 0
    assert r.stderr.startswith("ihop: error: ") and "no-such-release" in r.stderr, r.stderr
    assert not mounted_at(target)
    assert target.read_bytes() == b"untouched"


# --------------------------------------------------------------------------
# Who may read the image, and release names that FUSE's option syntax uses


def super_options(path) -> list:
    """The super options of the mount at path, from /proc/self/mountinfo."""
    path = os.path.realpath(path)
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            if fields[4] == path:
                return fields[fields.index("-") + 3].split(",")
    raise AssertionError(f"{path} is not mounted")


def read_as_nobody(path) -> subprocess.CompletedProcess:
    return subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "cat", str(path)],
                          capture_output=True, timeout=STEP, stdin=subprocess.DEVNULL)


@pytest.fixture
def public_dir():
    """A directory that user nobody can reach (pytest's tmp_path is root's alone)."""
    d = Path(tempfile.mkdtemp(prefix="ihop-allow-other-"))
    d.chmod(0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root (and user 65534)")
def test_other_users_read_the_image_only_with_allow_other(v1, v1_archive, fuse_mount, public_dir):
    store, _, data = v1
    target = public_dir / "image"
    m = fuse_mount(store / "v1", target, len(data))
    assert "allow_other" not in super_options(target)
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o444
    r = read_as_nobody(target)
    assert r.returncode != 0 and r.stdout == b"" and b"Permission denied" in r.stderr, r
    assert m.unmount() == 0

    m = fuse_mount(store / "v1", target, len(data), "--allow-other")
    assert "allow_other" in super_options(target)
    r = read_as_nobody(target)
    assert r.returncode == 0, r.stderr
    assert hashlib.blake2b(r.stdout).digest() == v1_archive.source_checksum
    assert m.unmount() == 0


def test_allow_other_is_for_a_file_only(v1):
    store, _, _ = v1
    r = run([IHOP, "mount", "--allow-other", store / "v1", "/dev/nbd15"], timeout=STEP)
    assert r.returncode == 2 and "--allow-other" in r.stderr and len(r.stderr.splitlines()) == 1, r.stderr
    r = run([IHOP, "mount", "--help"], timeout=STEP)
    assert "--allow-other" in r.stdout


def test_a_release_name_with_a_comma_and_a_backslash_mounts(tmp_path, v1_archive, fuse_mount):
    name = "rel,ro=x,b\\c"
    store = tmp_path / "store"
    clone_ok(FIXTURES / PAIR_V1, store / name)
    target = tmp_path / "image"
    m = fuse_mount(store / name, target, v1_archive.source_total_size)
    with open(target, "rb") as f:
        assert hashlib.blake2b(f.read()).digest() == v1_archive.source_checksum
    # The name stayed whole: the mount's source is it, no option came out of it.
    with open("/proc/self/mountinfo") as f:
        line = next(l for l in f if l.split()[4] == os.path.realpath(target))
    fields = line.split()
    assert fields[fields.index("-") + 2] == "ihop:rel,ro=x,b\\134c"  # mountinfo writes "\" as \134
    assert "x" not in super_options(target)
    assert m.unmount() == 0
