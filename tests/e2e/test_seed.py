# SPDX-License-Identifier: MIT
"""Seeds: `ihop clone --seed` takes every chunk a seed holds (cut with the
archive's own chunker, each hash-verified) before downloading, so a device's
first ihop update can start from its current root partition. Bytes are
counted at the server (nginx's access log)."""

import os
import random
import re
import subprocess
import time

import pytest

from bita_archive import parse_archive
from ihop_run import FIXTURES, IHOP, TIMEOUT, clone, clone_ok, ihop, parse_summary
from store_checks import assert_clone_complete

V1, V2 = "pair/v1.ext4.cba", "pair/v2.ext4.cba"


def served(nginx, mark, name):
    entries = [e for e in nginx.entries(mark) if e.path == "/" + name]
    assert all(e.status == 206 for e in entries), entries
    return sum(e.body_bytes for e in entries)


@pytest.fixture(scope="module")
def v1_image(tmp_path_factory):
    d = tmp_path_factory.mktemp("seed-v1")
    clone_ok(FIXTURES / V1, d / "store" / "v1")
    r = ihop("cat", "-o", d / "v1.img", d / "store" / "v1")
    assert r.returncode == 0, r.stderr
    return d / "v1.img"


def seeded_summary(stdout):
    m = re.search(r"^took (\d+) chunks \(.*\) from seeds$", stdout, re.M)
    return int(m[1]) if m else 0


def expect_download(archive, have_hashes):
    """Header plus the compressed chunks the release needs and the seed lacks."""
    missing = [c for c in archive.chunks if c.hash not in have_hashes]
    return missing, archive.header_size + sum(c.archive_size for c in missing)


def test_previous_image_as_seed_downloads_only_what_it_lacks(tmp_path, archives, nginx, v1_image):
    v1, v2 = archives[V1], archives[V2]
    store = tmp_path / "store"
    mark = nginx.mark()
    r = clone_ok(nginx.url(V2), store / "v2", "--seed", v1_image)
    missing, want = expect_download(v2, {c.hash for c in v1.chunks})
    s = parse_summary(r.stdout)
    assert s.fetched == len(missing) == 83
    assert seeded_summary(r.stdout) == len(v2.chunks) - len(missing)
    assert s.reused == 0
    assert served(nginx, mark, V2) == want
    assert_clone_complete(store, "v2", v2)
    assert ihop("verify", store / "v2").returncode == 0


def test_seed_from_standard_input(tmp_path, archives, nginx, v1_image):
    v2 = archives[V2]
    store = tmp_path / "store"
    mark = nginx.mark()
    with open(v1_image, "rb") as f:
        r = subprocess.run([IHOP, "clone", "--seed", "-", nginx.url(V2), str(store / "v2")], stdin=f,
                           capture_output=True, text=True, timeout=TIMEOUT)
    assert r.returncode == 0, r.stderr
    assert parse_summary(r.stdout).fetched == 83
    assert served(nginx, mark, V2) == v2.header_size + 3114057
    assert_clone_complete(store, "v2", v2)


def test_partial_seed_gives_what_it_has(tmp_path, archives, nginx, v1_image):
    """The first 12 MB of v1: the chunks it holds are exactly those ihop
    compress (bita's chunker, same parameters) cuts from it."""
    v2 = archives[V2]
    part = tmp_path / "part.img"
    part.write_bytes(v1_image.read_bytes()[:12_000_000])
    cba = tmp_path / "part.cba"
    r = ihop("compress", "--compression", "none", "-i", part, cba)
    assert r.returncode == 0, r.stderr
    have = {c.hash for c in parse_archive(cba).chunks}
    missing, want = expect_download(v2, have)
    assert 0 < len(missing) < len(v2.chunks)

    store = tmp_path / "store"
    mark = nginx.mark()
    r = clone_ok(nginx.url(V2), store / "v2", "--seed", part)
    assert parse_summary(r.stdout).fetched == len(missing)
    assert served(nginx, mark, V2) == want
    assert_clone_complete(store, "v2", v2)


def test_missing_and_unreadable_seeds_are_warnings(tmp_path, archives, v1_image):
    v2 = archives[V2]
    store = tmp_path / "store"
    r = clone(FIXTURES / V2, store / "v2", "--seed", tmp_path / "nonexistent", "--seed", tmp_path,
              "--seed", v1_image)
    assert r.returncode == 0, r.stderr
    warnings = [l for l in r.stderr.splitlines() if l.startswith("ihop: warning:")]
    assert len(warnings) == 2 and not [l for l in r.stderr.splitlines() if "error" in l], r.stderr
    assert "nonexistent" in warnings[0] and str(tmp_path) in warnings[1]
    assert parse_summary(r.stdout).fetched == 83  # the good seed still served
    assert_clone_complete(store, "v2", v2)


def test_seed_failing_part_way_is_used_up_to_the_error(tmp_path, archives):
    """A seed that reads as EIO in the middle (a FUSE file of a release with a
    chunk corrupted on disk, mounted with --verify): chunks before the error
    are used, the clone completes from the archive, with one warning."""
    if not os.path.exists("/dev/fuse"):
        pytest.skip("no /dev/fuse: cannot make a seed that fails part way")
    v1, v2 = archives[V1], archives[V2]
    src = tmp_path / "src"
    clone_ok(FIXTURES / V1, src / "v1")
    # corrupt the chunk that starts the second half of the image
    offset, target = 0, None
    for idx in v1.order:
        c = v1.chunks[idx]
        if offset >= v1.source_total_size // 2:
            target = c
            break
        offset += c.source_size
    chunk = src / "chunks" / target.hash.hex()[:4] / (target.hash.hex() + ".chunk")
    data = bytearray(chunk.read_bytes())
    data[0] ^= 0xFF
    chunk.write_bytes(bytes(data))

    seed = tmp_path / "seed.img"
    seed.touch()
    p = subprocess.Popen([IHOP, "mount", "--verify", str(src / "v1"), str(seed)], stdin=subprocess.DEVNULL,
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 10
        while seed.stat().st_size != v1.source_total_size and time.monotonic() < deadline:
            time.sleep(0.05)
        assert seed.stat().st_size == v1.source_total_size, "the FUSE seed did not appear"
        with open(seed, "rb") as f:
            f.seek(offset)
            with pytest.raises(OSError) as e:
                f.read(4096)
            assert e.value.errno == 5

        store = tmp_path / "store"
        r = clone(FIXTURES / V2, store / "v2", "--seed", seed)
        assert r.returncode == 0, r.stderr
        warnings = [l for l in r.stderr.splitlines() if l.startswith("ihop: warning:")]
        assert len(warnings) == 1, r.stderr
        assert str(seed) in warnings[0] and "Input/output error" in warnings[0], warnings[0]
        seeded = seeded_summary(r.stdout)
        assert 0 < seeded < len(v2.chunks) - 83  # some, but not all v1 had
        assert parse_summary(r.stdout).fetched == len(v2.chunks) - seeded
        assert_clone_complete(store, "v2", v2)
    finally:
        subprocess.run(["umount", str(seed)], capture_output=True, timeout=30)
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(10)


def test_seed_with_large_chunks_and_unused_space_is_taken_whole(tmp_path):
    """Chunks of data larger than what a seeding job keeps between chunks,
    then chunks of some data and unused space (zeros that are never copied)
    in the same job buffers: every chunk of the seed must hash right, so a
    seed that is the image itself leaves nothing to fetch."""
    rnd = random.Random(11)
    # Three kinds of chunk in turn, so each job buffer holds all of them.
    image = b"".join(rnd.randbytes(512 << 10) + rnd.randbytes(40 << 10) + bytes(472 << 10) + rnd.randbytes(512 << 10)
                     for _ in range(16))
    src = tmp_path / "image"
    src.write_bytes(image)
    cba = tmp_path / "image.cba"
    r = ihop("compress", "--fixed-size", "512KiB", "--compression", "zstd", "-i", src, cba)
    assert r.returncode == 0, r.stderr
    r = clone_ok(cba, tmp_path / "store" / "rel", "--seed", src)
    unique = len(parse_archive(cba).chunks)
    assert unique == 48  # each holds random data: all differ
    assert seeded_summary(r.stdout) == unique
    assert parse_summary(r.stdout).fetched == 0
    assert ihop("verify", tmp_path / "store" / "rel").returncode == 0
