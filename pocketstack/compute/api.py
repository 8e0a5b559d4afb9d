"""Compute HTTP routes at /compute: the Nova v2.1 API.

Every request is version-negotiated (2.1 to 2.96, `OpenStack-API-Version:
compute X.Y` or the legacy `X-OpenStack-Nova-API-Version`); views gate their
fields on that version (schemas.py). Errors render as Nova's
`{"itemNotFound": {"code": 404, "message": ...}}`.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Scope

from pocketstack.compute import (
    admin_api,
    flavors,
    hypervisors,
    keypairs,
    more_api,
    schemas,
    server_groups,
)
from pocketstack.compute import service as compute_service
from pocketstack.core import app as app_mod
from pocketstack.core import errors, pagination, routing
from pocketstack.core.auth import Ctx, OptionalCtx
from pocketstack.core.microversion import (
    MicroversionMiddleware,
    Version,
    VersionRange,
    requested_version,
)

VERSIONS = VersionRange(
    "compute", Version(2, 1), Version(2, 96), legacy_header="X-OpenStack-Nova-API-Version"
)
V = Version
MAX_LIMIT = 1000
router = routing.Router()


def render_error(exc: errors.PocketstackError, scope: Scope) -> dict[str, Any]:
    return {
        errors.FAULT_NAMES.get(exc.status, "computeFault"): {
            "code": exc.status,
            "message": exc.message,
        }
    }


def _root(request: Request) -> str:
    return str(request.base_url).rstrip("/")


def _base(request: Request) -> str:
    """The versioned endpoint (`.../compute/v2.1`) that links in bodies start from."""
    return f"{_root(request)}/v2.1"


async def _json(request: Request) -> Any:
    raw = await request.body()
    if not raw:
        raise errors.Invalid("The request body is empty; a JSON object was expected.")
    try:
        return json.loads(raw)
    except ValueError:
        raise errors.Invalid("Malformed request body") from None


def _target(server: compute_service.ServerView) -> dict[str, str]:
    return {"project_id": server.project_id, "user_id": server.user_id}


def _server(ctx: Ctx, server_id: str, rule: str) -> compute_service.ServerView:
    """A server the caller may act on; another project's server is simply not found."""
    server = compute_service.get_server(ctx, server_id)
    if not ctx.can(rule, _target(server)):
        if not ctx.can(rule, {"project_id": ctx.project_id or ""}):
            raise errors.Forbidden(f"Policy doesn't allow {rule} to be performed.")
        raise errors.NotFound(f"Instance {server_id} could not be found.")
    return server


# Versions ---------------------------------------------------------------------------------


def _version_doc(request: Request, legacy: bool = False) -> dict[str, Any]:
    """v2.1, or with `legacy` the v2.0 entry Nova still lists (no microversions)."""
    if legacy:
        return {
            "id": "v2.0",
            "status": "SUPPORTED",
            "version": "",
            "min_version": "",
            "updated": "2011-01-21T11:33:21Z",
            "links": [{"rel": "self", "href": f"{_root(request)}/v2/"}],
        }
    return {
        "id": "v2.1",
        "status": "CURRENT",
        "version": str(VERSIONS.maximum),
        "min_version": str(VERSIONS.minimum),
        "updated": "2013-07-23T11:33:21Z",
        "links": [{"rel": "self", "href": f"{_base(request)}/"}],
    }


@router.get("/")
def list_versions(request: Request) -> Response:
    return JSONResponse({"versions": [_version_doc(request, True), _version_doc(request)]})


def _version_detail(request: Request, legacy: bool) -> Response:
    doc = _version_doc(request, legacy)
    doc["links"].append(
        {"rel": "describedby", "type": "text/html", "href": "http://docs.openstack.org/"}
    )
    media = "application/vnd.openstack.compute+json;version=" + ("2" if legacy else "2.1")
    doc["media-types"] = [{"base": "application/json", "type": media}]
    return JSONResponse({"version": doc})


@router.get("/v2.1")
@router.get("/v2.1/")
def show_version(request: Request, ctx: OptionalCtx) -> Response:
    return _version_detail(request, legacy=False)


@router.get("/v2")
@router.get("/v2/")
def show_legacy_version(request: Request, ctx: OptionalCtx) -> Response:
    return _version_detail(request, legacy=True)


# Flavors ----------------------------------------------------------------------------------


def _flavor_query(request: Request, ctx: Ctx) -> flavors.FlavorQuery:
    params = request.query_params
    raw_public = params.get("is_public")
    is_public: bool | None = True
    if raw_public is not None:
        is_public = None if raw_public.lower() == "none" else schemas._boolish(raw_public)
    sort_key = params.get("sort_key", "flavorid")
    if sort_key not in flavors.SORT_KEYS:
        raise errors.Invalid(f"Invalid sort key: {sort_key}")
    sort_dir = params.get("sort_dir", "asc")
    if sort_dir not in ("asc", "desc"):
        raise errors.Invalid(f"Invalid sort direction: {sort_dir}")

    def number(name: str) -> int | None:
        raw = params.get(name)
        if raw is None:
            return None
        if not raw.isdigit():
            raise errors.Invalid(f"Invalid {name} filter [{raw}]")
        return int(raw)

    return flavors.FlavorQuery(
        is_public=is_public,
        min_disk=number("minDisk"),
        min_ram=number("minRam"),
        sort_key=sort_key,
        sort_dir=sort_dir,
        marker=params.get("marker"),
        limit=pagination.parse_limit(params.get("limit"), MAX_LIMIT),
    )


def _paged(request: Request, name: str, path: str, items: list[dict[str, Any]]) -> Response:
    """`{name: items}`, with Nova's `<name>_links` next link when a `limit` filled the page."""
    document: dict[str, Any] = {name: items}
    raw_limit = request.query_params.get("limit")
    limit = pagination.parse_limit(raw_limit, MAX_LIMIT) if raw_limit is not None else None
    if items and limit is not None and len(items) >= limit:
        params = [(k, v) for k, v in request.query_params.multi_items() if k != "marker"]
        params.append(("marker", items[-1]["id"]))
        query = "&".join(f"{k}={v}" for k, v in params)
        document[f"{name}_links"] = [{"rel": "next", "href": f"{_base(request)}/{path}?{query}"}]
    return JSONResponse(document)


def _list_flavors(request: Request, ctx: Ctx, brief: bool) -> Response:
    version = requested_version(request)
    query = _flavor_query(request, ctx)
    found = flavors.list_flavors(ctx, query)
    with_specs = ctx.can(
        "os_compute_api:os-flavor-extra-specs:index", {"project_id": ctx.project_id or ""}
    )
    items = [
        schemas.flavor_view(f, version, _base(request), brief=brief, with_extra_specs=with_specs)
        for f in found
    ]
    return _paged(request, "flavors", "flavors" + ("" if brief else "/detail"), items)


@router.get("/v2.1/flavors")
def list_flavors(request: Request, ctx: Ctx) -> Response:
    return _list_flavors(request, ctx, brief=True)


@router.get("/v2.1/flavors/detail")
def list_flavors_detail(request: Request, ctx: Ctx) -> Response:
    return _list_flavors(request, ctx, brief=False)


@router.get("/v2.1/flavors/{flavor_id}")
def show_flavor(flavor_id: str, request: Request, ctx: Ctx) -> Response:
    flavor = flavors.get_flavor(ctx, flavor_id)
    return JSONResponse(
        {"flavor": schemas.flavor_view(flavor, requested_version(request), _base(request))}
    )


@router.post("/v2.1/flavors")
async def create_flavor(request: Request, ctx: Ctx) -> Response:
    ctx.authorize("os_compute_api:os-flavor-manage:create")
    version = requested_version(request)
    spec = schemas.new_flavor(await _json(request), version)
    flavor = await run_in_threadpool(flavors.create_flavor, ctx, spec)
    return JSONResponse({"flavor": schemas.flavor_view(flavor, version, _base(request))})


@router.put("/v2.1/flavors/{flavor_id}")
async def update_flavor(flavor_id: str, request: Request, ctx: Ctx) -> Response:
    version = requested_version(request)
    if version < V(2, 55):
        raise errors.MethodNotAllowed("The method PUT is not allowed for this resource.")
    ctx.authorize("os_compute_api:os-flavor-manage:update")
    description = schemas.flavor_description(await _json(request))
    flavor = await run_in_threadpool(flavors.update_flavor, ctx, flavor_id, description)
    return JSONResponse({"flavor": schemas.flavor_view(flavor, version, _base(request))})


@router.delete("/v2.1/flavors/{flavor_id}")
def delete_flavor(flavor_id: str, ctx: Ctx) -> Response:
    ctx.authorize("os_compute_api:os-flavor-manage:delete")
    flavors.delete_flavor(ctx, flavor_id)
    return Response(status_code=202)


@router.get("/v2.1/flavors/{flavor_id}/os-extra_specs")
def list_extra_specs(flavor_id: str, ctx: Ctx) -> Response:
    ctx.authorize(
        "os_compute_api:os-flavor-extra-specs:index", {"project_id": ctx.project_id or ""}
    )
    return JSONResponse({"extra_specs": flavors.extra_specs(ctx, flavor_id)})


@router.post("/v2.1/flavors/{flavor_id}/os-extra_specs")
async def create_extra_specs(flavor_id: str, request: Request, ctx: Ctx) -> Response:
    ctx.authorize("os_compute_api:os-flavor-extra-specs:create")
    specs = schemas.extra_specs_body(await _json(request))
    await run_in_threadpool(flavors.set_extra_specs, ctx, flavor_id, specs)
    return JSONResponse({"extra_specs": specs})


@router.get("/v2.1/flavors/{flavor_id}/os-extra_specs/{key}")
def show_extra_spec(flavor_id: str, key: str, ctx: Ctx) -> Response:
    ctx.authorize("os_compute_api:os-flavor-extra-specs:show", {"project_id": ctx.project_id or ""})
    specs = flavors.extra_specs(ctx, flavor_id)
    if key not in specs:
        raise errors.NotFound(f"Flavor {flavor_id} has no extra specs with key {key}.")
    return JSONResponse({key: specs[key]})


@router.put("/v2.1/flavors/{flavor_id}/os-extra_specs/{key}")
async def update_extra_spec(flavor_id: str, key: str, request: Request, ctx: Ctx) -> Response:
    ctx.authorize("os_compute_api:os-flavor-extra-specs:update")
    body = await _json(request)
    if not isinstance(body, dict) or len(body) != 1:
        raise errors.Invalid("Request body contains too many items")
    if key not in body:
        raise errors.Invalid("Request body and URI mismatch")
    specs = schemas.extra_specs_body({"extra_specs": body})
    await run_in_threadpool(flavors.set_extra_specs, ctx, flavor_id, specs)
    return JSONResponse(specs)


@router.delete("/v2.1/flavors/{flavor_id}/os-extra_specs/{key}")
def delete_extra_spec(flavor_id: str, key: str, ctx: Ctx) -> Response:
    ctx.authorize("os_compute_api:os-flavor-extra-specs:delete")
    flavors.delete_extra_spec(ctx, flavor_id, key)
    return Response(status_code=200)


def _access_document(flavor_id: str, projects: list[str]) -> dict[str, Any]:
    return {"flavor_access": [{"flavor_id": flavor_id, "tenant_id": p} for p in projects]}


@router.get("/v2.1/flavors/{flavor_id}/os-flavor-access")
def list_flavor_access(flavor_id: str, ctx: Ctx) -> Response:
    ctx.authorize("os_compute_api:os-flavor-access")
    is_public, projects = flavors.access_list(ctx, flavor_id)
    if is_public:
        raise errors.NotFound("Access list not available for public flavors.")
    return JSONResponse(_access_document(flavor_id, projects))


@router.post("/v2.1/flavors/{flavor_id}/action")
async def flavor_action(flavor_id: str, request: Request, ctx: Ctx) -> Response:
    body = await _json(request)
    if not isinstance(body, dict) or len(body) != 1:
        raise errors.Invalid("Malformed request body")
    action, value = next(iter(body.items()))
    if action not in ("addTenantAccess", "removeTenantAccess"):
        raise errors.Invalid(f"There is no such action: {action}")
    if not isinstance(value, dict) or not isinstance(value.get("tenant"), str):
        raise schemas.invalid(action, value, "'tenant' is a required property")
    if action == "addTenantAccess":
        ctx.authorize("os_compute_api:os-flavor-access:add_tenant_access")
        projects = await run_in_threadpool(flavors.add_access, ctx, flavor_id, value["tenant"])
    else:
        ctx.authorize("os_compute_api:os-flavor-access:remove_tenant_access")
        projects = await run_in_threadpool(flavors.remove_access, ctx, flavor_id, value["tenant"])
    return JSONResponse(_access_document(flavor_id, projects))


# Keypairs ---------------------------------------------------------------------------------


def _keypair_owner(request: Request, ctx: Ctx, version: Version, action: str) -> str:
    user_id = request.query_params.get("user_id") if version >= V(2, 10) else None
    owner = user_id or ctx.user_id or ""
    ctx.authorize(f"os_compute_api:os-keypairs:{action}", {"user_id": owner})
    return owner


@router.get("/v2.1/os-keypairs")
def list_keypairs(request: Request, ctx: Ctx) -> Response:
    version = requested_version(request)
    owner = _keypair_owner(request, ctx, version, "index")
    params = request.query_params
    paged = version >= V(2, 35)
    limit = pagination.parse_limit(params.get("limit"), MAX_LIMIT) if paged else None
    found = keypairs.list_keypairs(ctx, owner, params.get("marker") if paged else None, limit)
    document: dict[str, Any] = {
        "keypairs": [{"keypair": schemas.keypair_view(k, version, listing=True)} for k in found]
    }
    if paged and limit is not None and "limit" in params and len(found) == limit:
        document["keypairs_links"] = [
            {
                "rel": "next",
                "href": f"{_base(request)}/os-keypairs?limit={limit}&marker={found[-1].name}",
            }
        ]
    return JSONResponse(document)


@router.post("/v2.1/os-keypairs")
async def create_keypair(request: Request, ctx: Ctx) -> Response:
    version = requested_version(request)
    name, key_type, public_key, user_id = schemas.new_keypair(await _json(request), version)
    owner = user_id or ctx.user_id or ""
    ctx.authorize("os_compute_api:os-keypairs:create", {"user_id": owner})
    keypair = await run_in_threadpool(
        keypairs.create_keypair, ctx, owner, name, key_type, public_key
    )
    status = 201 if version >= V(2, 2) else 200
    return JSONResponse({"keypair": schemas.keypair_view(keypair, version)}, status_code=status)


@router.get("/v2.1/os-keypairs/{name}")
def show_keypair(name: str, request: Request, ctx: Ctx) -> Response:
    version = requested_version(request)
    owner = _keypair_owner(request, ctx, version, "show")
    keypair = keypairs.get_keypair(ctx, owner, name)
    return JSONResponse({"keypair": schemas.keypair_detail(keypair, version)})


@router.delete("/v2.1/os-keypairs/{name}")
def delete_keypair(name: str, request: Request, ctx: Ctx) -> Response:
    version = requested_version(request)
    owner = _keypair_owner(request, ctx, version, "delete")
    keypairs.delete_keypair(ctx, owner, name)
    return Response(status_code=204 if version >= V(2, 2) else 202)


# Servers ----------------------------------------------------------------------------------


@router.post("/v2.1/servers")
async def create_server(request: Request, ctx: Ctx) -> Response:
    ctx.authorize(
        "os_compute_api:servers:create",
        {"project_id": ctx.project_id or "", "user_id": ctx.user_id or ""},
    )
    version = requested_version(request)
    boot, want_reservation = schemas.boot_request(await _json(request), version)
    created = await run_in_threadpool(compute_service.create_servers, ctx, boot)
    if want_reservation:
        return JSONResponse({"reservation_id": f"r-{created[0][-8:]}"}, status_code=202)
    first = created[0]
    link = schemas.links(_base(request), "servers", first)
    body = {
        "server": {
            "id": first,
            "links": link,
            "OS-DCF:diskConfig": "MANUAL",
            "security_groups": [{"name": "default"}],
        }
    }
    return JSONResponse(body, status_code=202, headers={"Location": link[0]["href"]})


def _server_query(request: Request, ctx: Ctx) -> compute_service.ServerQuery:
    params = request.query_params
    all_projects = params.get("all_tenants") is not None and params.get(
        "all_tenants", ""
    ).lower() not in ("0", "false", "off", "no")
    if all_projects:
        ctx.authorize("os_compute_api:servers:detail:get_all_tenants")
    project = params.get("project_id") or params.get("tenant_id") if ctx.is_admin else None
    admin_filters = ctx.is_admin
    sort_keys = params.getlist("sort_key")
    sort_dirs = params.getlist("sort_dir")
    sort = []
    for index, key in enumerate(sort_keys):
        if key not in compute_service.SORT_KEYS:
            raise errors.Invalid(f"Invalid sort key: {key}")
        direction = (
            sort_dirs[index] if index < len(sort_dirs) else (sort_dirs[0] if sort_dirs else "desc")
        )
        if direction not in ("asc", "desc"):
            raise errors.Invalid(f"Invalid sort direction: {direction}")
        sort.append(pagination.SortKey(key, direction == "desc"))
    status = params.get("status")
    if (
        status is not None
        and status.upper() not in compute_service.STATUSES
        and requested_version(request) >= V(2, 38)
    ):
        raise errors.Invalid("Invalid status value")
    deleted = (params.get("deleted") or "").lower() in ("true", "1", "yes") and ctx.is_admin

    def listed(name: str) -> list[str]:
        raw = params.get(name)
        return [t for t in raw.split(",") if t] if raw else []

    return compute_service.ServerQuery(
        project_id=project
        if (all_projects or project) and ctx.is_admin
        else (ctx.project_id or ""),
        name=params.get("name"),
        status=status,
        image=params.get("image"),
        flavor=params.get("flavor"),
        host=params.get("host") if admin_filters else None,
        changes_since=compute_service.parse_time(params.get("changes-since"), "changes-since"),
        changes_before=compute_service.parse_time(params.get("changes-before"), "changes-before"),
        tags=listed("tags"),
        tags_any=listed("tags-any"),
        not_tags=listed("not-tags"),
        not_tags_any=listed("not-tags-any"),
        deleted=deleted,
        locked=schemas._boolish(params["locked"]) if "locked" in params else None,
        sort=sort,
        marker=params.get("marker"),
        limit=pagination.parse_limit(params.get("limit"), MAX_LIMIT),
    )


def _list_servers(request: Request, ctx: Ctx, detail: bool) -> Response:
    ctx.authorize(
        "os_compute_api:servers:detail" if detail else "os_compute_api:servers:index",
        {"project_id": ctx.project_id or ""},
    )
    version = requested_version(request)
    query = _server_query(request, ctx)
    found = compute_service.list_servers(ctx, query)
    base = _base(request)
    if detail:
        statuses = _host_statuses(ctx, version)
        items = [
            schemas.server_view(
                s, version, base, is_admin=ctx.is_admin, kind="detail",
                host_status=statuses.get(s.host or "", ""),
            )
            for s in found
        ]  # fmt: skip
    else:
        items = [schemas.server_brief(s, base) for s in found]
    return _paged(request, "servers", "servers" + ("/detail" if detail else ""), items)


@router.get("/v2.1/servers")
def list_servers(request: Request, ctx: Ctx) -> Response:
    return _list_servers(request, ctx, detail=False)


@router.get("/v2.1/servers/detail")
def list_servers_detail(request: Request, ctx: Ctx) -> Response:
    return _list_servers(request, ctx, detail=True)


@router.get("/v2.1/servers/{server_id}")
def show_server(server_id: str, request: Request, ctx: Ctx) -> Response:
    server = _server(ctx, server_id, "os_compute_api:servers:show")
    version = requested_version(request)
    view = _view(ctx, request, server, version, "show")
    return JSONResponse({"server": view})


def _host_statuses(ctx: Ctx, version: Version) -> dict[str, str]:
    """UP / DOWN / MAINTENANCE per host, for the admins who see host_status (2.16+)."""
    if version < V(2, 16) or not ctx.can("os_compute_api:servers:show:host_status"):
        return {}
    return hypervisors.host_statuses(ctx)


def _view(
    ctx: Ctx, request: Request, server: compute_service.ServerView, version: Version, kind: str
) -> dict[str, Any]:
    """One server as show, PUT and rebuild render it, with its group (2.71+)."""
    groups = server_groups.groups_of(ctx, server.uuid) if version >= V(2, 71) else []
    host_status = _host_statuses(ctx, version).get(server.host or "", "") if server.host else ""
    return schemas.server_view(
        server, version, _base(request), is_admin=ctx.is_admin, kind=kind,
        server_groups=groups, host_status=host_status,
    )  # fmt: skip


@router.put("/v2.1/servers/{server_id}")
async def update_server(server_id: str, request: Request, ctx: Ctx) -> Response:
    version = requested_version(request)
    change = schemas.server_update(await _json(request), version)
    _server(ctx, server_id, "os_compute_api:servers:update")
    server = await run_in_threadpool(compute_service.update_server, ctx, server_id, change)
    view = _view(ctx, request, server, version, "update")
    return JSONResponse({"server": view})


@router.delete("/v2.1/servers/{server_id}")
def delete_server(server_id: str, ctx: Ctx) -> Response:
    _server(ctx, server_id, "os_compute_api:servers:delete")
    compute_service.delete_server(ctx, server_id)
    return Response(status_code=204)


_STATE_ACTIONS = {
    "os-stop": ("stop", "os_compute_api:servers:stop"),
    "os-start": ("start", "os_compute_api:servers:start"),
    "pause": ("pause", "os_compute_api:os-pause-server:pause"),
    "unpause": ("unpause", "os_compute_api:os-pause-server:unpause"),
    "suspend": ("suspend", "os_compute_api:os-suspend-server:suspend"),
    "resume": ("resume", "os_compute_api:os-suspend-server:resume"),
    "unrescue": ("unrescue", "os_compute_api:os-unrescue"),
}


@router.post("/v2.1/servers/{server_id}/action")
async def server_action(server_id: str, request: Request, ctx: Ctx) -> Response:
    body = await _json(request)
    if not isinstance(body, dict) or len(body) != 1:
        raise errors.Invalid("Malformed request body")
    action, value = next(iter(body.items()))
    version = requested_version(request)
    return await run_in_threadpool(_act, ctx, request, version, server_id, action, value)


def _act(
    ctx: Ctx, request: Request, version: Version, server_id: str, action: str, value: Any
) -> Response:
    if action in _STATE_ACTIONS:
        transition, rule = _STATE_ACTIONS[action]
        _server(ctx, server_id, rule)
        compute_service.change_state(ctx, server_id, transition)
        return Response(status_code=202)
    if action == "reboot":
        kind = value.get("type") if isinstance(value, dict) else None
        if not isinstance(kind, str) or kind.upper() not in ("SOFT", "HARD"):
            raise schemas.invalid(
                "type", kind, "is not one of ['SOFT', 'HARD', 'Soft', 'Hard', 'soft', 'hard']"
            )
        _server(ctx, server_id, "os_compute_api:servers:reboot")
        compute_service.change_state(ctx, server_id, f"reboot_{kind.lower()}")
        return Response(status_code=202)
    if action == "rescue":
        _server(ctx, server_id, "os_compute_api:os-rescue")
        compute_service.change_state(ctx, server_id, "rescue")
        return JSONResponse({})
    if action in ("lock", "unlock"):
        reason = None
        if action == "lock" and isinstance(value, dict) and version >= V(2, 73):
            reason = value.get("locked_reason")
        _server(ctx, server_id, f"os_compute_api:os-lock-server:{action}")
        compute_service.set_locked(ctx, server_id, action == "lock", reason)
        return Response(status_code=202)
    if action == "rebuild":
        return _rebuild(ctx, request, version, server_id, value)
    if action == "resize":
        if not isinstance(value, dict) or "flavorRef" not in value:
            raise schemas.invalid("resize", value, "'flavorRef' is a required property")
        _server(ctx, server_id, "os_compute_api:servers:resize")
        compute_service.resize_server(ctx, server_id, schemas._ref(value["flavorRef"], "flavorRef"))
        return Response(status_code=202)
    if action == "confirmResize":
        _server(ctx, server_id, "os_compute_api:servers:confirm_resize")
        compute_service.confirm_resize(ctx, server_id)
        return Response(status_code=204)
    if action == "revertResize":
        _server(ctx, server_id, "os_compute_api:servers:revert_resize")
        compute_service.revert_resize(ctx, server_id)
        return Response(status_code=202)
    if action == "os-getConsoleOutput":
        _server(ctx, server_id, "os_compute_api:os-console-output")
        length = value.get("length") if isinstance(value, dict) else None
        if isinstance(length, str) and length.lstrip("-").isdigit():
            length = int(length)
        if length is not None and (not isinstance(length, int) or length < -1):
            raise schemas.invalid("length", length, "is not a valid number of lines")
        output = compute_service.console_output(ctx, server_id, length)
        return JSONResponse({"output": output})
    if action == "createImage":
        if not isinstance(value, dict) or "name" not in value:
            raise schemas.invalid("createImage", value, "'name' is a required property")
        _server(ctx, server_id, "os_compute_api:servers:create_image")
        image_id = compute_service.create_image(
            ctx, server_id, schemas.name(value["name"]), schemas.metadata_field(value)
        )
        if version >= V(2, 45):
            return JSONResponse({"image_id": image_id}, status_code=202)
        image_root = str(request.base_url).rstrip("/").rsplit("/compute", 1)[0] + "/image"
        return Response(status_code=202, headers={"Location": f"{image_root}/v2/images/{image_id}"})
    if action == "os-resetState":
        state = value.get("state") if isinstance(value, dict) else None
        if state not in ("active", "error"):
            raise schemas.invalid("state", state, f"{state!r} is not one of ['active', 'error']")
        _server(ctx, server_id, "os_compute_api:os-admin-actions:reset_state")
        compute_service.reset_state(ctx, server_id, state)
        return Response(status_code=202)
    if action in ("restore", "forceDelete"):
        rule = "restore" if action == "restore" else "force"
        _server(ctx, server_id, f"os_compute_api:os-deferred-delete:{rule}")
        compute_service.refuse_deferred_delete(ctx, server_id, action)
    if action == "migrate":
        _server(ctx, server_id, "os_compute_api:os-migrate-server:migrate")
        raise errors.Conflict(
            "Cold migration is not available yet: resize the server instead, or delete and "
            "boot it again on another host."
        )
    raise errors.Invalid(f"There is no such action: {action}")


def _rebuild(ctx: Ctx, request: Request, version: Version, server_id: str, value: Any) -> Response:
    if not isinstance(value, dict) or "imageRef" not in value:
        raise schemas.invalid("rebuild", value, "'imageRef' is a required property")
    _server(ctx, server_id, "os_compute_api:servers:rebuild")
    server = compute_service.rebuild_server(ctx, server_id, schemas.rebuild_request(value, version))
    view = _view(ctx, request, server, version, "update")
    if version >= V(2, 54):
        view["key_name"] = server.key_name
    if version >= V(2, 57):
        view.pop("OS-EXT-SRV-ATTR:user_data", None)
        view["user_data"] = server.user_data
    link = schemas.links(_base(request), "servers", server_id)[0]["href"]
    return JSONResponse({"server": view}, status_code=202, headers={"Location": link})


# Metadata and tags ------------------------------------------------------------------------


@router.get("/v2.1/servers/{server_id}/metadata")
def list_metadata(server_id: str, ctx: Ctx) -> Response:
    server = _server(ctx, server_id, "os_compute_api:server-metadata:index")
    return JSONResponse({"metadata": server.metadata})


@router.post("/v2.1/servers/{server_id}/metadata")
async def update_metadata(server_id: str, request: Request, ctx: Ctx) -> Response:
    items = schemas.metadata_body(await _json(request))
    _server(ctx, server_id, "os_compute_api:server-metadata:update")
    merged = await run_in_threadpool(compute_service.set_metadata, ctx, server_id, items, False)
    return JSONResponse({"metadata": merged})


@router.put("/v2.1/servers/{server_id}/metadata")
async def replace_metadata(server_id: str, request: Request, ctx: Ctx) -> Response:
    items = schemas.metadata_body(await _json(request))
    _server(ctx, server_id, "os_compute_api:server-metadata:update_all")
    replaced = await run_in_threadpool(compute_service.set_metadata, ctx, server_id, items, True)
    return JSONResponse({"metadata": replaced})


@router.get("/v2.1/servers/{server_id}/metadata/{key}")
def show_metadata_item(server_id: str, key: str, ctx: Ctx) -> Response:
    server = _server(ctx, server_id, "os_compute_api:server-metadata:show")
    if key not in server.metadata:
        raise errors.NotFound("Metadata item was not found")
    return JSONResponse({"meta": {key: server.metadata[key]}})


@router.put("/v2.1/servers/{server_id}/metadata/{key}")
async def set_metadata_item(server_id: str, key: str, request: Request, ctx: Ctx) -> Response:
    item = schemas.meta_item(await _json(request), key)
    _server(ctx, server_id, "os_compute_api:server-metadata:create")
    await run_in_threadpool(compute_service.set_metadata, ctx, server_id, item, False)
    return JSONResponse({"meta": item})


@router.delete("/v2.1/servers/{server_id}/metadata/{key}")
def delete_metadata_item(server_id: str, key: str, ctx: Ctx) -> Response:
    _server(ctx, server_id, "os_compute_api:server-metadata:delete")
    compute_service.delete_metadata(ctx, server_id, key)
    return Response(status_code=204)


@router.get("/v2.1/servers/{server_id}/tags")
def list_tags(server_id: str, ctx: Ctx) -> Response:
    server = _server(ctx, server_id, "os_compute_api:os-server-tags:index")
    return JSONResponse({"tags": server.tags})


@router.put("/v2.1/servers/{server_id}/tags")
async def replace_tags(server_id: str, request: Request, ctx: Ctx) -> Response:
    tags = schemas.tags_body(await _json(request))
    _server(ctx, server_id, "os_compute_api:os-server-tags:update_all")
    return JSONResponse(
        {"tags": await run_in_threadpool(compute_service.set_tags, ctx, server_id, tags, True)}
    )


@router.delete("/v2.1/servers/{server_id}/tags")
def delete_tags(server_id: str, ctx: Ctx) -> Response:
    _server(ctx, server_id, "os_compute_api:os-server-tags:delete_all")
    compute_service.set_tags(ctx, server_id, [], True)
    return Response(status_code=204)


@router.get("/v2.1/servers/{server_id}/tags/{tag}")
def check_tag(server_id: str, tag: str, ctx: Ctx) -> Response:
    server = _server(ctx, server_id, "os_compute_api:os-server-tags:show")
    if tag not in server.tags:
        raise errors.NotFound(f"Tag {tag} could not be found.")
    return Response(status_code=204)


@router.put("/v2.1/servers/{server_id}/tags/{tag}")
def add_tag(server_id: str, tag: str, request: Request, ctx: Ctx) -> Response:
    schemas.tag(tag)
    server = _server(ctx, server_id, "os_compute_api:os-server-tags:update")
    existed = tag in server.tags
    compute_service.set_tags(ctx, server_id, [tag], False)
    link = f"{_base(request)}/servers/{server_id}/tags/{tag}"
    return Response(status_code=204 if existed else 201, headers={"Location": link})


@router.delete("/v2.1/servers/{server_id}/tags/{tag}")
def delete_tag(server_id: str, tag: str, ctx: Ctx) -> Response:
    _server(ctx, server_id, "os_compute_api:os-server-tags:delete")
    compute_service.delete_tag(ctx, server_id, tag)
    return Response(status_code=204)


@router.get("/v2.1/servers/{server_id}/ips")
def list_ips(server_id: str, ctx: Ctx) -> Response:
    server = _server(ctx, server_id, "os_compute_api:ips:index")
    return JSONResponse({"addresses": schemas.plain_addresses(server.addresses)})


@router.get("/v2.1/servers/{server_id}/ips/{network_label}")
def show_ips(server_id: str, network_label: str, ctx: Ctx) -> Response:
    server = _server(ctx, server_id, "os_compute_api:ips:show")
    addresses = schemas.plain_addresses(server.addresses)
    if network_label not in addresses:
        raise errors.NotFound("Instance is not a member of specified network")
    return JSONResponse({network_label: addresses[network_label]})


# Instance actions -------------------------------------------------------------------------


def _action_view(action: compute_service.ActionView, version: Version) -> dict[str, Any]:
    view: dict[str, Any] = {
        "action": action.action,
        "instance_uuid": action.instance_uuid,
        "request_id": action.request_id,
        "user_id": action.user_id,
        "project_id": action.project_id,
        "start_time": schemas.usage_time(action.start_time),
        "message": action.message,
    }
    if version >= V(2, 58):
        view["updated_at"] = schemas.usage_time(action.updated_at)
    return view


@router.get("/v2.1/servers/{server_id}/os-instance-actions")
def list_instance_actions(server_id: str, request: Request, ctx: Ctx) -> Response:
    ctx.authorize("os_compute_api:os-instance-actions:list", {"project_id": ctx.project_id or ""})
    version = requested_version(request)
    found = compute_service.list_actions(ctx, server_id)
    return JSONResponse({"instanceActions": [_action_view(a, version) for a in found]})


@router.get("/v2.1/servers/{server_id}/os-instance-actions/{request_id}")
def show_instance_action(server_id: str, request_id: str, request: Request, ctx: Ctx) -> Response:
    ctx.authorize("os_compute_api:os-instance-actions:show", {"project_id": ctx.project_id or ""})
    version = requested_version(request)
    action = compute_service.get_action(ctx, server_id, request_id)
    view = _action_view(action, version)
    if ctx.can(
        "os_compute_api:os-instance-actions:events", {"project_id": ctx.project_id or ""}
    ) or version >= V(2, 51):
        events = []
        for event in action.events:
            item: dict[str, Any] = {
                "event": event.event,
                "start_time": schemas.usage_time(event.start_time),
                "finish_time": schemas.usage_time(event.finish_time),
                "result": event.result,
            }
            if ctx.is_admin:
                item["traceback"] = event.traceback
                if version >= V(2, 62):
                    item["host"] = event.host or ""
                    item["hostId"] = schemas.host_id(action.project_id or "", event.host)
            elif version >= V(2, 62):
                item["hostId"] = schemas.host_id(action.project_id or "", event.host)
            if version >= V(2, 84):
                item["details"] = None
            events.append(item)
        view["events"] = events
    return JSONResponse({"instanceAction": view})


# Limits -----------------------------------------------------------------------------------


@router.get("/v2.1/limits")
def show_limits(request: Request, ctx: Ctx) -> Response:
    ctx.authorize("os_compute_api:limits")
    version = requested_version(request)
    project_id = request.query_params.get("tenant_id") or ctx.project_id or ""
    if project_id != ctx.project_id:
        ctx.authorize("os_compute_api:limits:other_project", {"project_id": project_id})
    absolute = compute_service.absolute_limits(ctx, project_id)
    if version >= V(2, 36):
        for key in (
            "maxSecurityGroups",
            "maxSecurityGroupRules",
            "maxTotalFloatingIps",
            "totalFloatingIpsUsed",
            "totalSecurityGroupsUsed",
        ):
            absolute.pop(key, None)
    if version >= V(2, 39):
        absolute.pop("maxImageMeta", None)
    if version >= V(2, 57):
        for key in ("maxPersonality", "maxPersonalitySize"):
            absolute.pop(key, None)
    return JSONResponse({"limits": {"rate": [], "absolute": absolute}})


def create_app() -> ASGIApp:
    routes = routing.Router()
    routes.routes.extend([*router.routes, *admin_api.router.routes, *more_api.router.routes])
    app = app_mod.service_app(routes, render_error, redirect_slashes=False)
    return MicroversionMiddleware(app, VERSIONS, render_error)


# Volume attachments (os-volume_attachments) ------------------------------------------------

_VA = "os_compute_api:os-volumes-attachments:"


@router.get("/v2.1/servers/{server_id}/os-volume_attachments")
def list_volume_attachments(server_id: str, request: Request, ctx: Ctx) -> Response:
    _server(ctx, server_id, f"{_VA}index")
    version = requested_version(request)
    found = compute_service.volume_attachments(ctx, server_id)
    offset = schemas.non_negative(request.query_params.get("offset"), "offset") or 0
    limit = pagination.parse_limit(request.query_params.get("limit"), MAX_LIMIT)
    page = found[offset : offset + limit if limit else None]
    return JSONResponse({
        "volumeAttachments": [schemas.volume_attachment_view(e, server_id, version) for e in page]
    })  # fmt: skip


def _attachment(ctx: Ctx, server_id: str, volume_id: str) -> dict[str, Any]:
    for entry in compute_service.volume_attachments(ctx, server_id):
        if entry["volume_id"] == volume_id:
            return entry
    raise errors.NotFound(f"Volume {volume_id} is not attached to server {server_id}.")


@router.get("/v2.1/servers/{server_id}/os-volume_attachments/{volume_id}")
def show_volume_attachment(server_id: str, volume_id: str, request: Request, ctx: Ctx) -> Response:
    _server(ctx, server_id, f"{_VA}show")
    entry = _attachment(ctx, server_id, volume_id)
    view = schemas.volume_attachment_view(entry, server_id, requested_version(request))
    return JSONResponse({"volumeAttachment": view})


@router.post("/v2.1/servers/{server_id}/os-volume_attachments")
async def attach_volume(server_id: str, request: Request, ctx: Ctx) -> Response:
    body = await _json(request)
    version = requested_version(request)
    attach = schemas.volume_attach_request(body, version)

    def run() -> dict[str, Any]:
        _server(ctx, server_id, f"{_VA}create")
        return compute_service.attach_volume(ctx, server_id, attach)

    entry = await run_in_threadpool(run)
    # The 2.89 view (attachment_id and bdm_uuid instead of id) is the GETs' only.
    view = schemas.volume_attachment_view(entry, server_id, min(version, V(2, 88)))
    return JSONResponse({"volumeAttachment": view})


@router.delete("/v2.1/servers/{server_id}/os-volume_attachments/{volume_id}")
def detach_volume(server_id: str, volume_id: str, ctx: Ctx) -> Response:
    _server(ctx, server_id, f"{_VA}delete")
    compute_service.detach_volume(ctx, server_id, volume_id)
    return Response(status_code=202)
