# SPDX-License-Identifier: MIT
"""The source tree carries its licence: every source, script, build and
test file names it with an SPDX line near its top (LICENSE holds the text)."""

from conftest import ROOT

SOURCE_SUFFIXES = {".c", ".h", ".py", ".sh", ".proto", ".dict", ".in", ".conf", ".service"}
SOURCE_NAMES = {"meson.build", "meson_options.txt", "run", "local-top"}
TREES = ["src", "tests", "scripts", "bench", "proto", ".ci", "initramfs"]
SKIPPED_DIRS = {"__pycache__", "work", "fixtures", "corpus"}


def source_files():
    for tree in TREES:
        base = ROOT / tree
        if not base.is_dir():
            continue
        for path in base.rglob("*"):
            if any(part in SKIPPED_DIRS for part in path.relative_to(ROOT).parts):
                continue
            if path.is_file() and (path.suffix in SOURCE_SUFFIXES or path.name in SOURCE_NAMES):
                yield path
    yield ROOT / "meson.build"


def test_every_source_file_names_its_licence():
    files = list(source_files())
    assert len(files) > 100, "the walk found too few files: is ROOT right?"
    missing = [str(p.relative_to(ROOT)) for p in files
               if "SPDX-License-Identifier: MIT" not in p.read_text(errors="replace")[:400]]
    assert missing == []


def test_the_licence_text_is_in_the_tree():
    text = (ROOT / "LICENSE").read_text()
    assert text.startswith("MIT License") or "Permission is hereby granted, free of charge" in text
