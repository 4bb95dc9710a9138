# SPDX-License-Identifier: MIT
"""Progress for people at a terminal and for update agents:

- `--progress-fd N` (clone, compress, verify): one JSON object a line, each
  phase in order (check, seed, fetch; compress; verify), counts that never
  go back, and a final line per phase whose done equals its total, which
  equal what the job really did.
- A reader that goes away ends the lines, not the job; a descriptor that is
  not open for writing is a usage error.
- On a terminal: one line redrawn in place with percent, sizes, and (once
  it can tell) rate and time left, cleared at the end; nothing at all when
  stderr is not a terminal, or with -q."""

import json
import os
import pty
import subprocess

from bita_archive import parse_archive, unique_chunks
from ihop_run import FIXTURES, IHOP, TIMEOUT, ihop, parse_summary
from slow_server import SlowServer

KEYS = {"phase", "what", "bytes_done", "bytes_total", "chunks_done", "chunks_total", "final"}


def with_progress_fd(*args, stdin=None, close_reader=False):
    """Runs `ihop ARGS` with a pipe as --progress-fd (FD in ARGS stands for
    its number), as an agent would spawn it: exit status, stdout, stderr
    and the JSON lines read from the pipe."""
    r, w = os.pipe()
    if close_reader:
        os.close(r)
    args = [str(w) if a == "FD" else str(a) for a in args]
    try:
        p = subprocess.Popen([IHOP, *args], stdin=stdin or subprocess.DEVNULL, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, pass_fds=(w,))
    finally:
        os.close(w)
    data = b""
    if not close_reader:
        with os.fdopen(r, "rb") as f:
            data = f.read()  # until ihop exits and the pipe closes
    out, err = p.communicate(timeout=TIMEOUT)
    return p.returncode, out.decode(), err.decode(), [json.loads(l) for l in data.decode().splitlines()]


def phases(lines):
    """The phases in the order they came, each once and contiguous, and their lines."""
    order, by = [], {}
    for l in lines:
        assert set(l) == KEYS, l
        if not order or order[-1] != l["phase"]:
            assert l["phase"] not in by, f"phase {l['phase']} came back: {[x['phase'] for x in lines]}"
            order.append(l["phase"])
        by.setdefault(l["phase"], []).append(l)
    return order, by


def check_phase(lines, bytes_total=None, chunks_total=None):
    """Counts never go back; only the last line is final, and complete."""
    for a, b in zip(lines, lines[1:]):
        assert b["bytes_done"] >= a["bytes_done"] and b["chunks_done"] >= a["chunks_done"], (a, b)
        assert (b["bytes_total"], b["chunks_total"]) == (a["bytes_total"], a["chunks_total"])
    assert [l["final"] for l in lines] == [False] * (len(lines) - 1) + [True]
    last = lines[-1]
    if bytes_total is not None:
        assert last["bytes_total"] == bytes_total
    if chunks_total is not None:
        assert last["chunks_total"] == chunks_total
    assert last["bytes_total"] == 0 or last["bytes_done"] == last["bytes_total"]
    assert last["chunks_done"] == last["chunks_total"]
    return last


def test_clone_reports_check_then_fetch_with_what_it_fetched(tmp_path):
    name = "pair/v1.ext4.cba"
    chunks = unique_chunks(parse_archive(FIXTURES / name))
    with SlowServer(FIXTURES / name, rate=2 << 20) as srv:  # some seconds: lines as it goes
        rc, out, err, lines = with_progress_fd("clone", "--progress-fd", "FD", srv.url(name), tmp_path / "s" / "v1")
    assert rc == 0, err
    order, by = phases(lines)
    assert order == ["check", "fetch"]
    check_phase(by["check"], bytes_total=sum(c.source_size for c in chunks.values()), chunks_total=len(chunks))
    fetch = check_phase(by["fetch"], bytes_total=sum(c.archive_size for c in chunks.values()),
                        chunks_total=len(chunks))
    assert len(by["fetch"]) >= 3, "a clone of some seconds reports as it goes"
    assert fetch["what"] == srv.url(name)
    assert parse_summary(out).fetched == fetch["chunks_done"]


def test_a_clone_that_fetches_nothing_reports_an_empty_fetch(tmp_path):
    src = FIXTURES / "pair/v1.ext4.cba"
    assert ihop("clone", src, tmp_path / "s" / "a").returncode == 0
    rc, _, err, lines = with_progress_fd("clone", "--progress-fd", "FD", src, tmp_path / "s" / "b")
    assert rc == 0, err
    order, by = phases(lines)
    assert order == ["check", "fetch"]
    last = check_phase(by["fetch"])
    assert (last["bytes_total"], last["chunks_total"]) == (0, 0)


def test_seeds_report_a_phase_of_their_own_sized_as_the_seed(tmp_path):
    seed = FIXTURES / "random.img"
    rc, _, err, lines = with_progress_fd("clone", "--progress-fd", "FD", "--seed", seed,
                                         FIXTURES / "rand-0_1_1-none.cba", tmp_path / "s" / "r")
    assert rc == 0, err
    order, by = phases(lines)
    assert order == ["check", "seed", "fetch"]
    assert check_phase(by["seed"], bytes_total=seed.stat().st_size)["what"] == str(seed)


def test_compress_reports_the_input_read_from_a_file_and_from_a_pipe(tmp_path):
    image = FIXTURES / "random.img"
    size = image.stat().st_size
    rc, _, err, lines = with_progress_fd("compress", "--progress-fd", "FD", "-i", image, tmp_path / "a.cba")
    assert rc == 0, err
    order, by = phases(lines)
    assert order == ["compress"]
    check_phase(by["compress"], bytes_total=size)
    cat = subprocess.Popen(["cat", str(image)], stdout=subprocess.PIPE)
    rc, _, err, lines = with_progress_fd("compress", "--progress-fd", "FD", tmp_path / "b.cba", stdin=cat.stdout)
    cat.stdout.close()
    assert cat.wait(TIMEOUT) == 0 and rc == 0, err
    last = check_phase(phases(lines)[1]["compress"], bytes_total=0)  # a pipe: no total
    assert last["bytes_done"] == size


def test_verify_reports_every_chunk_of_the_image(tmp_path):
    src = FIXTURES / "pair/v2.ext4.cba"
    archive = parse_archive(src)
    assert ihop("clone", src, tmp_path / "s" / "v2").returncode == 0
    rc, out, err, lines = with_progress_fd("verify", "--progress-fd", "FD", tmp_path / "s" / "v2")
    assert rc == 0, err
    order, by = phases(lines)
    assert order == ["verify"]
    check_phase(by["verify"], bytes_total=archive.source_total_size, chunks_total=len(archive.order))


def test_a_reader_that_goes_away_ends_the_lines_not_the_job(tmp_path):
    rc, out, err, _ = with_progress_fd("clone", "--progress-fd", "FD", FIXTURES / "pair/v1.ext4.cba",
                                       tmp_path / "s" / "v1", close_reader=True)
    assert rc == 0, err
    assert "--progress-fd" in err and "Broken pipe" in err
    assert ihop("verify", tmp_path / "s" / "v1").returncode == 0


def test_a_descriptor_not_open_for_writing_is_a_usage_error(tmp_path):
    for fd in ("9", "x", "-1"):
        r = ihop("clone", "--progress-fd", fd, FIXTURES / "pair/v1.ext4.cba", tmp_path / "s" / "v1")
        assert r.returncode == 2 and "--progress-fd" in r.stderr, r.stderr
    with open(FIXTURES / "random.img", "rb") as read_only:
        r = subprocess.run([IHOP, "clone", "--progress-fd", "0", FIXTURES / "pair/v1.ext4.cba", tmp_path / "s" / "v1"],
                           stdin=read_only, capture_output=True, text=True, timeout=TIMEOUT)
    assert r.returncode == 2 and "--progress-fd" in r.stderr, r.stderr
    assert not (tmp_path / "s" / "v1").exists()


def on_a_terminal(*args):
    """ihop's stderr as a terminal (a pty) shows it: exit status, and what it drew."""
    master, slave = pty.openpty()
    p = subprocess.Popen([IHOP, *[str(a) for a in args]], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                         stderr=slave)
    os.close(slave)
    drawn = b""
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:  # EIO: ihop closed its end
            break
        if not data:
            break
        drawn += data
    os.close(master)
    return p.wait(TIMEOUT), drawn.decode()


def test_a_terminal_gets_one_line_redrawn_with_percent_rate_and_time_left(tmp_path):
    name = "pair/v1.ext4.cba"
    with SlowServer(FIXTURES / name, rate=2 << 20) as srv:
        rc, drawn = on_a_terminal("clone", srv.url(name), tmp_path / "s" / "v1")
    assert rc == 0, drawn
    frames = [f for f in drawn.split("\r\x1b[K") if f]
    assert frames, repr(drawn)
    assert "\n" not in "".join(frames), "progress lines are redrawn in place, never scrolled"
    fetch = [f for f in frames if f.startswith("fetch")]
    assert len(fetch) >= 3, frames
    assert all("%" in f and " of " in f and "chunks" in f and len(f) < 80 for f in fetch), fetch
    assert any("/s" in f and " left" in f for f in fetch), fetch
    assert drawn.endswith("\r\x1b[K"), "the line is cleared at the end"


def test_no_progress_without_a_terminal_or_with_quiet(tmp_path):
    r = ihop("clone", FIXTURES / "pair/v1.ext4.cba", tmp_path / "s" / "a")
    assert r.returncode == 0 and r.stderr == ""
    rc, drawn = on_a_terminal("-q", "clone", FIXTURES / "pair/v1.ext4.cba", tmp_path / "s" / "b")
    assert rc == 0 and drawn == ""
