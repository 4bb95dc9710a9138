# SPDX-License-Identifier: MIT
"""A clone killed outright (SIGKILL, as by a power cut of the process) leaves
no release and no chunk under its final name that is not verified; the next
clone completes."""

import signal
import subprocess
import time

from fault_server import FaultServer
from ihop_run import FIXTURES, IHOP, TIMEOUT, cat_checksum, clone_ok, parse_summary
from store_checks import check_release_file, check_store, releases

NAME = "pair/v1.ext4.cba"


def test_killed_clone_leaves_no_release_and_next_clone_completes(tmp_path, archives):
    archive = archives[NAME]
    store = tmp_path / "store"
    with FaultServer(FIXTURES / NAME, mode="stall", cuts=1) as srv:
        p = subprocess.Popen([IHOP, "clone", "-j", "1", "--http-timeout", "60", srv.url, str(store / "rel")],
                             stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 30
            while not srv.cut_at and time.monotonic() < deadline and p.poll() is None:
                time.sleep(0.02)
            assert srv.cut_at, "the clone never reached the stalled transfer"
            time.sleep(0.3)  # let it write what it received
            assert p.poll() is None, "the clone ended during the stall"
        finally:
            p.send_signal(signal.SIGKILL)
            p.wait(TIMEOUT)
    assert p.returncode == -signal.SIGKILL
    killed_tmp = f".tmp-{p.pid}."

    assert releases(store) == []
    # Final names hold verified chunks only; the killed process may have left temp files.
    present = check_store(store, allowed_temp=killed_tmp)
    assert present < {c.hash.hex() for c in archive.chunks}

    with FaultServer(FIXTURES / NAME) as srv:
        r = clone_ok(srv.url, store / "rel")
    s = parse_summary(r.stdout)
    # Complete chunks the killed clone had verified but not yet moved into
    # place are recovered from its temp files, not downloaded again.
    assert s.reused == len(present) + s.recovered
    assert s.fetched == len(archive.chunks) - s.reused
    # Every temp file the killed clone left was either recovered or removed.
    assert releases(store) == ["rel"]
    check_release_file(store / "rel")
    assert {c.hash.hex() for c in archive.chunks} <= check_store(store)
    assert cat_checksum(store / "rel") == archive.source_checksum
