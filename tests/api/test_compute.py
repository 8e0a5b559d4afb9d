"""The compute API as Nova clients use it, with fake hosts building the servers:
versions, flavors, keypairs, servers and their actions, scheduling on placement (traits,
VGPUs, no valid host), quotas, and cells."""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

import pytest

from pocketstack.compute import cells, hosts
from pocketstack.compute import service as compute_service
from tests.api.conftest import Cloud

LATEST = {"OpenStack-API-Version": "compute 2.96"}


class Compute:
    def __init__(self, cloud: Cloud, token: str) -> None:
        self.cloud, self.token = cloud, token
        self.image_id = ""

    def __call__(
        self,
        method: str,
        path: str,
        body: Any = None,
        version: str | None = None,
        token: str | None = None,
    ) -> Any:
        headers = {"X-Auth-Token": token or self.token}
        if version is not None:
            headers["X-OpenStack-Nova-API-Version"] = version
        return self.cloud.client.request(method, f"/compute/v2.1{path}", json=body, headers=headers)

    def placement(self, method: str, path: str, body: Any = None) -> Any:
        headers = {"X-Auth-Token": self.token, "OpenStack-API-Version": "placement 1.39"}
        return self.cloud.client.request(method, f"/placement{path}", json=body, headers=headers)

    def image(self) -> str:
        """An active image (created once per test)."""
        if not self.image_id:
            headers = {"X-Auth-Token": self.token}
            created = self.cloud.client.post(
                "/image/v2/images",
                json={"name": "tiny", "disk_format": "raw", "container_format": "bare",
                      "visibility": "public"},
                headers=headers,
            ).json()  # fmt: skip
            uploaded = self.cloud.client.put(
                f"/image/v2/images/{created['id']}/file",
                content=b"\0" * 1024,
                headers={**headers, "Content-Type": "application/octet-stream"},
            )
            assert uploaded.status_code == 204, uploaded.text
            self.image_id = created["id"]
        return self.image_id

    def boot(self, name: str = "vm", flavor: str = "1", token: str | None = None,
             **fields: Any) -> Any:  # fmt: skip
        server = {"name": name, "flavorRef": flavor, "imageRef": self.image(), "networks": "none"}
        server.update(fields)
        return self("POST", "/servers", {"server": server}, version="2.96", token=token)

    def wait(self, server_id: str, status: str, token: str | None = None) -> dict[str, Any]:
        deadline = time.monotonic() + 10
        while True:
            shown = self("GET", f"/servers/{server_id}", version="2.96", token=token)
            server = dict(shown.json()["server"])
            if server["status"] == status and server["OS-EXT-STS:task_state"] is None:
                return server
            assert time.monotonic() < deadline, f"still {server['status']}, wanted {status}"
            time.sleep(0.02)

    def active(self, name: str = "vm", **fields: Any) -> dict[str, Any]:
        booted = self.boot(name, **fields)
        assert booted.status_code == 202, booted.text
        return self.wait(booted.json()["server"]["id"], "ACTIVE")


@pytest.fixture
def compute(cloud_factory: Any) -> Iterator[Compute]:
    with cloud_factory(background=True, fake_hosts=2, fake_vgpus=1) as cloud:
        yield Compute(cloud, cloud.admin)


def _member(compute: Compute, name: str) -> str:
    cloud = compute.cloud
    project = cloud.create(cloud.admin, "project", name=name, domain_id="default")
    cloud.user_with_role(cloud.admin, f"{name}-user", project["id"], "member")
    return cloud.token(f"{name}-user", f"{name}-user-pw", project=name)


def test_version_documents_and_microversions(compute: Compute) -> None:
    doc = compute.cloud.client.get("/compute/v2.1").json()["version"]
    assert (doc["id"], doc["min_version"], doc["version"]) == ("v2.1", "2.1", "2.96")
    answered = compute("GET", "/flavors", version="2.53")
    assert answered.headers["x-compute-request-id"] == answered.headers["x-openstack-request-id"]
    assert answered.headers["X-OpenStack-Nova-API-Version"] == "2.53"
    assert answered.headers["OpenStack-API-Version"] == "compute 2.53"
    too_new = compute("GET", "/flavors", version="2.200")
    assert too_new.status_code == 406
    assert too_new.json()["computeFault"]["code"] == 406


def test_flavors_private_access_and_extra_specs(compute: Compute) -> None:
    listed = compute("GET", "/flavors/detail").json()["flavors"]
    assert [f["name"] for f in listed][:2] == ["m1.tiny", "m1.small"]
    assert listed[0]["swap"] == ""
    body = {"flavor": {"name": "secret", "ram": 64, "vcpus": 1, "disk": 0, "id": "s1",
                       "os-flavor-access:is_public": False}}  # fmt: skip
    assert compute("POST", "/flavors", body).status_code == 200
    assert compute("POST", "/flavors", body).json()["conflictingRequest"]["code"] == 409
    tenant = _member(compute, "flavor-tenant")
    assert compute("GET", "/flavors/s1", token=tenant).status_code == 404
    project_id = compute.cloud.client.get(
        "/identity/v3/projects?name=flavor-tenant", headers={"X-Auth-Token": compute.token}
    ).json()["projects"][0]["id"]
    granted = compute("POST", "/flavors/s1/action", {"addTenantAccess": {"tenant": project_id}})
    assert granted.json()["flavor_access"] == [{"flavor_id": "s1", "tenant_id": project_id}]
    assert compute("GET", "/flavors/s1", token=tenant).status_code == 200
    specs = {"extra_specs": {"hw:cpu_policy": "dedicated"}}
    assert compute("POST", "/flavors/s1/os-extra_specs", specs).status_code == 200
    shown = compute("GET", "/flavors/s1", version="2.61").json()["flavor"]
    assert shown["extra_specs"] == {"hw:cpu_policy": "dedicated"}
    assert shown["swap"] == ""
    assert compute("GET", "/flavors/s1", version="2.75").json()["flavor"]["swap"] == 0
    bad = compute("POST", "/flavors", {"flavor": {"name": "x", "ram": 0, "vcpus": 1, "disk": 0}})
    assert "ram" in bad.json()["badRequest"]["message"]
    assert compute("POST", "/flavors", body, token=tenant).status_code == 403


def test_keypairs_generated_imported_and_private_to_their_user(compute: Compute) -> None:
    made = compute("POST", "/os-keypairs", {"keypair": {"name": "k1"}}, version="2.2")
    assert made.status_code == 201
    generated = made.json()["keypair"]
    assert generated["private_key"].startswith("-----BEGIN RSA PRIVATE KEY-----")
    assert generated["type"] == "ssh"
    public = generated["public_key"]
    imported = compute(
        "POST", "/os-keypairs", {"keypair": {"name": "k2", "public_key": public}}
    ).json()["keypair"]
    assert imported["fingerprint"] == generated["fingerprint"]
    assert "private_key" not in imported
    again = compute("POST", "/os-keypairs", {"keypair": {"name": "k2", "public_key": public}})
    assert again.status_code == 409
    junk = compute("POST", "/os-keypairs", {"keypair": {"name": "k3", "public_key": "ssh-rsa x"}})
    assert junk.status_code == 400
    listed = compute("GET", "/os-keypairs").json()["keypairs"]
    assert sorted(k["keypair"]["name"] for k in listed) == ["k1", "k2"]
    other = _member(compute, "key-tenant")
    assert compute("GET", "/os-keypairs", token=other).json()["keypairs"] == []
    assert compute("DELETE", "/os-keypairs/k1", version="2.2").status_code == 204
    assert compute("GET", "/os-keypairs/k1").status_code == 404


def test_server_boots_to_active_and_shows_fields_per_microversion(compute: Compute) -> None:
    server = compute.active("web", metadata={"role": "web"}, tags=["blue"],
                            description="front")  # fmt: skip
    assert server["OS-EXT-STS:power_state"] == 1
    assert server["OS-EXT-SRV-ATTR:host"] in ("fake-host-1", "fake-host-2")
    assert server["flavor"]["original_name"] == "m1.tiny"
    assert (server["tags"], server["description"], server["locked"]) == (["blue"], "front", False)
    old = compute("GET", f"/servers/{server['id']}").json()["server"]
    assert old["flavor"]["id"] == "1"
    for newer in ("locked", "description", "tags", "locked_reason", "server_groups"):
        assert newer not in old
    detail = compute("GET", "/servers/detail", version="2.96").json()["servers"]
    assert "server_groups" not in detail[0]
    consumer = compute.placement("GET", f"/allocations/{server['id']}").json()
    (allocation,) = consumer["allocations"].values()
    assert allocation["resources"] == {"VCPU": 1, "MEMORY_MB": 512, "DISK_GB": 1}
    shown_by_name = compute("GET", "/servers?name=^we", version="2.96").json()["servers"]
    assert [s["name"] for s in shown_by_name] == ["web"]


def test_actions_move_through_upstream_states(compute: Compute) -> None:
    server_id = compute.active()["id"]

    def act(body: dict[str, Any], code: int = 202) -> Any:
        response = compute("POST", f"/servers/{server_id}/action", body, version="2.96")
        assert response.status_code == code, response.text
        return response

    act({"os-stop": None})
    assert compute.wait(server_id, "SHUTOFF")["OS-EXT-STS:power_state"] == 4
    refused = act({"pause": None}, 409)
    assert refused.json()["conflictingRequest"]["message"] == (
        f"Cannot 'pause' instance {server_id} while it is in vm_state stopped"
    )
    act({"os-start": None})
    compute.wait(server_id, "ACTIVE")
    act({"pause": None})
    assert compute.wait(server_id, "PAUSED")["OS-EXT-STS:power_state"] == 3
    act({"unpause": None})
    compute.wait(server_id, "ACTIVE")
    act({"suspend": None})
    compute.wait(server_id, "SUSPENDED")
    act({"resume": None})
    compute.wait(server_id, "ACTIVE")
    act({"reboot": {"type": "HARD"}})
    compute.wait(server_id, "ACTIVE")
    assert act({"rescue": None}, 200).json() == {}, "no driver can set a guest's password"
    compute.wait(server_id, "RESCUE")
    act({"unrescue": None})
    compute.wait(server_id, "ACTIVE")
    act({"resize": {"flavorRef": "2"}})
    resized = compute.wait(server_id, "VERIFY_RESIZE")
    assert resized["flavor"]["original_name"] == "m1.small"
    act({"revertResize": None})
    assert compute.wait(server_id, "ACTIVE")["flavor"]["original_name"] == "m1.tiny"
    act({"resize": {"flavorRef": "2"}})
    compute.wait(server_id, "VERIFY_RESIZE")
    act({"confirmResize": None}, 204)
    compute.wait(server_id, "ACTIVE")
    consumer = compute.placement("GET", f"/allocations/{server_id}").json()
    (allocation,) = consumer["allocations"].values()
    assert allocation["resources"]["MEMORY_MB"] == 2048
    output = act({"os-getConsoleOutput": {"length": 2}}, 200).json()["output"]
    assert output.strip() == "vm login:"
    actions = compute("GET", f"/servers/{server_id}/os-instance-actions").json()
    assert actions["instanceActions"][0]["action"] == "confirmResize"
    assert actions["instanceActions"][-1]["action"] == "create"


def test_locked_server_refuses_its_owner_until_unlocked(compute: Compute) -> None:
    tenant = _member(compute, "lock-tenant")
    booted = compute.boot("mine", token=tenant)
    server_id = booted.json()["server"]["id"]
    compute.wait(server_id, "ACTIVE", token=tenant)

    def act(body: dict[str, Any], token: str) -> Any:
        return compute("POST", f"/servers/{server_id}/action", body, version="2.96", token=token)

    assert act({"lock": {"locked_reason": "maintenance"}}, tenant).status_code == 202
    shown = compute("GET", f"/servers/{server_id}", version="2.96", token=tenant).json()
    assert shown["server"]["locked_reason"] == "maintenance"
    refused = act({"os-stop": None}, tenant)
    assert refused.json()["conflictingRequest"]["message"] == f"Instance {server_id} is locked"
    assert compute("DELETE", f"/servers/{server_id}", token=tenant).status_code == 409
    assert act({"unlock": None}, tenant).status_code == 202
    assert act({"os-stop": None}, tenant).status_code == 202
    stranger = _member(compute, "lock-stranger")
    assert compute("GET", f"/servers/{server_id}", token=stranger).status_code == 404


def test_delete_removes_the_server_and_frees_its_resources(compute: Compute) -> None:
    kept = compute.active("kept")["id"]
    server_id = compute.active()["id"]
    assert compute("DELETE", f"/servers/{server_id}").status_code == 204
    deadline = time.monotonic() + 10
    while compute("GET", f"/servers/{server_id}").status_code != 404:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    assert compute.placement("GET", f"/allocations/{server_id}").json()["allocations"] == {}
    listed = compute("GET", "/servers/detail?deleted=true&status=DELETED").json()["servers"]
    assert [s["id"] for s in listed] == [server_id]
    only_deleted = compute("GET", "/servers?deleted=true").json()["servers"]
    assert [s["id"] for s in only_deleted] == [server_id]
    since = compute("GET", "/servers/detail?changes-since=2000-01-01T00:00:00Z").json()
    assert {s["id"]: s["status"] for s in since["servers"]} == {
        kept: "ACTIVE",
        server_id: "DELETED",
    }


def test_scheduling_follows_traits_vgpus_and_capacity(compute: Compute) -> None:
    providers = compute.placement("GET", "/resource_providers?name=fake-host-2").json()
    host2 = providers["resource_providers"][0]
    assert compute.placement("PUT", "/traits/CUSTOM_FAST").status_code == 201
    traits = {"resource_provider_generation": host2["generation"], "traits": ["CUSTOM_FAST"]}
    assert compute.placement(
        "PUT", f"/resource_providers/{host2['uuid']}/traits", traits
    ).is_success
    flavors = [("fast", {"trait:CUSTOM_FAST": "required"}), ("gpu", {"resources:VGPU": "1"})]
    for name, specs in flavors:
        body = {"flavor": {"name": name, "ram": 64, "vcpus": 1, "disk": 0, "id": name}}
        assert compute("POST", "/flavors", body).status_code == 200
        assert compute("POST", f"/flavors/{name}/os-extra_specs", {"extra_specs": specs}).is_success
    for index in range(3):
        assert compute.active(f"fast-{index}", flavor="fast")["OS-EXT-SRV-ATTR:host"] == (
            "fake-host-2"
        )
    gpu_hosts = set()
    for index in range(2):
        server = compute.active(f"gpu-{index}", flavor="gpu")
        gpu_hosts.add(server["OS-EXT-SRV-ATTR:host"])
        consumer = compute.placement("GET", f"/allocations/{server['id']}").json()
        by_class = {rc: rp for rp, a in consumer["allocations"].items() for rc in a["resources"]}
        assert by_class["VGPU"] != by_class["VCPU"], "the VGPU sits on the GPU child provider"
    assert gpu_hosts == {"fake-host-1", "fake-host-2"}, "each fake host has one VGPU"
    third = compute.boot("gpu-2", flavor="gpu").json()["server"]["id"]
    failed = compute.wait(third, "ERROR")
    assert failed["fault"]["message"].startswith("No valid host was found.")
    assert failed["fault"]["code"] == 500
    assert failed["OS-EXT-SRV-ATTR:host"] is None


def test_quota_refuses_the_server_past_the_limit(compute: Compute) -> None:
    tenant = _member(compute, "quota-tenant")
    for index in range(10):
        assert compute.boot(f"q-{index}", token=tenant).status_code == 202
    refused = compute.boot("q-10", token=tenant)
    assert refused.status_code == 403
    assert refused.json()["forbidden"]["message"].startswith("Quota exceeded for instances")


def test_bad_boot_requests_are_refused_with_the_field_named(compute: Compute) -> None:
    no_flavor = compute.boot(flavor="nope")
    assert no_flavor.json()["badRequest"]["message"] == "Flavor nope could not be found."
    no_key = compute.boot(key_name="nokey")
    assert no_key.json()["badRequest"]["message"] == "Invalid key_name provided."
    server = {"name": "x", "flavorRef": "1", "imageRef": compute.image()}
    unknown = compute("POST", "/servers", {"server": {**server, "bogus": 1}})
    assert "'bogus' was unexpected" in unknown.json()["badRequest"]["message"]
    no_networks = compute("POST", "/servers", {"server": server}, version="2.37")
    assert "'networks' is a required property" in no_networks.json()["badRequest"]["message"]


def test_a_restarted_agent_rebuilds_what_its_host_lost(cloud_factory: Any) -> None:
    with cloud_factory(background=True, fake_hosts=1) as cloud:
        compute = Compute(cloud, cloud.admin)
        server_id = compute.active()["id"]
        image = compute.image()
    with cloud_factory(background=True, fake_hosts=1) as cloud:
        compute = Compute(cloud, cloud.admin)
        compute.image_id = image
        assert compute.wait(server_id, "ACTIVE")["OS-EXT-STS:power_state"] == 1
        output = compute("POST", f"/servers/{server_id}/action", {"os-getConsoleOutput": {}})
        assert "fake boot 0" in output.json()["output"], "the fake host booted it again"


def test_a_guest_that_goes_down_by_itself_makes_its_server_shutoff(cloud_factory: Any) -> None:
    with cloud_factory(background=True, fake_hosts=1) as cloud:
        compute = Compute(cloud, cloud.admin)
        server = compute.active()
        driver = hosts.driver_of(cloud.runtime, server["OS-EXT-SRV-ATTR:host"])
        driver.crash(server["id"])  # type: ignore[attr-defined]
        stopped = compute.wait(server["id"], "SHUTOFF")
        assert stopped["OS-EXT-STS:power_state"] == 4
        actions = compute("GET", f"/servers/{server['id']}/os-instance-actions").json()
        assert actions["instanceActions"][0]["action"] == "stop"
        # It stays off (nothing restarts it), and starts again when asked.
        time.sleep(0.1)
        assert driver.guests()[server["id"]].power_state == 4
        compute("POST", f"/servers/{server['id']}/action", {"os-start": None})
        compute.wait(server["id"], "ACTIVE")


SORTS = sorted(compute_service.SORT_KEYS)


def test_listing_across_three_cells_pages_like_one_database(cloud_factory: Any) -> None:
    with cloud_factory(fake_hosts=0) as cloud:
        for name in ("cell2", "cell3"):
            cells.create_cell(cloud.runtime, name)
    with cloud_factory(background=True, fake_hosts=3) as cloud:
        compute = Compute(cloud, cloud.admin)
        ids = []
        for index in range(6):
            booted = compute.boot(f"s{index % 4}", flavor="1")
            ids.append(booted.json()["server"]["id"])
        for server_id in ids:
            compute.wait(server_id, "ACTIVE")
        compute("POST", f"/servers/{ids[0]}/action", {"os-stop": None})
        compute.wait(ids[0], "SHUTOFF")
        everything = compute("GET", "/servers/detail").json()["servers"]
        used_hosts = {s["OS-EXT-SRV-ATTR:host"] for s in everything}
        assert used_hosts == {"fake-host-1", "fake-host-2", "fake-host-3"}
        for key in SORTS:
            for direction in ("asc", "desc"):
                query = f"sort_key={key}&sort_dir={direction}&sort_key=uuid&sort_dir=asc"
                whole = [s["id"] for s in compute("GET", f"/servers?{query}").json()["servers"]]
                assert sorted(whole) == sorted(ids)
                paged, marker = [], ""
                while True:
                    page = compute("GET", f"/servers?{query}&limit=2{marker}").json()
                    paged += [s["id"] for s in page["servers"]]
                    if "servers_links" not in page:
                        break
                    marker = f"&marker={paged[-1]}"
                assert paged == whole, f"paging by {key} {direction} differs"
        cell3 = cells.set_disabled(cloud.runtime, "cell3", True)
        placed = [compute.active(f"after-{index}") for index in range(4)]
        disabled_hosts = {
            state.host
            for state in hosts.host_states(cloud.runtime).values()
            if state.cell_uuid == cell3.uuid
        }
        assert disabled_hosts
        assert not {s["OS-EXT-SRV-ATTR:host"] for s in placed} & disabled_hosts
        assert len(compute("GET", "/servers").json()["servers"]) == 10


def test_a_failed_build_is_rescheduled_to_another_host(compute: Compute) -> None:
    runner = compute.cloud.runtime.state["compute.runner"]
    runner.agents["fake-host-1"].driver.failing_builds = True
    placed = [compute.active(f"r{index}") for index in range(4)]
    assert {s["OS-EXT-SRV-ATTR:host"] for s in placed} == {"fake-host-2"}
    for server in placed:
        consumer = compute.placement("GET", f"/allocations/{server['id']}").json()
        assert list(consumer["allocations"]) == [hosts.provider_uuid("fake-host-2")]
    runner.agents["fake-host-2"].driver.failing_builds = True
    failed = compute.boot("doomed").json()["server"]["id"]
    shown = compute.wait(failed, "ERROR")
    assert shown["fault"]["message"].startswith("No valid host was found.")
    assert compute.placement("GET", f"/allocations/{failed}").json()["allocations"] == {}


def test_rebuild_reset_state_and_console_tail_as_nova(compute: Compute) -> None:
    server_id = compute.active("rb")["id"]
    assert compute("POST", "/os-keypairs", {"keypair": {"name": "rbkey"}}).status_code == 200
    body = {"rebuild": {"imageRef": compute.image(), "key_name": "rbkey", "user_data": "aGk="}}
    rebuilt = compute("POST", f"/servers/{server_id}/action", body, version="2.57")
    assert rebuilt.status_code == 202, rebuilt.text
    view = rebuilt.json()["server"]
    assert (view["key_name"], view["user_data"]) == ("rbkey", "aGk=")
    assert "adminPass" not in view and "OS-EXT-STS:vm_state" not in view
    compute.wait(server_id, "ACTIVE")
    console = compute("POST", f"/servers/{server_id}/action", {"os-getConsoleOutput": {}})
    assert "fake boot 1 of rb" in console.json()["output"], "same image, new root disk"
    tail = compute("POST", f"/servers/{server_id}/action", {"os-getConsoleOutput": {"length": 3}})
    assert len(tail.json()["output"].split("\n")) == 3
    reset = compute("POST", f"/servers/{server_id}/action", {"os-resetState": {"state": "error"}})
    assert reset.status_code == 202
    assert compute.wait(server_id, "ERROR")["OS-EXT-STS:vm_state"] == "error"
    restore = compute("POST", f"/servers/{server_id}/action", {"restore": None})
    assert restore.json()["conflictingRequest"]["message"] == (
        f"Cannot 'restore' instance {server_id} while it is in vm_state error"
    )


def test_small_upstream_forms(compute: Compute) -> None:
    versions = compute.cloud.client.get("/compute/").json()["versions"]
    assert [v["id"] for v in versions] == ["v2.0", "v2.1"]
    assert compute.cloud.client.get("/compute/v2/").json()["version"]["id"] == "v2.0"
    numeric = {"flavor": {"name": "numeric", "ram": 64, "vcpus": 1, "disk": 0, "id": 1572044989}}
    assert compute("POST", "/flavors", numeric).json()["flavor"]["id"] == "1572044989"
    cert = compute("POST", "/os-keypairs", {"keypair": {"name": "cert", "type": "x509"}},
                   version="2.2").json()["keypair"]  # fmt: skip
    assert cert["public_key"].startswith("-----BEGIN CERTIFICATE-----")
    long_form = "0000:0000:0000:0000:0000:babe:220.12.22.2"
    server = compute.active("ip", accessIPv6=long_form)
    assert server["accessIPv6"] == "::babe:dc0c:1602"


def test_create_image_snapshots_the_server_into_a_private_image(compute: Compute) -> None:
    server_id = compute.active("snap")["id"]
    body = {"createImage": {"name": "snap-image", "metadata": {"purpose": "backup"}}}
    answer = compute("POST", f"/servers/{server_id}/action", body, version="2.45")
    assert answer.status_code == 202, answer.text
    image_id = answer.json()["image_id"]
    headers = {"X-Auth-Token": compute.token}
    image = compute.cloud.client.get(f"/image/v2/images/{image_id}", headers=headers).json()
    assert (image["status"], image["visibility"], image["name"]) == (
        "active",
        "private",
        "snap-image",
    )
    assert (image["image_type"], image["instance_uuid"]) == ("snapshot", server_id)
    assert (image["base_image_ref"], image["purpose"]) == (compute.image(), "backup")
    data = compute.cloud.client.get(f"/image/v2/images/{image_id}/file", headers=headers)
    assert data.content == b"\0" * 1024, "the fake guest's disk is its image"
    old = compute("POST", f"/servers/{server_id}/action", {"createImage": {"name": "old"}})
    assert old.status_code == 202
    assert "/image/v2/images/" in old.headers["Location"]
    booted = compute.active("from-snap", imageRef=image_id)
    assert booted["image"]["id"] == image_id


def test_heal_releases_claims_a_crash_left_without_a_server(compute: Compute) -> None:
    server = compute.active("kept")
    provider = hosts.provider_uuid(server["OS-EXT-SRV-ATTR:host"])
    leaked = "4f0b5d3e-52a4-4b89-8d2a-6c1b1f0e9a11"
    claim = {
        "allocations": {provider: {"resources": {"VCPU": 2}}},
        "project_id": "p",
        "user_id": "u",
        "consumer_generation": None,
        "consumer_type": "INSTANCE",
    }
    assert compute.placement("PUT", f"/allocations/{leaked}", claim).status_code == 204
    assert compute_service.heal(compute.cloud.runtime, older_than=timedelta(0)) == (0, 1)
    assert compute.placement("GET", f"/allocations/{leaked}").json()["allocations"] == {}
    kept = compute.placement("GET", f"/allocations/{server['id']}").json()["allocations"]
    assert list(kept) == [provider]


def test_review_findings_stay_fixed(compute: Compute) -> None:
    """A failed build keeps no host (nothing rebuilds it without a claim); an action on a
    server without a host is refused; an admin's reset survives the host's resync; a
    locked resize cannot be reverted by its owner; a resize past quota is refused."""
    runner = compute.cloud.runtime.state["compute.runner"]
    for agent in runner.agents.values():
        agent.driver.failing_builds = True
    failed = compute.boot("broken").json()["server"]["id"]
    shown = compute.wait(failed, "ERROR")
    assert shown["OS-EXT-SRV-ATTR:host"] is None
    assert shown["fault"]["message"].count("No valid host was found.") == 1
    reboot = compute("POST", f"/servers/{failed}/action", {"reboot": {"type": "HARD"}})
    assert reboot.json()["conflictingRequest"]["message"] == f"Instance {failed} is not ready"
    for agent in runner.agents.values():
        agent.driver.failing_builds = False

    server_id = compute.active("kept")["id"]
    compute("POST", f"/servers/{server_id}/action", {"os-resetState": {"state": "error"}})
    runner.resync()
    assert compute.wait(server_id, "ERROR")["OS-EXT-STS:vm_state"] == "error"
    compute("POST", f"/servers/{server_id}/action", {"os-resetState": {"state": "active"}})
    compute.wait(server_id, "ACTIVE")

    tenant = _member(compute, "review-tenant")
    mine = compute.boot("mine", token=tenant).json()["server"]["id"]
    compute.wait(mine, "ACTIVE", token=tenant)
    resize = {"resize": {"flavorRef": "2"}}
    assert compute("POST", f"/servers/{mine}/action", resize, token=tenant).status_code == 202
    compute.wait(mine, "VERIFY_RESIZE", token=tenant)
    compute("POST", f"/servers/{mine}/action", {"lock": None})
    revert = compute("POST", f"/servers/{mine}/action", {"revertResize": None}, token=tenant)
    assert revert.status_code == 409
    compute("POST", f"/servers/{mine}/action", {"unlock": None})
    compute("POST", f"/servers/{mine}/action", {"confirmResize": None}, token=tenant)
    compute.wait(mine, "ACTIVE", token=tenant)
    huge = {"flavor": {"name": "huge", "ram": 64, "vcpus": 32, "disk": 1, "id": "huge"}}
    assert compute("POST", "/flavors", huge).status_code == 200
    too_big = {"resize": {"flavorRef": "huge"}}  # 32 cores: past the default 20
    refused = compute("POST", f"/servers/{mine}/action", too_big, token=tenant)
    assert refused.status_code == 403
    assert refused.json()["forbidden"]["message"].startswith("Quota exceeded for cores")


def test_parallel_boots_never_pass_the_quota(compute: Compute) -> None:
    tenant = _member(compute, "race-tenant")
    project_id = compute.cloud.client.get(
        "/identity/v3/projects?name=race-tenant", headers={"X-Auth-Token": compute.token}
    ).json()["projects"][0]["id"]
    limit = {"quota_set": {"instances": 3}}
    assert compute("PUT", f"/os-quota-sets/{project_id}", limit).status_code == 200
    with ThreadPoolExecutor(6) as pool:
        codes = list(pool.map(lambda i: compute.boot(f"r{i}", token=tenant).status_code, range(12)))
    assert set(codes) <= {202, 403}
    listed = compute("GET", "/servers", token=tenant).json()["servers"]
    assert 1 <= len(listed) == codes.count(202) <= 3


def test_a_stopped_server_stays_off_through_resize(compute: Compute) -> None:
    server_id = compute.active("cold")["id"]

    def act(body: dict[str, Any]) -> None:
        answer = compute("POST", f"/servers/{server_id}/action", body, version="2.96")
        assert answer.status_code in (202, 204), answer.text

    act({"os-stop": None})
    compute.wait(server_id, "SHUTOFF")
    act({"resize": {"flavorRef": "2"}})
    assert compute.wait(server_id, "VERIFY_RESIZE")["OS-EXT-STS:power_state"] == 4
    act({"confirmResize": None})
    assert compute.wait(server_id, "SHUTOFF")["OS-EXT-STS:power_state"] == 4
    act({"resize": {"flavorRef": "3"}})
    compute.wait(server_id, "VERIFY_RESIZE")
    act({"revertResize": None})
    reverted = compute.wait(server_id, "SHUTOFF")
    assert (reverted["OS-EXT-STS:power_state"], reverted["flavor"]["original_name"]) == (
        4,
        "m1.small",
    )


def test_servers_get_ports_on_the_networks_they_ask_for(cloud_factory: Any) -> None:
    with cloud_factory(background=True, fake_hosts=1) as cloud:
        compute = Compute(cloud, cloud.admin)
        headers = {"X-Auth-Token": cloud.admin}

        def neutron(method: str, path: str, body: Any = None) -> Any:
            return cloud.client.request(method, f"/networking/v2.0{path}", json=body,
                                        headers=headers)  # fmt: skip

        network = neutron("POST", "/networks", {"network": {"name": "private"}}).json()["network"]
        neutron("POST", "/subnets", {"subnet": {"network_id": network["id"], "ip_version": 4,
                                                "cidr": "100.64.80.0/24"}})  # fmt: skip
        server = compute.active(networks=[{"uuid": network["id"]}])
        assert server["addresses"]["private"][0]["addr"] == "100.64.80.2"
        assert server["addresses"]["private"][0]["OS-EXT-IPS:type"] == "fixed"
        ips = compute("GET", f"/servers/{server['id']}/ips").json()["addresses"]
        assert ips == {"private": [{"version": 4, "addr": "100.64.80.2"}]}
        assert compute("GET", f"/servers/{server['id']}/ips/private").json() == ips
        assert compute("GET", f"/servers/{server['id']}/ips/other").status_code == 404
        port = neutron("GET", f"/ports?device_id={server['id']}").json()["ports"][0]
        assert port["binding:host_id"] == server["OS-EXT-SRV-ATTR:host"]
        assert port["device_owner"] == "compute:nova" and port["status"] == "ACTIVE"
        assert port["dns_name"] == server["OS-EXT-SRV-ATTR:hostname"]
        # A port the user made is bound to the server, and only unbound when it goes.
        own = neutron("POST", "/ports", {"port": {"network_id": network["id"]}}).json()["port"]
        second = compute.active("second", networks=[{"port": own["id"]}])
        in_use = compute.boot("third", networks=[{"port": own["id"]}])
        assert in_use.status_code == 409
        missing = compute.boot(
            "fourth", networks=[{"uuid": "8f1c6f3e-0000-4000-8000-000000000000"}]
        )
        assert missing.status_code == 400
        auto = compute.active("fifth", networks="auto")
        assert list(auto["addresses"]) == ["private"]
        assert auto["security_groups"] == [{"name": "default"}]
        group = neutron("POST", "/security-groups", {"security_group": {"name": "web"}})
        assert group.status_code == 201
        web = compute.active("sixth", networks="auto", security_groups=[{"name": "web"}])
        assert web["security_groups"] == [{"name": "web"}]
        unknown = compute.boot("seventh", networks="auto", security_groups=[{"name": "nope"}])
        assert unknown.status_code == 400 and "nope" in unknown.text
        for made in (server, second, auto, web):
            assert compute("DELETE", f"/servers/{made['id']}").status_code == 204
        deadline = time.monotonic() + 10
        while neutron("GET", f"/ports?device_id={server['id']}").json()["ports"]:
            assert time.monotonic() < deadline, "the server's port outlived it"
            time.sleep(0.05)
        kept = neutron("GET", f"/ports/{own['id']}").json()["port"]
        assert kept["device_id"] == "" and kept["binding:host_id"] == ""
