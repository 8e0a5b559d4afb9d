"""The auth layer every service shares: `X-Auth-Token` in, RequestContext out.

Handlers declare `ctx: Ctx` to require a valid token (401 otherwise) or
`ctx: OptionalCtx` where anonymous callers are allowed (version documents,
token issue).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from pocketstack.core import app as app_mod
from pocketstack.core import context as context_mod
from pocketstack.core import errors


def _build(request: Request, token: str | None) -> context_mod.RequestContext:
    runtime = app_mod.runtime_of(request)
    auth = runtime.validate_token(token) if token else None
    return context_mod.RequestContext(
        request_id=app_mod.request_id_of(request),
        enforcer=runtime.enforcer,
        db=runtime.db,
        runtime=runtime,
        auth=auth,
        token=token,
    )


def require_context(request: Request) -> context_mod.RequestContext:
    token = request.headers.get("x-auth-token")
    if not token:
        raise errors.Unauthorized("The request you have made requires authentication.")
    return _build(request, token)


def optional_context(request: Request) -> context_mod.RequestContext:
    return _build(request, request.headers.get("x-auth-token") or None)


Ctx = Annotated[context_mod.RequestContext, Depends(require_context)]
OptionalCtx = Annotated[context_mod.RequestContext, Depends(optional_context)]
