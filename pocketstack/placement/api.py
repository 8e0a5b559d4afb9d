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
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
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
from pocketstack.placement import bodies, candidates, schemas
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
    """The negotiated version; routes newer than it answer 404 as upstream does, and a GET
    whose Accept header rules out JSON gets 406."""
    version = requested_version(request)
    if minimum is not None and version < minimum:
        raise errors.NotFound("The resource could not be found.")
    if request.method == "GET" and not _accepts_json(request.headers.get("accept")):
        raise errors.PocketstackError.with_status(
            406, "Not Acceptable", "Only application/json is provided"
        )
    return version


def _accepts_json(accept: str | None) -> bool:
    if not accept:
        return True
    for item in accept.split(","):
        media, _, params = item.strip().partition(";")
        if "q=0" in params.replace(" ", "") and "q=0." not in params.replace(" ", ""):
            continue
        if media.strip().lower() in ("*/*", "application/*", "application/json"):
            return True
    return False


def ok(
    request: Request,
    body: Any,
    status: int = 200,
    headers: dict[str, str] | None = None,
    modified: Any = None,
) -> Response:
    all_headers = dict(headers or {}) | cache_headers(request, modified)
    return JSONResponse(body, status_code=status, headers=all_headers)


def cache_headers(request: Request, modified: Any = None) -> dict[str, str]:
    """Upstream's caching headers from 1.15 (`last-modified`, `cache-control`)."""
    if requested_version(request) < schemas.V1_15:
        return {}
    moment = modified or placement_service.now()
    return {"cache-control": "no-cache", "last-modified": schemas.timestamp(moment)}


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


async def json_body(request: Request) -> Any:
    """The parsed JSON body of a PUT or POST: 415 unless it is declared application/json,
    400 if it does not parse."""
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type != "application/json":
        raise _unsupported(media_type)
    raw = await request.body()
    try:
        return json.loads(raw)
    except ValueError as exc:
        raise errors.Invalid(f"Malformed JSON: {exc}") from None


def _unsupported(media_type: str) -> errors.PocketstackError:
    return errors.PocketstackError.with_status(
        415,
        "Unsupported Media Type",
        f"The media type {media_type or None} is not supported, use application/json",
    )


JsonBody = Annotated[Any, Depends(json_body)]


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
def create_resource_provider(request: Request, body: JsonBody, ctx: Ctx) -> Response:
    version = version_of(request)
    ctx.authorize("placement:resource_providers:create")
    data = bodies.validate(body, bodies.provider_create(version))
    provider = placement_service.create_provider(
        ctx, data["name"], data.get("uuid"), data.get("parent_provider_uuid")
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
    bodies.validate(dict(request.query_params), bodies.provider_query(version), bodies.QUERY_PREFIX)
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
    member_of, forbidden_aggregates = _member_of_params(
        params.getlist("member_of"), version, "member_of"
    )
    required: list[frozenset[str]] = []
    forbidden_traits: set[str] = set()
    raw_required = params.getlist("required")
    for raw in raw_required if version >= Version(1, 39) else raw_required[-1:]:
        any_of_sets, not_wanted = _traits_param(raw, version, "required")
        required += any_of_sets
        forbidden_traits |= not_wanted
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


def parse_resources(raw: str | None) -> dict[str, int]:
    """`VCPU:2,MEMORY_MB:512` into a mapping; 400 in upstream's words for each mistake."""
    if raw is None:
        return {}
    badly_formed = (
        "Badly formed resources parameter. Expected resources query string parameter in "
        "form: ?resources=VCPU:2,MEMORY_MB:1024. Got: "
    )
    if not raw.strip():
        raise errors.Invalid(badly_formed + "empty string.", code="placement.query.bad_value")
    result: dict[str, int] = {}
    for item in raw.split(","):
        name, sep, amount = item.strip().partition(":")
        if not sep or ":" in amount:
            raise errors.Invalid(badly_formed + f"{item}.", code="placement.query.bad_value")
        try:
            value = int(amount)
        except ValueError:
            raise errors.Invalid(
                f"Requested resource {name} expected positive integer amount. Got: {amount}.",
                code="placement.query.bad_value",
            ) from None
        if value < 1:
            raise errors.Invalid(
                f"Requested resource {name} requires amount >= 1. Got: {value}.",
                code="placement.query.bad_value",
            )
        result[name] = value
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
    request: Request, provider_uuid: str, body: JsonBody, ctx: Ctx
) -> Response:
    version = version_of(request)
    ctx.authorize("placement:resource_providers:update")
    data = bodies.validate(body, bodies.provider_update(version))
    provider = placement_service.update_provider(
        ctx, provider_uuid, data, allow_reparenting=version >= Version(1, 37)
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
def replace_inventories(request: Request, provider_uuid: str, body: JsonBody, ctx: Ctx) -> Response:
    version = version_of(request)
    ctx.authorize("placement:resource_providers:inventories:update")
    data = bodies.validate(body, bodies.INVENTORIES)
    provider, inventories = placement_service.replace_inventories(
        ctx,
        provider_uuid,
        data["resource_provider_generation"],
        {name: _inventory_spec(fields) for name, fields in data["inventories"].items()},
        allow_reserved_total=version >= Version(1, 26),
    )
    return ok(request, _inventories_body(provider, inventories), modified=provider.updated_at)


@router.post("/resource_providers/{provider_uuid}/inventories")
def create_inventory(request: Request, provider_uuid: str, body: JsonBody, ctx: Ctx) -> Response:
    version = version_of(request)
    ctx.authorize("placement:resource_providers:inventories:create")
    data = bodies.validate(body, bodies.INVENTORY_POST)
    generation = data.get("resource_provider_generation")
    if generation is None:
        generation = placement_service.get_provider(ctx, provider_uuid).generation
    provider, inventory = placement_service.set_inventory(
        ctx,
        provider_uuid,
        data["resource_class"],
        generation,
        _inventory_spec(data),
        create_only=True,
        allow_reserved_total=version >= Version(1, 26),
    )
    view = schemas.inventory_view(inventory) | {"resource_provider_generation": provider.generation}
    location = (
        f"{base_of(request)}/resource_providers/{provider_uuid}/inventories/"
        f"{data['resource_class']}"
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
    request: Request, provider_uuid: str, resource_class: str, body: JsonBody, ctx: Ctx
) -> Response:
    version = version_of(request)
    ctx.authorize("placement:resource_providers:inventories:update")
    data = bodies.validate(body, bodies.INVENTORY)
    provider, inventory = placement_service.set_inventory(
        ctx,
        provider_uuid,
        resource_class,
        data["resource_provider_generation"],
        _inventory_spec(data),
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
def update_aggregates(request: Request, provider_uuid: str, body: JsonBody, ctx: Ctx) -> Response:
    """Before 1.19 the body is a bare list of aggregate uuids; since, an object with the
    provider generation."""
    version = version_of(request, Version(1, 1))
    ctx.authorize("placement:resource_providers:aggregates:update")
    generation: int | None = None
    if version >= Version(1, 19):
        data = bodies.validate(body, bodies.AGGREGATES)
        aggregates, generation = data["aggregates"], data["resource_provider_generation"]
    else:
        aggregates = bodies.validate(body, bodies.AGGREGATE_LIST)
    provider, current = placement_service.set_provider_aggregates(
        ctx, provider_uuid, generation, aggregates
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
    request: Request, provider_uuid: str, body: JsonBody, ctx: Ctx
) -> Response:
    version_of(request, Version(1, 6))
    ctx.authorize("placement:resource_providers:traits:update")
    data = bodies.validate(body, bodies.PROVIDER_TRAITS)
    provider, traits = placement_service.set_provider_traits(
        ctx, provider_uuid, data["resource_provider_generation"], data["traits"]
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
def create_resource_class(request: Request, body: JsonBody, ctx: Ctx) -> Response:
    version_of(request, Version(1, 2))
    ctx.authorize("placement:resource_classes:create")
    data = bodies.validate(body, bodies.RESOURCE_CLASS)
    placement_service.create_resource_class(ctx, data["name"], exist_ok=False)
    return no_content(201, {"location": f"{base_of(request)}/resource_classes/{data['name']}"})


@router.get("/resource_classes/{name}")
def get_resource_class(request: Request, name: str, ctx: Ctx) -> Response:
    version_of(request, Version(1, 2))
    ctx.authorize("placement:resource_classes:show")
    rc = placement_service.get_resource_class(ctx, name)
    return ok(request, schemas.resource_class_view(rc, link_base(request)), modified=rc.updated_at)


@router.put("/resource_classes/{name}")
async def put_resource_class(request: Request, name: str, ctx: Ctx) -> Response:
    """From 1.2 to 1.6 this renames a custom class (body `{"name": new}`); from 1.7 it
    creates the class named in the URL if missing (201) and answers 204 if it exists."""
    version = version_of(request, Version(1, 2))
    ctx.authorize("placement:resource_classes:update")
    if version >= Version(1, 7):
        bodies.validate({"name": name}, bodies.RESOURCE_CLASS)
        created = await _in_thread(placement_service.create_resource_class, ctx, name, True)
        location = {"location": f"{base_of(request)}/resource_classes/{name}"}
        return no_content(201 if created else 204, location)
    data = bodies.validate(await json_body(request), bodies.RESOURCE_CLASS)
    rc = await _in_thread(placement_service.update_resource_class, ctx, name, data["name"])
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
    return no_content(headers=cache_headers(request))


@router.put("/traits/{name}")
def put_trait(request: Request, name: str, ctx: Ctx) -> Response:
    version_of(request, Version(1, 6))
    ctx.authorize("placement:traits:update")
    bodies.validate(name, bodies.TRAIT_NAME)
    created = placement_service.create_trait(ctx, name)
    return no_content(
        201 if created else 204,
        {"location": f"{base_of(request)}/traits/{name}"} | cache_headers(request),
    )


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


def _claim(consumer_uuid: str, data: dict[str, Any]) -> placement_service.ConsumerClaim:
    """A validated allocations body (any version's shape) as a claim."""
    raw = data["allocations"]
    if isinstance(raw, list):
        allocations = {a["resource_provider"]["uuid"]: a["resources"] for a in raw}
    else:
        allocations = {rp: a["resources"] for rp, a in raw.items()}
    return placement_service.ConsumerClaim(
        consumer_uuid=consumer_uuid,
        allocations=allocations,
        project_id=data.get("project_id"),
        user_id=data.get("user_id"),
        consumer_generation=data.get("consumer_generation"),
        consumer_type=data.get("consumer_type"),
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
def set_consumer_allocations(
    request: Request, consumer_uuid: str, body: JsonBody, ctx: Ctx
) -> Response:
    version = version_of(request)
    ctx.authorize("placement:allocations:update")
    key = _consumer_uuid(consumer_uuid)
    data = bodies.validate(body, bodies.allocations(version))
    placement_service.set_allocations(
        ctx, [_claim(key, data)], check_generation=version >= Version(1, 28)
    )
    return no_content()


@router.post("/allocations")
def set_many_allocations(request: Request, body: JsonBody, ctx: Ctx) -> Response:
    version = version_of(request, Version(1, 13))
    ctx.authorize("placement:allocations:manage")
    data = bodies.validate(body, bodies.many_allocations(version))
    claims = [_claim(_consumer_uuid(key), value) for key, value in data.items()]
    placement_service.set_allocations(ctx, claims, check_generation=version >= Version(1, 28))
    return no_content()


@router.delete("/allocations/{consumer_uuid}")
def delete_consumer_allocations(request: Request, consumer_uuid: str, ctx: Ctx) -> Response:
    version_of(request)
    ctx.authorize("placement:allocations:delete")
    placement_service.delete_allocations(ctx, consumer_uuid)
    return no_content()


@router.get("/resource_providers/{provider_uuid}/allocations")
def list_provider_allocations(request: Request, provider_uuid: str, ctx: Ctx) -> Response:
    version = version_of(request)
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


def _refuse_orphans(fields: Mapping[str, Mapping[str, list[str]]], orphans: list[str]) -> None:
    """Before 1.36 every group needs resources; say which parameters stand alone."""
    traits = [f"required{s}" for s in orphans if "required" in fields[s]]
    if traits:
        raise errors.Invalid(
            "All traits parameters must be associated with resources.  Found the following "
            f"orphaned traits keys: {', '.join(traits)}"
        )
    member_of = [f"member_of{s}" for s in orphans if "member_of" in fields[s]]
    if member_of:
        raise errors.Invalid(
            "All member_of parameters must be associated with resources. Found the following "
            f"orphaned member_of keys: {', '.join(member_of)}"
        )
    raise errors.Invalid("All request groups must specify resources.")


def _candidate_query(request: Request, version: Version) -> candidates.Query:
    params = request.query_params
    bodies.validate(dict(params), bodies.candidate_query(version), bodies.QUERY_PREFIX)
    fields: dict[str, dict[str, list[str]]] = {}
    for key in dict.fromkeys(params.keys()):
        match = _GROUP_PARAM.match(key)
        if match:
            fields.setdefault(match.group(2), {})[match.group(1)] = params.getlist(key)
    groups = []
    same_subtree_suffixes = {
        s for raw in params.getlist("same_subtree") for s in raw.split(",") if s
    }
    orphans = [s for s, values in fields.items() if "resources" not in values]
    if orphans and version < Version(1, 36):
        _refuse_orphans(fields, orphans)
    resourceless = [s for s in orphans if s not in same_subtree_suffixes]
    if resourceless:
        listing = ", ".join(sorted(resourceless))
        raise errors.Invalid(
            "Resourceless suffixed group request should be specified in `same_subtree` "
            f"query param: bad group(s) - [{listing}].",
            code="placement.query.bad_value",
        )
    for suffix, values in fields.items():
        resources = {}
        for raw in values.get("resources", []):
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
    policies = params.getlist("group_policy")
    policy = policies[0] if policies else None
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
    limits = params.getlist("limit")
    limit = limits[0] if limits else None
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
        conflicting = sorted(set().union(*root_required) & root_forbidden)
        if conflicting:
            raise errors.Invalid(
                "Conflicting required and forbidden traits found in root_required: "
                f"{', '.join(conflicting)}",
                code="placement.query.bad_value",
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
def reshape(request: Request, body: JsonBody, ctx: Ctx) -> Response:
    version = version_of(request, Version(1, 30))
    ctx.authorize("placement:reshaper:reshape")
    data = bodies.validate(body, bodies.reshaper(version))
    inventories = [
        placement_service.ProviderInventories(
            provider_uuid,
            fields["resource_provider_generation"],
            {name: _inventory_spec(inv) for name, inv in fields["inventories"].items()},
        )
        for provider_uuid, fields in data["inventories"].items()
    ]
    claims = [_claim(_consumer_uuid(key), value) for key, value in data["allocations"].items()]
    placement_service.reshape(ctx, inventories, claims)
    return no_content()


# Bodies whose shape depends on the version ------------------------------------------------


def _inventory_spec(fields: Mapping[str, Any]) -> placement_service.InventorySpec:
    return placement_service.InventorySpec(
        total=fields["total"],
        reserved=fields.get("reserved", 0),
        min_unit=fields.get("min_unit", 1),
        max_unit=fields.get("max_unit"),
        step_size=fields.get("step_size", 1),
        allocation_ratio=float(fields.get("allocation_ratio", 1.0)),
    )


async def _in_thread(function: Any, *args: Any) -> Any:
    return await run_in_threadpool(function, *args)


def create_app() -> ASGIApp:
    """The placement ASGI app, version-negotiated, mounted at /placement by core.app."""
    app = app_mod.service_app(router, render_error, describe_validation_error)
    return MicroversionMiddleware(app, VERSIONS, render_error)
