# SPDX-License-Identifier: MIT
"""An HTTP server of the tests' own that serves files at a chosen rate and
logs what each request got (SlowServer), and which chunks of an archive
those requests asked for and received (the lifecycle, kill and repair tests).
"""

import time
from dataclasses import dataclass
from pathlib import Path

from bita_archive import Archive
from local_http import LocalServer, QuietHandler, parse_range


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


class SlowHandler(QuietHandler):
    def do_GET(self):
        srv = self.server
        if srv.max_body is not None and srv.sent_total >= srv.max_body:
            self.close_connection = True  # gone dark: the connection closes, nothing sent
            return
        data = srv.files.get(self.path)
        if data is None:
            self._not_found()
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
                if srv.max_body is not None:
                    with srv.lock:
                        n = min(n, max(0, srv.max_body - srv.sent_total))
                        srv.sent_total += n
                    if n == 0:
                        break
                self.wfile.write(data[pos:pos + n])
                entry.sent += n
                pos += n
            entry.done = pos > end
        except OSError:  # the client went away (killed)
            pass
        if not entry.done:
            self.close_connection = True


class SlowServer(LocalServer):
    """Serves files (their names: /<name>) from 127.0.0.1 with Range support,
    at most `rate` body bytes a second over all connections together (None:
    full speed; may be changed at any time), in blocks of `block` bytes.
    Every request is logged in `served` with the `tag` set when it came in.
    With `max_body` set, it stops for good once it has sent that many body
    bytes in all: the connection closes mid-body, later ones unanswered."""

    def __init__(self, *paths, rate=None, block=16 << 10):
        super().__init__(SlowHandler)
        self.files = {"/" + Path(p).name: Path(p).read_bytes() for p in paths}
        self.rate = rate
        self.block = block
        self.tag = None
        self.served = []
        self.next_slot = 0.0
        self.max_body = None
        self.sent_total = 0

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
