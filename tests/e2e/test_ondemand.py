# SPDX-License-Identifier: MIT
"""`mount --source` and `serve --source`: a release used before it is
cloned, its chunks fetched as they are read (ondemand.h).

The archives come from the real nginx of the session (its access log says
what was fetched, byte for byte) or from the fault-injecting server; what
is read is compared with the image `ihop cat` makes of a normal clone, and
files with what debugfs reads from that image."""

import hashlib
import os
import random
import signal
import shutil
import subprocess
import threading
import time

import pytest

from bita_archive import parse_archive
from fault_server import FaultServer
from slow_server import SlowServer, chunks_served
from ihop_run import FIXTURES, IHOP, clone_ok, ihop, run
from store_checks import check_store, releases
from test_fuse_mount import (DEBUGFS, STEP, PAIR_V1, FuseMount, debugfs_cat, fuse_mount, loop_mount,  # noqa: F401
                             mounted_at, umount, v1, v1_archive)
from test_in_use import wait_for
from test_serve import EIO, RawNbd, Server, serve  # noqa: F401

PAIR_V2 = "pair/v2.ext4.cba"


def chunk_data_fetched(entries, archive) -> int:
    """Body bytes of the requests for chunk data (past the header)."""
    total = 0
    for e in entries:
        assert e.status in (200, 206), e
        if e.range != "-":
            start = int(e.range.split("=")[1].split("-")[0])
            if start >= archive.chunk_data_offset:
                total += e.body_bytes
    return total


def unique_archive_bytes(archive, hashes=None) -> int:
    """Compressed bytes of the archive's chunks (those whose hash is in hashes)."""
    return sum(c.archive_size for c in archive.chunks if hashes is None or c.hash in hashes)


def small_file(image) -> str:
    """A small regular file of the ext4 image (by debugfs), not at its start."""
    r = subprocess.run([DEBUGFS, "-R", "ls -p /sbin", str(image)], capture_output=True, text=True, timeout=STEP,
                       stdin=subprocess.DEVNULL)
    assert r.returncode == 0, r.stderr
    files = []
    for line in r.stdout.splitlines():
        f = line.strip("/").split("/")
        # /inode/mode/uid/gid/name/size/
        if len(f) >= 6 and f[1].startswith("10") and f[5].isdigit() and 100 < int(f[5]) < 16384:
            files.append("/sbin/" + f[4])
    assert files, r.stdout
    return sorted(files)[len(files) // 2]


def test_reading_a_file_fetches_a_little_and_the_whole_device_each_chunk_once(
        tmp_path, nginx, v1, v1_archive, loop_mount):
    _, image, data = v1
    store = tmp_path / "od"
    url = nginx.url(PAIR_V1)
    since = nginx.mark()
    m = FuseMount(store / "v1", tmp_path / "v1.file", len(data), "--source", url)
    try:
        assert "on demand from" in m.stderr and "0 of 267 chunks in the store" in m.stderr, m.stderr
        # Ready before any chunk is fetched: only the header was read.
        assert chunk_data_fetched(nginx.entries(since), v1_archive) == 0
        assert not (store / "v1").exists()

        path = small_file(image)
        mnt = loop_mount(tmp_path / "v1.file", tmp_path / "mnt")
        assert (mnt / path.lstrip("/")).read_bytes() == debugfs_cat(image, path)
        fetched = chunk_data_fetched(nginx.entries(since), v1_archive)
        total = unique_archive_bytes(v1_archive)
        print(f"mount + reading {path}: {fetched} of {total} bytes of chunk data ({100 * fetched / total:.1f} %)")
        assert 0 < fetched < total // 4
        assert not (store / "v1").exists(), "an incomplete release appeared"
        assert umount(mnt).returncode == 0

        # The whole device: bit-perfect, every chunk fetched once in all.
        assert hashlib.blake2b((tmp_path / "v1.file").read_bytes()).digest() == v1_archive.source_checksum
        assert chunk_data_fetched(nginx.entries(since), v1_archive) == total
        wait_for(lambda: (store / "v1").exists(), "the release description")
        # Said once the description is in place: after it, not with it.
        wait_for(lambda: "it is now an ordinary release" in m.stderr, "the line that says the release is complete")
    finally:
        rc = m.unmount()
    assert rc == 0, m.stderr
    check_store(store)
    assert releases(store) == ["v1"]
    r = ihop("verify", store / "v1")
    assert r.returncode == 0, r.stderr


def test_fill_makes_an_ordinary_release_and_shared_chunks_come_once(tmp_path, nginx, serve):
    a1, a2 = parse_archive(FIXTURES / PAIR_V1), parse_archive(FIXTURES / PAIR_V2)
    store = tmp_path / "store"
    since = nginx.mark()
    srv = serve([store / "v1"], "--source", nginx.url(PAIR_V1), "--fill")
    wait_for(lambda: (store / "v1").exists(), "the fill of v1", timeout=60)
    assert srv.stop() == 0
    assert chunk_data_fetched(nginx.entries(since), a1) == unique_archive_bytes(a1)
    r = ihop("verify", store / "v1")
    assert r.returncode == 0, r.stderr

    # v2 beside it: only the chunks v1 lacks come over the network.
    since = nginx.mark()
    srv = serve([store / "v1", "--source", nginx.url(PAIR_V2), "--fill", store / "v2"])
    wait_for(lambda: (store / "v2").exists(), "the fill of v2", timeout=60)
    assert srv.stop() == 0
    new = {c.hash for c in a2.chunks} - {c.hash for c in a1.chunks}
    assert 0 < len(new) < len(a2.chunks)
    assert chunk_data_fetched(nginx.entries(since), a2) == unique_archive_bytes(a2, new)
    assert ihop("verify", store / "v2").returncode == 0
    check_store(store)
    assert releases(store) == ["v1", "v2"]


def test_a_release_already_in_the_store_is_read_from_it(tmp_path, nginx, serve):
    store = tmp_path / "store"
    clone_ok(FIXTURES / PAIR_V1, store / "v1")
    since = nginx.mark()
    srv = serve([store / "v1"], "--source", nginx.url(PAIR_V1))
    r = run(["nbdcopy", srv.uri("v1"), tmp_path / "copy"], timeout=STEP)
    assert r.returncode == 0, r.stderr
    assert srv.stop() == 0
    a = parse_archive(FIXTURES / PAIR_V1)
    assert hashlib.blake2b((tmp_path / "copy").read_bytes()).digest() == a.source_checksum
    assert chunk_data_fetched(nginx.entries(since), a) == 0


def test_another_image_under_the_name_is_refused(tmp_path, nginx):
    store = tmp_path / "store"
    clone_ok(FIXTURES / PAIR_V1, store / "v1")
    (tmp_path / "f").touch()
    r = ihop("mount", "--source", nginx.url(PAIR_V2), store / "v1", tmp_path / "f")
    assert r.returncode == 1
    assert "exists and holds another image" in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr


@pytest.mark.parametrize("args,message", [
    (["mount", "--fill", "S/v1", "/dev/null"], "--fill goes with --source"),
    (["serve", "--unix", "/tmp/x.sock", "S/v1", "--source", "a.cba"], "is for the release named after it"),
    (["serve", "--unix", "/tmp/x.sock", "--source", "a.cba", "--source", "b.cba", "S/v1"], "two sources"),
    (["mount", "--source", "a.cba", "--root-storage", "S/v1", "/dev/nbd0"], "cannot go with --root-storage"),
    (["mount", "--signature", "x.minisig", "--source", "a.cba", "S/v1", "/dev/nbd0"], "needs --trusted-key"),
])
def test_on_demand_usage_errors(tmp_path, args, message):
    r = ihop(*[str(tmp_path / a) if a.startswith("S/") else a for a in args])
    assert r.returncode == 2, r.stderr
    assert message in r.stderr, r.stderr
    assert not (tmp_path / "S").exists()


def nbd_read(srv, name, offset, length):
    with RawNbd(srv.sock, timeout=STEP) as c:
        c.go(name)
        return c.read(offset, length)


@pytest.mark.parametrize("mode", ["status", "flip", "stall"])
def test_a_failing_fetch_fails_its_read_only_and_a_later_read_succeeds(tmp_path, serve, mode):
    """The server answers the first chunk-data requests with a 500, a
    flipped byte or silence: that read fails with EIO, or for the flipped
    byte is fetched again (nothing wrong is stored or served), the server
    stays up, and once the archive's server recovers the same read returns
    the right bytes."""
    archive = FIXTURES / PAIR_V1
    a = parse_archive(archive)
    store = tmp_path / "store"
    clone_ok(archive, tmp_path / "ref" / "v1")
    want = subprocess.run([IHOP, "cat", str(tmp_path / "ref" / "v1")], capture_output=True, timeout=STEP).stdout
    kw = {"times": 2} if mode != "stall" else {"cuts": 1}
    with FaultServer(archive, mode=mode, **kw) as fs:
        srv = serve([store / "v1"], "--source", fs.url, "--http-retry-count", "0", "--http-timeout", "2")
        # A read as long as a first fetch may be: whichever of its chunks
        # the fault hits, the read needs it.
        off, n = len(want) // 2, 1 << 20
        error, got = nbd_read(srv, "v1", off, n)
        if mode == "status":
            assert error == EIO
        else:
            # Each fetch starts at the chunk the read needs next, and the
            # fault falls in the middle of its range: the chunks before it
            # are kept, those after it fetched again by the read's next
            # fetch. Never wrong data.
            assert error == EIO or got == want[off:off + n]
        assert srv.alive()
        check_store(store, allowed_temp=".tmp-")  # nothing wrong stored (a prefetch may be writing)
        for _ in range(3):
            error, got = nbd_read(srv, "v1", off, n)
            if error == 0:
                break
        assert (error, got) == (0, want[off:off + n])
        assert srv.stop() == 0
    said = {"status": "could not be fetched", "flip": "is corrupt", "stall": "no data for 2 s"}
    assert said[mode] in srv.stderr, srv.stderr
    check_store(store)
    assert releases(store) == []
    assert a.chunk_data_offset > 0


def test_gc_keeps_what_an_on_demand_mount_fetched_and_is_fetching(tmp_path, serve):
    """A read is answered as soon as its chunk is checked, while the rest of
    its range still comes in (slowly here): gc then leaves the fetch's temp
    files alone (their writer runs), the fetch settles without an error, and
    gc keeps every chunk the mount fetched."""
    store = tmp_path / "store"
    # 1 MB/s: the read's first range (256 KiB of archive) takes a quarter
    # of a second, the 4 KiB read far less.
    with SlowServer(FIXTURES / PAIR_V1, rate=1_000_000) as slow:
        srv = serve([store / "v1"], "--source", slow.url("v1.ext4.cba"))
        error, _ = nbd_read(srv, "v1", 1 << 20, 4096)
        assert error == 0
        temps = [p.name for p in (store / "chunks").rglob("*.tmp-*")]
        r = ihop("gc", store)
        assert r.returncode == 0, r.stderr
        assert temps, "the range was over before gc: nothing in flight to keep"
        wait_for(lambda: not list((store / "chunks").rglob("*.tmp-*")), "the read's range to settle")
        before = check_store(store)
        assert len(before) > 1
        r = ihop("gc", store)
        assert r.returncode == 0, r.stderr
        assert check_store(store) == before
        assert srv.stop() == 0
    assert "cannot" not in srv.stderr and "could not" not in srv.stderr, srv.stderr


def test_gc_in_a_loop_beside_fills_fails_no_read_and_every_release_completes(tmp_path):
    """gc run over and over while `serve --fill --source` fills an empty
    store and a client reads the device: gc removes fan-out directories
    that are empty, which a writer holding no store lock (ondemand.h) may
    have just made for a chunk, and hidden description temp files, one of
    which the fill may be about to rename into place. Fifty rounds: no read
    fails (before, the writer's create failed with ENOENT and a read with
    EIO, in most rounds; or the description was lost and the release never
    appeared), every read returns the image's bytes, every gc succeeds, and
    each release completes and verifies."""
    # Many small chunks, each in its own fan-out directory: many mkdirs.
    image = b"".join(hashlib.blake2b(i.to_bytes(4, "little")).digest() for i in range((256 << 10) // 64))
    (tmp_path / "r.img").write_bytes(image)
    archive = tmp_path / "r.cba"
    r = ihop("compress", "--fixed-size", "4KiB", "--compression", "none", "-i", tmp_path / "r.img", archive)
    assert r.returncode == 0, r.stderr
    assert len(parse_archive(archive).chunks) == 64
    gc_runs = 0
    for round_ in range(50):
        store = tmp_path / f"s{round_}"
        srv = Server([store / "r"], "--source", archive, "--fill")
        stop = threading.Event()
        failures = []  # whatever went wrong in the threads
        runs = [0]

        def gc_loop():
            while not stop.is_set():
                g = run([IHOP, "gc", store], timeout=STEP)
                runs[0] += 1
                if g.returncode != 0:
                    failures.append(f"gc: {g.stderr}")

        def reader():
            rnd = random.Random(round_)
            try:
                with RawNbd(srv.sock, timeout=STEP) as c:
                    c.go("r")
                    while not stop.is_set():
                        off = rnd.randrange(0, len(image) - 16384, 4096)
                        error, got = c.read(off, 16384)
                        if (error, got) != (0, image[off:off + 16384]):
                            failures.append(f"read at {off}: error {error}")
            except Exception as e:  # noqa: BLE001 (reported below, with the round)
                failures.append(f"reader: {e!r}")

        threads = [threading.Thread(target=gc_loop), threading.Thread(target=reader)]
        try:
            for t in threads:
                t.start()
            deadline = time.monotonic() + STEP
            while not (store / "r").exists() and not failures and time.monotonic() < deadline:
                time.sleep(0.005)
        finally:
            stop.set()
            for t in threads:
                t.join(2 * STEP)
            rc = srv.stop()
            err = srv.stderr
            srv.cleanup()
        assert not failures, f"round {round_}: {failures[:3]}; server: {err}"
        assert (store / "r").exists(), f"round {round_}: the release never appeared; server: {err}"
        assert rc == 0 and "error" not in err and "cannot" not in err, f"round {round_}: {err}"
        check_store(store)
        v = ihop("verify", store / "r")
        assert v.returncode == 0, f"round {round_}: {v.stdout} {v.stderr}"
        gc_runs += runs[0]
        shutil.rmtree(store)
    # gc did run beside the fills (the test is no test otherwise).
    assert gc_runs >= 50, gc_runs


def test_kill_9_at_random_moments_leaves_the_store_consistent(tmp_path, nginx):
    """serve --source --fill, from a server slow enough that no run can
    finish, killed with SIGKILL ten times at random moments: the store holds
    only whole, right chunks (and temp files) and no release; a clone
    afterwards takes what the killed runs fetched and fetches the rest."""
    a = parse_archive(FIXTURES / PAIR_V1)
    store = tmp_path / "store"
    sock = tmp_path / "s.sock"
    rnd = random.Random(1234)
    # 600 KB/s: a run stores its first MiB or so of image within the window,
    # and ten runs cannot fetch the archive's 8.1 MB.
    with SlowServer(FIXTURES / PAIR_V1, rate=600_000) as slow:
        for i in range(10):
            p = subprocess.Popen([IHOP, "serve", "--unix", str(sock), "--source", slow.url("v1.ext4.cba"),
                                  "--fill", str(store / "v1")],
                                 stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(rnd.uniform(0.3, 1.3))
            p.send_signal(signal.SIGKILL)
            p.wait(STEP)
            if sock.exists():
                sock.unlink()
            check_store(store, allowed_temp=".tmp-")
            assert releases(store) == [], f"a release appeared after kill {i + 1}"
    have = check_store(store, allowed_temp=".tmp-")
    assert have, "no chunk was fetched in ten runs"
    since = nginx.mark()
    r = clone_ok(nginx.url(PAIR_V1), store / "v1")
    # What is in the store is not fetched again (a complete temp file of a
    # killed fetch may be taken over too, as from a killed clone).
    missing = {c.hash for c in a.chunks if c.hash.hex() not in have}
    fetched = chunk_data_fetched(nginx.entries(since), a)
    assert fetched <= unique_archive_bytes(a, missing) < unique_archive_bytes(a), r.stdout
    # Leftovers of the killed fetches (temp files) go with gc, as a killed
    # clone's do, and nothing else does.
    g = ihop("gc", store)
    assert g.returncode == 0 and "removed 0 unused chunks" in g.stdout, g.stdout + g.stderr
    check_store(store)
    assert ihop("verify", store / "v1").returncode == 0


def test_a_cut_transfer_is_resumed_and_the_read_answered(tmp_path, serve):
    """With the HTTP retries (default 3), a transfer cut in the middle is
    resumed where it stopped: the read gets the right bytes, no EIO."""
    archive = FIXTURES / PAIR_V1
    clone_ok(archive, tmp_path / "ref" / "v1")
    want = subprocess.run([IHOP, "cat", str(tmp_path / "ref" / "v1")], capture_output=True, timeout=STEP).stdout
    with FaultServer(archive, mode="cut", cuts=2) as fs:
        srv = serve([tmp_path / "store" / "v1"], "--source", fs.url, "--http-retry-delay", "0")
        off, n = 3 << 20, 2 << 20
        assert nbd_read(srv, "v1", off, n) == (0, want[off:off + n])
        # The read is answered once its chunks are in: a second cut may
        # fall on the rest of its range, after it.
        assert fs.cut_at, "no transfer was cut"
        assert srv.stop() == 0
    assert "could not be fetched" not in srv.stderr, srv.stderr
    check_store(tmp_path / "store")


@pytest.fixture(scope="module")
def signed_v1(tmp_path_factory, nginx):
    """pair/v1 signed as version 3 by a vendor key, published by nginx with
    its signature: (URL, vendor public key, another public key)."""
    d = tmp_path_factory.mktemp("signed")
    for name in ("vendor", "other"):
        r = ihop("keygen", "-W", "-p", d / f"{name}.pub", "-s", d / f"{name}.key")
        assert r.returncode == 0, r.stderr
    # Its own directory: test_signing.py publishes under "signed/" on the same nginx.
    archive = nginx.www / "ondemand-signed" / "v1.ext4.cba"
    archive.parent.mkdir()
    archive.write_bytes((FIXTURES / PAIR_V1).read_bytes())
    r = ihop("sign", "-s", d / "vendor.key", "--release-version", "3", archive)
    assert r.returncode == 0, r.stderr
    return nginx.url("ondemand-signed/v1.ext4.cba"), d / "vendor.pub", d / "other.pub"


def test_a_signed_release_on_demand_is_checked_before_its_header(tmp_path, nginx, signed_v1, serve):
    url, vendor, _ = signed_v1
    store = tmp_path / "store"
    since = nginx.mark()
    srv = serve(["--trusted-key", vendor, "--source", url, store / "v1"])
    entries = nginx.entries(since)
    assert entries[0].path.endswith(".minisig"), entries
    assert (store / ".release-version").read_text().startswith("ihop-release-version=3\n")
    a = parse_archive(FIXTURES / PAIR_V1)
    error, data = nbd_read(srv, "v1", 0, 1 << 20)
    assert error == 0 and len(data) == 1 << 20
    assert srv.stop() == 0


@pytest.mark.parametrize("how", ["untrusted key", "no signature", "wrong signature"])
def test_an_unsigned_or_untrusted_release_is_refused_before_anything_is_stored(tmp_path, nginx, signed_v1, how):
    url, vendor, other = signed_v1
    key, extra = vendor, []
    if how == "untrusted key":
        key = other
    elif how == "no signature":
        extra = ["--signature", nginx.url("ondemand-signed/none.minisig")]
    else:
        sig = nginx.www / "ondemand-signed" / "v2.minisig"
        sig.write_bytes(b"")
        extra = ["--signature", nginx.url("ondemand-signed/v2.minisig")]
    (tmp_path / "f").touch()
    r = ihop("mount", "--trusted-key", key, *extra, "--source", url, tmp_path / "store" / "v1", tmp_path / "f")
    assert r.returncode == 1, r.stderr
    assert len([line for line in r.stderr.splitlines() if "error" in line]) == 1, r.stderr
    store = tmp_path / "store"
    assert not (store / "v1").exists() and not (store / ".release-version").exists()
    assert check_store(store) == set()


def signed_copy(directory, fixture, key, version):
    """A copy of a fixture archive in directory, signed as version."""
    directory.mkdir(exist_ok=True)
    a = directory / os.path.basename(fixture)
    a.write_bytes((FIXTURES / fixture).read_bytes())
    r = ihop("sign", "-s", key, "--release-version", str(version), a)
    assert r.returncode == 0, r.stderr
    return a


def version_bytes(store):
    v = store / ".release-version"
    return v.read_bytes() if v.exists() else None


def on_demand_once(via, tmp_path, *args):
    """`mount ... STORE/NAME FILE` or `serve --unix ... STORE/NAME` that is
    expected to refuse at its start: its result, and nothing attached."""
    target = tmp_path / "refused.file"
    target.touch()
    sock = tmp_path / "refused.sock"
    *opts, release = args
    if via == "mount":
        args = [IHOP, "mount", *opts, release, target]
    else:
        args = [IHOP, "serve", *opts, "--unix", sock, release]
    p = subprocess.Popen([str(a) for a in args], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    try:
        out, err = p.communicate(timeout=STEP)
    except subprocess.TimeoutExpired:
        # It started instead: undone, so that the failure leaves nothing mounted.
        if mounted_at(target):
            umount(target)
        p.kill()
        out, err = p.communicate(timeout=STEP)
        raise AssertionError(f"ihop {via} started instead of refusing: {err}")
    assert not mounted_at(target) and target.stat().st_size == 0
    assert not sock.exists()
    return subprocess.CompletedProcess(args, p.returncode, out, err)


@pytest.mark.parametrize("via", ["mount", "serve"])
def test_another_image_under_the_name_leaves_the_remembered_version_as_it_was(tmp_path, signed_v1, serve, via):
    """v2 validly signed as version 50 onto a NAME holding v1 is refused for
    the name: the store does not take 50, and v1 signed as 6 is then taken."""
    _, vendor, _ = signed_v1
    key = vendor.with_suffix(".key")
    current = signed_copy(tmp_path / "current", PAIR_V1, key, 3)
    other = signed_copy(tmp_path / "other", PAIR_V2, key, 50)
    wanted = signed_copy(tmp_path / "wanted", PAIR_V1, key, 6)
    store = tmp_path / "store"
    clone_ok(current, store / "v1", "--trusted-key", vendor)
    before = version_bytes(store)
    assert before.startswith(b"ihop-release-version=3\n")
    r = on_demand_once(via, tmp_path, "--trusted-key", vendor, "--source", other, store / "v1")
    assert r.returncode == 1
    assert "exists and holds another image" in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert version_bytes(store) == before
    size = parse_archive(FIXTURES / PAIR_V1).source_total_size
    if via == "mount":
        m = FuseMount(store / "v1", tmp_path / "v1.file", size, "--trusted-key", vendor, "--source", wanted)
        try:
            assert "error" not in m.stderr, m.stderr
        finally:
            assert m.unmount() == 0, m.stderr
    else:
        srv = serve(["--trusted-key", vendor, "--source", wanted, store / "v1"])
        error, data = nbd_read(srv, "v1", 0, 1 << 20)
        assert error == 0 and len(data) == 1 << 20
        assert srv.stop() == 0, srv.stderr
    assert version_bytes(store).startswith(b"ihop-release-version=6\n")


@pytest.mark.parametrize("via", ["mount", "serve"])
def test_a_forged_pair_on_demand_is_tampering_on_a_fresh_store_and_on_one_further_on(tmp_path, signed_v1, via):
    """v1's signature (version 2) beside v2's archive: the same refusal and
    exit status on a store with no version and on one at version 5."""
    _, vendor, _ = signed_v1
    key = vendor.with_suffix(".key")
    v1 = signed_copy(tmp_path / "forged", PAIR_V1, key, 2)
    forged = signed_copy(tmp_path / "forged", PAIR_V2, key, 3)
    (tmp_path / "forged" / (forged.name + ".minisig")).write_bytes(
        (tmp_path / "forged" / (v1.name + ".minisig")).read_bytes())
    further = tmp_path / "further"
    clone_ok(signed_copy(tmp_path / "five", PAIR_V1, key, 5), further / "v1", "--trusted-key", vendor)
    seen = {}
    for store in (tmp_path / "fresh", further):
        before = (version_bytes(store), releases(store), check_store(store) if store.exists() else set())
        r = on_demand_once(via, tmp_path, "--trusted-key", vendor, "--source", forged, store / "v2")
        errors = [line for line in r.stderr.splitlines() if "error" in line]
        assert len(errors) == 1 and "does not sign this archive's header" in errors[0], r.stderr
        seen[store.name] = r.returncode
        assert (version_bytes(store), releases(store), check_store(store)) == before
    assert seen == {"fresh": 1, "further": 1}


def test_the_chunk_of_zeros_is_written_here_not_fetched(tmp_path, serve):
    """The chunk of zeros (an image's free space, used many times) is known
    from its hash: serve --source writes it into the store once every other
    chunk is in, and no request ever asks for it; the device reads right
    (its zeros without the file), and the release is then complete."""
    data = os.urandom(1 << 20) + bytes(3 << 20) + os.urandom(1 << 20)
    img = tmp_path / "z.img"
    img.write_bytes(data)
    r = ihop("compress", "--fixed-size", "64KiB", "--compression", "zstd", "-i", img, tmp_path / "z.cba")
    assert r.returncode == 0, r.stderr
    a = parse_archive(tmp_path / "z.cba")
    zero = hashlib.blake2b(bytes(64 << 10)).digest()[:a.hash_len]
    assert sum(1 for c in a.chunks if c.hash == zero) == 1
    store = tmp_path / "s"
    with SlowServer(tmp_path / "z.cba") as srv_http:
        srv = serve([store / "z"], "--source", srv_http.url("z.cba"))
        zero_file = store / "chunks" / zero.hex()[:4] / f"{zero.hex()}.chunk"
        error, got = nbd_read(srv, "z", 0, len(data))
        assert (error, got == data) == (0, True)
        wait_for(lambda: (store / "z").exists(), "the release description")
        assert zero_file.read_bytes() == bytes(64 << 10)
        assert srv.stop() == 0
        served = chunks_served(a, srv_http.entries())
    assert zero.hex() not in served, "the chunk of zeros was fetched"
    assert set(served) == {c.hash.hex() for c in a.chunks} - {zero.hex()}
    check_store(store)
    assert ihop("verify", store / "z").returncode == 0
