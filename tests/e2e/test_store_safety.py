# SPDX-License-Identifier: MIT
"""A store that someone has tampered with, or that older ihop versions left:
release names that look like temp files, symlinks planted below STORE, and
the modes of the files ihop writes.

- No release name contains ".tmp-" (ihop's temp mark): every command refuses
  one, so gc can never take a release for a clone's leftover. A whole
  release description under such a name (left by an older ihop) makes gc
  refuse; a partial one, like a hidden temp file, is removed.
- Nothing below STORE is followed: chunks/ a symlink, a fan-out directory a
  symlink, a chunk file a symlink; gc deletes nothing outside the store,
  clone writes nothing there, mount/serve/cat/verify refuse in one line.
  Each case runs twice: as the kernel has it (openat2), and under a seccomp
  filter that answers openat2 with ENOSYS, as a kernel before 5.6 does, so
  that the fallback runs.
- Release descriptions, `cat -o` output and pid files get 0666 less the
  umask, as any program's output."""

import ctypes
import os
import shutil
import stat
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bita_archive import blake2b_file, parse_archive
from ihop_run import FIXTURES, IHOP, TIMEOUT, assert_one_error_line, clone_ok, ihop, run

SMALL = "rand-0_1_1-none.cba"
V1 = "pair/v1.ext4.cba"
TMP_NAME = "keep.tmp-release"

# seccomp: openat2 (437 on every architecture) answers ENOSYS, all else runs.
SYS_OPENAT2, ENOSYS = 437, 38
PR_SET_NO_NEW_PRIVS, PR_SET_SECCOMP, SECCOMP_MODE_FILTER = 38, 22, 2
SECCOMP_RET_ERRNO, SECCOMP_RET_ALLOW = 0x00050000, 0x7FFF0000


class SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def without_openat2():
    """preexec_fn: from here on (and across exec), openat2 fails with ENOSYS."""
    libc = ctypes.CDLL(None, use_errno=True)
    insns = [(0x20, 0, 0, 0),  # ld [nr]
             (0x15, 0, 1, SYS_OPENAT2),  # jeq openat2
             (0x06, 0, 0, SECCOMP_RET_ERRNO | ENOSYS),
             (0x06, 0, 0, SECCOMP_RET_ALLOW)]
    buf = ctypes.create_string_buffer(b"".join(struct.pack("HBBI", *i) for i in insns))
    prog = SockFprog(len(insns), ctypes.addressof(buf))
    if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 or \
            libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.byref(prog), 0, 0) != 0:
        os._exit(121)


@pytest.fixture(params=["openat2", "no-openat2"])
def kernel(request):
    """How ihop runs: ihop_k(*args) -> CompletedProcess."""
    preexec = without_openat2 if request.param == "no-openat2" else None
    if preexec:
        # The filter does what it says.
        probe = subprocess.run([sys.executable, "-c",
                                "import ctypes,os; l=ctypes.CDLL(None,use_errno=True); "
                                "r=l.syscall(437,-100,b'/',b'\\0'*24,24); print(r, ctypes.get_errno())"],
                               capture_output=True, text=True, timeout=30, preexec_fn=preexec)
        assert probe.stdout.split() == ["-1", str(ENOSYS)], probe

    def ihop_k(*args, timeout=TIMEOUT):
        r = subprocess.run([IHOP, *[str(a) for a in args]], capture_output=True, timeout=timeout,
                           stdin=subprocess.DEVNULL, preexec_fn=preexec)
        # `cat` to stdout has streamed the image up to the chunk it refuses
        r.stdout, r.stderr = r.stdout.decode(errors="replace"), r.stderr.decode(errors="replace")
        return r

    ihop_k.name = request.param
    return ihop_k


def tree(root) -> dict:
    """{path: (size, BLAKE2b)} of every file under root (symlinks not followed)."""
    out = {}
    for p in sorted(Path(root).rglob("*")):
        if p.is_file() and not p.is_symlink():
            out[p] = (p.stat().st_size, blake2b_file(p))
    return out


# --------------------------------------------------------------------------
# Release names and temp files


def test_a_release_name_with_the_temp_mark_is_refused_by_clone(tmp_path):
    store = tmp_path / "s1"
    r = ihop("clone", FIXTURES / SMALL, store / TMP_NAME)
    assert_one_error_line(r, "not a valid release name", ".tmp-")
    assert not store.exists()
    # Anything else in the name is fine.
    clone_ok(FIXTURES / SMALL, store / "keep.tmp")


def test_every_command_refuses_a_release_name_with_the_temp_mark(tmp_path):
    store = tmp_path / "s"
    clone_ok(FIXTURES / SMALL, store / "a")
    shutil.copyfile(store / "a", store / TMP_NAME)  # as an older ihop would have named a release
    target = tmp_path / "file"
    target.touch()
    rel = store / TMP_NAME
    for args in (["mount", rel, target], ["serve", "--unix", tmp_path / "sock", rel], ["cat", rel],
                 ["cat", "-o", tmp_path / "out", rel], ["rm", rel], ["verify", rel], ["info", rel],
                 ["verify", "--repair", FIXTURES / SMALL, rel], ["clone", "-f", FIXTURES / SMALL, rel]):
        try:
            r = ihop(*args, timeout=20)  # a mount or serve that started would run until stopped
        finally:
            if target.stat().st_size:
                run(["umount", "-l", target], timeout=30)
        assert_one_error_line(r, "not a valid release name")
        assert r.stdout == "", args
    assert rel.exists() and not (tmp_path / "out").exists() and not (tmp_path / "sock").exists()
    # ls does not take it for a release.
    r = ihop("ls", store)
    assert r.returncode == 0 and TMP_NAME not in r.stdout


def test_gc_refuses_a_whole_release_description_under_a_temp_name(tmp_path, archives):
    """An older ihop took "keep.tmp-release" for a release name: its chunks
    are not garbage. gc refuses, says to rename it, and removes nothing."""
    store = tmp_path / "s"
    clone_ok(FIXTURES / SMALL, store / "a")
    os.rename(store / "a", store / TMP_NAME)
    before = tree(store)
    for args in (["--dry-run"], []):
        r = ihop("gc", *args, store)
        line = assert_one_error_line(r, TMP_NAME, "rename")
        assert "remove" not in r.stdout
    assert tree(store) == before
    # Renamed, it is a release again, and gc keeps its chunks.
    os.rename(store / TMP_NAME, store / "keep")
    r = ihop("gc", store)
    assert r.returncode == 0 and "removed 0 unused chunks and 0 temp files" in r.stdout, r.stdout + r.stderr
    assert ihop("verify", store / "keep").returncode == 0


def test_gc_removes_what_interrupted_clones_left_at_the_top(tmp_path):
    store = tmp_path / "s"
    clone_ok(FIXTURES / SMALL, store / "a")
    desc = (store / "a").read_bytes()
    hidden = store / ".b.tmp-Ab12Cd"  # this version's temp name
    hidden.write_bytes(desc[:100])
    hidden_whole = store / ".c.tmp-Zz99Yy"  # killed between its fsync and its rename
    hidden_whole.write_bytes(desc)
    legacy = store / "d.tmp-Qq77Rr"  # an older ihop's, cut short
    legacy.write_bytes(desc[:-1])
    r = ihop("gc", store)
    assert r.returncode == 0, r.stderr
    for p in (hidden, hidden_whole, legacy):
        assert f"removed {p} (" in r.stdout and "left by an interrupted clone" in r.stdout
        assert not p.exists()
    assert "removed 0 unused chunks and 3 temp files" in r.stdout
    assert ihop("verify", store / "a").returncode == 0


def test_a_clone_leaves_no_temp_name_and_gc_keeps_its_release(tmp_path, archives):
    store = tmp_path / "s"
    clone_ok(FIXTURES / SMALL, store / "keep.tmp")
    assert sorted(p.name for p in store.iterdir()) == ["chunks", "keep.tmp"]
    r = ihop("gc", store)
    assert r.returncode == 0 and "removed 0 unused chunks and 0 temp files" in r.stdout


# --------------------------------------------------------------------------
# Symlinks below STORE


def make_store(tmp_path, archive=SMALL):
    """A store holding release "a" and, once "b" is removed, garbage: (store, outside dir)."""
    store = tmp_path / "store"
    clone_ok(FIXTURES / archive, store / "a")
    outside = tmp_path / "outside"
    outside.mkdir()
    return store, outside


def chunk_dirs(store):
    return sorted(p for p in (store / "chunks").iterdir())


def refusals(ihop_k, store, tmp_path, name="a"):
    """mount, serve, cat and verify of STORE/NAME: each refused in one line. Returns the lines."""
    target = tmp_path / "mnt-file"
    target.touch()
    lines = []
    for args in (["mount", store / name, target], ["serve", "--unix", tmp_path / "sock", store / name],
                 ["cat", store / name], ["cat", "-o", tmp_path / "out.img", store / name],
                 ["verify", store / name]):
        try:
            # a mount or serve that started would run until stopped: bounded
            r = ihop_k(*args, timeout=20)
        finally:
            if os.path.ismount(target) or target.stat().st_size:
                run(["umount", "-l", target], timeout=30)
        lines.append(assert_one_error_line(r, "symlink", "refusing"))
        assert args[0] == "cat" or r.stdout == "", args
    assert not (tmp_path / "out.img").exists() and not (tmp_path / "sock").exists()
    return lines


def test_chunks_dir_a_symlink(tmp_path, kernel):
    store, outside = make_store(tmp_path)
    clone_ok(FIXTURES / "zero-0_1_1-zstd.cba", store / "b")
    assert ihop("rm", store / "b").returncode == 0  # b's own chunks are garbage
    os.rename(store / "chunks", outside / "chunks")
    os.symlink(outside / "chunks", store / "chunks")
    before = tree(outside)

    r = kernel("gc", store)
    assert_one_error_line(r, f"{store}/chunks is a symlink, not a directory: refusing")
    assert tree(outside) == before, "gc deleted files outside the store"
    r = kernel("clone", FIXTURES / V1, store / "c")
    assert_one_error_line(r, "chunks is a symlink")
    assert tree(outside) == before, "clone wrote outside the store"
    for line in refusals(kernel, store, tmp_path):
        assert f"{store}/chunks is a symlink, not a directory: refusing" in line
    r = kernel("ls", store)
    assert_one_error_line(r, "symlink")
    # The STORE path itself may be a symlink: it is followed.
    os.unlink(store / "chunks")
    os.rename(outside / "chunks", store / "chunks")
    os.symlink(store, tmp_path / "store-link")
    r = kernel("verify", tmp_path / "store-link" / "a")
    assert r.returncode == 0 and "OK" in r.stdout, r.stderr


def test_fan_out_dir_a_symlink(tmp_path, kernel, archives):
    store, outside = make_store(tmp_path)
    clone_ok(FIXTURES / "zero-0_1_1-zstd.cba", store / "b")
    assert ihop("rm", store / "b").returncode == 0
    a_dirs = {h.hex()[:4] for h in (c.hash for c in archives[SMALL].chunks)}
    fan = store / "chunks" / sorted(a_dirs)[0]
    os.rename(fan, outside / fan.name)
    os.symlink(outside / fan.name, fan)
    # Garbage outside too, where gc would reach it through the link.
    (outside / fan.name / ("ab" * 32 + ".chunk")).write_bytes(b"x" * 100)
    before = tree(outside)

    r = kernel("gc", store)
    assert_one_error_line(r, f"{fan} is a symlink, not a directory", "refusing")
    assert tree(outside) == before, "gc deleted files outside the store"
    r = kernel("gc", "--dry-run", store)
    assert_one_error_line(r, f"{fan} is a symlink")
    for line in refusals(kernel, store, tmp_path):
        assert f"{fan} is a symlink, not a directory: refusing" in line

    # clone: the chunk missing, it would be written through the link.
    for p in list((outside / fan.name).iterdir()):
        p.unlink()
    before = tree(outside)
    r = kernel("clone", "-f", FIXTURES / SMALL, store / "a")
    assert_one_error_line(r, f"{fan} is a symlink, not a directory: refusing")
    assert tree(outside) == before and not list((outside / fan.name).iterdir()), "clone wrote outside the store"


def test_chunk_file_a_symlink(tmp_path, kernel, archives):
    store, outside = make_store(tmp_path)
    h = sorted(c.hash.hex() for c in archives[SMALL].chunks)[0]
    chunk = store / "chunks" / h[:4] / f"{h}.chunk"
    os.rename(chunk, outside / "the-chunk")
    os.symlink(outside / "the-chunk", chunk)
    before = tree(outside)

    for line in refusals(kernel, store, tmp_path):
        assert f"{chunk} is a symlink, not a file: refusing" in line
    r = kernel("clone", FIXTURES / SMALL, store / "c")
    assert_one_error_line(r, f"{chunk} is a symlink, not a file: refusing")
    assert tree(outside) == before
    # gc: the release gone, the link's chunk is garbage; the link is not followed.
    assert ihop("rm", store / "a").returncode == 0
    r = kernel("gc", store)
    assert r.returncode == 0, r.stderr
    assert tree(outside) == before, "gc deleted a file outside the store"
    assert chunk.is_symlink()  # not ours: left alone


def test_a_release_description_a_symlink_is_refused(tmp_path):
    """ls and gc never read a symlink at the top of a store, so nothing may
    use one as a release: gc would not keep its chunks."""
    store, outside = make_store(tmp_path)
    os.rename(store / "a", outside / "a")
    os.symlink(outside / "a", store / "a")
    chunks = tree(store / "chunks")
    assert len(chunks) == len({c.hash for c in parse_archive(FIXTURES / SMALL).chunks})
    for cmd in ("verify", "cat", "info"):
        r = ihop(cmd, store / "a")
        assert_one_error_line(r, f"{store}/a is a symlink, not a release description: refusing")
    r = ihop("gc", store)
    assert_one_error_line(r, f"{store}/a is a symlink")
    assert tree(store / "chunks") == chunks


# --------------------------------------------------------------------------
# File modes follow the umask


@pytest.mark.parametrize("mask", [0o077, 0o022])
def test_files_written_follow_the_umask(tmp_path, mask):
    store = tmp_path / "store"
    r = subprocess.run([IHOP, "clone", FIXTURES / SMALL, store / "a"], capture_output=True, text=True,
                       timeout=TIMEOUT, umask=mask)
    assert r.returncode == 0, r.stderr
    assert stat.S_IMODE((store / "a").stat().st_mode) == 0o666 & ~mask
    out = tmp_path / "out.img"
    r = subprocess.run([IHOP, "cat", "-o", out, store / "a"], capture_output=True, text=True, timeout=TIMEOUT,
                       umask=mask)
    assert r.returncode == 0, r.stderr
    assert stat.S_IMODE(out.stat().st_mode) == 0o666 & ~mask
    # chunk files and directories follow it too (they always did)
    for p in (store / "chunks").rglob("*"):
        assert stat.S_IMODE(p.stat().st_mode) == (0o755 if p.is_dir() else 0o644) & ~mask, p


@pytest.mark.skipif(not os.path.exists("/dev/fuse"), reason="/dev/fuse is missing: no FUSE here")
@pytest.mark.parametrize("mask", [0o077, 0o022])
def test_pid_file_follows_the_umask(tmp_path, mask):
    store = tmp_path / "store"
    clone_ok(FIXTURES / SMALL, store / "a")
    target = tmp_path / "image"
    target.touch()
    pid_file = tmp_path / "ihop.pid"
    errfile = tmp_path / "mount.stderr"
    with open(errfile, "wb") as err:  # the daemon keeps stderr: not a pipe the test waits on
        r = subprocess.run([IHOP, "mount", "--detach", "--pid-file", pid_file, store / "a", target],
                           stdout=subprocess.DEVNULL, stderr=err, timeout=TIMEOUT, umask=mask,
                           stdin=subprocess.DEVNULL)
    try:
        assert r.returncode == 0, errfile.read_text()
        assert stat.S_IMODE(pid_file.stat().st_mode) == 0o666 & ~mask
        pid = int(pid_file.read_text())
        assert Path(f"/proc/{pid}").exists()
    finally:
        run(["umount", target], timeout=30)
    deadline = time.monotonic() + 30
    while pid_file.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not pid_file.exists()


def test_a_fifo_as_a_chunk_file_fails_and_never_hangs(tmp_path):
    """A FIFO planted where a chunk file belongs: opening it for reading
    would wait for a writer for ever. Every reader fails at once instead,
    in one line naming the file; verify lists it as corrupt."""
    store, _ = make_store(tmp_path)
    a = parse_archive(FIXTURES / SMALL)
    h = a.chunks[a.order[0]].hash.hex()
    chunk = store / "chunks" / h[:4] / f"{h}.chunk"
    chunk.unlink()
    os.mkfifo(chunk)
    target = tmp_path / "mnt-file"
    target.touch()
    r = run([IHOP, "verify", store / "a"], timeout=20)
    assert r.returncode == 1
    assert f"corrupt {chunk}" in r.stdout.splitlines()
    for args in (["mount", store / "a", target], ["serve", "--unix", tmp_path / "sock", store / "a"],
                 ["cat", "-o", tmp_path / "out.img", store / "a"]):
        try:
            r = run([IHOP, *args], timeout=20)
        finally:
            if os.path.ismount(target):
                run(["umount", "-l", target], timeout=30)
        assert r.returncode != 0, args
        errors = [l for l in r.stderr.splitlines() if l.startswith("ihop: error:")]
        assert len(errors) == 1, (args, r.stderr)
        assert str(chunk) in errors[0] or f"{h[:16]}" in errors[0], (args, errors[0])
