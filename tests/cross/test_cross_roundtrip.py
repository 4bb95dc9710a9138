# SPDX-License-Identifier: MIT
"""The cross-built ihop (scripts/cross-build.sh ARCH --test) under qemu
user-mode emulation, against the native build on the same inputs:

- compress writes byte for byte the archive the native build writes (the
  chunker, hashes and codecs agree across architectures);
- clone from a file (ihop's archive and bita's), cat and verify give the
  image back, and the store it writes is the one the native build reads;
- serve is read by nbdcopy and nbdinfo on the host;
- a signed release is taken, and a tampered one refused.

Environment: IHOP (native), IHOP_CROSS (the cross-built binary),
IHOP_CROSS_QEMU (qemu-aarch64-static, qemu-arm-static, with its options
when the libraries come from a sysroot)."""

import contextlib
import hashlib
import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "e2e"))
from bita_archive import blake2b_file, parse_archive  # noqa: E402

FIXTURES = ROOT / "tests" / "fixtures"
NATIVE = os.environ.get("IHOP", str(ROOT / "build" / "src" / "ihop"))
CROSS = os.environ.get("IHOP_CROSS", "")
QEMU = shlex.split(os.environ.get("IHOP_CROSS_QEMU", ""))
TIMEOUT = 300

pytestmark = pytest.mark.skipif(not (CROSS and QEMU), reason="IHOP_CROSS and IHOP_CROSS_QEMU are not set")


def run(args, **kw):
    return subprocess.run([str(a) for a in args], capture_output=True, timeout=TIMEOUT, stdin=subprocess.DEVNULL,
                          **kw)


def cross(*args):
    return run([*QEMU, CROSS, *args])


def native(*args):
    return run([NATIVE, *args])


def ok(r):
    assert r.returncode == 0, r.stderr.decode(errors="replace")
    return r


def test_the_binary_is_the_cross_architectures():
    out = run(["file", "-L", CROSS]).stdout.decode()
    assert "ARM" in out or "aarch64" in out, out
    assert ok(cross("--version")).stdout.decode().startswith("ihop ")


@pytest.fixture(scope="module")
def image(tmp_path_factory):
    """8 MiB: random blocks, a repeated block, runs of zeros and of 0xff."""
    d = tmp_path_factory.mktemp("img")
    rnd = hashlib.shake_256(b"cross").digest(3 << 20)
    data = rnd[:2 << 20] + bytes(1 << 20) + rnd[:256 << 10] * 4 + b"\xff" * (1 << 20) + rnd[2 << 20:] + bytes(777)
    p = d / "image"
    p.write_bytes(data)
    return p


@pytest.mark.parametrize("options", [[], ["--compression", "zstd", "--hash-chunking", "BuzHash"],
                                     ["--compression", "lzma", "--fixed-size", "64KiB"]])
def test_compress_writes_the_archive_the_native_build_writes(image, tmp_path, options):
    ok(native("compress", "-i", image, *options, tmp_path / "native.cba"))
    ok(cross("compress", "-i", image, *options, tmp_path / "cross.cba"))
    assert (tmp_path / "cross.cba").read_bytes() == (tmp_path / "native.cba").read_bytes()


@contextlib.contextmanager
def cross_serve(release: Path, sock: Path):
    """The cross build's serve of STORE/NAME on a unix socket: its NBD URI."""
    p = subprocess.Popen([*QEMU, CROSS, "serve", "--unix", str(sock), str(release)], stdin=subprocess.DEVNULL,
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while not sock.exists() and time.monotonic() < deadline and p.poll() is None:
            time.sleep(0.05)
        assert sock.exists(), p.stderr.read() if p.poll() is not None else "no socket"
        yield f"nbd+unix:///{release.name}?socket={sock}"
    finally:
        p.terminate()
        p.wait(60)
    assert p.returncode == 0, p.stderr.read()


def cat_blake2b(runner, release) -> bytes:
    r = ok(runner("cat", release))
    return hashlib.blake2b(r.stdout).digest()


def test_clone_cat_verify_round_trip(image, tmp_path):
    ok(native("compress", "-i", image, tmp_path / "r.cba"))
    store = tmp_path / "store"
    r = ok(cross("clone", tmp_path / "r.cba", store / "r"))
    assert b"fetched" in r.stdout
    want = hashlib.blake2b(image.read_bytes()).digest()
    assert cat_blake2b(cross, store / "r") == want
    v = ok(cross("verify", store / "r"))
    assert b"OK" in v.stdout and b"0 corrupt" in v.stdout
    # The store is the native build's too, both ways.
    assert cat_blake2b(native, store / "r") == want
    ok(native("clone", FIXTURES / "pair/v1.ext4.cba", store / "v1"))
    assert cat_blake2b(cross, store / "v1") == parse_archive(FIXTURES / "pair/v1.ext4.cba").source_checksum
    # bita's archive, cloned by the cross build, reusing what the store has.
    r = ok(cross("clone", FIXTURES / "pair/v2.ext4.cba", store / "v2"))
    assert b"reused" in r.stdout
    assert cat_blake2b(native, store / "v2") == parse_archive(FIXTURES / "pair/v2.ext4.cba").source_checksum


def test_serve_is_read_by_nbdcopy_on_the_host(image, tmp_path):
    ok(native("compress", "-i", image, tmp_path / "r.cba"))
    ok(cross("clone", tmp_path / "r.cba", tmp_path / "store" / "r"))
    with cross_serve(tmp_path / "store" / "r", tmp_path / "s.sock") as uri:
        size = ok(run(["nbdinfo", "--size", uri])).stdout.decode().strip()
        assert int(size) == image.stat().st_size
        data = ok(run(["nbdcopy", uri, "-"])).stdout
        assert data == image.read_bytes()


def test_signed_release_is_taken_and_a_tampered_one_refused(image, tmp_path):
    ok(native("keygen", "-W", "-p", tmp_path / "k.pub", "-s", tmp_path / "k.key"))
    ok(native("compress", "-i", image, "--sign", tmp_path / "k.key", "--release-version", "5", tmp_path / "r.cba"))
    r = ok(cross("clone", "--trusted-key", tmp_path / "k.pub", tmp_path / "r.cba", tmp_path / "s" / "r"))
    assert b"release version 5" in r.stdout
    # Signing on the device's side: keygen and sign by the cross build, checked natively.
    ok(cross("keygen", "-W", "-p", tmp_path / "c.pub", "-s", tmp_path / "c.key"))
    shutil.copy(tmp_path / "r.cba", tmp_path / "c.cba")
    ok(cross("sign", "-s", tmp_path / "c.key", "--release-version", "6", tmp_path / "c.cba"))
    ok(native("clone", "--trusted-key", tmp_path / "c.pub", tmp_path / "c.cba", tmp_path / "s" / "c"))
    sig = tmp_path / "r.cba.minisig"
    sig.write_text(sig.read_text().replace("ihop-release-version=5", "ihop-release-version=50"))
    r = cross("clone", "--trusted-key", tmp_path / "k.pub", tmp_path / "r.cba", tmp_path / "s2" / "r")
    assert r.returncode == 1 and b"altered" in r.stderr
    assert not (tmp_path / "s2" / "r").exists()


LARGE = os.environ.get("IHOP_CROSS_LARGE") == "1"


@pytest.fixture(scope="module")
def large_image(tmp_path_factory):
    """4 GiB + 5 MiB + 333 bytes, sparse: random MiBs at the start, across
    2^31, across 2^32 and at the end; zeros between."""
    p = tmp_path_factory.mktemp("large") / "large.img"
    size = (4 << 30) + (5 << 20) + 333
    pieces = [0, (2 << 30) - (512 << 10), (4 << 30) - (512 << 10), size - (1 << 20) - 333]
    with open(p, "wb") as f:
        f.truncate(size)
        for i, at in enumerate(pieces):
            f.seek(at)
            f.write(hashlib.shake_256(b"large %d" % i).digest((1 << 20) + (333 if i == 3 else 0)))
    return p


@pytest.mark.skipif(not LARGE, reason="IHOP_CROSS_LARGE=1 (scripts/cross-build.sh sets it for 32-bit armhf)")
def test_image_over_4gib_round_trips_through_compress_clone_cat_and_serve(large_image, tmp_path):
    """What 32-bit size_t and long would truncate: sizes and offsets past 2^31 and 2^32."""
    size = large_image.stat().st_size
    want = blake2b_file(large_image)
    ok(cross("compress", "-i", large_image, tmp_path / "cross.cba"))
    ok(native("compress", "-i", large_image, tmp_path / "native.cba"))
    assert blake2b_file(tmp_path / "cross.cba") == blake2b_file(tmp_path / "native.cba")
    info = ok(cross("info", tmp_path / "cross.cba")).stdout.decode()
    assert f"({size} bytes)" in info
    store = tmp_path / "store"
    ok(cross("clone", tmp_path / "cross.cba", store / "big"))
    # cat to a file (its own checksum check included), compared whole.
    ok(cross("cat", "-o", tmp_path / "out.img", store / "big"))
    assert (tmp_path / "out.img").stat().st_size == size
    assert blake2b_file(tmp_path / "out.img") == want
    (tmp_path / "out.img").unlink()
    ok(cross("verify", store / "big"))
    with cross_serve(store / "big", tmp_path / "s.sock") as uri:
        assert int(ok(run(["nbdinfo", "--size", uri])).stdout.decode()) == size
        ok(run(["nbdcopy", uri, tmp_path / "served.img"]))
        assert blake2b_file(tmp_path / "served.img") == want
