"""Metadata definitions (metadefs): request checks, response shapes and the schema
documents served at /v2/schemas/metadefs/....

As in Glance, the documents a client can fetch are also what request bodies are
validated against (JSON schema draft 4), so a 400 names the rule the body broke.
Called by image/api.py; builds the specs image/metadefs.py takes.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

import jsonschema
import jsonschema.exceptions
from starlette.datastructures import QueryParams

from pocketstack.core import errors
from pocketstack.image import metadefs
from pocketstack.image.schemas import timestamp

# Schema documents ------------------------------------------------------------------------

_TYPES = ["array", "boolean", "integer", "number", "object", "string", None]
_DEFINITIONS: dict[str, Any] = {
    "positiveInteger": {"type": "integer", "minimum": 0},
    "positiveIntegerDefault0": {
        "allOf": [{"$ref": "#/definitions/positiveInteger"}, {"default": 0}]
    },
    "stringArray": {"type": "array", "items": {"type": "string"}, "uniqueItems": True},
}
# The attributes one property definition may have: a JSON-schema fragment.
_PROPERTY_ATTRIBUTES: dict[str, Any] = {
    "name": {"type": "string", "maxLength": 255},
    "title": {"type": "string"},
    "description": {"type": "string"},
    "operators": {"type": "array", "items": {"type": "string"}},
    "type": {"type": "string", "enum": _TYPES},
    "required": {"$ref": "#/definitions/stringArray"},
    "minimum": {"type": "number"},
    "maximum": {"type": "number"},
    "maxLength": {"$ref": "#/definitions/positiveInteger"},
    "minLength": {"$ref": "#/definitions/positiveIntegerDefault0"},
    "pattern": {"type": "string", "format": "regex"},
    "enum": {"type": "array"},
    "readonly": {"type": "boolean"},
    "default": {},
    "items": {
        "type": "object",
        "properties": {"type": {"type": "string", "enum": _TYPES}, "enum": {"type": "array"}},
    },
    "maxItems": {"$ref": "#/definitions/positiveInteger"},
    "minItems": {"$ref": "#/definitions/positiveIntegerDefault0"},
    "uniqueItems": {"type": "boolean", "default": False},
    "additionalItems": {"type": "boolean"},
}
_PROPERTY_MAP = {
    "type": "object",
    "additionalProperties": {
        "type": "object",
        "required": ["title", "type"],
        "properties": _PROPERTY_ATTRIBUTES,
    },
}


def _moment_field(what: str) -> dict[str, Any]:
    return {"type": "string", "readOnly": True, "description": what, "format": "date-time"}


def _read_only() -> dict[str, Any]:
    return {"type": "string", "readOnly": True}


def _document(
    name: str,
    properties: dict[str, Any],
    required: list[str],
    definitions: dict[str, Any] | None = None,
) -> dict[str, Any]:
    document: dict[str, Any] = {
        "name": name,
        "properties": properties,
        "additionalProperties": False,
        "required": required,
    }
    if definitions:
        document["definitions"] = definitions
    return document


def _collection(name: str, item: dict[str, Any], as_map: bool = False) -> dict[str, Any]:
    """A list document: `name` holds the items (an array, or for properties an object
    keyed by name); definitions move up to the top level."""
    item = copy.deepcopy(item)
    definitions = item.pop("definitions", None)
    holder: dict[str, Any] = (
        {"type": "object", "additionalProperties": item}
        if as_map
        else {"type": "array", "items": item}
    )
    document: dict[str, Any] = {
        "name": name,
        "properties": {
            name: holder,
            "first": {"type": "string"},
            "next": {"type": "string"},
            "schema": {"type": "string"},
        },
        "links": [
            {"rel": "first", "href": "{first}"},
            {"rel": "next", "href": "{next}"},
            {"rel": "describedby", "href": "{schema}"},
        ],
    }
    if definitions:
        document["definitions"] = definitions
    return document


NAMESPACE_SCHEMA = _document(
    "namespace",
    {
        "namespace": {"type": "string", "maxLength": 80, "description": "Unique name."},
        "display_name": {"type": "string", "maxLength": 80, "description": "Name shown in UIs."},
        "description": {"type": "string", "maxLength": 500, "description": "What it is for."},
        "visibility": {
            "type": "string",
            "enum": list(metadefs.VISIBILITIES),
            "description": "Who may read it.",
        },
        "protected": {"type": "boolean", "description": "Whether deletion is refused."},
        "owner": {"type": "string", "maxLength": 255, "description": "Owning project."},
        "created_at": _moment_field("When it was created."),
        "updated_at": _moment_field("When it last changed."),
        "schema": _read_only(),
        "self": _read_only(),
        "resource_type_associations": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "name": {"type": "string"},
                    "prefix": {"type": "string"},
                    "properties_target": {"type": "string"},
                },
            },
        },
        "properties": {"$ref": "#/definitions/property"},
        "objects": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "name": {"type": "string"},
                    "description": {"type": "string"},
                    "required": {"$ref": "#/definitions/stringArray"},
                    "properties": {"$ref": "#/definitions/property"},
                },
            },
        },
        "tags": {
            "type": "array",
            "items": {"type": "object", "properties": {"name": {"type": "string"}}},
        },
    },
    ["namespace"],
    {**_DEFINITIONS, "property": _PROPERTY_MAP},
)
OBJECT_SCHEMA = _document(
    "object",
    {
        "name": {"type": "string", "maxLength": 80},
        "description": {"type": "string"},
        "required": {"$ref": "#/definitions/stringArray"},
        "properties": {"$ref": "#/definitions/property"},
        "schema": _read_only(),
        "self": _read_only(),
        "created_at": _moment_field("When the object was created."),
        "updated_at": _moment_field("When the object last changed."),
    },
    ["name"],
    {**_DEFINITIONS, "property": _PROPERTY_MAP},
)
PROPERTY_SCHEMA = _document(
    "property",
    dict(_PROPERTY_ATTRIBUTES),
    ["type", "title", "name"],
    {**_DEFINITIONS, "stringArray": {**_DEFINITIONS["stringArray"], "minItems": 1}},
)
_LISTED_PROPERTY = {**PROPERTY_SCHEMA, "required": ["type", "title"]}
TAG_SCHEMA = _document(
    "tag",
    {
        "name": {"type": "string", "maxLength": 255},
        "created_at": _moment_field("When the tag was created."),
        "updated_at": _moment_field("When the tag last changed."),
    },
    ["name"],
)
RESOURCE_TYPE_ASSOCIATION_SCHEMA = _document(
    "resource_type_association",
    {
        "name": {
            "type": "string",
            "maxLength": 80,
            "description": "The resource type, named as Heat names it (OS::Nova::Flavor).",
        },
        "prefix": {
            "type": "string",
            "maxLength": 80,
            "description": "Prepended to the namespace's property names for this resource "
            "type, separator included (hw_, hw:).",
        },
        "properties_target": {
            "type": "string",
            "maxLength": 80,
            "description": "Which of the resource's key/value sets the properties go to "
            "(for volumes: image).",
        },
        "created_at": _moment_field("When the association was made."),
        "updated_at": _moment_field("When the association last changed."),
    },
    ["name"],
)
# Bulk tag creation: a list of {"name": ...} and nothing else.
_TAGS_BODY_SCHEMA: dict[str, Any] = {
    "name": "tags",
    "type": "object",
    "properties": {
        "tags": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"name": {"type": "string", "maxLength": 255}},
                "required": ["name"],
                "additionalProperties": False,
            },
        }
    },
    "required": ["tags"],
}

SCHEMA_DOCUMENTS: dict[str, dict[str, Any]] = {
    "namespace": NAMESPACE_SCHEMA,
    "namespaces": _collection("namespaces", NAMESPACE_SCHEMA),
    "object": OBJECT_SCHEMA,
    "objects": _collection("objects", OBJECT_SCHEMA),
    "property": PROPERTY_SCHEMA,
    "properties": _collection("properties", _LISTED_PROPERTY, as_map=True),
    "tag": TAG_SCHEMA,
    "tags": _collection("tags", TAG_SCHEMA),
    "resource_type": RESOURCE_TYPE_ASSOCIATION_SCHEMA,
    "resource_types": _collection("resource_type_associations", RESOURCE_TYPE_ASSOCIATION_SCHEMA),
}

# Request checks ---------------------------------------------------------------------------


def _validate(document: Mapping[str, Any], body: Any) -> None:
    """400 naming the first rule `body` breaks in `document`."""
    validator = jsonschema.Draft4Validator(document)
    error = jsonschema.exceptions.best_match(validator.iter_errors(body))
    if error is not None:
        where = "/".join(str(p) for p in error.absolute_path)
        raise errors.Invalid(
            f"Provided object does not match schema '{document['name']}': {error.message}"
            + (f" (at {where})" if where else "")
        )


def _object_body(body: Any, read_only: Sequence[str]) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise errors.Invalid("Request body must be a JSON object")
    for key in read_only:
        if key in body:
            raise errors.Forbidden(f"Attribute '{key}' is read-only.")
    return body


_READ_ONLY = ("self", "schema", "created_at", "updated_at")
_READ_ONLY_TIMES = ("created_at", "updated_at")


def _properties(raw: Mapping[str, Any] | None) -> dict[str, dict[str, Any]]:
    """Property definitions by name, each without a `name` of its own (the key is)."""
    return {
        name: {k: v for k, v in schema.items() if k != "name"}
        for name, schema in (raw or {}).items()
    }


def _new_object(raw: Mapping[str, Any]) -> metadefs.NewObject:
    if "name" not in raw:
        raise errors.Invalid(
            "Provided object does not match schema 'object': 'name' is a required property"
        )
    return metadefs.NewObject(
        name=raw["name"],
        description=raw.get("description"),
        required=tuple(raw.get("required") or ()),
        properties=_properties(raw.get("properties")),
    )


def _new_association(raw: Mapping[str, Any]) -> metadefs.NewAssociation:
    if not isinstance(raw.get("name"), str) or not raw["name"]:
        raise errors.Invalid(
            "Provided object does not match schema 'resource_type_association': "
            "'name' is a required property"
        )
    return metadefs.NewAssociation(raw["name"], raw.get("prefix"), raw.get("properties_target"))


def new_namespace(body: Any) -> metadefs.NewNamespace:
    """A namespace create or update body (PUT carries the whole namespace too)."""
    checked = _object_body(body, _READ_ONLY)
    _validate(NAMESPACE_SCHEMA, checked)
    tags = [t.get("name") for t in checked.get("tags") or ()]
    if any(not isinstance(t, str) or not t for t in tags):
        raise errors.Invalid("Provided object does not match schema 'tag': 'name' is required")
    return metadefs.NewNamespace(
        namespace=checked["namespace"],
        display_name=checked.get("display_name"),
        description=checked.get("description"),
        visibility=checked.get("visibility"),
        protected=checked.get("protected"),
        owner=checked.get("owner"),
        resource_type_associations=tuple(
            _new_association(a) for a in checked.get("resource_type_associations") or ()
        ),
        properties=_properties(checked.get("properties")),
        objects=tuple(_new_object(o) for o in checked.get("objects") or ()),
        tags=tuple(tags),
    )


def new_object(body: Any) -> metadefs.NewObject:
    checked = _object_body(body, _READ_ONLY)
    _validate(OBJECT_SCHEMA, checked)
    return _new_object(checked)


def new_property(body: Any) -> tuple[str, dict[str, Any]]:
    """(name, definition) from a property body."""
    checked = _object_body(body, _READ_ONLY_TIMES)
    _validate(PROPERTY_SCHEMA, checked)
    return checked["name"], {k: v for k, v in checked.items() if k != "name"}


def tag_name(name: str) -> str:
    _validate(TAG_SCHEMA, {"name": name})
    if not name:
        raise errors.Invalid("Tag names must not be empty")
    return name


def tag_update(body: Any) -> str:
    checked = _object_body(body, _READ_ONLY_TIMES)
    _validate(TAG_SCHEMA, checked)
    return tag_name(checked["name"])


def new_tags(body: Any) -> list[str]:
    checked = _object_body(body, ())
    _validate(_TAGS_BODY_SCHEMA, checked)
    return [tag_name(t["name"]) for t in checked["tags"]]


def new_association(body: Any) -> metadefs.NewAssociation:
    checked = _object_body(body, _READ_ONLY_TIMES)
    _validate(RESOURCE_TYPE_ASSOCIATION_SCHEMA, checked)
    return _new_association(checked)


def namespace_filter(params: QueryParams) -> metadefs.NamespaceFilter:
    visibility = params.get("visibility") or None
    if visibility is not None and visibility not in metadefs.VISIBILITIES:
        raise errors.Invalid(f"Invalid visibility value: {visibility}")
    raw_types = params.get("resource_types") or ""
    return metadefs.NamespaceFilter(
        visibility=visibility,
        resource_types=tuple(t.strip() for t in raw_types.split(",") if t.strip()),
    )


def namespace_sort(params: QueryParams) -> tuple[str, bool]:
    """(sort key, descending): newest first unless asked otherwise."""
    key = params.get("sort_key", "created_at")
    if key not in metadefs.SORT_KEYS:
        raise errors.Invalid(
            f"Invalid sort key: {key}. It must be one of the following: "
            f"{', '.join(metadefs.SORT_KEYS)}."
        )
    direction = params.get("sort_dir", "desc")
    if direction not in ("asc", "desc"):
        raise errors.Invalid(f"Invalid sort direction: {direction}")
    return key, direction == "desc"


# Response shapes -------------------------------------------------------------------------

NAMESPACES_PATH = "/v2/metadefs/namespaces"


def _present(document: dict[str, Any]) -> dict[str, Any]:
    """Glance leaves unset attributes out rather than showing null."""
    return {k: v for k, v in document.items() if v is not None}


def association_view(view: metadefs.AssociationView) -> dict[str, Any]:
    return _present(
        {
            "name": view.name,
            "prefix": view.prefix,
            "properties_target": view.properties_target,
            "created_at": timestamp(view.created_at),
            "updated_at": timestamp(view.updated_at),
        }
    )


def object_view(view: metadefs.ObjectView) -> dict[str, Any]:
    return _present(
        {
            "name": view.name,
            "description": view.description,
            "required": list(view.required),
            "properties": dict(view.properties),
            "schema": "/v2/schemas/metadefs/object",
            "self": f"{NAMESPACES_PATH}/{view.namespace}/objects/{view.name}",
            "created_at": timestamp(view.created_at),
            "updated_at": timestamp(view.updated_at),
        }
    )


def property_view(view: metadefs.PropertyView) -> dict[str, Any]:
    return {"name": view.name, **view.schema}


def tag_view(view: metadefs.TagView) -> dict[str, Any]:
    return {
        "name": view.name,
        "created_at": timestamp(view.created_at),
        "updated_at": timestamp(view.updated_at),
    }


def tag_names(views: Sequence[metadefs.TagView]) -> dict[str, Any]:
    """Tag lists (and bulk creation) show names only."""
    return {"tags": [{"name": v.name} for v in views]}


def resource_type_view(view: metadefs.ResourceTypeView) -> dict[str, Any]:
    return {
        "name": view.name,
        "created_at": timestamp(view.created_at),
        "updated_at": timestamp(view.updated_at),
    }


def namespace_view(view: metadefs.NamespaceView) -> dict[str, Any]:
    document = _present(
        {
            "namespace": view.namespace,
            "display_name": view.display_name,
            "description": view.description,
            "visibility": view.visibility,
            "protected": view.protected,
            "owner": view.owner,
            "created_at": timestamp(view.created_at),
            "updated_at": timestamp(view.updated_at),
            "schema": "/v2/schemas/metadefs/namespace",
            "self": f"{NAMESPACES_PATH}/{view.namespace}",
        }
    )
    if view.resource_type_associations:
        document["resource_type_associations"] = [
            association_view(a) for a in view.resource_type_associations
        ]
    if view.properties:
        document["properties"] = dict(view.properties)
    if view.objects:
        document["objects"] = [object_view(o) for o in view.objects]
    if view.tags:
        document["tags"] = [{"name": t.name} for t in view.tags]
    return document
