# SPDX-License-Identifier: MIT
"""The pytest fixtures of ihop's end-to-end tests.

The tests drive the real ihop binary (env IHOP, default build/src/ihop)
against the bita fixtures in tests/fixtures, served from disk, by a real
nginx started for the session, and by small fault-injecting HTTP servers of
the tests' own. Everything listens on 127.0.0.1 only and is stopped at
teardown. Only the Python standard library (and pytest) is used.

The helpers are in the modules beside this file, one concern each:
ihop_run (running ihop, reading its output), bita_archive (an independent
reader of bita archives) on pb_wire (the protobuf wire format), cba_reader
(the strict checks of what `ihop compress` writes), store_checks (a store's
files), local_http (ports, and the base of the tests' own HTTP servers),
nginx_server, fault_server, slow_server, and mounts.
"""

import os

import pytest

from bita_archive import parse_archive
from ihop_run import BAD_ARCHIVES, FIXTURES, GOOD_ARCHIVES
from mounts import Mount
from nginx_server import NGINX, Nginx

# For compatibility only: tests written while these helpers lived in this
# file import them from conftest. New code imports each from its module;
# this list goes once no test does.
from bita_archive import CODEC_NAMES, Archive, Chunk, blake2b, blake2b_file, unique_chunks  # noqa: F401
from fault_server import FaultHandler, FaultServer  # noqa: F401
from ihop_run import (ROOT, IHOP, TIMEOUT, LineReader, Summary, assert_final_error,  # noqa: F401
                      assert_one_error_line, cat_checksum, clone, clone_ok, error_lines, ihop, info_fields,
                      parse_summary, pid_alive, run)
from local_http import free_port, parse_range, wait_port  # noqa: F401
from nginx_server import LogEntry  # noqa: F401
from slow_server import Served, SlowHandler, SlowServer, chunks_asked, chunks_served  # noqa: F401
from store_checks import (StoreScan, assert_clone_complete, assert_no_release_and_clean,  # noqa: F401
                          check_release_file, check_store, chunk_files, chunk_path, releases, scan_store,
                          temp_pid)


@pytest.fixture(scope="session")
def nginx(tmp_path_factory):
    if not os.access(NGINX, os.X_OK):
        pytest.skip(f"{NGINX} is not installed")
    n = Nginx(tmp_path_factory.mktemp("nginx"))
    n.start()
    try:
        yield n
    finally:
        n.stop()
    assert n.proc is None


@pytest.fixture
def tmpfs(tmp_path):
    """Mounts tmpfs file systems for a test; unmounts them at teardown."""
    mounts = []

    def make(name, *options):
        m = Mount(tmp_path / name, "-t", "tmpfs", "-o", ",".join(options) or "defaults", "tmpfs")
        mounts.append(m)
        return m.path

    yield make
    for m in reversed(mounts):
        m.umount()


@pytest.fixture(scope="session")
def archives():
    """Every fixture archive, parsed independently of ihop."""
    paths = GOOD_ARCHIVES + list(BAD_ARCHIVES) + ["pair/v1.ext4.cba", "pair/v2.ext4.cba"]
    return {p: parse_archive(FIXTURES / p) for p in paths}
