# SPDX-License-Identifier: MIT
"""`ihop mount --root-storage` refusals that need no kernel NBD: what it
does with a device is tested in the qemu guests (test_kernel_nbd.py, the
"r" phase; test_boot.py, a real boot)."""

import os
import shutil
import tempfile
from pathlib import Path

import pytest

from ihop_run import FIXTURES, IHOP, assert_one_error_line, clone_ok, run

PAIR_V1 = FIXTURES / "pair" / "v1.ext4.cba"


@pytest.fixture
def world_readable_store():
    """pair/v1 in a store any user can read (pytest's tmp_path is root's only)."""
    top = Path(tempfile.mkdtemp(prefix="ihop-rs-"))
    try:
        os.chmod(top, 0o755)
        clone_ok(PAIR_V1, top / "store" / "v1")
        for d, _, files in os.walk(top):
            os.chmod(d, 0o755)
            for f in files:
                os.chmod(os.path.join(d, f), 0o644)
        yield top / "store"
    finally:
        shutil.rmtree(top, ignore_errors=True)


def as_nobody():
    os.setgroups([])
    os.setgid(65534)
    os.setuid(65534)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to become another user")
def test_root_storage_must_run_as_root(world_readable_store):
    """systemd spares only root's processes at shutdown: refused, in one
    line, before any device is touched."""
    r = run([IHOP, "mount", "--root-storage", world_readable_store / "v1", "/dev/nbd0"],
            preexec_fn=as_nobody)
    assert_one_error_line(r, "--root-storage", "root")
    assert r.returncode == 1


@pytest.mark.parametrize("option", [["--root-storage"], ["--timeout", "60"]])
def test_root_storage_and_timeout_are_for_a_device(tmp_path, option):
    clone_ok(PAIR_V1, tmp_path / "store" / "v1")
    target = tmp_path / "image"
    target.write_bytes(b"")
    r = run([IHOP, "mount", *option, tmp_path / "store" / "v1", target])
    assert r.returncode == 2
    assert_one_error_line(r, option[0], "/dev/nbdN")


@pytest.mark.parametrize("value", ["0", "86401", "x"])
def test_timeout_wants_seconds(tmp_path, value):
    r = run([IHOP, "mount", "--timeout", value, tmp_path / "store" / "v1", "/dev/nbd0"])
    assert r.returncode == 2
    assert_one_error_line(r, "--timeout")
