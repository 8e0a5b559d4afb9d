"""Volume backups as Cinder serves them: create (full or incremental, `force` for a volume
in use), list, show, update, delete, restore to a new or an existing volume.

A backup's status is its unfinished work, as a volume's is (models.py): the
agent backs up `creating` backups, restores `restoring` ones into their
`restore_volume_id`, removes `deleting` ones. While a backup reads it, the
volume is `backing-up` (so it cannot be deleted under it); one being written
by a restore is `restoring-backup`. A forced backup of an in-use volume reads
a temporary backend snapshot, so the data is as of one moment.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from pocketstack.core import errors
from pocketstack.core.context import RequestContext
from pocketstack.core.runtime import Runtime
from pocketstack.volume import models
from pocketstack.volume import service as volume_service

WORKING = ("creating", "restoring", "deleting")


@dataclass(frozen=True, slots=True)
class BackupRequest:
    volume_id: str
    name: str | None = None
    description: str | None = None
    container: str | None = None
    incremental: bool = False
    force: bool = False
    snapshot_id: str | None = None
    metadata: Mapping[str, str] | None = None


def has_dependents(session: Session, backup_id: str) -> bool:
    return (
        session.scalar(
            select(models.Backup.id).where(models.Backup.parent_id == backup_id).limit(1)
        )
        is not None
    )


def dependents(session: Session, rows: list[models.Backup]) -> set[str]:
    """Which of these backups have incremental backups on top of them."""
    ids = [row.id for row in rows]
    if not ids:
        return set()
    found = session.scalars(select(models.Backup.parent_id).where(models.Backup.parent_id.in_(ids)))
    return {parent for parent in found if parent}


def create_backup(ctx: RequestContext, request: BackupRequest) -> models.Backup:
    with ctx.db.write() as session:
        volume = volume_service.find_volume(ctx, session, request.volume_id)
        if volume.status == "in-use" and not (request.force or request.snapshot_id):
            raise errors.Invalid(
                "Invalid volume: Backing up an in-use volume must use the force flag."
            )
        if volume.status not in ("available", "in-use"):
            raise errors.Invalid(
                "Invalid volume: Volume to be backed up must be available or in-use, but the "
                f'current status is "{volume.status}".'
            )
        if request.snapshot_id is not None:
            snapshot = volume_service.find_snapshot(ctx, session, request.snapshot_id)
            if snapshot.volume_id != volume.id or snapshot.status != "available":
                raise errors.Invalid(
                    f"Invalid snapshot: Snapshot {snapshot.id} must be an available snapshot "
                    f"of volume {volume.id}."
                )
        parent = None
        if request.incremental:
            parent = session.scalar(
                select(models.Backup)
                .where(models.Backup.volume_id == volume.id, models.Backup.status == "available")
                .order_by(models.Backup.data_timestamp.desc())
                .limit(1)
            )
            if parent is None:
                raise errors.Invalid(
                    "Invalid backup: No backups available to do an incremental backup."
                )
        volume_service.check_quota(
            session, volume.project_id, backups=1, backup_gigabytes=volume.size
        )
        moment = volume_service.now()
        temporary = volume.status == "in-use" and request.snapshot_id is None
        row = models.Backup(
            id=volume_service.new_id(), project_id=ctx.project_id or volume.project_id,
            user_id=ctx.user_id or "", volume_id=volume.id,
            snapshot_id=request.snapshot_id, parent_id=parent.id if parent else None,
            name=request.name, description=request.description,
            container=request.container or "volumebackups",
            availability_zone=volume.availability_zone, size=volume.size, status="creating",
            object_count=0, is_incremental=parent is not None, temporary_snapshot=temporary,
            metadata_=dict(request.metadata or {}), data_timestamp=moment, created_at=moment,
        )  # fmt: skip
        session.add(row)
        volume.previous_status, volume.status = volume.status, "backing-up"
        volume.updated_at = moment
    volume_service.wake(ctx)
    return row


def get_backup(ctx: RequestContext, backup_id: str) -> tuple[models.Backup, bool]:
    """The backup, and whether incremental backups depend on it."""
    with ctx.db.read() as session:
        row = volume_service.find_backup(ctx, session, backup_id)
        return row, has_dependents(session, row.id)


def list_backups(
    ctx: RequestContext, all_projects: bool, filters: Mapping[str, str], marker: str | None,
    limit: int | None, offset: int = 0,
) -> tuple[list[models.Backup], set[str]]:  # fmt: skip
    """A page of backups, newest first, and which of them have dependents."""
    stmt = select(models.Backup).order_by(models.Backup.created_at.desc(), models.Backup.id)
    if not (ctx.is_admin and all_projects):
        stmt = stmt.where(models.Backup.project_id == ctx.project_id)
    for key in ("name", "status", "volume_id"):
        if key in filters:
            stmt = stmt.where(getattr(models.Backup, key) == filters[key])
    with ctx.db.read() as session:
        rows = list(session.scalars(stmt))
        shown = volume_service.page(rows, marker, limit, offset)
        return shown, dependents(session, shown)


def update_backup(ctx: RequestContext, backup_id: str, changes: Mapping[str, Any]) -> models.Backup:
    with ctx.db.write() as session:
        row = volume_service.find_backup(ctx, session, backup_id)
        for field in ("name", "description"):
            if field in changes:
                setattr(row, field, changes[field])
        if changes.get("metadata") is not None:
            row.metadata_ = dict(changes["metadata"])
        row.updated_at = volume_service.now()
        return row


def delete_backup(ctx: RequestContext, backup_id: str, force: bool) -> None:
    with ctx.db.write() as session:
        row = volume_service.find_backup(ctx, session, backup_id)
        if row.status == "deleting":
            return
        if row.status not in ("available", "error") and not force:
            raise errors.Invalid(
                f"Invalid backup: Backup status must be available or error, but is {row.status}."
            )
        if has_dependents(session, row.id):
            raise errors.Invalid("Invalid backup: Incremental backups exist for this backup.")
        row.status, row.updated_at = "deleting", volume_service.now()
    volume_service.wake(ctx)


def reset_status(ctx: RequestContext, backup_id: str, status: str) -> None:
    if status not in ("available", "error"):
        raise errors.Invalid(f"Invalid backup: status {status!r} must be available or error.")
    with ctx.db.write() as session:
        row = volume_service.find_backup(ctx, session, backup_id)
        row.status, row.updated_at = status, volume_service.now()


@dataclass(frozen=True, slots=True)
class RestoreResult:
    backup_id: str
    volume_id: str
    volume_name: str


def restore_backup(
    ctx: RequestContext, backup_id: str, volume_id: str | None, name: str | None
) -> RestoreResult:
    """Restore into an existing available volume at least as large, or a new one."""
    with ctx.db.read() as session:
        backup = volume_service.find_backup(ctx, session, backup_id)
        if backup.status != "available":
            raise errors.Invalid("Invalid backup: Backup status must be available")
    if volume_id is None:
        spec = volume_service.VolumeSpec(
            size=backup.size, name=name or f"restore_backup_{backup.id}",
            description="auto-created_from_restore_from_backup", backup_id=backup.id,
        )  # fmt: skip
        volume = volume_service.create_volume(ctx, spec).row
        return RestoreResult(backup.id, volume.id, volume.name or "")
    with ctx.db.write() as session:
        backup = volume_service.find_backup(ctx, session, backup_id)
        target = volume_service.find_volume(ctx, session, volume_id)
        if backup.status != "available":
            raise errors.Invalid("Invalid backup: Backup status must be available")
        if target.status != "available":
            raise errors.Invalid(
                f"Invalid volume: Volume to be restored to must be available, but is "
                f"{target.status}."
            )
        if target.size < backup.size:
            raise errors.Invalid(
                f"Invalid volume: volume size {target.size} is too small to restore backup "
                f"of size {backup.size}."
            )
        target.status, target.updated_at = "restoring-backup", volume_service.now()
        backup.status, backup.restore_volume_id = "restoring", target.id
        backup.updated_at = volume_service.now()
        result = RestoreResult(backup.id, target.id, target.name or "")
    volume_service.wake(ctx)
    return result


# The agent's side ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BackupJob:
    kind: str  # backup, restore, delete
    backup_id: str
    volume_id: str
    size: int
    snapshot_id: str | None
    temporary_snapshot: bool
    restore_volume_id: str | None
    parent_id: str | None


def pending_jobs(runtime: Runtime) -> list[BackupJob]:
    kinds = {"creating": "backup", "restoring": "restore", "deleting": "delete"}
    with runtime.db.read() as session:
        rows = session.scalars(
            select(models.Backup)
            .where(models.Backup.status.in_(WORKING))
            .order_by(models.Backup.created_at)
        )
        return [
            BackupJob(
                kinds[r.status],
                r.id,
                r.volume_id,
                r.size,
                r.snapshot_id,
                r.temporary_snapshot,
                r.restore_volume_id,
                r.parent_id,
            )
            for r in rows
        ]


def record_progress(runtime: Runtime, backup_id: str, done: int) -> None:
    """How many chunks a running backup or restore has done (its object_count)."""
    with runtime.db.write() as session:
        row = session.get(models.Backup, backup_id)
        if row is not None and row.status in ("creating", "restoring"):
            row.object_count = done


def finish_job(runtime: Runtime, job: BackupJob, failure: str | None, chunks: int = 0) -> None:
    with runtime.db.write() as session:
        row = session.get(models.Backup, job.backup_id)
        moment = volume_service.now()
        if job.kind == "delete":
            if row is not None and failure is None:
                session.delete(row)
            elif row is not None:
                row.status, row.fail_reason = "error_deleting", failure
            return
        if job.kind == "backup":
            volume = session.get(models.Volume, job.volume_id)
            if volume is not None and volume.status == "backing-up":
                volume.status = volume.previous_status or "available"
                volume.updated_at = moment
            if row is not None:
                row.status = "available" if failure is None else "error"
                row.fail_reason, row.updated_at = failure, moment
                if failure is None:
                    row.object_count = chunks
            return
        target = session.get(models.Volume, job.restore_volume_id)
        if target is not None:
            target.status = "available" if failure is None else "error_restoring"
            target.fail_reason, target.updated_at = failure, moment
            target.launched_at = target.launched_at or (moment if failure is None else None)
        if row is not None:
            row.status, row.restore_volume_id = "available", None
            row.fail_reason, row.updated_at = failure, moment
