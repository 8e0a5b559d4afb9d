"""The compute API around servers, as Nova clients use it: server groups steering the
scheduler, aggregates and availability zones, services, hypervisors and quotas."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest

from pocketstack.compute import hosts, server_groups
from pocketstack.core import errors
from tests.api.test_compute import Compute, _member


@pytest.fixture
def compute(cloud_factory: Any) -> Iterator[Compute]:
    with cloud_factory(background=True, fake_hosts=2) as cloud:
        yield Compute(cloud, cloud.admin)


def _group(compute: Compute, policy: str, token: str | None = None, **rules: int) -> str:
    body: dict[str, Any] = {"name": f"g-{policy}", "policy": policy}
    if rules:
        body["rules"] = rules
    made = compute("POST", "/os-server-groups", {"server_group": body}, "2.64", token)
    assert made.status_code == 200, made.text
    return str(made.json()["server_group"]["id"])


def _boot_in(compute: Compute, group: str, name: str, token: str | None = None) -> Any:
    server = {"name": name, "flavorRef": "1", "imageRef": compute.image(), "networks": "none"}
    body = {"server": server, "os:scheduler_hints": {"group": group}}
    return compute("POST", "/servers", body, version="2.96", token=token)


def _settled(compute: Compute, response: Any) -> dict[str, Any]:
    assert response.status_code == 202, response.text
    server_id = response.json()["server"]["id"]
    shown = compute("GET", f"/servers/{server_id}", version="2.96").json()["server"]
    final = "ERROR" if shown["status"] == "ERROR" else "ACTIVE"
    return compute.wait(server_id, final)


def test_anti_affinity_spreads_then_finds_no_valid_host(compute: Compute) -> None:
    group = _group(compute, "anti-affinity")
    first = _settled(compute, _boot_in(compute, group, "a1"))
    second = _settled(compute, _boot_in(compute, group, "a2"))
    assert {first["OS-EXT-SRV-ATTR:host"], second["OS-EXT-SRV-ATTR:host"]} == {
        "fake-host-1",
        "fake-host-2",
    }
    assert first["server_groups"] == [group]
    third = _settled(compute, _boot_in(compute, group, "a3"))
    assert third["status"] == "ERROR"
    assert third["fault"]["message"].startswith("No valid host was found.")
    shown = compute("GET", f"/os-server-groups/{group}", version="2.64").json()["server_group"]
    assert sorted(shown["members"]) == sorted([first["id"], second["id"], third["id"]])
    assert (shown["policy"], shown["rules"]) == ("anti-affinity", {})
    assert compute("DELETE", f"/servers/{first['id']}").status_code == 204
    shown = compute("GET", f"/os-server-groups/{group}", version="2.64").json()["server_group"]
    assert first["id"] not in shown["members"]
    fourth = _settled(compute, _boot_in(compute, group, "a4"))
    assert fourth["OS-EXT-SRV-ATTR:host"] == first["OS-EXT-SRV-ATTR:host"]


def test_anti_affinity_rule_allows_that_many_per_host(compute: Compute) -> None:
    group = _group(compute, "anti-affinity", max_server_per_host=2)
    placed = [_settled(compute, _boot_in(compute, group, f"r{i}")) for i in range(4)]
    hosts = [s["OS-EXT-SRV-ATTR:host"] for s in placed]
    assert sorted(hosts) == ["fake-host-1", "fake-host-1", "fake-host-2", "fake-host-2"]
    assert _settled(compute, _boot_in(compute, group, "r4"))["status"] == "ERROR"


def test_concurrent_boots_into_anti_affinity_never_share_a_host(compute: Compute) -> None:
    group = _group(compute, "anti-affinity")
    compute.image()
    responses: list[Any] = []

    def boot(index: int) -> None:
        responses.append(_boot_in(compute, group, f"c{index}"))

    threads = [threading.Thread(target=boot, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    servers = [_settled(compute, r) for r in responses]
    placed = [s["OS-EXT-SRV-ATTR:host"] for s in servers if s["status"] == "ACTIVE"]
    assert len(placed) == len(set(placed)), f"two group members share a host: {placed}"
    assert len(placed) <= 2


def test_affinity_keeps_servers_together_and_soft_policies_prefer(compute: Compute) -> None:
    group = _group(compute, "affinity")
    hosts = {
        _settled(compute, _boot_in(compute, group, f"f{i}"))["OS-EXT-SRV-ATTR:host"]
        for i in range(3)
    }
    assert len(hosts) == 1
    soft = _group(compute, "soft-anti-affinity")
    spread = {
        _settled(compute, _boot_in(compute, soft, f"s{i}"))["OS-EXT-SRV-ATTR:host"]
        for i in range(2)
    }
    assert spread == {"fake-host-1", "fake-host-2"}
    packed = _group(compute, "soft-affinity")
    together = {
        _settled(compute, _boot_in(compute, packed, f"p{i}"))["OS-EXT-SRV-ATTR:host"]
        for i in range(3)
    }
    assert len(together) == 1


def test_server_group_views_quota_and_errors_per_microversion(compute: Compute) -> None:
    old = compute(
        "POST", "/os-server-groups", {"server_group": {"name": "x", "policies": ["affinity"]}}
    ).json()["server_group"]
    assert set(old) == {"id", "name", "policies", "members", "metadata"}
    soft = {"server_group": {"name": "x", "policies": ["soft-affinity"]}}
    assert compute("POST", "/os-server-groups", soft, "2.14").status_code == 400
    assert compute("POST", "/os-server-groups", soft, "2.15").status_code == 200
    bad_rules = {
        "server_group": {"name": "y", "policy": "affinity", "rules": {"max_server_per_host": 2}}
    }
    refused = compute("POST", "/os-server-groups", bad_rules, "2.64")
    assert refused.json()["badRequest"]["message"] == "Only anti-affinity policy supports rules."
    shown = compute("GET", f"/os-server-groups/{old['id']}", version="2.13").json()
    assert {"project_id", "user_id"} <= set(shown["server_group"])
    tenant = _member(compute, "group-tenant")
    assert compute("GET", "/os-server-groups", token=tenant).json()["server_groups"] == []
    assert compute("GET", f"/os-server-groups/{old['id']}", token=tenant).status_code == 403
    for _ in range(10):
        _group(compute, "affinity", token=tenant)
    over = compute(
        "POST",
        "/os-server-groups",
        {"server_group": {"name": "z", "policy": "affinity"}},
        "2.64",
        tenant,
    )
    assert over.status_code == 403
    assert over.json()["forbidden"]["message"] == "Quota exceeded, too many server groups."
    everyone = compute("GET", "/os-server-groups?all_projects=True").json()["server_groups"]
    assert len(everyone) == 12
    page = compute("GET", "/os-server-groups?all_projects=True&limit=5&offset=10").json()
    assert len(page["server_groups"]) == 2
    assert compute("DELETE", f"/os-server-groups/{old['id']}").status_code == 204
    assert compute("GET", f"/os-server-groups/{old['id']}").status_code == 404
    unknown = _boot_in(compute, "8d3a1c1e-0000-4000-8000-000000000000", "nogroup")
    assert unknown.status_code == 400


def test_members_quota_refuses_the_boot(compute: Compute) -> None:
    group = _group(compute, "soft-affinity")
    project = compute.cloud.client.get(
        "/identity/v3/auth/projects", headers={"X-Auth-Token": compute.token}
    ).json()["projects"][0]["id"]
    body = {"quota_set": {"server_group_members": 1}}
    assert compute("PUT", f"/os-quota-sets/{project}", body).status_code == 200
    assert _boot_in(compute, group, "m1").status_code == 202
    refused = _boot_in(compute, group, "m2")
    assert refused.status_code == 403
    assert refused.json()["forbidden"]["message"] == "Quota exceeded, too many servers in group"


def _aggregate(compute: Compute, name: str, zone: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"name": name}
    if zone:
        body["availability_zone"] = zone
    made = compute("POST", "/os-aggregates", {"aggregate": body}, "2.41")
    assert made.status_code == 200, made.text
    return dict(made.json()["aggregate"])


def test_aggregate_zone_steers_boots_and_mirrors_into_placement(compute: Compute) -> None:
    made = _aggregate(compute, "rack-a", "zone-a")
    assert "hosts" not in made and "metadata" not in made and "uuid" in made
    agg_id = made["id"]
    assert "uuid" not in compute("GET", f"/os-aggregates/{agg_id}").json()["aggregate"]
    added = compute(
        "POST", f"/os-aggregates/{agg_id}/action", {"add_host": {"host": "fake-host-2"}}, "2.41"
    ).json()["aggregate"]
    assert added["hosts"] == ["fake-host-2"]
    assert added["metadata"] == {"availability_zone": "zone-a"}
    providers = compute.placement("GET", "/resource_providers?name=fake-host-2").json()
    provider = providers["resource_providers"][0]["uuid"]
    mirrored = compute.placement("GET", f"/resource_providers/{provider}/aggregates").json()
    assert mirrored["aggregates"] == [made["uuid"]]
    zones = compute("GET", "/os-availability-zone").json()["availabilityZoneInfo"]
    assert sorted(z["zoneName"] for z in zones) == ["nova", "zone-a"]
    detail = compute("GET", "/os-availability-zone/detail").json()["availabilityZoneInfo"]
    by_zone = {z["zoneName"]: z["hosts"] for z in detail}
    assert by_zone["zone-a"]["fake-host-2"]["nova-compute"]["active"] is True
    for index in range(3):
        server = compute.active(f"z{index}", availability_zone="zone-a")
        assert server["OS-EXT-SRV-ATTR:host"] == "fake-host-2"
        assert server["OS-EXT-AZ:availability_zone"] == "zone-a"
    in_nova = compute.active("n", availability_zone="nova")
    assert in_nova["OS-EXT-SRV-ATTR:host"] == "fake-host-1"
    assert in_nova["OS-EXT-AZ:availability_zone"] == "nova"
    anywhere = compute.active("any")
    assert anywhere["OS-EXT-AZ:availability_zone"] in ("nova", "zone-a")
    nowhere = compute.boot("x", availability_zone="zone-b")
    assert nowhere.status_code == 400
    other = _aggregate(compute, "rack-b", "zone-b")
    conflict = compute(
        "POST", f"/os-aggregates/{other['id']}/action", {"add_host": {"host": "fake-host-2"}}
    )
    assert conflict.status_code == 409
    no_host = compute(
        "POST", f"/os-aggregates/{other['id']}/action", {"add_host": {"host": "nope"}}
    )
    assert no_host.status_code == 404
    assert compute("DELETE", f"/os-aggregates/{agg_id}").status_code == 400
    moved = compute(
        "POST",
        f"/os-aggregates/{agg_id}/action",
        {"set_metadata": {"metadata": {"availability_zone": "zone-c"}}},
    )
    assert moved.status_code == 400, "servers would change zone"
    meta = compute(
        "POST",
        f"/os-aggregates/{other['id']}/action",
        {"set_metadata": {"metadata": {"ssd": "true"}}},
    ).json()["aggregate"]
    assert meta["metadata"] == {"availability_zone": "zone-b", "ssd": "true"}
    dup = compute("POST", "/os-aggregates", {"aggregate": {"name": "rack-a"}})
    assert dup.status_code == 409
    tenant = _member(compute, "agg-tenant")
    assert compute("GET", "/os-aggregates", token=tenant).status_code == 403


def test_disabled_service_gets_no_new_servers(compute: Compute) -> None:
    services = compute("GET", "/os-services?binary=nova-compute", version="2.53").json()["services"]
    assert sorted(s["host"] for s in services) == ["fake-host-1", "fake-host-2"]
    assert all(s["state"] == "up" and s["status"] == "enabled" for s in services)
    host1 = next(s for s in services if s["host"] == "fake-host-1")
    disabled = compute(
        "PUT",
        f"/os-services/{host1['id']}",
        {"status": "disabled", "disabled_reason": "maintenance"},
        "2.53",
    )
    assert disabled.status_code == 200, disabled.text
    view = disabled.json()["service"]
    assert (view["status"], view["disabled_reason"]) == ("disabled", "maintenance")
    providers = compute.placement("GET", "/resource_providers?name=fake-host-1").json()
    provider = providers["resource_providers"][0]["uuid"]
    traits = compute.placement("GET", f"/resource_providers/{provider}/traits").json()["traits"]
    assert "COMPUTE_STATUS_DISABLED" in traits
    for index in range(3):
        assert compute.active(f"d{index}")["OS-EXT-SRV-ATTR:host"] == "fake-host-2"
    detail = compute("GET", "/servers/detail", version="2.16").json()["servers"]
    assert {s["host_status"] for s in detail} == {"UP"}, "host 2 still runs"
    enabled = compute("PUT", f"/os-services/{host1['id']}", {"status": "enabled"}, "2.53")
    assert enabled.json()["service"]["disabled_reason"] is None
    traits = compute.placement("GET", f"/resource_providers/{provider}/traits").json()["traits"]
    assert "COMPUTE_STATUS_DISABLED" not in traits
    back = compute.active("back")
    assert (back["OS-EXT-SRV-ATTR:host"], back["host_status"]) == ("fake-host-1", "UP")

    def host_status_after(change: dict[str, Any]) -> str:
        assert compute("PUT", f"/os-services/{host1['id']}", change, "2.53").status_code == 200
        shown = compute("GET", f"/servers/{back['id']}", version="2.16").json()["server"]
        return str(shown["host_status"])

    assert host_status_after({"status": "disabled", "disabled_reason": "again"}) == "MAINTENANCE"
    assert host_status_after({"forced_down": True}) == "DOWN"
    assert host_status_after({"forced_down": False, "status": "enabled"}) == "UP"
    legacy = compute(
        "PUT",
        "/os-services/disable-log-reason",
        {"host": "fake-host-2", "binary": "nova-compute", "disabled_reason": "old api"},
        "2.11",
    ).json()
    assert legacy == {
        "service": {
            "host": "fake-host-2",
            "binary": "nova-compute",
            "status": "disabled",
            "disabled_reason": "old api",
        }
    }
    old = compute("GET", "/os-services", version="2.10").json()["services"]
    assert all(isinstance(s["id"], int) and "forced_down" not in s for s in old)
    both = compute(
        "PUT", f"/os-services/{host1['id']}", {"status": "enabled", "disabled_reason": "x"}, "2.53"
    )
    assert both.status_code == 400
    busy = compute("DELETE", f"/os-services/{host1['id']}", version="2.53")
    assert busy.status_code == 409
    tenant = _member(compute, "svc-tenant")
    assert compute("GET", "/os-services", token=tenant).status_code == 403


def test_hypervisors_show_hosts_usage_and_fields_per_microversion(compute: Compute) -> None:
    server = compute.active("h")
    host = server["OS-EXT-SRV-ATTR:host"]
    listed = compute("GET", "/os-hypervisors").json()["hypervisors"]
    assert sorted(h["hypervisor_hostname"] for h in listed) == ["fake-host-1", "fake-host-2"]
    assert all(isinstance(h["id"], int) for h in listed)
    detail = {
        h["hypervisor_hostname"]: h
        for h in compute("GET", "/os-hypervisors/detail").json()["hypervisors"]
    }
    assert detail[host]["vcpus_used"] == 1
    assert detail[host]["memory_mb_used"] == 512
    assert detail[host]["running_vms"] == 1
    assert isinstance(detail[host]["cpu_info"], str)
    assert (
        compute("GET", "/os-hypervisors/detail", version="2.28").json()["hypervisors"][0][
            "cpu_info"
        ]
        == {}
    )
    new = compute("GET", "/os-hypervisors/detail?with_servers=true", version="2.88").json()
    by_name = {h["hypervisor_hostname"]: h for h in new["hypervisors"]}
    assert "vcpus_used" not in by_name[host] and " up " in by_name[host]["uptime"]
    first = listed[0]
    uptime = compute("GET", f"/os-hypervisors/{first['id']}/uptime").json()["hypervisor"]
    assert "load average" in uptime["uptime"]
    assert (
        compute("GET", f"/os-hypervisors/{first['id']}/uptime", version="2.88").status_code == 404
    )
    assert by_name[host]["servers"] == [{"name": "h", "uuid": server["id"]}]
    other = next(name for name in by_name if name != host)
    assert by_name[other]["servers"] == []
    uuid_id = by_name[host]["id"]
    shown = compute("GET", f"/os-hypervisors/{uuid_id}?with_servers=1", version="2.53").json()
    assert shown["hypervisor"]["servers"][0]["uuid"] == server["id"]
    assert compute("GET", "/os-hypervisors/123", version="2.53").status_code == 400
    stats = compute("GET", "/os-hypervisors/statistics").json()["hypervisor_statistics"]
    assert (stats["count"], stats["vcpus_used"], stats["running_vms"]) == (2, 1, 1)
    assert compute("GET", "/os-hypervisors/statistics", version="2.88").status_code == 404
    page = compute("GET", "/os-hypervisors?limit=1", version="2.33").json()
    assert len(page["hypervisors"]) == 1 and "hypervisors_links" in page
    found = compute("GET", f"/os-hypervisors/{host}/search").json()["hypervisors"]
    assert [h["hypervisor_hostname"] for h in found] == [host]


def test_quota_set_lowers_the_limit_and_boots_get_403(compute: Compute) -> None:
    tenant = _member(compute, "quota-admin-tenant")
    project = compute.cloud.client.get(
        "/identity/v3/projects?name=quota-admin-tenant", headers={"X-Auth-Token": compute.token}
    ).json()["projects"][0]["id"]
    shown = compute("GET", f"/os-quota-sets/{project}", token=tenant).json()["quota_set"]
    assert (shown["id"], shown["instances"], shown["fixed_ips"]) == (project, 10, -1)
    newer = compute("GET", f"/os-quota-sets/{project}", version="2.57", token=tenant).json()[
        "quota_set"
    ]
    assert "fixed_ips" not in newer and "injected_files" not in newer
    assert (
        "fixed_ips"
        not in compute("GET", f"/os-quota-sets/{project}", version="2.36").json()["quota_set"]
    )
    lowered = compute("PUT", f"/os-quota-sets/{project}", {"quota_set": {"instances": 1}})
    assert lowered.status_code == 200
    assert "id" not in lowered.json()["quota_set"]
    assert lowered.json()["quota_set"]["instances"] == 1
    assert (
        compute(
            "PUT", f"/os-quota-sets/{project}", {"quota_set": {"instances": 2}}, token=tenant
        ).status_code
        == 403
    )
    gone = compute("PUT", f"/os-quota-sets/{project}", {"quota_set": {"fixed_ips": 2}}, "2.36")
    assert gone.status_code == 400
    first = compute.boot("q1", token=tenant)
    assert first.status_code == 202
    compute.wait(first.json()["server"]["id"], "ACTIVE", token=tenant)
    refused = compute.boot("q2", token=tenant)
    assert refused.status_code == 403
    assert refused.json()["forbidden"]["message"].startswith("Quota exceeded for instances")
    limits = compute("GET", "/limits", token=tenant).json()["limits"]["absolute"]
    assert (limits["maxTotalInstances"], limits["totalInstancesUsed"]) == (1, 1)
    assert (
        "maxImageMeta"
        not in compute("GET", "/limits", version="2.39", token=tenant).json()["limits"]["absolute"]
    )
    below = compute("PUT", f"/os-quota-sets/{project}", {"quota_set": {"instances": 0}})
    assert below.status_code == 400
    assert "must be greater than or equal to already used and reserved 1" in below.text
    forced = {"quota_set": {"instances": 0, "force": True}}
    assert compute("PUT", f"/os-quota-sets/{project}", forced).status_code == 200
    detail = compute("GET", f"/os-quota-sets/{project}/detail").json()["quota_set"]
    assert detail["instances"] == {"limit": 0, "in_use": 1, "reserved": 0}
    assert detail["cores"]["in_use"] == 1
    assert compute("DELETE", f"/os-quota-sets/{project}").status_code == 202
    assert compute("GET", f"/os-quota-sets/{project}").json()["quota_set"]["instances"] == 10
    other_limits = compute("GET", f"/limits?tenant_id={project}").json()["limits"]["absolute"]
    assert other_limits["totalInstancesUsed"] == 1


def test_quota_class_defaults_keypairs_and_metadata(compute: Compute) -> None:
    old = compute("GET", "/os-quota-class-sets/default").json()["quota_class_set"]
    assert old["id"] == "default" and "server_groups" not in old and "fixed_ips" in old
    new = compute("GET", "/os-quota-class-sets/default", version="2.57").json()["quota_class_set"]
    assert "server_groups" in new and "fixed_ips" not in new and "injected_files" not in new
    body = {"quota_class_set": {"key_pairs": 1, "metadata_items": 2}}
    updated = compute("PUT", "/os-quota-class-sets/default", body, "2.57")
    assert updated.status_code == 200
    assert updated.json()["quota_class_set"]["key_pairs"] == 1
    defaults = compute("GET", "/os-quota-sets/anything/defaults").json()["quota_set"]
    assert defaults["key_pairs"] == 1
    assert compute("POST", "/os-keypairs", {"keypair": {"name": "k1"}}).status_code == 200
    refused = compute("POST", "/os-keypairs", {"keypair": {"name": "k2"}})
    assert refused.status_code == 403
    assert refused.json()["forbidden"]["message"] == "Quota exceeded, too many key pairs."
    too_many = compute.boot("meta", metadata={"a": "1", "b": "2", "c": "3"})
    assert too_many.status_code == 403
    server = compute.active("meta", metadata={"a": "1"})
    grown = compute("POST", f"/servers/{server['id']}/metadata", {"metadata": {"b": "2"}})
    assert grown.status_code == 200
    over = compute("POST", f"/servers/{server['id']}/metadata", {"metadata": {"c": "3"}})
    assert over.status_code == 403
    limits = compute("GET", "/limits").json()["limits"]["absolute"]
    assert (limits["maxTotalKeypairs"], limits["maxServerMeta"]) == (1, 2)


def test_a_group_deleted_during_a_boot_leaves_no_claim(
    compute: Compute, monkeypatch: pytest.MonkeyPatch
) -> None:
    group = _group(compute, "affinity")

    def deleted_meanwhile(*_args: Any) -> bool:
        raise errors.NotFound(f"Instance group {group} could not be found.")

    monkeypatch.setattr(server_groups, "join", deleted_meanwhile)
    refused = _boot_in(compute, group, "late")
    assert refused.status_code == 400
    assert refused.json()["badRequest"]["message"] == f"Instance group {group} could not be found."
    for host in ("fake-host-1", "fake-host-2"):
        usages = compute.placement("GET", f"/resource_providers/{hosts.provider_uuid(host)}/usages")
        assert set(usages.json()["usages"].values()) == {0}
