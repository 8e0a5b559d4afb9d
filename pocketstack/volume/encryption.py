"""Encryption types (`types/{id}/encryption`, admin): how volumes of a type are to be
encrypted. Volumes of such a type show `encrypted: true`; a type in use keeps its
encryption as it is."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from pocketstack.core import errors
from pocketstack.core.context import RequestContext
from pocketstack.volume import models
from pocketstack.volume import service as volume_service

LOCATIONS = ("front-end", "back-end")
FIELDS = ("provider", "cipher", "key_size", "control_location")


def _type_not_in_use(session: Session, volume_type: models.VolumeType) -> None:
    used = select(func.count()).where(models.Volume.volume_type_id == volume_type.id)
    if session.scalar(used):
        raise errors.Invalid(f"Invalid volume type: volume type {volume_type.id} is in use; "
                             "its encryption cannot change.")  # fmt: skip


def check(fields: Mapping[str, Any]) -> None:
    location = fields.get("control_location")
    if location is not None and location not in LOCATIONS:
        raise errors.Invalid(f"Invalid input: control_location must be one of "
                             f"{', '.join(LOCATIONS)}, not {location!r}.")  # fmt: skip
    size = fields.get("key_size")
    if size is not None and (not isinstance(size, int) or size < 0):
        raise errors.Invalid(f"Invalid input: key_size must be a whole number, not {size!r}.")


def get(ctx: RequestContext, type_id: str) -> models.Encryption | None:
    with ctx.db.read() as session:
        volume_type = volume_service.find_type(ctx, session, type_id)
        return session.get(models.Encryption, volume_type.id)


def create(ctx: RequestContext, type_id: str, fields: Mapping[str, Any]) -> models.Encryption:
    check(fields)
    with ctx.db.write() as session:
        volume_type = volume_service.find_type(ctx, session, type_id)
        if session.get(models.Encryption, volume_type.id) is not None:
            raise errors.Invalid(f"Volume type encryption for type {type_id} already exists.")
        _type_not_in_use(session, volume_type)
        row = models.Encryption(
            volume_type_id=volume_type.id, encryption_id=volume_service.new_id(),
            provider=fields["provider"], cipher=fields.get("cipher"),
            key_size=fields.get("key_size"), control_location=fields["control_location"],
            created_at=volume_service.now(),
        )  # fmt: skip
        session.add(row)
    return row


def _changeable(ctx: RequestContext, session: Session, type_id: str) -> models.Encryption:
    """The type's encryption, which may change only while no volume is of the type."""
    volume_type = volume_service.find_type(ctx, session, type_id)
    row = session.get(models.Encryption, volume_type.id)
    if row is None:
        raise errors.NotFound(f"Volume type encryption for type {type_id} does not exist.")
    _type_not_in_use(session, volume_type)
    return row


def update(ctx: RequestContext, type_id: str, fields: Mapping[str, Any]) -> None:
    check(fields)
    with ctx.db.write() as session:
        row = _changeable(ctx, session, type_id)
        for field in FIELDS:
            if field in fields:
                setattr(row, field, fields[field])
        row.updated_at = volume_service.now()


def delete(ctx: RequestContext, type_id: str) -> None:
    with ctx.db.write() as session:
        row = _changeable(ctx, session, type_id)
        session.delete(row)
