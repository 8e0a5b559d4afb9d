"""The admin's everyday identity commands through the real `openstack` CLI.

Uses the clouds.yaml that `pocketstack up` wrote (OS_CLOUD=pocketstack), as
the banner tells a newcomer to do, and checks what the CLI prints.
"""

from __future__ import annotations

from typing import Any


def _by(rows: list[dict[str, Any]], key: str, value: Any) -> dict[str, Any]:
    matches = [row for row in rows if row.get(key) == value]
    assert len(matches) == 1, f"expected one row with {key}={value!r} in {rows}"
    return matches[0]


def test_token_issue_gives_an_admin_project_token(osc, keystone, sdk_admin):
    issued = osc("token", "issue", "-f", "json").json()

    assert set(issued) >= {"id", "expires", "project_id", "user_id"}
    admin_project = sdk_admin.identity.find_project("admin", ignore_missing=False)
    admin_user = sdk_admin.identity.find_user("admin", ignore_missing=False)
    assert issued["project_id"] == admin_project.id
    assert issued["user_id"] == admin_user.id
    validated = keystone.validate(issued["id"])
    assert validated.status == 200
    assert validated.body["token"]["project"]["id"] == admin_project.id
    assert {r["name"] for r in validated.body["token"]["roles"]} >= {"admin"}


def test_catalog_endpoints_regions_services(osc, cloud):
    identity_url = f"{cloud.base_url}/identity"

    catalog = osc("catalog", "list", "-f", "json").json()
    keystone_entry = _by(catalog, "Type", "identity")
    assert keystone_entry["Name"] == "keystone"
    by_interface = {e["interface"]: e for e in keystone_entry["Endpoints"]}
    assert set(by_interface) >= {"public"}
    assert by_interface["public"]["url"] == identity_url
    assert by_interface["public"]["region"] == "RegionOne"

    endpoints = osc("endpoint", "list", "-f", "json").json()
    identity_endpoints = [e for e in endpoints if e["Service Type"] == "identity"]
    assert {e["Interface"] for e in identity_endpoints} == set(by_interface)
    for endpoint in identity_endpoints:
        assert endpoint["URL"] == identity_url
        assert endpoint["Enabled"] is True
        assert endpoint["Region"] == "RegionOne"
        assert endpoint["Service Name"] == "keystone"

    regions = osc("region", "list", "-f", "json").json()
    assert "RegionOne" in {r["Region"] for r in regions}

    services = osc("service", "list", "-f", "json").json()
    service = _by(services, "Type", "identity")
    assert service["Name"] == "keystone"


def test_project_create_list_show_delete(osc, unique):
    name = unique("cli-proj")

    created = osc(
        "project", "create", "--description", "made by the CLI test", name, "-f", "json"
    ).json()
    assert created["name"] == name
    assert created["description"] == "made by the CLI test"
    assert created["enabled"] is True
    assert created["domain_id"] == "default"

    listed = osc("project", "list", "-f", "json").json()
    assert _by(listed, "Name", name)["ID"] == created["id"]

    shown = osc("project", "show", name, "-f", "json").json()
    assert shown["id"] == created["id"]
    assert shown["description"] == "made by the CLI test"

    osc("project", "delete", name)
    gone = osc("project", "show", created["id"], check=False)
    assert gone.returncode != 0
    assert f"No Project found for {created['id']}" in gone.stderr, gone


def test_user_role_group_workflow(osc, keystone, unique):
    project = unique("cli-team")
    username = unique("cli-user")
    group = unique("cli-group")
    project_id = osc("project", "create", project, "-f", "json").json()["id"]

    user = osc(
        "user", "create", "--password", "s3cret-pw", "--project", project, username, "-f", "json"
    ).json()
    assert user["name"] == username
    assert user["default_project_id"] == project_id
    assert user["enabled"] is True
    assert "password" not in user

    # `role add` prints nothing and exits 0.
    added = osc("role", "add", "--user", username, "--project", project, "member")
    assert added.stdout.strip() == ""

    assignments = osc(
        "role", "assignment", "list", "--names", "--project", project, "-f", "json"
    ).json()
    assert assignments == [
        {
            "Role": "member",
            "User": f"{username}@Default",
            "Group": "",
            "Project": f"{project}@Default",
            "Domain": "",
            "System": "",
            "Inherited": False,
        }
    ]

    created_group = osc("group", "create", group, "-f", "json").json()
    assert created_group["name"] == group
    osc("group", "add", "user", group, username)
    members = osc("user", "list", "--group", group, "-f", "json").json()
    assert [m["Name"] for m in members] == [username]

    # The new user can now log in to the project with the password the admin set.
    token = keystone.password_auth(username, "s3cret-pw", project)
    assert token.status == 201
    assert token.body["token"]["project"]["id"] == project_id
    assert "member" in {r["name"] for r in token.body["token"]["roles"]}
