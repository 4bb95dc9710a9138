# SPDX-License-Identifier: MIT
"""What an archive or a store says reaches the terminal escaped: metadata
keys and values, the version that wrote an archive or a release, release
names (ls) and names of leftover files (gc). Control characters (escape
sequences, BEL, carriage returns, newlines that would forge a line of the
output, C1 controls) and bytes that are not UTF-8 become \\xNN (or \\n,
\\t, \\r, \\\\); `ls --json` stays valid JSON."""

import hashlib
import json
import struct
import subprocess
from pathlib import Path

from ihop_run import FIXTURES, IHOP, TIMEOUT, clone_ok
from pb_wire import encode_varint, varint

SMALL = "rand-0_1_1-none.cba"
LABELS = ("archive:", "created by:", "archive size:", "header:", "header checksum:", "signed bytes:", "image size:",
          "image checksum:",
          "chunker:", "chunk hash length:", "chunks:", "compression:", "chunk data:", "metadata:", "release:",
          "written by:")


def run_bytes(*args) -> subprocess.CompletedProcess:
    return subprocess.run([IHOP, *args], capture_output=True, timeout=TIMEOUT, stdin=subprocess.DEVNULL)


def assert_safe_text(out: bytes):
    """Output a terminal can show as it is: UTF-8, no control character but newlines."""
    text = out.decode("utf-8")  # strict: invalid UTF-8 fails here
    for ch in text:
        assert ch == "\n" or not (ord(ch) < 0x20 or 0x7F <= ord(ch) < 0xA0), f"control character {ch!r} in {text!r}"
    return text


def with_version(message: bytes, version: bytes) -> bytes:
    """A protobuf message whose field 1 (application_version, a string in both
    the archive's and the store's dictionary) is replaced by version."""
    assert message[0] == 0x0A
    n, i = varint(message, 1)
    return b"\x0a" + encode_varint(len(version)) + version + message[i + n:]


def archive_with_version(src: Path, dst: Path, version: bytes):
    data = src.read_bytes()
    (n,) = struct.unpack_from("<Q", data, 6)
    (offset,) = struct.unpack_from("<Q", data, 14 + n)
    d = with_version(data[14:14 + n], version)
    head = data[:6] + struct.pack("<Q", len(d)) + d + struct.pack("<Q", offset + len(d) - n)
    dst.write_bytes(head + hashlib.blake2b(head).digest() + data[offset:])


def release_with_version(path: Path, version: bytes):
    data = path.read_bytes()
    (n,) = struct.unpack_from("<Q", data, 6)
    d = with_version(data[14:14 + n], version)
    body = data[:6] + struct.pack("<Q", len(d)) + d
    path.write_bytes(body + hashlib.blake2b(body).digest())


def line(label, value):
    return label.ljust(18) + " " + value


ESCAPED = "\\x1b]0;owned\\x07\\x1b[2J\\rnext\\nimage checksum: 00\\xc2\\x9b31m\\xff\\xfe"
HOSTILE = b"\x1b]0;owned\x07\x1b[2J\rnext\nimage checksum: 00\xc2\x9b31m\xff\xfe"


def test_info_escapes_archive_metadata_and_version(tmp_path):
    image = tmp_path / "image"
    image.write_bytes(b"y" * 5000)
    archive = tmp_path / "a.cba"
    r = run_bytes(b"compress", b"-i", bytes(image), bytes(archive),
                  b"--metadata-value", b"key\x1b[31m\nfake: line", b"value\nimage size: 1 B\x1b[0m\ttab",
                  b"--metadata-value", b"bad\xffkey", b"caf\xc3\xa9")
    assert r.returncode == 0, r.stderr
    hostile = tmp_path / "hostile.cba"
    archive_with_version(archive, hostile, HOSTILE)

    r = run_bytes(b"info", bytes(hostile))
    assert r.returncode == 0, r.stderr
    text = assert_safe_text(r.stdout)
    lines = text.splitlines()
    assert all(l.startswith(LABELS) for l in lines), lines
    assert sum(l.startswith("image checksum:") for l in lines) == 1
    assert line("created by:", ESCAPED) in lines, lines
    meta = [l for l in lines if l.startswith("metadata:")]
    assert line("metadata:", "key\\x1b[31m\\nfake: line = value\\nimage size: 1 B\\x1b[0m\\ttab") in meta, meta
    assert line("metadata:", "bad\\xffkey = caf\u00e9") in meta, meta


def test_info_escapes_a_release_descriptions_version(tmp_path):
    store = tmp_path / "store"
    clone_ok(FIXTURES / SMALL, store / "rel")
    release_with_version(store / "rel", HOSTILE)
    r = run_bytes(b"info", bytes(store / "rel"))
    assert r.returncode == 0, r.stderr
    text = assert_safe_text(r.stdout)
    assert line("written by:", ESCAPED) in text.splitlines()
    assert sum(l.startswith("image checksum:") for l in text.splitlines()) == 1


def test_ls_escapes_release_names_and_keeps_json_valid(tmp_path):
    store = tmp_path / "store"
    names = [b"red\x1b[31m", b"bad\xff", b"caf\xc3\xa9"]
    for n in names:
        r = run_bytes(b"clone", bytes(FIXTURES / SMALL), bytes(store) + b"/" + n)
        assert r.returncode == 0, r.stderr
    r = run_bytes(b"ls", bytes(store))
    assert r.returncode == 0, r.stderr
    rows = [l.split()[0] for l in assert_safe_text(r.stdout).splitlines()[1:-1]]
    assert sorted(rows) == sorted(["red\\x1b[31m", "bad\\xff", "caf\u00e9"])
    r = run_bytes(b"ls", b"--json", bytes(store))
    assert r.returncode == 0, r.stderr
    j = json.loads(r.stdout.decode("utf-8"))  # strict UTF-8, valid JSON
    # Valid UTF-8 names come as they are (JSON escapes ESC itself); the rest escaped.
    assert sorted(x["name"] for x in j["releases"]) == sorted(["red\x1b[31m", "bad\\xff", "caf\u00e9"])


def test_gc_escapes_the_names_it_prints(tmp_path):
    store = tmp_path / "store"
    clone_ok(FIXTURES / SMALL, store / "rel")
    (store / ".x\x1b[2J.tmp-Ab12Cd").write_bytes(b"half")
    r = run_bytes(b"gc", b"--dry-run", bytes(store))
    assert r.returncode == 0, r.stderr
    text = assert_safe_text(r.stdout)
    assert f"would remove {store}/.x\\x1b[2J.tmp-Ab12Cd (4 B, left by an interrupted clone)" in text.splitlines()
