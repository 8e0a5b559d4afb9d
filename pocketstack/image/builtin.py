"""The images every fresh cloud has: `busybox` (namespace guests) and `tiny-vm` (qemu).

`pocketstack up` builds them from Debian packages on first start
(host/image_builds.py) and registers them as public images, so
`openstack server create --image busybox` works out of the box. An image of
that name that already exists is left alone (an operator may replace it).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from pocketstack.core import pagination
from pocketstack.core.runtime import Runtime
from pocketstack.host import image_builds
from pocketstack.host.commands import HostCommandError
from pocketstack.image import service as image_service

LOG = logging.getLogger(__name__)
BUILTIN = ("busybox", "tiny-vm")
_BY_NAME = (pagination.SortKey("created_at", False), pagination.SortKey("id", False))


def build_dir(runtime: Runtime) -> Path:
    return runtime.settings.state_dir / "image-builds"


def _existing(runtime: Runtime, name: str) -> str | None:
    query = image_service.ImageFilter(visibility="public", equals={"name": (name,)})
    found = image_service.list_images(runtime.service_context(), query, _BY_NAME, None, 1)
    return found[0].row.id if found else None


def _register(
    runtime: Runtime, owner: str, built: image_builds.BuiltImage, ids: dict[str, str]
) -> str:
    ctx = runtime.service_context(owner)
    properties = {**built.properties, **{p: ids[n] for p, n in built.references.items()}}
    spec = image_service.NewImage(
        id=None, name=built.name, visibility="public", protected=False, os_hidden=False,
        min_disk=0, min_ram=0, disk_format=built.disk_format,
        container_format=built.container_format, owner=owner, properties=properties, tags=(),
    )  # fmt: skip
    image_id = image_service.create_image(ctx, spec).row.id
    with built.path.open("rb") as data:
        image_service.store_data(ctx, image_id, iter(lambda: data.read(1 << 20), b""))
    return image_id


def register_missing(runtime: Runtime, owner: str, progress: Callable[[str], None]) -> None:
    """Build and register each built-in image not there yet, as public images of project
    `owner` (the admin project, as DevStack's cirros); a build that cannot run here (a
    package missing, no Debian mirror) is reported and skipped."""
    for name in BUILTIN:
        if _existing(runtime, name):
            continue
        progress(f"  building image {name} from Debian packages (first start only)...")
        try:
            built = image_builds.build(name, build_dir(runtime) / name)
        except (image_builds.ImageBuildError, HostCommandError) as exc:
            progress(f"  image {name} not built: {exc}")
            continue
        ids: dict[str, str] = {}
        for image in built:
            ids[image.name] = _existing(runtime, image.name) or _register(
                runtime, owner, image, ids
            )
        progress(f"  image {name} registered ({ids[name]})")
