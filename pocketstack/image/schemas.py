"""Glance v2 request checks and response shapes.

Glance describes an image with a JSON schema (served at /v2/schemas/image)
whose core attributes have fixed types and whose other keys are free-form
string properties; requests are checked against the same rules here, with
400s that name the attribute.
"""

from __future__ import annotations

import re
import uuid
from datetime import datetime
from typing import Any

from starlette.datastructures import QueryParams

from pocketstack.core import errors
from pocketstack.image import service as image_service

# Newest first, as Glance lists them; the CLI picks the newest CURRENT one.
VERSIONS: tuple[tuple[str, str], ...] = (
    ("v2.16", "CURRENT"),
    *((f"v2.{minor}", "SUPPORTED") for minor in range(15, -1, -1)),
)
_STRING_MAX = 255
_INT_MAX = 2**31 - 1
_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")


def timestamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def image_view(view: image_service.ImageView) -> dict[str, Any]:
    row = view.row
    document: dict[str, Any] = dict(view.properties)
    document.update(
        {
            "id": row.id,
            "name": row.name,
            "status": row.status,
            "visibility": row.visibility,
            "protected": row.protected,
            "os_hidden": row.os_hidden,
            "checksum": row.checksum,
            "os_hash_algo": row.os_hash_algo,
            "os_hash_value": row.os_hash_value,
            "size": row.size,
            "virtual_size": row.virtual_size,
            "min_disk": row.min_disk,
            "min_ram": row.min_ram,
            "disk_format": row.disk_format,
            "container_format": row.container_format,
            "owner": row.owner,
            "tags": list(view.tags),
            "created_at": timestamp(row.created_at),
            "updated_at": timestamp(row.updated_at),
            "self": f"/v2/images/{row.id}",
            "file": f"/v2/images/{row.id}/file",
            "schema": "/v2/schemas/image",
        }
    )
    return document


def member_view(member: image_service.MemberView) -> dict[str, Any]:
    return {
        "image_id": member.image_id,
        "member_id": member.member_id,
        "status": member.status,
        "created_at": timestamp(member.created_at),
        "updated_at": timestamp(member.updated_at),
        "schema": "/v2/schemas/member",
    }


# Attribute checks ------------------------------------------------------------------------


def _bad(name: str, value: Any, why: str) -> errors.Invalid:
    return errors.Invalid(f"Provided object does not match schema 'image': {value!r} {why}: {name}")


def _check_attribute(name: str, value: Any) -> Any:
    """`value` if it may be stored under core attribute `name`, else 400."""
    if name in ("name",):
        if value is not None and (not isinstance(value, str) or len(value) > _STRING_MAX):
            raise _bad(name, value, "is not a string of at most 255 characters")
    elif name in ("protected", "os_hidden"):
        if not isinstance(value, bool):
            raise _bad(name, value, "is not of type 'boolean'")
    elif name in ("min_disk", "min_ram"):
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= _INT_MAX:
            raise _bad(name, value, "is not a non-negative integer")
    elif name == "visibility":
        if value not in image_service.VISIBILITIES:
            raise _bad(name, value, f"is not one of {list(image_service.VISIBILITIES)}")
    elif name == "disk_format":
        if value is not None and value not in image_service.DISK_FORMATS:
            raise errors.Invalid(
                f"Invalid disk format '{value}' for image; allowed: "
                f"{', '.join(image_service.DISK_FORMATS)}"
            )
    elif name == "container_format":
        if value is not None and value not in image_service.CONTAINER_FORMATS:
            raise errors.Invalid(
                f"Invalid container format '{value}' for image; allowed: "
                f"{', '.join(image_service.CONTAINER_FORMATS)}"
            )
    elif name == "owner":
        if value is not None and (not isinstance(value, str) or len(value) > _STRING_MAX):
            raise _bad(name, value, "is not a string of at most 255 characters")
    elif name == "tags":
        if not isinstance(value, list) or not all(isinstance(t, str) for t in value):
            raise _bad(name, value, "is not a list of strings")
        for item in value:
            tag(item)
    return value


def _check_property(name: str, value: Any) -> str:
    if not isinstance(name, str) or not 0 < len(name) <= _STRING_MAX:
        raise errors.Invalid(f"Property names must be 1 to 255 characters: {name!r}")
    if not isinstance(value, str):
        raise errors.Invalid(
            f"Provided object does not match schema 'image': {value!r} is not of type "
            f"'string': {name}"
        )
    if len(value) > 65535:
        raise errors.Invalid(f"Property {name} is too long")
    return value


def tag(value: str) -> str:
    if not value or len(value) > _STRING_MAX:
        raise errors.Invalid(f"Tags must be 1 to 255 characters: {value!r}")
    return value


def new_image(body: Any) -> image_service.NewImage:
    if not isinstance(body, dict):
        raise errors.Invalid("Request body must be a JSON object")
    fields: dict[str, Any] = {}
    properties: dict[str, str] = {}
    for name, value in body.items():
        if name in image_service.RESERVED:
            raise errors.Forbidden(f"Attribute '{name}' is reserved.")
        if name in image_service.READ_ONLY and name != "id":
            raise errors.Forbidden(f"Attribute '{name}' is read-only.")
        if name == "id":
            if not isinstance(value, str) or not _UUID.match(value):
                raise _bad(name, value, "is not a valid UUID")
            fields["id"] = str(uuid.UUID(value))
        elif name in image_service.CORE_ATTRIBUTES:
            fields[name] = _check_attribute(name, value)
        else:
            properties[name] = _check_property(name, value)
    return image_service.NewImage(
        id=fields.get("id"),
        name=fields.get("name"),
        visibility=fields.get("visibility", "shared"),
        protected=fields.get("protected", False),
        os_hidden=fields.get("os_hidden", False),
        min_disk=fields.get("min_disk", 0),
        min_ram=fields.get("min_ram", 0),
        disk_format=fields.get("disk_format"),
        container_format=fields.get("container_format"),
        owner=fields.get("owner"),
        properties=properties,
        tags=fields.get("tags", []),
    )


def patch_changes(body: Any) -> list[image_service.Change]:
    """A JSON-patch document (add/replace/remove on `/attribute`) as changes."""
    if not isinstance(body, list):
        raise errors.Invalid("Request body must be a JSON array of operation objects.")
    changes = []
    for operation in body:
        if not isinstance(operation, dict) or operation.get("op") not in (
            "add",
            "replace",
            "remove",
        ):
            raise errors.Invalid(
                'Operation objects must contain exactly one member named "op" whose value '
                "is one of add, replace, remove."
            )
        path = operation.get("path")
        if not isinstance(path, str) or not path.startswith("/") or path.count("/") != 1:
            raise errors.Invalid(f"Invalid JSON pointer for this resource: '{path}'")
        name = path[1:].replace("~1", "/").replace("~0", "~")
        if operation["op"] == "remove":
            changes.append(image_service.Change("remove", name))
            continue
        if "value" not in operation:
            raise errors.Invalid(f'Operation "{operation["op"]}" requires a member named "value".')
        value = operation["value"]
        if name in image_service.CORE_ATTRIBUTES and name not in image_service.READ_ONLY:
            _check_attribute(name, value)
        elif name not in image_service.READ_ONLY and name not in image_service.RESERVED:
            _check_property(name, value)
        changes.append(image_service.Change("set", name, value))
    return changes


def member_id(body: Any) -> str:
    if not isinstance(body, dict) or not isinstance(body.get("member"), str):
        raise errors.Invalid("Request body must be an object with a 'member' string.")
    member = body["member"].strip()
    if not member or len(member) > _STRING_MAX:
        raise errors.Invalid("Member must be 1 to 255 characters.")
    return member


def member_status(body: Any) -> str:
    status = body.get("status") if isinstance(body, dict) else None
    if status not in image_service.MEMBER_STATUSES:
        raise errors.Invalid(
            f"Provided object does not match schema 'member': {status!r} is not one of "
            f"{list(image_service.MEMBER_STATUSES)}"
        )
    return str(status)


# Query strings -----------------------------------------------------------------------------

_LIST_PARAMS = frozenset(
    {
        "limit",
        "marker",
        "sort_key",
        "sort_dir",
        "sort",
        "name",
        "status",
        "visibility",
        "owner",
        "member_status",
        "tag",
        "protected",
        "os_hidden",
        "disk_format",
        "container_format",
        "size_min",
        "size_max",
        "id",
    }
)


def _boolean(name: str, raw: str) -> bool:
    lowered = raw.lower()
    if lowered not in ("true", "false"):
        raise errors.Invalid(f"Invalid value '{raw}' for '{name}': expected true or false")
    return lowered == "true"


def _size(name: str, raw: str) -> int:
    try:
        return int(raw)
    except ValueError:
        raise errors.Invalid(f"Invalid value '{raw}' for '{name}': expected an integer") from None


def _in_list(raw: str) -> tuple[str, ...]:
    return tuple(v for v in raw[3:].split(",") if v) if raw.startswith("in:") else (raw,)


def image_filter(params: QueryParams) -> image_service.ImageFilter:
    visibility = params.get("visibility")
    if visibility is not None and visibility not in (*image_service.VISIBILITIES, "all"):
        raise errors.Invalid(f"Invalid visibility value: {visibility}")
    member_status = params.get("member_status", "accepted")
    if member_status not in (*image_service.MEMBER_STATUSES, "all"):
        raise errors.Invalid(f"Invalid status value: {member_status}")
    properties = {k: v for k, v in params.items() if k not in _LIST_PARAMS}
    ids = _in_list(params["id"]) if "id" in params else ()
    return image_service.ImageFilter(
        name=params.get("name"),
        status=params.get("status"),
        visibility=visibility,
        owner=params.get("owner"),
        member_status=member_status,
        tags=tuple(params.getlist("tag")),
        protected=_boolean("protected", params["protected"]) if "protected" in params else None,
        os_hidden=_boolean("os_hidden", params["os_hidden"]) if "os_hidden" in params else False,
        disk_format=params.get("disk_format"),
        container_format=params.get("container_format"),
        size_min=_size("size_min", params["size_min"]) if "size_min" in params else None,
        size_max=_size("size_max", params["size_max"]) if "size_max" in params else None,
        ids=ids,
        properties=properties,
    )


def sort_params(params: QueryParams) -> tuple[list[str], list[str]]:
    """`sort=key:dir,...` (v2.2+) or repeated `sort_key`/`sort_dir`; newest first by default."""
    if "sort" in params:
        if "sort_key" in params or "sort_dir" in params:
            raise errors.Invalid(
                "The 'sort' parameter cannot be combined with 'sort_key'/'sort_dir'"
            )
        keys, dirs = [], []
        for item in params["sort"].split(","):
            key, _, direction = item.strip().partition(":")
            keys.append(key)
            dirs.append(direction or "desc")
        return keys, dirs
    keys = params.getlist("sort_key") or ["created_at"]
    dirs = params.getlist("sort_dir") or ["desc"]
    return keys, dirs


# Schema documents ----------------------------------------------------------------------------

_NULLABLE_STRING: dict[str, Any] = {"type": ["null", "string"], "maxLength": _STRING_MAX}
_IMAGE_PROPERTIES: dict[str, Any] = {
    "id": {
        "type": "string",
        "pattern": (
            "^([0-9a-fA-F]){8}-([0-9a-fA-F]){4}-([0-9a-fA-F]){4}-([0-9a-fA-F]){4}"
            "-([0-9a-fA-F]){12}$"
        ),
    },
    "name": _NULLABLE_STRING,
    "status": {
        "type": "string",
        "readOnly": True,
        "enum": [
            "queued",
            "saving",
            "active",
            "killed",
            "deleted",
            "uploading",
            "importing",
            "pending_delete",
            "deactivated",
        ],
    },
    "visibility": {"type": "string", "enum": list(image_service.VISIBILITIES)},
    "protected": {"type": "boolean"},
    "os_hidden": {"type": "boolean"},
    "checksum": {"type": ["null", "string"], "readOnly": True, "maxLength": 32},
    "os_hash_algo": {"type": ["null", "string"], "readOnly": True, "maxLength": 64},
    "os_hash_value": {"type": ["null", "string"], "readOnly": True, "maxLength": 128},
    "owner": _NULLABLE_STRING,
    "size": {"type": ["null", "integer"], "readOnly": True},
    "virtual_size": {"type": ["null", "integer"], "readOnly": True},
    "container_format": {
        "type": ["null", "string"],
        "enum": [None, *image_service.CONTAINER_FORMATS],
    },
    "disk_format": {"type": ["null", "string"], "enum": [None, *image_service.DISK_FORMATS]},
    "created_at": {"type": "string", "readOnly": True},
    "updated_at": {"type": "string", "readOnly": True},
    "tags": {"type": "array", "items": {"type": "string", "maxLength": _STRING_MAX}},
    "direct_url": {"type": "string", "readOnly": True},
    "min_ram": {"type": "integer"},
    "min_disk": {"type": "integer"},
    "self": {"type": "string", "readOnly": True},
    "file": {"type": "string", "readOnly": True},
    "schema": {"type": "string", "readOnly": True},
    "locations": {"type": "array", "items": {"type": "object"}},
}
IMAGE_SCHEMA: dict[str, Any] = {
    "name": "image",
    "properties": _IMAGE_PROPERTIES,
    "additionalProperties": {"type": "string"},
    "links": [
        {"rel": "self", "href": "{self}"},
        {"rel": "enclosure", "href": "{file}"},
        {"rel": "describedby", "href": "{schema}"},
    ],
}
IMAGES_SCHEMA: dict[str, Any] = {
    "name": "images",
    "properties": {
        "images": {"type": "array", "items": IMAGE_SCHEMA},
        "schema": {"type": "string"},
        "first": {"type": "string"},
        "next": {"type": "string"},
    },
    "links": [
        {"rel": "first", "href": "{first}"},
        {"rel": "next", "href": "{next}"},
        {"rel": "describedby", "href": "{schema}"},
    ],
}
MEMBER_SCHEMA: dict[str, Any] = {
    "name": "member",
    "properties": {
        "created_at": {"type": "string"},
        "image_id": {"type": "string"},
        "member_id": {"type": "string"},
        "schema": {"type": "string", "readOnly": True},
        "status": {"type": "string", "enum": list(image_service.MEMBER_STATUSES)},
        "updated_at": {"type": "string"},
    },
}
MEMBERS_SCHEMA: dict[str, Any] = {
    "name": "members",
    "properties": {
        "members": {"type": "array", "items": MEMBER_SCHEMA},
        "schema": {"type": "string"},
    },
    "links": [{"rel": "describedby", "href": "{schema}"}],
}
