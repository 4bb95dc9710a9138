# SPDX-License-Identifier: MIT
"""Releases in use: what `ihop serve` and `ihop mount` read stays in the
store while they run, whatever `ihop rm` and `ihop gc` do meanwhile.

Each running server or mount registers its release as
STORE/.in-use/NAME.XXXXXX, holding a flock on it; gc keeps the chunks of
every registration whose lock is held, and removes those whose process is
gone. Every figure is computed from the archives (bita_archive's reader),
every image compared with the archive's image checksum, not with ihop's
own output. Servers listen on unix sockets in private directories; every
subprocess runs with a timeout, and every mount is undone in its test."""

import fcntl
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from bita_archive import unique_chunks
from ihop_run import FIXTURES, IHOP, clone_ok, ihop, run
from store_checks import chunk_path

NBDCOPY = shutil.which("nbdcopy") or "/usr/bin/nbdcopy"
STEP = 30  # seconds: timeout of one subprocess or one wait
V1, V2 = "pair/v1.ext4.cba", "pair/v2.ext4.cba"

GC_KEPT = re.compile(r"^kept (\d+) chunks \((.+?)\) for releases in use \(mounted or served\) that no release "
                     r"description names any more$", re.M)
GC_STALE = re.compile(r"^(?:would remove|removed) (\S+/\.in-use/\S+) \(([^,]+), its process no longer runs\)$", re.M)
GC_CHUNK = re.compile(r"^removed \S+/chunks/\S+/([0-9a-f]+)\.chunk \(", re.M)

needs_fuse = pytest.mark.skipif(not os.path.exists("/dev/fuse"), reason="/dev/fuse is missing: no FUSE here")


# --------------------------------------------------------------------------
# helpers


def wait_for(cond, what, timeout=STEP):
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def mounted_at(path) -> bool:
    path = os.path.realpath(path)
    with open("/proc/self/mounts") as f:
        return any(line.split()[1] == path for line in f)


def registrations(store) -> list:
    d = Path(store) / ".in-use"
    return sorted(p.name for p in d.iterdir()) if d.exists() else []


def only_in(a, b) -> set:
    """Hex hashes of the chunks archive a uses and archive b does not."""
    return set(unique_chunks(a)) - set(unique_chunks(b))


def digest(stream) -> bytes:
    h = hashlib.blake2b()
    for block in iter(lambda: stream.read(1 << 20), b""):
        h.update(block)
    return h.digest()


class Server:
    """`ihop serve --unix` of some releases, in the background."""

    def __init__(self, *releases, wait=True):
        self.dir = Path(tempfile.mkdtemp(prefix="ihop-use-", dir="/tmp"))
        self.sock = self.dir / "nbd.sock"
        self.errfile = self.dir / "stderr"
        with open(self.errfile, "wb") as err:
            self.proc = subprocess.Popen([IHOP, "serve", "--unix", str(self.sock), *map(str, releases)],
                                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err)
        if wait:
            self.wait_serving()

    def wait_serving(self):
        wait_for(lambda: "ihop: serving" in self.stderr or self.proc.poll() is not None, "ihop serve to start")
        assert self.proc.poll() is None, f"ihop serve exited {self.proc.returncode}: {self.stderr}"

    @property
    def stderr(self) -> str:
        return self.errfile.read_text(errors="replace")

    def read_digest(self, name) -> bytes:
        """BLAKE2b-512 of the whole export, as nbdcopy reads it."""
        with subprocess.Popen([NBDCOPY, f"nbd+unix:///{name}?socket={self.sock}", "-"], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, stdin=subprocess.DEVNULL) as p:
            d = digest(p.stdout)
            err = p.stderr.read()
            rc = p.wait(STEP)
        assert rc == 0, f"nbdcopy {name}: {err.decode(errors='replace')}\n{self.stderr}"
        return d

    def stop(self, sig=signal.SIGTERM) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.proc.wait(STEP)

    def cleanup(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(STEP)
        shutil.rmtree(self.dir, ignore_errors=True)


class FuseMount:
    """`ihop mount RELEASE FILE` in the foreground of its own process."""

    def __init__(self, release, target: Path, size):
        self.target = Path(target)
        self.target.touch()
        self.errfile = self.target.with_name(self.target.name + ".stderr")
        with open(self.errfile, "wb") as err:
            self.proc = subprocess.Popen([IHOP, "mount", str(release), str(self.target)], stdin=subprocess.DEVNULL,
                                         stdout=subprocess.DEVNULL, stderr=err)
        wait_for(lambda: os.stat(self.target).st_size == size or self.proc.poll() is not None,
                 f"{self.target} to get the image's size")
        assert self.proc.poll() is None, f"ihop mount exited {self.proc.returncode}: {self.stderr}"

    @property
    def stderr(self) -> str:
        return self.errfile.read_text(errors="replace")

    def read_digest(self) -> bytes:
        with open(self.target, "rb") as f:
            return digest(f)

    def unmount(self) -> int:
        for _ in range(50):
            r = run(["umount", self.target], timeout=STEP)
            if r.returncode == 0 or "busy" not in r.stderr:
                break
            time.sleep(0.1)
        assert r.returncode == 0, f"umount {self.target}: {r.stderr}"
        return self.proc.wait(STEP)

    def cleanup(self):
        if mounted_at(self.target) and run(["umount", self.target], timeout=STEP).returncode != 0:
            run(["umount", "-l", self.target], timeout=STEP)
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(STEP)


@pytest.fixture
def procs():
    """Servers and mounts of a test, stopped at teardown whatever happened."""
    started = []

    def add(p):
        started.append(p)
        return p

    yield add
    for p in reversed(started):
        p.cleanup()


def gc(store, *opts):
    r = ihop("gc", *opts, store)
    assert r.returncode == 0, r.stderr
    return r


def removed_chunks(stdout) -> set:
    return set(GC_CHUNK.findall(stdout))


def pair_store(tmp_path, name="v1"):
    store = tmp_path / "store"
    clone_ok(FIXTURES / V1, store / name)
    clone_ok(FIXTURES / V2, store / "v2")
    return store


# --------------------------------------------------------------------------
# rm + gc while the release is served and mounted


@needs_fuse
def test_rm_and_gc_keep_a_served_and_mounted_release_readable(tmp_path, archives, procs):
    """The release is served (NBD) and mounted (FUSE) by two processes, then
    removed and collected: gc keeps exactly its own chunks and says so, and
    both read the image bit-perfect after gc (nothing was read before, so
    no open file or cache hides a removed chunk). Once both have ended, a
    second gc removes exactly those chunks."""
    a1, a2 = archives[V1], archives[V2]
    own = only_in(a1, a2)
    assert len(own) > 10
    store = pair_store(tmp_path)
    server = procs(Server(store / "v1"))
    mount = procs(FuseMount(store / "v1", tmp_path / "v1.img", a1.source_total_size))
    regs = registrations(store)
    assert len(regs) == 2 and all(r.startswith("v1.") for r in regs), regs

    r = ihop("rm", store / "v1")
    assert r.returncode == 0, r.stderr
    r = gc(store)
    m = GC_KEPT.search(r.stdout)
    assert m, f"gc did not report the chunks it kept for the releases in use:\n{r.stdout}"
    assert int(m[1]) == len(own)
    assert removed_chunks(r.stdout) == set() and "its process no longer runs" not in r.stdout
    assert all(chunk_path(store, h).exists() for h in own)

    assert server.read_digest("v1") == a1.source_checksum, "the served release no longer reads as its image"
    assert mount.read_digest() == a1.source_checksum, "the mounted release no longer reads as its image"

    # ls: both users of the removed release.
    r = ihop("ls", store)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[-1] == "in use (mounted or served): v1 (removed), v1 (removed)"
    assert json.loads(ihop("ls", "--json", store).stdout)["in_use"] == ["v1", "v1"]

    # They end: their registrations go with them, and so do the chunks.
    assert server.stop() == 0, server.stderr
    assert mount.unmount() == 0, mount.stderr
    assert registrations(store) == []
    r = gc(store)
    assert GC_KEPT.search(r.stdout) is None
    assert removed_chunks(r.stdout) == own
    assert not any(chunk_path(store, h).exists() for h in own)
    assert json.loads(ihop("ls", "--json", store).stdout)["in_use"] == []


def test_a_release_replaced_while_served_keeps_the_content_served(tmp_path, archives, procs):
    """clone --force replaces the description the server read: gc keeps the
    chunks of the content being served (the registration holds it, not the
    name), and the server reads the old image whole."""
    a1, a2 = archives[V1], archives[V2]
    store = tmp_path / "store"
    clone_ok(FIXTURES / V1, store / "rel")
    server = procs(Server(store / "rel"))
    clone_ok(FIXTURES / V2, store / "rel", "--force")
    r = gc(store)
    m = GC_KEPT.search(r.stdout)
    assert m and int(m[1]) == len(only_in(a1, a2)), r.stdout
    assert removed_chunks(r.stdout) == set()
    assert server.read_digest("rel") == a1.source_checksum
    assert server.stop() == 0
    assert removed_chunks(gc(store).stdout) == only_in(a1, a2)


# --------------------------------------------------------------------------
# dead users


def test_a_killed_server_leaves_a_stale_registration_that_gc_removes(tmp_path, archives, procs):
    a1, a2 = archives[V1], archives[V2]
    store = pair_store(tmp_path)
    server = procs(Server(store / "v1"))
    (reg,) = registrations(store)
    assert server.stop(signal.SIGKILL) == -signal.SIGKILL
    assert registrations(store) == [reg], "SIGKILL cannot clean up: the registration stays"
    assert ihop("rm", store / "v1").returncode == 0

    dry = gc(store, "--dry-run")
    assert [(Path(p).name, why) for p, why in GC_STALE.findall(dry.stdout)][0][0] == reg
    assert registrations(store) == [reg], "gc --dry-run removed a registration"
    r = gc(store)
    stale = GC_STALE.findall(r.stdout)
    assert [Path(p) for p, _ in stale] == [store / ".in-use" / reg], r.stdout
    assert registrations(store) == []
    # Dead, it pinned nothing: the removed release's chunks went in the same run.
    assert GC_KEPT.search(r.stdout) is None
    assert removed_chunks(r.stdout) == only_in(a1, a2)


def test_a_stale_link_sharing_its_file_with_a_live_one_goes_after_it(tmp_path, archives, procs):
    """Two servers of one release hold hard links of the same description,
    and flock is per file: while one runs, the other's stale link counts as
    live (pinning nothing more), and goes once that one has ended."""
    a1, a2 = archives[V1], archives[V2]
    store = pair_store(tmp_path)
    killed = procs(Server(store / "v1"))
    (first,) = registrations(store)
    alive = procs(Server(store / "v1"))
    assert killed.stop(signal.SIGKILL) == -signal.SIGKILL
    assert ihop("rm", store / "v1").returncode == 0
    r = gc(store)
    assert int(GC_KEPT.search(r.stdout)[1]) == len(only_in(a1, a2))
    assert GC_STALE.search(r.stdout) is None and len(registrations(store)) == 2
    assert alive.read_digest("v1") == a1.source_checksum
    assert alive.stop() == 0
    r = gc(store)
    assert [Path(p).name for p, _ in GC_STALE.findall(r.stdout)] == [first]
    assert removed_chunks(r.stdout) == only_in(a1, a2) and registrations(store) == []


# --------------------------------------------------------------------------
# starting while gc runs


def test_a_server_starting_while_gc_holds_the_store_waits_for_it(tmp_path, archives, procs):
    """gc holds the store lock exclusively from before it lists releases until
    its last removal (taken here by the test, as gc takes it): a server
    starting meanwhile says it waits, reads no description and registers
    nothing until the lock is let go."""
    store = pair_store(tmp_path)
    fd = os.open(store, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        server = procs(Server(store / "v1", wait=False))
        wait_for(lambda: "waiting for store" in server.stderr or server.proc.poll() is not None,
                 "the server to say it waits")
        assert server.stderr == f"ihop: waiting for store {store}: a garbage collection is running\n"
        time.sleep(0.3)
        assert server.proc.poll() is None and registrations(store) == []
        # What gc does while it holds the lock: the release goes.
        os.unlink(store / "v1")
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
    assert server.proc.wait(STEP) == 1
    assert "release" in server.stderr and "does not exist" in server.stderr
    assert registrations(store) == []


def test_gc_waits_for_nobody_once_a_server_has_registered(tmp_path, archives, procs):
    """The store lock is held only while a server registers: a gc started
    while it serves runs at once, keeping its chunks."""
    store = pair_store(tmp_path)
    server = procs(Server(store / "v1"))
    fd = os.open(store, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # would raise if the server still held it
    finally:
        os.close(fd)
    assert ihop("rm", store / "v1").returncode == 0
    r = ihop("gc", store, timeout=STEP)
    assert r.returncode == 0 and r.stderr == "", r.stderr
    assert int(GC_KEPT.search(r.stdout)[1]) == len(only_in(archives[V1], archives[V2]))
    assert server.read_digest("v1") == archives[V1].source_checksum


# --------------------------------------------------------------------------
# a read-only store


@pytest.fixture
def read_only_view(tmp_path):
    """A read-only bind mount of a directory (mount --bind, then remount ro)."""
    views = []

    def make(source):
        view = tmp_path / f"ro-{len(views)}"
        view.mkdir()
        r = run(["mount", "--bind", source, view], timeout=STEP)
        if r.returncode != 0:
            pytest.skip(f"cannot bind-mount: {r.stderr.strip()}")
        views.append(view)
        r = run(["mount", "-o", "remount,bind,ro", view], timeout=STEP)
        assert r.returncode == 0, r.stderr
        return view

    yield make
    for v in reversed(views):
        if run(["umount", v], timeout=STEP).returncode != 0:
            run(["umount", "-l", v], timeout=STEP)


@needs_fuse
def test_a_read_only_store_is_served_and_mounted_with_a_warning(tmp_path, archives, procs, read_only_view):
    a1 = archives[V1]
    store = pair_store(tmp_path)
    ro = read_only_view(store)
    assert not os.access(ro, os.W_OK) or run(["touch", ro / "x"]).returncode != 0
    warning = f"ihop: warning: store {ro} is read-only: release v1 is not registered as in use (no gc can run there either)"
    server = procs(Server(ro / "v1"))
    assert server.stderr.splitlines()[0] == warning, server.stderr
    assert server.read_digest("v1") == a1.source_checksum
    mount = procs(FuseMount(ro / "v1", tmp_path / "v1.img", a1.source_total_size))
    assert mount.stderr.splitlines()[0] == warning, mount.stderr
    assert mount.read_digest() == a1.source_checksum
    assert not (store / ".in-use").exists()
    assert server.stop() == 0 and mount.unmount() == 0
    assert "error" not in server.stderr + mount.stderr
