"""What a compute driver does, whatever it runs servers on.

The agent (agent.py) decides what to do; a driver only does it, idempotently,
and reports what exists. `fake.py` keeps guests in memory (instant, for tests
and scale runs); real drivers (namespaces, qemu) implement the same protocol.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

# Nova's power states, as the API shows them in OS-EXT-STS:power_state.
NOSTATE = 0
RUNNING = 1
PAUSED = 3
SHUTDOWN = 4
CRASHED = 6
SUSPENDED = 7


@dataclass(frozen=True, slots=True)
class Size:
    vcpus: int
    memory_mb: int
    disk_gb: int


@dataclass(frozen=True, slots=True)
class Nic:
    """A server's port as its host plugs it: `vif_details` from the port's binding name the
    bridge (`bridge_name`) and the namespace it is in (`netns`); without a bridge (the
    fake data plane) there is nothing to plug."""

    port_id: str
    mac: str
    mtu: int | None
    vif_details: Mapping[str, object]

    @property
    def bridge(self) -> str | None:
        found = self.vif_details.get("bridge_name")
        return str(found) if found else None

    @property
    def netns(self) -> str | None:
        found = self.vif_details.get("netns")
        return str(found) if found else None


@dataclass(frozen=True, slots=True)
class Disk:
    """A volume a server has attached, as its host connects it: `path` is the file or
    block device the volume's connection names (None: nothing on this host to connect,
    as with the fake backend), `device` the name the guest sees (/dev/vdb)."""

    volume_id: str
    device: str
    path: str | None
    read_only: bool = False
    boot: bool = False  # the server's root: it runs from this volume, not its image

    @property
    def device_name(self) -> str:
        return self.device.removeprefix("/dev/")


@dataclass(frozen=True, slots=True)
class GuestSpec:
    """What a server should run: its image, size, NICs, volumes and the boot it is on."""

    uuid: str
    name: str
    image_ref: str
    size: Size
    user_data: str | None
    boot_serial: int
    nics: tuple[Nic, ...] = ()
    disks: tuple[Disk, ...] = ()


@dataclass(frozen=True, slots=True)
class Guest:
    """What a driver has for a server right now."""

    uuid: str
    power_state: int
    image_ref: str
    size: Size
    boot_serial: int
    rescued: bool
    disks: frozenset[str] = frozenset()  # ids of the volumes connected to it


@dataclass(frozen=True, slots=True)
class HostResources:
    vcpus: int
    memory_mb: int
    disk_gb: int
    hypervisor_type: str
    traits: frozenset[str]
    gpus: tuple[Gpu, ...] = ()


@dataclass(frozen=True, slots=True)
class Gpu:
    """A physical GPU offering `vgpus` virtual GPUs of one model."""

    pci_address: str
    model: str
    vgpus: int


@dataclass(frozen=True, slots=True)
class ImageFile:
    """An image's bytes on this host, and what the image says about itself: real drivers
    pick how to run it from these (a root-filesystem tarball, a disk, a kernel)."""

    id: str
    path: Path
    disk_format: str | None
    container_format: str | None
    properties: Mapping[str, str]


class ImageSource(Protocol):
    """Where a host gets the images its guests run (the image service, in-process)."""

    def image(self, image_ref: str) -> ImageFile:
        """The image, its bytes readable at `path`; DriverError when it cannot be had."""
        ...


class DriverError(Exception):
    """A driver could not do what was asked; the message is shown as the server's fault."""


class Driver(Protocol):
    def resources(self) -> HostResources: ...

    def guests(self) -> dict[str, Guest]: ...

    def spawn(self, spec: GuestSpec) -> None: ...

    def destroy(self, uuid: str) -> None: ...

    def rebuild(self, spec: GuestSpec) -> None: ...

    def resize(self, spec: GuestSpec) -> None: ...

    def reboot(self, spec: GuestSpec, hard: bool) -> None: ...

    def power_off(self, uuid: str) -> None: ...

    def power_on(self, uuid: str) -> None: ...

    def pause(self, uuid: str) -> None: ...

    def unpause(self, uuid: str) -> None: ...

    def suspend(self, uuid: str) -> None: ...

    def resume(self, uuid: str) -> None: ...

    def rescue(self, uuid: str) -> None: ...

    def unrescue(self, uuid: str) -> None: ...

    def console_output(self, uuid: str) -> str: ...

    def attach_disk(self, uuid: str, disk: Disk) -> None:
        """Connect the volume to the guest, at once if it runs and at each boot."""
        ...

    def detach_disk(self, uuid: str, volume_id: str) -> None:
        """Take the volume away from the guest; not attached is not an error."""
        ...

    def snapshot(self, uuid: str) -> Iterator[bytes] | None:
        """The guest's root disk as image bytes; None when the guest never wrote to its
        image (the image's own bytes are then the snapshot)."""
        ...


def hostname(name: str) -> str:
    """A server's name as a host name a guest can set (letters, digits, dashes)."""
    cleaned = "".join(c if c.isalnum() or c == "-" else "-" for c in name).strip("-")
    return cleaned[:63] or "server"


def user_data(spec: GuestSpec) -> bytes | None:
    """The user data the guest runs: the API keeps it base64-encoded."""
    if not spec.user_data:
        return None
    try:
        return base64.b64decode(spec.user_data)
    except binascii.Error as exc:
        raise DriverError(f"user_data of {spec.name} is not base64: {exc}") from exc
