"""Identity resources: validation, conflicts, cascades, assignments, application credentials."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest

from tests.api.conftest import Cloud


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"project": {"name": ""}}, "project/name"),
        ({"project": {"name": "x" * 65}}, "project/name"),
        ({"project": {"name": 5}}, "project/name"),
        ({"project": {"name": "ok", "enabled": "True"}}, "project/enabled"),
        ({"project": {}}, "project/name"),
        ({"projects": {"name": "typo"}}, "project"),
        ({"project": {"name": "ok", "tags": ["a/b"]}}, "project/tags"),
    ],
)
def test_bad_bodies_are_400_naming_the_field(cloud: Cloud, body: object, field: str) -> None:
    response = cloud.call("POST", "/v3/projects", cloud.admin, body)
    assert response.status_code == 400, response.text
    assert f"'{field}'" in response.json()["error"]["message"]


def test_malformed_json_is_400(cloud: Cloud) -> None:
    response = cloud.client.post(
        "/identity/v3/projects",
        content=b"{not json",
        headers={"X-Auth-Token": cloud.admin, "Content-Type": "application/json"},
    )
    assert response.status_code == 400
    assert "not valid JSON" in response.json()["error"]["message"]


def test_duplicates_are_409_and_leave_nothing_half_written(cloud: Cloud) -> None:
    admin = cloud.admin
    cloud.create(admin, "project", name="twin", tags=["one"])
    response = cloud.call("POST", "/v3/projects", admin, {"project": {"name": "twin"}})
    assert response.status_code == 409
    listed = cloud.call("GET", "/v3/projects?name=twin", admin).json()["projects"]
    assert len(listed) == 1 and listed[0]["tags"] == ["one"]


def test_concurrent_creates_of_one_name_give_one_winner(cloud: Cloud) -> None:
    admin = cloud.admin

    def create(_: int) -> int:
        return int(cloud.call("POST", "/v3/users", admin, {"user": {"name": "racer"}}).status_code)

    with ThreadPoolExecutor(max_workers=8) as pool:
        codes = sorted(pool.map(create, range(16)))
    assert codes == [201] + [409] * 15


def test_unknown_ids_are_404(cloud: Cloud) -> None:
    admin = cloud.admin
    for path in (
        "/v3/projects/nope",
        "/v3/users/nope",
        "/v3/roles/nope",
        "/v3/domains/nope",
        "/v3/groups/nope",
        "/v3/regions/nope",
        "/v3/services/nope",
    ):
        response = cloud.call("GET", path, admin)
        assert response.status_code == 404, path
        assert response.json()["error"]["message"].startswith("Could not find")
    assert cloud.call("GET", "/v3/no-such-collection", admin).status_code == 404
    user = cloud.call("POST", "/v3/users", admin, {"user": {"name": "u", "domain_id": "nope"}})
    assert user.status_code == 404


def test_domain_delete_needs_disable_and_cascades(cloud: Cloud) -> None:
    admin = cloud.admin
    domain = cloud.create(admin, "domain", name="acme")
    user = cloud.create(admin, "user", name="wile", domain_id=domain["id"])
    group = cloud.create(admin, "group", name="coyotes", domain_id=domain["id"])
    project = cloud.create(admin, "project", name="rockets", domain_id=domain["id"])
    child = cloud.create(admin, "project", name="skates", parent_id=project["id"])
    assert child["domain_id"] == domain["id"] and child["parent_id"] == project["id"]
    assert cloud.call("DELETE", f"/v3/domains/{domain['id']}", admin).status_code == 403
    cloud.call("PATCH", f"/v3/domains/{domain['id']}", admin, {"domain": {"enabled": False}})
    assert cloud.call("DELETE", f"/v3/domains/{domain['id']}", admin).status_code == 204
    for path in (
        f"/v3/users/{user['id']}",
        f"/v3/groups/{group['id']}",
        f"/v3/projects/{project['id']}",
        f"/v3/projects/{child['id']}",
    ):
        assert cloud.call("GET", path, admin).status_code == 404


def test_project_hierarchy_and_leaf_only_delete(cloud: Cloud) -> None:
    admin = cloud.admin
    root = cloud.create(admin, "project", name="root")
    leaf = cloud.create(admin, "project", name="leaf", parent_id=root["id"])
    shown = cloud.call("GET", f"/v3/projects/{leaf['id']}?parents_as_ids", admin).json()
    assert shown["project"]["parents"] == {root["id"]: None}
    subtree = cloud.call("GET", f"/v3/projects/{root['id']}?subtree_as_list", admin).json()
    assert [p["project"]["id"] for p in subtree["project"]["subtree"]] == [leaf["id"]]
    assert cloud.call("DELETE", f"/v3/projects/{root['id']}", admin).status_code == 403
    children = cloud.call("GET", f"/v3/projects?parent_id={root['id']}", admin).json()
    assert [p["name"] for p in children["projects"]] == ["leaf"]


def test_effective_assignments_expand_groups_and_implied_roles(cloud: Cloud) -> None:
    admin = cloud.admin
    project = cloud.create(admin, "project", name="shared")
    user = cloud.create(admin, "user", name="gina", password="gina-pw")
    group = cloud.create(admin, "group", name="ops")
    assert (
        cloud.call("PUT", f"/v3/groups/{group['id']}/users/{user['id']}", admin).status_code == 204
    )
    member = cloud.role_id(admin, "member")
    cloud.call("PUT", f"/v3/projects/{project['id']}/groups/{group['id']}/roles/{member}", admin)
    direct = cloud.call(
        "GET", f"/v3/role_assignments?scope.project.id={project['id']}", admin
    ).json()["role_assignments"]
    assert [(a["group"]["id"], a["role"]["id"]) for a in direct] == [(group["id"], member)]
    effective = cloud.call(
        "GET",
        f"/v3/role_assignments?scope.project.id={project['id']}&effective&include_names",
        admin,
    ).json()["role_assignments"]
    assert {(a["user"]["name"], a["role"]["name"]) for a in effective} == {
        ("gina", "member"),
        ("gina", "reader"),
    }
    token = cloud.issue("gina", "gina-pw", {"project": {"id": project["id"]}}).json()["token"]
    assert {r["name"] for r in token["roles"]} == {"member", "reader"}


def test_implied_role_cycles_are_refused(cloud: Cloud) -> None:
    admin = cloud.admin
    reader, admin_role = cloud.role_id(admin, "reader"), cloud.role_id(admin, "admin")
    response = cloud.call("PUT", f"/v3/roles/{reader}/implies/{admin_role}", admin)
    assert response.status_code == 403
    assert "cycle" in response.json()["error"]["message"]


def test_application_credentials_hold_a_subset_of_roles(cloud: Cloud) -> None:
    admin = cloud.admin
    project = cloud.create(admin, "project", name="ci")
    user = cloud.user_with_role(admin, "bot", project["id"], "member")
    token = cloud.token("bot", "bot-pw", project="ci")
    path = f"/v3/users/{user['id']}/application_credentials"
    too_much = cloud.call(
        "POST",
        path,
        token,
        {"application_credential": {"name": "greedy", "roles": [{"name": "admin"}]}},
    )
    assert too_much.status_code == 403
    created = cloud.call(
        "POST",
        path,
        token,
        {"application_credential": {"name": "deploy", "roles": [{"name": "reader"}]}},
    )
    assert created.status_code == 201
    cred = created.json()["application_credential"]
    assert [r["name"] for r in cred["roles"]] == ["reader"] and cred["secret"]
    shown = cloud.call("GET", f"{path}/{cred['id']}", token).json()["application_credential"]
    assert "secret" not in shown
    auth = {
        "auth": {
            "identity": {
                "methods": ["application_credential"],
                "application_credential": {"id": cred["id"], "secret": cred["secret"]},
            }
        }
    }
    issued = cloud.call("POST", "/v3/auth/tokens", body=auth)
    assert issued.status_code == 201
    app_token = issued.headers["X-Subject-Token"]
    assert issued.json()["token"]["project"]["id"] == project["id"]
    assert [r["name"] for r in issued.json()["token"]["roles"]] == ["reader"]
    nested = cloud.call("POST", path, app_token, {"application_credential": {"name": "nested"}})
    assert nested.status_code == 403
    assert cloud.call("DELETE", f"{path}/{cred['id']}", token).status_code == 204
    assert cloud.call("POST", "/v3/auth/tokens", body=auth).status_code == 401
    assert cloud.call("GET", "/v3/auth/projects", app_token).status_code == 401


def test_expired_application_credential_cannot_authenticate(cloud: Cloud) -> None:
    admin = cloud.admin
    project = cloud.create(admin, "project", name="short")
    user = cloud.user_with_role(admin, "temp", project["id"], "member")
    token = cloud.token("temp", "temp-pw", project="short")
    past = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
    refused = cloud.call(
        "POST",
        f"/v3/users/{user['id']}/application_credentials",
        token,
        {"application_credential": {"name": "old", "expires_at": past}},
    )
    assert refused.status_code == 400


def test_endpoint_names_a_new_region_into_existence(cloud: Cloud) -> None:
    admin = cloud.admin
    service = cloud.create(admin, "service", type="compute", name="nova")
    endpoint = cloud.create(
        admin,
        "endpoint",
        service_id=service["id"],
        interface="public",
        url="http://example.invalid/compute",
        region="RegionTwo",
    )
    assert endpoint["region"] == "RegionTwo"
    assert cloud.call("GET", "/v3/regions/RegionTwo", admin).status_code == 200
    bad = cloud.call(
        "POST",
        "/v3/endpoints",
        admin,
        {"endpoint": {"service_id": service["id"], "interface": "sideways", "url": "http://x"}},
    )
    assert bad.status_code == 400
    assert cloud.call("DELETE", f"/v3/services/{service['id']}", admin).status_code == 204
    assert cloud.call("GET", f"/v3/endpoints/{endpoint['id']}", admin).status_code == 404


def test_inherited_domain_grant_reaches_every_project_in_it(cloud: Cloud) -> None:
    admin = cloud.admin
    domain = cloud.create(admin, "domain", name="corp")
    parent = cloud.create(admin, "project", name="dept", domain_id=domain["id"])
    child = cloud.create(admin, "project", name="team", parent_id=parent["id"])
    user = cloud.create(admin, "user", name="ivy", password="ivy-pw", domain_id=domain["id"])
    member = cloud.role_id(admin, "member")
    path = f"/v3/OS-INHERIT/domains/{domain['id']}/users/{user['id']}/roles/{member}"
    assert cloud.call("PUT", f"{path}/inherited_to_projects", admin).status_code == 204
    assert cloud.call("HEAD", f"{path}/inherited_to_projects", admin).status_code == 204
    listed = cloud.call(
        "GET",
        f"/v3/OS-INHERIT/domains/{domain['id']}/users/{user['id']}/roles/inherited_to_projects",
        admin,
    ).json()["roles"]
    assert [r["id"] for r in listed] == [member]
    scope = {"project": {"id": child["id"]}}
    issued = cloud.issue("ivy", "ivy-pw", scope, user_domain="corp")
    assert {r["name"] for r in issued.json()["token"]["roles"]} == {"member", "reader"}
    domain_scope = cloud.issue(
        "ivy", "ivy-pw", {"domain": {"id": domain["id"]}}, user_domain="corp"
    )
    assert domain_scope.status_code == 401
    assert cloud.call("DELETE", f"{path}/inherited_to_projects", admin).status_code == 204
    assert cloud.issue("ivy", "ivy-pw", scope, user_domain="corp").status_code == 401


def test_inexact_name_filters(cloud: Cloud) -> None:
    admin = cloud.admin
    for name in ("Alpha-one", "alpha-two", "beta_%"):
        cloud.create(admin, "project", name=name)

    def names(query: str) -> list[str]:
        return [
            p["name"] for p in cloud.call("GET", f"/v3/projects?{query}", admin).json()["projects"]
        ]

    assert names("name__startswith=alpha") == ["alpha-two"]
    assert names("name__istartswith=alpha") == ["Alpha-one", "alpha-two"]
    assert names("name__contains=_%25") == ["beta_%"]
    assert names("name__iequals=ALPHA-TWO") == ["alpha-two"]
    assert names("name__endswith=one&enabled=true") == ["Alpha-one"]
