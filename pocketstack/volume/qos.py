"""QoS specs (`qos-specs`, admin): named limits associated with volume types. Front-end
specs (`consumer` front-end or both) travel to the hypervisor in the connection_info of
every attachment of a volume of an associated type, as Cinder hands them to Nova."""

from __future__ import annotations

from collections.abc import Mapping

from sqlalchemy import select
from sqlalchemy.orm import Session

from pocketstack.core import errors
from pocketstack.core.context import RequestContext
from pocketstack.volume import models
from pocketstack.volume import service as volume_service

CONSUMERS = ("front-end", "back-end", "both")


def _check_consumer(consumer: str) -> None:
    if consumer not in CONSUMERS:
        raise errors.Invalid(f"Invalid input: valid consumers of QoS specs are "
                             f"{', '.join(CONSUMERS)}, not {consumer!r}.")  # fmt: skip


def _find(session: Session, specs_id: str) -> models.QosSpecs:
    row = session.get(models.QosSpecs, specs_id)
    if row is None:
        raise errors.NotFound(f"QoS spec {specs_id} could not be found.")
    return row


def _types_of(session: Session, specs_id: str) -> list[models.VolumeType]:
    stmt = select(models.VolumeType).where(models.VolumeType.qos_specs_id == specs_id)
    return list(session.scalars(stmt.order_by(models.VolumeType.name)))


def create(
    ctx: RequestContext, name: str, consumer: str, specs: Mapping[str, str]
) -> models.QosSpecs:
    _check_consumer(consumer)
    with ctx.db.write() as session:
        if session.scalar(select(models.QosSpecs).where(models.QosSpecs.name == name)):
            raise errors.Conflict(f"QoS Specs {name} already exists.")
        row = models.QosSpecs(
            id=volume_service.new_id(), name=name, consumer=consumer, specs=dict(specs),
            created_at=volume_service.now(),
        )  # fmt: skip
        session.add(row)
    return row


def list_specs(ctx: RequestContext) -> list[models.QosSpecs]:
    with ctx.db.read() as session:
        stmt = select(models.QosSpecs).order_by(models.QosSpecs.created_at, models.QosSpecs.id)
        return list(session.scalars(stmt))


def get(ctx: RequestContext, specs_id: str) -> models.QosSpecs:
    with ctx.db.read() as session:
        return _find(session, specs_id)


def set_keys(ctx: RequestContext, specs_id: str, changes: Mapping[str, str | None]) -> None:
    """Set keys (a `consumer` key changes the consumer; a null value drops the key)."""
    with ctx.db.write() as session:
        row = _find(session, specs_id)
        specs = dict(row.specs)
        for key, value in changes.items():
            if key == "consumer":
                _check_consumer(str(value))
                row.consumer = str(value)
            elif value is None:
                specs.pop(key, None)
            else:
                specs[key] = value
        row.specs = specs


def delete_keys(ctx: RequestContext, specs_id: str, keys: list[str]) -> None:
    with ctx.db.write() as session:
        row = _find(session, specs_id)
        missing = [k for k in keys if k not in row.specs]
        if missing:
            raise errors.NotFound(f"QoS spec {specs_id} has no key {', '.join(missing)}.")
        row.specs = {k: v for k, v in row.specs.items() if k not in keys}


def delete(ctx: RequestContext, specs_id: str, force: bool) -> None:
    """Delete the specs; still associated with types, only with `force` (which lets go)."""
    with ctx.db.write() as session:
        row = _find(session, specs_id)
        types = _types_of(session, specs_id)
        if types and not force:
            raise errors.Invalid(f"QoS specs {specs_id} still in use by volume types "
                                 f"{', '.join(t.name for t in types)}; delete with "
                                 "force=True to disassociate them.")  # fmt: skip
        for volume_type in types:
            volume_type.qos_specs_id = None
        session.delete(row)


def associations(ctx: RequestContext, specs_id: str) -> list[models.VolumeType]:
    with ctx.db.read() as session:
        _find(session, specs_id)
        return _types_of(session, specs_id)


def associate(ctx: RequestContext, specs_id: str, type_id: str) -> None:
    with ctx.db.write() as session:
        _find(session, specs_id)
        volume_type = volume_service.find_type(ctx, session, type_id)
        if volume_type.qos_specs_id not in (None, specs_id):
            raise errors.Invalid(
                f"Invalid volume type: type {type_id} is already associated with QoS specs "
                f"{volume_type.qos_specs_id}; disassociate it first."
            )
        volume_type.qos_specs_id = specs_id


def disassociate(ctx: RequestContext, specs_id: str, type_id: str | None) -> None:
    """Let go of one type, or (`type_id` None) of every type."""
    with ctx.db.write() as session:
        _find(session, specs_id)
        if type_id is None:
            types = _types_of(session, specs_id)
        else:
            types = [volume_service.find_type(ctx, session, type_id)]
        for volume_type in types:
            if volume_type.qos_specs_id == specs_id:
                volume_type.qos_specs_id = None
