"""Assembles the one ASGI app: every service mounted at its path prefix.

Also owns what every request shares: the request id, the runtime (settings,
database, policy, token validator) in the ASGI scope, and the mapping of
domain exceptions to each service's upstream error body.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from pocketstack.core import errors
from pocketstack.core import runtime as runtime_mod

LOG = logging.getLogger(__name__)

# Renders a domain error as a service's upstream body; the ASGI scope carries the
# request id and, for microversioned services, the negotiated version.
ErrorRenderer = Callable[[errors.PocketstackError, Scope], dict[str, Any]]


@dataclass(frozen=True, slots=True)
class MountedService:
    """A service's ASGI app and the prefix it answers under (`/identity`)."""

    name: str
    prefix: str
    app: ASGIApp
    # The service's own name for the request id header besides x-openstack-request-id
    # (Nova answers with x-compute-request-id too, and clients read it).
    request_id_header: str | None = None


class RootApp:
    """Routes by prefix, tags each request with an id and the runtime."""

    def __init__(
        self,
        runtime: runtime_mod.Runtime,
        services: Sequence[MountedService],
        at_root: str | None = None,
    ) -> None:
        """`at_root` names a service that also answers every path no prefix claims, as a
        standalone deployment of it would (e.g. placement at `/`)."""
        self.runtime = runtime
        self.services = sorted(services, key=lambda s: len(s.prefix), reverse=True)
        self.at_root = next((s for s in services if s.name == at_root), None)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        request_id = f"req-{uuid.uuid4()}"
        scope["pocketstack.runtime"] = self.runtime
        scope["pocketstack.request_id"] = request_id

        def sender(extra_header: str | None) -> Send:
            async def send_with_id(message: Message) -> None:
                if message["type"] == "http.response.start":
                    headers = list(message.get("headers", []))
                    headers.append((b"x-openstack-request-id", request_id.encode()))
                    if extra_header is not None:
                        headers.append((extra_header.encode(), request_id.encode()))
                    message["headers"] = headers
                await send(message)

            return send_with_id

        send_with_id = sender(None)
        path: str = scope["path"]
        for service in self.services:
            if path == service.prefix or path.startswith(service.prefix + "/"):
                child = dict(scope)
                child["root_path"] = scope.get("root_path", "") + service.prefix
                child["path"] = path if path != service.prefix else path + "/"
                await service.app(child, receive, sender(service.request_id_header))
                return
        if self.at_root is not None:
            await self.at_root.app(dict(scope), receive, send_with_id)
            return
        response = JSONResponse(
            {"error": {"code": 404, "title": "Not Found", "message": f"No service at {path}"}},
            status_code=404,
        )
        await response(scope, receive, send_with_id)

    @staticmethod
    async def _lifespan(receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return


def runtime_of(request: Request) -> runtime_mod.Runtime:
    runtime: runtime_mod.Runtime = request.scope["pocketstack.runtime"]
    return runtime


def request_id_of(request: Request) -> str:
    return str(request.scope.get("pocketstack.request_id", ""))


def _field_path(loc: Sequence[Any]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    return "/".join(parts) or "body"


def describe_validation_error(exc: RequestValidationError) -> str:
    """One sentence naming the first bad field, as upstream's jsonschema messages do."""
    first = exc.errors()[0]
    kind = first.get("type", "")
    if kind == "json_invalid":
        return "Malformed request body: the body is not valid JSON."
    field = _field_path(first.get("loc", ()))
    if kind == "missing":
        name = field.rsplit("/", 1)[-1]
        return f"Invalid input for field '{field}': '{name}' is a required property."
    if kind == "extra_forbidden":
        return f"Invalid input for field '{field}': additional properties are not allowed."
    return f"Invalid input for field '{field}': {first.get('msg', 'invalid value')}."


def error_response(exc: errors.PocketstackError, render: ErrorRenderer, scope: Scope) -> Response:
    headers: dict[str, str] = {}
    if isinstance(exc, errors.Unauthorized):
        headers["WWW-Authenticate"] = 'Keystone uri=""'
    return JSONResponse(render(exc, scope), status_code=exc.status, headers=headers)


def service_app(
    router: APIRouter,
    render: ErrorRenderer,
    describe: Callable[[RequestValidationError], str] = describe_validation_error,
    redirect_slashes: bool = True,
) -> FastAPI:
    """A service's FastAPI app serving `router`'s routes, errors in the service's shape;
    `redirect_slashes=False` for services whose upstream answers 404 to a trailing slash.

    The routes are the app's own rather than an included router: FastAPI matches an
    included router through a layer of per-route context objects on every request, which
    cost a claim about as much as its database work."""
    app = FastAPI(
        routes=router.routes,
        openapi_url=None,
        docs_url=None,
        redoc_url=None,
        redirect_slashes=redirect_slashes,
    )
    install_error_handlers(app, render, describe)
    return app


def install_error_handlers(
    app: FastAPI,
    render: ErrorRenderer,
    describe: Callable[[RequestValidationError], str] = describe_validation_error,
) -> None:
    """Map domain exceptions, validation errors and routing misses to one body shape;
    `describe` words body validation errors as the service's upstream does."""

    def respond(exc: errors.PocketstackError, request: Request) -> Response:
        return error_response(exc, render, request.scope)

    async def on_domain_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, errors.PocketstackError)
        return respond(exc, request)

    async def on_validation_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        return respond(errors.Invalid(describe(exc)), request)

    async def on_http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        by_status: dict[int, type[errors.PocketstackError]] = {
            404: errors.NotFound,
            405: errors.MethodNotAllowed,
            400: errors.Invalid,
        }
        cls = by_status.get(exc.status_code, errors.PocketstackError)
        message = "The resource could not be found." if exc.status_code == 404 else str(exc.detail)
        error = cls(message)
        error.status = exc.status_code
        response = respond(error, request)
        response.headers.update(exc.headers or {})
        return response

    async def on_unexpected(request: Request, exc: Exception) -> Response:
        LOG.exception("unexpected error serving %s %s", request.method, request.url.path)
        return respond(
            errors.PocketstackError("An unexpected error prevented the request."), request
        )

    app.add_exception_handler(errors.PocketstackError, on_domain_error)
    app.add_exception_handler(RequestValidationError, on_validation_error)
    app.add_exception_handler(StarletteHTTPException, on_http_error)
    app.add_exception_handler(Exception, on_unexpected)
