"""Volume transfers (`os-volume-transfer`, and `volume-transfers` from 3.55): a project
offers one of its volumes; whoever shows the auth key takes it, with its snapshots unless
the offer said `no_snapshots`. The key is shown once, at creation; only a salted HMAC of
it is kept."""

from __future__ import annotations

import hashlib
import hmac
import secrets

from sqlalchemy import select
from sqlalchemy.orm import Session

from pocketstack.core import errors
from pocketstack.core.context import RequestContext
from pocketstack.volume import models
from pocketstack.volume import service as volume_service


def _digest(salt: str, auth_key: str) -> str:
    return hmac.new(salt.encode(), auth_key.encode(), hashlib.sha1).hexdigest()


def _snapshots(session: Session, volume_id: str) -> list[models.Snapshot]:
    stmt = select(models.Snapshot).where(models.Snapshot.volume_id == volume_id)
    return list(session.scalars(stmt))


def create_transfer(
    ctx: RequestContext, volume_id: str, name: str | None, no_snapshots: bool
) -> tuple[models.Transfer, str]:
    """Offer the volume (it becomes `awaiting-transfer`); returns the row and its key."""
    with ctx.db.write() as session:
        volume = volume_service.find_volume(ctx, session, volume_id)
        if volume.status != "available":
            raise errors.Invalid(
                f"Invalid volume: status must be available to transfer it, but it is "
                f"{volume.status}."
            )
        if not no_snapshots:
            busy = [s.id for s in _snapshots(session, volume.id) if s.status != "available"]
            if busy:
                raise errors.Invalid(
                    f"Invalid snapshot: snapshots {', '.join(busy)} of the volume are not "
                    "available; wait for them, or transfer with no_snapshots (3.55)."
                )
        auth_key, salt = secrets.token_hex(8), secrets.token_hex(4)
        row = models.Transfer(
            id=volume_service.new_id(), volume_id=volume.id, project_id=volume.project_id,
            name=name, salt=salt, crypt_hash=_digest(salt, auth_key),
            no_snapshots=no_snapshots, created_at=volume_service.now(),
        )  # fmt: skip
        volume.status, volume.updated_at = "awaiting-transfer", volume_service.now()
        session.add(row)
    return row, auth_key


def list_transfers(
    ctx: RequestContext, all_projects: bool, name: str | None = None
) -> list[models.Transfer]:
    stmt = select(models.Transfer).order_by(models.Transfer.created_at, models.Transfer.id)
    if not (ctx.is_admin and all_projects):
        stmt = stmt.where(models.Transfer.project_id == ctx.project_id)
    if name is not None:
        stmt = stmt.where(models.Transfer.name == name)
    with ctx.db.read() as session:
        return list(session.scalars(stmt))


def _find(ctx: RequestContext, session: Session, transfer_id: str) -> models.Transfer:
    return volume_service.find_owned(ctx, session, models.Transfer, transfer_id, "Transfer")


def get_transfer(ctx: RequestContext, transfer_id: str) -> models.Transfer:
    with ctx.db.read() as session:
        return _find(ctx, session, transfer_id)


def delete_transfer(ctx: RequestContext, transfer_id: str) -> None:
    """Withdraw the offer: the volume is the offering project's and available again."""
    with ctx.db.write() as session:
        row = _find(ctx, session, transfer_id)
        volume = session.get(models.Volume, row.volume_id)
        if volume is not None and volume.status == "awaiting-transfer":
            volume.status, volume.updated_at = "available", volume_service.now()
        session.delete(row)


def accept_transfer(ctx: RequestContext, transfer_id: str, auth_key: str) -> models.Transfer:
    """Move the volume (and its snapshots) to the caller's project, inside its quotas."""
    project_id, user_id = ctx.project_id or "", ctx.user_id or ""
    with ctx.db.write() as session:
        row = session.get(models.Transfer, transfer_id)
        if row is None:
            raise errors.NotFound(f"Transfer {transfer_id} could not be found.")
        if not hmac.compare_digest(_digest(row.salt, auth_key), row.crypt_hash):
            raise errors.Invalid(f"Invalid auth key: the key does not open transfer {row.id}.")
        volume = session.get(models.Volume, row.volume_id)
        if volume is None or volume.status != "awaiting-transfer":
            raise errors.Invalid(f"Invalid volume: volume of transfer {row.id} is not "
                                 "awaiting a transfer.")  # fmt: skip
        snapshots = [] if row.no_snapshots else _snapshots(session, volume.id)
        volume_type = session.get(models.VolumeType, volume.volume_type_id)
        volume_service.check_quota(
            session, project_id, volume_type.name if volume_type else None, volumes=1,
            snapshots=len(snapshots),
            gigabytes=volume.size + sum(s.size for s in snapshots),
        )  # fmt: skip
        moment = volume_service.now()
        for snapshot in snapshots:
            snapshot.project_id, snapshot.user_id, snapshot.updated_at = project_id, user_id, moment
        volume.project_id, volume.user_id = project_id, user_id
        volume.status, volume.updated_at = "available", moment
        session.delete(row)
    return row
