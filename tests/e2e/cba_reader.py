"""An independent, strict reader of bita archives for the compress tests:
its own protobuf wire-format walker (no protobuf library), its own chunk
decompression (Python's brotli and lzma modules, the zstd command), and a
check of everything `ihop compress` promises about the archives it writes.

Separate from bita_archive.parse_archive on purpose: it decodes every field the
compressor writes, refuses what the format does not allow, and is what the
compress tests trust instead of ihop's own parser.
"""

import hashlib
import lzma
import shutil
import struct
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

MAGIC = b"BITA1\0"
CODECS = {0: "none", 1: "lzma", 2: "zstd", 3: "brotli"}
ALGORITHMS = {0: "BuzHash", 1: "RollSum", 2: "fixed"}


def blake2b(data: bytes) -> bytes:
    return hashlib.blake2b(data).digest()


# --------------------------------------------------------------------------
# Protobuf wire format


def varint(buf: bytes, i: int):
    value = shift = 0
    while True:
        if i >= len(buf):
            raise ValueError("varint runs past the end")
        b = buf[i]
        i += 1
        value |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return value, i
        if shift > 63:
            raise ValueError("varint longer than 10 bytes")


def fields(buf: bytes):
    """(field number, wire type, value) of each field of a message: an int for
    varints, bytes for length-delimited fields. Other wire types are refused:
    the dictionary has none."""
    i = 0
    while i < len(buf):
        key, i = varint(buf, i)
        num, wt = key >> 3, key & 7
        if wt == 0:
            v, i = varint(buf, i)
        elif wt == 2:
            n, i = varint(buf, i)
            if i + n > len(buf):
                raise ValueError(f"field {num} runs past the end of its message")
            v, i = buf[i:i + n], i + n
        else:
            raise ValueError(f"unexpected wire type {wt} for field {num}")
        yield num, wt, v


def message(buf: bytes, schema: dict) -> dict:
    """Decodes a message whose fields are all known: schema maps a field number
    to (name, wire type, repeated). proto3 scalars absent from the wire are 0."""
    out = {name: ([] if rep else (0 if wt == 0 else b"")) for name, wt, rep in schema.values()}
    for num, wt, v in fields(buf):
        if num not in schema:
            raise ValueError(f"unknown field {num}")
        name, want, rep = schema[num]
        if wt != want:
            raise ValueError(f"field {name} has wire type {wt}, expected {want}")
        if rep:
            out[name].append(v)
        else:
            out[name] = v
    return out


DESCRIPTOR = {1: ("checksum", 2, False), 3: ("archive_size", 0, False), 4: ("archive_offset", 0, False),
              5: ("source_size", 0, False)}
CHUNKER = {1: ("filter_bits", 0, False), 2: ("min", 0, False), 3: ("max", 0, False), 4: ("window", 0, False),
           5: ("hash_length", 0, False), 6: ("algorithm", 0, False)}
COMPRESSION = {2: ("codec", 0, False), 3: ("level", 0, False)}
METADATA_ENTRY = {1: ("key", 2, False), 2: ("value", 2, False)}
DICTIONARY = {1: ("application_version", 2, False), 2: ("source_checksum", 2, False),
              3: ("source_total_size", 0, False), 4: ("chunker_params", 2, False),
              5: ("chunk_compression", 2, False), 6: ("rebuild_order", 2, True),
              7: ("chunk_descriptors", 2, True), 8: ("metadata", 2, True)}


# --------------------------------------------------------------------------
# The archive


@dataclass
class Descriptor:
    checksum: bytes
    archive_size: int
    archive_offset: int  # relative to the chunk data, as stored
    source_size: int


@dataclass
class Cba:
    path: Path
    data: bytes
    header_size: int
    dictionary_size: int
    chunk_data_offset: int
    header_checksum: bytes
    stored_checksum: bytes
    app_version: str
    source_checksum: bytes
    source_total_size: int
    algorithm: str
    filter_bits: int
    min_size: int
    max_size: int
    window: int
    hash_length: int
    codec: str
    level: int
    order: list
    descriptors: list
    metadata: list = field(default_factory=list)  # (key, value) in stored order
    dictionary_keys: list = field(default_factory=list)  # field numbers in wire order

    def chunk_bytes(self, d: Descriptor) -> bytes:
        start = self.chunk_data_offset + d.archive_offset
        return self.data[start:start + d.archive_size]


def read_cba(path) -> Cba:
    data = Path(path).read_bytes()
    assert data[:6] == MAGIC, f"{path}: magic {data[:6]!r}"
    (dict_size,) = struct.unpack_from("<Q", data, 6)
    end = 14 + dict_size
    assert end + 8 + 64 <= len(data), f"{path}: header runs past the end of the file"
    dictionary = data[14:end]
    (data_offset,) = struct.unpack_from("<Q", data, end)
    d = message(dictionary, DICTIONARY)
    params = message(d["chunker_params"], CHUNKER)
    comp = message(d["chunk_compression"], COMPRESSION)
    order = []
    for packed in d["rebuild_order"]:
        i = 0
        while i < len(packed):
            v, i = varint(packed, i)
            order.append(v)
    descs = [Descriptor(**message(b, DESCRIPTOR)) for b in d["chunk_descriptors"]]
    meta = []
    for b in d["metadata"]:
        e = message(b, METADATA_ENTRY)
        meta.append((e["key"].decode(), e["value"]))
    return Cba(
        path=Path(path), data=data, header_size=end + 8 + 64, dictionary_size=dict_size,
        chunk_data_offset=data_offset, header_checksum=blake2b(data[:end + 8]),
        stored_checksum=data[end + 8:end + 72], app_version=d["application_version"].decode(),
        source_checksum=d["source_checksum"], source_total_size=d["source_total_size"],
        algorithm=ALGORITHMS[params["algorithm"]], filter_bits=params["filter_bits"], min_size=params["min"],
        max_size=params["max"], window=params["window"], hash_length=params["hash_length"],
        codec=CODECS[comp["codec"]], level=comp["level"], order=order, descriptors=descs, metadata=meta,
        dictionary_keys=[num for num, _, _ in fields(dictionary)])


def decompress(codec: str, blob: bytes) -> bytes:
    if codec == "brotli":
        import brotli
        return brotli.decompress(blob)
    if codec == "lzma":
        # bita writes .xz streams (its lzma crate's easy encoder)
        assert blob[:6] == b"\xfd7zXZ\0", "not an .xz stream"
        return lzma.decompress(blob, format=lzma.FORMAT_XZ)
    if codec == "zstd":
        zstd = shutil.which("zstd")
        assert zstd, "the zstd command is needed to check zstd chunks"
        r = subprocess.run([zstd, "-d", "-c", "-q"], input=blob, capture_output=True, timeout=60)
        assert r.returncode == 0, r.stderr
        return r.stdout
    raise AssertionError(f"no decompressor for {codec}")


def chunk_plain(cba: Cba, d: Descriptor) -> bytes:
    blob = cba.chunk_bytes(d)
    # bita: a chunk whose archive size equals its source size is stored raw
    if d.archive_size == d.source_size or cba.codec == "none":
        return blob
    out = decompress(cba.codec, blob)
    assert len(blob) < d.source_size, "a compressed chunk must be smaller than its source"
    return out


def check_cba(cba: Cba, image: bytes):
    """Everything a reader relies on, checked against the image the archive
    was made from. Returns the plain chunks in rebuild order."""
    # header
    assert cba.stored_checksum == cba.header_checksum, "header checksum does not match"
    assert cba.chunk_data_offset == cba.header_size, "chunk data must follow the header"
    assert cba.dictionary_keys == sorted(cba.dictionary_keys), "fields out of order"
    assert cba.source_total_size == len(image)
    assert cba.source_checksum == blake2b(image)
    assert 4 <= cba.hash_length <= 64
    # chunk data: descriptors back to back, in order, the file ends with the last
    offset = 0
    for d in cba.descriptors:
        assert d.archive_offset == offset, f"chunk data at {d.archive_offset}, expected {offset}"
        assert 0 < d.archive_size <= d.source_size
        assert len(d.checksum) == cba.hash_length
        offset += d.archive_size
    assert cba.chunk_data_offset + offset == len(cba.data), "chunk data does not end the file"
    # identical chunks stored once; descriptors in order of first occurrence
    assert len({d.checksum for d in cba.descriptors}) == len(cba.descriptors), "a chunk is stored twice"
    firsts = []
    for i in cba.order:
        assert 0 <= i < len(cba.descriptors)
        if i not in firsts:
            firsts.append(i)
    assert firsts == list(range(len(cba.descriptors))), "descriptors not in order of first occurrence"
    # every chunk decompresses to data with its hash, and they rebuild the image
    plain = [chunk_plain(cba, d) for d in cba.descriptors]
    for d, p in zip(cba.descriptors, plain):
        assert len(p) == d.source_size
        assert blake2b(p)[:cba.hash_length] == d.checksum, "chunk hash does not match its data"
    pos = 0
    chunks = []
    for i in cba.order:
        p = plain[i]
        assert image[pos:pos + len(p)] == p, f"image differs at {pos}"
        chunks.append(p)
        pos += len(p)
    assert pos == len(image)
    return chunks
