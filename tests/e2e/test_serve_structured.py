# SPDX-License-Identifier: MIT
"""`ihop serve` with structured replies and block status (NBD's
"base:allocation" metadata context), which libnbd's tools, qemu and
nbdcopy negotiate whenever a server offers them.

Driven two ways: by nbdinfo --map, nbdcopy (libnbd) and qemu-img (qemu),
and by the tests' raw client (test_serve.RawNbd) taught structured replies,
which checks each reply chunk as the protocol defines it. The expected maps are computed here
from the image's own bytes: with fixed-size chunks every all-zero block is
one chunk used many times, which the server must report as a hole that
reads as zeros, and every other block as data."""

import json
import os
import random
import struct
import subprocess
from pathlib import Path

import pytest

from bita_archive import parse_archive
from ihop_run import IHOP, clone_ok, run
from test_serve import (EINVAL, EIO, EPERM, NBDCOPY, NBDINFO, OPT_GO, REP_ACK, REP_ERR_INVALID, REP_ERR_UNKNOWN,
                        STEP, CMD_DISC, CMD_FLUSH, CMD_READ, CMD_WRITE, RawNbd, chunk_path, image_of,
                        serve)  # noqa: F401

OPT_STRUCTURED_REPLY, OPT_LIST_META_CONTEXT, OPT_SET_META_CONTEXT = 8, 9, 10
REP_META_CONTEXT = 4
CMD_BLOCK_STATUS = 7
CMD_FLAG_REQ_ONE = 1 << 3
STRUCTURED_REPLY_MAGIC = 0x668E33EF
SIMPLE_REPLY_MAGIC = 0x67446698
REPLY_FLAG_DONE = 1
TYPE_NONE, TYPE_OFFSET_DATA, TYPE_BLOCK_STATUS = 0, 1, 5
TYPE_ERROR, TYPE_ERROR_OFFSET = (1 << 15) | 1, (1 << 15) | 2
STATE_HOLE, STATE_ZERO = 1, 2
REPLY_BUFFER = 128 << 10  # nbd_listener.h: larger reads are sent in pieces

BLOCK = 64 << 10
# D: a block of random bytes, Z: zeros. Runs of zeros of 1, 3 and 12 blocks,
# data runs of 1 and 2, then a tail shorter than a block.
PATTERN = "DZZZDZDDZZZZZZZZZZZZD"
TAIL = 1000


class Structured(RawNbd):
    """RawNbd speaking structured replies: every reply is read chunk by
    chunk until the one flagged done, and each chunk is checked."""

    def structured(self):
        self.send_option(OPT_STRUCTURED_REPLY)
        opt, rtype, data = self.option_reply()
        assert (opt, rtype, data) == (OPT_STRUCTURED_REPLY, REP_ACK, b"")

    def meta(self, option, export, *queries):
        """LIST or SET_META_CONTEXT: ([(id, name)], final reply type)."""
        n = export.encode()
        self.send_option(option, struct.pack(">I", len(n)) + n + struct.pack(">I", len(queries)) +
                         b"".join(struct.pack(">I", len(q)) + q.encode() for q in queries))
        contexts = []
        while True:
            opt, rtype, data = self.option_reply()
            assert opt == option
            if rtype != REP_META_CONTEXT:
                return contexts, rtype
            contexts.append((struct.unpack(">I", data[:4])[0], data[4:].decode()))

    def go_structured(self, name, context=True):
        self.hello()
        self.structured()
        if context:
            contexts, rtype = self.meta(OPT_SET_META_CONTEXT, name, "base:allocation")
            assert rtype == REP_ACK and len(contexts) == 1, contexts
            self.context_id = contexts[0][0]
        self.info(name, OPT_GO)
        return self

    def chunks(self, cookie):
        """The chunks of one structured reply: [(flags, type, payload)]."""
        out = []
        while True:
            magic, flags, rtype, got, length = struct.unpack(">IHHQI", self.recv_exact(20))
            assert magic == STRUCTURED_REPLY_MAGIC, hex(magic)
            assert got == cookie, f"chunk for cookie {got:#x}, expected {cookie:#x}"
            out.append((flags, rtype, self.recv_exact(length)))
            if flags & REPLY_FLAG_DONE:
                return out

    def sread(self, offset, length):
        """A structured read: (error or 0, data assembled, the chunks). The
        data chunks must lie within the request and not overlap; without
        an error they must cover it all."""
        cookie = self.request(CMD_READ, offset, length)
        chunks = self.chunks(cookie)
        buf, covered, error = bytearray(length), [], 0
        for flags, rtype, payload in chunks:
            if rtype == TYPE_OFFSET_DATA:
                (at,) = struct.unpack(">Q", payload[:8])
                data = payload[8:]
                assert len(data) > 0 and offset <= at and at + len(data) <= offset + length
                assert all(at + len(data) <= s or e <= at for s, e in covered), "overlapping chunks"
                covered.append((at, at + len(data)))
                buf[at - offset:at - offset + len(data)] = data
            elif rtype in (TYPE_ERROR, TYPE_ERROR_OFFSET):
                error, msg_len = struct.unpack(">IH", payload[:6])
                assert error != 0 and 6 + msg_len <= len(payload)
            else:
                assert rtype == TYPE_NONE and payload == b"" and flags & REPLY_FLAG_DONE, (flags, rtype)
        if error == 0:
            assert sum(e - s for s, e in covered) == length, "the data chunks do not cover the read"
        return error, bytes(buf), chunks

    def block_status(self, offset, length, flags=0):
        """(error or 0, [(length, flags)]) for base:allocation."""
        cookie = self.request(CMD_BLOCK_STATUS, offset, length, flags=flags)
        chunks = self.chunks(cookie)
        assert len(chunks) == 1, chunks
        flags_, rtype, payload = chunks[0]
        if rtype == TYPE_ERROR:
            return struct.unpack(">I", payload[:4])[0], []
        assert rtype == TYPE_BLOCK_STATUS, rtype
        (cid,) = struct.unpack(">I", payload[:4])
        assert cid == self.context_id
        body = payload[4:]
        assert body and len(body) % 8 == 0
        return 0, [struct.unpack(">II", body[i:i + 8]) for i in range(0, len(body), 8)]

    def simple_reply(self, cookie):
        magic, error, got = struct.unpack(">IIQ", self.recv_exact(16))
        assert magic == SIMPLE_REPLY_MAGIC and got == cookie
        return error


def expected_runs(image: bytes, block: int):
    """[(offset, length, zero)] of the image: its blocks of zeros, merged."""
    runs = []
    for off in range(0, len(image), block):
        z = image[off:off + block].count(0) == len(image[off:off + block])
        if runs and runs[-1][2] == z:
            runs[-1][1] += len(image[off:off + block])
        else:
            runs.append([off, len(image[off:off + block]), z])
    return [tuple(r) for r in runs]


def descriptors_to_runs(offset, descriptors):
    runs, at = [], offset
    for length, flags in descriptors:
        assert length > 0
        assert flags in (0, STATE_HOLE | STATE_ZERO), flags
        runs.append((at, length, flags == STATE_HOLE | STATE_ZERO))
        at += length
    return runs


def make_release(tmp: Path, pattern: str, block: int, tail: int, name: str):
    rnd = random.Random(name)
    image = b"".join(rnd.randbytes(block) if c == "D" else bytes(block) for c in pattern) + rnd.randbytes(tail)
    (tmp / f"{name}.img").write_bytes(image)
    r = run([IHOP, "compress", "--fixed-size", str(block), "-i", tmp / f"{name}.img", tmp / f"{name}.cba"])
    assert r.returncode == 0, r.stderr
    clone_ok(tmp / f"{name}.cba", tmp / "store" / name)
    return image


@pytest.fixture(scope="module")
def holes(tmp_path_factory):
    """A release of 64 KiB fixed-size chunks with runs of zeros, and one
    of 4 KiB chunks alternating data and zeros 600 times (more runs than
    one reply gives)."""
    tmp = tmp_path_factory.mktemp("holes")
    images = {"holes": make_release(tmp, PATTERN, BLOCK, TAIL, "holes"),
              "stripes": make_release(tmp, "DZ" * 600, 4096, 0, "stripes")}
    return tmp / "store", images


def test_nbdinfo_map_reports_the_runs_of_zeros_as_holes(serve, holes):
    store, images = holes
    srv = serve([store / "holes"])
    r = run([NBDINFO, "--map", "--json", srv.uri("holes")], timeout=STEP)
    assert r.returncode == 0, r.stderr
    got = [(e["offset"], e["length"], e["type"] == STATE_HOLE | STATE_ZERO) for e in json.loads(r.stdout)]
    assert all(e["type"] in (0, 3) for e in json.loads(r.stdout))
    assert got == expected_runs(images["holes"], BLOCK)
    # every run of zeros is there, and data runs too
    assert [z for _, _, z in got] == [False, True, False, True, False, True, False]
    assert srv.stop() == 0


def test_nbdcopy_skips_the_holes_and_copies_bit_perfect(serve, holes, tmp_path):
    store, images = holes
    srv = serve([store / "holes"])
    out = tmp_path / "copy.img"
    r = run([NBDCOPY, srv.uri("holes"), out], timeout=STEP)
    assert r.returncode == 0, r.stderr
    assert out.read_bytes() == images["holes"]
    data = sum(n for _, n, z in expected_runs(images["holes"], BLOCK) if not z)
    # nbdcopy wrote only the data: the zeros are holes in the copy
    assert out.stat().st_blocks * 512 < data + 2 * BLOCK, (out.stat().st_blocks * 512, data)
    assert srv.stop() == 0


def test_qemu_img_maps_and_converts_with_the_holes(serve, holes, tmp_path):
    """qemu's own NBD client: `qemu-img map` sees the same runs, and
    `qemu-img convert` writes a sparse copy. (qemu rounds an export's size
    up to 512 bytes: the image's 1000-byte tail leaves 24 bytes past the
    end, which qemu shows as zeros of its own making.)"""
    store, images = holes
    image = images["holes"]
    srv = serve([store / "holes"])
    r = run(["qemu-img", "map", "--output=json", "-f", "raw", srv.uri("holes")], timeout=STEP)
    assert r.returncode == 0, r.stderr
    got = [(e["start"], e["length"], e["zero"] and not e["data"]) for e in json.loads(r.stdout)
           if e["start"] < len(image)]
    assert got == expected_runs(image, BLOCK)
    out = tmp_path / "copy.img"
    r = run(["qemu-img", "convert", "-f", "raw", "-O", "raw", srv.uri("holes"), out], timeout=STEP)
    assert r.returncode == 0, r.stderr
    copy = out.read_bytes()
    assert copy[:len(image)] == image and copy[len(image):] == bytes(-len(image) % 512)
    data = sum(n for _, n, z in expected_runs(image, BLOCK) if not z)
    assert out.stat().st_blocks * 512 < data + 2 * BLOCK, (out.stat().st_blocks * 512, data)
    assert srv.stop() == 0


def test_block_status_of_any_range(serve, holes):
    """Ranges starting and ending inside chunks: the descriptors start at
    the offset, follow one another, stay within the request, and say
    exactly what the image holds there."""
    store, images = holes
    image = images["holes"]
    srv = serve([store / "holes"])
    with Structured(srv.sock) as c:
        c.go_structured("holes")
        full = expected_runs(image, BLOCK)
        for offset, length in [(0, len(image)), (1, len(image) - 1), (BLOCK + 5, 3 * BLOCK),
                               (8 * BLOCK + 17, 2 * BLOCK), (len(image) - 1, 1), (BLOCK - 1, 2)]:
            error, d = c.block_status(offset, length)
            assert error == 0
            runs = descriptors_to_runs(offset, d)
            assert sum(n for _, n, _ in runs) == length
            want = [(max(o, offset), min(o + n, offset + length) - max(o, offset), z) for o, n, z in full
                    if o < offset + length and o + n > offset]
            assert runs == want, (offset, length)
        # REQ_ONE: one descriptor, the first run, no longer than asked
        error, d = c.block_status(BLOCK, len(image) - BLOCK, CMD_FLAG_REQ_ONE)
        assert error == 0 and d == [(3 * BLOCK, STATE_HOLE | STATE_ZERO)]
        error, d = c.block_status(BLOCK + 10, 20, CMD_FLAG_REQ_ONE)
        assert error == 0 and d == [(20, STATE_HOLE | STATE_ZERO)]
        # refused: nothing, past the end, across the end
        for offset, length in [(0, 0), (len(image), 1), (len(image) - 1, 2), (1 << 62, 512)]:
            assert c.block_status(offset, length) == (EINVAL, []), (offset, length)
        # and the connection goes on
        assert c.sread(0, 4096)[:2] == (0, image[:4096])
    assert srv.stop() == 0


def test_block_status_of_many_runs_continues_where_a_reply_ends(serve, holes):
    """1,200 runs: a reply gives some of them (at most 256), never more
    than asked; asking again from its end gives the rest, all right."""
    store, images = holes
    image = images["stripes"]
    srv = serve([store / "stripes"])
    with Structured(srv.sock) as c:
        c.go_structured("stripes")
        at, runs, replies = 0, [], 0
        while at < len(image):
            error, d = c.block_status(at, len(image) - at)
            assert error == 0 and 0 < len(d) <= 256
            got = descriptors_to_runs(at, d)
            at += sum(n for _, n, _ in got)
            runs += got
            replies += 1
        assert at == len(image) and replies >= 5
        assert runs == expected_runs(image, 4096)
        assert len(runs) == 1200
    assert srv.stop() == 0


def test_structured_reads_whole_and_in_pieces(serve, holes):
    """Reads small enough to be answered whole come as one data chunk
    flagged done; larger ones as several, covering the read exactly once.
    Either way the bytes are the image's."""
    store, images = holes
    image = images["holes"]
    srv = serve([store / "holes"])
    with Structured(srv.sock) as c:
        c.go_structured("holes")
        error, data, chunks = c.sread(100, 5000)
        assert error == 0 and data == image[100:5100]
        assert [(f, t) for f, t, _ in chunks] == [(REPLY_FLAG_DONE, TYPE_OFFSET_DATA)]
        error, data, chunks = c.sread(7, len(image) - 8)
        assert error == 0 and data == image[7:-1]
        assert len([1 for _, t, _ in chunks if t == TYPE_OFFSET_DATA]) >= (len(image) - 8) // REPLY_BUFFER
        # an empty read: a reply with nothing in it
        error, data, chunks = c.sread(len(image), 0)
        assert (error, chunks) == (0, [(REPLY_FLAG_DONE, TYPE_NONE, b"")])
        # out of bounds: an error chunk, and the connection goes on
        error, _, chunks = c.sread(len(image) - 1, 2)
        assert error == EINVAL and [t for _, t, _ in chunks] == [TYPE_ERROR]
        # commands with no data keep their simple replies
        assert c.simple_reply(c.request(CMD_WRITE, 0, 4, b"abcd")) == EPERM
        assert c.simple_reply(c.request(CMD_FLUSH)) == 0
        assert c.sread(len(image) - 10, 10)[:2] == (0, image[-10:])
        c.request(CMD_DISC)
        assert c.closed_by_peer()
    assert srv.stop() == 0


def test_a_read_failing_after_its_first_piece_is_an_error_for_its_offset(serve, holes, tmp_path):
    """A chunk file cut short under the server (found only when read) in the middle of a
    read sent in pieces: the pieces before it arrive, then an error chunk
    naming where it failed; with structured replies the connection need
    not close, and the next read is answered."""
    store_src, images = holes
    store = tmp_path / "store"
    subprocess.run(["cp", "-a", str(store_src), str(store)], check=True)
    image = images["holes"]
    victim_block = 6  # 'D', its chunk used once
    a = parse_archive(store_src.parent / "holes.cba")
    chunk = a.chunks[a.order[victim_block]]
    srv = serve([store / "holes"])
    os.truncate(chunk_path(store, chunk), 100)  # after the server's check of the store
    with Structured(srv.sock) as c:
        c.go_structured("holes")
        start = 0
        error, data, chunks = c.sread(start, 8 * BLOCK)
        assert error == EIO
        assert chunks[-1][1] == TYPE_ERROR_OFFSET and chunks[-1][0] & REPLY_FLAG_DONE
        (fail_at,) = struct.unpack(">Q", chunks[-1][2][6:14])
        assert start < fail_at <= victim_block * BLOCK
        # what was sent before the error is the image's
        sent = [(struct.unpack(">Q", pl[:8])[0], pl[8:]) for _, t, pl in chunks if t == TYPE_OFFSET_DATA]
        assert sent and all(image[at:at + len(d)] == d for at, d in sent)
        assert sum(len(d) for _, d in sent) == fail_at - start
        # the connection goes on
        assert c.sread(0, 4096)[:2] == (0, image[:4096])
    assert srv.alive()
    assert srv.stop() == 0


def test_meta_context_negotiation(serve, holes):
    store, images = holes
    srv = serve([store / "holes", store / "stripes"])
    with Structured(srv.sock) as c:
        c.hello()
        # before structured replies: refused (their replies need them)
        assert c.meta(OPT_SET_META_CONTEXT, "holes", "base:allocation") == ([], REP_ERR_INVALID)
        assert c.meta(OPT_LIST_META_CONTEXT, "holes") == ([], REP_ERR_INVALID)
        c.send_option(OPT_STRUCTURED_REPLY, b"x")  # it takes no data
        assert c.option_reply()[1] == REP_ERR_INVALID
        c.structured()
        # LIST: everything, or what the queries select; ids are zero
        assert c.meta(OPT_LIST_META_CONTEXT, "holes") == ([(0, "base:allocation")], REP_ACK)
        assert c.meta(OPT_LIST_META_CONTEXT, "", "base:") == ([(0, "base:allocation")], REP_ACK)
        assert c.meta(OPT_LIST_META_CONTEXT, "holes", "qemu:dirty-bitmap:x") == ([], REP_ACK)
        assert c.meta(OPT_LIST_META_CONTEXT, "nope", "base:") == ([], REP_ERR_UNKNOWN)
        # malformed: a query longer than the option, a count beyond its queries
        c.send_option(OPT_SET_META_CONTEXT, struct.pack(">I", 5) + b"holes" + struct.pack(">II", 1, 99) + b"base:")
        assert c.option_reply()[1] == REP_ERR_INVALID
        c.send_option(OPT_SET_META_CONTEXT, struct.pack(">I", 5) + b"holes" + struct.pack(">II", 2, 5) + b"base:")
        assert c.option_reply()[1] == REP_ERR_INVALID
        # SET: a nonzero id; nothing when nothing known is asked for
        assert c.meta(OPT_SET_META_CONTEXT, "holes") == ([], REP_ACK)
        contexts, rtype = c.meta(OPT_SET_META_CONTEXT, "holes", "x-other:thing", "base:allocation")
        assert rtype == REP_ACK and len(contexts) == 1 and contexts[0][1] == "base:allocation"
        assert contexts[0][0] != 0
        # chosen for "holes", so not for "stripes": block status is refused there
        c.info("stripes", OPT_GO)
        c.context_id = contexts[0][0]
        assert c.block_status(0, 4096) == (EINVAL, [])
        assert c.sread(0, 4096)[:2] == (0, images["stripes"][:4096])
    # structured replies without a context: reads structured, no block status
    with Structured(srv.sock) as c:
        c.go_structured("holes", context=False)
        c.context_id = None
        assert c.block_status(0, 4096) == (EINVAL, [])
        assert c.sread(BLOCK, 10)[:2] == (0, images["holes"][BLOCK:BLOCK + 10])
    # a client that negotiates nothing still gets simple replies
    with Structured(srv.sock) as c:
        c.go("holes")
        assert c.read(0, 100) == (0, images["holes"][:100])
    assert srv.stop() == 0


def test_image_of_the_served_releases(holes):
    """The releases are what the tests above take them for."""
    store, images = holes
    for name, image in images.items():
        assert image_of(store / name) == image
