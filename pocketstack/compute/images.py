"""Nova's image proxy (/v2.1/images and their metadata) over the image service.

Nova answers these by asking Glance as the caller, so the image service's own
visibility and policy rules apply. Nova's filters map onto Glance's (`server`
is the snapshot's `instance_uuid` property, `type` its `image_type`), and its
`metadata` is an image's free-form properties. Called by more_api.py.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from pocketstack.compute import drivers, quotas
from pocketstack.core import errors, pagination
from pocketstack.core.context import RequestContext
from pocketstack.core.runtime import Runtime
from pocketstack.image import service as image_service

MAX_LIMIT = 1000
# Glance lists newest first.
_DEFAULT_SORT = (pagination.SortKey("created_at", True), pagination.SortKey("id", True))


@dataclass(frozen=True, slots=True)
class ImageQuery:
    name: str | None = None
    status: str | None = None
    changes_since: datetime | None = None
    server: str | None = None
    image_type: str | None = None
    min_ram: int | None = None
    min_disk: int | None = None
    properties: Mapping[str, str] | None = None
    marker: str | None = None
    limit: int = MAX_LIMIT


def list_images(ctx: RequestContext, query: ImageQuery) -> list[image_service.ImageView]:
    equals: dict[str, tuple[object, ...]] = {}
    if query.name is not None:
        equals["name"] = (query.name,)
    if query.status is not None:
        equals["status"] = (query.status.lower(),)
    # Glance v2 compares min_ram/min_disk filters for equality, as Nova passes them.
    if query.min_ram is not None:
        equals["min_ram"] = (query.min_ram,)
    if query.min_disk is not None:
        equals["min_disk"] = (query.min_disk,)
    properties = dict(query.properties or {})
    if query.server is not None:
        properties["instance_uuid"] = query.server.rsplit("/", 1)[-1]
    if query.image_type is not None:
        properties["image_type"] = query.image_type
    times: tuple[tuple[str, str, datetime], ...] = ()
    if query.changes_since is not None:
        times = (("updated_at", "gte", query.changes_since),)
    spec = image_service.ImageFilter(equals=equals, times=times, properties=properties)
    return image_service.list_images(ctx, spec, _DEFAULT_SORT, query.marker, query.limit)


def get_image(ctx: RequestContext, image_id: str) -> image_service.ImageView:
    try:
        return image_service.get_image(ctx, image_id)
    except errors.NotFound:
        raise errors.NotFound("Image not found.") from None


def delete_image(ctx: RequestContext, image_id: str) -> None:
    try:
        image_service.delete_image(ctx, image_id)
    except errors.NotFound:
        raise errors.NotFound("Image not found.") from None
    except errors.Forbidden:
        raise errors.Forbidden("You are not allowed to delete the image.") from None


def metadata(ctx: RequestContext, image_id: str) -> dict[str, str]:
    return dict(get_image(ctx, image_id).properties)


def _check_quota(ctx: RequestContext, items: Mapping[str, str]) -> None:
    if items and len(items) > quotas.limits(ctx, ctx.project_id or "")["metadata_items"]:
        raise errors.Forbidden("Image metadata limit exceeded")


def _replace(ctx: RequestContext, image_id: str, wanted: Mapping[str, str]) -> dict[str, str]:
    """Make the image's properties exactly `wanted` (Nova's update with purge_props)."""
    current = metadata(ctx, image_id)
    changes = [image_service.Change("remove", key) for key in current if key not in wanted]
    changes += [
        image_service.Change("replace" if key in current else "add", key, value)
        for key, value in wanted.items()
        if current.get(key) != value
    ]
    if changes:
        try:
            updated = image_service.update_image(ctx, image_id, changes)
        except errors.NotFound:
            raise errors.NotFound("Image not found.") from None
        return dict(updated.properties)
    return current


def merge_metadata(ctx: RequestContext, image_id: str, items: Mapping[str, str]) -> dict[str, str]:
    """POST: add or change the given keys, keep the others."""
    merged = {**metadata(ctx, image_id), **items}
    _check_quota(ctx, merged)
    return _replace(ctx, image_id, merged)


def replace_metadata(
    ctx: RequestContext, image_id: str, items: Mapping[str, str]
) -> dict[str, str]:
    """PUT: the given keys become all of the image's metadata."""
    metadata(ctx, image_id)
    _check_quota(ctx, items)
    return _replace(ctx, image_id, items)


def delete_metadata_item(ctx: RequestContext, image_id: str, key: str) -> None:
    current = metadata(ctx, image_id)
    if key not in current:
        raise errors.NotFound("Invalid metadata key")
    del current[key]
    _replace(ctx, image_id, current)


class LocalImages:
    """The image source of the hosts this process runs: the image service's own store,
    read in place (no copy), with the image's formats and properties."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    def image(self, image_ref: str) -> drivers.ImageFile:
        try:
            view, path = image_service.active_file(self.runtime, image_ref)
        except (errors.NotFound, errors.Conflict) as exc:
            raise drivers.DriverError(exc.message) from exc
        return drivers.ImageFile(
            image_ref, path, view.row.disk_format, view.row.container_format, view.properties
        )
