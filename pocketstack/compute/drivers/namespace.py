"""The namespace driver: each server a real process tree in its own namespaces.

Runs root-filesystem images (tar archives, such as the `busybox` image that
`pocketstack up` builds). What exists on the host for server U:
- `<workdir>/U/`: guest.json (the record), holder.json (the process that holds
  the namespaces), console.log, and the overlay (upper/, work/, root/);
- network namespace `ps-U` (host/namespaces.py), cgroup `pocketstack/U`;
- the image's tree, unpacked once under `<workdir>/../images/<image id>`.
Every name derives from the server id, so a restarted agent finds its guests
again. The directory is made first and removed last, so whatever a crash
leaves of a guest is found through it, and removed when no server owns it.
"""

from __future__ import annotations

import dataclasses
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
    ImageSource,
    Size,
    nics,
)
from pocketstack.compute.drivers.records import GuestRecords
from pocketstack.host import commands, loopdevs, namespaces, netdev, processes
from pocketstack.host.cgroups import GuestCgroup
from pocketstack.host.commands import HostCommandError
from pocketstack.host.namespaces import Layout

SOFT_STOP_TIMEOUT_S = 10.0  # as Nova's shutdown_timeout, shorter: these guests stop at once
BOOT_TIMEOUT_S = 5.0
HOLDER_FILE = "holder.json"
CONSOLE_FILE = "console.log"
CONSOLE_TAIL_BYTES = 1 << 20


@dataclass(frozen=True, slots=True)
class NamespaceGuest:
    """What the driver made for one server, kept in guest.json."""

    name: str
    image_ref: str
    vcpus: int
    memory_mb: int
    disk_gb: int
    boot_serial: int
    running: bool = True  # should PID 1 run (False after power_off)
    paused: bool = False
    suspended: bool = False
    rescued: bool = False
    # The NICs to plug at every boot: port_id, mac, mtu, bridge and netns (the bridge's).
    nics: tuple[dict[str, Any], ...] = ()
    # The volumes to connect at every boot (drivers.Disk fields).
    disks: tuple[dict[str, Any], ...] = ()

    @property
    def size(self) -> Size:
        return Size(self.vcpus, self.memory_mb, self.disk_gb)

    @classmethod
    def of(cls, spec: GuestSpec) -> NamespaceGuest:
        """A new guest of `spec`, running, on its image's root."""
        size = spec.size
        return cls(spec.name, spec.image_ref, size.vcpus, size.memory_mb, size.disk_gb,
                   spec.boot_serial, nics=nics.records(spec),
                   disks=tuple(dataclasses.asdict(disk) for disk in spec.disks))  # fmt: skip


def is_rootfs(image: drivers.ImageFile) -> bool:
    """Does this image hold a root filesystem tree this driver can run?"""
    return namespaces.is_tarball(image.path)


class NamespaceDriver:
    def __init__(
        self, host: str, workdir: Path, images: ImageSource,
        resources: Callable[[], HostResources],
    ) -> None:  # fmt: skip
        self.host = host
        self.records = GuestRecords(workdir / "guests", NamespaceGuest)
        self.image_trees = workdir / "images"
        self.images = images
        self._resources = resources
        self._lock = threading.RLock()

    def resources(self) -> HostResources:
        return self._resources()

    # What exists -------------------------------------------------------------------------

    def _holder(self, uuid: str) -> processes.ProcessId | None:
        return processes.ProcessId.load(self.records.dir(uuid) / HOLDER_FILE)

    def _running(self, uuid: str) -> bool:
        holder = self._holder(uuid)
        return holder is not None and processes.alive(holder)

    def _power(self, uuid: str, record: NamespaceGuest) -> int:
        if not self._running(uuid):
            return drivers.SHUTDOWN
        if record.suspended:
            return drivers.SUSPENDED
        return drivers.PAUSED if record.paused else drivers.RUNNING

    def guests(self) -> dict[str, Guest]:
        """Every guest of this cloud. Names on the host (network namespaces, cgroups) are
        shared with other clouds on the machine: only a directory here makes one ours."""
        with self._lock:
            return self.records.guests(self._power)

    def _record(self, uuid: str) -> NamespaceGuest:
        return self.records.require(uuid, self.host)

    def _update(self, uuid: str, **changes: object) -> NamespaceGuest:
        return self.records.update(uuid, self.host, **changes)

    # Building blocks ---------------------------------------------------------------------

    def _layout(self, uuid: str, rescue: bool = False) -> Layout:
        directory = self.records.dir(uuid)
        return Layout(directory / "rescue" if rescue else directory)

    def _image_tree(self, image_ref: str) -> Path:
        image = self.images.image(image_ref)
        if not is_rootfs(image):
            raise DriverError(
                f"Image {image_ref} is not a root filesystem archive; the namespace driver "
                "runs tar images such as `busybox` (see `pocketstack image build`)."
            )
        try:
            return namespaces.unpack_image(image.path, self.image_trees / image.id)
        except HostCommandError as exc:
            raise DriverError(f"Image {image_ref} could not be unpacked: {exc}") from exc

    def _prepare_root(self, uuid: str, spec: GuestSpec, fresh: bool) -> None:
        """Mount the guest's overlay (a new one when `fresh`) and give it its hostname and
        user data, as a config drive would."""
        layout = self._layout(uuid)
        boot = next((disk for disk in spec.disks if disk.boot), None)
        if boot is not None:
            self._mount_volume_root(uuid, boot)
        else:
            if fresh:
                namespaces.unmount(layout.root)
                shutil.rmtree(layout.upper, ignore_errors=True)
                shutil.rmtree(layout.work, ignore_errors=True)
            namespaces.mount_overlay(layout, self._image_tree(spec.image_ref))
        config = layout.root / "pocketstack"
        config.mkdir(exist_ok=True)
        (config / "hostname").write_text(drivers.hostname(spec.name) + "\n")
        script = config / "user-data"
        script.unlink(missing_ok=True)
        user_data = drivers.user_data(spec)
        if user_data is not None:
            script.write_bytes(user_data)

    def _mount_volume_root(self, uuid: str, disk: Disk) -> None:
        """A volume-backed server runs from its root volume's file system, mounted through
        a loop device. A volume that still holds the root filesystem archive it was made
        from (a volume from the busybox image) becomes that tree as ext4 first."""
        root = self._layout(uuid).root
        if namespaces.mounted(root):
            return
        if not disk.path:
            raise DriverError(f"volume {disk.volume_id} has no file on host {self.host}")
        volume = Path(disk.path)
        try:
            if namespaces.is_tarball(volume):
                namespaces.format_from_archive(volume, self.records.dir(uuid) / "unpacking")
            device = loopdevs.attach(volume, disk.read_only)
            root.mkdir(parents=True, exist_ok=True)
            commands.run(["mount", device, str(root)])
        except HostCommandError as exc:
            raise DriverError(
                f"volume {disk.volume_id} holds no root file system to run: {exc}"
            ) from exc

    def _boot(self, uuid: str) -> None:
        """Start PID 1 of the guest as its record says (normal or rescue root)."""
        record = self._record(uuid)
        if self._running(uuid):
            return
        cgroup = GuestCgroup(uuid)
        cgroup.remove()
        cgroup.create()
        cgroup.limit(record.vcpus, record.memory_mb)
        namespaces.create_netns(uuid)
        self._plug(uuid, record)
        normal = self._layout(uuid)
        root, mnt = (self._layout(uuid, rescue=True).root, normal.root) if record.rescued else (
            normal.root, None
        )  # fmt: skip
        console = self.records.dir(uuid) / CONSOLE_FILE
        try:
            name = drivers.hostname(record.name)
            holder = namespaces.launch(uuid, root, name, console, cgroup, mnt)
        except HostCommandError as exc:
            raise DriverError(str(exc)) from exc
        holder.save(self.records.dir(uuid) / HOLDER_FILE)
        if not namespaces.wait_booting(holder, BOOT_TIMEOUT_S):
            raise DriverError(f"{record.name} did not boot: {self._console_tail(uuid, 400)}")
        for disk in record.disks:
            self._connect(uuid, disk)
        self._update(uuid, running=True, paused=False, suspended=False)

    def _guest_dev(self, uuid: str) -> Path | None:
        """The guest's /dev as the host reaches it: a tmpfs in the guest's mount namespace,
        made anew at each boot (None: the guest is down)."""
        holder = self._holder(uuid)
        pid = namespaces.init_of(holder) if holder is not None else None
        return Path(f"/proc/{pid}/root/dev") if pid is not None else None

    def _connect(self, uuid: str, disk: dict[str, Any]) -> None:
        """The volume's file as a loop device, and its node (/dev/vdb) in a running guest.
        A disk without a path (fake backend) has nothing to connect."""
        if not disk["path"]:
            return
        try:
            device = loopdevs.attach(Path(disk["path"]), disk["read_only"])
            dev_dir = self._guest_dev(uuid)
            if dev_dir is not None:
                loopdevs.make_node(dev_dir, Disk(**disk).device_name, device)
        except (HostCommandError, OSError) as exc:
            raise DriverError(f"volume {disk['volume_id']} could not be connected: {exc}") from exc

    def _disconnect(self, uuid: str, disk: dict[str, Any]) -> None:
        """Remove the guest's node; the loop device goes when no other guest here uses it."""
        dev_dir = self._guest_dev(uuid)
        if dev_dir is not None:
            loopdevs.remove_node(dev_dir, Disk(**disk).device_name)
        if disk["path"] and not self.records.sharing(uuid, disk):
            loopdevs.detach(Path(disk["path"]), disk["read_only"])

    def _plug(self, uuid: str, record: NamespaceGuest) -> None:
        """NIC i is `eth<i>` in the guest's namespace with the port's MAC, its other end
        `tap<port id>` on the bridge its binding names. The network agent makes (and alone
        removes) the bridge; a boot waits a little for it. A NIC without a bridge (fake data
        plane) is not made."""
        guest_netns = namespaces.netns_name(uuid)
        try:
            for index, nic in enumerate(record.nics):
                bridge, netns = nic.get("bridge"), nic.get("netns")
                if not bridge or not netns:
                    continue
                mtu = nic.get("mtu")
                if not nics.wait_for_bridge(netns, bridge):
                    raise DriverError(
                        f"{record.name}: bridge {bridge} of port {nic['port_id']} is not on "
                        "this host (is the network agent running?)"
                    )
                netdev.ensure_veth(
                    netdev.tap_name(nic["port_id"]), f"eth{index}", netns=netns,
                    peer_netns=guest_netns, mtu=mtu, peer_mac=nic["mac"], master=bridge,
                )  # fmt: skip
                nics.wait_for_wiring(record.name, nic)
        except HostCommandError as exc:
            raise DriverError(f"{record.name}: a NIC could not be plugged: {exc}") from exc

    def _unplug(self, uuid: str) -> None:
        """Remove the guest's taps from their bridges (the veths go with them)."""
        record = self.records.get(uuid)
        for nic in record.nics if record is not None else ():
            netns = nic.get("netns")
            if netns and netdev.netns_exists(netns):
                netdev.delete_link(netns, netdev.tap_name(nic["port_id"]))

    def _halt(self, uuid: str, hard: bool) -> None:
        GuestCgroup(uuid).set_frozen(False)  # a frozen guest would not see its signals
        holder = self._holder(uuid)
        if holder is not None:
            namespaces.stop(holder, SOFT_STOP_TIMEOUT_S, hard)
        GuestCgroup(uuid).kill()

    def _console_tail(self, uuid: str, limit: int) -> str:
        console = self.records.dir(uuid) / CONSOLE_FILE
        try:
            with console.open("rb") as log:
                size = log.seek(0, 2)
                log.seek(max(0, size - limit))
                return log.read().decode(errors="replace")
        except OSError:
            return ""

    # The driver protocol ------------------------------------------------------------------

    def spawn(self, spec: GuestSpec) -> None:
        with self._lock:
            self.records.save(spec.uuid, NamespaceGuest.of(spec))
            self._prepare_root(spec.uuid, spec, fresh=False)
            self._boot(spec.uuid)

    def destroy(self, uuid: str) -> None:
        """Nothing of the guest stays: processes, mounts, namespace, cgroup, loop devices,
        files."""
        with self._lock:
            self._halt(uuid, hard=True)
            record = self.records.get(uuid)
            for disk in record.disks if record is not None else ():
                self._disconnect(uuid, disk)
            for layout in (self._layout(uuid, rescue=True), self._layout(uuid)):
                namespaces.unmount(layout.root)
            self._unplug(uuid)
            namespaces.delete_netns(uuid)
            GuestCgroup(uuid).remove()
            self.records.remove(uuid)

    def rebuild(self, spec: GuestSpec) -> None:
        """A new root from the (maybe new) image; the console log and namespace stay."""
        with self._lock:
            self._halt(spec.uuid, hard=False)
            self._unrescue_root(spec.uuid)
            self.records.save(spec.uuid, NamespaceGuest.of(spec))
            self._prepare_root(spec.uuid, spec, fresh=True)
            self._boot(spec.uuid)

    def resize(self, spec: GuestSpec) -> None:
        """New limits apply to the running guest at once (cgroups), no reboot needed."""
        with self._lock:
            self._update(
                spec.uuid, vcpus=spec.size.vcpus, memory_mb=spec.size.memory_mb,
                disk_gb=spec.size.disk_gb,
            )  # fmt: skip
            GuestCgroup(spec.uuid).limit(spec.size.vcpus, spec.size.memory_mb)

    def reboot(self, spec: GuestSpec, hard: bool) -> None:
        with self._lock:
            self._halt(spec.uuid, hard)
            self._update(
                spec.uuid, boot_serial=spec.boot_serial, running=True, nics=nics.records(spec)
            )
            self._boot(spec.uuid)

    def power_off(self, uuid: str) -> None:
        with self._lock:
            self._halt(uuid, hard=False)
            self._update(uuid, running=False, paused=False, suspended=False)

    def power_on(self, uuid: str) -> None:
        with self._lock:
            self._boot(uuid)

    def _freeze(self, uuid: str, frozen: bool, **flags: bool) -> None:
        with self._lock:
            if not self._running(uuid):
                raise DriverError(f"server {uuid} is not running on host {self.host}")
            GuestCgroup(uuid).set_frozen(frozen)
            self._update(uuid, **flags)

    def pause(self, uuid: str) -> None:
        self._freeze(uuid, True, paused=True)

    def unpause(self, uuid: str) -> None:
        self._freeze(uuid, False, paused=False)

    def suspend(self, uuid: str) -> None:
        """Frozen, as pause: a namespace guest's memory stays where it is."""
        self._freeze(uuid, True, suspended=True)

    def resume(self, uuid: str) -> None:
        self._freeze(uuid, False, suspended=False)

    def rescue(self, uuid: str) -> None:
        """Boot a fresh root of the server's image with the server's own root at /mnt."""
        with self._lock:
            record = self._record(uuid)
            self._halt(uuid, hard=False)
            rescue = self._layout(uuid, rescue=True)
            shutil.rmtree(rescue.directory, ignore_errors=True)
            namespaces.mount_overlay(rescue, self._image_tree(record.image_ref))
            config = rescue.root / "pocketstack"
            config.mkdir(exist_ok=True)
            (config / "hostname").write_text(drivers.hostname(record.name) + "\n")
            self._update(uuid, rescued=True)
            self._boot(uuid)

    def _unrescue_root(self, uuid: str) -> None:
        rescue = self._layout(uuid, rescue=True)
        namespaces.unmount(rescue.root)
        shutil.rmtree(rescue.directory, ignore_errors=True)
        if self.records.get(uuid) is not None:
            self._update(uuid, rescued=False)

    def unrescue(self, uuid: str) -> None:
        with self._lock:
            self._halt(uuid, hard=False)
            self._unrescue_root(uuid)
            self._boot(uuid)

    def console_output(self, uuid: str) -> str:
        return self._console_tail(uuid, CONSOLE_TAIL_BYTES)

    def attach_disk(self, uuid: str, disk: Disk) -> None:
        with self._lock:
            record = self._record(uuid)
            entry = dataclasses.asdict(disk)
            self._connect(uuid, entry)
            kept = tuple(d for d in record.disks if d["volume_id"] != disk.volume_id)
            self._update(uuid, disks=(*kept, entry))

    def detach_disk(self, uuid: str, volume_id: str) -> None:
        with self._lock:
            record = self._record(uuid)
            for disk in record.disks:
                if disk["volume_id"] == volume_id:
                    self._update(uuid, disks=tuple(d for d in record.disks if d is not disk))
                    self._disconnect(uuid, disk)

    def snapshot(self, uuid: str) -> Iterator[bytes] | None:
        """The guest's root tree (image below, its writes above) as a tar archive."""
        root = self._layout(uuid).root
        if not namespaces.mounted(root):
            raise DriverError(f"server {uuid} has no root filesystem on host {self.host}")
        return commands.stream(
            ["tar", "--create", "--numeric-owner", "--exclude=./pocketstack", "-C", str(root), "."]
        )
