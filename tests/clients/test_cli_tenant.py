"""What a tenant (a non-admin user) can and cannot do, and when tokens stop working.

Tenants use the CLI with their own OS_* variables (as an openrc would set
them) or an application credential on the command line. Token validity is
checked the way a service would: GET /identity/v3/auth/tokens with
X-Subject-Token, over plain HTTP.
"""

from __future__ import annotations

import re

import pytest

AUTH_REQUIRED = "The request you have made requires authentication. (HTTP 401)"


def _app_cred_args(auth_url: str, cred_id: str, secret: str) -> list[str]:
    return [
        "--os-auth-type",
        "v3applicationcredential",
        "--os-auth-url",
        auth_url,
        "--os-application-credential-id",
        cred_id,
        "--os-application-credential-secret",
        secret,
    ]


def test_application_credential_lifecycle(osc, make_account, keystone, cloud, unique):
    alice = make_account("member")
    name = unique("ci-deploy")

    created = osc(
        "application",
        "credential",
        "create",
        "--description",
        "for CI",
        name,
        "-f",
        "json",
        env=alice.os_env(),
    ).json()
    assert created["Name"] == name
    assert created["Description"] == "for CI"
    assert created["Project ID"] == alice.project_id
    assert "member" in {r["name"] for r in created["Roles"]}
    assert created["Secret"]
    assert created["Unrestricted"] is False

    login = _app_cred_args(cloud.auth_url, created["ID"], created["Secret"])
    issued = osc(*login, "token", "issue", "-f", "json", env={}).json()
    assert issued["project_id"] == alice.project_id
    assert issued["user_id"] == alice.user_id
    token = keystone.validate(issued["id"])
    assert token.status == 200
    assert token.body["token"]["methods"] == ["application_credential"]
    assert token.body["token"]["project"]["id"] == alice.project_id
    assert token.body["token"]["application_credential"]["id"] == created["ID"]

    osc("application", "credential", "delete", name, env=alice.os_env())

    refused = osc(*login, "token", "issue", "-f", "json", env={}, check=False)
    assert refused.returncode != 0
    assert AUTH_REQUIRED in refused.stderr, refused
    # Keystone revokes the tokens an application credential issued when it is deleted.
    assert keystone.validate(issued["id"]).status == 404


def test_member_cannot_touch_another_project_cli(osc, make_account, sdk_admin):
    alice = make_account("member")
    other = make_account("member")

    shown = osc("project", "show", other.project_id, "-f", "json", env=alice.os_env(), check=False)
    assert shown.returncode != 0
    assert "403" in shown.stderr, shown
    assert other.project_name not in shown.stdout

    deleted = osc("project", "delete", other.project_id, env=alice.os_env(), check=False)
    assert deleted.returncode != 0
    assert "403" in deleted.stderr, deleted
    assert "identity:delete_project" in deleted.stderr, deleted

    # GET /projects is refused (403); the CLI then falls back to the user's own
    # projects (GET /users/{id}/projects), so a tenant sees only their project.
    listed = osc("project", "list", "-f", "json", env=alice.os_env()).json()
    assert listed == [{"ID": alice.project_id, "Name": alice.project_name}]

    assert sdk_admin.identity.get_project(other.project_id).name == other.project_name


def test_reader_cannot_write_identity_cli(osc, make_account, unique, sdk_admin):
    rita = make_account("reader")
    project = unique("not-allowed")

    made = osc("project", "create", project, env=rita.os_env(), check=False)
    assert made.returncode != 0
    assert "403" in made.stderr and "identity:create_project" in made.stderr, made

    user = osc("user", "create", "--password", "x", unique("nope"), env=rita.os_env(), check=False)
    assert user.returncode != 0
    assert "403" in user.stderr and "identity:create_user" in user.stderr, user

    # OSC 10.5 exits 0 from `role add` whatever the server answers (the SDK's
    # assign_project_role_to_user returns False on non-204), so read the answer
    # from --debug and then check that nothing was granted.
    granted = osc(
        "--debug",
        "role",
        "add",
        "--user",
        rita.user_id,
        "--project",
        rita.project_id,
        "admin",
        env=rita.os_env(),
        check=False,
    )
    refused = re.search(
        rf'"PUT /identity/v3/projects/{rita.project_id}/users/{rita.user_id}/roles/\w+'
        r' HTTP/1.1" (\d+)',
        granted.stderr,
    )
    assert refused is not None, granted.stderr[-3000:]
    assert refused.group(1) == "403"

    assert sdk_admin.identity.find_project(project) is None
    roles = {a.role["id"] for a in sdk_admin.identity.role_assignments(user_id=rita.user_id)}
    assert roles == {sdk_admin.identity.find_role("reader").id}


def test_wrong_password_is_a_clear_auth_error(osc, make_account):
    bob = make_account("member")

    result = osc("token", "issue", "-f", "json", env=bob.os_env(password="wrong"), check=False)

    assert result.returncode != 0
    assert AUTH_REQUIRED in result.stderr, result
    assert result.stdout == ""


def test_disabled_user_cannot_get_a_token(osc, make_account, keystone):
    carol = make_account("member")
    before = keystone.token(carol.username, carol.password, carol.project_name)

    osc("user", "set", "--disable", carol.user_id)

    refused = osc("token", "issue", "-f", "json", env=carol.os_env(), check=False)
    assert refused.returncode != 0
    assert AUTH_REQUIRED in refused.stderr, refused
    assert keystone.password_auth(carol.username, carol.password).status == 401
    # Disabling a user revokes the tokens they already hold.
    assert keystone.validate(before).status == 404


def test_password_change_invalidates_old_tokens(osc, make_account, keystone):
    dave = make_account("member")
    old_token = keystone.token(dave.username, dave.password, dave.project_name)
    assert keystone.validate(old_token).status == 200

    osc("user", "set", "--password", "n3w-password", dave.user_id)

    assert keystone.validate(old_token).status == 404
    assert keystone.password_auth(dave.username, dave.password).status == 401
    fresh = keystone.password_auth(dave.username, "n3w-password", dave.project_name)
    assert fresh.status == 201
    assert keystone.validate(fresh.subject_token).status == 200


def test_role_remove_invalidates_project_token(osc, make_account, keystone):
    erin = make_account("member")
    scoped = keystone.token(erin.username, erin.password, erin.project_name)
    unscoped = keystone.token(erin.username, erin.password)
    assert keystone.validate(scoped).status == 200

    osc("role", "remove", "--user", erin.user_id, "--project", erin.project_id, "member")

    assert keystone.validate(scoped).status == 404
    # Without a role on the project the user can no longer scope to it ...
    assert keystone.password_auth(erin.username, erin.password, erin.project_name).status == 401
    # ... but remains a valid user.
    assert keystone.password_auth(erin.username, erin.password).status == 201
    assert unscoped


def test_token_revoke(osc, make_account, keystone, sdk_admin):
    frank = make_account("member")
    token = keystone.token(frank.username, frank.password, frank.project_name)
    assert keystone.validate(token).status == 200
    assert sdk_admin.identity.check_token(token) is True

    revoked = osc("token", "revoke", token)
    assert revoked.stdout.strip() == ""

    gone = keystone.validate(token)
    assert gone.status == 404
    assert gone.body["error"]["code"] == 404
    assert sdk_admin.identity.check_token(token) is False
    # Revoking one token leaves the user able to log in again.
    assert keystone.password_auth(frank.username, frank.password, frank.project_name).status == 201


@pytest.mark.parametrize("scope", ["member", "reader"])
def test_member_write_matrix_sdk(scope, make_account, connect, sdk_admin, unique):
    """The same refusals through openstacksdk, as an application would see them."""
    import openstack.exceptions

    alice = make_account(scope)
    other = make_account("member")
    conn = connect(alice.username, alice.password, alice.project_name)

    assert conn.identity.get_project(alice.project_id).id == alice.project_id

    with pytest.raises(openstack.exceptions.ForbiddenException) as got:
        conn.identity.get_project(other.project_id)
    assert got.value.status_code == 403
    with pytest.raises(openstack.exceptions.ForbiddenException):
        conn.identity.delete_project(other.project_id)
    with pytest.raises(openstack.exceptions.ForbiddenException):
        list(conn.identity.projects())
    with pytest.raises(openstack.exceptions.ForbiddenException):
        conn.identity.create_project(name=unique("sdk-nope"))
    with pytest.raises(openstack.exceptions.ForbiddenException):
        conn.identity.create_user(name=unique("sdk-nope"), password="x")
    admin_role = sdk_admin.identity.find_role("admin", ignore_missing=False)
    grant = conn.identity.put(
        f"/projects/{alice.project_id}/users/{alice.user_id}/roles/{admin_role.id}"
    )
    assert grant.status_code == 403

    assert sdk_admin.identity.get_project(other.project_id).id == other.project_id
    assert not sdk_admin.identity.validate_user_has_project_role(
        alice.project_id, alice.user_id, admin_role
    )
