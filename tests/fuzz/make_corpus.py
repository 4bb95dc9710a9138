#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Makes the seed corpora of the fuzz targets, tests/fuzz/corpus/NAME/, from
the fixtures and from real runs of ihop and of NBD clients. Run by hand when
a format or the protocol changes; what it writes is committed.

    IHOP=build/src/ihop python3 tests/fuzz/make_corpus.py

archive/       bita's fixture archives (whole when small, else their header
               and a little data), and small archives `ihop compress` makes
               with every codec and chunker
release_file/  the release descriptions `ihop clone` writes for those
nbd_server/    client byte streams recorded through a proxy on 127.0.0.1 in
               front of `ihop serve`: nbdinfo, nbdinfo --list, nbdcopy and
               qemu-img info on a release the size of fuzz_nbd_server.c's
               export (qemu-img convert is left out: qemu 7.2 waits forever
               for the padding of its read of an unaligned export's tail);
               and sessions written here for what those clients never send
               (writes, trims, the padded export, old-style EXPORT_NAME, ...)
chunker/       inputs in fuzz_chunker.c's layout (see there)
minisign/      key and signature files made by `ihop keygen`/`ihop sign` and
               by minisign itself (with and without a password, prehashed and
               legacy), and trusted comments, each after fuzz_minisign.c's
               selector byte

    python3 tests/fuzz/make_corpus.py [TARGET...]   (default: every target)

Needs ihop built, nbdinfo and nbdcopy (libnbd-bin), qemu-img (qemu-utils).
Every server listens on a unix socket or 127.0.0.1 only, and is stopped at
the end; every client runs with a timeout.
"""

import hashlib
import os
import random
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
FIXTURES = ROOT / "tests" / "fixtures"
CORPUS = HERE / "corpus"
IHOP = os.environ.get("IHOP", str(ROOT / "build" / "src" / "ihop"))
TIMEOUT = 60

# fuzz_nbd_server.c's export: "tiny" (also the default) and "tiny-padded".
EXPORT_SIZE = 3033
EXPORT = "tiny"


def run(*args, **kw):
    return subprocess.run([str(a) for a in args], check=True, timeout=TIMEOUT,
                          stdin=subprocess.DEVNULL, capture_output=True, **kw)


def write(target, name, data):
    d = CORPUS / target
    d.mkdir(parents=True, exist_ok=True)
    (d / name).write_bytes(data)


def fresh(target):
    shutil.rmtree(CORPUS / target, ignore_errors=True)


# --------------------------------------------------------------------------
# archive and release_file


def header_length(data):
    return 14 + struct.unpack_from("<Q", data, 6)[0] + 8 + 64


def test_image(size, seed):
    """Some random data, some repeated, some zeros: chunks of every kind."""
    rng = random.Random(seed)
    block = bytes(rng.getrandbits(8) for _ in range(3000))
    out = bytearray()
    while len(out) < size:
        kind = rng.randrange(3)
        if kind == 0:
            out += bytes(rng.getrandbits(8) for _ in range(rng.randrange(100, 4000)))
        elif kind == 1:
            out += block
        else:
            out += bytes(rng.randrange(1, 5000))
    return bytes(out[:size])


ARCHIVE_OPTIONS = {
    # name: ihop compress options (small chunks: many chunks in a few KiB)
    "rollsum-brotli": ["--avg-chunk-size", "1KiB", "--min-chunk-size", "256B", "--max-chunk-size", "4KiB"],
    "buzhash-zstd": ["--hash-chunking", "BuzHash", "--avg-chunk-size", "1KiB", "--min-chunk-size", "256B",
                     "--max-chunk-size", "4KiB", "--compression", "zstd", "--hash-length", "8"],
    "rollsum-lzma": ["--avg-chunk-size", "2KiB", "--min-chunk-size", "512B", "--max-chunk-size", "8KiB",
                     "--compression", "lzma", "--hash-length", "32"],
    "fixed-none": ["--fixed-size", "1500", "--compression", "none", "--hash-length", "4",
                   "--metadata-value", "version", "1.2.3"],
}


def make_archives_and_releases(tmp):
    fresh("archive")
    fresh("release_file")
    for cba in sorted(FIXTURES.glob("*.cba")) + sorted((FIXTURES / "pair").glob("*.cba")):
        data = cba.read_bytes()
        if len(data) > 4096:
            # The header, and the first chunks' data where the header is small.
            data = data[:max(header_length(data), min(len(data), 8192))]
        write("archive", "bita-" + cba.name, data)

    image = tmp / "image"
    image.write_bytes(test_image(24 << 10, 1))
    store = tmp / "store"
    for name, opts in ARCHIVE_OPTIONS.items():
        out = tmp / (name + ".cba")
        run(IHOP, "compress", *opts, "-i", image, out)
        write("archive", "ihop-" + name + ".cba", out.read_bytes())
        run(IHOP, "clone", out, store / name)
        write("release_file", "ihop-" + name, (store / name).read_bytes())
    # A release of bita's own: BuzHash, no compression, 64-byte hashes.
    run(IHOP, "clone", FIXTURES / "rand-0_1_1-none.cba", store / "rand")
    write("release_file", "bita-rand-0_1_1-none", (store / "rand").read_bytes())


# --------------------------------------------------------------------------
# nbd_server: recorded sessions


class Recorder:
    """A TCP proxy on 127.0.0.1 in front of a unix socket, keeping what each
    client sent."""

    def __init__(self, upstream):
        self.upstream = upstream
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(16)
        self.port = self.listener.getsockname()[1]
        self.sessions = []
        self.threads = []
        self.lock = threading.Lock()
        self.accepting = threading.Thread(target=self.accept_loop, daemon=True)
        self.accepting.start()

    def accept_loop(self):
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            t = threading.Thread(target=self.relay, args=(client,))
            t.start()
            self.threads.append(t)

    def relay(self, client):
        server = socket.socket(socket.AF_UNIX)
        server.connect(str(self.upstream))
        sent = bytearray()

        def pump(src, dst, keep):
            while True:
                data = src.recv(65536)
                if not data:
                    break
                if keep is not None:
                    keep += data
                dst.sendall(data)
            try:
                dst.shutdown(socket.SHUT_WR)
            except OSError:
                pass

        back = threading.Thread(target=pump, args=(server, client, None))
        back.start()
        try:
            pump(client, server, sent)
        except OSError:
            pass
        back.join(TIMEOUT)
        client.close()
        server.close()
        with self.lock:
            self.sessions.append(bytes(sent))

    def take(self):
        """The sessions so far, once all their connections have ended."""
        for t in self.threads:
            t.join(TIMEOUT)
        self.threads = []
        with self.lock:
            s, self.sessions = self.sessions, []
        return s

    def close(self):
        self.listener.close()


def record_sessions(tmp):
    image = tmp / "export"
    image.write_bytes(test_image(EXPORT_SIZE, 2))
    run(IHOP, "compress", "--fixed-size", "1000", "-i", image, tmp / "export.cba")
    run(IHOP, "clone", tmp / "export.cba", tmp / "nbdstore" / EXPORT)
    sock = tmp / "nbd.sock"
    server = subprocess.Popen([IHOP, "serve", "--unix", str(sock), str(tmp / "nbdstore" / EXPORT)],
                              stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    rec = None
    try:
        deadline = time.monotonic() + TIMEOUT
        while not sock.exists():
            assert server.poll() is None and time.monotonic() < deadline, "ihop serve did not start"
            time.sleep(0.05)
        rec = Recorder(sock)
        url = f"nbd://127.0.0.1:{rec.port}"
        clients = {
            "nbdinfo": ["nbdinfo", url],
            "nbdinfo-list": ["nbdinfo", "--list", url],
            "nbdinfo-size": ["nbdinfo", "--size", f"{url}/{EXPORT}"],
            "nbdinfo-map": ["nbdinfo", "--map", f"{url}/{EXPORT}"],
            "nbdcopy": ["nbdcopy", f"{url}/{EXPORT}", tmp / "copy.raw"],
            "nbdcopy-sync": ["nbdcopy", "--synchronous", "--connections=1", f"{url}/{EXPORT}", "null:"],
            "qemu-img-info": ["qemu-img", "info", "-f", "raw", f"{url}/{EXPORT}"],
        }
        seen = set()
        for name, args in clients.items():
            run(*args)
            sessions = rec.take()
            assert sessions, f"{name} made no connection"
            new = sorted(set(sessions) - seen)
            seen.update(new)
            for i, s in enumerate(new):
                write("nbd_server", f"{name}-{i}" if len(new) > 1 else name, s)
    finally:
        if rec:
            rec.close()
        server.terminate()
        server.wait(TIMEOUT)


# --------------------------------------------------------------------------
# nbd_server: sessions written here

OPTS_MAGIC = b"IHAVEOPT"
REQUEST_MAGIC = 0x25609513
OPT_EXPORT_NAME, OPT_ABORT, OPT_LIST, OPT_STARTTLS, OPT_INFO, OPT_GO = 1, 2, 3, 5, 6, 7
OPT_STRUCTURED_REPLY, OPT_LIST_META_CONTEXT, OPT_SET_META_CONTEXT = 8, 9, 10
INFO_NAME, INFO_DESCRIPTION, INFO_BLOCK_SIZE = 1, 2, 3
CMD_READ, CMD_WRITE, CMD_DISC, CMD_FLUSH, CMD_TRIM, CMD_CACHE, CMD_WRITE_ZEROES = 0, 1, 2, 3, 4, 5, 6
CMD_BLOCK_STATUS, CMD_FLAG_REQ_ONE = 7, 8
CLIENT_FLAGS = struct.pack(">I", 3)  # fixed newstyle, no zeroes


def option(opt, data=b""):
    return OPTS_MAGIC + struct.pack(">II", opt, len(data)) + data


def go(name, *info, opt=OPT_GO):
    n = name.encode()
    return option(opt, struct.pack(">I", len(n)) + n + struct.pack(">H", len(info)) +
                  b"".join(struct.pack(">H", i) for i in info))


def meta_context(opt, name, *queries):
    n = name.encode()
    return option(opt, struct.pack(">I", len(n)) + n + struct.pack(">I", len(queries)) +
                  b"".join(struct.pack(">I", len(q)) + q.encode() for q in queries))


def request(cmd, offset=0, length=0, cookie=1, flags=0):
    return struct.pack(">IHHQQI", REQUEST_MAGIC, flags, cmd, cookie, offset, length)


def written_sessions():
    disc = request(CMD_DISC)
    return {
        "export-name-commands": CLIENT_FLAGS + option(OPT_EXPORT_NAME, EXPORT.encode()) +
        request(CMD_READ, 0, 512) + request(CMD_READ, EXPORT_SIZE - 100, 100, 2) +
        request(CMD_WRITE, 0, 16, 3) + bytes(16) + request(CMD_TRIM, 0, 4096, 4) +
        request(CMD_WRITE_ZEROES, 0, 4096, 5) + request(CMD_FLUSH, cookie=6) +
        request(CMD_CACHE, 0, 4096, 7) + request(99, cookie=8) + disc,
        "export-name-with-zeroes": struct.pack(">I", 1) + option(OPT_EXPORT_NAME, b"") +
        request(CMD_READ, 1000, 1000) + disc,
        "padded-tail": CLIENT_FLAGS + go("tiny-padded", INFO_BLOCK_SIZE) +
        request(CMD_READ, EXPORT_SIZE - 33, 4096 - EXPORT_SIZE + 33) + request(CMD_READ, 4000, 96, 2) +
        request(CMD_READ, 4000, 200, 3) + disc,
        "reads-past-end": CLIENT_FLAGS + go(EXPORT) + request(CMD_READ, EXPORT_SIZE, 1) +
        request(CMD_READ, 1 << 62, 512, 2) + request(CMD_READ, 0, (32 << 20) + 1, 3) +
        request(CMD_READ, 999, 2, 4) + disc,
        "options": CLIENT_FLAGS + option(OPT_LIST) + option(OPT_LIST, b"x") + option(OPT_STARTTLS) +
        go("nonexistent", opt=OPT_INFO) + go(EXPORT, INFO_NAME, INFO_DESCRIPTION, INFO_BLOCK_SIZE, opt=OPT_INFO) +
        option(OPT_INFO, b"\0\0\0\5ab") + option(OPT_ABORT),
        "structured": CLIENT_FLAGS + meta_context(OPT_SET_META_CONTEXT, EXPORT, "base:allocation") +
        option(OPT_STRUCTURED_REPLY, b"x") + option(OPT_STRUCTURED_REPLY) +
        meta_context(OPT_LIST_META_CONTEXT, EXPORT) + meta_context(OPT_LIST_META_CONTEXT, "", "base:", "x-a:b") +
        meta_context(OPT_SET_META_CONTEXT, "nonexistent", "base:allocation") +
        option(OPT_SET_META_CONTEXT, b"\0\0\0\4tiny\0\0\0\2\0\0\0\5base:") +
        meta_context(OPT_SET_META_CONTEXT, EXPORT, "base:allocation") + go(EXPORT) +
        request(CMD_BLOCK_STATUS, 0, EXPORT_SIZE) + request(CMD_BLOCK_STATUS, 10, 3000, 2, CMD_FLAG_REQ_ONE) +
        request(CMD_BLOCK_STATUS, 0, 0, 3) + request(CMD_BLOCK_STATUS, EXPORT_SIZE, 1, 4) +
        request(CMD_READ, 0, EXPORT_SIZE, 5) + request(CMD_READ, 1500, 100, 6) + request(CMD_READ, 0, 0, 7) +
        request(CMD_READ, EXPORT_SIZE, 1, 8) + request(CMD_WRITE, 0, 4, 9) + bytes(4) + request(CMD_FLUSH, cookie=10) +
        disc,
        "structured-elsewhere": CLIENT_FLAGS + option(OPT_STRUCTURED_REPLY) +
        meta_context(OPT_SET_META_CONTEXT, EXPORT, "base:") + go("tiny-padded") +
        request(CMD_BLOCK_STATUS, 0, 4096) + request(CMD_READ, 3000, 1096, 2) + disc,
        "long-option": CLIENT_FLAGS + option(0x1234, bytes(5000)) + go("") + request(CMD_READ, 0, 8) + disc,
    }


def make_nbd_corpus(tmp):
    fresh("nbd_server")
    record_sessions(tmp)
    for name, data in written_sessions().items():
        write("nbd_server", name, data)


# --------------------------------------------------------------------------
# chunker: params, pieces, data program (fuzz_chunker.c)


def chunker_input(algorithm, bits, max_size, min_size, window, pieces, program):
    head = struct.pack("<BBHHH", algorithm, bits - 1, max_size - 1, min_size, window - 1)
    head += struct.pack("<B", len(pieces)) + b"".join(struct.pack("<H", p) for p in pieces)
    return head + program


def literal(data):
    out = b""
    for i in range(0, len(data), 128):
        part = data[i:i + 128]
        out += bytes([len(part) - 1]) + part
    return out


def byte_run(value, n):
    out = b""
    while n > 0:
        part = min(n, 8192)
        out += bytes([0xe0 | ((part - 1) >> 8), value, (part - 1) & 0xff])
        n -= part
    return out


def make_chunker_corpus():
    fresh("chunker")
    rng = random.Random(3)
    noise = bytes(rng.getrandbits(8) for _ in range(1500))
    mixed = literal(noise[:700]) + byte_run(0, 9000) + literal(noise[700:]) + byte_run(0xff, 5000) + \
        literal(noise[:64]) + byte_run(0x55, 70)
    ROLLSUM, BUZHASH, FIXED = 1, 0, 2
    seeds = {
        # bita's streaming_chunker test parameters, and small windows, min and max
        "rollsum-small": (ROLLSUM, 5, 64, 10, 10, [1]),
        "buzhash-small": (BUZHASH, 5, 64, 10, 10, [1]),
        "buzhash-warmup-is-max": (BUZHASH, 4, 64, 3, 64, [7, 0]),
        "rollsum-runs": (ROLLSUM, 8, 20000, 2048, 64, [4096, 1, 333]),
        "rollsum-big-window": (ROLLSUM, 6, 60000, 8000, 5000, []),
        "buzhash-runs": (BUZHASH, 8, 20000, 2048, 16, [5000, 3]),
        "fixed-300": (FIXED, 1, 300, 0, 1, [17, 4096]),
    }
    for name, (algo, bits, mx, mn, win, pieces) in seeds.items():
        write("chunker", name, chunker_input(algo, bits, mx, mn, win, pieces, mixed))


def make_minisign_corpus(tmp):
    fresh("minisign")
    pw = "fuzz password\n"
    (tmp / "m.img").write_bytes(test_image(256 << 10, "minisign"))
    run(IHOP, "compress", "-i", tmp / "m.img", tmp / "m.cba")
    run(IHOP, "keygen", "-W", "-p", tmp / "ihop.pub", "-s", tmp / "ihop.key")
    run(IHOP, "sign", "-s", tmp / "ihop.key", "--release-version", "7", "-t", "fuzz", tmp / "m.cba")
    subprocess.run([IHOP, "keygen", "-p", tmp / "ihoppw.pub", "-s", tmp / "ihoppw.key"], input=pw.encode(),
                   check=True, capture_output=True, timeout=TIMEOUT)
    subprocess.run(["minisign", "-G", "-W", "-p", tmp / "mini.pub", "-s", tmp / "mini.key"], check=True,
                   capture_output=True, timeout=TIMEOUT)
    header = (tmp / "m.cba").read_bytes()
    (tmp / "hdr").write_bytes(header[:header_length(header) - 64])
    for name, extra in (("prehashed", []), ("legacy", ["-l"])):
        run("minisign", "-S", "-s", tmp / "mini.key", "-m", tmp / "hdr", "-x", tmp / f"{name}.minisig",
            "-t", "timestamp:1\tihop-release-version=3", *extra)
    for sel, files in ((0, ["ihop.pub", "ihoppw.pub", "mini.pub"]), (1, ["ihop.key", "ihoppw.key", "mini.key"]),
                       (2, ["m.cba.minisig", "prehashed.minisig", "legacy.minisig"])):
        for f in files:
            write("minisign", f"{sel}-{f}", bytes([sel]) + (tmp / f).read_bytes())
    for i, comment in enumerate([b"timestamp:1\tfile:a.cba\tihop-release-version=18446744073709551615",
                                 b"ihop-release-version=1\tihop-release-version=2", b"ihop-release-version=",
                                 b"x\tihop-release-version=007\tbuild"]):
        write("minisign", f"3-comment-{i}", b"\x03" + comment)


TARGETS = {
    "archive": lambda tmp: make_archives_and_releases(tmp),  # and release_file
    "nbd_server": make_nbd_corpus,
    "chunker": lambda tmp: make_chunker_corpus(),
    "minisign": make_minisign_corpus,
}


def main():
    wanted = sys.argv[1:] or list(TARGETS)
    unknown = [t for t in wanted if t not in TARGETS]
    if unknown:
        sys.exit(f"no such corpus: {unknown[0]} (choose from {', '.join(TARGETS)})")
    tools = {"nbd_server": ("nbdinfo", "nbdcopy", "qemu-img"), "minisign": ("minisign",)}
    for t in wanted:
        for tool in tools.get(t, ()):
            if not shutil.which(tool):
                sys.exit(f"{tool} is needed (libnbd-bin, qemu-utils, minisign)")
    with tempfile.TemporaryDirectory(prefix="ihop-corpus-", dir="/tmp") as d:
        tmp = Path(d)
        for t in wanted:
            TARGETS[t](tmp)
    for target in sorted(p.name for p in CORPUS.iterdir()):
        files = list((CORPUS / target).iterdir())
        print(f"{target}: {len(files)} inputs, {sum(f.stat().st_size for f in files)} bytes")


if __name__ == "__main__":
    main()
