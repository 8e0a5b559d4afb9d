"""Networking HTTP routes at /networking: the Neutron v2.0 API.

Every resource is served the same way Neutron serves its attribute map:
list (any attribute as a filter, `fields`, sort, limit/marker/page_reverse,
tags filters), create (one or bulk), show, update (If-Match on
revision_number), delete, and tags. `_serve` wires one resource's service
functions to those routes. Errors render as `{"NeutronError": {...}}`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from fastapi import Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Scope

from pocketstack.core import app as app_mod
from pocketstack.core import errors, pagination, routing
from pocketstack.core.auth import Ctx
from pocketstack.core.context import RequestContext
from pocketstack.network import (
    common,
    extensions,
    qos,
    quotas,
    routers,
    schemas,
    security_groups,
    subnet_pools,
)
from pocketstack.network import service as network_service
from pocketstack.network.query import ListQuery

router = routing.Router()
CONTROL_PARAMS = {
    "fields",
    "sort_key",
    "sort_dir",
    "limit",
    "marker",
    "page_reverse",
    "tags",
    "tags-any",
    "not-tags",
    "not-tags-any",
}
_DEFAULT_TYPES = {
    400: "HTTPBadRequest",
    401: "HTTPUnauthorized",
    403: "HTTPForbidden",
    404: "HTTPNotFound",
    405: "HTTPMethodNotAllowed",
    409: "HTTPConflict",
    412: "HTTPPreconditionFailed",
    413: "HTTPRequestEntityTooLarge",
}


def render_error(exc: errors.PocketstackError, scope: Scope) -> dict[str, Any]:
    kind = exc.code or _DEFAULT_TYPES.get(exc.status, "NeutronException")
    return {"NeutronError": {"type": kind, "message": exc.message, "detail": ""}}


def _root(request: Request) -> str:
    return str(request.base_url).rstrip("/")


async def _json(request: Request) -> Any:
    raw = await request.body()
    if not raw:
        raise errors.Invalid("Resource body required", code="HTTPBadRequest")
    try:
        return json.loads(raw)
    except ValueError:
        raise errors.Invalid("Malformed JSON in request body.", code="HTTPBadRequest") from None


def _list_query(request: Request) -> tuple[ListQuery, list[str]]:
    params = request.query_params
    filters: dict[str, list[str]] = {}
    for key in params:
        if key not in CONTROL_PARAMS:
            filters[key] = params.getlist(key)
    marker = params.get("marker")
    limit = pagination.parse_limit(params.get("limit"))
    split = [t for raw in params.getlist("tags") for t in raw.split(",")]
    query = ListQuery(
        filters=filters,
        sort_keys=params.getlist("sort_key"),
        sort_dirs=params.getlist("sort_dir"),
        limit=limit or None,
        marker=marker,
        page_reverse=params.get("page_reverse", "").lower() == "true",
        tags=split,
        tags_any=[t for raw in params.getlist("tags-any") for t in raw.split(",")],
        not_tags=[t for raw in params.getlist("not-tags") for t in raw.split(",")],
        not_tags_any=[t for raw in params.getlist("not-tags-any") for t in raw.split(",")],
    )
    return query, [f for raw in params.getlist("fields") for f in raw.split(",") if f]


def _narrowed(view: dict[str, Any], fields: Sequence[str]) -> dict[str, Any]:
    return {k: v for k, v in view.items() if k in fields} if fields else view


def _page_links(
    request: Request, collection: str, items: Sequence[dict[str, Any]], query: ListQuery
) -> list[dict[str, str]]:
    """Neutron's `<collection>_links`: next (and previous) pages when a limit was given."""
    if not query.limit or not items:
        return []
    base = f"{_root(request)}{request.url.path}"
    kept = [
        (k, v) for k, v in request.query_params.multi_items() if k not in ("marker", "page_reverse")
    ]
    links = []
    if len(items) >= query.limit:
        links.append(
            {"rel": "next", "href": f"{base}?{urlencode([*kept, ('marker', items[-1]['id'])])}"}
        )
    if query.marker:
        previous = [*kept, ("marker", items[0]["id"]), ("page_reverse", "True")]
        links.append({"rel": "previous", "href": f"{base}?{urlencode(previous)}"})
    return links


@dataclass(frozen=True, slots=True)
class Resource:
    """How one Neutron resource is served."""

    collection: str  # URL path and list key: "security-groups"
    member: str  # body key: "security_group"
    tag_kind: str | None
    body: Callable[[Any, bool], dict[str, Any]]
    create: Callable[[RequestContext, dict[str, Any]], dict[str, Any]]
    listing: Callable[[RequestContext, ListQuery], list[dict[str, Any]]]
    show: Callable[[RequestContext, str], dict[str, Any]]
    update: Callable[..., dict[str, Any]] | None
    delete: Callable[[RequestContext, str], None]

    @property
    def key(self) -> str:
        """The list's key: "security_groups" for security-groups, "policies" for qos/policies."""
        return self.collection.rsplit("/", 1)[-1].replace("-", "_")


def _serve(resource: Resource) -> None:
    path = f"/v2.0/{resource.collection}"

    async def listing(request: Request, ctx: Ctx) -> Response:
        query, fields = _list_query(request)
        items = await run_in_threadpool(resource.listing, ctx, query)
        body: dict[str, Any] = {resource.key: [_narrowed(i, fields) for i in items]}
        links = _page_links(request, resource.collection, items, query)
        if links:
            body[f"{resource.key}_links"] = links
        return JSONResponse(body)

    async def create(request: Request, ctx: Ctx) -> Response:
        items, bulk = schemas.bodies(await _json(request), resource.member, resource.key)
        checked = [resource.body(item, True) for item in items]
        made = [await run_in_threadpool(resource.create, ctx, values) for values in checked]
        if bulk:
            return JSONResponse({resource.key: made}, status_code=201)
        return JSONResponse({resource.member: made[0]}, status_code=201)

    async def show(request: Request, ctx: Ctx, item_id: str) -> Response:
        _, fields = _list_query(request)
        view = await run_in_threadpool(resource.show, ctx, item_id)
        return JSONResponse({resource.member: _narrowed(view, fields)})

    async def update(request: Request, ctx: Ctx, item_id: str) -> Response:
        if resource.update is None:
            raise errors.MethodNotAllowed("Method not allowed for this resource.")
        values = resource.body(await _json(request), False)
        view = await run_in_threadpool(
            resource.update, ctx, item_id, values, request.headers.get("if-match")
        )
        return JSONResponse({resource.member: view})

    async def delete(ctx: Ctx, item_id: str) -> Response:
        await run_in_threadpool(resource.delete, ctx, item_id)
        return Response(status_code=204)

    router.add_api_route(path, listing, methods=["GET"])
    router.add_api_route(path, create, methods=["POST"])
    router.add_api_route(f"{path}/{{item_id}}", show, methods=["GET"])
    router.add_api_route(f"{path}/{{item_id}}", update, methods=["PUT"])
    router.add_api_route(f"{path}/{{item_id}}", delete, methods=["DELETE"])
    if resource.tag_kind is not None:
        _serve_tags(resource)


def _serve_tags(resource: Resource) -> None:
    path = f"/v2.0/{resource.collection}/{{item_id}}/tags"
    kind = str(resource.tag_kind)

    def changing(ctx: RequestContext, item_id: str, change: Callable[[Any], None]) -> None:
        view = resource.show(ctx, item_id)
        ctx.authorize(f"update_{resource.member}", {"project_id": view["project_id"]})
        with ctx.db.write() as session:
            change(session)

    async def list_tags(ctx: Ctx, item_id: str) -> Response:
        view = await run_in_threadpool(resource.show, ctx, item_id)
        return JSONResponse({"tags": view["tags"]})

    async def replace(request: Request, ctx: Ctx, item_id: str) -> Response:
        body = await _json(request)
        values = body.get("tags") if isinstance(body, dict) else None
        if not isinstance(values, list):
            raise errors.Invalid("Invalid input for tags: a list is required.")
        await run_in_threadpool(
            changing, ctx, item_id, lambda s: common.set_tags(s, kind, item_id, values)
        )
        return JSONResponse({"tags": common.check_tags(values)})

    async def clear(ctx: Ctx, item_id: str) -> Response:
        await run_in_threadpool(
            changing, ctx, item_id, lambda s: common.set_tags(s, kind, item_id, [])
        )
        return Response(status_code=204)

    async def has(ctx: Ctx, item_id: str, tag: str) -> Response:
        view = await run_in_threadpool(resource.show, ctx, item_id)
        if tag not in view["tags"]:
            raise errors.NotFound(f"Tag {tag} could not be found.", code="TagNotFound")
        return Response(status_code=204)

    async def add(ctx: Ctx, item_id: str, tag: str) -> Response:
        await run_in_threadpool(
            changing, ctx, item_id, lambda s: common.add_tag(s, kind, item_id, tag)
        )
        return Response(status_code=201)

    async def remove(ctx: Ctx, item_id: str, tag: str) -> Response:
        await run_in_threadpool(
            changing, ctx, item_id, lambda s: common.remove_tag(s, kind, item_id, tag)
        )
        return Response(status_code=204)

    router.add_api_route(path, list_tags, methods=["GET"])
    router.add_api_route(path, replace, methods=["PUT"])
    router.add_api_route(path, clear, methods=["DELETE"])
    router.add_api_route(f"{path}/{{tag}}", has, methods=["GET"])
    router.add_api_route(f"{path}/{{tag}}", add, methods=["PUT"])
    router.add_api_route(f"{path}/{{tag}}", remove, methods=["DELETE"])


def _rule_body(body: Any, creating: bool) -> dict[str, Any]:
    return schemas.checked(body, "security_group_rule", schemas.SECURITY_GROUP_RULE, creating)


def _group_body(body: Any, creating: bool) -> dict[str, Any]:
    return schemas.checked(body, "security_group", schemas.SECURITY_GROUP, creating)


for _resource in (
    Resource(
        "networks",
        "network",
        "networks",
        schemas.network_body,
        network_service.create_network,
        network_service.list_networks,
        network_service.get_network,
        network_service.update_network,
        network_service.delete_network,
    ),
    Resource(
        "subnets",
        "subnet",
        "subnets",
        schemas.subnet_body,
        network_service.create_subnet,
        network_service.list_subnets,
        network_service.get_subnet,
        network_service.update_subnet,
        network_service.delete_subnet,
    ),
    Resource(
        "ports",
        "port",
        "ports",
        schemas.port_body,
        network_service.create_port,
        network_service.list_ports,
        network_service.get_port,
        network_service.update_port,
        network_service.delete_port,
    ),
    Resource(
        "security-groups",
        "security_group",
        "security-groups",
        _group_body,
        security_groups.create_group,
        security_groups.list_groups,
        security_groups.get_group,
        security_groups.update_group,
        security_groups.delete_group,
    ),
    Resource(
        "qos/policies",
        "policy",
        "policies",
        schemas.qos_policy_body,
        qos.create_policy,
        qos.list_policies,
        qos.get_policy,
        qos.update_policy,
        qos.delete_policy,
    ),
    Resource(
        "subnetpools",
        "subnetpool",
        "subnetpools",
        schemas.subnet_pool_body,
        subnet_pools.create_pool,
        subnet_pools.list_pools,
        subnet_pools.get_pool,
        subnet_pools.update_pool,
        subnet_pools.delete_pool,
    ),
    Resource(
        "routers",
        "router",
        "routers",
        schemas.router_body,
        routers.create_router,
        routers.list_routers,
        routers.get_router,
        routers.update_router,
        routers.delete_router,
    ),
    Resource(
        "floatingips",
        "floatingip",
        "floatingips",
        schemas.floating_ip_body,
        routers.create_floating_ip,
        routers.list_floating_ips,
        routers.get_floating_ip,
        routers.update_floating_ip,
        routers.delete_floating_ip,
    ),
    Resource(
        "security-group-rules",
        "security_group_rule",
        None,
        _rule_body,
        security_groups.create_rule,
        security_groups.list_rules,
        security_groups.get_rule,
        None,
        security_groups.delete_rule,
    ),
):
    _serve(_resource)


@router.put("/v2.0/routers/{router_id}/add_router_interface")
async def add_router_interface(request: Request, ctx: Ctx, router_id: str) -> Response:
    info = await run_in_threadpool(routers.add_interface, ctx, router_id, await _json(request))
    return JSONResponse(info)


@router.put("/v2.0/routers/{router_id}/remove_router_interface")
async def remove_router_interface(request: Request, ctx: Ctx, router_id: str) -> Response:
    info = await run_in_threadpool(routers.remove_interface, ctx, router_id, await _json(request))
    return JSONResponse(info)


_BANDWIDTH = "/v2.0/qos/policies/{policy_id}/bandwidth_limit_rules"


@router.get("/v2.0/qos/rule-types")
def list_qos_rule_types(ctx: Ctx) -> Response:
    return JSONResponse({"rule_types": qos.RULE_TYPES})


@router.get(_BANDWIDTH)
async def list_bandwidth_rules(ctx: Ctx, policy_id: str) -> Response:
    rules = await run_in_threadpool(qos.list_rules, ctx, policy_id)
    return JSONResponse({"bandwidth_limit_rules": rules})


async def _bandwidth_rule_body(request: Request) -> dict[str, Any]:
    body = await _json(request)
    rule = body.get("bandwidth_limit_rule") if isinstance(body, dict) else None
    if not isinstance(rule, dict):
        raise errors.Invalid(
            "Resource body required with 'bandwidth_limit_rule' as its key", code="HTTPBadRequest"
        )
    return rule


@router.post(_BANDWIDTH)
async def create_bandwidth_rule(request: Request, ctx: Ctx, policy_id: str) -> Response:
    body = await _bandwidth_rule_body(request)
    made = await run_in_threadpool(qos.create_rule, ctx, policy_id, body)
    return JSONResponse({"bandwidth_limit_rule": made}, status_code=201)


@router.get(_BANDWIDTH + "/{rule_id}")
async def show_bandwidth_rule(ctx: Ctx, policy_id: str, rule_id: str) -> Response:
    view = await run_in_threadpool(qos.get_rule, ctx, policy_id, rule_id)
    return JSONResponse({"bandwidth_limit_rule": view})


@router.put(_BANDWIDTH + "/{rule_id}")
async def update_bandwidth_rule(
    request: Request, ctx: Ctx, policy_id: str, rule_id: str
) -> Response:
    body = await _bandwidth_rule_body(request)
    view = await run_in_threadpool(qos.update_rule, ctx, policy_id, rule_id, body)
    return JSONResponse({"bandwidth_limit_rule": view})


@router.delete(_BANDWIDTH + "/{rule_id}")
async def delete_bandwidth_rule(ctx: Ctx, policy_id: str, rule_id: str) -> Response:
    await run_in_threadpool(qos.delete_rule, ctx, policy_id, rule_id)
    return Response(status_code=204)


_FORWARDINGS = "/v2.0/floatingips/{floating_id}/port_forwardings"


@router.get(_FORWARDINGS)
async def list_port_forwardings(request: Request, ctx: Ctx, floating_id: str) -> Response:
    _, fields = _list_query(request)
    items = await run_in_threadpool(routers.list_port_forwardings, ctx, floating_id)
    return JSONResponse({"port_forwardings": [_narrowed(i, fields) for i in items]})


@router.post(_FORWARDINGS)
async def create_port_forwarding(request: Request, ctx: Ctx, floating_id: str) -> Response:
    values = schemas.port_forwarding_body(await _json(request), True)
    made = await run_in_threadpool(routers.create_port_forwarding, ctx, floating_id, values)
    return JSONResponse({"port_forwarding": made}, status_code=201)


@router.get(_FORWARDINGS + "/{forwarding_id}")
async def show_port_forwarding(ctx: Ctx, floating_id: str, forwarding_id: str) -> Response:
    view = await run_in_threadpool(routers.get_port_forwarding, ctx, floating_id, forwarding_id)
    return JSONResponse({"port_forwarding": view})


@router.put(_FORWARDINGS + "/{forwarding_id}")
async def update_port_forwarding(
    request: Request, ctx: Ctx, floating_id: str, forwarding_id: str
) -> Response:
    values = schemas.port_forwarding_body(await _json(request), False)
    view = await run_in_threadpool(
        routers.update_port_forwarding, ctx, floating_id, forwarding_id, values
    )
    return JSONResponse({"port_forwarding": view})


@router.delete(_FORWARDINGS + "/{forwarding_id}")
async def delete_port_forwarding(ctx: Ctx, floating_id: str, forwarding_id: str) -> Response:
    await run_in_threadpool(routers.delete_port_forwarding, ctx, floating_id, forwarding_id)
    return Response(status_code=204)


# Versions, extensions, quotas ----------------------------------------------------------


@router.get("/")
def list_versions(request: Request) -> Response:
    link = f"{_root(request)}/v2.0/"
    return JSONResponse(
        {
            "versions": [
                {"id": "v2.0", "status": "CURRENT", "links": [{"rel": "self", "href": link}]}
            ]
        }
    )


@router.get("/v2.0")
@router.get("/v2.0/")
def list_resources(request: Request) -> Response:
    base = f"{_root(request)}/v2.0"
    names = [
        ("network", "networks"),
        ("subnet", "subnets"),
        ("port", "ports"),
        ("security_group", "security-groups"),
        ("security_group_rule", "security-group-rules"),
        ("router", "routers"),
        ("floatingip", "floatingips"),
        ("subnetpool", "subnetpools"),
    ]
    return JSONResponse(
        {
            "resources": [
                {
                    "name": name,
                    "collection": collection,
                    "links": [{"rel": "self", "href": f"{base}/{collection}"}],
                }
                for name, collection in names
            ]
        }
    )


@router.get("/v2.0/agents")
def list_agents(ctx: Ctx) -> Response:
    """No separate agents run here (the data plane is part of the cloud's process), so
    there are none to list, for admins and others alike."""
    return JSONResponse({"agents": []})


@router.get("/v2.0/extensions")
def list_extensions(ctx: Ctx) -> Response:
    return JSONResponse({"extensions": extensions.ALL})


@router.get("/v2.0/extensions/{alias}")
def show_extension(ctx: Ctx, alias: str) -> Response:
    found = next((e for e in extensions.ALL if e["alias"] == alias), None)
    if found is None:
        raise errors.NotFound(
            f"Extension with alias {alias} does not exist", code="ExtensionNotFound"
        )
    return JSONResponse({"extension": found})


@router.get("/v2.0/quotas")
async def list_quotas(ctx: Ctx) -> Response:
    return JSONResponse({"quotas": await run_in_threadpool(quotas.listed, ctx)})


@router.get("/v2.0/quotas/{project_id}")
async def show_quota(ctx: Ctx, project_id: str) -> Response:
    return JSONResponse({"quota": await run_in_threadpool(quotas.get, ctx, project_id)})


@router.get("/v2.0/quotas/{project_id}/default")
def show_default_quota(ctx: Ctx, project_id: str) -> Response:
    ctx.authorize("get_quota", {"project_id": project_id})
    return JSONResponse({"quota": {**quotas.DEFAULTS, "project_id": project_id}})


@router.get("/v2.0/quotas/{project_id}/details.json")
@router.get("/v2.0/quotas/{project_id}/details")
async def show_quota_details(ctx: Ctx, project_id: str) -> Response:
    return JSONResponse({"quota": await run_in_threadpool(quotas.details, ctx, project_id)})


@router.put("/v2.0/quotas/{project_id}")
async def update_quota(request: Request, ctx: Ctx, project_id: str) -> Response:
    body = await _json(request)
    changes = body.get("quota") if isinstance(body, dict) else None
    if not isinstance(changes, dict):
        raise errors.Invalid("Resource body required with 'quota' as its key")
    values = await run_in_threadpool(quotas.update, ctx, project_id, changes)
    return JSONResponse({"quota": values})


@router.delete("/v2.0/quotas/{project_id}")
async def delete_quota(ctx: Ctx, project_id: str) -> Response:
    await run_in_threadpool(quotas.reset, ctx, project_id)
    return Response(status_code=204)


def create_app() -> ASGIApp:
    """The networking ASGI app, mounted at /networking by core.app."""
    return app_mod.service_app(router, render_error, redirect_slashes=False)
