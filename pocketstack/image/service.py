"""Image domain logic: records, visibility and membership, properties, tags, data.

Who may see an image follows Glance: its owner always; everyone for `public`
and `community`; projects it is shared with for `shared` (listed by default
only once they accepted); admins everything. Bytes go through `store.py`, so
an image is `active` only after a whole upload was stored and checksummed.
"""

from __future__ import annotations

import uuid as uuidlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import and_, delete, exists, or_, select, true
from sqlalchemy.orm import Session

from pocketstack.core import errors, pagination
from pocketstack.core.context import RequestContext
from pocketstack.core.runtime import Runtime
from pocketstack.image import models
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
    }
)
RESERVED = frozenset({"self", "file", "schema", "location", "locations", "deleted", "deleted_at"})
MAX_TAGS = 128


def now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def store_of(runtime: Runtime) -> ImageStore:
    return ImageStore(runtime.settings.state_dir / "images")


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
    if ctx.is_admin:
        return true()
    image = models.Image
    shared_with_me = exists().where(
        models.ImageMember.image_id == image.id, models.ImageMember.member == ctx.project_id
    )
    return or_(
        image.visibility.in_(("public", "community")),
        and_(image.owner.is_not(None), image.owner == ctx.project_id),
        and_(image.visibility == "shared", shared_with_me),
    )


def _row(session: Session, ctx: RequestContext, image_id: str) -> models.Image:
    row = session.scalar(
        select(models.Image).where(models.Image.id == image_id, _visible_clause(ctx))
    )
    if row is None:
        raise _not_found(image_id)
    return row


def _owned_row(session: Session, ctx: RequestContext, image_id: str, action: str) -> models.Image:
    """The image, if this caller may change it: admins, and members of its owner project."""
    row = _row(session, ctx, image_id)
    if not ctx.is_admin and row.owner != ctx.project_id:
        raise errors.Forbidden(f"You are not permitted to {action} this image.")
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
    _check_visibility_change(ctx, spec.visibility)
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


def _check_visibility_change(ctx: RequestContext, visibility: str) -> None:
    if visibility == "public" and not ctx.can("publicize_image"):
        raise errors.Forbidden("You are not authorized to complete publicize_image action.")
    if visibility == "community" and not ctx.can("communitize_image"):
        raise errors.Forbidden("You are not authorized to complete communitize_image action.")


@dataclass(frozen=True, slots=True)
class Change:
    """One JSON-patch operation, already checked against the schema: set or remove a
    core attribute, a property, or the tag list."""

    op: str  # "set" or "remove"
    name: str
    value: Any = None


def update_image(ctx: RequestContext, image_id: str, changes: Sequence[Change]) -> ImageView:
    with ctx.db.write() as session:
        row = _owned_row(session, ctx, image_id, "modify")
        properties = {
            p.name: p
            for p in session.scalars(
                select(models.ImageProperty).where(models.ImageProperty.image_id == image_id)
            )
        }
        for change in changes:
            _apply_change(ctx, session, row, properties, change)
        row.updated_at = now()
        session.flush()
        return _views(session, [row])[0]


def _apply_change(
    ctx: RequestContext,
    session: Session,
    row: models.Image,
    properties: dict[str, models.ImageProperty],
    change: Change,
) -> None:
    name = change.name
    if name in READ_ONLY:
        raise errors.Forbidden(f"Attribute '{name}' is read-only.")
    if name in RESERVED:
        raise errors.Forbidden(f"Attribute '{name}' is reserved.")
    if name == "tags":
        tags = list(dict.fromkeys(change.value or [])) if change.op == "set" else []
        _set_tags(session, row.id, tags)
        return
    if name in CORE_ATTRIBUTES:
        if change.op == "remove":
            raise errors.Forbidden(f"Cannot remove the core attribute '{name}'.")
        if name == "visibility":
            _check_visibility_change(ctx, change.value)
        if name in ("disk_format", "container_format") and row.status != "queued":
            raise errors.Forbidden(f"Attribute {name} can be only replaced for a queued image.")
        if name == "owner" and not ctx.is_admin:
            raise errors.Forbidden("Attribute 'owner' can only be changed by an admin.")
        setattr(row, name, change.value)
        return
    existing = properties.get(name)
    if change.op == "remove":
        if existing is None:
            raise errors.Conflict(f"Property {name} does not exist.")
        session.delete(existing)
        del properties[name]
    elif existing is None:
        properties[name] = models.ImageProperty(image_id=row.id, name=name, value=change.value)
        session.add(properties[name])
    else:
        existing.value = change.value


def _set_tags(session: Session, image_id: str, tags: Sequence[str]) -> None:
    if len(tags) > MAX_TAGS:
        raise errors.PocketstackError.with_status(
            413, "Request Entity Too Large", "Maximum tag count exceeded."
        )
    session.execute(delete(models.ImageTag).where(models.ImageTag.image_id == image_id))
    session.add_all(models.ImageTag(image_id=image_id, value=t) for t in tags)


def add_tag(ctx: RequestContext, image_id: str, tag: str) -> None:
    with ctx.db.write() as session:
        row = _owned_row(session, ctx, image_id, "modify")
        current = list(
            session.scalars(select(models.ImageTag.value).where(models.ImageTag.image_id == row.id))
        )
        if tag not in current:
            _set_tags(session, row.id, [*current, tag])
        row.updated_at = now()


def delete_tag(ctx: RequestContext, image_id: str, tag: str) -> None:
    with ctx.db.write() as session:
        row = _owned_row(session, ctx, image_id, "modify")
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
        row = _owned_row(session, ctx, image_id, "delete")
        if row.protected:
            raise errors.Forbidden(f"Image {image_id} is protected and cannot be deleted.")
        session.delete(row)
    store_of(ctx.runtime).delete(image_id)


def set_active(ctx: RequestContext, image_id: str, active: bool) -> None:
    """Deactivate (data no longer downloadable, except by admins) or reactivate."""
    with ctx.db.write() as session:
        row = _row(session, ctx, image_id)
        wanted, allowed = (
            ("active", ("active", "deactivated"))
            if active
            else (
                "deactivated",
                ("active", "deactivated"),
            )
        )
        if row.status not in allowed:
            verb = "reactivate" if active else "deactivate"
            raise errors.Forbidden(f"Not allowed to {verb} image in status '{row.status}'")
        row.status = wanted
        row.updated_at = now()


# Data ---------------------------------------------------------------------------------


def begin_upload(ctx: RequestContext, image_id: str) -> None:
    """Move a queued image to `saving`, so a second upload is refused (409)."""
    with ctx.db.write() as session:
        row = _owned_row(session, ctx, image_id, "upload data to")
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


def finish_upload(ctx: RequestContext, image_id: str, stored: Stored | None) -> None:
    """`active` with its checksums after a stored upload; back to `queued` after a failed
    one (the bytes were never renamed into place)."""
    with ctx.db.write() as session:
        row = session.get(models.Image, image_id)
        if row is None:  # deleted while uploading
            store_of(ctx.runtime).delete(image_id)
            return
        if stored is None:
            row.status = "queued"
        else:
            row.status = "active"
            row.size = stored.size
            row.checksum = stored.checksum
            row.os_hash_algo = HASH_ALGO
            row.os_hash_value = stored.hash_value
        row.updated_at = now()


def image_data(ctx: RequestContext, image_id: str) -> tuple[ImageView, Iterator[bytes] | None]:
    """The image and its bytes (None when it has none yet)."""
    view = get_image(ctx, image_id)
    if view.row.status == "deactivated" and not ctx.is_admin:
        raise errors.Forbidden(
            "The requested image has been deactivated. Image data download is forbidden."
        )
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
    "visibility",
    "owner",
    "min_disk",
    "min_ram",
)


@dataclass(frozen=True, slots=True)
class ImageFilter:
    name: str | None = None
    status: str | None = None
    visibility: str | None = None
    owner: str | None = None
    member_status: str = "accepted"
    tags: tuple[str, ...] = ()
    protected: bool | None = None
    os_hidden: bool = False
    disk_format: str | None = None
    container_format: str | None = None
    size_min: int | None = None
    size_max: int | None = None
    ids: tuple[str, ...] = ()
    properties: Mapping[str, str] = field(default_factory=dict)


def list_images(
    ctx: RequestContext,
    query: ImageFilter,
    sort: Sequence[pagination.SortKey],
    marker: str | None,
    limit: int | None,
) -> list[ImageView]:
    image = models.Image
    with ctx.db.read() as session:
        stmt = select(image).where(_listed_clause(ctx, query))
        for column in ("name", "status", "owner", "disk_format", "container_format"):
            value = getattr(query, column)
            if value is not None:
                stmt = stmt.where(getattr(image, column) == value)
        if query.ids:
            stmt = stmt.where(image.id.in_(query.ids))
        if query.protected is not None:
            stmt = stmt.where(image.protected == query.protected)
        stmt = stmt.where(image.os_hidden == query.os_hidden)
        if query.size_min is not None:
            stmt = stmt.where(image.size >= query.size_min)
        if query.size_max is not None:
            stmt = stmt.where(image.size <= query.size_max)
        for tag in query.tags:
            stmt = stmt.where(
                exists().where(models.ImageTag.image_id == image.id, models.ImageTag.value == tag)
            )
        for key, value in query.properties.items():
            stmt = stmt.where(
                exists().where(
                    models.ImageProperty.image_id == image.id,
                    models.ImageProperty.name == key,
                    models.ImageProperty.value == value,
                )
            )
        marker_row = None
        if marker is not None:
            marker_row = session.scalar(
                select(image).where(image.id == marker, _visible_clause(ctx))
            )
            if marker_row is None:
                raise errors.Invalid(f"Invalid marker. Image {marker} could not be found.")
        rows = session.scalars(pagination.apply(stmt, image, sort, marker_row, limit)).all()
        return _views(session, rows)


def _listed_clause(ctx: RequestContext, query: ImageFilter) -> Any:
    """Which images a listing shows: by `visibility` when asked, else the caller's own,
    public ones and those shared with it in `member_status` (accepted by default)."""
    image = models.Image
    mine = and_(image.owner.is_not(None), image.owner == ctx.project_id)
    member_status = MEMBER_STATUSES if query.member_status == "all" else (query.member_status,)
    shared_with_me = and_(
        image.visibility == "shared",
        exists().where(
            models.ImageMember.image_id == image.id,
            models.ImageMember.member == ctx.project_id,
            models.ImageMember.status.in_(member_status),
        ),
    )
    if query.visibility == "all":
        return (
            true()
            if ctx.is_admin
            else or_(mine, image.visibility.in_(("public", "community")), shared_with_me)
        )
    if query.visibility is not None:
        if query.visibility in ("public", "community"):
            return image.visibility == query.visibility
        if ctx.is_admin:
            return image.visibility == query.visibility
        if query.visibility == "shared":
            return and_(image.visibility == "shared", or_(mine, shared_with_me))
        return and_(image.visibility == query.visibility, mine)
    if ctx.is_admin:
        return true()
    return or_(mine, image.visibility == "public", shared_with_me)


# Members ------------------------------------------------------------------------------


def _member_view(row: models.ImageMember) -> MemberView:
    return MemberView(row.image_id, row.member, row.status, row.created_at, row.updated_at)


def _shared_row(session: Session, ctx: RequestContext, image_id: str) -> models.Image:
    row = _row(session, ctx, image_id)
    if row.visibility != "shared":
        raise errors.Forbidden(
            f"Only shared images have members. Image {image_id} is {row.visibility}."
        )
    return row


def add_member(ctx: RequestContext, image_id: str, member: str) -> MemberView:
    moment = now()
    with ctx.db.write() as session:
        row = _shared_row(session, ctx, image_id)
        if not ctx.is_admin and row.owner != ctx.project_id:
            raise errors.Forbidden("You are not permitted to add members to this image.")
        if session.get(models.ImageMember, (image_id, member)) is not None:
            raise errors.Conflict(
                f"The target member {member} is already associated with image {image_id}."
            )
        created = models.ImageMember(
            image_id=image_id, member=member, status="pending", created_at=moment, updated_at=moment
        )
        session.add(created)
        return _member_view(created)


def list_members(ctx: RequestContext, image_id: str) -> list[MemberView]:
    with ctx.db.read() as session:
        row = _shared_row(session, ctx, image_id)
        stmt = select(models.ImageMember).where(models.ImageMember.image_id == image_id)
        if not ctx.is_admin and row.owner != ctx.project_id:
            stmt = stmt.where(models.ImageMember.member == ctx.project_id)
        return [_member_view(m) for m in session.scalars(stmt.order_by(models.ImageMember.member))]


def get_member(ctx: RequestContext, image_id: str, member: str) -> MemberView:
    with ctx.db.read() as session:
        row = _shared_row(session, ctx, image_id)
        found = session.get(models.ImageMember, (image_id, member))
        visible = ctx.is_admin or row.owner == ctx.project_id or member == ctx.project_id
        if found is None or not visible:
            raise errors.NotFound(f"{member} is not a member of image {image_id}")
        return _member_view(found)


def update_member(ctx: RequestContext, image_id: str, member: str, status: str) -> MemberView:
    with ctx.db.write() as session:
        _shared_row(session, ctx, image_id)
        found = session.get(models.ImageMember, (image_id, member))
        if found is None:
            raise errors.NotFound(f"{member} is not a member of image {image_id}")
        if not ctx.is_admin and member != ctx.project_id:
            raise errors.Forbidden("Only the member itself may accept or reject an image.")
        found.status = status
        found.updated_at = now()
        return _member_view(found)


def delete_member(ctx: RequestContext, image_id: str, member: str) -> None:
    with ctx.db.write() as session:
        row = _shared_row(session, ctx, image_id)
        if not ctx.is_admin and row.owner != ctx.project_id:
            raise errors.Forbidden("You are not permitted to remove members of this image.")
        found = session.get(models.ImageMember, (image_id, member))
        if found is None:
            raise errors.NotFound(f"{member} is not a member of image {image_id}")
        session.delete(found)
