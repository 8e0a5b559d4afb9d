"""The `tiny-vm` image: Debian's cloud kernel and a busybox initramfs, for the qemu driver.

Built on this machine (image_builds.BUILDERS, so `pocketstack up` and
`pocketstack image build tiny-vm` run it), with no download at run time
beyond one `apt-get download` of the kernel package, whose .deb is kept in
a cache directory and reused offline by every later build:

- `tiny-vm-kernel` (aki): /boot/vmlinuz of the package that
  `linux-image-cloud-amd64` depends on, unpacked with `dpkg-deb -x`; no kernel
  is installed on the host.
- `tiny-vm-ramdisk` (ari): a gzipped newc cpio archive (written here, in
  Python) holding the guest userland every built image shares
  (image_builds.userland_entries), the virtio modules the guest needs, busybox
  acpid with a power-button action (so qemu's `system_powerdown` stops the
  guest cleanly) and an early `/init` that loads the modules and hands over to
  the guest init (/sbin/init).
- `tiny-vm` (qcow2): a small empty root disk whose properties point at the two
  above, as a Nova user registers a kernel-booted image.

The qemu driver gives each guest its hostname and user data by appending a
second cpio archive (`config_archive`) to a copy of the ramdisk: the kernel
unpacks concatenated archives in order.
"""

from __future__ import annotations

import gzip
import lzma
import re
import shutil
import stat
import tarfile
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from pocketstack.host import commands, qemu
from pocketstack.host.commands import HostCommandError

KERNEL_METAPACKAGE = "linux-image-cloud-amd64"
KERNEL_PACKAGE = re.compile(r"^linux-image-[0-9][0-9.]*-[0-9]+-cloud-amd64$")
ROOT_DISK_BYTES = 1 << 30
COMMAND_LINE = "console=ttyS0"
# The modules the guest loads: virtio disks, NICs and console, and the ACPI power
# button with its input events (acpid reads /dev/input/event*). Their own
# dependencies (virtio_pci_modern_dev, failover, ...) are added from their modinfo.
MODULES = ("virtio_pci", "virtio_blk", "virtio_net", "virtio_console", "button", "evdev")
MODULE_DIR = "lib/modules"
LOAD_ORDER = f"{MODULE_DIR}/load-order"

EARLY_INIT = b"""#!/bin/sh
# Early init of the tiny-vm initramfs (pocketstack/host/vm_image.py): mounts the
# kernel file systems, loads the modules the guest needs, starts acpid so the
# ACPI power button powers the VM off, then becomes the guest init.
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts
while read -r module; do
    insmod "/lib/modules/$module.ko" || echo "tiny-vm: could not load $module"
done < /lib/modules/load-order
[ -s /pocketstack/hostname ] && hostname "$(cat /pocketstack/hostname)"
acpid
exec /sbin/init
"""

POWER_BUTTON = b"""#!/bin/sh
# Run by acpid when the ACPI power button is pressed (qemu's system_powerdown).
echo "pocketstack guest $(hostname): power button pressed, powering off" > /dev/console
sync
poweroff -f
"""


# newc cpio ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CpioEntry:
    """One member of a newc archive; `mode` holds the file type bits (stat.S_IFREG | 0o644)."""

    name: str
    mode: int
    data: bytes = b""  # a file's contents, a symlink's target
    rdev: tuple[int, int] = (0, 0)  # major, minor of a device node
    mtime: int = 0


def _pad4(length: int) -> bytes:
    return b"\0" * (-length % 4)


def newc_archive(entries: Iterable[CpioEntry]) -> bytes:
    """A cpio archive in the "new ASCII" (newc) format the kernel unpacks as initramfs,
    ending with its TRAILER!!! entry. Directories must come before what they hold."""
    parts: list[bytes] = []
    trailer = CpioEntry("TRAILER!!!", 0)
    for inode, entry in enumerate([*entries, trailer], start=1):
        name = entry.name.encode() + b"\0"
        fields = (
            0 if entry is trailer else inode, entry.mode, 0, 0,
            2 if stat.S_ISDIR(entry.mode) else 1, entry.mtime, len(entry.data), 0, 0,
            entry.rdev[0], entry.rdev[1], len(name), 0,
        )  # fmt: skip
        header = b"070701" + b"".join(b"%08X" % field for field in fields)
        parts += [header, name, _pad4(len(header) + len(name)), entry.data, _pad4(len(entry.data))]
    return b"".join(parts)


def _from_tar(info: tarfile.TarInfo, data: bytes | None) -> CpioEntry:
    permissions = info.mode & 0o7777
    if info.isdir():
        return CpioEntry(info.name, stat.S_IFDIR | permissions, mtime=int(info.mtime))
    if info.issym():
        return CpioEntry(
            info.name, stat.S_IFLNK | 0o777, info.linkname.encode(), mtime=int(info.mtime)
        )
    return CpioEntry(info.name, stat.S_IFREG | permissions, data or b"", mtime=int(info.mtime))


def config_archive(hostname: str, user_data: bytes | None) -> bytes:
    """The per-guest archive the qemu driver appends to the ramdisk: /pocketstack/hostname
    and, when given, /pocketstack/user-data."""
    entries = [
        CpioEntry("pocketstack", stat.S_IFDIR | 0o755),
        CpioEntry("pocketstack/hostname", stat.S_IFREG | 0o644, hostname.encode() + b"\n"),
    ]
    if user_data is not None:
        entries.append(CpioEntry("pocketstack/user-data", stat.S_IFREG | 0o755, user_data))
    return newc_archive(entries)


def append_config(ramdisk: Path, target: Path, hostname: str, user_data: bytes | None) -> None:
    """`target`: `ramdisk` with the guest's config archive after it (4-byte aligned, as
    the kernel looks for a following archive on a 4-byte boundary)."""
    partial = target.with_name(target.name + ".part")
    with ramdisk.open("rb") as source, partial.open("wb") as out:
        shutil.copyfileobj(source, out)
        out.write(_pad4(out.tell()))
        out.write(config_archive(hostname, user_data))
    partial.replace(target)


# Kernel package ----------------------------------------------------------------------------


def kernel_package() -> str:
    """The versioned kernel package the cloud metapackage depends on, from apt's lists
    (no network): e.g. linux-image-6.1.0-56-cloud-amd64."""
    try:
        listed = commands.run(["apt-cache", "depends", KERNEL_METAPACKAGE])
    except HostCommandError as exc:
        raise image_builds.ImageBuildError(
            f"cannot tell which kernel {KERNEL_METAPACKAGE} needs: {exc}"
        ) from exc
    for line in listed.splitlines():
        kind, _, name = line.strip().partition(":")
        if kind in ("Depends", "|Depends") and KERNEL_PACKAGE.match(name.strip()):
            return name.strip()
    raise image_builds.ImageBuildError(
        f"`apt-cache depends {KERNEL_METAPACKAGE}` names no kernel package"
    )


def _newest_last(paths: Iterable[Path]) -> list[Path]:
    return sorted(paths, key=lambda path: (path.stat().st_mtime, path.name))


def kernel_deb(cache: Path) -> Path:
    """The kernel .deb, from `cache` when it is there, else fetched into it with
    `apt-get download`. Offline, any kernel .deb already cached will do."""
    cache.mkdir(parents=True, exist_ok=True)
    cached = _newest_last(cache.glob("linux-image-*-cloud-amd64_*.deb"))
    try:
        package = kernel_package()
    except image_builds.ImageBuildError:
        if cached:
            return cached[-1]
        raise
    wanted = _newest_last(cache.glob(f"{package}_*.deb"))
    if wanted:
        return wanted[-1]
    try:
        commands.run(
            ["env", "-C", str(cache), "apt-get", "download", "-q", "-o",
             "APT::Sandbox::User=root", package],
            timeout_s=600.0,
        )  # fmt: skip
    except HostCommandError as exc:
        if cached:
            return cached[-1]
        raise image_builds.ImageBuildError(
            f"cannot download the kernel ({package}): {exc}"
        ) from exc
    wanted = _newest_last(cache.glob(f"{package}_*.deb"))
    if not wanted:
        raise image_builds.ImageBuildError(f"`apt-get download {package}` left no .deb in {cache}")
    return wanted[-1]


@dataclass(frozen=True, slots=True)
class Kernel:
    vmlinuz: Path
    modules: Mapping[str, Path]  # module name (underscores) -> .ko, .ko.xz or .ko.gz file


def unpack_kernel(deb: Path, into: Path) -> Kernel:
    commands.run(["dpkg-deb", "-x", str(deb), str(into)], timeout_s=300.0)
    kernels = sorted((into / "boot").glob("vmlinuz-*"))
    if not kernels:
        raise image_builds.ImageBuildError(f"{deb.name} holds no /boot/vmlinuz-*")
    version = kernels[-1].name.removeprefix("vmlinuz-")
    modules: dict[str, Path] = {}
    for path in sorted((into / MODULE_DIR / version / "kernel").rglob("*.ko*")):
        name = path.name.split(".ko")[0].replace("-", "_")
        modules[name] = path
    return Kernel(kernels[-1], modules)


def module_bytes(path: Path) -> bytes:
    """A module as an ELF object: busybox insmod reads no compressed modules."""
    if path.name.endswith(".ko.xz"):
        return lzma.decompress(path.read_bytes())
    if path.name.endswith(".ko.gz"):
        return gzip.decompress(path.read_bytes())
    if path.name.endswith(".ko"):
        return path.read_bytes()
    raise image_builds.ImageBuildError(f"cannot decompress kernel module {path.name}")


def module_depends(elf: bytes) -> list[str]:
    """The modules a module needs, from the `depends=` entry of its .modinfo section."""
    found = re.search(rb"(?:^|\0)depends=([^\0]*)\0", elf)
    if found is None:
        return []
    return [name.replace("-", "_") for name in found.group(1).decode().split(",") if name]


def load_order(wanted: Iterable[str], modules: Mapping[str, bytes]) -> list[str]:
    """`wanted` and everything they depend on, each after its dependencies."""
    order: list[str] = []
    visiting: set[str] = set()

    def visit(name: str) -> None:
        if name in order:
            return
        if name in visiting:
            raise image_builds.ImageBuildError(
                f"kernel modules depend on each other in a cycle at {name}"
            )
        if name not in modules:
            raise image_builds.ImageBuildError(f"the kernel package has no module {name}")
        visiting.add(name)
        for dependency in module_depends(modules[name]):
            visit(dependency)
        visiting.discard(name)
        order.append(name)

    for name in wanted:
        visit(name)
    return order


# The build ---------------------------------------------------------------------------------


def initramfs(kernel: Kernel) -> bytes:
    """The gzipped initramfs: userland, modules, acpid's action and the early /init."""
    loaded: dict[str, bytes] = {}
    pending = list(MODULES)
    while pending:
        name = pending.pop()
        if name in loaded:
            continue
        if name not in kernel.modules:
            raise image_builds.ImageBuildError(f"the kernel package has no module {name}")
        loaded[name] = module_bytes(kernel.modules[name])
        pending += module_depends(loaded[name])
    order = load_order(MODULES, loaded)

    entries = [_from_tar(info, data) for info, data in image_builds.userland_entries()]
    entries += [
        CpioEntry("dev/console", stat.S_IFCHR | 0o600, rdev=(5, 1)),
        CpioEntry("lib", stat.S_IFDIR | 0o755),
        CpioEntry(MODULE_DIR, stat.S_IFDIR | 0o755),
        *(
            CpioEntry(f"{MODULE_DIR}/{name}.ko", stat.S_IFREG | 0o644, loaded[name])
            for name in order
        ),
        CpioEntry(LOAD_ORDER, stat.S_IFREG | 0o644, "".join(f"{n}\n" for n in order).encode()),
        CpioEntry("etc/acpi", stat.S_IFDIR | 0o755),
        CpioEntry("etc/acpi/PWRF", stat.S_IFDIR | 0o755),
        CpioEntry("etc/acpi/PWRF/00000080", stat.S_IFREG | 0o755, POWER_BUTTON),
        CpioEntry("init", stat.S_IFREG | 0o755, EARLY_INIT),
    ]
    # The last entry for a path wins (the guest init replaces busybox's init link).
    unique = {entry.name: entry for entry in entries}
    return gzip.compress(newc_archive(unique.values()), compresslevel=6, mtime=0)


def build_tiny_vm(out_dir: Path, deb_cache: Path | None = None) -> list[image_builds.BuiltImage]:
    """Build the three tiny-vm images into `out_dir`, the kernel .deb cached in
    `deb_cache` (default `out_dir/debs`)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    deb = kernel_deb(deb_cache or out_dir / "debs")
    kernel_path = out_dir / "tiny-vm-kernel"
    ramdisk_path = out_dir / "tiny-vm-ramdisk"
    disk_path = out_dir / "tiny-vm.qcow2"
    with tempfile.TemporaryDirectory(prefix="tiny-vm-", dir=out_dir) as scratch:
        kernel = unpack_kernel(deb, Path(scratch))
        partial = kernel_path.with_name(kernel_path.name + ".part")
        shutil.copyfile(kernel.vmlinuz, partial)
        partial.replace(kernel_path)
        partial = ramdisk_path.with_name(ramdisk_path.name + ".part")
        partial.write_bytes(initramfs(kernel))
        partial.replace(ramdisk_path)
    partial = disk_path.with_name(disk_path.name + ".part")
    partial.unlink(missing_ok=True)
    qemu.create(partial, ROOT_DISK_BYTES)
    partial.replace(disk_path)
    return [
        image_builds.BuiltImage("tiny-vm-kernel", kernel_path, "aki", "aki"),
        image_builds.BuiltImage("tiny-vm-ramdisk", ramdisk_path, "ari", "ari"),
        image_builds.BuiltImage(
            "tiny-vm",
            disk_path,
            "qcow2",
            "bare",
            properties={
                "os_command_line": COMMAND_LINE,
                "hypervisor_type": "qemu",
                "os_distro": "busybox",
            },
            references={"kernel_id": "tiny-vm-kernel", "ramdisk_id": "tiny-vm-ramdisk"},
        ),
    ]


# Last: image_builds imports this module to list its builder, so this module may only
# need image_builds once its own names exist (whichever of the two is imported first).
from pocketstack.host import image_builds  # noqa: E402
