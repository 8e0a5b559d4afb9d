"""Fixtures for driving a live `pocketstack up` with the real clients.

Every test here talks to a real server process over loopback, using the same
tools a user would: the `openstack` CLI (python-openstackclient, run as a
subprocess and read through `-f json`), openstacksdk, and plain HTTP where a
client adds nothing (checking whether one token still validates).

- `cloud` (session): one server for the whole run, admin password known.
- `osc`: runs the CLI, as admin through the state dir's clouds.yaml by default.
- `keystone`: raw Keystone v3 calls (issue/validate tokens) with urllib.
- `sdk_admin`, `connect`: openstacksdk connections, closed at the end.
- `make_account`: a fresh project and a user holding a role on it.
- `server_factory`: extra servers (restart, key rotation, status tests).

Each server is stopped with SIGTERM at teardown and must exit on its own,
without a traceback in its log.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 20.0
CLI_TIMEOUT_S = 60.0


def pytest_configure(config: pytest.Config) -> None:
    # openstacksdk 4.22 warns from inside itself on every Connection and on
    # every request/listing (RemovedInSDK50Warning for its own internal
    # `_extract_name(service_type=...)` and `_compute_attributes` calls,
    # RemovedInSDK60Warning because the loader always passes a non-empty
    # influxdb_config dict). None of these come from our calls, and with
    # `filterwarnings = error` they would fail every SDK test. Ignore only
    # those categories, and only when raised from openstack's own modules.
    # (Without openstacksdk installed the tests skip; don't break collection.)
    if importlib.util.find_spec("openstack") is None:
        return
    for category in ("RemovedInSDK50Warning", "RemovedInSDK60Warning"):
        config.addinivalue_line(
            "filterwarnings", rf"ignore::openstack.warnings.{category}:openstack\."
        )


def _bin(name: str) -> str:
    """An executable from the interpreter's own venv, else from PATH."""
    candidate = Path(sys.executable).parent / name
    if candidate.exists():
        return str(candidate)
    found = shutil.which(name)
    if found is None:
        pytest.skip(f"`{name}` is not installed; run `make install` (pip install -e '.[test]')")
    return found


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def _clean_env(home: Path) -> dict[str, str]:
    """The caller's environment minus anything that would point a client or
    the server somewhere else (OS_*, POCKETSTACK_*), with a private HOME so no
    ~/.config/openstack/clouds.yaml or secure.yaml leaks in."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OS_", "POCKETSTACK_"))}
    env["HOME"] = str(home)
    env.pop("XDG_CONFIG_HOME", None)
    env["POCKETSTACK_PASSWORD_HASH_ROUNDS"] = "4"
    return env


# --------------------------------------------------------------------------- HTTP


@dataclass(frozen=True)
class HttpResult:
    status: int
    headers: Mapping[str, str]  # names lower-cased
    body: Any

    @property
    def subject_token(self) -> str:
        return self.headers["x-subject-token"]


def http(
    method: str,
    url: str,
    body: Any = None,
    headers: Mapping[str, str] | None = None,
) -> HttpResult:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method)
    request.add_header("Accept", "application/json")
    if data is not None:
        request.add_header("Content-Type", "application/json")
    for key, value in (headers or {}).items():
        request.add_header(key, value)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            raw = response.read()
            status, got = response.status, {k.lower(): v for k, v in response.headers.items()}
    except urllib.error.HTTPError as exc:
        with exc:
            raw = exc.read()
            status, got = exc.code, {k.lower(): v for k, v in exc.headers.items()}
    try:
        parsed = json.loads(raw) if raw else None
    except ValueError:
        parsed = raw.decode(errors="replace")
    return HttpResult(status, got, parsed)


class Keystone:
    """Keystone v3 over plain HTTP: what any client sends, without a client."""

    def __init__(self, auth_url: str, admin_password: str) -> None:
        self.auth_url = auth_url
        self.admin_password = admin_password
        self._admin_token: str | None = None

    def password_auth(self, username: str, password: str, project: str | None = None) -> HttpResult:
        """POST /auth/tokens with the password method, optionally project-scoped (by name)."""
        auth: dict[str, Any] = {
            "identity": {
                "methods": ["password"],
                "password": {
                    "user": {"name": username, "domain": {"id": "default"}, "password": password}
                },
            }
        }
        if project is not None:
            auth["scope"] = {"project": {"name": project, "domain": {"id": "default"}}}
        return http("POST", f"{self.auth_url}/auth/tokens", {"auth": auth})

    def token(self, username: str, password: str, project: str | None = None) -> str:
        result = self.password_auth(username, password, project)
        assert result.status == 201, result
        return result.subject_token

    def admin_token(self) -> str:
        if self._admin_token is None:
            self._admin_token = self.token("admin", self.admin_password, "admin")
        return self._admin_token

    def validate(self, token: str) -> HttpResult:
        """GET /auth/tokens as admin: 200 with the token body, or 404 if invalid."""
        return http(
            "GET",
            f"{self.auth_url}/auth/tokens",
            headers={"X-Auth-Token": self.admin_token(), "X-Subject-Token": token},
        )


# --------------------------------------------------------------------------- server


@dataclass
class Server:
    """One `pocketstack up` process on 127.0.0.1 with its own state dir."""

    state_dir: Path
    home: Path
    port: int = field(default_factory=free_port)
    admin_password: str | None = None
    process: subprocess.Popen[bytes] | None = None
    starts: int = 0
    extra_args: tuple[str, ...] = ()
    # The real compute drivers and built-in images (tests/real); else fake hosts, no builds.
    real_compute: bool = False

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def auth_url(self) -> str:
        return f"{self.base_url}/identity/v3"

    @property
    def clouds_yaml(self) -> Path:
        return self.state_dir / "clouds.yaml"

    @property
    def log_path(self) -> Path:
        return self.state_dir.parent / f"{self.state_dir.name}-up-{self.starts}.log"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def env(self) -> dict[str, str]:
        return _clean_env(self.home)

    def start(self, admin_password: str | None = None) -> None:
        """Start `pocketstack up` and wait for GET /identity/v3 == 200.

        Without a password, `up` uses the one it stored or generates one; the
        password in force is then read back from the clouds.yaml it wrote."""
        assert self.process is None, "already running"
        self.starts += 1
        command = [
            _bin("pocketstack"),
            "up",
            "--state-dir",
            str(self.state_dir),
            "--bind",
            f"127.0.0.1:{self.port}",
            "--no-clouds-yaml",
        ]
        if not self.real_compute:
            command += ["--compute-driver", "fake", "--no-builtin-images"]
            command += ["--network-driver", "fake"]
        if admin_password is not None:
            command += ["--admin-password", admin_password]
        command += self.extra_args
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, env=self.env()
            )
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if self.process.poll() is not None:
                code = self.process.returncode
                self.process = None
                pytest.fail(f"pocketstack up exited with {code} before serving:\n{self.log()}")
            with contextlib.suppress(OSError):
                if http("GET", self.auth_url).status == 200:
                    break
            if time.monotonic() > deadline:
                self.stop(check=False)
                pytest.fail(f"pocketstack up not ready in {START_TIMEOUT_S} s:\n{self.log()}")
            time.sleep(0.05)
        self.admin_password = admin_password or self.clouds_password()

    def clouds_password(self) -> str:
        import yaml

        data = yaml.safe_load(self.clouds_yaml.read_text())
        return str(data["clouds"]["pocketstack"]["auth"]["password"])

    def stop(self, check: bool = True) -> int | None:
        """SIGTERM, wait; with check, fail unless it exited by itself, cleanly."""
        process, self.process = self.process, None
        if process is None:
            return None
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        try:
            code = process.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            if check:
                pytest.fail(f"pocketstack did not stop within {STOP_TIMEOUT_S} s of SIGTERM")
            return None
        if check:
            log = self.log()
            assert code == 0, f"pocketstack exited with {code}:\n{log}"
            assert "Traceback" not in log, log
        return code

    def keystone(self) -> Keystone:
        assert self.admin_password is not None
        return Keystone(self.auth_url, self.admin_password)


# --------------------------------------------------------------------------- CLI


@dataclass(frozen=True)
class CliResult:
    args: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        return json.loads(self.stdout)

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


class OpenStackCli:
    """Runs the real `openstack` command against one server.

    By default as the admin of the state dir's clouds.yaml (OS_CLOUD=pocketstack);
    `env=` replaces those credentials (an account's OS_* variables, or {} when
    the command line carries all of them)."""

    def __init__(self, server: Server) -> None:
        self.server = server

    def __call__(
        self, *args: str, env: Mapping[str, str] | None = None, check: bool = True
    ) -> CliResult:
        full_env = self.server.env()
        if env is None:
            full_env["OS_CLIENT_CONFIG_FILE"] = str(self.server.clouds_yaml)
            full_env["OS_CLOUD"] = "pocketstack"
        else:
            full_env.update(env)
        completed = subprocess.run(
            [_bin("openstack"), *args],
            env=full_env,
            capture_output=True,
            text=True,
            timeout=CLI_TIMEOUT_S,
            check=False,
        )
        result = CliResult(args, completed.returncode, completed.stdout, completed.stderr)
        if check and result.returncode != 0:
            pytest.fail(
                f"openstack {' '.join(args)} exited {result.returncode}\n"
                f"stdout: {result.stdout}\nstderr: {result.stderr}"
            )
        return result


# --------------------------------------------------------------------------- real drivers


@contextlib.contextmanager
def real_cloud_running(base: Path) -> Iterator[Server]:
    """`pocketstack up` on this machine's real drivers, with an external network of its own.

    At the end every server is deleted through the CLI and the cloud stopped; then the
    host is swept of its guests and data plane (which outlive `up` by design), and the
    test fails if a guest was still there."""
    from tests.real import host_checks

    (base / "home").mkdir()
    server = Server(state_dir=base / "state", home=base / "home", real_compute=True,
                    extra_args=("--external-cidr", host_checks.free_external_cidr()))  # fmt: skip
    server.start(admin_password=f"Adm-{uuid.uuid4().hex[:12]}")
    try:
        yield server
    finally:
        cli = OpenStackCli(server)
        if server.process is None:  # a test stopped it: start it again to delete through it
            server.start()
        if server.process is not None:
            listed = cli("server", "list", "--all-projects", "-f", "json", check=False)
            ids = [s["ID"] for s in json.loads(listed.stdout or "[]")]
            if ids:
                cli("server", "delete", "--wait", *ids, check=False)
        server.stop(check=True)
        left = _guest_ids(server)
        for server_id in left:
            _sweep_guest(server_id)
        for workdir in (server.state_dir / "network").glob("*"):
            host_checks.sweep_data_plane(workdir)
        assert not left, f"guests left on the host after their servers were deleted: {left}"


def _guest_ids(server: Server) -> set[str]:
    found: set[str] = set()
    # Namespace guests live under <host>/namespace/guests/, VMs under <host>/qemu/.
    for guests in [*(server.state_dir / "compute").glob("*/namespace/guests"),
                   *(server.state_dir / "compute").glob("*/qemu")]:  # fmt: skip
        found |= {entry.name for entry in guests.iterdir() if entry.is_dir()}
    return found


def _sweep_guest(server_id: str) -> None:
    """Remove what a failed test left of a guest (its cloud is stopped already)."""
    from pocketstack.host import namespaces
    from pocketstack.host.cgroups import GuestCgroup

    GuestCgroup(server_id).remove()
    namespaces.delete_netns(server_id)
    for line in Path("/proc/mounts").read_text().splitlines():
        if server_id in line.split()[1]:
            namespaces.unmount(Path(line.split()[1]))


# --------------------------------------------------------------------------- accounts


@dataclass(frozen=True)
class Account:
    """A user with a role on a project, as a tenant would be given one."""

    auth_url: str
    username: str
    password: str
    user_id: str
    project_name: str
    project_id: str
    role: str

    def os_env(self, password: str | None = None) -> dict[str, str]:
        """The OS_* variables an `openrc` for this user would export."""
        return {
            "OS_AUTH_URL": self.auth_url,
            "OS_IDENTITY_API_VERSION": "3",
            "OS_USERNAME": self.username,
            "OS_PASSWORD": self.password if password is None else password,
            "OS_USER_DOMAIN_NAME": "Default",
            "OS_PROJECT_NAME": self.project_name,
            "OS_PROJECT_DOMAIN_NAME": "Default",
        }


def sdk_connect(auth_url: str, username: str, password: str, project: str) -> Any:
    openstack = pytest.importorskip("openstack", reason="openstacksdk is not installed")
    return openstack.connect(
        auth_url=auth_url,
        username=username,
        password=password,
        project_name=project,
        user_domain_name="Default",
        project_domain_name="Default",
        region_name="RegionOne",
        identity_api_version="3",
        load_yaml_config=False,
        load_envvars=False,
    )


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="session")
def cloud(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    base = tmp_path_factory.mktemp("cloud")
    (base / "home").mkdir()
    server = Server(state_dir=base / "state", home=base / "home")
    server.start(admin_password=f"Adm-{uuid.uuid4().hex[:12]}")
    try:
        yield server
    finally:
        server.stop(check=True)


@pytest.fixture(scope="session", name="unique")
def unique_fixture() -> Callable[[str], str]:
    """unique(prefix) -> a name no other test uses."""
    return unique


@pytest.fixture(scope="session")
def osc(cloud: Server) -> OpenStackCli:
    return OpenStackCli(cloud)


@pytest.fixture(scope="session")
def keystone(cloud: Server) -> Keystone:
    return cloud.keystone()


@pytest.fixture(scope="session")
def _connections() -> Iterator[list[Any]]:
    opened: list[Any] = []
    yield opened
    for conn in opened:
        conn.close()


@pytest.fixture(scope="session")
def connect(cloud: Server, _connections: list[Any]) -> Callable[..., Any]:
    """connect(username, password, project) -> an openstacksdk Connection to `cloud`."""

    def _connect(username: str, password: str, project: str) -> Any:
        conn = sdk_connect(cloud.auth_url, username, password, project)
        _connections.append(conn)
        return conn

    return _connect


@pytest.fixture(scope="session")
def sdk_admin(cloud: Server, connect: Callable[..., Any]) -> Any:
    assert cloud.admin_password is not None
    return connect("admin", cloud.admin_password, "admin")


@pytest.fixture(scope="session")
def make_account(cloud: Server, sdk_admin: Any) -> Callable[..., Account]:
    """make_account(role="member", project_id=None) -> a new user with `role` on a
    new (or the given) project, created by the admin through the SDK."""

    def _make(role: str = "member", project_id: str | None = None) -> Account:
        if project_id is None:
            project = sdk_admin.identity.create_project(name=unique("proj"), domain_id="default")
        else:
            project = sdk_admin.identity.get_project(project_id)
        password = f"pw-{uuid.uuid4().hex[:12]}"
        user = sdk_admin.identity.create_user(
            name=unique(role), password=password, domain_id="default"
        )
        role_obj = sdk_admin.identity.find_role(role, ignore_missing=False)
        sdk_admin.identity.assign_project_role_to_user(project, user, role_obj)
        assert sdk_admin.identity.validate_user_has_project_role(project, user, role_obj)
        return Account(
            auth_url=cloud.auth_url,
            username=user.name,
            password=password,
            user_id=user.id,
            project_name=project.name,
            project_id=project.id,
            role=role,
        )

    return _make


@pytest.fixture(scope="session")
def osc_for() -> Callable[[Server], OpenStackCli]:
    """osc_for(server) -> the `openstack` CLI pointed at that server's clouds.yaml."""
    return OpenStackCli


@pytest.fixture
def sdk_for() -> Iterator[Callable[..., Any]]:
    """sdk_for(server, username="admin", password=None, project="admin") -> a
    Connection to that server (admin by default), closed at teardown."""
    opened: list[Any] = []

    def _connect(
        server: Server, username: str = "admin", password: str | None = None, project: str = "admin"
    ) -> Any:
        secret = password if password is not None else server.admin_password
        assert secret is not None
        conn = sdk_connect(server.auth_url, username, secret, project)
        opened.append(conn)
        return conn

    yield _connect
    for conn in opened:
        conn.close()


@pytest.fixture
def server_factory(tmp_path: Path) -> Iterator[Callable[[], Server]]:
    """server_factory() -> a not-yet-started Server with its own state dir;
    whatever is still running at teardown is stopped and checked."""
    servers: list[Server] = []
    home = tmp_path / "home"
    home.mkdir()

    def _make() -> Server:
        server = Server(state_dir=tmp_path / f"state{len(servers)}", home=home)
        servers.append(server)
        return server

    yield _make
    for server in servers:
        server.stop(check=True)
