# SPDX-License-Identifier: MIT
"""`serve --source` and `mount --source` when the store cannot take what
is fetched: its file system full while chunks come in, or the description
blocked when the last one does, or read-only from the start (refused then,
unless the whole release is there); and the usage errors of --source not
covered by test_ondemand.py.

Real file systems (tmpfs, filled and grown with `mount -o remount`, and
remounted read-only; read-only bind mounts), the session's real nginx, a
real NBD client (test_serve.RawNbd) and FUSE reads through the kernel:
nothing is faked."""

import errno
import hashlib
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from bita_archive import parse_archive
from fault_server import FaultServer
from ihop_run import FIXTURES, IHOP, clone_ok, ihop, run
from store_checks import check_release_file, check_store, releases
from test_fuse_mount import PAIR_V1, STEP, FuseMount
from test_in_use import read_only_view, wait_for  # noqa: F401 (read_only_view: a fixture)
from test_ondemand import (PAIR_V2, chunk_data_fetched, nbd_read, on_demand_once, signed_copy,
                           unique_archive_bytes)
from test_serve import chunk_layout, pick_victim, serve  # noqa: F401 (serve: a fixture)

READ = 1 << 20  # one read of the device
PAGE = 4096  # tmpfs counts its space in pages


@pytest.fixture(scope="module")
def v1_image(tmp_path_factory) -> bytes:
    """The image of pair/v1 as a normal clone and `ihop cat` make it."""
    ref = tmp_path_factory.mktemp("ref") / "store" / "v1"
    clone_ok(FIXTURES / PAIR_V1, ref)
    data = subprocess.run([IHOP, "cat", str(ref)], capture_output=True, timeout=STEP, check=True).stdout
    assert hashlib.blake2b(data).digest() == parse_archive(FIXTURES / PAIR_V1).source_checksum
    return data


class NbdDevice:
    """The release as `serve --source` exports it, read over NBD."""

    def __init__(self, serve, store, url):
        self.srv = serve([store / "v1"], "--source", url)

    def pread(self, off, n):
        error, data = nbd_read(self.srv, "v1", off, n)
        if error:
            raise OSError(error, os.strerror(error))
        return data

    def alive(self):
        return self.srv.alive()

    @property
    def stderr(self):
        return self.srv.stderr

    def stop(self):
        return self.srv.stop()


class FuseDevice:
    """The release as `mount --source` makes it a file, read through the kernel."""

    def __init__(self, tmp_path, store, url, size):
        self.m = FuseMount(store / "v1", tmp_path / "v1.file", size, "--source", url)

    def pread(self, off, n):
        fd = os.open(self.m.target, os.O_RDONLY)
        try:
            return os.pread(fd, n, off)
        finally:
            os.close(fd)

    def alive(self):
        return self.m.proc.poll() is None

    @property
    def stderr(self):
        return self.m.stderr

    def stop(self):
        return self.m.unmount()

    def cleanup(self):
        self.m.cleanup()


def read_all(dev, want) -> list:
    """Reads the whole device in READ-sized reads (a short one is taken as
    far as it goes). Asserts every byte read is the image's; returns the
    offsets of the reads that failed (each must fail with EIO)."""
    failed, off = [], 0
    while off < len(want):
        n = min(READ - off % READ, len(want) - off)
        try:
            data = dev.pread(off, n)
        except OSError as e:
            assert e.errno == errno.EIO, f"read at {off}: {e}"
            failed.append(off)
            off += n
            continue
        assert data, f"end of file at {off} of {len(want)}"
        assert data == want[off:off + len(data)], f"wrong data read at {off}"
        off += len(data)
    return failed


def error_lines(text) -> list:
    return [line for line in text.splitlines() if line.startswith("ihop: error:")]


def wait_until_quiet(store, quiet=0.3):
    """Waits until no fetch is writing to the store (a prefetch or a
    kernel's read-ahead may still be going after the read that started it):
    no temp file, and nothing changed for `quiet` seconds."""
    last, since, deadline = None, time.monotonic(), time.monotonic() + STEP
    while True:
        files = sorted(str(p) for p in store.rglob("*"))
        now = time.monotonic()
        if files != last or any(".tmp-" in f for f in files):
            last, since = files, now
        elif now - since >= quiet:
            return
        assert now < deadline, "the store never came to rest"
        time.sleep(0.02)


def remount(fs, *options):
    r = run(["mount", "-o", ",".join(("remount",) + options), fs], timeout=STEP)
    assert r.returncode == 0, r.stderr


@pytest.mark.parametrize("via", ["serve", "mount"])
def test_a_full_store_fails_reads_with_eio_and_once_grown_the_release_completes(
        tmp_path, nginx, tmpfs, serve, v1_image, via):
    """The store's file system (4 MiB) cannot hold the release's chunks
    (25 MiB, one of them 5.3 MiB): the reads whose chunks do not fit fail
    with EIO, each saying No space left on device, the others read right;
    the server stays up; the store holds only whole, right chunks and no
    description. Grown to 64 MiB, the same mount reads the whole image
    and the release becomes an ordinary one."""
    want = v1_image
    fs = tmpfs("fs", "size=4m")
    store = fs / "store"
    dev = NbdDevice(serve, store, nginx.url(PAIR_V1)) if via == "serve" else \
        FuseDevice(tmp_path, store, nginx.url(PAIR_V1), len(want))
    try:
        failed = read_all(dev, want)
        assert failed, "4 MiB of store took the whole release"
        assert len(failed) < len(want) // READ, "no read succeeded: some chunks fit in 4 MiB"
        # A later read of what failed tries again, and fails again.
        with pytest.raises(OSError) as e:
            dev.pread(failed[-1], 4096)
        assert e.value.errno == errno.EIO
        assert dev.alive()
        errors = error_lines(dev.stderr)
        assert errors, dev.stderr
        assert all("No space left on device" in line for line in errors), dev.stderr
        wait_until_quiet(store)
        have = check_store(store)
        assert have, "no chunk was stored"
        assert have <= {c.hash.hex() for c in parse_archive(FIXTURES / PAIR_V1).chunks}
        assert releases(store) == [], "an incomplete release appeared"

        remount(fs, "size=64m")
        assert read_all(dev, want) == []
        wait_for(lambda: (store / "v1").exists(), "the release description")
        # Said once the description is in place: after it, not with it.
        wait_for(lambda: "it is now an ordinary release" in dev.stderr, "the line that says the release is complete")
        assert dev.stop() == 0
    finally:
        if via == "mount":
            dev.cleanup()
    check_store(store)
    assert releases(store) == ["v1"]
    check_release_file(store / "v1")
    r = ihop("verify", store / "v1")
    assert r.returncode == 0, r.stderr


def fill_up(fs, keep):
    """Fills the file system fs up to keep bytes free (whole pages)."""
    st = os.statvfs(fs)
    free = st.f_bavail * st.f_frsize
    assert free > keep, (free, keep)
    with open(fs / "filler", "wb") as f:
        f.write(b"\xa5" * (free - keep))
    st = os.statvfs(fs)
    assert st.f_bavail * st.f_frsize == keep


@pytest.mark.parametrize("how", ["full", "directory"])
def test_a_description_that_cannot_be_written_leaves_no_release_and_reads_go_on(
        tmp_path, nginx, tmpfs, serve, v1_image, how):
    """Every chunk but one is in the store (a clone's, the release removed);
    the last one comes in with a read, and then the description cannot be
    written: the file system has room for that chunk but not for the
    description (full), or a directory has taken the release's name
    (directory). The read gets the right bytes, the errors say why (the
    store's, and that the description cannot be written), the server goes
    on serving the whole image right, and no description, whole or partial,
    is in the store. Started again with room, the release is
    described at the start."""
    a = parse_archive(FIXTURES / PAIR_V1)
    fs = tmpfs("fs", "size=40m")
    store = fs / "store"
    clone_ok(FIXTURES / PAIR_V1, store / "v1")
    r = ihop("rm", store / "v1")
    assert r.returncode == 0, r.stderr
    off, size, victim, _ = pick_victim(a, store)
    victim.unlink()

    srv = serve([store / "v1"], "--source", nginx.url(PAIR_V1))
    assert f"{len(a.chunks) - 1} of {len(a.chunks)} chunks in the store" in srv.stderr, srv.stderr
    if how == "full":
        # Room for the chunk's pages and one more: the description takes five.
        fill_up(fs, (size + PAGE - 1) // PAGE * PAGE + PAGE)
        cause = "No space left on device"
    else:
        (store / "v1").mkdir()
        (store / "v1" / "keep").write_text("not a release")
        cause = "is a directory, not a release description"  # kept: never replaced

    assert nbd_read(srv, "v1", off, size) == (0, v1_image[off:off + size])
    wait_for(lambda: "no release until its description is written" in srv.stderr, "the description's failure")
    assert victim.is_file(), "the last chunk was not stored"
    errors = error_lines(srv.stderr)
    assert errors and all(cause in line for line in errors), srv.stderr
    assert sum("no release until its description is written" in line for line in srv.stderr.splitlines()) == 1, \
        srv.stderr
    assert srv.alive()
    # Nothing of a description: no file under the name, no temp file.
    assert releases(store) == []
    assert sorted(p.name for p in store.iterdir() if p.name.startswith(".v1")) == []
    check_store(store)
    if how == "directory":
        assert (store / "v1" / "keep").read_text() == "not a release"
    # The server goes on: the whole image, right, from the store.
    since = nginx.mark()
    error, data = nbd_read(srv, "v1", 0, len(v1_image))
    assert error == 0 and data == v1_image
    assert chunk_data_fetched(nginx.entries(since), a) == 0
    assert srv.stop() == 0
    assert not (store / "v1").is_file()

    # With room again, a start finds every chunk and writes the description.
    if how == "full":
        (fs / "filler").unlink()
    else:
        (store / "v1" / "keep").unlink()
        (store / "v1").rmdir()
    srv = serve([store / "v1"], "--source", nginx.url(PAIR_V1))
    assert "it is now an ordinary release" in srv.stderr, srv.stderr
    assert srv.stop() == 0
    assert releases(store) == ["v1"]
    check_release_file(store / "v1")
    r = ihop("verify", store / "v1")
    assert r.returncode == 0, r.stderr
    check_store(store)


def unique_to(a, b) -> set:
    """The hashes of a's chunks that b lacks."""
    return {c.hash for c in a.chunks} - {c.hash for c in b.chunks}


def test_chunks_a_clone_stores_meanwhile_count_and_are_not_fetched(tmp_path, nginx, serve, v1_image):
    """While v1 is served on demand from an empty store, v2 (which shares
    most of v1's chunks) is cloned into that store. Reading the whole of v1
    then fetches only the chunks v2 lacks, and, every chunk being in the
    store, v1 is described."""
    a1, a2 = parse_archive(FIXTURES / PAIR_V1), parse_archive(FIXTURES / PAIR_V2)
    store = tmp_path / "store"
    srv = serve([store / "v1"], "--source", nginx.url(PAIR_V1))
    clone_ok(FIXTURES / PAIR_V2, store / "v2")
    since = nginx.mark()
    error, data = nbd_read(srv, "v1", 0, len(v1_image))
    assert error == 0 and data == v1_image
    assert srv.alive()
    fetched = chunk_data_fetched(nginx.entries(since), a1)
    assert fetched <= unique_archive_bytes(a1, unique_to(a1, a2)), fetched
    wait_for(lambda: (store / "v1").exists(), "the description of v1", timeout=3)
    assert srv.stop() == 0
    r = ihop("verify", store / "v1")
    assert r.returncode == 0, r.stderr


def test_a_release_cloned_under_the_name_meanwhile_is_not_replaced(tmp_path, nginx, serve):
    """v1 is served on demand, one chunk short; meanwhile v2 is cloned
    under the same name (clone finds no release v1, so it may). The read
    that brings v1's last chunk in must not replace the release the clone
    made with v1's description."""
    a1, a2 = parse_archive(FIXTURES / PAIR_V1), parse_archive(FIXTURES / PAIR_V2)
    store = tmp_path / "store"
    clone_ok(FIXTURES / PAIR_V1, store / "v1")
    assert ihop("rm", store / "v1").returncode == 0
    # The last chunk: one of v1's only, so that the clone of v2 does not store it.
    only_v1 = unique_to(a1, a2)
    layout = [(off, size, c) for off, size, c in chunk_layout(a1) if c.hash in only_v1]
    off, size, last = layout[len(layout) // 2]
    (store / "chunks" / last.hash.hex()[:4] / f"{last.hash.hex()}.chunk").unlink()
    srv = serve([store / "v1"], "--source", nginx.url(PAIR_V1))
    clone_ok(FIXTURES / PAIR_V2, store / "v1")
    v2_description = (store / "v1").read_bytes()

    error, _ = nbd_read(srv, "v1", off, size)
    assert error == 0
    assert srv.alive()
    assert srv.stop() == 0
    assert (store / "v1").read_bytes() == v2_description, "v2, cloned as v1, was replaced by v1"
    assert any("v1" in line for line in error_lines(srv.stderr)), srv.stderr


@pytest.mark.parametrize("dashdash", [False, True])
def test_serve_takes_at_most_64_releases(tmp_path, dashdash):
    """65 releases are a usage error, said once, before anything is done;
    64 pass the command line (and fail on the second, not in the store)."""
    sep = ["--"] if dashdash else []
    names = [tmp_path / "S" / f"r{i}" for i in range(65)]
    r = ihop("serve", "--unix", tmp_path / "s.sock", "--source", FIXTURES / PAIR_V1, *sep, *names)
    assert r.returncode == 2, r.stderr
    assert error_lines(r.stderr) == ["ihop: error: serve: at most 64 operands"], r.stderr
    assert "Usage: ihop serve" in r.stderr
    assert not (tmp_path / "S").exists() and not (tmp_path / "s.sock").exists()
    # 64 are taken: the first is opened (on demand), the second is not there.
    r = ihop("serve", "--unix", tmp_path / "s.sock", "--source", FIXTURES / PAIR_V1, *sep, *names[:64])
    assert r.returncode == 1, r.stderr
    assert error_lines(r.stderr) == [f"ihop: error: release {names[1]} does not exist"], r.stderr
    assert not (tmp_path / "s.sock").exists()


@pytest.fixture(scope="module")
def public_key(tmp_path_factory):
    d = tmp_path_factory.mktemp("keys")
    r = ihop("keygen", "-W", "-p", d / "k.pub", "-s", d / "k.key")
    assert r.returncode == 0, r.stderr
    return d / "k.pub"


@pytest.mark.parametrize("args,message", [
    (["serve", "--unix", "SOCK", "--trusted-key", "KEY", "S/v1"], "--trusted-key goes with --source"),
    (["serve", "--unix", "SOCK", "--fill", "S/v1"], "--fill goes with --source"),
    (["serve", "--unix", "SOCK", "--source", "a.cba", "--"], "Usage: ihop serve"),
    (["mount", "--trusted-key", "KEY", "S/v1", "FILE"], "--trusted-key goes with --source"),
    (["mount", "--allow-downgrade", "--source", "a.cba", "S/v1", "FILE"], "--allow-downgrade needs --trusted-key"),
    (["mount", "--http-key", "KEY", "--source", "a.cba", "S/v1", "FILE"], "--http-key goes with --http-cert"),
    (["mount", "--mirror", "ftp://mirror/a.cba", "--source", "a.cba", "S/v1", "FILE"], "--mirror wants an http(s)"),
    (["mount", "--http-retry-count", "x", "--source", "a.cba", "S/v1", "FILE"], "--http-retry-count wants"),
    (["serve", "--unix", "SOCK", "--source", "a.cba", "S/chunks"], "is not a valid release name"),
    (["mount", "--source", "a.cba", "S/.v1", "FILE"], "is not a valid release name"),
])
def test_more_on_demand_usage_errors(tmp_path, public_key, args, message):
    """Each is refused (exit 2) before anything is made: no store, no socket."""
    subst = {"SOCK": tmp_path / "s.sock", "KEY": public_key, "FILE": tmp_path / "f"}
    (tmp_path / "f").touch()
    r = ihop(*[subst.get(a, tmp_path / a if a.startswith("S/") else a) for a in args])
    assert r.returncode == 2, r.stderr
    assert message in r.stderr, r.stderr
    assert len(error_lines(r.stderr)) <= 1, r.stderr
    assert not (tmp_path / "S").exists() and not (tmp_path / "s.sock").exists()


def test_a_source_before_dash_dash_is_for_the_release_after_it(tmp_path, nginx, serve, v1_image):
    """`serve --source URL -- STORE/NAME` (a release path may begin with a
    dash): the source is the release's, as without the `--`."""
    store = tmp_path / "store"
    srv = serve(["--source", nginx.url(PAIR_V1), "--", store / "v1"])
    assert nbd_read(srv, "v1", 0, len(v1_image)) == (0, v1_image)
    assert srv.stop() == 0
    check_store(store)


def test_verify_on_demand_repairs_a_corrupt_stored_chunk_from_the_source(tmp_path, nginx, serve, v1_image):
    """serve --verify --source: half of v1's chunks are in the store, one of
    them with a byte flipped (its size right). Every fetched chunk reads
    right (checked as it came in, read without a second hash); a chunk
    found in the store is hashed at its first read as under any --verify,
    and the flipped one, instead of failing, is fetched again from the
    source, renamed over the bad copy and read right: one warning names
    it, once, and the store then holds only right chunks."""
    a = parse_archive(FIXTURES / PAIR_V1)
    store = tmp_path / "store"
    clone_ok(FIXTURES / PAIR_V1, store / "v1")
    assert ihop("rm", store / "v1").returncode == 0
    off, size, victim, pos = pick_victim(a, store)
    layout = chunk_layout(a)
    uses = {}
    for _, _, c in layout:
        uses[c.hash] = uses.get(c.hash, 0) + 1
    for i, (_, _, c) in enumerate(layout):
        p = store / "chunks" / c.hash.hex()[:4] / f"{c.hash.hex()}.chunk"
        if i % 2 and i != pos and uses[c.hash] == 1 and p.exists():
            p.unlink()
    right = victim.read_bytes()
    flipped = bytearray(right)
    flipped[len(flipped) // 2] ^= 0x01
    victim.write_bytes(flipped)

    srv = serve([store / "v1"], "--verify", "--source", nginx.url(PAIR_V1))
    since = nginx.mark()
    for i, (o, n, c) in enumerate(layout):
        assert nbd_read(srv, "v1", o, n) == (0, v1_image[o:o + n]), f"chunk {i} at {o}"
    assert nbd_read(srv, "v1", off, size) == (0, v1_image[off:off + size])
    assert srv.alive()
    wait_until_quiet(store)
    assert srv.stop() == 0
    warned = [line for line in srv.stderr.splitlines() if "is corrupt" in line]
    assert len(warned) == 1 and victim.name[:-len(".chunk")] in warned[0] and "fetched again" in warned[0], \
        srv.stderr
    assert error_lines(srv.stderr) == [], srv.stderr
    assert victim.read_bytes() == right, "the bad copy is still in the store"
    check_store(store)
    assert releases(store) == ["v1"], "every chunk is in: the release is described"
    assert ihop("verify", store / "v1").returncode == 0


def test_a_corrupt_stored_chunk_whose_source_fails_reads_as_eio_until_it_recovers(tmp_path, serve, v1_image):
    """serve --verify --source with every chunk-data request answered 500:
    the flipped chunk in the store cannot be fetched again, so its read
    fails with EIO, never the bad bytes; the warning and the error say why,
    the server stays up, no temp file is left and the bad copy is as it
    was. Once the archive's server recovers, the same read repairs it."""
    a = parse_archive(FIXTURES / PAIR_V1)
    store = tmp_path / "store"
    clone_ok(FIXTURES / PAIR_V1, store / "v1")
    assert ihop("rm", store / "v1").returncode == 0
    off, size, victim, _ = pick_victim(a, store)
    right = victim.read_bytes()
    flipped = bytearray(right)
    flipped[len(flipped) // 2] ^= 0x01
    victim.write_bytes(flipped)
    with FaultServer(FIXTURES / PAIR_V1, mode="status") as fs:
        srv = serve([store / "v1"], "--verify", "--source", fs.url, "--http-retry-count", "0")
        assert nbd_read(srv, "v1", off, size)[0] == errno.EIO
        assert srv.alive()
        # The failed read is answered as its chunk is settled, before the worker says why.
        wait_for(lambda: any("could not be fetched" in line for line in error_lines(srv.stderr)), "the error line")
        lines = srv.stderr.splitlines()
        assert sum("is corrupt" in line and "fetched again" in line for line in lines) == 1, srv.stderr
        assert victim.read_bytes() == bytes(flipped)
        assert not list(store.rglob("*.tmp-*"))
        fs.mode = "ok"
        assert nbd_read(srv, "v1", off, size) == (0, v1_image[off:off + size])
        assert srv.stop() == 0
    assert victim.read_bytes() == right
    check_store(store)


def test_chunks_of_zeros_that_cannot_be_written_leave_no_release_until_they_can(tmp_path, tmpfs, serve):
    """The store has room for every chunk of data but not for the chunk of
    zeros, written last: the device reads right all the same (zeros need no
    file), one warning says the zeros cannot be written, and there is no
    description and no temp file. Started again with room, the zeros are
    written without a read or a fetch and the release is complete."""
    data = os.urandom(1 << 20) + bytes(3 << 20) + os.urandom(1 << 20)
    img = tmp_path / "z.img"
    img.write_bytes(data)
    r = ihop("compress", "--fixed-size", "64KiB", "--compression", "zstd", "-i", img, tmp_path / "z.cba")
    assert r.returncode == 0, r.stderr
    a = parse_archive(tmp_path / "z.cba")
    assert len(a.chunks) == 33
    # 32 chunks of data (512 pages) and 8 pages more: the zeros need 16.
    fs = tmpfs("fs", f"size={2048 + 32}k")
    store = fs / "store"
    srv = serve([store / "z"], "--source", tmp_path / "z.cba")
    error, got = nbd_read(srv, "z", 0, len(data))
    assert (error, got == data) == (0, True)
    wait_for(lambda: "chunks of zeros cannot be written" in srv.stderr, "the warning")
    assert srv.alive()
    assert sum("chunks of zeros cannot be written" in line for line in srv.stderr.splitlines()) == 1
    assert "No space left on device" in srv.stderr
    assert releases(store) == []
    assert len(check_store(store)) == 32
    assert srv.stop() == 0

    run(["mount", "-o", "remount,size=64m", str(fs)])
    srv = serve([store / "z"], "--source", tmp_path / "z.cba")
    wait_for(lambda: (store / "z").exists(), "the release, once the zeros are written")
    wait_for(lambda: "it is now an ordinary release" in srv.stderr, "the line that says the release is complete")
    assert srv.stop() == 0
    assert len(check_store(store)) == 33
    assert ihop("verify", store / "z").returncode == 0


# --- a store that cannot be written ------------------------------------------


def read_only_store(how, tmp_path, tmpfs, read_only_view):
    """A store holding pair/v2, which cannot be written: a read-only bind
    mount of it, or its tmpfs remounted read-only."""
    if how == "read-only bind mount":
        store = tmp_path / "store"
        clone_ok(FIXTURES / PAIR_V2, store / "v2")
        return read_only_view(store)
    fs = tmpfs("fs", "size=64m")
    clone_ok(FIXTURES / PAIR_V2, fs / "store" / "v2")
    remount(fs, "ro")
    return fs / "store"


@pytest.mark.parametrize("via", ["mount", "serve"])
@pytest.mark.parametrize("how", ["read-only bind mount", "tmpfs remounted ro"])
def test_a_read_only_store_is_refused_at_the_start_before_anything_is_fetched(
        tmp_path, nginx, tmpfs, read_only_view, how, via):
    """Nothing fetched could be kept (every read would fail with EIO): one
    line naming the store, exit status 1, no request to the source, nothing
    attached, the store as it was."""
    store = read_only_store(how, tmp_path, tmpfs, read_only_view)
    before = check_store(store)
    since = nginx.mark()
    r = on_demand_once(via, tmp_path, "--source", nginx.url(PAIR_V1), store / "v1")
    assert r.returncode == 1
    line = r.stderr.strip()
    assert line.startswith("ihop: error: ") and "\n" not in line, r.stderr
    assert f"store {store} is read-only" in line, line
    assert nginx.entries(since) == []
    assert check_store(store) == before and releases(store) == ["v2"]


def test_a_read_only_store_missing_a_chunk_of_the_release_is_refused_before_any_chunk_is_fetched(
        tmp_path, nginx, read_only_view):
    """The release is under its name but lacks a chunk: only the header is
    read (to know which chunks it needs), then the one line."""
    a = parse_archive(FIXTURES / PAIR_V1)
    store = tmp_path / "store"
    clone_ok(FIXTURES / PAIR_V1, store / "v1")
    _, _, victim, _ = pick_victim(a, store)
    victim.unlink()
    ro = read_only_view(store)
    since = nginx.mark()
    r = on_demand_once("serve", tmp_path, "--source", nginx.url(PAIR_V1), ro / "v1")
    assert r.returncode == 1
    assert len(r.stderr.strip().splitlines()) == 1 and f"store {ro} is read-only" in r.stderr, r.stderr
    assert chunk_data_fetched(nginx.entries(since), a) == 0
    assert not victim.exists()


def test_a_release_complete_in_a_read_only_store_is_served_from_it_and_nothing_is_fetched(
        tmp_path, nginx, serve, read_only_view, v1_image):
    """--source with the whole release in a read-only store: served as
    `serve` without --source serves it (one line says so), the image right,
    no chunk data fetched. Under --verify a corrupt chunk reads as EIO,
    said once: a copy fetched again could not be kept."""
    a = parse_archive(FIXTURES / PAIR_V1)
    store = tmp_path / "store"
    clone_ok(FIXTURES / PAIR_V1, store / "v1")
    ro = read_only_view(store)
    since = nginx.mark()
    srv = serve([ro / "v1"], "--source", nginx.url(PAIR_V1))
    assert "holds the whole release: it is served from there" in srv.stderr, srv.stderr
    copy = tmp_path / "copy"
    r = run(["nbdcopy", srv.uri("v1"), copy], timeout=STEP)
    assert r.returncode == 0, r.stderr
    assert copy.read_bytes() == v1_image
    assert srv.stop() == 0
    assert error_lines(srv.stderr) == [], srv.stderr
    assert chunk_data_fetched(nginx.entries(since), a) == 0

    off, size, victim, _ = pick_victim(a, store)
    right = victim.read_bytes()
    victim.write_bytes(bytes([right[0] ^ 1]) + right[1:])
    srv = serve([ro / "v1"], "--verify", "--source", nginx.url(PAIR_V1))
    assert nbd_read(srv, "v1", off, size)[0] == errno.EIO
    assert nbd_read(srv, "v1", 0, READ) == (0, v1_image[:READ])
    assert srv.alive()
    assert srv.stop() == 0
    corrupt = [line for line in srv.stderr.splitlines() if "is corrupt" in line]
    assert len(corrupt) == 1 and "reads of it fail with EIO" in corrupt[0], srv.stderr
    assert chunk_data_fetched(nginx.entries(since), a) == 0


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root, to run ihop as another user")
def test_a_store_this_user_cannot_write_is_refused_at_the_start(tmp_path):
    """root's store, `serve --source` as nobody: refused the same way, the
    reason given (what it fetched could not be kept either)."""
    d = Path(tempfile.mkdtemp(prefix="ihop-nobody-", dir="/tmp"))  # pytest's tmp_path is root's alone
    try:
        os.chmod(d, 0o755)
        store = d / "store"
        clone_ok(FIXTURES / PAIR_V2, store / "v2")
        before = check_store(store)
        sockets = d / "sockets"  # where nobody could listen
        sockets.mkdir()
        os.chown(sockets, 65534, 65534)
        r = run(["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", IHOP, "serve", "--source",
                 FIXTURES / PAIR_V1, "--unix", sockets / "sock", store / "v1"], timeout=STEP)
        assert r.returncode == 1
        line = r.stderr.strip()
        assert line.startswith("ihop: error: ") and "\n" not in line, r.stderr
        assert f"cannot write store {store} (Permission denied)" in line, line
        assert not (sockets / "sock").exists()
        assert check_store(store) == before and releases(store) == ["v2"]
    finally:
        shutil.rmtree(d)


def test_a_signed_release_complete_in_a_read_only_store_is_served_once_its_version_is_remembered(
        tmp_path, serve, read_only_view):
    """Complete but cloned without keys, the store has no version to
    compare: it cannot remember this one, so the release is refused (one
    line); cloned with the key, it is served."""
    r = ihop("keygen", "-W", "-p", tmp_path / "k.pub", "-s", tmp_path / "k.key")
    assert r.returncode == 0, r.stderr
    signed = signed_copy(tmp_path / "pub", PAIR_V1, tmp_path / "k.key", 3)
    key = ("--trusted-key", tmp_path / "k.pub")
    unsigned, remembered = tmp_path / "unsigned", tmp_path / "remembered"
    clone_ok(FIXTURES / PAIR_V1, unsigned / "v1")
    clone_ok(signed, remembered / "v1", *key)
    r = on_demand_once("serve", tmp_path, *key, "--source", signed, read_only_view(unsigned) / "v1")
    assert r.returncode == 1
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "cannot write" in r.stderr and ".release-version" in r.stderr and "Read-only" in r.stderr, r.stderr
    assert not (unsigned / ".release-version").exists()
    srv = serve([read_only_view(remembered) / "v1"], *key, "--source", signed)
    assert "holds the whole release" in srv.stderr, srv.stderr
    assert nbd_read(srv, "v1", 0, READ)[0] == 0
    assert srv.stop() == 0
