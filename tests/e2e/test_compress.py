# SPDX-License-Identifier: MIT
"""`ihop compress` writes archives bita can read: checked by an independent
reader (cba_reader.py), against bita's own chunker vectors, and by cloning
them back; a failed compress leaves nothing behind. `ihop diff` agrees with
what a clone fetches."""

import os
import random
import re
import subprocess

import pytest

from bita_archive import blake2b
from cba_reader import check_cba, read_cba
from ihop_run import (FIXTURES, IHOP, TIMEOUT, assert_one_error_line, cat_checksum, clone_ok, info_fields,
                      parse_summary, run)

CODECS = ["brotli", "zstd", "lzma", "none"]
CHUNKERS = {
    "RollSum": ["--hash-chunking", "RollSum"],
    "BuzHash": ["--hash-chunking", "BuzHash"],
    "fixed": ["--fixed-size", "12KiB"],
}
# Small chunks, so a couple of MiB make many of them.
SMALL = ["--avg-chunk-size", "16KiB", "--min-chunk-size", "4KiB", "--max-chunk-size", "64KiB"]


def compress(*args, stdin=subprocess.DEVNULL, input=None, timeout=TIMEOUT):
    kw = {"input": input} if input is not None else {"stdin": stdin}
    return subprocess.run([str(IHOP), "compress", *[str(a) for a in args]], capture_output=True, timeout=timeout,
                          **kw)


def compress_ok(*args, **kw):
    r = compress(*args, **kw)
    assert r.returncode == 0, f"compress failed ({r.returncode}): {r.stderr.decode(errors='replace')}"
    assert r.stderr == b"", r.stderr
    return r


def mixed_image(seed=1, size=2 << 20) -> bytes:
    """Random stretches (incompressible), zeros and text (compressible), and
    repeated blocks (identical chunks)."""
    rnd = random.Random(seed)
    block = rnd.randbytes(40 << 10)
    parts = [rnd.randbytes(300 << 10), bytes(200 << 10), block,
             b"".join(b"line %d of some text\n" % i for i in range(12000)), block, rnd.randbytes(150 << 10),
             block, bytes(300 << 10)]
    data = b"".join(parts)
    while len(data) < size:
        data += rnd.randbytes(64 << 10) + block
    return data[:size]


def assert_nothing_left(directory, keep=()):
    left = sorted(p.name for p in directory.iterdir() if p.name not in keep)
    assert left == [], f"left behind: {left}"


# --------------------------------------------------------------------------
# Round trips


@pytest.mark.parametrize("chunker", list(CHUNKERS))
@pytest.mark.parametrize("codec", CODECS)
def test_round_trip_every_codec_and_chunker(tmp_path, codec, chunker):
    image = mixed_image()
    src = tmp_path / "image"
    src.write_bytes(image)
    out = tmp_path / "image.cba"
    compress_ok("-i", src, out, "--compression", codec, *CHUNKERS[chunker], *SMALL)

    cba = read_cba(out)
    chunks = check_cba(cba, image)
    assert cba.codec == codec and cba.level == (0 if codec == "none" else 6)
    assert cba.algorithm == chunker
    assert len(chunks) > 50
    assert len(cba.descriptors) < len(cba.order), "repeated blocks should give identical chunks, stored once"
    if codec != "none":
        # the random stretches cannot shrink: stored raw; the zeros and text do
        sizes = [(d.archive_size, d.source_size) for d in cba.descriptors]
        assert any(a == s for a, s in sizes) and any(a < s for a, s in sizes)

    clone_ok(out, tmp_path / "store" / "rel")
    assert cat_checksum(tmp_path / "store" / "rel") == blake2b(image)


def test_chunker_params_in_the_header_are_bitas(tmp_path):
    src = tmp_path / "image"
    src.write_bytes(mixed_image(size=256 << 10))
    compress_ok("-i", src, tmp_path / "r.cba", "--avg-chunk-size", "100KiB", "--min-chunk-size", "3KiB",
                "--max-chunk-size", "1MiB", "--rolling-window-size", "48", "--hash-length", "20")
    r = read_cba(tmp_path / "r.cba")
    # average rounded down to a power of two: 64 KiB, 15 filter bits
    assert (r.algorithm, r.filter_bits, r.min_size, r.max_size, r.window, r.hash_length) == \
        ("RollSum", 15, 3 << 10, 1 << 20, 48, 20)
    assert (r.codec, r.level) == ("brotli", 6)
    assert r.app_version.startswith("ihop ")
    check_cba(r, src.read_bytes())

    compress_ok("-i", src, tmp_path / "b.cba", "--hash-chunking", "BuzHash")
    b = read_cba(tmp_path / "b.cba")
    assert (b.algorithm, b.filter_bits, b.min_size, b.max_size, b.window, b.hash_length) == \
        ("BuzHash", 15, 16 << 10, 16 << 20, 16, 64)  # bita's defaults, window 16 for BuzHash

    # fixed size: as bita, only the size (in max_chunk_size) and the hash length
    compress_ok("-i", src, tmp_path / "f.cba", "--fixed-size", "8KiB", "--compression", "zstd",
                "--compression-level", "19")
    f = read_cba(tmp_path / "f.cba")
    assert (f.algorithm, f.filter_bits, f.min_size, f.max_size, f.window) == ("fixed", 0, 0, 8 << 10, 0)
    assert (f.codec, f.level) == ("zstd", 19)
    assert [d.source_size for d in f.descriptors] == [8 << 10] * len(f.descriptors)
    check_cba(f, src.read_bytes())


GOLDEN = sorted(p.name for p in (FIXTURES / "golden").glob("*.sums"))


@pytest.mark.parametrize("name", GOLDEN)
def test_archive_chunks_match_bitas_vectors(tmp_path, name):
    """bita's tests/chunking.rs vectors, through `ihop compress` end to end:
    the first 16 bytes of each chunk's hash, in image order."""
    algo, source, *nums = name[:-len(".sums")].split("_")
    if algo == "fixed":
        args = ["--fixed-size", nums[0]]
    else:
        avg, mn, mx, win = nums
        args = ["--hash-chunking", {"rollsum": "RollSum", "buzhash": "BuzHash"}[algo], "--avg-chunk-size", avg,
                "--min-chunk-size", mn, "--max-chunk-size", mx, "--rolling-window-size", win]
    out = tmp_path / "v.cba"
    compress_ok("-i", FIXTURES / f"{source}.img", out, "--compression", "none", *args)
    cba = read_cba(out)
    sums = b"".join(cba.descriptors[i].checksum[:16] for i in cba.order)
    assert sums == (FIXTURES / "golden" / name).read_bytes()
    check_cba(cba, (FIXTURES / f"{source}.img").read_bytes())


@pytest.mark.parametrize("size", [0, 1, 5, 63, 64, 65, 1000, 16383, 16384, 16385])
def test_tiny_inputs_round_trip(tmp_path, size):
    """Empty input, and inputs below the window (64) and the minimum chunk (16 KiB)."""
    image = random.Random(size).randbytes(size)
    src = tmp_path / "image"
    src.write_bytes(image)
    compress_ok("-i", src, tmp_path / "t.cba")
    cba = read_cba(tmp_path / "t.cba")
    chunks = check_cba(cba, image)
    assert len(chunks) == (1 if size else 0)
    clone_ok(tmp_path / "t.cba", tmp_path / "store" / "t")
    assert cat_checksum(tmp_path / "store" / "t") == blake2b(image)
    r = run([IHOP, "info", tmp_path / "t.cba"])
    assert r.returncode == 0 and info_fields(r.stdout)["image size"].endswith(f"({size} bytes)")


def test_stdin_and_pipe_give_the_same_archive_as_a_file(tmp_path):
    image = mixed_image(seed=7)
    src = tmp_path / "image"
    src.write_bytes(image)
    compress_ok("-i", src, tmp_path / "file.cba", *SMALL)
    with open(src, "rb") as f:
        compress_ok(tmp_path / "stdin.cba", *SMALL, stdin=f)
    compress_ok(tmp_path / "pipe.cba", *SMALL, input=image)  # a pipe, read in pieces
    want = (tmp_path / "file.cba").read_bytes()
    assert (tmp_path / "stdin.cba").read_bytes() == want
    assert (tmp_path / "pipe.cba").read_bytes() == want
    check_cba(read_cba(tmp_path / "pipe.cba"), image)


def test_output_does_not_depend_on_thread_count(tmp_path):
    image = mixed_image(seed=3, size=3 << 20)
    src = tmp_path / "image"
    src.write_bytes(image)
    for jobs in (1, 2, 8):
        compress_ok("-i", src, tmp_path / f"j{jobs}.cba", "-j", jobs, *SMALL, "--compression", "zstd")
    want = (tmp_path / "j1.cba").read_bytes()
    assert (tmp_path / "j2.cba").read_bytes() == want
    assert (tmp_path / "j8.cba").read_bytes() == want


def test_big_identical_chunks_are_stored_once(tmp_path):
    """Zeros make max-size chunks (16 MiB by default), all identical."""
    image = bytes(40 << 20) + random.Random(5).randbytes(1 << 20) + bytes(20 << 20)
    src = tmp_path / "image"
    src.write_bytes(image)
    compress_ok("-i", src, tmp_path / "z.cba")
    cba = read_cba(tmp_path / "z.cba")
    check_cba(cba, image)
    uses = [cba.order.count(i) for i in range(len(cba.descriptors))]
    big = [i for i, d in enumerate(cba.descriptors) if d.source_size == 16 << 20 and uses[i] >= 2]
    assert len(big) == 1, "the zeros are one 16 MiB chunk, used at least twice"
    assert cba.descriptors[big[0]].archive_size < 64 << 10
    assert len(cba.data) < (1 << 20) + (256 << 10)  # the random MiB, and little else


@pytest.mark.parametrize("jobs", [1, 2])
def test_erased_flash_and_zeros_round_trip(tmp_path, jobs):
    """0xff (erased flash) and zeros, in chunks cut at the maximum and in
    chunks of data that run on into zeros: chunk buffers that held 0xff are
    used again for chunks whose zeros were never copied, and must not show
    through."""
    rnd = random.Random(7)
    # Odd sizes, so that zeros start inside a 1 MiB read, and chunks grow
    # past their first buffer after zeros were appended without a copy.
    image = b"".join(b"\xff" * (8 << 20) + rnd.randbytes((3 << 20) - 333 * 1024) + bytes((4 << 20) + 77 * 1024)
                     for _ in range(6))
    src = tmp_path / "image"
    src.write_bytes(image)
    compress_ok("-i", src, tmp_path / "f.cba", "-j", jobs, "--max-chunk-size", "4MiB", "--compression", "zstd")
    cba = read_cba(tmp_path / "f.cba")
    check_cba(cba, image)
    sizes = [cba.descriptors[i].source_size for i in cba.order]
    assert sizes.count(4 << 20) >= 8, "the 0xff runs are cut at the maximum"
    clone_ok(tmp_path / "f.cba", tmp_path / "store" / "f")
    assert cat_checksum(tmp_path / "store" / "f") == blake2b(image)


# --------------------------------------------------------------------------
# Metadata


def test_metadata_values_and_files_show_in_info(tmp_path):
    src = tmp_path / "image"
    src.write_bytes(b"x" * 1000)
    meta = tmp_path / "meta.txt"
    meta.write_bytes(b"from a file")
    binary = tmp_path / "blob"
    binary.write_bytes(bytes(range(256)))
    # options after the operand, two-value options among them
    compress_ok("-i", src, tmp_path / "m.cba", "--metadata-value", "version", "2.1",
                "--metadata-file", "notes", meta, "--metadata-value", "board", "rev-b",
                "--metadata-file", "blob", binary,
                "--metadata-value", "board", "rev-c",         # a key given again: the last wins
                "--metadata-value", "notes", "overridden?")   # a file beats a string, as in bita
    cba = read_cba(tmp_path / "m.cba")
    check_cba(cba, src.read_bytes())
    assert cba.metadata == [("blob", bytes(range(256))), ("board", b"rev-c"), ("notes", b"from a file"),
                            ("version", b"2.1")]  # sorted by key, as bita's BTreeMap

    r = run([IHOP, "info", tmp_path / "m.cba"])
    assert r.returncode == 0, r.stderr
    lines = [l.split(None, 1)[1] for l in r.stdout.splitlines() if l.startswith("metadata:")]
    assert lines == ["blob = (256 bytes) " + bytes(range(256)).hex(), "board = rev-c", "notes = from a file",
                     "version = 2.1"]
    info = info_fields(r.stdout)
    assert info["created by"].startswith("ihop ")
    assert info["chunks"] == "1 in the image, 1 unique"
    assert info["compression"] == "brotli, level 6"
    assert info["chunk hash length"] == "64 bytes"
    assert info["header checksum"] == cba.header_checksum.hex()
    assert info["image checksum"] == blake2b(src.read_bytes()).hex()
    assert info["chunker"].startswith("RollSum, window 64, average 64.00 KiB (filter bits 15)")


def test_metadata_option_without_its_second_value_is_refused(tmp_path):
    r = compress("-i", FIXTURES / "zero.img", tmp_path / "m.cba", "--metadata-value", "key")
    assert r.returncode == 2
    assert_nothing_left(tmp_path)


# --------------------------------------------------------------------------
# Failures leave nothing


BAD_OPTIONS = [
    (["--compression-level", "12"], "level"),              # brotli stops at 11
    (["--compression", "lzma", "--compression-level", "10"], "level"),
    (["--compression-level", "0"], "level"),
    (["--compression", "gzip"], "compression"),
    (["--hash-length", "3"], "hash-length"),
    (["--hash-length", "65"], "hash-length"),
    (["--min-chunk-size", "128KiB"], "minimum"),
    (["--max-chunk-size", "32KiB"], "maximum"),
    (["--fixed-size", "4KiB", "--hash-chunking", "BuzHash"], "fixed-size"),
    (["--hash-chunking", "Rabin"], "hash-chunking"),
    (["--avg-chunk-size", "64XB"], "avg-chunk-size"),
    (["--rolling-window-size", "0"], "window"),
]


@pytest.mark.parametrize("args,needle", BAD_OPTIONS, ids=[" ".join(a) for a, _ in BAD_OPTIONS])
def test_bad_option_is_refused_and_leaves_nothing(tmp_path, args, needle):
    out = tmp_path / "out"
    out.mkdir()
    r = run([IHOP, "compress", "-i", FIXTURES / "zero.img", out / "x.cba", *args])
    assert r.returncode == 2
    assert_one_error_line(r, needle)
    assert_nothing_left(out)


def test_unreadable_input_leaves_nothing(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    r = run([IHOP, "compress", "-i", tmp_path / "missing.img", out / "x.cba"])
    assert_one_error_line(r, "missing.img")
    # a directory opens but cannot be read: the failure comes after the scratch file exists
    r = run([IHOP, "compress", "-i", tmp_path, out / "x.cba"])
    assert_one_error_line(r, "cannot read", str(tmp_path))
    assert_nothing_left(out)


def test_full_file_system_leaves_nothing(tmp_path, tmpfs):
    out = tmpfs("small", "size=1m")
    src = tmp_path / "image"
    src.write_bytes(random.Random(9).randbytes(3 << 20))
    r = run([IHOP, "compress", "-i", src, out / "x.cba", "--compression", "none"])
    assert_one_error_line(r, "No space left")
    assert_nothing_left(out)


def test_missing_output_directory_is_an_error(tmp_path):
    r = run([IHOP, "compress", "-i", FIXTURES / "zero.img", tmp_path / "no" / "x.cba"])
    assert_one_error_line(r, str(tmp_path / "no"))


def test_existing_output_is_refused_without_force(tmp_path):
    out = tmp_path / "x.cba"
    out.write_bytes(b"precious")
    r = run([IHOP, "compress", "-i", FIXTURES / "zero.img", out])
    assert_one_error_line(r, str(out), "exists")
    assert out.read_bytes() == b"precious"
    assert_nothing_left(tmp_path, keep={"x.cba"})

    for flag in ("-f", "--force-create"):
        r = run([IHOP, "compress", flag, "-i", FIXTURES / "zero.img", out])
        assert r.returncode == 0, r.stderr
        check_cba(read_cba(out), (FIXTURES / "zero.img").read_bytes())
        assert_nothing_left(tmp_path, keep={"x.cba"})


def test_output_that_is_a_directory_is_refused(tmp_path):
    r = run([IHOP, "compress", "-f", "-i", FIXTURES / "zero.img", tmp_path])
    assert_one_error_line(r, "directory")


# --------------------------------------------------------------------------
# diff against clone


def modified(image: bytes, rnd: random.Random) -> bytes:
    """A new release: a few regions overwritten, bytes inserted and removed."""
    b = bytearray(image)
    for _ in range(4):
        at = rnd.randrange(len(b) - 8192)
        b[at:at + 3000] = rnd.randbytes(3000)
    at = rnd.randrange(len(b))
    b[at:at] = rnd.randbytes(20000)           # insertion: content-defined chunking resyncs
    at = rnd.randrange(len(b) - 5000)
    del b[at:at + 5000]
    return bytes(b) + rnd.randbytes(30000)


def diff_fields(stdout: str) -> dict:
    out = {}
    for line in stdout.splitlines():
        m = re.match(r"^([a-z][a-z ]*):\s+(.*)$", line)
        if m:
            out[m[1]] = m[2]
    return out


def numbers(text: str):
    """The chunk count and the exact byte counts of a diff line."""
    count = int(re.match(r"(?:fetch )?(\d+) chunks", text)[1])
    return count, [int(x) for x in re.findall(r"\((\d+) bytes\)", text)]


def test_diff_agrees_with_what_clone_fetches(tmp_path, nginx):
    rnd = random.Random(11)
    a_img = rnd.randbytes(3 << 20)
    b_img = modified(a_img, rnd)
    for name, img in (("a", a_img), ("b", b_img)):
        (tmp_path / f"{name}.img").write_bytes(img)
        compress_ok("-i", tmp_path / f"{name}.img", tmp_path / f"{name}.cba", *SMALL)
    a, b = read_cba(tmp_path / "a.cba"), read_cba(tmp_path / "b.cba")
    check_cba(a, a_img)
    check_cba(b, b_img)
    have = {d.checksum for d in a.descriptors}
    new = [d for d in b.descriptors if d.checksum not in have]
    assert 0 < len(new) < len(b.descriptors) // 2, "the images should share most chunks"

    # images, archives and a mix all give the same answer
    results = {}
    for x, y in (("a.img", "b.img"), ("a.cba", "b.cba"), ("a.cba", "b.img"), ("a.img", "b.cba")):
        r = run([IHOP, "diff", *SMALL, tmp_path / x, tmp_path / y])
        assert r.returncode == 0, r.stderr
        results[(x, y)] = f = diff_fields(r.stdout)
        assert numbers(f["only in b"]) == (len(new), [sum(d.source_size for d in new)])
        shared = [d for d in b.descriptors if d.checksum in have]
        assert numbers(f["shared"])[0] == len(shared)
        assert numbers(f["shared"])[1][0] == sum(d.source_size for d in shared)
        assert numbers(f["b given a"])[0] == len(new)
    f = results[("a.cba", "b.cba")]
    assert f["b given a"].endswith("from the archive")
    fetch_compressed = sum(d.archive_size for d in new)
    assert numbers(f["b given a"])[1] == [sum(d.source_size for d in new), fetch_compressed]
    assert "about" in results[("a.img", "b.img")]["b given a"]  # an estimate: B is an image

    # a store holding A fetches exactly the chunks diff says, over HTTP
    store = tmp_path / "store"
    url_a = nginx.publish("compress/a.cba", (tmp_path / "a.cba").read_bytes())
    url_b = nginx.publish("compress/b.cba", (tmp_path / "b.cba").read_bytes())
    clone_ok(url_a, store / "a")
    mark = nginx.mark()
    s = parse_summary(clone_ok(url_b, store / "b").stdout)
    assert (s.fetched, s.reused) == (len(new), len(b.descriptors) - len(new))
    served = sum(e.body_bytes for e in nginx.entries(mark) if e.path == "/compress/b.cba")
    assert served == b.header_size + fetch_compressed
    assert cat_checksum(store / "b") == blake2b(b_img)


def test_diff_refuses_a_missing_input(tmp_path):
    r = run([IHOP, "diff", FIXTURES / "zero.img", tmp_path / "nope.img"])
    assert_one_error_line(r, "nope.img")
