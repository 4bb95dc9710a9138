# SPDX-License-Identifier: MIT
"""The real nginx, serving a copy of the fixtures on 127.0.0.1 and logging
each request's status, body bytes and Range header.
"""

import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from ihop_run import FIXTURES
from local_http import free_port, wait_port

NGINX = "/usr/sbin/nginx"


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
    """The real nginx, serving a copy of the fixtures from www/; over TLS
    when given tls=(certificate, key, client CA or None): with a client CA,
    only clients with a certificate it signed are served."""

    def __init__(self, base: Path, tls=None):
        self.base = base
        self.tls = tls
        self.www = base / "www"
        self.log = base / "access.log"
        self.proc = None
        self.port = None

    def _conf(self, port):
        b = self.base
        listen, tls = f"127.0.0.1:{port}", ""
        if self.tls:
            cert, key, client_ca = self.tls
            listen += " ssl"
            tls = f"ssl_certificate {cert}; ssl_certificate_key {key};"
            if client_ca:
                tls += f" ssl_client_certificate {client_ca}; ssl_verify_client on;"
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
        listen {listen};
        {tls}
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
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}/{name}"

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
