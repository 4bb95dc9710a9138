# SPDX-License-Identifier: MIT
"""Ports on 127.0.0.1, and what the tests' own HTTP servers (fault_server,
slow_server) share: Range headers, a server that runs in a thread for a
`with` block, and a quiet HTTP/1.1 handler.
"""

import http.server
import re
import socket
import sys
import threading
import time


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


class QuietHandler(http.server.BaseHTTPRequestHandler):
    """Keeps connections alive (HTTP/1.1) and logs nothing to stderr."""

    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def _send(self, status, headers, body):
        self.send_response(status)
        for k, v in headers:
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def _not_found(self):
        body = b"not found\n"
        self._send(404, [("Content-Length", str(len(body)))], body)


class LocalServer(http.server.ThreadingHTTPServer):
    """An HTTP server on a free port of 127.0.0.1, serving in a thread from
    `with` to its end. `stopping` is set when the block ends, so that
    handlers that wait (stalls, throttling) give up; `lock` guards what
    handlers record."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, handler):
        super().__init__(("127.0.0.1", 0), handler)
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def handle_error(self, request, client_address):
        # A client that went away (a failed or killed clone) is no error of the server's.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stopping.set()
        self.shutdown()
        self.server_close()
        self.thread.join(10)
        assert not self.thread.is_alive()
