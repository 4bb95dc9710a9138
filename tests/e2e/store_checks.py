# SPDX-License-Identifier: MIT
"""Close looks at a store: every chunk file named by its content's hash in
its fan-out directory, no temp file left, release descriptions well formed,
and a clone complete down to the image `ihop cat` puts back together.
"""

import re
import struct
from dataclasses import dataclass
from pathlib import Path

from bita_archive import Archive, blake2b, blake2b_file
from ihop_run import cat_checksum


def chunk_path(store, hexhash) -> Path:
    return Path(store) / "chunks" / hexhash[:4] / f"{hexhash}.chunk"


def _content_hash(path, hexname) -> str:
    """The hex hash of a file's content, as long as hexname."""
    return blake2b_file(path)[:len(hexname) // 2].hex()


def _holds_its_hash(path, hexname) -> bool:
    return bool(re.fullmatch(r"[0-9a-f]+", hexname)) and _content_hash(path, hexname) == hexname


def chunk_files(store) -> list:
    """Every file under STORE/chunks (paths)."""
    root = Path(store) / "chunks"
    if not root.exists():
        return []
    return sorted(p for p in root.rglob("*") if not p.is_dir())


def check_store(store, allowed_temp=None) -> set:
    """Asserts the store holds no temp file (but those whose name contains
    `allowed_temp`) and that every chunk file is named by its content's hash
    and sits in its fan-out directory. Returns the set of hex hashes present."""
    store = Path(store)
    temps = [p for p in store.rglob("*") if ".tmp-" in p.name]
    assert all(allowed_temp and allowed_temp in p.name for p in temps), f"temp files left in the store: {temps}"
    hashes = set()
    for p in chunk_files(store):
        if p in temps:
            continue
        assert p.name.endswith(".chunk"), f"unexpected file {p}"
        name = p.name[:-len(".chunk")]
        assert re.fullmatch(r"[0-9a-f]+", name) and len(name) % 2 == 0, p
        assert p.parent.name == name[:4] and p.parent.parent == store / "chunks", p
        digest = _content_hash(p, name)
        assert digest == name, f"{p} holds content hashing to {digest}"
        hashes.add(name)
    return hashes


def check_release_file(path):
    """Asserts STORE/NAME is a well-formed release description."""
    data = Path(path).read_bytes()
    assert data.startswith(b"IHOP1\0"), f"{path}: no IHOP1 magic"
    (n,) = struct.unpack_from("<Q", data, 6)
    assert len(data) == 14 + n + 64, f"{path}: size {len(data)} does not match its dictionary size {n}"
    assert blake2b(data[:-64]) == data[-64:], f"{path}: trailing checksum does not match"


def releases(store) -> list:
    """The names of the plain files at the top of a store (release descriptions)."""
    store = Path(store)
    if not store.exists():
        return []
    return sorted(p.name for p in store.iterdir() if p.is_file())


def assert_no_release_and_clean(store, name):
    store = Path(store)
    assert not (store / name).exists(), f"release {name} exists after a failed clone"
    assert releases(store) == [], f"files left at the top of the store: {releases(store)}"
    return check_store(store)


def assert_clone_complete(store, name, archive: Archive):
    """The release exists, is well formed, every chunk it needs is stored
    and correct, and cat reproduces the archive's image checksum."""
    store = Path(store)
    check_release_file(store / name)
    present = check_store(store)
    needed = {c.hash.hex() for c in archive.chunks}
    assert needed <= present, f"{len(needed - present)} chunks missing from the store"
    assert cat_checksum(store / name) == archive.source_checksum


@dataclass
class StoreScan:
    final: set  # hex hashes of chunk files under their final names whose content matches
    corrupt: list  # paths of chunk files under a final name whose content does not match its name
    temps: list  # paths of every temp file (".tmp-" in the name), chunks/ and top
    complete_temps: dict  # hex hash -> temp paths under chunks/ holding exactly that chunk


def scan_store(store) -> StoreScan:
    """Hashes every file under STORE/chunks, asserting nothing; see StoreScan."""
    store = Path(store)
    s = StoreScan(set(), [], [], {})
    if not store.exists():
        return s
    s.temps = [p for p in store.iterdir() if ".tmp-" in p.name]
    for p in chunk_files(store):
        if ".tmp-" in p.name:
            s.temps.append(p)
            name = p.name.split(".chunk.tmp-")[0]
            if _holds_its_hash(p, name):
                s.complete_temps.setdefault(name, []).append(p)
            continue
        name = p.name[:-len(".chunk")] if p.name.endswith(".chunk") else ""
        if name and _holds_its_hash(p, name):
            s.final.add(name)
        else:
            s.corrupt.append(p)
    return s


def temp_pid(path) -> int:
    """The process id in a chunk temp file's name (<hex>.chunk.tmp-<pid>.<n>), or -1."""
    m = re.search(r"\.tmp-(\d+)\.\d+$", Path(path).name)
    return int(m[1]) if m else -1

