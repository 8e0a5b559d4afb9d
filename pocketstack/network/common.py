"""What every network resource shares: ids, time, revision numbers and If-Match, who sees
what, not-found errors with Neutron's types, tags."""

from __future__ import annotations

import functools
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, Concatenate, ParamSpec, TypeVar

from sqlalchemy import delete, or_, select
from sqlalchemy.orm import Session

from pocketstack.core import errors
from pocketstack.core.context import RequestContext
from pocketstack.network import models

MAX_TAG_LENGTH = 255
# Where the network agent (agent.py) of this process leaves its wake-up call.
AGENT_WAKE_KEY = "network.agent.wake"
Params = ParamSpec("Params")
Returned = TypeVar("Returned")


def wake(ctx: RequestContext) -> None:
    """Tell this process's network agent that what it serves changed (it resyncs anyway)."""
    wake_agent: Callable[[], None] | None = ctx.runtime.state.get(AGENT_WAKE_KEY)
    if wake_agent is not None:
        wake_agent()


def wakes(
    write: Callable[Concatenate[RequestContext, Params], Returned],
) -> Callable[Concatenate[RequestContext, Params], Returned]:
    """A write the network agent acts on: wake it once the write is done."""

    @functools.wraps(write)
    def done(ctx: RequestContext, *args: Params.args, **kwargs: Params.kwargs) -> Returned:
        result = write(ctx, *args, **kwargs)
        wake(ctx)
        return result

    return done


def now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def new_id() -> str:
    return str(uuid.uuid4())


def stamp(row: Any) -> None:
    """A changed resource: a new revision, a new `updated_at`."""
    row.revision_number = (row.revision_number or 0) + 1
    row.updated_at = now()


def check_revision(row: Any, if_match: str | None) -> None:
    """`If-Match: revision_number=N` makes an update conditional (412 when it moved)."""
    if not if_match:
        return
    for condition in if_match.split(","):
        key, _, value = condition.strip().partition("=")
        if key == "revision_number" and value.strip() != str(row.revision_number):
            raise errors.PocketstackError.with_status(
                412,
                "Precondition Failed",
                f"Constrained to {condition.strip()}, but current revision is "
                f"{row.revision_number}",
            )


def not_found(kind: str, resource_id: str) -> errors.NotFound:
    """Neutron's message and type: "Network X could not be found." (NetworkNotFound)."""
    words = {
        "network": "Network",
        "subnet": "Subnet",
        "port": "Port",
        "security_group": "Security group",
        "security_group_rule": "Security group rule",
    }
    title = words.get(kind, kind.replace("_", " ").capitalize())
    code = "".join(part.capitalize() for part in kind.split("_")) + "NotFound"
    return errors.NotFound(f"{title} {resource_id} could not be found.", code=code)


def owned(ctx: RequestContext, model: Any) -> Any:
    """Rows of the caller's project (every row for an admin)."""
    if ctx.is_admin:
        return True
    return model.project_id == ctx.project_id


def network_visible(ctx: RequestContext) -> Any:
    """Networks a caller sees: its project's, shared ones and external ones."""
    network = models.Network
    if ctx.is_admin:
        return True
    return or_(network.project_id == ctx.project_id, network.shared, network.external)


def get_row(session: Session, ctx: RequestContext, model: Any, kind: str, row_id: str) -> Any:
    """A row the caller owns (or, for an admin, any row); 404 otherwise, as Neutron hides
    what a caller may not see."""
    row = session.get(model, row_id)
    if row is None or not (ctx.is_admin or row.project_id == ctx.project_id):
        raise not_found(kind, row_id)
    return row


def check_project(ctx: RequestContext, body: dict[str, Any]) -> str:
    """The project a new resource belongs to: the caller's, or another one an admin names."""
    project_id = body.get("project_id") or body.get("tenant_id") or ctx.project_id
    if body.get("project_id") and body.get("tenant_id") and body["project_id"] != body["tenant_id"]:
        raise errors.Invalid("project_id and tenant_id do not match")
    if project_id is None:
        raise errors.Invalid("A project is needed: use a project-scoped token or give project_id")
    return str(project_id)


# Tags --------------------------------------------------------------------------------


def tags(session: Session, kind: str, resource_id: str) -> list[str]:
    rows = session.scalars(
        select(models.Tag.tag).where(
            models.Tag.resource_type == kind, models.Tag.resource_id == resource_id
        )
    )
    return sorted(rows)


def check_tags(values: Sequence[Any]) -> list[str]:
    for value in values:
        if not isinstance(value, str) or not value or len(value) > MAX_TAG_LENGTH or "," in value:
            raise errors.Invalid(f"Invalid input for tags. Reason: '{value}' is not a valid tag.")
    return list(dict.fromkeys(values))


def set_tags(session: Session, kind: str, resource_id: str, values: Sequence[str]) -> None:
    session.execute(
        delete(models.Tag).where(
            models.Tag.resource_type == kind, models.Tag.resource_id == resource_id
        )
    )
    for value in check_tags(values):
        session.add(models.Tag(resource_type=kind, resource_id=resource_id, tag=value))


def add_tag(session: Session, kind: str, resource_id: str, value: str) -> None:
    check_tags([value])
    if session.get(models.Tag, (kind, resource_id, value)) is None:
        session.add(models.Tag(resource_type=kind, resource_id=resource_id, tag=value))


def remove_tag(session: Session, kind: str, resource_id: str, value: str) -> None:
    row = session.get(models.Tag, (kind, resource_id, value))
    if row is None:
        raise errors.NotFound(f"Tag {value} could not be found.", code="TagNotFound")
    session.delete(row)


def forget_tags(session: Session, kind: str, resource_id: str) -> None:
    set_tags(session, kind, resource_id, [])


def timestamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")
