# SPDX-License-Identifier: MIT
"""kill -9 at random moments: a clone of pair/v2 from a deliberately slow
server of the tests' own is killed outright 20+ times, at random moments
(startup, header, store check, transfer, batch commit), and run again after
each kill. At every point: no chunk under its final name has wrong content,
no release exists for an incomplete release, temp files belong only to dead
processes. The next run fetches nothing the killed ones had stored or left
complete in temp files (recovered). The last run completes; verify and cat
agree with the archive.

The seed is printed; IHOP_KILL_SEED=N replays a run."""

import os
import random
import signal
import subprocess
import time

from bita_archive import unique_chunks
from ihop_run import FIXTURES, IHOP, cat_checksum, ihop, parse_summary, pid_alive
from slow_server import SlowServer, chunks_asked, chunks_served
from store_checks import check_release_file, releases, scan_store, temp_pid

NAME = "pair/v2.ext4.cba"
RATE = 1 << 20  # bytes a second over all connections: a whole clone takes ~8.5 s
JOBS = 4  # ihop's default over HTTP: at most this many transfers in flight
MIN_KILLS = 20
PLANNED_KILLS = 24
IN_FLIGHT_SLACK = 4 * (16 << 10)  # socket buffers: a few of the server's 16 KiB blocks per connection


def described(store) -> list:
    """Release descriptions at the top of the store (not a killed writer's temp file)."""
    return [n for n in releases(store) if ".tmp-" not in n]


def test_clone_survives_kill_9_at_random_moments(tmp_path, archives):
    archive = archives[NAME]
    chunks = unique_chunks(archive)
    unique = set(chunks)
    chunk_data = sum(c.archive_size for c in chunks.values())
    max_chunk = max(c.archive_size for c in chunks.values())
    seed = int(os.environ.get("IHOP_KILL_SEED", random.SystemRandom().randrange(1 << 32)))
    print(f"\nkill test seed: {seed} (IHOP_KILL_SEED={seed} replays it)")
    rng = random.Random(seed)
    store = tmp_path / "store"
    rel = store / "rel"

    kills = corrupt_seen = 0
    killed_pids = []
    secured = set()  # chunks under final names or complete in a dead clone's temp file
    lost = []  # per kill: bytes served for chunks the killed run did not secure
    secured_after = []  # (run, what was secured when it had been killed)
    moments = []
    t_start = time.monotonic()
    with SlowServer(FIXTURES / NAME, rate=RATE) as srv:
        url = srv.url(NAME)
        completed_early = False
        for k in range(PLANNED_KILLS):
            # A random moment, scaled so that the clone cannot finish before its last planned kill.
            left = sum(chunks[h].archive_size for h in unique - secured) / RATE
            delay = rng.uniform(0.01, min(0.5, 0.1 + left / (PLANNED_KILLS - k + 1)))
            srv.tag = k
            p = subprocess.Popen([IHOP, "clone", url, str(rel)], stdin=subprocess.DEVNULL,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            try:
                time.sleep(delay)
                alive = p.poll() is None
                p.send_signal(signal.SIGKILL)
                out, err = p.communicate(timeout=30)
            finally:
                if p.poll() is None:
                    p.kill()
                    p.wait(30)
            if not alive:  # it finished before the kill: it must have succeeded
                assert p.returncode == 0, f"run {k} failed: {err}"
                completed_early = True
                break
            assert p.returncode == -signal.SIGKILL
            kills += 1
            killed_pids.append(p.pid)
            moments.append(delay)

            scan = scan_store(store)
            corrupt_seen += len(scan.corrupt)
            assert not scan.corrupt, f"after kill {kills} ({delay:.3f} s): corrupt chunks under final names: {scan.corrupt}"
            assert scan.final <= unique
            if described(store):
                # Killed after writing its description: then the release is complete.
                assert described(store) == ["rel"]
                check_release_file(rel)
                assert unique <= scan.final, f"after kill {kills}: a release names chunks the store lacks"
                completed_early = True
            for t in scan.temps:
                pid = temp_pid(t)
                assert pid == -1 or not pid_alive(pid), f"temp file of a live process: {t}"
                assert pid == -1 or pid in killed_pids, f"temp file of an unknown process: {t}"
            # This run asked for nothing that was already secured before it started...
            entries = srv.entries(tag=k)
            data = [e for e in entries if e.start >= archive.chunk_data_offset]
            again = chunks_asked(archive, data) & secured
            assert not again, f"run {k} fetched {len(again)} chunks that were already stored or recoverable"
            now_secured = scan.final | set(scan.complete_temps)
            assert secured <= now_secured, "a killed run lost chunks an earlier one had secured"
            secured = now_secured
            secured_after.append((k, now_secured))
            if completed_early:
                break

        # The last run, at full speed: completes, reusing everything secured.
        before = scan_store(store)
        assert not before.corrupt
        assert secured <= before.final | set(before.complete_temps)
        secured = before.final | set(before.complete_temps)
        srv.rate = None
        srv.tag = "final"
        r = ihop("clone", *(["--force"] if described(store) else []), url, rel, timeout=120)
        assert r.returncode == 0, f"final clone failed: {r.stderr}"
        final_entries = srv.entries(tag="final")
        time.sleep(0.2)  # let the threads of killed runs' connections notice
        all_entries = srv.entries()
    elapsed = time.monotonic() - t_start

    # What each killed run received but did not secure is at most what was in flight.
    for k, now_secured in secured_after:
        data = [e for e in all_entries if e.tag == k and e.start >= archive.chunk_data_offset]
        lost_k = sum(n for h, n in chunks_served(archive, data).items() if h not in now_secured)
        assert lost_k <= JOBS * (max_chunk + IN_FLIGHT_SLACK), \
            f"kill of run {k} lost {lost_k} bytes, more than {JOBS} transfers can have in flight"
        lost.append(lost_k)

    s = parse_summary(r.stdout)
    recoverable = set(before.complete_temps) - before.final
    assert s.unique == len(unique) == s.reused + s.fetched
    assert s.recovered == len(recoverable), (s.recovered, len(recoverable))
    assert s.reused == len(before.final) + s.recovered
    final_data = [e for e in final_entries if e.start >= archive.chunk_data_offset]
    assert chunks_asked(archive, final_data) == unique - secured
    served_final = sum(e.sent for e in final_data)
    assert served_final == sum(chunks[h].archive_size for h in unique - secured)
    assert sum(e.sent for e in final_entries if e.start < archive.chunk_data_offset) == archive.header_size

    # The release: complete, verified, the image reproduced.
    assert described(store) == ["rel"]
    check_release_file(rel)
    end = scan_store(store)
    assert not end.corrupt and unique <= end.final
    v = ihop("verify", rel)
    assert v.returncode == 0 and "rel: OK" in v.stdout, v.stdout + v.stderr
    assert cat_checksum(rel) == archive.source_checksum
    # Leftovers of killed clones (temp files of chunks that a later run had
    # already stored) go with gc, and nothing else does.
    for t in end.temps:
        assert temp_pid(t) == -1 or not pid_alive(temp_pid(t))
    g = ihop("gc", store)
    assert g.returncode == 0, g.stderr
    assert f"removed 0 unused chunks and {len(end.temps)} temp files" in g.stdout, g.stdout
    assert scan_store(store).temps == []
    assert ihop("verify", rel).returncode == 0

    served_data = sum(e.sent for e in all_entries if e.start >= archive.chunk_data_offset)
    refetched = served_data - chunk_data
    print(f"kills survived: {kills} (moments {min(moments):.3f}-{max(moments):.3f} s after start); "
          f"data lost: {corrupt_seen} corrupt chunks; "
          f"chunk data served {served_data} bytes for {chunk_data} ({refetched} = "
          f"{100 * refetched / chunk_data:.1f}% again, at most {max(lost, default=0)} lost in one kill); "
          f"last run: reused {s.reused} (recovered {s.recovered}), fetched {s.fetched} of {s.unique}; "
          f"{elapsed:.1f} s")
    assert kills >= MIN_KILLS, f"only {kills} kills (seed {seed})"
    assert corrupt_seen == 0
    # Every byte served more than once was in flight at a kill.
    assert refetched == sum(lost)
    assert refetched <= kills * JOBS * (max_chunk + IN_FLIGHT_SLACK)
