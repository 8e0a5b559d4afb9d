"""No client input gets a 500: every identity route, odd ids, and malformed bodies."""

from __future__ import annotations

import re
from typing import Any

import pytest
from fastapi.routing import APIRoute

from pocketstack.identity import api as identity_api
from tests.api.conftest import Cloud

ODD_IDS = ["x", "a" * 300, "%E2%98%83", "0"]
ODD_BODIES: list[Any] = [
    None,
    [],
    "text",
    {},
    {"unknown": {}},
    {"project": None},
    {"user": {"name": None, "password": 5}},
    {"auth": {"identity": {"methods": ["password"], "password": {"user": {}}}}},
    {"auth": {"identity": {"methods": ["token"], "token": {"id": "junk"}}}},
    {"auth": {"identity": {"methods": ["magic"]}, "scope": {"project": {}}}},
    {"config": {"ldap": {"nonsense": 1}}},
]
ROUTES = sorted(
    {
        (method, route.path)
        for route in identity_api.router.routes
        if isinstance(route, APIRoute)
        for method in route.methods
        if method != "HEAD"
    }
)


def _paths(template: str) -> list[str]:
    names = re.findall(r"{(\w+)}", template)
    if not names:
        return [template]
    return [re.sub(r"{\w+}", odd, template) for odd in ODD_IDS]


@pytest.mark.parametrize(("method", "template"), ROUTES)
def test_route_never_answers_500(cloud: Cloud, method: str, template: str) -> None:
    admin = cloud.admin
    bodies = ODD_BODIES if method in ("POST", "PUT", "PATCH") else [None]
    for path in _paths(template):
        for body in bodies:
            response = cloud.call(method, path, admin, body, headers={"X-Subject-Token": "junk"})
            assert response.status_code < 500, (method, path, body, response.text)
            if response.status_code >= 400:
                assert response.json()["error"]["message"]
