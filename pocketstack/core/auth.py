"""The auth layer every service shares: `X-Auth-Token` in, RequestContext out.

Handlers declare `ctx: Ctx` to require a valid token (401 otherwise) or
`ctx: OptionalCtx` where anonymous callers are allowed (version documents,
token issue).

`pocketstack up --auth noauth` (loopback only, for upstream test suites)
trusts the token instead, as upstream's `noauth2` test middleware does:
`X-Auth-Token: user[:project]`, roles from `X-Roles`, else `admin` for the
user named admin; `OpenStack-System-Scope` makes it system-scoped.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import Depends, Request
from starlette.concurrency import run_in_threadpool

from pocketstack.core import app as app_mod
from pocketstack.core import context as context_mod
from pocketstack.core import errors

_FAR_FUTURE = datetime(9999, 1, 1)


def _trusted(request: Request, token: str) -> context_mod.AuthInfo:
    """The noauth identity a test suite asks for with its headers."""
    user, _, project = token.partition(":")
    roles_header = request.headers.get("x-roles")
    if roles_header is not None:
        roles = [r.strip() for r in roles_header.split(",") if r.strip()]
    else:
        roles = ["admin"] if user == "admin" else []
    system = "openstack-system-scope" in request.headers
    project_id = None if system else request.headers.get("x-project-id") or project or user
    return context_mod.AuthInfo(
        user_id=user,
        user_name=user,
        user_domain_id="default",
        user_domain_name="Default",
        methods=("noauth",),
        audit_ids=("noauth",),
        expires_at=_FAR_FUTURE,
        issued_at=datetime(2000, 1, 1),
        roles=tuple((r, r) for r in roles),
        project_id=project_id,
        project_name=project_id,
        project_domain_id="default" if project_id else None,
        project_domain_name="Default" if project_id else None,
        system=system,
    )


async def _build(request: Request, token: str | None) -> context_mod.RequestContext:
    """The context of `request`. Dependencies run on the event loop: a trusted noauth token
    needs only headers, validating a real one may read the database, so it goes to a
    worker thread."""
    runtime = app_mod.runtime_of(request)
    auth = None
    if token and runtime.settings.auth == "noauth":
        auth = _trusted(request, token)
    elif token:
        auth = await run_in_threadpool(runtime.validate_token, token)
    return context_mod.RequestContext(
        request_id=app_mod.request_id_of(request),
        enforcer=runtime.enforcer,
        db=runtime.db,
        runtime=runtime,
        auth=auth,
        token=token,
    )


async def require_context(request: Request) -> context_mod.RequestContext:
    token = request.headers.get("x-auth-token")
    if not token:
        raise errors.Unauthorized("The request you have made requires authentication.")
    return await _build(request, token)


async def optional_context(request: Request) -> context_mod.RequestContext:
    """The caller if the token is valid, else anonymous (a stale token must not stop a
    client from getting a new one)."""
    try:
        return await _build(request, request.headers.get("x-auth-token") or None)
    except errors.Unauthorized:
        return await _build(request, None)


Ctx = Annotated[context_mod.RequestContext, Depends(require_context)]
OptionalCtx = Annotated[context_mod.RequestContext, Depends(optional_context)]
