"""Group types (3.11), groups (3.13) and group snapshots (3.14): volumes managed as one,
snapshotted together, and groups made again from a group or a group snapshot.

A group is a record over volumes of the types it names; the file backend keeps no group
of its own, so a plain group is available at once. What takes backend work is the
volumes' and snapshots' own jobs: a group made from a source is `creating`, and a group
snapshot `creating`, until the agent has made every member (settle, each agent pass)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from pocketstack.core import errors
from pocketstack.core.context import RequestContext
from pocketstack.core.runtime import Runtime
from pocketstack.volume import models
from pocketstack.volume import service as volume_service

# The statuses os-reset_status may set on a group or a group snapshot.
RESET_STATUSES = ("error", "available", "creating", "deleting", "deleted", "updating",
                  "error_deleting")  # fmt: skip


# Group types ----------------------------------------------------------------------------


def _find_group_type(session: Session, ref: str) -> models.GroupType:
    row = session.get(models.GroupType, ref) or session.scalar(
        select(models.GroupType).where(models.GroupType.name == ref)
    )
    if row is None:
        raise errors.NotFound(f"Group type {ref} could not be found.")
    return row


def create_group_type(
    ctx: RequestContext, name: str, description: str | None, is_public: bool,
    specs: Mapping[str, str],
) -> models.GroupType:  # fmt: skip
    with ctx.db.write() as session:
        if session.scalar(select(models.GroupType).where(models.GroupType.name == name)):
            raise errors.Conflict(f"Group Type {name} already exists.")
        row = models.GroupType(
            id=volume_service.new_id(), name=name, description=description,
            is_public=is_public, group_specs=dict(specs), created_at=volume_service.now(),
        )  # fmt: skip
        session.add(row)
    return row


def list_group_types(
    ctx: RequestContext, is_public: bool | None, descending: bool = False
) -> list[models.GroupType]:
    """Public types, or (admins, `is_public` None) every type, or only the private ones."""
    stmt = select(models.GroupType)
    if is_public is not None or not ctx.is_admin:
        stmt = stmt.where(models.GroupType.is_public == (True if is_public is None else is_public))
    order = models.GroupType.name.desc() if descending else models.GroupType.name.asc()
    with ctx.db.read() as session:
        return list(session.scalars(stmt.order_by(order)))


def get_group_type(ctx: RequestContext, ref: str) -> models.GroupType:
    with ctx.db.read() as session:
        return _find_group_type(session, ref)


def update_group_type(
    ctx: RequestContext, ref: str, changes: Mapping[str, Any]
) -> models.GroupType:
    with ctx.db.write() as session:
        row = _find_group_type(session, ref)
        name = changes.get("name")
        if (
            name is not None
            and name != row.name
            and session.scalar(select(models.GroupType).where(models.GroupType.name == name))
        ):
            raise errors.Conflict(f"Group Type {name} already exists.")
        for field in ("name", "description", "is_public"):
            if field in changes:
                setattr(row, field, changes[field])
        row.updated_at = volume_service.now()
        return row


def delete_group_type(ctx: RequestContext, ref: str) -> None:
    with ctx.db.write() as session:
        row = _find_group_type(session, ref)
        used = select(func.count()).where(models.Group.group_type_id == row.id)
        if session.scalar(used):
            raise errors.Invalid(f"Group Type {row.id} deletion is not allowed with groups "
                                 "present with the type.")  # fmt: skip
        session.delete(row)


def set_group_specs(ctx: RequestContext, ref: str, specs: Mapping[str, str]) -> None:
    with ctx.db.write() as session:
        row = _find_group_type(session, ref)
        row.group_specs = {**row.group_specs, **specs}
        row.updated_at = volume_service.now()


def delete_group_spec(ctx: RequestContext, ref: str, key: str) -> None:
    with ctx.db.write() as session:
        row = _find_group_type(session, ref)
        row.group_specs = volume_service.without_key(
            row.group_specs, key, f"Group Type {row.id} has no specs with key {key}."
        )


# Groups ---------------------------------------------------------------------------------


def find_group(ctx: RequestContext, session: Session, group_id: str) -> models.Group:
    return volume_service.find_owned(ctx, session, models.Group, group_id, "Group")


def _members(session: Session, group_id: str) -> list[models.Volume]:
    stmt = select(models.Volume).where(models.Volume.group_id == group_id)
    return list(session.scalars(stmt.order_by(models.Volume.created_at)))


def _new_group(
    ctx: RequestContext, session: Session, group_type: models.GroupType,
    volume_type_ids: list[str], name: str | None, description: str | None,
    zone: str | None,
) -> models.Group:  # fmt: skip
    zone = zone or volume_service.AVAILABILITY_ZONE
    if zone != volume_service.AVAILABILITY_ZONE:
        raise errors.Invalid(f"Invalid input received: Availability zone '{zone}' is invalid; "
                             f"this cloud has '{volume_service.AVAILABILITY_ZONE}'.")  # fmt: skip
    volume_service.check_quota(session, ctx.project_id or "", groups=1)
    row = models.Group(
        id=volume_service.new_id(), project_id=ctx.project_id or "", user_id=ctx.user_id or "",
        name=name, description=description, status="available", availability_zone=zone,
        group_type_id=group_type.id, volume_type_ids=volume_type_ids,
        created_at=volume_service.now(),
    )  # fmt: skip
    session.add(row)
    return row


def create_group(
    ctx: RequestContext, group_type: str, volume_types: Sequence[str], name: str | None,
    description: str | None, zone: str | None,
) -> models.Group:  # fmt: skip
    with ctx.db.write() as session:
        kind = _find_group_type(session, group_type)
        type_ids = [volume_service.find_type(ctx, session, t).id for t in volume_types]
        return _new_group(ctx, session, kind, type_ids, name, description, zone)


def create_group_from_source(
    ctx: RequestContext, group_snapshot_id: str | None, source_group_id: str | None,
    name: str | None, description: str | None,
) -> models.Group:  # fmt: skip
    """A new group holding a new volume for each snapshot of the group snapshot (or each
    volume of the source group); `creating` until the agent has made them all."""
    with ctx.db.write() as session:
        if group_snapshot_id:
            source_snapshot = find_group_snapshot(ctx, session, group_snapshot_id)
            if source_snapshot.status != "available":
                raise errors.Invalid(f"Invalid group snapshot: {group_snapshot_id} is "
                                     f"{source_snapshot.status}, not available.")  # fmt: skip
            source = find_group(ctx, session, source_snapshot.group_id)
            snapshots = _snapshots_of(session, source_snapshot.id)
            specs = [volume_service.VolumeSpec(size=s.size, snapshot_id=s.id) for s in snapshots]
        else:
            source = find_group(ctx, session, source_group_id or "")
            if source.status != "available":
                raise errors.Invalid(f"Invalid group: source group {source.id} is "
                                     f"{source.status}, not available.")  # fmt: skip
            specs = [volume_service.VolumeSpec(size=v.size, source_volid=v.id)
                     for v in _members(session, source.id)]  # fmt: skip
        if not specs:
            raise errors.Invalid("Invalid input received: the source holds no volumes.")
        kind = _find_group_type(session, source.group_type_id)
        row = _new_group(ctx, session, kind, list(source.volume_type_ids), name, description,
                         source.availability_zone)  # fmt: skip
        row.status, row.group_snapshot_id = "creating", group_snapshot_id
        row.source_group_id = None if group_snapshot_id else source.id
        session.flush()
        for spec in specs:
            made = volume_service.add_volume(ctx, session, spec)
            made.group_id = row.id
    volume_service.wake(ctx)
    return row


def list_groups(ctx: RequestContext, all_projects: bool) -> list[models.Group]:
    stmt = select(models.Group).order_by(models.Group.created_at.desc(), models.Group.id)
    if not (ctx.is_admin and all_projects):
        stmt = stmt.where(models.Group.project_id == ctx.project_id)
    with ctx.db.read() as session:
        return list(session.scalars(stmt))


def get_group(ctx: RequestContext, group_id: str) -> tuple[models.Group, list[str]]:
    """The group and the ids of its volumes."""
    with ctx.db.read() as session:
        row = find_group(ctx, session, group_id)
        return row, [v.id for v in _members(session, group_id)]


def _ids(text: str | None) -> list[str]:
    return [part.strip() for part in (text or "").split(",") if part.strip()]


def update_group(
    ctx: RequestContext, group_id: str, changes: Mapping[str, str | None],
) -> None:  # fmt: skip
    """Rename, describe, and add or remove volumes (comma-separated ids)."""
    adding, removing = _ids(changes.get("add_volumes")), _ids(changes.get("remove_volumes"))
    if set(adding) & set(removing):
        raise errors.Invalid("Invalid input received: a volume cannot be both added to and "
                             "removed from the group.")  # fmt: skip
    with ctx.db.write() as session:
        row = find_group(ctx, session, group_id)
        if (adding or removing) and row.status != "available":
            raise errors.Invalid(f"Invalid group: group {group_id} is {row.status}; volumes "
                                 "are added or removed while it is available.")  # fmt: skip
        for volume_id in adding:
            volume = volume_service.find_volume(ctx, session, volume_id)
            if volume.group_id is not None or volume.project_id != row.project_id:
                raise errors.Invalid(f"Invalid volume: volume {volume_id} is in a group or "
                                     "another project.")  # fmt: skip
            if volume.volume_type_id not in row.volume_type_ids:
                raise errors.Invalid(f"Invalid volume: the type of volume {volume_id} is not "
                                     f"one of the group's types.")  # fmt: skip
            if volume.status not in ("available", "in-use"):
                raise errors.Invalid(f"Invalid volume: volume {volume_id} is {volume.status}.")
            volume.group_id = row.id
        for volume_id in removing:
            volume = volume_service.find_volume(ctx, session, volume_id)
            if volume.group_id != row.id:
                raise errors.Invalid(f"Invalid volume: volume {volume_id} is not in group "
                                     f"{group_id}.")  # fmt: skip
            if volume.status not in ("available", "in-use", "error", "error_deleting"):
                raise errors.Invalid(f"Invalid volume: volume {volume_id} is {volume.status}.")
            volume.group_id = None
        for field in ("name", "description"):
            if field in changes:
                setattr(row, field, changes[field])
        row.updated_at = volume_service.now()


def delete_group(ctx: RequestContext, group_id: str, delete_volumes: bool) -> None:
    """Delete the group; with `delete_volumes`, its volumes too (the agent removes them)."""
    with ctx.db.write() as session:
        row = find_group(ctx, session, group_id)
        volumes = _members(session, group_id)
        if row.status not in ("available", "error"):
            raise errors.Invalid(f"Invalid group: group {group_id} is {row.status}; it must "
                                 "be available or error to be deleted.")  # fmt: skip
        if volumes and not delete_volumes:
            raise errors.Invalid(f"Invalid group: group {group_id} still has volumes; delete "
                                 'them too with {"delete-volumes": true}.')  # fmt: skip
        taken = select(func.count()).where(models.GroupSnapshot.group_id == group_id)
        if session.scalar(taken):
            raise errors.Invalid(f"Invalid group: group {group_id} has group snapshots; "
                                 "delete them first.")  # fmt: skip
        for volume in volumes:
            if volume.attach_status != "detached":
                raise errors.Invalid(f"Invalid volume: volume {volume.id} is attached.")
            has_snapshots = select(func.count()).where(models.Snapshot.volume_id == volume.id)
            if session.scalar(has_snapshots):
                raise errors.Invalid(f"Invalid volume: volume {volume.id} has snapshots.")
            volume.status, volume.updated_at = "deleting", volume_service.now()
        session.delete(row)
    volume_service.wake(ctx)


def reset_group_status(ctx: RequestContext, group_id: str, status: str) -> None:
    with ctx.db.write() as session:
        row = find_group(ctx, session, group_id)
        row.status, row.updated_at = status, volume_service.now()


# Group snapshots ------------------------------------------------------------------------


def find_group_snapshot(
    ctx: RequestContext, session: Session, group_snapshot_id: str
) -> models.GroupSnapshot:
    return volume_service.find_owned(
        ctx, session, models.GroupSnapshot, group_snapshot_id, "GroupSnapshot"
    )


def _snapshots_of(session: Session, group_snapshot_id: str) -> list[models.Snapshot]:
    stmt = select(models.Snapshot).where(models.Snapshot.group_snapshot_id == group_snapshot_id)
    return list(session.scalars(stmt))


def create_group_snapshot(
    ctx: RequestContext, group_id: str, name: str | None, description: str | None
) -> models.GroupSnapshot:
    """A snapshot of every volume of the group, in one transaction (`creating` until the
    agent has taken them all)."""
    with ctx.db.write() as session:
        volume_service.check_not_frozen(ctx, session, "create a group snapshot")
        group = find_group(ctx, session, group_id)
        volumes = _members(session, group_id)
        if group.status != "available":
            raise errors.Invalid(f"Invalid group: group {group_id} is {group.status}, not "
                                 "available.")  # fmt: skip
        busy = [v.id for v in volumes if v.status not in ("available", "in-use")]
        if busy:
            raise errors.Invalid(f"Invalid volume: volumes {', '.join(busy)} of the group are "
                                 "not available or in-use.")  # fmt: skip
        row = models.GroupSnapshot(
            id=volume_service.new_id(), project_id=group.project_id, user_id=ctx.user_id or "",
            group_id=group.id, group_type_id=group.group_type_id, name=name,
            description=description, status="creating" if volumes else "available",
            created_at=volume_service.now(),
        )  # fmt: skip
        session.add(row)
        for volume in volumes:
            volume_service.add_snapshot(
                ctx, session, volume, name, description, group_snapshot_id=row.id
            )
    volume_service.wake(ctx)
    return row


def list_group_snapshots(ctx: RequestContext, all_projects: bool) -> list[models.GroupSnapshot]:
    stmt = select(models.GroupSnapshot).order_by(
        models.GroupSnapshot.created_at.desc(), models.GroupSnapshot.id
    )
    if not (ctx.is_admin and all_projects):
        stmt = stmt.where(models.GroupSnapshot.project_id == ctx.project_id)
    with ctx.db.read() as session:
        return list(session.scalars(stmt))


def get_group_snapshot(ctx: RequestContext, group_snapshot_id: str) -> models.GroupSnapshot:
    with ctx.db.read() as session:
        return find_group_snapshot(ctx, session, group_snapshot_id)


def delete_group_snapshot(ctx: RequestContext, group_snapshot_id: str) -> None:
    """Its snapshots go to `deleting` (the agent removes them); the record goes now."""
    with ctx.db.write() as session:
        volume_service.check_not_frozen(ctx, session, "delete a group snapshot")
        row = find_group_snapshot(ctx, session, group_snapshot_id)
        if row.status not in ("available", "error"):
            raise errors.Invalid(f"Invalid group snapshot: {group_snapshot_id} is "
                                 f"{row.status}; it must be available or error.")  # fmt: skip
        made = select(func.count()).where(models.Group.group_snapshot_id == row.id,
                                          models.Group.status == "creating")  # fmt: skip
        if session.scalar(made):
            raise errors.Invalid("Invalid group snapshot: a group is being made from it.")
        for snapshot in _snapshots_of(session, row.id):
            snapshot.status, snapshot.updated_at = "deleting", volume_service.now()
        session.delete(row)
    volume_service.wake(ctx)


def reset_group_snapshot_status(ctx: RequestContext, group_snapshot_id: str, status: str) -> None:
    with ctx.db.write() as session:
        row = find_group_snapshot(ctx, session, group_snapshot_id)
        row.status, row.updated_at = status, volume_service.now()


# What the agent settles ------------------------------------------------------------------


def _outcome(statuses: Sequence[str]) -> str | None:
    """`available` once every member is done, `error` if one failed, None while not."""
    if any(s.startswith("error") for s in statuses):
        return "error"
    if all(s in ("available", "in-use") for s in statuses):
        return "available"
    return None


def settle(runtime: Runtime) -> None:
    """Groups and group snapshots in `creating` take the outcome of their members."""
    with runtime.db.write() as session:
        for group in session.scalars(select(models.Group).where(models.Group.status == "creating")):
            outcome = _outcome([v.status for v in _members(session, group.id)])
            if outcome is not None:
                group.status, group.updated_at = outcome, volume_service.now()
        creating = select(models.GroupSnapshot).where(models.GroupSnapshot.status == "creating")
        for group_snapshot in session.scalars(creating):
            outcome = _outcome([s.status for s in _snapshots_of(session, group_snapshot.id)])
            if outcome is not None:
                group_snapshot.status, group_snapshot.updated_at = outcome, volume_service.now()
