"""The compute side of volume attachment: a server's volumes in the block storage service.

Nova's flow, with the block storage service called in-process (volume/service.py):
the API reserves the volume for the server (an attachment without a connector),
connects it for the server's host (the attachment updated with a connector,
which gives its connection_info) and records the volume in the server's
devices as `attaching`, moving the server's spec; the host connects the disk
and reports, and the report completes the attachment (the volume is in-use).
A detach marks the volume `detaching` (os-begin_detaching) and moves the spec;
once the host reports the disk gone, the attachment is deleted. A host that
fails to connect or disconnect a disk rolls that volume back alone: the server
goes on. Each entry of `devices["volumes"]` is one of Nova's block device
mappings.
"""

from __future__ import annotations

import contextlib
import re
import string
import time
import uuid as uuidlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from pocketstack.compute import drivers
from pocketstack.core import errors
from pocketstack.core.context import RequestContext
from pocketstack.core.runtime import Runtime
from pocketstack.volume import service as volume_service

ROOT_DEVICE = "/dev/vda"
DEVICE_PATTERN = re.compile(r"^/dev/x?[a-z]?d?[a-z]+[0-9]*$")
# Where Nova lets a volume be attached or detached (vm_state).
ATTACH_STATES = frozenset({"active", "paused", "stopped", "resized"})
CONNECTED = ("attaching", "attached")


def enabled(runtime: Runtime) -> bool:
    return "volume" in runtime.settings.services


def require_enabled(runtime: Runtime) -> None:
    if not enabled(runtime):
        raise errors.Invalid(
            "This cloud does not run the block storage service; start it with "
            "`pocketstack up --services ...,volume`."
        )


def entries(devices: dict[str, Any]) -> list[dict[str, Any]]:
    """The server's volumes (block device mappings), in the order they were attached."""
    return list(devices.get("volumes", []))


def disks(devices: dict[str, Any]) -> tuple[drivers.Disk, ...]:
    """The volumes the server's host should have connected."""
    return tuple(
        drivers.Disk(
            entry["volume_id"], entry["device"], entry.get("path"), entry["read_only"],
            boot=entry.get("boot_index") == 0,
        )
        for entry in entries(devices)
        if entry["state"] in CONNECTED
    )


def is_volume_backed(devices: dict[str, Any]) -> bool:
    return any(e.get("boot_index") == 0 for e in entries(devices))


def root_image(devices: dict[str, Any]) -> str:
    """The image a volume-backed server's root volume was made from ("" if none): what
    its host runs it as (a root filesystem tree, a VM)."""
    return next(
        (e.get("image_id") or "" for e in entries(devices) if e.get("boot_index") == 0), ""
    )


def _next_device(used: set[str], wanted: str | None) -> str:
    """The requested device when it is free and a virtio name, else the first free /dev/vdX
    (the names a virtio guest sees, as Nova's libvirt driver picks them)."""
    if wanted is not None and not DEVICE_PATTERN.match(wanted):
        raise errors.Invalid(f"The supplied device path ({wanted}) is invalid.")
    if wanted is not None and wanted in used:
        raise errors.Conflict(f"The supplied device path ({wanted}) is in use.")
    if wanted is not None and wanted.startswith("/dev/vd"):
        return wanted
    for letter in string.ascii_lowercase[1:]:
        candidate = f"/dev/vd{letter}"
        if candidate not in used:
            return candidate
    raise errors.Conflict("No free disk device names for prefix 'vd'")


@dataclass(frozen=True, slots=True)
class AttachRequest:
    volume_id: str
    device: str | None = None
    tag: str | None = None
    delete_on_termination: bool = False
    multiattach_allowed: bool = True  # False before compute 2.60


def connect(
    ctx: RequestContext, server_id: str, host: str, request: AttachRequest,
    used_devices: set[str],
) -> dict[str, Any]:  # fmt: skip
    """Reserve the volume for the server and connect it for `host`: the new entry of the
    server's volumes (`attaching`). On failure the reservation is given back."""
    require_enabled(ctx.runtime)
    volume = volume_service.get_volume(ctx, request.volume_id).row
    if volume.multiattach and not request.multiattach_allowed:
        raise errors.Invalid(
            "Multiattach volumes are only supported starting with compute API version 2.60."
        )
    device = _next_device(used_devices, request.device)
    try:
        attachment = volume_service.create_attachment(ctx, volume.id, server_id, None, "rw")
    except errors.Invalid as exc:
        raise errors.Invalid(f"Invalid input received: {exc}") from exc
    try:
        connector = {"host": host, "mountpoint": device, "multipath": False, "platform": "x86_64"}
        attachment = volume_service.update_attachment(ctx, attachment.id, connector)
        data = volume_service.attachment_connection(ctx, attachment).get("data", {})
    except errors.PocketstackError:
        volume_service.delete_attachment(ctx, attachment.id)
        raise
    return {
        "id": str(uuidlib.uuid4()), "volume_id": volume.id, "attachment_id": attachment.id,
        "device": device, "tag": request.tag,
        "delete_on_termination": request.delete_on_termination, "state": "attaching",
        "path": data.get("device_path"), "read_only": data.get("access_mode") == "ro",
        "boot_index": None,
    }  # fmt: skip


@dataclass(frozen=True, slots=True)
class BootVolume:
    """One entry of a boot's block_device_mapping_v2 with destination_type volume."""

    source_type: str  # image, volume, snapshot, blank
    uuid: str | None
    boot_index: int | None
    volume_size: int | None = None
    delete_on_termination: bool = False
    device_name: str | None = None
    volume_type: str | None = None
    tag: str | None = None


BUILD_VOLUME_TIMEOUT_S = 120.0  # Nova's block_device_allocate_retries x interval, shorter


def boot_volume(volumes: Sequence[BootVolume]) -> BootVolume | None:
    return next((v for v in volumes if v.boot_index == 0), None)


def check_boot_volumes(ctx: RequestContext, volumes: Sequence[BootVolume]) -> str | None:
    """Refuse, before anything is made, volumes a boot cannot use; the image the root
    volume comes from (None: it has none, or there is no root volume)."""
    require_enabled(ctx.runtime)
    image_id = None
    for wanted in volumes:
        if wanted.source_type == "volume":
            volume = volume_service.get_volume(ctx, wanted.uuid or "").row
            if volume.status != "available":
                raise errors.Invalid(
                    f"Invalid volume: Volume {volume.id} status must be available, but the "
                    f"current status is {volume.status}."
                )
            if wanted.boot_index == 0:
                image_id = volume.image_id
        elif wanted.source_type == "image" and wanted.boot_index == 0:
            image_id = wanted.uuid
    return image_id


def prepare_boot(
    ctx: RequestContext, server_id: str, host: str, volumes: Sequence[BootVolume]
) -> list[dict[str, Any]]:
    """Make the volumes a boot asks for (from its image, a snapshot, or blank), wait for
    them, and reserve and connect each for `host`: the server's first volume entries, its
    root at /dev/vda. On failure what was made is undone."""
    made: list[dict[str, Any]] = []
    used = {ROOT_DEVICE}
    try:
        for wanted in sorted(volumes, key=lambda v: v.boot_index != 0):
            volume_id, created = wanted.uuid or "", wanted.source_type != "volume"
            if created:
                volume_id = _build_volume(ctx, wanted)
            root = wanted.boot_index == 0
            request = AttachRequest(volume_id, ROOT_DEVICE if root else wanted.device_name,
                                    wanted.tag, wanted.delete_on_termination)  # fmt: skip
            entry = connect(ctx, server_id, host, request, used - {ROOT_DEVICE} if root else used)
            image_id = volume_service.get_volume(ctx, volume_id).row.image_id
            entry.update(boot_index=wanted.boot_index, image_id=image_id, created=created)
            used.add(entry["device"])
            made.append(entry)
    except errors.PocketstackError:
        abandon(ctx, made)
        raise
    return made


def _build_volume(ctx: RequestContext, wanted: BootVolume) -> str:
    if not wanted.volume_size and wanted.source_type in ("image", "blank"):
        raise errors.Invalid(
            "Images with destination_type 'volume' need to have a non-zero size specified"
            if wanted.source_type == "image" else "Blank volumes need a volume_size"
        )  # fmt: skip
    spec = volume_service.VolumeSpec(
        size=wanted.volume_size, name="", volume_type=wanted.volume_type,
        image_id=wanted.uuid if wanted.source_type == "image" else None,
        snapshot_id=wanted.uuid if wanted.source_type == "snapshot" else None,
    )  # fmt: skip
    volume_id = volume_service.create_volume(ctx, spec).row.id
    deadline = time.monotonic() + BUILD_VOLUME_TIMEOUT_S
    while True:
        row = volume_service.get_volume(ctx, volume_id).row
        if row.status == "available":
            return volume_id
        if row.status == "error" or time.monotonic() > deadline:
            with contextlib.suppress(errors.PocketstackError):
                volume_service.delete_volume(ctx, volume_id, cascade=True, force=True)
            raise errors.Invalid(
                f"Volume {volume_id} for the server could not be made: "
                f"{row.fail_reason or f'still {row.status}'}"
            )
        time.sleep(0.05)


def abandon(ctx: RequestContext, made: Sequence[dict[str, Any]]) -> None:
    """Undo `prepare_boot`: attachments given back, the volumes it made deleted."""
    for entry in made:
        with contextlib.suppress(errors.PocketstackError):
            give_back(ctx, entry)
            if entry.get("created"):
                volume_service.delete_volume(ctx, entry["volume_id"], cascade=True, force=True)


def give_back(ctx: RequestContext, entry: dict[str, Any]) -> None:
    """Undo `connect` when the server could not take the volume after all."""
    volume_service.delete_attachment(ctx, entry["attachment_id"])


def begin_detach(ctx: RequestContext, entry: dict[str, Any]) -> None:
    require_enabled(ctx.runtime)
    if entry.get("boot_index") == 0:
        raise errors.Invalid("Cannot detach a root device volume")
    if entry["state"] != "attached":
        raise errors.Conflict(
            f"Volume {entry['volume_id']} is {entry['state']}; wait until it is attached."
        )
    try:
        volume_service.legacy_status(ctx, entry["volume_id"], "os-begin_detaching")
    except errors.Invalid as exc:
        raise errors.Invalid(f"Invalid input received: {exc}") from exc


FollowUp = Callable[[RequestContext], None]


def settle(
    devices: dict[str, Any], disk_faults: Sequence[tuple[str, str]], deleted: bool
) -> tuple[bool, list[FollowUp]]:
    """Bring the server's volumes up to what its host just did: connected volumes become
    `attached`, disconnected ones go; a volume the host failed on is rolled back. Changes
    `devices` in place; returns whether the spec moved (a rollback the host must see
    again) and what to tell the block storage service once the server's row is written."""
    failed = dict(disk_faults)
    kept: list[dict[str, Any]] = []
    follow: list[FollowUp] = []
    moved = False
    for entry in entries(devices):
        attachment_id, volume_id = entry["attachment_id"], entry["volume_id"]
        if deleted:
            follow.append(_deleting(attachment_id, volume_id, entry["delete_on_termination"]))
        elif entry["state"] == "attaching" and volume_id in failed:
            follow.append(_detached(attachment_id))
            moved = True
        elif entry["state"] == "attaching":
            kept.append({**entry, "state": "attached"})
            follow.append(_completed(attachment_id))
        elif entry["state"] == "detaching" and volume_id in failed:
            kept.append({**entry, "state": "attached"})
            follow.append(roll_back_detach(volume_id))
            moved = True
        elif entry["state"] == "detaching":
            follow.append(_detached(attachment_id))
        else:
            kept.append(entry)
    devices["volumes"] = kept
    return moved, follow


def _completed(attachment_id: str) -> FollowUp:
    return lambda ctx: volume_service.complete_attachment(ctx, attachment_id)


def _detached(attachment_id: str) -> FollowUp:
    def detach(ctx: RequestContext) -> None:
        # Gone already: a report handled twice, or the volume forced away.
        with contextlib.suppress(errors.NotFound):
            volume_service.delete_attachment(ctx, attachment_id)

    return detach


def roll_back_detach(volume_id: str) -> FollowUp:
    """The volume is in-use again: its detach did not happen."""
    return lambda ctx: volume_service.legacy_status(ctx, volume_id, "os-roll_detaching")


def _deleting(attachment_id: str, volume_id: str, delete_volume: bool) -> FollowUp:
    """A deleted server lets go of its volumes, and deletes those it was asked to."""

    def let_go(ctx: RequestContext) -> None:
        _detached(attachment_id)(ctx)
        if delete_volume:
            with contextlib.suppress(errors.NotFound):
                volume_service.delete_volume(ctx, volume_id, cascade=True, force=False)

    return let_go


def run_follow_ups(runtime: Runtime, project_id: str, follow: Sequence[FollowUp]) -> None:
    """Tell the block storage service, as the control plane acting in the server's project."""
    if not follow or not enabled(runtime):
        return
    ctx = runtime.service_context(project_id)
    for step in follow:
        step(ctx)
