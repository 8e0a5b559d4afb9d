"""Image HTTP routes at /image: the Glance v2 API.

Bodies are checked by hand against Glance's image schema (`schemas.py`):
Glance's clients send JSON-patch documents and free-form properties that a
pydantic model would not describe. Errors render as Glance's JSON error body.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlencode

from fastapi import Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.concurrency import run_in_threadpool
from starlette.types import Scope

from pocketstack.core import app as app_mod
from pocketstack.core import errors, routing
from pocketstack.core.auth import Ctx
from pocketstack.image import schemas
from pocketstack.image import service as image_service

router = routing.Router()
PATCH_MEDIA_TYPES = (
    "application/openstack-images-v2.1-json-patch",
    "application/openstack-images-v2.0-json-patch",
)
DEFAULT_LIMIT = 25
MAX_LIMIT = 1000


def render_error(exc: errors.PocketstackError, scope: Scope) -> dict[str, Any]:
    """Glance's (webob's) JSON error body."""
    return {
        "code": f"{exc.status} {exc.title}",
        "title": exc.title,
        "message": exc.message,
    }


def _root(request: Request) -> str:
    return str(request.base_url).rstrip("/")


# Versions ----------------------------------------------------------------------------


def _versions(request: Request) -> dict[str, Any]:
    link = f"{_root(request)}/v2/"
    return {
        "versions": [
            {"id": version, "status": status, "links": [{"rel": "self", "href": link}]}
            for version, status in schemas.VERSIONS
        ]
    }


@router.get("/")
def list_versions_at_root(request: Request) -> Response:
    return JSONResponse(_versions(request), status_code=300)


@router.get("/versions")
def list_versions(request: Request) -> Response:
    return JSONResponse(_versions(request))


# Images ------------------------------------------------------------------------------


def _media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


async def _json(request: Request, media_types: tuple[str, ...] = ("application/json",)) -> Any:
    media_type = _media_type(request)
    if media_type not in media_types:
        detail = (
            f"Image PATCH expects Content-Type one of: {', '.join(reversed(media_types))}"
            if media_types == PATCH_MEDIA_TYPES
            else f"Invalid content type {media_type or 'None'}"
        )
        raise errors.PocketstackError.with_status(415, "Unsupported Media Type", detail)
    raw = await request.body()
    if not raw:
        raise errors.Invalid("Body expected in request.")
    try:
        return json.loads(raw)
    except ValueError:
        raise errors.Invalid("Malformed JSON in request body.") from None


@router.post("/v2/images")
async def create_image(request: Request, ctx: Ctx) -> Response:
    body = await _json(request)
    spec = schemas.new_image(body)
    view = await run_in_threadpool(_create, ctx, spec)
    document = schemas.image_view(view)
    return JSONResponse(
        document, status_code=201, headers={"location": f"{_root(request)}{document['self']}"}
    )


def _create(ctx: Ctx, spec: image_service.NewImage) -> image_service.ImageView:
    ctx.authorize("add_image", {"owner": spec.owner or ctx.project_id})
    return image_service.create_image(ctx, spec)


@router.get("/v2/images")
def list_images(request: Request, ctx: Ctx) -> Response:
    ctx.authorize("get_images")
    params = request.query_params
    query = schemas.image_filter(params)
    limit = schemas.limit(params, DEFAULT_LIMIT, MAX_LIMIT)
    views = image_service.list_images(ctx, query, schemas.sort(params), params.get("marker"), limit)
    others = [(k, v) for k, v in params.multi_items() if k != "marker"]
    document: dict[str, Any] = {
        "images": [schemas.image_view(v) for v in views],
        "first": "/v2/images" + (f"?{urlencode(others)}" if others else ""),
        "schema": "/v2/schemas/images",
    }
    if views and len(views) == limit:
        document["next"] = "/v2/images?" + urlencode([*others, ("marker", views[-1].row.id)])
    return JSONResponse(document)


@router.get("/v2/images/{image_id}")
def show_image(image_id: str, ctx: Ctx) -> Response:
    ctx.authorize("get_image")
    return JSONResponse(schemas.image_view(image_service.get_image(ctx, image_id)))


@router.patch("/v2/images/{image_id}")
async def update_image(request: Request, image_id: str, ctx: Ctx) -> Response:
    body = await _json(request, PATCH_MEDIA_TYPES)
    changes = schemas.patch_changes(body, _media_type(request))
    view = await run_in_threadpool(image_service.update_image, ctx, image_id, changes)
    return JSONResponse(schemas.image_view(view))


@router.delete("/v2/images/{image_id}")
def delete_image(image_id: str, ctx: Ctx) -> Response:
    image_service.delete_image(ctx, image_id)
    return Response(status_code=204)


@router.post("/v2/images/{image_id}/actions/deactivate")
def deactivate_image(image_id: str, ctx: Ctx) -> Response:
    image_service.set_active(ctx, image_id, active=False)
    return Response(status_code=204)


@router.post("/v2/images/{image_id}/actions/reactivate")
def reactivate_image(image_id: str, ctx: Ctx) -> Response:
    image_service.set_active(ctx, image_id, active=True)
    return Response(status_code=204)


@router.put("/v2/images/{image_id}/tags/{tag}")
def add_tag(image_id: str, tag: str, ctx: Ctx) -> Response:
    image_service.add_tag(ctx, image_id, schemas.tag(tag))
    return Response(status_code=204)


@router.delete("/v2/images/{image_id}/tags/{tag}")
def delete_tag(image_id: str, tag: str, ctx: Ctx) -> Response:
    image_service.delete_tag(ctx, image_id, tag)
    return Response(status_code=204)


# Data --------------------------------------------------------------------------------


@router.put("/v2/images/{image_id}/file")
async def upload_image(request: Request, image_id: str, ctx: Ctx) -> Response:
    media_type = _media_type(request)
    if media_type != "application/octet-stream":
        raise errors.PocketstackError.with_status(
            415, "Unsupported Media Type", f"Invalid content type {media_type or 'None'}"
        )
    await image_service.upload(ctx, image_id, request.stream())
    return Response(status_code=204)


@router.get("/v2/images/{image_id}/file")
def download_image(image_id: str, ctx: Ctx) -> Response:
    view, data = image_service.image_data(ctx, image_id)
    if data is None:
        return Response(status_code=204)
    headers = {"content-length": str(view.row.size)}
    if view.row.checksum:
        headers["content-md5"] = view.row.checksum
    return StreamingResponse(data, media_type="application/octet-stream", headers=headers)


# Members -----------------------------------------------------------------------------


@router.post("/v2/images/{image_id}/members")
async def add_member(request: Request, image_id: str, ctx: Ctx) -> Response:
    member = schemas.member_id(await _json(request))
    view = await run_in_threadpool(image_service.add_member, ctx, image_id, member)
    return JSONResponse(schemas.member_view(view))


@router.get("/v2/images/{image_id}/members")
def list_members(image_id: str, ctx: Ctx) -> Response:
    members = image_service.list_members(ctx, image_id)
    return JSONResponse(
        {"members": [schemas.member_view(m) for m in members], "schema": "/v2/schemas/members"}
    )


@router.get("/v2/images/{image_id}/members/{member_id}")
def show_member(image_id: str, member_id: str, ctx: Ctx) -> Response:
    return JSONResponse(schemas.member_view(image_service.get_member(ctx, image_id, member_id)))


@router.put("/v2/images/{image_id}/members/{member_id}")
async def update_member(request: Request, image_id: str, member_id: str, ctx: Ctx) -> Response:
    status = schemas.member_status(await _json(request))
    view = await run_in_threadpool(image_service.update_member, ctx, image_id, member_id, status)
    return JSONResponse(schemas.member_view(view))


@router.delete("/v2/images/{image_id}/members/{member_id}")
def delete_member(image_id: str, member_id: str, ctx: Ctx) -> Response:
    image_service.delete_member(ctx, image_id, member_id)
    return Response(status_code=204)


# Discovery ---------------------------------------------------------------------------


@router.get("/v2/info/import")
def import_info(ctx: Ctx) -> Response:
    """No interoperable import methods: images are uploaded with PUT .../file."""
    return JSONResponse(
        {
            "import-methods": {
                "description": "Import methods available.",
                "type": "array",
                "value": [],
            }
        }
    )


@router.get("/v2/info/stores")
def stores_info(ctx: Ctx) -> Response:
    raise errors.NotFound("Multi backend is not supported at this site.")


# Schemas -----------------------------------------------------------------------------


@router.get("/v2/schemas/{name}")
def show_schema(name: str, ctx: Ctx) -> Response:
    document = schemas.SCHEMA_DOCUMENTS.get(name)
    if document is None:
        raise errors.NotFound("The resource could not be found.")
    return JSONResponse(document)


def create_app() -> Any:
    """The image ASGI app, mounted at /image by core.app."""
    return app_mod.service_app(router, render_error, redirect_slashes=False)
