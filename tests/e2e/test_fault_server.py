# SPDX-License-Identifier: MIT
"""A fault-injecting HTTP server: every kind of misbehaviour a server or the
network can show during the chunk transfer, with retries allowed. Each one
must end either in a complete, verified release (retried and completed) or
in a clean failure: non-zero exit, exactly one `ihop: error:` line (after
retry warnings), no release, no chunk under its final name that does not
match its hash, no temp file left behind.

The outcome of every fault is recorded in a table printed at the end of the
module (pytest -s shows it)."""

import os
import re
import time
from dataclasses import dataclass

import pytest

from bita_archive import unique_chunks
from fault_server import FaultServer
from ihop_run import FIXTURES, clone, clone_ok, error_lines, ihop, parse_summary
from local_http import parse_range
from store_checks import assert_clone_complete, check_store, chunk_path, releases

SMALL = "rand-0_1_1-none.cba"  # 256 KiB, uncompressed: one range, one connection
# 8 MiB of brotli chunks; the store is seeded (hard links) with two chunks in
# three, so the clone fetches the third ones in ~90 separate ranges over 4 connections.
PAIR = "pair/v1.ext4.cba"
RETRIES = ("--http-retry-count", "3", "--http-retry-delay", "0")


@dataclass
class Fault:
    id: str
    server: dict  # FaultServer keyword arguments
    expect: str  # "completes" or "fails"
    needle: str = ""  # what the warnings (completes) or the error (fails) must mention
    retries: int = None  # retry warnings expected when it completes
    opts: tuple = ()


FAULTS = [
    Fault("HTTP 500, twice", dict(mode="status", status=500, times=2), "completes", "HTTP status 500", 2),
    Fault("HTTP 500, always", dict(mode="status", status=500), "fails", "HTTP status 500"),
    Fault("HTTP 404 (permanent)", dict(mode="status", status=404), "fails", "HTTP status 404"),
    Fault("HTTP 503 + Retry-After: 2", dict(mode="status", status=503, times=1, retry_after=2), "completes",
          "in 2 s", 1),
    Fault("connection cut mid-body, twice", dict(mode="cut", cuts=2), "completes", "retrying from byte", 2),
    Fault("stall past --http-timeout 1", dict(mode="stall", cuts=1), "completes", "no data for 1 s", 1,
          ("--http-timeout", "1")),
    Fault("body shorter than promised, twice", dict(mode="short", times=2), "completes", "body ended", 2),
    Fault("body shorter than promised, always", dict(mode="short"), "fails", "body ended"),
    Fault("200 instead of 206", dict(mode="ignore-range"), "fails", "range support"),
    Fault("wrong Content-Range, once", dict(mode="wrong-range", times=1), "completes", "Content-Range", 1),
    Fault("wrong Content-Range, always", dict(mode="wrong-range"), "fails", "Content-Range"),
    # Every byte asked for arrives (and is verified by its chunk's hash): the
    # surplus only ends the transfer, so the range is complete, no retry.
    Fault("body longer than promised, once", dict(mode="long", times=1), "completes", "more bytes", 0),
    Fault("body longer than promised, always", dict(mode="long"), "completes", "more bytes", 0),
    Fault("a chunk's byte flipped, once", dict(mode="flip", times=1), "fails", "corrupt"),
    Fault("a chunk's byte flipped, always", dict(mode="flip"), "fails", "corrupt"),
]

TABLE = {}  # (fault id, archive) -> outcome


@pytest.fixture(scope="module", autouse=True)
def fault_table():
    yield
    if not TABLE:
        return
    names = [SMALL, PAIR]
    width = max(len(f.id) for f in FAULTS)
    lines = ["", f"{'fault':{width}}  expected   {'archive (jobs)':38}  outcome"]
    for f in FAULTS:
        for n, jobs in zip(names, ("-j 1", "-j 4, ~90 ranges")):
            label = f.id if n == SMALL else ""
            exp = f.expect if n == SMALL else ""
            lines.append(f"{label:{width}}  {exp:9}  {n + ' (' + jobs + ')':38}  {TABLE.get((f.id, n), '-')}")
    print("\n".join(lines))


@pytest.fixture(scope="module")
def pair_reference(tmp_path_factory):
    """A store holding PAIR, cloned once, for seeding the stores of the tests."""
    store = tmp_path_factory.mktemp("reference") / "store"
    clone_ok(FIXTURES / PAIR, store / "ref")
    return store


def seed_store(store, reference, archive) -> set:
    """Hard-links every chunk but every third (in archive order) from the
    reference store; returns the hashes of those left out."""
    ordered = sorted(unique_chunks(archive).values(), key=lambda c: c.archive_offset)
    left_out = set()
    for i, c in enumerate(ordered):
        h = c.hash.hex()
        if i % 3 == 0:
            left_out.add(h)
            continue
        dst = chunk_path(store, h)
        dst.parent.mkdir(parents=True, exist_ok=True)
        os.link(chunk_path(reference, h), dst)
    return left_out


def check_clean_failure(r, store, needle):
    """Non-zero exit, retry warnings then exactly one error line, no release,
    final names hold only verified chunks, no temp file left."""
    assert r.returncode == 1, f"expected failure (1), got {r.returncode}: {r.stderr}"
    errors = error_lines(r)
    assert len(errors) == 1, f"expected exactly one error line: {r.stderr!r}"
    # Other connections may still be retrying when one fails: warnings may follow the error.
    others = [l for l in r.stderr.splitlines() if l != errors[0]]
    assert all(l.startswith("ihop: warning: ") for l in others), r.stderr
    assert needle.lower() in errors[0].lower(), f"{needle!r} not in {errors[0]!r}"
    assert releases(store) == [], f"a release exists after a failed clone: {releases(store)}"
    check_store(store)  # no temp files at all, every chunk file matches its name
    return errors[0]


@pytest.mark.parametrize("name,jobs", [(SMALL, "1"), (PAIR, "4")], ids=["small-j1", "pair-j4"])
@pytest.mark.parametrize("fault", FAULTS, ids=[f.id for f in FAULTS])
def test_fault(tmp_path, archives, pair_reference, fault, name, jobs):
    archive = archives[name]
    store = tmp_path / "store"
    to_fetch = seed_store(store, pair_reference, archive) if name == PAIR else unique_chunks(archive).keys()
    with FaultServer(FIXTURES / name, **fault.server) as srv:
        t0 = time.monotonic()
        r = clone(srv.url, store / "rel", "-j", jobs, *RETRIES, *fault.opts, timeout=90)
        elapsed = time.monotonic() - t0
        faults_done, times = list(srv.faults_done), list(srv.request_times)
        ranges, cut_at = srv.ranges(), list(srv.cut_at)
    warnings = [l for l in r.stderr.splitlines() if l.startswith("ihop: warning: ")]

    retries = f"{len(warnings)} retr{'y' if len(warnings) == 1 else 'ies'}"
    if r.returncode == 0:
        TABLE[(fault.id, name)] = f"completed after {retries}"
    else:
        errors = error_lines(r)
        why = errors[-1].replace(f"ihop: error: {srv.url}: ", "") if errors else r.stderr.strip()
        why = re.sub(r"([0-9a-f]{8})[0-9a-f]{40,}", r"\1…", why)  # chunk hashes, shortened
        TABLE[(fault.id, name)] = f"failed after {retries}: {why[:90]}"

    # The server really misbehaved.
    assert faults_done or cut_at or any(m in fault.server["mode"] for m in ("wrong",)), "the fault never happened"
    # Every range asked for is a real range (first byte <= last byte).
    for rg in ranges:
        assert rg is not None and rg[0] <= rg[1], f"an empty or inverted range was requested: {ranges}"

    if fault.expect == "completes":
        assert r.returncode == 0, f"{fault.id}: expected the clone to complete: {r.stderr}"
        assert len(warnings) == fault.retries, r.stderr
        assert all(fault.needle in w and "retrying" in w for w in warnings), r.stderr
        assert not error_lines(r)
        s = parse_summary(r.stdout)
        assert (s.reused, s.fetched) == (len(archive.chunks) - len(to_fetch), len(to_fetch))
        if name == PAIR:  # the seeding did split the transfer into many ranges
            assert len({rg for rg in ranges if rg[0] >= archive.chunk_data_offset}) > 50
        assert_clone_complete(store, "rel", archive)
        v = ihop("verify", store / "rel")
        assert v.returncode == 0 and "rel: OK" in v.stdout, v.stdout + v.stderr
    else:
        check_clean_failure(r, store, fault.needle)
        if "404" in fault.id or "200" in fault.id or "flipped" in fault.id:
            assert warnings == [], f"{fault.id} is not worth a retry: {r.stderr}"
        else:
            assert len(warnings) >= 3, f"{fault.id}: expected 3 retries first: {r.stderr}"
        if "flipped" in fault.id:
            # The bad chunk never got a final name, under any connection.
            bad = [c for c in archive.chunks if any(
                c.archive_offset <= s + (e - s + 1) // 2 < c.archive_offset + c.archive_size
                for _, s, e, _ in faults_done)]
            assert bad
            assert not {c.hash.hex() for c in bad} & check_store(store)

    if fault.server.get("retry_after"):
        # The retry came the Retry-After seconds after the 503, not the (0 s) retry delay.
        (_, s503, e503, t503), = faults_done
        retry_t = [t for t, h in times if h and parse_range(h, 1 << 62) == (s503, e503) and t > t503]
        assert retry_t, times
        gap = retry_t[0] - t503
        assert 1.9 <= gap <= 3.5, f"retried {gap:.2f} s after the 503 (Retry-After: 2)"
        assert elapsed >= 1.9
    if fault.server["mode"] == "stall":
        assert elapsed < 15  # the 30 s stall was cut short by the 1 s idle timeout


def test_surplus_after_a_complete_body_does_not_ask_for_an_empty_range(tmp_path, archives):
    """The server sends the whole range, then (a moment later) bytes beyond it:
    the range is complete; a retry, if any, must not ask for nothing."""
    archive = archives[SMALL]
    store = tmp_path / "store"
    with FaultServer(FIXTURES / SMALL, mode="long-split", times=1) as srv:
        r = clone(srv.url, store / "rel", "-j", "1", *RETRIES)
        ranges = srv.ranges()
    assert releases(store) in ([], ["rel"])
    check_store(store)
    assert all(rg[0] <= rg[1] for rg in ranges), f"an inverted range was requested: {ranges}"
    assert r.returncode == 0, r.stderr
    assert_clone_complete(store, "rel", archive)
