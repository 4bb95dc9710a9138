# SPDX-License-Identifier: MIT
"""Exit statuses, the same from every command (README, "Exit status"):
0 success, 1 failure (verify: also a damaged release), 2 usage error; and
a failure nobody explained still gets its one error line."""

import os
import shutil
import subprocess

import pytest

from conftest import FIXTURES, IHOP, assert_one_error_line, clone_ok, ihop, run

SMALL = "rand-0_1_1-none.cba"
COMMANDS = ["clone", "compress", "cat", "info", "ls", "verify", "rm", "gc", "diff", "mount", "serve"]


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    store = tmp_path_factory.mktemp("exit") / "store"
    clone_ok(FIXTURES / SMALL, store / "rel")
    return store


@pytest.mark.parametrize("command", COMMANDS)
def test_help_exits_0_and_a_usage_error_2(command):
    r = ihop(command, "--help")
    assert r.returncode == 0 and r.stdout.startswith(f"Usage: ihop {command} ") and r.stderr == "", r
    r = ihop(command, "--no-such-option")
    assert r.returncode == 2 and "Usage: ihop" in r.stderr and r.stdout == "", r
    r = ihop(command)  # every command wants at least one operand
    assert r.returncode == 2 and "Usage: ihop" in r.stderr and r.stdout == "", r


def test_ihop_itself_exits_2_on_a_usage_error():
    for args in ([], ["--no-such-option"], ["no-such-command"]):
        r = ihop(*args)
        assert r.returncode == 2 and "Usage: ihop" in r.stderr, (args, r)
    r = ihop("--help")
    assert r.returncode == 0 and r.stdout.startswith("Usage: ihop ") and r.stderr == ""


def bad_name_runs(store, tmp_path):
    """Each command that takes STORE/NAME, given a NAME that cannot be a release's."""
    bad = store / ".hidden"
    target = tmp_path / "target"
    target.write_bytes(b"")
    return {
        "clone": ["clone", FIXTURES / SMALL, bad],
        "cat": ["cat", bad],
        "verify": ["verify", bad],
        "rm": ["rm", bad],
        "mount": ["mount", bad, target],
        "serve": ["serve", "--unix", tmp_path / "sock", bad],
        "info": ["info", bad],  # a release description under a hidden name
    }


def test_a_name_that_cannot_be_a_release_is_a_usage_error_for_every_command(store, tmp_path):
    shutil.copyfile(store / "rel", store / ".hidden")
    try:
        for command, args in bad_name_runs(store, tmp_path).items():
            r = run([IHOP, *args], timeout=30)
            assert r.returncode == 2, (command, r)
            assert_one_error_line(r, "not a valid release name")
    finally:
        os.unlink(store / ".hidden")
    assert not (tmp_path / "sock").exists()


def test_a_release_that_does_not_exist_exits_1_from_every_command(store, tmp_path):
    target = tmp_path / "target"
    target.write_bytes(b"")
    gone = store / "gone"
    for args in (["cat", gone], ["verify", gone], ["rm", gone], ["info", gone], ["mount", gone, target],
                 ["serve", "--unix", tmp_path / "sock", gone]):
        r = run([IHOP, *args], timeout=30)
        assert r.returncode == 1, (args, r)
        assert_one_error_line(r, "gone")


def test_an_option_value_ihop_cannot_take_exits_2(store, tmp_path):
    runs = [
        ["clone", "-j", "0", FIXTURES / SMALL, tmp_path / "s" / "r"],
        ["compress", "--hash-length", "3", "-i", FIXTURES / "zero.img", tmp_path / "x.cba"],
        ["diff", "--compression", "gzip", FIXTURES / "zero.img", FIXTURES / "zero.img"],
        ["mount", "--block-size", "1000", store / "rel", tmp_path / "t"],
        ["serve", "--handshake-timeout", "0", "--unix", tmp_path / "sock", store / "rel"],
        ["serve", "--listen", "host:0", store / "rel"],
    ]
    for args in runs:
        r = run([IHOP, *args], timeout=30)
        assert r.returncode == 2, (args, r)
        assert_one_error_line(r)


def test_a_failure_nobody_explained_still_gets_one_error_line(tmp_path):
    """archive_source_open returns -ENOMEM without a word when it cannot
    copy the archive's name: main says what failed."""
    shim = tmp_path / "failing_strdup.c"
    shim.write_text("""
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
char *strdup(const char *s)
{
        static char *(*real)(const char *);
        const char *fail = getenv("FAIL_STRDUP_OF");
        if (fail && strcmp(s, fail) == 0) {
                errno = ENOMEM;
                return NULL;
        }
        if (!real)
                real = (char *(*)(const char *))dlsym(RTLD_NEXT, "strdup");
        return real(s);
}
""")
    lib = tmp_path / "failing_strdup.so"
    subprocess.run(["cc", "-shared", "-fPIC", "-o", lib, shim, "-ldl"], check=True)
    archive = tmp_path / "a.cba"
    shutil.copyfile(FIXTURES / SMALL, archive)
    env = dict(os.environ, LD_PRELOAD=str(lib), FAIL_STRDUP_OF=str(archive),
               ASAN_OPTIONS=os.environ.get("ASAN_OPTIONS", "") + ":verify_asan_link_order=0")
    r = subprocess.run([IHOP, "info", archive], capture_output=True, text=True, timeout=30, env=env)
    assert r.returncode == 1, r
    assert_one_error_line(r, "info", "Cannot allocate memory")
