"""User messages (`/messages`, 3.3+): why an operation the API accepted failed later,
for the resource's own project to read (Cinder's event ids and texts). volume/service.py
records them, so this module stands below it."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from pocketstack.core import errors
from pocketstack.core.context import RequestContext
from pocketstack.volume import models

# How long a message is kept (Cinder's `message_ttl`, 30 days).
TTL = timedelta(days=30)
# Cinder's action and detail ids, with their texts.
SCHEDULE_ALLOCATE_VOLUME = ("001", "schedule allocate volume")
NO_VALID_BACKEND = ("003", "Could not find any available weighted backend.")


def record(
    session: Session, ctx: RequestContext, resource_type: str, resource_uuid: str,
    action: tuple[str, str], detail: tuple[str, str],
) -> None:  # fmt: skip
    """Leave a message for the project of the request in `ctx`, in its transaction."""
    moment = _now()
    session.add(models.Message(
        id=str(uuid.uuid4()), project_id=ctx.project_id or "", request_id=ctx.request_id,
        resource_type=resource_type, resource_uuid=resource_uuid,
        event_id=f"VOLUME_{resource_type}_{action[0]}_{detail[0]}", message_level="ERROR",
        user_message=f"{action[1]}:{detail[1]}", created_at=moment, expires_at=moment + TTL,
    ))  # fmt: skip


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def _visible(ctx: RequestContext) -> Select[models.Message]:
    stmt = select(models.Message).where(models.Message.expires_at > _now())
    return stmt if ctx.is_admin else stmt.where(models.Message.project_id == ctx.project_id)


def list_messages(ctx: RequestContext) -> list[models.Message]:
    with ctx.db.read() as session:
        stmt = _visible(ctx).order_by(models.Message.created_at.desc(), models.Message.id)
        return list(session.scalars(stmt))


def _find(ctx: RequestContext, session: Session, message_id: str) -> models.Message:
    found = session.scalar(_visible(ctx).where(models.Message.id == message_id))
    if found is None:
        raise errors.NotFound(f"Message {message_id} could not be found.")
    return found


def get_message(ctx: RequestContext, message_id: str) -> models.Message:
    with ctx.db.read() as session:
        return _find(ctx, session, message_id)


def delete_message(ctx: RequestContext, message_id: str) -> None:
    with ctx.db.write() as session:
        session.delete(_find(ctx, session, message_id))
