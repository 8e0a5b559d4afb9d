"""Flavors: sizes of servers, their extra specs and who may use the private ones.

As in Nova, a flavor is found by its `flavorid` (the id users see), private
flavors are visible to admins and to the projects given access, and a server
keeps a copy of its flavor, so changing or deleting a flavor never changes a
running server.
"""

from __future__ import annotations

import uuid as uuidlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from sqlalchemy import and_, delete, exists, or_, select, true
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from pocketstack.compute import models
from pocketstack.core import errors, pagination
from pocketstack.core.context import RequestContext
from pocketstack.core.runtime import Runtime

SORT_KEYS = ("created_at", "description", "disabled", "ephemeral_gb", "flavorid", "id",
             "is_public", "memory_mb", "name", "root_gb", "rxtx_factor", "swap", "updated_at",
             "vcpus")  # fmt: skip
# Nova's historical defaults, which DevStack-minded tools (and Tempest's "1"/"2") expect.
STANDARD = (
    ("1", "m1.tiny", 1, 512, 1),
    ("2", "m1.small", 1, 2048, 20),
    ("3", "m1.medium", 2, 4096, 40),
    ("4", "m1.large", 4, 8192, 80),
    ("5", "m1.xlarge", 8, 16384, 160),
    # Sized for the built-in busybox and tiny-vm images: a hundred fit on a small host.
    ("6", "tiny", 1, 128, 1),
)


def now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


@dataclass(frozen=True, slots=True)
class NewFlavor:
    name: str
    vcpus: int
    memory_mb: int
    root_gb: int
    flavorid: str | None = None
    ephemeral_gb: int = 0
    swap: int = 0
    rxtx_factor: float = 1.0
    is_public: bool = True
    description: str | None = None


@dataclass(frozen=True, slots=True)
class FlavorView:
    flavorid: str
    name: str
    vcpus: int
    memory_mb: int
    root_gb: int
    ephemeral_gb: int
    swap: int
    rxtx_factor: float
    is_public: bool
    disabled: bool
    description: str | None
    extra_specs: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class FlavorQuery:
    is_public: bool | None = True
    min_disk: int | None = None
    min_ram: int | None = None
    sort_key: str = "flavorid"
    sort_dir: str = "asc"
    marker: str | None = None
    limit: int | None = None


def _view(row: models.Flavor, specs: Mapping[str, str]) -> FlavorView:
    return FlavorView(
        flavorid=row.flavorid,
        name=row.name,
        vcpus=row.vcpus,
        memory_mb=row.memory_mb,
        root_gb=row.root_gb,
        ephemeral_gb=row.ephemeral_gb,
        swap=row.swap,
        rxtx_factor=row.rxtx_factor,
        is_public=row.is_public,
        disabled=row.disabled,
        description=row.description,
        extra_specs=dict(specs),
    )


def _specs(session: Session, flavor_ids: Sequence[int]) -> dict[int, dict[str, str]]:
    found: dict[int, dict[str, str]] = {i: {} for i in flavor_ids}
    if flavor_ids:
        rows = session.execute(
            select(models.FlavorExtraSpec).where(models.FlavorExtraSpec.flavor_id.in_(flavor_ids))
        ).scalars()
        for spec in rows:
            found[spec.flavor_id][spec.key] = spec.value
    return found


def _accessible(ctx: RequestContext) -> object:
    """Public flavors, and private ones shared with the caller's project."""
    shared = exists().where(
        models.FlavorProject.flavor_id == models.Flavor.id,
        models.FlavorProject.project_id == (ctx.project_id or ""),
    )
    return or_(models.Flavor.is_public == true(), shared)


def _row(session: Session, ctx: RequestContext | None, flavorid: str) -> models.Flavor:
    stmt = select(models.Flavor).where(models.Flavor.flavorid == flavorid)
    if ctx is not None and not ctx.is_admin:
        stmt = stmt.where(_accessible(ctx))  # type: ignore[arg-type]
    row = session.scalar(stmt)
    if row is None:
        raise errors.NotFound(f"Flavor {flavorid} could not be found.")
    return row


def get_flavor(ctx: RequestContext, flavorid: str) -> FlavorView:
    with ctx.db.read() as session:
        row = _row(session, ctx, flavorid)
        return _view(row, _specs(session, [row.id])[row.id])


def find_for_boot(ctx: RequestContext, flavorid: str) -> FlavorView:
    """The flavor a server asks for; a missing or inaccessible one is the request's fault."""
    try:
        flavor = get_flavor(ctx, flavorid)
    except errors.NotFound:
        raise errors.Invalid(f"Flavor {flavorid} could not be found.") from None
    if flavor.disabled:
        raise errors.Invalid(f"Flavor {flavorid} is disabled.")
    return flavor


def list_flavors(ctx: RequestContext, query: FlavorQuery) -> list[FlavorView]:
    stmt = select(models.Flavor).where(models.Flavor.disabled.is_(False))
    if not ctx.is_admin:
        stmt = stmt.where(_accessible(ctx))  # type: ignore[arg-type]
        if query.is_public is False:
            stmt = stmt.where(models.Flavor.is_public.is_(False))
    elif query.is_public is not None:
        stmt = stmt.where(models.Flavor.is_public.is_(query.is_public))
    if query.min_disk is not None:
        stmt = stmt.where(models.Flavor.root_gb >= query.min_disk)
    if query.min_ram is not None:
        stmt = stmt.where(models.Flavor.memory_mb >= query.min_ram)
    with ctx.db.read() as session:
        marker = None
        if query.marker is not None:
            marker = session.scalar(
                select(models.Flavor).where(models.Flavor.flavorid == query.marker)
            )
            if marker is None:
                raise errors.Invalid(f"marker [{query.marker}] not found")
        sort = [pagination.SortKey(query.sort_key, query.sort_dir == "desc")]
        if query.sort_key != "flavorid":
            sort.append(pagination.SortKey("flavorid", query.sort_dir == "desc"))
        stmt = pagination.apply(
            stmt, models.Flavor, sort, marker, query.limit, nulls_as={"description": ""}
        )
        rows = session.scalars(stmt).all()
        specs = _specs(session, [r.id for r in rows])
        return [_view(r, specs[r.id]) for r in rows]


def create_flavor(ctx: RequestContext, spec: NewFlavor) -> FlavorView:
    flavorid = spec.flavorid or str(uuidlib.uuid4())
    try:
        with ctx.db.write() as session:
            clash = session.scalar(
                select(models.Flavor).where(
                    or_(models.Flavor.flavorid == flavorid, models.Flavor.name == spec.name)
                )
            )
            if clash is not None:
                which = f"ID {flavorid}" if clash.flavorid == flavorid else f"name {spec.name}"
                raise errors.Conflict(f"Flavor with {which} already exists.")
            row = models.Flavor(
                flavorid=flavorid,
                name=spec.name,
                vcpus=spec.vcpus,
                memory_mb=spec.memory_mb,
                root_gb=spec.root_gb,
                ephemeral_gb=spec.ephemeral_gb,
                swap=spec.swap,
                rxtx_factor=spec.rxtx_factor,
                is_public=spec.is_public,
                disabled=False,
                description=spec.description,
                created_at=now(),
            )
            session.add(row)
            session.flush()
            return _view(row, {})
    except IntegrityError:
        raise errors.Conflict(f"Flavor with name {spec.name} already exists.") from None


def update_flavor(ctx: RequestContext, flavorid: str, description: str | None) -> FlavorView:
    with ctx.db.write() as session:
        row = _row(session, None, flavorid)
        row.description = description
        row.updated_at = now()
        return _view(row, _specs(session, [row.id])[row.id])


def delete_flavor(ctx: RequestContext, flavorid: str) -> None:
    with ctx.db.write() as session:
        session.delete(_row(session, None, flavorid))


# Extra specs ---------------------------------------------------------------------------


def extra_specs(ctx: RequestContext, flavorid: str) -> dict[str, str]:
    return get_flavor(ctx, flavorid).extra_specs


def set_extra_specs(ctx: RequestContext, flavorid: str, specs: Mapping[str, str]) -> None:
    """Add or overwrite the given keys; others stay."""
    with ctx.db.write() as session:
        row = _row(session, None, flavorid)
        for key, value in specs.items():
            session.merge(models.FlavorExtraSpec(flavor_id=row.id, key=key, value=value))
        row.updated_at = now()


def delete_extra_spec(ctx: RequestContext, flavorid: str, key: str) -> None:
    with ctx.db.write() as session:
        row = _row(session, None, flavorid)
        deleted = session.execute(
            delete(models.FlavorExtraSpec).where(
                and_(models.FlavorExtraSpec.flavor_id == row.id, models.FlavorExtraSpec.key == key)
            )
        )
        if not getattr(deleted, "rowcount", 0):
            raise errors.NotFound(f"Flavor {flavorid} has no extra specs with key {key}.")


# Access to private flavors ---------------------------------------------------------------


def access_list(ctx: RequestContext, flavorid: str) -> tuple[bool, list[str]]:
    """Whether the flavor is public, and the projects given access to it."""
    with ctx.db.read() as session:
        row = _row(session, None, flavorid)
        projects = session.scalars(
            select(models.FlavorProject.project_id)
            .where(models.FlavorProject.flavor_id == row.id)
            .order_by(models.FlavorProject.project_id)
        ).all()
        return row.is_public, list(projects)


def add_access(ctx: RequestContext, flavorid: str, project_id: str) -> list[str]:
    with ctx.db.write() as session:
        row = _row(session, None, flavorid)
        if row.is_public:
            raise errors.Conflict("Can not add access to a public flavor.")
        granted = session.get(models.FlavorProject, (row.id, project_id))
        if granted is not None:
            raise errors.Conflict(
                f"Flavor access already exists for flavor {flavorid} and project "
                f"{project_id} combination."
            )
        session.add(models.FlavorProject(flavor_id=row.id, project_id=project_id))
    return access_list(ctx, flavorid)[1]


def remove_access(ctx: RequestContext, flavorid: str, project_id: str) -> list[str]:
    with ctx.db.write() as session:
        row = _row(session, None, flavorid)
        granted = session.get(models.FlavorProject, (row.id, project_id))
        if granted is None:
            raise errors.NotFound(
                f"Flavor access not found for {flavorid} / {project_id} combination."
            )
        session.delete(granted)
    return access_list(ctx, flavorid)[1]


def prepare(runtime: Runtime) -> None:
    """Nova's classic m1.* flavors on a new cloud (only when it has no flavors at all)."""
    with runtime.db.write() as session:
        if session.scalar(select(models.Flavor.id).limit(1)) is not None:
            return
        for flavorid, name, vcpus, ram, disk in STANDARD:
            session.add(
                models.Flavor(
                    flavorid=flavorid,
                    name=name,
                    vcpus=vcpus,
                    memory_mb=ram,
                    root_gb=disk,
                    ephemeral_gb=0,
                    swap=0,
                    rxtx_factor=1.0,
                    is_public=True,
                    disabled=False,
                    created_at=now(),
                )
            )
