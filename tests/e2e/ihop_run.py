# SPDX-License-Identifier: MIT
"""Where ihop and the fixtures are, running ihop and reading what it says:
its one error line, the clone summary, `ihop info` and `ihop cat`, a
process's output line by line.
"""

import hashlib
import os
import re
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures"
IHOP = os.environ.get("IHOP", str(ROOT / "build" / "src" / "ihop"))
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


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


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
