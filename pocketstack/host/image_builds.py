"""Guest images built on this machine from Debian packages: no image is downloaded.

`busybox` is a root filesystem (a tar archive) for the namespace driver:
Debian's busybox-static, every applet linked, and the guest init
(guest/init.sh) as /sbin/init. `tiny-vm` (vm_image.py) is the same userland
as an initramfs with Debian's kernel, for the qemu driver. The image service
registers what these build (`pocketstack up`, `pocketstack image build`).
"""

from __future__ import annotations

import io
import tarfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from pocketstack.host import commands, vm_image

BUSYBOX = Path("/bin/busybox")
GUEST_FILES = Path(__file__).parent / "guest"
BOOT_MARKER = "pocketstack guest booted"
# A root filesystem tarball: how the namespace driver recognises the images it runs.
ROOTFS_PROPERTY = "pocketstack_rootfs"


@dataclass(frozen=True, slots=True)
class BuiltImage:
    """One image file and how the image service should describe it."""

    name: str
    path: Path
    disk_format: str
    container_format: str
    properties: Mapping[str, str] = field(default_factory=dict)
    # property -> name of an image of the same build whose id it holds (kernel_id, ...)
    references: Mapping[str, str] = field(default_factory=dict)


class ImageBuildError(Exception):
    """A build could not run; the message says what to install or fix."""


def busybox_applets() -> list[str]:
    """The full paths (bin/sh, usr/sbin/httpd, ...) busybox links its applets at."""
    if not BUSYBOX.exists():
        raise ImageBuildError(
            f"{BUSYBOX} is missing: install Debian's busybox-static "
            "(apt-get install busybox-static)"
        )
    listed = commands.run([str(BUSYBOX), "--list-full"])
    return sorted({line.strip() for line in listed.splitlines() if line.strip()})


def _entry(name: str, kind: bytes, mode: int, size: int = 0, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.size, info.linkname = kind, mode, size, link
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    info.mtime = int(time.time())
    return info


def userland_entries() -> list[tuple[tarfile.TarInfo, bytes | None]]:
    """The guest userland every built image shares, as (entry, contents) pairs."""
    entries: list[tuple[tarfile.TarInfo, bytes | None]] = []
    for directory in ("bin", "sbin", "usr", "usr/bin", "usr/sbin", "usr/share",
                      "usr/share/udhcpc", "etc", "dev", "proc", "sys", "tmp", "run", "var",
                      "var/www", "var/log", "root", "mnt", "pocketstack"):  # fmt: skip
        entries.append(
            (_entry(directory, tarfile.DIRTYPE, 0o1777 if directory == "tmp" else 0o755), None)
        )
    binary = BUSYBOX.read_bytes()
    entries.append((_entry("bin/busybox", tarfile.REGTYPE, 0o755, len(binary)), binary))
    for applet in busybox_applets():
        path = applet.lstrip("/")
        if path != "bin/busybox":
            depth = path.count("/")
            entries.append(
                (_entry(path, tarfile.SYMTYPE, 0o777, link="../" * depth + "bin/busybox"), None)
            )
    files = {
        "sbin/init": (GUEST_FILES / "init.sh").read_bytes(),
        "usr/share/udhcpc/default.script": (GUEST_FILES / "udhcpc.sh").read_bytes(),
        "etc/passwd": b"root:x:0:0:root:/root:/bin/sh\n",
        "etc/group": b"root:x:0:\n",
        "etc/hostname": b"pocketstack\n",
        "etc/resolv.conf": b"",
    }
    for path, contents in files.items():
        mode = 0o755 if path.startswith(("sbin/", "usr/share/udhcpc/")) else 0o644
        entries.append((_entry(path, tarfile.REGTYPE, mode, len(contents)), contents))
    return entries


def _unique_entries(
    entries: list[tuple[tarfile.TarInfo, bytes | None]],
) -> list[tuple[tarfile.TarInfo, bytes | None]]:
    """The last entry for each path wins (our init replaces busybox's init link)."""
    latest = {info.name: (info, data) for info, data in entries}
    return list(latest.values())


def build_busybox(out_dir: Path) -> list[BuiltImage]:
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / "busybox.tar"
    partial = target.with_suffix(".tar.part")
    with tarfile.open(partial, "w", format=tarfile.GNU_FORMAT) as archive:
        for info, data in _unique_entries(userland_entries()):
            archive.addfile(info, io.BytesIO(data) if data is not None else None)
    partial.replace(target)
    properties = {ROOTFS_PROPERTY: "tar", "os_distro": "busybox"}
    return [BuiltImage("busybox", target, "raw", "bare", properties)]


BUILDERS: dict[str, Callable[[Path], list[BuiltImage]]] = {
    "busybox": build_busybox,
    "tiny-vm": vm_image.build_tiny_vm,
}


def build(name: str, out_dir: Path) -> list[BuiltImage]:
    """Build image `name` into `out_dir`; the images it makes, referenced ones first."""
    builder = BUILDERS.get(name)
    if builder is None:
        raise ImageBuildError(f"no image named {name!r}; choose one of {', '.join(BUILDERS)}")
    return builder(out_dir)
