"""The fake driver: guests are entries in a dict, every action is instant.

It keeps the lifecycle honest (a paused guest is PAUSED, a rebooted one is on
the new boot) so API and scheduler behaviour can be tested at scale; it runs
nothing. Its console shows the boots, as a real console would.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Iterator

from pocketstack.compute.drivers import (
    PAUSED,
    RUNNING,
    SHUTDOWN,
    SUSPENDED,
    Disk,
    DriverError,
    Gpu,
    Guest,
    GuestSpec,
    HostResources,
)

FAKE_GPU_MODEL = "CUSTOM_FAKE_GPU"


class FakeDriver:
    def __init__(
        self, host: str, vcpus: int = 16, memory_mb: int = 32768, disk_gb: int = 1000,
        vgpus: int = 0, gpus: tuple[Gpu, ...] = (),
    ) -> None:  # fmt: skip
        """`vgpus` gives the host one fake GPU with that many VGPUs; `gpus` reports real ones
        (this machine's, found through NVML)."""
        self.host = host
        self._resources = HostResources(
            vcpus=vcpus,
            memory_mb=memory_mb,
            disk_gb=disk_gb,
            hypervisor_type="fake",
            traits=frozenset({"COMPUTE_NODE"}),
            gpus=(Gpu("0000:81:00.0", FAKE_GPU_MODEL, vgpus),) if vgpus else gpus,
        )
        self._guests: dict[str, Guest] = {}
        self._consoles: dict[str, list[str]] = {}
        self._lock = threading.Lock()
        # A host whose builds fail, as a broken hypervisor's would: for rescheduling tests.
        self.failing_builds = False
        # A host that cannot connect or disconnect disks: for rollback tests.
        self.failing_disks = False

    def resources(self) -> HostResources:
        return self._resources

    def guests(self) -> dict[str, Guest]:
        with self._lock:
            return dict(self._guests)

    def _get(self, uuid: str) -> Guest:
        guest = self._guests.get(uuid)
        if guest is None:
            raise DriverError(f"no guest {uuid} on fake host {self.host}")
        return guest

    def _set(self, uuid: str, **changes: object) -> None:
        with self._lock:
            self._guests[uuid] = dataclasses.replace(self._get(uuid), **changes)  # type: ignore[arg-type]

    def _boot(self, spec: GuestSpec, rescued: bool = False) -> None:
        with self._lock:
            self._guests[spec.uuid] = Guest(
                spec.uuid, RUNNING, spec.image_ref, spec.size, spec.boot_serial, rescued,
                frozenset(disk.volume_id for disk in spec.disks),
            )
            console = self._consoles.setdefault(spec.uuid, [])
            console.append(f"fake boot {spec.boot_serial} of {spec.name} from {spec.image_ref}")
            console.append(f"{spec.size.vcpus} CPUs, {spec.size.memory_mb} MB of memory")
            console.append(f"{spec.name} is up")
            console.append(f"{spec.name} login:")

    def spawn(self, spec: GuestSpec) -> None:
        if self.failing_builds:
            raise DriverError(f"fake host {self.host} failed to build {spec.name}")
        self._boot(spec)

    def destroy(self, uuid: str) -> None:
        with self._lock:
            self._guests.pop(uuid, None)
            self._consoles.pop(uuid, None)

    def rebuild(self, spec: GuestSpec) -> None:
        self._boot(spec)

    def resize(self, spec: GuestSpec) -> None:
        self._set(spec.uuid, size=spec.size)

    def reboot(self, spec: GuestSpec, hard: bool) -> None:
        rescued = self._get(spec.uuid).rescued
        self._boot(spec, rescued)

    def power_off(self, uuid: str) -> None:
        self._set(uuid, power_state=SHUTDOWN)

    def power_on(self, uuid: str) -> None:
        self._set(uuid, power_state=RUNNING)

    def pause(self, uuid: str) -> None:
        self._set(uuid, power_state=PAUSED)

    def unpause(self, uuid: str) -> None:
        self._set(uuid, power_state=RUNNING)

    def suspend(self, uuid: str) -> None:
        self._set(uuid, power_state=SUSPENDED)

    def resume(self, uuid: str) -> None:
        self._set(uuid, power_state=RUNNING)

    def rescue(self, uuid: str) -> None:
        self._set(uuid, rescued=True, power_state=RUNNING)

    def unrescue(self, uuid: str) -> None:
        self._set(uuid, rescued=False, power_state=RUNNING)

    def attach_disk(self, uuid: str, disk: Disk) -> None:
        if self.failing_disks:
            raise DriverError(f"fake host {self.host} could not connect volume {disk.volume_id}")
        with self._lock:
            guest = self._get(uuid)
            self._guests[uuid] = dataclasses.replace(guest, disks=guest.disks | {disk.volume_id})

    def detach_disk(self, uuid: str, volume_id: str) -> None:
        if self.failing_disks:
            raise DriverError(f"fake host {self.host} could not disconnect volume {volume_id}")
        with self._lock:
            guest = self._get(uuid)
            self._guests[uuid] = dataclasses.replace(guest, disks=guest.disks - {volume_id})

    def crash(self, uuid: str) -> None:
        """The guest goes down by itself, as a real one whose PID 1 or qemu dies."""
        self._set(uuid, power_state=SHUTDOWN)

    def snapshot(self, uuid: str) -> Iterator[bytes] | None:
        """A fake guest has no disk of its own: it runs its image unchanged."""
        self._get(uuid)
        return None

    def console_output(self, uuid: str) -> str:
        with self._lock:
            return "\n".join(self._consoles.get(uuid, [])) + "\n"
