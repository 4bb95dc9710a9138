# SPDX-License-Identifier: MIT
"""The life of a store after its clones: ls (what each release uses alone
and shares), rm and gc (exactly the chunks no release uses go, and temp
files of interrupted clones; never while a clone runs), verify (damage on
disk found, reported by path, repaired from the archive), a killed clone
resumed without downloading again what it had stored, and the logs (-q, no
progress bar unless stderr is a terminal).

Every figure is computed independently of ihop, from the archives
(bita_archive's reader) and from the files on disk."""

import fcntl
import json
import os
import pty
import re
import select
import signal
import subprocess
import time
from pathlib import Path

from bita_archive import unique_chunks
from ihop_run import (FIXTURES, IHOP, LineReader, TIMEOUT, assert_one_error_line, cat_checksum, clone_ok, ihop,
                      parse_summary, pid_alive)
from slow_server import SlowServer, chunks_asked
from store_checks import assert_clone_complete, check_store, chunk_files, chunk_path, releases, scan_store

V1, V2 = "pair/v1.ext4.cba", "pair/v2.ext4.cba"
SMALL = "rand-0_1_1-none.cba"


# --------------------------------------------------------------------------
# helpers


def ls_json(store) -> dict:
    r = ihop("ls", "--json", store)
    assert r.returncode == 0, r.stderr
    assert r.stderr == ""
    return json.loads(r.stdout)


def expected_usage(archives_by_name: dict) -> dict:
    """What ls must say, computed from the archives: {release: fields}, totals."""
    sets = {n: unique_chunks(a) for n, a in archives_by_name.items()}
    everything = {}
    for u in sets.values():
        everything.update(u)
    out = {}
    for n, u in sets.items():
        others = set().union(*[set(v) for m, v in sets.items() if m != n])
        only = [c for h, c in u.items() if h not in others]
        shared = [c for h, c in u.items() if h in others]
        a = archives_by_name[n]
        out[n] = dict(name=n, size=a.source_total_size, chunks=len(a.order),
                      unique_chunks=len(only), unique_bytes=sum(c.source_size for c in only),
                      shared_chunks=len(shared), shared_bytes=sum(c.source_size for c in shared))
    return out, len(everything), sum(c.source_size for c in everything.values())


def files_with_sizes(store) -> dict:
    """{path: (size, mtime_ns)} of every file in the store."""
    return {p: (p.stat().st_size, p.stat().st_mtime_ns) for p in Path(store).rglob("*") if p.is_file()}


def du(store) -> int:
    """Apparent size of the store as du counts it (files and directories)."""
    r = subprocess.run(["du", "-sb", str(store)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return int(r.stdout.split()[0])


GC_LINE = re.compile(r"^(would remove|removed) (\S+) \(([^,]+), (no release uses it|left by an interrupted clone)\)$")
GC_SUMMARY = re.compile(r"^(would remove|removed) (\d+) unused chunks and (\d+) temp files: (.+?) "
                        r"(?:would be freed|freed); (\d+) chunks \((.+?)\) in use stay$")


def parse_gc(stdout):
    """([(path, why)], (chunks removed, temps removed, freed text, chunks kept, kept text))."""
    items, summary = [], None
    for line in stdout.splitlines():
        m = GC_LINE.match(line)
        if m:
            items.append((Path(m[2]), m[4]))
            continue
        m = GC_SUMMARY.match(line)
        assert m, f"unexpected gc output line: {line!r}"
        assert summary is None
        summary = (int(m[2]), int(m[3]), m[4], int(m[5]), m[6])
    assert summary, stdout
    return items, summary


def store_with_pair(tmp_path, name="store"):
    store = tmp_path / name
    clone_ok(FIXTURES / V1, store / "v1")
    clone_ok(FIXTURES / V2, store / "v2")
    return store


def dead_pid() -> int:
    for pid in range(999999, 900000, -1):
        if not pid_alive(pid):
            return pid
    raise AssertionError("no free pid")


class Popen(subprocess.Popen):
    """An ihop run in the background, killed at the end of the test if still running."""

    def __init__(self, *args, stdout=subprocess.PIPE, stderr=subprocess.PIPE):
        super().__init__([IHOP, *[str(a) for a in args]], stdin=subprocess.DEVNULL, stdout=stdout, stderr=stderr,
                         text=True)

    def __exit__(self, *exc):
        if self.poll() is None:
            self.kill()
        return super().__exit__(*exc)


def wait_until(cond, timeout, what):
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def lock_held_by_other(store, exclusive_probe=False) -> bool:
    """Whether some process holds the store lock (flock on the directory):
    exclusively, or (exclusive_probe) in any mode."""
    fd = os.open(store, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, (fcntl.LOCK_EX if exclusive_probe else fcntl.LOCK_SH) | fcntl.LOCK_NB)
        return False
    except BlockingIOError:
        return True
    finally:
        os.close(fd)


# --------------------------------------------------------------------------
# ls


def test_ls_reports_unique_and_shared_bytes_computed_from_the_archives(tmp_path, archives):
    store = store_with_pair(tmp_path)
    expected, n_chunks, chunk_bytes = expected_usage({"v1": archives[V1], "v2": archives[V2]})
    # The pair really shares chunks, and each has some of its own.
    assert 0 < expected["v1"]["shared_bytes"] == expected["v2"]["shared_bytes"]
    assert expected["v1"]["unique_chunks"] > 0 and expected["v2"]["unique_chunks"] > 0

    j = ls_json(store)
    assert j["store"] == str(store)
    assert [r["name"] for r in j["releases"]] == ["v1", "v2"]
    for r in j["releases"]:
        assert r == expected[r["name"]], f"ls --json for {r['name']}: {r} != {expected[r['name']]}"
    assert (j["chunks"], j["chunk_bytes"]) == (n_chunks, chunk_bytes)
    # The store holds exactly those chunks: the total is what is on disk.
    assert len(chunk_files(store)) == n_chunks
    assert sum(p.stat().st_size for p in chunk_files(store)) == chunk_bytes
    # Unique + shared covers each release's distinct chunks.
    for n in ("v1", "v2"):
        a = archives[V1 if n == "v1" else V2]
        assert expected[n]["unique_bytes"] + expected[n]["shared_bytes"] == sum(
            c.source_size for c in unique_chunks(a).values())

    # The table says the same.
    r = ihop("ls", store)
    assert r.returncode == 0 and r.stderr == ""
    lines = r.stdout.splitlines()
    assert lines[0].split() == ["RELEASE", "SIZE", "CHUNKS", "UNIQUE", "SHARED"]
    rows = {l.split()[0]: l.split() for l in lines[1:-1]}
    assert set(rows) == {"v1", "v2"}
    for n in ("v1", "v2"):
        assert rows[n][1:3] == ["24.00", "MiB"] and int(rows[n][3]) == expected[n]["chunks"]
    assert lines[-1].startswith(f"store {store}: 2 releases, {n_chunks} chunks, ")

    # One release alone: everything is its own.
    assert ihop("rm", store / "v2").returncode == 0
    j = ls_json(store)
    (only,) = j["releases"]
    v1 = unique_chunks(archives[V1])
    assert (only["unique_chunks"], only["unique_bytes"]) == (len(v1), sum(c.source_size for c in v1.values()))
    assert (only["shared_chunks"], only["shared_bytes"]) == (0, 0)
    assert (j["chunks"], j["chunk_bytes"]) == (len(v1), only["unique_bytes"])


def test_ls_of_an_empty_store_and_of_no_store(tmp_path):
    store = tmp_path / "store"
    (store / "chunks").mkdir(parents=True)
    j = ls_json(store)
    assert (j["releases"], j["chunks"], j["chunk_bytes"]) == ([], 0, 0)
    r = ihop("ls", tmp_path / "nothing")
    assert_one_error_line(r, "nothing")
    assert r.stdout == ""


# --------------------------------------------------------------------------
# rm and gc


def test_rm_then_gc_frees_exactly_what_only_the_removed_release_used(tmp_path, archives):
    store = store_with_pair(tmp_path)
    v1, v2 = unique_chunks(archives[V1]), unique_chunks(archives[V2])
    only_v1 = {chunk_path(store, h) for h in set(v1) - set(v2)}
    unique_v1 = ls_json(store)["releases"][0]["unique_bytes"]
    assert unique_v1 == sum(v1[h].source_size for h in set(v1) - set(v2))

    # Leftovers of killed clones (a pid that does not run), and files gc must leave alone.
    pid = dead_pid()
    some = sorted(v2)[0]
    stale_chunk = chunk_path(store, some).with_name(f"{some}.chunk.tmp-{pid}.1")
    stale_chunk.write_bytes(b"half a chunk")
    stale_desc = store / "v3.tmp-Ab12Cd"
    stale_desc.write_bytes(b"IHOP1\0half")
    foreign = [store / "chunks" / "ffff" / "notes.txt", store / "chunks" / "README"]
    foreign[0].parent.mkdir(exist_ok=True)
    for f in foreign:
        f.write_text("not a chunk\n")
    temps = {stale_chunk, stale_desc}

    before = files_with_sizes(store)
    du_before = du(store)

    r = ihop("rm", store / "v1")
    assert r.returncode == 0 and "removed release" in r.stdout, r.stderr
    assert releases(store) == ["v2", stale_desc.name]  # (releases() lists every plain file at the top)
    # rm removes the description only.
    assert files_with_sizes(store) == {p: v for p, v in before.items() if p != store / "v1"}
    before = files_with_sizes(store)

    # --dry-run: says what would go, removes nothing.
    dry = ihop("gc", "--dry-run", store)
    assert dry.returncode == 0 and dry.stderr == "", dry.stderr
    dry_items, dry_sum = parse_gc(dry.stdout)
    assert all(l.startswith("would remove ") for l in dry.stdout.splitlines())
    assert files_with_sizes(store) == before
    assert {p for p, why in dry_items if why == "no release uses it"} == only_v1
    assert {p for p, why in dry_items if why == "left by an interrupted clone"} == temps

    # gc: removes exactly that.
    r = ihop("gc", store)
    assert r.returncode == 0 and r.stderr == "", r.stderr
    items, summary = parse_gc(r.stdout)
    assert [p for p, _ in items] and sorted(items) == sorted(dry_items)
    removed = {p for p, _ in items}
    after = files_with_sizes(store)
    assert set(after) == set(before) - removed
    assert all(not p.exists() for p in removed)
    freed_chunks = sum(before[p][0] for p in removed if p not in temps)
    assert freed_chunks == unique_v1, f"gc freed {freed_chunks} bytes of chunks, ls said v1 alone used {unique_v1}"
    assert summary[:2] == (len(only_v1), 2) == dry_sum[:2]
    assert summary[2] == dry_sum[2]  # the same figure, "would be freed" and "freed"
    assert summary[3] == len(v2) == dry_sum[3]
    assert all(f.exists() for f in foreign)  # not ours: left alone
    # Fan-out directories left empty went too.
    assert not [d for d in (store / "chunks").iterdir() if d.is_dir() and not any(d.iterdir())]
    du_after = du(store)
    freed_total = sum(before[p][0] for p in removed)
    assert du_before - du_after >= freed_total + before.get(store / "v1", (0,))[0]
    print(f"\ngc: store {du_before} bytes before (du -sb), {du_after} after; chunks of v1 alone: {unique_v1} "
          f"bytes in {len(only_v1)} chunks; temp files {freed_total - freed_chunks} bytes")

    # v2 lost nothing.
    v = ihop("verify", store / "v2")
    assert v.returncode == 0 and "v2: OK" in v.stdout, v.stdout + v.stderr
    for f in foreign:
        f.unlink()
    assert check_store(store) == set(v2)
    assert cat_checksum(store / "v2") == archives[V2].source_checksum
    j = ls_json(store)
    assert (j["chunks"], j["chunk_bytes"]) == (len(v2), sum(c.source_size for c in v2.values()))
    # Nothing more to collect.
    r = ihop("gc", store)
    assert r.returncode == 0
    assert parse_gc(r.stdout)[0] == [] and parse_gc(r.stdout)[1][:2] == (0, 0)


def test_gc_refuses_when_a_release_description_is_damaged(tmp_path, archives):
    """Whatever the damage (a flipped byte, cut short, its magic gone, emptied),
    the chunks a damaged description names are not garbage: gc refuses."""
    store = store_with_pair(tmp_path)
    assert ihop("rm", store / "v1").returncode == 0  # v1's own chunks are garbage now
    desc = store / "v2"
    good = desc.read_bytes()
    for damage in ("flipped byte", "cut in half", "magic damaged", "empty"):
        data = bytearray(good)
        if damage == "flipped byte":
            data[len(data) // 2] ^= 0x01
        elif damage == "cut in half":
            data = data[:len(data) // 2]
        elif damage == "magic damaged":
            data[0] ^= 0xFF
        else:
            data = b""
        desc.write_bytes(bytes(data))
        before = files_with_sizes(store)
        for args in (["--dry-run"], []):
            r = ihop("gc", *args, store)
            assert r.returncode == 1, f"{damage}: gc {args} collected garbage beside a damaged release: " \
                                      f"{r.stdout[-200:]}"
            assert_one_error_line(r, "v2")
            assert "remove" not in r.stdout
            assert files_with_sizes(store) == before, f"{damage}: gc removed files beside a damaged description"
    # Repaired, gc goes ahead.
    desc.write_bytes(good)
    r = ihop("gc", store)
    assert r.returncode == 0
    v1, v2 = unique_chunks(archives[V1]), unique_chunks(archives[V2])
    assert parse_gc(r.stdout)[1][:2] == (len(set(v1) - set(v2)), 0)
    assert ihop("verify", store / "v2").returncode == 0


# --------------------------------------------------------------------------
# gc and clones: the store lock


def test_gc_waits_for_a_running_clone_and_keeps_what_it_relies_on(tmp_path, archives):
    """The store held v1, then v1 was removed: its chunks are garbage, but a
    clone of v2 that is running has found most of them in the store and will
    name them in its release. A gc started meanwhile must wait for it."""
    store = tmp_path / "store"
    clone_ok(FIXTURES / V1, store / "v1")
    assert ihop("rm", store / "v1").returncode == 0
    v1, v2 = unique_chunks(archives[V1]), unique_chunks(archives[V2])
    relied_on = set(v1) & set(v2)
    assert len(relied_on) > 100

    with SlowServer(FIXTURES / V2, rate=1 << 20) as srv:  # v2's own chunks take ~3 s
        with Popen("clone", srv.url(V2), store / "v2") as c:
            # Past its store check: it is downloading, relying on v1's leftovers.
            wait_until(lambda: any(e.start >= archives[V2].chunk_data_offset for e in srv.entries()), 30,
                       "the clone to start downloading")
            assert c.poll() is None
            with Popen("gc", store) as g:
                err = LineReader(g.stderr)
                assert err.wait_for("waiting for store", 10), "gc did not say it waits"
                time.sleep(0.5)
                assert g.poll() is None, "gc ran beside a clone"
                assert c.poll() is None
                assert chunk_files(store) and {chunk_path(store, h) for h in relied_on} <= set(chunk_files(store))
                ends = {}
                deadline = time.monotonic() + 60
                while len(ends) < 2 and time.monotonic() < deadline:
                    for name, p in (("clone", c), ("gc", g)):
                        if name not in ends and p.poll() is not None:
                            ends[name] = time.monotonic()
                    time.sleep(0.01)
                c_out, c_err = c.stdout.read(), c.stderr.read()
                g_out = g.stdout.read()
                g_err = err.text()
    assert c.returncode == 0 and g.returncode == 0, (c_err, g_err)
    assert len(ends) == 2 and ends["gc"] >= ends["clone"]
    assert g_err.strip() == f"ihop: waiting for store {store}: another ihop is using it"
    s = parse_summary(c_out)
    assert s.reused == len(relied_on) and s.fetched == len(v2) - len(relied_on)
    # gc ran once the clone had written v2: it took only what v2 does not use.
    items, summary = parse_gc(g_out)
    assert {p for p, _ in items} == {chunk_path(store, h) for h in set(v1) - set(v2)}
    v = ihop("verify", store / "v2")
    assert v.returncode == 0 and "v2: OK" in v.stdout, v.stdout
    assert_clone_complete(store, "v2", archives[V2])


def test_a_clone_waits_for_a_running_gc(tmp_path, archives):
    """gc holds the lock while it works; here it is kept working by a full
    stdout pipe (it reports every file it removes) until the test reads it."""
    store = tmp_path / "store"
    clone_ok(FIXTURES / V1, store / "v1")
    fakes = []
    for i in range(600):
        h = f"{i:04x}" + "ab" * 62
        p = store / "chunks" / h[:4] / f"{h}.chunk"
        p.parent.mkdir(exist_ok=True)
        p.write_bytes(b"x")
        fakes.append(p)

    with Popen("gc", store) as g:
        wait_until(lambda: lock_held_by_other(store) or g.poll() is not None, 10, "gc to take the lock")
        time.sleep(0.3)
        assert g.poll() is None and lock_held_by_other(store), "gc did not hold the lock"
        with Popen("clone", FIXTURES / V2, store / "v2") as c:
            err = LineReader(c.stderr)
            assert err.wait_for("waiting for store", 10), "the clone did not say it waits"
            time.sleep(0.5)
            assert c.poll() is None, "the clone ran beside gc"
            assert not (store / "v2").exists()
            g_out, g_err = g.communicate(timeout=TIMEOUT)  # let gc finish
            c_out = c.stdout.read()
            c.wait(TIMEOUT)
            c_err = err.text()
    assert g.returncode == 0, g_err
    items, summary = parse_gc(g_out)
    assert {p for p, _ in items} == set(fakes) and summary[:2] == (len(fakes), 0)
    assert c.returncode == 0, c_err
    assert c_err.strip() == f"ihop: waiting for store {store}: a garbage collection is running"
    s = parse_summary(c_out)
    v1, v2 = unique_chunks(archives[V1]), unique_chunks(archives[V2])
    assert s.reused == len(set(v1) & set(v2))
    assert_clone_complete(store, "v2", archives[V2])
    assert ihop("verify", store / "v1", store / "v2").returncode == 0


# --------------------------------------------------------------------------
# verify and repair


def damage_three_chunks(store, archive):
    """Flips a byte of one chunk, cuts another short, deletes a third."""
    chunks = sorted(unique_chunks(archive).values(), key=lambda c: c.hash.hex())
    big = [c for c in chunks if c.source_size > 4096]
    flipped, cut, gone = big[3], big[10], big[20]
    p = chunk_path(store, flipped.hash.hex())
    data = bytearray(p.read_bytes())
    data[len(data) // 3] ^= 0x40
    p.write_bytes(bytes(data))
    p = chunk_path(store, cut.hash.hex())
    os.truncate(p, p.stat().st_size // 2)
    chunk_path(store, gone.hash.hex()).unlink()
    return flipped, cut, gone


def test_verify_finds_damage_and_repair_fetches_only_the_bad_chunks(tmp_path, archives):
    archive = archives[V2]
    store = tmp_path / "store"
    clone_ok(FIXTURES / V1, store / "v1")
    clone_ok(FIXTURES / V2, store / "v2")
    ok = ihop("verify", store / "v1", store / "v2")
    assert ok.returncode == 0 and ok.stderr == ""
    n = len(unique_chunks(archive))
    assert f"v2: OK ({n} chunks checked, 0 missing, 0 corrupt, image checksum matches)" in ok.stdout

    flipped, cut, gone = damage_three_chunks(store, archive)
    bad = {flipped.hash.hex(), cut.hash.hex(), gone.hash.hex()}
    expect = sorted([f"corrupt {chunk_path(store, flipped.hash.hex())}",
                     f"corrupt {chunk_path(store, cut.hash.hex())}",
                     f"missing {chunk_path(store, gone.hash.hex())}"])
    r = ihop("verify", store / "v2")
    assert r.returncode == 1, r.stdout
    found = sorted(l for l in r.stdout.splitlines() if l.startswith(("corrupt ", "missing ")))
    assert found == expect
    assert f"v2: DAMAGED ({n} chunks checked, 1 missing, 2 corrupt, image checksum not computable)" in r.stdout
    # Several releases at once: the damaged one makes the exit status 1.
    r = ihop("verify", store / "v1", store / "v2")
    assert r.returncode == 1
    v1_bad = bad & set(unique_chunks(archives[V1]))
    assert ("v1: OK" in r.stdout) == (not v1_bad)

    with SlowServer(FIXTURES / V1, FIXTURES / V2) as srv:
        # Another image's archive: refused before a chunk is fetched.
        srv.tag = "wrong"
        r = ihop("verify", "--repair", srv.url(V1), store / "v2")
        assert r.returncode == 1
        errors = [l for l in r.stderr.splitlines() if l.startswith("ihop: error:")]
        assert len(errors) == 1 and "another image" in errors[0], r.stderr
        assert not [e for e in srv.entries(tag="wrong") if e.start >= archives[V1].chunk_data_offset]
        assert sorted(l for l in ihop("verify", store / "v2").stdout.splitlines()
                      if l.startswith(("corrupt ", "missing "))) == expect  # untouched

        srv.tag = "repair"
        r = ihop("verify", "--repair", srv.url(V2), store / "v2")
        entries = srv.entries(tag="repair")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "repaired" in r.stdout and "fetched 3 chunks again" in r.stdout
    assert "v2: OK after repair" in r.stdout
    data = [e for e in entries if e.start >= archive.chunk_data_offset]
    assert chunks_asked(archive, data) == bad, "repair fetched other chunks than the damaged ones"
    assert sum(e.sent for e in data) == sum(c.archive_size for c in (flipped, cut, gone))
    r = ihop("verify", store / "v1", store / "v2")
    assert r.returncode == 0 and "v2: OK" in r.stdout and "v1: OK" in r.stdout, r.stdout
    assert cat_checksum(store / "v2") == archive.source_checksum
    check_store(store)


def test_verify_of_a_missing_release_fails(tmp_path):
    store = tmp_path / "store"
    clone_ok(FIXTURES / SMALL, store / "a")
    r = ihop("verify", store / "nope")
    assert_one_error_line(r, "nope")


# --------------------------------------------------------------------------
# resume after kill -9


def test_killed_clone_resumes_without_downloading_again(tmp_path, archives):
    archive = archives[V2]
    chunks = unique_chunks(archive)
    store = tmp_path / "store"
    with SlowServer(FIXTURES / V2, rate=2 << 20) as srv:
        srv.tag = 1
        with Popen("clone", srv.url(V2), store / "rel", stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL) as p:
            wait_until(lambda: sum(e.sent for e in srv.entries() if e.start >= archive.chunk_data_offset)
                       >= 3 << 20, 30, "3 MiB of chunk data to go out")
            assert p.poll() is None
            p.send_signal(signal.SIGKILL)
            p.wait(TIMEOUT)
        assert p.returncode == -signal.SIGKILL
        time.sleep(0.1)
        first = sum(e.sent for e in srv.entries(tag=1))

        scan = scan_store(store)
        assert releases(store) == [] and not scan.corrupt
        recoverable = set(scan.complete_temps) - scan.final
        assert scan.final | recoverable, "the killed clone stored nothing"
        missing = set(chunks) - scan.final - recoverable

        srv.rate = None
        srv.tag = 2
        r = ihop("clone", srv.url(V2), store / "rel")
        second = srv.entries(tag=2)
    assert r.returncode == 0, r.stderr
    s = parse_summary(r.stdout)
    assert s.recovered == len(recoverable)
    assert s.reused == len(scan.final) + s.recovered and s.fetched == len(missing)
    if s.recovered:
        assert f"recovered {s.recovered} complete chunks left by an interrupted clone" in r.stdout
    served = sum(e.sent for e in second)
    assert served == archive.header_size + sum(chunks[h].archive_size for h in missing)
    assert chunks_asked(archive, [e for e in second if e.start >= archive.chunk_data_offset]) == missing
    assert s.downloaded >= served and s.downloaded - served < 200 * (len(second) + 1)  # HTTP headers
    print(f"\nresume: first run served {first} bytes before kill -9; second run {served} bytes: "
          f"{len(scan.final)} chunks stored + {s.recovered} recovered reused, {s.fetched} fetched")
    assert_clone_complete(store, "rel", archive)
    assert ihop("verify", store / "rel").returncode == 0


# --------------------------------------------------------------------------
# logs


def test_quiet_silences_info_but_not_errors(tmp_path):
    store = tmp_path / "store"
    clone_ok(FIXTURES / SMALL, store / "first")
    fd = os.open(store, os.O_RDONLY | os.O_DIRECTORY)
    results = {}
    try:
        for quiet in (False, True):
            fcntl.flock(fd, fcntl.LOCK_EX)  # as gc holds it
            args = ["-q"] if quiet else []
            with Popen(*args, "clone", FIXTURES / SMALL, store / f"q{int(quiet)}") as c:
                time.sleep(0.5)
                assert c.poll() is None, "the clone did not wait for the lock"
                fcntl.flock(fd, fcntl.LOCK_UN)
                out, err = c.communicate(timeout=TIMEOUT)
            assert c.returncode == 0, err
            assert parse_summary(out).total > 0  # the summary is output, not a log: it stays
            results[quiet] = err
    finally:
        os.close(fd)
    assert results[False] == f"ihop: waiting for store {store}: a garbage collection is running\n"
    assert results[True] == ""
    # Errors still show under -q, as exactly one line.
    r = ihop("-q", "clone", tmp_path / "missing.cba", store / "x")
    assert_one_error_line(r, "missing.cba")
    r = ihop("-q", "verify", store / "nope")
    assert_one_error_line(r, "nope")


def run_on_pty(args, timeout=60):
    """Runs ihop with stderr on a pseudo-terminal; returns (rc, stdout, stderr bytes)."""
    master, slave = pty.openpty()
    try:
        p = subprocess.Popen([IHOP, *[str(a) for a in args]], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                             stderr=slave)
        os.close(slave)
        slave = None
        buf = b""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.1)
            if ready:
                try:
                    chunk = os.read(master, 65536)
                except OSError:  # EIO: the other end closed
                    chunk = b""
                if not chunk and p.poll() is not None:
                    break
                buf += chunk
            elif p.poll() is not None:
                break
        out = p.stdout.read()
        p.stdout.close()
        rc = p.wait(timeout)
        return rc, out.decode(), buf
    finally:
        if slave is not None:
            os.close(slave)
        os.close(master)


def test_progress_only_on_a_terminal(tmp_path):
    with SlowServer(FIXTURES / SMALL, rate=256 << 10) as srv:  # ~1 s a clone
        url = srv.url(SMALL)
        # stderr a pipe: no progress bar, no carriage return, nothing at all.
        r = ihop("clone", url, tmp_path / "s1" / "a")
        assert r.returncode == 0 and r.stderr == "", repr(r.stderr)
        # stderr a terminal: the progress bar shows (so the check above could fail).
        rc, out, err = run_on_pty(["clone", url, tmp_path / "s2" / "a"])
        assert rc == 0, err
        assert b"\r\x1b[Kfetch " in err and b"% " in err, err
        # -q on a terminal: no progress either.
        rc, out, err = run_on_pty(["-q", "clone", url, tmp_path / "s3" / "a"])
        assert rc == 0 and err == b"", err
