"""The networking API as Neutron clients use it: networks, subnets, ports with IPAM,
security groups, tags, revisions, filters, quotas and who sees what."""

from __future__ import annotations

import ipaddress
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from pocketstack.network import agent as network_agent
from pocketstack.network.drivers import NetworkSetup, RouterSetup, fake
from tests.api.conftest import Cloud


class Network:
    def __init__(self, cloud: Cloud, token: str) -> None:
        self.cloud, self.token = cloud, token

    def __call__(
        self,
        method: str,
        path: str,
        body: Any = None,
        token: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> Any:
        return self.cloud.client.request(
            method,
            f"/networking/v2.0{path}",
            json=body,
            headers={"X-Auth-Token": token or self.token, **(headers or {})},
        )

    def make(self, kind: str, token: str | None = None, **fields: Any) -> dict[str, Any]:
        member = "policy" if kind == "qos/policies" else kind.rstrip("s").replace("-", "_")
        answer = self("POST", f"/{kind}", {member: fields}, token=token)
        assert answer.status_code == 201, answer.text
        return dict(answer.json()[member])


@pytest.fixture
def net(cloud: Cloud) -> Network:
    return Network(cloud, cloud.admin)


def _member(cloud: Cloud, name: str) -> tuple[str, str]:
    project = cloud.create(cloud.admin, "project", name=name, domain_id="default")
    cloud.user_with_role(cloud.admin, f"{name}-user", project["id"], "member")
    return cloud.token(f"{name}-user", f"{name}-user-pw", project=name), project["id"]


def test_a_network_with_subnets_hands_out_addresses_ports_can_use(net: Network) -> None:
    network = net.make("networks", name="private")
    assert network["mtu"] == 1450 and network["provider:network_type"] == "vxlan"
    assert network["status"] == "ACTIVE" and network["revision_number"] == 1
    v4 = net.make("subnets", network_id=network["id"], ip_version=4, cidr="100.64.20.0/24")
    assert v4["gateway_ip"] == "100.64.20.1"
    assert v4["allocation_pools"] == [{"start": "100.64.20.2", "end": "100.64.20.254"}]
    v6 = net.make(
        "subnets",
        network_id=network["id"],
        ip_version=6,
        cidr="fd00:20::/64",
        ipv6_ra_mode="slaac",
        ipv6_address_mode="slaac",
    )
    port = net.make("ports", network_id=network["id"], name="p1", dns_name="web")
    addresses = {f["subnet_id"]: f["ip_address"] for f in port["fixed_ips"]}
    assert addresses[v4["id"]] == "100.64.20.2"
    assert ipaddress.ip_address(addresses[v6["id"]]) in ipaddress.ip_network("fd00:20::/64")
    assert port["dns_assignment"][0]["hostname"] == "web"
    assert len(port["security_groups"]) == 1
    fixed = net.make(
        "ports",
        network_id=network["id"],
        fixed_ips=[{"subnet_id": v4["id"], "ip_address": "100.64.20.50"}],
    )
    assert {"subnet_id": v4["id"], "ip_address": "100.64.20.50"} in fixed["fixed_ips"]
    taken = net(
        "POST",
        "/ports",
        {"port": {"network_id": network["id"], "fixed_ips": [{"ip_address": "100.64.20.50"}]}},
    )
    assert taken.status_code == 409
    assert taken.json()["NeutronError"]["type"] == "IpAddressAlreadyAllocated"
    shown = net("GET", f"/networks/{network['id']}").json()["network"]
    assert sorted(shown["subnets"]) == sorted([v4["id"], v6["id"]])
    in_use = net("DELETE", f"/networks/{network['id']}")
    assert in_use.status_code == 409 and in_use.json()["NeutronError"]["type"] == "NetworkInUse"
    for made in (port, fixed):
        assert net("DELETE", f"/ports/{made['id']}").status_code == 204
    assert net("DELETE", f"/networks/{network['id']}").status_code == 204
    assert net("GET", f"/subnets/{v4['id']}").status_code == 404


def test_concurrent_ports_never_share_an_address(net: Network) -> None:
    network = net.make("networks", name="small")
    subnet = net.make("subnets", network_id=network["id"], ip_version=4, cidr="100.64.30.0/27")
    free = 32 - 3  # network, broadcast and gateway addresses are not handed out

    def create(index: int) -> Any:
        return net("POST", "/ports", {"port": {"network_id": network["id"], "name": f"c{index}"}})

    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = list(pool.map(create, range(32)))
    made = [a.json()["port"] for a in answers if a.status_code == 201]
    refused = [a for a in answers if a.status_code != 201]
    assert len(made) == free
    assert {a.status_code for a in refused} == {409}
    addresses = [p["fixed_ips"][0]["ip_address"] for p in made]
    assert len(set(addresses)) == free
    assert all(p["fixed_ips"][0]["subnet_id"] == subnet["id"] for p in made)


def test_segmentation_ids_never_collide_and_provider_fields_are_admin_only(
    net: Network, cloud: Cloud
) -> None:
    with ThreadPoolExecutor(max_workers=4) as pool:
        made = list(pool.map(lambda i: net.make("networks", name=f"n{i}"), range(8)))
    ids = [n["provider:segmentation_id"] for n in made]
    assert len(set(ids)) == 8
    clash = net(
        "POST",
        "/networks",
        {"network": {"provider:network_type": "vxlan", "provider:segmentation_id": ids[0]}},
    )
    assert clash.status_code == 409
    token, _ = _member(cloud, "prov")
    own = net.make("networks", token=token, name="mine")
    assert "provider:network_type" not in own
    denied = net("POST", "/networks", {"network": {"shared": True}}, token=token)
    assert denied.status_code == 403


def test_who_sees_what(net: Network, cloud: Cloud) -> None:
    alice, _ = _member(cloud, "alice")
    bob, _ = _member(cloud, "bob")
    private = net.make("networks", token=alice, name="alice-net")
    shared = net.make("networks", name="shared-net", shared=True)
    seen = {n["id"] for n in net("GET", "/networks", token=bob).json()["networks"]}
    assert shared["id"] in seen and private["id"] not in seen
    assert net("GET", f"/networks/{private['id']}", token=bob).status_code == 404
    assert net("DELETE", f"/networks/{private['id']}", token=bob).status_code == 404
    net.make("subnets", network_id=shared["id"], ip_version=4, cidr="100.64.40.0/24")
    port = net.make("ports", token=bob, network_id=shared["id"])
    assert port["project_id"] != shared["project_id"]
    refused = net(
        "POST",
        "/subnets",
        {"subnet": {"network_id": shared["id"], "ip_version": 4, "cidr": "100.64.41.0/24"}},
        token=bob,
    )
    assert refused.status_code == 403


def test_revisions_if_match_tags_filters_fields_and_paging(net: Network) -> None:
    network = net.make("networks", name="rev", tags=["blue"])
    path = f"/networks/{network['id']}"
    stale = net("PUT", path, {"network": {"name": "x"}}, headers={"If-Match": "revision_number=0"})
    assert stale.status_code == 412
    updated = net(
        "PUT",
        path,
        {"network": {"name": "rev2"}},
        headers={"If-Match": f"revision_number={network['revision_number']}"},
    )
    assert updated.json()["network"]["revision_number"] == network["revision_number"] + 1
    assert net("PUT", f"{path}/tags/red").status_code == 201
    assert net("GET", f"{path}/tags").json()["tags"] == ["blue", "red"]
    assert net("GET", f"{path}/tags/green").status_code == 404
    both = net("GET", "/networks?tags=blue,red").json()["networks"]
    assert [n["id"] for n in both] == [network["id"]]
    assert net("GET", "/networks?not-tags-any=red").json()["networks"] == []
    for index in range(3):
        net.make("networks", name=f"page{index}")
    only = net("GET", "/networks?name=rev2&fields=id&fields=name").json()["networks"]
    assert only == [{"id": network["id"], "name": "rev2"}]
    page = net("GET", "/networks?limit=2&sort_key=name&sort_dir=asc").json()
    assert [n["name"] for n in page["networks"]] == ["page0", "page1"]
    assert page["networks_links"][0]["rel"] == "next"
    bad = net("GET", "/networks?admin_state_up=maybe")
    assert bad.status_code == 400


def test_bad_input_is_a_400_naming_the_problem(net: Network) -> None:
    cases = [
        ("/networks", {"network": {"mtu": "big"}}, "mtu"),
        ("/networks", {"network": {"flavor": "x"}}, "Unrecognized attribute"),
        ("/subnets", {"subnet": {"ip_version": 4, "cidr": "100.64.0.0/24"}}, "network_id"),
        ("/ports", {"port": {"network_id": "x", "mac_address": "zz"}}, "mac_address"),
        (
            "/security-group-rules",
            {"security_group_rule": {"direction": "sideways", "security_group_id": "x"}},
            "direction",
        ),
    ]
    for path, body, word in cases:
        answer = net("POST", path, body)
        assert answer.status_code == 400, (path, answer.text)
        assert word in answer.json()["NeutronError"]["message"]
    network = net.make("networks")
    overlap = {"network_id": network["id"], "ip_version": 4, "cidr": "100.64.50.0/24"}
    net.make("subnets", **overlap)
    assert (
        net("POST", "/subnets", {"subnet": {**overlap, "cidr": "100.64.50.128/25"}}).status_code
        == 400
    )


def test_security_groups_start_with_neutron_defaults(net: Network, cloud: Cloud) -> None:
    token, project_id = _member(cloud, "sg")
    groups = net("GET", "/security-groups", token=token).json()["security_groups"]
    default = next(g for g in groups if g["name"] == "default")
    rules = {
        (r["direction"], r["ethertype"], r["remote_group_id"])
        for r in default["security_group_rules"]
    }
    assert rules == {
        ("egress", "IPv4", None),
        ("egress", "IPv6", None),
        ("ingress", "IPv4", default["id"]),
        ("ingress", "IPv6", default["id"]),
    }
    web = net.make("security-groups", token=token, name="web")
    rule = net.make(
        "security-group-rules",
        token=token,
        security_group_id=web["id"],
        direction="ingress",
        protocol="tcp",
        port_range_min=80,
        port_range_max=80,
    )
    again = net(
        "POST",
        "/security-group-rules",
        {
            "security_group_rule": {
                "security_group_id": web["id"],
                "direction": "ingress",
                "protocol": "tcp",
                "port_range_min": 80,
                "port_range_max": 80,
            }
        },
        token=token,
    )
    assert again.status_code == 409
    wrong = net(
        "POST",
        "/security-group-rules",
        {
            "security_group_rule": {
                "security_group_id": web["id"],
                "direction": "ingress",
                "protocol": "tcp",
                "port_range_min": 90,
                "port_range_max": 80,
            }
        },
        token=token,
    )
    assert wrong.status_code == 400
    assert net("DELETE", f"/security-group-rules/{rule['id']}", token=token).status_code == 204
    assert net("DELETE", f"/security-groups/{default['id']}", token=token).status_code == 409
    assert project_id == web["project_id"]


def test_quotas_refuse_creates_beyond_the_limit(net: Network, cloud: Cloud) -> None:
    token, project_id = _member(cloud, "quota")
    assert net("PUT", f"/quotas/{project_id}", {"quota": {"network": 1}}).status_code == 200
    net.make("networks", token=token)
    over = net("POST", "/networks", {"network": {}}, token=token)
    assert over.status_code == 409 and over.json()["NeutronError"]["type"] == "OverQuota"
    details = net("GET", f"/quotas/{project_id}/details.json").json()["quota"]
    assert details["network"] == {"limit": 1, "used": 1, "reserved": 0}
    assert (
        net("PUT", f"/quotas/{project_id}", {"quota": {"network": 5}}, token=token).status_code
        == 403
    )


def test_routers_floating_ips_and_port_forwardings(net: Network, cloud: Cloud) -> None:
    public = net.make("networks", name="public", **{"router:external": True})
    net.make(
        "subnets", network_id=public["id"], ip_version=4, cidr="198.18.0.0/24", enable_dhcp=False
    )
    token, _ = _member(cloud, "l3")
    private = net.make("networks", token=token, name="private")
    subnet = net.make(
        "subnets", token=token, network_id=private["id"], ip_version=4, cidr="100.64.70.0/24"
    )
    server_port = net.make("ports", token=token, network_id=private["id"])
    router = net.make(
        "routers", token=token, name="r1", external_gateway_info={"network_id": public["id"]}
    )
    gateway = router["external_gateway_info"]
    assert gateway["enable_snat"] is True
    assert gateway["external_fixed_ips"][0]["ip_address"].startswith("198.18.0.")
    floating = net.make("floatingips", token=token, floating_network_id=public["id"])
    unreachable = net(
        "PUT",
        f"/floatingips/{floating['id']}",
        {"floatingip": {"port_id": server_port["id"]}},
        token=token,
    )
    assert unreachable.status_code == 404
    added = net(
        "PUT",
        f"/routers/{router['id']}/add_router_interface",
        {"subnet_id": subnet["id"]},
        token=token,
    ).json()
    interface = net("GET", f"/ports/{added['port_id']}", token=token).json()["port"]
    assert interface["fixed_ips"][0]["ip_address"] == "100.64.70.1"
    assert interface["device_owner"] == "network:router_interface"
    associated = net(
        "PUT",
        f"/floatingips/{floating['id']}",
        {"floatingip": {"port_id": server_port["id"]}},
        token=token,
    ).json()
    assert associated["floatingip"]["fixed_ip_address"] == server_port["fixed_ips"][0]["ip_address"]
    assert associated["floatingip"]["router_id"] == router["id"]
    busy = net(
        "PUT",
        f"/routers/{router['id']}/remove_router_interface",
        {"subnet_id": subnet["id"]},
        token=token,
    )
    assert busy.status_code == 409
    second = net.make("floatingips", token=token, floating_network_id=public["id"])
    forward = {
        "port_forwarding": {
            "internal_port_id": server_port["id"],
            "protocol": "tcp",
            "internal_port": 80,
            "external_port": 8080,
        }
    }
    made = net("POST", f"/floatingips/{second['id']}/port_forwardings", forward, token=token)
    assert made.status_code == 201, made.text
    assert (
        made.json()["port_forwarding"]["internal_ip_address"]
        == server_port["fixed_ips"][0]["ip_address"]
    )
    again = net("POST", f"/floatingips/{second['id']}/port_forwardings", forward, token=token)
    assert again.status_code == 409
    ranged = {
        "port_forwarding": {
            "internal_port_id": server_port["id"],
            "protocol": "udp",
            "internal_port_range": "5000:5009",
            "external_port_range": "6000:6009",
        }
    }
    assert (
        net(
            "POST", f"/floatingips/{second['id']}/port_forwardings", ranged, token=token
        ).status_code
        == 201
    )
    assert net("DELETE", f"/routers/{router['id']}", token=token).status_code == 409
    for made_fip in (floating, second):
        assert net("DELETE", f"/floatingips/{made_fip['id']}", token=token).status_code == 204
    removed = net(
        "PUT",
        f"/routers/{router['id']}/remove_router_interface",
        {"subnet_id": subnet["id"]},
        token=token,
    )
    assert removed.status_code == 200
    assert net("GET", f"/ports/{added['port_id']}", token=token).status_code == 404
    assert net("DELETE", f"/routers/{router['id']}", token=token).status_code == 204
    odd_gateway = {"network_id": public["id"], "external_fixed_ips": [1]}
    refused = net("POST", "/routers", {"router": {"external_gateway_info": odd_gateway}})
    assert refused.status_code == 400
    gateway_ports = net("GET", f"/ports?network_id={public['id']}").json()["ports"]
    assert gateway_ports == []


def test_subnets_carved_from_a_pool_never_overlap(net: Network) -> None:
    pool = net.make("subnetpools", name="pool", prefixes=["100.96.0.0/22"], default_prefixlen=24)
    network = net.make("networks")
    carved = [
        net.make("subnets", network_id=network["id"], ip_version=4, subnetpool_id=pool["id"])
        for _ in range(2)
    ]
    assert [s["cidr"] for s in carved] == ["100.96.0.0/24", "100.96.1.0/24"]
    small = net.make(
        "subnets", network_id=network["id"], ip_version=4, subnetpool_id=pool["id"], prefixlen=25
    )
    assert small["cidr"] == "100.96.2.0/25"
    bounds = net(
        "POST",
        "/subnets",
        {
            "subnet": {
                "network_id": network["id"],
                "ip_version": 4,
                "subnetpool_id": pool["id"],
                "prefixlen": 4,
            }
        },
    )
    assert bounds.status_code == 400
    assert net("DELETE", f"/subnetpools/{pool['id']}").status_code == 409
    assert net("PUT", f"/subnetpools/{pool['id']}/tags/blue").status_code == 201


def test_qos_policies_with_bandwidth_limits_apply_to_ports(net: Network) -> None:
    policy = net.make("qos/policies", name="10mbit")
    rules = f"/qos/policies/{policy['id']}/bandwidth_limit_rules"
    egress = net("POST", rules, {"bandwidth_limit_rule": {"max_kbps": 10000}})
    assert (
        egress.status_code == 201 and egress.json()["bandwidth_limit_rule"]["direction"] == "egress"
    )
    assert net("POST", rules, {"bandwidth_limit_rule": {"max_kbps": 5}}).status_code == 409
    ingress = net(
        "POST", rules, {"bandwidth_limit_rule": {"max_kbps": 2000, "direction": "ingress"}}
    )
    assert ingress.status_code == 201
    shown = net("GET", f"/qos/policies/{policy['id']}").json()["policy"]
    assert sorted(r["direction"] for r in shown["rules"]) == ["egress", "ingress"]
    network = net.make("networks")
    port = net.make("ports", network_id=network["id"], qos_policy_id=policy["id"])
    assert port["qos_policy_id"] == policy["id"]
    assert net("DELETE", f"/qos/policies/{policy['id']}").status_code == 409
    assert net("GET", "/qos/rule-types").json()["rule_types"] == [{"type": "bandwidth_limit"}]
    missing = net(
        "POST", "/ports", {"port": {"network_id": network["id"], "qos_policy_id": "no-such-policy"}}
    )
    assert missing.status_code == 404
    assert missing.json()["NeutronError"]["type"] == "QosPolicyNotFound"


class CountingDriver(fake.FakeDriver):
    """The fake data plane, counting what the agent has it apply."""

    def __init__(self) -> None:
        super().__init__()
        self.applied: list[str] = []

    def ensure(self, setup: NetworkSetup) -> None:
        self.applied.append(setup.network_id)
        super().ensure(setup)

    def ensure_router(self, setup: RouterSetup) -> None:
        self.applied.append(setup.router_id)
        super().ensure_router(setup)


def test_a_woken_pass_applies_only_what_changed_and_a_resync_everything(
    cloud: Cloud, net: Network
) -> None:
    driver = CountingDriver()
    agent = network_agent.NetworkAgent(cloud.runtime, "host-1", driver)
    public = net.make("networks", name="ext", **{"router:external": True})
    net.make("subnets", network_id=public["id"], ip_version=4, cidr="198.18.0.0/24")
    private = net.make("networks", name="private")
    subnet = net.make("subnets", network_id=private["id"], ip_version=4, cidr="100.64.30.0/24")
    router = net.make("routers", name="r", external_gateway_info={"network_id": public["id"]})
    net("PUT", f"/routers/{router['id']}/add_router_interface", {"subnet_id": subnet["id"]})
    agent.reconcile()
    assert sorted(driver.applied) == sorted([public["id"], private["id"], router["id"]])

    driver.applied.clear()
    agent.reconcile()
    assert driver.applied == []  # nothing changed: nothing applied

    port = net.make("ports", network_id=private["id"], **{"binding:host_id": "host-1"})
    agent.reconcile()
    # A port to filter on this host; the router on that network is checked again with it.
    assert driver.applied == [private["id"], router["id"]]
    driver.applied.clear()
    floating = net.make("floatingips", floating_network_id=public["id"], port_id=port["id"])
    agent.reconcile()
    assert driver.applied == [router["id"]]  # the router's gateway leg holds it now
    assert driver.routers_made() == {router["id"]}
    (setup,) = [driver._routers[router["id"]]]
    assert setup.gateway is not None
    assert f"{floating['floating_ip_address']}/32" in setup.gateway.cidrs

    driver.applied.clear()
    agent._last_full = time.monotonic() - network_agent.RESYNC_S  # a resync is due
    agent.reconcile()
    assert sorted(driver.applied) == sorted([public["id"], private["id"], router["id"]])
