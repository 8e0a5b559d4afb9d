"""Placement as osc-placement and nova use it: versions, providers, inventories, traits,
aggregates, resource classes, usages, and the 409s that protect concurrent writers."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from tests.api.conftest import Cloud


class Placement:
    def __init__(self, cloud: Cloud, version: str = "1.39") -> None:
        self.cloud, self.version, self.token = cloud, version, cloud.admin

    def __call__(
        self,
        method: str,
        path: str,
        body: Any = None,
        version: str | None = None,
        token: str | None = None,
    ) -> Any:
        headers = {
            "OpenStack-API-Version": f"placement {version or self.version}",
            "X-Auth-Token": token or self.token,
        }
        return self.cloud.client.request(method, f"/placement{path}", json=body, headers=headers)

    def provider(self, name: str, **fields: Any) -> dict[str, Any]:
        response = self("POST", "/resource_providers", {"name": name, **fields})
        assert response.status_code == 200, response.text
        return dict(response.json())


@pytest.fixture
def placement(cloud: Cloud) -> Placement:
    return Placement(cloud)


def test_version_document_and_negotiation(cloud: Cloud) -> None:
    root = cloud.client.get("/placement/")
    assert root.status_code == 200
    assert root.json()["versions"][0]["max_version"] == "1.39"
    assert root.headers["openstack-api-version"] == "placement 1.0"
    too_new = cloud.client.get("/placement/", headers={"OpenStack-API-Version": "placement 1.99"})
    assert too_new.status_code == 406
    error = too_new.json()["errors"][0]
    assert (error["min_version"], error["max_version"]) == ("1.0", "1.39")
    latest = cloud.client.get("/placement/", headers={"OpenStack-API-Version": "placement latest"})
    assert latest.headers["openstack-api-version"] == "placement 1.39"
    assert "no-cache" in latest.headers["cache-control"]
    bad = cloud.client.get("/placement/", headers={"OpenStack-API-Version": "placement one"})
    assert bad.status_code == 400


def test_providers_need_a_token_and_admin(cloud: Cloud, placement: Placement) -> None:
    assert cloud.client.get("/placement/resource_providers").status_code == 401
    admin = cloud.admin
    project = cloud.create(admin, "project", name="tenant")
    cloud.user_with_role(admin, "tenant-user", project["id"], "member")
    member = cloud.token("tenant-user", "tenant-user-pw", project="tenant")
    denied = placement("POST", "/resource_providers", {"name": "x"}, token=member)
    assert denied.status_code == 403
    assert denied.json()["errors"][0]["code"] == "placement.undefined_code"


def test_provider_tree_fields_by_version(placement: Placement) -> None:
    root = placement.provider("cn1")
    child = placement.provider("cn1-numa0", parent_provider_uuid=root["uuid"])
    assert child["root_provider_uuid"] == root["uuid"]
    assert child["parent_provider_uuid"] == root["uuid"]
    old = placement("GET", f"/resource_providers/{child['uuid']}", version="1.13").json()
    assert "root_provider_uuid" not in old
    assert old["links"][0] == {
        "rel": "self",
        "href": f"/placement/resource_providers/{child['uuid']}",
    }
    assert {link["rel"] for link in old["links"]} == {
        "self",
        "inventories",
        "usages",
        "aggregates",
        "traits",
        "allocations",
    }
    in_tree = placement("GET", f"/resource_providers?in_tree={child['uuid']}").json()
    assert {p["name"] for p in in_tree["resource_providers"]} == {"cn1", "cn1-numa0"}
    gone = placement("DELETE", f"/resource_providers/{root['uuid']}")
    assert gone.status_code == 409
    assert gone.json()["errors"][0]["code"] == "placement.resource_provider.cannot_delete_parent"
    created_old = placement("POST", "/resource_providers", {"name": "legacy"}, version="1.19")
    assert created_old.status_code == 201 and created_old.content == b""
    assert created_old.headers["location"].endswith(
        "/resource_providers/" + created_old.headers["location"].rsplit("/", 1)[1]
    )


def test_duplicate_names_and_bad_bodies(placement: Placement) -> None:
    placement.provider("dup")
    again = placement("POST", "/resource_providers", {"name": "dup"})
    assert again.status_code == 409
    assert again.json()["errors"][0]["code"] == "placement.duplicate_name"
    bad = placement("POST", "/resource_providers", {"name": "x", "bogus": 1})
    assert bad.status_code == 400
    assert "JSON does not validate" in bad.json()["errors"][0]["detail"]
    early = placement(
        "POST",
        "/resource_providers",
        {"name": "y", "parent_provider_uuid": str(uuid.uuid4())},
        version="1.13",
    )
    assert early.status_code == 400
    unknown_query = placement("GET", "/resource_providers?colour=red")
    assert unknown_query.status_code == 400


def test_inventories_and_generations(placement: Placement) -> None:
    rp = placement.provider("compute")
    path = f"/resource_providers/{rp['uuid']}/inventories"
    body = {
        "resource_provider_generation": 0,
        "inventories": {
            "VCPU": {"total": 8, "allocation_ratio": 4.0},
            "MEMORY_MB": {"total": 4096, "reserved": 512},
        },
    }
    put = placement("PUT", path, body)
    assert put.status_code == 200, put.text
    assert put.json()["resource_provider_generation"] == 1
    assert put.json()["inventories"]["VCPU"]["max_unit"] == 2147483647
    stale = placement("PUT", path, body)
    assert stale.status_code == 409
    assert stale.json()["errors"][0]["code"] == "placement.concurrent_update"
    one = placement("PUT", f"{path}/VCPU", {"resource_provider_generation": 1, "total": 16})
    assert one.status_code == 200 and one.json()["total"] == 16
    wrong_type = placement(
        "PUT", f"{path}/VCPU", {"resource_provider_generation": 2, "total": "16"}
    )
    assert wrong_type.status_code == 400
    unknown_class = placement(
        "PUT",
        path,
        {"resource_provider_generation": 2, "inventories": {"CUSTOM_NOPE": {"total": 1}}},
    )
    assert unknown_class.status_code == 400
    assert placement("DELETE", f"{path}/MEMORY_MB").status_code == 204
    listed = placement("GET", path).json()
    assert list(listed["inventories"]) == ["VCPU"]
    assert listed["resource_provider_generation"] == 3
    usages = placement("GET", f"/resource_providers/{rp['uuid']}/usages").json()
    assert usages["usages"] == {"VCPU": 0}
    filtered = placement("GET", "/resource_providers?resources=VCPU:16").json()
    assert [p["name"] for p in filtered["resource_providers"]] == ["compute"]
    assert (
        placement("GET", "/resource_providers?resources=VCPU:17").json()["resource_providers"] == []
    )


def test_resource_classes_and_traits(placement: Placement) -> None:
    assert placement("PUT", "/resource_classes/CUSTOM_FPGA").status_code == 201
    assert placement("PUT", "/resource_classes/CUSTOM_FPGA").status_code == 204
    assert placement("PUT", "/resource_classes/VCPU").status_code == 400
    names = [rc["name"] for rc in placement("GET", "/resource_classes").json()["resource_classes"]]
    assert names[0] == "VCPU" and "CUSTOM_FPGA" in names
    assert placement("DELETE", "/resource_classes/VCPU").status_code == 400
    assert placement("PUT", "/traits/CUSTOM_RACK_A").status_code == 201
    assert placement("PUT", "/traits/NOT_CUSTOM").status_code == 400
    assert placement("GET", "/traits/HW_CPU_X86_AVX2").status_code == 204
    customs = placement("GET", "/traits?name=startswith:CUSTOM_").json()["traits"]
    assert customs == ["CUSTOM_RACK_A"]
    rp = placement.provider("traited")
    path = f"/resource_providers/{rp['uuid']}/traits"
    put = placement(
        "PUT",
        path,
        {"traits": ["CUSTOM_RACK_A", "HW_CPU_X86_AVX2"], "resource_provider_generation": 0},
    )
    assert put.status_code == 200 and put.json()["resource_provider_generation"] == 1
    assert placement("DELETE", "/traits/CUSTOM_RACK_A").status_code == 409
    assert placement("DELETE", "/traits/HW_CPU_X86_AVX2").status_code == 400
    with_trait = placement("GET", "/resource_providers?required=CUSTOM_RACK_A").json()
    assert [p["name"] for p in with_trait["resource_providers"]] == ["traited"]
    without = placement("GET", "/resource_providers?required=!CUSTOM_RACK_A").json()
    assert "traited" not in [p["name"] for p in without["resource_providers"]]
    associated = placement("GET", "/traits?associated=true").json()["traits"]
    assert associated == ["CUSTOM_RACK_A", "HW_CPU_X86_AVX2"]


def test_aggregates_by_version(placement: Placement) -> None:
    rp = placement.provider("agg-member")
    path = f"/resource_providers/{rp['uuid']}/aggregates"
    agg = str(uuid.uuid4())
    legacy = placement("PUT", path, [agg], version="1.18")
    assert legacy.status_code == 200
    assert legacy.json() == {"aggregates": [agg]}
    current = placement("GET", path).json()
    assert current == {"aggregates": [agg], "resource_provider_generation": 1}
    stale = placement("PUT", path, {"aggregates": [], "resource_provider_generation": 0})
    assert stale.status_code == 409
    member = placement("GET", f"/resource_providers?member_of={agg}").json()
    assert [p["name"] for p in member["resource_providers"]] == ["agg-member"]
    not_member = placement("GET", f"/resource_providers?member_of=!{agg}").json()
    assert "agg-member" not in [p["name"] for p in not_member["resource_providers"]]
    assert placement("GET", path, version="1.0").status_code == 404


def _compute_node(placement: Placement, name: str, vcpus: int = 4) -> str:
    rp = placement.provider(name)
    put = placement(
        "PUT",
        f"/resource_providers/{rp['uuid']}/inventories",
        {
            "resource_provider_generation": 0,
            "inventories": {
                "VCPU": {"total": vcpus},
                "MEMORY_MB": {"total": 2048, "step_size": 256},
            },
        },
    )
    assert put.status_code == 200, put.text
    return str(rp["uuid"])


def _claim(rp: str, generation: int | None = None, vcpu: int = 1, **extra: Any) -> dict[str, Any]:
    return {
        "allocations": {rp: {"resources": {"VCPU": vcpu}}},
        "project_id": "p1",
        "user_id": "u1",
        "consumer_generation": generation,
        "consumer_type": "INSTANCE",
        **extra,
    }


def test_allocations_claim_and_release(placement: Placement) -> None:
    rp = _compute_node(placement, "alloc-node")
    consumer = str(uuid.uuid4())
    assert placement("PUT", f"/allocations/{consumer}", _claim(rp, vcpu=3)).status_code == 204
    shown = placement("GET", f"/allocations/{consumer}").json()
    assert shown["allocations"][rp]["resources"] == {"VCPU": 3}
    assert (shown["consumer_generation"], shown["project_id"]) == (1, "p1")
    assert shown["consumer_type"] == "INSTANCE"
    stale = placement("PUT", f"/allocations/{consumer}", _claim(rp, generation=0, vcpu=2))
    assert stale.status_code == 409
    assert stale.json()["errors"][0]["code"] == "placement.concurrent_update"
    over = placement("PUT", f"/allocations/{uuid.uuid4()}", _claim(rp, vcpu=2))
    assert over.status_code == 409 and "exceed the capacity" in over.json()["errors"][0]["detail"]
    bad_step = placement(
        "PUT",
        f"/allocations/{uuid.uuid4()}",
        {
            "allocations": {rp: {"resources": {"MEMORY_MB": 100}}},
            "project_id": "p1",
            "user_id": "u1",
            "consumer_generation": None,
            "consumer_type": "INSTANCE",
        },
    )
    assert bad_step.status_code == 409
    zero = placement("PUT", f"/allocations/{uuid.uuid4()}", _claim(rp, vcpu=0))
    assert zero.status_code == 400
    usages = placement("GET", f"/resource_providers/{rp}/usages").json()["usages"]
    assert usages == {"VCPU": 3, "MEMORY_MB": 0}
    by_project = placement("GET", "/usages?project_id=p1").json()["usages"]
    assert by_project == {"INSTANCE": {"VCPU": 3, "consumer_count": 1}}
    legacy = placement("GET", "/usages?project_id=p1", version="1.9").json()["usages"]
    assert legacy == {"VCPU": 3}
    on_rp = placement("GET", f"/resource_providers/{rp}/allocations").json()
    assert on_rp["allocations"][consumer]["resources"] == {"VCPU": 3}
    in_use = placement("DELETE", f"/resource_providers/{rp}/inventories/VCPU")
    assert in_use.status_code == 409
    assert in_use.json()["errors"][0]["code"] == "placement.inventory.inuse"
    assert placement("DELETE", f"/resource_providers/{rp}").status_code == 409
    assert placement("DELETE", f"/allocations/{consumer}").status_code == 204
    assert placement("GET", f"/allocations/{consumer}").json() == {"allocations": {}}
    assert placement("DELETE", f"/allocations/{consumer}").status_code == 404
    assert placement("DELETE", f"/resource_providers/{rp}").status_code == 204


def test_allocation_body_shapes_by_version(placement: Placement) -> None:
    rp = _compute_node(placement, "legacy-node")
    consumer = str(uuid.uuid4())
    legacy = {"allocations": [{"resource_provider": {"uuid": rp}, "resources": {"VCPU": 1}}]}
    assert placement("PUT", f"/allocations/{consumer}", legacy, version="1.0").status_code == 204
    assert placement("PUT", f"/allocations/{consumer}", legacy, version="1.8").status_code == 400
    old_view = placement("GET", f"/allocations/{consumer}", version="1.11").json()
    assert "project_id" not in old_view
    moved = {"allocations": {rp: {"resources": {"VCPU": 2}}}, "project_id": "p2", "user_id": "u2"}
    assert placement("PUT", f"/allocations/{consumer}", moved, version="1.12").status_code == 204
    many = {
        consumer: {
            "allocations": {},
            "project_id": "p2",
            "user_id": "u2",
            "consumer_generation": 2,
        },
        str(uuid.uuid4()): {
            "allocations": {rp: {"resources": {"VCPU": 4}}},
            "project_id": "p3",
            "user_id": "u3",
            "consumer_generation": None,
        },
    }
    assert placement("POST", "/allocations", many, version="1.28").status_code == 204
    assert placement("GET", f"/resource_providers/{rp}/usages").json()["usages"]["VCPU"] == 4


def test_one_post_stores_more_allocations_than_one_insert_takes(placement: Placement) -> None:
    """Allocations are inserted placement_service.ROWS_PER_INSERT at a time; a POST
    /allocations with more rows (here more than the 500 SELECTs SQLite takes in one
    UNION ALL) stores them all."""
    first, second = (_compute_node(placement, f"many-{n}", vcpus=1000) for n in (1, 2))
    consumers = 270
    both = {rp: {"resources": {"VCPU": 1}} for rp in (first, second)}
    body = {str(uuid.uuid4()): _claim(first) | {"allocations": both} for _ in range(consumers)}
    assert placement("POST", "/allocations", body).status_code == 204
    for rp in (first, second):
        usages = placement("GET", f"/resource_providers/{rp}/usages").json()["usages"]
        assert usages["VCPU"] == consumers


@pytest.mark.parametrize("room", [3])
def test_parallel_claims_never_overcommit(placement: Placement, room: int) -> None:
    from concurrent.futures import ThreadPoolExecutor

    rp = _compute_node(placement, "contended", vcpus=room)

    def claim(_: int) -> int:
        body = _claim(rp)
        return int(placement("PUT", f"/allocations/{uuid.uuid4()}", body).status_code)

    with ThreadPoolExecutor(max_workers=16) as pool:
        codes = list(pool.map(claim, range(16)))
    assert codes.count(204) == room and codes.count(409) == 16 - room
    assert placement("GET", f"/resource_providers/{rp}/usages").json()["usages"]["VCPU"] == room


def test_noauth_mode_trusts_the_token_like_upstreams_test_middleware(cloud_factory: Any) -> None:
    with cloud_factory(auth="noauth", services=("identity", "placement")) as cloud:

        def call(token: str, **headers: str) -> int:
            response = cloud.client.post(
                "/placement/resource_providers",
                json={"name": f"rp-{uuid.uuid4()}"},
                headers={
                    "X-Auth-Token": token,
                    "OpenStack-API-Version": "placement latest",
                    **headers,
                },
            )
            return int(response.status_code)

        assert call("admin") == 200
        assert call("someone:project-x") == 403
        assert call("nova", **{"X-Roles": "service"}) == 200
        assert call("admin", **{"OpenStack-System-Scope": "all"}) == 403
        assert cloud.client.get("/placement/resource_providers").status_code == 401


def _tree(placement: Placement, name: str, traits: list[str], gpus: int = 0) -> str:
    """A compute node with VCPU/MEMORY_MB and, optionally, two GPU children."""
    root = placement.provider(name)["uuid"]
    placement(
        "PUT",
        f"/resource_providers/{root}/inventories",
        {
            "resource_provider_generation": 0,
            "inventories": {"VCPU": {"total": 8}, "MEMORY_MB": {"total": 8192}},
        },
    )
    placement(
        "PUT",
        f"/resource_providers/{root}/traits",
        {"traits": traits, "resource_provider_generation": 1},
    )
    for index in range(gpus):
        gpu = placement.provider(f"{name}-gpu{index}", parent_provider_uuid=root)["uuid"]
        placement(
            "PUT",
            f"/resource_providers/{gpu}/inventories",
            {"resource_provider_generation": 0, "inventories": {"VGPU": {"total": 2}}},
        )
    return str(root)


def test_allocation_candidates(placement: Placement) -> None:
    plain = _tree(placement, "ac-plain", [])
    avx = _tree(placement, "ac-avx", ["HW_CPU_X86_AVX2"], gpus=2)
    simple = placement("GET", "/allocation_candidates?resources=VCPU:2,MEMORY_MB:1024").json()
    assert len(simple["allocation_requests"]) == 2
    first = simple["allocation_requests"][0]
    assert first["allocations"][plain]["resources"] == {"VCPU": 2, "MEMORY_MB": 1024}
    assert first["mappings"] == {"": [plain]}
    summary = simple["provider_summaries"][plain]
    assert summary["resources"]["VCPU"] == {"capacity": 8, "used": 0}
    assert len(simple["provider_summaries"]) == 4
    traited = placement(
        "GET", "/allocation_candidates?resources=VCPU:2&required=HW_CPU_X86_AVX2"
    ).json()
    assert [list(r["allocations"]) for r in traited["allocation_requests"]] == [[avx]]
    gpu = placement(
        "GET", "/allocation_candidates?resources=VCPU:1&resources1=VGPU:1&group_policy=isolate"
    ).json()
    assert len(gpu["allocation_requests"]) == 2
    assert all(set(r["mappings"]) == {"", "1"} for r in gpu["allocation_requests"])
    two_gpus = placement(
        "GET",
        "/allocation_candidates?resources=VCPU:1&resources1=VGPU:1"
        "&resources2=VGPU:1&group_policy=isolate",
    ).json()
    assert len(two_gpus["allocation_requests"]) == 2
    limited = placement("GET", "/allocation_candidates?resources=VCPU:1&limit=1").json()
    assert len(limited["allocation_requests"]) == 1
    assert set(limited["provider_summaries"]) == {plain}
    legacy = placement("GET", "/allocation_candidates?resources=VCPU:1", version="1.10").json()
    assert isinstance(legacy["allocation_requests"][0]["allocations"], list)
    none = placement("GET", "/allocation_candidates?resources=VCPU:99").json()
    assert none == {"allocation_requests": [], "provider_summaries": {}}
    missing_policy = placement("GET", "/allocation_candidates?resources1=VCPU:1&resources2=VGPU:1")
    assert missing_policy.status_code == 400
    unknown = placement("GET", "/allocation_candidates?resources=NOPE:1")
    assert unknown.status_code == 400


def test_reshaper_moves_inventory_and_allocations_for_services_only(
    cloud: Cloud, placement: Placement
) -> None:
    root = placement.provider("reshape-cn")["uuid"]
    placement(
        "PUT",
        f"/resource_providers/{root}/inventories",
        {
            "resource_provider_generation": 0,
            "inventories": {"VCPU": {"total": 4}, "VGPU": {"total": 2}},
        },
    )
    consumer = str(uuid.uuid4())
    placement(
        "PUT",
        f"/allocations/{consumer}",
        {
            "allocations": {root: {"resources": {"VCPU": 1, "VGPU": 1}}},
            "project_id": "p",
            "user_id": "u",
            "consumer_generation": None,
            "consumer_type": "INSTANCE",
        },
    )
    child = placement.provider("reshape-gpu", parent_provider_uuid=root)["uuid"]
    body = {
        "inventories": {
            root: {"resource_provider_generation": 2, "inventories": {"VCPU": {"total": 4}}},
            child: {"resource_provider_generation": 0, "inventories": {"VGPU": {"total": 2}}},
        },
        "allocations": {
            consumer: {
                "allocations": {
                    root: {"resources": {"VCPU": 1}},
                    child: {"resources": {"VGPU": 1}},
                },
                "project_id": "p",
                "user_id": "u",
                "consumer_generation": 1,
                "consumer_type": "INSTANCE",
            }
        },
    }
    assert placement("POST", "/reshaper", body).status_code == 403
    admin = cloud.admin
    services_project = cloud.create(admin, "project", name="services")
    cloud.user_with_role(admin, "nova", services_project["id"], "service")
    nova = cloud.token("nova", "nova-pw", project="services")
    assert placement("POST", "/reshaper", body, token=nova).status_code == 204
    inventories = placement("GET", f"/resource_providers/{root}/inventories").json()
    assert list(inventories["inventories"]) == ["VCPU"]
    assert inventories["resource_provider_generation"] == 5
    moved = placement("GET", f"/allocations/{consumer}").json()["allocations"]
    assert moved[child]["resources"] == {"VGPU": 1}
    again = placement("POST", "/reshaper", body, token=nova)
    assert again.status_code == 409
    assert again.json()["errors"][0]["code"] == "placement.concurrent_update"


def test_placement_can_also_answer_at_the_root(cloud_factory: Any) -> None:
    with cloud_factory(
        auth="noauth", services=("identity", "placement"), serve_at_root="placement"
    ) as cloud:
        headers = {"X-Auth-Token": "admin", "OpenStack-API-Version": "placement latest"}
        created = cloud.client.post(
            "/resource_providers", json={"name": "at-root"}, headers=headers
        ).json()
        assert created["links"][0]["href"] == f"/resource_providers/{created['uuid']}"
        assert cloud.client.get("/", headers=headers).json()["versions"][0]["id"] == "v1.0"
        assert cloud.client.get("/identity/v3").status_code == 200


def test_candidates_follow_allocations_that_move_between_providers(placement: Placement) -> None:
    a = _compute_node(placement, "move-a", vcpus=2)
    b = _compute_node(placement, "move-b", vcpus=2)
    consumer = str(uuid.uuid4())

    def hosts() -> set[str]:
        found = placement("GET", "/allocation_candidates?resources=VCPU:2").json()
        return {rp for r in found["allocation_requests"] for rp in r["allocations"]}

    assert hosts() == {a, b}
    placement("PUT", f"/allocations/{consumer}", _claim(a, vcpu=2))
    assert hosts() == {b}
    placement("PUT", f"/allocations/{consumer}", _claim(b, generation=1, vcpu=2))
    assert hosts() == {a}
    placement("DELETE", f"/allocations/{consumer}")
    assert hosts() == {a, b}


def test_candidates_follow_a_reparented_provider(placement: Placement) -> None:
    first = _tree(placement, "reparent-a", [])
    second = _tree(placement, "reparent-b", [])
    gpu = placement.provider("reparent-gpu", parent_provider_uuid=first)["uuid"]
    placement(
        "PUT",
        f"/resource_providers/{gpu}/inventories",
        {"resource_provider_generation": 0, "inventories": {"VGPU": {"total": 1}}},
    )

    def gpu_trees() -> set[str]:
        found = placement(
            "GET", "/allocation_candidates?resources=VCPU:1&resources1=VGPU:1&group_policy=none"
        ).json()
        return {s["root_provider_uuid"] for u, s in found["provider_summaries"].items() if u == gpu}

    assert gpu_trees() == {first}
    moved = placement(
        "PUT",
        f"/resource_providers/{gpu}",
        {"name": "reparent-gpu", "parent_provider_uuid": second},
    )
    assert moved.status_code == 200
    assert gpu_trees() == {second}


def test_workers_sharing_a_database_answer_from_current_data(cloud_factory: Any) -> None:
    """Each worker keeps its own candidate snapshot; whatever another worker writes, the
    next query here answers from it, not from what this worker saw before."""
    settings = {"auth": "noauth", "services": ("identity", "placement")}
    with cloud_factory(**settings) as one, cloud_factory(**settings) as two:
        writer, reader = Placement(one), Placement(two)
        writer.token = reader.token = "admin"
        node = _tree(writer, "shared-db-node", ["HW_CPU_X86_AVX2"])
        aggregate = str(uuid.uuid4())

        def hosts(query: str) -> set[str]:
            found = reader("GET", f"/allocation_candidates?resources=VCPU:2&{query}")
            assert found.status_code == 200, found.text
            return {rp for r in found.json()["allocation_requests"] for rp in r["allocations"]}

        def generation() -> int:
            return int(writer("GET", f"/resource_providers/{node}").json()["generation"])

        assert hosts("required=HW_CPU_X86_AVX2") == {node}
        writer(
            "PUT",
            f"/resource_providers/{node}/traits",
            {"traits": [], "resource_provider_generation": generation()},
        )
        assert hosts("required=HW_CPU_X86_AVX2") == set()
        assert hosts(f"member_of={aggregate}") == set()
        writer(
            "PUT",
            f"/resource_providers/{node}/aggregates",
            {"aggregates": [aggregate], "resource_provider_generation": generation()},
        )
        assert hosts(f"member_of={aggregate}") == {node}
        consumer = str(uuid.uuid4())
        writer("PUT", f"/allocations/{consumer}", _claim(node, vcpu=7))
        assert hosts("limit=5") == set()
        writer("DELETE", f"/allocations/{consumer}")
        assert hosts("limit=5") == {node}
        writer(
            "PUT",
            f"/resource_providers/{node}/inventories/VCPU",
            {"resource_provider_generation": generation(), "total": 1},
        )
        assert hosts("") == set()
        writer("DELETE", f"/resource_providers/{node}")
        assert hosts("") == set()
        fresh = _tree(writer, "shared-db-second", [])
        assert hosts("") == {fresh}
