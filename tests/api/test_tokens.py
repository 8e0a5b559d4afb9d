"""Tokens as keystoneauth and Tempest use them: issue, validate, rescope, revoke, expire."""

from __future__ import annotations

import re
from datetime import timedelta

from pocketstack.identity import service as identity_service
from pocketstack.identity import tokens
from tests.api.conftest import ADMIN_PASSWORD, Cloud

TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")


def test_version_documents_need_no_token(cloud: Cloud) -> None:
    root = cloud.call("GET", "/")
    assert root.status_code == 300
    assert root.json()["versions"]["values"][0]["id"] == "v3.14"
    v3 = cloud.call("GET", "/v3")
    assert v3.status_code == 200
    assert v3.json()["version"]["links"][0]["href"] == "http://testserver/identity/v3/"
    assert v3.headers["x-openstack-request-id"].startswith("req-")


def test_issue_gives_a_scoped_token_with_catalog(cloud: Cloud) -> None:
    response = cloud.issue(
        "admin", ADMIN_PASSWORD, {"project": {"name": "admin", "domain": {"name": "Default"}}}
    )
    assert response.status_code == 201
    assert response.headers["X-Subject-Token"]
    token = response.json()["token"]
    assert TIMESTAMP.match(token["expires_at"]) and TIMESTAMP.match(token["issued_at"])
    assert token["project"]["name"] == "admin"
    assert token["user"]["domain"] == {"id": "default", "name": "Default"}
    assert {r["name"] for r in token["roles"]} == {"admin", "member", "reader"}
    identity = next(s for s in token["catalog"] if s["type"] == "identity")
    assert {e["interface"] for e in identity["endpoints"]} == {"public", "internal", "admin"}
    assert all(e["region"] == "RegionOne" for e in identity["endpoints"])


def test_catalog_urls_get_the_project_id(cloud: Cloud) -> None:
    token = cloud.issue(
        "admin", ADMIN_PASSWORD, {"project": {"name": "admin", "domain": {"id": "default"}}}
    ).json()
    volume = next(s for s in token["token"]["catalog"] if s["type"] == "volumev3")
    project_id = token["token"]["project"]["id"]
    assert volume["endpoints"][0]["url"] == f"http://testserver/volume/v3/{project_id}"


def test_validate_returns_the_same_token_and_revoke_kills_it(cloud: Cloud) -> None:
    admin = cloud.admin
    issued = cloud.issue("admin", ADMIN_PASSWORD, "unscoped")
    subject = issued.headers["X-Subject-Token"]
    shown = cloud.call("GET", "/v3/auth/tokens", admin, headers={"X-Subject-Token": subject})
    assert shown.status_code == 200
    assert shown.json() == issued.json()
    assert "catalog" not in shown.json()["token"] and "roles" not in shown.json()["token"]
    head = cloud.call("HEAD", "/v3/auth/tokens", admin, headers={"X-Subject-Token": subject})
    assert head.status_code == 200 and head.content == b""
    assert (
        cloud.call(
            "DELETE", "/v3/auth/tokens", subject, headers={"X-Subject-Token": subject}
        ).status_code
        == 204
    )
    gone = cloud.call("GET", "/v3/auth/tokens", admin, headers={"X-Subject-Token": subject})
    assert gone.status_code == 404
    assert cloud.call("GET", "/v3/auth/projects", subject).status_code == 401


def test_rescoping_keeps_expiry_and_user(cloud: Cloud) -> None:
    unscoped = cloud.issue("admin", ADMIN_PASSWORD, "unscoped")
    parent = unscoped.headers["X-Subject-Token"]
    body = {
        "auth": {
            "identity": {"methods": ["token"], "token": {"id": parent}},
            "scope": {"project": {"name": "admin", "domain": {"id": "default"}}},
        }
    }
    rescoped = cloud.call("POST", "/v3/auth/tokens", body=body)
    assert rescoped.status_code == 201
    token = rescoped.json()["token"]
    assert token["expires_at"] == unscoped.json()["token"]["expires_at"]
    assert set(token["methods"]) == {"password", "token"}
    child = rescoped.headers["X-Subject-Token"]
    cloud.call("DELETE", "/v3/auth/tokens", child, headers={"X-Subject-Token": child})
    assert cloud.call("POST", "/v3/auth/tokens", body=body).status_code == 201


def test_default_project_scopes_an_unscoped_request(cloud: Cloud) -> None:
    admin = cloud.admin
    project = cloud.create(admin, "project", name="home")
    cloud.user_with_role(admin, "dora", project["id"], "member")
    user_id = cloud.call("GET", "/v3/users?name=dora", admin).json()["users"][0]["id"]
    cloud.call(
        "PATCH", f"/v3/users/{user_id}", admin, {"user": {"default_project_id": project["id"]}}
    )
    token = cloud.issue("dora", "dora-pw").json()["token"]
    assert token["project"]["id"] == project["id"]


def test_bad_credentials_are_401_with_keystone_body(cloud: Cloud) -> None:
    for user, password in (("admin", "wrong"), ("nobody", "x")):
        response = cloud.issue(user, password)
        assert response.status_code == 401
        assert response.json()["error"]["code"] == 401
        assert response.json()["error"]["message"]


def test_no_role_on_the_project_means_no_token(cloud: Cloud) -> None:
    admin = cloud.admin
    cloud.create(admin, "project", name="elsewhere")
    cloud.create(admin, "user", name="eve", password="eve-pw")
    assert (
        cloud.issue(
            "eve", "eve-pw", {"project": {"name": "elsewhere", "domain": {"id": "default"}}}
        ).status_code
        == 401
    )
    assert cloud.issue("eve", "eve-pw").status_code == 201


def test_missing_or_garbage_token_is_401(cloud: Cloud) -> None:
    assert cloud.call("GET", "/v3/projects").status_code == 401
    response = cloud.call("GET", "/v3/projects", "gAAAAAgarbage")
    assert response.status_code == 401
    assert response.json()["error"]["title"] == "Unauthorized"


def test_expired_token_is_401(cloud: Cloud) -> None:
    admin_id = cloud.call("GET", "/v3/users?name=admin", cloud.admin).json()["users"][0]["id"]
    past = identity_service.now() - timedelta(hours=2)
    payload = tokens.TokenPayload(
        user_id=admin_id,
        methods=("password",),
        audit_ids=("x",),
        issued_at=past,
        expires_at=past + timedelta(hours=1),
    )
    expired = cloud.runtime.state["identity"].keys.seal(tokens.encode_payload(payload))
    assert cloud.call("GET", "/v3/auth/projects", expired).status_code == 401


def test_system_and_domain_scopes(cloud: Cloud) -> None:
    system = cloud.issue("admin", ADMIN_PASSWORD, {"system": {"all": True}})
    assert system.status_code == 201
    assert system.json()["token"]["system"] == {"all": True}
    admin = cloud.admin
    user_id = cloud.call("GET", "/v3/users?name=admin", admin).json()["users"][0]["id"]
    cloud.call(
        "PUT", f"/v3/domains/default/users/{user_id}/roles/{cloud.role_id(admin, 'reader')}", admin
    )
    domain = cloud.issue("admin", ADMIN_PASSWORD, {"domain": {"name": "Default"}})
    assert domain.json()["token"]["domain"] == {"id": "default", "name": "Default"}
    assert [r["name"] for r in domain.json()["token"]["roles"]] == ["reader"]


def test_auth_listings_reflect_current_grants(cloud: Cloud) -> None:
    admin = cloud.admin
    late = cloud.create(admin, "project", name="late")
    user_id = cloud.call("GET", "/v3/users?name=admin", admin).json()["users"][0]["id"]
    cloud.call(
        "PUT",
        f"/v3/projects/{late['id']}/users/{user_id}/roles/{cloud.role_id(admin, 'member')}",
        admin,
    )
    names = {p["name"] for p in cloud.call("GET", "/v3/auth/projects", admin).json()["projects"]}
    assert names == {"admin", "late"}
    assert cloud.call("GET", "/v3/auth/system", admin).json()["system"] == [{"all": True}]
    catalog = cloud.call("GET", "/v3/auth/catalog", admin).json()["catalog"]
    assert {s["type"] for s in catalog} == {"identity", "volumev3"}


def test_revoking_a_token_drops_events_no_live_token_can_match(cloud: Cloud) -> None:
    from sqlalchemy import func, select

    from pocketstack.identity import models

    old = identity_service.now() - timedelta(days=2)
    with cloud.runtime.db.write() as session:
        session.add(models.RevocationEvent(audit_id="ancient", issued_before=old, revoked_at=old))
    token = cloud.admin
    cloud.call("DELETE", "/v3/auth/tokens", token, headers={"X-Subject-Token": token})
    with cloud.runtime.db.read() as session:
        audit_ids = set(session.scalars(select(models.RevocationEvent.audit_id)))
        assert "ancient" not in audit_ids
        assert session.scalar(select(func.count(models.RevocationEvent.id))) >= 1
    assert cloud.call("GET", "/v3/auth/projects", token).status_code == 401
