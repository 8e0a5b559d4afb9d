"""Host aggregates and the availability zones they define.

An aggregate groups hosts and carries metadata; `availability_zone` in its
metadata puts its hosts in that zone (hosts in no such aggregate are in
`nova`), and a host may not end up in two zones. Every aggregate is also a
placement aggregate with the same uuid on its hosts' resource providers, so
a boot into a zone becomes a `member_of` in the scheduler's placement query.
Called by the API (admin aggregate calls, zone listings) and by the boot
path (which aggregates make a zone, which zone a host is in).
"""

from __future__ import annotations

import contextlib
import re
import uuid as uuidlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from pocketstack.compute import cell_models, cells, hosts, models
from pocketstack.core import errors
from pocketstack.core.context import RequestContext
from pocketstack.placement import service as placement_service

DEFAULT_AZ = "nova"
INTERNAL_AZ = "internal"
AZ_KEY = "availability_zone"
_AZ_NAME = re.compile(r"^[^:]+$")


def now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


@dataclass(frozen=True, slots=True)
class AggregateView:
    id: int
    uuid: str
    name: str
    hosts: list[str]
    metadata: dict[str, str]
    created_at: datetime
    updated_at: datetime | None

    @property
    def availability_zone(self) -> str | None:
        return self.metadata.get(AZ_KEY)


def _views(session: Session, rows: Sequence[models.Aggregate]) -> list[AggregateView]:
    ids = [r.id for r in rows]
    members: dict[int, list[str]] = {i: [] for i in ids}
    metadata: dict[int, dict[str, str]] = {i: {} for i in ids}
    if ids:
        for aggregate_id, host in session.execute(
            select(models.AggregateHost.aggregate_id, models.AggregateHost.host)
            .where(models.AggregateHost.aggregate_id.in_(ids))
            .order_by(models.AggregateHost.host)
        ):
            members[aggregate_id].append(host)
        for item in session.scalars(
            select(models.AggregateMetadata).where(models.AggregateMetadata.aggregate_id.in_(ids))
        ):
            metadata[item.aggregate_id][item.key] = item.value
    return [
        AggregateView(r.id, r.uuid, r.name, members[r.id], metadata[r.id], r.created_at,
                      r.updated_at)
        for r in rows
    ]  # fmt: skip


def _row(session: Session, aggregate_id: int) -> models.Aggregate:
    row = session.get(models.Aggregate, aggregate_id)
    if row is None:
        raise errors.NotFound(f"Aggregate {aggregate_id} could not be found.")
    return row


def _check_az_name(zone: str, failure: type[errors.PocketstackError], prefix: str) -> None:
    if not zone:
        raise failure(f"{prefix}Aggregate does not support empty named availability zone")
    if not _AZ_NAME.match(zone) or len(zone) > 255:
        raise errors.Invalid(
            f"Invalid input for field/attribute availability_zone. Value: {zone}. "
            "It must be 1 to 255 characters without ':'"
        )
    if zone == INTERNAL_AZ:
        raise errors.Invalid(
            f"{prefix}The availability zone of an aggregate cannot be the internal zone "
            f"'{INTERNAL_AZ}'."
        )


def _zones_of_hosts(
    session: Session, host_names: Sequence[str], except_aggregate: int | None
) -> dict[str, set[str]]:
    """Each host's zones from its aggregates (all but `except_aggregate`)."""
    stmt = (
        select(models.AggregateHost.host, models.AggregateMetadata.value)
        .join(
            models.AggregateMetadata,
            models.AggregateMetadata.aggregate_id == models.AggregateHost.aggregate_id,
        )
        .where(models.AggregateMetadata.key == AZ_KEY, models.AggregateHost.host.in_(host_names))
    )
    if except_aggregate is not None:
        stmt = stmt.where(models.AggregateHost.aggregate_id != except_aggregate)
    found: dict[str, set[str]] = {}
    for host, zone in session.execute(stmt):
        found.setdefault(host, set()).add(zone)
    return found


def _check_zone_change(
    ctx: RequestContext,
    session: Session,
    aggregate: models.Aggregate,
    host_names: Sequence[str],
    zone: str,
    failure: type[errors.PocketstackError],
    prefix: str,
    *,
    servers_may_move: bool,
) -> None:
    """A host stays in one zone, and (unless `servers_may_move`) servers never change
    zone under their feet."""
    _check_az_name(zone, failure, prefix)
    conflicting = sorted(
        {z for zs in _zones_of_hosts(session, host_names, aggregate.id).values() for z in zs}
        - {zone}
    )
    if conflicting:
        raise failure(f"{prefix}One or more hosts already in availability zone(s) {conflicting}")
    current = session.scalar(
        select(models.AggregateMetadata.value).where(
            models.AggregateMetadata.aggregate_id == aggregate.id,
            models.AggregateMetadata.key == AZ_KEY,
        )
    )
    if not servers_may_move and current != zone and servers_on(ctx, host_names):
        raise failure(f"{prefix}One or more hosts contain instances in this zone")


def servers_on(ctx: RequestContext, host_names: Sequence[str]) -> int:
    """How many live servers the hosts run, over their cells."""
    by_cell: dict[cells.Cell, list[str]] = {}
    for host in host_names:
        with contextlib.suppress(errors.NotFound):
            by_cell.setdefault(hosts.cell_of_host(ctx.runtime, host), []).append(host)
    total = 0
    table = cell_models.Instance
    for cell, cell_hosts in by_cell.items():
        with cells.database(ctx.runtime, cell).read() as session:
            total += (
                session.scalar(
                    select(func.count()).where(table.host.in_(cell_hosts), table.deleted.is_(False))
                )
                or 0
            )
    return total


def create_aggregate(ctx: RequestContext, name: str, zone: str | None) -> AggregateView:
    if zone is not None:
        _check_az_name(zone, errors.Invalid, "")
    try:
        with ctx.db.write() as session:
            if session.scalar(select(models.Aggregate.id).where(models.Aggregate.name == name)):
                raise errors.Conflict(f"Aggregate {name} already exists.")
            row = models.Aggregate(uuid=str(uuidlib.uuid4()), name=name, created_at=now())
            session.add(row)
            session.flush()
            if zone:
                session.add(models.AggregateMetadata(aggregate_id=row.id, key=AZ_KEY, value=zone))
                session.flush()
            return _views(session, [row])[0]
    except IntegrityError:
        raise errors.Conflict(f"Aggregate {name} already exists.") from None


def list_aggregates(ctx: RequestContext) -> list[AggregateView]:
    with ctx.db.read() as session:
        rows = session.scalars(select(models.Aggregate).order_by(models.Aggregate.id)).all()
        return _views(session, rows)


def get_aggregate(ctx: RequestContext, aggregate_id: int) -> AggregateView:
    with ctx.db.read() as session:
        return _views(session, [_row(session, aggregate_id)])[0]


def update_aggregate(
    ctx: RequestContext, aggregate_id: int, name: str | None, zone: str | None
) -> AggregateView:
    prefix = f"Cannot update aggregate {aggregate_id}. Reason: "
    try:
        with ctx.db.write() as session:
            row = _row(session, aggregate_id)
            if name is not None and name != row.name:
                if session.scalar(select(models.Aggregate.id).where(models.Aggregate.name == name)):
                    raise errors.Conflict(f"Aggregate {name} already exists.")
                row.name = name
            if zone is not None:
                members = _members(session, row.id)
                _check_zone_change(
                    ctx, session, row, members, zone, errors.Invalid, prefix,
                    servers_may_move=True,
                )  # fmt: skip
                session.merge(models.AggregateMetadata(aggregate_id=row.id, key=AZ_KEY, value=zone))
            row.updated_at = now()
            session.flush()
            return _views(session, [row])[0]
    except IntegrityError:
        raise errors.Conflict(f"Aggregate {name} already exists.") from None


def _members(session: Session, aggregate_id: int) -> list[str]:
    return list(
        session.scalars(
            select(models.AggregateHost.host).where(
                models.AggregateHost.aggregate_id == aggregate_id
            )
        )
    )


def delete_aggregate(ctx: RequestContext, aggregate_id: int) -> None:
    with ctx.db.write() as session:
        row = _row(session, aggregate_id)
        if _members(session, row.id):
            raise errors.Invalid(
                f"Cannot remove host from aggregate {aggregate_id}. Reason: Host aggregate is "
                "not empty."
            )
        session.delete(row)


def add_host(ctx: RequestContext, aggregate_id: int, host: str) -> AggregateView:
    hosts.cell_of_host(ctx.runtime, host)  # 404 for a host nobody registered
    prefix = f"Cannot add host to aggregate {aggregate_id}. Reason: "
    with ctx.db.write() as session:
        row = _row(session, aggregate_id)
        if session.get(models.AggregateHost, (row.id, host)) is not None:
            raise errors.Conflict(f"Aggregate {aggregate_id} already has host {host}.")
        zone = session.scalar(
            select(models.AggregateMetadata.value).where(
                models.AggregateMetadata.aggregate_id == row.id,
                models.AggregateMetadata.key == AZ_KEY,
            )
        )
        if zone is not None:
            _check_zone_change(
                ctx, session, row, [host], zone, errors.Conflict, prefix, servers_may_move=True
            )
            if zone != zone_of_host(ctx, host, session) and servers_on(ctx, [host]):
                raise errors.Conflict(
                    f"{prefix}The host cannot be added to the aggregate as the availability "
                    f"zone of the host would change to '{zone}' but the host already has "
                    "instances. Move the instances away from this host then try again."
                )
        session.add(models.AggregateHost(aggregate_id=row.id, host=host))
        row.updated_at = now()
    _mirror(ctx, host)
    return get_aggregate(ctx, aggregate_id)


def remove_host(ctx: RequestContext, aggregate_id: int, host: str) -> AggregateView:
    with ctx.db.write() as session:
        row = _row(session, aggregate_id)
        member = session.get(models.AggregateHost, (row.id, host))
        if member is None:
            raise errors.NotFound(f"Cannot remove host {host} in aggregate {aggregate_id}")
        zone = session.scalar(
            select(models.AggregateMetadata.value).where(
                models.AggregateMetadata.aggregate_id == row.id,
                models.AggregateMetadata.key == AZ_KEY,
            )
        )
        others = _zones_of_hosts(session, [host], row.id).get(host, set())
        if zone is not None and zone not in others and servers_on(ctx, [host]):
            raise errors.Conflict(
                f"Cannot remove host from aggregate {aggregate_id}. Reason: The host cannot be "
                f"removed from the aggregate as the availability zone of the host would change "
                f"from '{zone}' but the host already has instances."
            )
        session.delete(member)
        row.updated_at = now()
    _mirror(ctx, host)
    return get_aggregate(ctx, aggregate_id)


def set_metadata(
    ctx: RequestContext, aggregate_id: int, items: Mapping[str, str | None]
) -> AggregateView:
    """Merge `items` into the metadata; a None value deletes its key."""
    prefix = f"Cannot update metadata of aggregate {aggregate_id}. Reason: "
    with ctx.db.write() as session:
        row = _row(session, aggregate_id)
        if AZ_KEY in items:  # Nova refuses a null zone too: a zone is never removed here
            _check_zone_change(
                ctx, session, row, _members(session, row.id), items[AZ_KEY] or "",
                errors.Invalid, prefix,
                servers_may_move=False,
            )  # fmt: skip
        for key, value in items.items():
            if value is None:
                session.execute(
                    delete(models.AggregateMetadata).where(
                        models.AggregateMetadata.aggregate_id == row.id,
                        models.AggregateMetadata.key == key,
                    )
                )
            else:
                session.merge(models.AggregateMetadata(aggregate_id=row.id, key=key, value=value))
        row.updated_at = now()
        session.flush()
        return _views(session, [row])[0]


def _mirror(ctx: RequestContext, host: str) -> None:
    """Make the host's resource provider a member of exactly its aggregates in placement
    (a provider not registered yet gets them on the next change)."""
    with ctx.db.read() as session:
        wanted = sorted(
            session.scalars(
                select(models.Aggregate.uuid)
                .join(
                    models.AggregateHost, models.AggregateHost.aggregate_id == models.Aggregate.id
                )
                .where(models.AggregateHost.host == host)
            )
        )
    provider = hosts.provider_uuid(host)
    for _attempt in range(5):
        try:
            current = placement_service.get_provider(ctx, provider)
            placement_service.set_provider_aggregates(ctx, provider, current.generation, wanted)
            return
        except errors.NotFound:
            return
        except errors.GenerationConflict:
            continue  # a heartbeat moved the provider meanwhile


# Availability zones ------------------------------------------------------------------------


def zone_of_host(ctx: RequestContext, host: str, session: Session | None = None) -> str:
    """The host's zone: its aggregates' `availability_zone`, else the default."""
    if session is None:
        with ctx.db.read() as own:
            return zone_of_host(ctx, host, own)
    zones = _zones_of_hosts(session, [host], None).get(host)
    return min(zones) if zones else DEFAULT_AZ


def zones_of_hosts(ctx: RequestContext) -> dict[str, str]:
    """Every host that is in an aggregate zone, with its zone (others are in `nova`)."""
    with ctx.db.read() as session:
        stmt = (
            select(models.AggregateHost.host, models.AggregateMetadata.value)
            .join(
                models.AggregateMetadata,
                models.AggregateMetadata.aggregate_id == models.AggregateHost.aggregate_id,
            )
            .where(models.AggregateMetadata.key == AZ_KEY)
        )
        return {host: zone for host, zone in session.execute(stmt)}


def aggregates_of_zone(ctx: RequestContext, zone: str) -> list[str]:
    """The uuids of the aggregates that make `zone` (none for the default zone's hosts that
    are in no zone aggregate)."""
    with ctx.db.read() as session:
        return list(
            session.scalars(
                select(models.Aggregate.uuid)
                .join(
                    models.AggregateMetadata,
                    models.AggregateMetadata.aggregate_id == models.Aggregate.id,
                )
                .where(
                    models.AggregateMetadata.key == AZ_KEY, models.AggregateMetadata.value == zone
                )
            )
        )


@dataclass(frozen=True, slots=True)
class ServiceInZone:
    host: str
    binary: str
    available: bool  # enabled
    active: bool  # up
    updated_at: datetime | None


@dataclass(frozen=True, slots=True)
class Zone:
    name: str
    available: bool
    services: list[ServiceInZone]


def list_zones(ctx: RequestContext, services: Sequence[ServiceInZone]) -> list[Zone]:
    """The zones that have compute services: available when one of them is enabled."""
    by_host = zones_of_hosts(ctx)
    grouped: dict[str, list[ServiceInZone]] = {}
    for service in services:
        grouped.setdefault(by_host.get(service.host, DEFAULT_AZ), []).append(service)
    return [
        Zone(name, any(s.available for s in members), members)
        for name, members in sorted(grouped.items())
    ]
