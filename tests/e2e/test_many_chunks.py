# SPDX-License-Identifier: MIT
"""Releases with more chunk files than a process may keep open.

A real root file system has tens of thousands of chunks; a process started
from an initramfs or by busybox may open 1024 files. Releases of 6,144 and
65,536 unique chunks (small fixed-size chunks of random data, so every chunk
is its own file) are read back bit-perfect through `ihop serve` (nbdcopy)
and through FUSE, with RLIMIT_NOFILE at 1024 (soft and hard). The kernel-NBD
test (test_kernel_nbd.py) reads the same kind of releases in qemu.

And a chunk that could not be opened because the process was out of
descriptors is not taken for a bad chunk: once descriptors are free again
it reads as ever."""

import hashlib
import os
import random
import resource
import socket
import subprocess
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


def limit_fds(n):
    def set_limit():
        resource.setrlimit(resource.RLIMIT_NOFILE, (n, n))
    return set_limit


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
