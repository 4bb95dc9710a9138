# SPDX-License-Identifier: MIT
"""Signed releases: minisign signatures over the archive header, trusted
keys on the device, and no rollback to older release versions.

- Interop with Debian's minisign both ways: keys made by `minisign -G`
  (with and without a password) sign through `ihop sign` and through
  `minisign -S` itself, and clone takes what they sign; what `ihop sign`
  writes verifies with `minisign -V` over exactly the header bytes before
  the header's checksum; keys made by `ihop keygen` work with `minisign -S`.
- Every refusal (no signature, unknown key, bad signature, tampered header
  or trusted comment, legacy signature, no version, chunk hashes too
  short, hostile signature and key files) is one line, exit status 1, and
  leaves nothing in the store: no release, no chunk, no remembered version.
- Over nginx, the signature is fetched beside the archive, before any of
  the archive's bytes; a 404 for it, or the signature of another archive,
  is a refusal.
- Rollback: version 3, then 2 refused, then 2 taken with --allow-downgrade;
  the remembered version is written before any chunk is fetched and
  survives a kill -9 in the middle of the clone; a downgrade is refused
  once its header is read, before any chunk data.
- The store takes a release's version only once nothing can refuse it: a
  release refused by --verify-header leaves `.release-version` byte for
  byte as it was; a forged pair (a signature that does not sign the
  header) is bad-data, exit status 1, on a fresh store and on one at a
  higher version alike, never a downgrade.
"""

import hashlib
import os
import shutil
import signal
import stat
import subprocess
import time
from pathlib import Path

import pytest

from bita_archive import parse_archive
from ihop_run import (FIXTURES, IHOP, TIMEOUT, assert_final_error, assert_one_error_line, cat_checksum, clone,
                      clone_ok, ihop, info_fields, run)
from slow_server import SlowServer
from store_checks import check_release_file, chunk_files

MINISIGN = shutil.which("minisign") or "/usr/bin/minisign"
PASSWORD = "correct horse battery staple"
VERSION_FILE = ".release-version"

pytestmark = pytest.mark.skipif(not os.access(MINISIGN, os.X_OK), reason="minisign is not installed")


def feed(args, stdin_text=None, **kw):
    """Runs a command with stdin_text as its standard input (a password)."""
    return subprocess.run([str(a) for a in args], input=stdin_text or "", capture_output=True, text=True,
                          timeout=TIMEOUT, **kw)


def signed_bytes(archive: Path) -> int:
    """How many leading bytes a signature covers, as `ihop info` says, and
    checked against an independent reading of the header."""
    r = ihop("info", archive)
    assert r.returncode == 0, r.stderr
    n = int(info_fields(r.stdout)["signed bytes"].split()[0])
    assert n == parse_archive(archive).header_size - 64
    return n


def minisign_verify(archive: Path, sig: Path, pub: Path, n=None):
    """`head -c N ARCHIVE | minisign -V -m /dev/stdin -x SIG -p PUB`, as the README shows."""
    n = signed_bytes(archive) if n is None else n
    head = subprocess.run(["head", "-c", str(n), str(archive)], capture_output=True, check=True).stdout
    return subprocess.run([MINISIGN, "-V", "-m", "/dev/stdin", "-x", str(sig), "-p", str(pub)], input=head,
                          capture_output=True, timeout=TIMEOUT)


def minisign_sign(archive: Path, seckey: Path, sig: Path, comment: str, password=None, legacy=False, n=None):
    """Signs the header bytes with minisign itself."""
    n = signed_bytes(archive) if n is None else n
    hdr = sig.with_name(sig.name + ".hdr")
    hdr.write_bytes(archive.read_bytes()[:n])
    args = [MINISIGN, "-S", "-s", seckey, "-m", hdr, "-x", sig, "-t", comment] + (["-l"] if legacy else [])
    r = feed(args, (password + "\n") if password else None)
    assert r.returncode == 0, r.stderr + r.stdout
    hdr.unlink()
    return sig


def make_archive(tmp: Path, name: str, size=2 << 20, seed=b"", extra=()):
    """A small archive of random bytes (seeded, so two calls may share chunks)."""
    img = tmp / (name + ".img")
    data = b"".join(hashlib.blake2b(seed + i.to_bytes(4, "little")).digest() for i in range(size // 64))
    img.write_bytes(data)
    out = tmp / (name + ".cba")
    r = ihop("compress", "-i", img, *extra, out)
    assert r.returncode == 0, r.stderr
    return out


def ihop_sign(archive, seckey, version, *extra, password=None):
    return feed([IHOP, "sign", "-s", seckey, "--release-version", version, *extra, archive],
                (password + "\n") if password else None)


def version_file_text(version: int) -> bytes:
    line = f"ihop-release-version={version}\n".encode()
    return line + b"checksum=" + hashlib.blake2b(line).hexdigest().encode() + b"\n"


def assert_store_untouched(store: Path):
    """Nothing a refused clone may leave: no release, no chunk, no version."""
    top = sorted(p.name for p in store.iterdir() if p.is_file()) if store.exists() else []
    assert top == [], f"files at the top of the store: {top}"
    assert chunk_files(store) == [], "chunks were stored"


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    """Key pairs: two by ihop keygen -W, one by minisign -G -W, one by
    minisign -G with a password (scrypt: made once)."""
    d = tmp_path_factory.mktemp("keys")
    for name in ("vendor", "other"):
        r = ihop("keygen", "-W", "-p", d / f"{name}.pub", "-s", d / f"{name}.key")
        assert r.returncode == 0, r.stderr
    r = feed([MINISIGN, "-G", "-W", "-p", d / "mini.pub", "-s", d / "mini.key"])
    assert r.returncode == 0, r.stderr
    r = feed([MINISIGN, "-G", "-p", d / "minipw.pub", "-s", d / "minipw.key"], f"{PASSWORD}\n{PASSWORD}\n")
    assert r.returncode == 0, r.stderr
    return d


@pytest.fixture(scope="module")
def signed(tmp_path_factory, keys):
    """release.cba signed by `vendor` as version 3, and another archive."""
    d = tmp_path_factory.mktemp("signed")
    a = make_archive(d, "release", seed=b"a")
    r = ihop_sign(a, keys / "vendor.key", 3)
    assert r.returncode == 0, r.stderr
    b = make_archive(d, "another", seed=b"b")
    r = ihop_sign(b, keys / "vendor.key", 3)
    assert r.returncode == 0, r.stderr
    return d


# --- interop with minisign -------------------------------------------------


def test_ihop_sign_verifies_with_stock_minisign_over_the_header_before_its_checksum(signed, keys):
    archive, sig = signed / "release.cba", signed / "release.cba.minisig"
    n = signed_bytes(archive)
    ok = minisign_verify(archive, sig, keys / "vendor.pub", n)
    assert ok.returncode == 0, ok.stderr
    assert b"ihop-release-version=3" in ok.stdout
    # Exactly those bytes: one more (the checksum's first) or one fewer fails.
    for wrong in (n - 1, n + 1):
        assert minisign_verify(archive, sig, keys / "vendor.pub", wrong).returncode != 0
    # The prehash minisign checks is the header checksum bita stores after them.
    data = archive.read_bytes()
    assert hashlib.blake2b(data[:n]).digest() == data[n:n + 64]
    assert minisign_verify(archive, sig, keys / "other.pub", n).returncode != 0


def test_signature_file_is_minisigns_format_with_the_version_in_its_trusted_comment(signed, keys):
    lines = (signed / "release.cba.minisig").read_text().split("\n")
    assert len(lines) == 5 and lines[4] == ""
    assert lines[0].startswith("untrusted comment: ")
    assert lines[2].startswith("trusted comment: timestamp:")
    fields = lines[2][len("trusted comment: "):].split("\t")
    assert "file:release.cba" in fields and "ihop-release-version=3" in fields
    import base64
    raw = base64.b64decode(lines[1], validate=True)
    pub = base64.b64decode((keys / "vendor.pub").read_text().split("\n")[1])
    assert raw[:2] == b"ED" and len(raw) == 74  # prehashed; key id; signature
    assert raw[2:10] == pub[2:10]
    assert len(base64.b64decode(lines[3], validate=True)) == 64


def test_clone_takes_a_release_signed_by_ihop_and_says_so(signed, keys, tmp_path):
    store = tmp_path / "s"
    r = clone_ok(signed / "release.cba", store / "r", "--trusted-key", keys / "vendor.pub")
    assert "release version 3" in r.stdout
    check_release_file(store / "r")
    assert cat_checksum(store / "r") == parse_archive(signed / "release.cba").source_checksum
    assert (store / VERSION_FILE).read_bytes() == version_file_text(3)


def test_minisign_unencrypted_key_signs_with_minisign_and_clone_takes_a_bita_archive(keys, tmp_path):
    archive = tmp_path / "v1.ext4.cba"
    shutil.copy(FIXTURES / "pair/v1.ext4.cba", archive)  # made by bita itself
    minisign_sign(archive, keys / "mini.key", tmp_path / "v1.ext4.cba.minisig", "ihop-release-version=7")
    r = clone_ok(archive, tmp_path / "s" / "v1", "--trusted-key", keys / "mini.pub")
    assert "release version 7" in r.stdout
    assert cat_checksum(tmp_path / "s" / "v1") == parse_archive(archive).source_checksum


def test_minisign_password_key_signs_through_ihop_sign_and_minisign(keys, tmp_path):
    a = make_archive(tmp_path, "r", seed=b"pw")
    r = ihop_sign(a, keys / "minipw.key", 12, password=PASSWORD)
    assert r.returncode == 0, r.stderr
    assert minisign_verify(a, Path(str(a) + ".minisig"), keys / "minipw.pub").returncode == 0
    clone_ok(a, tmp_path / "s" / "r", "--trusted-key", keys / "minipw.pub")
    # And minisign's own signature with the same key, under --signature.
    sig = minisign_sign(a, keys / "minipw.key", tmp_path / "other.minisig", "x\tihop-release-version=13",
                        password=PASSWORD)
    r = clone_ok(a, tmp_path / "s" / "r2", "--trusted-key", keys / "minipw.pub", "--signature", sig)
    assert "release version 13" in r.stdout


def test_wrong_password_is_refused_and_writes_no_signature(keys, tmp_path):
    a = make_archive(tmp_path, "r", seed=b"wrong")
    r = ihop_sign(a, keys / "minipw.key", 1, password="not it")
    assert_one_error_line(r, "wrong password", "minipw.key")
    assert r.returncode == 1
    assert not Path(str(a) + ".minisig").exists()


def test_ihop_keygen_keys_sign_with_minisign(tmp_path):
    for extra, password in (([], PASSWORD), (["-W"], None)):
        pub, sec = tmp_path / f"k{len(extra)}.pub", tmp_path / f"k{len(extra)}.key"
        r = feed([IHOP, "keygen", *extra, "-p", pub, "-s", sec], (password + "\n") if password else None)
        assert r.returncode == 0, r.stderr
        assert stat.S_IMODE(sec.stat().st_mode) == 0o600
        a = make_archive(tmp_path, f"r{len(extra)}", seed=bytes(extra and b"w"))
        sig = minisign_sign(a, sec, Path(str(a) + ".minisig"), "ihop-release-version=2", password=password)
        assert minisign_verify(a, sig, pub).returncode == 0
        clone_ok(a, tmp_path / "s" / f"r{len(extra)}", "--trusted-key", pub)
        # minisign's key id line agrees with the one ihop prints.
        assert pub.read_text().split("\n")[0].startswith("untrusted comment: minisign public key ")


def test_keygen_refuses_to_overwrite_without_force(tmp_path, keys):
    pub, sec = tmp_path / "k.pub", tmp_path / "k.key"
    sec.write_text("precious\n")
    r = ihop("keygen", "-W", "-p", pub, "-s", sec)
    assert_one_error_line(r, "already exists", str(sec))
    assert sec.read_text() == "precious\n" and not pub.exists()
    r = ihop("keygen", "-W", "-f", "-p", pub, "-s", sec)
    assert r.returncode == 0, r.stderr
    assert sec.read_text() != "precious\n" and pub.exists()


def test_compress_sign_writes_a_signature_that_clone_and_minisign_accept(keys, tmp_path):
    img = tmp_path / "img"
    img.write_bytes(os.urandom(1 << 20))
    out = tmp_path / "c.cba"
    r = ihop("compress", "-i", img, "--sign", keys / "vendor.key", "--release-version", "41",
             "--trusted-comment", "build 2026-11-30", out)
    assert r.returncode == 0, r.stderr
    assert "signature:" in r.stdout
    ok = minisign_verify(out, Path(str(out) + ".minisig"), keys / "vendor.pub")
    assert ok.returncode == 0 and b"\tbuild 2026-11-30" in ok.stdout
    r = clone_ok(out, tmp_path / "s" / "c", "--trusted-key", keys / "vendor.pub")
    assert "release version 41" in r.stdout


def test_signing_refuses_short_chunk_hashes_and_incomplete_archives(keys, tmp_path):
    img = tmp_path / "img"
    img.write_bytes(os.urandom(1 << 20))
    r = ihop("compress", "-i", img, "--hash-length", "16", "--sign", keys / "vendor.key", "--release-version", "1",
             tmp_path / "short.cba")
    assert_one_error_line(r, "at least 32")
    assert not (tmp_path / "short.cba").exists()
    r = ihop("compress", "-i", img, "--hash-length", "16", tmp_path / "short.cba")
    assert r.returncode == 0, r.stderr
    r = ihop_sign(tmp_path / "short.cba", keys / "vendor.key", 1)
    assert_one_error_line(r, "at least 32")
    # bita 0.13's archive without its last chunk's data is never signed.
    trunc = tmp_path / "trunc.cba"
    shutil.copy(FIXTURES / "rand-0_11_0-brotli-trunc.cba", trunc)
    r = ihop_sign(trunc, keys / "vendor.key", 1)
    assert_one_error_line(r, "cut short")
    assert not Path(str(trunc) + ".minisig").exists()


def test_sign_with_a_public_key_that_is_not_the_secret_keys_is_refused(signed, keys, tmp_path):
    a = make_archive(tmp_path, "r", seed=b"pk")
    r = ihop_sign(a, keys / "vendor.key", 1, "-p", keys / "other.pub")
    assert_one_error_line(r, "other.pub", "not the public key")
    assert not Path(str(a) + ".minisig").exists()
    r = ihop_sign(a, keys / "vendor.key", 1, "-p", keys / "vendor.pub")
    assert r.returncode == 0, r.stderr


# --- refusals ----------------------------------------------------------------


def tamper_comment(sig: Path):
    lines = sig.read_text().split("\n")
    lines[2] = lines[2].replace("ihop-release-version=3", "ihop-release-version=9")
    sig.write_text("\n".join(lines))


def flip_signature_byte(sig: Path):
    import base64
    lines = sig.read_text().split("\n")
    raw = bytearray(base64.b64decode(lines[1]))
    raw[20] ^= 1
    lines[1] = base64.b64encode(bytes(raw)).decode()
    sig.write_text("\n".join(lines))


def tamper_header(archive: Path):
    """The version string in the dictionary changed and the header checksum
    fixed up: a header bita itself would take, which the signature does not
    sign."""
    data = bytearray(archive.read_bytes())
    n = parse_archive(archive).header_size - 64
    at = data.index(b"ihop ", 0, n)
    data[at] = ord("I")
    data[n:n + 64] = hashlib.blake2b(bytes(data[:n])).digest()
    archive.write_bytes(bytes(data))
    assert parse_archive(archive).header_checksum_ok


def with_algorithm(text: bytes, line: int, alg: bytes) -> bytes:
    """A key or signature file whose base64 line has another algorithm id."""
    import base64
    lines = text.split(b"\n")
    raw = base64.b64decode(lines[line])
    lines[line] = base64.b64encode(alg + raw[2:])
    return b"\n".join(lines)


REFUSALS = {
    # case: (what to do to the copied archive and its signature, needles of the one error line)
    "unsigned": (lambda d, k: (d / "release.cba.minisig").unlink(), ["no signature", "release.cba.minisig"]),
    "unknown key": (lambda d, k: ihop_sign(d / "release.cba", k / "other.key", 3), ["not trusted", "vendor.pub"]),
    "bad signature": (lambda d, k: flip_signature_byte(d / "release.cba.minisig"), ["does not verify", "altered"]),
    "tampered header": (lambda d, k: tamper_header(d / "release.cba"), ["does not sign this archive's header"]),
    "tampered trusted comment": (lambda d, k: tamper_comment(d / "release.cba.minisig"),
                                 ["does not verify", "altered"]),
    "legacy signature": (lambda d, k: minisign_sign(d / "release.cba", k / "mini.key", d / "release.cba.minisig",
                                                    "ihop-release-version=3", legacy=True), ["legacy"]),
    "no version": (lambda d, k: minisign_sign(d / "release.cba", k / "mini.key", d / "release.cba.minisig",
                                              "timestamp:1\tfile:release.cba"), ["no ihop-release-version"]),
    "version twice": (lambda d, k: minisign_sign(d / "release.cba", k / "mini.key", d / "release.cba.minisig",
                                                 "ihop-release-version=3\tihop-release-version=9"), ["repeated"]),
    "version not a number": (lambda d, k: minisign_sign(d / "release.cba", k / "mini.key",
                                                        d / "release.cba.minisig", "ihop-release-version=-1"),
                             ["malformed"]),
    "signature of another archive": (lambda d, k: shutil.copy(d / "another.cba.minisig", d / "release.cba.minisig"),
                                     ["does not sign this archive's header"]),
}


@pytest.mark.parametrize("case", sorted(REFUSALS))
def test_refusal_is_one_line_and_stores_nothing(case, signed, keys, tmp_path):
    d = tmp_path / "pub"
    shutil.copytree(signed, d)
    tamper, needles = REFUSALS[case]
    tamper(d, keys)
    store = tmp_path / "s"
    r = clone(d / "release.cba", store / "r", "--trusted-key", keys / "vendor.pub", "--trusted-key",
              keys / "mini.pub")
    assert_one_error_line(r, "refusing", *needles)
    assert r.returncode == 1
    assert_store_untouched(store)


def test_short_chunk_hashes_signed_by_minisign_are_refused(keys, tmp_path):
    a = make_archive(tmp_path, "short", seed=b"s", extra=("--hash-length", "16"))
    minisign_sign(a, keys / "mini.key", Path(str(a) + ".minisig"), "ihop-release-version=1")
    r = clone(a, tmp_path / "s" / "r", "--trusted-key", keys / "mini.pub")
    assert_one_error_line(r, "refusing", "16 bytes", "at least 32")
    assert_store_untouched(tmp_path / "s")


def test_without_trusted_keys_signatures_are_not_asked_for(tmp_path):
    clone_ok(FIXTURES / "pair/v1.ext4.cba", tmp_path / "s" / "v1")
    assert not (tmp_path / "s" / VERSION_FILE).exists()
    for opt in (["--signature", "x.minisig"], ["--allow-downgrade"]):
        r = clone(FIXTURES / "pair/v1.ext4.cba", tmp_path / "s" / "v2", *opt)
        assert r.returncode == 2
        assert "--trusted-key" in r.stderr


def sig_text(signed: Path) -> str:
    return (signed / "release.cba.minisig").read_text()


HOSTILE_SIGNATURES = {
    "empty": lambda t: "",
    "one line": lambda t: t.split("\n")[0] + "\n",
    "no trusted comment": lambda t: "\n".join(t.split("\n")[:2]) + "\n",
    "no global signature": lambda t: "\n".join(t.split("\n")[:3]) + "\n",
    "bad base64": lambda t: t.replace(t.split("\n")[1], "RUQ!!!notbase64" + t.split("\n")[1][15:]),
    "short signature": lambda t: t.replace(t.split("\n")[1], t.split("\n")[1][:-8]),
    "wrong algorithm": lambda t: with_algorithm(t.encode(), 1, b"Ex").decode(),
    "no untrusted prefix": lambda t: t.replace("untrusted comment: ", "comment: ", 1),
    "no trusted prefix": lambda t: t.replace("trusted comment: ", "trusted: ", 1),
    "NUL in trusted comment": lambda t: t.replace("timestamp:", "time\0stamp:"),
    "comment line too long": lambda t: t.replace("untrusted comment: ", "untrusted comment: " + "x" * 2000, 1),
    "trusted comment too long": lambda t: t.replace("timestamp:", "timestamp:" + "x" * 9000, 1),
    "huge file": lambda t: t + "x" * (1 << 20),
}


@pytest.mark.parametrize("case", sorted(HOSTILE_SIGNATURES))
def test_hostile_signature_file_is_refused_in_one_line(case, signed, keys, tmp_path):
    d = tmp_path / "pub"
    shutil.copytree(signed, d)
    (d / "release.cba.minisig").write_bytes(HOSTILE_SIGNATURES[case](sig_text(signed)).encode("latin-1"))
    r = clone(d / "release.cba", tmp_path / "s" / "r", "--trusted-key", keys / "vendor.pub")
    line = assert_one_error_line(r)
    assert "minisig" in line
    assert r.returncode == 1
    assert_store_untouched(tmp_path / "s")


HOSTILE_KEYS = {
    "empty": (lambda t: b"", "empty"),
    "no key line": (lambda t: t.split(b"\n")[0] + b"\n", "ends after"),
    "bad base64": (lambda t: t.split(b"\n")[0] + b"\nRWS***\n", "base64"),
    "short key": (lambda t: t[:-10] + b"\n", "base64"),
    "wrong algorithm": (lambda t: with_algorithm(t, 1, b"ED"), "unsupported"),
    "secret key given": (None, "base64"),
    "huge file": (lambda t: t + b"#" * 100000, "larger than"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE_KEYS))
def test_hostile_key_file_is_refused_before_anything_is_fetched(case, signed, keys, tmp_path):
    make, needle = HOSTILE_KEYS[case]
    key = tmp_path / "bad.pub"
    key.write_bytes(make((keys / "vendor.pub").read_bytes()) if make else (keys / "vendor.key").read_bytes())
    r = clone(signed / "release.cba", tmp_path / "s" / "r", "--trusted-key", key)
    assert_one_error_line(r, "bad.pub", needle)
    assert r.returncode == 1
    assert_store_untouched(tmp_path / "s")


def test_hostile_secret_key_files_are_refused(tmp_path, keys, signed):
    a = signed / "release.cba"
    text = (keys / "vendor.key").read_text()
    cases = {
        "public key given": ((keys / "vendor.pub").read_text(), "base64"),
        "bad checksum algorithm": (text.replace(text.split("\n")[1], text.split("\n")[1][:5] + "A" +
                                                text.split("\n")[1][6:]), "unsupported"),
        "damaged key": (text.replace(text.split("\n")[1], text.split("\n")[1][:100] +
                                     ("A" if text.split("\n")[1][100] != "A" else "B") + text.split("\n")[1][101:]),
                        "damaged"),
    }
    for name, (content, needle) in cases.items():
        k = tmp_path / "bad.key"
        k.write_text(content)
        r = ihop_sign(a, k, 1)
        assert_one_error_line(r, needle)


# --- trusted key directories and rotation ------------------------------------


def test_trusted_keys_directory_takes_old_and_new_keys(signed, keys, tmp_path):
    trusted = tmp_path / "trusted.d"
    trusted.mkdir()
    shutil.copy(keys / "vendor.pub", trusted / "2025-old.pub")
    shutil.copy(keys / "mini.pub", trusted / "2026-new.pub")
    (trusted / "README").write_text("not a key\n")
    new = make_archive(tmp_path, "new", seed=b"new")
    minisign_sign(new, keys / "mini.key", Path(str(new) + ".minisig"), "ihop-release-version=4")
    clone_ok(signed / "release.cba", tmp_path / "s" / "old", "--trusted-keys", trusted)
    clone_ok(new, tmp_path / "s" / "new", "--trusted-keys", trusted)
    # The old key retired: its releases are refused.
    (trusted / "2025-old.pub").unlink()
    r = clone(signed / "release.cba", tmp_path / "s" / "again", "--trusted-keys", trusted)
    assert_one_error_line(r, "not trusted", "2026-new.pub")


def test_trusted_keys_directory_without_keys_or_with_a_symlink_is_refused(signed, keys, tmp_path):
    empty = tmp_path / "empty.d"
    empty.mkdir()
    r = clone(signed / "release.cba", tmp_path / "s" / "r", "--trusted-keys", empty)
    assert_one_error_line(r, "no trusted key", str(empty))
    linked = tmp_path / "linked.d"
    linked.mkdir()
    (linked / "vendor.pub").symlink_to(keys / "vendor.pub")
    r = clone(signed / "release.cba", tmp_path / "s" / "r", "--trusted-keys", linked)
    assert_one_error_line(r, "symlink")
    r = clone(signed / "release.cba", tmp_path / "s" / "r", "--trusted-keys", tmp_path / "missing.d")
    assert_one_error_line(r, "missing.d")
    assert_store_untouched(tmp_path / "s")


# --- over nginx ----------------------------------------------------------------


def test_over_nginx_the_signature_is_fetched_first_beside_the_archive(nginx, signed, keys, tmp_path):
    url = nginx.publish("signed/release.cba", (signed / "release.cba").read_bytes())
    nginx.publish("signed/release.cba.minisig", (signed / "release.cba.minisig").read_bytes())
    mark = nginx.mark()
    r = clone_ok(url, tmp_path / "s" / "r", "--trusted-key", keys / "vendor.pub")
    assert "release version 3" in r.stdout
    paths = [e.path for e in nginx.entries(mark)]
    sig = [i for i, p in enumerate(paths) if p == "/signed/release.cba.minisig"]
    arc = [i for i, p in enumerate(paths) if p == "/signed/release.cba"]
    assert sig and arc and len(sig) + len(arc) == len(paths)
    assert max(sig) < min(arc), f"an archive byte was asked for before the signature: {paths}"
    assert cat_checksum(tmp_path / "s" / "r") == parse_archive(signed / "release.cba").source_checksum


def test_over_nginx_a_query_string_stays_after_the_signature_suffix(nginx, signed, keys, tmp_path):
    url = nginx.publish("q/release.cba", (signed / "release.cba").read_bytes())
    nginx.publish("q/release.cba.minisig", (signed / "release.cba.minisig").read_bytes())
    mark = nginx.mark()
    clone_ok(url + "?token=abc", tmp_path / "s" / "r", "--trusted-key", keys / "vendor.pub")
    assert nginx.entries(mark)[0].path == "/q/release.cba.minisig?token=abc"


def test_over_nginx_a_404_for_the_signature_is_a_refusal(nginx, signed, keys, tmp_path):
    url = nginx.publish("nosig/release.cba", (signed / "release.cba").read_bytes())
    mark = nginx.mark()
    r = clone(url, tmp_path / "s" / "r", "--trusted-key", keys / "vendor.pub")
    assert_one_error_line(r, "refusing", "no signature", "404", "release.cba.minisig")
    assert r.returncode == 1
    assert_store_untouched(tmp_path / "s")
    # Nothing of the archive was asked for.
    assert [e.path for e in nginx.entries(mark)] == ["/nosig/release.cba.minisig"]


def test_over_nginx_the_signature_of_another_archive_is_refused(nginx, signed, keys, tmp_path):
    url = nginx.publish("swapped/release.cba", (signed / "release.cba").read_bytes())
    nginx.publish("swapped/release.cba.minisig", (signed / "another.cba.minisig").read_bytes())
    r = clone(url, tmp_path / "s" / "r", "--trusted-key", keys / "vendor.pub")
    assert_one_error_line(r, "refusing", "does not sign this archive's header")
    assert_store_untouched(tmp_path / "s")


# --- rollback protection -------------------------------------------------------


def signed_pair(tmp_path, keys, v_first, v_second):
    """pair/v1 and pair/v2 (bita's, sharing chunks) signed as two versions."""
    out = []
    for name, v in (("v1", v_first), ("v2", v_second)):
        a = tmp_path / f"{name}.ext4.cba"
        shutil.copy(FIXTURES / f"pair/{name}.ext4.cba", a)
        r = ihop_sign(a, keys / "vendor.key", v)
        assert r.returncode == 0, r.stderr
        out.append(a)
    return out


def test_rollback_is_refused_unless_allowed(keys, tmp_path):
    v3, v2 = signed_pair(tmp_path, keys, 3, 2)
    store = tmp_path / "s"
    key = ("--trusted-key", keys / "vendor.pub")
    clone_ok(v3, store / "three", *key)
    assert (store / VERSION_FILE).read_bytes() == version_file_text(3)
    r = clone(v2, store / "two", *key)
    assert_one_error_line(r, "refusing", "version 2 is older than version 3", "--allow-downgrade")
    assert r.returncode == 1
    assert not (store / "two").exists()
    r = clone_ok(v2, store / "two", *key, "--allow-downgrade")
    assert "release version 2" in r.stdout
    # Taking an older one on purpose never lowers what the store remembers.
    assert (store / VERSION_FILE).read_bytes() == version_file_text(3)
    # The same version again is no downgrade.
    clone_ok(v3, store / "three-again", *key)
    # gc and ls leave the remembered version alone and do not list it.
    assert ihop("gc", store).returncode == 0
    ls = ihop("ls", store)
    assert ls.returncode == 0 and VERSION_FILE not in ls.stdout
    assert (store / VERSION_FILE).read_bytes() == version_file_text(3)


def test_a_damaged_remembered_version_fails_closed(keys, signed, tmp_path):
    store = tmp_path / "s"
    clone_ok(signed / "release.cba", store / "r", "--trusted-key", keys / "vendor.pub")
    (store / VERSION_FILE).write_bytes(version_file_text(3).replace(b"=3", b"=1"))
    r = clone(signed / "another.cba", store / "a", "--trusted-key", keys / "vendor.pub")
    assert_one_error_line(r, VERSION_FILE, "damaged")
    assert not (store / "a").exists()
    # Unsigned clones do not read it.
    clone_ok(FIXTURES / "pair/v1.ext4.cba", store / "plain")


def test_remembered_version_is_durable_before_chunks_and_survives_kill_9(keys, tmp_path):
    v5, v4 = signed_pair(tmp_path, keys, 5, 4)
    store = tmp_path / "s"
    header = parse_archive(v5).header_size
    with SlowServer(v5, Path(str(v5) + ".minisig"), rate=256 << 10) as srv:
        p = subprocess.Popen([IHOP, "clone", "--trusted-key", keys / "vendor.pub", srv.url(v5), store / "five"],
                             stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            deadline = time.monotonic() + 60
            # Killed while chunk data is arriving, well before the end.
            while time.monotonic() < deadline and p.poll() is None:
                if any(e.start >= header and e.sent > 0 for e in srv.entries(path=v5)):
                    break
                time.sleep(0.05)
            assert p.poll() is None, "the clone ended before it could be killed"
            p.send_signal(signal.SIGKILL)
            p.wait(30)
        finally:
            if p.poll() is None:
                p.kill()
                p.wait(30)
        first = srv.entries()[0]
        assert first.path == "/v1.ext4.cba.minisig"
    assert not (store / "five").exists()
    assert (store / VERSION_FILE).read_bytes() == version_file_text(5)
    r = clone(v4, store / "four", "--trusted-key", keys / "vendor.pub")
    assert_one_error_line(r, "version 4 is older than version 5")
    clone_ok(v4, store / "four", "--trusted-key", keys / "vendor.pub", "--allow-downgrade")
    clone_ok(v5, store / "five", "--trusted-key", keys / "vendor.pub")


def store_state(store: Path):
    """What a refused release may not change: the remembered version's bytes
    (None when there is none), the files at the top, the chunk files."""
    version = store / VERSION_FILE
    top = sorted(p.name for p in store.iterdir() if p.is_file()) if store.exists() else []
    return (version.read_bytes() if version.exists() else None, top, chunk_files(store) if store.exists() else [])


def store_at_version(tmp_path, keys, name, version):
    """A store that took a signed release of this version, under NAME `old`."""
    a = make_archive(tmp_path, f"old-{name}", seed=b"old")
    assert ihop_sign(a, keys / "vendor.key", version).returncode == 0
    store = tmp_path / name
    clone_ok(a, store / "old", "--trusted-key", keys / "vendor.pub")
    assert (store / VERSION_FILE).read_bytes() == version_file_text(version)
    return store


@pytest.mark.parametrize("store_was", ["fresh", "at version 3"])
def test_a_release_refused_by_verify_header_leaves_the_remembered_version_as_it_was(keys, tmp_path, store_was):
    """Another validly signed archive, of a higher version, refused for its
    header: the store does not take its version, and the wanted, lower one
    is then cloned, not refused as a downgrade."""
    wanted, other = signed_pair(tmp_path, keys, 6, 50)
    store = tmp_path / "fresh" if store_was == "fresh" else store_at_version(tmp_path, keys, "s", 3)
    key = ("--trusted-key", keys / "vendor.pub")
    header = parse_archive(wanted).header_checksum.hex()
    before = store_state(store)
    r = clone(other, store / "r", *key, "--verify-header", header)
    assert_one_error_line(r, "does not match the one given with --verify-header")
    assert r.returncode == 1
    if store_was == "fresh":
        assert_store_untouched(store)
    assert store_state(store) == before
    r = clone_ok(wanted, store / "r", *key, "--verify-header", header)
    assert "release version 6" in r.stdout
    assert (store / VERSION_FILE).read_bytes() == version_file_text(6)


def forge_pair(tmp_path, keys, how):
    """v2's archive beside a signature by the trusted key that does not sign
    it, of version 2: pair/v1's, or another archive's."""
    d = tmp_path / "forged"
    d.mkdir()
    v1, v2 = signed_pair(d, keys, 2, 3)
    if how == "signature of another archive":
        another = make_archive(d, "another", seed=b"forge")
        assert ihop_sign(another, keys / "vendor.key", 2).returncode == 0
        shutil.copy(Path(str(another) + ".minisig"), Path(str(v2) + ".minisig"))
    else:
        shutil.copy(Path(str(v1) + ".minisig"), Path(str(v2) + ".minisig"))
    return v2


@pytest.mark.parametrize("how", ["v1's signature beside v2", "signature of another archive"])
def test_a_forged_pair_is_reported_as_tampering_on_a_fresh_store_and_on_one_further_on(keys, tmp_path, how):
    """The signature's version (2) is below the store's (5): still bad-data,
    never downgrade, so that an update agent can tell "already newer" from
    "someone is lying to me"."""
    import json
    forged = forge_pair(tmp_path, keys, how)
    seen = {}
    for store_was in ("fresh", "at version 5"):
        store = tmp_path / "fresh" if store_was == "fresh" else store_at_version(tmp_path, keys, "s5", 5)
        before = store_state(store)
        r = ihop("clone", "--json", "--trusted-key", keys / "vendor.pub", forged, store / "r")
        line = assert_one_error_line(r, "refusing", "does not sign this archive's header")
        err = json.loads(r.stdout)["error"]
        assert line == "ihop: error: " + err["message"]
        seen[store_was] = (r.returncode, err["code"], err["errno"])
        assert store_state(store) == before
        if store_was == "fresh":
            assert_store_untouched(store)
    assert seen["fresh"] == seen["at version 5"] == (1, "bad-data", "EBADMSG"), seen


def test_over_nginx_a_downgrade_is_refused_after_the_header_before_any_chunk(nginx, keys, tmp_path):
    """The version is compared once the header is known to be signed: a
    downgrade costs its header, and not one byte of chunk data."""
    v3, v2 = signed_pair(tmp_path, keys, 3, 2)
    store = tmp_path / "s"
    clone_ok(v3, store / "three", "--trusted-key", keys / "vendor.pub")
    url = nginx.publish("downgrade/v2.ext4.cba", v2.read_bytes())
    nginx.publish("downgrade/v2.ext4.cba.minisig", Path(str(v2) + ".minisig").read_bytes())
    before = store_state(store)
    mark = nginx.mark()
    r = clone(url, store / "two", "--trusted-key", keys / "vendor.pub")
    assert_one_error_line(r, "refusing", "version 2 is older than version 3")
    assert store_state(store) == before
    entries = nginx.entries(mark)
    assert entries[0].path == "/downgrade/v2.ext4.cba.minisig", entries
    archive = [e for e in entries if e.path == "/downgrade/v2.ext4.cba"]
    assert sum(e.body_bytes for e in archive) == parse_archive(v2).header_size, entries


def test_signature_option_takes_a_url_for_a_local_archive(nginx, signed, keys, tmp_path):
    sig_url = nginx.publish("elsewhere/sig.minisig", (signed / "release.cba.minisig").read_bytes())
    mark = nginx.mark()
    r = clone_ok(signed / "release.cba", tmp_path / "s" / "r", "--trusted-key", keys / "vendor.pub",
                 "--signature", sig_url)
    assert "release version 3" in r.stdout
    assert {e.path for e in nginx.entries(mark)} == {"/elsewhere/sig.minisig"}
    r = clone(signed / "release.cba", tmp_path / "s" / "r2", "--trusted-key", keys / "vendor.pub",
              "--signature", nginx.url("elsewhere/missing.minisig"))
    assert_one_error_line(r, "no signature", "404", "missing.minisig")


def test_signing_command_lines_that_cannot_work_are_refused_and_write_nothing(keys, signed, tmp_path):
    a = tmp_path / "r.cba"
    shutil.copy(signed / "release.cba", a)
    img = tmp_path / "img"
    img.write_bytes(os.urandom(200_000))
    cases = [
        # (command line, exit status, what the error says)
        (["keygen", "-W", "-p", tmp_path / "k.pub"], 2, "-s SECKEY"),
        (["keygen", "-W", "-p", tmp_path / "k.key", "-s", tmp_path / "k.key"], 2, "cannot both be"),
        (["sign", "-s", keys / "vendor.key", a], 2, "--release-version"),
        (["sign", "--release-version", "1", a], 2, "-s SECKEY"),
        (["sign", "-s", keys / "vendor.key", "--release-version", "x", a], 2, "whole number"),
        (["sign", "-s", keys / "vendor.key", "--release-version", "1", "http://127.0.0.1:1/r.cba"], 1, "not a URL"),
        (["sign", "-s", keys / "vendor.key", "--release-version", "1", "-t", "a\tihop-release-version=9", a], 1,
         "--release-version"),
        (["sign", "-s", keys / "vendor.key", "--release-version", "1", "-t", "two\nlines", a], 1, "one line"),
        (["compress", "-i", img, "--sign", keys / "vendor.key", tmp_path / "c.cba"], 2, "--release-version"),
        (["compress", "-i", img, "--release-version", "1", tmp_path / "c.cba"], 2, "--sign"),
    ]
    for args, status, needle in cases:
        r = ihop(*args)
        assert r.returncode == status, (args, r.stderr)
        assert needle in r.stderr, (args, r.stderr)
    assert not (tmp_path / "k.pub").exists() and not (tmp_path / "k.key").exists()
    assert not Path(str(a) + ".minisig").exists() and not (tmp_path / "c.cba").exists()
    assert not (tmp_path / "c.cba.minisig").exists()


def test_an_encrypted_key_cannot_take_its_password_from_the_image_pipe(keys, tmp_path):
    """compress reads the image from stdin: the password cannot come from there too."""
    with open(FIXTURES / "random.img", "rb") as image:
        r = subprocess.run([IHOP, "compress", "--sign", keys / "minipw.key", "--release-version", "1",
                            tmp_path / "c.cba"], stdin=image, capture_output=True, text=True, timeout=TIMEOUT)
    assert_one_error_line(r, "minipw.key", "give the image with -i")
    assert not (tmp_path / "c.cba").exists()


def test_keygen_refuses_an_empty_password(tmp_path):
    r = feed([IHOP, "keygen", "-p", tmp_path / "k.pub", "-s", tmp_path / "k.key"], "\n")
    assert r.returncode == 2 and "password is empty" in r.stderr
    assert not (tmp_path / "k.pub").exists() and not (tmp_path / "k.key").exists()
