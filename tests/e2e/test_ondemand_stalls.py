# SPDX-License-Identifier: MIT
"""`serve --source` and `mount --source` (FUSE) against servers that never
end a transfer: one that drips its body a byte every half second after a
correct 206 (the idle timeout never fires), one that reads the request and
sends nothing, one that sends half the range and stalls, and a redirect to
a port no connection completes to. A read ends in EIO within the bound the
README states, (--http-retry-count + 1) x (--http-timeout +
--http-retry-delay + 2) seconds, said in one line; ihop stays up; once the
server recovers the same read returns the image's bytes. SIGTERM or SIGINT
ends ihop within 2 s while a read is stuck, as after any stop: status 0,
no temp file left, no release for an incomplete one. And clone, which the
rate's floor (--http-min-rate) no longer lets a dripping server hold.

The archive is made here: random data in 256 KiB chunks, uncompressed, so
that a read's fetch is its chunk alone and "half the range" cuts the chunk
the read needs. The servers are fault_server.FaultServer (the header is
served right, the chunk data misbehaves) and fault_server.Blackhole; the
NBD client is test_serve.RawNbd, the FUSE reads are O_DIRECT dd reads (one
request each: the page cache would try a failed page again)."""

import random
import re
import signal
import subprocess
import threading
import time

import pytest

from bita_archive import parse_archive
from fault_server import Blackhole, FaultServer
from slow_server import SlowServer
from ihop_run import assert_final_error, clone, ihop
from store_checks import assert_no_release_and_clean, check_store, releases
from test_fuse_mount import STEP, FuseMount, fuse_mount  # noqa: F401 (a fixture)
from test_in_use import wait_for
from test_serve import EIO, RawNbd, serve  # noqa: F401 (a fixture)

CHUNK = 256 << 10
CHUNKS = 32
T, R, D = 2, 1, 0  # --http-timeout, --http-retry-count, --http-retry-delay
HTTP = ["--http-timeout", str(T), "--http-retry-count", str(R), "--http-retry-delay", str(D)]
BOUND = (R + 1) * (T + D + 2)  # seconds: the README's bound on a read's wait
SLACK = 1.5  # seconds more for the client's round trips (and ASan)
STOP = 2.0  # seconds from a stop signal to ihop's end
BLOCK = 4096

# What the one error line of a fetch that failed says, by server behaviour.
SAID = {
    "drip": "less than 1024 bytes a second",
    "silent": f"no data for {T} s",
    "stall": f"no data for {T} s",
    "elsewhere": f"no data for {T} s (after a redirect to http://127.0.0.1:",
}
BEHAVIOURS = list(SAID)


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    """(path of the archive, its image): CHUNKS chunks of random data."""
    d = tmp_path_factory.mktemp("stalls")
    data = random.Random(22).randbytes(CHUNKS * CHUNK)
    (d / "s.img").write_bytes(data)
    r = ihop("compress", "--fixed-size", "256KiB", "--compression", "none", "-i", d / "s.img", d / "s.cba")
    assert r.returncode == 0, r.stderr
    a = parse_archive(d / "s.cba")
    assert len(a.chunks) == CHUNKS and all(c.archive_size == CHUNK for c in a.chunks)
    return d / "s.cba", data


def misbehaving(path, behaviour, hole=None) -> FaultServer:
    """A FaultServer whose chunk-data requests get `behaviour`; "ok" once
    its mode is set so."""
    if behaviour == "stall":
        return FaultServer(path, mode="stall", cuts=1 << 20)
    if behaviour == "elsewhere":
        return FaultServer(path, mode="elsewhere", elsewhere=hole.url)
    return FaultServer(path, mode=behaviour)


def error_lines(text) -> list:
    return [line for line in text.splitlines() if line.startswith("ihop: error:")]


def faults_seen(fs) -> int:
    """Chunk-data requests the server answered with its fault so far."""
    with fs.lock:
        return len(fs.faults_done) + len(fs.cut_at)


def connecting_to(port) -> bool:
    """Whether a socket of this machine waits in connect() to 127.0.0.1:port
    (SYN_SENT in /proc/net/tcp)."""
    want = f"0100007F:{port:04X}"
    with open("/proc/net/tcp") as f:
        return any(line.split()[2] == want and line.split()[3] == "02" for line in list(f)[1:])


class Serve:
    """The release as `serve --source` exports it; each read on a connection of its own."""

    def __init__(self, serve, store, url, *opts):
        self.srv = serve([store / "s"], "--source", url, *opts)
        self.proc = self.srv.proc

    def read(self, off, n=BLOCK):
        """(errno, bytes) of a read; errno -1 when the connection ended first."""
        try:
            with RawNbd(self.srv.sock, timeout=BOUND + 10) as c:
                c.go("s")
                return c.read(off, n)
        except (EOFError, ConnectionError):
            return -1, b""

    @property
    def stderr(self):
        return self.srv.stderr


class Fuse:
    """The release as `mount --source` makes it a file, read with O_DIRECT."""

    def __init__(self, fuse_mount, tmp_path, store, url, size, *opts):
        self.m = fuse_mount(store / "s", tmp_path / "s.file", size, "--source", url, *opts)
        self.proc = self.m.proc

    def read(self, off, n=BLOCK):
        """(errno, bytes) of one O_DIRECT read."""
        p = subprocess.Popen(["dd", f"if={self.m.target}", "of=/dev/stdout", f"bs={n}", f"skip={off // n}",
                              "count=1", "iflag=direct", "status=none"], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
        try:
            out, err = p.communicate(timeout=BOUND + 10)
        except subprocess.TimeoutExpired:
            # A read waiting on FUSE cannot be killed while its daemon lives.
            self.proc.kill()
            p.kill()
            p.communicate(timeout=STEP)
            raise AssertionError(f"the read was still waiting after {BOUND + 10} s")
        if p.returncode == 0:
            return 0, out
        # -1: another failure (the mount gone), which only a stop may cause
        return (EIO if "Input/output error" in err.decode() else -1), b""

    @property
    def stderr(self):
        return self.m.stderr


def start(via, request, tmp_path, url, size, *opts):
    store = tmp_path / "store"
    if via == "serve":
        return Serve(request.getfixturevalue("serve"), store, url, *HTTP, *opts), store
    return Fuse(request.getfixturevalue("fuse_mount"), tmp_path, store, url, size, *HTTP, *opts), store


def timed(f, *args):
    t = time.monotonic()
    out = f(*args)
    return out, time.monotonic() - t


@pytest.mark.parametrize("behaviour", BEHAVIOURS)
@pytest.mark.parametrize("via", ["serve", "fuse"])
def test_a_read_the_server_never_ends_fails_within_the_bound_said_once_and_reads_after_recovery(
        tmp_path, request, archive, via, behaviour):
    path, data = archive
    with Blackhole() as hole, misbehaving(path, behaviour, hole) as fs:
        dev, store = start(via, request, tmp_path, fs.url, len(data))
        off = 11 * CHUNK + 5 * BLOCK
        (error, _), took = timed(dev.read, off)
        assert error == EIO, f"the read got {error} after {took:.1f} s:\n{dev.stderr}"
        print(f"{via} {behaviour}: EIO after {took:.2f} s (bound {BOUND} s)")
        assert T <= took <= BOUND + SLACK, f"the read failed after {took:.1f} s (bound {BOUND} s)"
        assert faults_seen(fs) >= 1, "the server saw no chunk-data request"
        wait_for(lambda: error_lines(dev.stderr), "the fetch's error line", timeout=5)
        errors = error_lines(dev.stderr)
        assert len(errors) == 1, dev.stderr
        assert f"chunk at archive offset {parse_archive(path).chunks[11].archive_offset} could not be fetched" \
            in errors[0] and SAID[behaviour] in errors[0] and "its reads fail with EIO" in errors[0], errors
        assert dev.proc.poll() is None, "ihop ended"

        fs.mode = "ok"
        assert dev.read(off) == (0, data[off:off + BLOCK])
        check_store(store, allowed_temp=".tmp-")
        assert len(error_lines(dev.stderr)) == 1, dev.stderr


def stop_while_stuck(dev, fs, behaviour, hole, sig):
    """A read stuck on the server, then sig to ihop: (seconds to its end,
    its exit status, what the read got)."""
    got = []
    reader = threading.Thread(target=lambda: got.append(dev.read(7 * CHUNK)), daemon=True)
    reader.start()
    wait_for(lambda: faults_seen(fs) >= 1, "the read's request at the server")
    if behaviour == "elsewhere":
        wait_for(lambda: connecting_to(hole.port), "a connect to the blackhole")
    elif behaviour == "drip":
        wait_for(lambda: fs.dripped >= 1, "a byte dripped")
    assert reader.is_alive(), f"the read ended before the stop: {got}"
    t = time.monotonic()
    dev.proc.send_signal(sig)
    try:
        rc = dev.proc.wait(STEP)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"ihop did not end on signal {sig}:\n{dev.stderr}")
    took = time.monotonic() - t
    print(f"signal {sig} while {behaviour}: ihop ended after {took:.2f} s")
    reader.join(STEP)
    assert not reader.is_alive(), "the read still waits after ihop ended"
    return took, rc, got[0]


@pytest.mark.parametrize("behaviour", BEHAVIOURS)
@pytest.mark.parametrize("via", ["serve", "fuse"])
def test_sigterm_ends_ihop_within_2_s_while_a_read_is_stuck(tmp_path, request, archive, via, behaviour):
    path, data = archive
    with Blackhole() as hole, misbehaving(path, behaviour, hole) as fs:
        # The defaults: without a stop, the read would wait minutes.
        store = tmp_path / "store"
        if via == "serve":
            dev = Serve(request.getfixturevalue("serve"), store, fs.url)
        else:
            dev = Fuse(request.getfixturevalue("fuse_mount"), tmp_path, store, fs.url, len(data))
        took, rc, (error, _) = stop_while_stuck(dev, fs, behaviour, hole, signal.SIGTERM)
    assert took <= STOP, f"ihop took {took:.2f} s to end:\n{dev.stderr}"
    assert rc == 0, dev.stderr
    assert error in (EIO, -1), error
    assert error_lines(dev.stderr) == [], "a stop is no error"
    check_store(store)  # no temp file left
    assert releases(store) == []


@pytest.mark.parametrize("via", ["serve", "fuse"])
def test_sigint_ends_ihop_within_2_s_while_a_read_is_stuck(tmp_path, request, archive, via):
    path, data = archive
    with misbehaving(path, "drip") as fs:
        store = tmp_path / "store"
        if via == "serve":
            dev = Serve(request.getfixturevalue("serve"), store, fs.url)
        else:
            dev = Fuse(request.getfixturevalue("fuse_mount"), tmp_path, store, fs.url, len(data))
        took, rc, (error, _) = stop_while_stuck(dev, fs, "drip", None, signal.SIGINT)
    assert took <= STOP, f"ihop took {took:.2f} s to end:\n{dev.stderr}"
    assert rc == 0, dev.stderr
    assert error in (EIO, -1), error
    check_store(store)
    assert releases(store) == []


def test_a_read_waits_no_longer_than_the_bound_however_the_fetch_goes(tmp_path, serve, archive):
    """With no floor under the rate (--http-min-rate 0), a dripping server
    holds each fetch for ever: five reads of five chunks at once (four
    connections to the server) fail with EIO at the bound all the same, the
    four whose chunks are on their way and the one whose fetch waited for a
    connection (its job is then dropped, never fetched); once the server
    recovers they read right."""
    path, data = archive
    a = parse_archive(path)
    t, bound = 1, 1 * (1 + 0 + 2)
    with FaultServer(path, mode="drip") as fs:
        dev = Serve(serve, tmp_path / "store", fs.url, "--http-timeout", str(t), "--http-retry-count", "0",
                    "--http-retry-delay", "0", "--http-min-rate", "0")
        picks = [3, 9, 15, 21, 27]
        results = {}
        threads = [threading.Thread(target=lambda k=k: results.__setitem__(k, timed(dev.read, k * CHUNK)),
                                    daemon=True) for k in picks]
        for th in threads:
            th.start()
        for th in threads:
            th.join(STEP)
        for k in picks:
            (error, _), took = results[k]
            assert error == EIO and took <= bound + SLACK, (k, error, took, dev.stderr)
        errors = error_lines(dev.stderr)
        waiting = [e for e in errors if "no connection came free for it within 3 s" in e]
        on_way = [e for e in errors if "still on its way after 3 s: the read fails with EIO" in e]
        assert len(waiting) == 1 and len(on_way) == 4 and len(errors) == 5, dev.stderr
        # The read that waited for a connection: its chunk was never asked for.
        dropped = int(re.search(r"archive offset (\d+)", waiting[0])[1])
        assert dropped not in {start for start, _ in fs.ranges()}, "a dropped job was fetched"

        assert dropped in {a.chunks[k].archive_offset for k in picks}
        assert dev.proc.poll() is None

        # Recovered, the server drops the dripping connections: the four
        # fetches fail (said), and the chunks are fetched again when read.
        fs.mode = "ok"
        wait_for(lambda: sum("could not be fetched" in e for e in error_lines(dev.stderr)) == 4, "the fetches' end")
        for k in picks:
            assert dev.read(k * CHUNK) == (0, data[k * CHUNK:k * CHUNK + BLOCK]), k


def test_clone_from_a_dripping_server_fails_within_the_bound(tmp_path, archive):
    """The rate's floor fails each attempt after --http-timeout: the clone
    fails after its retries with one error, and leaves nothing behind."""
    path, _ = archive
    store = tmp_path / "store"
    with FaultServer(path, mode="drip") as fs:
        r, took = timed(clone, fs.url, store / "s", "-j", "1", *HTTP)
    assert took <= BOUND + SLACK, f"clone took {took:.1f} s"
    assert_final_error(r, "less than 1024 bytes a second", fs.url)
    assert fs.dripped >= 1
    assert_no_release_and_clean(store, "s")


@pytest.mark.parametrize("value", ["x", "-1", "2GiB", "1.5K"])
def test_http_min_rate_wants_bytes_a_second(tmp_path, value):
    r = ihop("clone", "--http-min-rate", value, tmp_path / "a.cba", tmp_path / "store" / "s")
    assert r.returncode == 2, r.stderr
    assert f"--http-min-rate wants bytes a second (1024, 4KiB; 0: no floor), not '{value}'" in r.stderr
    assert not (tmp_path / "store").exists()


def test_a_floor_above_the_servers_rate_fails_each_attempt(tmp_path, archive):
    """--http-min-rate 4KiB against a server that sends 2,000 bytes a
    second, never idle: the attempt fails with that floor named, a window
    (--http-timeout) into the chunk data."""
    path, _ = archive
    with SlowServer(path, rate=2000, block=200) as slow:
        r, took = timed(clone, slow.url(path), tmp_path / "store" / "s", "-j", "1", "--http-timeout", "2",
                        "--http-retry-count", "0", "--http-min-rate", "4KiB")
    assert_final_error(r, "less than 4096 bytes a second")
    assert took <= 8, f"clone took {took:.1f} s"
    assert_no_release_and_clean(tmp_path / "store", "s")
