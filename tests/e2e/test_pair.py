# SPDX-License-Identifier: MIT
"""Two releases of an ext4 image in one store: cloning v2 over HTTP into the
store that holds v1 downloads only v2's header and the chunks v1 lacks,
counted by nginx."""

from ihop_run import cat_checksum, clone_ok, parse_summary
from store_checks import assert_clone_complete, check_store

V2_NEW_CHUNKS = 83
V2_NEW_CHUNK_BYTES = 3114057
V2_HEADER_BYTES = 23000


def test_pair_fixture_numbers(archives):
    v1, v2 = archives["pair/v1.ext4.cba"], archives["pair/v2.ext4.cba"]
    have = {c.hash for c in v1.chunks}
    new = [c for c in v2.chunks if c.hash not in have]
    assert len(new) == V2_NEW_CHUNKS
    assert sum(c.archive_size for c in new) == V2_NEW_CHUNK_BYTES
    assert v2.header_size == v2.chunk_data_offset == V2_HEADER_BYTES


def test_v2_over_v1_downloads_only_missing_chunks(tmp_path, archives, nginx):
    v1, v2 = archives["pair/v1.ext4.cba"], archives["pair/v2.ext4.cba"]
    store = tmp_path / "store"

    r = clone_ok(nginx.url("pair/v1.ext4.cba"), store / "v1")
    s1 = parse_summary(r.stdout)
    assert (s1.reused, s1.fetched) == (0, len(v1.chunks))

    mark = nginx.mark()
    r = clone_ok(nginx.url("pair/v2.ext4.cba"), store / "v2")
    s2 = parse_summary(r.stdout)
    assert s2.fetched == V2_NEW_CHUNKS
    assert s2.reused == len(v2.chunks) - V2_NEW_CHUNKS
    assert s2.total == len(v2.order)

    entries = [e for e in nginx.entries(mark) if e.path == "/pair/v2.ext4.cba"]
    assert entries, "nginx logged no request for v2"
    assert all(e.status == 206 and e.range.startswith("bytes=") for e in entries), entries
    assert sum(e.body_bytes for e in entries) == V2_NEW_CHUNK_BYTES + V2_HEADER_BYTES
    assert s2.downloaded >= V2_NEW_CHUNK_BYTES + V2_HEADER_BYTES

    assert_clone_complete(store, "v2", v2)
    assert cat_checksum(store / "v1") == v1.source_checksum  # v1 is untouched
    assert check_store(store) == {c.hash.hex() for c in v1.chunks + v2.chunks}
