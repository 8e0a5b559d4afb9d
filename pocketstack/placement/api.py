"""Placement HTTP routes at /placement: the openstack-placement API.

Every request is version-negotiated first (core.microversion); handlers
gate routes and fields on `requested_version(request)`. Errors render as
`{"errors": [{"status", "title", "detail", "code", "request_id"}]}`.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterable, Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Scope

from pocketstack.core import app as app_mod
from pocketstack.core import errors, routing
from pocketstack.core.auth import Ctx
from pocketstack.core.microversion import (
    MicroversionMiddleware,
    Version,
    VersionRange,
    requested_version,
)
from pocketstack.placement import candidates, schemas
from pocketstack.placement import service as placement_service

VERSIONS = VersionRange("placement", Version(1, 0), Version(1, 39))
UNDEFINED_CODE = "placement.undefined_code"
router = routing.Router()


def render_error(exc: errors.PocketstackError, scope: Scope) -> dict[str, Any]:
    """Upstream's error list; `code` exists from 1.23 (version errors have none)."""
    error: dict[str, Any] = {
        "status": exc.status,
        "title": exc.title,
        "detail": exc.message,
        "request_id": str(scope.get("pocketstack.request_id", "")),
    }
    version = scope.get("state", {}).get("microversion")
    if version is not None and version >= Version(1, 23):
        error["code"] = (
            exc.code if exc.code and exc.code.startswith("placement.") else UNDEFINED_CODE
        )
    if isinstance(exc, errors.NotAcceptable):
        error["min_version"], error["max_version"] = exc.min_version, exc.max_version
    return {"errors": [error]}


def describe_validation_error(exc: RequestValidationError) -> str:
    first = exc.errors()[0]
    if first.get("type") == "json_invalid":
        return "Malformed JSON: the request body is not valid JSON."
    return f"JSON does not validate: {app_mod.describe_validation_error(exc)}"


def base_of(request: Request) -> str:
    """Absolute URL of the service root, for Location headers."""
    return str(request.base_url).rstrip("/")


def link_base(request: Request) -> str:
    """Links in bodies are root-relative paths (`/placement/resource_providers/...`), as
    upstream writes them from the script name."""
    return str(request.scope.get("root_path", "")).rstrip("/")


def version_of(request: Request, minimum: Version | None = None) -> Version:
    """The negotiated version; routes newer than it answer 404 as upstream does."""
    version = requested_version(request)
    if minimum is not None and version < minimum:
        raise errors.NotFound("The resource could not be found.")
    return version


def ok(
    request: Request,
    body: Any,
    status: int = 200,
    headers: dict[str, str] | None = None,
    modified: Any = None,
) -> Response:
    """JSON with upstream's caching headers from 1.15 (`last-modified`, `cache-control`)."""
    all_headers = dict(headers or {})
    if requested_version(request) >= schemas.V1_15:
        all_headers["cache-control"] = "no-cache"
        moment = modified or placement_service.now()
        all_headers["last-modified"] = schemas.timestamp(moment)
    return JSONResponse(body, status_code=status, headers=all_headers)


def no_content(status: int = 204, headers: dict[str, str] | None = None) -> Response:
    return Response(status_code=status, headers=headers)


def check_query(request: Request, allowed: Iterable[str]) -> None:
    unknown = sorted(set(request.query_params) - set(allowed))
    if unknown:
        raise errors.Invalid(
            f"Invalid query string parameters: Additional properties are not allowed "
            f"({', '.join(repr(u) for u in unknown)} {'was' if len(unknown) == 1 else 'were'} "
            "unexpected)"
        )


def reject_before(version: Version, minimum: Version, fields: Mapping[str, Any]) -> None:
    """Body fields a client may only send from `minimum` on."""
    present = [name for name, value in fields.items() if value is not None]
    if present and version < minimum:
        raise errors.Invalid(
            "JSON does not validate: Additional properties are not allowed "
            f"({', '.join(repr(p) for p in present)} was unexpected)"
        )


# Root --------------------------------------------------------------------------------


@router.get("/")
def list_versions(request: Request) -> Response:
    document = {
        "id": f"v{VERSIONS.minimum}",
        "max_version": str(VERSIONS.maximum),
        "min_version": str(VERSIONS.minimum),
        "status": "CURRENT",
        "links": [{"rel": "self", "href": ""}],
    }
    return ok(request, {"versions": [document]})


# Resource providers ------------------------------------------------------------------


def _provider_location(request: Request, provider_uuid: str) -> str:
    return f"{base_of(request)}/resource_providers/{provider_uuid}"


@router.post("/resource_providers")
def create_resource_provider(request: Request, body: schemas.ProviderCreate, ctx: Ctx) -> Response:
    version = version_of(request)
    ctx.authorize("placement:resource_providers:create")
    reject_before(version, schemas.V1_14, {"parent_provider_uuid": body.parent_provider_uuid})
    provider = placement_service.create_provider(
        ctx, body.name, body.uuid, body.parent_provider_uuid
    )
    location = {"location": _provider_location(request, provider.uuid)}
    if version >= Version(1, 20):
        return ok(
            request,
            schemas.provider_view(provider, link_base(request), version),
            headers=location,
            modified=provider.updated_at,
        )
    return no_content(201, headers=location)


_LIST_PARAMS = [
    (Version(1, 0), {"name", "uuid"}),
    (Version(1, 3), {"member_of"}),
    (Version(1, 4), {"resources"}),
    (Version(1, 14), {"in_tree"}),
    (Version(1, 18), {"required"}),
]


@router.get("/resource_providers")
def list_resource_providers(request: Request, ctx: Ctx) -> Response:
    version = version_of(request)
    ctx.authorize("placement:resource_providers:list")
    check_query(request, set().union(*(p for v, p in _LIST_PARAMS if version >= v)))
    query = _provider_filter(request, version)
    providers = placement_service.list_providers(ctx, query)
    base = link_base(request)
    modified = max((p.updated_at for p in providers), default=None)
    return ok(
        request,
        {"resource_providers": [schemas.provider_view(p, base, version) for p in providers]},
        modified=modified,
    )


def _provider_filter(request: Request, version: Version) -> placement_service.ProviderFilter:
    params = request.query_params
    member_of: list[frozenset[str]] = []
    forbidden_aggregates: set[str] = set()
    for raw in params.getlist("member_of"):
        if raw.startswith("!"):
            if version < Version(1, 32):
                raise errors.Invalid(
                    f"Invalid query string parameters: member_of={raw}",
                    code="placement.query.bad_value",
                )
            forbidden_aggregates.update(_split_in(raw[1:], version))
        else:
            member_of.append(frozenset(_split_in(raw, version)))
    required: list[frozenset[str]] = []
    forbidden_traits: set[str] = set()
    for raw in params.getlist("required"):
        for item in raw.split(","):
            if item.startswith("in:") and version >= Version(1, 39):
                required.append(frozenset(t for t in item[3:].split(",") if t))
            elif item.startswith("!") and version >= Version(1, 22):
                forbidden_traits.add(item[1:])
            elif item:
                required.append(frozenset([item]))
    return placement_service.ProviderFilter(
        name=params.get("name"),
        uuid=params.get("uuid"),
        in_tree=params.get("in_tree"),
        member_of=member_of,
        forbidden_aggregates=frozenset(forbidden_aggregates),
        required_traits=required,
        forbidden_traits=frozenset(forbidden_traits),
        resources=parse_resources(params.get("resources")),
    )


def _split_in(raw: str, version: Version) -> list[str]:
    if raw.startswith("in:"):
        return [a for a in raw[3:].split(",") if a]
    return [raw]


def parse_resources(raw: str | None) -> dict[str, int]:
    """`VCPU:2,MEMORY_MB:512` into a mapping; 400 naming what is wrong."""
    if raw is None:
        return {}
    result: dict[str, int] = {}
    for item in raw.split(","):
        name, sep, amount = item.partition(":")
        if not sep or not amount.isdigit():
            raise errors.Invalid(
                f"Badly formed resources parameter. Expected resources query string parameter "
                f"in form: ?resources=VCPU:2,MEMORY_MB:1024. Got: {raw}.",
                code="placement.query.bad_value",
            )
        if name in result:
            raise errors.Invalid(
                f"Resource class {name} appears twice in resources.",
                code="placement.query.duplicate_key",
            )
        result[name] = int(amount)
    return result


@router.get("/resource_providers/{provider_uuid}")
def get_resource_provider(request: Request, provider_uuid: str, ctx: Ctx) -> Response:
    version = version_of(request)
    ctx.authorize("placement:resource_providers:show")
    provider = placement_service.get_provider(ctx, provider_uuid)
    return ok(
        request,
        schemas.provider_view(provider, link_base(request), version),
        modified=provider.updated_at,
    )


@router.put("/resource_providers/{provider_uuid}")
def update_resource_provider(
    request: Request, provider_uuid: str, body: schemas.ProviderUpdate, ctx: Ctx
) -> Response:
    version = version_of(request)
    ctx.authorize("placement:resource_providers:update")
    fields = body.model_dump(exclude_unset=True)
    if "parent_provider_uuid" in fields and version < schemas.V1_14:
        reject_before(version, schemas.V1_14, {"parent_provider_uuid": "set"})
    provider = placement_service.update_provider(
        ctx, provider_uuid, fields, allow_reparenting=version >= Version(1, 37)
    )
    return ok(
        request,
        schemas.provider_view(provider, link_base(request), version),
        modified=provider.updated_at,
    )


@router.delete("/resource_providers/{provider_uuid}")
def delete_resource_provider(request: Request, provider_uuid: str, ctx: Ctx) -> Response:
    version_of(request)
    ctx.authorize("placement:resource_providers:delete")
    placement_service.delete_provider(ctx, provider_uuid)
    return no_content()


# Inventories ---------------------------------------------------------------------------


def _inventories_body(
    provider: placement_service.Provider, inventories: Mapping[str, Any]
) -> dict[str, Any]:
    return {
        "inventories": {name: schemas.inventory_view(inv) for name, inv in inventories.items()},
        "resource_provider_generation": provider.generation,
    }


@router.get("/resource_providers/{provider_uuid}/inventories")
def list_inventories(request: Request, provider_uuid: str, ctx: Ctx) -> Response:
    version_of(request)
    ctx.authorize("placement:resource_providers:inventories:list")
    provider, inventories = placement_service.provider_inventories(ctx, provider_uuid)
    return ok(request, _inventories_body(provider, inventories), modified=provider.updated_at)


@router.put("/resource_providers/{provider_uuid}/inventories")
def replace_inventories(
    request: Request, provider_uuid: str, body: schemas.InventoriesPut, ctx: Ctx
) -> Response:
    version = version_of(request)
    ctx.authorize("placement:resource_providers:inventories:update")
    provider, inventories = placement_service.replace_inventories(
        ctx,
        provider_uuid,
        body.resource_provider_generation,
        {name: fields.spec() for name, fields in body.inventories.items()},
        allow_reserved_total=version >= Version(1, 26),
    )
    return ok(request, _inventories_body(provider, inventories), modified=provider.updated_at)


@router.post("/resource_providers/{provider_uuid}/inventories")
def create_inventory(
    request: Request, provider_uuid: str, body: schemas.InventoryPost, ctx: Ctx
) -> Response:
    version = version_of(request)
    ctx.authorize("placement:resource_providers:inventories:create")
    generation = body.resource_provider_generation
    if generation is None:
        generation = placement_service.get_provider(ctx, provider_uuid).generation
    provider, inventory = placement_service.set_inventory(
        ctx,
        provider_uuid,
        body.resource_class,
        generation,
        body.spec(),
        create_only=True,
        allow_reserved_total=version >= Version(1, 26),
    )
    view = schemas.inventory_view(inventory) | {"resource_provider_generation": provider.generation}
    location = (
        f"{base_of(request)}/resource_providers/{provider_uuid}/inventories/{body.resource_class}"
    )
    return ok(
        request, view, status=201, headers={"location": location}, modified=provider.updated_at
    )


@router.delete("/resource_providers/{provider_uuid}/inventories")
def delete_inventories(request: Request, provider_uuid: str, ctx: Ctx) -> Response:
    version_of(request, Version(1, 5))
    ctx.authorize("placement:resource_providers:inventories:delete")
    placement_service.delete_inventories(ctx, provider_uuid)
    return no_content()


@router.get("/resource_providers/{provider_uuid}/inventories/{resource_class}")
def get_inventory(request: Request, provider_uuid: str, resource_class: str, ctx: Ctx) -> Response:
    version_of(request)
    ctx.authorize("placement:resource_providers:inventories:show")
    provider, inventories = placement_service.provider_inventories(ctx, provider_uuid)
    if resource_class not in inventories:
        raise errors.NotFound(f"No inventory of class {resource_class} for {provider_uuid}")
    view = schemas.inventory_view(inventories[resource_class]) | {
        "resource_provider_generation": provider.generation
    }
    return ok(request, view, modified=provider.updated_at)


@router.put("/resource_providers/{provider_uuid}/inventories/{resource_class}")
def update_inventory(
    request: Request,
    provider_uuid: str,
    resource_class: str,
    body: schemas.InventoryPut,
    ctx: Ctx,
) -> Response:
    version = version_of(request)
    ctx.authorize("placement:resource_providers:inventories:update")
    provider, inventory = placement_service.set_inventory(
        ctx,
        provider_uuid,
        resource_class,
        body.resource_provider_generation,
        body.spec(),
        create_only=False,
        allow_reserved_total=version >= Version(1, 26),
    )
    view = schemas.inventory_view(inventory) | {"resource_provider_generation": provider.generation}
    return ok(request, view, modified=provider.updated_at)


@router.delete("/resource_providers/{provider_uuid}/inventories/{resource_class}")
def delete_inventory(
    request: Request, provider_uuid: str, resource_class: str, ctx: Ctx
) -> Response:
    version_of(request)
    ctx.authorize("placement:resource_providers:inventories:delete")
    placement_service.delete_inventory(ctx, provider_uuid, resource_class, None)
    return no_content()


# Aggregates and traits of a provider ---------------------------------------------------


def _aggregates_body(
    request: Request, provider: placement_service.Provider, aggregates: list[str]
) -> dict[str, Any]:
    body: dict[str, Any] = {"aggregates": aggregates}
    if requested_version(request) >= Version(1, 19):
        body["resource_provider_generation"] = provider.generation
    return body


@router.get("/resource_providers/{provider_uuid}/aggregates")
def list_aggregates(request: Request, provider_uuid: str, ctx: Ctx) -> Response:
    version_of(request, Version(1, 1))
    ctx.authorize("placement:resource_providers:aggregates:list")
    provider, aggregates = placement_service.provider_aggregates(ctx, provider_uuid)
    return ok(
        request, _aggregates_body(request, provider, aggregates), modified=provider.updated_at
    )


@router.put("/resource_providers/{provider_uuid}/aggregates")
async def update_aggregates(request: Request, provider_uuid: str, ctx: Ctx) -> Response:
    """Before 1.19 the body is a bare list of aggregate uuids; since, an object with the
    provider generation."""
    version = version_of(request, Version(1, 1))
    ctx.authorize("placement:resource_providers:aggregates:update")
    raw = await _json_body(request)
    generation: int | None = None
    if version >= Version(1, 19):
        body = _validated(schemas.AggregatesPut, raw)
        aggregates, generation = body.aggregates, body.resource_provider_generation
    elif isinstance(raw, list) and all(isinstance(a, str) for a in raw):
        aggregates = raw
    else:
        raise errors.Invalid("JSON does not validate: the body must be a list of uuids")
    provider, current = await _in_thread(
        placement_service.set_provider_aggregates, ctx, provider_uuid, generation, aggregates
    )
    return ok(request, _aggregates_body(request, provider, current), modified=provider.updated_at)


@router.get("/resource_providers/{provider_uuid}/traits")
def list_provider_traits(request: Request, provider_uuid: str, ctx: Ctx) -> Response:
    version_of(request, Version(1, 6))
    ctx.authorize("placement:resource_providers:traits:list")
    provider, traits = placement_service.provider_traits(ctx, provider_uuid)
    return ok(
        request,
        {"traits": traits, "resource_provider_generation": provider.generation},
        modified=provider.updated_at,
    )


@router.put("/resource_providers/{provider_uuid}/traits")
def update_provider_traits(
    request: Request, provider_uuid: str, body: schemas.TraitsPut, ctx: Ctx
) -> Response:
    version_of(request, Version(1, 6))
    ctx.authorize("placement:resource_providers:traits:update")
    provider, traits = placement_service.set_provider_traits(
        ctx, provider_uuid, body.resource_provider_generation, body.traits
    )
    return ok(
        request,
        {"traits": traits, "resource_provider_generation": provider.generation},
        modified=provider.updated_at,
    )


@router.delete("/resource_providers/{provider_uuid}/traits")
def delete_provider_traits(request: Request, provider_uuid: str, ctx: Ctx) -> Response:
    version_of(request, Version(1, 6))
    ctx.authorize("placement:resource_providers:traits:delete")
    placement_service.delete_provider_traits(ctx, provider_uuid)
    return no_content()


@router.get("/resource_providers/{provider_uuid}/usages")
def list_provider_usages(request: Request, provider_uuid: str, ctx: Ctx) -> Response:
    version_of(request)
    ctx.authorize("placement:resource_providers:usages")
    provider, usages = placement_service.provider_usages(ctx, provider_uuid)
    return ok(request, {"usages": usages, "resource_provider_generation": provider.generation})


# Resource classes ----------------------------------------------------------------------


@router.get("/resource_classes")
def list_resource_classes(request: Request, ctx: Ctx) -> Response:
    version_of(request, Version(1, 2))
    ctx.authorize("placement:resource_classes:list")
    base = link_base(request)
    classes = placement_service.list_resource_classes(ctx)
    return ok(
        request, {"resource_classes": [schemas.resource_class_view(rc, base) for rc in classes]}
    )


@router.post("/resource_classes")
def create_resource_class(
    request: Request, body: schemas.ResourceClassCreate, ctx: Ctx
) -> Response:
    version_of(request, Version(1, 2))
    ctx.authorize("placement:resource_classes:create")
    placement_service.create_resource_class(ctx, body.name, exist_ok=False)
    return no_content(201, {"location": f"{base_of(request)}/resource_classes/{body.name}"})


@router.get("/resource_classes/{name}")
def get_resource_class(request: Request, name: str, ctx: Ctx) -> Response:
    version_of(request, Version(1, 2))
    ctx.authorize("placement:resource_classes:show")
    rc = placement_service.get_resource_class(ctx, name)
    return ok(request, schemas.resource_class_view(rc, link_base(request)), modified=rc.updated_at)


@router.put("/resource_classes/{name}")
async def put_resource_class(request: Request, name: str, ctx: Ctx) -> Response:
    """From 1.2 to 1.6 this renames a custom class (body `{"name": new}`); from 1.7 it creates the
    class named in the URL if missing (201) and answers 204 if it exists."""
    version = version_of(request, Version(1, 2))
    ctx.authorize("placement:resource_classes:update")
    if version >= Version(1, 7):
        created = await _in_thread(placement_service.create_resource_class, ctx, name, True)
        location = {"location": f"{base_of(request)}/resource_classes/{name}"}
        return no_content(201 if created else 204, location)
    body = _validated(schemas.ResourceClassCreate, await _json_body(request))
    rc = await _in_thread(placement_service.update_resource_class, ctx, name, body.name)
    return ok(request, schemas.resource_class_view(rc, link_base(request)))


@router.delete("/resource_classes/{name}")
def delete_resource_class(request: Request, name: str, ctx: Ctx) -> Response:
    version_of(request, Version(1, 2))
    ctx.authorize("placement:resource_classes:delete")
    placement_service.delete_resource_class(ctx, name)
    return no_content()


# Traits ----------------------------------------------------------------------------------


@router.get("/traits")
def list_traits(request: Request, ctx: Ctx) -> Response:
    version_of(request, Version(1, 6))
    ctx.authorize("placement:traits:list")
    check_query(request, {"name", "associated"})
    names: list[str] | None = None
    prefix: str | None = None
    raw_name = request.query_params.get("name")
    if raw_name is not None:
        if raw_name.startswith("in:"):
            names = [n for n in raw_name[3:].split(",") if n]
        elif raw_name.startswith("startswith:"):
            prefix = raw_name[len("startswith:") :]
        else:
            raise errors.Invalid(
                f"Badly formatted name parameter. Expected name query string parameter in "
                f'form: ?name=[in|startswith]:[name1,name2|prefix]. Got: "{raw_name}"'
            )
    associated: bool | None = None
    if "associated" in request.query_params:
        raw = request.query_params["associated"].lower()
        if raw not in ("true", "false"):
            raise errors.Invalid(
                f'The query parameter "associated" only accepts "true" or "false", not "{raw}"'
            )
        associated = raw == "true"
    return ok(request, {"traits": placement_service.list_traits(ctx, names, prefix, associated)})


@router.get("/traits/{name}")
def get_trait(request: Request, name: str, ctx: Ctx) -> Response:
    version_of(request, Version(1, 6))
    ctx.authorize("placement:traits:show")
    if not placement_service.trait_exists(ctx, name):
        raise errors.NotFound(f"No such trait(s): {name}.")
    return no_content()


@router.put("/traits/{name}")
def put_trait(request: Request, name: str, ctx: Ctx) -> Response:
    version_of(request, Version(1, 6))
    ctx.authorize("placement:traits:update")
    created = placement_service.create_trait(ctx, name)
    return no_content(201 if created else 204, {"location": f"{base_of(request)}/traits/{name}"})


@router.delete("/traits/{name}")
def delete_trait(request: Request, name: str, ctx: Ctx) -> Response:
    version_of(request, Version(1, 6))
    ctx.authorize("placement:traits:delete")
    placement_service.delete_trait(ctx, name)
    return no_content()


# Allocations and usages ------------------------------------------------------------------


def _consumer_uuid(raw: str) -> str:
    try:
        return str(uuid.UUID(raw))
    except ValueError:
        raise errors.Invalid(f"Malformed consumer_uuid: {raw}") from None


def _claim(
    consumer_uuid: str, body: Any, version: Version, allow_empty: bool
) -> placement_service.ConsumerClaim:
    allocations = body.by_provider()
    if not allocations and not allow_empty:
        raise errors.Invalid("JSON does not validate: {} does not have enough properties")
    return placement_service.ConsumerClaim(
        consumer_uuid=consumer_uuid,
        allocations=allocations,
        project_id=getattr(body, "project_id", None),
        user_id=getattr(body, "user_id", None),
        consumer_generation=getattr(body, "consumer_generation", None),
        consumer_type=getattr(body, "consumer_type", None),
    )


@router.get("/allocations/{consumer_uuid}")
def list_consumer_allocations(request: Request, consumer_uuid: str, ctx: Ctx) -> Response:
    version = version_of(request)
    ctx.authorize("placement:allocations:list")
    consumer = placement_service.get_consumer(ctx, consumer_uuid)
    return ok(
        request,
        schemas.consumer_allocations_view(consumer, version),
        modified=consumer.updated_at if consumer else None,
    )


@router.put("/allocations/{consumer_uuid}")
async def set_consumer_allocations(request: Request, consumer_uuid: str, ctx: Ctx) -> Response:
    version = version_of(request)
    ctx.authorize("placement:allocations:update")
    key = _consumer_uuid(consumer_uuid)
    body = _validated(schemas.allocation_body_model(version), await _json_body(request))
    claim = _claim(key, body, version, allow_empty=version >= Version(1, 28))
    await _in_thread(placement_service.set_allocations, ctx, [claim], version >= Version(1, 28))
    return no_content()


@router.post("/allocations")
async def set_many_allocations(request: Request, ctx: Ctx) -> Response:
    version = version_of(request, Version(1, 13))
    ctx.authorize("placement:allocations:manage")
    raw = await _json_body(request)
    if not isinstance(raw, dict) or not raw:
        raise errors.Invalid(
            "JSON does not validate: the body must map consumer uuids to their allocations"
        )
    model = schemas.allocation_body_model(version)
    claims = [
        _claim(_consumer_uuid(key), _validated(model, value), version, allow_empty=True)
        for key, value in raw.items()
    ]
    await _in_thread(placement_service.set_allocations, ctx, claims, version >= Version(1, 28))
    return no_content()


@router.delete("/allocations/{consumer_uuid}")
def delete_consumer_allocations(request: Request, consumer_uuid: str, ctx: Ctx) -> Response:
    version_of(request)
    ctx.authorize("placement:allocations:delete")
    placement_service.delete_allocations(ctx, consumer_uuid)
    return no_content()


@router.get("/resource_providers/{provider_uuid}/allocations")
def list_provider_allocations(request: Request, provider_uuid: str, ctx: Ctx) -> Response:
    version = version_of(request, Version(1, 11))
    ctx.authorize("placement:resource_providers:allocations:list")
    provider, allocations = placement_service.provider_allocations(ctx, provider_uuid)
    body: dict[str, Any] = {}
    for consumer_uuid, (resources, generation) in allocations.items():
        entry: dict[str, Any] = {"resources": resources}
        if version >= Version(1, 28):
            entry["consumer_generation"] = generation
        body[consumer_uuid] = entry
    return ok(
        request,
        {"allocations": body, "resource_provider_generation": provider.generation},
        modified=provider.updated_at,
    )


@router.get("/usages")
def list_total_usages(request: Request, ctx: Ctx) -> Response:
    version = version_of(request, Version(1, 9))
    by_type = version >= Version(1, 38)
    check_query(request, {"project_id", "user_id"} | ({"consumer_type"} if by_type else set()))
    project_id = request.query_params.get("project_id")
    if not project_id:
        raise errors.Invalid("Invalid query string parameters: 'project_id' is a required property")
    ctx.authorize("placement:usages", {"project_id": project_id})
    usages = placement_service.total_usages(
        ctx,
        project_id,
        request.query_params.get("user_id"),
        request.query_params.get("consumer_type"),
        by_type,
    )
    return ok(request, {"usages": usages})


# Allocation candidates ---------------------------------------------------------------------

_GROUP_PARAM = re.compile(r"^(resources|required|member_of|in_tree)(.*)$")
_SUFFIX_1_25 = re.compile(r"^[1-9][0-9]*$")
_SUFFIX_1_33 = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
_CANDIDATE_PARAMS = [
    (Version(1, 10), "resources"),
    (Version(1, 16), "limit"),
    (Version(1, 17), "required"),
    (Version(1, 21), "member_of"),
    (Version(1, 25), "group_policy"),
    (Version(1, 31), "in_tree"),
    (Version(1, 35), "root_required"),
    (Version(1, 36), "same_subtree"),
]


def _traits_param(raw: str, version: Version, name: str) -> tuple[list[frozenset[str]], set[str]]:
    """`T1,!T2` (and `in:A,B` from 1.39) into any-of sets and forbidden traits."""
    if raw.startswith("in:"):
        if version < Version(1, 39):
            raise errors.Invalid(
                "Invalid query string parameters: The format 'in:HW_CPU_X86_VMX,CUSTOM_MAGIC' "
                f"only supported since microversion 1.39. Got: {raw}"
            )
        names = [t.strip() for t in raw[3:].split(",")]
        if not all(names) or any(t.startswith("!") for t in names):
            raise errors.Invalid(
                f"Invalid query string parameters: Expected '{name}' "
                f"parameter value of the form: in:T1,T2. Got: {raw}"
            )
        return [frozenset(names)], set()
    required: list[frozenset[str]] = []
    forbidden: set[str] = set()
    for item in (t.strip() for t in raw.split(",")):
        if not item:
            raise errors.Invalid(
                f"Invalid query string parameters: Expected '{name}' parameter value of the "
                f"form: HW_CPU_X86_VMX,!CUSTOM_MAGIC. Got an empty trait in: {raw}"
            )
        if item.startswith("!"):
            if version < Version(1, 22):
                raise errors.Invalid(
                    f"Invalid query string parameters: Expected '{name}' parameter value of "
                    f"the form: HW_CPU_X86_VMX,CUSTOM_MAGIC. Got: {raw}"
                )
            forbidden.add(item.lstrip("!"))
        else:
            required.append(frozenset([item]))
    return required, forbidden


def _member_of_params(
    values: list[str], version: Version, name: str
) -> tuple[list[frozenset[str]], set[str]]:
    if len(values) > 1 and version < Version(1, 24):
        raise errors.Invalid(f"Multiple {name} parameters are not supported")
    member_of: list[frozenset[str]] = []
    forbidden: set[str] = set()
    for raw in values:
        negative = raw.startswith("!")
        if negative and version < Version(1, 32):
            raise errors.Invalid(
                f"Forbidden {name} parameters are not supported in the specified microversion"
            )
        body = raw[1:] if negative else raw
        if body.startswith("in:"):
            uuids = body[3:].split(",")
        elif "," in body:
            raise errors.Invalid(
                f"Multiple values for '{name}' must be prefixed with the 'in:' or '!in:' "
                f"keyword using the valid microversion. Got: {raw}"
            )
        else:
            uuids = [body]
        for value in uuids:
            try:
                uuid.UUID(value)
            except ValueError:
                raise errors.Invalid(
                    f"Invalid query string parameters: Expected '{name}' parameter to contain "
                    f"valid UUID(s). Got: {value}"
                ) from None
        if negative:
            forbidden.update(uuids)
        else:
            member_of.append(frozenset(uuids))
    return member_of, forbidden


def _candidate_query(request: Request, version: Version) -> candidates.Query:
    params = request.query_params
    allowed = {name for minimum, name in _CANDIDATE_PARAMS if version >= minimum}
    fields: dict[str, dict[str, list[str]]] = {}
    for key in dict.fromkeys(params.keys()):
        match = _GROUP_PARAM.match(key)
        suffix = match.group(2) if match else ""
        base = match.group(1) if match else key
        if base not in allowed or (
            suffix
            and not (
                (version >= Version(1, 33) and _SUFFIX_1_33.match(suffix))
                or (version >= Version(1, 25) and _SUFFIX_1_25.match(suffix))
            )
        ):
            raise errors.Invalid(
                f"Invalid query string parameters: Additional properties are not allowed "
                f"('{key}' was unexpected)"
            )
        if match:
            fields.setdefault(suffix, {})[base] = params.getlist(key)
    groups = []
    for suffix, values in fields.items():
        if "resources" not in values:
            raise errors.Invalid("All request groups must specify resources.")
        resources = {}
        for raw in values["resources"]:
            resources.update(parse_resources(raw))
        required: list[frozenset[str]] = []
        forbidden: set[str] = set()
        raw_required = values.get("required", [])
        if version < Version(1, 39):
            raw_required = raw_required[-1:]
        for raw in raw_required:
            any_of_sets, not_wanted = _traits_param(raw, version, f"required{suffix}")
            required += any_of_sets
            forbidden |= not_wanted
        for any_of in required:
            if any_of <= forbidden:
                raise errors.Invalid(
                    "Conflicting required and forbidden traits found in the following traits "
                    f"keys: required{suffix}: ({', '.join(sorted(any_of))})"
                )
        member_of, forbidden_aggregates = _member_of_params(
            values.get("member_of", []), version, f"member_of{suffix}"
        )
        in_tree = values.get("in_tree", [None])[0]
        if in_tree is not None:
            try:
                uuid.UUID(in_tree.strip())
            except ValueError:
                raise errors.Invalid(
                    "Invalid query string parameters: Expected 'in_tree' parameter to be a "
                    f"format of uuid. Got: {in_tree}"
                ) from None
            in_tree = str(uuid.UUID(in_tree.strip()))
        groups.append(
            candidates.Group(
                suffix=suffix,
                resources=resources,
                required=tuple(required),
                forbidden=frozenset(forbidden),
                member_of=tuple(member_of),
                forbidden_aggregates=frozenset(forbidden_aggregates),
                in_tree=in_tree,
            )
        )
    if not groups:
        raise errors.Invalid(
            "At least one request group (`resources` or `resources{$S}`) is required."
        )
    suffixed = [g for g in groups if g.suffix]
    policy = params.get("group_policy")
    if len(suffixed) > 1 and policy is None:
        raise errors.Invalid(
            'The "group_policy" parameter is required when specifying more '
            'than one "resources{N}" parameter.'
        )
    if policy not in (None, "none", "isolate"):
        raise errors.Invalid(
            f"Invalid query string parameters: group_policy must be 'none' or "
            f"'isolate'. Got: {policy}"
        )
    limit = params.get("limit")
    if limit is not None and not re.match(r"^[1-9][0-9]*$", limit):
        raise errors.Invalid(
            f"Invalid query string parameters: limit must be a positive integer. Got: {limit}"
        )
    root_required: list[frozenset[str]] = []
    root_forbidden: set[str] = set()
    if "root_required" in params:
        if len(params.getlist("root_required")) > 1:
            raise errors.Invalid(
                "Query parameter 'root_required' may be specified only once.",
                code="placement.query.duplicate_key",
            )
        root_required, root_forbidden = _traits_param(
            params["root_required"], version, "root_required"
        )
    same_subtree = []
    for raw in params.getlist("same_subtree"):
        suffixes = raw.split(",")
        if not all(suffixes):
            raise errors.Invalid(
                "Empty string (unsuffixed group) can not be specified in `same_subtree` ",
                code="placement.query.bad_value",
            )
        same_subtree.append(frozenset(suffixes))
    return candidates.Query(
        groups=tuple(groups),
        group_policy=policy or "none",
        limit=int(limit) if limit else None,
        root_required=frozenset().union(*root_required) if root_required else frozenset(),
        root_forbidden=frozenset(root_forbidden),
        same_subtree=tuple(same_subtree),
        nested_aware=version >= Version(1, 29),
    )


@router.get("/allocation_candidates")
def list_allocation_candidates(request: Request, ctx: Ctx) -> Response:
    version = version_of(request, Version(1, 10))
    ctx.authorize("placement:allocation_candidates:list")
    query = _candidate_query(request, version)
    snapshot, found = placement_service.allocation_candidates(ctx, query)
    requested = {c for g in query.groups for c in g.resources}
    return ok(request, schemas.candidates_view(snapshot, found, version, requested))


# Reshaper ----------------------------------------------------------------------------------


@router.post("/reshaper")
async def reshape(request: Request, ctx: Ctx) -> Response:
    version = version_of(request, Version(1, 30))
    ctx.authorize("placement:reshaper:reshape")
    raw = await _json_body(request)
    if not isinstance(raw, dict) or set(raw) != {"inventories", "allocations"}:
        raise errors.Invalid(
            "JSON does not validate: 'inventories' and 'allocations' are "
            "required properties, and no others are allowed"
        )
    if not isinstance(raw["inventories"], dict) or not raw["inventories"]:
        raise errors.Invalid(
            "JSON does not validate: 'inventories' needs at least one resource provider"
        )
    if not isinstance(raw["allocations"], dict):
        raise errors.Invalid("JSON does not validate: 'allocations' must be an object")
    inventories = []
    for provider_uuid, body in raw["inventories"].items():
        parsed = _validated(schemas.InventoriesPut, body)
        inventories.append(
            placement_service.ProviderInventories(
                provider_uuid,
                parsed.resource_provider_generation,
                {name: fields.spec() for name, fields in parsed.inventories.items()},
            )
        )
    model = schemas.allocation_body_model(version)
    claims = [
        _claim(_consumer_uuid(key), _validated(model, value), version, allow_empty=True)
        for key, value in raw["allocations"].items()
    ]
    await _in_thread(placement_service.reshape, ctx, inventories, claims)
    return no_content()


# Bodies whose shape depends on the version ------------------------------------------------


async def _json_body(request: Request) -> Any:
    raw = await request.body()
    try:
        return json.loads(raw)
    except ValueError:
        raise errors.Invalid("Malformed JSON: the request body is not valid JSON.") from None


def _validated(model: type[schemas.Body], data: Any) -> Any:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = "/".join(str(p) for p in first.get("loc", ())) or "body"
        raise errors.Invalid(
            f"JSON does not validate: invalid input for field '{field}': {first['msg']}."
        ) from None


async def _in_thread(function: Any, *args: Any) -> Any:
    return await run_in_threadpool(function, *args)


def create_app() -> ASGIApp:
    """The placement ASGI app, version-negotiated, mounted at /placement by core.app."""
    app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)
    app.include_router(router)
    app_mod.install_error_handlers(app, render_error, describe_validation_error)
    return MicroversionMiddleware(app, VERSIONS, render_error)
