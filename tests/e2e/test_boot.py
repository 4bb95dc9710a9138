# SPDX-License-Identifier: MIT
"""Booting from the store: a Debian system whose root file system is an ihop
release, on a real boot (qemu, TCG; tests/boot/bootvm.py builds it).

The system's initramfs is made as a user's would be (initramfs-tools'
stock configuration, MODULES=most, no modules file), once with busybox and
once without (klibc's tools only: "klibc" below). The store's file system
carries a setuid-root binary and a device node planted offline, which
every boot from the store tries as user nobody.

The boots run once per session, in order, each on the store the one before
left, as a device would live them:

  v1        boot the first release; its test unit clones v2 (from v2.cba on
            the store's file system) into /run/ihop/store, then powers off
  v2        boot the update (the store named by UUID=, its type by
            ihop.storefstype=ext4; the others by LABEL=, and rollback by its
            path, their type found by the boot script)
  v1v       boot v1 with its dm-verity hash tree (ihop.roothash)
  klibc     the same with the initramfs made without busybox
  rollback  boot v1 again; its unit runs `ihop rm` of the running release and
            `ihop gc`, then reads the whole root device once more
  corrupt   a copy of the store with one byte flipped in the chunk file that
            holds v1v's ext4 superblock: dm-verity must stop the boot
  missing   ihop.release=missing: a clear message and the rescue shell

then the boots of BAD_COMMAND_LINES and REFUSED_BOOTS, each refused with
one "ihop:" line on the console and the rescue shell; and three boots with qemu as the NBD client instead of the guest's kernel:
`ihop serve` on the host exports v1 of the store the disk was made from,
qemu attaches it as the guest's only disk (read-only) and the kernel mounts
root=/dev/vda (the initramfs's ihop script stays out of it):

  served-unix    ihop serve --unix SOCK STORE/v1
  served-tcp     ihop serve --verify --listen 127.0.0.1:PORT STORE/v1v STORE/v1,
                 v1 asked for by name (v1v, the default export, is larger)
  served-ondemand ihop serve --unix SOCK --source http://127.0.0.1:PORT/v1.cba
                 EMPTY/v1: v1 is not in that store; the chunks the boot reads
                 are fetched from nginx as it reads them
"""

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bita_archive import parse_archive
from store_checks import check_store
from ihop_run import IHOP
from local_http import free_port

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "boot"))
import bootvm  # noqa: E402

RESCUE = bootvm.RESCUE_SHELL
# What the kernel says when a device it uses fails under it.
KERNEL_TROUBLE = ["I/O error", "nbd0: Connection timed out", "nbd0: Receive control failed",
                  "EXT4-fs error", "Buffer I/O error", "blk_update_request", "Dead connection"]


# Command lines the boot script refuses before it touches anything: the
# boot's name, the command line, and what the console must say.
BAD_COMMAND_LINES = {
    "no-store": "console=ttyS0 root=/dev/nbd0 ihop.release=v1",
    "relative-storepath": f"console=ttyS0 root=/dev/nbd0 ihop.store=LABEL={bootvm.STORE_LABEL} "
                          "ihop.storepath=store ihop.release=v1",
    "roothash-alone": f"console=ttyS0 root=/dev/nbd0 ihop.store=LABEL={bootvm.STORE_LABEL} "
                      "ihop.storepath=/store ihop.release=v1v ihop.roothash=00",
}
BAD_COMMAND_LINE_MESSAGES = {
    "no-store": "ihop: ihop.release=v1 without ihop.store=",
    "relative-storepath": "ihop: ihop.storepath=store: not an absolute path",
    "roothash-alone": "ihop: ihop.roothash= without ihop.hashoffset=",
}


# Boots the boot script must refuse once it sees the store (or the module of
# its file system): the release named, more command line, the store (the
# corrupt copy, which also holds a FIFO and a symlink named as releases),
# whether the initramfs is the one without busybox, and what the console
# must say.
REFUSED_BOOTS = {
    # a release outside ihop.storepath: without the name rule, this is v1
    "release-path": dict(release="../store/v1", extra="", bad_store=False, klibc=True,
                         message="ihop: ihop.release=../store/v1: not a release name"),
    "fstype-module": dict(release="v1", extra="ihop.storefstype=nosuchfs", bad_store=False, klibc=False,
                          message="ihop: cannot load the module of the store's file system nosuchfs"),
    # opened by ihop, it would block the boot for ever
    "release-fifo": dict(release="fifo", extra="", bad_store=True, klibc=False,
                         message=f"ihop: /run/ihop/store{bootvm.STOREPATH}/fifo is not a regular file"),
    "release-symlink": dict(release="link", extra="", bad_store=True, klibc=True,
                            message=f"ihop: /run/ihop/store{bootvm.STOREPATH}/link is a symlink"),
}

# The boots from the store that reach multi-user; root through dm-verity.
STORE_BOOTS = ["v1", "v2", "v1v", "klibc", "rollback"]
VERITY_BOOTS = ["v1v", "klibc"]

# The boots through `ihop serve`: the releases it serves, how, and the export
# qemu asks for.
SERVED_BOOTS = {
    "served-unix": dict(releases=["v1"], verify=False, unix=True, export="v1"),
    "served-tcp": dict(releases=["v1v", "v1"], verify=True, unix=False, export="v1"),
    "served-ondemand": dict(releases=["v1"], verify=False, unix=True, export="v1", source=True),
}


def kernel_trouble(console: str) -> list:
    return [line for line in console.splitlines() if any(t in line for t in KERNEL_TROUBLE)]


def fsck_clean(disk: Path) -> tuple:
    r = subprocess.run(["e2fsck", "-fn", str(disk)], capture_output=True, text=True, timeout=300)
    return r.returncode, r.stdout + r.stderr


def chunk_file_at(store: Path, archive: Path, offset: int) -> tuple:
    """The store's chunk file holding byte offset of archive's image, and
    where in it that byte is."""
    a = parse_archive(archive)
    pos = 0
    for idx in a.order:
        chunk = a.chunks[idx]
        if pos <= offset < pos + chunk.source_size:
            h = chunk.hash.hex()
            return store / "chunks" / h[:4] / f"{h}.chunk", offset - pos
        pos += chunk.source_size
    raise AssertionError(f"offset {offset} is past the image")


class Boots:
    def __init__(self, system, work):
        self.system = system
        self.work = work
        self.runs = {}
        self.fsck = {}
        self.servers = {}  # served boot -> its bootvm.NbdServer, stopped
        self.ondemand = None  # served-ondemand: (its store, nginx log entries of the boot)
        self.image_sha256 = {}  # HASHED_FILES path -> sha256 of it in v1.ext4


def boot_served(b, name, how, nginx):
    """One boot of SERVED_BOOTS: ihop serve started, the VM booted from it,
    the server stopped (whatever the boot did)."""
    work = b.work / f"boot-{name}"
    store = b.system.store_tree / bootvm.STOREPATH.lstrip("/")
    releases = [store / r for r in how["releases"]]
    if how.get("source"):
        # An empty store, v1's archive published by nginx.
        published = nginx.www / f"boot-{os.getpid()}-v1.cba"
        published.symlink_to(b.work / "v1.cba")
        store = work / "ondemand-store"
        releases = ["--source", nginx.url(published.name), store / "v1"]
        since = nginx.mark()
    where = {"unix": work / "serve.sock"} if how["unix"] else {"listen": f"127.0.0.1:{free_port()}"}
    server = bootvm.NbdServer(IHOP, releases, work, verify=how["verify"], **where)
    b.servers[name] = server
    try:
        server.start()
    except RuntimeError as e:  # this boot's tests fail, not the others'
        b.runs[name] = bootvm.Boot(console=str(e))
        return
    try:
        b.runs[name] = bootvm.boot(b.system, bootvm.served_cmdline(), work, drives=[server.drive(how["export"])])
    finally:
        server.stop()
        if how.get("source"):
            b.ondemand = (store, nginx.entries(since))


@pytest.fixture(scope="module")
def boots(tmp_path_factory, nginx):
    if os.geteuid() != 0:
        pytest.skip("building the system needs root (debootstrap, chroot)")
    work = Path(os.environ.get("IHOP_TEST_BOOT_WORK", "/var/tmp")) / f"ihop-boot-{os.getpid()}"
    try:
        system = bootvm.build_system(work, Path(IHOP))
    except bootvm.Unavailable as e:
        pytest.skip(str(e))
    b = Boots(system, work)
    s = system
    try:
        b.runs["v1"] = bootvm.boot(s, bootvm.cmdline("v1", "ihoptest.do=clone:v2"), work / "boot-v1")
        b.fsck["v1"] = fsck_clean(s.store_disk)
        b.runs["v2"] = bootvm.boot(s, bootvm.cmdline("v2", "ihop.storefstype=ext4", store=f"UUID={bootvm.STORE_UUID}"),
                                   work / "boot-v2")
        b.runs["v1v"] = bootvm.boot(s, bootvm.cmdline("v1v", roothash=s.roothash, hashoffset=s.hashoffset),
                                    work / "boot-v1v")
        b.runs["klibc"] = bootvm.boot(s, bootvm.cmdline("v1v", roothash=s.roothash, hashoffset=s.hashoffset),
                                      work / "boot-klibc", klibc=True)
        b.runs["rollback"] = bootvm.boot(s, bootvm.cmdline("v1", "ihoptest.do=rmgc", store="/dev/vda"),
                                         work / "boot-rollback")
        b.fsck["rollback"] = fsck_clean(s.store_disk)

        # The corrupt store: a copy of the tree the disk was made from.
        bad_tree = work / "storefs-bad"
        shutil.rmtree(bad_tree, ignore_errors=True)
        subprocess.run(["cp", "-al", str(s.store_tree), str(bad_tree)], check=True)
        # the ext4 superblock's magic number, at byte 0x38 of it
        victim, at = chunk_file_at(bad_tree / bootvm.STOREPATH.lstrip("/"), work / "v1v.cba", 1024 + 0x38)
        data = bytearray(victim.read_bytes())
        victim.unlink()  # a file of its own, not the good tree's
        data[at] ^= 0xFF
        victim.write_bytes(bytes(data))
        b.corrupt_chunk = victim
        os.mkfifo(bad_tree / bootvm.STOREPATH.lstrip("/") / "fifo")
        os.symlink("v1", bad_tree / bootvm.STOREPATH.lstrip("/") / "link")
        bad_disk = work / "store-bad.img"
        bootvm.make_store_disk(bad_tree, bad_disk)
        b.runs["corrupt"] = bootvm.boot(s, bootvm.cmdline("v1v", roothash=s.roothash, hashoffset=s.hashoffset),
                                        work / "boot-corrupt", disk=bad_disk, timeout=240)
        b.runs["missing"] = bootvm.boot(s, bootvm.cmdline("missing"), work / "boot-missing", timeout=240)
        for name, append in BAD_COMMAND_LINES.items():
            b.runs[name] = bootvm.boot(s, append, work / f"boot-{name}", timeout=240)
        for name, how in REFUSED_BOOTS.items():
            b.runs[name] = bootvm.boot(s, bootvm.cmdline(how["release"], how["extra"]), work / f"boot-{name}",
                                       disk=bad_disk if how["bad_store"] else None, klibc=how["klibc"],
                                       timeout=240)

        for path in bootvm.HASHED_FILES:
            b.image_sha256[path] = bootvm.image_file_sha256(s.images["v1"], path)
        for name, how in SERVED_BOOTS.items():
            boot_served(b, name, how, nginx)
        yield b
    finally:
        if not os.environ.get("IHOP_TEST_BOOT_KEEP"):
            shutil.rmtree(work, ignore_errors=True)


def booted(b, name):
    run = b.runs[name]
    assert "done" in run.results, f"boot {name} did not finish its test:\n{run.console_tail()}"
    return run


@pytest.mark.parametrize("name", STORE_BOOTS)
def test_reaches_multi_user_with_root_from_the_release(boots, name):
    run = booted(boots, name)
    r = run.results
    assert r["multi_user"] == "active"
    assert r["failed_units"] == "", r["failed_units"]
    assert r["root_source"] == ("/dev/mapper/ihop-root" if name in VERITY_BOOTS else "/dev/nbd0")
    assert r["root_options"].split(",")[0] == "ro"
    assert r["store_mount"].split(" ")[:2] == ["/dev/vda", "ext4"]
    assert "rw" in r["store_mount"].split(" ")[2].split(",")
    assert r["marker"] == ("v2" if name == "v2" else "v1")


@pytest.mark.parametrize("name", STORE_BOOTS)
def test_store_is_mounted_nosuid_nodev_noexec(boots, name):
    r = booted(boots, name).results
    options = r["store_mount"].split(" ")[2].split(",")
    assert {"rw", "nosuid", "nodev", "noexec"} <= set(options), r["store_mount"]


@pytest.mark.parametrize("name", STORE_BOOTS)
def test_setuid_binary_and_device_node_planted_in_the_store_do_not_work(boots, name):
    """As user nobody: the setuid-root id(1) on the store does not run (it
    would print 0, root's uid), and the device node anyone may open does not
    open; both are there as planted."""
    r = booted(boots, name).results
    suid, dev = bootvm.PLANTED["suid"], bootvm.PLANTED["dev"]
    assert r[f"stat:{suid}"] == "4755 0:0 regular file 0,0"
    assert r[f"stat:{dev}"] == "666 0:0 character special file 1,3"
    out, rc = r["planted_suid_run"].rsplit(" rc=", 1)
    assert rc != "0" and "Permission denied" in out, r["planted_suid_run"]
    out, rc = r["planted_dev_open"].rsplit(" rc=", 1)
    assert rc != "0" and "Permission denied" in out, r["planted_dev_open"]


@pytest.mark.parametrize("name", STORE_BOOTS)
def test_root_storage_daemon_is_marked_locked_and_oom_exempt(boots, name):
    r = booted(boots, name).results
    assert r["ihop_pid"].isdigit()
    assert r["ihop_argv0"].startswith("@"), r["ihop_argv0"]
    assert r["ihop_uid"] == "0"
    assert r["ihop_oom"] == "-1000"
    assert int(r["ihop_vmlck_kib"]) > 0
    assert int(r["ihop_vmlck_kib"]) >= int(r["ihop_rss_kib"]) * 9 // 10
    assert r["in_use"].strip() != "", "the running release is not registered as in use"


@pytest.mark.parametrize("name", STORE_BOOTS)
def test_root_storage_daemon_needs_nothing_from_the_root_it_serves(boots, name):
    """Everything ihop maps was loaded from the initramfs (its files are gone
    since switch_root: "(deleted)"), and the only files it holds open are
    in the store."""
    r = booted(boots, name).results
    assert r["ihop_mapped_from_root"] == "", r["ihop_mapped_from_root"]
    assert r["ihop_mapped_deleted"] != ""
    assert r["ihop_open_files"] != ""
    outside = [f for f in r["ihop_open_files"].split() if not f.startswith("/run/ihop/store/")]
    assert outside == [], outside


@pytest.mark.parametrize("name", STORE_BOOTS)
def test_poweroff_and_boot_without_device_errors(boots, name):
    run = booted(boots, name)
    assert kernel_trouble(run.console) == [], run.console_tail()
    assert not run.timed_out and run.returncode == 0, run.console_tail()


def test_update_clones_the_next_release_beside_the_running_one(boots):
    r = booted(boots, "v1").results
    assert r["clone.rc"] == "0", r["clone.last"]
    assert "v2" in r["ls"] and "v1" in r["ls"]


@pytest.mark.parametrize("name", ["v1", "rollback"])
def test_store_file_system_is_clean_after_poweroff(boots, name):
    rc, out = boots.fsck[name]
    assert rc == 0, out


def test_rm_and_gc_of_the_running_release_keep_its_chunks(boots):
    r = booted(boots, "rollback").results
    assert r["rm.rc"] == "0" and r["gc.rc"] == "0", r
    assert r["root_sha256"] == boots.system.digests["v1"], "the root device changed after rm + gc"


def test_verity_stops_a_boot_on_a_corrupt_chunk(boots):
    run = boots.runs["corrupt"]
    assert "done" not in run.results, "booted on corrupt data"
    assert run.stopped_at == RESCUE, run.console_tail()
    assert "verity" in run.console.lower() and "corrupt" in run.console.lower(), run.console_tail()


def test_missing_release_names_itself_and_drops_to_the_shell(boots):
    run = boots.runs["missing"]
    assert "done" not in run.results
    assert run.stopped_at == RESCUE, run.console_tail()
    assert "ihop: no release missing in the store" in run.console, run.console_tail()


@pytest.mark.parametrize("name", list(BAD_COMMAND_LINES))
def test_a_wrong_command_line_is_named_and_drops_to_the_shell(boots, name):
    run = boots.runs[name]
    assert "done" not in run.results
    assert run.stopped_at == RESCUE, run.console_tail()
    assert BAD_COMMAND_LINE_MESSAGES[name] in run.console, run.console_tail()


@pytest.mark.parametrize("name", list(REFUSED_BOOTS))
def test_a_release_or_store_the_script_cannot_use_is_named_and_drops_to_the_shell(boots, name):
    """One "ihop:" line says what is wrong, then the rescue shell: no root
    from outside the store, no hang on a FIFO, no mount failing unexplained
    for want of a module; ihop itself never ran (it would have said so)."""
    run = boots.runs[name]
    assert "done" not in run.results
    assert run.stopped_at == RESCUE, run.console_tail()
    said = [line for line in run.console.splitlines() if "ihop:" in line]
    assert len(said) == 1 and REFUSED_BOOTS[name]["message"] in said[0], run.console_tail()


@pytest.mark.parametrize("name", list(SERVED_BOOTS))
def test_qemu_boots_a_release_served_by_ihop_serve(boots, name):
    """The guest's only disk is qemu's NBD client of ihop serve: it reaches
    multi-user with that as its read-only root, the release asked for
    (v1's marker and size, not v1v's, the default export of served-tcp),
    and no ihop of its own."""
    run = booted(boots, name)
    r = run.results
    assert r["multi_user"] == "active"
    assert r["failed_units"] == "", r["failed_units"]
    assert r["root_source"] == "/dev/vda"
    assert r["root_options"].split(",")[0] == "ro"
    assert r["root_ro"] == "1", "qemu's disk is writable"
    assert r["root_bytes"] == str(boots.system.images["v1"].stat().st_size)
    assert r["marker"] == "v1"
    assert r["ihop_pid"] == "none", "an ihop runs in the guest"
    assert r["store_mount"] == ""


@pytest.mark.parametrize("name", list(SERVED_BOOTS))
def test_guest_reads_the_files_of_the_served_release_as_the_image_holds_them(boots, name):
    """sha256 of files the guest read from its root, against the same files
    read out of v1.ext4 on the host by debugfs."""
    r = booted(boots, name).results
    assert boots.image_sha256["/" + bootvm.MARKER] == hashlib.sha256(b"v1\n").hexdigest()
    for path, want in boots.image_sha256.items():
        assert r.get(f"sha256:{path}") == want, path


@pytest.mark.parametrize("name", list(SERVED_BOOTS))
def test_served_boot_and_poweroff_without_device_errors(boots, name):
    run = booted(boots, name)
    assert kernel_trouble(run.console) == [], run.console_tail()
    assert "[qemu output]" not in run.console, run.console_tail()
    assert not run.timed_out and run.returncode == 0, run.console_tail()


@pytest.mark.parametrize("name", list(SERVED_BOOTS))
def test_ihop_serve_says_nothing_wrong_and_stops_clean_after_the_boot(boots, name):
    """Stopped (SIGTERM) once qemu powered off: exit 0, nothing on stderr
    but that it serves, its socket file or port gone, and its in-use
    registrations of the releases removed."""
    server = boots.servers[name]
    lines = server.stderr.splitlines()
    assert any(line.startswith("ihop: serving ") for line in lines), server.stderr
    wrong = [line for line in lines
             if line.startswith(("ihop: error", "ihop: warning")) or not line.startswith("ihop: ")]
    assert wrong == [], server.stderr
    assert server.returncode == 0, server.stderr
    if SERVED_BOOTS[name]["unix"]:
        assert server.socket_left is False
    else:
        assert server.port_open is False
    in_use = boots.system.store_tree / bootvm.STOREPATH.lstrip("/") / ".in-use"
    assert not in_use.exists() or list(in_use.iterdir()) == []


def test_a_vm_boots_from_a_release_fetched_as_it_reads_it(boots):
    """served-ondemand: the boot fetched part of v1's archive (reported),
    every chunk once; what it fetched is in the store, each chunk whole and
    right; and no release v1 appeared, since not every chunk was read."""
    assert boots.ondemand, "the on-demand boot did not run"
    store, entries = boots.ondemand
    archive = parse_archive(boots.work / "v1.cba")
    size = (boots.work / "v1.cba").stat().st_size
    assert all(e.status in (200, 206) for e in entries), entries
    fetched = sum(e.body_bytes for e in entries)
    stored = check_store(store)
    chunk_bytes = sum(c.archive_size for c in archive.chunks if c.hash.hex() in stored)
    print(f"booting to multi-user from v1 on demand fetched {fetched} of its {size} archive bytes "
          f"({100 * fetched / size:.1f} %), {len(stored)} of {len(archive.chunks)} chunks")
    # Every byte fetched is the header or a chunk now stored: none twice.
    data = sum(e.body_bytes for e in entries
               if e.range != "-" and int(e.range.split("=")[1].split("-")[0]) >= archive.chunk_data_offset)
    assert data == chunk_bytes
    assert 0 < fetched < size
    assert not (store / "v1").exists()
    assert list((store / ".in-use").iterdir()) == []
