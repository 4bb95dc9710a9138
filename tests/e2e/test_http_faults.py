# SPDX-License-Identifier: MIT
"""Misbehaving HTTP servers of the tests' own: transfers cut off or stalled
mid-body are resumed where they stopped, and a server that sends the wrong
bytes or the wrong Content-Range never gets a corrupt chunk into the store."""

import time

import pytest

from fault_server import FaultServer
from ihop_run import FIXTURES, assert_final_error, assert_one_error_line, clone, clone_ok, parse_summary
from store_checks import assert_clone_complete, assert_no_release_and_clean, chunk_files

SMALL = "rand-0_1_1-none.cba"
FAST_RETRY = ("--http-retry-delay", "0")


@pytest.mark.parametrize("cuts", [1, 3])
def test_cut_transfer_is_resumed(tmp_path, archives, cuts):
    archive = archives[SMALL]
    store = tmp_path / "store"
    with FaultServer(FIXTURES / SMALL, mode="cut", cuts=cuts) as srv:
        r = clone(srv.url, store / "rel", "-j", "1", "--http-retry-count", "3", *FAST_RETRY)
        ranges, cut_at = srv.ranges(), list(srv.cut_at)
    assert r.returncode == 0, r.stderr
    warnings = r.stderr.splitlines()
    assert len(warnings) == cuts and all(w.startswith("ihop: warning: ") and "retrying from byte" in w
                                         for w in warnings), r.stderr
    s = parse_summary(r.stdout)
    assert (s.reused, s.fetched) == (0, len(archive.chunks))
    assert_clone_complete(store, "rel", archive)
    # Each retry asked for exactly the bytes not yet received.
    data_ranges = [rg for rg in ranges if rg[0] >= archive.chunk_data_offset]
    assert len(data_ranges) == cuts + 1
    assert len(cut_at) == cuts
    for (_, sent_to), nxt, (_, prev_end) in zip(cut_at, data_ranges[1:], data_ranges):
        assert nxt == (sent_to, prev_end)
    assert data_ranges[-1][1] == max(c.archive_offset + c.archive_size for c in archive.chunks) - 1


def test_cut_header_transfer_is_resumed(tmp_path, archives):
    archive = archives[SMALL]
    store = tmp_path / "store"
    with FaultServer(FIXTURES / SMALL, mode="cut", cuts=3, fault_from=0) as srv:
        r = clone(srv.url, store / "rel", "-j", "1", "--http-retry-count", "3", *FAST_RETRY)
        ranges = srv.ranges()
    assert r.returncode == 0, r.stderr
    assert ranges[:3] == [(0, 13), (7, 13), (10, 13)]  # the 14-byte pre-header, resumed twice
    assert_clone_complete(store, "rel", archive)


def test_cut_transfers_over_parallel_connections_are_resumed(tmp_path, archives):
    name = "pair/v1.ext4.cba"
    archive = archives[name]
    store = tmp_path / "store"
    with FaultServer(FIXTURES / name, mode="cut", cuts=3) as srv:
        r = clone(srv.url, store / "rel", "-j", "4", "--http-retry-count", "3", *FAST_RETRY)
    assert r.returncode == 0, r.stderr
    assert r.stderr.count("ihop: warning: ") == 3
    assert parse_summary(r.stdout).fetched == len(archive.chunks)
    assert_clone_complete(store, "rel", archive)


def test_cut_transfer_without_retries_fails_cleanly(tmp_path, archives):
    archive = archives[SMALL]
    store = tmp_path / "store"
    with FaultServer(FIXTURES / SMALL, mode="cut", cuts=1) as srv:
        r = clone(srv.url, store / "rel", "-j", "1", "--http-retry-count", "0")
    assert_one_error_line(r, srv.url)
    present = assert_no_release_and_clean(store, "rel")
    # The chunks that arrived whole before the cut were verified and kept.
    half = archive.chunk_data_offset + (archive.chunks[-1].archive_offset + archive.chunks[-1].archive_size
                                        - archive.chunk_data_offset) // 2
    assert present == {c.hash.hex() for c in archive.chunks if c.archive_offset + c.archive_size <= half}
    assert present  # the cut came after the first chunk

    # Run again against a working server: only the rest is fetched.
    with FaultServer(FIXTURES / SMALL) as srv:
        r = clone_ok(srv.url, store / "rel")
    s = parse_summary(r.stdout)
    assert (s.reused, s.fetched) == (len(present), len(archive.chunks) - len(present))
    assert_clone_complete(store, "rel", archive)


def test_stalled_transfer_times_out_and_is_resumed(tmp_path, archives):
    archive = archives[SMALL]
    store = tmp_path / "store"
    with FaultServer(FIXTURES / SMALL, mode="stall", cuts=1) as srv:
        t0 = time.monotonic()
        r = clone(srv.url, store / "rel", "-j", "1", "--http-timeout", "1", "--http-retry-count", "2",
                  *FAST_RETRY, timeout=60)
        elapsed = time.monotonic() - t0
    assert r.returncode == 0, r.stderr
    # The stall lasts 30 s: the timeout cut it short (curl's low-speed check
    # averages over a few seconds, so "1 s without data" takes a few more).
    assert elapsed < 20
    assert r.stderr.count("ihop: warning: ") == 1 and "retrying" in r.stderr
    assert_clone_complete(store, "rel", archive)


@pytest.mark.parametrize("retries", ["0", "1"])
def test_wrong_content_range_is_refused(tmp_path, retries):
    store = tmp_path / "store"
    with FaultServer(FIXTURES / SMALL, mode="wrong-range") as srv:
        r = clone(srv.url, store / "rel", "-j", "1", "--http-retry-count", retries, *FAST_RETRY)
    assert_final_error(r, srv.url, "Content-Range")
    assert r.stderr.count("ihop: warning: ") == int(retries)
    assert_no_release_and_clean(store, "rel")
    assert chunk_files(store) == []  # not a byte of it was used


@pytest.mark.parametrize("name", [SMALL, "pair/v1.ext4.cba"])
def test_wrong_bytes_with_right_content_range_never_reach_the_store(tmp_path, name):
    store = tmp_path / "store"
    with FaultServer(FIXTURES / name, mode="wrong-data") as srv:
        r = clone(srv.url, store / "rel", "--http-retry-count", "0")
    assert r.returncode == 1
    assert "corrupt" in r.stderr and srv.url in r.stderr
    assert all(l.startswith("ihop: error: ") for l in r.stderr.splitlines())
    assert_no_release_and_clean(store, "rel")
    assert chunk_files(store) == []  # every chunk was shifted, so none can verify


def test_extra_http_headers_are_sent_with_every_request(tmp_path, archives):
    store = tmp_path / "store"
    with FaultServer(FIXTURES / SMALL) as srv:
        clone_ok(srv.url, store / "rel", "--http-header", "X-Ihop-Test: yes 1", "--http-header",
                 "Authorization: Bearer t0ken")
        requests = list(srv.requests)
    assert len(requests) >= 3  # pre-header, header, chunk data
    for _, _, headers in requests:
        assert headers.get("X-Ihop-Test") == "yes 1"
        assert headers.get("Authorization") == "Bearer t0ken"
        assert headers.get("User-Agent", "").startswith("ihop/")
    assert_clone_complete(store, "rel", archives[SMALL])


def test_malformed_http_header_option_is_refused(tmp_path):
    r = clone("http://127.0.0.1:9/x.cba", tmp_path / "store" / "rel", "--http-header", "no colon")
    assert r.returncode == 2 and "--http-header" in r.stderr
    assert not (tmp_path / "store").exists()
