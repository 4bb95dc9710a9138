#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Minimal bita-compatible archive (.cba) writer and reader, for the benchmark only.

ihop has no compressor yet and bita cannot be built here, so the benchmark
makes its archives with this script. It writes what `bita compress` writes
with fixed-size chunking:

    offset 0     magic b"BITA1\\0"
    offset 6     u64-LE size n of the protobuf ChunkDictionary
    offset 14    ChunkDictionary (proto/chunk_dictionary.proto), n bytes
    14+n         u64-LE chunk data offset, absolute (= the header length)
    22+n         BLAKE2b-512 of bytes 0 .. 22+n
    86+n         chunk data, in order of first occurrence in the image

Choices (all within what bita reads and ihop accepts):
  * chunking: FIXED_SIZE (chunking_algorithm = 2), max_chunk_size = the fixed
    size (default 64 KiB); the last chunk may be shorter;
  * chunk hash: BLAKE2b-512, chunk_hash_length = 64; image checksum: BLAKE2b-512;
  * compression: brotli (CompressionType 3), quality 6 by default, one
    independent brotli stream per chunk; a chunk whose compressed form is not
    smaller than itself is stored raw (then archive_size == source_size, which
    is how bita marks an uncompressed chunk);
  * identical chunks are stored once; chunk_descriptors are in order of first
    occurrence, archive_offset is relative to the chunk data offset, and
    rebuild_order lists descriptor indices in image order (packed);
  * proto3 rules: zero-valued scalar fields are omitted; metadata is omitted.

Usage:
    make_cba.py [--chunk-size N] [--quality Q] [--jobs N] IMAGE OUT.cba
    make_cba.py --dump ARCHIVE        # print what a header says, as JSON

`read_archive(path)` (used by the benchmark to compute the ideal update size)
parses the header of any bita archive, including ones bita itself wrote.
"""

import argparse
import hashlib
import json
import mmap
import multiprocessing
import os
import struct
import sys

MAGIC = b"BITA1\0"
LEGACY_MAGIC = b"\0BITA1"
HASH_LEN = 64
FIXED_SIZE = 2
BROTLI = 3
APP_VERSION = "ihop-bench-make_cba 1"


# ---------------------------------------------------------------- protobuf --

def _varint(n):
    if n < 0:
        raise ValueError("negative varint")
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _key(field, wire):
    return _varint(field << 3 | wire)


def _uint(field, value):
    """A varint field; proto3 omits zero."""
    return _key(field, 0) + _varint(value) if value else b""


def _bytes(field, value):
    """A length-delimited field (bytes, string, message); proto3 omits empty scalars."""
    return _key(field, 2) + _varint(len(value)) + value if value else b""


def _message(field, value):
    """An embedded message is written whenever it is set, even when empty."""
    return _key(field, 2) + _varint(len(value)) + value


def encode_dictionary(d):
    chunker = (_uint(1, 0) + _uint(2, 0) + _uint(3, d["chunk_size"]) + _uint(4, 0) +
               _uint(5, HASH_LEN) + _uint(6, FIXED_SIZE))
    compression = _uint(2, BROTLI) + _uint(3, d["quality"])
    order = b"".join(_varint(i) for i in d["rebuild_order"])
    out = [
        _bytes(1, APP_VERSION.encode()),
        _bytes(2, d["source_checksum"]),
        _uint(3, d["source_total_size"]),
        _message(4, chunker),
        _message(5, compression),
        _bytes(6, order),  # packed repeated uint32
    ]
    for c in d["descriptors"]:
        desc = (_bytes(1, c["checksum"]) + _uint(3, c["archive_size"]) +
                _uint(4, c["archive_offset"]) + _uint(5, c["source_size"]))
        out.append(_message(7, desc))
    return b"".join(out)


def _read_varint(buf, pos):
    shift = n = 0
    while True:
        b = buf[pos]
        pos += 1
        n |= (b & 0x7F) << shift
        if not b & 0x80:
            return n, pos
        shift += 7
        if shift > 63:
            raise ValueError("varint too long")


def _fields(buf):
    """Yields (field, wire type, value) of a serialized message."""
    pos = 0
    while pos < len(buf):
        key, pos = _read_varint(buf, pos)
        field, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _read_varint(buf, pos)
        elif wire == 2:
            n, pos = _read_varint(buf, pos)
            value = bytes(buf[pos:pos + n])
            pos += n
        elif wire == 1:
            value = buf[pos:pos + 8]
            pos += 8
        elif wire == 5:
            value = buf[pos:pos + 4]
            pos += 4
        else:
            raise ValueError("unsupported wire type %d" % wire)
        yield field, wire, value


def decode_dictionary(buf):
    d = {"application_version": "", "source_checksum": b"", "source_total_size": 0,
         "chunker": {}, "compression": {}, "rebuild_order": [], "descriptors": []}
    for field, wire, value in _fields(buf):
        if field == 1:
            d["application_version"] = value.decode()
        elif field == 2:
            d["source_checksum"] = value
        elif field == 3:
            d["source_total_size"] = value
        elif field == 4:
            names = {1: "chunk_filter_bits", 2: "min_chunk_size", 3: "max_chunk_size",
                     4: "rolling_hash_window_size", 5: "chunk_hash_length", 6: "chunking_algorithm"}
            d["chunker"] = {names.get(f, f): v for f, _, v in _fields(value)}
        elif field == 5:
            names = {2: "compression", 3: "compression_level"}
            d["compression"] = {names.get(f, f): v for f, _, v in _fields(value)}
        elif field == 6:
            if wire == 2:  # packed
                pos = 0
                while pos < len(value):
                    v, pos = _read_varint(value, pos)
                    d["rebuild_order"].append(v)
            else:
                d["rebuild_order"].append(value)
        elif field == 7:
            c = {"checksum": b"", "archive_size": 0, "archive_offset": 0, "source_size": 0}
            for f, _, v in _fields(value):
                if f == 1:
                    c["checksum"] = v
                elif f == 3:
                    c["archive_size"] = v
                elif f == 4:
                    c["archive_offset"] = v
                elif f == 5:
                    c["source_size"] = v
            d["descriptors"].append(c)
    return d


# ----------------------------------------------------------------- reading --

def read_archive(path):
    """Parses and checks an archive's header. Returns the dictionary plus
    header_size and chunk_data_offset."""
    with open(path, "rb") as f:
        pre = f.read(14)
        if len(pre) < 14 or pre[:6] not in (MAGIC, LEGACY_MAGIC):
            raise ValueError("%s: not a bita archive" % path)
        (n,) = struct.unpack("<Q", pre[6:14])
        rest = f.read(n + 8 + 64)
    if len(rest) != n + 72:
        raise ValueError("%s: header cut short" % path)
    header = pre + rest
    if hashlib.blake2b(header[:-64], digest_size=64).digest() != header[-64:]:
        raise ValueError("%s: header checksum mismatch" % path)
    d = decode_dictionary(header[14:14 + n])
    (d["chunk_data_offset"],) = struct.unpack("<Q", header[14 + n:22 + n])
    d["header_size"] = len(header)
    d["header_checksum"] = header[-64:]
    return d


# ----------------------------------------------------------------- writing --

_image = None


def _open_image(path):
    global _image
    f = open(path, "rb")
    _image = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) if os.fstat(f.fileno()).st_size else b""


def _compress(job):
    """Worker: compresses the chunk at (offset, size); returns the bytes to store."""
    import brotli
    offset, size, quality = job
    data = _image[offset:offset + size]
    packed = brotli.compress(data, quality=quality)
    return packed if len(packed) < size else bytes(data)


def write_archive(image, out, chunk_size=64 << 10, quality=6, jobs=None, progress=True):
    size = os.path.getsize(image)
    whole = hashlib.blake2b(digest_size=64)
    index = {}           # chunk hash -> descriptor index
    unique = []          # (offset, size) of each descriptor's first occurrence
    hashes = []
    order = []
    with open(image, "rb") as f:
        while True:
            data = f.read(chunk_size)
            if not data:
                break
            whole.update(data)
            h = hashlib.blake2b(data, digest_size=64).digest()
            i = index.get(h)
            if i is None:
                i = index[h] = len(unique)
                unique.append((len(order) * chunk_size, len(data)))
                hashes.append(h)
            order.append(i)

    descriptors = []
    tmp_data = out + ".data.tmp"
    offset = 0
    with open(tmp_data, "wb") as dataf, \
            multiprocessing.Pool(jobs or os.cpu_count(), _open_image, (image,)) as pool:
        work = ((o, s, quality) for o, s in unique)
        for n, packed in enumerate(pool.imap(_compress, work, chunksize=16)):
            src_size = unique[n][1]
            descriptors.append({"checksum": hashes[n], "archive_size": len(packed),
                                "archive_offset": offset, "source_size": src_size})
            dataf.write(packed)
            offset += len(packed)
            if progress and sys.stderr.isatty() and n % 256 == 0:
                print("\rcompressing %d/%d chunks" % (n, len(unique)), end="", file=sys.stderr)
    if progress and sys.stderr.isatty():
        print("\r\033[K", end="", file=sys.stderr)

    dictionary = encode_dictionary({
        "chunk_size": chunk_size, "quality": quality, "source_checksum": whole.digest(),
        "source_total_size": size, "rebuild_order": order, "descriptors": descriptors,
    })
    header = MAGIC + struct.pack("<Q", len(dictionary)) + dictionary
    header += struct.pack("<Q", len(header) + 8 + 64)
    header += hashlib.blake2b(header, digest_size=64).digest()
    tmp = out + ".tmp"
    with open(tmp, "wb") as f, open(tmp_data, "rb") as dataf:
        f.write(header)
        while True:
            buf = dataf.read(1 << 20)
            if not buf:
                break
            f.write(buf)
    os.unlink(tmp_data)
    os.rename(tmp, out)
    return {"image_size": size, "chunks": len(order), "unique": len(unique),
            "header_size": len(header), "chunk_data": offset}


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--chunk-size", type=int, default=64 << 10, help="fixed chunk size (default 65536)")
    p.add_argument("--quality", type=int, default=6, help="brotli quality 0..11 (default 6)")
    p.add_argument("--jobs", type=int, default=None, help="compression processes (default: CPUs)")
    p.add_argument("--dump", action="store_true", help="print the header of ARCHIVE as JSON")
    p.add_argument("paths", nargs="+")
    a = p.parse_args()
    if a.dump:
        if len(a.paths) != 1:
            p.error("--dump wants one ARCHIVE")
        d = read_archive(a.paths[0])
        summary = {k: v for k, v in d.items() if k not in ("descriptors", "rebuild_order")}
        summary["source_checksum"] = d["source_checksum"].hex()
        summary["header_checksum"] = d["header_checksum"].hex()
        summary["chunks"] = len(d["rebuild_order"])
        summary["unique_chunks"] = len(d["descriptors"])
        summary["compressed_size"] = sum(c["archive_size"] for c in d["descriptors"])
        summary["raw_chunks"] = sum(c["archive_size"] == c["source_size"] for c in d["descriptors"])
        print(json.dumps(summary, indent=2))
        return 0
    if len(a.paths) != 2:
        p.error("want IMAGE OUT.cba")
    if not 0 < a.chunk_size < 1 << 32:
        p.error("--chunk-size out of range")
    r = write_archive(a.paths[0], a.paths[1], a.chunk_size, a.quality, a.jobs)
    print("%s: %d bytes in %d chunks (%d unique), header %d bytes, chunk data %d bytes" %
          (a.paths[1], r["image_size"], r["chunks"], r["unique"], r["header_size"], r["chunk_data"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
