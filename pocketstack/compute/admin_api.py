"""Compute HTTP routes for the nouns around servers: server groups, aggregates and
availability zones, services, hypervisors, quota sets and quota classes.

api.py serves these routes in the same app (same version negotiation and error
bodies); views are gated per microversion as Nova gates them (facts in
docs/compute-notes.md §7). Handlers parse, authorize, call one service module
and render.
"""

from __future__ import annotations

import json
import re
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from pocketstack.compute import aggregates, hypervisors, quotas, schemas, server_groups
from pocketstack.core import errors, pagination, routing
from pocketstack.core.auth import Ctx
from pocketstack.core.microversion import Version, requested_version

V = Version
MAX_LIMIT = 1000
router = routing.Router()
_UUID = re.compile(
    r"^[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}$"
)


async def _json(request: Request) -> Any:
    raw = await request.body()
    if not raw:
        raise errors.Invalid("The request body is empty; a JSON object was expected.")
    try:
        return json.loads(raw)
    except ValueError:
        raise errors.Invalid("Malformed request body") from None


def _base(request: Request) -> str:
    return f"{str(request.base_url).rstrip('/')}/v2.1"


def _own(ctx: Ctx) -> dict[str, str]:
    return {"project_id": ctx.project_id or "", "user_id": ctx.user_id or ""}


def _only(body: dict[str, Any], allowed: set[str]) -> None:
    unknown = set(body) - allowed
    if unknown:
        listed = ", ".join(repr(k) for k in sorted(unknown))
        raise errors.Invalid(f"Additional properties are not allowed ({listed} was unexpected)")


# Server groups ------------------------------------------------------------------------------


def _group_view(group: server_groups.ServerGroupView, version: Version) -> dict[str, Any]:
    view: dict[str, Any] = {"id": group.uuid, "name": group.name}
    if version >= V(2, 64):
        view["policy"] = group.policy
        view["rules"] = group.rules
    else:
        view["policies"] = [group.policy]
        view["metadata"] = {}
    view["members"] = group.members
    if version >= V(2, 13):
        view["project_id"] = group.project_id
        view["user_id"] = group.user_id
    return view


def _new_group(body: Any, version: Version) -> tuple[str, str, int | None]:
    group = schemas._body_object(body, "server_group")
    _only(body, {"server_group"})
    allowed_policies = list(server_groups.POLICIES[:2])
    if version >= V(2, 15):
        allowed_policies = list(server_groups.POLICIES)
    if version >= V(2, 64):
        _only(group, {"name", "policy", "rules"})
        if "name" not in group or "policy" not in group:
            missing = "name" if "name" not in group else "policy"
            raise schemas.invalid("server_group", group, f"'{missing}' is a required property")
        policy = group["policy"]
        rules = group.get("rules", {})
        if not isinstance(rules, dict):
            raise schemas.invalid("rules", rules, f"{rules!r} is not of type 'object'")
        _only(rules, {"max_server_per_host"})
        per_host = rules.get("max_server_per_host")
        if per_host is not None:
            if isinstance(per_host, str) and per_host.isdigit():
                per_host = int(per_host)
            if not isinstance(per_host, int) or isinstance(per_host, bool) or per_host < 1:
                raise schemas.invalid(
                    "max_server_per_host", per_host, f"{per_host!r} is not a positive integer"
                )
    else:
        _only(group, {"name", "policies"})
        if "name" not in group or "policies" not in group:
            missing = "name" if "name" not in group else "policies"
            raise schemas.invalid("server_group", group, f"'{missing}' is a required property")
        policies = group["policies"]
        if not isinstance(policies, list) or len(policies) != 1:
            raise schemas.invalid("policies", policies, "is not a list of exactly one policy")
        policy, per_host = policies[0], None
    if policy not in allowed_policies:
        raise schemas.invalid("policy", policy, f"{policy!r} is not one of {allowed_policies}")
    if per_host is not None and policy != server_groups.ANTI_AFFINITY:
        raise errors.Invalid("Only anti-affinity policy supports rules.")
    return schemas._name(group["name"]).strip(), policy, per_host


@router.get("/v2.1/os-server-groups")
def list_server_groups(request: Request, ctx: Ctx) -> Response:
    ctx.authorize("os_compute_api:os-server-groups:index", {"project_id": ctx.project_id or ""})
    params = request.query_params
    project: str | None = ctx.project_id or ""
    if "all_projects" in params and ctx.is_admin:
        ctx.authorize(
            "os_compute_api:os-server-groups:index:all_projects",
            {"project_id": ctx.project_id or ""},
        )
        project = None
    offset = schemas.non_negative(params.get("offset"), "offset") or 0
    limit = min(schemas.non_negative(params.get("limit"), "limit") or MAX_LIMIT, MAX_LIMIT)
    found = server_groups.list_groups(ctx, project, offset, limit)
    version = requested_version(request)
    return JSONResponse({"server_groups": [_group_view(g, version) for g in found]})


@router.post("/v2.1/os-server-groups")
async def create_server_group(request: Request, ctx: Ctx) -> Response:
    ctx.authorize("os_compute_api:os-server-groups:create", _own(ctx))
    version = requested_version(request)
    name, policy, per_host = _new_group(await _json(request), version)
    group = await run_in_threadpool(server_groups.create_group, ctx, name, policy, per_host)
    return JSONResponse({"server_group": _group_view(group, version)})


def _group(ctx: Ctx, group_id: str, rule: str) -> server_groups.ServerGroupView:
    group = server_groups.get_group(ctx, group_id)
    ctx.authorize(rule, {"project_id": group.project_id})
    return group


@router.get("/v2.1/os-server-groups/{group_id}")
def show_server_group(group_id: str, request: Request, ctx: Ctx) -> Response:
    group = _group(ctx, group_id, "os_compute_api:os-server-groups:show")
    return JSONResponse({"server_group": _group_view(group, requested_version(request))})


@router.delete("/v2.1/os-server-groups/{group_id}")
def delete_server_group(group_id: str, ctx: Ctx) -> Response:
    _group(ctx, group_id, "os_compute_api:os-server-groups:delete")
    server_groups.delete_group(ctx, group_id)
    return Response(status_code=204)


# Aggregates ---------------------------------------------------------------------------------


def _aggregate_view(
    aggregate: aggregates.AggregateView, version: Version, *, created: bool = False
) -> dict[str, Any]:
    view: dict[str, Any] = {
        "availability_zone": aggregate.availability_zone,
        "created_at": schemas.usage_time(aggregate.created_at),
        "deleted": False,
        "deleted_at": None,
        "id": aggregate.id,
        "name": aggregate.name,
        "updated_at": schemas.usage_time(aggregate.updated_at),
    }
    if not created:
        view["hosts"] = aggregate.hosts
        view["metadata"] = aggregate.metadata
    if version >= V(2, 41):
        view["uuid"] = aggregate.uuid
    return view


def _aggregate_id(raw: str) -> int:
    if not raw.lstrip("-").isdigit():
        raise errors.Invalid("id must be an integer")
    return int(raw)


def _zone_field(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not 1 <= len(value.strip()) <= 255:
        raise schemas.invalid(
            "availability_zone", value, f"{value!r} is not a string of 1 to 255 characters"
        )
    return value.strip()


def _aggregate_name(value: Any) -> str:
    if not isinstance(value, str) or not 1 <= len(value.strip()) <= 255:
        raise schemas.invalid("name", value, f"{value!r} is not a string of 1 to 255 characters")
    return value.strip()


@router.get("/v2.1/os-aggregates")
def list_aggregates(request: Request, ctx: Ctx) -> Response:
    ctx.authorize("os_compute_api:os-aggregates:index")
    version = requested_version(request)
    found = aggregates.list_aggregates(ctx)
    return JSONResponse({"aggregates": [_aggregate_view(a, version) for a in found]})


@router.post("/v2.1/os-aggregates")
async def create_aggregate(request: Request, ctx: Ctx) -> Response:
    ctx.authorize("os_compute_api:os-aggregates:create")
    body = await _json(request)
    aggregate = schemas._body_object(body, "aggregate")
    _only(aggregate, {"name", "availability_zone"})
    if "name" not in aggregate:
        raise schemas.invalid("aggregate", aggregate, "'name' is a required property")
    name = _aggregate_name(aggregate["name"])
    zone = _zone_field(aggregate.get("availability_zone"))
    created = await run_in_threadpool(aggregates.create_aggregate, ctx, name, zone)
    view = _aggregate_view(created, requested_version(request), created=True)
    return JSONResponse({"aggregate": view})


@router.get("/v2.1/os-aggregates/{aggregate_id}")
def show_aggregate(aggregate_id: str, request: Request, ctx: Ctx) -> Response:
    ctx.authorize("os_compute_api:os-aggregates:show")
    found = aggregates.get_aggregate(ctx, _aggregate_id(aggregate_id))
    return JSONResponse({"aggregate": _aggregate_view(found, requested_version(request))})


@router.put("/v2.1/os-aggregates/{aggregate_id}")
async def update_aggregate(aggregate_id: str, request: Request, ctx: Ctx) -> Response:
    ctx.authorize("os_compute_api:os-aggregates:update")
    body = await _json(request)
    change = schemas._body_object(body, "aggregate")
    _only(change, {"name", "availability_zone"})
    if not change:
        raise schemas.invalid("aggregate", change, "{} does not have enough properties")
    name = _aggregate_name(change["name"]) if "name" in change else None
    zone = _zone_field(change.get("availability_zone"))
    updated = await run_in_threadpool(
        aggregates.update_aggregate, ctx, _aggregate_id(aggregate_id), name, zone
    )
    return JSONResponse({"aggregate": _aggregate_view(updated, requested_version(request))})


@router.delete("/v2.1/os-aggregates/{aggregate_id}")
def delete_aggregate(aggregate_id: str, ctx: Ctx) -> Response:
    ctx.authorize("os_compute_api:os-aggregates:delete")
    aggregates.delete_aggregate(ctx, _aggregate_id(aggregate_id))
    return Response(status_code=200)


@router.post("/v2.1/os-aggregates/{aggregate_id}/action")
async def aggregate_action(aggregate_id: str, request: Request, ctx: Ctx) -> Response:
    body = await _json(request)
    if not isinstance(body, dict) or len(body) != 1:
        raise errors.Invalid("Malformed request body")
    action, value = next(iter(body.items()))
    version = requested_version(request)
    number = _aggregate_id(aggregate_id)
    if action in ("add_host", "remove_host"):
        ctx.authorize(f"os_compute_api:os-aggregates:{action}")
        if not isinstance(value, dict) or not isinstance(value.get("host"), str):
            raise schemas.invalid(action, value, "'host' is a required property")
        _only(value, {"host"})
        call = aggregates.add_host if action == "add_host" else aggregates.remove_host
        updated = await run_in_threadpool(call, ctx, number, value["host"])
    elif action == "set_metadata":
        ctx.authorize("os_compute_api:os-aggregates:set_metadata")
        if not isinstance(value, dict) or not isinstance(value.get("metadata"), dict):
            raise schemas.invalid(action, value, "'metadata' is a required property")
        _only(value, {"metadata"})
        items = value["metadata"]
        for key, item in items.items():
            if not 1 <= len(key) <= 255:
                raise schemas.invalid("metadata", key, "keys are 1 to 255 characters")
            if item is not None and (not isinstance(item, str) or len(item) > 255):
                raise schemas.invalid(key, item, f"{item!r} is not a string of at most 255")
        updated = await run_in_threadpool(aggregates.set_metadata, ctx, number, items)
    else:
        raise errors.Invalid(f"There is no such action: {action}")
    return JSONResponse({"aggregate": _aggregate_view(updated, version)})


# Availability zones --------------------------------------------------------------------------


def _zones(ctx: Ctx) -> list[aggregates.Zone]:
    services = [
        aggregates.ServiceInZone(s.host, s.binary, not s.disabled, s.up, s.updated_at)
        for s in hypervisors.list_services(ctx)
    ]
    return aggregates.list_zones(ctx, services)


@router.get("/v2.1/os-availability-zone")
def list_availability_zones(ctx: Ctx) -> Response:
    ctx.authorize("os_compute_api:os-availability-zone:list")
    zones = [
        {"zoneName": z.name, "zoneState": {"available": z.available}, "hosts": None}
        for z in _zones(ctx)
    ]
    return JSONResponse({"availabilityZoneInfo": zones})


@router.get("/v2.1/os-availability-zone/detail")
def list_availability_zones_detail(ctx: Ctx) -> Response:
    ctx.authorize("os_compute_api:os-availability-zone:detail")
    zones = []
    for zone in _zones(ctx):
        hosts: dict[str, Any] | None = None
        if zone.available:
            hosts = {}
            for s in zone.services:
                hosts.setdefault(s.host, {})[s.binary] = {
                    "available": s.available,
                    "active": s.active,
                    "updated_at": schemas.usage_time(s.updated_at),
                }
        zones.append(
            {"zoneName": zone.name, "zoneState": {"available": zone.available}, "hosts": hosts}
        )
    return JSONResponse({"availabilityZoneInfo": zones})


# Services -----------------------------------------------------------------------------------


def _service_view(service: hypervisors.ServiceView, version: Version) -> dict[str, Any]:
    view: dict[str, Any] = {
        "binary": service.binary,
        "host": service.host,
        "id": service.uuid if version >= V(2, 53) else service.id,
        "zone": service.zone,
        "status": "disabled" if service.disabled else "enabled",
        "state": "up" if service.up else "down",
        "updated_at": schemas.usage_time(service.updated_at),
        "disabled_reason": service.disabled_reason,
    }
    if version >= V(2, 11):
        view["forced_down"] = service.forced_down
    return view


@router.get("/v2.1/os-services")
def list_services(request: Request, ctx: Ctx) -> Response:
    ctx.authorize("os_compute_api:os-services:list")
    params = request.query_params
    version = requested_version(request)
    found = hypervisors.list_services(ctx, params.get("host"), params.get("binary"))
    return JSONResponse({"services": [_service_view(s, version) for s in found]})


def _reason(value: Any) -> str:
    if not isinstance(value, str) or not 1 <= len(value) <= 255:
        raise schemas.invalid(
            "disabled_reason", value, f"{value!r} is not a string of 1 to 255 characters"
        )
    return value


def _forced(value: Any) -> bool:
    try:
        return schemas._boolish(value)
    except errors.Invalid:
        raise schemas.invalid("forced_down", value, f"{value!r} is not a boolean") from None


@router.put("/v2.1/os-services/{service_id}")
async def update_service(service_id: str, request: Request, ctx: Ctx) -> Response:
    version = requested_version(request)
    body = await _json(request)
    if not isinstance(body, dict):
        raise errors.Invalid("Malformed request body")
    if version < V(2, 53):
        return await run_in_threadpool(_update_service_by_host, ctx, version, service_id, body)
    if not _UUID.match(service_id):
        raise errors.Invalid(f"Invalid uuid {service_id}")
    ctx.authorize("os_compute_api:os-services:update")
    _only(body, {"status", "disabled_reason", "forced_down"})
    status = body.get("status")
    if status is not None and status not in ("enabled", "disabled"):
        raise schemas.invalid("status", status, f"{status!r} is not one of ['enabled', 'disabled']")
    reason = _reason(body["disabled_reason"]) if "disabled_reason" in body else None
    if status == "enabled" and reason:
        raise errors.Invalid("Specifying 'disabled_reason' with status 'enabled' is invalid.")
    if status is None and "forced_down" not in body:
        raise errors.Invalid(
            "No updates were requested. Fields 'status' or 'forced_down' should be specified."
        )
    change = hypervisors.ServiceChange(
        disabled=None if status is None else status == "disabled",
        disabled_reason=reason,
        forced_down=_forced(body["forced_down"]) if "forced_down" in body else None,
    )
    service = hypervisors.get_service(ctx, service_id, by_uuid=True)
    updated = await run_in_threadpool(hypervisors.update_service, ctx, service, change)
    return JSONResponse({"service": _service_view(updated, version)})


def _update_service_by_host(
    ctx: Ctx, version: Version, action: str, body: dict[str, Any]
) -> Response:
    """Before 2.53: PUT /os-services/{enable,disable,disable-log-reason,force-down} with the
    service named by host and binary."""
    ctx.authorize("os_compute_api:os-services:update")
    actions = {"enable", "disable", "disable-log-reason"}
    if version >= V(2, 11):
        actions.add("force-down")
    if action not in actions:
        raise errors.NotFound("Unknown action")
    for required in ("host", "binary"):
        if not isinstance(body.get(required), str):
            raise schemas.invalid("service", body, f"'{required}' is a required property")
    host, binary = body["host"], body["binary"]
    reply: dict[str, Any] = {"host": host, "binary": binary}
    if action == "force-down":
        if "forced_down" not in body:
            raise errors.Invalid("Missing forced_down field")
        forced = _forced(body["forced_down"])
        change = hypervisors.ServiceChange(forced_down=forced)
        reply["forced_down"] = forced
    elif action == "enable":
        change = hypervisors.ServiceChange(disabled=False)
        reply["status"] = "enabled"
    else:
        reason = None
        if action == "disable-log-reason":
            if "disabled_reason" not in body:
                raise errors.Invalid("Missing disabled reason field")
            reason = _reason(body["disabled_reason"])
        change = hypervisors.ServiceChange(disabled=True, disabled_reason=reason)
        reply["status"] = "disabled"
        if reason:
            reply["disabled_reason"] = reason
    if binary != "nova-compute":
        raise errors.Invalid(
            f"Updating a {binary} service is not supported. Only nova-compute services can be "
            "updated."
        )
    hypervisors.update_service(ctx, hypervisors.find_service(ctx, host, binary), change)
    return JSONResponse({"service": reply})


@router.delete("/v2.1/os-services/{service_id}")
def delete_service(service_id: str, request: Request, ctx: Ctx) -> Response:
    ctx.authorize("os_compute_api:os-services:delete")
    by_uuid = requested_version(request) >= V(2, 53)
    if by_uuid and not _UUID.match(service_id):
        raise errors.Invalid(f"Invalid uuid {service_id}")
    if not by_uuid and not service_id.isdigit():
        raise errors.Invalid(f"Invalid id {service_id}: id must be an integer")
    service = hypervisors.get_service(ctx, service_id, by_uuid=by_uuid)
    hypervisors.delete_service(ctx, service)
    return Response(status_code=204)


# Hypervisors --------------------------------------------------------------------------------

_STATISTICS = (
    "vcpus", "memory_mb", "local_gb", "vcpus_used", "memory_mb_used", "local_gb_used",
    "free_ram_mb", "free_disk_gb", "current_workload", "running_vms", "disk_available_least",
)  # fmt: skip


def _statistics(h: hypervisors.HypervisorView) -> dict[str, int]:
    return {
        "vcpus": h.vcpus, "memory_mb": h.memory_mb, "local_gb": h.local_gb,
        "vcpus_used": h.vcpus_used, "memory_mb_used": h.memory_mb_used,
        "local_gb_used": h.local_gb_used, "free_ram_mb": h.free_ram_mb,
        "free_disk_gb": h.free_disk_gb, "current_workload": 0, "running_vms": h.running_vms,
        "disk_available_least": h.free_disk_gb,
    }  # fmt: skip


def _hypervisor_view(
    ctx: Ctx,
    h: hypervisors.HypervisorView,
    version: Version,
    *,
    detail: bool,
    with_servers: bool = False,
    servers: bool = False,
) -> dict[str, Any]:
    uuids = version >= V(2, 53)
    view: dict[str, Any] = {
        "id": h.uuid if uuids else h.id,
        "hypervisor_hostname": h.hostname,
        "state": "up" if h.service.up else "down",
        "status": "disabled" if h.service.disabled else "enabled",
    }
    if detail:
        view.update(
            {
                "hypervisor_type": h.hypervisor_type,
                "hypervisor_version": h.hypervisor_version,
                "host_ip": h.host_ip,
                "service": {
                    "id": h.service.uuid if uuids else h.service.id,
                    "host": h.host,
                    "disabled_reason": h.service.disabled_reason,
                },
            }
        )
        if version < V(2, 88):
            view.update(_statistics(h))
            view["cpu_info"] = {} if version >= V(2, 28) else "{}"
        else:
            view["uptime"] = hypervisors.uptime(ctx, h)
    if (with_servers or servers) and h.servers:
        view["servers"] = [{"name": name, "uuid": uuid} for name, uuid in h.servers]
    elif with_servers and version >= V(2, 75):
        view["servers"] = []
    return view


def _list_hypervisors(request: Request, ctx: Ctx, detail: bool) -> Response:
    ctx.authorize(f"os_compute_api:os-hypervisors:{'list-detail' if detail else 'list'}")
    version = requested_version(request)
    params = request.query_params
    found = hypervisors.list_hypervisors(ctx)
    with_servers, pattern = False, None
    if version >= V(2, 53):
        with_servers = schemas._boolish(params.get("with_servers", "false"))
        pattern = params.get("hypervisor_hostname_pattern")
    limit: int | None = None
    if pattern is not None:
        if "limit" in params or "marker" in params:
            raise errors.Invalid(
                "Paging over hypervisors with the hypervisor_hostname_pattern query parameter "
                "is not supported."
            )
        found = [h for h in found if pattern in h.hostname]
        if not found:
            raise errors.NotFound(f"No hypervisor matching '{pattern}' could be found.")
    elif version >= V(2, 33):
        marker = params.get("marker")
        if marker is not None:
            ids = [h.uuid if version >= V(2, 53) else str(h.id) for h in found]
            if marker not in ids:
                raise errors.Invalid(f"marker [{marker}] not found")
            found = found[ids.index(marker) + 1 :]
        limit = pagination.parse_limit(params.get("limit"), MAX_LIMIT)
        if limit is not None:
            found = found[:limit]
    items = [
        _hypervisor_view(ctx, h, version, detail=detail, with_servers=with_servers) for h in found
    ]
    document: dict[str, Any] = {"hypervisors": items}
    if "limit" in params and limit is not None and items and len(items) == limit:
        kind = "os-hypervisors/detail" if detail else "os-hypervisors"
        document["hypervisors_links"] = [
            {
                "rel": "next",
                "href": f"{_base(request)}/{kind}?limit={limit}&marker={items[-1]['id']}",
            }
        ]
    return JSONResponse(document)


@router.get("/v2.1/os-hypervisors")
def list_hypervisors(request: Request, ctx: Ctx) -> Response:
    return _list_hypervisors(request, ctx, detail=False)


@router.get("/v2.1/os-hypervisors/detail")
def list_hypervisors_detail(request: Request, ctx: Ctx) -> Response:
    return _list_hypervisors(request, ctx, detail=True)


@router.get("/v2.1/os-hypervisors/statistics")
def hypervisor_statistics(request: Request, ctx: Ctx) -> Response:
    if requested_version(request) >= V(2, 88):
        raise errors.NotFound("The resource could not be found.")
    ctx.authorize("os_compute_api:os-hypervisors:statistics")
    found = hypervisors.list_hypervisors(ctx)
    totals = {"count": len(found), **dict.fromkeys(_STATISTICS, 0)}
    for h in found:
        for key, value in _statistics(h).items():
            totals[key] += value
    return JSONResponse({"hypervisor_statistics": totals})


@router.get("/v2.1/os-hypervisors/{hypervisor_id}")
def show_hypervisor(hypervisor_id: str, request: Request, ctx: Ctx) -> Response:
    ctx.authorize("os_compute_api:os-hypervisors:show")
    version = requested_version(request)
    by_uuid = version >= V(2, 53)
    if by_uuid and not _UUID.match(hypervisor_id):
        raise errors.Invalid(f"Invalid uuid {hypervisor_id}")
    with_servers = by_uuid and schemas._boolish(request.query_params.get("with_servers", "false"))
    found = hypervisors.get_hypervisor(ctx, hypervisor_id, by_uuid=by_uuid)
    view = _hypervisor_view(ctx, found, version, detail=True, with_servers=with_servers)
    return JSONResponse({"hypervisor": view})


@router.get("/v2.1/os-hypervisors/{hypervisor_id}/uptime")
def show_hypervisor_uptime(hypervisor_id: str, request: Request, ctx: Ctx) -> Response:
    version = requested_version(request)
    if version >= V(2, 88):
        raise errors.NotFound("The resource could not be found.")
    ctx.authorize("os_compute_api:os-hypervisors:uptime")
    by_uuid = version >= V(2, 53)
    if by_uuid and not _UUID.match(hypervisor_id):
        raise errors.Invalid(f"Invalid uuid {hypervisor_id}")
    found = hypervisors.get_hypervisor(ctx, hypervisor_id, by_uuid=by_uuid)
    view = _hypervisor_view(ctx, found, version, detail=False)
    view["uptime"] = hypervisors.uptime(ctx, found)
    return JSONResponse({"hypervisor": view})


def _matching(ctx: Ctx, request: Request, pattern: str) -> list[hypervisors.HypervisorView]:
    if requested_version(request) >= V(2, 53):
        raise errors.NotFound("The resource could not be found.")
    found = [h for h in hypervisors.list_hypervisors(ctx) if pattern in h.hostname]
    if not found:
        raise errors.NotFound(f"No hypervisor matching '{pattern}' could be found.")
    return found


@router.get("/v2.1/os-hypervisors/{pattern}/search")
def search_hypervisors(pattern: str, request: Request, ctx: Ctx) -> Response:
    ctx.authorize("os_compute_api:os-hypervisors:search")
    version = requested_version(request)
    items = [
        _hypervisor_view(ctx, h, version, detail=False) for h in _matching(ctx, request, pattern)
    ]
    return JSONResponse({"hypervisors": items})


@router.get("/v2.1/os-hypervisors/{pattern}/servers")
def hypervisor_servers(pattern: str, request: Request, ctx: Ctx) -> Response:
    ctx.authorize("os_compute_api:os-hypervisors:servers")
    version = requested_version(request)
    items = [
        _hypervisor_view(ctx, h, version, detail=False, servers=True)
        for h in _matching(ctx, request, pattern)
    ]
    return JSONResponse({"hypervisors": items})


# Quotas -------------------------------------------------------------------------------------


def _quota_keys(version: Version) -> list[str]:
    return quotas.visible(quotas.DEFAULTS, network=version < V(2, 36), injected=version < V(2, 57))


def _quota_class_keys(version: Version) -> list[str]:
    keys = quotas.visible(quotas.DEFAULTS, network=version < V(2, 50), injected=version < V(2, 57))
    if version < V(2, 50):
        keys = [k for k in keys if k not in quotas.GROUP_RESOURCES]
    return keys


def _quota_target(ctx: Ctx, project_id: str, request: Request) -> dict[str, str]:
    return {"project_id": project_id, "user_id": request.query_params.get("user_id") or ""}


@router.get("/v2.1/os-quota-sets/{project_id}/defaults")
def show_quota_defaults(project_id: str, request: Request, ctx: Ctx) -> Response:
    ctx.authorize("os_compute_api:os-quota-sets:defaults", {"project_id": project_id})
    defaults = quotas.class_limits(ctx)
    keys = _quota_keys(requested_version(request))
    return JSONResponse({"quota_set": {"id": project_id, **{k: defaults[k] for k in keys}}})


@router.get("/v2.1/os-quota-sets/{project_id}/detail")
def show_quota_detail(project_id: str, request: Request, ctx: Ctx) -> Response:
    ctx.authorize("os_compute_api:os-quota-sets:detail", _quota_target(ctx, project_id, request))
    user_id = request.query_params.get("user_id")
    limit = quotas.limits(ctx, project_id, user_id)
    used = quotas.usage(ctx, project_id, user_id)
    keys = _quota_keys(requested_version(request))
    detail = {k: {"limit": limit[k], "in_use": used[k], "reserved": 0} for k in keys}
    return JSONResponse({"quota_set": {"id": project_id, **detail}})


@router.get("/v2.1/os-quota-sets/{project_id}")
def show_quota_set(project_id: str, request: Request, ctx: Ctx) -> Response:
    ctx.authorize("os_compute_api:os-quota-sets:show", _quota_target(ctx, project_id, request))
    limit = quotas.limits(ctx, project_id, request.query_params.get("user_id"))
    keys = _quota_keys(requested_version(request))
    return JSONResponse({"quota_set": {"id": project_id, **{k: limit[k] for k in keys}}})


@router.put("/v2.1/os-quota-sets/{project_id}")
async def update_quota_set(project_id: str, request: Request, ctx: Ctx) -> Response:
    ctx.authorize("os_compute_api:os-quota-sets:update", {"project_id": project_id})
    version = requested_version(request)
    body = schemas._body_object(await _json(request), "quota_set")
    keys = _quota_keys(version)
    _only(body, {*keys, "force"})
    force = schemas._boolish(body.pop("force", False))
    user_id = request.query_params.get("user_id")
    limit = await run_in_threadpool(quotas.update, ctx, project_id, user_id, body, force)
    return JSONResponse({"quota_set": {k: limit[k] for k in keys}})


@router.delete("/v2.1/os-quota-sets/{project_id}")
def delete_quota_set(project_id: str, request: Request, ctx: Ctx) -> Response:
    ctx.authorize("os_compute_api:os-quota-sets:delete", {"project_id": project_id})
    quotas.reset(ctx, project_id, request.query_params.get("user_id"))
    return Response(status_code=202)


@router.get("/v2.1/os-quota-class-sets/{class_name}")
def show_quota_class_set(class_name: str, request: Request, ctx: Ctx) -> Response:
    ctx.authorize("os_compute_api:os-quota-class-sets:show")
    limit = quotas.class_limits(ctx, class_name)
    keys = _quota_class_keys(requested_version(request))
    return JSONResponse({"quota_class_set": {"id": class_name, **{k: limit[k] for k in keys}}})


@router.put("/v2.1/os-quota-class-sets/{class_name}")
async def update_quota_class_set(class_name: str, request: Request, ctx: Ctx) -> Response:
    ctx.authorize("os_compute_api:os-quota-class-sets:update")
    version = requested_version(request)
    body = schemas._body_object(await _json(request), "quota_class_set")
    keys = _quota_class_keys(version)
    _only(body, set(keys))
    await run_in_threadpool(quotas.update_class, ctx, class_name, body)
    limit = quotas.class_limits(ctx, class_name)
    return JSONResponse({"quota_class_set": {k: limit[k] for k in keys}})
