"""No client input gets a 500: every route of every service, odd ids, malformed bodies."""

from __future__ import annotations

import re
from typing import Any

import pytest
from fastapi.routing import APIRoute

from pocketstack.compute import admin_api, more_api
from pocketstack.compute import api as compute_api
from pocketstack.identity import api as identity_api
from pocketstack.image import api as image_api
from pocketstack.placement import api as placement_api
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
    {"name": "CUSTOM_X", "resource_provider_generation": "1", "inventories": {"VCPU": {}}},
    {"traits": ["NOPE"], "aggregates": [1], "resource_provider_generation": 0},
]
ROUTERS = {
    "identity": [identity_api.router],
    "placement": [placement_api.router],
    "image": [image_api.router],
    "compute": [compute_api.router, admin_api.router, more_api.router],
}
ROUTES = sorted(
    {
        (prefix, method, route.path)
        for prefix, routers in ROUTERS.items()
        for router in routers
        for route in router.routes
        if isinstance(route, APIRoute)
        for method in route.methods
        if method != "HEAD"
    }
)


def _paths(template: str) -> list[str]:
    if not re.findall(r"{(\w+)}", template):
        return [template]
    return [re.sub(r"{\w+}", odd, template) for odd in ODD_IDS]


def _error_message(prefix: str, body: Any) -> str:
    if prefix == "placement":
        return str(body["errors"][0]["detail"])
    if prefix == "image":
        return str(body["message"])
    if prefix == "compute":
        (fault,) = body.values()
        return str(fault["message"])
    return str(body["error"]["message"])


@pytest.mark.parametrize("versions", ["placement latest, compute latest", "compute 2.1"])
@pytest.mark.parametrize(("prefix", "method", "template"), ROUTES)
def test_route_never_answers_500(
    cloud: Cloud, prefix: str, method: str, template: str, versions: str
) -> None:
    headers = {
        "X-Subject-Token": "junk",
        "X-Auth-Token": cloud.admin,
        "OpenStack-API-Version": versions,
    }
    bodies = ODD_BODIES if method in ("POST", "PUT", "PATCH") else [None]
    for path in _paths(template):
        for body in bodies:
            response = cloud.client.request(method, f"/{prefix}{path}", json=body, headers=headers)
            assert response.status_code < 500, (method, path, body, response.text)
            if response.status_code >= 400:
                assert _error_message(prefix, response.json())
