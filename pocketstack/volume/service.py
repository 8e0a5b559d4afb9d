"""Block storage domain logic: volume types, volumes, snapshots, quotas.

API handlers call these with a RequestContext; they check state transitions
and quotas inside one write transaction, then leave the backend work to the
agent (agent.py) by the row's status, and wake it.
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from pocketstack.core import errors, pagination
from pocketstack.core.context import RequestContext
from pocketstack.core.runtime import Runtime
from pocketstack.image import service as image_service
from pocketstack.volume import messages, models
from pocketstack.volume.drivers import Backend

DEFAULT_TYPE = "__DEFAULT__"
AVAILABILITY_ZONE = "nova"
# Set while this process's agent runs (os-services shows it up).
WAKE_KEY = "volume.agent_wake"
BACKEND_KEY = "volume.backend"
# The one volume service of this cloud, as `service_uuid` names it (stable across restarts).
VENDOR = "Open Source"
DRIVER_VERSION = "1.0"
SERVICE_UUID = str(uuid.uuid5(uuid.NAMESPACE_URL, "pocketstack:volume"))
# Cinder's default quotas (`quota_volumes`, `quota_snapshots`, ...).
DEFAULT_QUOTAS = {
    "volumes": 10,
    "snapshots": 10,
    "gigabytes": 1000,
    "backups": 10,
    "backup_gigabytes": 1000,
    "per_volume_gigabytes": -1,
    "groups": 10,
}
DELETABLE = ("available", "error", "error_restoring", "error_extending", "error_managing")
SORT_KEYS = ("id", "name", "status", "size", "created_at", "updated_at", "availability_zone")
SNAPSHOT_SORT_KEYS = ("id", "name", "status", "size", "created_at", "updated_at", "volume_id")


def now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def new_id() -> str:
    return str(uuid.uuid4())


def wake(ctx: RequestContext) -> None:
    """Wake this process's volume agent (after writes it acts on)."""
    wake_agent: Callable[[], None] | None = ctx.runtime.state.get(WAKE_KEY)
    if wake_agent is not None:
        wake_agent()


def _host(ctx: RequestContext) -> str:
    name = backend_of(ctx).name
    return f"pocketstack@{name}#{name}"


def backend_of(ctx: RequestContext) -> Backend:
    """This process's backend (agent.install put it there)."""
    backend: Backend = ctx.runtime.state[BACKEND_KEY]
    return backend


def prepare(runtime: Runtime) -> None:
    """Every start: the default volume type exists, as Cinder's `__DEFAULT__`."""
    with runtime.db.write() as session:
        found = session.scalar(
            select(models.VolumeType).where(models.VolumeType.name == DEFAULT_TYPE)
        )
        if found is None:
            session.add(
                models.VolumeType(
                    id=new_id(),
                    name=DEFAULT_TYPE,
                    description="Default Volume Type",
                    is_public=True,
                    extra_specs={},
                    created_at=now(),
                )
            )


def pool_name(ctx: RequestContext) -> str:
    return _host(ctx)


def pool_capabilities(ctx: RequestContext) -> dict[str, Any]:
    """What the scheduler knows of the pool: the backend's name and the space of the file
    system of the state dir, where its volumes are."""
    backend = backend_of(ctx)
    usage = shutil.disk_usage(ctx.runtime.settings.state_dir)
    total, free = usage.total >> 30, usage.free >> 30
    return {
        "volume_backend_name": backend.name, "vendor_name": VENDOR,
        "driver_version": DRIVER_VERSION, "storage_protocol": backend.name,
        "QoS_support": False, "total_capacity_gb": total, "free_capacity_gb": free,
        "reserved_percentage": 0, "thin_provisioning_support": True, "multiattach": True,
        "timestamp": now().isoformat(timespec="microseconds"),
    }  # fmt: skip


def _spec_matches(required: str, offered: Any) -> bool:
    """One extra spec against one capability, in Cinder's spec syntax: `<is> True`,
    `<in> part`, `<or> a <or> b`, or a plain value (equal, ignoring case)."""
    shown = str(offered).strip().lower()
    words = required.split()
    if words[:1] == ["<is>"]:
        return _is_true_spec(required) == (shown == "true")
    if words[:1] == ["<in>"]:
        return required.removeprefix("<in>").strip().lower() in shown
    if "<or>" in words:
        return shown in {w.lower() for w in words if w != "<or>"}
    return required.strip().lower() == shown


def check_not_frozen(ctx: RequestContext, session: Session, what: str) -> None:
    """A frozen backend (os-services freeze, as before a failover) takes no management
    operation; volumes already attached keep working."""
    host = pool_name(ctx).split("#")[0]
    state = session.get(models.ServiceState, ("cinder-volume", host))
    if state is not None and state.frozen:
        raise errors.Invalid(
            f"Invalid input received: cannot {what}: the volume backend {host} is frozen; "
            "thaw it first (PUT os-services/thaw)."
        )


def _no_backend_reason(
    ctx: RequestContext, session: Session, volume_type: models.VolumeType
) -> str | None:
    """Why the scheduler places no volume of `volume_type` (None: it does). The one pool
    must run an enabled cinder-volume and offer every capability the type's extra specs
    ask for (bare keys the pool reports, or `capabilities:<key>`). Keys the pool reports
    nothing about (replication_enabled, a driver's own keys) are left alone."""
    host = pool_name(ctx).split("#")[0]
    state = session.get(models.ServiceState, ("cinder-volume", host))
    if state is not None and state.disabled:
        return f"the cinder-volume service on {host} is disabled"
    offered = pool_capabilities(ctx)
    for key, required in volume_type.extra_specs.items():
        name = key.removeprefix("capabilities:")
        if name not in offered:
            continue
        if not _spec_matches(required, offered[name]):
            return f"the pool offers {name}={offered[name]!r}, the type asks for {required!r}"
    return None


def active_site(ctx: RequestContext) -> str:
    """`primary`, or `secondary` after a failover (`pocketstack manage volume failover`)."""
    return backend_of(ctx).active_site()


# Volume types ---------------------------------------------------------------------------


def _is_true_spec(value: str | None) -> bool:
    """`"<is> True"` (the form Cinder documents) or a plain `True`."""
    return value is not None and value.replace("<is>", "").strip().lower() == "true"


def _visible_type(ctx: RequestContext, session: Session, row: models.VolumeType) -> bool:
    if row.is_public or ctx.is_admin:
        return True
    access = session.get(models.VolumeTypeAccess, (row.id, ctx.project_id or ""))
    return access is not None


def find_type(ctx: RequestContext, session: Session, ref: str) -> models.VolumeType:
    row = session.get(models.VolumeType, ref) or session.scalar(
        select(models.VolumeType).where(models.VolumeType.name == ref)
    )
    if row is None or not _visible_type(ctx, session, row):
        raise errors.NotFound(f"Volume type {ref} could not be found.")
    return row


def list_types(ctx: RequestContext, is_public: bool | None) -> list[models.VolumeType]:
    with ctx.db.read() as session:
        rows = session.scalars(select(models.VolumeType).order_by(models.VolumeType.name))
        found = [r for r in rows if _visible_type(ctx, session, r)]
    if is_public is not None:
        found = [r for r in found if r.is_public == is_public]
    return found


def get_type(ctx: RequestContext, ref: str) -> models.VolumeType:
    with ctx.db.read() as session:
        return find_type(ctx, session, ref)


def default_type(ctx: RequestContext) -> models.VolumeType:
    return get_type(ctx, DEFAULT_TYPE)


def create_type(
    ctx: RequestContext, name: str, description: str | None, is_public: bool,
    extra_specs: Mapping[str, str],
) -> models.VolumeType:  # fmt: skip
    with ctx.db.write() as session:
        if session.scalar(select(models.VolumeType.id).where(models.VolumeType.name == name)):
            raise errors.Conflict(f"Volume Type {name} already exists.")
        row = models.VolumeType(
            id=new_id(), name=name, description=description, is_public=is_public,
            extra_specs=dict(extra_specs), created_at=now(),
        )  # fmt: skip
        session.add(row)
    return row


def update_type(ctx: RequestContext, type_id: str, changes: Mapping[str, Any]) -> models.VolumeType:
    with ctx.db.write() as session:
        row = find_type(ctx, session, type_id)
        name = changes.get("name")
        if name is not None and name != row.name:
            taken = select(models.VolumeType.id).where(models.VolumeType.name == name)
            if session.scalar(taken):
                raise errors.Conflict(f"Volume Type {name} already exists.")
            row.name = name
        if "description" in changes:
            row.description = changes["description"]
        if changes.get("is_public") is not None:
            row.is_public = bool(changes["is_public"])
        row.updated_at = now()
    return row


def delete_type(ctx: RequestContext, type_id: str) -> None:
    with ctx.db.write() as session:
        row = find_type(ctx, session, type_id)
        if row.name == DEFAULT_TYPE:
            raise errors.Invalid("Default volume type can not be deleted.")
        used = select(func.count()).where(models.Volume.volume_type_id == row.id)
        if session.scalar(used):
            raise errors.Invalid(f"Target volume type {row.id} is still in use.")
        session.delete(row)


def without_key(items: Mapping[str, str], key: str, missing: str) -> dict[str, str]:
    """`items` less `key` (specs, metadata); a 404 saying `missing` when it has no such key."""
    if key not in items:
        raise errors.NotFound(missing)
    return {k: v for k, v in items.items() if k != key}


def set_extra_specs(ctx: RequestContext, type_id: str, specs: Mapping[str, str]) -> dict[str, str]:
    with ctx.db.write() as session:
        row = find_type(ctx, session, type_id)
        row.extra_specs = {**row.extra_specs, **specs}
        row.updated_at = now()
        return dict(row.extra_specs)


def delete_extra_spec(ctx: RequestContext, type_id: str, key: str) -> None:
    with ctx.db.write() as session:
        row = find_type(ctx, session, type_id)
        row.extra_specs = without_key(
            row.extra_specs, key, f"Volume Type {type_id} has no extra specs with key {key}."
        )


def type_access(ctx: RequestContext, type_id: str) -> list[str]:
    with ctx.db.read() as session:
        row = find_type(ctx, session, type_id)
        if row.is_public:
            raise errors.NotFound("Access list not available for public volume types.")
        query = select(models.VolumeTypeAccess.project_id).where(
            models.VolumeTypeAccess.volume_type_id == row.id
        )
        return list(session.scalars(query))


def set_type_access(ctx: RequestContext, type_id: str, project_id: str, allow: bool) -> None:
    with ctx.db.write() as session:
        row = find_type(ctx, session, type_id)
        if row.is_public:
            raise errors.Invalid("Type access modification is not applicable to public type.")
        found = session.get(models.VolumeTypeAccess, (row.id, project_id))
        if allow and found is not None:
            raise errors.Conflict(
                f"Volume type access for {row.id} / {project_id} combination already exists."
            )
        if not allow and found is None:
            raise errors.NotFound(f"Volume type access not found for {row.id} / {project_id}.")
        if allow:
            session.add(models.VolumeTypeAccess(volume_type_id=row.id, project_id=project_id))
        else:
            session.delete(found)


# Quotas ---------------------------------------------------------------------------------


def quota_limits(ctx: RequestContext, project_id: str) -> dict[str, int]:
    with ctx.db.read() as session:
        return limits_of(session, project_id)


# Rows of the `default` quota class are kept under this name instead of a project id.
DEFAULT_CLASS = "class:default"


def _rows_of(session: Session, owner: str) -> dict[str, int]:
    rows = session.scalars(select(models.QuotaLimit).where(models.QuotaLimit.project_id == owner))
    return {row.resource: row.hard_limit for row in rows}


# Quotas that also count per volume type, as `<resource>_<type name>` (unlimited unless set).
PER_TYPE_QUOTAS = ("volumes", "snapshots", "gigabytes")


def _defaults(session: Session) -> dict[str, int]:
    names = session.scalars(select(models.VolumeType.name).order_by(models.VolumeType.name))
    per_type = {f"{resource}_{name}": -1 for name in names for resource in PER_TYPE_QUOTAS}
    return {**DEFAULT_QUOTAS, **per_type}


def default_limits(ctx: RequestContext) -> dict[str, int]:
    """The defaults every project gets: the built-in ones, as the default class sets them."""
    with ctx.db.read() as session:
        return {**_defaults(session), **_rows_of(session, DEFAULT_CLASS)}


def limits_of(session: Session, project_id: str) -> dict[str, int]:
    known = _defaults(session)
    set_here = {**_rows_of(session, DEFAULT_CLASS), **_rows_of(session, project_id)}
    return {**known, **{k: v for k, v in set_here.items() if k in known}}


def quota_usage(ctx: RequestContext, project_id: str) -> dict[str, int]:
    with ctx.db.read() as session:
        return usage_of(session, project_id)


def usage_of(session: Session, project_id: str) -> dict[str, int]:
    """What the project uses of every quota, the per-type ones included."""
    usage = {resource: 0 for resource in _defaults(session)}
    volumes = session.execute(
        select(models.VolumeType.name, func.count(), func.coalesce(func.sum(models.Volume.size), 0))
        .join(models.VolumeType, models.VolumeType.id == models.Volume.volume_type_id)
        .where(models.Volume.project_id == project_id)
        .group_by(models.VolumeType.name)
    )
    for name, count, size in volumes:
        usage["volumes"] += count
        usage["gigabytes"] += size
        usage[f"volumes_{name}"], usage[f"gigabytes_{name}"] = count, size
    snapshots = session.execute(
        select(
            models.VolumeType.name, func.count(), func.coalesce(func.sum(models.Snapshot.size), 0)
        )
        .join(models.Volume, models.Volume.id == models.Snapshot.volume_id)
        .join(models.VolumeType, models.VolumeType.id == models.Volume.volume_type_id)
        .where(models.Snapshot.project_id == project_id)
        .group_by(models.VolumeType.name)
    )
    for name, count, size in snapshots:
        usage["snapshots"] += count
        usage["gigabytes"] += size
        usage[f"snapshots_{name}"] = count
        usage[f"gigabytes_{name}"] = usage.get(f"gigabytes_{name}", 0) + size
    backups = session.execute(
        select(func.count(), func.coalesce(func.sum(models.Backup.size), 0)).where(
            models.Backup.project_id == project_id
        )
    ).one()
    usage["backups"], usage["backup_gigabytes"] = backups[0], backups[1]
    usage["groups"] = (
        session.scalar(select(func.count()).where(models.Group.project_id == project_id)) or 0
    )
    return usage


def update_quotas(ctx: RequestContext, project_id: str, limits: Mapping[str, int]) -> None:
    with ctx.db.write() as session:
        unknown = sorted(set(limits) - set(_defaults(session)))
        if unknown:
            raise errors.Invalid(
                f"Bad key(s) in quota set: {', '.join(unknown)}. Per-type keys name an "
                "existing volume type (volumes_<type>, snapshots_<type>, gigabytes_<type>)."
            )
        for resource, hard_limit in limits.items():
            if hard_limit < -1:
                raise errors.Invalid(f"Quota limit for {resource} must be -1 or greater.")
            row = session.get(models.QuotaLimit, (project_id, resource))
            if row is None:
                session.add(models.QuotaLimit(
                    project_id=project_id, resource=resource, hard_limit=hard_limit
                ))  # fmt: skip
            else:
                row.hard_limit = hard_limit


def delete_quotas(ctx: RequestContext, project_id: str) -> None:
    with ctx.db.write() as session:
        for row in session.scalars(
            select(models.QuotaLimit).where(models.QuotaLimit.project_id == project_id)
        ):
            session.delete(row)


_OVER_LIMIT = {
    "volumes": "VolumeLimitExceeded: Maximum number of volumes allowed ({limit}) exceeded",
    "snapshots": "SnapshotLimitExceeded: Maximum number of snapshots allowed ({limit}) exceeded",
    "backups": "BackupLimitExceeded: Maximum number of backups allowed ({limit}) exceeded",
    "gigabytes": "VolumeSizeExceedsAvailableQuota: Requested volume or snapshot exceeds "
    "allowed gigabytes quota. Requested {wanted}G, quota is {limit}G and {used}G has been "
    "consumed.",
    "groups": "GroupLimitExceeded: Maximum number of groups allowed ({limit}) exceeded",
    "backup_gigabytes": "VolumeBackupSizeExceedsAvailableQuota: Requested backup exceeds "
    "allowed Backup gigabytes quota. Requested {wanted}G, quota is {limit}G and {used}G has "
    "been consumed.",
}


def check_quota(
    session: Session, project_id: str, volume_type: str | None = None, **wanted: int
) -> None:
    """Raise RequestTooLarge (413 overLimit, as Cinder) if adding `wanted` (volumes=1,
    gigabytes=5, backups=1, ...) would pass one of the project's limits, or one of the
    per-type limits of `volume_type` (a type name)."""
    limits, usage = limits_of(session, project_id), usage_of(session, project_id)
    per_volume = limits["per_volume_gigabytes"]
    gigabytes = wanted.get("gigabytes", 0)
    if per_volume >= 0 and wanted.get("volumes") and gigabytes > per_volume:
        raise errors.RequestTooLarge(
            f"VolumeSizeExceedsLimit: Requested volume size {gigabytes}G is larger than "
            f"maximum allowed limit {per_volume}G."
        )
    checks = [(resource, resource, amount) for resource, amount in wanted.items()]
    if volume_type is not None:
        checks += [(f"{r}_{volume_type}", r, a) for r, a in wanted.items() if r in PER_TYPE_QUOTAS]
    for quota, resource, amount in checks:
        limit, used = limits.get(quota, -1), usage.get(quota, 0)
        if not amount or limit < 0 or used + amount <= limit:
            continue
        message = _OVER_LIMIT[resource].format(limit=limit, wanted=amount, used=used)
        raise errors.RequestTooLarge(
            message + (f" (quota {quota!r})." if quota != resource else "")
        )


# Volumes --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class VolumeView:
    """A volume as the API shows it: the row, its type and its attachments."""

    row: models.Volume
    type_name: str
    attachments: tuple[models.Attachment, ...]
    encrypted: bool = False


@dataclass(frozen=True, slots=True)
class VolumeQuery:
    all_projects: bool = False
    project_id: str | None = None
    name: str | None = None
    status: str | None = None
    bootable: bool | None = None
    metadata: Mapping[str, str] | None = None
    sort: tuple[tuple[str, bool], ...] = (("created_at", True),)
    marker: str | None = None
    limit: int | None = None
    offset: int = 0
    with_count: bool = False


def _views(session: Session, rows: Sequence[models.Volume]) -> list[VolumeView]:
    """The views of `rows` in two queries, whatever their number: their types' names and
    their live attachments."""
    type_ids = {r.volume_type_id for r in rows}
    query = select(models.VolumeType.id, models.VolumeType.name).where(
        models.VolumeType.id.in_(type_ids)
    )
    names = {type_id: name for type_id, name in session.execute(query)}
    attached: dict[str, list[models.Attachment]] = {r.id: [] for r in rows}
    for attachment in session.scalars(
        select(models.Attachment).where(
            models.Attachment.volume_id.in_(list(attached)),
            models.Attachment.attach_status == "attached",
        )
    ):
        attached[attachment.volume_id].append(attachment)
    encrypted = set(
        session.scalars(
            select(models.Encryption.volume_type_id).where(
                models.Encryption.volume_type_id.in_(type_ids)
            )
        )
    )
    return [
        VolumeView(r, names.get(r.volume_type_id, ""), tuple(attached[r.id]),
                   r.volume_type_id in encrypted)
        for r in rows
    ]  # fmt: skip


def _view(session: Session, row: models.Volume) -> VolumeView:
    return _views(session, [row])[0]


Row = TypeVar("Row", models.Volume, models.Snapshot, models.Backup)
Owned = TypeVar(
    "Owned",
    models.Volume,
    models.Snapshot,
    models.Backup,
    models.Group,
    models.GroupSnapshot,
    models.Transfer,
)


def find_owned(
    ctx: RequestContext, session: Session, model: type[Owned], row_id: str, what: str
) -> Owned:
    """The row if it is the caller's project's (any project's, for admins); else a 404
    naming `what`, the same whether it is missing or another project's."""
    row = session.get(model, row_id)
    if row is None or not (ctx.is_admin or row.project_id == ctx.project_id):
        raise errors.NotFound(f"{what} {row_id} could not be found.")
    return row


def page(rows: list[Row], marker: str | None, limit: int | None, offset: int = 0) -> list[Row]:
    """The rows after the one whose id is `marker`, skipping `offset`, at most `limit`."""
    if marker is not None:
        ids = [r.id for r in rows]
        if marker not in ids:
            raise errors.NotFound(f"Marker {marker} could not be found.")
        rows = rows[ids.index(marker) + 1 :]
    rows = rows[offset:]
    return rows if limit is None else rows[:limit]


def find_volume(ctx: RequestContext, session: Session, volume_id: str) -> models.Volume:
    return find_owned(ctx, session, models.Volume, volume_id, "Volume")


def get_volume(ctx: RequestContext, volume_id: str) -> VolumeView:
    with ctx.db.read() as session:
        return _view(session, find_volume(ctx, session, volume_id))


def volume_summary(
    ctx: RequestContext, all_projects: bool
) -> tuple[int, int, dict[str, list[str]]]:
    """Count and total GiB of the caller's volumes, and every metadata value they use."""
    stmt = select(models.Volume.size, models.Volume.metadata_)
    if not (ctx.is_admin and all_projects):
        stmt = stmt.where(models.Volume.project_id == ctx.project_id)
    with ctx.db.read() as session:
        rows = list(session.execute(stmt))
    values: dict[str, list[str]] = {}
    for _size, metadata in rows:
        for key, value in (metadata or {}).items():
            if value not in values.setdefault(key, []):
                values[key].append(value)
    return len(rows), sum(size for size, _ in rows), values


# Stand-ins for NULLs of sort columns, so every database orders (and pages) them alike.
_VOLUME_NULLS_AS: dict[str, Any] = {"name": "", "updated_at": datetime(1970, 1, 1)}


def list_volumes(ctx: RequestContext, query: VolumeQuery) -> tuple[list[VolumeView], int | None]:
    """One page of the caller's volumes (every project's with `all_projects`, for
    admins), and, when `with_count`, how many match in all. Pages are keyset pages in
    SQL; a metadata filter (a JSON column) is applied to the rows, then paged."""
    stmt = select(models.Volume)
    if not (ctx.is_admin and query.all_projects):
        stmt = stmt.where(models.Volume.project_id == ctx.project_id)
    elif query.project_id:
        stmt = stmt.where(models.Volume.project_id == query.project_id)
    if query.name is not None:
        stmt = stmt.where(models.Volume.name == query.name)
    if query.status is not None:
        stmt = stmt.where(models.Volume.status == query.status)
    if query.bootable is not None:
        stmt = stmt.where(models.Volume.bootable == query.bootable)
    keys = [pagination.SortKey(column, descending) for column, descending in query.sort]
    if not any(k.column == "id" for k in keys):
        keys.append(pagination.SortKey("id", True))
    with ctx.db.read() as session:
        if query.metadata:
            ordered = pagination.apply(stmt, models.Volume, keys, None, None, _VOLUME_NULLS_AS)
            wanted = query.metadata.items()
            rows = [r for r in session.scalars(ordered)
                    if all(r.metadata_.get(k) == v for k, v in wanted)]  # fmt: skip
            shown = page(rows, query.marker, query.limit, query.offset)
            return _views(session, shown), len(rows) if query.with_count else None
        marker = None
        if query.marker is not None:
            marker = session.get(models.Volume, query.marker)
            if marker is None or not (ctx.is_admin or marker.project_id == ctx.project_id):
                raise errors.NotFound(f"Marker {query.marker} could not be found.")
        paged = pagination.apply(stmt, models.Volume, keys, marker, query.limit,
                                 _VOLUME_NULLS_AS).offset(query.offset or None)  # fmt: skip
        shown = list(session.scalars(paged))
        total = None
        if query.with_count:
            total = session.scalar(select(func.count()).select_from(stmt.subquery()))
        return _views(session, shown), total


@dataclass(frozen=True, slots=True)
class VolumeSpec:
    """What `POST /volumes` asks for (schemas.py checked its shape)."""

    size: int | None
    name: str | None = None
    description: str | None = None
    volume_type: str | None = None
    availability_zone: str | None = None
    snapshot_id: str | None = None
    source_volid: str | None = None
    image_id: str | None = None
    backup_id: str | None = None
    metadata: Mapping[str, str] | None = None
    group_id: str | None = None  # 3.13: the group the volume joins


@dataclass(frozen=True, slots=True)
class _Source:
    """What a new volume takes from the volume, snapshot or backup it is made from."""

    size: int = 0
    volume_type_id: str | None = None
    bootable: bool = False
    image_metadata: Mapping[str, str] = field(default_factory=dict)
    backup: models.Backup | None = None  # the backup to restore into the new volume

    @classmethod
    def of(cls, size: int, volume: models.Volume | None) -> _Source:
        if volume is None:
            return cls(size)
        return cls(size, volume.volume_type_id, volume.bootable, dict(volume.image_metadata))


def _source(ctx: RequestContext, session: Session, spec: VolumeSpec) -> _Source:
    if spec.snapshot_id:
        snapshot = find_snapshot(ctx, session, spec.snapshot_id)
        if snapshot.status != "available":
            raise errors.Invalid(
                f"Invalid snapshot: Originating snapshot status must be one of 'available' "
                f"values, but is {snapshot.status}."
            )
        return _Source.of(snapshot.size, session.get(models.Volume, snapshot.volume_id))
    if spec.source_volid:
        source = find_volume(ctx, session, spec.source_volid)
        if source.status not in ("available", "in-use"):
            raise errors.Invalid(
                f"Invalid volume: Source volume status must be available or in-use, "
                f"but is {source.status}."
            )
        return _Source.of(source.size, source)
    if spec.backup_id:
        backup = find_backup(ctx, session, spec.backup_id)
        if backup.status != "available":
            raise errors.Invalid(
                f"Invalid backup: Backup status must be available, but is {backup.status}."
            )
        volume = session.get(models.Volume, backup.volume_id)
        return _Source(backup.size, volume.volume_type_id if volume else None, backup=backup)
    return _Source()


def find_backup(ctx: RequestContext, session: Session, backup_id: str) -> models.Backup:
    return find_owned(ctx, session, models.Backup, backup_id, "Backup")


def _image_source(ctx: RequestContext, image_id: str) -> tuple[int, dict[str, str]]:
    """The smallest volume (GiB) an image fits in, and the image's metadata a volume made
    from it shows as `volume_image_metadata`."""
    try:
        view = image_service.get_image(ctx, image_id)
    except errors.NotFound:
        raise errors.Invalid(f"Invalid image identifier or unable to access requested image "
                             f"({image_id}).") from None  # fmt: skip
    row = view.row
    if row.status != "active":
        raise errors.Invalid(f"Image {image_id} is not active (it is {row.status}).")
    fits = -(-max(row.size or 0, row.virtual_size or 0) // (1 << 30))
    metadata = {
        "image_id": row.id, "image_name": row.name or "", "checksum": row.checksum or "",
        "disk_format": row.disk_format or "", "container_format": row.container_format or "",
        "size": str(row.size or 0), "min_disk": str(row.min_disk), "min_ram": str(row.min_ram),
    }  # fmt: skip
    metadata.update({k: str(v) for k, v in view.properties.items()})
    return max(fits, row.min_disk, 1), metadata


def create_volume(ctx: RequestContext, spec: VolumeSpec) -> VolumeView:
    image = _image_source(ctx, spec.image_id) if spec.image_id else (0, {})
    with ctx.db.write() as session:
        row = add_volume(ctx, session, spec, image)
        view = _view(session, row)
    wake(ctx)
    return view


def _check_group(
    ctx: RequestContext, session: Session, group_id: str, volume_type: models.VolumeType
) -> None:
    group = session.get(models.Group, group_id)
    if group is None or not (ctx.is_admin or group.project_id == ctx.project_id):
        raise errors.NotFound(f"Group {group_id} could not be found.")
    if group.status not in ("available", "creating"):
        raise errors.Invalid(f"Invalid group: group {group_id} is {group.status}.")
    if volume_type.id not in group.volume_type_ids:
        raise errors.Invalid(
            f"Invalid input received: volume type {volume_type.name} is not one of the "
            f"types of group {group_id}."
        )


def add_volume(
    ctx: RequestContext, session: Session, spec: VolumeSpec,
    image: tuple[int, Mapping[str, str]] = (0, {}),
) -> models.Volume:  # fmt: skip
    """A new volume row in `session` (for the agent to make); `image` is the size and
    metadata of the image it is made from (read outside the transaction)."""
    image_size, image_metadata = image
    project_id = ctx.project_id or ""
    check_not_frozen(ctx, session, "create a volume")
    source = _source(ctx, session, spec)
    source_size, source_type = max(source.size, image_size), source.volume_type_id
    size = spec.size if spec.size is not None else source_size
    if size < 1:
        raise errors.Invalid(
            f"Invalid input received: Volume size '{spec.size}' must be an integer and "
            "greater than 0."
        )
    if size < source_size:
        raise errors.Invalid(
            f"Invalid input received: Volume size '{size}'GB cannot be smaller than the "
            f"source size of {source_size}GB. They must be >= original size."
        )
    if spec.volume_type:
        volume_type = find_type(ctx, session, spec.volume_type)
    elif source_type:
        volume_type = session.get(models.VolumeType, source_type) or find_type(
            ctx, session, DEFAULT_TYPE
        )
    else:
        volume_type = find_type(ctx, session, DEFAULT_TYPE)
    zone = spec.availability_zone or AVAILABILITY_ZONE
    if zone != AVAILABILITY_ZONE:
        raise errors.Invalid(
            f"Invalid input received: Availability zone '{zone}' is invalid; this cloud "
            f"has '{AVAILABILITY_ZONE}'."
        )
    if spec.group_id:
        _check_group(ctx, session, spec.group_id, volume_type)
    check_quota(session, project_id, volume_type.name, volumes=1, gigabytes=size)
    specs = volume_type.extra_specs
    row = models.Volume(
        id=new_id(), project_id=project_id, user_id=ctx.user_id or "", name=spec.name,
        description=spec.description, size=size, status="creating",
        attach_status="detached", availability_zone=zone, volume_type_id=volume_type.id,
        bootable=source.bootable, readonly=False,
        multiattach=_is_true_spec(specs.get("multiattach")),
        snapshot_id=spec.snapshot_id, source_volid=spec.source_volid,
        image_id=spec.image_id, backup_id=spec.backup_id, group_id=spec.group_id,
        metadata_=dict(spec.metadata or {}),
        image_metadata=image_metadata or dict(source.image_metadata), host=_host(ctx),
        replication_status=(
            "enabled" if _is_true_spec(specs.get("replication_enabled")) else None
        ),
        created_at=now(),
    )  # fmt: skip
    unplaced = _no_backend_reason(ctx, session, volume_type)
    if unplaced is not None:
        row.status, row.fail_reason = "error", f"No valid backend was found: {unplaced}."
        messages.record(session, ctx, "VOLUME", row.id, messages.SCHEDULE_ALLOCATE_VOLUME,
                        messages.NO_VALID_BACKEND)  # fmt: skip
    elif source.backup is not None:
        # The backup agent writes it: restoring-backup until then, as in Cinder.
        row.status = "restoring-backup"
        source.backup.status, source.backup.restore_volume_id = "restoring", row.id
        source.backup.updated_at = now()
    session.add(row)
    session.flush()
    return row


def update_volume(ctx: RequestContext, volume_id: str, changes: Mapping[str, Any]) -> VolumeView:
    with ctx.db.write() as session:
        row = find_volume(ctx, session, volume_id)
        for field in ("name", "description"):
            if field in changes:
                setattr(row, field, changes[field])
        if changes.get("metadata") is not None:
            row.metadata_ = dict(changes["metadata"])
        row.updated_at = now()
        return _view(session, row)


def delete_volume(ctx: RequestContext, volume_id: str, cascade: bool, force: bool) -> None:
    with ctx.db.write() as session:
        check_not_frozen(ctx, session, "delete a volume")
        row = find_volume(ctx, session, volume_id)
        snapshots = list(
            session.scalars(select(models.Snapshot).where(models.Snapshot.volume_id == row.id))
        )
        allowed = row.status in DELETABLE or (force and row.status not in ("deleting",))
        if row.status == "deleting":
            return
        grouped = row.group_id is not None and not force
        if not allowed or grouped or row.attach_status != "detached" or (snapshots and not cascade):
            raise errors.Invalid(
                "Invalid volume: Volume status must be available or error or error_restoring "
                "or error_extending or error_managing and must not be migrating, attached, "
                f"belong to a group, have snapshots or be disassociated from snapshots after "
                f"volume transfer (it is {row.status}, {row.attach_status}, with "
                f"{len(snapshots)} snapshots)."
            )
        for snapshot in snapshots:
            if snapshot.status not in ("available", "error", "deleting"):
                raise errors.Invalid(
                    f"Invalid volume: Snapshot {snapshot.id} is {snapshot.status}; a cascade "
                    "delete needs every snapshot available or in error."
                )
            snapshot.status = "deleting"
        row.status = "deleting"
        row.updated_at = now()
    wake(ctx)


def _type_name(session: Session, volume: models.Volume) -> str | None:
    return session.scalar(
        select(models.VolumeType.name).where(models.VolumeType.id == volume.volume_type_id)
    )


def _action_row(
    ctx: RequestContext, session: Session, volume_id: str, allowed: tuple[str, ...], what: str
) -> models.Volume:
    row = find_volume(ctx, session, volume_id)
    if row.status not in allowed:
        raise errors.Invalid(
            f"Invalid volume: Volume status must be {' or '.join(allowed)} to {what}, "
            f"but current status is: {row.status}."
        )
    return row


def extend_volume(ctx: RequestContext, volume_id: str, new_size: int, in_use_ok: bool) -> None:
    allowed = ("available", "in-use") if in_use_ok else ("available",)
    with ctx.db.write() as session:
        check_not_frozen(ctx, session, "extend a volume")
        row = _action_row(ctx, session, volume_id, allowed, "extend")
        if new_size <= row.size:
            raise errors.Invalid(
                f"Invalid input received: New size for extend must be greater than current "
                f"size. (current: {row.size}, extended: {new_size})."
            )
        check_quota(
            session, row.project_id, _type_name(session, row), gigabytes=new_size - row.size
        )
        row.previous_status, row.status, row.new_size = row.status, "extending", new_size
        row.updated_at = now()
    wake(ctx)


def reset_status(ctx: RequestContext, volume_id: str, changes: Mapping[str, str]) -> None:
    """Admin's `os-reset_status`: set the status fields as told, no questions asked."""
    with ctx.db.write() as session:
        row = find_volume(ctx, session, volume_id)
        if "status" in changes:
            row.status = changes["status"]
        if "attach_status" in changes:
            row.attach_status = changes["attach_status"]
        if "migration_status" in changes:
            row.migration_status = changes["migration_status"]
        row.updated_at = now()


def set_flag(ctx: RequestContext, volume_id: str, flag: str, value: bool) -> None:
    """`os-set_bootable` (flag `bootable`) and `os-update_readonly_flag` (`readonly`)."""
    with ctx.db.write() as session:
        row = find_volume(ctx, session, volume_id)
        if flag == "readonly" and row.status != "available":
            raise errors.Invalid(
                f"Invalid volume: Volume status must be available to update readonly flag, "
                f"but current status is: {row.status}."
            )
        setattr(row, flag, value)
        if flag == "readonly":
            # Shown in the volume's metadata from now on, as Cinder's admin metadata is.
            row.admin_metadata = {**(row.admin_metadata or {}), "readonly": str(value)}
        row.updated_at = now()


def retype(ctx: RequestContext, volume_id: str, new_type: str) -> None:
    """Change the type of a volume this backend serves either way (no data moves)."""
    with ctx.db.write() as session:
        check_not_frozen(ctx, session, "retype a volume")
        row = _action_row(ctx, session, volume_id, ("available", "in-use"), "retype")
        volume_type = find_type(ctx, session, new_type)
        if volume_type.id == row.volume_type_id:
            raise errors.Invalid(f"Invalid volume type: Retype to the same type {new_type}.")
        row.volume_type_id = volume_type.id
        row.multiattach = _is_true_spec(volume_type.extra_specs.get("multiattach"))
        row.updated_at = now()


def revert_to_snapshot(ctx: RequestContext, volume_id: str, snapshot_id: str) -> None:
    with ctx.db.write() as session:
        row = _action_row(ctx, session, volume_id, ("available",), "revert")
        snapshot = find_snapshot(ctx, session, snapshot_id)
        latest = session.scalar(
            select(models.Snapshot.id)
            .where(models.Snapshot.volume_id == row.id)
            .order_by(models.Snapshot.created_at.desc())
        )
        if snapshot.volume_id != row.id or snapshot.id != latest:
            raise errors.Invalid(
                "Invalid snapshot: A volume can only be reverted to its latest snapshot."
            )
        if snapshot.size != row.size:
            raise errors.Invalid(
                "Invalid volume: Volume and snapshot sizes differ; revert needs them equal."
            )
        row.status = "reverting"
        snapshot.status = "restoring"
    wake(ctx)


def _metadata_owner(
    ctx: RequestContext, session: Session, kind: str, resource_id: str
) -> models.Volume | models.Snapshot:
    if kind == "volume":
        return find_volume(ctx, session, resource_id)
    return find_snapshot(ctx, session, resource_id)


def set_metadata(
    ctx: RequestContext, kind: str, resource_id: str, metadata: Mapping[str, str], replace: bool
) -> dict[str, str]:
    """Merge `metadata` into (or, with `replace`, put it in place of) a volume's or a
    snapshot's; `kind` names which."""
    with ctx.db.write() as session:
        row = _metadata_owner(ctx, session, kind, resource_id)
        row.metadata_ = dict(metadata) if replace else {**row.metadata_, **metadata}
        row.updated_at = now()
        return dict(row.metadata_)


def delete_metadata(ctx: RequestContext, kind: str, resource_id: str, key: str) -> None:
    with ctx.db.write() as session:
        row = _metadata_owner(ctx, session, kind, resource_id)
        row.metadata_ = without_key(row.metadata_, key, f"Metadata item was not found (key {key}).")


# Snapshots ------------------------------------------------------------------------------


def find_snapshot(ctx: RequestContext, session: Session, snapshot_id: str) -> models.Snapshot:
    return find_owned(ctx, session, models.Snapshot, snapshot_id, "Snapshot")


def get_snapshot(ctx: RequestContext, snapshot_id: str) -> models.Snapshot:
    with ctx.db.read() as session:
        return find_snapshot(ctx, session, snapshot_id)


def list_snapshots(
    ctx: RequestContext, all_projects: bool, filters: Mapping[str, str],
    sort: Sequence[tuple[str, bool]] = (("created_at", True),),
    marker: str | None = None, limit: int | None = None, offset: int = 0,
) -> list[models.Snapshot]:  # fmt: skip
    stmt = select(models.Snapshot)
    for key, descending in sort:
        column = getattr(models.Snapshot, key)
        stmt = stmt.order_by(column.desc() if descending else column.asc())
    stmt = stmt.order_by(models.Snapshot.id.desc())
    if not (ctx.is_admin and all_projects):
        stmt = stmt.where(models.Snapshot.project_id == ctx.project_id)
    for name in ("name", "status", "volume_id"):
        if name in filters:
            stmt = stmt.where(getattr(models.Snapshot, name) == filters[name])
    with ctx.db.read() as session:
        return page(list(session.scalars(stmt)), marker, limit, offset)


def create_snapshot(
    ctx: RequestContext, volume_id: str, force: bool, name: str | None,
    description: str | None, metadata: Mapping[str, str] | None,
) -> models.Snapshot:  # fmt: skip
    with ctx.db.write() as session:
        check_not_frozen(ctx, session, "create a snapshot")
        volume = find_volume(ctx, session, volume_id)
        allowed = ("available", "in-use") if force else ("available",)
        if volume.status not in allowed:
            raise errors.Invalid(
                f"Invalid volume: Volume {volume.id} status must be available, but current "
                f"status is: {volume.status}."
                + (" Use force to snapshot an in-use volume." if volume.status == "in-use" else "")
            )
        row = add_snapshot(ctx, session, volume, name, description, metadata)
    wake(ctx)
    return row


def add_snapshot(
    ctx: RequestContext, session: Session, volume: models.Volume, name: str | None,
    description: str | None, metadata: Mapping[str, str] | None = None,
    group_snapshot_id: str | None = None,
) -> models.Snapshot:  # fmt: skip
    """A new snapshot row of `volume` in `session` (for the agent to take), inside the
    project's quotas and those of the volume's type."""
    check_quota(
        session, volume.project_id, _type_name(session, volume), snapshots=1,
        gigabytes=volume.size,
    )  # fmt: skip
    row = models.Snapshot(
        id=new_id(), project_id=volume.project_id, user_id=ctx.user_id or "",
        volume_id=volume.id, name=name, description=description, size=volume.size,
        status="creating", progress="0%", metadata_=dict(metadata or {}),
        group_snapshot_id=group_snapshot_id, created_at=now(),
    )  # fmt: skip
    session.add(row)
    return row


def update_snapshot(
    ctx: RequestContext, snapshot_id: str, changes: Mapping[str, Any]
) -> models.Snapshot:
    with ctx.db.write() as session:
        row = find_snapshot(ctx, session, snapshot_id)
        for field in ("name", "description"):
            if field in changes:
                setattr(row, field, changes[field])
        row.updated_at = now()
        return row


def delete_snapshot(ctx: RequestContext, snapshot_id: str, force: bool) -> None:
    with ctx.db.write() as session:
        check_not_frozen(ctx, session, "delete a snapshot")
        row = find_snapshot(ctx, session, snapshot_id)
        if row.status == "deleting":
            return
        if not force and row.status not in ("available", "error"):
            raise errors.Invalid(
                f"Invalid snapshot: Volume Snapshot status must be available or error, but "
                f"is {row.status}."
            )
        dependent = select(func.count()).where(
            models.Volume.snapshot_id == row.id, models.Volume.status == "creating"
        )
        if session.scalar(dependent):
            raise errors.Invalid("Invalid snapshot: a volume is being created from it.")
        row.status = "deleting"
    wake(ctx)


def reset_snapshot_status(ctx: RequestContext, snapshot_id: str, status: str) -> None:
    with ctx.db.write() as session:
        find_snapshot(ctx, session, snapshot_id).status = status


# The statuses a snapshot may be moved to by whoever makes it (Nova's assisted snapshots).
_SNAPSHOT_STATUS_MOVES = {
    "creating": ("creating", "available", "error"),
    "deleting": ("deleting", "error_deleting"),
}


def update_snapshot_status(
    ctx: RequestContext, snapshot_id: str, status: str, progress: str | None
) -> None:
    """`os-update_snapshot_status`: only a snapshot in the making (or being deleted) moves."""
    with ctx.db.write() as session:
        row = find_snapshot(ctx, session, snapshot_id)
        allowed = _SNAPSHOT_STATUS_MOVES.get(row.status, ())
        if status not in allowed:
            raise errors.Invalid(
                f"Invalid input received: snapshot status {row.status!r} cannot become "
                f"{status!r}" + (f"; it may become {', '.join(allowed)}." if allowed else ".")
            )
        row.status, row.updated_at = status, now()
        if progress is not None:
            row.progress = progress


def set_image_metadata(
    ctx: RequestContext, volume_id: str, changes: Mapping[str, str]
) -> dict[str, str]:
    """`os-set_image_metadata`: add or change keys of the volume's image metadata."""
    with ctx.db.write() as session:
        row = find_volume(ctx, session, volume_id)
        if row.status in ("maintenance", "uploading"):
            raise errors.Invalid(f"Invalid volume: the volume is {row.status}; try again later.")
        row.image_metadata = {**row.image_metadata, **changes}
        row.updated_at = now()
        return dict(row.image_metadata)


def unset_image_metadata(ctx: RequestContext, volume_id: str, key: str) -> None:
    with ctx.db.write() as session:
        row = find_volume(ctx, session, volume_id)
        row.image_metadata = without_key(
            row.image_metadata, key, f"Glance metadata for volume {volume_id} has no key {key}."
        )
        row.updated_at = now()


# What the agent does --------------------------------------------------------------------


def replicated_volumes(runtime: Runtime) -> list[str]:
    """Volumes of a replication_enabled type whose data the agent mirrors."""
    with runtime.db.read() as session:
        return list(session.scalars(
            select(models.Volume.id).where(
                models.Volume.replication_status == "enabled",
                models.Volume.status.in_(("available", "in-use", "backing-up")),
            )
        ))  # fmt: skip


# Why a volume is in error while the backend serves from the secondary site.
FAILED_OVER = "failed over: the secondary site holds no copy of this volume"
_SETTLED = ("available", "in-use")


def follow_active_site(runtime: Runtime, site: str) -> None:
    """What a failover means for the rows, as Cinder's failover_host records it: on the
    secondary, replicated volumes are `failed-over` and the others are in error (there is
    no copy of them there); back on the primary, both return to what they were. The site
    itself is switched on disk by `pocketstack manage volume`, not here."""
    failed_over = site == "secondary"
    with runtime.db.write() as session:
        for row in session.scalars(select(models.Volume).where(
            models.Volume.status.in_((*_SETTLED, "error"))
        )):  # fmt: skip
            replicated = row.replication_status in ("enabled", "failed-over")
            if replicated and row.replication_status != ("failed-over" if failed_over
                                                          else "enabled"):  # fmt: skip
                row.replication_status = "failed-over" if failed_over else "enabled"
            elif replicated:
                continue
            elif failed_over and row.status in _SETTLED:
                row.previous_status, row.status, row.fail_reason = row.status, "error", FAILED_OVER
            elif not failed_over and row.status == "error" and row.fail_reason == FAILED_OVER:
                row.status, row.fail_reason = row.previous_status or "available", None
            else:
                continue
            row.updated_at = now()


@dataclass(frozen=True, slots=True)
class Job:
    """One piece of backend work a row's status asks for."""

    kind: str  # create, extend, delete, revert, snapshot, delete_snapshot
    volume_id: str | None
    snapshot_id: str | None = None
    source_volid: str | None = None
    size: int = 0
    image_id: str | None = None


_VOLUME_JOBS = {"creating": "create", "extending": "extend", "deleting": "delete",
                "reverting": "revert", "uploading": "upload"}  # fmt: skip
_SNAPSHOT_JOBS = {"creating": "snapshot", "deleting": "delete_snapshot"}


def pending_jobs(runtime: Runtime) -> list[Job]:
    """Every unfinished job: snapshots first (a cascade delete removes them before the
    volume), then volumes, oldest first."""
    jobs: list[Job] = []
    with runtime.db.read() as session:
        snapshots = session.scalars(
            select(models.Snapshot)
            .where(models.Snapshot.status.in_(_SNAPSHOT_JOBS))
            .order_by(models.Snapshot.created_at)
        )
        jobs += [Job(_SNAPSHOT_JOBS[s.status], s.volume_id, s.id) for s in snapshots]
        volumes = session.scalars(
            select(models.Volume)
            .where(models.Volume.status.in_(_VOLUME_JOBS))
            .order_by(models.Volume.created_at)
        )
        for v in volumes:
            size = v.new_size if v.status == "extending" and v.new_size else v.size
            snapshot_id = v.snapshot_id
            if v.status == "reverting":
                snapshot_id = session.scalar(
                    select(models.Snapshot.id).where(
                        models.Snapshot.volume_id == v.id, models.Snapshot.status == "restoring"
                    )
                )
            image_id = {"creating": v.image_id, "uploading": v.upload_image_id}.get(v.status)
            jobs.append(
                Job(_VOLUME_JOBS[v.status], v.id, snapshot_id, v.source_volid, size, image_id)
            )
    return jobs


def finish_job(runtime: Runtime, job: Job, failure: str | None) -> None:
    """Record what the backend did for `job` (failure: why it could not)."""
    with runtime.db.write() as session:
        if job.kind in ("snapshot", "delete_snapshot"):
            snapshot = session.get(models.Snapshot, job.snapshot_id)
            if snapshot is None:
                return
            if job.kind == "delete_snapshot" and failure is None:
                session.delete(snapshot)
                return
            snapshot.status = "available" if failure is None else "error"
            snapshot.progress = "100%" if failure is None else snapshot.progress
            snapshot.updated_at = now()
            return
        volume = session.get(models.Volume, job.volume_id)
        if volume is None:
            return
        volume.updated_at = now()
        volume.fail_reason = failure
        if job.kind == "delete":
            if failure is None:
                session.delete(volume)
            else:
                volume.status = "error_deleting"
        elif job.kind == "create":
            volume.status = "available" if failure is None else "error"
            volume.launched_at = now() if failure is None else None
            volume.bootable = volume.bootable or (failure is None and job.image_id is not None)
        elif job.kind == "extend":
            if failure is None:
                volume.size = job.size
                volume.status = volume.previous_status or "available"
            else:
                volume.status = "error_extending"
            volume.new_size = None
        elif job.kind == "upload":
            volume.status = volume.previous_status or "available"
            volume.upload_image_id = None
        elif job.kind == "revert":
            volume.status = "available" if failure is None else "error"
            snapshot = session.get(models.Snapshot, job.snapshot_id) if job.snapshot_id else None
            if snapshot is not None:
                snapshot.status = "available"


# Upload to image ------------------------------------------------------------------------

UPLOAD_DISK_FORMATS = ("raw", "qcow2")
# What a volume made from an image keeps of it that its own image must not inherit.
_NOT_UPLOADED = frozenset({"image_id", "image_name", "checksum", "size", "min_disk",
                           "min_ram", "disk_format", "container_format"})  # fmt: skip


@dataclass(frozen=True, slots=True)
class UploadRequest:
    image_name: str
    force: bool = False
    disk_format: str = "raw"
    container_format: str = "bare"
    visibility: str = "private"
    protected: bool = False


@dataclass(frozen=True, slots=True)
class UploadView:
    volume: models.Volume
    volume_type: models.VolumeType | None
    image_id: str


def upload_to_image(ctx: RequestContext, volume_id: str, request: UploadRequest) -> UploadView:
    """A new image of the caller's project that the agent fills with the volume's bytes."""
    if request.disk_format not in UPLOAD_DISK_FORMATS:
        raise errors.Invalid(
            f"Invalid disk-format '{request.disk_format}' is specified. Allowed disk-formats "
            f"are {', '.join(UPLOAD_DISK_FORMATS)}."
        )
    with ctx.db.read() as session:
        volume = find_volume(ctx, session, volume_id)
        image_metadata = dict(volume.image_metadata)
    if volume.status == "in-use" and not request.force:
        raise errors.Invalid(
            f"Invalid volume: Volume {volume_id} status must be available to upload it "
            "(it is in-use: pass force)."
        )
    if volume.status not in ("available", "in-use"):
        raise errors.Invalid(
            f"Invalid volume: Volume {volume_id} status must be available or in-use, but "
            f"the current status is {volume.status}."
        )
    image = image_service.create_image(ctx, image_service.NewImage(
        id=None, name=request.image_name, visibility=request.visibility,
        protected=request.protected, os_hidden=False, min_disk=volume.size, min_ram=0,
        disk_format=request.disk_format, container_format=request.container_format,
        owner=None, tags=(),
        properties={k: v for k, v in image_metadata.items() if k not in _NOT_UPLOADED},
    ))  # fmt: skip
    with ctx.db.write() as session:
        row = find_volume(ctx, session, volume_id)
        if row.status not in ("available", "in-use"):
            image_service.delete_image(ctx, image.row.id)
            raise errors.Conflict(f"Volume {volume_id} changed status to {row.status}.")
        row.previous_status, row.status = row.status, "uploading"
        row.upload_image_id, row.updated_at = image.row.id, now()
        view = UploadView(row, session.get(models.VolumeType, row.volume_type_id), image.row.id)
    wake(ctx)
    return view


# Attachments (the 3.27+ API Nova uses) --------------------------------------------------


def _find_attachment(
    ctx: RequestContext, session: Session, attachment_id: str
) -> models.Attachment:
    row = session.get(models.Attachment, attachment_id)
    if row is None:
        raise errors.NotFound(f"Attachment {attachment_id} could not be found.")
    find_volume(ctx, session, row.volume_id)
    return row


def _front_end_qos(ctx: RequestContext, volume: models.Volume) -> dict[str, str] | None:
    """The QoS specs the hypervisor is to apply to the volume (consumer front-end or both)."""
    with ctx.db.read() as session:
        specs = session.scalar(
            select(models.QosSpecs)
            .join(models.VolumeType, models.VolumeType.qos_specs_id == models.QosSpecs.id)
            .where(models.VolumeType.id == volume.volume_type_id)
        )
    return dict(specs.specs) if specs and specs.consumer in ("front-end", "both") else None


def _connection_info(ctx: RequestContext, volume: models.Volume, mode: str) -> dict[str, Any]:
    backend = backend_of(ctx)
    data = dict(backend.connection(volume.id))
    kind = "local" if "device_path" in data else backend.name
    data |= {"access_mode": mode, "qos_specs": _front_end_qos(ctx, volume)}
    return {"driver_volume_type": kind, "data": data}


def attachment_connection(ctx: RequestContext, attachment: models.Attachment) -> dict[str, Any]:
    """The connection_info of an attachment that has a connector ({} before)."""
    if attachment.connector is None or attachment.attach_status == "detached":
        return {}
    with ctx.db.read() as session:
        volume = find_volume(ctx, session, attachment.volume_id)
    return _connection_info(ctx, volume, attachment.attach_mode)


def list_attachments(ctx: RequestContext, all_projects: bool) -> list[models.Attachment]:
    stmt = (
        select(models.Attachment)
        .join(models.Volume, models.Volume.id == models.Attachment.volume_id)
        .order_by(models.Attachment.created_at.desc(), models.Attachment.id)
    )
    if not (ctx.is_admin and all_projects):
        stmt = stmt.where(models.Volume.project_id == ctx.project_id)
    with ctx.db.read() as session:
        return list(session.scalars(stmt))


def get_attachment(ctx: RequestContext, attachment_id: str) -> models.Attachment:
    with ctx.db.read() as session:
        return _find_attachment(ctx, session, attachment_id)


def _live_attachments(session: Session, volume_id: str) -> list[models.Attachment]:
    return list(
        session.scalars(
            select(models.Attachment).where(
                models.Attachment.volume_id == volume_id,
                models.Attachment.attach_status != "detached",
            )
        )
    )


def create_attachment(
    ctx: RequestContext, volume_id: str, instance_uuid: str | None,
    connector: Mapping[str, Any] | None, mode: str,
) -> models.Attachment:  # fmt: skip
    """Reserve the volume for a server (and connect it, given a connector). A volume
    already in use takes a second attachment only if its type allows multi-attach."""
    with ctx.db.write() as session:
        volume = find_volume(ctx, session, volume_id)
        live = _live_attachments(session, volume.id)
        if live and not volume.multiattach:
            raise errors.Invalid(
                f"Invalid volume: Volume {volume.id} is already attached to server "
                f"{live[0].instance_uuid} and its type does not allow multi-attach "
                '(extra spec multiattach="<is> True").'
            )
        # `attaching` with no attachment yet is a volume os-reserve has held for this attach.
        allowed = ("available", "reserved", "in-use", "attaching") if volume.multiattach else (
            "available", "attaching",
        )  # fmt: skip
        if volume.status not in allowed:
            raise errors.Invalid(
                f"Invalid volume: Volume {volume.id} status must be available or downloading "
                f"to reserve, but the current status is {volume.status}."
            )
        if any(a.instance_uuid == instance_uuid for a in live if instance_uuid):
            raise errors.Invalid(
                f"Invalid volume: Volume {volume.id} is already attached to server {instance_uuid}."
            )
        if mode == "rw" and volume.readonly:
            raise errors.Invalid(
                f"Invalid volume: Volume {volume.id} is read-only; attach it 'ro'."
            )
        status = "attaching" if connector else "reserved"
        row = models.Attachment(
            id=new_id(), volume_id=volume.id, instance_uuid=instance_uuid,
            attached_host=(connector or {}).get("host"), mountpoint=(connector or {}).get(
                "mountpoint"
            ), attach_mode=mode, attach_status=status,
            connector=dict(connector) if connector else None, created_at=now(),
        )  # fmt: skip
        session.add(row)
        if volume.status != "in-use":
            volume.status = status
        volume.updated_at = now()
    return row


def update_attachment(
    ctx: RequestContext, attachment_id: str, connector: Mapping[str, Any]
) -> models.Attachment:
    with ctx.db.write() as session:
        row = _find_attachment(ctx, session, attachment_id)
        if row.attach_status == "detached":
            raise errors.Invalid(f"Invalid attachment: attachment {row.id} is detached.")
        row.connector = dict(connector)
        row.attached_host = connector.get("host") or row.attached_host
        row.mountpoint = connector.get("mountpoint") or row.mountpoint
        if row.attach_status == "reserved":
            row.attach_status = "attaching"
        volume = session.get(models.Volume, row.volume_id)
        if volume is not None and volume.status == "reserved":
            volume.status = "attaching"
        row.updated_at = now()
    return row


def complete_attachment(ctx: RequestContext, attachment_id: str) -> None:
    """The host has connected the volume: it is in use."""
    with ctx.db.write() as session:
        row = _find_attachment(ctx, session, attachment_id)
        if row.connector is None:
            raise errors.Invalid(
                f"Invalid attachment: attachment {row.id} has no connector yet; update it "
                "with the host's connector first."
            )
        row.attach_status, row.attach_time = "attached", now()
        volume = session.get(models.Volume, row.volume_id)
        if volume is not None:
            volume.status, volume.attach_status = "in-use", "attached"
            volume.updated_at = now()


def delete_attachment(ctx: RequestContext, attachment_id: str) -> None:
    """Detach: the volume is available again once no attachment is left."""
    with ctx.db.write() as session:
        row = _find_attachment(ctx, session, attachment_id)
        volume = session.get(models.Volume, row.volume_id)
        session.delete(row)
        session.flush()
        if volume is None:
            return
        if not _live_attachments(session, volume.id):
            volume.status, volume.attach_status = "available", "detached"
        elif volume.status == "detaching":
            volume.status = "in-use"  # a multi-attach volume other servers still use
        volume.updated_at = now()


# The legacy attach actions (os-reserve, os-attach, ... before the attachments API) ------


def legacy_status(ctx: RequestContext, volume_id: str, action: str) -> None:
    """os-reserve, os-unreserve, os-begin_detaching, os-roll_detaching: status moves only."""
    moves = {
        "os-reserve": (("available",), "attaching"),
        "os-unreserve": (("attaching",), "available"),
        "os-begin_detaching": (("in-use",), "detaching"),
        "os-roll_detaching": (("detaching",), "in-use"),
    }
    allowed, target = moves[action]
    with ctx.db.write() as session:
        row = find_volume(ctx, session, volume_id)
        if row.status == target and action != "os-reserve":
            return
        if row.status not in allowed:
            raise errors.Invalid(
                f"Invalid volume: Volume status must be {' or '.join(allowed)} for "
                f"{action}, but current status is: {row.status}."
            )
        row.status, row.updated_at = target, now()


def legacy_attach(
    ctx: RequestContext, volume_id: str, instance_uuid: str | None, host: str | None,
    mountpoint: str | None, mode: str,
) -> None:  # fmt: skip
    """os-attach: the caller has connected the volume; record the attachment at once."""
    connector = {"host": host or "", "mountpoint": mountpoint}
    attachment = create_attachment(ctx, volume_id, instance_uuid, connector, mode)
    complete_attachment(ctx, attachment.id)


def legacy_detach(ctx: RequestContext, volume_id: str, attachment_id: str | None) -> None:
    """os-detach (and os-force_detach): drop the named attachment, or the only one. A volume
    with no attachment left is simply marked detached, as Cinder does."""
    with ctx.db.write() as session:
        volume = find_volume(ctx, session, volume_id)
        live = _live_attachments(session, volume_id)
        if not live and attachment_id is None:
            volume.status, volume.attach_status, volume.updated_at = "available", "detached", now()
            return
    chosen = [a for a in live if attachment_id in (None, a.id)]
    if not chosen:
        raise errors.NotFound(f"Volume attachment {attachment_id} could not be found.")
    if len(chosen) > 1:
        raise errors.Invalid(
            f"Invalid volume: Volume {volume_id} has several attachments; name its attachment_id."
        )
    delete_attachment(ctx, chosen[0].id)


def initialize_connection(ctx: RequestContext, volume_id: str) -> dict[str, Any]:
    with ctx.db.read() as session:
        row = find_volume(ctx, session, volume_id)
    return _connection_info(ctx, row, "ro" if row.readonly else "rw")
