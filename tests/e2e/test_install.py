# SPDX-License-Identifier: MIT
"""What ihop ships beside its binary:

- man pages (doc/man/*.scd, scdoc): ihop(1) names every command, and each
  command's page lists exactly the options its --help lists, with the same
  defaults; the built pages render with man;
- bash completion: commands, a command's options, files after an option
  that takes one, release names after STORE/;
- meson install puts the binary, the man pages, the completion, the
  initramfs-tools integration and the doc directory in place."""

import os
import re
import subprocess
from pathlib import Path

import pytest

from ihop_run import FIXTURES, ROOT, TIMEOUT, ihop, run
from test_cli_help import commands, help_options

MAN = ROOT / "doc" / "man"
BUILD = Path(os.environ.get("IHOP", ROOT / "build" / "src" / "ihop")).resolve().parents[1]
MAN_OPTION = re.compile(r"^\*(?:(-\w)\*, \*)?(--[\w-]+)\*(?: _[^_]*_)?$")


def man_options(page: Path) -> dict:
    """{spelling: default or None} for the options a page's OPTIONS lists."""
    lines = page.read_text().splitlines()
    out = {}
    for i, line in enumerate(lines):
        m = MAN_OPTION.match(line)
        if not m:
            continue
        text = " ".join(lines[i + 1].split()) if i + 1 < len(lines) else ""
        d = re.search(r"\(default: (.*)\)\.?$", text)
        default = d.group(1).replace("\\", "") if d else None
        out[m.group(2)] = default
        if m.group(1):
            out[m.group(1)] = default
    return out


def test_every_command_has_a_page_listing_its_help_options():
    names = commands()
    assert (MAN / "ihop.1.scd").exists()
    overview = (MAN / "ihop.1.scd").read_text()
    for name in names:
        page = MAN / f"ihop-{name}.1.scd"
        assert page.exists(), f"no man page for {name}"
        assert f"*ihop-{name}*(1)" in overview, f"ihop(1) does not name {name}"
        in_man, in_help = man_options(page), help_options(name)
        assert set(in_man) == set(in_help), \
            f"ihop-{name}(1): only in --help {sorted(set(in_help) - set(in_man))}, " \
            f"only in the page {sorted(set(in_man) - set(in_help))}"
        for option, default in in_help.items():
            assert in_man[option] == default, f"ihop-{name}(1) {option}: {in_man[option]!r}, --help {default!r}"
    assert set(man_options(MAN / "ihop.1.scd")) == set(help_options(""))
    assert {p.name for p in MAN.glob("*.scd")} == {"ihop.1.scd"} | {f"ihop-{n}.1.scd" for n in names}


def test_the_built_pages_render():
    built = BUILD / "doc" / "man"
    if not (built / "ihop.1").exists():
        pytest.fail(f"no built man pages in {built} (scdoc is installed by scripts/install-deps.sh)")
    for page in sorted(built.glob("*.1")):
        r = subprocess.run(["man", "-l", str(page)], capture_output=True, text=True, timeout=TIMEOUT,
                           env={**os.environ, "MANPAGER": "cat", "MANWIDTH": "80"})
        assert r.returncode == 0 and r.stderr == "", (page, r.stderr)
        name = page.name[:-2]
        assert f"{name} - " in r.stdout and "OPTIONS" in r.stdout, page


def complete(line: str, cwd: Path) -> list:
    """What `complete -F _ihop` offers for the command line typed so far."""
    words = line.split(" ")
    script = f"""
source {ROOT / 'completion' / 'ihop.bash'}
COMP_WORDS=({' '.join(repr(w) for w in words)})
COMP_CWORD={len(words) - 1}
_ihop
printf '%s\\n' "${{COMPREPLY[@]}}"
"""
    env = {**os.environ, "PATH": f"{Path(os.environ.get('IHOP', BUILD / 'src' / 'ihop')).parent}:{os.environ['PATH']}"}
    r = subprocess.run(["bash", "-c", script], capture_output=True, text=True, cwd=cwd, timeout=TIMEOUT, env=env)
    assert r.returncode == 0, r.stderr
    return sorted(w for w in r.stdout.splitlines() if w)


def test_completion_offers_commands_options_files_and_releases(tmp_path):
    assert "clone" in complete("ihop cl", tmp_path) and complete("ihop cl", tmp_path) == ["clone"]
    assert set(complete("ihop ", tmp_path)) == set(commands())
    assert complete("ihop clone --trusted-k", tmp_path) == ["--trusted-key", "--trusted-keys"]
    assert "--json" in complete("ihop verify --", tmp_path) and "--repair" in complete("ihop verify --", tmp_path)
    (tmp_path / "vendor.pub").write_text("x")
    (tmp_path / "keys.d").mkdir()
    assert complete("ihop clone --trusted-key ven", tmp_path) == ["vendor.pub"]
    assert complete("ihop clone --trusted-keys ke", tmp_path) == ["keys.d"]
    assert complete("ihop sign -s ven", tmp_path) == ["vendor.pub"]
    store = tmp_path / "store"
    assert ihop("clone", FIXTURES / "pair/v1.ext4.cba", store / "rel_a").returncode == 0
    assert ihop("clone", FIXTURES / "pair/v2.ext4.cba", store / "rel_b").returncode == 0
    (store / "notes.txt").write_text("not a release\n")
    assert complete("ihop mount store/", tmp_path) == ["store/rel_a", "store/rel_b"]
    assert complete("ihop verify --json store/rel_b", tmp_path) == ["store/rel_b"]


def test_meson_install_puts_everything_in_place(tmp_path):
    dest = tmp_path / "dest"
    r = run(["meson", "install", "-C", BUILD, "--destdir", dest, "--no-rebuild", "--quiet"])
    assert r.returncode == 0, r.stdout + r.stderr
    files = {str(p.relative_to(dest)) for p in dest.rglob("*") if p.is_file()}
    expect = {"usr/local/bin/ihop", "usr/local/share/doc/ihop/README.md", "usr/local/share/doc/ihop/LICENSE",
              "usr/share/initramfs-tools/hooks/ihop", "usr/share/initramfs-tools/scripts/local-top/ihop",
              "usr/local/lib/systemd/system/run-ihop-store.mount.d/ihop-root-storage.conf"}
    expect |= {f"usr/local/share/man/man1/{p.name[:-4]}" for p in MAN.glob("*.scd")}
    missing = expect - files
    assert not missing, f"not installed: {sorted(missing)}; installed: {sorted(files)}"
    completion = [f for f in files if f.endswith("bash-completion/completions/ihop")]
    assert completion, sorted(files)
    assert os.access(dest / "usr/local/bin/ihop", os.X_OK)
    assert os.access(dest / "usr/share/initramfs-tools/hooks/ihop", os.X_OK)
