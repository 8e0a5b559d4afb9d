"""Image domain logic: records, visibility and membership, properties, tags, data.

Who may see an image follows Glance: its owner always; everyone for `public`
and `community`; projects it is shared with for `shared` (listed by default
only once they accepted); admins everything. Bytes go through `store.py`, so
an image is `active` only after a whole upload was stored and checksummed.
"""

from __future__ import annotations

import uuid as uuidlib
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from anyio import to_thread
from sqlalchemy import and_, delete, exists, func, or_, select, true
from sqlalchemy.orm import Session

from pocketstack.core import errors, pagination
from pocketstack.core.context import RequestContext
from pocketstack.core.runtime import Runtime
from pocketstack.image import metadefs, models
from pocketstack.image.store import HASH_ALGO, ImageStore, Stored

DISK_FORMATS = (
    "ami",
    "ari",
    "aki",
    "vhd",
    "vhdx",
    "vmdk",
    "raw",
    "qcow2",
    "vdi",
    "iso",
    "ploop",
)
CONTAINER_FORMATS = ("ami", "ari", "aki", "bare", "ovf", "ova", "docker", "compressed")
VISIBILITIES = ("public", "private", "shared", "community")
MEMBER_STATUSES = ("pending", "accepted", "rejected")
# Attributes with a column of their own; anything else a user sets is a property.
CORE_ATTRIBUTES = frozenset(
    {
        "id",
        "name",
        "status",
        "visibility",
        "protected",
        "os_hidden",
        "checksum",
        "os_hash_algo",
        "os_hash_value",
        "size",
        "virtual_size",
        "min_disk",
        "min_ram",
        "disk_format",
        "container_format",
        "owner",
        "created_at",
        "updated_at",
        "tags",
    }
)
# Names no request may set, ones only a create may set (`id`), and reserved ones.
DISALLOWED = frozenset({"direct_url", "self", "file", "schema", "stores"})
READ_ONLY = frozenset(
    {
        "id",
        "status",
        "checksum",
        "os_hash_algo",
        "os_hash_value",
        "size",
        "virtual_size",
        "created_at",
        "updated_at",
        *DISALLOWED,
    }
)
RESERVED = frozenset({"location", "locations", "deleted", "deleted_at"})
# Glance's default quotas per image.
MAX_TAGS = 128
MAX_PROPERTIES = 128
MAX_MEMBERS = 128


def now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def store_of(runtime: Runtime) -> ImageStore:
    return ImageStore(runtime.settings.state_dir / "images")


def prepare(runtime: Runtime) -> None:
    """Every start: uploads that a stopped process left half done go back to `queued`,
    their partial files removed, so no image stays `saving` for ever; the metadata
    definitions' standard resource types exist."""
    metadefs.prepare(runtime)
    abandoned = store_of(runtime).remove_abandoned_uploads()
    with runtime.db.write() as session:
        saving = session.scalars(select(models.Image).where(models.Image.status == "saving"))
        for row in saving:
            if row.id in abandoned or not store_of(runtime).uploading(row.id):
                row.status = "queued"
                row.updated_at = now()


@dataclass(slots=True)
class ImageView:
    row: models.Image
    properties: dict[str, str] = field(default_factory=dict)
    tags: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class MemberView:
    image_id: str
    member_id: str
    status: str
    created_at: datetime
    updated_at: datetime


def _not_found(image_id: str) -> errors.NotFound:
    return errors.NotFound(f"No image found with ID {image_id}")


def _views(session: Session, rows: Sequence[models.Image]) -> list[ImageView]:
    ids = [r.id for r in rows]
    views = {r.id: ImageView(r) for r in rows}
    if ids:
        for prop in session.scalars(
            select(models.ImageProperty).where(models.ImageProperty.image_id.in_(ids))
        ):
            views[prop.image_id].properties[prop.name] = prop.value
        for tag in session.scalars(
            select(models.ImageTag)
            .where(models.ImageTag.image_id.in_(ids))
            .order_by(models.ImageTag.value)
        ):
            views[tag.image_id].tags.append(tag.value)
    return [views[i] for i in ids]


def _visible_clause(ctx: RequestContext) -> Any:
    """Images this caller may see at all (show, download), whatever their listing rules."""
    image = models.Image
    alive = image.status != "deleted"
    if ctx.is_admin:
        return alive
    shared_with_me = exists().where(
        models.ImageMember.image_id == image.id, models.ImageMember.member == ctx.project_id
    )
    return and_(
        alive,
        or_(
            image.visibility.in_(("public", "community")),
            and_(image.owner.is_not(None), image.owner == ctx.project_id),
            and_(image.visibility == "shared", shared_with_me),
        ),
    )


def _row(session: Session, ctx: RequestContext, image_id: str) -> models.Image:
    row = session.scalar(
        select(models.Image).where(models.Image.id == image_id, _visible_clause(ctx))
    )
    if row is None:
        raise _not_found(image_id)
    return row


def _target(ctx: RequestContext, row: models.Image, member: str | None = None) -> dict[str, Any]:
    """What the image's policy rules judge: its owner as `project_id`, and the member in
    question (the caller itself when it was shared the image)."""
    if member is None and row.visibility == "shared" and row.owner != ctx.project_id:
        member = ctx.project_id
    return {
        "project_id": row.owner,
        "owner": row.owner,
        "visibility": row.visibility,
        "member_id": member,
    }


def _authorized_row(
    session: Session, ctx: RequestContext, image_id: str, rule: str
) -> models.Image:
    """The image (404 unless visible), if policy `rule` lets this caller act on it."""
    row = _row(session, ctx, image_id)
    ctx.authorize(rule, _target(ctx, row))
    return row


def get_image(ctx: RequestContext, image_id: str) -> ImageView:
    with ctx.db.read() as session:
        return _views(session, [_row(session, ctx, image_id)])[0]


@dataclass(frozen=True, slots=True)
class NewImage:
    id: str | None
    name: str | None
    visibility: str
    protected: bool
    os_hidden: bool
    min_disk: int
    min_ram: int
    disk_format: str | None
    container_format: str | None
    owner: str | None
    properties: Mapping[str, str]
    tags: Sequence[str]


def create_image(ctx: RequestContext, spec: NewImage) -> ImageView:
    if spec.owner is not None and spec.owner != ctx.project_id and not ctx.is_admin:
        raise errors.Forbidden(f"You are not permitted to create images owned by '{spec.owner}'")
    _check_visibility_change(ctx, spec.visibility, spec.owner)
    _check_quota("image properties", len(spec.properties), MAX_PROPERTIES)
    _check_quota("image tags", len(set(spec.tags)), MAX_TAGS)
    moment = now()
    image_id = spec.id or str(uuidlib.uuid4())
    with ctx.db.write() as session:
        if session.get(models.Image, image_id) is not None:
            raise errors.Conflict(f"Image with identifier {image_id} already exists!")
        row = models.Image(
            id=image_id,
            name=spec.name,
            status="queued",
            visibility=spec.visibility,
            protected=spec.protected,
            os_hidden=spec.os_hidden,
            min_disk=spec.min_disk,
            min_ram=spec.min_ram,
            disk_format=spec.disk_format,
            container_format=spec.container_format,
            owner=spec.owner if spec.owner is not None else ctx.project_id,
            created_at=moment,
            updated_at=moment,
        )
        session.add(row)
        session.add_all(
            models.ImageProperty(image_id=image_id, name=k, value=v)
            for k, v in spec.properties.items()
        )
        session.add_all(
            models.ImageTag(image_id=image_id, value=t) for t in dict.fromkeys(spec.tags)
        )
        session.flush()
        return _views(session, [row])[0]


def _check_visibility_change(
    ctx: RequestContext, visibility: str, owner: str | None = None
) -> None:
    target = {"project_id": owner or ctx.project_id, "owner": owner or ctx.project_id}
    if visibility == "public" and not ctx.can("publicize_image", target):
        raise errors.Forbidden("You are not authorized to complete publicize_image action.")
    if visibility == "community" and not ctx.can("communitize_image", target):
        raise errors.Forbidden("You are not authorized to complete communitize_image action.")


@dataclass(frozen=True, slots=True)
class Change:
    """One JSON-patch operation on one attribute, its value already checked.
    `strict_add`: the v2.0 patch format, whose `add` refuses to overwrite."""

    op: str  # "add", "replace" or "remove"
    name: str
    value: Any = None
    strict_add: bool = False


def update_image(ctx: RequestContext, image_id: str, changes: Sequence[Change]) -> ImageView:
    """Apply all of `changes` or none of them."""
    with ctx.db.write() as session:
        row = _authorized_row(session, ctx, image_id, "modify_image")
        properties = {
            p.name: p
            for p in session.scalars(
                select(models.ImageProperty).where(models.ImageProperty.image_id == image_id)
            )
        }
        for change in changes:
            _apply_change(ctx, session, row, properties, change)
        _check_quota("image properties", len(properties), MAX_PROPERTIES)
        row.updated_at = now()
        session.flush()
        return _views(session, [row])[0]


def _check_quota(what: str, attempted: int, maximum: int) -> None:
    if attempted > maximum:
        raise errors.PocketstackError.with_status(
            413,
            "Request Entity Too Large",
            f"The limit has been exceeded on the number of allowed {what}. "
            f"Attempted: {attempted}, Maximum: {maximum}",
        )


def _apply_change(
    ctx: RequestContext,
    session: Session,
    row: models.Image,
    properties: dict[str, models.ImageProperty],
    change: Change,
) -> None:
    name = change.name
    if name in CORE_ATTRIBUTES:
        if change.op == "remove":
            raise errors.Forbidden(f"Property {name} may not be removed.")
        if change.op == "add" and change.strict_add:
            raise errors.Conflict(f"Property {name} already present.")
        _set_core(ctx, session, row, name, change.value)
        return
    existing = properties.get(name)
    if existing is None and change.op in ("replace", "remove"):
        raise errors.Conflict(f"Property {name} does not exist.")
    if existing is not None and change.op == "add" and change.strict_add:
        raise errors.Conflict(f"Property {name} already present.")
    if change.op == "remove":
        assert existing is not None
        session.delete(existing)
        del properties[name]
    elif existing is None:
        properties[name] = models.ImageProperty(image_id=row.id, name=name, value=change.value)
        session.add(properties[name])
    else:
        existing.value = change.value


def _set_core(
    ctx: RequestContext, session: Session, row: models.Image, name: str, value: Any
) -> None:
    if name == "tags":
        _set_tags(session, row.id, list(dict.fromkeys(value)))
        return
    if name == "visibility":
        _check_visibility_change(ctx, value, row.owner)
    if name in ("disk_format", "container_format") and row.status not in ("queued", "importing"):
        raise errors.Forbidden(f"Attribute {name} can be only replaced for a queued image.")
    if name == "owner" and not ctx.is_admin:
        raise errors.Forbidden("Owner can't be updated by non admin.")
    setattr(row, name, value)


def _set_tags(session: Session, image_id: str, tags: Sequence[str]) -> None:
    _check_quota("image tags", len(tags), MAX_TAGS)
    session.execute(delete(models.ImageTag).where(models.ImageTag.image_id == image_id))
    session.add_all(models.ImageTag(image_id=image_id, value=t) for t in tags)


def add_tag(ctx: RequestContext, image_id: str, tag: str) -> None:
    with ctx.db.write() as session:
        row = _authorized_row(session, ctx, image_id, "modify_image")
        current = list(
            session.scalars(select(models.ImageTag.value).where(models.ImageTag.image_id == row.id))
        )
        if tag not in current:
            _set_tags(session, row.id, [*current, tag])
        row.updated_at = now()


def delete_tag(ctx: RequestContext, image_id: str, tag: str) -> None:
    with ctx.db.write() as session:
        row = _authorized_row(session, ctx, image_id, "modify_image")
        gone = session.execute(
            delete(models.ImageTag).where(
                models.ImageTag.image_id == row.id, models.ImageTag.value == tag
            )
        )
        if gone.rowcount == 0:  # type: ignore[attr-defined]
            raise errors.NotFound(f"Tag {tag} not found.")
        row.updated_at = now()


def delete_image(ctx: RequestContext, image_id: str) -> None:
    with ctx.db.write() as session:
        try:
            row = _authorized_row(session, ctx, image_id, "delete_image")
        except errors.NotFound:
            raise errors.NotFound(f"Failed to find image {image_id} to delete") from None
        if row.protected:
            raise errors.Forbidden(f"Image {image_id} is protected and cannot be deleted.")
        # The row stays as a tombstone, as in Glance: a deleted image's id is never reused.
        for model in (models.ImageProperty, models.ImageTag, models.ImageMember):
            session.execute(delete(model).where(model.image_id == image_id))
        row.status = "deleted"
        row.updated_at = now()
    store_of(ctx.runtime).delete(image_id)


def set_active(ctx: RequestContext, image_id: str, active: bool) -> None:
    """Deactivate (data no longer downloadable, except by admins) or reactivate; asking
    for the state the image is already in changes nothing."""
    verb = "reactivate" if active else "deactivate"
    with ctx.db.write() as session:
        row = _authorized_row(session, ctx, image_id, verb)
        if row.status not in ("active", "deactivated"):
            raise errors.Forbidden(f"Not allowed to {verb} image in status '{row.status}'")
        row.status = "active" if active else "deactivated"
        row.updated_at = now()


# Data ---------------------------------------------------------------------------------


async def upload(ctx: RequestContext, image_id: str, chunks: AsyncIterator[bytes]) -> None:
    """Stream `chunks` into the store: the image turns active only once all of them are
    stored, and goes back to queued if the upload breaks off. Disk and database work run
    in worker threads, the stream on the caller's event loop."""
    await to_thread.run_sync(_begin_upload, ctx, image_id)
    partial = store_of(ctx.runtime).begin(image_id)
    try:
        async for chunk in chunks:
            if chunk:
                await to_thread.run_sync(partial.write, chunk)
        stored = await to_thread.run_sync(partial.commit)
    except BaseException:
        partial.abort()
        await to_thread.run_sync(_finish_upload, ctx, image_id, None)
        raise
    await to_thread.run_sync(_finish_upload, ctx, image_id, stored)


def store_data(ctx: RequestContext, image_id: str, chunks: Iterable[bytes]) -> None:
    """`upload` for callers in this process that hold the bytes already (a server snapshot):
    the same states and checksums, without an event loop."""
    _begin_upload(ctx, image_id)
    partial = store_of(ctx.runtime).begin(image_id)
    try:
        for chunk in chunks:
            if chunk:
                partial.write(chunk)
        stored = partial.commit()
    except BaseException:
        partial.abort()
        _finish_upload(ctx, image_id, None)
        raise
    _finish_upload(ctx, image_id, stored)


def _begin_upload(ctx: RequestContext, image_id: str) -> None:
    """Move a queued image to `saving`, so a second upload is refused (409)."""
    with ctx.db.write() as session:
        row = _authorized_row(session, ctx, image_id, "upload_image")
        if row.status != "queued":
            raise errors.Conflict(
                f"Image status transition from {row.status} to saving is not allowed"
            )
        if row.disk_format is None or row.container_format is None:
            raise errors.Invalid(
                "Properties disk_format, container_format must be set prior to saving data."
            )
        row.status = "saving"
        row.updated_at = now()


def _finish_upload(ctx: RequestContext, image_id: str, stored: Stored | None) -> None:
    """`active` with its checksums after a stored upload; back to `queued` after a failed
    one (the bytes were never renamed into place)."""
    with ctx.db.write() as session:
        row = session.get(models.Image, image_id)
        if row is None or row.status == "deleted":
            store_of(ctx.runtime).delete(image_id)
            if stored is None:
                return
            raise errors.PocketstackError.with_status(
                410,
                "Gone",
                f"Image {image_id} could not be found after upload. The image may have been "
                "deleted during the upload, cleaning up the chunks uploaded.",
            )
        if stored is None:
            row.status = "queued"
        else:
            row.status = "active"
            row.size = stored.size
            row.checksum = stored.checksum
            row.os_hash_algo = HASH_ALGO
            row.os_hash_value = stored.hash_value
        row.updated_at = now()


def active_file(runtime: Runtime, image_id: str) -> tuple[ImageView, Path]:
    """An active image and its stored bytes, as the control plane reads them for a host
    (whoever owns the image): compute boots from them, volumes are written from them.
    NotFound when there is no such image, Conflict when it has no data to read."""
    try:
        view = get_image(runtime.service_context(), image_id)
    except errors.NotFound:
        raise errors.NotFound(f"Image {image_id} could not be found.") from None
    path = store_of(runtime).path(image_id)
    if view.row.status != "active" or not path.exists():
        raise errors.Conflict(f"Image {image_id} is {view.row.status}, not active.")
    return view, path


def image_data(ctx: RequestContext, image_id: str) -> tuple[ImageView, Iterator[bytes] | None]:
    """The image and its bytes (None when it has none yet)."""
    with ctx.db.read() as session:
        row = _row(session, ctx, image_id)
        if row.status == "deactivated" and not ctx.is_admin:
            raise errors.Forbidden(
                "The requested image has been deactivated. Image data download is forbidden."
            )
        ctx.authorize("download_image", _target(ctx, row))
        view = _views(session, [row])[0]
    store = store_of(ctx.runtime)
    if view.row.status not in ("active", "deactivated") or not store.exists(image_id):
        return view, None
    return view, store.read(image_id)


# Listing ------------------------------------------------------------------------------

SORT_KEYS = (
    "name",
    "status",
    "container_format",
    "disk_format",
    "size",
    "id",
    "created_at",
    "updated_at",
)
# Stand-ins for NULLs of nullable sort keys (see core.pagination.apply).
_NULL_STANDS_FOR: dict[str, Any] = {
    "name": "",
    "container_format": "",
    "disk_format": "",
    "size": -1,
}
_TIME_OPERATORS = {
    "gt": lambda c, v: c > v,
    "gte": lambda c, v: c >= v,
    "lt": lambda c, v: c < v,
    "lte": lambda c, v: c <= v,
    "eq": lambda c, v: c == v,
    "neq": lambda c, v: c != v,
}


@dataclass(frozen=True, slots=True)
class ImageFilter:
    visibility: str | None = None
    member_status: str = "accepted"
    tags: tuple[str, ...] = ()
    protected: bool | None = None
    os_hidden: bool = False
    # column -> any of these values
    equals: Mapping[str, tuple[Any, ...]] = field(default_factory=dict)
    size_min: int | None = None
    size_max: int | None = None
    # (column, operator, moment): created_at/updated_at comparisons
    times: tuple[tuple[str, str, datetime], ...] = ()
    properties: Mapping[str, str] = field(default_factory=dict)


def list_images(
    ctx: RequestContext,
    query: ImageFilter,
    sort: Sequence[pagination.SortKey],
    marker: str | None,
    limit: int,
) -> list[ImageView]:
    image = models.Image
    with ctx.db.read() as session:
        stmt = select(image).where(
            _listed_clause(ctx, query), image.status.not_in(("killed", "deleted"))
        )
        for column, values in query.equals.items():
            stmt = stmt.where(getattr(image, column).in_(values))
        if query.protected is not None:
            stmt = stmt.where(image.protected == query.protected)
        stmt = stmt.where(image.os_hidden == query.os_hidden)
        if query.size_min is not None:
            stmt = stmt.where(image.size >= query.size_min)
        if query.size_max is not None:
            stmt = stmt.where(image.size <= query.size_max)
        for column, operator, moment in query.times:
            stmt = stmt.where(_TIME_OPERATORS[operator](getattr(image, column), moment))
        for tag in query.tags:
            stmt = stmt.where(
                exists().where(models.ImageTag.image_id == image.id, models.ImageTag.value == tag)
            )
        for name, value in query.properties.items():
            stmt = stmt.where(
                exists().where(
                    models.ImageProperty.image_id == image.id,
                    models.ImageProperty.name == name,
                    models.ImageProperty.value == value,
                )
            )
        marker_row = None
        if marker is not None:
            marker_row = session.scalar(
                select(image).where(image.id == marker, _visible_clause(ctx))
            )
            if marker_row is None:
                raise errors.Invalid(f"No image found with ID {marker}")
        page = pagination.apply(stmt, image, sort, marker_row, limit, _NULL_STANDS_FOR)
        return _views(session, session.scalars(page).all())


def _listed_clause(ctx: RequestContext, query: ImageFilter) -> Any:
    """Which images a listing shows: the caller's own, public and community ones, and
    shared ones it is a member of in `member_status` (accepted by default); admins see every
    project's. Community images of others appear only when asked for by visibility."""
    image = models.Image
    mine = and_(image.owner.is_not(None), image.owner == ctx.project_id)
    statuses = MEMBER_STATUSES if query.member_status == "all" else (query.member_status,)
    shared_with_me = and_(
        image.visibility == "shared",
        exists().where(
            models.ImageMember.image_id == image.id,
            models.ImageMember.member == ctx.project_id,
            models.ImageMember.status.in_(statuses),
        ),
    )
    reachable = (
        true()
        if ctx.is_admin
        else or_(mine, image.visibility.in_(("public", "community")), shared_with_me)
    )
    if query.visibility == "all":
        return reachable
    if query.visibility is not None:
        return and_(reachable, image.visibility == query.visibility)
    return and_(reachable, or_(image.visibility != "community", mine))


# Members ------------------------------------------------------------------------------


def _member_view(row: models.ImageMember) -> MemberView:
    return MemberView(row.image_id, row.member, row.status, row.created_at, row.updated_at)


def _shared_row(
    session: Session, ctx: RequestContext, image_id: str, refusal: str | None
) -> models.Image:
    """The image if it is shared; otherwise 403 `refusal` (404 when there is none)."""
    row = session.scalar(
        select(models.Image).where(models.Image.id == image_id, _visible_clause(ctx))
    )
    if row is None:
        raise errors.NotFound(f"Image {image_id} not found.")
    if row.visibility != "shared":
        if refusal is None:
            raise errors.NotFound(f"Image {image_id} not found.")
        raise errors.Forbidden(refusal)
    return row


def _member_row(session: Session, image_id: str, member: str) -> models.ImageMember:
    found = session.get(models.ImageMember, (image_id, member))
    if found is None:
        raise errors.NotFound(f"{member} not found in the member list of the image {image_id}.")
    return found


def add_member(ctx: RequestContext, image_id: str, member: str) -> MemberView:
    moment = now()
    with ctx.db.write() as session:
        row = _shared_row(
            session, ctx, image_id, f"Not allowed to create members for image {image_id}."
        )
        ctx.authorize("add_member", _target(ctx, row, member))
        if session.get(models.ImageMember, (image_id, member)) is not None:
            raise errors.Conflict(f"Member {member} is duplicated for image {image_id}")
        count = session.scalar(select(func.count()).where(models.ImageMember.image_id == image_id))
        _check_quota("image members", int(count or 0) + 1, MAX_MEMBERS)
        created = models.ImageMember(
            image_id=image_id, member=member, status="pending", created_at=moment, updated_at=moment
        )
        session.add(created)
        return _member_view(created)


def list_members(ctx: RequestContext, image_id: str) -> list[MemberView]:
    with ctx.db.read() as session:
        row = _shared_row(
            session,
            ctx,
            image_id,
            f"Not allowed to list members for image {image_id}: Only shared images have members.",
        )
        ctx.authorize("get_members", _target(ctx, row))
        stmt = select(models.ImageMember).where(models.ImageMember.image_id == image_id)
        if not ctx.can("add_member", _target(ctx, row)):
            stmt = stmt.where(models.ImageMember.member == ctx.project_id)
        return [_member_view(m) for m in session.scalars(stmt.order_by(models.ImageMember.member))]


def get_member(ctx: RequestContext, image_id: str, member: str) -> MemberView:
    with ctx.db.read() as session:
        row = _shared_row(session, ctx, image_id, None)
        found = _member_row(session, image_id, member)
        if not ctx.can("get_member", _target(ctx, row, member)):
            raise errors.NotFound(f"{member} not found in the member list of the image {image_id}.")
        return _member_view(found)


def update_member(ctx: RequestContext, image_id: str, member: str, status: Any) -> MemberView:
    """Only the member project (or an admin) accepts or rejects; not the owner."""
    with ctx.db.write() as session:
        row = _shared_row(
            session, ctx, image_id, f"Not allowed to update members for image {image_id}."
        )
        found = _member_row(session, image_id, member)
        ctx.authorize("modify_member", _target(ctx, row, member))
        if status not in MEMBER_STATUSES:
            raise errors.Invalid(
                'Incorrect request: Status must be "pending", "accepted" or "rejected".'
            )
        found.status = status
        found.updated_at = now()
        return _member_view(found)


def delete_member(ctx: RequestContext, image_id: str, member: str) -> None:
    with ctx.db.write() as session:
        row = _shared_row(
            session, ctx, image_id, f"Not allowed to delete members for image {image_id}."
        )
        found = _member_row(session, image_id, member)
        ctx.authorize("delete_member", _target(ctx, row, member))
        session.delete(found)
