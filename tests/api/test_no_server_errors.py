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
from pocketstack.network import api as network_api
from pocketstack.placement import api as placement_api
from pocketstack.volume import api as volume_api
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
    {"volumeAttachment": {"volumeId": 5, "device": 3, "delete_on_termination": "x"}},
    {"server": {"name": "x", "flavorRef": "1", "block_device_mapping_v2": [
        {"source_type": "volume", "destination_type": "volume", "boot_index": "x"},
        {"source_type": "image", "destination_type": "volume", "uuid": 5, "volume_size": "x"},
    ]}},
]
# Bodies only the networking routes get (valid keys, wrong values inside).
NETWORK_BODIES: list[Any] = [
    {"network": {"name": 5, "mtu": "big"}},
    {
        "subnet": {
            "network_id": "x",
            "ip_version": 4,
            "cidr": "bad",
            "allocation_pools": [{"start": 1, "end": None}],
            "host_routes": [5],
        }
    },
    {"port": {"network_id": None, "fixed_ips": [5], "allowed_address_pairs": [{"x": 1}]}},
    {
        "router": {
            "external_gateway_info": {"network_id": "x", "external_fixed_ips": [1]},
            "routes": [{"destination": "x"}],
        }
    },
    {"floatingip": {"floating_network_id": 5, "port_id": 7}},
    {
        "security_group_rule": {
            "direction": "ingress",
            "security_group_id": 5,
            "port_range_min": "a",
            "protocol": "tcp",
        }
    },
    {"quota": {"network": "x", "check_limit": "yes"}},
    {"subnet_id": 5, "port_id": [1]},
    {"port_forwarding": {"protocol": "tcp", "internal_port": "a", "internal_port_id": 3}},
    {"bandwidth_limit_rule": {"max_kbps": "x", "direction": 5}},
    {"subnetpool": {"prefixes": ["nope"], "min_prefixlen": "a"}},
    {"policy": {"name": []}},
    {"tags": [1, None]},
]
ROUTERS = {
    "networking": [network_api.router],
    "identity": [identity_api.router],
    "placement": [placement_api.router],
    "image": [image_api.router],
    "compute": [compute_api.router, admin_api.router, more_api.router],
    "volume": [volume_api.router],
}
# Bodies only the block storage routes get (valid keys, wrong values inside).
VOLUME_BODIES: list[Any] = [
    {"volume": {"size": "big", "metadata": [1], "volume_type": 5}},
    {"volume": {"snapshot_id": 5, "source_volid": {}}},
    {"snapshot": {"volume_id": None, "force": "maybe"}},
    {"attachment": {"volume_uuid": 5, "connector": "x", "mode": 3}},
    {"volume_type": {"name": [], "extra_specs": 5}},
    {"quota_set": {"volumes": "x"}},
    {"backup": {"volume_id": 5, "incremental": "often", "force": [], "metadata": "x"}},
    {"restore": {"volume_id": 7, "name": {}}},
    {"restore": None},
    {"os-reset_status": {"status": 5}},
    {"os-volume_upload_image": {"image_name": 5, "disk_format": [], "visibility": 3}},
    {"transfer": {"volume_id": 5, "name": [], "no_snapshots": "x"}},
    {"accept": {"auth_key": {}}},
    {"qos_specs": {"name": 5, "consumer": [], "k": 3}},
    {"keys": [5, None]},
    {"encryption": {"provider": 5, "key_size": "big", "control_location": "middle"}},
    {"group_type": {"name": [], "is_public": "x", "group_specs": 5}},
    {"group_specs": {"k": 5}},
    {"group": {"group_type": 5, "volume_types": "x", "add_volumes": 5}},
    {"create-from-src": {"group_snapshot_id": 5, "source_group_id": []}},
    {"group_snapshot": {"group_id": 5}},
    {"delete": {"delete-volumes": "x"}},
    {"host": 5, "binary": [], "disabled_reason": 7},
    {"os-update_snapshot_status": {"status": 5, "progress": 80}},
    {"os-set_image_metadata": {"metadata": [1]}},
    {"os-unset_image_metadata": {"key": 5}},
    {"os-extend": {"new_size": "x"}},
    {"os-reset_status": {"status": 5}},
    {"os-attach": {"instance_uuid": 5, "mode": []}},
    {"os-initialize_connection": {"connector": 5}},
    {"metadata": {"k": 5}},
    {"extra_specs": [1]},
]
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
    if prefix in ("compute", "volume"):
        (fault,) = body.values()
        return str(fault["message"])
    if prefix == "networking":
        return str(body["NeutronError"]["message"])
    return str(body["error"]["message"])


@pytest.mark.parametrize(
    "versions", ["placement latest, compute latest, volume latest", "compute 2.1"]
)
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
    if prefix == "networking" and method in ("POST", "PUT"):
        bodies = [*bodies, *NETWORK_BODIES]
    if prefix == "volume" and method in ("POST", "PUT"):
        bodies = [*bodies, *VOLUME_BODIES]
    for path in _paths(template):
        for body in bodies:
            response = cloud.client.request(method, f"/{prefix}{path}", json=body, headers=headers)
            assert response.status_code < 500, (method, path, body, response.text)
            if response.status_code >= 400:
                assert _error_message(prefix, response.json())
