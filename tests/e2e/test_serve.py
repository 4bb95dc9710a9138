# SPDX-License-Identifier: MIT
"""`ihop serve`: the NBD server, driven by real clients (nbdinfo, nbdcopy from
libnbd) and by a raw-socket client of the tests' own for what libnbd will not
send (writes to a read-only export, reads past the end, protocol abuse).

Every server listens on a unix socket in a private temporary directory and is
stopped within its test; every subprocess runs with a timeout."""

import hashlib
import json
import random
import os
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import pytest

from bita_archive import parse_archive
from ihop_run import FIXTURES, GOOD_ARCHIVES, IHOP, cat_checksum, clone_ok, ihop, run
from local_http import free_port, wait_port

NBDINFO = shutil.which("nbdinfo") or "/usr/bin/nbdinfo"
NBDCOPY = shutil.which("nbdcopy") or "/usr/bin/nbdcopy"
STEP = 30  # seconds: timeout of one subprocess or one wait

PAIR_V1 = "pair/v1.ext4.cba"
# release name in the shared store -> fixture archive
RELEASES = {
    "rand": "rand-0_1_1-none.cba",
    "zero-lzma": "zero-0_1_1-lzma.cba",
    "zero-zstd": "zero-0_1_1-zstd.cba",
    "zero-brotli": "zero-0_7_1-brotli.cba",
    "v1": PAIR_V1,
}
NAME_OF = {a: n for n, a in RELEASES.items()}

# NBD protocol (https://github.com/NetworkBlockDevice/nbd/blob/master/doc/proto.md)
INIT_MAGIC = b"NBDMAGIC"
OPTS_MAGIC = b"IHAVEOPT"
REP_MAGIC = 0x0003E889045565A9
REQUEST_MAGIC = 0x25609513
SIMPLE_REPLY_MAGIC = 0x67446698
FLAG_FIXED_NEWSTYLE, FLAG_NO_ZEROES = 1, 2
OPT_EXPORT_NAME, OPT_ABORT, OPT_LIST, OPT_STARTTLS, OPT_INFO, OPT_GO = 1, 2, 3, 5, 6, 7
REP_ACK, REP_SERVER, REP_INFO = 1, 2, 3
REP_ERR_UNSUP = (1 << 31) | 1
REP_ERR_INVALID = (1 << 31) | 3
REP_ERR_UNKNOWN = (1 << 31) | 6
INFO_EXPORT, INFO_BLOCK_SIZE = 0, 3
TFLAG_HAS_FLAGS, TFLAG_READ_ONLY = 1, 2
CMD_READ, CMD_WRITE, CMD_DISC, CMD_FLUSH, CMD_TRIM, CMD_CACHE, CMD_WRITE_ZEROES = 0, 1, 2, 3, 4, 5, 6
EPERM, EIO, EINVAL = 1, 5, 22


# --------------------------------------------------------------------------
# Helpers


def short_tmpdir():
    """A unix socket path must fit in 108 bytes: pytest's tmp_path may not."""
    return Path(tempfile.mkdtemp(prefix="ihop-nbd-", dir="/tmp"))


class Server:
    """One `ihop serve --unix` process."""

    def __init__(self, releases, *opts):
        self.dir = short_tmpdir()
        self.sock = self.dir / "nbd.sock"
        self.errfile = self.dir / "stderr"
        args = [IHOP, "serve", *opts, "--unix", self.sock, *releases]
        with open(self.errfile, "wb") as err:
            self.proc = subprocess.Popen([str(a) for a in args], stdin=subprocess.DEVNULL,
                                         stdout=subprocess.DEVNULL, stderr=err)
        deadline = time.monotonic() + STEP
        while "ihop: serving" not in self.stderr:
            assert self.proc.poll() is None, f"ihop serve exited {self.proc.returncode}: {self.stderr}"
            assert time.monotonic() < deadline, f"ihop serve did not start: {self.stderr}"
            time.sleep(0.02)
        assert self.sock.is_socket()

    @property
    def stderr(self) -> str:
        return self.errfile.read_text(errors="replace")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def uri(self, name="") -> str:
        return f"nbd+unix:///{name}?socket={self.sock}"

    def client(self, timeout=10) -> "RawNbd":
        return RawNbd(self.sock, timeout)

    def stop(self, sig=signal.SIGTERM) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(STEP)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(STEP)
            raise AssertionError(f"ihop serve did not stop on signal {sig}")

    def cleanup(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(STEP)
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def serve():
    """Starts servers for a test (serve(releases, *options)); kills any left at teardown."""
    servers = []

    def start(releases, *opts):
        s = Server(releases, *opts)
        servers.append(s)
        return s

    yield start
    for s in servers:
        s.cleanup()


class NbdOptionError(Exception):
    def __init__(self, reply_type):
        super().__init__(f"option refused with reply type {reply_type:#x}")
        self.reply_type = reply_type


class RawNbd:
    """A minimal fixed-newstyle NBD client over a raw socket, for requests
    libnbd's tools never send."""

    def __init__(self, path, timeout=10):
        self.s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.s.settimeout(timeout)
        self.s.connect(str(path))
        self.cookie = 0x1000
        self.size = None
        self.tflags = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        self.s.close()

    def send(self, data: bytes):
        self.s.sendall(data)

    def recv_exact(self, n) -> bytes:
        out = bytearray()
        while len(out) < n:
            b = self.s.recv(min(n - len(out), 1 << 20))
            if not b:
                raise EOFError(f"connection closed after {len(out)} of {n} bytes")
            out += b
        return bytes(out)

    def closed_by_peer(self) -> bool:
        """True if the server hangs up (EOF or reset) before sending anything more."""
        try:
            return self.s.recv(1) == b""
        except ConnectionResetError:
            return True

    # handshake

    def hello(self, client_flags=FLAG_FIXED_NEWSTYLE | FLAG_NO_ZEROES) -> int:
        h = self.recv_exact(18)
        assert h[:8] == INIT_MAGIC and h[8:16] == OPTS_MAGIC, h
        (server_flags,) = struct.unpack(">H", h[16:])
        assert server_flags & FLAG_FIXED_NEWSTYLE, server_flags
        self.send(struct.pack(">I", client_flags))
        return server_flags

    def send_option(self, option, data=b"", length=None):
        self.send(OPTS_MAGIC + struct.pack(">II", option, len(data) if length is None else length) + data)

    def option_reply(self):
        magic, option, rtype, length = struct.unpack(">QIII", self.recv_exact(20))
        assert magic == REP_MAGIC, hex(magic)
        return option, rtype, self.recv_exact(length)

    def info(self, name, option=OPT_GO, requests=()):
        """NBD_OPT_GO (or INFO) for an export; returns the NBD_REP_INFO payloads.
        Raises NbdOptionError on an error reply."""
        n = name.encode()
        self.send_option(option, struct.pack(">I", len(n)) + n + struct.pack(">H", len(requests)) +
                         b"".join(struct.pack(">H", r) for r in requests))
        infos = []
        while True:
            opt, rtype, data = self.option_reply()
            assert opt == option
            if rtype == REP_INFO:
                infos.append(data)
                (itype,) = struct.unpack(">H", data[:2])
                if itype == INFO_EXPORT:
                    _, size, flags = struct.unpack(">HQH", data)
                    self.size, self.tflags = size, flags
            elif rtype == REP_ACK:
                return infos
            else:
                assert rtype & (1 << 31), f"unexpected reply type {rtype}"
                raise NbdOptionError(rtype)

    def go(self, name):
        self.hello()
        self.info(name)
        return self

    # transmission

    def request(self, cmd, offset=0, length=0, payload=b"", flags=0) -> int:
        self.cookie += 1
        self.send(struct.pack(">IHHQQI", REQUEST_MAGIC, flags, cmd, self.cookie, offset, length) + payload)
        return self.cookie

    def reply(self, cookie, data_len=0):
        magic, error, got = struct.unpack(">IIQ", self.recv_exact(16))
        assert magic == SIMPLE_REPLY_MAGIC, hex(magic)
        assert got == cookie, f"reply cookie {got:#x} for request {cookie:#x}"
        data = self.recv_exact(data_len) if error == 0 and data_len else b""
        return error, data

    def cmd(self, cmd, offset=0, length=0, payload=b""):
        return self.reply(self.request(cmd, offset, length, payload), length if cmd == CMD_READ else 0)

    def read(self, offset, length):
        return self.cmd(CMD_READ, offset, length)


def nbdinfo_json(uri, *opts):
    r = run([NBDINFO, "--json", *opts, uri], timeout=STEP)
    assert r.returncode == 0, f"nbdinfo {uri} failed: {r.stderr}"
    return json.loads(r.stdout)


def nbdcopy_digest(uri, timeout=STEP):
    """Runs `nbdcopy URI -`; returns (exit status, BLAKE2b-512 of its output, stderr)."""
    h = hashlib.blake2b()
    with tempfile.TemporaryFile() as err:
        with subprocess.Popen([NBDCOPY, uri, "-"], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=err) as p:
            timer = threading.Timer(timeout, p.kill)
            timer.start()
            try:
                for block in iter(lambda: p.stdout.read(1 << 20), b""):
                    h.update(block)
                rc = p.wait()
            finally:
                timer.cancel()
        err.seek(0)
        return rc, h.digest(), err.read().decode(errors="replace")


def image_of(release) -> bytes:
    r = subprocess.run([IHOP, "cat", str(release)], capture_output=True, timeout=STEP, stdin=subprocess.DEVNULL)
    assert r.returncode == 0, r.stderr
    return r.stdout


def chunk_layout(archive):
    """[(image offset, size, chunk)] in image order."""
    out, off = [], 0
    for i in archive.order:
        c = archive.chunks[i]
        out.append((off, c.source_size, c))
        off += c.source_size
    assert off == archive.source_total_size
    return out


def chunk_path(store, chunk) -> Path:
    hx = chunk.hash.hex()
    return Path(store) / "chunks" / hx[:4] / f"{hx}.chunk"


def pick_victim(archive, store):
    """A chunk of the middle of the image used exactly once, of some size:
    (its image offset, size, chunk file, index in image order)."""
    layout = chunk_layout(archive)
    uses = {}
    for _, _, c in layout:
        uses[c.hash] = uses.get(c.hash, 0) + 1
    candidates = [(abs(pos - len(layout) // 2), pos) for pos, (off, size, c) in enumerate(layout)
                  if uses[c.hash] == 1 and size >= 16384 and 0 < pos < len(layout) - 1]
    _, pos = min(candidates)
    off, size, c = layout[pos]
    p = chunk_path(store, c)
    assert p.is_file() and p.stat().st_size == size, p
    return off, size, p, pos


# --------------------------------------------------------------------------
# Fixtures


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """One store holding every good fixture release and pair/v1, never modified."""
    s = tmp_path_factory.mktemp("serve") / "store"
    for name, archive in RELEASES.items():
        clone_ok(FIXTURES / archive, s / name)
    return s


@pytest.fixture(scope="module")
def parsed():
    return {a: parse_archive(FIXTURES / a) for a in RELEASES.values()}


@pytest.fixture(scope="module")
def digests(store, parsed):
    """BLAKE2b-512 of each release's image by `ihop cat`, checked against the archive."""
    out = {}
    for name, archive in RELEASES.items():
        out[name] = cat_checksum(store / name)
        assert out[name] == parsed[archive].source_checksum
    return out


@pytest.fixture(scope="module")
def v1_image(store):
    img = image_of(store / "v1")
    assert len(img) == 24 << 20
    return img


@pytest.fixture
def v1_store(tmp_path):
    """A private store holding pair/v1 only, for tests that damage it."""
    s = tmp_path / "store"
    clone_ok(FIXTURES / PAIR_V1, s / "v1")
    return s


# --------------------------------------------------------------------------
# Real clients


@pytest.mark.parametrize("archive", GOOD_ARCHIVES + [PAIR_V1])
def test_serve_release_bit_perfect(serve, store, parsed, digests, archive):
    name = NAME_OF[archive]
    a = parsed[archive]
    srv = serve([store / name])

    info = nbdinfo_json(srv.uri(name))
    (e,) = info["exports"]
    assert e["export-name"] == name
    assert e["export-size"] == a.source_total_size
    assert e["is_read_only"] is True
    assert e["can_trim"] is False and e["can_zero"] is False

    rc, digest, err = nbdcopy_digest(srv.uri(name))
    assert rc == 0, err
    assert digest == digests[name] == a.source_checksum

    # The first release is the default export (empty name).
    rc, digest, err = nbdcopy_digest(srv.uri(""))
    assert rc == 0, err
    assert digest == a.source_checksum

    assert srv.stop() == 0
    assert "warning" not in srv.stderr and "error" not in srv.stderr, srv.stderr


def test_list_every_export(serve, store, parsed):
    names = list(RELEASES)
    srv = serve([store / n for n in names])
    info = nbdinfo_json(srv.uri(), "--list")
    got = {e["export-name"]: e for e in info["exports"]}
    assert sorted(got) == sorted(names)
    for n in names:
        assert got[n]["export-size"] == parsed[RELEASES[n]].source_total_size
        assert got[n]["is_read_only"] is True

    # The same over the raw protocol: NBD_OPT_LIST names every export, in order, then acks.
    with srv.client() as c:
        c.hello()
        c.send_option(OPT_LIST)
        listed = []
        while True:
            opt, rtype, data = c.option_reply()
            assert opt == OPT_LIST
            if rtype == REP_ACK:
                break
            assert rtype == REP_SERVER
            (n,) = struct.unpack(">I", data[:4])
            listed.append(data[4:4 + n].decode())
        assert listed == names
        # NBD_OPT_LIST with a payload is invalid; the session goes on.
        c.send_option(OPT_LIST, b"xx")
        assert c.option_reply()[1] == REP_ERR_INVALID
        c.info("rand")
        assert c.size == parsed[RELEASES["rand"]].source_total_size
    assert srv.stop() == 0


def test_parallel_clients(serve, store, digests, v1_image):
    names = list(RELEASES)
    srv = serve([store / n for n in names])
    jobs = ["v1", "v1", "v1", "rand", "zero-zstd", "zero-brotli"]
    results = [None] * len(jobs)
    raw_errors = []

    def copy(i):
        results[i] = nbdcopy_digest(srv.uri(jobs[i]), timeout=60)

    def raw_reader(seed):
        # Meanwhile, raw clients read v1 in scattered pieces and check each.
        try:
            with srv.client() as c:
                c.go("v1")
                for k in range(40):
                    off = (seed * 7919 + k * 611953) % (len(v1_image) - 70000)
                    n = 1 + (k * 4099 + seed) % 65536
                    err, data = c.read(off, n)
                    assert err == 0 and data == v1_image[off:off + n], (off, n, err)
        except Exception as e:  # reported below
            raw_errors.append(repr(e))

    threads = [threading.Thread(target=copy, args=(i,)) for i in range(len(jobs))]
    threads += [threading.Thread(target=raw_reader, args=(s,)) for s in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(90)
        assert not t.is_alive()
    assert raw_errors == []
    for name, (rc, digest, err) in zip(jobs, results):
        assert rc == 0, f"nbdcopy {name}: {err}"
        assert digest == digests[name], f"nbdcopy {name} is not bit-perfect"
    assert srv.alive()
    assert srv.stop() == 0


def test_tcp_listen(store, digests):
    """--listen HOST:PORT on 127.0.0.1 serves the same bytes."""
    for attempt in range(3):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        d = short_tmpdir()
        try:
            with open(d / "stderr", "wb") as err:
                p = subprocess.Popen([IHOP, "serve", "--listen", f"127.0.0.1:{port}", str(store / "rand")],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err)
            try:
                deadline = time.monotonic() + STEP
                while "ihop: serving" not in (d / "stderr").read_text() and p.poll() is None:
                    assert time.monotonic() < deadline
                    time.sleep(0.02)
                if p.poll() is not None:
                    continue  # the port was taken meanwhile: try another
                rc, digest, err = nbdcopy_digest(f"nbd://127.0.0.1:{port}/rand")
                assert rc == 0, err
                assert digest == digests["rand"]
                p.send_signal(signal.SIGTERM)
                assert p.wait(STEP) == 0
                return
            finally:
                if p.poll() is None:
                    p.kill()
                    p.wait(STEP)
        finally:
            shutil.rmtree(d, ignore_errors=True)
    pytest.fail("could not start ihop serve on a free TCP port")


# --------------------------------------------------------------------------
# The raw protocol


def test_write_trim_and_bounds(serve, store, v1_image):
    srv = serve([store / "v1"])
    size = len(v1_image)
    with srv.client() as c:
        c.hello()
        infos = c.info("v1", requests=(INFO_BLOCK_SIZE,))
        assert c.size == size
        assert c.tflags & TFLAG_HAS_FLAGS and c.tflags & TFLAG_READ_ONLY
        assert any(struct.unpack(">H", i[:2])[0] == INFO_BLOCK_SIZE for i in infos)

        # A write is refused with EPERM, its payload consumed: the connection stays in step.
        assert c.cmd(CMD_WRITE, 4096, 512, b"\xaa" * 512) == (EPERM, b"")
        assert c.read(4096, 512) == (0, v1_image[4096:4608])
        # Also with a payload larger than any internal buffer.
        assert c.cmd(CMD_WRITE, 0, 1 << 20, os.urandom(1 << 20)) == (EPERM, b"")
        assert c.read(0, 1 << 20) == (0, v1_image[:1 << 20])

        assert c.cmd(CMD_TRIM, 0, 65536) == (EPERM, b"")
        assert c.cmd(CMD_WRITE_ZEROES, 0, 65536) == (EPERM, b"")
        assert c.cmd(CMD_FLUSH) == (0, b"")
        assert c.cmd(CMD_CACHE, 0, 4096) == (0, b"")
        assert c.cmd(99, 0, 0) == (EINVAL, b"")  # no such command

        # Reads past the end are invalid; reads up to it are fine.
        assert c.read(size - 100, 200)[0] == EINVAL
        assert c.read(size, 1)[0] == EINVAL
        assert c.read(size + 4096, 512)[0] == EINVAL
        assert c.read((1 << 64) - 512, 1024)[0] == EINVAL  # offset + length wraps around
        assert c.read(0, 64 << 20)[0] == EINVAL  # beyond the export and the request limit
        assert c.read(size - 512, 512) == (0, v1_image[-512:])
        assert c.read(size, 0) == (0, b"")

        # Pipelined requests: each reply carries its request's cookie (in
        # any order: a read that must open a chunk file goes to a worker).
        reqs = {c.request(CMD_READ, off, 3000): off for off in (0, 123457, size - 3000, 7 << 20)}
        while reqs:
            magic, error, cookie = struct.unpack(">IIQ", c.recv_exact(16))
            assert magic == SIMPLE_REPLY_MAGIC and error == 0
            off = reqs.pop(cookie)
            assert c.recv_exact(3000) == v1_image[off:off + 3000]

        # NBD_CMD_DISC: the server hangs up.
        c.request(CMD_DISC)
        assert c.closed_by_peer()
    assert srv.alive()
    assert srv.stop() == 0


def test_option_negotiation(serve, store, v1_image):
    srv = serve([store / "v1", store / "rand"])
    with srv.client() as c:
        c.hello()
        with pytest.raises(NbdOptionError) as e:
            c.info("no-such-release")
        assert e.value.reply_type == REP_ERR_UNKNOWN
        with pytest.raises(NbdOptionError) as e:
            c.info("no-such-release", option=OPT_INFO)
        assert e.value.reply_type == REP_ERR_UNKNOWN
        # A GO payload whose name length overruns it is invalid.
        c.send_option(OPT_GO, struct.pack(">I", 100) + b"v1" + struct.pack(">H", 0))
        assert c.option_reply()[1] == REP_ERR_INVALID
        # Unsupported options are refused, not fatal.
        c.send_option(OPT_STARTTLS)
        assert c.option_reply()[1] == REP_ERR_UNSUP
        c.send_option(0x4242, b"abc")
        assert c.option_reply()[1] == REP_ERR_UNSUP
        # NBD_OPT_INFO tells without entering transmission.
        c.info("rand", option=OPT_INFO)
        assert c.size == 256 << 10
        # After all of that, GO still works.
        c.info("v1")
        assert c.size == len(v1_image)
        assert c.read(1024, 1024) == (0, v1_image[1024:2048])

    # NBD_OPT_ABORT is acked, then the server hangs up.
    with srv.client() as c:
        c.hello()
        c.send_option(OPT_ABORT)
        assert c.option_reply()[:2] == (OPT_ABORT, REP_ACK)
        assert c.closed_by_peer()

    # The old NBD_OPT_EXPORT_NAME: size and flags, no zeroes (we asked for none).
    with srv.client() as c:
        c.hello()
        c.send_option(OPT_EXPORT_NAME, b"v1")
        size, flags = struct.unpack(">QH", c.recv_exact(10))
        assert size == len(v1_image) and flags & TFLAG_READ_ONLY
        assert c.read(len(v1_image) - 10, 10) == (0, v1_image[-10:])
    # ... and with an unknown name, which has no error reply, it hangs up.
    with srv.client() as c:
        c.hello()
        c.send_option(OPT_EXPORT_NAME, b"nope")
        assert c.closed_by_peer()
    assert srv.alive()
    assert srv.stop() == 0


def test_abusive_clients_do_not_disturb_others(serve, store, digests, v1_image):
    srv = serve([store / "v1", store / "rand"])
    held = []
    try:
        # A client that connects and says nothing, held open throughout.
        idle = srv.client()
        held.append(idle)

        # Connects and disconnects at once.
        for _ in range(5):
            srv.client().close()

        # Garbage instead of the client flags: hung up on.
        with srv.client() as c:
            c.recv_exact(18)
            c.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            assert c.closed_by_peer()
        # Garbage from the first byte, never reading the greeting.
        with srv.client() as c:
            c.send(os.urandom(4096))
        # Good flags, then an option without the magic: hung up on.
        with srv.client() as c:
            c.hello()
            c.send(b"\x00" * 16 + b"\xff" * 64)
            assert c.closed_by_peer()
        # Unknown client flag bits: hung up on.
        with srv.client() as c:
            c.hello(client_flags=0xFFFFFFFF)
            assert c.closed_by_peer()

        # A huge option length, sent in full: refused, and the session goes on.
        with srv.client() as c:
            c.hello()
            c.send_option(OPT_GO, b"\x00" * (1 << 20))
            assert c.option_reply()[1] == REP_ERR_INVALID
            c.info("v1")
            assert c.read(0, 4096) == (0, v1_image[:4096])
        # A huge option length (4 GiB), then the client goes away mid-option.
        with srv.client() as c:
            c.hello()
            c.send_option(OPT_GO, os.urandom(1000), length=0xFFFFFFFF)
        # ... or stays, connected and silent, mid-option.
        c = srv.client()
        held.append(c)
        c.hello()
        c.send_option(OPT_LIST, b"x" * 10, length=0xFFFFFFF0)

        # Clients that vanish mid-request.
        with srv.client() as c:  # half a request header
            c.go("v1")
            c.send(struct.pack(">IHHQ", REQUEST_MAGIC, 0, CMD_READ, 1))
        with srv.client() as c:  # a write whose payload never comes in full
            c.go("v1")
            c.request(CMD_WRITE, 0, 1 << 20, b"\x55" * 1000)
        with srv.client() as c:  # a big read never collected
            c.go("v1")
            c.request(CMD_READ, 0, len(v1_image))
            c.request(CMD_READ, 0, len(v1_image))
        with srv.client() as c:  # a bad request magic: hung up on
            c.go("v1")
            c.send(struct.pack(">IHHQQI", 0xDEADBEEF, 0, CMD_READ, 1, 0, 512))
            assert c.closed_by_peer()
        # A client that dies mid-handshake, after the greeting.
        with srv.client() as c:
            c.recv_exact(10)
        # A client half-way through a read reply, connection left open (still held).
        c = srv.client()
        held.append(c)
        c.go("v1")
        c.request(CMD_READ, 0, len(v1_image))
        c.recv_exact(100)

        # Everyone else is still served, bit-perfect.
        time.sleep(0.2)
        assert srv.alive(), srv.stderr
        for name in ("v1", "rand"):
            rc, digest, err = nbdcopy_digest(srv.uri(name))
            assert rc == 0, err
            assert digest == digests[name]
        with srv.client() as c:
            c.go("rand")
            assert c.read(0, 4096)[0] == 0
    finally:
        for c in held:
            c.close()
    assert srv.alive(), srv.stderr
    # Stops promptly even with abandoned clients about.
    assert srv.stop() == 0
    assert not srv.sock.exists()


def test_clients_beyond_the_limit_wait(serve, store, digests):
    """The server holds 128 sessions at once; more clients wait in the
    listen queue (they are not hung up on) and are served when a place frees."""
    srv = serve([store / "rand"])
    held = []
    try:
        for _ in range(128):
            c = srv.client()
            held.append(c)
            c.go("rand")  # a session: only its client can end it
        late = srv.client()
        held.append(late)
        late.s.settimeout(0.5)
        with pytest.raises(TimeoutError):  # neither greeted nor hung up on
            late.s.recv(1, socket.MSG_PEEK)
        late.s.settimeout(STEP)
        held[0].close()  # a place frees
        late.go("rand")
        assert late.read(0, 4096)[0] == 0
        late.close()
        assert srv.alive()
    finally:
        for c in held:
            c.close()
    rc, digest, err = nbdcopy_digest(srv.uri("rand"))
    assert rc == 0, err
    assert digest == digests["rand"]
    assert srv.stop() == 0


def test_pipelined_reads_are_all_answered_by_cookie(serve, store, v1_image):
    """A client with many reads in flight gets every one answered, in any
    order, each matched by its cookie; reads queued before NBD_CMD_DISC are
    answered before the server closes."""
    srv = serve([store / "v1"])
    size = len(v1_image)
    rng = random.Random(7)
    with srv.client() as c:
        c.go("v1")
        for _ in range(3):
            want = {}
            for _ in range(64):
                off = rng.randrange(0, size - 1)
                n = rng.choice([1, 512, 4096, 65536, 200000, 1 << 20])
                n = min(n, size - off)
                want[c.request(CMD_READ, off, n)] = (off, n)
            order = []
            while want:
                magic, error, cookie = struct.unpack(">IIQ", c.recv_exact(16))
                assert magic == SIMPLE_REPLY_MAGIC and error == 0
                off, n = want.pop(cookie)
                assert c.recv_exact(n) == v1_image[off:off + n]
                order.append(cookie)
        # queued reads, then a disconnect: all answered, then the close
        cookies = [c.request(CMD_READ, i * 4096, 4096) for i in range(16)]
        c.send(struct.pack(">IHHQQI", REQUEST_MAGIC, 0, CMD_DISC, 0, 0, 0))
        got = set()
        for _ in cookies:
            magic, error, cookie = struct.unpack(">IIQ", c.recv_exact(16))
            assert error == 0
            i = cookies.index(cookie)
            assert c.recv_exact(4096) == v1_image[i * 4096:(i + 1) * 4096]
            got.add(cookie)
        assert got == set(cookies)
        assert c.closed_by_peer()
    assert srv.stop() == 0


def evict_from_page_cache(store: Path) -> int:
    """Drops the store's chunk files from the page cache (clean pages go
    at once): their next reads must wait on the disk. Returns the count."""
    os.sync()
    n = 0
    for f in (store / "chunks").rglob("*"):
        if f.is_file():
            fd = os.open(f, os.O_RDONLY)
            try:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)
            n += 1
    return n


def threads_of(pid) -> int:
    return len(os.listdir(f"/proc/{pid}/task"))


@pytest.fixture
def disk_store():
    """A store holding pair/v1 on a disk-backed file system: /var/tmp, not
    /tmp, which may be a tmpfs, whose pages are the files themselves and
    cannot be evicted."""
    top = Path(tempfile.mkdtemp(prefix="ihop-test-", dir="/var/tmp"))
    try:
        fstype = subprocess.run(["stat", "-f", "-c", "%T", str(top)], capture_output=True, text=True).stdout.strip()
        if fstype in ("tmpfs", "ramfs"):
            pytest.skip(f"/var/tmp is a {fstype}: nothing there waits on a disk")
        clone_ok(FIXTURES / PAIR_V1, top / "store" / "v1")
        yield top / "store"
    finally:
        shutil.rmtree(top, ignore_errors=True)


def test_reads_that_wait_on_the_disk_go_to_workers(serve, disk_store, v1_image):
    """Reads whose data is in the page cache are answered by the thread that
    reads the requests; those that would wait on the disk are handed to
    worker threads. With the chunk files evicted from the page cache, a
    client's pipelined reads start workers, and every reply is right."""
    v1_store = disk_store
    srv = serve([v1_store / "v1"])
    size = len(v1_image)
    rng = random.Random(11)
    with srv.client() as c:
        c.go("v1")
        c.request(CMD_READ, 0, 4096)  # the session's threads as they are when all is cached
        struct.unpack(">IIQ", c.recv_exact(16)), c.recv_exact(4096)
        before = threads_of(srv.proc.pid)
        assert evict_from_page_cache(v1_store) > 100
        want = {}
        for _ in range(64):
            off = rng.randrange(0, size - 1)
            n = min(rng.choice([512, 4096, 65536, 300000]), size - off)
            want[c.request(CMD_READ, off, n)] = (off, n)
        while want:
            magic, error, cookie = struct.unpack(">IIQ", c.recv_exact(16))
            assert magic == SIMPLE_REPLY_MAGIC and error == 0
            off, n = want.pop(cookie)
            assert c.recv_exact(n) == v1_image[off:off + n]
        assert threads_of(srv.proc.pid) > before, "no read was handed to a worker"
    assert srv.stop() == 0


def test_idle_handshakes_do_not_starve_clients(serve, store, digests):
    """200 clients that connect and never say a word (more than there are
    places) cannot keep a real client out: the oldest silent one is dropped
    for each newcomer, long before the handshake timeout."""
    srv = serve([store / "rand"], "--handshake-timeout", "60")
    idle = []
    try:
        for _ in range(200):
            idle.append(socket.socket(socket.AF_UNIX, socket.SOCK_STREAM))
            idle[-1].connect(str(srv.sock))
        start = time.monotonic()
        rc, digest, err = nbdcopy_digest(srv.uri("rand"))
        assert rc == 0, err
        assert digest == digests["rand"]
        assert time.monotonic() - start < 30, "served only once silent clients timed out"
        # A session in progress is never dropped for newcomers.
        with srv.client() as c:
            c.go("rand")
            more = []
            for _ in range(50):
                more.append(socket.socket(socket.AF_UNIX, socket.SOCK_STREAM))
                more[-1].connect(str(srv.sock))
            idle += more
            time.sleep(0.3)
            assert c.read(0, 4096)[0] == 0
    finally:
        for s in idle:
            s.close()
    assert srv.alive(), srv.stderr
    assert srv.stop() == 0


def test_a_negotiating_client_is_not_dropped_for_silent_newcomers(serve, store):
    """Newcomers make room by dropping clients that never answered the
    greeting, not one that is negotiating: a client midway through its
    handshake survives a flood of 100 silent connections."""
    srv = serve([store / "rand"], "--handshake-timeout", "60")
    silent = []
    try:
        with srv.client() as c:
            c.hello()  # greeted and answered: negotiating
            for _ in range(100):
                silent.append(socket.socket(socket.AF_UNIX, socket.SOCK_STREAM))
                silent[-1].connect(str(srv.sock))
            time.sleep(0.5)  # the server takes them all in, dropping silent ones
            c.info("rand")
            assert c.read(0, 4096)[0] == 0
        # Every silent one but the last few (as many as may handshake at
        # once) was greeted and hung up on.
        dropped = 0
        for sk in silent:
            sk.settimeout(0.2)
            try:
                sk.recv(18, socket.MSG_WAITALL)
                dropped += sk.recv(1) == b""
            except (ConnectionResetError, TimeoutError):
                pass
        assert dropped >= 100 - 16, "the silent clients were not the ones dropped"
    finally:
        for sk in silent:
            sk.close()
    assert srv.stop() == 0


@pytest.mark.parametrize("how", ["silent", "trickle", "not reading"])
def test_handshake_timeout(serve, store, how):
    """A client must choose an export within --handshake-timeout, however
    it spends the time: silent, sending a byte at a time, or never reading
    the server's replies."""
    srv = serve([store / "rand"], "--handshake-timeout", "2")
    c = srv.client(timeout=20)
    start = time.monotonic()
    try:
        if how == "silent":
            c.recv_exact(18)
        elif how == "trickle":
            c.hello()
            msg = OPTS_MAGIC + struct.pack(">II", OPT_LIST, 0)
            with pytest.raises((BrokenPipeError, ConnectionResetError)):
                for _ in range(40):  # 8 s of NBD_OPT_LIST, a byte every 0.2 s
                    for b in msg:
                        c.send(bytes([b]))
                        time.sleep(0.2)
                    c.option_reply()
        else:
            c.hello()
            c.s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            # NBD_OPT_LIST asked over and over, no reply read: the server's
            # writes fill the socket and block.
            with pytest.raises((BrokenPipeError, ConnectionResetError, TimeoutError)):
                for _ in range(200000):
                    c.send_option(OPT_LIST)
        if how != "trickle":
            assert c.closed_by_peer() if how == "silent" else True
        elapsed = time.monotonic() - start
        assert 1.5 < elapsed < 10, elapsed
    finally:
        c.close()
    deadline = time.monotonic() + 5
    while "no export chosen within 2 s" not in srv.stderr and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "no export chosen within 2 s" in srv.stderr
    # and the server serves the next client as ever
    with srv.client() as c:
        c.go("rand")
        assert c.read(0, 4096)[0] == 0
    assert srv.stop() == 0


def rss_kib(pid) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_large_reads_not_read_by_clients_keep_memory_bounded(serve, tmp_path):
    """128 clients each ask for a 32 MiB read and never read the reply: a
    connection holds at most its reply buffer, not the whole read (it held
    32 MiB each: 4 GiB in all)."""
    img = tmp_path / "zeros.img"
    with open(img, "wb") as f:
        f.truncate(40 << 20)
    r = ihop("compress", "--compression", "none", "-i", img, tmp_path / "zeros.cba")
    assert r.returncode == 0, r.stderr
    clone_ok(tmp_path / "zeros.cba", tmp_path / "s" / "zeros")
    srv = serve([tmp_path / "s" / "zeros"])
    before = rss_kib(srv.proc.pid)
    held = []
    try:
        for _ in range(128):
            c = srv.client()
            held.append(c)
            c.s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            c.go("zeros")
            c.request(CMD_READ, 0, 32 << 20)
        time.sleep(1.0)
        after = rss_kib(srv.proc.pid)
        print(f"ihop serve resident: {before} KiB idle, {after} KiB with 128 clients "
              f"each owed 32 MiB")
        assert after - before < 64 << 10, f"{before} -> {after} KiB"
        # The server still answers, and a reader of the whole 32 MiB gets it all.
        held[0].s.settimeout(STEP)
        error, data = held[0].reply(held[0].cookie, 32 << 20)
        assert error == 0 and data == bytes(32 << 20)
    finally:
        for c in held:
            c.close()
    assert srv.alive(), srv.stderr
    assert srv.stop() == 0


def test_large_read_over_a_missing_chunk_is_a_clean_error(serve, v1_store, parsed):
    """A read larger than a connection's reply buffer that runs into a
    missing chunk is answered with EIO before any data, and the connection
    goes on: the chunks are looked at before the reply begins."""
    archive = parsed[PAIR_V1]
    image = image_of(v1_store / "v1")
    off, n, path, pos = pick_victim(archive, v1_store)
    srv = serve([v1_store / "v1"])
    path.unlink()
    start = max(0, off - (1 << 20))
    with srv.client() as c:
        c.go("v1")
        error, _ = c.read(start, 2 << 20)
        assert error == EIO
        # the connection is still in step: a read that avoids the chunk works
        error, data = c.read(0, min(off, 1 << 20))
        assert error == 0 and data == image[:min(off, 1 << 20)]
    assert srv.stop() == 0


def test_zero_length_reads(serve, store, v1_image):
    """A read of 0 bytes is answered with success and no data, at any
    offset up to the end (at the end it wrote to a NULL buffer: UB, found
    by fuzzing); past the end it is EINVAL."""
    srv = serve([store / "v1"])
    size = len(v1_image)
    with srv.client() as c:
        c.go("v1")
        for off in (size, 0, size // 2):
            assert c.read(off, 0) == (0, b"")
        assert c.read(size + 1, 0)[0] == EINVAL
        assert c.read(size - 10, 10) == (0, v1_image[-10:])
    assert srv.stop() == 0


def listening_addresses(pid):
    """(address, port) of the TCP sockets process pid listens on."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except FileNotFoundError:
            continue  # closed meanwhile: the server's other descriptors come and go
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    out = []
    for table, family in (("tcp", socket.AF_INET), ("tcp6", socket.AF_INET6)):
        for line in Path(f"/proc/net/{table}").read_text().splitlines()[1:]:
            f = line.split()
            if f[3] != "0A" or f[9] not in inodes:  # 0A: LISTEN
                continue
            addr, port = f[1].split(":")
            raw = bytes.fromhex(addr)
            # /proc prints each 32-bit word in host (little-endian) order
            raw = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
            out.append((socket.inet_ntop(family, raw), int(port, 16)))
    return out


@pytest.mark.parametrize("form", ["PORT", ":PORT"])
def test_listen_without_host_is_loopback_only(store, form):
    """--listen without a HOST serves 127.0.0.1 only: exposing releases to a
    network takes naming its address."""
    port = free_port()
    spec = form.replace("PORT", str(port))
    errfile = tempfile.TemporaryFile()
    p = subprocess.Popen([IHOP, "serve", "--listen", spec, str(store / "rand")], stdin=subprocess.DEVNULL,
                         stdout=subprocess.DEVNULL, stderr=errfile)
    try:
        assert wait_port(port, proc=p), "ihop serve did not listen"
        assert listening_addresses(p.pid) == [("127.0.0.1", port)]
        info = nbdinfo_json(f"nbd://127.0.0.1:{port}/rand")
        assert info["exports"][0]["export-size"] > 0
    finally:
        p.terminate()
        assert p.wait(STEP) == 0


def test_help_warns_that_serving_is_unauthenticated():
    r = ihop("serve", "--help")
    assert r.returncode == 0
    assert "No TLS and no authentication" in r.stdout
    assert "127.0.0.1 only" in r.stdout


# --------------------------------------------------------------------------
# Damaged stores


def test_verify_corrupt_chunk_reads_eio(serve, v1_store, parsed):
    archive = parsed[PAIR_V1]
    image = image_of(v1_store / "v1")
    size = len(image)
    off, n, path, pos = pick_victim(archive, v1_store)
    end = off + n
    # Flip one byte in the middle of the chunk file.
    data = bytearray(path.read_bytes())
    k = len(data) // 2
    data[k] ^= 0xFF
    path.write_bytes(bytes(data))
    layout = chunk_layout(archive)
    prev_off, prev_n, _ = layout[pos - 1]
    next_off, next_n, _ = layout[pos + 1]

    srv = serve([v1_store / "v1"], "--verify")
    with srv.client() as c:
        c.go("v1")
        # Reads elsewhere first and in between: correct data.
        assert c.read(0, 1 << 20) == (0, image[:1 << 20])
        assert c.read(off + k, 1)[0] == EIO
        assert c.read(off, n)[0] == EIO
        assert c.read(off - 1, 2)[0] == EIO  # straddling its start
        assert c.read(end - 1, 2)[0] == EIO  # straddling its end
        assert c.read(prev_off, prev_n) == (0, image[prev_off:prev_off + prev_n])  # ends where it starts
        assert c.read(next_off, next_n) == (0, image[next_off:next_off + next_n])  # starts where it ends
        assert c.read(size - (1 << 20), 1 << 20) == (0, image[-(1 << 20):])
        assert c.read(off, 1)[0] == EIO  # still
    # On another connection too.
    with srv.client() as c:
        c.go("v1")
        assert c.read(off + n // 3, 100)[0] == EIO
        assert c.read(next_off, 100) == (0, image[next_off:next_off + 100])
    # nbdcopy of the whole export fails rather than copy wrong bytes.
    rc, _, err = nbdcopy_digest(srv.uri("v1"))
    assert rc != 0
    assert srv.alive()
    assert "corrupt" in srv.stderr and path.name in srv.stderr, srv.stderr
    assert srv.stop() == 0

    # Without --verify the same store serves the flipped byte: the check above is --verify's.
    srv = serve([v1_store / "v1"])
    with srv.client() as c:
        c.go("v1")
        err, got = c.read(off, n)
        assert err == 0
        diff = [i for i in range(n) if got[i] != image[off + i]]
        assert diff == [k]
    assert srv.stop() == 0


@pytest.mark.parametrize("verify", [False, True], ids=["plain", "verify"])
def test_missing_chunk_reads_eio(serve, v1_store, parsed, verify):
    archive = parsed[PAIR_V1]
    image = image_of(v1_store / "v1")
    off, n, path, pos = pick_victim(archive, v1_store)
    next_off, next_n, _ = chunk_layout(archive)[pos + 1]

    # Lost while serving (a release missing it from the start is refused: below).
    srv = serve([v1_store / "v1"], *(["--verify"] if verify else []))
    path.unlink()
    with srv.client() as c:
        c.go("v1")
        assert c.read(off, n)[0] == EIO
        assert c.read(off + n - 1, 1)[0] == EIO
        assert c.read(off - 4096, 8192)[0] == EIO
        assert c.read(0, 65536) == (0, image[:65536])
        assert c.read(next_off, next_n) == (0, image[next_off:next_off + next_n])
        assert c.read(off, 1)[0] == EIO
    rc, _, err = nbdcopy_digest(srv.uri("v1"))
    assert rc != 0
    with srv.client() as c:
        c.go("v1")
        assert c.read(len(image) - 4096, 4096) == (0, image[-4096:])
    assert srv.alive()
    assert "missing" in srv.stderr and path.name in srv.stderr, srv.stderr
    assert srv.stop() == 0


def test_incomplete_release_is_refused_at_start(v1_store, parsed):
    """Chunks gone or cut short before the start: refused in one line naming
    the first, rather than served with holes that read as EIO."""
    archive = parsed[PAIR_V1]
    _, _, path, pos = pick_victim(archive, v1_store)
    path.unlink()
    r = serve_fails(v1_store / "v1")
    assert r.stderr.startswith("ihop: error: ") and len(r.stderr.splitlines()) == 1, r.stderr
    n_unique = len(archive.chunks)
    assert f"incomplete: 1 of its {n_unique} chunks missing, 0 of the wrong size" in r.stderr, r.stderr
    assert path.name in r.stderr and "is missing" in r.stderr

    # A chunk of the wrong size counts as damaged, and the first one is named.
    layout = chunk_layout(archive)
    other = chunk_path(v1_store, layout[pos + 1][2])
    other.write_bytes(other.read_bytes()[:-1])
    r = serve_fails(v1_store / "v1")
    assert "1 of its %d chunks missing, 1 of the wrong size" % n_unique in r.stderr, r.stderr


# --------------------------------------------------------------------------
# Starting and stopping


def test_server_does_not_load_libcurl(serve, store):
    """A server runs for as long as a device is up and never speaks HTTP:
    libcurl (and the TLS libraries behind it) is loaded on first use only,
    so it is not in the server's memory."""
    srv = serve([store / "rand"])
    with srv.client() as c:
        c.go("rand")
        assert c.read(0, 4096)[0] == 0
        maps = open(f"/proc/{srv.proc.pid}/maps").read()
    assert "libsodium" in maps  # the check reads the right process
    assert "libcurl" not in maps and "libssl" not in maps and "libgnutls" not in maps
    assert srv.stop() == 0


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_stops_cleanly(serve, store, sig):
    srv = serve([store / "rand"])
    with srv.client() as c:  # a connected client does not hold it up
        c.go("rand")
        assert c.read(0, 4096)[0] == 0
        t0 = time.monotonic()
        assert srv.stop(sig) == 0
        assert time.monotonic() - t0 < 5
    assert not srv.sock.exists(), "the unix socket was left behind"
    assert "error" not in srv.stderr, srv.stderr


def serve_fails(*args):
    d = short_tmpdir()
    try:
        sock = d / "nbd.sock"
        r = run([IHOP, "serve", "--unix", sock, *args], timeout=STEP)
        assert r.returncode != 0
        assert not sock.exists(), "a failed serve left a socket behind"
        return r
    finally:
        shutil.rmtree(d, ignore_errors=True)


def test_serve_missing_release(store):
    r = serve_fails(store / "no-such-release")
    assert r.stderr.startswith("ihop: error: "), r.stderr
    assert "no-such-release" in r.stderr and "does not exist" in r.stderr
    assert len(r.stderr.splitlines()) == 1, r.stderr
    # One bad release among good ones: nothing is served.
    r = serve_fails(store / "rand", store / "no-such-release")
    assert "no-such-release" in r.stderr and "does not exist" in r.stderr
    # A store that does not exist.
    r = serve_fails(store.parent / "no-store" / "rand")
    assert r.stderr.startswith("ihop: error: ") and "no-store" in r.stderr, r.stderr


def test_serve_usage_errors(store, tmp_path):
    r = run([IHOP, "serve", store / "rand"], timeout=STEP)  # no listener
    assert r.returncode == 2 and "Usage" in r.stderr
    r = run([IHOP, "serve", "--unix", tmp_path / "s", "--listen", "127.0.0.1:1", store / "rand"], timeout=STEP)
    assert r.returncode == 2 and "Usage" in r.stderr
    assert not (tmp_path / "s").exists()
    r = run([IHOP, "serve", "--unix", tmp_path / "s"], timeout=STEP)  # no release
    assert r.returncode == 2
    for bad in ("127.0.0.1", "127.0.0.1:", "::1:80", "[::1:80", "host:0", "host:65536", ""):
        r = run([IHOP, "serve", "--listen", bad, store / "rand"], timeout=STEP)
        assert r.returncode != 0 and "[HOST:]PORT" in r.stderr, (bad, r.stderr)
    # A path that is taken by a plain file is refused, and the file left alone.
    taken = tmp_path / "taken"
    taken.write_text("keep me")
    r = run([IHOP, "serve", "--unix", taken, store / "rand"], timeout=STEP)
    assert r.returncode != 0 and "cannot listen" in r.stderr, r.stderr
    assert taken.read_text() == "keep me"
