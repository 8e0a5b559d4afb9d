"""Servers: boot, list across cells, change, delete, and what hosts report back.

A request changes a server's spec (`desired_state`, `boot_serial`, flavor,
image) and bumps its `generation`, with Nova's vm_state/task_state showing
the change in flight; the host's agent makes it so and reports
(`on_report`), which settles vm_state and clears task_state. Servers live in
their cell's database and are found through the API database's instance
mapping; a server that could not be scheduled lives in cell0 as ERROR with
the scheduler's reason as its fault.
"""

from __future__ import annotations

import contextlib
import dataclasses
import heapq
import json
import logging
import re
import threading
import uuid as uuidlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Select, and_, delete, func, select, update
from sqlalchemy.orm import Session

from pocketstack.compute import agent as agent_mod
from pocketstack.compute import (
    aggregates,
    cell_models,
    cells,
    flavors,
    hosts,
    keypairs,
    models,
    networking,
    quotas,
    scheduler,
    server_groups,
)
from pocketstack.compute import volumes as compute_volumes
from pocketstack.compute.drivers import NOSTATE, DriverError
from pocketstack.core import db as db_mod
from pocketstack.core import errors, pagination
from pocketstack.core.context import RequestContext
from pocketstack.core.runtime import Runtime
from pocketstack.image import service as image_service
from pocketstack.placement import service as placement_service

LOG = logging.getLogger(__name__)
DEFAULT_AZ = aggregates.DEFAULT_AZ
_T = cell_models.Instance
SORT_KEYS = frozenset({
    "access_ip_v4", "access_ip_v6", "auto_disk_config", "availability_zone", "config_drive",
    "created_at", "display_description", "display_name", "host", "hostname", "image_ref",
    "instance_type_id", "kernel_id", "key_name", "launch_index", "launched_at", "locked",
    "locked_by", "node", "power_state", "progress", "project_id", "ramdisk_id",
    "root_device_name", "task_state", "terminated_at", "updated_at", "user_id", "uuid",
    "vm_state",
})  # fmt: skip
# Nova's sort keys that map to a column of ours under another name; the rest that we do not
# keep (kernel_id, ...) sort as the tie-breakers alone.
_SORT_COLUMNS = {
    "display_name": "name",
    "display_description": "description",
    "instance_type_id": "flavor_id",
    "auto_disk_config": "config_drive",
    "launch_index": "created_at",
    "kernel_id": "uuid",
    "ramdisk_id": "uuid",
    "root_device_name": "uuid",
}


def now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


# Views -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Fault:
    code: int
    message: str
    details: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class ServerView:
    uuid: str
    name: str
    hostname: str
    description: str | None
    project_id: str
    user_id: str
    host: str | None
    node: str | None
    availability_zone: str | None
    pinned_availability_zone: str | None
    flavor: dict[str, Any]
    image_ref: str
    key_name: str | None
    key_data: str | None
    user_data: str | None
    config_drive: str
    access_ip_v4: str | None
    access_ip_v6: str | None
    locked: bool
    locked_reason: str | None
    vm_state: str
    task_state: str | None
    power_state: int
    progress: int
    launched_at: datetime | None
    terminated_at: datetime | None
    deleted: bool
    created_at: datetime
    updated_at: datetime
    cell_uuid: str
    metadata: dict[str, str] = field(default_factory=dict)
    tags: list[str] = field(default_factory=list)
    fault: Fault | None = None
    devices: dict[str, Any] = field(default_factory=dict)
    addresses: dict[str, list[Any]] = field(default_factory=dict)
    # Names of its ports' security groups (None: the server has no ports).
    security_groups: list[str] | None = None

    @property
    def status(self) -> str:
        return status_of(self.vm_state, self.task_state)


_STATUS_BY_VM_STATE = {
    "active": "ACTIVE",
    "building": "BUILD",
    "stopped": "SHUTOFF",
    "paused": "PAUSED",
    "suspended": "SUSPENDED",
    "rescued": "RESCUE",
    "resized": "VERIFY_RESIZE",
    "error": "ERROR",
    "deleted": "DELETED",
    "soft-delete": "SOFT_DELETED",
    "shelved": "SHELVED",
    "shelved_offloaded": "SHELVED_OFFLOADED",
}
_STATUS_BY_TASK = {
    "rebooting": "REBOOT",
    "reboot_pending": "REBOOT",
    "reboot_started": "REBOOT",
    "rebooting_hard": "HARD_REBOOT",
    "reboot_pending_hard": "HARD_REBOOT",
    "reboot_started_hard": "HARD_REBOOT",
    "rebuilding": "REBUILD",
    "rebuild_spawning": "REBUILD",
    "resize_prep": "RESIZE",
    "resize_migrating": "RESIZE",
    "resize_finish": "RESIZE",
    "resize_reverting": "REVERT_RESIZE",
    "updating_password": "PASSWORD",
    "migrating": "MIGRATING",
}


def status_of(vm_state: str, task_state: str | None) -> str:
    """The API's `status`, from vm_state and, for some tasks in flight, task_state."""
    if task_state in _STATUS_BY_TASK and vm_state in ("active", "stopped", "resized"):
        return _STATUS_BY_TASK[task_state]
    return _STATUS_BY_VM_STATE.get(vm_state, "UNKNOWN")


def _view(
    row: cell_models.Instance,
    cell_uuid: str,
    metadata: dict[str, str],
    tags: list[str],
    fault: Fault | None,
) -> ServerView:
    return ServerView(
        uuid=row.uuid, name=row.name, hostname=row.hostname, description=row.description,
        project_id=row.project_id, user_id=row.user_id, host=row.host, node=row.node,
        availability_zone=row.availability_zone,
        pinned_availability_zone=row.pinned_availability_zone, flavor=json.loads(row.flavor),
        image_ref=row.image_ref, key_name=row.key_name, key_data=row.key_data,
        user_data=row.user_data, config_drive=row.config_drive,
        access_ip_v4=row.access_ip_v4, access_ip_v6=row.access_ip_v6, locked=row.locked,
        locked_reason=row.locked_reason, vm_state=row.vm_state, task_state=row.task_state,
        power_state=row.power_state, progress=row.progress, launched_at=row.launched_at,
        terminated_at=row.terminated_at, deleted=row.deleted, created_at=row.created_at,
        updated_at=row.updated_at, cell_uuid=cell_uuid, metadata=metadata, tags=tags,
        fault=fault, devices=json.loads(row.devices or "{}"),
    )  # fmt: skip


def _views(
    session: Session, rows: Sequence[cell_models.Instance], cell_uuid: str, runtime: Runtime
) -> list[ServerView]:
    uuids = [r.uuid for r in rows]
    with_ports = [r for r in rows if r.devices and '"ports"' in r.devices]
    info = networking.network_info(
        runtime, with_ports[0].project_id if with_ports else "", [r.uuid for r in with_ports]
    )
    metadata: dict[str, dict[str, str]] = {u: {} for u in uuids}
    tags: dict[str, list[str]] = {u: [] for u in uuids}
    faults: dict[str, Fault] = {}
    if uuids:
        for m in session.scalars(
            select(cell_models.InstanceMetadata).where(
                cell_models.InstanceMetadata.instance_uuid.in_(uuids)
            )
        ):
            metadata[m.instance_uuid][m.key] = m.value
        for t in session.scalars(
            select(cell_models.InstanceTag)
            .where(cell_models.InstanceTag.instance_uuid.in_(uuids))
            .order_by(cell_models.InstanceTag.tag)
        ):
            tags[t.instance_uuid].append(t.tag)
        errored = [r.uuid for r in rows if r.vm_state == "error"]
        if errored:
            for f in session.scalars(
                select(cell_models.InstanceFault)
                .where(cell_models.InstanceFault.instance_uuid.in_(errored))
                .order_by(cell_models.InstanceFault.id)
            ):
                faults[f.instance_uuid] = Fault(f.code, f.message, f.details, f.created_at)
    views = [_view(r, cell_uuid, metadata[r.uuid], tags[r.uuid], faults.get(r.uuid)) for r in rows]
    return [
        dataclasses.replace(
            v, addresses=info[v.uuid].addresses, security_groups=info[v.uuid].security_groups
        )
        if v.uuid in info
        else v
        for v in views
    ]


# Finding a server ----------------------------------------------------------------------


def _mapping(ctx: RequestContext, server_id: str) -> models.InstanceMapping:
    with ctx.db.read() as session:
        mapping = session.get(models.InstanceMapping, server_id)
    if mapping is None:
        raise errors.NotFound(f"Instance {server_id} could not be found.")
    return mapping


def _cell_db(ctx: RequestContext, cell_uuid: str) -> db_mod.Database:
    return cells.database_of(ctx.runtime, cell_uuid)


def get_server(ctx: RequestContext, server_id: str, *, deleted_ok: bool = False) -> ServerView:
    mapping = _mapping(ctx, server_id)
    with _cell_db(ctx, mapping.cell_uuid).read() as session:
        row = session.get(_T, server_id)
        if row is None or (row.deleted and not deleted_ok):
            raise errors.NotFound(f"Instance {server_id} could not be found.")
        return _views(session, [row], mapping.cell_uuid, ctx.runtime)[0]


@contextlib.contextmanager
def _changing(ctx: RequestContext, server_id: str) -> Iterator[tuple[Session, _T, str]]:
    """A write transaction on one live server's row, in its cell, the row locked (on
    PostgreSQL and MariaDB; SQLite has one writer anyway), so two requests acting on one
    server at once see each other's task state rather than both starting."""
    mapping = _mapping(ctx, server_id)
    with _cell_db(ctx, mapping.cell_uuid).write() as session:
        row = session.get(_T, server_id, with_for_update=True)
        if row is None or row.deleted:
            raise errors.NotFound(f"Instance {server_id} could not be found.")
        yield session, row, mapping.cell_uuid


def _record_action(
    session: Session, ctx: RequestContext, server_id: str, action: str, event: str
) -> None:
    moment = now()
    record = cell_models.InstanceAction(
        instance_uuid=server_id, request_id=ctx.request_id, action=action,
        project_id=ctx.project_id, user_id=ctx.user_id, start_time=moment, updated_at=moment,
    )  # fmt: skip
    session.add(record)
    session.flush()
    session.add(
        cell_models.InstanceActionEvent(action_id=record.id, event=event, start_time=moment)
    )


def _finish_action(session: Session, server_id: str, fault: str | None) -> None:
    """Settle the newest action of a server with what its host reported."""
    action = session.scalar(
        select(cell_models.InstanceAction)
        .where(cell_models.InstanceAction.instance_uuid == server_id)
        .order_by(cell_models.InstanceAction.id.desc())
        .limit(1)
    )
    if action is None or action.finish_time is not None:
        return
    moment = now()
    action.finish_time = action.updated_at = moment
    if fault is not None:
        action.message = "Error"
    session.execute(
        update(cell_models.InstanceActionEvent)
        .where(
            cell_models.InstanceActionEvent.action_id == action.id,
            cell_models.InstanceActionEvent.finish_time.is_(None),
        )
        .values(
            finish_time=moment,
            result="Error" if fault else "Success",
            traceback=fault,
        )
    )


# Booting ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BootRequest:
    name: str
    flavor_ref: str
    image_ref: str
    min_count: int = 1
    max_count: int = 1
    key_name: str | None = None
    user_data: str | None = None
    metadata: Mapping[str, str] = field(default_factory=dict)
    availability_zone: str | None = None
    description: str | None = None
    access_ip_v4: str | None = None
    access_ip_v6: str | None = None
    tags: Sequence[str] = ()
    config_drive: bool = False
    hostname: str | None = None
    group: str | None = None  # the `group` scheduler hint: a server group's uuid
    # "auto", "none", the networks/ports asked for, or None (not given, before 2.37)
    networks: str | Sequence[networking.NetworkRequest] | None = None
    # Names (or ids) of the security groups its ports get; None: the project's default.
    security_groups: Sequence[str] | None = None
    # block_device_mapping_v2 entries onto volumes; one with boot_index 0 is the root, and
    # the server then has no image of its own (image_ref "").
    volumes: Sequence[compute_volumes.BootVolume] = ()


def _flavor_copy(flavor: flavors.FlavorView) -> str:
    """The flavor as the server keeps it (Nova's embedded flavor)."""
    return json.dumps(
        {
            "id": flavor.flavorid,
            "name": flavor.name,
            "vcpus": flavor.vcpus,
            "ram": flavor.memory_mb,
            "disk": flavor.root_gb,
            "ephemeral": flavor.ephemeral_gb,
            "swap": flavor.swap,
            "extra_specs": flavor.extra_specs,
        }
    )


def _hostname(name: str) -> str:
    """A DNS-safe hostname from a display name, as Nova sanitizes it."""
    cleaned = re.sub(r"[^\w.-]+", "", name.replace(" ", "-").replace("_", "-")).strip(".-")
    return (cleaned.lower()[:63].rstrip(".-")) or "server"


def _image_for_boot(ctx: RequestContext, image_ref: str, flavor: flavors.FlavorView) -> Any:
    try:
        image = image_service.get_image(ctx, image_ref)
    except errors.NotFound:
        raise errors.Invalid(f"Image {image_ref} could not be found.") from None
    if image.row.status != "active":
        raise errors.Invalid(f"Image {image_ref} is not active.")
    if flavor.memory_mb < (image.row.min_ram or 0):
        raise errors.Invalid("Flavor's memory is too small for requested image.")
    if flavor.root_gb and flavor.root_gb < (image.row.min_disk or 0):
        raise errors.Invalid("Flavor's disk is too small for requested image.")
    return image


def _check_quota(
    ctx: RequestContext, project_id: str, flavor: flavors.FlavorView, count: int
) -> Mapping[str, int]:
    """Refuse a boot that would take the project past its quotas (403, as Nova); the limits,
    for the recheck once the boot counted itself in."""
    wanted = {"instances": count, "cores": flavor.vcpus * count, "ram": flavor.memory_mb * count}
    return quotas.check(ctx, project_id, wanted)


def create_servers(ctx: RequestContext, request: BootRequest) -> list[str]:
    """Boot `max_count` servers (at least `min_count` must be possible), scheduled now and
    built by their hosts' agents; the ones that find no host land in cell0 as ERROR.
    Returns their ids."""
    project_id, user_id = ctx.project_id or "", ctx.user_id or ""
    flavor = flavors.find_for_boot(ctx, request.flavor_ref)
    root_image = request.image_ref
    if request.volumes:
        found = compute_volumes.check_boot_volumes(ctx, request.volumes)
        if compute_volumes.boot_volume(request.volumes) is not None:
            root_image = found or ""
    image_properties = _image_for_boot(ctx, root_image, flavor).properties if root_image else {}
    key_data = None
    if request.key_name is not None:
        try:
            key_data = keypairs.get_keypair(ctx, user_id, request.key_name).public_key
        except errors.NotFound:
            raise errors.Invalid("Invalid key_name provided.") from None
    if request.availability_zone and request.availability_zone not in _available_zones(ctx):
        raise errors.Invalid(
            f"The requested availability zone is not available: {request.availability_zone}"
        )
    limits = _check_quota(ctx, project_id, flavor, request.max_count)
    _check_metadata_quota(ctx, project_id, len(request.metadata))
    if request.group is not None:
        server_groups.for_boot(ctx, request.group, user_id, request.max_count)
    image_properties = dict(image_properties)
    wanted_networks = networking.resolve(ctx, request.networks)
    groups = networking.group_ids(ctx, request.security_groups)
    if request.max_count > 1 and any(n.port_id or n.fixed_ip for n in wanted_networks):
        raise errors.Invalid(
            "Unable to launch multiple instances with a single configured port ID or fixed IP. "
            "Please launch your instance one by one with different ports or IPs."
        )
    created = []
    for index in range(request.max_count):
        name = request.name if request.max_count == 1 else f"{request.name}-{index + 1}"
        created.append(
            _boot_one(
                ctx, request, name, flavor, image_properties, key_data, project_id, user_id,
                limits, wanted_networks, groups,
            )
        )  # fmt: skip
    hosts.wake_agents(ctx.runtime, settle=created)
    return created


def _available_zones(ctx: RequestContext) -> set[str]:
    """The zones with an enabled compute service, as Nova checks a requested one."""
    usable = {state.host for state in hosts.host_states(ctx.runtime).values() if state.usable}
    by_host = aggregates.zones_of_hosts(ctx)
    return {by_host.get(host, DEFAULT_AZ) for host in usable}


def _check_metadata_quota(ctx: RequestContext, project_id: str, count: int) -> None:
    if not count:
        return
    limit = quotas.limits(ctx, project_id)["metadata_items"]
    if 0 <= limit < count:
        raise errors.OverQuota(f"Maximum number of metadata items exceeds {limit}")


def _boot_one(
    ctx: RequestContext,
    request: BootRequest,
    name: str,
    flavor: flavors.FlavorView,
    image_properties: Mapping[str, str],
    key_data: str | None,
    project_id: str,
    user_id: str,
    limits: Mapping[str, int],
    wanted_networks: Sequence[networking.NetworkRequest] = (),
    groups: Sequence[str] | None = None,
) -> str:
    server_id = str(uuidlib.uuid4())
    fault = None
    # Ports first: a missing network or a full subnet answers this request, not the server.
    ports = networking.allocate(
        ctx, server_id, project_id, wanted_networks, groups, request.hostname or _hostname(name)
    )
    try:
        selection: scheduler.Selection | None = scheduler.select_destination(
            ctx,
            scheduler.Request(
                server_id, project_id, user_id, flavor, image_properties,
                zone=request.availability_zone or None,
                group=server_groups.placement(ctx, request.group) if request.group else None,
                volume_backed=compute_volumes.boot_volume(request.volumes) is not None,
            ),
        )  # fmt: skip
    except scheduler.NoValidHost as exc:
        selection, fault = None, exc.message
        if request.group is not None:  # a member all the same, as in Nova
            server_groups.join(ctx, request.group, server_id, user_id, None)
    cell_uuid = selection.cell_uuid if selection else cells.CELL0_UUID
    if selection is not None:
        networking.bind(ctx.runtime, project_id, ports, selection.host)
    else:
        networking.release(ctx.runtime, project_id, ports)
        ports = []
    devices = _devices(selection, image_properties)
    if ports:
        devices["ports"] = ports
    try:
        made = (
            compute_volumes.prepare_boot(ctx, server_id, selection.host, request.volumes)
            if selection is not None and request.volumes else []
        )  # fmt: skip
    except errors.PocketstackError:
        _release(ctx.runtime, server_id)
        networking.release(ctx.runtime, project_id, ports)
        raise
    if made:
        devices["volumes"] = made
    moment = now()
    row = _T(
        uuid=server_id, name=name, hostname=request.hostname or _hostname(name),
        description=request.description, project_id=project_id, user_id=user_id,
        host=selection.host if selection else None,
        node=selection.host if selection else None,
        availability_zone=(
            aggregates.zone_of_host(ctx, selection.host)
            if selection
            else (request.availability_zone or None)
        ),
        pinned_availability_zone=request.availability_zone or None,
        flavor=_flavor_copy(flavor), flavor_id=flavor.flavorid, image_ref=request.image_ref,
        key_name=request.key_name,
        key_data=key_data, user_data=request.user_data,
        config_drive="True" if request.config_drive else "",
        access_ip_v4=request.access_ip_v4, access_ip_v6=request.access_ip_v6, locked=False,
        vm_state="building" if selection else "error",
        task_state="spawning" if selection else None, power_state=NOSTATE, progress=0,
        desired_state="active", boot_serial=0,
        devices=json.dumps(devices),
        generation=1, observed_generation=0 if selection else 1, deleted=False,
        created_at=moment, updated_at=moment,
    )  # fmt: skip
    # The mapping first: a server row is never without one (a crash in between leaves a
    # mapping without a row, which reads as 404 and `heal` removes).
    mapping = models.InstanceMapping(
        instance_uuid=server_id, cell_uuid=cell_uuid, project_id=project_id, user_id=user_id,
        queued_for_delete=False, created_at=moment,
    )  # fmt: skip
    try:
        with ctx.db.write() as session:
            session.add(mapping)
        quotas.recheck(ctx, project_id, ("instances", "cores", "ram"), limits)
        with _cell_db(ctx, cell_uuid).write() as session:
            session.add(row)
            session.flush()
            for key, value in request.metadata.items():
                session.add(
                    cell_models.InstanceMetadata(instance_uuid=server_id, key=key, value=value)
                )
            for tag in dict.fromkeys(request.tags):
                session.add(cell_models.InstanceTag(instance_uuid=server_id, tag=tag))
            _record_action(session, ctx, server_id, "create", "compute__do_build_and_run_instance")
            if fault is not None:
                _add_fault(session, server_id, 500, fault, None)
                _finish_action(session, server_id, fault)
    except Exception:
        with ctx.db.write() as session:
            session.execute(
                delete(models.InstanceMapping).where(
                    models.InstanceMapping.instance_uuid == server_id
                )
            )
        if selection is not None:
            _release(ctx.runtime, server_id)
        networking.release(ctx.runtime, project_id, ports)
        compute_volumes.abandon(ctx, made)
        if request.group is not None:
            server_groups.leave(ctx, server_id)
        raise
    return server_id


def _devices(
    selection: scheduler.Selection | None, image_properties: Mapping[str, str]
) -> dict[str, Any]:
    """What the server got besides capacity (the GPU child provider of a VGPU), and the
    image's trait wishes a reschedule asks for again."""
    devices: dict[str, Any] = {
        "image_traits": {k: v for k, v in image_properties.items() if k.startswith("trait:")}
    }
    if selection is not None and selection.gpu_provider is not None:
        devices["vgpu_provider"] = selection.gpu_provider
    return devices


def _add_fault(session: Session, server_id: str, code: int, message: str, host: str | None) -> None:
    session.add(
        cell_models.InstanceFault(
            instance_uuid=server_id, code=code, message=message[:255], details="",
            host=host, created_at=now(),
        )
    )  # fmt: skip


def _release(runtime: Runtime, server_id: str) -> None:
    """Give back what a server holds in placement (nothing to give back is fine)."""
    with contextlib.suppress(errors.NotFound):
        placement_service.delete_allocations(runtime.context(), server_id)


# What hosts report -----------------------------------------------------------------------


MAX_BUILD_ATTEMPTS = 3


def on_report(runtime: Runtime, report: agent_mod.ServerReport) -> None:
    """Settle a server's state with what its host did for spec `report.generation`; a
    report about an older spec than the current one changes nothing. A first build that
    failed goes to another host of the cell (MAX_BUILD_ATTEMPTS hosts in all)."""
    cell = hosts.cell_of_host(runtime, report.host)
    released = False
    ports: list[dict[str, Any]] = []
    owner = ""
    volume_follow_ups: list[compute_volumes.FollowUp] = []
    if report.power_lost:
        _stopped_by_itself(runtime, cell, report)
        return
    if report.fault is not None and _reschedule(runtime, cell, report):
        return
    with cells.database(runtime, cell).write() as session:
        row = session.get(_T, report.uuid, with_for_update=True)
        if row is None or row.generation != report.generation or row.deleted:
            return
        settled = row.observed_generation == report.generation
        if settled and report.fault is None and not report.disk_faults:
            # A resync found the guest's power moved (it died, say): only that changes, so
            # what an admin set (os-resetState) and `updated` (changes-since) stay.
            row.power_state = report.power_state
            return
        moment = now()
        row.observed_generation = report.generation
        row.power_state = report.power_state
        row.updated_at = moment
        row.task_state = None
        if report.fault is not None:
            row.vm_state = "error"
            _add_fault(session, row.uuid, 500, report.fault, report.host)
        else:
            devices = json.loads(row.devices or "{}")
            deleted = report.vm_state == "deleted"
            moved, volume_follow_ups = compute_volumes.settle(devices, report.disk_faults, deleted)
            row.devices = json.dumps(devices)
            owner = row.project_id
            if moved:
                row.generation += 1  # the host looks again at the volumes rolled back
            if deleted:
                row.vm_state, row.deleted = "deleted", True
                row.deleted_at = row.terminated_at = moment
                released = True
                ports = devices.get("ports", [])
            else:
                row.vm_state = report.vm_state
                row.progress = 100
                row.launched_at = row.launched_at or moment
        row.reboot_type = None
        disk_fault = "; ".join(f"volume {v}: {why}" for v, why in report.disk_faults)
        _finish_action(session, row.uuid, report.fault or disk_fault or None)
    compute_volumes.run_follow_ups(runtime, owner, volume_follow_ups)
    if released:
        networking.release(runtime, owner, ports)
        _forget_deleted(runtime, report.uuid)


def _stopped_by_itself(runtime: Runtime, cell: cells.Cell, report: agent_mod.ServerReport) -> None:
    """A guest went down on its own: the server is stopped, as Nova's power-state sync
    stops it, with a `stop` action to show when. Its host already matches the new spec."""
    with cells.database(runtime, cell).write() as session:
        row = session.get(_T, report.uuid, with_for_update=True)
        if row is None or row.deleted or row.generation != report.generation:
            return
        row.generation = row.observed_generation = row.generation + 1
        row.desired_state = row.vm_state = "stopped"
        row.power_state, row.task_state, row.updated_at = report.power_state, None, now()
        _record_action(session, runtime.context(), row.uuid, "stop", "compute_stop_instance")
        _finish_action(session, row.uuid, None)


def _forget_deleted(runtime: Runtime, server_id: str) -> None:
    """What a deleted server still held: its claim, its quota count, its group place (again
    if a crash cut the delete short: each step is idempotent)."""
    _release(runtime, server_id)
    with runtime.db.write() as session:
        session.execute(
            update(models.InstanceMapping)
            .where(models.InstanceMapping.instance_uuid == server_id)
            .values(queued_for_delete=True)
        )
    server_groups.leave(runtime.context(), server_id)


def _reschedule(runtime: Runtime, cell: cells.Cell, report: agent_mod.ServerReport) -> bool:
    """Move a server whose build failed on `report.host` to another host; False when it was
    not building, or no attempt is left (the caller then records the failure)."""
    with cells.database(runtime, cell).read() as session:
        row = session.get(_T, report.uuid)
        if row is None or row.generation != report.generation or row.vm_state != "building":
            return False
        devices = json.loads(row.devices or "{}")
        tried = [*devices.get("tried_hosts", []), report.host]
        request = scheduler.Request(
            row.uuid, row.project_id, row.user_id,
            flavors.FlavorView(**_flavor_fields(json.loads(row.flavor))),
            devices.get("image_traits", {}), excluded_hosts=frozenset(tried),
            cell_uuid=cell.uuid, volume_backed=compute_volumes.is_volume_backed(devices),
        )  # fmt: skip
    _release(runtime, report.uuid)
    if len(tried) >= MAX_BUILD_ATTEMPTS:
        reason = (
            f"Exceeded maximum number of retries. Exhausted all hosts available for retrying "
            f"build failures for instance {report.uuid}. Last failure: {report.fault}"
        )
        return _fail_build(runtime, cell, report, reason)
    try:
        selection = scheduler.select_destination(runtime.context(), request)
    except scheduler.NoValidHost as exc:
        return _fail_build(runtime, cell, report, f"{exc.message} Last failure: {report.fault}")
    with cells.database(runtime, cell).write() as session:
        row = session.get(_T, report.uuid, with_for_update=True)
        if row is None or row.generation != report.generation:
            _release(runtime, report.uuid)
            return True
        devices.update(tried_hosts=tried)
        if selection.gpu_provider:
            devices["vgpu_provider"] = selection.gpu_provider
        row.host = row.node = selection.host
        row.devices = json.dumps(devices)
        row.generation += 1
        row.updated_at = now()
    hosts.wake_agents(runtime)
    return True


def _fail_build(
    runtime: Runtime, cell: cells.Cell, report: agent_mod.ServerReport, reason: str
) -> bool:
    with cells.database(runtime, cell).write() as session:
        row = session.get(_T, report.uuid, with_for_update=True)
        if row is None or row.generation != report.generation:
            return True
        row.vm_state, row.task_state = "error", None
        # No host any more (as Nova): no agent builds it again without a claim.
        row.host = row.node = None
        row.observed_generation = report.generation
        row.power_state = report.power_state
        row.updated_at = now()
        message = (
            reason if reason.startswith("No valid host") else f"No valid host was found. {reason}"
        )
        _add_fault(session, row.uuid, 500, message, report.host)
        _finish_action(session, row.uuid, reason)
    return True


# Listing across cells ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ServerQuery:
    project_id: str | None  # None: every project (all_tenants)
    name: str | None = None
    status: str | None = None
    image: str | None = None
    flavor: str | None = None
    host: str | None = None
    changes_since: datetime | None = None
    changes_before: datetime | None = None
    tags: Sequence[str] = ()
    tags_any: Sequence[str] = ()
    not_tags: Sequence[str] = ()
    not_tags_any: Sequence[str] = ()
    deleted: bool = False
    locked: bool | None = None
    sort: Sequence[pagination.SortKey] = ()
    marker: str | None = None
    limit: int | None = None


_VM_STATES_OF_STATUS = {
    "ACTIVE": ["active"], "BUILD": ["building"], "SHUTOFF": ["stopped"],
    "PAUSED": ["paused"], "SUSPENDED": ["suspended"], "RESCUE": ["rescued"],
    "VERIFY_RESIZE": ["resized"], "ERROR": ["error"], "DELETED": ["deleted"],
    "SOFT_DELETED": ["soft-delete"], "SHELVED": ["shelved"],
    "SHELVED_OFFLOADED": ["shelved_offloaded"],
    "REBOOT": ["active"], "HARD_REBOOT": ["active"], "RESIZE": ["active", "stopped"],
    "REBUILD": ["active", "stopped"], "MIGRATING": ["active"], "REVERT_RESIZE": ["resized"],
}  # fmt: skip


def _filtered(query: ServerQuery) -> Select[Any]:
    stmt = select(_T)
    if query.project_id is not None:
        stmt = stmt.where(_T.project_id == query.project_id)
    # As Nova: deleted=true lists only deleted servers; changes-since lists the deleted
    # ones too (so a poller sees servers go); otherwise only live ones.
    if query.deleted:
        stmt = stmt.where(_T.deleted.is_(True))
    elif query.changes_since is None:
        stmt = stmt.where(_T.deleted.is_(False))
    if query.changes_since is not None:
        stmt = stmt.where(_T.updated_at >= query.changes_since)
    if query.changes_before is not None:
        stmt = stmt.where(_T.updated_at <= query.changes_before)
    if query.status is not None:
        states = _VM_STATES_OF_STATUS.get(query.status.upper())
        if states is None:
            return stmt.where(_T.uuid.is_(None))
        stmt = stmt.where(_T.vm_state.in_(states))
    if query.flavor is not None:
        stmt = stmt.where(_T.flavor_id == query.flavor)
    if query.image is not None:
        stmt = stmt.where(_T.image_ref == query.image)
    if query.host is not None:
        stmt = stmt.where(_T.host == query.host)
    if query.locked is not None:
        stmt = stmt.where(_T.locked.is_(query.locked))
    tag = cell_models.InstanceTag
    for name in query.tags:
        stmt = stmt.where(
            select(tag.tag).where(tag.instance_uuid == _T.uuid, tag.tag == name).exists()
        )
    if query.tags_any:
        stmt = stmt.where(
            select(tag.tag)
            .where(tag.instance_uuid == _T.uuid, tag.tag.in_(query.tags_any))
            .exists()
        )
    if query.not_tags:
        held = [
            select(tag.tag).where(tag.instance_uuid == _T.uuid, tag.tag == n).exists()
            for n in query.not_tags
        ]
        stmt = stmt.where(~and_(*held))
    if query.not_tags_any:
        stmt = stmt.where(
            ~select(tag.tag)
            .where(tag.instance_uuid == _T.uuid, tag.tag.in_(query.not_tags_any))
            .exists()
        )
    return stmt


def _sort_keys(query: ServerQuery) -> list[pagination.SortKey]:
    """The requested keys (default: newest first) with created_at and uuid as
    tie-breakers, so every cell orders its rows the way the merged list is ordered."""
    keys = [
        pagination.SortKey(_SORT_COLUMNS.get(k.column, k.column), k.descending)
        for k in (query.sort or [pagination.SortKey("created_at", True)])
    ]
    direction = keys[0].descending
    for tie in ("created_at", "uuid"):
        if all(k.column != tie for k in keys):
            keys.append(pagination.SortKey(tie, direction))
    return keys


_NULLS_AS = {
    "description": "", "host": "", "node": "", "availability_zone": "", "key_name": "",
    "access_ip_v4": "", "access_ip_v6": "", "task_state": "", "locked_by": "",
    "launched_at": datetime(1, 1, 1), "terminated_at": datetime(1, 1, 1),
}  # fmt: skip


def _sort_value(row: Any, keys: Sequence[pagination.SortKey]) -> tuple[Any, ...]:
    """A row's position in the merged order; descending keys compare reversed."""
    values = []
    for key in keys:
        value = getattr(row, key.column)
        if value is None:
            value = _NULLS_AS.get(key.column, "")
        values.append(_Reversed(value) if key.descending else value)
    return tuple(values)


@dataclass(frozen=True, slots=True)
class _Reversed:
    value: Any

    def __lt__(self, other: _Reversed) -> bool:
        return bool(other.value < self.value)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Reversed) and self.value == other.value


def list_servers(ctx: RequestContext, query: ServerQuery) -> list[ServerView]:
    """Each cell's first `limit` rows after the marker in the requested order, merged: the
    same page a single database holding every server would give. Cells answer with their
    rows' sort keys only; just the servers that make the page are then read whole."""
    keys = _sort_keys(query)
    marker_row = _marker_row(ctx, query) if query.marker else None
    columns = {_T.uuid, _T.name, *(getattr(_T, key.column) for key in keys)}
    stmt = _filtered(query).with_only_columns(*columns)
    # A name is a regular expression, matched here: such a page is cut after it.
    limit = query.limit if query.name is None else None
    pattern = _name_pattern(query.name) if query.name is not None else None
    pages: list[list[tuple[tuple[Any, ...], str, str]]] = []
    databases = {}
    for cell in cells.list_cells(ctx.runtime):
        databases[cell.uuid] = cells.database(ctx.runtime, cell)
        with databases[cell.uuid].read() as session:
            rows = session.execute(
                pagination.apply(stmt, _T, keys, marker_row, limit, nulls_as=_NULLS_AS)
            ).all()
        if pattern is not None:
            rows = [r for r in rows if pattern.search(r.name)][: query.limit]
        pages.append([(_sort_value(r, keys), cell.uuid, r.uuid) for r in rows])
    merged = list(heapq.merge(*pages, key=lambda entry: entry[0]))[: query.limit]
    found: dict[str, ServerView] = {}
    for cell_uuid, uuids in _grouped_by_cell(merged).items():
        with databases[cell_uuid].read() as session:
            whole = session.scalars(select(_T).where(_T.uuid.in_(uuids))).all()
            found.update(
                (view.uuid, view) for view in _views(session, whole, cell_uuid, ctx.runtime)
            )
    return [found[uuid] for _key, _cell, uuid in merged]


def _grouped_by_cell(merged: Sequence[tuple[tuple[Any, ...], str, str]]) -> dict[str, list[str]]:
    by_cell: dict[str, list[str]] = {}
    for _key, cell_uuid, uuid in merged:
        by_cell.setdefault(cell_uuid, []).append(uuid)
    return by_cell


def _name_pattern(text: str) -> re.Pattern[str]:
    """Nova matches `name` as a regular expression; an invalid one matches literally."""
    try:
        return re.compile(text)
    except re.error:
        return re.compile(re.escape(text))


def _marker_row(ctx: RequestContext, query: ServerQuery) -> cell_models.Instance:
    with ctx.db.read() as session:
        mapping = session.get(models.InstanceMapping, query.marker)
    if mapping is not None:
        with _cell_db(ctx, mapping.cell_uuid).read() as session:
            row = session.get(_T, query.marker)
            if row is not None:
                return row
    raise errors.Invalid(f"marker [{query.marker}] not found")


# Changing a server ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ServerUpdate:
    name: str | None = None
    description: str | None = None
    set_description: bool = False
    access_ip_v4: str | None = None
    access_ip_v6: str | None = None
    hostname: str | None = None


def update_server(ctx: RequestContext, server_id: str, change: ServerUpdate) -> ServerView:
    with _changing(ctx, server_id) as (_session, row, _cell):
        if change.name is not None:
            row.name = change.name
        if change.set_description:
            row.description = change.description
        if change.access_ip_v4 is not None:
            row.access_ip_v4 = change.access_ip_v4
        if change.access_ip_v6 is not None:
            row.access_ip_v6 = change.access_ip_v6
        if change.hostname is not None:
            row.hostname = change.hostname
        row.updated_at = now()
    return get_server(ctx, server_id)


def delete_server(ctx: RequestContext, server_id: str) -> None:
    """Ask the host to remove the server; one that never reached a host goes at once."""
    gone_now = False
    with _changing(ctx, server_id) as (session, row, _cell):
        _refuse_if_locked(ctx, row)
        moment = now()
        if row.host is None:
            row.vm_state, row.task_state, row.deleted = "deleted", None, True
            row.deleted_at = row.terminated_at = row.updated_at = moment
            gone_now = True
        else:
            row.desired_state, row.task_state = "deleted", "deleting"
            row.generation += 1
            row.updated_at = moment
        _record_action(session, ctx, server_id, "delete", "compute_terminate_instance")
        if gone_now:
            _finish_action(session, server_id, None)
    with ctx.db.write() as session:
        session.execute(
            update(models.InstanceMapping)
            .where(models.InstanceMapping.instance_uuid == server_id)
            .values(queued_for_delete=True)
        )
    server_groups.leave(ctx, server_id)
    if not gone_now:
        hosts.wake_agents(ctx.runtime, settle=[server_id])


def _refuse_if_locked(ctx: RequestContext, row: cell_models.Instance) -> None:
    if row.locked and not ctx.is_admin:
        raise errors.Conflict(f"Instance {row.uuid} is locked")


@dataclass(frozen=True, slots=True)
class Transition:
    """A server action: where it may start, what it asks of the host, what shows meanwhile."""

    name: str  # Nova's word in "Cannot '<name>' instance ..."
    from_states: frozenset[str]
    desired: str | None  # the state to reach; None keeps the current wish
    task_state: str
    action: str  # the instance action record
    reboot: bool = False


def _t(
    name: str, states: str, desired: str | None, task: str, action: str, **kw: Any
) -> Transition:
    return Transition(name, frozenset(states.split()), desired, task, action, **kw)


TRANSITIONS = {
    "stop": _t("stop", "active rescued error", "stopped", "powering-off", "stop"),
    "start": _t("start", "stopped", "active", "powering-on", "start"),
    "pause": _t("pause", "active", "paused", "pausing", "pause"),
    "unpause": _t("unpause", "paused", "active", "unpausing", "unpause"),
    "suspend": _t("suspend", "active", "suspended", "suspending", "suspend"),
    "resume": _t("resume", "suspended", "active", "resuming", "resume"),
    "rescue": _t("rescue", "active stopped error", "rescued", "rescuing", "rescue"),
    "unrescue": _t("unrescue", "rescued", "active", "unrescuing", "unrescue"),
    "reboot_soft": _t("reboot", "active", "active", "rebooting", "reboot", reboot=True),
    "reboot_hard": _t(
        "reboot", "active stopped paused suspended error", "active", "rebooting_hard",
        "reboot", reboot=True,
    ),
}  # fmt: skip


def _wrong_state(action: str, row: cell_models.Instance, attribute: str) -> errors.Conflict:
    return errors.Conflict(
        f"Cannot '{action}' instance {row.uuid} while it is in {attribute} "
        f"{getattr(row, attribute)}"
    )


def _check_state(row: cell_models.Instance, transition: Transition) -> None:
    if row.host is None:
        raise errors.Conflict(f"Instance {row.uuid} is not ready")
    if row.task_state is not None:
        raise _wrong_state(transition.name, row, "task_state")
    if row.vm_state not in transition.from_states:
        raise _wrong_state(transition.name, row, "vm_state")


def change_state(ctx: RequestContext, server_id: str, transition_name: str) -> None:
    """Start one of TRANSITIONS; the host finishes it."""
    transition = TRANSITIONS[transition_name]
    with _changing(ctx, server_id) as (session, row, _cell):
        _refuse_if_locked(ctx, row)
        _check_state(row, transition)
        if transition.desired is not None:
            row.desired_state = transition.desired
        if transition.reboot:
            row.boot_serial += 1
            row.reboot_type = "HARD" if transition_name == "reboot_hard" else "SOFT"
        row.task_state = transition.task_state
        row.generation += 1
        row.updated_at = now()
        _record_action(
            session, ctx, server_id, transition.action, f"compute_{transition.action}_instance"
        )
    hosts.wake_agents(ctx.runtime, settle=[server_id])


@dataclass(frozen=True, slots=True)
class RebuildRequest:
    image_ref: str
    name: str | None = None
    metadata: Mapping[str, str] | None = None  # None keeps; a mapping replaces all
    description: str | None = None
    set_description: bool = False
    key_name: str | None = None
    set_key_name: bool = False  # key_name None with this set removes the key
    user_data: str | None = None
    set_user_data: bool = False


def rebuild_server(ctx: RequestContext, server_id: str, request: RebuildRequest) -> ServerView:
    """A new root disk from the image (the same one or another); a stopped server stays
    stopped, as in Nova."""
    current = get_server(ctx, server_id)
    flavor = flavors.FlavorView(**{**_flavor_fields(current.flavor)})
    try:
        _image_for_boot(ctx, request.image_ref, flavor)
    except errors.Invalid as exc:
        raise errors.Invalid(exc.message.replace("could not be found", "not found")) from None
    key_data = current.key_data
    if request.set_key_name and request.key_name is not None:
        try:
            key_data = keypairs.get_keypair(ctx, ctx.user_id or "", request.key_name).public_key
        except errors.NotFound:
            raise errors.Invalid("Invalid key_name provided.") from None
    with _changing(ctx, server_id) as (session, row, _cell):
        _refuse_if_locked(ctx, row)
        _check_state(row, _t("rebuild", "active stopped error", None, "rebuilding", "rebuild"))
        row.image_ref = request.image_ref
        row.desired_state = "stopped" if row.vm_state == "stopped" else "active"
        row.task_state = "rebuilding"
        row.boot_serial += 1
        row.reboot_type = "REBUILD"
        if request.name is not None:
            row.name = request.name
        if request.set_description:
            row.description = request.description
        if request.set_key_name:
            row.key_name = request.key_name
            row.key_data = key_data if request.key_name is not None else None
        if request.set_user_data:
            row.user_data = request.user_data
        if request.metadata is not None:
            table = cell_models.InstanceMetadata
            session.execute(delete(table).where(table.instance_uuid == server_id))
            for key, value in request.metadata.items():
                session.add(table(instance_uuid=server_id, key=key, value=value))
        row.generation += 1
        row.updated_at = now()
        _record_action(session, ctx, server_id, "rebuild", "compute_rebuild_instance")
    rebuilding = get_server(ctx, server_id)
    hosts.wake_agents(ctx.runtime, settle=[server_id])
    return rebuilding


def _flavor_fields(copy: Mapping[str, Any]) -> dict[str, Any]:
    """A FlavorView's fields from a server's embedded flavor copy."""
    return {
        "flavorid": copy["id"], "name": copy["name"], "vcpus": copy["vcpus"],
        "memory_mb": copy["ram"], "root_gb": copy["disk"], "ephemeral_gb": copy["ephemeral"],
        "swap": copy["swap"], "rxtx_factor": 1.0, "is_public": True, "disabled": False,
        "description": None, "extra_specs": dict(copy.get("extra_specs", {})),
    }  # fmt: skip


def _claim_in_place(
    ctx: RequestContext, row: cell_models.Instance, flavor: flavors.FlavorView
) -> None:
    """Move the server's allocation on its own host to `flavor`'s size, or refuse."""
    consumer = placement_service.get_consumer(ctx, row.uuid)
    root = hosts.provider_uuid(row.host or "")
    volume_backed = compute_volumes.is_volume_backed(json.loads(row.devices or "{}"))
    query = scheduler.placement_query(flavor, {}, volume_backed=volume_backed)
    allocations = {root: dict(query.groups[0].resources)}
    for provider, resources in (consumer.allocations if consumer else {}).items():
        if provider != root:
            allocations[provider] = dict(resources)
    claim = placement_service.ConsumerClaim(
        row.uuid, allocations, project_id=row.project_id, user_id=row.user_id,
        consumer_generation=consumer.generation if consumer else None, consumer_type="INSTANCE",
    )  # fmt: skip
    try:
        placement_service.set_allocations(ctx, [claim], check_generation=True)
    except errors.Conflict as exc:
        raise errors.Invalid(f"No valid host was found. {exc.message}") from None


def resize_server(ctx: RequestContext, server_id: str, flavor_ref: str) -> None:
    """Resize on the server's own host; it waits in VERIFY_RESIZE for confirm or revert."""
    flavor = flavors.find_for_boot(ctx, flavor_ref)
    current = get_server(ctx, server_id)
    if current.flavor["id"] == flavor.flavorid:
        raise errors.Invalid("When resizing, instances must change flavor!")
    growth = {
        "cores": flavor.vcpus - current.flavor["vcpus"],
        "ram": flavor.memory_mb - current.flavor["ram"],
    }
    wanted = {resource: amount for resource, amount in growth.items() if amount > 0}
    if wanted:
        quotas.check(ctx, current.project_id, wanted)
    with _changing(ctx, server_id) as (session, row, _cell):
        _refuse_if_locked(ctx, row)
        _check_state(row, _t("resize", "active stopped", None, "resize_prep", "resize"))
        _claim_in_place(ctx, row, flavor)
        row.old_flavor, row.flavor, row.flavor_id = (
            row.flavor,
            _flavor_copy(flavor),
            flavor.flavorid,
        )
        row.devices = json.dumps(
            {**json.loads(row.devices or "{}"), "resized_from_state": row.vm_state}
        )
        row.desired_state, row.task_state = "resized", "resize_prep"
        row.generation += 1
        row.updated_at = now()
        _record_action(session, ctx, server_id, "resize", "compute_resize_instance")
    hosts.wake_agents(ctx.runtime, settle=[server_id])


def confirm_resize(ctx: RequestContext, server_id: str) -> None:
    with _changing(ctx, server_id) as (session, row, _cell):
        _refuse_if_locked(ctx, row)
        if row.task_state is not None:
            raise _wrong_state("confirmResize", row, "task_state")
        if row.vm_state != "resized":
            raise _wrong_state("confirmResize", row, "vm_state")
        devices = json.loads(row.devices or "{}")
        row.desired_state = devices.pop("resized_from_state", "active")
        row.devices, row.old_flavor = json.dumps(devices), None
        row.task_state = None
        row.vm_state = row.desired_state
        row.updated_at = now()
        _record_action(session, ctx, server_id, "confirmResize", "compute_confirm_resize")
        _finish_action(session, server_id, None)


def revert_resize(ctx: RequestContext, server_id: str) -> None:
    with _changing(ctx, server_id) as (session, row, _cell):
        _refuse_if_locked(ctx, row)
        if row.task_state is not None:
            raise _wrong_state("revertResize", row, "task_state")
        if row.vm_state != "resized" or row.old_flavor is None:
            raise _wrong_state("revertResize", row, "vm_state")
        old = flavors.FlavorView(**_flavor_fields(json.loads(row.old_flavor)))
        _claim_in_place(ctx, row, old)
        devices = json.loads(row.devices or "{}")
        row.desired_state = devices.pop("resized_from_state", "active")
        row.devices = json.dumps(devices)
        row.flavor, row.flavor_id, row.old_flavor = row.old_flavor, old.flavorid, None
        row.task_state = "resize_reverting"
        row.generation += 1
        row.updated_at = now()
        _record_action(session, ctx, server_id, "revertResize", "compute_revert_resize")
    hosts.wake_agents(ctx.runtime, settle=[server_id])


def set_locked(ctx: RequestContext, server_id: str, locked: bool, reason: str | None) -> None:
    with _changing(ctx, server_id) as (session, row, _cell):
        if (
            not locked
            and row.locked
            and row.locked_by == "admin"
            and not ctx.can(
                "os_compute_api:os-lock-server:unlock:unlock_override",
                {"project_id": row.project_id},
            )
        ):
            raise errors.Forbidden("Instance was locked by an admin; only an admin can unlock it.")
        row.locked = locked
        row.locked_by = (
            ("admin" if ctx.is_admin and ctx.project_id != row.project_id else "owner")
            if locked
            else None
        )
        row.locked_reason = reason if locked else None
        row.updated_at = now()
        _record_action(session, ctx, server_id, "lock" if locked else "unlock", "api_lock")
        _finish_action(session, server_id, None)


# Image properties a snapshot does not inherit from its base image.
_NOT_INHERITED = frozenset({"instance_uuid", "image_type", "base_image_ref", "user_id"})


def create_image(
    ctx: RequestContext, server_id: str, name: str, metadata: Mapping[str, str]
) -> str:
    """A snapshot of the server's root disk as a new private image of its project; its id.

    The image carries Nova's properties (`image_type: snapshot`, `instance_uuid`,
    `base_image_ref`, `user_id`) and the base image's own properties and formats."""
    with _changing(ctx, server_id) as (session, row, _cell):
        if row.host is None:
            raise errors.Conflict(f"Instance {server_id} is not ready")
        if row.task_state is not None:
            raise _wrong_state("createImage", row, "task_state")
        if row.vm_state not in ("active", "stopped", "paused", "suspended"):
            raise _wrong_state("createImage", row, "vm_state")
        host, base_ref = row.host, row.image_ref
        _record_action(session, ctx, server_id, "createImage", "compute_snapshot_instance")
    base = image_service.get_image(ctx, base_ref)
    inherited = {k: v for k, v in base.properties.items() if k not in _NOT_INHERITED}
    snapshot = image_service.create_image(
        ctx,
        image_service.NewImage(
            id=None, name=name, visibility="private", protected=False, os_hidden=False,
            min_disk=base.row.min_disk, min_ram=base.row.min_ram,
            disk_format=base.row.disk_format or "raw",
            container_format=base.row.container_format or "bare", owner=None,
            properties={
                **inherited, **metadata, "image_type": "snapshot", "instance_uuid": server_id,
                "base_image_ref": base_ref, "user_id": ctx.user_id or "",
            },
            tags=(),
        ),
    )  # fmt: skip
    image_id = snapshot.row.id
    try:
        disk = hosts.driver_of(ctx.runtime, host or "").snapshot(server_id)
        if disk is None:
            _view, disk = image_service.image_data(ctx, base_ref)
        image_service.store_data(ctx, image_id, disk or ())
    except (DriverError, errors.PocketstackError) as exc:
        image_service.delete_image(ctx, image_id)
        message = exc.message if isinstance(exc, errors.PocketstackError) else str(exc)
        raise errors.Conflict(f"Snapshot of instance {server_id} failed: {message}") from None
    with _cell_db(ctx, _mapping(ctx, server_id).cell_uuid).write() as session:
        _finish_action(session, server_id, None)
    return image_id


# Volumes (os-volume_attachments) -----------------------------------------------------------


def _check_volume_action(ctx: RequestContext, row: cell_models.Instance, action: str) -> None:
    _refuse_if_locked(ctx, row)
    if row.host is None:
        raise errors.Conflict(f"Instance {row.uuid} is not ready")
    if row.task_state is not None:
        raise _wrong_state(action, row, "task_state")
    if row.vm_state not in compute_volumes.ATTACH_STATES:
        raise _wrong_state(action, row, "vm_state")


def volume_attachments(ctx: RequestContext, server_id: str) -> list[dict[str, Any]]:
    """The server's volumes (Nova's block device mappings of source volume)."""
    return compute_volumes.entries(get_server(ctx, server_id).devices)


def attach_volume(
    ctx: RequestContext, server_id: str, request: compute_volumes.AttachRequest
) -> dict[str, Any]:
    """Reserve and connect the volume, then ask the host for the disk; the host's report
    completes the attachment."""
    with _changing(ctx, server_id) as (_session, row, _cell):
        _check_volume_action(ctx, row, "attach_volume")
        host = row.host or ""
        used = {compute_volumes.ROOT_DEVICE} | {
            entry["device"] for entry in compute_volumes.entries(json.loads(row.devices or "{}"))
        }
    entry = compute_volumes.connect(ctx, server_id, host, request, used)
    try:
        with _changing(ctx, server_id) as (session, row, _cell):
            _check_volume_action(ctx, row, "attach_volume")
            devices = json.loads(row.devices or "{}")
            if entry["device"] in {e["device"] for e in compute_volumes.entries(devices)}:
                raise errors.Conflict(f"The supplied device path ({entry['device']}) is in use.")
            devices["volumes"] = [*compute_volumes.entries(devices), entry]
            row.devices = json.dumps(devices)
            row.generation += 1
            row.updated_at = now()
            _record_action(session, ctx, server_id, "attach_volume", "compute_attach_volume")
    except errors.PocketstackError:
        compute_volumes.give_back(ctx, entry)
        raise
    hosts.wake_agents(ctx.runtime, settle=[server_id])
    return entry


def detach_volume(ctx: RequestContext, server_id: str, volume_id: str) -> None:
    """Mark the volume detaching and ask the host to let go of the disk."""
    with _changing(ctx, server_id) as (_session, row, _cell):
        _check_volume_action(ctx, row, "detach_volume")
        found = [
            e for e in compute_volumes.entries(json.loads(row.devices or "{}"))
            if e["volume_id"] == volume_id
        ]  # fmt: skip
    if not found:
        raise errors.NotFound(f"volume_id not found: {volume_id}")
    compute_volumes.begin_detach(ctx, found[0])
    try:
        with _changing(ctx, server_id) as (session, row, _cell):
            devices = json.loads(row.devices or "{}")
            devices["volumes"] = [
                {**e, "state": "detaching"} if e["volume_id"] == volume_id else e
                for e in compute_volumes.entries(devices)
            ]
            row.devices = json.dumps(devices)
            row.generation += 1
            row.updated_at = now()
            _record_action(session, ctx, server_id, "detach_volume", "compute_detach_volume")
    except errors.PocketstackError:
        compute_volumes.run_follow_ups(
            ctx.runtime, ctx.project_id or "", [compute_volumes.roll_back_detach(volume_id)]
        )
        raise
    hosts.wake_agents(ctx.runtime, settle=[server_id])


def reset_state(ctx: RequestContext, server_id: str, state: str) -> None:
    """An admin's override of what Nova thinks a server is doing (os-resetState)."""
    with _changing(ctx, server_id) as (session, row, _cell):
        row.vm_state, row.task_state = state, None
        if state == "active":
            row.desired_state = "active"
            row.generation += 1
        row.updated_at = now()
        _record_action(session, ctx, server_id, "resetState", "api_reset_state")
        _finish_action(session, server_id, None)
    hosts.wake_agents(ctx.runtime)


def refuse_deferred_delete(ctx: RequestContext, server_id: str, action: str) -> None:
    """Servers are deleted at once here (no reclaim interval), so none is ever soft-deleted
    and restore/forceDelete always find the server in the wrong state, as Nova would."""
    with _changing(ctx, server_id) as (_session, row, _cell):
        raise _wrong_state(action, row, "vm_state")


def console_output(ctx: RequestContext, server_id: str, length: int | None) -> str:
    server = get_server(ctx, server_id)
    if server.host is None or server.vm_state in ("building", "error"):
        raise errors.Conflict(f"Instance {server_id} is not ready: it has no console yet.")
    text = hosts.driver_of(ctx.runtime, server.host).console_output(server_id)
    if length is None:
        return text
    # Nova's tail: the last `length` pieces between newlines (so -1 drops the first line).
    return "\n".join(text.split("\n")[-length:]) if length else ""


# Metadata and tags ---------------------------------------------------------------------------


def set_metadata(
    ctx: RequestContext, server_id: str, items: Mapping[str, str], replace_all: bool
) -> dict[str, str]:
    table = cell_models.InstanceMetadata
    with _changing(ctx, server_id) as (session, row, _cell):
        _refuse_if_locked(ctx, row)
        if replace_all:
            session.execute(delete(table).where(table.instance_uuid == server_id))
            session.flush()
        for key, value in items.items():
            session.merge(table(instance_uuid=server_id, key=key, value=value))
        session.flush()
        count = session.scalar(select(func.count()).where(table.instance_uuid == server_id))
        _check_metadata_quota(ctx, row.project_id, count or 0)
        row.updated_at = now()
    return get_server(ctx, server_id).metadata


def delete_metadata(ctx: RequestContext, server_id: str, key: str) -> None:
    table = cell_models.InstanceMetadata
    with _changing(ctx, server_id) as (session, row, _cell):
        _refuse_if_locked(ctx, row)
        found = session.get(table, (server_id, key))
        if found is None:
            raise errors.NotFound("Metadata item was not found")
        session.delete(found)
        row.updated_at = now()


MAX_TAGS = 50


def set_tags(
    ctx: RequestContext, server_id: str, tags: Sequence[str], replace_all: bool
) -> list[str]:
    table = cell_models.InstanceTag
    with _changing(ctx, server_id) as (session, row, _cell):
        existing = set(session.scalars(select(table.tag).where(table.instance_uuid == server_id)))
        wanted = set(tags) if replace_all else existing | set(tags)
        if len(wanted) > MAX_TAGS:
            raise errors.Invalid(f"The number of tags exceeded the per-server limit {MAX_TAGS}")
        session.execute(
            delete(table).where(table.instance_uuid == server_id, table.tag.not_in(wanted))
        )
        for tag in sorted(wanted - existing):
            session.add(table(instance_uuid=server_id, tag=tag))
        row.updated_at = now()
    return get_server(ctx, server_id).tags


def delete_tag(ctx: RequestContext, server_id: str, tag: str) -> None:
    table = cell_models.InstanceTag
    with _changing(ctx, server_id) as (session, row, _cell):
        found = session.get(table, (server_id, tag))
        if found is None:
            raise errors.NotFound(f"Tag {tag} could not be found.")
        session.delete(found)
        row.updated_at = now()


# Instance actions ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ActionEventView:
    event: str
    start_time: datetime
    finish_time: datetime | None
    result: str | None
    traceback: str | None
    host: str | None


@dataclass(frozen=True, slots=True)
class ActionView:
    action: str
    instance_uuid: str
    request_id: str
    user_id: str | None
    project_id: str | None
    start_time: datetime
    message: str | None
    updated_at: datetime
    events: list[ActionEventView]


def list_actions(ctx: RequestContext, server_id: str) -> list[ActionView]:
    server = get_server(ctx, server_id, deleted_ok=True)
    table = cell_models.InstanceAction
    with _cell_db(ctx, server.cell_uuid).read() as session:
        rows = session.scalars(
            select(table).where(table.instance_uuid == server_id).order_by(table.id.desc())
        ).all()
        return [_action_view(session, row, with_events=False) for row in rows]


def get_action(ctx: RequestContext, server_id: str, request_id: str) -> ActionView:
    server = get_server(ctx, server_id, deleted_ok=True)
    table = cell_models.InstanceAction
    with _cell_db(ctx, server.cell_uuid).read() as session:
        row = session.scalar(
            select(table)
            .where(table.instance_uuid == server_id, table.request_id == request_id)
            .order_by(table.id.desc())
            .limit(1)
        )
        if row is None:
            raise errors.NotFound(
                f"Action for request_id {request_id} on instance {server_id} not found"
            )
        return _action_view(session, row, with_events=True)


def _action_view(
    session: Session, row: cell_models.InstanceAction, with_events: bool
) -> ActionView:
    events = []
    if with_events:
        event_table = cell_models.InstanceActionEvent
        events = [
            ActionEventView(e.event, e.start_time, e.finish_time, e.result, e.traceback, e.host)
            for e in session.scalars(
                select(event_table).where(event_table.action_id == row.id).order_by(event_table.id)
            )
        ]
    return ActionView(
        row.action, row.instance_uuid, row.request_id, row.user_id, row.project_id,
        row.start_time, row.message, row.updated_at, events,
    )  # fmt: skip


# How old a half-made boot must be before `heal` takes it for the leftovers of a crash
# (another API worker may be in the middle of a younger one).
HEAL_AFTER = timedelta(minutes=5)
HEAL_EVERY_S = 300.0


def heal(runtime: Runtime, older_than: timedelta = HEAL_AFTER) -> tuple[int, int]:
    """Undo what a process killed in the middle of a boot or delete left behind: mappings of
    servers whose row was never written, and placement claims of servers that do not exist
    (or were deleted). Returns how many of each went."""
    ctx = runtime.context()
    before = now() - older_than
    live: set[str] = set()
    by_cell: dict[str, list[str]] = {}
    with runtime.db.read() as session:
        for uuid, cell_uuid in session.execute(
            select(models.InstanceMapping.instance_uuid, models.InstanceMapping.cell_uuid)
        ):
            by_cell.setdefault(cell_uuid, []).append(uuid)
    orphans = []
    for cell_uuid, uuids in by_cell.items():
        with _cell_db(ctx, cell_uuid).read() as session:
            rows: dict[str, bool] = {
                uuid: deleted
                for uuid, deleted in session.execute(
                    select(_T.uuid, _T.deleted).where(_T.uuid.in_(uuids))
                )
            }
        live.update(uuid for uuid, deleted in rows.items() if not deleted)
        orphans += [uuid for uuid in uuids if uuid not in rows]
    with runtime.db.write() as session:
        gone = session.execute(
            delete(models.InstanceMapping).where(
                models.InstanceMapping.instance_uuid.in_(orphans),
                models.InstanceMapping.created_at < before,
            )
        )
    released = 0
    for consumer in placement_service.consumers_of_type(ctx, "INSTANCE", before):
        if consumer not in live:
            _release(runtime, consumer)
            released += 1
    return int(getattr(gone, "rowcount", 0) or 0), released


def prepare(runtime: Runtime) -> None:
    cells.prepare(runtime)
    flavors.prepare(runtime)


def start(runtime: Runtime) -> Callable[[], None]:
    """Clean up after a crash (now, and every HEAL_EVERY_S for other workers' crashes), then
    run this process's hosts; returns what stops it all."""
    mappings, claims = heal(runtime)
    if mappings or claims:
        LOG.warning(
            "removed %d server mappings and %d placement claims left by an earlier crash",
            mappings, claims,
        )  # fmt: skip
    stop_hosts = hosts.start(runtime, on_report)
    stopping = threading.Event()

    def heal_now_and_then() -> None:
        while not stopping.wait(HEAL_EVERY_S):
            try:
                heal(runtime)
            except Exception:
                LOG.exception("healing compute leftovers failed; trying again later")

    healer = threading.Thread(target=heal_now_and_then, name="compute-heal", daemon=True)
    healer.start()

    def stop() -> None:
        stopping.set()
        healer.join(timeout=10)
        stop_hosts()

    return stop


# Small things the API shows ------------------------------------------------------------------

STATUSES = frozenset(_VM_STATES_OF_STATUS)


def parse_time(raw: str | None, name: str) -> datetime | None:
    """An ISO 8601 query value, as naive UTC; a bad one is the caller's fault."""
    if raw is None:
        return None
    try:
        moment = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise errors.Invalid(
            f"Invalid filter field: {name}. Expected an ISO 8601 time, got {raw}."
        ) from None
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC).replace(tzinfo=None)
    return moment


def absolute_limits(ctx: RequestContext, project_id: str) -> dict[str, int]:
    """Nova's absolute limits (the project's quotas) with the project's current use."""
    limit = quotas.limits(ctx, project_id)
    used = quotas.usage(ctx, project_id)
    return {
        "maxTotalInstances": limit["instances"],
        "maxTotalCores": limit["cores"],
        "maxTotalRAMSize": limit["ram"],
        "maxServerMeta": limit["metadata_items"],
        "maxImageMeta": limit["metadata_items"],
        "maxPersonality": limit["injected_files"],
        "maxPersonalitySize": limit["injected_file_content_bytes"],
        "maxTotalKeypairs": limit["key_pairs"],
        "maxServerGroups": limit["server_groups"],
        "maxServerGroupMembers": limit["server_group_members"],
        "maxSecurityGroups": limit["security_groups"],
        "maxSecurityGroupRules": limit["security_group_rules"],
        "maxTotalFloatingIps": limit["floating_ips"],
        "totalInstancesUsed": used["instances"],
        "totalCoresUsed": used["cores"],
        "totalRAMUsed": used["ram"],
        "totalServerGroupsUsed": used["server_groups"],
        "totalFloatingIpsUsed": 0,
        "totalSecurityGroupsUsed": 0,
    }
