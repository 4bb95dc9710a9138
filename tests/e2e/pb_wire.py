# SPDX-License-Identifier: MIT
"""The protobuf wire format, read without a protobuf library: the one walker
under both readers of bita archives (bita_archive's lenient parse_archive and
cba_reader's strict checks), independent of ihop's protobuf-c.
"""

VARINT, I64, LEN, I32 = 0, 1, 2, 5
# A schema kind: a repeated varint field, packed into one LEN field.
PACKED = "packed"


def varint(buf: bytes, i: int):
    """The varint at buf[i:] and the index after it."""
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


def encode_varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def fields(buf: bytes):
    """(field number, wire type, value) of each field of a message: an int for
    varints, bytes otherwise. A field running past the end of its message and
    the deprecated group wire types are refused (ValueError)."""
    i = 0
    while i < len(buf):
        key, i = varint(buf, i)
        num, wt = key >> 3, key & 7
        if wt == VARINT:
            v, i = varint(buf, i)
        else:
            if wt == LEN:
                n, i = varint(buf, i)
            elif wt in (I64, I32):
                n = 8 if wt == I64 else 4
            else:
                raise ValueError(f"unexpected wire type {wt} for field {num}")
            if i + n > len(buf):
                raise ValueError(f"field {num} runs past the end of its message")
            v, i = buf[i:i + n], i + n
        yield num, wt, v


def packed_varints(buf: bytes) -> list:
    out, i = [], 0
    while i < len(buf):
        v, i = varint(buf, i)
        out.append(v)
    return out


def message(buf: bytes, schema: dict, strict=True) -> dict:
    """Decodes a message: schema maps a field number to (name, kind, repeated),
    kind a wire type or PACKED. proto3 scalars absent from the wire are 0 (b""
    for LEN), repeated fields []. A known field of another wire type is refused.

    strict: unknown fields, and PACKED fields written unpacked, are refused
    too: what ihop compress writes has neither. Otherwise unknown fields are
    skipped and PACKED fields read in both encodings, as protobuf readers
    must: bita 0.1.1 wrote its rebuild order unpacked."""
    out = {name: ([] if rep else (0 if kind == VARINT else b"")) for name, kind, rep in schema.values()}
    for num, wt, v in fields(buf):
        if num not in schema:
            if strict:
                raise ValueError(f"unknown field {num}")
            continue
        name, kind, rep = schema[num]
        want = LEN if kind == PACKED else kind
        if kind == PACKED and wt == VARINT and not strict:
            out[name].append(v)
        elif wt != want:
            raise ValueError(f"field {name} has wire type {wt}, expected {want}")
        elif kind == PACKED:
            out[name].extend(packed_varints(v))
        elif rep:
            out[name].append(v)
        else:
            out[name] = v
    return out
