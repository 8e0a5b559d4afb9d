"""This machine's real drivers behind one compute host.

A Nova host runs one hypervisor; this host runs two kinds of guests, chosen
per image as a user would expect: root-filesystem archives (`busybox`) run as
namespace guests, disk and kernel images (`tiny-vm`) as qemu VMs. Placement
sees one host with the machine's resources, whichever kind the guests are.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from pocketstack.compute.drivers import (
    Disk,
    Driver,
    DriverError,
    Guest,
    GuestSpec,
    HostResources,
    ImageSource,
)
from pocketstack.compute.drivers import namespace as namespace_mod


class LocalDriver:
    def __init__(
        self, images: ImageSource, namespaces: Driver, vms: Driver | None,
        resources: Callable[[], HostResources], no_vms_reason: str = "",
    ) -> None:  # fmt: skip
        self.images = images
        self.namespaces = namespaces
        self.vms = vms
        self._resources = resources
        self.no_vms_reason = no_vms_reason

    def resources(self) -> HostResources:
        return self._resources()

    def guests(self) -> dict[str, Guest]:
        found = self.vms.guests() if self.vms else {}
        return {**found, **self.namespaces.guests()}

    def _for_image(self, image_ref: str) -> Driver:
        if namespace_mod.is_rootfs(self.images.image(image_ref)):
            return self.namespaces
        if self.vms is None:
            raise DriverError(
                f"Image {image_ref} needs a VM, and this host runs none: {self.no_vms_reason}"
            )
        return self.vms

    def _owner(self, uuid: str) -> Driver:
        if self.vms is not None and uuid in self.vms.guests():
            return self.vms
        return self.namespaces

    def spawn(self, spec: GuestSpec) -> None:
        self._for_image(spec.image_ref).spawn(spec)

    def destroy(self, uuid: str) -> None:
        for driver in (self.namespaces, self.vms):
            if driver is not None and uuid in driver.guests():
                driver.destroy(uuid)

    def rebuild(self, spec: GuestSpec) -> None:
        """On the new image's kind of guest: a busybox server rebuilt from tiny-vm
        becomes a VM."""
        target, current = self._for_image(spec.image_ref), self._owner(spec.uuid)
        if target is current:
            target.rebuild(spec)
            return
        current.destroy(spec.uuid)
        target.spawn(spec)

    def resize(self, spec: GuestSpec) -> None:
        self._owner(spec.uuid).resize(spec)

    def reboot(self, spec: GuestSpec, hard: bool) -> None:
        self._owner(spec.uuid).reboot(spec, hard)

    def power_off(self, uuid: str) -> None:
        self._owner(uuid).power_off(uuid)

    def power_on(self, uuid: str) -> None:
        self._owner(uuid).power_on(uuid)

    def pause(self, uuid: str) -> None:
        self._owner(uuid).pause(uuid)

    def unpause(self, uuid: str) -> None:
        self._owner(uuid).unpause(uuid)

    def suspend(self, uuid: str) -> None:
        self._owner(uuid).suspend(uuid)

    def resume(self, uuid: str) -> None:
        self._owner(uuid).resume(uuid)

    def rescue(self, uuid: str) -> None:
        self._owner(uuid).rescue(uuid)

    def unrescue(self, uuid: str) -> None:
        self._owner(uuid).unrescue(uuid)

    def attach_disk(self, uuid: str, disk: Disk) -> None:
        self._owner(uuid).attach_disk(uuid, disk)

    def detach_disk(self, uuid: str, volume_id: str) -> None:
        self._owner(uuid).detach_disk(uuid, volume_id)

    def console_output(self, uuid: str) -> str:
        return self._owner(uuid).console_output(uuid)

    def snapshot(self, uuid: str) -> Iterator[bytes] | None:
        return self._owner(uuid).snapshot(uuid)
