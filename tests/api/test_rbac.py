"""Who may do what: the negative matrix, and revocation taking effect at once."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.api.conftest import Cloud


@pytest.fixture
def two_projects(cloud: Cloud) -> dict[str, Any]:
    admin = cloud.admin
    a = cloud.create(admin, "project", name="project-a")
    b = cloud.create(admin, "project", name="project-b")
    alice = cloud.user_with_role(admin, "alice", a["id"], "member")
    cloud.user_with_role(admin, "bob", b["id"], "member")
    cloud.user_with_role(admin, "rita", a["id"], "reader")
    return {
        "admin": admin,
        "a": a,
        "b": b,
        "alice": alice,
        "alice_token": cloud.token("alice", "alice-pw", project="project-a"),
        "rita_token": cloud.token("rita", "rita-pw", project="project-a"),
    }


def test_member_reads_own_project_only(cloud: Cloud, two_projects: dict[str, Any]) -> None:
    token, a, b = two_projects["alice_token"], two_projects["a"], two_projects["b"]
    assert cloud.call("GET", f"/v3/projects/{a['id']}", token).status_code == 200
    assert cloud.call("GET", f"/v3/projects/{b['id']}", token).status_code == 403
    assert (
        cloud.call(
            "PATCH", f"/v3/projects/{b['id']}", token, {"project": {"description": "mine now"}}
        ).status_code
        == 403
    )
    assert cloud.call("DELETE", f"/v3/projects/{b['id']}", token).status_code == 403
    assert cloud.call("GET", "/v3/projects", token).status_code == 403
    own = cloud.call("GET", f"/v3/users/{two_projects['alice']['id']}/projects", token)
    assert [p["name"] for p in own.json()["projects"]] == ["project-a"]


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/v3/projects", {"project": {"name": "x"}}),
        ("POST", "/v3/users", {"user": {"name": "x"}}),
        ("POST", "/v3/roles", {"role": {"name": "x"}}),
        ("POST", "/v3/domains", {"domain": {"name": "x"}}),
        ("GET", "/v3/users", None),
        ("GET", "/v3/role_assignments", None),
    ],
)
def test_reader_and_member_cannot_administer(
    cloud: Cloud, two_projects: dict[str, Any], method: str, path: str, body: Any
) -> None:
    for token in (two_projects["rita_token"], two_projects["alice_token"]):
        response = cloud.call(method, path, token, body)
        assert response.status_code == 403, response.text
        assert "not authorized" in response.json()["error"]["message"]


def test_user_may_manage_own_token_but_not_others(
    cloud: Cloud, two_projects: dict[str, Any]
) -> None:
    alice, rita = two_projects["alice_token"], two_projects["rita_token"]
    assert (
        cloud.call("GET", "/v3/auth/tokens", alice, headers={"X-Subject-Token": alice}).status_code
        == 200
    )
    assert (
        cloud.call("GET", "/v3/auth/tokens", alice, headers={"X-Subject-Token": rita}).status_code
        == 403
    )
    assert (
        cloud.call(
            "DELETE", "/v3/auth/tokens", alice, headers={"X-Subject-Token": rita}
        ).status_code
        == 403
    )


def test_disabling_a_user_revokes_their_tokens(cloud: Cloud, two_projects: dict[str, Any]) -> None:
    admin, alice = two_projects["admin"], two_projects["alice"]
    cloud.call("PATCH", f"/v3/users/{alice['id']}", admin, {"user": {"enabled": False}})
    assert cloud.call("GET", "/v3/auth/projects", two_projects["alice_token"]).status_code == 401
    assert cloud.issue("alice", "alice-pw").status_code == 401


def test_password_change_revokes_old_tokens(cloud: Cloud, two_projects: dict[str, Any]) -> None:
    alice = two_projects["alice"]
    bad = cloud.call(
        "POST",
        f"/v3/users/{alice['id']}/password",
        None,
        {"user": {"password": "new-pw", "original_password": "wrong"}},
    )
    assert bad.status_code == 401
    changed = cloud.call(
        "POST",
        f"/v3/users/{alice['id']}/password",
        None,
        {"user": {"password": "new-pw", "original_password": "alice-pw"}},
    )
    assert changed.status_code == 204
    assert cloud.call("GET", "/v3/auth/projects", two_projects["alice_token"]).status_code == 401
    assert cloud.issue("alice", "alice-pw").status_code == 401
    assert cloud.issue("alice", "new-pw").status_code == 201


def test_role_removal_revokes_project_tokens(cloud: Cloud, two_projects: dict[str, Any]) -> None:
    admin, a, alice = two_projects["admin"], two_projects["a"], two_projects["alice"]
    member = cloud.role_id(admin, "member")
    path = f"/v3/projects/{a['id']}/users/{alice['id']}/roles/{member}"
    assert cloud.call("DELETE", path, admin).status_code == 204
    assert cloud.call("GET", "/v3/auth/projects", two_projects["alice_token"]).status_code == 401
    assert cloud.call("HEAD", path, admin).status_code == 404


@pytest.mark.parametrize("change", ["disable", "delete"])
def test_project_disable_or_delete_revokes_its_tokens(
    cloud: Cloud, two_projects: dict[str, Any], change: str
) -> None:
    admin, a = two_projects["admin"], two_projects["a"]
    if change == "disable":
        cloud.call("PATCH", f"/v3/projects/{a['id']}", admin, {"project": {"enabled": False}})
    else:
        assert cloud.call("DELETE", f"/v3/projects/{a['id']}", admin).status_code == 204
    assert cloud.call("GET", "/v3/auth/projects", two_projects["alice_token"]).status_code == 401


def test_operator_policy_file_overrides_a_default(cloud_factory: Any, tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text('"identity:list_projects": "role:reader"\n')
    with cloud_factory(policy_file=policy) as cloud:
        admin = cloud.admin
        project = cloud.create(admin, "project", name="audited")
        cloud.user_with_role(admin, "auditor", project["id"], "reader")
        token = cloud.token("auditor", "auditor-pw", project="audited")
        assert cloud.call("GET", "/v3/projects", token).status_code == 200
        assert cloud.call("GET", "/v3/users", token).status_code == 403
