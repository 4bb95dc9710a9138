"""An independent reader of bita archives (its own protobuf wire-format
walker, nothing of ihop's): parse_archive reads the fixtures of every bita
version.
"""

import hashlib
import struct
from dataclasses import dataclass, field
from pathlib import Path

CODEC_NAMES = {0: "none", 1: "lzma", 2: "zstd", 3: "brotli"}


def blake2b(data: bytes) -> bytes:
    return hashlib.blake2b(data).digest()


def blake2b_file(path) -> bytes:
    h = hashlib.blake2b()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.digest()


def _varint(buf: bytes, i: int):
    value = shift = 0
    while True:
        b = buf[i]
        i += 1
        value |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return value, i


def pb_fields(buf: bytes):
    """Yields (field number, wire type, value) of a protobuf message:
    value is an int for varints, bytes otherwise."""
    i = 0
    while i < len(buf):
        key, i = _varint(buf, i)
        num, wt = key >> 3, key & 7
        if wt == 0:
            v, i = _varint(buf, i)
        elif wt == 1:
            v, i = buf[i:i + 8], i + 8
        elif wt == 2:
            n, i = _varint(buf, i)
            v, i = buf[i:i + n], i + n
        elif wt == 5:
            v, i = buf[i:i + 4], i + 4
        else:
            raise ValueError(f"unsupported wire type {wt}")
        yield num, wt, v


@dataclass
class Chunk:
    hash: bytes
    archive_size: int
    archive_offset: int  # absolute, in the archive file
    source_size: int


@dataclass
class Archive:
    path: Path
    magic: bytes
    header_size: int
    header_checksum: bytes  # BLAKE2b-512 of the header before its trailer hash
    header_checksum_ok: bool
    chunk_data_offset: int
    app_version: str = ""
    source_checksum: bytes = b""
    source_total_size: int = 0
    hash_len: int = 0
    compression: int = 0
    compression_level: int = 0
    order: list = field(default_factory=list)
    chunks: list = field(default_factory=list)

    @property
    def compression_name(self):
        return CODEC_NAMES[self.compression]


def parse_archive(path) -> Archive:
    data = Path(path).read_bytes()
    magic = data[:6]
    assert magic in (b"BITA1\0", b"\0BITA1"), f"{path}: no bita magic"
    (dict_size,) = struct.unpack_from("<Q", data, 6)
    dictionary = data[14:14 + dict_size]
    (data_offset,) = struct.unpack_from("<Q", data, 14 + dict_size)
    end = 22 + dict_size
    checksum = blake2b(data[:end])
    a = Archive(Path(path), magic, end + 64, checksum, checksum == data[end:end + 64], data_offset)
    for num, wt, v in pb_fields(dictionary):
        if num == 1:
            a.app_version = v.decode()
        elif num == 2:
            a.source_checksum = v
        elif num == 3:
            a.source_total_size = v
        elif num == 4:  # ChunkerParameters
            for n, _, x in pb_fields(v):
                if n == 5:
                    a.hash_len = x
        elif num == 5:  # ChunkCompression
            for n, _, x in pb_fields(v):
                if n == 2:
                    a.compression = x
                elif n == 3:
                    a.compression_level = x
        elif num == 6:  # rebuild_order: packed or not
            if wt == 2:
                i = 0
                while i < len(v):
                    x, i = _varint(v, i)
                    a.order.append(x)
            else:
                a.order.append(v)
        elif num == 7:  # ChunkDescriptor
            d = {n: x for n, _, x in pb_fields(v)}
            a.chunks.append(Chunk(d.get(1, b""), d.get(3, 0), data_offset + d.get(4, 0), d.get(5, 0)))
    return a


def unique_chunks(archive: Archive) -> dict:
    """{hex hash: Chunk}, one entry per distinct chunk."""
    return {c.hash.hex(): c for c in archive.chunks}
