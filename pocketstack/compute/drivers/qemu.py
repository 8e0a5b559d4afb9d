"""The qemu driver: each server a real virtual machine (host/qemu.py), KVM or TCG.

Runs disk images qemu can read (qcow2, raw, vmdk, ...), booted by the BIOS from
their disk, or by `-kernel`/`-initrd` when the image names a kernel_id (and a
ramdisk_id), as `tiny-vm` does (host/vm_image.py). What exists on the host for
server U, all in `<workdir>/U/` (so the work dir is this driver's alone):
- guest.json (the record) and qemu.json (pid and start time of its qemu);
- base.<format>: the image's bytes, hard-linked (copied across file systems), so
  deleting the image never breaks the server; kernel and initrd likewise, the
  initrd with a small cpio archive appended that carries /pocketstack/hostname
  and /pocketstack/user-data (host/vm_image.py:config_archive);
- disk.qcow2: the server's root disk, an overlay over base.<format>;
  rescue.qcow2 while rescued;
- console.log (the serial console, every boot appended), qemu.log, qmp.sock.
The qemu is named `ps-U`. A restarted agent finds its VMs through the records
and pid files; one whose qemu died is SHUTDOWN. Each port is a tap qemu makes, moved
onto the port's bridge (drivers/nics.py); without a data plane a VM has no NIC.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pocketstack.compute import drivers
from pocketstack.compute.drivers import (
    Disk,
    DriverError,
    Guest,
    GuestSpec,
    HostResources,
    ImageFile,
    ImageSource,
    Size,
    nics,
)
from pocketstack.compute.drivers.records import GuestRecords
from pocketstack.host import netdev, qemu, vm_image
from pocketstack.host.commands import HostCommandError

# Nova waits up to 60 s for a guest to power off; the guests we build take well under one.
SOFT_STOP_TIMEOUT_S = 20.0
CONSOLE_TAIL_BYTES = 1 << 20
GIB = 1 << 30
DISK = "disk.qcow2"
RESCUE_DISK = "rescue.qcow2"
KERNEL = "kernel"
INITRD = "initrd"
RAMDISK = "ramdisk"  # the image's initrd as it came, before the config archive
DEFAULT_COMMAND_LINE = "console=ttyS0"
# QEMU run states (query-status) and what Nova calls them.
_PAUSED_STATES = frozenset({
    "paused", "debug", "inmigrate", "postmigrate", "finish-migrate", "prelaunch",
    "save-vm", "restore-vm", "io-error", "watchdog", "colo",
})  # fmt: skip
_CRASHED_STATES = frozenset({"internal-error", "guest-panicked"})


@dataclass(frozen=True, slots=True)
class QemuGuest:
    """What the driver made for one server, kept in guest.json."""

    name: str
    image_ref: str
    vcpus: int
    memory_mb: int
    disk_gb: int
    boot_serial: int
    disk_format: str  # qemu-img's name for base.<format>
    command_line: str | None  # None: the image boots from its disk, not -kernel
    has_ramdisk: bool = False
    running: bool = True  # should qemu run (False after power_off)
    paused: bool = False
    suspended: bool = False
    rescued: bool = False
    nics: tuple[dict[str, Any], ...] = ()  # drivers/nics.py records
    disks: tuple[dict[str, Any], ...] = ()  # attached volumes (drivers.Disk fields)

    @property
    def size(self) -> Size:
        return Size(self.vcpus, self.memory_mb, self.disk_gb)


def _volume(disk: dict[str, Any]) -> qemu.Volume:
    return qemu.Volume(
        disk["volume_id"], Path(disk["path"]), disk["read_only"], disk.get("boot", False)
    )


def _place(source: Path, target: Path) -> None:
    """`target` holds `source`'s bytes: a hard link, or a copy across file systems."""
    partial = target.with_name(target.name + ".part")
    partial.unlink(missing_ok=True)
    try:
        os.link(source, partial)
    except OSError:
        shutil.copyfile(source, partial)
    partial.replace(target)


class QemuDriver:
    def __init__(
        self, host: str, workdir: Path, images: ImageSource, accel: str,
        resources: Callable[[], HostResources] | HostResources,
    ) -> None:  # fmt: skip
        """`accel` is "kvm" or "tcg" (host/machine.py tells which works here)."""
        if accel not in qemu.ACCELERATORS:
            raise ValueError(f"accel must be one of {qemu.ACCELERATORS}, not {accel!r}")
        self.host = host
        self.workdir = workdir
        self.records = GuestRecords(workdir, QemuGuest, "VM")
        self.images = images
        self.accel = accel
        self._resources = resources
        self._lock = threading.RLock()

    def resources(self) -> HostResources:
        return self._resources() if callable(self._resources) else self._resources

    # What exists -------------------------------------------------------------------------

    def _dir(self, uuid: str) -> Path:
        return self.records.dir(uuid)

    def _power(self, uuid: str, record: QemuGuest) -> int:
        if qemu.running(self._dir(uuid)) is None:
            return drivers.SHUTDOWN
        try:
            state = qemu.status(self._dir(uuid))
        except qemu.QmpError:
            state = "paused" if record.paused or record.suspended else "running"
        if state in _PAUSED_STATES or state == "suspended":
            return drivers.SUSPENDED if record.suspended or state == "suspended" else drivers.PAUSED
        if state in _CRASHED_STATES:
            return drivers.CRASHED
        return drivers.SHUTDOWN if state == "shutdown" else drivers.RUNNING

    def guests(self) -> dict[str, Guest]:
        with self._lock:
            return self.records.guests(self._power)

    def _record(self, uuid: str) -> QemuGuest:
        return self.records.require(uuid, self.host)

    def _update(self, uuid: str, **changes: object) -> QemuGuest:
        return self.records.update(uuid, self.host, **changes)

    # Building blocks ---------------------------------------------------------------------

    def _image(self, image_ref: str) -> ImageFile:
        image = self.images.image(image_ref)
        if image.disk_format in ("aki", "ari"):
            raise DriverError(
                f"Image {image_ref} is a kernel or ramdisk; boot the disk image that names "
                "it as its kernel_id or ramdisk_id"
            )
        if qemu.disk_format(image.disk_format) is None:
            raise DriverError(
                f"Image {image_ref} has disk format {image.disk_format!r}, which the qemu "
                f"driver does not boot; use one of {', '.join(qemu.DISK_FORMATS)}"
            )
        return image

    def _prepare(self, spec: GuestSpec) -> QemuGuest:
        """Put the image's files in the guest's directory and make a fresh root disk; the
        record this boot will run from (saved, so a directory never lacks one for long)."""
        image = self._image(spec.image_ref)
        kernel_id = image.properties.get("kernel_id")
        ramdisk_id = image.properties.get("ramdisk_id")
        kernel = self.images.image(kernel_id) if kernel_id else None
        ramdisk = self.images.image(ramdisk_id) if kernel and ramdisk_id else None
        user_data = drivers.user_data(spec)
        disk_format = qemu.disk_format(image.disk_format) or "raw"
        command_line = None
        if kernel is not None:
            command_line = image.properties.get("os_command_line") or DEFAULT_COMMAND_LINE

        directory = self._dir(spec.uuid)
        directory.mkdir(parents=True, exist_ok=True)
        made = (DISK, RESCUE_DISK, KERNEL, RAMDISK, INITRD)
        for stale in [*directory.glob("base.*"), *(directory / name for name in made)]:
            stale.unlink(missing_ok=True)
        record = QemuGuest(
            spec.name, spec.image_ref, spec.size.vcpus, spec.size.memory_mb, spec.size.disk_gb,
            spec.boot_serial, disk_format, command_line, ramdisk is not None,
            nics=nics.records(spec), disks=tuple(dataclasses.asdict(d) for d in spec.disks),
        )  # fmt: skip
        self.records.save(spec.uuid, record)
        base = directory / f"base.{disk_format}"
        try:
            _place(image.path, base)
            if kernel is not None:
                _place(kernel.path, directory / KERNEL)
            if ramdisk is not None:
                _place(ramdisk.path, directory / RAMDISK)
                hostname = drivers.hostname(spec.name)
                vm_image.append_config(directory / RAMDISK, directory / INITRD, hostname, user_data)
            if not any(disk.boot for disk in spec.disks):  # else it boots from its volume
                self._make_disk(directory / DISK, base, disk_format, spec.size.disk_gb)
        except (OSError, HostCommandError) as exc:
            raise DriverError(f"The disks of {spec.name} could not be made: {exc}") from exc
        return record

    @staticmethod
    def _make_disk(path: Path, base: Path, disk_format: str, disk_gb: int) -> None:
        """An overlay over `base`, as large as the flavor's disk when that is larger."""
        size = qemu.info(base, disk_format).virtual_size
        qemu.create_overlay(path, base, disk_format, max(size, disk_gb * GIB))

    def _grow_disk(self, uuid: str, record: QemuGuest) -> None:
        """A resize to a larger disk takes effect here, while qemu is down."""
        disk = self._dir(uuid) / DISK
        if not disk.exists():
            return  # a volume-backed VM: its root is the volume's size
        if record.disk_gb * GIB > qemu.info(disk, "qcow2").virtual_size:
            qemu.resize(disk, record.disk_gb * GIB)

    def _boot(self, uuid: str) -> None:
        """Start qemu as the record says (normal or rescue disks), unless it runs."""
        record = self._record(uuid)
        directory = self._dir(uuid)
        if qemu.running(directory) is not None:
            return
        own = () if any(d.get("boot") for d in record.disks) else (Path(DISK),)
        disks = (Path(RESCUE_DISK), *own) if record.rescued else own
        plugged = self._plugged(record)
        machine = qemu.Machine(
            name=f"ps-{uuid}", accel=self.accel, vcpus=record.vcpus,
            memory_mb=record.memory_mb, disks=disks,
            kernel=Path(KERNEL) if record.command_line is not None else None,
            initrd=Path(INITRD) if record.command_line is not None and record.has_ramdisk
            else None,
            append=record.command_line or "",
            nics=tuple((netdev.tap_name(n["port_id"]), n["mac"]) for n in plugged),
            volumes=tuple(_volume(disk) for disk in record.disks if disk["path"]),
        )  # fmt: skip
        try:
            qemu.settle(directory)  # a qemu that just died may still hold the disks
            self._grow_disk(uuid, record)
            qemu.start(machine, directory)
            for nic in plugged:
                self._plug(nic)
            for nic in plugged:
                nics.wait_for_wiring(record.name, nic)
        except HostCommandError as exc:
            raise DriverError(f"{record.name} did not start: {exc}") from exc
        self._update(uuid, running=True, paused=False, suspended=False)

    @staticmethod
    def _plug(nic: dict[str, Any]) -> None:
        """The tap qemu made (in this namespace) goes onto the port's bridge, inside the
        network's namespace; it goes away by itself when qemu exits."""
        tap = netdev.tap_name(nic["port_id"])
        netdev.move_link(None, tap, nic["netns"])
        netdev.set_link(nic["netns"], tap, mtu=nic.get("mtu"), master=nic["bridge"], up=True)

    def _plugged(self, record: QemuGuest) -> list[dict[str, Any]]:
        """The record's NICs whose bridges are there (waited for, a little)."""
        found = []
        for nic in record.nics:
            if not nics.pluggable(nic):
                continue
            if not nics.wait_for_bridge(nic["netns"], nic["bridge"]):
                raise DriverError(
                    f"{record.name}: bridge {nic['bridge']} of port {nic['port_id']} is not on "
                    "this host (is the network agent running?)"
                )
            found.append(nic)
        return found

    def _halt(self, uuid: str, hard: bool) -> None:
        qemu.stop(self._dir(uuid), SOFT_STOP_TIMEOUT_S, soft=not hard)

    def _qmp(self, uuid: str, command: str) -> None:
        if qemu.running(self._dir(uuid)) is None:
            raise DriverError(f"server {uuid} is not running on host {self.host}")
        try:
            qemu.execute(self._dir(uuid), command)
        except qemu.QmpError as exc:
            raise DriverError(f"QEMU did not {command}: {exc}") from exc

    # The driver protocol ------------------------------------------------------------------

    def spawn(self, spec: GuestSpec) -> None:
        """Make the VM and boot it; a VM that already exists is only started if it is down
        (its disk kept)."""
        with self._lock:
            record = self.records.get(spec.uuid)
            if record is None or not (
                (self._dir(spec.uuid) / DISK).exists() or any(d.boot for d in spec.disks)
            ):
                self._prepare(spec)
            self._boot(spec.uuid)

    def destroy(self, uuid: str) -> None:
        """Nothing of the VM stays: its qemu is stopped at once, its directory removed."""
        with self._lock:
            self._halt(uuid, hard=True)
            self.records.remove(uuid)

    def rebuild(self, spec: GuestSpec) -> None:
        """A fresh root disk from the (maybe new) image, booted; the console log stays."""
        with self._lock:
            self._halt(spec.uuid, hard=False)
            self._prepare(spec)
            self._boot(spec.uuid)

    def resize(self, spec: GuestSpec) -> None:
        """Record the new size. It applies at the VM's next boot (a reboot, or power off and
        on): vCPUs and memory are qemu's command line, and a larger disk is grown then."""
        with self._lock:
            self._update(
                spec.uuid, vcpus=spec.size.vcpus, memory_mb=spec.size.memory_mb,
                disk_gb=spec.size.disk_gb,
            )  # fmt: skip

    def reboot(self, spec: GuestSpec, hard: bool) -> None:
        """A new qemu on the same disks: soft presses the power button first and waits for
        the guest to power off; hard stops qemu at once. A rescued VM stays rescued."""
        with self._lock:
            self._halt(spec.uuid, hard)
            self._update(spec.uuid, boot_serial=spec.boot_serial, running=True,
                         nics=nics.records(spec))  # fmt: skip
            self._boot(spec.uuid)

    def power_off(self, uuid: str) -> None:
        """ACPI power button, up to SOFT_STOP_TIMEOUT_S for the guest, then qemu is quit."""
        with self._lock:
            self._record(uuid)
            self._halt(uuid, hard=False)
            self._update(uuid, running=False, paused=False, suspended=False)

    def power_on(self, uuid: str) -> None:
        with self._lock:
            self._boot(uuid)

    def pause(self, uuid: str) -> None:
        with self._lock:
            self._record(uuid)
            self._qmp(uuid, "stop")
            self._update(uuid, paused=True)

    def unpause(self, uuid: str) -> None:
        with self._lock:
            self._record(uuid)
            self._qmp(uuid, "cont")
            self._update(uuid, paused=False)

    def suspend(self, uuid: str) -> None:
        """The VM stops running, reported SUSPENDED. Its memory stays in qemu, not on disk
        as Nova's libvirt driver saves it: a host restart loses it (the VM is then
        SHUTDOWN and boots afresh on power on)."""
        with self._lock:
            self._record(uuid)
            self._qmp(uuid, "stop")
            self._update(uuid, suspended=True)

    def resume(self, uuid: str) -> None:
        with self._lock:
            self._record(uuid)
            self._qmp(uuid, "cont")
            self._update(uuid, suspended=False)

    def rescue(self, uuid: str) -> None:
        """Boot a fresh disk of the server's image (and its kernel) with the server's own
        disk attached second, as Nova rescues."""
        with self._lock:
            record = self._record(uuid)
            directory = self._dir(uuid)
            self._halt(uuid, hard=False)
            try:
                self._make_disk(
                    directory / RESCUE_DISK, directory / f"base.{record.disk_format}",
                    record.disk_format, 0,
                )  # fmt: skip
            except HostCommandError as exc:
                raise DriverError(
                    f"The rescue disk of {record.name} could not be made: {exc}"
                ) from exc
            self._update(uuid, rescued=True)
            self._boot(uuid)

    def unrescue(self, uuid: str) -> None:
        with self._lock:
            self._record(uuid)
            self._halt(uuid, hard=False)
            (self._dir(uuid) / RESCUE_DISK).unlink(missing_ok=True)
            self._update(uuid, rescued=False)
            self._boot(uuid)

    def attach_disk(self, uuid: str, disk: Disk) -> None:
        """Hot-plug the volume as a virtio disk into a running VM (QMP blockdev-add and
        device_add); a VM that is down gets it at its next boot."""
        with self._lock:
            record = self._record(uuid)
            entry = dataclasses.asdict(disk)
            if disk.path and qemu.running(self._dir(uuid)) is not None:
                try:
                    qemu.plug_volume(self._dir(uuid), _volume(entry))
                except qemu.QmpError as exc:
                    raise DriverError(f"volume {disk.volume_id} was not plugged: {exc}") from exc
            kept = tuple(d for d in record.disks if d["volume_id"] != disk.volume_id)
            self._update(uuid, disks=(*kept, entry))

    def detach_disk(self, uuid: str, volume_id: str) -> None:
        with self._lock:
            record = self._record(uuid)
            for disk in record.disks:
                if disk["volume_id"] != volume_id:
                    continue
                if disk["path"] and qemu.running(self._dir(uuid)) is not None:
                    try:
                        qemu.unplug_volume(self._dir(uuid), _volume(disk))
                    except qemu.QmpError as exc:
                        raise DriverError(f"volume {volume_id} was not unplugged: {exc}") from exc
                self._update(uuid, disks=tuple(d for d in record.disks if d is not disk))

    def console_output(self, uuid: str) -> str:
        """The serial console of every boot, its last megabyte."""
        try:
            with (self._dir(uuid) / qemu.CONSOLE_FILE).open("rb") as log:
                size = log.seek(0, os.SEEK_END)
                log.seek(max(0, size - CONSOLE_TAIL_BYTES))
                return log.read().decode(errors="replace")
        except OSError:
            return ""

    def snapshot(self, uuid: str) -> Iterator[bytes] | None:
        """The root disk (the image below, the guest's writes above) as one standalone
        qcow2. A running VM is stopped for the copy (which also flushes qemu's caches to
        the disk file) and continued after."""
        with self._lock:
            record = self._record(uuid)
            directory = self._dir(uuid)
            target = directory / f"snapshot-{os.urandom(4).hex()}.qcow2"
            live = qemu.running(directory) is not None
            resume = False
            try:
                if live:
                    resume = qemu.status(directory) == "running"
                    if resume:
                        qemu.execute(directory, "stop")
                qemu.convert(directory / DISK, target, force_share=live)
            except (HostCommandError, qemu.QmpError) as exc:
                target.unlink(missing_ok=True)
                raise DriverError(f"The disk of {record.name} could not be copied: {exc}") from exc
            finally:
                if resume:
                    with contextlib.suppress(qemu.QmpError):
                        qemu.execute(directory, "cont")
            return qemu.read_chunks(target)
