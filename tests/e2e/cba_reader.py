# SPDX-License-Identifier: MIT
"""The strict reader of the archives `ihop compress` writes, for the compress
tests, which trust it instead of ihop's own parser: bita_archive's frame and
fields decoded strictly (every field the compressor writes, nothing the format
does not allow), its own chunk decompression (Python's brotli and lzma
modules, the zstd command), and a check of everything `ihop compress`
promises about the archives it writes. bita_archive.parse_archive is the
lenient reader of the fixtures of every bita version.
"""

import lzma
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from bita_archive import ALGORITHMS, CODEC_NAMES, MAGIC, blake2b, decode_dictionary, read_frame
from pb_wire import fields


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
    f = read_frame(data, path, magics=(MAGIC,))
    d = decode_dictionary(f.dictionary, strict=True)
    params, comp = d["chunker_params"], d["chunk_compression"]
    return Cba(
        path=Path(path), data=data, header_size=f.header_size, dictionary_size=len(f.dictionary),
        chunk_data_offset=f.chunk_data_offset, header_checksum=f.checksum, stored_checksum=f.stored_checksum,
        app_version=d["application_version"].decode(), source_checksum=d["source_checksum"],
        source_total_size=d["source_total_size"], algorithm=ALGORITHMS[params["algorithm"]],
        filter_bits=params["filter_bits"], min_size=params["min"], max_size=params["max"], window=params["window"],
        hash_length=params["hash_length"], codec=CODEC_NAMES[comp["codec"]], level=comp["level"],
        order=d["rebuild_order"], descriptors=[Descriptor(**c) for c in d["chunk_descriptors"]],
        metadata=[(e["key"].decode(), e["value"]) for e in d["metadata"]],
        dictionary_keys=[num for num, _, _ in fields(f.dictionary)])


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
