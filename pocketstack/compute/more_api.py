"""Compute HTTP routes Nova serves beside servers and their nouns: the image proxy
(/images and their metadata), os-hosts, os-simple-tenant-usage, the instance usage
audit log, the nova-network proxies (os-networks, os-tenant-networks), server
diagnostics, os-migrations, os-server-external-events and /extensions.

api.create_app serves these routes in the same app (same version negotiation and
error bodies). Proxies Nova deprecated answer 404 from the microversion that retired
them, as Nova does (facts in docs/compute-notes.md §7-§8).
"""

from __future__ import annotations

import json
import re
import uuid as uuidlib
from datetime import datetime
from typing import Any
from urllib.parse import parse_qs, urlencode

from fastapi import Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from pocketstack.compute import images, schemas, usage
from pocketstack.compute import service as compute_service
from pocketstack.core import errors, pagination, routing
from pocketstack.core.auth import Ctx
from pocketstack.core.microversion import Version, requested_version
from pocketstack.image import service as image_service

V = Version
MAX_LIMIT = 1000
router = routing.Router()
_NOT_FOUND = "The resource could not be found."


def _base(request: Request) -> str:
    return f"{str(request.base_url).rstrip('/')}/v2.1"


async def _json(request: Request) -> Any:
    raw = await request.body()
    if not raw:
        raise errors.Invalid("The request body is empty; a JSON object was expected.")
    try:
        return json.loads(raw)
    except ValueError:
        raise errors.Invalid("Malformed request body") from None


def _until(request: Request, last: Version) -> Version:
    """The request's version; 404 past `last`, where Nova retired the route."""
    version = requested_version(request)
    if version > last:
        raise errors.NotFound(_NOT_FOUND)
    return version


def _own(ctx: Ctx) -> dict[str, str]:
    return {"project_id": ctx.project_id or "", "user_id": ctx.user_id or ""}


def _next_link(request: Request, path: str, marker: str) -> list[dict[str, str]]:
    params = [(k, v) for k, v in request.query_params.multi_items() if k != "marker"]
    params.append(("marker", marker))
    return [{"rel": "next", "href": f"{_base(request)}/{path}?{urlencode(params)}"}]


def _page_full(request: Request, count: int) -> bool:
    """Nova links to a next page when a page holds as many items as were asked for."""
    wanted = pagination.parse_limit(request.query_params.get("limit"), MAX_LIMIT)
    return bool(wanted) and wanted == count


# Images (proxy to the image service, up to 2.35; metadata up to 2.38) -------------------------

_IMAGE_STATUS = {
    "active": "ACTIVE",
    "queued": "SAVING",
    "saving": "SAVING",
    "deleted": "DELETED",
    "pending_delete": "DELETED",
    "killed": "ERROR",
}
_IMAGE_PROGRESS = {"queued": 25, "saving": 50, "active": 100}
_META_KEY = re.compile(r"^[a-zA-Z0-9-_:. ]{1,255}$")


def _image_links(request: Request, image_id: str) -> list[dict[str, str]]:
    links = schemas.links(_base(request), "images", image_id)
    root = str(request.base_url).rstrip("/").rsplit("/compute", 1)[0]
    alternate = {
        "rel": "alternate",
        "type": "application/vnd.openstack.image",
        "href": f"{root}/image/images/{image_id}",
    }
    return [*links, alternate]


def _iso(moment: datetime | None) -> str | None:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ") if moment else None


def _image_brief(request: Request, image: image_service.ImageView) -> dict[str, Any]:
    row = image.row
    return {"id": row.id, "name": row.name, "links": _image_links(request, row.id)}


def _image_view(request: Request, image: image_service.ImageView) -> dict[str, Any]:
    row = image.row
    view: dict[str, Any] = {
        "id": row.id,
        "name": row.name,
        "minRam": row.min_ram or 0,
        "minDisk": row.min_disk or 0,
        "metadata": dict(image.properties),
        "created": _iso(row.created_at),
        "updated": _iso(row.updated_at),
        "status": _IMAGE_STATUS.get(row.status, "UNKNOWN"),
        "progress": _IMAGE_PROGRESS.get(row.status, 0),
        "OS-EXT-IMG-SIZE:size": row.size,
        "links": _image_links(request, row.id),
    }
    server = image.properties.get("instance_uuid")
    if server is not None:
        view["server"] = {"id": server, "links": schemas.links(_base(request), "servers", server)}
    auto = image.properties.get("auto_disk_config")
    if auto is not None:
        try:
            view["OS-DCF:diskConfig"] = "AUTO" if schemas._boolish(auto) else "MANUAL"
        except errors.Invalid:
            view["OS-DCF:diskConfig"] = "MANUAL"
    return view


def _image_query(request: Request) -> images.ImageQuery:
    params = request.query_params

    def number(name: str) -> int | None:
        raw = params.get(name)
        if raw is None:
            return None
        if not raw.lstrip("-").isdigit():
            raise errors.Invalid(f"Invalid {name} filter [{raw}]")
        return int(raw)

    changes_since = None
    if "changes-since" in params:
        changes_since = compute_service.parse_time(params["changes-since"], "changes-since")
    properties = {
        k.removeprefix("property-"): v for k, v in params.items() if k.startswith("property-")
    }
    return images.ImageQuery(
        name=params.get("name"),
        status=params.get("status"),
        changes_since=changes_since,
        server=params.get("server"),
        image_type=params.get("type"),
        min_ram=number("minRam"),
        min_disk=number("minDisk"),
        properties=properties,
        marker=params.get("marker"),
        limit=_positive_limit(params.get("limit")),
    )


def _positive_limit(raw: str | None) -> int:
    """Nova's image listing takes a limit of 1 or more (capped at the maximum)."""
    if raw is None:
        return MAX_LIMIT
    if not raw.isdigit() or int(raw) < 1:
        raise schemas.invalid("limit", raw, f"'{raw}' is not a positive integer")
    return min(int(raw), MAX_LIMIT)


def _list_images(request: Request, ctx: Ctx, detail: bool) -> Response:
    _until(request, V(2, 35))
    found = images.list_images(ctx, _image_query(request))
    render = _image_view if detail else _image_brief
    document: dict[str, Any] = {"images": [render(request, i) for i in found]}
    if found and _page_full(request, len(found)):
        path = "images/detail" if detail else "images"
        document["images_links"] = _next_link(request, path, found[-1].row.id)
    return JSONResponse(document)


@router.get("/v2.1/images")
def list_images(request: Request, ctx: Ctx) -> Response:
    return _list_images(request, ctx, detail=False)


@router.get("/v2.1/images/detail")
def list_images_detail(request: Request, ctx: Ctx) -> Response:
    return _list_images(request, ctx, detail=True)


@router.get("/v2.1/images/{image_id}")
def show_image(image_id: str, request: Request, ctx: Ctx) -> Response:
    _until(request, V(2, 35))
    return JSONResponse({"image": _image_view(request, images.get_image(ctx, image_id))})


@router.delete("/v2.1/images/{image_id}")
def delete_image(image_id: str, request: Request, ctx: Ctx) -> Response:
    _until(request, V(2, 35))
    images.delete_image(ctx, image_id)
    return Response(status_code=204)


def _metadata_items(body: Any, key: str, single: bool = False) -> dict[str, str]:
    if not isinstance(body, dict) or key not in body:
        raise schemas.invalid(key, body, f"'{key}' is a required property")
    unknown = set(body) - {key}
    if unknown:
        listed = ", ".join(repr(k) for k in sorted(unknown))
        raise errors.Invalid(f"Additional properties are not allowed ({listed} was unexpected)")
    items = body[key]
    if not isinstance(items, dict):
        raise schemas.invalid(key, items, f"{items!r} is not of type 'object'")
    if single and len(items) != 1:
        reason = "does not have enough properties" if not items else "has too many properties"
        raise schemas.invalid(key, items, f"{items!r} {reason}")
    for name, value in items.items():
        if not _META_KEY.match(name):
            raise schemas.invalid(key, items, f"Additional properties are not allowed ({name!r})")
        if not isinstance(value, str) or len(value) > 255:
            raise schemas.invalid(f"{key}/{name}", value, f"{value!r} is not a string of 255")
    return items


@router.get("/v2.1/images/{image_id}/metadata")
def list_image_metadata(image_id: str, request: Request, ctx: Ctx) -> Response:
    _until(request, V(2, 38))
    return JSONResponse({"metadata": images.metadata(ctx, image_id)})


@router.post("/v2.1/images/{image_id}/metadata")
async def create_image_metadata(image_id: str, request: Request, ctx: Ctx) -> Response:
    _until(request, V(2, 38))
    items = _metadata_items(await _json(request), "metadata")
    merged = await run_in_threadpool(images.merge_metadata, ctx, image_id, items)
    return JSONResponse({"metadata": merged})


@router.put("/v2.1/images/{image_id}/metadata")
async def update_image_metadata(image_id: str, request: Request, ctx: Ctx) -> Response:
    _until(request, V(2, 38))
    items = _metadata_items(await _json(request), "metadata")
    await run_in_threadpool(images.replace_metadata, ctx, image_id, items)
    return JSONResponse({"metadata": items})


@router.get("/v2.1/images/{image_id}/metadata/{key}")
def show_image_metadata_item(image_id: str, key: str, request: Request, ctx: Ctx) -> Response:
    _until(request, V(2, 38))
    found = images.metadata(ctx, image_id)
    if key not in found:
        raise errors.NotFound(_NOT_FOUND)
    return JSONResponse({"meta": {key: found[key]}})


@router.put("/v2.1/images/{image_id}/metadata/{key}")
async def update_image_metadata_item(
    image_id: str, key: str, request: Request, ctx: Ctx
) -> Response:
    _until(request, V(2, 38))
    meta = _metadata_items(await _json(request), "meta", single=True)
    if key not in meta:
        raise errors.Invalid("Request body and URI mismatch")
    await run_in_threadpool(images.merge_metadata, ctx, image_id, meta)
    return JSONResponse({"meta": meta})


@router.delete("/v2.1/images/{image_id}/metadata/{key}")
def delete_image_metadata_item(image_id: str, key: str, request: Request, ctx: Ctx) -> Response:
    _until(request, V(2, 38))
    images.delete_metadata_item(ctx, image_id, key)
    return Response(status_code=204)


# os-hosts (up to 2.42) --------------------------------------------------------------------------

_ENABLE_VALUES = ("enable", "disable", "Enable", "Disable", "ENABLE", "DISABLE")


@router.get("/v2.1/os-hosts")
def list_hosts(request: Request, ctx: Ctx) -> Response:
    _until(request, V(2, 42))
    ctx.authorize("os_compute_api:os-hosts:list")
    found = usage.list_host_services(ctx, request.query_params.get("zone"))
    return JSONResponse(
        {"hosts": [{"host_name": h.host_name, "service": h.service, "zone": h.zone} for h in found]}
    )


@router.get("/v2.1/os-hosts/{host}")
def show_host(host: str, request: Request, ctx: Ctx) -> Response:
    _until(request, V(2, 42))
    ctx.authorize("os_compute_api:os-hosts:show")
    resources = usage.host_resources(ctx, host)
    return JSONResponse(
        {
            "host": [
                {
                    "resource": {
                        "host": r.host,
                        "project": r.project,
                        "cpu": r.cpu,
                        "memory_mb": r.memory_mb,
                        "disk_gb": r.disk_gb,
                    }
                }
                for r in resources
            ]
        }
    )


@router.put("/v2.1/os-hosts/{host}")
async def update_host(host: str, request: Request, ctx: Ctx) -> Response:
    """The fake driver only answers what it was asked: the service is not disabled and no
    server is moved, as with Nova's fake driver."""
    _until(request, V(2, 42))
    body = await _json(request)
    if not isinstance(body, dict):
        raise errors.Invalid("Malformed request body")
    unknown = set(body) - {"status", "maintenance_mode"}
    if unknown:
        listed = ", ".join(repr(k) for k in sorted(unknown))
        raise errors.Invalid(f"Additional properties are not allowed ({listed} was unexpected)")
    if not body:
        raise schemas.invalid("host", body, "'status' or 'maintenance_mode' is required")
    for name, value in body.items():
        if value not in _ENABLE_VALUES:
            raise schemas.invalid(name, value, f"{value!r} is not one of {list(_ENABLE_VALUES)}")
    ctx.authorize("os_compute_api:os-hosts:update")
    usage.check_host(ctx, host)
    result: dict[str, str] = {"host": host}
    if "status" in body:
        result["status"] = "enabled" if body["status"].lower() == "enable" else "disabled"
    if "maintenance_mode" in body:
        enable = body["maintenance_mode"].lower() == "enable"
        result["maintenance_mode"] = "on_maintenance" if enable else "off_maintenance"
    return JSONResponse(result)


def _power_action(request: Request, ctx: Ctx, host: str, action: str, rule: str) -> Response:
    _until(request, V(2, 42))
    ctx.authorize(f"os_compute_api:os-hosts:{rule}")
    usage.check_host(ctx, host)
    return JSONResponse({"host": host, "power_action": action})


@router.get("/v2.1/os-hosts/{host}/startup")
def startup_host(host: str, request: Request, ctx: Ctx) -> Response:
    return _power_action(request, ctx, host, "startup", "start")


@router.get("/v2.1/os-hosts/{host}/shutdown")
def shutdown_host(host: str, request: Request, ctx: Ctx) -> Response:
    return _power_action(request, ctx, host, "shutdown", "shutdown")


@router.get("/v2.1/os-hosts/{host}/reboot")
def reboot_host(host: str, request: Request, ctx: Ctx) -> Response:
    return _power_action(request, ctx, host, "reboot", "reboot")


# Simple tenant usage ----------------------------------------------------------------------------

_USAGE_TIME_FORMATS = ("%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M:%S.%f", "%Y-%m-%d %H:%M:%S.%f")


def _usage_time(raw: str | None) -> datetime:
    if not raw:
        return usage.now()
    for fmt in _USAGE_TIME_FORMATS:
        try:
            return datetime.strptime(raw, fmt)
        except ValueError:
            continue
    raise errors.Invalid("Invalid datetime string: Datetime is in invalid format")


def _usage_window(request: Request, allowed: set[str]) -> tuple[datetime, datetime, bool]:
    """start/end/detailed as Nova reads them: the first value of each, blank ones unset."""
    query = parse_qs(request.url.query)
    if requested_version(request) >= V(2, 75):
        unknown = set(request.query_params) - allowed
        if unknown:
            listed = ", ".join(repr(k) for k in sorted(unknown))
            raise errors.Invalid(f"Additional properties are not allowed ({listed} was unexpected)")
    start = _usage_time(query.get("start", [None])[0])
    stop = _usage_time(query.get("end", [None])[0])
    if not start < stop:
        raise errors.Invalid("Invalid start time. The start time cannot occur after the end time.")
    return start, min(stop, usage.now()), query.get("detailed", ["0"])[0] == "1"


def _server_usage_view(s: usage.ServerUsage) -> dict[str, Any]:
    return {
        "instance_id": s.instance_id,
        "name": s.name,
        "hours": s.hours,
        "memory_mb": s.memory_mb,
        "local_gb": s.local_gb,
        "vcpus": s.vcpus,
        "flavor": s.flavor,
        "tenant_id": s.tenant_id,
        "started_at": schemas.usage_time(s.started_at),
        "ended_at": schemas.usage_time(s.ended_at),
        "state": s.state,
        "uptime": s.uptime,
    }


def _tenant_usage_view(t: usage.TenantUsage, detailed: bool) -> dict[str, Any]:
    view: dict[str, Any] = {
        "tenant_id": t.tenant_id,
        "total_local_gb_usage": t.total_local_gb_usage,
        "total_vcpus_usage": t.total_vcpus_usage,
        "total_memory_mb_usage": t.total_memory_mb_usage,
        "total_hours": t.total_hours,
        "start": schemas.usage_time(t.start),
        "stop": schemas.usage_time(t.stop),
    }
    if detailed:
        view["server_usages"] = [_server_usage_view(s) for s in t.server_usages]
    return view


def _usage_page(request: Request) -> tuple[int, str | None]:
    if requested_version(request) < V(2, 40):
        return MAX_LIMIT, None
    params = request.query_params
    limit = pagination.parse_limit(params.get("limit"), MAX_LIMIT)
    return (MAX_LIMIT if limit is None else limit), params.get("marker")


@router.get("/v2.1/os-simple-tenant-usage")
def list_tenant_usages(request: Request, ctx: Ctx) -> Response:
    ctx.authorize("os_compute_api:os-simple-tenant-usage:list")
    start, stop, detailed = _usage_window(request, {"start", "end", "detailed", "limit", "marker"})
    limit, marker = _usage_page(request)
    totals, servers = usage.tenant_usages(ctx, start, stop, None, limit, marker)
    document: dict[str, Any] = {"tenant_usages": [_tenant_usage_view(t, detailed) for t in totals]}
    if requested_version(request) >= V(2, 40) and servers and _page_full(request, len(servers)):
        link = _next_link(request, "os-simple-tenant-usage", servers[-1].instance_id)
        document["tenant_usages_links"] = link
    return JSONResponse(document)


@router.get("/v2.1/os-simple-tenant-usage/{project_id}")
def show_tenant_usage(project_id: str, request: Request, ctx: Ctx) -> Response:
    ctx.authorize("os_compute_api:os-simple-tenant-usage:show", {"project_id": project_id})
    start, stop, _detailed = _usage_window(request, {"start", "end", "limit", "marker"})
    limit, marker = _usage_page(request)
    totals, servers = usage.tenant_usages(ctx, start, stop, project_id, limit, marker)
    document: dict[str, Any] = {
        "tenant_usage": _tenant_usage_view(totals[0], True) if totals else {}
    }
    if requested_version(request) >= V(2, 40) and servers and _page_full(request, len(servers)):
        path = f"os-simple-tenant-usage/{project_id}"
        document["tenant_usage_links"] = _next_link(request, path, servers[-1].instance_id)
    return JSONResponse(document)


# Instance usage audit log ----------------------------------------------------------------------


def _audit_view(log: usage.AuditLog) -> dict[str, Any]:
    count = len(log.hosts)
    done = "ALL" if count == 0 else f"0 of {count}"
    return {
        "period_beginning": str(log.period_beginning),
        "period_ending": str(log.period_ending),
        "num_hosts": count,
        "num_hosts_done": 0,
        "num_hosts_running": 0,
        "num_hosts_not_run": count,
        "hosts_not_run": log.hosts,
        "total_instances": 0,
        "total_errors": 0,
        "overall_status": f"{done} hosts done. 0 errors.",
        "log": {},
    }


@router.get("/v2.1/os-instance_usage_audit_log")
def list_instance_usage_audit_logs(ctx: Ctx) -> Response:
    ctx.authorize("os_compute_api:os-instance-usage-audit-log:list")
    return JSONResponse({"instance_usage_audit_logs": _audit_view(usage.audit_log(ctx))})


@router.get("/v2.1/os-instance_usage_audit_log/{before_timestamp}")
def show_instance_usage_audit_log(before_timestamp: str, ctx: Ctx) -> Response:
    ctx.authorize("os_compute_api:os-instance-usage-audit-log:show")
    fmt = "%Y-%m-%d %H:%M:%S.%f" if "." in before_timestamp else "%Y-%m-%d %H:%M:%S"
    try:
        before = datetime.strptime(before_timestamp, fmt)
    except ValueError:
        raise errors.Invalid(f"Invalid timestamp for date {before_timestamp}") from None
    return JSONResponse({"instance_usage_audit_log": _audit_view(usage.audit_log(ctx, before))})


# nova-network proxies (up to 2.35): no networking service answers them yet ---------------------


@router.get("/v2.1/os-networks")
def list_networks(request: Request, ctx: Ctx) -> Response:
    _until(request, V(2, 35))
    ctx.authorize("os_compute_api:os-networks:list", _own(ctx))
    return JSONResponse({"networks": []})


@router.get("/v2.1/os-networks/{network_id}")
def show_network(network_id: str, request: Request, ctx: Ctx) -> Response:
    _until(request, V(2, 35))
    ctx.authorize("os_compute_api:os-networks:show", _own(ctx))
    raise errors.NotFound("Network not found")


@router.get("/v2.1/os-tenant-networks")
def list_tenant_networks(request: Request, ctx: Ctx) -> Response:
    _until(request, V(2, 35))
    ctx.authorize("os_compute_api:os-tenant-networks:list", _own(ctx))
    return JSONResponse({"networks": []})


@router.get("/v2.1/os-tenant-networks/{network_id}")
def show_tenant_network(network_id: str, request: Request, ctx: Ctx) -> Response:
    _until(request, V(2, 35))
    ctx.authorize("os_compute_api:os-tenant-networks:show", _own(ctx))
    raise errors.NotFound("Network not found")


# Server diagnostics ------------------------------------------------------------------------------

_DIAGNOSTICS_RULE = "os_compute_api:os-server-diagnostics"


@router.get("/v2.1/servers/{server_id}/diagnostics")
def show_server_diagnostics(server_id: str, request: Request, ctx: Ctx) -> Response:
    server = compute_service.get_server(ctx, server_id)
    target = {"project_id": server.project_id, "user_id": server.user_id}
    if not ctx.can(_DIAGNOSTICS_RULE, target):
        if server.project_id != ctx.project_id:
            raise errors.NotFound(f"Instance {server_id} could not be found.")
        raise errors.Forbidden(f"Policy doesn't allow {_DIAGNOSTICS_RULE} to be performed.")
    found = usage.diagnostics(ctx, server)
    if requested_version(request) < V(2, 48):
        # Before 2.48 the body is whatever the driver reports, libvirt-style keys here.
        legacy: dict[str, Any] = {f"cpu{i}_time": 0 for i in range(found.num_cpus)}
        legacy["memory"] = found.memory_mb * 1024
        return JSONResponse(legacy)
    return JSONResponse(
        {
            "state": found.state,
            # Tempest's schema knows Nova's real drivers only; Nova's own fake driver
            # answers "libvirt" as well.
            "driver": "libvirt",
            "hypervisor": found.hypervisor,
            "hypervisor_os": None,
            "uptime": found.uptime,
            "config_drive": found.config_drive,
            "num_cpus": found.num_cpus,
            "num_nics": 0,
            "num_disks": 0,
            "memory_details": {"maximum": found.memory_mb, "used": None},
            "cpu_details": [],
            "nic_details": [],
            "disk_details": [],
        }
    )


# Migrations --------------------------------------------------------------------------------------


@router.get("/v2.1/os-migrations")
def list_migrations(request: Request, ctx: Ctx) -> Response:
    """No move records exist yet (resize and migrate happen in place), so the list is empty."""
    version = requested_version(request)
    params = request.query_params
    ctx.authorize("os_compute_api:os-migrations:index", _own(ctx))
    project_id = params.get("project_id") if version >= V(2, 80) else None
    if not project_id or project_id != ctx.project_id:
        ctx.authorize("os_compute_api:os-migrations:index:all_projects")
    if version >= V(2, 59):
        pagination.parse_limit(params.get("limit"), MAX_LIMIT)
        for name in ("changes-since", "changes-before"):
            if name in params and (name == "changes-since" or version >= V(2, 66)):
                compute_service.parse_time(params[name], name)
        if params.get("marker"):
            raise errors.Invalid(f"Marker {params['marker']} could not be found.")
    return JSONResponse({"migrations": []})


# Server external events --------------------------------------------------------------------------

_EVENTS = (
    (V(2, 1), "network-changed"),
    (V(2, 1), "network-vif-plugged"),
    (V(2, 1), "network-vif-unplugged"),
    (V(2, 1), "network-vif-deleted"),
    (V(2, 51), "volume-extended"),
    (V(2, 76), "power-update"),
    (V(2, 82), "accelerator-request-bound"),
    (V(2, 93), "volume-reimaged"),
)
_TAG_REQUIRED = ("volume-extended", "power-update", "accelerator-request-bound")
_EVENT_STATUSES = ("failed", "completed", "in-progress")


def _check_events(body: Any, version: Version) -> list[dict[str, Any]]:
    names = [name for since, name in _EVENTS if version >= since]
    if not isinstance(body, dict) or not isinstance(body.get("events"), list):
        raise schemas.invalid("events", body, "'events' is a required property")
    if set(body) != {"events"}:
        listed = ", ".join(repr(k) for k in sorted(set(body) - {"events"}))
        raise errors.Invalid(f"Additional properties are not allowed ({listed} was unexpected)")
    events = body["events"]
    if not events:
        raise schemas.invalid("events", events, "[] is too short")
    for event in events:
        if not isinstance(event, dict):
            raise schemas.invalid("events", event, f"{event!r} is not of type 'object'")
        unknown = set(event) - {"name", "server_uuid", "status", "tag"}
        if unknown:
            listed = ", ".join(repr(k) for k in sorted(unknown))
            raise errors.Invalid(f"Additional properties are not allowed ({listed} was unexpected)")
        for required in ("name", "server_uuid"):
            if required not in event:
                raise schemas.invalid("events", event, f"'{required}' is a required property")
        if event["name"] not in names:
            raise schemas.invalid("name", event["name"], f"{event['name']!r} is not one of {names}")
        try:
            uuidlib.UUID(str(event["server_uuid"]))
        except ValueError:
            raise schemas.invalid(
                "server_uuid", event["server_uuid"], f"{event['server_uuid']!r} is not a 'uuid'"
            ) from None
        if "status" in event and event["status"] not in _EVENT_STATUSES:
            raise schemas.invalid(
                "status", event["status"], f"{event['status']!r} is not one of {_EVENT_STATUSES}"
            )
        tag = event.get("tag")
        if "tag" in event and (not isinstance(tag, str) or len(tag) > 255):
            raise schemas.invalid("tag", tag, f"{tag!r} is not a string of at most 255")
    return events


@router.post("/v2.1/os-server-external-events")
async def create_server_external_events(request: Request, ctx: Ctx) -> Response:
    """What Neutron, Cinder, Ironic and Cyborg send. The fake hosts need no notice, so an
    accepted event is only acknowledged; each event gets its own code and the reply is 207
    when any of them was refused."""
    events = _check_events(await _json(request), requested_version(request))
    ctx.authorize("os_compute_api:os-server-external-events:create")
    result = 200
    for event in events:
        try:
            server = compute_service.get_server(ctx, event["server_uuid"])
        except errors.NotFound:
            server = None
        if server is None:
            event["status"], event["code"] = "failed", 404
        elif event["name"] in _TAG_REQUIRED and event.get("tag") is None:
            event["status"], event["code"] = "failed", 400
        elif server.host:
            event["status"], event["code"] = "completed", 200
        else:
            event["status"], event["code"] = "failed", 422
        if event["code"] != 200:
            result = 207
    return JSONResponse({"events": events}, status_code=result)


# Extensions --------------------------------------------------------------------------------------

_EXTENSIONS = (
    ("NMN", "Multinic", "Several network interfaces per server."),
    ("OS-DCF", "DiskConfig", "Disk partitioning mode of servers and images."),
    ("OS-EXT-AZ", "ExtendedAvailabilityZone", "A server's availability zone."),
    ("OS-EXT-IMG-SIZE", "ImageSize", "An image's size."),
    ("OS-EXT-IPS", "ExtendedIps", "The type of a server's addresses."),
    ("OS-EXT-IPS-MAC", "ExtendedIpsMac", "The MAC address of a server's addresses."),
    ("OS-EXT-SRV-ATTR", "ExtendedServerAttributes", "Host-side attributes of servers."),
    ("OS-EXT-STS", "ExtendedStatus", "VM, task and power states of servers."),
    ("OS-FLV-DISABLED", "FlavorDisabled", "Whether a flavor is disabled."),
    ("OS-FLV-EXT-DATA", "FlavorExtraData", "Ephemeral disk size of flavors."),
    ("OS-SCH-HNT", "SchedulerHints", "Hints for the scheduler at boot."),
    ("OS-SRV-USG", "ServerUsage", "Launch and termination times of servers."),
    ("os-access-ips", "AccessIPs", "Access addresses of servers."),
    ("os-admin-actions", "AdminActions", "Administrative server actions."),
    ("os-admin-password", "AdminPassword", "Changing a server's administrator password."),
    ("os-aggregates", "Aggregates", "Host aggregates."),
    ("os-assisted-volume-snapshots", "AssistedVolumeSnapshots", "Assisted volume snapshots."),
    ("os-attach-interfaces", "AttachInterfaces", "Attaching interfaces to servers."),
    ("os-availability-zone", "AvailabilityZone", "Availability zones."),
    ("os-block-device-mapping", "BlockDeviceMapping", "Block device mappings at boot."),
    ("os-block-device-mapping-v2-boot", "BlockDeviceMappingV2Boot", "Booting from volumes."),
    ("os-cell-capacities", "CellCapacities", "Capacities of cells."),
    ("os-config-drive", "ConfigDrive", "Configuration drives."),
    ("os-console-auth-tokens", "ConsoleAuthTokens", "Console connection tokens."),
    ("os-console-output", "ConsoleOutput", "A server's console log."),
    ("os-consoles", "Consoles", "Server consoles."),
    ("os-create-backup", "CreateBackup", "Rotating backups of servers."),
    ("os-deferred-delete", "DeferredDelete", "Restoring soft-deleted servers."),
    ("os-evacuate", "Evacuate", "Evacuating servers from failed hosts."),
    ("os-extended-evacuate-find-host", "ExtendedEvacuateFindHost", "Evacuation target choice."),
    ("os-extended-hypervisors", "ExtendedHypervisors", "More hypervisor attributes."),
    ("os-extended-quotas", "ExtendedQuotas", "Deleting quotas and forcing updates."),
    ("os-extended-rescue-with-image", "ExtendedRescueWithImage", "Rescue with an image."),
    ("os-extended-services", "ExtendedServices", "Disabling services with a reason."),
    ("os-extended-services-delete", "ExtendedServicesDelete", "Deleting services."),
    ("os-extended-status", "ExtendedStatus", "VM, task and power states of servers."),
    ("os-extended-volumes", "ExtendedVolumes", "Volumes attached to servers."),
    ("os-flavor-access", "FlavorAccess", "Private flavors and their projects."),
    ("os-flavor-extra-specs", "FlavorExtraSpecs", "Flavor extra specs."),
    ("os-flavor-manage", "FlavorManage", "Creating and deleting flavors."),
    ("os-flavor-rxtx", "FlavorRxtx", "Network bandwidth factor of flavors."),
    ("os-flavor-swap", "FlavorSwap", "Swap size of flavors."),
    ("os-hide-server-addresses", "HideServerAddresses", "Hiding addresses in some states."),
    ("os-hosts", "Hosts", "Compute hosts."),
    ("os-hypervisor-status", "HypervisorStatus", "State and status of hypervisors."),
    ("os-hypervisors", "Hypervisors", "Hypervisors."),
    ("os-instance-actions", "InstanceActions", "Actions taken on servers."),
    ("os-instance_usage_audit_log", "OSInstanceUsageAuditLog", "Usage audit task logs."),
    ("os-keypairs", "Keypairs", "SSH key pairs."),
    ("os-lock-server", "LockServer", "Locking servers."),
    ("os-migrate-server", "MigrateServer", "Cold and live migration."),
    ("os-migrations", "Migrations", "Migration records."),
    ("os-multiple-create", "MultipleCreate", "Booting several servers at once."),
    ("os-networks", "Networks", "Networks (proxy)."),
    ("os-pause-server", "PauseServer", "Pausing servers."),
    ("os-personality", "Personality", "Injected files at boot."),
    ("os-preserve-ephemeral-rebuild", "PreserveEphemeralOnRebuild", "Keeping ephemeral disks."),
    ("os-quota-class-sets", "QuotaClasses", "Quota classes."),
    ("os-quota-sets", "Quotas", "Quotas."),
    ("os-rescue", "Rescue", "Rescuing servers."),
    ("os-security-groups", "SecurityGroups", "Security groups (proxy)."),
    ("os-server-diagnostics", "ServerDiagnostics", "Server diagnostics."),
    ("os-server-external-events", "ServerExternalEvents", "Events from other services."),
    ("os-server-group-quotas", "ServerGroupQuotas", "Quotas of server groups."),
    ("os-server-groups", "ServerGroups", "Server groups."),
    ("os-server-list-multi-status", "ServerListMultiStatus", "Filtering by several statuses."),
    ("os-server-password", "ServerPassword", "Encrypted server passwords."),
    ("os-server-sort-keys", "ServerSortKeys", "Sorting server lists."),
    ("os-server-start-stop", "ServerStartStop", "Starting and stopping servers."),
    ("os-services", "Services", "Compute services."),
    ("os-shelve", "Shelve", "Shelving servers."),
    ("os-simple-tenant-usage", "SimpleTenantUsage", "Usage per project."),
    ("os-suspend-server", "SuspendServer", "Suspending servers."),
    ("os-tenant-networks", "OSTenantNetworks", "Project networks (proxy)."),
    ("os-used-limits", "UsedLimits", "Current use beside limits."),
    ("os-used-limits-for-admin", "UsedLimitsForAdmin", "Limits of other projects."),
    ("os-user-data", "UserData", "User data at boot."),
    ("os-user-quotas", "UserQuotas", "Quotas per user."),
    ("os-virtual-interfaces", "VirtualInterfaces", "Virtual interfaces of servers."),
    ("os-volumes", "Volumes", "Volumes (proxy) and attachments."),
)


def _extension_view(alias: str, name: str, description: str) -> dict[str, Any]:
    return {
        "alias": alias,
        "name": name,
        "description": description,
        "namespace": "http://docs.openstack.org/compute/ext/fake_xml",
        "updated": "2014-12-03T00:00:00Z",
        "links": [],
    }


@router.get("/v2.1/extensions")
def list_extensions(ctx: Ctx) -> Response:
    ctx.authorize("os_compute_api:extensions")
    return JSONResponse({"extensions": [_extension_view(*e) for e in _EXTENSIONS]})


@router.get("/v2.1/extensions/{alias}")
def show_extension(alias: str, ctx: Ctx) -> Response:
    ctx.authorize("os_compute_api:extensions")
    for extension in _EXTENSIONS:
        if extension[0] == alias:
            return JSONResponse({"extension": _extension_view(*extension)})
    raise errors.NotFound(_NOT_FOUND)
