# SPDX-License-Identifier: MIT
"""Chunks already in the store are reused, not fetched again; a damaged one
is detected and fetched again."""

import pytest

from ihop_run import FIXTURES, IHOP, assert_one_error_line, cat_checksum, clone_ok, parse_summary, run
from store_checks import assert_clone_complete, check_store


@pytest.mark.parametrize("naive", [False, True], ids=["verify", "naive"])
def test_second_clone_from_file_fetches_nothing(tmp_path, archives, naive):
    name = "rand-0_1_1-none.cba"
    archive = archives[name]
    store = tmp_path / "store"
    clone_ok(FIXTURES / name, store / "a")
    before = {p: p.stat().st_mtime_ns for p in (store / "chunks").rglob("*.chunk")}
    r = clone_ok(FIXTURES / name, store / "b", *(["--naive"] if naive else []))
    s = parse_summary(r.stdout)
    assert (s.reused, s.fetched) == (len(archive.chunks), 0)
    after = {p: p.stat().st_mtime_ns for p in (store / "chunks").rglob("*.chunk")}
    assert after == before  # no chunk was rewritten
    assert_clone_complete(store, "b", archive)
    assert cat_checksum(store / "a") == archive.source_checksum


@pytest.mark.parametrize("naive", [False, True], ids=["verify", "naive"])
def test_second_clone_over_http_downloads_only_the_header(tmp_path, archives, nginx, naive):
    name = "pair/v1.ext4.cba"
    archive = archives[name]
    store = tmp_path / "store"
    clone_ok(nginx.url(name), store / "a")
    mark = nginx.mark()
    r = clone_ok(nginx.url(name), store / "b", *(["--naive"] if naive else []))
    s = parse_summary(r.stdout)
    assert (s.reused, s.fetched) == (len(archive.chunks), 0)
    entries = nginx.entries(mark)
    assert sum(e.body_bytes for e in entries) == archive.header_size
    assert_clone_complete(store, "b", archive)


def test_damaged_chunk_in_store_is_fetched_again(tmp_path, archives):
    name = "rand-0_1_1-none.cba"
    archive = archives[name]
    store = tmp_path / "store"
    clone_ok(FIXTURES / name, store / "a")
    victim = archive.chunks[1].hash.hex()
    path = store / "chunks" / victim[:4] / f"{victim}.chunk"
    data = bytearray(path.read_bytes())
    data[100] ^= 0xFF  # same size, different content
    path.write_bytes(bytes(data))

    r = clone_ok(FIXTURES / name, store / "b")
    s = parse_summary(r.stdout)
    assert (s.reused, s.fetched) == (len(archive.chunks) - 1, 1)
    assert victim in r.stderr and "corrupt" in r.stderr
    assert check_store(store) == {c.hash.hex() for c in archive.chunks}
    assert_clone_complete(store, "b", archive)
    assert cat_checksum(store / "a") == archive.source_checksum


def test_naive_trusts_a_present_chunk_of_the_right_size(tmp_path, archives):
    """--naive does not hash stored chunks: a damaged chunk of the right size
    is reused, and `ihop cat` is what catches it."""
    name = "rand-0_1_1-none.cba"
    archive = archives[name]
    store = tmp_path / "store"
    clone_ok(FIXTURES / name, store / "a")
    victim = archive.chunks[0].hash.hex()
    path = store / "chunks" / victim[:4] / f"{victim}.chunk"
    data = bytearray(path.read_bytes())
    data[0] ^= 0xFF
    path.write_bytes(bytes(data))

    r = clone_ok(FIXTURES / name, store / "b", "--naive")
    s = parse_summary(r.stdout)
    assert (s.reused, s.fetched) == (len(archive.chunks), 0)
    r = run([IHOP, "cat", "-o", tmp_path / "img", store / "b"])
    assert_one_error_line(r, "checksum")
    assert not (tmp_path / "img").exists()
