# SPDX-License-Identifier: MIT
"""An HTTP server of the tests' own that serves one archive with a chosen
misbehaviour: cut, stalled, shifted or flipped ranges, error statuses,
ranges ignored, short and long bodies, redirects, bodies dripped a byte at
a time, silence, a redirect to where no connection completes (see
FaultServer).
"""

import select
import socket
import time
from pathlib import Path

from bita_archive import parse_archive
from local_http import LocalServer, QuietHandler, parse_range


class FaultHandler(QuietHandler):
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
            self._not_found()
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
        elif mode == "drip":
            # The right headers, then a byte every drip_every seconds: never
            # idle long, never done. Until the client goes away, the mode
            # changes (the server "recovers": the connection is dropped) or
            # the server stops.
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
            self.send_header("Content-Length", str(length))
            self.end_headers()
            self.close_connection = True
            try:
                self.wfile.flush()
                for pos in range(start, end + 1):
                    if srv.stopping.wait(srv.drip_every) or srv.mode != "drip":
                        break
                    self.wfile.write(data[pos:pos + 1])
                    with srv.lock:
                        srv.dripped += 1
            except OSError:
                pass
        elif mode == "silent":
            # Not a byte: the request is read, then nothing, until the client
            # goes away, the mode changes or the server stops.
            self.close_connection = True
            while not srv.stopping.is_set() and srv.mode == "silent":
                ready, _, _ = select.select([self.connection], [], [], 0.05)
                try:
                    if ready and not self.connection.recv(65536):
                        break
                except OSError:
                    break
        elif mode == "elsewhere":
            # A redirect to `elsewhere`: a place no connection completes to.
            self._send(307, [("Location", srv.elsewhere), ("Content-Length", "0")], b"")
        elif mode == "flip":
            # The right headers; one byte in the middle of the range flipped.
            body = bytearray(data[start:end + 1])
            body[length // 2] ^= 0xFF
            self._send(206, [("Content-Range", f"bytes {start}-{end}/{size}"),
                             ("Content-Length", str(len(body)))], bytes(body))
        else:
            raise AssertionError(mode)


class FaultServer(LocalServer):
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
    headers) is logged in `requests`.

    Modes for what never ends (NEW_MODES too): "drip" (the right headers,
    then a byte of the body every `drip_every` seconds; `dripped` counts
    them), "silent" (the request read, nothing sent), "elsewhere" (a 307 to
    the URL `elsewhere`, see Blackhole). Changing `mode` ends them: the
    connection is dropped, as by a server that recovers."""

    NEW_MODES = ("status", "ignore-range", "short", "long", "long-split", "flip", "drip", "silent", "elsewhere")

    def __init__(self, path: Path, mode="ok", cuts=0, fault_from=None, times=None, status=500, retry_after=None,
                 redirects=None, redirect_body=b"moved\n", drip_every=0.5, elsewhere=None):
        super().__init__(FaultHandler)
        self.drip_every = drip_every
        self.dripped = 0
        self.elsewhere = elsewhere
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
        self.mode = mode
        self.cuts_left = cuts
        self.cut_at = []
        self.requests = []

    @property
    def url(self):
        return f"http://127.0.0.1:{self.server_address[1]}{self.path}"

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

    def ranges(self):
        """The (start, end) of every range request received, in order."""
        with self.lock:
            reqs = list(self.requests)
        return [parse_range(r[1], len(self.data)) for r in reqs if r[1]]


class Blackhole:
    """A port of 127.0.0.1 that no connection completes to, for a `with`
    block: it listens with a backlog of none and one connection of its own
    fills it, so the kernel drops every other SYN and a client waits in
    connect() until it gives up."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(0)
        self.port = self.sock.getsockname()[1]
        self.held = []

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}/nowhere.cba"

    def __enter__(self):
        # Fill the queue until a connection does not complete.
        while True:
            c = socket.socket()
            c.settimeout(0.5)
            try:
                c.connect(("127.0.0.1", self.port))
            except OSError:
                c.close()
                break
            self.held.append(c)
            assert len(self.held) < 16, "the listen queue never filled"
        return self

    def __exit__(self, *exc):
        for c in self.held:
            c.close()
        self.sock.close()
