# SPDX-License-Identifier: MIT
"""Every good bita archive clones, from a file and over HTTP, into a store
that holds exactly verified chunks and a well-formed release description, and
`ihop cat` reproduces the image the archive describes."""

import pytest

from ihop_run import FIXTURES, GOOD_ARCHIVES, IHOP, assert_one_error_line, clone_ok, parse_summary, run
from store_checks import assert_clone_complete, check_store


def check_good_clone(store, archive, result):
    assert result.stderr == "", f"unexpected stderr: {result.stderr!r}"
    s = parse_summary(result.stdout)
    assert s.total == len(archive.order)
    assert s.unique == len({c.hash for c in archive.chunks})
    assert (s.reused, s.fetched) == (0, s.unique)
    assert_clone_complete(store, "rel", archive)
    # exactly the archive's chunks, nothing else
    assert check_store(store) == {c.hash.hex() for c in archive.chunks}
    assert sorted(p.name for p in store.iterdir()) == ["chunks", "rel"]
    return s


@pytest.mark.parametrize("name", GOOD_ARCHIVES)
def test_clone_from_file_reproduces_image(tmp_path, archives, name):
    archive = archives[name]
    assert archive.header_checksum_ok
    store = tmp_path / "store"
    r = clone_ok(FIXTURES / name, store / "rel")
    s = check_good_clone(store, archive, r)
    assert s.downloaded is None  # no HTTP, no download line


@pytest.mark.parametrize("name", GOOD_ARCHIVES)
def test_clone_over_http_reproduces_image(tmp_path, archives, nginx, name):
    archive = archives[name]
    store = tmp_path / "store"
    mark = nginx.mark()
    r = clone_ok(nginx.url(name), store / "rel")
    s = check_good_clone(store, archive, r)
    entries = nginx.entries(mark)
    assert entries and all(e.status == 206 and e.range.startswith("bytes=") for e in entries)
    # The header once, then every unique chunk's bytes once.
    served = sum(e.body_bytes for e in entries)
    assert served == archive.header_size + sum(c.archive_size for c in archive.chunks)
    # ihop's count includes the response headers, so it is a little more.
    assert s.downloaded >= served


def test_tampered_release_description_is_refused(tmp_path):
    store = tmp_path / "store"
    clone_ok(FIXTURES / "rand-0_1_1-none.cba", store / "rel")
    data = bytearray((store / "rel").read_bytes())
    data[20] ^= 0x01
    (store / "bad").write_bytes(bytes(data))
    r = run([IHOP, "cat", "-o", tmp_path / "out.img", store / "bad"])
    assert_one_error_line(r, "checksum")
    assert not (tmp_path / "out.img").exists()
    assert r.stdout == ""
    r = run([IHOP, "info", store / "bad"])
    assert_one_error_line(r, "checksum")
