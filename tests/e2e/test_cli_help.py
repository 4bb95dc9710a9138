# SPDX-License-Identifier: MIT
"""--help is made from each command's option table (src/cli.c): it fits in
80 columns, the README's option tables list what it lists with the same
defaults, and the defaults it states are the ones ihop uses."""

import re

from conftest import FIXTURES, ROOT, ihop

README = ROOT / "README.md"
OPTION_LINE = re.compile(r"^  (?:-(\w), |\s{4})?--([\w-]+)")


def commands():
    r = ihop("--help")
    assert r.returncode == 0
    lines = r.stdout.splitlines()
    start = next(i for i, l in enumerate(lines) if l.startswith("Commands"))
    names = []
    for l in lines[start + 1:]:
        if not l.startswith("  "):
            break
        names.append(l.split()[0])
    assert len(names) >= 11, names
    return names


def help_text(command):
    r = ihop(*([command] if command else []), "--help")
    assert r.returncode == 0 and r.stderr == "", r
    return r.stdout


def help_options(command):
    """{option: default or None} for every option --help lists, by its
    spellings ("--jobs" and "-j" alike)."""
    blocks = []
    for line in help_text(command).splitlines():
        m = OPTION_LINE.match(line)
        if m:
            blocks.append([m.group(1), m.group(2), line[m.end():]])
        elif blocks and line.startswith("      ") and blocks[-1] is not None:
            blocks[-1][2] += " " + line
        else:
            blocks.append(None)  # a heading or text: the block before it has ended
    options = {}
    for b in filter(None, blocks):
        short, name, rest = b
        m = re.search(r"\(default: (.*)\)$", " ".join(rest.split()))
        default = m.group(1) if m else None
        options["--" + name] = default
        if short:
            options["-" + short] = default
    return options


def readme_tables():
    """{command: {option: default or None}} from the README's option tables.
    A table belongs to the command of the section it is in, or to those the
    line before it names ("Options of `ihop compress` and `ihop diff`"; "`ihop`"
    alone is ihop's own options)."""
    tables = {}
    section, last_text, rows = None, "", None
    for line in README.read_text().splitlines() + [""]:
        if line.startswith("|"):
            cells = [c.strip() for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]]
            if rows is None:
                rows = {"header": cells, "body": []}
            elif not set(line) <= set("|-: "):
                rows["body"].append(cells)
            continue
        if rows is not None:
            if rows["header"][0] == "option":
                if last_text.startswith("Options of "):
                    owners = [m or "" for m in re.findall(r"`ihop(?: (\w+))?`", last_text)]
                else:
                    owners = [section]
                has_default = len(rows["header"]) > 2 and rows["header"][2] == "default"
                for owner in owners:
                    t = tables.setdefault(owner, {})
                    for cells in rows["body"]:
                        default = cells[2].replace("`", "") if has_default and cells[2] else None
                        for spelling in re.findall(r"(?<![\w-])(--[\w-]+|-\w)(?![\w-])", cells[0]):
                            t[spelling] = default
            rows = None
        m = re.match(r"#+ `ihop (\w+)", line)
        if m:
            section = m.group(1)
        if line.strip():
            last_text = line.strip()
    return tables


def test_every_help_line_fits_in_80_columns():
    for command in [""] + commands():
        for line in help_text(command).splitlines():
            assert len(line) <= 80, f"ihop {command} --help: {len(line)} columns: {line!r}"


def test_readme_option_tables_list_what_help_lists_with_the_same_defaults():
    """Same options, and the same default where either states one."""
    tables = readme_tables()
    for command in [""] + commands():
        listed = help_options(command)
        readme = tables.get(command, {})
        name = f"ihop {command}".strip()
        assert set(readme) == set(listed), \
            f"{name}: only in --help: {sorted(set(listed) - set(readme))}, " \
            f"only in the README: {sorted(set(readme) - set(listed))}"
        for option, default in readme.items():
            assert listed[option] == default, f"{name} {option}: README {default!r}, --help {listed[option]!r}"


def test_the_defaults_help_states_are_the_ones_compress_uses(tmp_path):
    """An archive made with every chunking and compression default given as
    --help states it is byte for byte the one made with none given."""
    defaults = help_options("compress")
    given = []
    for option in ("--avg-chunk-size", "--min-chunk-size", "--max-chunk-size", "--hash-chunking",
                   "--rolling-window-size", "--hash-length", "--compression", "--compression-level"):
        given += [option, defaults[option].split()[0]]  # "64 for RollSum, ...": RollSum's is the default's
    image = FIXTURES / "random.img"
    r = ihop("compress", "-i", image, tmp_path / "plain.cba")
    assert r.returncode == 0, r.stderr
    r = ihop("compress", "-i", image, *given, tmp_path / "given.cba")
    assert r.returncode == 0, (given, r.stderr)
    assert (tmp_path / "plain.cba").read_bytes() == (tmp_path / "given.cba").read_bytes(), given
    # And the test can fail: another value given does change the archive.
    r = ihop("compress", "-i", image, "--avg-chunk-size", "32KiB", tmp_path / "other.cba")
    assert r.returncode == 0 and (tmp_path / "other.cba").read_bytes() != (tmp_path / "plain.cba").read_bytes()
