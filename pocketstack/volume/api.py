"""Block storage HTTP routes at /volume: the Cinder v3 API.

Every request under `/v3/{project_id}` is version-negotiated (3.0 to 3.71,
`OpenStack-API-Version: volume X.Y`); views gate their fields on that version
(schemas.py). Errors render as Cinder's `{"itemNotFound": {"code": 404,
"message": ...}}`.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from typing import Annotated, Any

from fastapi import Body, Request
from fastapi.responses import JSONResponse, Response
from starlette.types import ASGIApp, Scope

from pocketstack.core import app as app_mod
from pocketstack.core import errors, pagination, routing
from pocketstack.core.auth import Ctx, OptionalCtx
from pocketstack.core.microversion import (
    MicroversionMiddleware,
    Version,
    VersionRange,
    requested_version,
)
from pocketstack.volume import (
    backups,
    encryption,
    groups,
    hosts,
    messages,
    qos,
    schemas,
    transfers,
)
from pocketstack.volume import service as volume_service

VERSIONS = VersionRange("volume", Version(3, 0), Version(3, 71))
V = Version
MAX_LIMIT = 1000
router = routing.Router()
JsonBody = Annotated[Any, Body()]


def render_error(exc: errors.PocketstackError, scope: Scope) -> dict[str, Any]:
    return {
        errors.FAULT_NAMES.get(exc.status, "computeFault"): {
            "code": exc.status, "message": exc.message,
        }
    }  # fmt: skip


def _root(request: Request) -> str:
    return str(request.base_url).rstrip("/")


def _base(request: Request) -> str:
    return f"{_root(request)}/v3"


def _accepted(body: dict[str, Any] | None = None) -> Response:
    return JSONResponse(body, status_code=202) if body is not None else Response(status_code=202)


# Versions -------------------------------------------------------------------------------


def _versions(request: Request) -> dict[str, Any]:
    return {
        "versions": [
            {
                "id": "v3.0",
                "status": "CURRENT",
                "version": str(VERSIONS.maximum),
                "min_version": str(VERSIONS.minimum),
                "updated": schemas.VERSIONS_UPDATED,
                "links": [
                    {"rel": "describedby", "type": "text/html",
                     "href": "https://docs.openstack.org/"},
                    {"rel": "self", "href": f"{_base(request)}/"},
                ],
                "media-types": [
                    {"base": "application/json",
                     "type": "application/vnd.openstack.volume+json;version=3"},
                ],
            }
        ]
    }  # fmt: skip


@router.get("/")
def list_versions(request: Request, ctx: OptionalCtx) -> Response:
    return JSONResponse(_versions(request), status_code=300)


@router.get("/v3")
@router.get("/v3/")
def show_version(request: Request, ctx: OptionalCtx) -> Response:
    return JSONResponse(_versions(request))


# Volumes --------------------------------------------------------------------------------


def _volume_target(view: volume_service.VolumeView) -> dict[str, str]:
    return {"project_id": view.row.project_id, "user_id": view.row.user_id}


def _volume(ctx: Ctx, volume_id: str, rule: str) -> volume_service.VolumeView:
    view = volume_service.get_volume(ctx, volume_id)
    ctx.authorize(rule, _volume_target(view))
    return view


def _volume_body(
    request: Request, ctx: Ctx, view: volume_service.VolumeView, extended: bool = True
) -> dict[str, Any]:
    return schemas.volume_view(
        view, requested_version(request), ctx.is_admin, _base(request), extended
    )


def _sort(request: Request, allowed: Sequence[str]) -> tuple[tuple[str, bool], ...]:
    """`sort=key:dir,...` or `sort_key`/`sort_dir`; Cinder takes `display_name` for `name`."""
    params = request.query_params
    keys: list[str] = []
    dirs: list[str] = []
    if params.get("sort"):
        for item in params["sort"].split(","):
            key, _, direction = item.strip().partition(":")
            keys.append(key)
            dirs.append(direction or "desc")
    elif params.get("sort_key"):
        keys, dirs = params["sort_key"].split(","), params.get("sort_dir", "desc").split(",")
    if not keys:
        return (("created_at", True),)
    keys = ["name" if key == "display_name" else key for key in keys]
    sort = pagination.parse_sort(keys, dirs, allowed, default=keys[0])
    return tuple((k.column, k.descending) for k in sort)


def _volume_query(request: Request, ctx: Ctx) -> volume_service.VolumeQuery:
    params = request.query_params
    raw_metadata = params.get("metadata")
    metadata = None
    if raw_metadata:
        try:
            metadata = json.loads(raw_metadata.replace("'", '"'))
        except ValueError:
            raise errors.Invalid(f"Invalid metadata filter: {raw_metadata}") from None
        if not isinstance(metadata, dict):
            raise errors.Invalid(f"Invalid metadata filter: {raw_metadata}")
    bootable = params.get("bootable")
    return volume_service.VolumeQuery(
        all_projects=schemas.boolean(params.get("all_tenants", "false"), "all_tenants"),
        project_id=params.get("project_id"),
        name=params.get("name"),
        status=params.get("status"),
        bootable=schemas.boolean(bootable, "bootable") if bootable is not None else None,
        metadata=metadata,
        sort=_sort(request, volume_service.SORT_KEYS),
        marker=params.get("marker"),
        limit=pagination.parse_limit(params.get("limit"), MAX_LIMIT),
        offset=schemas.integer(params, "offset") or 0,
        with_count=schemas.boolean(params.get("with_count", "false"), "with_count"),
    )


def _list_volumes(request: Request, project_id: str, ctx: Ctx, detail: bool) -> Response:
    ctx.authorize("volume:get_all")
    query = _volume_query(request, ctx)
    views, total = volume_service.list_volumes(ctx, query)
    render = (
        (lambda v: _volume_body(request, ctx, v))
        if detail
        else (lambda v: schemas.volume_summary(v, _base(request)))
    )
    document: dict[str, Any] = {"volumes": [render(v) for v in views]}
    if query.limit is not None and views and len(views) >= query.limit:
        others = [(k, v) for k, v in request.query_params.multi_items() if k != "marker"]
        others.append(("marker", views[-1].row.id))
        path = "volumes/detail" if detail else "volumes"
        href = f"{_base(request)}/{project_id}/{path}?" + "&".join(f"{k}={v}" for k, v in others)
        document["volumes_links"] = [{"rel": "next", "href": href}]
    if total is not None and requested_version(request) >= V(3, 45):
        document["count"] = total
    return JSONResponse(document)


@router.get("/v3/{project_id}/volumes")
def list_volumes(request: Request, project_id: str, ctx: Ctx) -> Response:
    return _list_volumes(request, project_id, ctx, detail=False)


@router.get("/v3/{project_id}/volumes/detail")
def list_volumes_detail(request: Request, project_id: str, ctx: Ctx) -> Response:
    return _list_volumes(request, project_id, ctx, detail=True)


@router.get("/v3/{project_id}/volumes/summary")
def volumes_summary(request: Request, project_id: str, ctx: Ctx) -> Response:
    _needs(request, V(3, 12), "The volume summary")
    ctx.authorize("volume:get_all")
    all_projects = schemas.boolean(request.query_params.get("all_tenants", "false"), "all_tenants")
    count, size, metadata = volume_service.volume_summary(ctx, all_projects)
    summary: dict[str, Any] = {"total_size": size, "total_count": count}
    if requested_version(request) >= V(3, 36):
        summary["metadata"] = metadata
    return JSONResponse({"volume-summary": summary})


@router.post("/v3/{project_id}/volumes")
def create_volume(request: Request, project_id: str, body: JsonBody, ctx: Ctx) -> Response:
    ctx.authorize("volume:create", {"project_id": ctx.project_id or ""})
    spec = schemas.volume_spec(body)
    if spec.backup_id and requested_version(request) < V(3, 47):
        spec = dataclasses.replace(spec, backup_id=None)  # Cinder reads it from 3.47
    if spec.backup_id:
        ctx.authorize("backup:restore", {"project_id": ctx.project_id or ""})
    view = volume_service.create_volume(ctx, spec)
    return _accepted({"volume": _volume_body(request, ctx, view, extended=False)})


@router.get("/v3/{project_id}/volumes/{volume_id}")
def show_volume(request: Request, project_id: str, volume_id: str, ctx: Ctx) -> Response:
    view = _volume(ctx, volume_id, "volume:get")
    return JSONResponse({"volume": _volume_body(request, ctx, view)})


@router.put("/v3/{project_id}/volumes/{volume_id}")
def update_volume(
    request: Request, project_id: str, volume_id: str, body: JsonBody, ctx: Ctx
) -> Response:
    _volume(ctx, volume_id, "volume:update")
    inner = schemas.envelope(body, "volume")
    changes: dict[str, Any] = {}
    for field in ("name", "description"):
        if field in inner:
            changes[field] = schemas.text(inner, field)
    for legacy, field in (("display_name", "name"), ("display_description", "description")):
        if legacy in inner:
            changes[field] = schemas.text(inner, legacy)
    if "metadata" in inner:
        changes["metadata"] = schemas.metadata(inner) or {}
    if not changes:
        raise errors.Invalid("Invalid input: the update names none of name, description, metadata.")
    view = volume_service.update_volume(ctx, volume_id, changes)
    return JSONResponse({"volume": _volume_body(request, ctx, view, extended=False)})


@router.delete("/v3/{project_id}/volumes/{volume_id}")
def delete_volume(request: Request, project_id: str, volume_id: str, ctx: Ctx) -> Response:
    _volume(ctx, volume_id, "volume:delete")
    params = request.query_params
    cascade = schemas.boolean(params.get("cascade", "false"), "cascade")
    force = schemas.boolean(params.get("force", "false"), "force")
    if force:
        ctx.authorize("volume_extension:volume_admin_actions:force_delete")
    volume_service.delete_volume(ctx, volume_id, cascade, force)
    return _accepted()


def _extend(request: Request, ctx: Ctx, view: volume_service.VolumeView, inner: Any) -> None:
    if not isinstance(inner, dict) or schemas.integer(inner, "new_size") is None:
        raise errors.Invalid("Invalid input for field/attribute new_size: 'new_size' is required.")
    in_use_ok = requested_version(request) >= V(3, 42)
    rule = "volume:extend_attached_volume" if view.row.status == "in-use" else "volume:extend"
    ctx.authorize(rule, _volume_target(view))
    volume_service.extend_volume(
        ctx, view.row.id, schemas.integer(inner, "new_size") or 0, in_use_ok
    )


def _reset_status(ctx: Ctx, view: volume_service.VolumeView, inner: Any) -> None:
    ctx.authorize("volume_extension:volume_admin_actions:reset_status", _volume_target(view))
    if not isinstance(inner, dict) or not inner:
        raise errors.Invalid(
            "Must specify 'status', 'attach_status' or 'migration_status' for update."
        )
    allowed = {"status", "attach_status", "migration_status"}
    if set(inner) - allowed:
        raise errors.Invalid(f"Invalid input: unexpected {sorted(set(inner) - allowed)}")
    statuses = ("available", "in-use", "error", "creating", "deleting", "error_deleting",
                "attaching", "detaching", "reserved", "maintenance", "extending",
                "error_extending", "backing-up", "restoring-backup", "error_restoring",
                "downloading", "uploading", "retyping")  # fmt: skip
    if "status" in inner and inner["status"] not in statuses:
        raise errors.Invalid(f"Invalid input received: Invalid status {inner['status']!r}.")
    if "attach_status" in inner and inner["attach_status"] not in ("attached", "detached"):
        raise errors.Invalid(f"Invalid attach status {inner['attach_status']!r}.")
    volume_service.reset_status(ctx, view.row.id, {k: str(v) for k, v in inner.items()})


def _flag(ctx: Ctx, view: volume_service.VolumeView, inner: Any, flag: str, rule: str) -> None:
    ctx.authorize(rule, _volume_target(view))
    field = "bootable" if flag == "bootable" else "readonly"
    if not isinstance(inner, dict) or field not in inner:
        raise errors.Invalid(f"Must specify {field} in request.")
    volume_service.set_flag(ctx, view.row.id, flag, schemas.boolean(inner[field], field))


@router.post("/v3/{project_id}/volumes/{volume_id}/action")
def volume_action(
    request: Request, project_id: str, volume_id: str, body: JsonBody, ctx: Ctx
) -> Response:
    if not isinstance(body, dict) or len(body) != 1:
        raise errors.Invalid("There is either no action or more than one action in the body.")
    action, inner = next(iter(body.items()))
    view = _volume(ctx, volume_id, "volume:get")
    target = _volume_target(view)
    if action == "os-extend":
        _extend(request, ctx, view, inner)
    elif action == "os-reset_status":
        _reset_status(ctx, view, inner)
    elif action == "os-set_bootable":
        _flag(ctx, view, inner, "bootable", "volume_extension:volume_actions:set_bootable")
        return Response(status_code=200)
    elif action == "os-update_readonly_flag":
        _flag(ctx, view, inner, "readonly", "volume_extension:volume_actions:update_readonly")
        return Response(status_code=202)
    elif action == "os-force_delete":
        ctx.authorize("volume_extension:volume_admin_actions:force_delete", target)
        volume_service.delete_volume(ctx, volume_id, cascade=False, force=True)
    elif action == "os-retype":
        ctx.authorize("volume:retype", target)
        new_type = schemas.text(inner if isinstance(inner, dict) else {}, "new_type")
        if not new_type:
            raise errors.Invalid("New volume type must be specified.")
        volume_service.retype(ctx, volume_id, new_type)
    elif action == "revert":
        if requested_version(request) < V(3, 40):
            raise errors.NotFound("Revert to snapshot needs microversion 3.40 or later.")
        ctx.authorize("volume:revert_to_snapshot", target)
        snapshot_id = schemas.text(inner if isinstance(inner, dict) else {}, "snapshot_id")
        if not snapshot_id:
            raise errors.Invalid("Invalid input: 'snapshot_id' is required.")
        volume_service.revert_to_snapshot(ctx, volume_id, snapshot_id)
    elif action == "os-volume_upload_image":
        return _upload_to_image(request, ctx, view, inner)
    elif action in ("os-set_image_metadata", "os-unset_image_metadata", "os-show_image_metadata"):
        return _image_metadata_action(ctx, view, action, inner)
    elif action in _LEGACY_ATTACH_ACTIONS:
        return _legacy_attach_action(ctx, view, action, inner)
    else:
        raise errors.Invalid(f"Invalid action {action!r}: this cloud does not offer it yet.")
    return _accepted()


def _image_metadata_action(
    ctx: Ctx, view: volume_service.VolumeView, action: str, inner: Any
) -> Response:
    """The image metadata a volume carries (`volume_image_metadata`): show, set, unset."""
    target = _volume_target(view)
    fields: dict[str, Any] = inner if isinstance(inner, dict) else {}
    if action == "os-show_image_metadata":
        ctx.authorize("volume_extension:volume_image_metadata:show", target)
        return JSONResponse({"metadata": dict(view.row.image_metadata)})
    if action == "os-unset_image_metadata":
        ctx.authorize("volume_extension:volume_image_metadata:remove", target)
        volume_service.unset_image_metadata(ctx, view.row.id, schemas.required_text(fields, "key"))
        return Response(status_code=200)
    ctx.authorize("volume_extension:volume_image_metadata:set", target)
    changes = schemas.metadata(fields)
    if changes is None:
        raise errors.Invalid("Malformed request body: os-set_image_metadata needs 'metadata'.")
    return JSONResponse({"metadata": volume_service.set_image_metadata(ctx, view.row.id, changes)})


def _upload_to_image(
    request: Request, ctx: Ctx, view: volume_service.VolumeView, inner: Any
) -> Response:
    ctx.authorize("volume_extension:volume_actions:upload_image", _volume_target(view))
    if not isinstance(inner, dict):
        raise errors.Invalid("Invalid input: os-volume_upload_image needs an object.")
    name = schemas.required_text(inner, "image_name")
    visibility, protected = "private", False
    if requested_version(request) >= V(3, 1):
        visibility = schemas.text(inner, "visibility") or "private"
        protected = schemas.boolean(inner.get("protected", False), "protected")
    if visibility not in ("private", "public", "shared", "community"):
        raise errors.Invalid(f"Invalid visibility {visibility!r}.")
    if visibility == "public":
        ctx.authorize("volume_extension:volume_actions:upload_public", _volume_target(view))
    upload = volume_service.UploadRequest(
        image_name=name, force=schemas.boolean(inner.get("force", False), "force"),
        disk_format=schemas.text(inner, "disk_format") or "raw",
        container_format=schemas.text(inner, "container_format") or "bare",
        visibility=visibility, protected=protected,
    )  # fmt: skip
    uploading = volume_service.upload_to_image(ctx, view.row.id, upload)
    return _accepted({"os-volume_upload_image": schemas.upload_view(uploading, upload)})


_LEGACY_ATTACH_ACTIONS = (
    "os-reserve", "os-unreserve", "os-begin_detaching", "os-roll_detaching", "os-attach",
    "os-detach", "os-force_detach", "os-initialize_connection", "os-terminate_connection",
)  # fmt: skip


def _legacy_attach_action(
    ctx: Ctx, view: volume_service.VolumeView, action: str, inner: Any
) -> Response:
    """The attach steps Nova took before the attachments API (and Tempest still tests)."""
    target = _volume_target(view)
    fields: dict[str, Any] = inner if isinstance(inner, dict) else {}
    volume_id = view.row.id
    if action == "os-force_detach":
        ctx.authorize("volume_extension:volume_admin_actions:force_detach", target)
    else:
        ctx.authorize(f"volume_extension:volume_actions:{action.removeprefix('os-')}", target)
    if action == "os-attach":
        if not fields.get("instance_uuid") and not fields.get("host_name"):
            raise errors.Invalid("Invalid request to attach volume: name an instance_uuid.")
        mode = schemas.text(fields, "mode") or "rw"
        if mode not in ("rw", "ro"):
            raise errors.Invalid(f"Invalid request to attach volume with an invalid mode {mode!r}.")
        volume_service.legacy_attach(
            ctx, volume_id, schemas.text(fields, "instance_uuid"),
            schemas.text(fields, "host_name"), schemas.text(fields, "mountpoint"), mode,
        )  # fmt: skip
    elif action in ("os-detach", "os-force_detach"):
        volume_service.legacy_detach(ctx, volume_id, schemas.text(fields, "attachment_id"))
    elif action == "os-initialize_connection":
        if not isinstance(fields.get("connector"), dict):
            raise errors.Invalid("Must specify 'connector'.")
        info = volume_service.initialize_connection(ctx, volume_id)
        return JSONResponse({"connection_info": info})
    elif action == "os-terminate_connection":
        if not isinstance(fields.get("connector"), dict):
            raise errors.Invalid("Must specify 'connector'.")
    else:
        volume_service.legacy_status(ctx, volume_id, action)
    return _accepted()


# Volume and snapshot metadata ----------------------------------------------------------


def _metadata_of(ctx: Ctx, kind: str, resource_id: str, verb: str) -> dict[str, str]:
    """The metadata of a volume or snapshot, after the `volume:<verb>_<kind>_metadata` rule."""
    rule = f"volume:{verb}_{kind}_metadata"
    if kind == "volume":
        return dict(_volume(ctx, resource_id, rule).row.metadata_)
    return dict(_snapshot(ctx, resource_id, rule).metadata_)


def _add_metadata_routes(kind: str) -> None:
    """The same six metadata routes under `volumes/{id}` and `snapshots/{id}`."""
    base = f"/v3/{{project_id}}/{kind}s/{{resource_id}}/metadata"

    def show(project_id: str, resource_id: str, ctx: Ctx) -> Response:
        return JSONResponse({"metadata": _metadata_of(ctx, kind, resource_id, "get")})

    def set_all(
        request: Request, project_id: str, resource_id: str, body: JsonBody, ctx: Ctx
    ) -> Response:
        _metadata_of(ctx, kind, resource_id, "update")
        found = schemas.metadata(body if isinstance(body, dict) else {})
        if found is None:
            raise errors.Invalid("Malformed request body: 'metadata' is required.")
        replace = request.method == "PUT"
        changed = volume_service.set_metadata(ctx, kind, resource_id, found, replace)
        return JSONResponse({"metadata": changed})

    def show_item(project_id: str, resource_id: str, key: str, ctx: Ctx) -> Response:
        metadata = _metadata_of(ctx, kind, resource_id, "get")
        if key not in metadata:
            raise errors.NotFound(f"Metadata item was not found (key {key}).")
        return JSONResponse({"meta": {key: metadata[key]}})

    def set_item(project_id: str, resource_id: str, key: str, body: JsonBody, ctx: Ctx) -> Response:
        _metadata_of(ctx, kind, resource_id, "update")
        meta = schemas.metadata(body if isinstance(body, dict) else {}, "meta")
        if not meta or len(meta) != 1 or key not in meta:
            raise errors.Invalid(
                "Request body and URI mismatch: 'meta' must hold exactly the key in the URI."
            )
        volume_service.set_metadata(ctx, kind, resource_id, meta, replace=False)
        return JSONResponse({"meta": meta})

    def delete_item(project_id: str, resource_id: str, key: str, ctx: Ctx) -> Response:
        _metadata_of(ctx, kind, resource_id, "delete")
        volume_service.delete_metadata(ctx, kind, resource_id, key)
        return Response(status_code=200)

    router.add_api_route(base, show, methods=["GET"])
    router.add_api_route(base, set_all, methods=["POST", "PUT"])
    router.add_api_route(base + "/{key}", show_item, methods=["GET"])
    router.add_api_route(base + "/{key}", set_item, methods=["PUT"])
    router.add_api_route(base + "/{key}", delete_item, methods=["DELETE"])


_add_metadata_routes("volume")
_add_metadata_routes("snapshot")


# Volume types ---------------------------------------------------------------------------


@router.get("/v3/{project_id}/types")
def list_types(request: Request, project_id: str, ctx: Ctx) -> Response:
    ctx.authorize("volume_extension:type_get_all")
    raw = request.query_params.get("is_public")
    is_public = None if raw is None or raw.lower() == "none" else schemas.boolean(raw, "is_public")
    if raw is None and not ctx.is_admin:
        is_public = None
    rows = volume_service.list_types(ctx, is_public)
    return JSONResponse({"volume_types": [schemas.type_view(r, ctx.is_admin) for r in rows]})


@router.get("/v3/{project_id}/types/default")
def show_default_type(project_id: str, ctx: Ctx) -> Response:
    ctx.authorize("volume_extension:type_get")
    row = volume_service.default_type(ctx)
    return JSONResponse({"volume_type": schemas.type_view(row, ctx.is_admin)})


@router.post("/v3/{project_id}/types")
def create_type(project_id: str, body: JsonBody, ctx: Ctx) -> Response:
    ctx.authorize("volume_extension:types_manage")
    inner = schemas.envelope(body, "volume_type")
    name = schemas.text(inner, "name")
    if not name or not name.strip():
        raise errors.Invalid("Volume type name can not be empty.")
    public = inner.get("os-volume-type-access:is_public", inner.get("is_public", True))
    specs = inner.get("extra_specs") or {}
    if not isinstance(specs, dict):
        raise errors.Invalid("Invalid input for field/attribute extra_specs.")
    row = volume_service.create_type(
        ctx, name.strip(), schemas.text(inner, "description"),
        schemas.boolean(public, "is_public"), {str(k): str(v) for k, v in specs.items()},
    )  # fmt: skip
    return JSONResponse({"volume_type": schemas.type_view(row, True, "create")})


@router.get("/v3/{project_id}/types/{type_id}")
def show_type(project_id: str, type_id: str, ctx: Ctx) -> Response:
    ctx.authorize("volume_extension:type_get")
    row = volume_service.get_type(ctx, type_id)
    return JSONResponse({"volume_type": schemas.type_view(row, ctx.is_admin)})


@router.put("/v3/{project_id}/types/{type_id}")
def update_type(project_id: str, type_id: str, body: JsonBody, ctx: Ctx) -> Response:
    ctx.authorize("volume_extension:types_manage")
    changes = schemas.type_changes(schemas.envelope(body, "volume_type"), "Volume type")
    row = volume_service.update_type(ctx, type_id, changes)
    return JSONResponse({"volume_type": schemas.type_view(row, True, "update")})


@router.delete("/v3/{project_id}/types/{type_id}")
def delete_type(project_id: str, type_id: str, ctx: Ctx) -> Response:
    ctx.authorize("volume_extension:types_manage")
    volume_service.delete_type(ctx, type_id)
    return _accepted()


@router.get("/v3/{project_id}/types/{type_id}/extra_specs")
def list_extra_specs(project_id: str, type_id: str, ctx: Ctx) -> Response:
    ctx.authorize("volume_extension:types_manage")
    return JSONResponse({"extra_specs": dict(volume_service.get_type(ctx, type_id).extra_specs)})


@router.post("/v3/{project_id}/types/{type_id}/extra_specs")
def set_extra_specs(project_id: str, type_id: str, body: JsonBody, ctx: Ctx) -> Response:
    ctx.authorize("volume_extension:types_manage")
    specs = body.get("extra_specs") if isinstance(body, dict) else None
    if not isinstance(specs, dict):
        raise errors.Invalid("Missing required element 'extra_specs' in request body.")
    clean = {str(k): str(v) for k, v in specs.items()}
    volume_service.set_extra_specs(ctx, type_id, clean)
    return JSONResponse({"extra_specs": clean})


@router.get("/v3/{project_id}/types/{type_id}/extra_specs/{key}")
def show_extra_spec(project_id: str, type_id: str, key: str, ctx: Ctx) -> Response:
    ctx.authorize("volume_extension:types_manage")
    specs = volume_service.get_type(ctx, type_id).extra_specs
    if key not in specs:
        raise errors.NotFound(f"Volume Type {type_id} has no extra specs with key {key}.")
    return JSONResponse({key: specs[key]})


@router.put("/v3/{project_id}/types/{type_id}/extra_specs/{key}")
def update_extra_spec(
    project_id: str, type_id: str, key: str, body: JsonBody, ctx: Ctx
) -> Response:
    ctx.authorize("volume_extension:types_manage")
    if not isinstance(body, dict) or list(body) != [key]:
        raise errors.Invalid("Request body and URI mismatch")
    volume_service.set_extra_specs(ctx, type_id, {key: str(body[key])})
    return JSONResponse({key: str(body[key])})


@router.delete("/v3/{project_id}/types/{type_id}/extra_specs/{key}")
def delete_extra_spec(project_id: str, type_id: str, key: str, ctx: Ctx) -> Response:
    ctx.authorize("volume_extension:types_manage")
    volume_service.delete_extra_spec(ctx, type_id, key)
    return _accepted()


@router.get("/v3/{project_id}/types/{type_id}/os-volume-type-access")
def list_type_access(project_id: str, type_id: str, ctx: Ctx) -> Response:
    ctx.authorize("volume_extension:volume_type_access")
    projects = volume_service.type_access(ctx, type_id)
    return JSONResponse(
        {"volume_type_access": [{"volume_type_id": type_id, "project_id": p} for p in projects]}
    )


@router.post("/v3/{project_id}/types/{type_id}/action")
def type_action(project_id: str, type_id: str, body: JsonBody, ctx: Ctx) -> Response:
    if not isinstance(body, dict) or len(body) != 1:
        raise errors.Invalid("There is either no action or more than one action in the body.")
    action, inner = next(iter(body.items()))
    if action not in ("addProjectAccess", "removeProjectAccess"):
        raise errors.Invalid(f"Invalid action {action!r}.")
    ctx.authorize(f"volume_extension:volume_type_access:{action}")
    project = schemas.text(inner if isinstance(inner, dict) else {}, "project")
    if not project:
        raise errors.Invalid("Access list: 'project' is required.")
    volume_service.set_type_access(ctx, type_id, project, action == "addProjectAccess")
    return _accepted()


# Snapshots ------------------------------------------------------------------------------


def _snapshot(ctx: Ctx, snapshot_id: str, rule: str) -> Any:
    row = volume_service.get_snapshot(ctx, snapshot_id)
    ctx.authorize(rule, {"project_id": row.project_id})
    return row


def _snapshot_body(request: Request, row: Any, extended: bool = True) -> dict[str, Any]:
    return schemas.snapshot_view(row, requested_version(request), _base(request), extended)


def _list_snapshots(request: Request, ctx: Ctx, detail: bool) -> Response:
    ctx.authorize("volume:get_all_snapshots")
    params = request.query_params
    all_projects = schemas.boolean(params.get("all_tenants", "false"), "all_tenants")
    filters = {k: params[k] for k in ("name", "status", "volume_id") if k in params}
    rows = volume_service.list_snapshots(
        ctx, all_projects, filters, _sort(request, volume_service.SNAPSHOT_SORT_KEYS),
        params.get("marker"), pagination.parse_limit(params.get("limit"), MAX_LIMIT),
        schemas.integer(params, "offset") or 0,
    )  # fmt: skip
    render = (
        (lambda r: _snapshot_body(request, r))
        if detail
        else (lambda r: {k: v for k, v in _snapshot_body(request, r).items()
                         if not k.startswith("os-extended")})
    )  # fmt: skip
    return JSONResponse({"snapshots": [render(r) for r in rows]})


@router.get("/v3/{project_id}/snapshots")
def list_snapshots(request: Request, project_id: str, ctx: Ctx) -> Response:
    return _list_snapshots(request, ctx, detail=False)


@router.get("/v3/{project_id}/snapshots/detail")
def list_snapshots_detail(request: Request, project_id: str, ctx: Ctx) -> Response:
    return _list_snapshots(request, ctx, detail=True)


@router.post("/v3/{project_id}/snapshots")
def create_snapshot(request: Request, project_id: str, body: JsonBody, ctx: Ctx) -> Response:
    inner = schemas.envelope(body, "snapshot")
    if "volume_id" in inner and inner["volume_id"] is None:
        raise errors.NotFound("Volume None could not be found: the snapshot names no volume_id.")
    view = _volume(ctx, schemas.required_text(inner, "volume_id"), "volume:create_snapshot")
    row = volume_service.create_snapshot(
        ctx, view.row.id, schemas.boolean(inner.get("force", False), "force"),
        schemas.text(inner, "name") or schemas.text(inner, "display_name"),
        schemas.text(inner, "description"), schemas.metadata(inner),
    )  # fmt: skip
    return _accepted({"snapshot": _snapshot_body(request, row, extended=False)})


@router.get("/v3/{project_id}/snapshots/{snapshot_id}")
def show_snapshot(request: Request, project_id: str, snapshot_id: str, ctx: Ctx) -> Response:
    row = _snapshot(ctx, snapshot_id, "volume:get_snapshot")
    return JSONResponse({"snapshot": _snapshot_body(request, row)})


@router.put("/v3/{project_id}/snapshots/{snapshot_id}")
def update_snapshot(
    request: Request, project_id: str, snapshot_id: str, body: JsonBody, ctx: Ctx
) -> Response:
    _snapshot(ctx, snapshot_id, "volume:update_snapshot")
    inner = schemas.envelope(body, "snapshot")
    changes: dict[str, Any] = {
        f: schemas.text(inner, f) for f in ("name", "description") if f in inner
    }
    if not changes:
        raise errors.Invalid("Invalid input: the update names neither name nor description.")
    row = volume_service.update_snapshot(ctx, snapshot_id, changes)
    return JSONResponse({"snapshot": _snapshot_body(request, row, extended=False)})


@router.delete("/v3/{project_id}/snapshots/{snapshot_id}")
def delete_snapshot(project_id: str, snapshot_id: str, ctx: Ctx) -> Response:
    _snapshot(ctx, snapshot_id, "volume:delete_snapshot")
    volume_service.delete_snapshot(ctx, snapshot_id, force=False)
    return _accepted()


def _is_percent(text: str) -> bool:
    number = text.removesuffix("%")
    return text.endswith("%") and number.isdigit() and 0 <= int(number) <= 100


@router.post("/v3/{project_id}/snapshots/{snapshot_id}/action")
def snapshot_action(project_id: str, snapshot_id: str, body: JsonBody, ctx: Ctx) -> Response:
    if not isinstance(body, dict) or len(body) != 1:
        raise errors.Invalid("There is either no action or more than one action in the body.")
    action, inner = next(iter(body.items()))
    row = _snapshot(ctx, snapshot_id, "volume:get_snapshot")
    target = {"project_id": row.project_id}
    if action == "os-reset_status":
        ctx.authorize("volume_extension:snapshot_admin_actions:reset_status", target)
        status = schemas.text(inner if isinstance(inner, dict) else {}, "status")
        if status not in ("available", "error", "creating", "deleting", "error_deleting"):
            raise errors.Invalid(f"Invalid input received: Invalid status {status!r}.")
        volume_service.reset_snapshot_status(ctx, snapshot_id, status)
    elif action == "os-force_delete":
        ctx.authorize("volume_extension:snapshot_admin_actions:force_delete", target)
        volume_service.delete_snapshot(ctx, snapshot_id, force=True)
    elif action == "os-update_snapshot_status":
        ctx.authorize("snapshot_extension:snapshot_actions:update_snapshot_status", target)
        fields: dict[str, Any] = inner if isinstance(inner, dict) else {}
        progress = schemas.text(fields, "progress")
        if progress is not None and not _is_percent(progress):
            raise errors.Invalid(f"Invalid input: progress {progress!r} is not 0% to 100%.")
        status = schemas.required_text(fields, "status")
        volume_service.update_snapshot_status(ctx, snapshot_id, status, progress)
    else:
        raise errors.Invalid(f"Invalid action {action!r}: this cloud does not offer it yet.")
    return _accepted()


# Attachments ----------------------------------------------------------------------------


def _needs(request: Request, version: Version, what: str) -> None:
    if requested_version(request) < version:
        raise errors.NotFound(f"{what} needs microversion {version} or later.")


def _attachment_body(ctx: Ctx, row: Any) -> dict[str, Any]:
    return schemas.attachment_view(row, volume_service.attachment_connection(ctx, row))


def _connector(inner: Mapping[str, Any]) -> dict[str, Any] | None:
    connector = inner.get("connector")
    if connector is not None and not isinstance(connector, dict):
        raise errors.Invalid("Invalid input for field/attribute connector. It is not an object.")
    return connector


@router.post("/v3/{project_id}/attachments")
def create_attachment(request: Request, project_id: str, body: JsonBody, ctx: Ctx) -> Response:
    _needs(request, V(3, 27), "The attachments API")
    inner = schemas.envelope(body, "attachment")
    volume_id = schemas.text(inner, "volume_uuid")
    if not volume_id:
        raise errors.Invalid("Invalid input for field/attribute volume_uuid: it is required.")
    view = _volume(ctx, volume_id, "volume:attachment_create")
    mode = schemas.text(inner, "mode") or "rw"
    if mode not in ("rw", "ro") or (mode == "ro" and requested_version(request) < V(3, 54)):
        raise errors.Invalid(f"Invalid attach mode {mode!r}: use 'rw' (or 'ro' from 3.54).")
    row = volume_service.create_attachment(
        ctx, view.row.id, schemas.text(inner, "instance_uuid"), _connector(inner), mode
    )
    return JSONResponse({"attachment": _attachment_body(ctx, row)})


def _list_attachments(request: Request, ctx: Ctx, detail: bool) -> Response:
    _needs(request, V(3, 27), "The attachments API")
    all_projects = schemas.boolean(request.query_params.get("all_tenants", "false"), "all_tenants")
    rows = volume_service.list_attachments(ctx, all_projects)
    rendered = [
        _attachment_body(ctx, r) if detail else schemas.attachment_view(r, None) for r in rows
    ]
    return JSONResponse({"attachments": rendered})


@router.get("/v3/{project_id}/attachments")
def list_attachments(request: Request, project_id: str, ctx: Ctx) -> Response:
    return _list_attachments(request, ctx, detail=False)


@router.get("/v3/{project_id}/attachments/detail")
def list_attachments_detail(request: Request, project_id: str, ctx: Ctx) -> Response:
    return _list_attachments(request, ctx, detail=True)


@router.get("/v3/{project_id}/attachments/{attachment_id}")
def show_attachment(request: Request, project_id: str, attachment_id: str, ctx: Ctx) -> Response:
    _needs(request, V(3, 27), "The attachments API")
    row = volume_service.get_attachment(ctx, attachment_id)
    _volume(ctx, row.volume_id, "volume:attachment_get")
    return JSONResponse({"attachment": _attachment_body(ctx, row)})


@router.put("/v3/{project_id}/attachments/{attachment_id}")
def update_attachment(
    request: Request, project_id: str, attachment_id: str, body: JsonBody, ctx: Ctx
) -> Response:
    _needs(request, V(3, 27), "The attachments API")
    inner = schemas.envelope(body, "attachment")
    connector = _connector(inner)
    if not connector:
        raise errors.Invalid("Invalid input for field/attribute connector: it is required.")
    found = volume_service.get_attachment(ctx, attachment_id)
    _volume(ctx, found.volume_id, "volume:attachment_update")
    row = volume_service.update_attachment(ctx, attachment_id, connector)
    return JSONResponse({"attachment": _attachment_body(ctx, row)})


@router.post("/v3/{project_id}/attachments/{attachment_id}/action")
def attachment_action(
    request: Request, project_id: str, attachment_id: str, body: JsonBody, ctx: Ctx
) -> Response:
    _needs(request, V(3, 44), "Completing an attachment")
    if not isinstance(body, dict) or list(body) != ["os-complete"]:
        raise errors.Invalid("Invalid action: the attachments API offers 'os-complete'.")
    found = volume_service.get_attachment(ctx, attachment_id)
    _volume(ctx, found.volume_id, "volume:attachment_complete")
    volume_service.complete_attachment(ctx, attachment_id)
    return Response(status_code=204)


@router.delete("/v3/{project_id}/attachments/{attachment_id}")
def delete_attachment(request: Request, project_id: str, attachment_id: str, ctx: Ctx) -> Response:
    _needs(request, V(3, 27), "The attachments API")
    found = volume_service.get_attachment(ctx, attachment_id)
    _volume(ctx, found.volume_id, "volume:attachment_delete")
    volume_service.delete_attachment(ctx, attachment_id)
    return JSONResponse({"attachments": []})


# Quotas, limits, zones, services -------------------------------------------------------


@router.get("/v3/{project_id}/os-quota-sets/{target_id}")
def show_quotas(request: Request, project_id: str, target_id: str, ctx: Ctx) -> Response:
    ctx.authorize("volume_extension:quotas:show", {"project_id": target_id})
    limits = volume_service.quota_limits(ctx, target_id)
    usage = request.query_params.get("usage", "false")
    quota_set: dict[str, Any] = {"id": target_id}
    if schemas.boolean(usage, "usage"):
        used = volume_service.quota_usage(ctx, target_id)
        quota_set |= {
            k: {"limit": v, "in_use": used.get(k, 0), "reserved": 0, "allocated": 0}
            for k, v in limits.items()
        }
    else:
        quota_set |= limits
    return JSONResponse({"quota_set": quota_set})


@router.get("/v3/{project_id}/os-quota-sets/{target_id}/defaults")
def show_default_quotas(project_id: str, target_id: str, ctx: Ctx) -> Response:
    ctx.authorize("volume_extension:quotas:show", {"project_id": target_id})
    return JSONResponse({"quota_set": {"id": target_id, **volume_service.default_limits(ctx)}})


def _quota_class(class_name: str) -> None:
    if class_name != "default":
        raise errors.NotFound(f"Quota class {class_name} could not be found.")


@router.get("/v3/{project_id}/os-quota-class-sets/{class_name}")
def show_quota_class(project_id: str, class_name: str, ctx: Ctx) -> Response:
    ctx.authorize("volume_extension:quota_classes")
    _quota_class(class_name)
    return JSONResponse({"quota_class_set": {"id": class_name,
                                             **volume_service.default_limits(ctx)}})  # fmt: skip


@router.put("/v3/{project_id}/os-quota-class-sets/{class_name}")
def update_quota_class(project_id: str, class_name: str, body: JsonBody, ctx: Ctx) -> Response:
    """The defaults of every project without limits of its own."""
    ctx.authorize("volume_extension:quota_classes")
    _quota_class(class_name)
    inner = schemas.envelope(body, "quota_class_set")
    limits = {k: schemas.integer(inner, k) for k in inner if k not in ("id", "class_name")}
    volume_service.update_quotas(ctx, volume_service.DEFAULT_CLASS,
                                 {k: v for k, v in limits.items() if v is not None})  # fmt: skip
    return JSONResponse({"quota_class_set": volume_service.default_limits(ctx)})


@router.get("/v3/{project_id}/scheduler-stats/get_pools")
def scheduler_pools(request: Request, project_id: str, ctx: Ctx) -> Response:
    """The one pool of this cloud's backend, with its capabilities when `detail`."""
    ctx.authorize("scheduler_extension:scheduler_stats:get_pools")
    name = volume_service.pool_name(ctx)
    pool: dict[str, Any] = {"name": name}
    if schemas.boolean(request.query_params.get("detail", "false"), "detail"):
        pool["capabilities"] = volume_service.pool_capabilities(ctx)
    return JSONResponse({"pools": [pool]})


@router.put("/v3/{project_id}/os-quota-sets/{target_id}")
def update_quotas(project_id: str, target_id: str, body: JsonBody, ctx: Ctx) -> Response:
    ctx.authorize("volume_extension:quotas:update", {"project_id": target_id})
    inner = schemas.envelope(body, "quota_set")
    limits = {k: schemas.integer(inner, k) for k in inner if k not in ("id", "tenant_id")}
    volume_service.update_quotas(ctx, target_id, {k: v for k, v in limits.items() if v is not None})
    found = volume_service.quota_limits(ctx, target_id)
    return JSONResponse({"quota_set": found})


@router.delete("/v3/{project_id}/os-quota-sets/{target_id}")
def delete_quotas(project_id: str, target_id: str, ctx: Ctx) -> Response:
    ctx.authorize("volume_extension:quotas:delete", {"project_id": target_id})
    volume_service.delete_quotas(ctx, target_id)
    return Response(status_code=200)


@router.get("/v3/{project_id}/limits")
def show_limits(project_id: str, ctx: Ctx) -> Response:
    ctx.authorize("limits_extension:used_limits")
    own = ctx.project_id or ""
    limits, used = volume_service.quota_limits(ctx, own), volume_service.quota_usage(ctx, own)
    absolute = {
        "maxTotalVolumes": limits["volumes"], "maxTotalSnapshots": limits["snapshots"],
        "maxTotalVolumeGigabytes": limits["gigabytes"], "maxTotalBackups": limits["backups"],
        "maxTotalBackupGigabytes": limits["backup_gigabytes"],
        "totalVolumesUsed": used["volumes"], "totalGigabytesUsed": used["gigabytes"],
        "totalSnapshotsUsed": used["snapshots"], "totalBackupsUsed": used["backups"],
        "totalBackupGigabytesUsed": used["backup_gigabytes"],
    }  # fmt: skip
    return JSONResponse({"limits": {"rate": [], "absolute": absolute}})


@router.get("/v3/{project_id}/os-availability-zone")
def list_availability_zones(project_id: str, ctx: Ctx) -> Response:
    ctx.authorize("volume_extension:availability_zone_list")
    zone = {"zoneName": volume_service.AVAILABILITY_ZONE, "zoneState": {"available": True}}
    return JSONResponse({"availabilityZoneInfo": [zone]})


@router.get("/v3/{project_id}/os-services")
def list_services(request: Request, project_id: str, ctx: Ctx) -> Response:
    ctx.authorize("volume_extension:services:index")
    params = request.query_params
    found = hosts.services(ctx, params.get("host"), params.get("binary"))
    return JSONResponse({"services": found})


@router.put("/v3/{project_id}/os-services/{action}")
def update_service(project_id: str, action: str, body: JsonBody, ctx: Ctx) -> Response:
    """enable, disable, disable-log-reason (the cinder-volume or cinder-scheduler of a
    host), freeze and thaw (the backend of a host)."""
    fields: dict[str, Any] = body if isinstance(body, dict) else {}
    host = schemas.required_text(fields, "host")
    if action in ("freeze", "thaw"):
        ctx.authorize(f"volume:{action}_host")
        hosts.set_frozen(ctx, host, frozen=action == "freeze")
        return Response(status_code=200)
    if action not in ("enable", "disable", "disable-log-reason"):
        raise errors.NotFound(f"Unknown os-services action {action!r}; use enable, disable, "
                              "disable-log-reason, freeze or thaw.")  # fmt: skip
    ctx.authorize("volume_extension:services:update")
    binary = schemas.required_text(fields, "binary")
    reason = None
    if action == "disable-log-reason":
        reason = schemas.text(fields, "disabled_reason")
        if not reason or not reason.strip() or len(reason) > 255:
            raise errors.Invalid("Invalid input: disabled_reason must be 1 to 255 characters.")
    changed = hosts.set_enabled(ctx, host, binary, enabled=action == "enable", reason=reason)
    return JSONResponse(changed)


@router.get("/v3/{project_id}/os-hosts")
def list_hosts(project_id: str, ctx: Ctx) -> Response:
    ctx.authorize("volume_extension:hosts")
    return JSONResponse({"hosts": hosts.hosts(ctx)})


@router.get("/v3/{project_id}/os-hosts/{host}")
def show_host(project_id: str, host: str, ctx: Ctx) -> Response:
    ctx.authorize("volume_extension:hosts")
    return JSONResponse({"host": hosts.host_usage(ctx, host)})


@router.get("/v3/{project_id}/capabilities/{host}")
def show_capabilities(project_id: str, host: str, ctx: Ctx) -> Response:
    ctx.authorize("volume_extension:capabilities")
    return JSONResponse(hosts.capabilities(ctx, host))


# Group types, groups, group snapshots ---------------------------------------------------


def _group_types_api(request: Request) -> None:
    _needs(request, V(3, 11), "Group types")


def _specs_of(inner: Any) -> dict[str, str]:
    if not isinstance(inner, dict) or not all(
        isinstance(k, str) and 0 < len(k) <= 255 and isinstance(v, str) and len(v) <= 255
        for k, v in inner.items()
    ):
        raise errors.Invalid("Invalid input: group specs map names to strings (255 at most).")
    return dict(inner)


@router.post("/v3/{project_id}/group_types")
def create_group_type(request: Request, project_id: str, body: JsonBody, ctx: Ctx) -> Response:
    _group_types_api(request)
    ctx.authorize("group:group_types:create")
    inner = schemas.envelope(body, "group_type")
    row = groups.create_group_type(
        ctx, schemas.required_text(inner, "name").strip(), schemas.text(inner, "description"),
        schemas.boolean(inner.get("is_public", True), "is_public"),
        _specs_of(inner.get("group_specs") or {}),
    )  # fmt: skip
    return _accepted({"group_type": schemas.group_type_view(row, with_specs=True)})


@router.get("/v3/{project_id}/group_types")
def list_group_types(request: Request, project_id: str, ctx: Ctx) -> Response:
    _group_types_api(request)
    params = request.query_params
    raw = params.get("is_public")
    is_public = None
    if raw is not None and raw.lower() != "none":
        is_public = schemas.boolean(raw, "is_public")
    elif raw is None and not ctx.is_admin:
        is_public = True
    sort = params.get("sort", "")
    rows = groups.list_group_types(ctx, is_public, descending=sort.endswith(":desc"))
    with_specs = ctx.can("group:access_group_types_specs")
    return JSONResponse({"group_types": [schemas.group_type_view(r, with_specs) for r in rows]})


@router.get("/v3/{project_id}/group_types/{type_id}")
def show_group_type(request: Request, project_id: str, type_id: str, ctx: Ctx) -> Response:
    _group_types_api(request)
    if type_id == "default":
        raise errors.NotFound("Default group type could not be found: none is configured.")
    row = groups.get_group_type(ctx, type_id)
    with_specs = ctx.can("group:access_group_types_specs")
    return JSONResponse({"group_type": schemas.group_type_view(row, with_specs)})


@router.put("/v3/{project_id}/group_types/{type_id}")
def update_group_type(
    request: Request, project_id: str, type_id: str, body: JsonBody, ctx: Ctx
) -> Response:
    _group_types_api(request)
    ctx.authorize("group:group_types:update")
    changes = schemas.type_changes(schemas.envelope(body, "group_type"), "Group type")
    row = groups.update_group_type(ctx, type_id, changes)
    return JSONResponse({"group_type": schemas.group_type_view(row, with_specs=True)})


@router.delete("/v3/{project_id}/group_types/{type_id}")
def delete_group_type(request: Request, project_id: str, type_id: str, ctx: Ctx) -> Response:
    _group_types_api(request)
    ctx.authorize("group:group_types:delete")
    groups.delete_group_type(ctx, type_id)
    return _accepted()


@router.post("/v3/{project_id}/group_types/{type_id}/group_specs")
def set_group_specs(
    request: Request, project_id: str, type_id: str, body: JsonBody, ctx: Ctx
) -> Response:
    _group_types_api(request)
    ctx.authorize("group:group_types_specs:create")
    specs = _specs_of(schemas.envelope(body, "group_specs"))
    groups.set_group_specs(ctx, type_id, specs)
    return _accepted({"group_specs": specs})


@router.get("/v3/{project_id}/group_types/{type_id}/group_specs")
def list_group_specs(request: Request, project_id: str, type_id: str, ctx: Ctx) -> Response:
    _group_types_api(request)
    ctx.authorize("group:group_types_specs:get_all")
    return JSONResponse({"group_specs": dict(groups.get_group_type(ctx, type_id).group_specs)})


@router.get("/v3/{project_id}/group_types/{type_id}/group_specs/{key}")
def show_group_spec(
    request: Request, project_id: str, type_id: str, key: str, ctx: Ctx
) -> Response:
    _group_types_api(request)
    ctx.authorize("group:group_types_specs:get")
    specs = groups.get_group_type(ctx, type_id).group_specs
    if key not in specs:
        raise errors.NotFound(f"Group Type {type_id} has no specs with key {key}.")
    return JSONResponse({key: specs[key]})


@router.put("/v3/{project_id}/group_types/{type_id}/group_specs/{key}")
def update_group_spec(
    request: Request, project_id: str, type_id: str, key: str, body: JsonBody, ctx: Ctx
) -> Response:
    _group_types_api(request)
    ctx.authorize("group:group_types_specs:update")
    specs = _specs_of(body)
    if list(specs) != [key]:
        raise errors.Invalid("Request body and URI mismatch: the body must set only the key "
                             "the URI names.")  # fmt: skip
    groups.set_group_specs(ctx, type_id, specs)
    return JSONResponse(specs)


@router.delete("/v3/{project_id}/group_types/{type_id}/group_specs/{key}")
def delete_group_spec(
    request: Request, project_id: str, type_id: str, key: str, ctx: Ctx
) -> Response:
    _group_types_api(request)
    ctx.authorize("group:group_types_specs:delete")
    groups.delete_group_spec(ctx, type_id, key)
    return _accepted()


def _groups_api(request: Request) -> None:
    _needs(request, V(3, 13), "Groups")


@router.post("/v3/{project_id}/groups")
def create_group(request: Request, project_id: str, body: JsonBody, ctx: Ctx) -> Response:
    _groups_api(request)
    ctx.authorize("group:create", {"project_id": ctx.project_id})
    inner = schemas.envelope(body, "group")
    volume_types = inner.get("volume_types")
    if (
        not isinstance(volume_types, list)
        or not volume_types
        or not all(isinstance(t, str) for t in volume_types)
    ):
        raise errors.Invalid("Invalid input: a group needs volume_types, a list of types.")
    row = groups.create_group(
        ctx, schemas.required_text(inner, "group_type"), volume_types,
        schemas.text(inner, "name"), schemas.text(inner, "description"),
        schemas.text(inner, "availability_zone"),
    )  # fmt: skip
    return _accepted({"group": {"id": row.id, "name": row.name or ""}})


@router.post("/v3/{project_id}/groups/action")
def create_group_from_source(
    request: Request, project_id: str, body: JsonBody, ctx: Ctx
) -> Response:
    _needs(request, V(3, 14), "Creating a group from a source")
    ctx.authorize("group:create", {"project_id": ctx.project_id})
    inner = schemas.envelope(body, "create-from-src")
    snapshot_id, source_id = inner.get("group_snapshot_id"), inner.get("source_group_id")
    if bool(snapshot_id) == bool(source_id):
        raise errors.Invalid("Invalid input: name exactly one of group_snapshot_id and "
                             "source_group_id.")  # fmt: skip
    row = groups.create_group_from_source(
        ctx, schemas.text(inner, "group_snapshot_id"), schemas.text(inner, "source_group_id"),
        schemas.text(inner, "name"), schemas.text(inner, "description"),
    )  # fmt: skip
    return _accepted({"group": {"id": row.id, "name": row.name or ""}})


def _list_groups(request: Request, ctx: Ctx, detail: bool) -> Response:
    _groups_api(request)
    ctx.authorize("group:get_all")
    params = request.query_params
    all_projects = schemas.boolean(params.get("all_tenants", "false"), "all_tenants")
    rows = groups.list_groups(ctx, all_projects)
    version = requested_version(request)
    if detail:
        return JSONResponse({"groups": [schemas.group_view(r, version) for r in rows]})
    return JSONResponse({"groups": [{"id": r.id, "name": r.name or ""} for r in rows]})


@router.get("/v3/{project_id}/groups")
def list_groups(request: Request, project_id: str, ctx: Ctx) -> Response:
    return _list_groups(request, ctx, detail=False)


@router.get("/v3/{project_id}/groups/detail")
def list_groups_detail(request: Request, project_id: str, ctx: Ctx) -> Response:
    return _list_groups(request, ctx, detail=True)


@router.get("/v3/{project_id}/groups/{group_id}")
def show_group(request: Request, project_id: str, group_id: str, ctx: Ctx) -> Response:
    _groups_api(request)
    row, volume_ids = groups.get_group(ctx, group_id)
    ctx.authorize("group:get", {"project_id": row.project_id})
    listed = schemas.boolean(request.query_params.get("list_volume", "false"), "list_volume")
    shown = schemas.group_view(row, requested_version(request), volume_ids if listed else None)
    return JSONResponse({"group": shown})


@router.put("/v3/{project_id}/groups/{group_id}")
def update_group(
    request: Request, project_id: str, group_id: str, body: JsonBody, ctx: Ctx
) -> Response:
    _groups_api(request)
    row, _ = groups.get_group(ctx, group_id)
    ctx.authorize("group:update", {"project_id": row.project_id})
    inner = schemas.envelope(body, "group")
    allowed = ("name", "description", "add_volumes", "remove_volumes")
    unexpected = sorted(set(inner) - set(allowed))
    if unexpected or not inner:
        raise errors.Invalid(f"Invalid input: a group update sets {', '.join(allowed)}"
                             + (f"; unexpected {unexpected}." if unexpected else "."))  # fmt: skip
    groups.update_group(ctx, group_id, {k: schemas.text(inner, k) for k in inner})
    return _accepted()


@router.post("/v3/{project_id}/groups/{group_id}/action")
def group_action(
    request: Request, project_id: str, group_id: str, body: JsonBody, ctx: Ctx
) -> Response:
    _groups_api(request)
    if not isinstance(body, dict) or len(body) != 1:
        raise errors.Invalid("There is either no action or more than one action in the body.")
    action, inner = next(iter(body.items()))
    row, _ = groups.get_group(ctx, group_id)
    fields: dict[str, Any] = inner if isinstance(inner, dict) else {}
    if action == "delete":
        ctx.authorize("group:delete", {"project_id": row.project_id})
        with_volumes = schemas.boolean(fields.get("delete-volumes", False), "delete-volumes")
        groups.delete_group(ctx, group_id, with_volumes)
    elif action == "reset_status" and requested_version(request) >= V(3, 20):
        ctx.authorize("group:reset_status", {"project_id": row.project_id})
        groups.reset_group_status(ctx, group_id, _reset_group_status(fields))
    else:
        raise errors.Invalid(f"There is no such action: {action}; use delete or reset_status.")
    return _accepted()


def _reset_group_status(fields: Mapping[str, Any]) -> str:
    status = (schemas.text(fields, "status") or "").lower()
    if status not in groups.RESET_STATUSES:
        raise errors.Invalid(f"Invalid input: status must be one of "
                             f"{', '.join(groups.RESET_STATUSES)}.")  # fmt: skip
    return status


def _group_snapshots_api(request: Request) -> None:
    _needs(request, V(3, 14), "Group snapshots")


@router.post("/v3/{project_id}/group_snapshots")
def create_group_snapshot(request: Request, project_id: str, body: JsonBody, ctx: Ctx) -> Response:
    _group_snapshots_api(request)
    inner = schemas.envelope(body, "group_snapshot")
    group, _ = groups.get_group(ctx, schemas.required_text(inner, "group_id"))
    ctx.authorize("group:create_group_snapshot", {"project_id": group.project_id})
    row = groups.create_group_snapshot(
        ctx, group.id, schemas.text(inner, "name"), schemas.text(inner, "description")
    )
    shown = {"id": row.id, "name": row.name or "", "group_type_id": row.group_type_id}
    return _accepted({"group_snapshot": shown})


def _list_group_snapshots(request: Request, ctx: Ctx, detail: bool) -> Response:
    _group_snapshots_api(request)
    ctx.authorize("group:get_all_group_snapshots")
    params = request.query_params
    all_projects = schemas.boolean(params.get("all_tenants", "false"), "all_tenants")
    rows = groups.list_group_snapshots(ctx, all_projects)
    if detail:
        return JSONResponse({"group_snapshots": [schemas.group_snapshot_view(r) for r in rows]})
    return JSONResponse({"group_snapshots": [{"id": r.id, "name": r.name or ""} for r in rows]})


@router.get("/v3/{project_id}/group_snapshots")
def list_group_snapshots(request: Request, project_id: str, ctx: Ctx) -> Response:
    return _list_group_snapshots(request, ctx, detail=False)


@router.get("/v3/{project_id}/group_snapshots/detail")
def list_group_snapshots_detail(request: Request, project_id: str, ctx: Ctx) -> Response:
    return _list_group_snapshots(request, ctx, detail=True)


@router.get("/v3/{project_id}/group_snapshots/{group_snapshot_id}")
def show_group_snapshot(
    request: Request, project_id: str, group_snapshot_id: str, ctx: Ctx
) -> Response:
    _group_snapshots_api(request)
    row = groups.get_group_snapshot(ctx, group_snapshot_id)
    ctx.authorize("group:get_group_snapshot", {"project_id": row.project_id})
    return JSONResponse({"group_snapshot": schemas.group_snapshot_view(row)})


@router.delete("/v3/{project_id}/group_snapshots/{group_snapshot_id}")
def delete_group_snapshot(
    request: Request, project_id: str, group_snapshot_id: str, ctx: Ctx
) -> Response:
    _group_snapshots_api(request)
    row = groups.get_group_snapshot(ctx, group_snapshot_id)
    ctx.authorize("group:delete_group_snapshot", {"project_id": row.project_id})
    groups.delete_group_snapshot(ctx, group_snapshot_id)
    return _accepted()


@router.post("/v3/{project_id}/group_snapshots/{group_snapshot_id}/action")
def group_snapshot_action(
    request: Request, project_id: str, group_snapshot_id: str, body: JsonBody, ctx: Ctx
) -> Response:
    _needs(request, V(3, 19), "Resetting a group snapshot's status")
    row = groups.get_group_snapshot(ctx, group_snapshot_id)
    if not isinstance(body, dict) or list(body) != ["reset_status"]:
        raise errors.Invalid("There is no such action; a group snapshot takes reset_status.")
    ctx.authorize("group:reset_group_snapshot_status", {"project_id": row.project_id})
    fields = body["reset_status"] if isinstance(body["reset_status"], dict) else {}
    groups.reset_group_snapshot_status(ctx, group_snapshot_id, _reset_group_status(fields))
    return _accepted()


# QoS specs ------------------------------------------------------------------------------


def _qos_answer(request: Request, row: Any) -> dict[str, Any]:
    link = f"{_base(request)}/{row.id}"
    return {"qos_specs": schemas.qos_view(row), "links": [{"rel": "self", "href": link}]}


@router.post("/v3/{project_id}/qos-specs")
def create_qos_specs(request: Request, project_id: str, body: JsonBody, ctx: Ctx) -> Response:
    ctx.authorize("volume_extension:qos_specs_manage:create")
    inner = dict(schemas.envelope(body, "qos_specs"))
    name = (schemas.required_text(inner, "name")).strip()
    consumer = schemas.text(inner, "consumer") or "back-end"
    specs = schemas.metadata({"specs": {k: v for k, v in inner.items()
                                        if k not in ("name", "consumer")}}, "specs")  # fmt: skip
    row = qos.create(ctx, name, consumer, specs or {})
    return JSONResponse(_qos_answer(request, row))


@router.get("/v3/{project_id}/qos-specs")
def list_qos_specs(project_id: str, ctx: Ctx) -> Response:
    ctx.authorize("volume_extension:qos_specs_manage:get_all")
    return JSONResponse({"qos_specs": [schemas.qos_view(r) for r in qos.list_specs(ctx)]})


@router.get("/v3/{project_id}/qos-specs/{specs_id}")
def show_qos_specs(request: Request, project_id: str, specs_id: str, ctx: Ctx) -> Response:
    ctx.authorize("volume_extension:qos_specs_manage:get")
    return JSONResponse(_qos_answer(request, qos.get(ctx, specs_id)))


@router.put("/v3/{project_id}/qos-specs/{specs_id}")
def set_qos_keys(project_id: str, specs_id: str, body: JsonBody, ctx: Ctx) -> Response:
    ctx.authorize("volume_extension:qos_specs_manage:update")
    inner = schemas.envelope(body, "qos_specs")
    bad = [k for k, v in inner.items() if not (v is None or isinstance(v, str)) or len(k) > 255]
    if bad or not inner:
        raise errors.Invalid(f"Invalid input: QoS keys take strings (or null); bad: {bad}.")
    qos.set_keys(ctx, specs_id, inner)
    return JSONResponse({"qos_specs": inner})


@router.put("/v3/{project_id}/qos-specs/{specs_id}/delete_keys")
def delete_qos_keys(project_id: str, specs_id: str, body: JsonBody, ctx: Ctx) -> Response:
    ctx.authorize("volume_extension:qos_specs_manage:delete")
    keys = body.get("keys") if isinstance(body, dict) else None
    if not isinstance(keys, list) or not all(isinstance(k, str) and k for k in keys):
        raise errors.Invalid("Invalid input: delete_keys needs 'keys', a list of key names.")
    qos.delete_keys(ctx, specs_id, keys)
    return _accepted()


@router.delete("/v3/{project_id}/qos-specs/{specs_id}")
def delete_qos_specs(request: Request, project_id: str, specs_id: str, ctx: Ctx) -> Response:
    ctx.authorize("volume_extension:qos_specs_manage:delete")
    force = schemas.boolean(request.query_params.get("force", "false"), "force")
    qos.delete(ctx, specs_id, force)
    return _accepted()


@router.get("/v3/{project_id}/qos-specs/{specs_id}/associations")
def list_qos_associations(project_id: str, specs_id: str, ctx: Ctx) -> Response:
    ctx.authorize("volume_extension:qos_specs_manage:get_all")
    found = [{"association_type": "volume_type", "name": t.name, "id": t.id}
             for t in qos.associations(ctx, specs_id)]  # fmt: skip
    return JSONResponse({"qos_associations": found})


def _vol_type_id(request: Request) -> str:
    type_id = request.query_params.get("vol_type_id")
    if not type_id:
        raise errors.Invalid("Invalid input: name the volume type as ?vol_type_id=<id>.")
    return type_id


@router.get("/v3/{project_id}/qos-specs/{specs_id}/associate")
def associate_qos(request: Request, project_id: str, specs_id: str, ctx: Ctx) -> Response:
    ctx.authorize("volume_extension:qos_specs_manage:update")
    qos.associate(ctx, specs_id, _vol_type_id(request))
    return _accepted()


@router.get("/v3/{project_id}/qos-specs/{specs_id}/disassociate")
def disassociate_qos(request: Request, project_id: str, specs_id: str, ctx: Ctx) -> Response:
    ctx.authorize("volume_extension:qos_specs_manage:update")
    qos.disassociate(ctx, specs_id, _vol_type_id(request))
    return _accepted()


@router.get("/v3/{project_id}/qos-specs/{specs_id}/disassociate_all")
def disassociate_all_qos(project_id: str, specs_id: str, ctx: Ctx) -> Response:
    ctx.authorize("volume_extension:qos_specs_manage:update")
    qos.disassociate(ctx, specs_id, None)
    return _accepted()


# Encryption types -----------------------------------------------------------------------


def _encryption_fields(body: Any, required: bool) -> dict[str, Any]:
    inner = schemas.envelope(body, "encryption")
    fields = {k: inner[k] for k in encryption.FIELDS if k in inner}
    if isinstance(fields.get("key_size"), str) and fields["key_size"].isdigit():
        fields["key_size"] = int(fields["key_size"])
    missing = [k for k in ("provider", "control_location") if required and not fields.get(k)]
    if missing:
        raise errors.Invalid(f"Invalid input: an encryption type needs {', '.join(missing)}.")
    return fields


@router.get("/v3/{project_id}/types/{type_id}/encryption")
def show_encryption(project_id: str, type_id: str, ctx: Ctx) -> Response:
    ctx.authorize("volume_extension:volume_type_encryption:get")
    row = encryption.get(ctx, type_id)
    return JSONResponse(schemas.encryption_view(row) if row else {})


@router.get("/v3/{project_id}/types/{type_id}/encryption/{key}")
def show_encryption_spec(project_id: str, type_id: str, key: str, ctx: Ctx) -> Response:
    ctx.authorize("volume_extension:volume_type_encryption:get")
    row = encryption.get(ctx, type_id)
    shown = schemas.encryption_view(row) if row else {}
    if key not in encryption.FIELDS or shown.get(key) is None:
        raise errors.NotFound(f"Volume type encryption of type {type_id} has no {key}.")
    return JSONResponse({key: shown[key]})


@router.post("/v3/{project_id}/types/{type_id}/encryption")
def create_encryption(project_id: str, type_id: str, body: JsonBody, ctx: Ctx) -> Response:
    ctx.authorize("volume_extension:volume_type_encryption:create")
    row = encryption.create(ctx, type_id, _encryption_fields(body, required=True))
    shown = schemas.encryption_view(row)
    kept = ("volume_type_id", "encryption_id", *encryption.FIELDS)
    return JSONResponse({"encryption": {k: shown[k] for k in kept}})


@router.put("/v3/{project_id}/types/{type_id}/encryption/{encryption_id}")
def update_encryption(
    project_id: str, type_id: str, encryption_id: str, body: JsonBody, ctx: Ctx
) -> Response:
    ctx.authorize("volume_extension:volume_type_encryption:update")
    fields = _encryption_fields(body, required=False)
    encryption.update(ctx, type_id, fields)
    return JSONResponse({"encryption": fields})


@router.delete("/v3/{project_id}/types/{type_id}/encryption/{encryption_id}")
def delete_encryption(project_id: str, type_id: str, encryption_id: str, ctx: Ctx) -> Response:
    ctx.authorize("volume_extension:volume_type_encryption:delete")
    encryption.delete(ctx, type_id)
    return _accepted()


# Volume transfers -----------------------------------------------------------------------


def _add_transfer_routes(base: str, legacy: bool) -> None:
    """The same transfer API under `os-volume-transfer` and (3.55+) `volume-transfers`;
    only the new path takes `no_snapshots`."""
    path = f"/v3/{{project_id}}/{base}"

    def create(request: Request, project_id: str, body: JsonBody, ctx: Ctx) -> Response:
        inner = schemas.envelope(body, "transfer")
        allowed = {"volume_id", "name"} | (set() if legacy else {"no_snapshots"})
        if set(inner) - allowed:
            raise errors.Invalid(f"Invalid input: unexpected {sorted(set(inner) - allowed)}; "
                                 f"a transfer takes {sorted(allowed)}.")  # fmt: skip
        view = _volume(ctx, schemas.required_text(inner, "volume_id"), "volume:create_transfer")
        name = schemas.text(inner, "name")
        no_snapshots = schemas.boolean(inner.get("no_snapshots", False), "no_snapshots")
        row, key = transfers.create_transfer(
            ctx, view.row.id, name.strip() if name else name, no_snapshots
        )
        shown = schemas.transfer_view(row, requested_version(request), _base(request), True, key)
        return _accepted({"transfer": shown})

    def listing(request: Request, ctx: Ctx, detail: bool) -> Response:
        ctx.authorize("volume:get_all_transfers")
        params = request.query_params
        all_projects = schemas.boolean(params.get("all_tenants", "false"), "all_tenants")
        rows = transfers.list_transfers(ctx, all_projects, params.get("name"))
        version, root = requested_version(request), _base(request)
        return JSONResponse({"transfers": [schemas.transfer_view(r, version, root, detail)
                                           for r in rows]})  # fmt: skip

    def list_summary(request: Request, project_id: str, ctx: Ctx) -> Response:
        return listing(request, ctx, detail=False)

    def list_detail(request: Request, project_id: str, ctx: Ctx) -> Response:
        return listing(request, ctx, detail=True)

    def show(request: Request, project_id: str, transfer_id: str, ctx: Ctx) -> Response:
        row = transfers.get_transfer(ctx, transfer_id)
        ctx.authorize("volume:get_transfer", {"project_id": row.project_id})
        shown = schemas.transfer_view(row, requested_version(request), _base(request))
        return JSONResponse({"transfer": shown})

    def delete(project_id: str, transfer_id: str, ctx: Ctx) -> Response:
        row = transfers.get_transfer(ctx, transfer_id)
        ctx.authorize("volume:delete_transfer", {"project_id": row.project_id})
        transfers.delete_transfer(ctx, transfer_id)
        return _accepted()

    def accept(
        request: Request, project_id: str, transfer_id: str, body: JsonBody, ctx: Ctx
    ) -> Response:
        ctx.authorize("volume:accept_transfer", {"project_id": ctx.project_id})
        inner = schemas.envelope(body, "accept")
        key = inner.get("auth_key")
        if not isinstance(key, str | int) or isinstance(key, bool) or str(key) == "":
            raise errors.Invalid("Invalid input: accept needs the transfer's auth_key.")
        row = transfers.accept_transfer(ctx, transfer_id, str(key))
        shown = schemas.transfer_view(row, requested_version(request), _base(request), False)
        return _accepted({"transfer": shown})

    router.add_api_route(path, create, methods=["POST"])
    router.add_api_route(path, list_summary, methods=["GET"])
    router.add_api_route(f"{path}/detail", list_detail, methods=["GET"])
    router.add_api_route(f"{path}/{{transfer_id}}", show, methods=["GET"])
    router.add_api_route(f"{path}/{{transfer_id}}", delete, methods=["DELETE"])
    router.add_api_route(f"{path}/{{transfer_id}}/accept", accept, methods=["POST"])


_add_transfer_routes("os-volume-transfer", legacy=True)
_add_transfer_routes("volume-transfers", legacy=False)


# User messages --------------------------------------------------------------------------


@router.get("/v3/{project_id}/messages")
def list_messages(request: Request, project_id: str, ctx: Ctx) -> Response:
    _needs(request, V(3, 3), "User messages")
    ctx.authorize("message:get_all")
    rows = messages.list_messages(ctx)
    return JSONResponse({"messages": [schemas.message_view(r, _base(request)) for r in rows]})


@router.get("/v3/{project_id}/messages/{message_id}")
def show_message(request: Request, project_id: str, message_id: str, ctx: Ctx) -> Response:
    _needs(request, V(3, 3), "User messages")
    row = messages.get_message(ctx, message_id)
    ctx.authorize("message:get", {"project_id": row.project_id})
    return JSONResponse({"message": schemas.message_view(row, _base(request))})


@router.delete("/v3/{project_id}/messages/{message_id}")
def delete_message(request: Request, project_id: str, message_id: str, ctx: Ctx) -> Response:
    _needs(request, V(3, 3), "User messages")
    row = messages.get_message(ctx, message_id)
    ctx.authorize("message:delete", {"project_id": row.project_id})
    messages.delete_message(ctx, message_id)
    return Response(status_code=204)


@router.get("/v3/{project_id}/extensions")
def list_extensions(project_id: str, ctx: Ctx) -> Response:
    return JSONResponse({"extensions": []})


def create_app() -> ASGIApp:
    app = app_mod.service_app(router, render_error, redirect_slashes=False)
    return MicroversionMiddleware(app, VERSIONS, render_error)


# Backups ---------------------------------------------------------------------------------


def _backup(ctx: Ctx, backup_id: str, rule: str) -> tuple[Any, bool]:
    row, has_dependents = backups.get_backup(ctx, backup_id)
    ctx.authorize(rule, {"project_id": row.project_id})
    return row, has_dependents


def _backup_body(request: Request, ctx: Ctx, row: Any, has_dependents: bool) -> dict[str, Any]:
    admin = ctx.can("backup:backup_project_attribute", {"project_id": row.project_id})
    return schemas.backup_view(row, has_dependents, requested_version(request), admin,
                               _base(request))  # fmt: skip


def _list_backups(request: Request, ctx: Ctx, detail: bool) -> Response:
    ctx.authorize("backup:get_all")
    params = request.query_params
    all_projects = schemas.boolean(params.get("all_tenants", "false"), "all_tenants")
    filters = {k: params[k] for k in ("name", "status", "volume_id") if k in params}
    limit = pagination.parse_limit(params.get("limit"), MAX_LIMIT)
    offset = schemas.integer(params, "offset") or 0
    rows, with_dependents = backups.list_backups(
        ctx, all_projects, filters, params.get("marker"), limit, offset
    )
    if detail:
        shown = [_backup_body(request, ctx, r, r.id in with_dependents) for r in rows]
    else:
        shown = [schemas.backup_summary(r, _base(request)) for r in rows]
    return JSONResponse({"backups": shown})


@router.get("/v3/{project_id}/backups")
def list_backups(request: Request, project_id: str, ctx: Ctx) -> Response:
    return _list_backups(request, ctx, detail=False)


@router.get("/v3/{project_id}/backups/detail")
def list_backups_detail(request: Request, project_id: str, ctx: Ctx) -> Response:
    return _list_backups(request, ctx, detail=True)


@router.post("/v3/{project_id}/backups")
def create_backup(request: Request, project_id: str, body: JsonBody, ctx: Ctx) -> Response:
    inner = schemas.envelope(body, "backup")
    view = _volume(ctx, schemas.required_text(inner, "volume_id"), "backup:create")
    version = requested_version(request)
    row = backups.create_backup(ctx, backups.BackupRequest(
        volume_id=view.row.id, name=schemas.text(inner, "name"),
        description=schemas.text(inner, "description"),
        container=schemas.text(inner, "container"),
        incremental=schemas.boolean(inner.get("incremental") or False, "incremental"),
        force=schemas.boolean(inner.get("force") or False, "force"),
        snapshot_id=schemas.text(inner, "snapshot_id"),
        metadata=schemas.metadata(inner) if version >= V(3, 43) else None,
    ))  # fmt: skip
    return _accepted({"backup": schemas.backup_summary(row, _base(request))})


@router.get("/v3/{project_id}/backups/{backup_id}")
def show_backup(request: Request, project_id: str, backup_id: str, ctx: Ctx) -> Response:
    row, has_dependents = _backup(ctx, backup_id, "backup:get")
    return JSONResponse({"backup": _backup_body(request, ctx, row, has_dependents)})


@router.put("/v3/{project_id}/backups/{backup_id}")
def update_backup(
    request: Request, project_id: str, backup_id: str, body: JsonBody, ctx: Ctx
) -> Response:
    _needs(request, V(3, 9), "Updating a backup")
    _backup(ctx, backup_id, "backup:update")
    inner = schemas.envelope(body, "backup")
    changes: dict[str, Any] = {
        f: schemas.text(inner, f) for f in ("name", "description") if f in inner
    }
    if "metadata" in inner and requested_version(request) >= V(3, 43):
        changes["metadata"] = schemas.metadata(inner)
    if not changes:
        raise errors.Invalid("Invalid input: the update names no name, description or metadata.")
    row = backups.update_backup(ctx, backup_id, changes)
    return JSONResponse({"backup": schemas.backup_summary(row, _base(request))})


@router.delete("/v3/{project_id}/backups/{backup_id}")
def delete_backup(request: Request, project_id: str, backup_id: str, ctx: Ctx) -> Response:
    row, _ = _backup(ctx, backup_id, "backup:delete")
    force = schemas.boolean(request.query_params.get("force", "false"), "force")
    if force:
        ctx.authorize("volume_extension:backup_admin_actions:force_delete",
                      {"project_id": row.project_id})  # fmt: skip
    backups.delete_backup(ctx, backup_id, force)
    return _accepted()


@router.post("/v3/{project_id}/backups/{backup_id}/restore")
def restore_backup(project_id: str, backup_id: str, body: JsonBody, ctx: Ctx) -> Response:
    _backup(ctx, backup_id, "backup:restore")
    if not isinstance(body, dict) or not isinstance(body.get("restore", {}), dict | None):
        raise errors.Invalid("Missing required element 'restore' in request body.")
    inner = body.get("restore") or {}
    volume_id = schemas.text(inner, "volume_id")
    if volume_id is not None:
        _volume(ctx, volume_id, "volume:update")
    result = backups.restore_backup(ctx, backup_id, volume_id, schemas.text(inner, "name"))
    return _accepted({"restore": {
        "backup_id": result.backup_id, "volume_id": result.volume_id,
        "volume_name": result.volume_name,
    }})  # fmt: skip


@router.post("/v3/{project_id}/backups/{backup_id}/action")
def backup_action(project_id: str, backup_id: str, body: JsonBody, ctx: Ctx) -> Response:
    if not isinstance(body, dict) or len(body) != 1:
        raise errors.Invalid("There is either no action or more than one action in the body.")
    action, inner = next(iter(body.items()))
    row, _ = _backup(ctx, backup_id, "backup:get")
    target = {"project_id": row.project_id}
    if action == "os-reset_status":
        ctx.authorize("volume_extension:backup_admin_actions:reset_status", target)
        status = inner.get("status") if isinstance(inner, dict) else None
        backups.reset_status(ctx, backup_id, str(status))
    elif action == "os-force_delete":
        ctx.authorize("volume_extension:backup_admin_actions:force_delete", target)
        backups.delete_backup(ctx, backup_id, force=True)
    else:
        raise errors.Invalid(f"Invalid action {action!r} for a backup.")
    return _accepted()
