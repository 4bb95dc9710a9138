# SPDX-License-Identifier: MIT
"""Releases with more chunk files than a process may keep open.

A real root file system has tens of thousands of chunks; a process started
from an initramfs or by busybox may open 1024 files. Where it may (with
CAP_SYS_RESOURCE: root in an initramfs), ihop raises the limit to cover the
chunk files of the releases it reads; where it may not, it keeps as many
open as the limit allows and opens the others for each read (the degraded
mode). Releases of 6,144 and 65,536 unique chunks (small fixed-size chunks
of random data, so every chunk is its own file) are read back bit-perfect
in the degraded mode through `ihop serve` (nbdcopy) and through FUSE, with
RLIMIT_NOFILE at 1024 (soft and hard) and CAP_SYS_RESOURCE dropped (as
root: from the bounding set), and as a user without capabilities; the
raise, where this host's root may raise a hard limit; the soft limit raised
to the hard one to cover every release served. The kernel-NBD test
(test_kernel_nbd.py) has root raise the limit in qemu, as the root storage
daemon.

And a chunk that could not be opened because the process was out of
descriptors is not taken for a bad chunk: once descriptors are free again
it reads as ever."""

import ctypes
import hashlib
import os
import random
import resource
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from bita_archive import parse_archive
from ihop_run import IHOP, clone_ok, ihop
from test_serve import EIO, RawNbd, Server, nbdcopy_digest, short_tmpdir

STEP = 60
FD_LIMIT = 1024
# name -> (image size, chunk size): 6,144 and 65,536 unique chunks
RELEASES = {"r6k": (6144 * 512, 512), "r64k": (65536 * 512, 512)}


PR_CAPBSET_DROP = 24
CAP_SYS_RESOURCE = 24
NOBODY = 65534
RESERVED = 256  # descriptors ihop leaves to sockets and the rest (src/fd_cache.c)


def limit_fds(n, soft=None):
    """preexec_fn: RLIMIT_NOFILE soft:n (soft defaults to n), and no
    CAP_SYS_RESOURCE after exec (dropped from root's bounding set), so
    that ihop can raise neither limit past n: the degraded mode, here and
    on hosts whose root has the capability."""
    def set_limit():
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft or n, n))
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_CAPBSET_DROP, CAP_SYS_RESOURCE, 0, 0, 0) != 0 and os.geteuid() == 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP, CAP_SYS_RESOURCE)")
    return set_limit


def has_cap_sys_resource() -> bool:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("CapEff:"):
                return bool(int(line.split()[1], 16) >> CAP_SYS_RESOURCE & 1)
    return False


def nofile(pid) -> str:
    """'SOFT HARD' of a process's RLIMIT_NOFILE."""
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max open files"):
            return " ".join(line.split()[3:5])
    raise AssertionError(f"/proc/{pid}/limits has no open-file limit")


def wait_for_line(path, text, proc, timeout=STEP) -> str:
    """The first line of the file at path holding text, waited for."""
    deadline = time.monotonic() + timeout
    while True:
        lines = [ln for ln in Path(path).read_text(errors="replace").splitlines() if text in ln]
        if lines:
            return lines[0]
        assert proc.poll() is None, f"exited {proc.returncode}: {Path(path).read_text()}"
        assert time.monotonic() < deadline, f"no line with {text!r}: {Path(path).read_text()}"
        time.sleep(0.02)


def start_serve(d, releases, preexec, *opts):
    """`ihop -v serve --unix d/s RELEASES` started with preexec; waited for."""
    sock = d / "s"
    with open(d / "stderr", "wb") as err:
        p = subprocess.Popen([IHOP, "-v", "serve", *opts, "--unix", str(sock), *map(str, releases)],
                             stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err, preexec_fn=preexec)
    wait_for_line(d / "stderr", "ihop: serving", p)
    return p, sock


@pytest.fixture(scope="module")
def many(tmp_path_factory):
    """A store holding r6k and r64k, and each image's BLAKE2b-512."""
    work = tmp_path_factory.mktemp("many")
    store = work / "store"
    digests = {}
    for name, (size, chunk) in RELEASES.items():
        img = work / f"{name}.img"
        data = os.urandom(size)
        img.write_bytes(data)
        digests[name] = hashlib.blake2b(data).digest()
        r = ihop("compress", "--fixed-size", str(chunk), "--compression", "none", "-i", img, work / f"{name}.cba",
                 timeout=STEP)
        assert r.returncode == 0, r.stderr
        clone_ok(work / f"{name}.cba", store / name)
        n_files = sum(len(files) for _, _, files in os.walk(store / "chunks"))
        assert n_files >= size // chunk, "every chunk is a file of its own"
    return store, digests


def open_fds(pid) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


@pytest.mark.parametrize("verify", [False, True], ids=["plain", "verify"])
@pytest.mark.parametrize("name", RELEASES)
def test_serve_reads_every_chunk_under_1024_descriptors(many, name, verify):
    store, digests = many
    d = short_tmpdir()
    sock = d / "s"
    args = [IHOP, "serve", *(["--verify"] if verify else []), "--unix", str(sock), str(store / name)]
    with open(d / "stderr", "wb") as err:
        p = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err,
                             preexec_fn=limit_fds(FD_LIMIT))
    try:
        deadline = time.monotonic() + STEP
        while not sock.exists():
            assert p.poll() is None, (d / "stderr").read_text()
            assert time.monotonic() < deadline
            time.sleep(0.02)
        for _ in range(2):  # the second pass reads files closed to make room
            rc, digest, msg = nbdcopy_digest(f"nbd+unix:///{name}?socket={sock}", timeout=STEP)
            assert rc == 0, msg + (d / "stderr").read_text()
            assert digest == digests[name]
        assert open_fds(p.pid) < FD_LIMIT
        assert "error" not in (d / "stderr").read_text()
    finally:
        p.terminate()
        assert p.wait(STEP) == 0
        subprocess.run(["rm", "-rf", str(d)])


@pytest.mark.skipif(not os.path.exists("/dev/fuse"), reason="/dev/fuse is missing: no FUSE here")
@pytest.mark.parametrize("name", RELEASES)
def test_fuse_reads_every_chunk_under_1024_descriptors(many, name, tmp_path):
    store, digests = many
    target = tmp_path / f"{name}.img"
    target.touch()
    size = RELEASES[name][0]
    with open(tmp_path / "stderr", "wb") as err:
        p = subprocess.Popen([IHOP, "mount", str(store / name), str(target)], stdin=subprocess.DEVNULL,
                             stdout=subprocess.DEVNULL, stderr=err, preexec_fn=limit_fds(FD_LIMIT))
    try:
        deadline = time.monotonic() + STEP
        while os.stat(target).st_size != size:
            assert p.poll() is None, (tmp_path / "stderr").read_text()
            assert time.monotonic() < deadline
            time.sleep(0.02)
        h = hashlib.blake2b()
        # O_DIRECT is not needed: the page cache is empty for a new mount
        with open(target, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        assert h.digest() == digests[name]
        assert open_fds(p.pid) < FD_LIMIT
    finally:
        subprocess.run(["umount", str(target)], timeout=STEP)
        try:
            assert p.wait(STEP) == 0, (tmp_path / "stderr").read_text()
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()


def test_chunk_unreadable_for_want_of_descriptors_reads_once_they_are_free(many):
    """With 40 descriptors in all, sessions are opened until the server can
    open nothing more: a read then fails (EIO, the one honest answer), but
    once sessions end, the very same read succeeds. The chunk was not
    marked bad for a failure that was the process's, not its."""
    store, digests = many
    image_bytes = None
    d = short_tmpdir()
    sock = d / "s"
    with open(d / "stderr", "wb") as err:
        p = subprocess.Popen([IHOP, "serve", "--unix", str(sock), str(store / "r6k")], stdin=subprocess.DEVNULL,
                             stdout=subprocess.DEVNULL, stderr=err, preexec_fn=limit_fds(40))
    clients = []
    try:
        deadline = time.monotonic() + STEP
        while not sock.exists():
            assert p.poll() is None, (d / "stderr").read_text()
            assert time.monotonic() < deadline
            time.sleep(0.02)
        # Sessions until the server's descriptors run out: a newcomer is no
        # longer greeted (accept fails and the server waits for a place).
        while True:
            c = RawNbd(sock, timeout=1)
            clients.append(c)
            try:
                c.go("r6k")
            except (TimeoutError, socket.timeout, EOFError, ConnectionResetError):
                clients.pop().close()
                break
            assert len(clients) < 60, "the server never ran out of descriptors"
        assert open_fds(p.pid) == 40
        reader = clients[0]
        reader.s.settimeout(STEP)
        error, _ = reader.read(100 * 512, 4096)
        assert error == EIO
        # descriptors free again
        for c in clients[1:]:
            c.close()
        time.sleep(0.5)
        error, data = reader.read(100 * 512, 4096)
        assert error == 0
        img = Path(store).parent / "r6k.img"
        image_bytes = img.read_bytes()
        assert data == image_bytes[100 * 512:100 * 512 + 4096]
        # and the whole release still reads, through a new session
        rc, digest, msg = nbdcopy_digest(f"nbd+unix:///r6k?socket={sock}", timeout=STEP)
        assert rc == 0, msg
        assert digest == digests["r6k"]
        assert p.poll() is None
        log = (d / "stderr").read_text()
        assert "Too many open files" in log, log
    finally:
        for c in clients:
            c.close()
        p.terminate()
        p.wait(STEP)
        subprocess.run(["rm", "-rf", str(d)])


@pytest.fixture
def world_readable_r6k(many):
    """r6k in a store that uid 65534 can read, and a directory it can write
    its socket into."""
    store, digests = many
    top = Path(tempfile.mkdtemp(prefix="ihop-fd-", dir="/tmp"))
    try:
        os.chmod(top, 0o777)
        clone_ok(Path(store).parent / "r6k.cba", top / "store" / "r6k")
        for d, _, _ in os.walk(top / "store"):
            os.chmod(d, 0o755)
        yield top, top / "store" / "r6k", digests["r6k"]
    finally:
        subprocess.run(["rm", "-rf", str(top)])


def test_a_user_without_cap_sys_resource_keeps_the_limit_and_reads_bit_perfect(world_readable_r6k):
    """The degraded mode: a user's process whose hard limit is 1024 cannot
    raise it; ihop keeps 768 of the 6,144 chunk files open, opens the
    others for each read, says so at debug level, and reads every byte."""
    top, release, digest = world_readable_r6k
    setpriv = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", "--inh-caps=-all"]
    d = top
    with open(d / "stderr", "wb") as err:
        p = subprocess.Popen([*setpriv, IHOP, "-v", "serve", "--unix", str(d / "s"), str(release)],
                             stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err,
                             preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (FD_LIMIT, FD_LIMIT)))
    try:
        wait_for_line(d / "stderr", "ihop: serving", p)
        assert os.stat(f"/proc/{p.pid}").st_uid == NOBODY
        rc, got, msg = nbdcopy_digest(f"nbd+unix:///r6k?socket={d / 's'}", timeout=STEP)
        assert rc == 0, msg + (d / "stderr").read_text()
        assert got == digest
        line = wait_for_line(d / "stderr", "open-file limit", p)
        assert line == ("ihop: open-file limit 1024: 768 of the 6144 chunk files of the releases read stay open "
                        "(the others are opened for each read; raising the limit takes CAP_SYS_RESOURCE)"), line
        assert nofile(p.pid) == "1024 1024"
        assert open_fds(p.pid) <= FD_LIMIT
        assert "error" not in (d / "stderr").read_text()
    finally:
        p.terminate()
        assert p.wait(STEP) == 0


@pytest.mark.skipif(not has_cap_sys_resource(),
                    reason="this host's root lacks CAP_SYS_RESOURCE (a container's bounding set without it): the "
                           "raise is tested in qemu, test_kernel_nbd.py")
def test_root_with_cap_sys_resource_raises_the_limit_to_cover_the_chunk_files(many):
    """Root under `ulimit -n 1024` (soft and hard), as an initramfs starts
    it: the limit is raised, soft and hard, to the 6,144 chunk files plus
    256, said at debug level, and every chunk file stays open."""
    store, digests = many
    d = short_tmpdir()
    p, sock = start_serve(d, [store / "r6k"], lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (1024, 1024)))
    try:
        rc, got, msg = nbdcopy_digest(f"nbd+unix:///r6k?socket={sock}", timeout=STEP)
        assert rc == 0, msg
        assert got == digests["r6k"]
        line = wait_for_line(d / "stderr", "open-file limit", p)
        assert line == ("ihop: open-file limit raised from 1024 to 6400: all 6144 chunk files of the releases read "
                        "stay open, 256 descriptors are for the rest"), line
        assert nofile(p.pid) == "6400 6400"
        assert 6144 < open_fds(p.pid) <= 6400
    finally:
        p.terminate()
        assert p.wait(STEP) == 0
        subprocess.run(["rm", "-rf", str(d)])


def test_serve_of_two_releases_keeps_the_chunk_files_of_both_open(many, tmp_path):
    """Two releases served together: the cache is sized for the sum of
    their chunk files (6,144 + 3,072), which a soft limit of 1024 raised
    to its hard one, 12,000, covers; after both are read whole, all 9,216
    are open."""
    store, digests = many
    data = os.urandom(3072 * 512)
    (tmp_path / "r3k.img").write_bytes(data)
    r = ihop("compress", "--fixed-size", "512", "--compression", "none", "-i", tmp_path / "r3k.img",
             tmp_path / "r3k.cba", timeout=STEP)
    assert r.returncode == 0, r.stderr
    both = tmp_path / "store"
    clone_ok(Path(store).parent / "r6k.cba", both / "r6k")
    clone_ok(tmp_path / "r3k.cba", both / "r3k")
    d = short_tmpdir()
    p, sock = start_serve(d, [both / "r6k", both / "r3k"], limit_fds(12000, soft=1024))
    try:
        for name, digest in (("r6k", digests["r6k"]), ("r3k", hashlib.blake2b(data).digest())):
            rc, got, msg = nbdcopy_digest(f"nbd+unix:///{name}?socket={sock}", timeout=STEP)
            assert rc == 0, msg
            assert got == digest
        line = wait_for_line(d / "stderr", "open-file limit", p)
        assert line == "ihop: open-file limit 12000: all 9216 chunk files of the releases read stay open", line
        assert nofile(p.pid) == "12000 12000"
        assert 9216 < open_fds(p.pid) <= 12000
    finally:
        p.terminate()
        assert p.wait(STEP) == 0
        subprocess.run(["rm", "-rf", str(d)])


@pytest.mark.skipif(not os.path.exists("/dev/fuse"), reason="/dev/fuse is missing: no FUSE here")
def test_fuse_mount_raises_the_soft_limit_to_keep_every_chunk_file_open(many, tmp_path):
    """A FUSE mount of one release under a soft limit of 1024 and a hard
    one of 8192: the soft limit goes to the hard one (any process may),
    which covers the 6,144 chunk files: all stay open once read."""
    store, digests = many
    target = tmp_path / "r6k.img"
    target.touch()
    with open(tmp_path / "stderr", "wb") as err:
        p = subprocess.Popen([IHOP, "-v", "mount", str(store / "r6k"), str(target)], stdin=subprocess.DEVNULL,
                             stdout=subprocess.DEVNULL, stderr=err, preexec_fn=limit_fds(8192, soft=1024))
    try:
        deadline = time.monotonic() + STEP
        while os.stat(target).st_size != RELEASES["r6k"][0]:
            assert p.poll() is None, (tmp_path / "stderr").read_text()
            assert time.monotonic() < deadline
            time.sleep(0.02)
        with open(target, "rb") as f:
            assert hashlib.blake2b(f.read()).digest() == digests["r6k"]
        line = wait_for_line(tmp_path / "stderr", "open-file limit", p)
        assert line == "ihop: open-file limit 8192: all 6144 chunk files of the releases read stay open", line
        assert nofile(p.pid) == "8192 8192"
        assert 6144 < open_fds(p.pid) <= 8192
    finally:
        subprocess.run(["umount", str(target)], timeout=STEP)
        try:
            assert p.wait(STEP) == 0, (tmp_path / "stderr").read_text()
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()


def test_zero_chunks_are_read_without_their_file(tmp_path):
    """An image's unused space is zeros: the chunk of zeros, stored once and
    used many times, is recognised by its hash and read as zeros, with no
    open and no pread per chunk; gone from the store after the start, it
    still reads (every other chunk still needs its file)."""
    data = os.urandom(1 << 20) + bytes(2 << 20) + os.urandom(1 << 20)
    img = tmp_path / "z.img"
    img.write_bytes(data)
    r = ihop("compress", "--fixed-size", "4KiB", "--compression", "none", "-i", img, tmp_path / "z.cba")
    assert r.returncode == 0, r.stderr
    store = tmp_path / "s"
    clone_ok(tmp_path / "z.cba", store / "z")
    zero_hash = hashlib.blake2b(bytes(4096)).hexdigest()
    zero_chunk = store / "chunks" / zero_hash[:4] / f"{zero_hash}.chunk"
    assert zero_chunk.is_file()
    srv, untouched = Server([store / "z"]), Server([store / "z"])
    try:
        zero_chunk.unlink()
        rc, digest, msg = nbdcopy_digest(srv.uri("z"), timeout=STEP)
        assert rc == 0, msg + srv.stderr
        assert digest == hashlib.blake2b(data).digest()
        # A chunk of data removed does fail, on a server that never opened
        # it: the zeros are no accident.
        victim = hashlib.blake2b(data[:4096]).hexdigest()
        (store / "chunks" / victim[:4] / f"{victim}.chunk").unlink()
        with untouched.client() as c:
            c.go("z")
            assert c.read(0, 4096)[0] == EIO
            assert c.read(1 << 20, 8192) == (0, bytes(8192))
        assert srv.stop() == 0
        assert untouched.stop() == 0
    finally:
        srv.cleanup()
        untouched.cleanup()


def test_the_chunk_of_zeros_is_found_among_many_repeated_sizes(tmp_path):
    """Repeated data before the free space: more than 16 sizes of chunks
    used twice come before the chunk of zeros in the archive, more than the
    sizes whose zeros are hashed. The chunk of zeros, the most used, is
    tried first and still read without its file."""
    rnd = random.Random(7)
    blocks = [rnd.randbytes(rnd.randrange(96 << 10, 400 << 10)) for _ in range(24)]
    data = b"".join(b + b for b in blocks) + bytes(4 << 20) + rnd.randbytes(1 << 20)
    img = tmp_path / "z.img"
    img.write_bytes(data)
    r = ihop("compress", "--max-chunk-size", "1MiB", "--compression", "zstd", "-i", img, tmp_path / "z.cba")
    assert r.returncode == 0, r.stderr
    a = parse_archive(tmp_path / "z.cba")
    uses = {}
    for i in a.order:
        uses[i] = uses.get(i, 0) + 1
    zeros = [i for i, c in enumerate(a.chunks) if c.hash == hashlib.blake2b(bytes(c.source_size)).digest()[:len(c.hash)]]
    assert len(zeros) == 1 and uses[zeros[0]] >= 3, "the premise: one chunk of zeros, used most"
    assert len({a.chunks[i].source_size for i in range(zeros[0]) if uses[i] >= 2}) > 16, "the premise"
    store = tmp_path / "s"
    clone_ok(tmp_path / "z.cba", store / "z")
    hx = a.chunks[zeros[0]].hash.hex()
    srv = Server([store / "z"])
    try:
        (store / "chunks" / hx[:4] / f"{hx}.chunk").unlink()
        rc, digest, msg = nbdcopy_digest(srv.uri("z"), timeout=STEP)
        assert rc == 0, msg + srv.stderr
        assert digest == hashlib.blake2b(data).digest()
        assert srv.stop() == 0
    finally:
        srv.cleanup()
