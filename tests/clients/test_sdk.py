"""openstacksdk against a live pocketstack, as an application or Ansible would use it."""

from __future__ import annotations


def test_sdk_admin_identity_calls(sdk_admin, connect, keystone, unique):
    token = sdk_admin.authorize()
    assert isinstance(token, str) and token
    assert keystone.validate(token).status == 200

    projects = {p.name: p for p in sdk_admin.identity.projects()}
    assert "admin" in projects
    assert projects["admin"].domain_id == "default"

    project = sdk_admin.identity.create_project(
        name=unique("sdk-proj"), domain_id="default", description="from the SDK"
    )
    assert project.id and project.is_enabled is True
    username = unique("sdk-user")
    user = sdk_admin.identity.create_user(
        name=username,
        password="sdk-pw-1",
        domain_id="default",
        default_project_id=project.id,
        email="sdk@example.com",
    )
    assert user.id and user.name == username
    assert user.default_project_id == project.id
    assert user.is_enabled is True

    listed = {u.name: u for u in sdk_admin.identity.users()}
    assert listed[username].id == user.id
    assert listed[username].email == "sdk@example.com"
    assert sdk_admin.identity.find_user(username).id == user.id
    assert sdk_admin.identity.get_user(user.id).name == username

    member = sdk_admin.identity.find_role("member", ignore_missing=False)
    sdk_admin.identity.assign_project_role_to_user(project, user, member)
    assert sdk_admin.identity.validate_user_has_project_role(project, user, member)

    # The new user gets a working connection of their own, scoped to the project.
    conn = connect(username, "sdk-pw-1", project.name)
    user_token = conn.authorize()
    assert conn.current_project_id == project.id
    assert conn.current_user_id == user.id
    validated = sdk_admin.identity.validate_token(user_token)
    assert validated.project["id"] == project.id
    assert validated.user["id"] == user.id
    assert conn.identity.get_project(project.id).description == "from the SDK"
    assert [p.id for p in conn.identity.user_projects(user.id)] == [project.id]

    sdk_admin.identity.delete_user(user)
    sdk_admin.identity.delete_project(project)
    assert sdk_admin.identity.find_user(username) is None
    assert sdk_admin.identity.check_token(user_token) is False
