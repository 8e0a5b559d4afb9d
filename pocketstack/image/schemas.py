"""Glance v2 request checks and response shapes.

Glance describes an image with a JSON schema (served at /v2/schemas/image)
whose core attributes have fixed types and whose other keys are free-form
string properties; requests are checked against the same rules here, with
400s that name the attribute.
"""

from __future__ import annotations

import csv
import re
import uuid
from datetime import UTC, datetime
from typing import Any

from starlette.datastructures import QueryParams

from pocketstack.core import errors, pagination
from pocketstack.image import service as image_service

# Glance's default list, in its order: without an image cache or several stores it serves
# these versions; clients pick the CURRENT one.
VERSIONS: tuple[tuple[str, str], ...] = (
    ("v2.15", "SUPPORTED"),
    ("v2.9", "SUPPORTED"),
    ("v2.17", "CURRENT"),
    *((f"v2.{minor}", "SUPPORTED") for minor in range(7, -1, -1)),
)
_STRING_MAX = 255
_INT_MAX = 2**31 - 1
# Properties Glance's image schema types although they are not columns.
_UUID_PROPERTIES = frozenset({"kernel_id", "ramdisk_id"})
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


def _check_name_allowed(name: str, creating: bool) -> None:
    """403 for attributes no request may set: read-only ones, reserved ones, and Glance's
    own `os_glance*` namespace."""
    settable_id = creating and name == "id"
    if name in image_service.READ_ONLY and not settable_id:
        raise errors.Forbidden(f"Attribute '{name}' is read-only.")
    if name in image_service.RESERVED or name.startswith("os_glance"):
        raise errors.Forbidden(f"Attribute '{name}' is reserved.")


def _check_value(name: str, value: Any) -> Any:
    if name == "id":
        if not isinstance(value, str) or not _UUID.match(value):
            raise _bad(name, value, "does not match the UUID pattern")
        return str(uuid.UUID(value))
    if name in image_service.CORE_ATTRIBUTES:
        return _check_attribute(name, value)
    if name in _UUID_PROPERTIES:
        if value is not None and (not isinstance(value, str) or not _UUID.match(value)):
            raise _bad(name, value, "does not match the UUID pattern")
        return value
    return _check_property(name, value)


def new_image(body: Any) -> image_service.NewImage:
    if not isinstance(body, dict):
        raise errors.Invalid("Request body must be a JSON object")
    for name in body:
        if name in image_service.DISALLOWED:
            raise errors.Forbidden(f"Attribute '{name}' is read-only.")
    checked = {name: _check_value(name, value) for name, value in body.items()}
    for name in checked:
        if len(name) > _STRING_MAX:
            raise errors.Invalid("Custom property should not be greater than 255 characters.")
        _check_name_allowed(name, creating=True)
    fields = {k: v for k, v in checked.items() if k in image_service.CORE_ATTRIBUTES}
    properties = {k: v for k, v in checked.items() if k not in image_service.CORE_ATTRIBUTES}
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
        properties={k: "" if v is None else v for k, v in properties.items()},
        tags=fields.get("tags", []),
    )


_DRAFT4_OPS = ("add", "remove", "replace")


def patch_changes(body: Any, media_type: str) -> list[image_service.Change]:
    """A JSON-patch document as changes: `{"op": "add", "path": "/name", "value": ...}` in
    the v2.1 media type (SDK, CLI), `{"add": "/name", "value": ...}` in v2.0 (Tempest)."""
    if not isinstance(body, list):
        raise errors.Invalid("Request body must be a JSON array of operation objects.")
    draft4 = media_type.endswith("v2.0-json-patch")
    changes = []
    for operation in body:
        if not isinstance(operation, dict):
            raise errors.Invalid("Operations must be JSON objects.")
        op, path = _draft4_op(operation) if draft4 else _draft10_op(operation)
        name = _pointer(path)
        _check_name_allowed(name, creating=False)
        if op == "remove":
            changes.append(image_service.Change("remove", name, strict_add=draft4))
            continue
        if "value" not in operation:
            raise errors.Invalid(f'Operation "{op}" requires a member named "value".')
        value = _check_value(name, operation["value"])
        changes.append(image_service.Change(op, name, value, strict_add=draft4))
    return changes


def _draft10_op(operation: dict[str, Any]) -> tuple[str, Any]:
    op = operation.get("op")
    if op is None:
        raise errors.Invalid(
            "Unable to find `op` in JSON Schema change. It must be one of the following: "
            "add, remove, replace."
        )
    if op not in _DRAFT4_OPS:
        raise errors.Invalid(
            f"Invalid operation: `{op}`. It must be one of the following: add, remove, replace."
        )
    if "path" not in operation:
        raise errors.Invalid("Unable to find 'path' in JSON Schema change")
    return str(op), operation["path"]


def _draft4_op(operation: dict[str, Any]) -> tuple[str, Any]:
    present = [op for op in _DRAFT4_OPS if op in operation]
    if len(present) != 1:
        many = "only one member" if present else "exactly one member"
        raise errors.Invalid(
            f'Operation objects must contain {many} named "add", "remove", or "replace".'
        )
    return present[0], operation[present[0]]


def _pointer(path: Any) -> str:
    """The one attribute a JSON pointer like `/name` names (Glance patches one level)."""
    if not isinstance(path, str) or not path.startswith("/"):
        raise errors.Invalid(f'Pointer `{path}` does not start with "/".')
    if path.endswith("/") or "//" in path:
        raise errors.Invalid(f'Pointer `{path}` contains adjacent "/".')
    if re.search(r"~(?![01])", path):
        raise errors.Invalid(
            f'Pointer `{path}` contains "~" not part of a recognized escape sequence.'
        )
    segments = path[1:].split("/")
    if len(segments) != 1:
        raise errors.Invalid(f"Invalid JSON pointer for this resource: '{path}'")
    return segments[0].replace("~1", "/").replace("~0", "~").strip()


def member_id(body: Any) -> str:
    if not isinstance(body, dict):
        raise errors.Invalid('Expected a member in the form: {"member": "image_id"}')
    if "member" not in body:
        raise errors.Invalid("Member to be added not specified")
    member = body["member"]
    if not isinstance(member, str) or not member.strip():
        raise errors.Invalid("Member can't be empty")
    if len(member) > _STRING_MAX:
        raise errors.Invalid("Member must be at most 255 characters.")
    return member.strip()


def member_status(body: Any) -> Any:
    """The requested status; whether it is a valid one is checked after the permission."""
    if not isinstance(body, dict):
        raise errors.Invalid('Expected a status in the form: {"status": "status"}')
    if "status" not in body:
        raise errors.Invalid("Status not specified")
    return body["status"]


# Query strings -----------------------------------------------------------------------------

_LIST_PARAMS = frozenset(
    {
        "limit",
        "marker",
        "sort_key",
        "sort_dir",
        "sort",
        "visibility",
        "member_status",
        "tag",
        "protected",
        "os_hidden",
        "size_min",
        "size_max",
        "created_at",
        "updated_at",
    }
)
# Columns filtered by equality; the first five also take `in:a,b` (and `eq:a`).
_LISTED_EQUALITY = ("name", "id", "status", "container_format", "disk_format")
_EQUALITY = (*_LISTED_EQUALITY, "owner", "checksum", "os_hash_value")
_INTEGER_EQUALITY = ("size", "virtual_size", "min_disk", "min_ram")


def _boolean(name: str, raw: str) -> bool:
    lowered = raw.lower()
    if lowered not in ("true", "false"):
        raise errors.Invalid(
            f"Invalid value '{raw}' for '{name}' filter. Valid values are 'true' or 'false'."
        )
    return lowered == "true"


def _integer(raw: str) -> int:
    try:
        return int(raw)
    except ValueError:
        raise errors.Invalid("Unable to filter on a range with a non-numeric value.") from None


def _values(raw: str) -> tuple[str, ...]:
    """`v`, `eq:v` or `in:v1,"v,2"` as the values to match."""
    operator, sep, rest = raw.partition(":")
    if not sep:
        return (raw,)
    if operator == "eq":
        return (rest,)
    if operator == "in":
        try:
            return tuple(next(csv.reader([rest], skipinitialspace=True)))
        except (csv.Error, StopIteration):
            raise errors.Invalid(f"Invalid in: filter value {rest!r}") from None
    raise errors.Invalid(f"Unable to filter by unknown operator '{operator}'.")


def _moment(column: str, raw: str) -> tuple[str, str, datetime]:
    operator, sep, rest = raw.partition(":")
    if not sep or _parses_as_time(raw):
        operator, rest = "eq", raw
    if operator not in ("gt", "gte", "lt", "lte", "eq", "neq"):
        raise errors.Invalid("Unable to filter on a unknown operator.")
    try:
        moment = datetime.fromisoformat(rest.replace("Z", "+00:00"))
    except ValueError:
        raise errors.Invalid(
            f'Bad "{column}" query filter format. Use ISO 8601 DateTime notation.'
        ) from None
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC).replace(tzinfo=None)
    return column, operator, moment


def _parses_as_time(raw: str) -> bool:
    try:
        datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        return False
    return True


def image_filter(params: QueryParams) -> image_service.ImageFilter:
    if "changes-since" in params:
        raise errors.Invalid('The "changes-since" filter is no longer available on v2.')
    visibility = params.get("visibility")
    if visibility is not None and visibility not in (*image_service.VISIBILITIES, "all"):
        raise errors.Invalid(f"Invalid visibility value: {visibility}")
    member_status = params.get("member_status", "accepted")
    if member_status not in (*image_service.MEMBER_STATUSES, "all"):
        raise errors.Invalid(f"Invalid status: {member_status}")
    equals: dict[str, tuple[Any, ...]] = {}
    for column in _EQUALITY:
        if column in params:
            raw = params[column]
            equals[column] = _values(raw) if column in _LISTED_EQUALITY else (raw,)
    for column in _INTEGER_EQUALITY:
        if column in params:
            equals[column] = (_integer(params[column]),)
    times = tuple(_moment(c, params[c]) for c in ("created_at", "updated_at") if c in params)
    ignored = {*_LIST_PARAMS, *_EQUALITY, *_INTEGER_EQUALITY}
    return image_service.ImageFilter(
        visibility=visibility,
        member_status=member_status,
        tags=tuple(params.getlist("tag")),
        protected=_boolean("protected", params["protected"]) if "protected" in params else None,
        os_hidden=_boolean("os_hidden", params["os_hidden"]) if "os_hidden" in params else False,
        equals=equals,
        size_min=_integer(params["size_min"]) if "size_min" in params else None,
        size_max=_integer(params["size_max"]) if "size_max" in params else None,
        times=times,
        properties={k: v for k, v in params.items() if k not in ignored},
    )


def limit(params: QueryParams, default: int, maximum: int) -> int:
    raw = params.get("limit")
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise errors.Invalid("limit param must be an integer") from None
    if value < 0:
        raise errors.Invalid("limit param must be positive")
    return min(value, maximum)


def sort(params: QueryParams) -> list[pagination.SortKey]:
    """`sort=key:dir,...` or repeated `sort_key`/`sort_dir`, newest first by default, with
    `created_at` and `id` as tie-breakers so that markers page stably."""
    if "sort" in params:
        if "sort_key" in params or "sort_dir" in params:
            raise errors.Invalid("Old and new sorting syntax cannot be combined")
        pairs = []
        for item in params["sort"].split(","):
            key, _, direction = item.strip().partition(":")
            pairs.append((key, direction or "desc"))
    else:
        keys = params.getlist("sort_key") or ["created_at"]
        dirs = params.getlist("sort_dir") or ["desc"]
        if len(dirs) > 1 and len(dirs) != len(keys):
            raise errors.Invalid("Number of sort dirs does not match the number of sort keys")
        pairs = [(k, dirs[i] if len(dirs) > 1 else dirs[0]) for i, k in enumerate(keys)]
    result = []
    for key, direction in pairs:
        if key not in image_service.SORT_KEYS:
            raise errors.Invalid(
                f"Invalid sort key: {key}. It must be one of the following: "
                f"{', '.join(image_service.SORT_KEYS)}."
            )
        if direction not in ("asc", "desc"):
            raise errors.Invalid(f"Invalid sort direction: {direction}")
        result.append(pagination.SortKey(key, direction == "desc"))
    default_descending = result[0].descending if len(pairs) == 1 else True
    for tie_breaker in ("created_at", "id"):
        if all(k.column != tie_breaker for k in result):
            result.append(pagination.SortKey(tie_breaker, default_descending))
    return result


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
SCHEMA_DOCUMENTS: dict[str, dict[str, Any]] = {
    "image": IMAGE_SCHEMA,
    "images": IMAGES_SCHEMA,
    "member": MEMBER_SCHEMA,
    "members": MEMBERS_SCHEMA,
}
