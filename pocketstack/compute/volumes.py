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
        drivers.Disk(entry["volume_id"], entry["device"], entry.get("path"), entry["read_only"])
        for entry in entries(devices)
        if entry["state"] in CONNECTED
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
