"""The APIRouter every service uses.

OpenStack path parameters are opaque strings (ids, names, tags). FastAPI
builds a pydantic validator for each declared path parameter of each route,
about a millisecond apiece at import, which adds up to most of `up`'s start
time across hundreds of routes. This router keeps handler signatures as
FastAPI users write them (`def get_project(project_id: str, ctx: Ctx)`) but
hands path parameters over straight from the URL match.
"""

from __future__ import annotations

import functools
import inspect
import re
import typing
from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Request

_PATH_PARAM = re.compile(r"{(\w+)(?::\w+)?}")
_INJECTED = "_path_request"


def _with_path_params(endpoint: Callable[..., Any], names: set[str]) -> Callable[..., Any]:
    hints = typing.get_type_hints(endpoint, include_extras=True)
    signature = inspect.signature(endpoint)
    for name in names:
        if name in signature.parameters and hints.get(name, str) is not str:
            raise TypeError(f"{endpoint.__name__}: path parameter {name} must be a str")
    kept = [
        p.replace(annotation=hints.get(p.name, p.annotation))
        for p in signature.parameters.values()
        if p.name not in names
    ]
    request_name = next((p.name for p in kept if p.annotation is Request), None)
    if request_name is None:
        request_name = _INJECTED
        kept.append(
            inspect.Parameter(_INJECTED, inspect.Parameter.KEYWORD_ONLY, annotation=Request)
        )
    wanted = [n for n in names if n in signature.parameters]

    @functools.wraps(endpoint)
    def call(**kwargs: Any) -> Any:
        request = kwargs[request_name]
        if request_name == _INJECTED:
            del kwargs[_INJECTED]
        for name in wanted:
            kwargs[name] = request.path_params[name]
        return endpoint(**kwargs)

    call.__signature__ = signature.replace(  # type: ignore[attr-defined]
        parameters=kept, return_annotation=hints.get("return", signature.return_annotation)
    )
    return call


class Router(APIRouter):
    """An APIRouter whose path parameters reach handlers as plain strings."""

    def add_api_route(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        names = set(_PATH_PARAM.findall(path))
        if names:
            endpoint = _with_path_params(endpoint, names)
        super().add_api_route(path, endpoint, **kwargs)
