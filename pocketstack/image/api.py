"""Image HTTP routes at /image: the Glance v2 API.

Bodies are checked by hand against Glance's image schema (`schemas.py`):
Glance's clients send JSON-patch documents and free-form properties that a
pydantic model would not describe. The metadata definitions catalog
(`/v2/metadefs`) is checked against its own schema documents
(`metadef_schemas.py`). Errors render as Glance's JSON error body.
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
from pocketstack.image import metadef_schemas, schemas
from pocketstack.image import metadefs as metadef_service
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


# Metadata definitions ----------------------------------------------------------------

NAMESPACE = "/v2/metadefs/namespaces/{namespace}"


@router.get("/v2/metadefs/namespaces")
def list_namespaces(request: Request, ctx: Ctx) -> Response:
    params = request.query_params
    key, descending = metadef_schemas.namespace_sort(params)
    limit = schemas.limit(params, DEFAULT_LIMIT, MAX_LIMIT)
    views = metadef_service.list_namespaces(
        ctx, metadef_schemas.namespace_filter(params), key, descending, params.get("marker"), limit
    )
    others = [(k, v) for k, v in params.multi_items() if k != "marker"]
    path = metadef_schemas.NAMESPACES_PATH
    document: dict[str, Any] = {
        "namespaces": [metadef_schemas.namespace_view(v) for v in views],
        "first": path + (f"?{urlencode(others)}" if others else ""),
        "schema": "/v2/schemas/metadefs/namespaces",
    }
    if views and len(views) == limit:
        document["next"] = f"{path}?" + urlencode([*others, ("marker", views[-1].namespace)])
    return JSONResponse(document)


@router.post("/v2/metadefs/namespaces")
async def create_namespace(request: Request, ctx: Ctx) -> Response:
    spec = metadef_schemas.new_namespace(await _json(request))
    view = await run_in_threadpool(metadef_service.create_namespace, ctx, spec)
    document = metadef_schemas.namespace_view(view)
    return JSONResponse(
        document, status_code=201, headers={"location": f"{_root(request)}{document['self']}"}
    )


@router.get(NAMESPACE)
def show_namespace(request: Request, namespace: str, ctx: Ctx) -> Response:
    resource_type = request.query_params.get("resource_type")
    view = metadef_service.get_namespace(ctx, namespace, resource_type)
    return JSONResponse(metadef_schemas.namespace_view(view))


@router.put(NAMESPACE)
async def update_namespace(request: Request, namespace: str, ctx: Ctx) -> Response:
    spec = metadef_schemas.new_namespace(await _json(request))
    view = await run_in_threadpool(metadef_service.update_namespace, ctx, namespace, spec)
    return JSONResponse(metadef_schemas.namespace_view(view))


@router.delete(NAMESPACE)
def delete_namespace(namespace: str, ctx: Ctx) -> Response:
    metadef_service.delete_namespace(ctx, namespace)
    return Response(status_code=204)


@router.get("/v2/metadefs/resource_types")
def list_resource_types(ctx: Ctx) -> Response:
    views = metadef_service.list_resource_types(ctx)
    return JSONResponse({"resource_types": [metadef_schemas.resource_type_view(v) for v in views]})


@router.get(f"{NAMESPACE}/resource_types")
def list_resource_type_associations(namespace: str, ctx: Ctx) -> Response:
    views = metadef_service.list_associations(ctx, namespace)
    return JSONResponse(
        {"resource_type_associations": [metadef_schemas.association_view(v) for v in views]}
    )


@router.post(f"{NAMESPACE}/resource_types")
async def create_resource_type_association(request: Request, namespace: str, ctx: Ctx) -> Response:
    spec = metadef_schemas.new_association(await _json(request))
    view = await run_in_threadpool(metadef_service.create_association, ctx, namespace, spec)
    return JSONResponse(metadef_schemas.association_view(view), status_code=201)


@router.delete(f"{NAMESPACE}/resource_types/{{resource_type}}")
def delete_resource_type_association(namespace: str, resource_type: str, ctx: Ctx) -> Response:
    metadef_service.delete_association(ctx, namespace, resource_type)
    return Response(status_code=204)


@router.get(f"{NAMESPACE}/objects")
def list_metadef_objects(namespace: str, ctx: Ctx) -> Response:
    views = metadef_service.list_objects(ctx, namespace)
    return JSONResponse(
        {
            "objects": [metadef_schemas.object_view(v) for v in views],
            "schema": "/v2/schemas/metadefs/objects",
        }
    )


@router.post(f"{NAMESPACE}/objects")
async def create_metadef_object(request: Request, namespace: str, ctx: Ctx) -> Response:
    spec = metadef_schemas.new_object(await _json(request))
    view = await run_in_threadpool(metadef_service.create_object, ctx, namespace, spec)
    return JSONResponse(metadef_schemas.object_view(view), status_code=201)


@router.delete(f"{NAMESPACE}/objects")
def delete_metadef_objects(namespace: str, ctx: Ctx) -> Response:
    metadef_service.delete_namespace_contents(ctx, namespace, "objects")
    return Response(status_code=204)


@router.get(f"{NAMESPACE}/objects/{{name}}")
def show_metadef_object(namespace: str, name: str, ctx: Ctx) -> Response:
    return JSONResponse(
        metadef_schemas.object_view(metadef_service.get_object(ctx, namespace, name))
    )


@router.put(f"{NAMESPACE}/objects/{{name}}")
async def update_metadef_object(request: Request, namespace: str, name: str, ctx: Ctx) -> Response:
    spec = metadef_schemas.new_object(await _json(request))
    view = await run_in_threadpool(metadef_service.update_object, ctx, namespace, name, spec)
    return JSONResponse(metadef_schemas.object_view(view))


@router.delete(f"{NAMESPACE}/objects/{{name}}")
def delete_metadef_object(namespace: str, name: str, ctx: Ctx) -> Response:
    metadef_service.delete_object(ctx, namespace, name)
    return Response(status_code=204)


@router.get(f"{NAMESPACE}/properties")
def list_metadef_properties(namespace: str, ctx: Ctx) -> Response:
    views = metadef_service.list_properties(ctx, namespace)
    return JSONResponse({"properties": {v.name: dict(v.schema) for v in views}})


@router.post(f"{NAMESPACE}/properties")
async def create_metadef_property(request: Request, namespace: str, ctx: Ctx) -> Response:
    name, schema = metadef_schemas.new_property(await _json(request))
    view = await run_in_threadpool(metadef_service.create_property, ctx, namespace, name, schema)
    return JSONResponse(metadef_schemas.property_view(view), status_code=201)


@router.delete(f"{NAMESPACE}/properties")
def delete_metadef_properties(namespace: str, ctx: Ctx) -> Response:
    metadef_service.delete_namespace_contents(ctx, namespace, "properties")
    return Response(status_code=204)


@router.get(f"{NAMESPACE}/properties/{{name}}")
def show_metadef_property(request: Request, namespace: str, name: str, ctx: Ctx) -> Response:
    resource_type = request.query_params.get("resource_type")
    view = metadef_service.get_property(ctx, namespace, name, resource_type)
    return JSONResponse(metadef_schemas.property_view(view))


@router.put(f"{NAMESPACE}/properties/{{name}}")
async def update_metadef_property(
    request: Request, namespace: str, name: str, ctx: Ctx
) -> Response:
    new_name, schema = metadef_schemas.new_property(await _json(request))
    view = await run_in_threadpool(
        metadef_service.update_property, ctx, namespace, name, new_name, schema
    )
    return JSONResponse(metadef_schemas.property_view(view))


@router.delete(f"{NAMESPACE}/properties/{{name}}")
def delete_metadef_property(namespace: str, name: str, ctx: Ctx) -> Response:
    metadef_service.delete_property(ctx, namespace, name)
    return Response(status_code=204)


@router.get(f"{NAMESPACE}/tags")
def list_metadef_tags(namespace: str, ctx: Ctx) -> Response:
    return JSONResponse(metadef_schemas.tag_names(metadef_service.list_tags(ctx, namespace)))


@router.post(f"{NAMESPACE}/tags")
async def create_metadef_tags(request: Request, namespace: str, ctx: Ctx) -> Response:
    names = metadef_schemas.new_tags(await _json(request))
    append = request.headers.get("x-openstack-append", "").strip().lower() in (
        "1",
        "t",
        "true",
        "on",
        "y",
        "yes",
    )
    views = await run_in_threadpool(metadef_service.create_tags, ctx, namespace, names, append)
    return JSONResponse(metadef_schemas.tag_names(views), status_code=201)


@router.delete(f"{NAMESPACE}/tags")
def delete_metadef_tags(namespace: str, ctx: Ctx) -> Response:
    metadef_service.delete_namespace_contents(ctx, namespace, "tags")
    return Response(status_code=204)


@router.post(f"{NAMESPACE}/tags/{{name}}")
def create_metadef_tag(namespace: str, name: str, ctx: Ctx) -> Response:
    view = metadef_service.create_tag(ctx, namespace, metadef_schemas.tag_name(name))
    return JSONResponse(metadef_schemas.tag_view(view), status_code=201)


@router.get(f"{NAMESPACE}/tags/{{name}}")
def show_metadef_tag(namespace: str, name: str, ctx: Ctx) -> Response:
    return JSONResponse(metadef_schemas.tag_view(metadef_service.get_tag(ctx, namespace, name)))


@router.put(f"{NAMESPACE}/tags/{{name}}")
async def update_metadef_tag(request: Request, namespace: str, name: str, ctx: Ctx) -> Response:
    new_name = metadef_schemas.tag_update(await _json(request))
    view = await run_in_threadpool(metadef_service.update_tag, ctx, namespace, name, new_name)
    return JSONResponse(metadef_schemas.tag_view(view))


@router.delete(f"{NAMESPACE}/tags/{{name}}")
def delete_metadef_tag(namespace: str, name: str, ctx: Ctx) -> Response:
    metadef_service.delete_tag(ctx, namespace, name)
    return Response(status_code=204)


# Schemas -----------------------------------------------------------------------------


@router.get("/v2/schemas/{name}")
def show_schema(name: str, ctx: Ctx) -> Response:
    document = schemas.SCHEMA_DOCUMENTS.get(name)
    if document is None:
        raise errors.NotFound("The resource could not be found.")
    return JSONResponse(document)


@router.get("/v2/schemas/metadefs/{name}")
def show_metadef_schema(name: str, ctx: Ctx) -> Response:
    document = metadef_schemas.SCHEMA_DOCUMENTS.get(name)
    if document is None:
        raise errors.NotFound("The resource could not be found.")
    return JSONResponse(document)


def create_app() -> Any:
    """The image ASGI app, mounted at /image by core.app."""
    return app_mod.service_app(router, render_error, redirect_slashes=False)
