# SPDX-License-Identifier: MIT
"""A FIFO or a character device where ihop expects a regular file.

Opening a FIFO for reading waits for a writer, for ever when there is none;
opening a device may block or do something (a watchdog starts). Every file
ihop reads whole or at offsets is looked at before it is opened, and one
that is not a regular file is refused in one line naming it and saying what
it is, or, in a listing, left out as what is not a release is:

- a release name at the top of a store (STORE/NAME): ls leaves it out, gc
  and gc -n pass it and collect as they would without it; verify, cat,
  info, mount, serve, verify --repair and --source refuse it;
- STORE/.release-version: a signed clone (or --source) is refused and
  stores nothing; an unsigned one does not read it;
- --trusted-key, a *.pub in --trusted-keys, --signature, the secret key of
  sign and compress --sign, --metadata-file, sign -p;
- the archive given as SOURCE (clone, info, --source, verify --repair,
  sign), which is read at offsets.

Each case runs with a FIFO nobody writes to and with a character device
(mknod of /dev/null's numbers; skipped without CAP_MKNOD), each command
under a timeout: before this was fixed the FIFO cases hung (a timeout
here). diff's image is the exception: it is read once from front to back,
so a FIFO is a stream it reads, as compress's INPUT and --seed are."""

import hashlib
import os
import stat
import subprocess
from pathlib import Path

import pytest

from bita_archive import parse_archive
from ihop_run import FIXTURES, IHOP, assert_one_error_line, clone_ok, ihop, run
from store_checks import check_store

SMALL = "rand-0_1_1-none.cba"  # the archive of random.img
BOUND = 20  # seconds: what a refused command may take at most (a hang is a failure)
KINDS = {"fifo": "a FIFO", "chardev": "a character device"}


def make_node(path: Path, kind: str):
    """A FIFO, or a character device with /dev/null's numbers, at path."""
    if kind == "fifo":
        os.mkfifo(path)
        return
    try:
        os.mknod(path, 0o644 | stat.S_IFCHR, os.makedev(1, 3))
    except PermissionError:
        pytest.skip("no CAP_MKNOD here: no character device to plant")


@pytest.fixture(params=sorted(KINDS))
def node(request):
    """make(path) plants the kind of file under test; .what is how ihop names it."""
    def make(path):
        make_node(Path(path), request.param)
        return Path(path)

    make.kind, make.what = request.param, KINDS[request.param]
    return make


def bounded(*args):
    """ihop *args, which must end on its own well within BOUND seconds."""
    try:
        return run([IHOP, *args], timeout=BOUND)
    except subprocess.TimeoutExpired:
        pytest.fail(f"ihop {' '.join(map(str, args))} blocked for {BOUND} s")


def snapshot(root: Path) -> dict:
    """Every entry below root: its type, and for a regular file its size and hash."""
    out = {}
    for p in sorted(root.rglob("*")):
        st = p.lstat()
        if stat.S_ISREG(st.st_mode):
            out[p] = ("file", st.st_size, hashlib.blake2b(p.read_bytes()).hexdigest())
        else:
            out[p] = (stat.S_IFMT(st.st_mode),)
    return out


def refuse(needle, *args):
    """ihop *args fails at once in one line holding needle, printing nothing."""
    r = bounded(*args)
    line = assert_one_error_line(r, needle)
    assert r.returncode == 1, (args, r.returncode)
    assert r.stdout == "", (args, r.stdout)
    return line


@pytest.fixture
def store(tmp_path):
    """STORE holding release "a" (of SMALL)."""
    s = tmp_path / "store"
    clone_ok(FIXTURES / SMALL, s / "a")
    return s


@pytest.fixture
def signing(tmp_path):
    """A key pair by ihop keygen and an archive it signed as version 3: (pub, key, archive)."""
    d = tmp_path / "signing"
    d.mkdir()
    r = ihop("keygen", "-W", "-p", d / "vendor.pub", "-s", d / "vendor.key")
    assert r.returncode == 0, r.stderr
    r = ihop("compress", "-i", FIXTURES / "random.img", "--sign", d / "vendor.key", "--release-version", "3",
             d / "signed.cba")
    assert r.returncode == 0, r.stderr
    assert (d / "signed.cba.minisig").is_file()
    return d / "vendor.pub", d / "vendor.key", d / "signed.cba"


def no_release_no_chunk(store: Path):
    """A refused clone stored nothing: no file at the top, no chunk file."""
    if store.exists():
        assert [p.name for p in store.iterdir() if p.is_file() and not p.is_symlink()] == []
        assert check_store(store) == set()


# --------------------------------------------------------------------------
# STORE/NAME


def test_every_reader_of_a_release_refuses_one_that_is_not_a_regular_file(tmp_path, store, node):
    x = node(store / "x")
    before = snapshot(store)
    said = f"{x} is {node.what}, not a release description: refusing"
    target = tmp_path / "mnt-file"
    target.touch()
    archive = FIXTURES / SMALL
    for args in (["verify", x], ["cat", x], ["cat", "-o", tmp_path / "out.img", x],
                 ["mount", x, target], ["serve", "--unix", tmp_path / "sock", x],
                 ["verify", "--repair", archive, x],
                 ["mount", "--source", archive, x, target],
                 ["serve", "--unix", tmp_path / "sock", "--source", archive, x]):
        try:
            refuse(said, *args)
        finally:
            if os.path.ismount(target):
                run(["umount", "-l", target], timeout=30)
    refuse(f"{x} is {node.what}, neither an archive nor a release description: refusing", "info", x)
    assert not (tmp_path / "out.img").exists() and not (tmp_path / "sock").exists()
    assert snapshot(store) == before
    # The release beside it is as it was.
    r = bounded("verify", store / "a")
    assert r.returncode == 0, r.stderr


def test_ls_leaves_out_what_is_not_a_regular_file_as_it_does_what_is_not_a_release(store, node):
    (store / "notes").write_text("not a release\n")
    want = [bounded("ls", store), bounded("ls", "--json", store)]
    assert want[0].returncode == 0 and "notes" not in want[0].stdout
    assert [l.split()[0] for l in want[0].stdout.splitlines()[1:-1]] == ["a"], want[0].stdout
    x = node(store / "x")
    for args, w in ((["ls", store], want[0]), (["ls", "--json", store], want[1])):
        r = bounded(*args)
        assert (r.returncode, r.stdout, r.stderr) == (w.returncode, w.stdout, w.stderr), args
    assert x.exists()


def test_gc_passes_what_is_not_a_regular_file_and_collects_as_without_it(tmp_path, store, node):
    clone_ok(FIXTURES / "zero-0_1_1-zstd.cba", store / "b")
    assert ihop("rm", store / "b").returncode == 0  # b's chunks are garbage now
    dry = bounded("gc", "-n", store)
    assert dry.returncode == 0 and "would remove" in dry.stdout, dry.stderr
    x = node(store / "x")
    before = snapshot(store)

    r = bounded("gc", "-n", store)
    assert (r.returncode, r.stdout, r.stderr) == (0, dry.stdout, ""), r.stderr
    assert snapshot(store) == before
    r = bounded("gc", store)
    assert r.returncode == 0 and r.stderr == "", r.stderr
    removed = [l for l in r.stdout.splitlines() if l.startswith(f"removed {store}/")]
    assert removed and removed == [l.replace("would remove", "removed", 1) for l in dry.stdout.splitlines()
                                   if l.startswith(f"would remove {store}/")]
    # What went is exactly b's garbage; x is still there, as it was.
    gone = {p for p in before if p not in snapshot(store)}
    assert gone and all(p.name.endswith(".chunk") or p.parent == store / "chunks" for p in gone), gone
    assert stat.S_IFMT(x.lstat().st_mode) == before[x][0]
    check_store(store)
    assert bounded("verify", store / "a").returncode == 0
    # gc let go of the store: a clone runs at once.
    r = run([IHOP, "clone", FIXTURES / "zero-0_1_1-lzma.cba", store / "c"], timeout=BOUND)
    assert r.returncode == 0 and "waiting for store" not in r.stderr, r.stderr


# --------------------------------------------------------------------------
# STORE/.release-version


def test_a_remembered_version_that_is_not_a_regular_file_fails_a_signed_clone(tmp_path, node, signing):
    pub, _, archive = signing
    store = tmp_path / "s"
    store.mkdir()
    v = node(store / ".release-version")
    said = f"{v} is {node.what}, not a regular file: refusing signed releases until it is removed"
    refuse(said, "clone", "--trusted-key", pub, archive, store / "r")
    no_release_no_chunk(store)
    refuse(said, "serve", "--unix", tmp_path / "sock", "--trusted-key", pub, "--source", archive, store / "r")
    no_release_no_chunk(store)
    assert stat.S_IFMT(v.lstat().st_mode) in (stat.S_IFIFO, stat.S_IFCHR)
    # An unsigned clone does not read it.
    r = run([IHOP, "clone", FIXTURES / SMALL, store / "plain"], timeout=BOUND)
    assert r.returncode == 0, r.stderr


# --------------------------------------------------------------------------
# Keys, signatures, metadata files


def test_key_signature_and_metadata_files_that_are_not_regular_files_are_refused(tmp_path, node, signing):
    pub, key, archive = signing
    n = node(tmp_path / "node")
    store = tmp_path / "s"
    said = f"{n} is {node.what}, not a regular file"

    refuse(f"trusted key {said}: refusing", "clone", "--trusted-key", n, archive, store / "r")
    keys = tmp_path / "trusted.d"
    keys.mkdir()
    (keys / "vendor.pub").write_bytes(pub.read_bytes())
    node(keys / "x.pub")
    refuse(f"trusted key {keys}/x.pub is {node.what}, not a regular file: refusing",
           "clone", "--trusted-keys", keys, archive, store / "r")
    refuse(f"refusing {archive}: no signature: {said}",
           "clone", "--trusted-key", pub, "--signature", n, archive, store / "r")
    no_release_no_chunk(store)

    sig = Path(str(archive) + ".minisig")
    sig_before = sig.read_bytes()
    refuse(f"secret key {said}: refusing", "sign", "-s", n, "--release-version", "4", archive)
    refuse(f"trusted key {said}: refusing", "sign", "-s", key, "-p", n, "--release-version", "4", archive)
    assert sig.read_bytes() == sig_before
    out = tmp_path / "out.cba"
    refuse(f"secret key {said}: refusing",
           "compress", "-i", FIXTURES / "random.img", "--sign", n, "--release-version", "4", out)
    refuse(f"metadata file {said}: refusing",
           "compress", "-i", FIXTURES / "random.img", "--metadata-file", "notes", n, out)
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("out")) == []


# --------------------------------------------------------------------------
# The archive


def test_an_archive_that_is_not_a_regular_file_is_refused(tmp_path, store, node):
    n = node(tmp_path / "node.cba")
    said = f"archive {n} is {node.what}, not a regular file: refusing"
    other = tmp_path / "other"
    target = tmp_path / "mnt-file"
    target.touch()
    refuse(said, "clone", n, other / "r")
    no_release_no_chunk(other)
    refuse(f"{n} is {node.what}, neither an archive nor a release description: refusing", "info", n)
    for args in (["mount", "--source", n, other / "r", target],
                 ["serve", "--unix", tmp_path / "sock", "--source", n, other / "r"]):
        try:
            refuse(said, *args)
        finally:
            if os.path.ismount(target):
                run(["umount", "-l", target], timeout=30)
    no_release_no_chunk(other)
    # A repair that needs the archive: one chunk of "a" gone.
    a = parse_archive(FIXTURES / SMALL)
    h = a.chunks[a.order[0]].hash.hex()
    (store / "chunks" / h[:4] / f"{h}.chunk").unlink()
    before = snapshot(store)
    r = bounded("verify", "--repair", n, store / "a")
    assert r.returncode == 1
    assert [l for l in r.stderr.splitlines() if l.startswith("ihop: error:")] == [f"ihop: error: {said}"], r.stderr
    assert snapshot(store) == before


def test_sign_refuses_an_archive_that_is_not_a_regular_file(tmp_path, node, signing):
    _, key, _ = signing
    n = node(tmp_path / "node.cba")
    refuse(f"archive {n} is {node.what}, not a regular file: refusing", "sign", "-s", key, "--release-version", "1",
           n)
    assert not Path(str(n) + ".minisig").exists()


def test_diff_reads_an_image_from_a_fifo_as_a_stream(tmp_path):
    """diff takes a FIFO for an image, as the stream it is: its archive
    probe does not open it (before, the probe opened it, read nothing,
    closed it under the writer, and the scan then waited for ever)."""
    image = FIXTURES / "random.img"
    assert image.stat().st_size > 4 * 65536  # more than a pipe holds: the writer is still writing
    want = bounded("diff", FIXTURES / SMALL, image)
    assert want.returncode == 0, want.stderr
    fifo = tmp_path / "image.fifo"
    os.mkfifo(fifo)
    writer = subprocess.Popen(["sh", "-c", 'cat "$1" > "$2"', "sh", str(image), str(fifo)],
                              stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        r = bounded("diff", FIXTURES / SMALL, fifo)
    finally:
        if writer.poll() is None:
            writer.kill()
        writer.wait(BOUND)
    assert r.returncode == 0, r.stderr
    assert r.stdout == want.stdout.replace(str(image), str(fifo))
    assert writer.returncode == 0, writer.stderr.read()
