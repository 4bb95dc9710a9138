# SPDX-License-Identifier: MIT
"""Archives that must be refused: a clone fails with one error line saying
why, and leaves no release and nothing unverified in the store."""

import pytest

from ihop_run import BAD_ARCHIVES, FIXTURES, assert_final_error, assert_one_error_line, clone, clone_ok, parse_summary
from store_checks import assert_no_release_and_clean, chunk_files


def test_bad_fixtures_are_what_they_claim(archives):
    assert not archives["rand-0_7_1-corrupt-header.cba"].header_checksum_ok
    for name in ("rand-0_7_1-corrupt-chunk.cba", "rand-0_11_0-brotli-trunc.cba"):
        a = archives[name]
        assert a.header_checksum_ok
        end = max(c.archive_offset + c.archive_size for c in a.chunks)
        assert end > (FIXTURES / name).stat().st_size


@pytest.mark.parametrize("name", sorted(BAD_ARCHIVES))
def test_bad_archive_from_file_is_refused(tmp_path, name):
    store = tmp_path / "store"
    r = clone(FIXTURES / name, store / "rel")
    assert_one_error_line(r, BAD_ARCHIVES[name], str(FIXTURES / name))
    assert r.stdout == ""
    assert_no_release_and_clean(store, "rel")
    assert chunk_files(store) == []  # refused before any chunk is read


@pytest.mark.parametrize("name", sorted(BAD_ARCHIVES))
def test_bad_archive_over_http_is_refused(tmp_path, nginx, name):
    store = tmp_path / "store"
    r = clone(nginx.url(name), store / "rel")
    assert_one_error_line(r, BAD_ARCHIVES[name], nginx.url(name))
    assert r.stdout == ""
    assert_no_release_and_clean(store, "rel")
    assert chunk_files(store) == []


def flip_byte_in_chunk(archive, index, where=0.5) -> bytes:
    """The archive's bytes with one byte flipped inside chunk `index`'s data."""
    data = bytearray(archive.path.read_bytes())
    c = archive.chunks[index]
    pos = c.archive_offset + int(c.archive_size * where)
    data[pos] ^= 0x55
    return bytes(data)


def check_crafted_corrupt_clone(store, archive, bad_index, r):
    line = assert_final_error(r, "corrupt", archive.chunks[bad_index].hash.hex())
    assert f"archive offset {archive.chunks[bad_index].archive_offset}" in line
    present = assert_no_release_and_clean(store, "rel")  # every chunk file hash-checks
    assert archive.chunks[bad_index].hash.hex() not in present
    return present


@pytest.mark.parametrize("jobs", ["1", "3"])
def test_flipped_byte_in_raw_chunk_is_caught_from_file(tmp_path, archives, jobs):
    archive = archives["rand-0_1_1-none.cba"]
    assert archive.compression_name == "none"
    bad = tmp_path / "bad.cba"
    bad.write_bytes(flip_byte_in_chunk(archive, 2))
    store = tmp_path / "store"
    r = clone(bad, store / "rel", "-j", jobs)
    present = check_crafted_corrupt_clone(store, archive, 2, r)
    if jobs == "1":
        # One range, read in order: the chunks before the bad one were
        # verified and are kept; the ones after it were never written.
        assert present == {c.hash.hex() for c in archive.chunks[:2]}
    # Cloning the good archive afterwards fetches only what is missing.
    r = clone_ok(FIXTURES / "rand-0_1_1-none.cba", store / "rel")
    s = parse_summary(r.stdout)
    assert (s.reused, s.fetched) == (len(present), len(archive.chunks) - len(present))


def test_flipped_byte_in_brotli_chunk_is_caught_over_http(tmp_path, archives, nginx):
    archive = archives["pair/v1.ext4.cba"]
    assert archive.compression_name == "brotli"
    # a compressed chunk somewhere in the middle
    index = next(i for i, c in enumerate(archive.chunks)
                 if i > len(archive.chunks) // 2 and c.archive_size < c.source_size)
    url = nginx.publish("crafted/v1-bad-brotli.cba", flip_byte_in_chunk(archive, index))
    store = tmp_path / "store"
    r = clone(url, store / "rel", "--http-retry-count", "0")
    check_crafted_corrupt_clone(store, archive, index, r)


def test_flipped_byte_in_raw_chunk_is_caught_over_http(tmp_path, archives, nginx):
    archive = archives["rand-0_1_1-none.cba"]
    url = nginx.publish("crafted/rand-bad-raw.cba", flip_byte_in_chunk(archive, 4, where=0.99))
    store = tmp_path / "store"
    r = clone(url, store / "rel", "-j", "1")
    present = check_crafted_corrupt_clone(store, archive, 4, r)
    assert present <= {c.hash.hex() for c in archive.chunks[:4]}
