"""JSON schemas of placement request bodies, per microversion.

Placement's clients and its own test suite read the validation messages
python-jsonschema writes (`Failed validating 'maximum' in
schema['properties']['total']`, `'x' was unexpected`), so placement
validates its bodies with jsonschema against schemas shaped like
upstream's, rather than with pydantic.
"""

from __future__ import annotations

import copy
import functools
import uuid
from typing import Any

import jsonschema
import jsonschema.exceptions
import jsonschema.validators

from pocketstack.core import errors
from pocketstack.core.microversion import Version

MAX_INT = 2147483647
FLOAT_MAX = 3.40282e38
RC_PATTERN = r"^([A-Z0-9_]+|CUSTOM_[A-Z0-9_]+)$"
CUSTOM_PATTERN = r"^CUSTOM\_[A-Z0-9_]+$"
UUID_KEY = r"^[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}$"

_FORMATS = jsonschema.FormatChecker()


@_FORMATS.checks("uuid", raises=ValueError)
def _is_uuid(value: object) -> bool:
    if isinstance(value, str):
        uuid.UUID(value)
    return True


# id(schema) -> (schema, its validator); holding the schema keeps its id from being reused.
_VALIDATORS: dict[int, tuple[dict[str, Any], Any]] = {}


def _validator(schema: dict[str, Any]) -> Any:
    """Checking a schema costs more than validating a body with it: do it once per schema."""
    entry = _VALIDATORS.get(id(schema))
    if entry is None:
        cls = jsonschema.validators.validator_for(schema)
        cls.check_schema(schema)
        entry = _VALIDATORS[id(schema)] = (schema, cls(schema, format_checker=_FORMATS))
    return entry[1]


def validate(data: Any, schema: dict[str, Any], prefix: str = "JSON does not validate") -> Any:
    """`data` if it fits `schema`, else 400 with jsonschema's own words (its best match, as
    `jsonschema.validate` reports)."""
    error = jsonschema.exceptions.best_match(_validator(schema).iter_errors(data))
    if error is not None:
        raise errors.Invalid(f"{prefix}: {error}")
    return data


def _uuid_or_null() -> dict[str, Any]:
    return {"anyOf": [{"type": "string", "format": "uuid"}, {"type": "null"}]}


PROVIDER_CREATE: dict[str, Any] = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 200},
        "uuid": {"type": "string", "format": "uuid"},
    },
    "required": ["name"],
    "additionalProperties": False,
}
PROVIDER_CREATE_1_14: dict[str, Any] = copy.deepcopy(PROVIDER_CREATE)
PROVIDER_CREATE_1_14["properties"]["parent_provider_uuid"] = _uuid_or_null()

PROVIDER_UPDATE: dict[str, Any] = {
    "type": "object",
    "properties": {"name": {"type": "string", "maxLength": 200}},
    "required": ["name"],
    "additionalProperties": False,
}
PROVIDER_UPDATE_1_14: dict[str, Any] = copy.deepcopy(PROVIDER_UPDATE)
PROVIDER_UPDATE_1_14["properties"]["parent_provider_uuid"] = _uuid_or_null()


def provider_create(version: Version) -> dict[str, Any]:
    return PROVIDER_CREATE_1_14 if version >= Version(1, 14) else PROVIDER_CREATE


def provider_update(version: Version) -> dict[str, Any]:
    return PROVIDER_UPDATE_1_14 if version >= Version(1, 14) else PROVIDER_UPDATE


def _bounded(minimum: int) -> dict[str, Any]:
    return {"type": "integer", "maximum": MAX_INT, "minimum": minimum}


INVENTORY: dict[str, Any] = {
    "type": "object",
    "properties": {
        "resource_provider_generation": {"type": "integer"},
        "total": _bounded(1),
        "reserved": _bounded(0),
        "min_unit": _bounded(1),
        "max_unit": _bounded(1),
        "step_size": _bounded(1),
        "allocation_ratio": {"type": "number", "maximum": FLOAT_MAX},
    },
    "required": ["total", "resource_provider_generation"],
    "additionalProperties": False,
}
INVENTORY_POST: dict[str, Any] = copy.deepcopy(INVENTORY)
INVENTORY_POST["properties"]["resource_class"] = {"type": "string", "pattern": RC_PATTERN}
INVENTORY_POST["required"] = ["total", "resource_class"]
INVENTORY_RECORD: dict[str, Any] = copy.deepcopy(INVENTORY)
INVENTORY_RECORD["required"] = ["total"]
INVENTORIES: dict[str, Any] = {
    "type": "object",
    "properties": {
        "resource_provider_generation": {"type": "integer"},
        "inventories": {"type": "object", "patternProperties": {RC_PATTERN: INVENTORY_RECORD}},
    },
    "required": ["resource_provider_generation", "inventories"],
    "additionalProperties": False,
}

RESOURCE_CLASS: dict[str, Any] = {
    "type": "object",
    "properties": {"name": {"type": "string", "pattern": CUSTOM_PATTERN, "maxLength": 255}},
    "required": ["name"],
    "additionalProperties": False,
}
TRAIT_NAME: dict[str, Any] = {"type": "string", "pattern": CUSTOM_PATTERN, "maxLength": 255}

PROVIDER_TRAITS: dict[str, Any] = {
    "type": "object",
    "properties": {
        "traits": {"type": "array", "items": {"type": "string", "pattern": r"^[A-Z0-9_]+$"}},
        "resource_provider_generation": {"type": "integer"},
    },
    "required": ["traits", "resource_provider_generation"],
    "additionalProperties": False,
}

AGGREGATE_LIST: dict[str, Any] = {
    "type": "array",
    "items": {"type": "string", "format": "uuid"},
    "uniqueItems": True,
}
AGGREGATES: dict[str, Any] = {
    "type": "object",
    "properties": {
        "aggregates": AGGREGATE_LIST,
        "resource_provider_generation": {"type": "integer"},
    },
    "required": ["aggregates", "resource_provider_generation"],
    "additionalProperties": False,
}

_RESOURCES = {
    "type": "object",
    "minProperties": 1,
    "patternProperties": {RC_PATTERN: {"type": "integer", "minimum": 1}},
    "additionalProperties": False,
}
_EXTERNAL_ID = {"type": "string", "minLength": 1, "maxLength": 255}

ALLOCATIONS_1_0: dict[str, Any] = {
    "type": "object",
    "properties": {
        "allocations": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "properties": {
                    "resource_provider": {
                        "type": "object",
                        "properties": {"uuid": {"type": "string", "format": "uuid"}},
                        "additionalProperties": False,
                        "required": ["uuid"],
                    },
                    "resources": _RESOURCES,
                },
                "required": ["resource_provider", "resources"],
                "additionalProperties": False,
            },
        },
    },
    "required": ["allocations"],
    "additionalProperties": False,
}
ALLOCATIONS_1_8: dict[str, Any] = copy.deepcopy(ALLOCATIONS_1_0)
ALLOCATIONS_1_8["properties"]["project_id"] = _EXTERNAL_ID
ALLOCATIONS_1_8["properties"]["user_id"] = _EXTERNAL_ID
ALLOCATIONS_1_8["required"] = ["allocations", "project_id", "user_id"]
ALLOCATIONS_1_12: dict[str, Any] = {
    "type": "object",
    "properties": {
        "allocations": {
            "type": "object",
            "minProperties": 1,
            "patternProperties": {
                UUID_KEY: {
                    "type": "object",
                    "properties": {"generation": {"type": "integer"}, "resources": _RESOURCES},
                    "required": ["resources"],
                    "additionalProperties": False,
                },
            },
            "additionalProperties": False,
        },
        "project_id": _EXTERNAL_ID,
        "user_id": _EXTERNAL_ID,
    },
    "additionalProperties": False,
    "required": ["allocations", "project_id", "user_id"],
}
EMPTYABLE_1_12: dict[str, Any] = copy.deepcopy(ALLOCATIONS_1_12)
EMPTYABLE_1_12["properties"]["allocations"]["minProperties"] = 0
ALLOCATIONS_1_28: dict[str, Any] = copy.deepcopy(EMPTYABLE_1_12)
ALLOCATIONS_1_28["properties"]["consumer_generation"] = {"type": ["integer", "null"]}
ALLOCATIONS_1_28["required"] = [*ALLOCATIONS_1_28["required"], "consumer_generation"]
ALLOCATIONS_1_34: dict[str, Any] = copy.deepcopy(ALLOCATIONS_1_28)
ALLOCATIONS_1_34["properties"]["mappings"] = {
    "type": "object",
    "minProperties": 1,
    "patternProperties": {
        r"^[a-zA-Z0-9_-]{1,64}$": {
            "type": "array",
            "minItems": 1,
            "items": {"type": "string", "format": "uuid"},
        },
    },
}
ALLOCATIONS_1_38: dict[str, Any] = copy.deepcopy(ALLOCATIONS_1_34)
ALLOCATIONS_1_38["properties"]["consumer_type"] = {
    "type": "string",
    "pattern": r"^[A-Z0-9_]+$",
    "minLength": 1,
    "maxLength": 255,
}
ALLOCATIONS_1_38["required"] = [*ALLOCATIONS_1_38["required"], "consumer_type"]


@functools.cache
def allocations(version: Version, emptyable: bool = False) -> dict[str, Any]:
    """One consumer's allocations body; `emptyable` for POST /allocations and reshaper."""
    for minimum, schema in (
        (Version(1, 38), ALLOCATIONS_1_38),
        (Version(1, 34), ALLOCATIONS_1_34),
        (Version(1, 28), ALLOCATIONS_1_28),
    ):
        if version >= minimum:
            return schema
    if version >= Version(1, 12):
        return EMPTYABLE_1_12 if emptyable else ALLOCATIONS_1_12
    return ALLOCATIONS_1_8 if version >= Version(1, 8) else ALLOCATIONS_1_0


@functools.cache
def many_allocations(version: Version) -> dict[str, Any]:
    return {
        "type": "object",
        "minProperties": 1,
        "additionalProperties": False,
        "patternProperties": {UUID_KEY: allocations(version, emptyable=True)},
    }


@functools.cache
def reshaper(version: Version) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {
            "inventories": {
                "type": "object",
                "minProperties": 1,
                "patternProperties": {UUID_KEY: INVENTORIES},
                "additionalProperties": False,
            },
            "allocations": {
                "type": "object",
                "patternProperties": {UUID_KEY: allocations(version, emptyable=True)},
                "additionalProperties": False,
            },
        },
        "required": ["inventories", "allocations"],
        "additionalProperties": False,
    }


# Query strings, validated like bodies (a repeated key counts with its last value) ----------

QUERY_PREFIX = "Invalid query string parameters"
_STRING: dict[str, Any] = {"type": "string"}
_UUID_STRING: dict[str, Any] = {"type": "string", "format": "uuid"}


@functools.cache
def provider_query(version: Version) -> dict[str, Any]:
    properties: dict[str, Any] = {"name": _STRING, "uuid": _UUID_STRING}
    for minimum, name, schema in (
        (Version(1, 3), "member_of", _STRING),
        (Version(1, 4), "resources", _STRING),
        (Version(1, 14), "in_tree", _UUID_STRING),
        (Version(1, 18), "required", _STRING),
    ):
        if version >= minimum:
            properties[name] = schema
    return {"type": "object", "properties": properties, "additionalProperties": False}


@functools.cache
def candidate_query(version: Version) -> dict[str, Any]:
    properties: dict[str, Any] = {"resources": _STRING}
    for minimum, name, property_schema in (
        (Version(1, 16), "limit", {"type": "string", "pattern": r"^[1-9][0-9]*$"}),
        (Version(1, 17), "required", _STRING),
        (Version(1, 21), "member_of", _STRING),
        (Version(1, 25), "group_policy", {"type": "string", "enum": ["none", "isolate"]}),
        (Version(1, 31), "in_tree", _STRING),
        (Version(1, 35), "root_required", _STRING),
        (Version(1, 36), "same_subtree", _STRING),
    ):
        if version >= minimum:
            properties[name] = property_schema
    schema: dict[str, Any] = {
        "type": "object",
        "properties": properties,
        "additionalProperties": False,
    }
    if version < Version(1, 25):
        schema["required"] = ["resources"]
        return schema
    suffix = r"[a-zA-Z0-9_-]{1,64}" if version >= Version(1, 33) else r"[1-9][0-9]*"
    names = ["resources", "required", "member_of"] + (
        ["in_tree"] if version >= Version(1, 31) else []
    )
    schema["patternProperties"] = {f"^{name}{suffix}$": _STRING for name in names}
    return schema
