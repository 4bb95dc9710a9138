# SPDX-License-Identifier: MIT
"""`ihop verify --repair ARCHIVE STORE/NAME` fetches only chunk files the
release already names, each checked against the release's own hash, and
never writes the release description: an archive that lies (its header
claims the release's image but lists other chunks, or its chunk data is not
what its dictionary says), or a server that dies half way, leaves the
description byte for byte as it was, and nothing under a chunk's name that
is not that chunk."""

import hashlib
import struct
import subprocess
import time
from pathlib import Path

from bita_archive import unique_chunks
from ihop_run import FIXTURES, IHOP, TIMEOUT, clone_ok, error_lines, ihop
from slow_server import SlowServer
from store_checks import check_store, chunk_path

V1, V2 = "pair/v1.ext4.cba", "pair/v2.ext4.cba"


def lying_archive(path: Path, real: Path, claimed_checksum: bytes, old_checksum: bytes):
    """`real`'s archive with its header claiming another image checksum
    (header checksum recomputed: a well-formed archive that lies)."""
    data = bytearray(real.read_bytes())
    (n,) = struct.unpack_from("<Q", data, 6)
    end = 14 + n + 8
    at = bytes(data[:end]).find(old_checksum)
    assert at > 14 and len(claimed_checksum) == len(old_checksum)
    data[at:at + len(old_checksum)] = claimed_checksum
    data[end:end + 64] = hashlib.blake2b(bytes(data[:end])).digest()
    path.write_bytes(bytes(data))
    return path


def chunk_files(store) -> set:
    return {p.name for p in (Path(store) / "chunks").rglob("*.chunk")}


def damaged_lines(r):
    return sorted(l for l in r.stdout.splitlines() if l.startswith(("corrupt ", "missing ")))


def test_a_lying_archive_cannot_replace_the_release(tmp_path, archives):
    v1, v2 = unique_chunks(archives[V1]), unique_chunks(archives[V2])
    store = tmp_path / "store"
    clone_ok(FIXTURES / V2, store / "v2")
    own = sorted(h for h, c in v2.items() if h not in v1 and c.source_size > 4096)
    shared = sorted(h for h, c in v2.items() if h in v1 and c.source_size > 4096)
    gone, flipped, gone_shared = own[0], own[1], shared[0]
    chunk_path(store, gone).unlink()
    p = chunk_path(store, flipped)
    data = bytearray(p.read_bytes())
    data[100] ^= 1
    p.write_bytes(bytes(data))
    chunk_path(store, gone_shared).unlink()
    desc = (store / "v2").read_bytes()
    files = chunk_files(store)
    damage = damaged_lines(ihop("verify", store / "v2"))
    assert len(damage) == 3

    # v1's archive, claiming to hold v2's image.
    liar = lying_archive(tmp_path / "liar.cba", FIXTURES / V1, archives[V2].source_checksum,
                         archives[V1].source_checksum)
    r = ihop("verify", "--repair", liar, store / "v2")
    assert r.returncode == 1, r.stdout + r.stderr
    assert (store / "v2").read_bytes() == desc, "the release description was rewritten"
    # Only the damaged chunk the archive really holds was fetched (checked against v2's hash);
    # none of v1's other chunks came in.
    assert chunk_files(store) == files | {f"{gone_shared}.chunk"}
    assert sorted(l for l in r.stdout.splitlines() if l.startswith("not repairable: ")) == sorted(
        f"not repairable: {chunk_path(store, h)} is not in {liar}" for h in (gone, flipped))
    errors = error_lines(r)
    assert len(errors) == 1 and "2 of its damaged chunks are not in" in errors[0], r.stderr
    after = ihop("verify", store / "v2")
    assert damaged_lines(after) == sorted([f"missing {chunk_path(store, gone)}",
                                           f"corrupt {chunk_path(store, flipped)}"])
    assert not [q for q in store.rglob("*") if ".tmp-" in q.name]

    # The real archive repairs the rest; the description is still the one clone wrote.
    r = ihop("verify", "--repair", FIXTURES / V2, store / "v2")
    assert r.returncode == 0 and "fetched 2 chunks again" in r.stdout and "v2: OK after repair" in r.stdout, r.stdout
    assert (store / "v2").read_bytes() == desc
    assert chunk_files(store) == files | {f"{gone_shared}.chunk", f"{gone}.chunk"}
    assert check_store(store) == set(v2)


def test_chunk_data_that_does_not_match_the_release_is_not_stored(tmp_path, archives):
    archive = archives[V2]
    chunks = unique_chunks(archive)
    store = tmp_path / "store"
    clone_ok(FIXTURES / V2, store / "v2")
    victim = sorted(h for h, c in chunks.items() if c.source_size > 4096)[5]
    chunk_path(store, victim).unlink()
    desc = (store / "v2").read_bytes()
    # The archive's header is intact (its checksum covers the header only); the chunk's data is not.
    bad = bytearray((FIXTURES / V2).read_bytes())
    c = chunks[victim]
    bad[c.archive_offset + c.archive_size // 2] ^= 0x55
    liar = tmp_path / "bad-data.cba"
    liar.write_bytes(bytes(bad))
    r = ihop("verify", "--repair", liar, store / "v2")
    assert r.returncode == 1
    errors = error_lines(r)
    assert len(errors) == 1 and victim in errors[0] and "corrupt" in errors[0], r.stderr
    assert (store / "v2").read_bytes() == desc
    assert not chunk_path(store, victim).exists()
    check_store(store)


def test_a_repair_cut_off_half_way_leaves_the_release_as_it_was(tmp_path, archives):
    archive = archives[V2]
    chunks = unique_chunks(archive)
    store = tmp_path / "store"
    clone_ok(FIXTURES / V2, store / "v2")
    victims = sorted(chunks)[::2]  # half of them
    for h in victims:
        chunk_path(store, h).unlink()
    desc = (store / "v2").read_bytes()
    want = sum(chunks[h].archive_size for h in victims)
    with SlowServer(FIXTURES / V2, rate=1 << 20) as srv:
        p = subprocess.Popen([IHOP, "verify", "--repair", srv.url(V2), str(store / "v2")], stdin=subprocess.DEVNULL,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            deadline = time.monotonic() + 30
            while sum(e.sent for e in srv.entries() if e.start >= archive.chunk_data_offset) < want // 3:
                assert p.poll() is None and time.monotonic() < deadline, "the repair did not get going"
                time.sleep(0.02)
        except BaseException:
            p.kill()
            raise
    # The server is gone: the repair fails after its retries.
    try:
        out, err = p.communicate(timeout=TIMEOUT)
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == 1, out + err
    assert len(error_lines(subprocess.CompletedProcess([], 1, out, err))) == 1, err
    assert (store / "v2").read_bytes() == desc, "the release description changed"
    present = check_store(store)  # no temp file, no chunk with wrong content
    fetched = {h for h in victims if h in present}
    assert 0 < len(fetched) < len(victims)
    # Run again: only the rest is fetched, and the release is whole.
    r = ihop("verify", "--repair", FIXTURES / V2, store / "v2")
    assert r.returncode == 0 and f"fetched {len(victims) - len(fetched)} chunks again" in r.stdout, r.stdout
    assert (store / "v2").read_bytes() == desc
