# SPDX-License-Identifier: MIT
"""An independent reader of bita archives (no protobuf library, nothing of
ihop's): the header's frame, the dictionary's fields, and parse_archive, the
lenient reader of the fixtures of every bita version. cba_reader holds the
strict checks of what `ihop compress` writes, on the same frame and fields.

An archive starts with its header: magic, u64 dictionary size, the
dictionary (protobuf), u64 chunk data offset, BLAKE2b-512 of all before.
"""

import hashlib
import struct
from dataclasses import dataclass, field
from pathlib import Path

from pb_wire import LEN, PACKED, VARINT, message

MAGIC = b"BITA1\0"
LEGACY_MAGIC = b"\0BITA1"  # older bita (0.1.1 in the fixtures)
CODEC_NAMES = {0: "none", 1: "lzma", 2: "zstd", 3: "brotli"}
ALGORITHMS = {0: "BuzHash", 1: "RollSum", 2: "fixed"}

# The messages of bita's chunk_dictionary.proto: field number -> (name, kind, repeated).
DESCRIPTOR = {1: ("checksum", LEN, False), 3: ("archive_size", VARINT, False),
              4: ("archive_offset", VARINT, False), 5: ("source_size", VARINT, False)}
CHUNKER = {1: ("filter_bits", VARINT, False), 2: ("min", VARINT, False), 3: ("max", VARINT, False),
           4: ("window", VARINT, False), 5: ("hash_length", VARINT, False), 6: ("algorithm", VARINT, False)}
COMPRESSION = {2: ("codec", VARINT, False), 3: ("level", VARINT, False)}
METADATA_ENTRY = {1: ("key", LEN, False), 2: ("value", LEN, False)}
DICTIONARY = {1: ("application_version", LEN, False), 2: ("source_checksum", LEN, False),
              3: ("source_total_size", VARINT, False), 4: ("chunker_params", LEN, False),
              5: ("chunk_compression", LEN, False), 6: ("rebuild_order", PACKED, True),
              7: ("chunk_descriptors", LEN, True), 8: ("metadata", LEN, True)}


def blake2b(data: bytes) -> bytes:
    return hashlib.blake2b(data).digest()


def blake2b_file(path) -> bytes:
    h = hashlib.blake2b()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.digest()


@dataclass
class Frame:
    magic: bytes
    dictionary: bytes
    chunk_data_offset: int
    header_size: int  # the whole header, its checksum included
    checksum: bytes  # BLAKE2b-512 of the header before its checksum
    stored_checksum: bytes


def read_frame(data: bytes, path, magics=(MAGIC, LEGACY_MAGIC)) -> Frame:
    assert data[:6] in magics, f"{path}: magic {data[:6]!r}"
    (dict_size,) = struct.unpack_from("<Q", data, 6)
    end = 14 + dict_size
    assert end + 8 + 64 <= len(data), f"{path}: header runs past the end of the file"
    (data_offset,) = struct.unpack_from("<Q", data, end)
    return Frame(data[:6], data[14:end], data_offset, end + 8 + 64, blake2b(data[:end + 8]),
                 data[end + 8:end + 72])


def decode_dictionary(dictionary: bytes, strict: bool) -> dict:
    """The dictionary's fields by name, its sub-messages decoded too (see
    pb_wire.message for what strict refuses)."""
    d = message(dictionary, DICTIONARY, strict)
    d["chunker_params"] = message(d["chunker_params"], CHUNKER, strict)
    d["chunk_compression"] = message(d["chunk_compression"], COMPRESSION, strict)
    d["chunk_descriptors"] = [message(b, DESCRIPTOR, strict) for b in d["chunk_descriptors"]]
    d["metadata"] = [message(b, METADATA_ENTRY, strict) for b in d["metadata"]]
    return d


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
    """Any bita archive, legacy magic and unpacked rebuild order included; a
    header checksum that does not match is reported, not refused."""
    f = read_frame(Path(path).read_bytes(), path)
    d = decode_dictionary(f.dictionary, strict=False)
    return Archive(
        Path(path), f.magic, f.header_size, f.checksum, f.checksum == f.stored_checksum, f.chunk_data_offset,
        app_version=d["application_version"].decode(), source_checksum=d["source_checksum"],
        source_total_size=d["source_total_size"], hash_len=d["chunker_params"]["hash_length"],
        compression=d["chunk_compression"]["codec"], compression_level=d["chunk_compression"]["level"],
        order=d["rebuild_order"],
        chunks=[Chunk(c["checksum"], c["archive_size"], f.chunk_data_offset + c["archive_offset"], c["source_size"])
                for c in d["chunk_descriptors"]])


def unique_chunks(archive: Archive) -> dict:
    """{hex hash: Chunk}, one entry per distinct chunk."""
    return {c.hash.hex(): c for c in archive.chunks}
