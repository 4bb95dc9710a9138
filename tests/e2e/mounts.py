# SPDX-License-Identifier: MIT
"""Mounting file systems for a test (the tests run as root); a test that
cannot mount is skipped."""

from pathlib import Path

import pytest

from ihop_run import run


class Mount:
    def __init__(self, path: Path, *mount_args):
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)
        r = run(["mount", *mount_args, str(self.path)], timeout=30)
        if r.returncode != 0:
            pytest.skip(f"cannot mount {' '.join(mount_args)}: {r.stderr.strip()}")
        self.mounted = True

    def umount(self):
        if self.mounted:
            r = run(["umount", str(self.path)], timeout=30)
            if r.returncode != 0:
                run(["umount", "-l", str(self.path)], timeout=30)
            self.mounted = False
