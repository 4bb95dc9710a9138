# SPDX-License-Identifier: MIT
"""--json for update agents: clone, verify, info and diff print one JSON
document on stdout, whose numbers are the ones the text output and an
independent reading of the archive give; a failure is a document too,
with the stable code of the README's table and the error line's message."""

import json
import os
import shutil

import pytest

from bita_archive import parse_archive, unique_chunks
from ihop_run import FIXTURES, clone, error_lines, ihop, parse_summary
from store_checks import chunk_files

V1, V2 = FIXTURES / "pair/v1.ext4.cba", FIXTURES / "pair/v2.ext4.cba"


def doc_of(r):
    """The one JSON document on stdout (and nothing else there)."""
    return json.loads(r.stdout)


def test_clone_json_counts_what_it_reused_and_fetched(tmp_path):
    a1, a2 = parse_archive(V1), parse_archive(V2)
    r = ihop("clone", "--json", V1, tmp_path / "s" / "v1")
    assert r.returncode == 0, r.stderr
    d = doc_of(r)
    assert d["ok"] is True and d["release"] == "v1" and d["store"] == str(tmp_path / "s")
    assert d["image_size"] == a1.source_total_size and d["chunks"] == len(a1.order)
    chunks1 = unique_chunks(a1)
    assert d["unique_chunks"] == d["fetched_chunks"] == len(chunks1) and d["reused_chunks"] == 0
    assert d["fetched_bytes"] == sum(c.source_size for c in chunks1.values())
    assert d["fetched_archive_bytes"] == sum(c.archive_size for c in chunks1.values())
    assert d["downloaded_bytes"] is None and d["signature"] is None
    assert d["header_size"] == a1.header_size and d["archive_size"] == V1.stat().st_size

    r = ihop("clone", "--json", V2, tmp_path / "s" / "v2")
    d = doc_of(r)
    text = parse_summary(clone(V2, tmp_path / "s2" / "v2").stdout)  # the same clone, as text
    shared = set(chunks1) & set(unique_chunks(a2))
    assert d["reused_chunks"] == len(shared) and d["fetched_chunks"] == len(unique_chunks(a2)) - len(shared)
    assert (text.unique, text.fetched + text.reused) == (d["unique_chunks"], d["unique_chunks"])


def test_clone_json_over_http_counts_the_download_and_the_signature(nginx, tmp_path):
    keys = tmp_path / "k"
    assert ihop("keygen", "-W", "-p", f"{keys}.pub", "-s", f"{keys}.key").returncode == 0
    a = tmp_path / "v1.cba"
    shutil.copy(V1, a)
    assert ihop("sign", "-s", f"{keys}.key", "--release-version", "9", a).returncode == 0
    url = nginx.publish("json/v1.cba", a.read_bytes())
    nginx.publish("json/v1.cba.minisig", (tmp_path / "v1.cba.minisig").read_bytes())
    mark = nginx.mark()
    r = ihop("clone", "--json", "--trusted-key", f"{keys}.pub", url, tmp_path / "s" / "v1")
    assert r.returncode == 0, r.stderr
    d = doc_of(r)
    bodies = sum(e.body_bytes for e in nginx.entries(mark) if e.path == "/json/v1.cba")
    assert bodies < d["downloaded_bytes"] < bodies + 64 * 1024  # bodies and their headers
    key_id = (tmp_path / "k.pub").read_text().split("\n")[0].split()[-1]
    assert d["signature"] == {"key_id": key_id, "release_version": 9}


FAILURES = {
    # case: (command line after "clone --json", code, exit status)
    "no archive": (lambda t: [t / "missing.cba", t / "s" / "r"], "not-found", 1),
    "corrupt archive": (lambda t: [FIXTURES / "rand-0_7_1-corrupt-header.cba", t / "s" / "r"], "bad-data", 1),
    "cut short": (lambda t: [FIXTURES / "rand-0_11_0-brotli-trunc.cba", t / "s" / "r"], "bad-data", 1),
    "bad name": (lambda t: [V1, t / "s" / ".hidden"], "usage", 2),
    "bad option": (lambda t: ["--jobs", "x", V1, t / "s" / "r"], "usage", 2),
}


@pytest.mark.parametrize("case", sorted(FAILURES))
def test_clone_json_failure_is_a_document_with_a_stable_code(case, tmp_path):
    args, code, status = FAILURES[case]
    r = ihop("clone", "--json", *args(tmp_path))
    assert r.returncode == status
    d = doc_of(r)
    assert d["ok"] is False and d["error"]["code"] == code
    errors = error_lines(r)
    if errors:  # the message is the error line
        assert errors[-1] == "ihop: error: " + d["error"]["message"]


def test_clone_json_refusals_of_signed_releases_have_their_codes(tmp_path):
    k = tmp_path / "k"
    other = tmp_path / "o"
    for key in (k, other):
        assert ihop("keygen", "-W", "-p", f"{key}.pub", "-s", f"{key}.key").returncode == 0
    a = tmp_path / "v1.cba"
    shutil.copy(V1, a)
    assert ihop("sign", "-s", f"{k}.key", "--release-version", "5", a).returncode == 0
    r = ihop("clone", "--json", "--trusted-key", f"{other}.pub", a, tmp_path / "s" / "r")
    assert doc_of(r)["error"]["code"] == "untrusted-key"
    assert ihop("clone", "--trusted-key", f"{k}.pub", a, tmp_path / "s" / "r").returncode == 0
    assert ihop("sign", "-s", f"{k}.key", "--release-version", "4", a).returncode == 0
    r = ihop("clone", "--json", "--trusted-key", f"{k}.pub", a, tmp_path / "s" / "r4")
    assert doc_of(r)["error"]["code"] == "downgrade" and doc_of(r)["error"]["errno"] == "ESTALE"
    r = ihop("clone", "--json", "--trusted-key", f"{k}.pub", "--allow-downgrade", a, tmp_path / "s" / "r")
    assert doc_of(r)["error"]["code"] == "exists"


def test_verify_json_lists_damaged_chunks_and_what_repair_did(tmp_path):
    store = tmp_path / "s"
    assert ihop("clone", V1, store / "v1").returncode == 0
    r = ihop("verify", "--json", store / "v1")
    assert r.returncode == 0
    d = doc_of(r)
    assert d["ok"] is True
    [rel] = d["releases"]
    assert rel["status"] == "ok" and rel["image_checksum"] == "matches" and rel["error"] is None
    assert rel["chunks_checked"] == len(unique_chunks(parse_archive(V1)))
    files = chunk_files(store)
    gone, bad = files[3], files[7]
    gone.unlink()
    bad.write_bytes(b"not the chunk")
    r = ihop("verify", "--json", store / "v1", store / "nope")
    assert r.returncode == 1
    d = doc_of(r)
    rel, nope = d["releases"]
    assert d["ok"] is False and rel["status"] == "damaged" and rel["image_checksum"] == "not computable"
    assert rel["missing_chunks"] == [str(gone)] and rel["corrupt_chunks"] == [str(bad)]
    assert (rel["missing"], rel["corrupt"]) == (1, 1)
    assert nope["status"] == "error" and nope["error"]["code"] == "not-found"
    assert "nope" in nope["error"]["message"]
    r = ihop("verify", "--json", "--repair", V1, store / "v1")
    assert r.returncode == 0, r.stderr
    [rel] = doc_of(r)["releases"]
    assert rel["status"] == "ok" and rel["repair"]["fetched_chunks"] == 2
    assert rel["repair"]["unavailable_chunks"] == [] and rel["missing_chunks"] == []


def test_info_json_says_what_the_header_says(tmp_path):
    blob = bytes(range(256))
    (tmp_path / "blob").write_bytes(blob)
    img = tmp_path / "img"
    img.write_bytes(os.urandom(300_000))
    out = tmp_path / "m.cba"
    assert ihop("compress", "-i", img, "--metadata-value", "board", "rev-c \u00e9", "--metadata-file", "bin",
                tmp_path / "blob", out).returncode == 0
    a = parse_archive(out)
    d = doc_of(ihop("info", "--json", out))
    assert d["kind"] == "archive" and d["ok"] is True
    assert d["header_size"] == a.header_size and d["signed_bytes"] == a.header_size - 64
    assert d["header_checksum"] == a.header_checksum.hex() and d["image_checksum"] == a.source_checksum.hex()
    assert d["image_size"] == a.source_total_size and d["chunks"] == len(a.order)
    assert d["chunk_hash_length"] == a.hash_len and d["compression"] == a.compression_name
    assert d["chunker"]["algorithm"] == "RollSum" and d["chunker"]["avg_chunk_size"] == 64 * 1024
    assert {m["key"]: m.get("value", m.get("hex")) for m in d["metadata"]} == \
        {"board": "rev-c \u00e9", "bin": blob.hex()}
    assert ihop("clone", out, tmp_path / "s" / "m").returncode == 0
    d = doc_of(ihop("info", "--json", tmp_path / "s" / "m"))
    assert d["kind"] == "release" and d["image_checksum"] == a.source_checksum.hex()
    assert d["written_by"].startswith("ihop ")
    r = ihop("info", "--json", tmp_path / "missing.cba")
    assert r.returncode == 1 and doc_of(r)["error"]["code"] == "not-found"


def test_diff_json_numbers_are_the_texts(tmp_path):
    d = doc_of(ihop("diff", "--json", V1, V2))
    text = ihop("diff", V1, V2).stdout
    assert f"shared:            {d['shared_chunks']} chunks" in text
    assert f"({d['shared_bytes']} bytes), covering" in text and f"({d['shared_bytes_of_b']} bytes) of b" in text
    assert f"only in b:         {d['only_b_chunks']} chunks" in text
    assert d["a"]["kind"] == d["b"]["kind"] == "archive" and d["a"]["path"] == str(V1)
    assert d["b_given_a"]["chunks"] == d["only_b_chunks"] and d["b_given_a"]["transfer_estimated"] is False
    assert f"({d['b_given_a']['transfer_bytes']} bytes) from the archive" in text
    a2 = parse_archive(V2)
    assert d["b"]["size"] == a2.source_total_size and d["b"]["unique_chunks"] == len(unique_chunks(a2))
