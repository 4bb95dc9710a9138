# SPDX-License-Identifier: MIT
"""bench/fd-bench.py --vm: the same bench inside a qemu guest, where root
has CAP_SYS_RESOURCE (and kernel NBD) when this machine's root may lack
both.

The guest is the boot tests' Debian bookworm tree (tests/boot/bootvm.py,
cached in /var/cache/ihop-test-boot) with fio, nbdkit, libnbd-bin and
python3 added in a chroot, and its own kernel and initramfs
(initramfs-tools, stock configuration): made once, cached in
bench/work/fd-vm/. Each run writes two ext4 virtual disks: root (that
tree, this ihop binary, bench/fd-bench.py and serve-bench.py,
tests/qemu/nbd-disconnect, an init script) and data (the 2.5 GiB image,
hard-linked from bench/work/ where it can be, and the release cloned here
into a store). qemu under TCG by default (one vCPU: with two, the kernel's
nbd receive workqueue can stall, as tests/qemu/nbdvm.py says) or KVM
(--vm-accel kvm: -cpu host, two vCPUs; a KVM that cannot boot Debian's
kernel, as a nested one may, hangs: TCG then), no network; the init script
runs fd-bench.py with this run's arguments and powers off; its output is
printed from the console log. The disks are removed after the run.
"""

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
TOP = HERE.parent
WORK = HERE / "work" / "fd-vm"
GUEST_PACKAGES = ["fio", "nbdkit", "libnbd-bin", "python3"]
BEGIN, END = "=== fd-bench in the guest", "=== fd-bench exit"

sys.path.insert(0, str(TOP / "tests" / "boot"))
import bootvm  # noqa: E402
import nbdvm  # noqa: E402  (bootvm put tests/qemu on the path)


def run(cmd, timeout=1800, **kw):
    return bootvm.run(cmd, timeout=timeout, **kw)


def guest_tree():
    """bootvm's tree with the bench's packages, its kernel and initramfs."""
    base = bootvm.base_tree()
    params = "%s\n%s\n" % (base, " ".join(GUEST_PACKAGES))
    tree, stamp = WORK / "tree", WORK / "tree.params"
    if stamp.exists() and stamp.read_text() == params:
        return tree
    WORK.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(tree, ignore_errors=True)
    print("fd-bench: making the guest's tree (once)", flush=True)
    run(["cp", "-a", base, tree])
    resolv = tree / "etc/resolv.conf"
    resolv.unlink(missing_ok=True)
    shutil.copyfile("/etc/resolv.conf", resolv)
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive", LC_ALL="C")
    for fs, sub in (("proc", "proc"), ("sysfs", "sys")):
        run(["mount", "-t", fs, fs, tree / sub])
    try:
        run(["chroot", tree, "apt-get", "-q", "update"], env=env)
        run(["chroot", tree, "apt-get", "-q", "-y", "install", "--no-install-recommends"] + GUEST_PACKAGES, env=env)
        run(["chroot", tree, "apt-get", "clean"], env=env)
        kernels = sorted((tree / "boot").glob("vmlinuz-*"))
        release = kernels[-1].name[len("vmlinuz-"):]
        run(["chroot", tree, "update-initramfs", "-c", "-k", release])
    finally:
        for sub in ("sys", "proc"):
            subprocess.run(["umount", tree / sub], check=False)
    (tree / "etc/fstab").write_text("")
    stamp.write_text(params)
    return tree


def ext4_image(src: Path, out: Path, extra_mib: int):
    used = int(run(["du", "-sk", "--apparent-size", src]).stdout.split()[0])
    out.unlink(missing_ok=True)
    run(["mke2fs", "-q", "-t", "ext4", "-E", "root_owner=0:0", "-d", src, out, "%dM" % (used // 1024 + extra_mib)])


def data_dir(image: str, ihop: str) -> Path:
    """The 2.5 GiB image (nbdkit's) and the release cloned into a store,
    both made here (running fd-bench.py once without --vm makes them)."""
    big = image + ".big"
    if not os.path.exists(big + ".cba"):
        raise SystemExit("%s.cba is missing: run bench/fd-bench.py once without --vm (it makes it)" % big)
    d = WORK / "data"
    shutil.rmtree(d, ignore_errors=True)
    d.mkdir(parents=True)
    try:
        os.link(big, d / "v1.ext4.big")
    except OSError:
        shutil.copyfile(big, d / "v1.ext4.big")
    run([ihop, "-q", "clone", big + ".cba", d / "store" / "big"])
    return d


def guest_args(argv):
    """This run's arguments, less those for the host."""
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
            continue
        if a in ("--vm",):
            continue
        if a in ("--vm-memory", "--vm-accel", "--image", "--work-dir", "--store"):
            skip = True
            continue
        if a.startswith(("--vm-memory=", "--vm-accel=", "--image=", "--work-dir=", "--store=")):
            continue
        out.append(a)
    return out


def main(args, argv):
    if args.vm_accel == "kvm" and not os.path.exists("/dev/kvm"):
        raise SystemExit("fd-bench --vm: no /dev/kvm here")
    ihop = os.environ.get("IHOP", str(TOP / "build" / "src" / "ihop"))
    tree = guest_tree()
    data = data_dir(args.image, ihop)
    root = WORK / "root"
    shutil.rmtree(root, ignore_errors=True)
    bootvm.run(["cp", "-a", "--reflink=auto", tree, root], timeout=1800)
    bench = root / "bench"
    bench.mkdir()
    for f in ("fd-bench.py", "serve-bench.py"):
        shutil.copy(HERE / f, bench / f)
    shutil.copy(ihop, bench / "ihop")
    disconnect = nbdvm.build_disconnect(WORK)
    if disconnect:
        shutil.copy(disconnect, root / "usr/local/bin/nbd-disconnect")
    cmd = " ".join("'%s'" % a for a in guest_args(argv))
    (bench / "init.sh").write_text(f"""#!/bin/sh
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin IHOP=/bench/ihop HOME=/root
mount -t proc proc /proc; mount -t sysfs sysfs /sys; mount -t devtmpfs devtmpfs /dev
mount -t tmpfs tmpfs /tmp; mount -t tmpfs tmpfs /run
mkdir -p /data && mount /dev/vdb /data
echo "{BEGIN}"
python3 /bench/fd-bench.py --image /data/v1.ext4 --store /data/store --work-dir /tmp {cmd} 2>&1
echo "{END} $?"
umount /data; sync
echo o >/proc/sysrq-trigger
sleep 60
""")
    os.chmod(bench / "init.sh", 0o755)
    boot = sorted((tree / "boot").glob("vmlinuz-*"))[-1]
    initrd = tree / "boot" / ("initrd.img-" + boot.name[len("vmlinuz-"):])
    print("fd-bench: writing the guest's disks", flush=True)
    ext4_image(root, WORK / "root.img", 512)
    shutil.rmtree(root)
    ext4_image(data, WORK / "data.img", 1024)
    console = WORK / "console.log"
    console.unlink(missing_ok=True)
    qemu = nbdvm.find_qemu()
    # Under TCG one vCPU, as tests/qemu/nbdvm.py has it: with two, the
    # kernel's nbd receive workqueue can stall.
    kvm = args.vm_accel == "kvm"
    cmd = [qemu, "-accel", args.vm_accel, "-cpu", "host,-arch-capabilities" if kvm else "max",
           "-smp", "2" if kvm else "1", "-m", str(args.vm_memory),
           "-display", "none", "-nodefaults", "-no-reboot", "-nic", "none",
           "-kernel", str(boot), "-initrd", str(initrd),
           "-append", "root=/dev/vda rw console=ttyS0 quiet panic=-1 init=/bench/init.sh",
           "-serial", "file:%s" % console,
           "-drive", "file=%s,format=raw,if=virtio,cache=unsafe" % (WORK / "root.img"),
           "-drive", "file=%s,format=raw,if=virtio,cache=unsafe" % (WORK / "data.img")]
    print("fd-bench: booting the guest (%d MiB, %s)" % (args.vm_memory, args.vm_accel), flush=True)
    start = time.monotonic()
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    shown, rc = 0, None
    try:
        while proc.poll() is None and time.monotonic() - start < 4 * 3600:
            time.sleep(2)
            text = console.read_text(errors="replace") if console.exists() else ""
            if BEGIN in text:
                body = text[text.index(BEGIN) + len(BEGIN):]
                print(body[shown:], end="", flush=True)
                shown = len(body)
    finally:
        if proc.poll() is None:
            proc.kill()
        out = proc.communicate()[0].decode(errors="replace")
    text = console.read_text(errors="replace") if console.exists() else ""
    if BEGIN in text:
        body = text[text.index(BEGIN) + len(BEGIN):]
        print(body[shown:], end="")
    for line in text.splitlines():
        if line.startswith(END):
            rc = int(line.split()[-1])
    if rc is None:
        print(text[-4000:] + out)
        raise SystemExit("fd-bench --vm: the guest ended without a result")
    for f in ("root.img", "data.img"):
        (WORK / f).unlink(missing_ok=True)
    shutil.rmtree(data, ignore_errors=True)
    return rc
