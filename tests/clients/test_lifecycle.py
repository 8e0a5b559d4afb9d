"""Operating the server: `pocketstack status`, key rotation, stop and restart.

Each test runs its own `pocketstack up` (server_factory) because it stops,
restarts or rotates the keys of that server.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cryptography.fernet import Fernet, InvalidToken

from tests.clients.conftest import Server, http


def _run(server, *args: str) -> subprocess.CompletedProcess[str]:
    """`pocketstack ARGS --state-dir <the server's>`, from this interpreter's venv."""
    executable = str(Path(sys.executable).parent / "pocketstack")
    return subprocess.run(
        [executable, *args, "--state-dir", str(server.state_dir)],
        env=server.env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _signing_key(server, token: str) -> int | None:
    """Which key file of the Fernet repository opens `token` (None if none does)."""
    padded = token + "=" * (-len(token) % 4)
    for key_file in sorted((server.state_dir / "fernet-keys").iterdir()):
        try:
            Fernet(key_file.read_bytes().strip()).decrypt(padded.encode())
        except InvalidToken:
            continue
        return int(key_file.name)
    return None


def _primary_key(server) -> int:
    return max(int(p.name) for p in (server.state_dir / "fernet-keys").iterdir())


def test_status_while_up_and_after_stop(server_factory):
    server = server_factory()
    server.start(admin_password="status-pw")

    up = _run(server, "status")
    assert up.returncode == 0, up
    assert f"pocketstack is up at {server.base_url}" in up.stdout
    assert server.auth_url in up.stdout

    server.stop()

    down = _run(server, "status")
    assert down.returncode != 0, down
    assert "pocketstack up" in down.stdout + down.stderr, down


def test_rotate_keys_while_running(server_factory, osc_for):
    server = server_factory()
    server.start(admin_password="rotate-pw")
    keystone = server.keystone()
    before = keystone.token("admin", "rotate-pw", "admin")
    old_primary = _primary_key(server)
    assert _signing_key(server, before) == old_primary

    rotated = _run(server, "token", "rotate-keys")
    assert rotated.returncode == 0, rotated
    assert "rotated" in rotated.stdout
    new_primary = _primary_key(server)
    assert new_primary > old_primary

    # Tokens issued before the rotation still validate.
    assert keystone.validate(before).status == 200

    # The running server starts signing with the new primary key (within about
    # a second, without a restart); such tokens validate too.
    deadline = time.monotonic() + 5
    while True:
        fresh = keystone.token("admin", "rotate-pw", "admin")
        if _signing_key(server, fresh) == new_primary:
            break
        if time.monotonic() > deadline:
            pytest.fail("the server never started signing with the rotated key")
        time.sleep(0.2)
    assert keystone.validate(fresh).status == 200
    assert keystone.validate(before).status == 200

    issued = osc_for(server)("token", "issue", "-f", "json").json()
    assert _signing_key(server, issued["id"]) == new_primary
    assert keystone.validate(issued["id"]).status == 200


def test_restart_keeps_state(server_factory, osc_for, sdk_for):
    server = server_factory()
    server.start()  # no --admin-password: `up` generates one and keeps it
    first_password = server.admin_password
    assert first_password
    keystone = server.keystone()

    admin = sdk_for(server)
    project = admin.identity.create_project(
        name="kept-project", domain_id="default", description="survives restarts"
    )
    user = admin.identity.create_user(
        name="kept-user", password="kept-pw", domain_id="default", default_project_id=project.id
    )
    member = admin.identity.find_role("member", ignore_missing=False)
    admin.identity.assign_project_role_to_user(project, user, member)
    user_token = keystone.token("kept-user", "kept-pw", "kept-project")
    admin_token = keystone.admin_token()
    admin.close()

    server.stop()
    server.start()

    # The same password, in the rewritten clouds.yaml too.
    assert server.admin_password == first_password
    assert keystone.password_auth("admin", first_password, "admin").status == 201
    shown = osc_for(server)("project", "show", "kept-project", "-f", "json").json()
    assert shown["id"] == project.id
    assert shown["description"] == "survives restarts"
    assert sdk_for(server).identity.find_user("kept-user").id == user.id
    relogin = keystone.password_auth("kept-user", "kept-pw", "kept-project")
    assert relogin.status == 201
    assert relogin.body["token"]["project"]["id"] == project.id

    # Fernet keys persist: tokens issued before the restart still validate.
    assert keystone.validate(user_token).status == 200
    assert keystone.validate(admin_token).status == 200


def test_restart_without_password_keeps_clouds_yaml_working(server_factory):
    server = server_factory()
    server.start(admin_password="given-once")
    server.stop()

    server.start()

    assert server.keystone().password_auth("admin", "given-once", "admin").status == 201
    in_clouds_yaml = server.clouds_password()
    assert server.keystone().password_auth("admin", in_clouds_yaml, "admin").status == 201


def test_sigterm_cleans_up(server_factory):
    server = server_factory()
    server.start(admin_password="term-pw")
    info = json.loads((server.state_dir / "server.json").read_text())
    assert info["url"] == server.base_url

    server.stop()

    assert "pocketstack stopped." in server.log()
    assert not (server.state_dir / "server.json").exists()
    status = _run(server, "status")
    assert status.returncode != 0
    assert "is not running" in status.stdout


def test_sigterm_exit_status_is_zero(server_factory):
    server = server_factory()
    server.start(admin_password="term-pw")

    code = server.stop()

    assert code == 0, f"exit status {code} (-{signal.SIGTERM} means killed by SIGTERM)"


def test_two_api_processes_share_tokens_and_revocations(server_factory):
    """Two `up` processes on one state dir (one database, one key repository) stand in for
    several API workers: a token from either works on both, and a revocation or a user
    disabled through one is in force on the other at once."""
    first = server_factory()
    first.start(admin_password="shared-pw")
    second = Server(state_dir=first.state_dir, home=first.home, starts=100)
    second.start(admin_password="shared-pw")
    try:
        one, two = first.keystone(), second.keystone()
        token = one.token("admin", "shared-pw", "admin")
        assert two.validate(token).status == 200

        revoke = http(
            "DELETE",
            f"{second.auth_url}/auth/tokens",
            headers={"X-Auth-Token": token, "X-Subject-Token": token},
        )
        assert revoke.status == 204
        assert one.validate(token).status == 404

        admin = one.admin_token()
        created = http(
            "POST",
            f"{first.auth_url}/users",
            {"user": {"name": "worker-user", "password": "wu-pw"}},
            headers={"X-Auth-Token": admin},
        )
        user_id = created.body["user"]["id"]
        user_token = two.token("worker-user", "wu-pw")
        assert two.validate(user_token).status == 200
        http(
            "PATCH",
            f"{first.auth_url}/users/{user_id}",
            {"user": {"enabled": False}},
            headers={"X-Auth-Token": admin},
        )
        assert two.validate(user_token).status == 404
    finally:
        second.stop()
