"""The tiny-vm build's pure parts: the newc cpio writer, the per-guest config archive,
module load order, and which kernel .deb a build uses (apt stood in for)."""

from __future__ import annotations

import lzma
import shutil
import stat
import subprocess
from collections.abc import Sequence
from pathlib import Path

import pytest

from pocketstack.host import image_builds, vm_image
from pocketstack.host.commands import HostCommandError
from pocketstack.host.vm_image import CpioEntry


def read_newc(archive: bytes) -> list[tuple[str, int, bytes, tuple[int, int]]]:
    """(name, mode, data, rdev) of each member up to the trailer: an independent reader."""
    members: list[tuple[str, int, bytes, tuple[int, int]]] = []
    offset = 0
    while True:
        assert archive[offset : offset + 6] == b"070701", f"no newc header at {offset}"
        fields = [int(archive[offset + 6 + 8 * i : offset + 14 + 8 * i], 16) for i in range(13)]
        mode, size, rdev, name_size = fields[1], fields[6], (fields[9], fields[10]), fields[11]
        name_start = offset + 110
        name = archive[name_start : name_start + name_size - 1].decode()
        assert archive[name_start + name_size - 1] == 0
        data_start = (name_start + name_size + 3) & ~3
        offset = (data_start + size + 3) & ~3
        if name == "TRAILER!!!":
            assert offset == len(archive)
            return members
        members.append((name, mode, archive[data_start : data_start + size], rdev))


ENTRIES = [
    CpioEntry("bin", stat.S_IFDIR | 0o755),
    CpioEntry("bin/busybox", stat.S_IFREG | 0o755, b"\x7fELF pretend"),
    CpioEntry("bin/sh", stat.S_IFLNK | 0o777, b"busybox"),
    CpioEntry("dev", stat.S_IFDIR | 0o755),
    CpioEntry("dev/console", stat.S_IFCHR | 0o600, rdev=(5, 1)),
    CpioEntry("init", stat.S_IFREG | 0o755, b"#!/bin/sh\nexec /sbin/init\n"),
]


def test_newc_archive_reads_back_member_by_member() -> None:
    archive = vm_image.newc_archive(ENTRIES)
    assert len(archive) % 4 == 0
    members = read_newc(archive)
    assert [(name, mode, data, rdev) for name, mode, data, rdev in members] == [
        (entry.name, entry.mode, entry.data, entry.rdev) for entry in ENTRIES
    ]


@pytest.mark.skipif(not Path("/bin/busybox").exists(), reason="busybox-static is not installed")
def test_busybox_cpio_lists_the_archive() -> None:
    listed = subprocess.run(
        ["/bin/busybox", "cpio", "-t"], input=vm_image.newc_archive(ENTRIES),
        capture_output=True, check=True,
    ).stdout.decode().split()  # fmt: skip
    assert listed == [entry.name for entry in ENTRIES]


def test_config_archive_carries_hostname_and_user_data() -> None:
    members = {
        name: data for name, _, data, _ in read_newc(vm_image.config_archive("web-1", b"echo hi\n"))
    }
    assert members == {
        "pocketstack": b"",
        "pocketstack/hostname": b"web-1\n",
        "pocketstack/user-data": b"echo hi\n",
    }
    without = [name for name, *_ in read_newc(vm_image.config_archive("web-1", None))]
    assert without == ["pocketstack", "pocketstack/hostname"]


def test_append_config_starts_the_second_archive_on_a_4_byte_boundary(tmp_path: Path) -> None:
    ramdisk = tmp_path / "ramdisk"
    ramdisk.write_bytes(b"\x1f\x8b gzip stand-in of odd length")
    vm_image.append_config(ramdisk, tmp_path / "initrd", "db-2", None)
    combined = (tmp_path / "initrd").read_bytes()
    original = ramdisk.read_bytes()
    start = (len(original) + 3) & ~3
    assert combined[: len(original)] == original
    assert combined[len(original) : start] == b"\0" * (start - len(original))
    assert [name for name, *_ in read_newc(combined[start:])] == [
        "pocketstack",
        "pocketstack/hostname",
    ]
    assert not list(tmp_path.glob("*.part"))


def _module(depends: str) -> bytes:
    return b"\x7fELF...\0license=GPL\0depends=" + depends.encode() + b"\0name=x\0"


def test_load_order_puts_dependencies_first() -> None:
    modules = {
        "virtio_net": _module("virtio_ring,virtio,net_failover"),
        "net_failover": _module("failover"),
        "failover": _module(""),
        "virtio": _module("virtio_ring"),
        "virtio_ring": _module(""),
    }
    order = vm_image.load_order(["virtio_net"], modules)
    assert sorted(order) == sorted(modules)
    for name, data in modules.items():
        for dependency in vm_image.module_depends(data):
            assert order.index(dependency) < order.index(name)


def test_load_order_names_a_missing_module_and_a_cycle() -> None:
    with pytest.raises(image_builds.ImageBuildError, match="no module virtio"):
        vm_image.load_order(["virtio_blk"], {"virtio_blk": _module("virtio")})
    with pytest.raises(image_builds.ImageBuildError, match="cycle"):
        vm_image.load_order(["a"], {"a": _module("b"), "b": _module("a")})


def test_compressed_modules_are_unpacked_for_busybox_insmod(tmp_path: Path) -> None:
    packed = tmp_path / "virtio.ko.xz"
    packed.write_bytes(lzma.compress(_module("virtio_ring")))
    assert vm_image.module_bytes(packed) == _module("virtio_ring")
    with pytest.raises(image_builds.ImageBuildError):
        vm_image.module_bytes(tmp_path / "virtio.ko.zst")


class _Apt:
    """apt-cache and apt-get as this test wants them to answer."""

    def __init__(self, online: bool, lists: bool = True) -> None:
        self.online = online
        self.lists = lists
        self.downloads: list[str] = []

    def run(self, argv: Sequence[str], stdin: bytes | None = None, timeout_s: float = 120.0) -> str:
        if argv[:2] == ["apt-cache", "depends"]:
            if not self.lists:
                raise HostCommandError(argv, "E: No packages found")
            return "linux-image-cloud-amd64\n  Depends: linux-image-6.1.0-56-cloud-amd64\n"
        if "download" in argv:
            if not self.online:
                raise HostCommandError(argv, "E: Failed to fetch")
            cache = Path(argv[argv.index("-C") + 1])
            (cache / f"{argv[-1]}_6.1.192-2_amd64.deb").write_bytes(b"!<arch>\n")
            self.downloads.append(argv[-1])
            return ""
        raise AssertionError(f"unexpected command {argv}")


def test_kernel_deb_is_downloaded_once_then_cached(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    apt = _Apt(online=True)
    monkeypatch.setattr(vm_image.commands, "run", apt.run)
    first = vm_image.kernel_deb(tmp_path / "debs")
    assert first.name == "linux-image-6.1.0-56-cloud-amd64_6.1.192-2_amd64.deb"
    assert vm_image.kernel_deb(tmp_path / "debs") == first
    assert apt.downloads == ["linux-image-6.1.0-56-cloud-amd64"]


def test_kernel_deb_offline_uses_what_is_cached(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = tmp_path / "debs"
    cache.mkdir()
    older = cache / "linux-image-6.1.0-53-cloud-amd64_6.1.187-1_amd64.deb"
    older.write_bytes(b"!<arch>\n")
    monkeypatch.setattr(vm_image.commands, "run", _Apt(online=False).run)
    assert vm_image.kernel_deb(cache) == older
    monkeypatch.setattr(vm_image.commands, "run", _Apt(online=False, lists=False).run)
    assert vm_image.kernel_deb(cache) == older
    shutil.rmtree(cache)
    monkeypatch.setattr(vm_image.commands, "run", _Apt(online=False).run)
    with pytest.raises(image_builds.ImageBuildError, match="cannot download the kernel"):
        vm_image.kernel_deb(cache)
