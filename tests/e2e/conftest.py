"""Shared helpers for ihop's end-to-end tests.

The tests drive the real ihop binary (env IHOP, default build/src/ihop)
against the bita fixtures in tests/fixtures, served from disk, by a real
nginx started for the session, and by small fault-injecting HTTP servers of
the tests' own. Everything listens on 127.0.0.1 only and is stopped at
teardown. Only the Python standard library (and pytest) is used.
"""

import hashlib
import http.server
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures"
IHOP = os.environ.get("IHOP", str(ROOT / "build" / "src" / "ihop"))
NGINX = "/usr/sbin/nginx"
TIMEOUT = 120  # seconds, for every subprocess

GOOD_ARCHIVES = [
    "rand-0_1_1-none.cba",
    "zero-0_1_1-lzma.cba",
    "zero-0_1_1-zstd.cba",
    "zero-0_7_1-brotli.cba",
]
BAD_ARCHIVES = {
    # archive: what the one error line must mention
    "rand-0_7_1-corrupt-header.cba": "checksum",
    # the corrupt chunk fixture is one byte shorter than its header says
    "rand-0_7_1-corrupt-chunk.cba": "cut short",
    "rand-0_11_0-brotli-trunc.cba": "cut short",
}
CODEC_NAMES = {0: "none", 1: "lzma", 2: "zstd", 3: "brotli"}


def blake2b(data: bytes) -> bytes:
    return hashlib.blake2b(data).digest()


def blake2b_file(path) -> bytes:
    h = hashlib.blake2b()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.digest()


# --------------------------------------------------------------------------
# Running ihop


def run(args, timeout=TIMEOUT, **kw) -> subprocess.CompletedProcess:
    """Runs a command with a timeout, capturing text output."""
    return subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL, **kw)


def ihop(*args, timeout=TIMEOUT) -> subprocess.CompletedProcess:
    return run([IHOP, *args], timeout=timeout)


def clone(source, dest, *opts, timeout=TIMEOUT) -> subprocess.CompletedProcess:
    return ihop("clone", *opts, source, dest, timeout=timeout)


def clone_ok(source, dest, *opts) -> subprocess.CompletedProcess:
    r = clone(source, dest, *opts)
    assert r.returncode == 0, f"clone {source} failed ({r.returncode}): {r.stderr}"
    return r


def error_lines(r: subprocess.CompletedProcess):
    return [l for l in r.stderr.splitlines() if l.startswith("ihop: error:")]


def assert_one_error_line(r: subprocess.CompletedProcess, *needles):
    """A failed run: non-zero exit, exactly one line on stderr, an error
    mentioning every needle (case-insensitive)."""
    assert r.returncode != 0, f"expected failure, got 0; stdout: {r.stdout}"
    lines = r.stderr.splitlines()
    assert len(lines) == 1, f"expected one error line, got: {r.stderr!r}"
    assert lines[0].startswith("ihop: error: "), lines[0]
    for n in needles:
        assert n.lower() in lines[0].lower(), f"{n!r} not in {lines[0]!r}"
    return lines[0]


def assert_final_error(r: subprocess.CompletedProcess, *needles):
    """A failed run whose stderr may hold retry warnings before its one error line."""
    assert r.returncode != 0, f"expected failure, got 0; stdout: {r.stdout}"
    lines = r.stderr.splitlines()
    errors = error_lines(r)
    assert len(errors) == 1, f"expected one error line, got: {r.stderr!r}"
    assert lines[-1] == errors[0], f"the error is not the last line: {r.stderr!r}"
    assert all(l.startswith("ihop: warning: ") for l in lines[:-1]), r.stderr
    for n in needles:
        assert n.lower() in errors[0].lower(), f"{n!r} not in {errors[0]!r}"
    return errors[0]


@dataclass
class Summary:
    total: int
    unique: int
    reused: int
    fetched: int
    downloaded: int = None  # bytes, over HTTP only
    recovered: int = 0  # complete chunks taken over from a killed clone's temp files


def parse_summary(stdout: str) -> Summary:
    m = re.search(r"^release \S+: .* in (\d+) chunks \((\d+) unique\)$", stdout, re.M)
    assert m, f"no release line in summary: {stdout!r}"
    total, unique = int(m[1]), int(m[2])
    m = re.search(r"^reused (\d+) chunks \(.*\) from the store, fetched (\d+) chunks \(.*\)$", stdout, re.M)
    assert m, f"no reused/fetched line in summary: {stdout!r}"
    s = Summary(total, unique, int(m[1]), int(m[2]))
    m = re.search(r"^downloaded .* \((\d+) bytes\) of ", stdout, re.M)
    if m:
        s.downloaded = int(m[1])
    m = re.search(r"^recovered (\d+) complete chunks left by an interrupted clone$", stdout, re.M)
    s.recovered = int(m[1]) if m else 0
    return s


def cat_checksum(release_path, timeout=TIMEOUT) -> bytes:
    """BLAKE2b-512 of what `ihop cat STORE/NAME` writes to standard output,
    streamed; asserts the command succeeds."""
    h = hashlib.blake2b()
    with subprocess.Popen([IHOP, "cat", str(release_path)], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, stdin=subprocess.DEVNULL) as p:
        timer = threading.Timer(timeout, p.kill)
        timer.start()
        try:
            for block in iter(lambda: p.stdout.read(1 << 20), b""):
                h.update(block)
            err = p.stderr.read()
            rc = p.wait()
        finally:
            timer.cancel()
    assert rc == 0, f"ihop cat {release_path} failed ({rc}): {err.decode(errors='replace')}"
    return h.digest()


def info_fields(stdout: str) -> dict:
    """`ihop info` output as {label: value} (first occurrence of each label)."""
    out = {}
    for line in stdout.splitlines():
        m = re.match(r"^([a-z][a-z ]*):\s+(.*)$", line)
        if m and m[1] not in out:
            out[m[1]] = m[2]
    return out


# --------------------------------------------------------------------------
# An independent reader of bita archive headers (protobuf wire format)


def _varint(buf: bytes, i: int):
    value = shift = 0
    while True:
        b = buf[i]
        i += 1
        value |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return value, i


def pb_fields(buf: bytes):
    """Yields (field number, wire type, value) of a protobuf message:
    value is an int for varints, bytes otherwise."""
    i = 0
    while i < len(buf):
        key, i = _varint(buf, i)
        num, wt = key >> 3, key & 7
        if wt == 0:
            v, i = _varint(buf, i)
        elif wt == 1:
            v, i = buf[i:i + 8], i + 8
        elif wt == 2:
            n, i = _varint(buf, i)
            v, i = buf[i:i + n], i + n
        elif wt == 5:
            v, i = buf[i:i + 4], i + 4
        else:
            raise ValueError(f"unsupported wire type {wt}")
        yield num, wt, v


@dataclass
class Chunk:
    hash: bytes
    archive_size: int
    archive_offset: int  # absolute, in the archive file
    source_size: int


@dataclass
class Archive:
    path: Path
    magic: bytes
    header_size: int
    header_checksum: bytes  # BLAKE2b-512 of the header before its trailer hash
    header_checksum_ok: bool
    chunk_data_offset: int
    app_version: str = ""
    source_checksum: bytes = b""
    source_total_size: int = 0
    hash_len: int = 0
    compression: int = 0
    compression_level: int = 0
    order: list = field(default_factory=list)
    chunks: list = field(default_factory=list)

    @property
    def compression_name(self):
        return CODEC_NAMES[self.compression]


def parse_archive(path) -> Archive:
    data = Path(path).read_bytes()
    magic = data[:6]
    assert magic in (b"BITA1\0", b"\0BITA1"), f"{path}: no bita magic"
    (dict_size,) = struct.unpack_from("<Q", data, 6)
    dictionary = data[14:14 + dict_size]
    (data_offset,) = struct.unpack_from("<Q", data, 14 + dict_size)
    end = 22 + dict_size
    checksum = blake2b(data[:end])
    a = Archive(Path(path), magic, end + 64, checksum, checksum == data[end:end + 64], data_offset)
    for num, wt, v in pb_fields(dictionary):
        if num == 1:
            a.app_version = v.decode()
        elif num == 2:
            a.source_checksum = v
        elif num == 3:
            a.source_total_size = v
        elif num == 4:  # ChunkerParameters
            for n, _, x in pb_fields(v):
                if n == 5:
                    a.hash_len = x
        elif num == 5:  # ChunkCompression
            for n, _, x in pb_fields(v):
                if n == 2:
                    a.compression = x
                elif n == 3:
                    a.compression_level = x
        elif num == 6:  # rebuild_order: packed or not
            if wt == 2:
                i = 0
                while i < len(v):
                    x, i = _varint(v, i)
                    a.order.append(x)
            else:
                a.order.append(v)
        elif num == 7:  # ChunkDescriptor
            d = {n: x for n, _, x in pb_fields(v)}
            a.chunks.append(Chunk(d.get(1, b""), d.get(3, 0), data_offset + d.get(4, 0), d.get(5, 0)))
    return a


# --------------------------------------------------------------------------
# Checking a store


def chunk_files(store) -> list:
    """Every file under STORE/chunks (paths)."""
    root = Path(store) / "chunks"
    if not root.exists():
        return []
    return sorted(p for p in root.rglob("*") if not p.is_dir())


def check_store(store, allowed_temp=None) -> set:
    """Asserts the store holds no temp file (but those whose name contains
    `allowed_temp`) and that every chunk file is named by its content's hash
    and sits in its fan-out directory. Returns the set of hex hashes present."""
    store = Path(store)
    temps = [p for p in store.rglob("*") if ".tmp-" in p.name]
    assert all(allowed_temp and allowed_temp in p.name for p in temps), f"temp files left in the store: {temps}"
    hashes = set()
    for p in chunk_files(store):
        if p in temps:
            continue
        assert p.name.endswith(".chunk"), f"unexpected file {p}"
        name = p.name[:-len(".chunk")]
        assert re.fullmatch(r"[0-9a-f]+", name) and len(name) % 2 == 0, p
        assert p.parent.name == name[:4] and p.parent.parent == store / "chunks", p
        digest = blake2b_file(p)[:len(name) // 2].hex()
        assert digest == name, f"{p} holds content hashing to {digest}"
        hashes.add(name)
    return hashes


def check_release_file(path):
    """Asserts STORE/NAME is a well-formed release description."""
    data = Path(path).read_bytes()
    assert data.startswith(b"IHOP1\0"), f"{path}: no IHOP1 magic"
    (n,) = struct.unpack_from("<Q", data, 6)
    assert len(data) == 14 + n + 64, f"{path}: size {len(data)} does not match its dictionary size {n}"
    assert blake2b(data[:-64]) == data[-64:], f"{path}: trailing checksum does not match"


def releases(store) -> list:
    """The names of the plain files at the top of a store (release descriptions)."""
    store = Path(store)
    if not store.exists():
        return []
    return sorted(p.name for p in store.iterdir() if p.is_file())


def assert_no_release_and_clean(store, name):
    store = Path(store)
    assert not (store / name).exists(), f"release {name} exists after a failed clone"
    assert releases(store) == [], f"files left at the top of the store: {releases(store)}"
    return check_store(store)


def assert_clone_complete(store, name, archive: Archive):
    """The release exists, is well formed, every chunk it needs is stored
    and correct, and cat reproduces the archive's image checksum."""
    store = Path(store)
    check_release_file(store / name)
    present = check_store(store)
    needed = {c.hash.hex() for c in archive.chunks}
    assert needed <= present, f"{len(needed - present)} chunks missing from the store"
    assert cat_checksum(store / name) == archive.source_checksum


# --------------------------------------------------------------------------
# Ports and servers


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, timeout=10.0, proc=None) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            return False
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.05)
    return False


@dataclass
class LogEntry:
    status: int
    body_bytes: int
    range: str  # "-" when the request had none
    request: str  # "GET /x HTTP/1.1"

    @property
    def path(self):
        parts = self.request.split(" ")
        return parts[1] if len(parts) > 1 else ""


class Nginx:
    """The real nginx, serving a copy of the fixtures from www/."""

    def __init__(self, base: Path):
        self.base = base
        self.www = base / "www"
        self.log = base / "access.log"
        self.proc = None
        self.port = None

    def _conf(self, port):
        b = self.base
        return f"""
user root;
worker_processes 1;
pid {b}/nginx.pid;
error_log {b}/error.log;
events {{ worker_connections 128; }}
http {{
    log_format ihop '$status|$body_bytes_sent|$http_range|$request';
    access_log {self.log} ihop;
    client_body_temp_path {b}/tmp-body;
    proxy_temp_path {b}/tmp-proxy;
    fastcgi_temp_path {b}/tmp-fastcgi;
    uwsgi_temp_path {b}/tmp-uwsgi;
    scgi_temp_path {b}/tmp-scgi;
    keepalive_requests 10000;
    server {{
        listen 127.0.0.1:{port};
        root {self.www};
        location / {{ }}
    }}
}}
"""

    def start(self):
        shutil.copytree(FIXTURES, self.www, ignore=shutil.ignore_patterns("golden", "*.img"))
        for attempt in range(3):
            port = free_port()
            conf = self.base / "nginx.conf"
            conf.write_text(self._conf(port))
            self.proc = subprocess.Popen(
                [NGINX, "-p", str(self.base), "-e", str(self.base / "error.log"), "-c", str(conf),
                 "-g", "daemon off;"],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            if wait_port(port, 10.0, self.proc):
                self.port = port
                return
            self.stop()
        err = (self.base / "error.log").read_text(errors="replace") if (self.base / "error.log").exists() else ""
        raise RuntimeError(f"nginx did not start: {err}")

    def stop(self):
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.proc.stderr.close()
        self.proc = None

    def url(self, name) -> str:
        return f"http://127.0.0.1:{self.port}/{name}"

    def publish(self, name, data: bytes) -> str:
        """Adds a file to the served directory; returns its URL."""
        p = self.www / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
        return self.url(name)

    def mark(self) -> int:
        """A position in the access log: entries() after it are newer requests."""
        return self.log.stat().st_size if self.log.exists() else 0

    def entries(self, since=0, settle=0.3) -> list:
        """Access log entries written after `since`. nginx logs a request as it
        finishes it, so wait until the log stops growing."""
        size, deadline = -1, time.monotonic() + 5
        while time.monotonic() < deadline:
            new = self.mark()
            if new == size:
                break
            size = new
            time.sleep(settle)
        with open(self.log, "rb") as f:
            f.seek(since)
            text = f.read().decode()
        out = []
        for line in text.splitlines():
            status, sent, rng, request = line.split("|", 3)
            out.append(LogEntry(int(status), int(sent), rng, request))
        return out


@pytest.fixture(scope="session")
def nginx(tmp_path_factory):
    if not os.access(NGINX, os.X_OK):
        pytest.skip(f"{NGINX} is not installed")
    n = Nginx(tmp_path_factory.mktemp("nginx"))
    n.start()
    try:
        yield n
    finally:
        n.stop()
    assert n.proc is None


def parse_range(header, size):
    """(start, end inclusive) of a "bytes=a-b" Range header, or None."""
    m = re.fullmatch(r"bytes=(\d*)-(\d*)", header or "")
    if not m or (not m[1] and not m[2]):
        return None
    if not m[1]:
        n = int(m[2])
        return max(0, size - n), size - 1
    start = int(m[1])
    end = int(m[2]) if m[2] else size - 1
    return start, min(end, size - 1)


class FaultHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def _send(self, status, headers, body):
        self.send_response(status)
        for k, v in headers:
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        srv = self.server
        data = srv.data
        size = len(data)
        rng_header = self.headers.get("Range")
        with srv.lock:
            srv.requests.append((self.path, rng_header, dict(self.headers)))
            srv.request_times.append((time.monotonic(), rng_header))
        if self.path in srv.redirects:
            status, location = srv.redirects[self.path]
            body = srv.redirect_body
            self._send(status, [("Location", location), ("Content-Length", str(len(body)))], body)
            return
        if self.path != srv.path:
            body = b"not found\n"
            self._send(404, [("Content-Length", str(len(body)))], body)
            return
        if srv.mode == "no-range":
            self._send(200, [("Content-Length", str(size))], data)
            return
        rng = parse_range(rng_header, size)
        if rng is None or rng[0] >= size:
            self._send(200, [("Content-Length", str(size))], data)
            return
        start, end = rng
        length = end - start + 1
        targeted = start >= srv.fault_from
        if targeted and srv.mode in FaultServer.NEW_MODES and srv.take_fault():
            self._new_fault(srv.mode, data, start, end)
            return
        with srv.lock:
            fault = None
            if targeted and srv.mode in ("cut", "stall") and srv.cuts_left > 0:
                srv.cuts_left -= 1
                fault = srv.mode
            elif targeted and srv.mode in ("wrong-range", "wrong-data") and srv.take_fault_locked():
                fault = srv.mode
        if fault in ("cut", "stall"):
            # Promise the whole range, send half of it, then drop the
            # connection (cut) or go silent (stall) and drop it later.
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
            self.send_header("Content-Length", str(length))
            self.end_headers()
            self.wfile.write(data[start:start + length // 2])
            self.wfile.flush()
            with srv.lock:
                srv.cut_at.append((start, start + length // 2))
            if fault == "stall":
                srv.stopping.wait(30)
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            return
        shown = (start, end)
        if fault in ("wrong-range", "wrong-data"):
            # Bytes shifted by one from what was asked for.
            shift = 1 if end + 1 < size else -1
            s2, e2 = start + shift, end + shift
            if fault == "wrong-range":
                shown = (s2, e2)
            body = data[s2:e2 + 1]
        else:
            body = data[start:end + 1]
        self._send(206, [("Content-Range", f"bytes {shown[0]}-{shown[1]}/{size}"),
                         ("Content-Length", str(len(body)))], body)

    def _new_fault(self, mode, data, start, end):
        """The faults of FaultServer.NEW_MODES, for one targeted request."""
        srv = self.server
        size = len(data)
        length = end - start + 1
        with srv.lock:
            srv.faults_done.append((mode, start, end, time.monotonic()))
        if mode == "status":
            headers = [("Content-Length", "6")]
            if srv.retry_after is not None:
                headers.append(("Retry-After", str(srv.retry_after)))
            self._send(srv.status, headers, b"error\n")
        elif mode == "ignore-range":
            # 200 with the whole file, as a server without range support answers
            self._send(200, [("Content-Length", str(size))], data)
        elif mode == "short":
            # A well-formed response whose body is shorter than the range its
            # Content-Range promises; the connection stays open.
            body = data[start:start + length // 2]
            self._send(206, [("Content-Range", f"bytes {start}-{end}/{size}"),
                             ("Content-Length", str(len(body)))], body)
        elif mode in ("long", "long-split"):
            # The right Content-Range, then more bytes than it covers.
            extra = bytes(range(256)) * 4
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
            self.send_header("Content-Length", str(length + len(extra)))
            self.end_headers()
            try:
                if mode == "long":
                    self.wfile.write(data[start:end + 1] + extra)
                else:
                    # every asked-for byte first, the surplus a moment later
                    self.wfile.write(data[start:end + 1])
                    self.wfile.flush()
                    time.sleep(0.2)
                    self.wfile.write(extra)
            except OSError:
                self.close_connection = True
        elif mode == "flip":
            # The right headers; one byte in the middle of the range flipped.
            body = bytearray(data[start:end + 1])
            body[length // 2] ^= 0xFF
            self._send(206, [("Content-Range", f"bytes {start}-{end}/{size}"),
                             ("Content-Length", str(len(body)))], bytes(body))
        else:
            raise AssertionError(mode)


class FaultServer(http.server.ThreadingHTTPServer):
    """Serves one file at /<name> from 127.0.0.1, with a chosen misbehaviour:
    "ok" (correct range support), "no-range" (200 with the whole file to
    everything), "cut" (the first `cuts` targeted requests are cut off after
    half of their body), "stall" (the same, but the server goes silent after
    half the body), "wrong-range" (targeted requests get a Content-Range and
    bytes shifted by one), "wrong-data" (targeted requests get the right
    Content-Range but bytes shifted by one). Targeted requests are those for
    bytes at or after `fault_from`, by default the chunk data offset.

    More modes (NEW_MODES), each for the first `times` targeted requests (every
    one when `times` is None): "status" (HTTP `status`, with a Retry-After of
    `retry_after` seconds when given), "ignore-range" (200 with the whole file),
    "short" (a complete 206 response whose body is half the range), "long"
    (the range and 1 KiB more, in one write), "long-split" (the range, then
    1 KiB more a moment later), "flip" (one byte of the range flipped, right
    headers). `times` also limits "wrong-range" and "wrong-data" (default:
    every targeted request). `faults_done` lists (mode, start, end, time) of
    the new faults served.

    `redirects` maps request paths to (status, Location) answers, with
    `redirect_body` as their body; every request's (path, Range header,
    headers) is logged in `requests`."""

    daemon_threads = True
    allow_reuse_address = True
    NEW_MODES = ("status", "ignore-range", "short", "long", "long-split", "flip")

    def __init__(self, path: Path, mode="ok", cuts=0, fault_from=None, times=None, status=500, retry_after=None,
                 redirects=None, redirect_body=b"moved\n"):
        super().__init__(("127.0.0.1", 0), FaultHandler)
        self.redirects = dict(redirects or {})
        self.redirect_body = redirect_body
        self.times_left = times
        self.status = status
        self.retry_after = retry_after
        self.faults_done = []
        self.request_times = []  # (time.monotonic(), Range header) of every request
        self.data = Path(path).read_bytes()
        self.path = "/" + Path(path).name
        self.data_offset = parse_archive(path).chunk_data_offset
        self.fault_from = self.data_offset if fault_from is None else fault_from
        self.stopping = threading.Event()
        self.mode = mode
        self.cuts_left = cuts
        self.cut_at = []
        self.requests = []
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def url(self):
        return f"http://127.0.0.1:{self.server_address[1]}{self.path}"

    def handle_error(self, request, client_address):
        # A client that went away (a failed or killed clone) is no error of the server's.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)

    def take_fault_locked(self) -> bool:
        """Whether the next targeted request gets the fault (`times` left)."""
        if self.times_left is None:
            return True
        if self.times_left > 0:
            self.times_left -= 1
            return True
        return False

    def take_fault(self) -> bool:
        with self.lock:
            return self.take_fault_locked()

    def __enter__(self):
        self.thread.start()
        return self

    def ranges(self):
        """The (start, end) of every range request received, in order."""
        with self.lock:
            reqs = list(self.requests)
        return [parse_range(r[1], len(self.data)) for r in reqs if r[1]]

    def __exit__(self, *exc):
        self.stopping.set()
        self.shutdown()
        self.server_close()
        self.thread.join(10)
        assert not self.thread.is_alive()


# --------------------------------------------------------------------------
# Mounts (we run as root)


class Mount:
    def __init__(self, path: Path, *mount_args):
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)
        r = run(["mount", *mount_args, str(self.path)], timeout=30)
        if r.returncode != 0:
            pytest.skip(f"cannot mount {' '.join(mount_args)}: {r.stderr.strip()}")
        self.mounted = True

    def umount(self):
        if self.mounted:
            r = run(["umount", str(self.path)], timeout=30)
            if r.returncode != 0:
                run(["umount", "-l", str(self.path)], timeout=30)
            self.mounted = False


@pytest.fixture
def tmpfs(tmp_path):
    """Mounts tmpfs file systems for a test; unmounts them at teardown."""
    mounts = []

    def make(name, *options):
        m = Mount(tmp_path / name, "-t", "tmpfs", "-o", ",".join(options) or "defaults", "tmpfs")
        mounts.append(m)
        return m.path

    yield make
    for m in reversed(mounts):
        m.umount()


@pytest.fixture(scope="session")
def archives():
    """Every fixture archive, parsed independently of ihop."""
    paths = GOOD_ARCHIVES + list(BAD_ARCHIVES) + ["pair/v1.ext4.cba", "pair/v2.ext4.cba"]
    return {p: parse_archive(FIXTURES / p) for p in paths}


# --------------------------------------------------------------------------
# A slow, counting server and a close look at a store (lifecycle and kill tests)


@dataclass
class Served:
    """One request a SlowServer answered."""
    tag: object  # SlowServer.tag when the request came in
    path: str
    start: int  # first byte of the body in the file
    end: int  # last byte promised (inclusive)
    status: int
    sent: int = 0  # body bytes written to the socket
    done: bool = False  # the whole body was written


class SlowHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_GET(self):
        srv = self.server
        data = srv.files.get(self.path)
        if data is None:
            body = b"not found\n"
            self.send_response(404)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        size = len(data)
        rng = parse_range(self.headers.get("Range"), size)
        if rng is None or rng[0] >= size or rng[1] < rng[0]:
            status, start, end = 200, 0, size - 1
        else:
            status, (start, end) = 206, rng
        entry = Served(srv.tag, self.path, start, end, status)
        with srv.lock:
            srv.served.append(entry)
        self.send_response(status)
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        self.send_header("Content-Length", str(end - start + 1))
        self.end_headers()
        try:
            pos = start
            while pos <= end:
                n = min(srv.block, end + 1 - pos)
                if not srv.throttle(n):
                    break
                self.wfile.write(data[pos:pos + n])
                entry.sent += n
                pos += n
            entry.done = pos > end
        except OSError:  # the client went away (killed)
            pass
        if not entry.done:
            self.close_connection = True


class SlowServer(http.server.ThreadingHTTPServer):
    """Serves files (their names: /<name>) from 127.0.0.1 with Range support,
    at most `rate` body bytes a second over all connections together (None:
    full speed; may be changed at any time), in blocks of `block` bytes.
    Every request is logged in `served` with the `tag` set when it came in."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, *paths, rate=None, block=16 << 10):
        super().__init__(("127.0.0.1", 0), SlowHandler)
        self.files = {"/" + Path(p).name: Path(p).read_bytes() for p in paths}
        self.rate = rate
        self.block = block
        self.tag = None
        self.served = []
        self.lock = threading.Lock()
        self.next_slot = 0.0
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def handle_error(self, request, client_address):
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)

    def throttle(self, n) -> bool:
        """Waits for the time slot of the next n bytes; False when stopping."""
        rate = self.rate
        if not rate:
            return not self.stopping.is_set()
        with self.lock:
            now = time.monotonic()
            slot = max(now, self.next_slot)
            self.next_slot = slot + n / rate
        return not self.stopping.wait(max(0.0, slot - now))

    def url(self, path) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/{Path(path).name}"

    def entries(self, tag=None, path=None) -> list:
        with self.lock:
            out = list(self.served)
        return [e for e in out if (tag is None or e.tag == tag) and (path is None or e.path == "/" + Path(path).name)]

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stopping.set()
        self.shutdown()
        self.server_close()
        self.thread.join(10)
        assert not self.thread.is_alive()


def chunks_served(archive: Archive, entries) -> dict:
    """{hex hash: body bytes of that chunk the entries sent} for every chunk
    of the archive the entries' bodies overlap."""
    out = {}
    for e in entries:
        lo, hi = e.start, e.start + e.sent  # [lo, hi) went out
        if hi <= lo:
            continue
        for c in archive.chunks:
            a, b = c.archive_offset, c.archive_offset + c.archive_size
            n = min(b, hi) - max(a, lo)
            if n > 0:
                out[c.hash.hex()] = out.get(c.hash.hex(), 0) + n
    return out


def chunks_asked(archive: Archive, entries) -> set:
    """Hex hashes of the chunks whose bytes the entries' requests asked for."""
    out = set()
    for e in entries:
        for c in archive.chunks:
            if c.archive_offset <= e.end and c.archive_offset + c.archive_size > e.start:
                out.add(c.hash.hex())
    return out


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@dataclass
class StoreScan:
    final: set  # hex hashes of chunk files under their final names whose content matches
    corrupt: list  # paths of chunk files under a final name whose content does not match its name
    temps: list  # paths of every temp file (".tmp-" in the name), chunks/ and top
    complete_temps: dict  # hex hash -> temp paths under chunks/ holding exactly that chunk


def scan_store(store) -> StoreScan:
    """Hashes every file under STORE/chunks, asserting nothing; see StoreScan."""
    store = Path(store)
    s = StoreScan(set(), [], [], {})
    if not store.exists():
        return s
    s.temps = [p for p in store.iterdir() if ".tmp-" in p.name]
    for p in chunk_files(store):
        if ".tmp-" in p.name:
            s.temps.append(p)
            name = p.name.split(".chunk.tmp-")[0]
            if re.fullmatch(r"[0-9a-f]+", name) and blake2b_file(p)[:len(name) // 2].hex() == name:
                s.complete_temps.setdefault(name, []).append(p)
            continue
        name = p.name[:-len(".chunk")] if p.name.endswith(".chunk") else ""
        if name and re.fullmatch(r"[0-9a-f]+", name) and blake2b_file(p)[:len(name) // 2].hex() == name:
            s.final.add(name)
        else:
            s.corrupt.append(p)
    return s


def temp_pid(path) -> int:
    """The process id in a chunk temp file's name (<hex>.chunk.tmp-<pid>.<n>), or -1."""
    m = re.search(r"\.tmp-(\d+)\.\d+$", Path(path).name)
    return int(m[1]) if m else -1


def chunk_path(store, hexhash) -> Path:
    return Path(store) / "chunks" / hexhash[:4] / f"{hexhash}.chunk"


def unique_chunks(archive: Archive) -> dict:
    """{hex hash: Chunk}, one entry per distinct chunk."""
    return {c.hash.hex(): c for c in archive.chunks}


class LineReader:
    """Collects a pipe's lines in a thread (so a test can wait for one)."""

    def __init__(self, stream):
        self.lines = []
        self.cond = threading.Condition()
        self.thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self.thread.start()

    def _read(self, stream):
        for line in iter(stream.readline, ""):
            with self.cond:
                self.lines.append(line.rstrip("\n"))
                self.cond.notify_all()
        with self.cond:
            self.cond.notify_all()

    def wait_for(self, needle, timeout) -> bool:
        deadline = time.monotonic() + timeout
        with self.cond:
            while not any(needle in l for l in self.lines):
                left = deadline - time.monotonic()
                if left <= 0 or not self.thread.is_alive():
                    return any(needle in l for l in self.lines)
                self.cond.wait(min(left, 0.1))
            return True

    def text(self, join_timeout=10) -> str:
        self.thread.join(join_timeout)
        with self.cond:
            return "\n".join(self.lines) + ("\n" if self.lines else "")
