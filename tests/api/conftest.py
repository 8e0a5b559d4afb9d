"""In-process API tests: the real app on a fresh SQLite database per test.

The schema and bootstrap are built once per session into a template state
dir; each test gets a copy, so a test costs milliseconds, not a migration.
"""

from __future__ import annotations

import contextlib
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from pocketstack import config, services
from pocketstack.core.runtime import Runtime
from pocketstack.identity import bootstrap, passwords

ADMIN_PASSWORD = "admin-secret"
BASE = "http://testserver"
CATALOG = [
    bootstrap.CatalogService("identity", "keystone", f"{BASE}/identity"),
    bootstrap.CatalogService("volumev3", "cinderv3", f"{BASE}/volume/v3/$(project_id)s"),
]


def _settings(state_dir: Path) -> config.Settings:
    return config.Settings(
        state_dir=state_dir,
        password_hash_rounds=4,
        services=config.KNOWN_SERVICES,
        compute_driver="fake",
        network_driver="fake",
        builtin_images=False,
    )


@pytest.fixture(scope="session")
def template_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    state_dir = tmp_path_factory.mktemp("template")
    runtime = services.build_runtime(_settings(state_dir))
    services.upgrade_schema(runtime)
    services.prepare(runtime)
    bootstrap.bootstrap(runtime, passwords.hash_secret(ADMIN_PASSWORD, 4), True, CATALOG)
    services.close(runtime)
    return state_dir


@dataclass
class Cloud:
    """A running app plus helpers to act as different users."""

    client: TestClient
    runtime: Runtime

    def call(
        self,
        method: str,
        path: str,
        token: str | None = None,
        body: Any = None,
        headers: dict[str, str] | None = None,
    ) -> Any:
        all_headers = dict(headers or {})
        if token:
            all_headers["X-Auth-Token"] = token
        return self.client.request(method, f"/identity{path}", json=body, headers=all_headers)

    def issue(
        self, user: str, password: str, scope: Any = None, user_domain: str = "Default"
    ) -> Any:
        auth: dict[str, Any] = {
            "identity": {
                "methods": ["password"],
                "password": {
                    "user": {"name": user, "password": password, "domain": {"name": user_domain}}
                },
            }
        }
        if scope is not None:
            auth["scope"] = scope
        return self.call("POST", "/v3/auth/tokens", body={"auth": auth})

    def token(self, user: str, password: str, project: str | None = None, scope: Any = None) -> str:
        if project is not None:
            scope = {"project": {"name": project, "domain": {"id": "default"}}}
        response = self.issue(user, password, scope)
        assert response.status_code == 201, response.text
        return str(response.headers["X-Subject-Token"])

    @property
    def admin(self) -> str:
        return self.token("admin", ADMIN_PASSWORD, project="admin")

    def create(self, admin: str, kind: str, **fields: Any) -> dict[str, Any]:
        response = self.call("POST", f"/v3/{kind}s", admin, {kind: fields})
        assert response.status_code == 201, response.text
        return dict(response.json()[kind])

    def role_id(self, admin: str, name: str) -> str:
        roles = self.call("GET", f"/v3/roles?name={name}", admin).json()["roles"]
        return str(roles[0]["id"])

    def user_with_role(self, admin: str, name: str, project_id: str, role: str) -> dict[str, Any]:
        user = self.create(admin, "user", name=name, password=f"{name}-pw")
        grant = f"/v3/projects/{project_id}/users/{user['id']}/roles/{self.role_id(admin, role)}"
        assert self.call("PUT", grant, admin).status_code == 204
        return user


@pytest.fixture
def cloud(template_dir: Path, tmp_path: Path) -> Iterator[Cloud]:
    state_dir = tmp_path / "state"
    shutil.copytree(template_dir, state_dir)
    with running(_settings(state_dir)) as started:
        yield started


@contextlib.contextmanager
def running(settings: config.Settings, background: bool = False) -> Iterator[Cloud]:
    """The app on `settings`, served in-process until the block ends; with `background`,
    the services' background work (compute agents) runs too."""
    runtime = services.build_runtime(settings)
    stop = services.start(runtime) if background else None
    try:
        with TestClient(services.build_app(runtime), base_url=BASE) as client:
            yield Cloud(client, runtime)
    finally:
        if stop is not None:
            stop()
        services.close(runtime)


@pytest.fixture
def cloud_factory(template_dir: Path, tmp_path: Path) -> Any:
    """Start the app on a copy of the template with changed settings."""
    state_dir = tmp_path / "state"
    shutil.copytree(template_dir, state_dir)

    def start(background: bool = False, **changes: Any) -> contextlib.AbstractContextManager[Cloud]:
        return running(replace(_settings(state_dir), **changes), background)

    return start


class Volumes:
    """The block storage API of one project, and waits on what its agent does."""

    def __init__(self, cloud: Cloud, token: str, project_id: str) -> None:
        self.cloud, self.token, self.project_id = cloud, token, project_id

    def __call__(self, method: str, path: str, body: Any = None, version: str = "3.71") -> Any:
        headers = {"X-Auth-Token": self.token, "OpenStack-API-Version": f"volume {version}"}
        url = f"/volume/v3/{self.project_id}{path}"
        return self.cloud.client.request(method, url, json=body, headers=headers)

    def wait(self, path: str, key: str, status: str, within_s: float = 10) -> dict[str, Any]:
        deadline = time.monotonic() + within_s
        while time.monotonic() < deadline:
            found = self("GET", path)
            if found.status_code == 404 and status == "gone":
                return {}
            body = dict(found.json()[key]) if found.status_code == 200 else {}
            if body.get("status") == status:
                return body
            time.sleep(0.02)
        raise AssertionError(f"{path} never became {status}: {found.text}")

    def create(self, **fields: Any) -> dict[str, Any]:
        response = self("POST", "/volumes", {"volume": {"size": 1, **fields}})
        assert response.status_code == 202, response.text
        assert response.json()["volume"]["status"] == "creating"
        return self.wait(f"/volumes/{response.json()['volume']['id']}", "volume", "available")


@pytest.fixture
def volumes(cloud_factory: Any) -> Iterator[Volumes]:
    """The block storage API of a cloud whose agents run, as its admin project."""
    with cloud_factory(background=True) as cloud:
        admin = cloud.admin
        projects = cloud.call("GET", "/v3/projects?name=admin", admin).json()["projects"]
        yield Volumes(cloud, admin, projects[0]["id"])
