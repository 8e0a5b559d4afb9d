"""Compute through the real `openstack` CLI against `pocketstack up --fake-hosts 4
--fake-vgpus 2`: images round-trip, VGPU and trait flavors land where they must, a full
cloud gives "No valid host", and server actions change state as upstream."""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.clients.conftest import OpenStackCli, Server, _bin

HOSTS = 4
VGPUS_PER_HOST = 2


@pytest.fixture(scope="module")
def fake_cloud(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    base = tmp_path_factory.mktemp("compute")
    (base / "home").mkdir()
    server = Server(
        state_dir=base / "state",
        home=base / "home",
        extra_args=("--fake-hosts", str(HOSTS), "--fake-vgpus", str(VGPUS_PER_HOST)),
    )
    server.start(admin_password=f"Adm-{uuid.uuid4().hex[:12]}")
    try:
        yield server
    finally:
        server.stop(check=True)


@pytest.fixture(scope="module")
def cli(fake_cloud: Server) -> OpenStackCli:
    return OpenStackCli(fake_cloud)


@pytest.fixture(scope="module")
def image(cli: OpenStackCli, tmp_path_factory: pytest.TempPathFactory) -> str:
    """An image whose bytes come back unchanged."""
    data = bytes(range(256)) * 64
    path = tmp_path_factory.mktemp("image") / "disk.raw"
    path.write_bytes(data)
    created = cli("image", "create", "--file", str(path), "--disk-format", "raw",
                  "--container-format", "bare", "--public", "cirros",
                  "-f", "json").json()  # fmt: skip
    saved = path.with_suffix(".saved")
    cli("image", "save", "--file", str(saved), created["id"])
    assert saved.read_bytes() == data
    return str(created["id"])


def _boot(cli: OpenStackCli, image: str, flavor: str, name: str, *extra: str) -> Any:
    return cli("server", "create", "--flavor", flavor, "--image", image, "--nic", "none",
               "--wait", *extra, name, "-f", "json").json()  # fmt: skip


def _flavor(cli: OpenStackCli, name: str, *properties: str) -> None:
    args = [arg for prop in properties for arg in ("--property", prop)]
    cli("flavor", "create", "--vcpus", "1", "--ram", "64", "--disk", "0", *args, name)


def _host(cli: OpenStackCli, server: str) -> str:
    return str(cli("server", "show", server, "-f", "json").json()["OS-EXT-SRV-ATTR:host"])


def _provider(cli: OpenStackCli, name: str) -> str:
    (found,) = cli("resource", "provider", "list", "--name", name, "-f", "json").json()
    return str(found["uuid"])


def test_vgpu_flavor_lands_on_gpu_providers_until_they_are_full(
    cli: OpenStackCli, image: str
) -> None:
    _flavor(cli, "vgpu", "resources:VGPU=1")
    total = HOSTS * VGPUS_PER_HOST
    cli("server", "create", "--flavor", "vgpu", "--image", image, "--nic", "none",
        "--min", str(total), "--max", str(total), "--wait", "gpu")  # fmt: skip
    servers = cli("server", "list", "--name", "^gpu-", "--long", "-f", "json").json()
    assert len(servers) == total
    assert {s["Status"] for s in servers} == {"ACTIVE"}
    for server in servers:
        allocations = cli("resource", "provider", "allocation", "show", server["ID"],
                          "-f", "json").json()  # fmt: skip
        (gpu,) = [a for a in allocations if "VGPU" in a["resources"]]
        host = server["Host"]
        assert gpu["resource_provider"] == _provider(cli, f"{host}_pci_0000_81_00_0")
    one_too_many = cli("server", "create", "--flavor", "vgpu", "--image", image, "--nic",
                       "none", "gpu-extra", "-f", "json").json()  # fmt: skip
    shown = _wait_status(cli, one_too_many["id"], "ERROR")
    assert shown["fault"]["message"].startswith("No valid host was found.")
    for server in servers:
        cli("server", "delete", "--wait", server["ID"])
    cli("server", "delete", "--wait", one_too_many["id"])


def _wait_status(cli: OpenStackCli, server: str, status: str) -> dict[str, Any]:
    for _ in range(100):
        shown: dict[str, Any] = cli("server", "show", server, "-f", "json").json()
        if shown["status"] == status and shown["OS-EXT-STS:task_state"] is None:
            return shown
    raise AssertionError(f"server {server} never reached {status}")


def test_required_trait_restricts_hosts(cli: OpenStackCli, image: str) -> None:
    chosen = "fake-host-3"
    cli("trait", "create", "CUSTOM_FAST_DISK", "--os-placement-api-version", "1.6")
    cli("resource", "provider", "trait", "set", "--trait", "CUSTOM_FAST_DISK", "--trait",
        "COMPUTE_NODE", _provider(cli, chosen), "--os-placement-api-version", "1.6")  # fmt: skip
    _flavor(cli, "fast", "trait:CUSTOM_FAST_DISK=required")
    cli("server", "create", "--flavor", "fast", "--image", image, "--nic", "none",
        "--min", "3", "--max", "3", "--wait", "fast")  # fmt: skip
    servers = cli("server", "list", "--name", "^fast-", "--long", "-f", "json").json()
    assert [s["Host"] for s in servers] == [chosen] * 3
    for server in servers:
        cli("server", "delete", "--wait", server["ID"])


def test_server_actions_change_state_as_upstream(cli: OpenStackCli, image: str) -> None:
    server = _boot(cli, image, "m1.tiny", "lifecycle")
    assert server["status"] == "ACTIVE"
    name = server["id"]

    def reaches(status: str, *args: str) -> bool:
        cli("server", *args)
        return _wait_status(cli, name, status)["status"] == status

    assert reaches("SHUTOFF", "stop", name)
    assert reaches("ACTIVE", "start", name)
    assert reaches("ACTIVE", "reboot", "--hard", "--wait", name)
    assert reaches("RESCUE", "rescue", name)
    assert reaches("ACTIVE", "unrescue", name)
    assert reaches("VERIFY_RESIZE", "resize", "--flavor", "m1.small", "--wait", name)
    assert reaches("ACTIVE", "resize", "confirm", name)
    shown = cli("server", "show", name, "-f", "json").json()
    assert shown["flavor"]["original_name"] == "m1.small"
    console = cli("console", "log", "show", name).stdout
    assert "login:" in console
    cli("server", "delete", "--wait", name)
    gone = cli("server", "show", name, check=False)
    assert gone.returncode != 0
    assert "No Server found" in gone.stderr


def test_cells_are_managed_from_the_command_line(fake_cloud: Server) -> None:
    run: Callable[..., Any] = _run_pocketstack(fake_cloud, _bin("pocketstack"))
    listed = run("manage", "cell", "list")
    assert "cell0" in listed and "cell1" in listed
    assert "cellx created" in run("manage", "cell", "create", "--name", "cellx")
    assert "cellx disabled" in run("manage", "cell", "disable", "cellx")
    assert "cellx deleted" in run("manage", "cell", "delete", "cellx")
    refused = run("manage", "cell", "delete", "cell0", check=False)
    assert "cell0 cannot be deleted" in refused


def _run_pocketstack(server: Server, binary: str) -> Callable[..., str]:
    def run(*args: str, check: bool = True) -> str:
        done = subprocess.run(
            [binary, *args, "--state-dir", str(server.state_dir)],
            env=server.env(),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if check:
            assert done.returncode == 0, done.stderr
        return done.stdout + done.stderr

    return run
