# SPDX-License-Identifier: MIT
"""Failures a user meets: each is a non-zero exit with one clear error line,
and leaves no release (and nothing unverified) in the store."""

import os
import socket

import pytest

from bita_archive import blake2b_file
from fault_server import FaultServer
from ihop_run import (FIXTURES, IHOP, assert_one_error_line, cat_checksum, clone, clone_ok, info_fields, parse_summary,
                      run)
from store_checks import assert_clone_complete, assert_no_release_and_clean, check_store, chunk_files

SMALL = "rand-0_1_1-none.cba"
ZERO = "zero-0_7_1-brotli.cba"


def test_404_fails_with_status(tmp_path, nginx):
    store = tmp_path / "store"
    url = nginx.url("no-such-release.cba")
    r = clone(url, store / "rel")
    assert_one_error_line(r, url, "404")
    assert_no_release_and_clean(store, "rel")
    assert chunk_files(store) == []


@pytest.mark.parametrize("retries", ["0", "2"])
def test_connection_refused_fails(tmp_path, retries):
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        url = f"http://127.0.0.1:{port}/{SMALL}"
        store = tmp_path / "store"
        r = clone(url, store / "rel", "--http-retry-count", retries, "--http-retry-delay", "0")
    assert r.returncode != 0
    errors = [l for l in r.stderr.splitlines() if l.startswith("ihop: error:")]
    warnings = [l for l in r.stderr.splitlines() if l.startswith("ihop: warning:")]
    assert len(errors) == 1 and r.stderr.splitlines()[-1] == errors[0], r.stderr
    assert url in errors[0] and "connect" in errors[0].lower()
    assert len(warnings) == int(retries)  # one per retry, each saying it retries
    assert all("retrying" in w for w in warnings)
    assert_no_release_and_clean(store, "rel")
    assert chunk_files(store) == []


def test_server_without_range_support_is_reported(tmp_path):
    store = tmp_path / "store"
    with FaultServer(FIXTURES / SMALL, mode="no-range") as srv:
        r = clone(srv.url, store / "rel")
        n_requests = len(srv.requests)
    line = assert_one_error_line(r, srv.url, "range")
    assert "200" in line
    assert n_requests == 1  # not worth a retry
    assert_no_release_and_clean(store, "rel")
    assert chunk_files(store) == []


@pytest.mark.parametrize("url", ["ftp://127.0.0.1/x.cba", "file:///tmp/x.cba", "gopher://127.0.0.1/x"])
def test_unsupported_url_scheme_is_refused(tmp_path, url):
    store = tmp_path / "store"
    r = clone(url, store / "rel")
    assert_one_error_line(r, url, "unsupported URL scheme")
    assert not store.exists() or [p.name for p in store.iterdir() if p.is_file()] == []
    assert chunk_files(store) == []


@pytest.mark.parametrize("name", [".hidden", "chunks", ".", ".."])
def test_invalid_release_name_is_refused(tmp_path, name):
    store = tmp_path / "store"
    store.mkdir()
    r = clone(FIXTURES / SMALL, f"{store}/{name}")
    assert r.returncode != 0
    assert "not a valid release name" in r.stderr and len(r.stderr.splitlines()) == 1, r.stderr
    assert list(store.iterdir()) == []
    r = run([IHOP, "cat", f"{store}/{name}"])
    assert r.returncode != 0 and r.stdout == ""
    assert "not a valid release name" in r.stderr and len(r.stderr.splitlines()) == 1, r.stderr


def test_missing_archive_file_is_reported(tmp_path):
    r = clone(tmp_path / "nope.cba", tmp_path / "store" / "rel")
    assert_one_error_line(r, str(tmp_path / "nope.cba"), "No such file")
    assert_no_release_and_clean(tmp_path / "store", "rel")


def test_existing_release_needs_force(tmp_path, archives):
    store = tmp_path / "store"
    clone_ok(FIXTURES / SMALL, store / "rel")
    before = (store / "rel").read_bytes()

    r = clone(FIXTURES / ZERO, store / "rel")
    assert_one_error_line(r, "already exists", "--force")
    assert (store / "rel").read_bytes() == before
    assert check_store(store) == {c.hash.hex() for c in archives[SMALL].chunks}  # nothing fetched
    assert cat_checksum(store / "rel") == archives[SMALL].source_checksum

    r = clone_ok(FIXTURES / ZERO, store / "rel", "--force")
    assert parse_summary(r.stdout).fetched == 1
    assert (store / "rel").read_bytes() != before
    assert_clone_complete(store, "rel", archives[ZERO])
    info = info_fields(run([IHOP, "info", store / "rel"]).stdout)
    assert info["image checksum"] == archives[ZERO].source_checksum.hex()
    assert [p.name for p in store.iterdir() if p.is_file()] == ["rel"]


def header_checksum_from_info(source):
    r = run([IHOP, "info", source])
    assert r.returncode == 0, r.stderr
    return info_fields(r.stdout)["header checksum"]


def test_verify_header_with_wrong_hash_fails_before_fetching(tmp_path, archives, nginx):
    name = "pair/v1.ext4.cba"
    archive = archives[name]
    right = header_checksum_from_info(nginx.url(name))
    assert right == archive.header_checksum.hex()
    wrong = ("f" if right[0] != "f" else "0") + right[1:]
    store = tmp_path / "store"
    mark = nginx.mark()
    r = clone(nginx.url(name), store / "rel", "--verify-header", wrong)
    assert_one_error_line(r, "--verify-header", right)
    assert_no_release_and_clean(store, "rel")
    assert chunk_files(store) == []
    # nginx served the header and not a byte more
    assert sum(e.body_bytes for e in nginx.entries(mark)) == archive.header_size

    r = clone_ok(nginx.url(name), store / "rel", "--verify-header", right)
    assert parse_summary(r.stdout).fetched == len(archive.chunks)
    assert_clone_complete(store, "rel", archive)


def test_verify_header_from_file(tmp_path, archives):
    archive = archives[SMALL]
    right = header_checksum_from_info(FIXTURES / SMALL)
    assert right == archive.header_checksum.hex()
    store = tmp_path / "store"
    r = clone(FIXTURES / SMALL, store / "rel", "--verify-header", "00" * 64)
    assert_one_error_line(r, "does not match")
    assert chunk_files(store) == []
    assert_no_release_and_clean(store, "rel")
    r = clone(FIXTURES / SMALL, store / "rel", "--verify-header", "not-hex")
    assert r.returncode == 2 and "hex" in r.stderr
    assert chunk_files(store) == []
    clone_ok(FIXTURES / SMALL, store / "rel", "--verify-header", right.upper())
    assert_clone_complete(store, "rel", archive)


def test_store_under_a_regular_file_fails(tmp_path):
    (tmp_path / "file").write_text("not a directory\n")
    r = clone(FIXTURES / SMALL, tmp_path / "file" / "store" / "rel")
    assert_one_error_line(r, "cannot create store", "Not a directory")
    assert (tmp_path / "file").read_text() == "not a directory\n"


def test_read_only_store_fails(tmp_path, tmpfs):
    ro = tmpfs("ro", "ro", "size=4m")
    r = clone(FIXTURES / SMALL, ro / "store" / "rel")
    assert_one_error_line(r, "Read-only file system")
    assert list(ro.iterdir()) == []


@pytest.mark.parametrize("name", [ZERO, "pair/v1.ext4.cba"])
def test_full_store_fails_with_enospc(tmp_path, tmpfs, archives, name):
    small = tmpfs("small", "size=1m")
    store = small / "store"
    r = clone(FIXTURES / name, store / "rel", "-j", "1")
    assert_one_error_line(r, "No space left")
    # What was kept was verified; nothing else is left behind.
    present = assert_no_release_and_clean(store, "rel")
    assert present < {c.hash.hex() for c in archives[name].chunks}


def test_full_store_fails_with_enospc_with_parallel_workers(tmp_path, tmpfs, archives):
    name = "pair/v1.ext4.cba"
    store = tmpfs("small", "size=1m") / "store"
    r = clone(FIXTURES / name, store / "rel", "-j", "4")
    assert r.returncode == 1
    # Every worker that hits the full disk says so (one line each).
    lines = r.stderr.splitlines()
    assert 1 <= len(lines) <= 4, r.stderr
    assert all(l.startswith("ihop: error: ") and "No space left" in l for l in lines), r.stderr
    present = assert_no_release_and_clean(store, "rel")
    assert present < {c.hash.hex() for c in archives[name].chunks}


def test_cat_of_missing_release_fails(tmp_path):
    clone_ok(FIXTURES / SMALL, tmp_path / "store" / "rel")
    r = run([IHOP, "cat", tmp_path / "store" / "other"])
    assert_one_error_line(r, "does not exist")
    assert r.stdout == ""


def test_cat_reports_a_missing_chunk(tmp_path, archives):
    archive = archives[SMALL]
    store = tmp_path / "store"
    clone_ok(FIXTURES / SMALL, store / "rel")
    victim = archive.chunks[archive.order[3]].hash.hex()
    (store / "chunks" / victim[:4] / f"{victim}.chunk").unlink()
    out = tmp_path / "out.img"
    r = run([IHOP, "cat", "-o", out, store / "rel"])
    assert_one_error_line(r, victim, "missing", "image chunk 3")
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir()] == ["store"]  # no temp output left


def test_cat_to_file_writes_the_image(tmp_path, archives):
    archive = archives[SMALL]
    store = tmp_path / "store"
    clone_ok(FIXTURES / SMALL, store / "rel")
    out = tmp_path / "out.img"
    r = run([IHOP, "cat", "-o", out, store / "rel"])
    assert r.returncode == 0 and r.stdout == "" and r.stderr == ""
    assert out.stat().st_size == archive.source_total_size
    assert blake2b_file(out) == archive.source_checksum


def broken_libcurl(libdir, kind):
    """A libcurl.so.4 that dlopen finds first on LD_LIBRARY_PATH: an empty
    file (no library at all), or a real shared library without curl's
    functions (an incompatible libcurl)."""
    lib = libdir / "libcurl.so.4"
    if kind == "empty":
        lib.write_bytes(b"")
        return ["HTTP needs libcurl", "libcurl.so.4", "cannot be loaded"]
    src = libdir / "stub.c"
    src.write_text("int not_curl(void) { return 0; }\n")
    r = run(["cc", "-shared", "-fPIC", "-o", lib, src])
    assert r.returncode == 0, r.stderr
    return ["libcurl.so.4 lacks curl_global_init", "too old a libcurl"]


@pytest.mark.parametrize("kind", ["empty", "without-curl"])
def test_libcurl_that_cannot_be_loaded_fails_only_http(tmp_path, nginx, kind):
    """libcurl is loaded on first use: a broken one fails an HTTP clone in
    one clear line, and everything that needs no HTTP still works."""
    libdir = tmp_path / "lib"
    libdir.mkdir()
    needles = broken_libcurl(libdir, kind)
    env = dict(os.environ, LD_LIBRARY_PATH=str(libdir))
    store = tmp_path / "store"
    r = run([IHOP, "clone", nginx.url(SMALL), store / "rel"], env=env)
    assert_one_error_line(r, *needles)
    assert_no_release_and_clean(store, "rel")
    r = run([IHOP, "clone", FIXTURES / SMALL, store / "rel"], env=env)
    assert r.returncode == 0, r.stderr
    r = run([IHOP, "verify", store / "rel"], env=env)  # every chunk and the image checksum
    assert r.returncode == 0 and "OK" in r.stdout, r.stdout + r.stderr
