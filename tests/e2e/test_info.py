# SPDX-License-Identifier: MIT
"""`ihop info` describes an archive as its header says (checked against an
independent parse of the header) and a stored release by its image."""

import pytest

from ihop_run import BAD_ARCHIVES, FIXTURES, GOOD_ARCHIVES, IHOP, assert_one_error_line, clone_ok, info_fields, run

ALL_GOOD = GOOD_ARCHIVES + ["pair/v1.ext4.cba", "pair/v2.ext4.cba"]


def check_archive_info(info, archive, source, size):
    assert info["archive"] == str(source)
    assert info["created by"] == f"bita {archive.app_version}"
    assert info["archive size"].endswith(f"({size} bytes)")
    assert info["header"] == f"{archive.header_size} bytes, chunk data at offset {archive.chunk_data_offset}"
    assert info["header checksum"] == archive.header_checksum.hex()
    assert info["image size"].endswith(f"({archive.source_total_size} bytes)")
    assert info["image checksum"] == archive.source_checksum.hex()
    assert info["chunk hash length"] == f"{archive.hash_len} bytes"
    assert info["chunks"] == f"{len(archive.order)} in the image, {len(archive.chunks)} unique"
    assert info["compression"] == f"{archive.compression_name}, level {archive.compression_level}"


@pytest.mark.parametrize("name", ALL_GOOD)
def test_info_on_archive_file_matches_header(archives, name):
    r = run([IHOP, "info", FIXTURES / name])
    assert r.returncode == 0 and r.stderr == "", r.stderr
    check_archive_info(info_fields(r.stdout), archives[name], FIXTURES / name, (FIXTURES / name).stat().st_size)


@pytest.mark.parametrize("name", ["zero-0_1_1-lzma.cba", "pair/v2.ext4.cba"])
def test_info_over_http_matches_header(archives, nginx, name):
    mark = nginx.mark()
    r = run([IHOP, "info", nginx.url(name)])
    assert r.returncode == 0 and r.stderr == "", r.stderr
    check_archive_info(info_fields(r.stdout), archives[name], nginx.url(name), (FIXTURES / name).stat().st_size)
    assert sum(e.body_bytes for e in nginx.entries(mark)) == archives[name].header_size  # the header only


def test_fixtures_cover_every_codec(archives):
    assert {archives[n].compression_name for n in ALL_GOOD} == {"none", "lzma", "zstd", "brotli"}
    assert {archives[n].magic for n in ALL_GOOD} == {b"BITA1\0", b"\0BITA1"}


@pytest.mark.parametrize("name", ["zero-0_1_1-zstd.cba", "pair/v1.ext4.cba"])
def test_info_on_stored_release_gives_image(tmp_path, archives, name):
    archive = archives[name]
    store = tmp_path / "store"
    clone_ok(FIXTURES / name, store / "rel")
    r = run([IHOP, "info", store / "rel"])
    assert r.returncode == 0 and r.stderr == "", r.stderr
    info = info_fields(r.stdout)
    assert info["release"] == str(store / "rel")
    assert info["written by"].startswith("ihop ")
    assert info["image size"].endswith(f"({archive.source_total_size} bytes)")
    assert info["image checksum"] == archive.source_checksum.hex()
    assert info["chunks"] == f"{len(archive.order)} in the image, {len(archive.chunks)} unique"
    assert info["chunk hash length"] == f"{archive.hash_len} bytes"


def test_info_on_corrupt_header_is_refused():
    name = "rand-0_7_1-corrupt-header.cba"
    r = run([IHOP, "info", FIXTURES / name])
    assert_one_error_line(r, BAD_ARCHIVES[name])
    assert r.stdout == ""
