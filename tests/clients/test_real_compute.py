"""Real servers through the real `openstack` CLI: `pocketstack up` on this machine's
drivers, `busybox` and `tiny-vm` built and registered by `up` itself.

Each action is checked on the host, where a user would look: the processes in
the server's cgroup, its PID 1, its frozen state, its console. Everything a
test creates is deleted at the end; a sweep after the cloud stops makes sure
no guest, namespace, mount or cgroup of this cloud is left behind.
"""

from __future__ import annotations

import functools
import os
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from pocketstack.host import cgroups, image_builds, namespaces, qemu
from pocketstack.host.cgroups import GuestCgroup
from tests.clients.conftest import OpenStackCli, Server, real_cloud_running
from tests.real import host_checks

pytestmark = pytest.mark.skipif(
    namespaces.missing() is not None, reason=f"real compute: {namespaces.missing()}"
)


@pytest.fixture(scope="module")
def real_cloud(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with real_cloud_running(tmp_path_factory.mktemp("real-compute")) as server:
        yield server


@pytest.fixture(scope="module")
def cli(real_cloud: Server) -> OpenStackCli:
    return OpenStackCli(real_cloud)


def wait_for(check: Callable[[], Any], timeout_s: float = 10.0, what: str = "") -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        result = check()
        if result:
            return result
        assert time.monotonic() < deadline, f"timed out waiting for {what or check}"
        time.sleep(0.1)


def boot(cli: OpenStackCli, name: str, image: str = "busybox", *extra: str) -> dict[str, Any]:
    created = cli("server", "create", "--flavor", "tiny", "--image", image, "--nic", "none",
                  "--wait", *extra, name, "-f", "json").json()  # fmt: skip
    assert created["status"] == "ACTIVE", created
    return dict(created)


def status(cli: OpenStackCli, server_id: str) -> str:
    return str(cli("server", "show", server_id, "-f", "json").json()["status"])


def wait_status(cli: OpenStackCli, server_id: str, wanted: str, timeout_s: float = 15.0) -> None:
    wait_for(lambda: status(cli, server_id) == wanted, timeout_s, f"{server_id} {wanted}")


def console(cli: OpenStackCli, server_id: str) -> str:
    return cli("console", "log", "show", server_id).stdout


def guest_file(server_id: str, path: str) -> str:
    pid = host_checks.guest_pid(server_id)
    assert pid is not None
    root = Path(f"/proc/{pid}/root")
    try:
        return (root / path.lstrip("/")).read_text()
    except OSError:
        return ""


def test_a_busybox_server_lives_its_whole_life_on_real_processes(cli: OpenStackCli) -> None:
    server = boot(cli, "s1", "busybox", "--user-data", str(_user_data()))
    server_id = server["id"]
    wait_for(lambda: image_builds.BOOT_MARKER in console(cli, server_id), what="boot marker")
    first = host_checks.guest_pid(server_id)
    assert first is not None
    wait_for(lambda: guest_file(server_id, "/root/from-user-data") == "written\n")

    cli("server", "stop", server_id)
    wait_status(cli, server_id, "SHUTOFF")
    assert GuestCgroup(server_id).pids() == set()
    cli("server", "start", server_id)
    wait_status(cli, server_id, "ACTIVE")
    second = wait_for(lambda: host_checks.guest_pid(server_id), what="PID 1 after start")
    assert second != first

    cli("server", "reboot", "--wait", server_id)
    third = wait_for(lambda: host_checks.guest_pid(server_id), what="PID 1 after reboot")
    assert third != second
    assert "s1 stopping" in console(cli, server_id)

    cli("server", "pause", server_id)
    wait_status(cli, server_id, "PAUSED")
    assert GuestCgroup(server_id).frozen() is True
    cli("server", "unpause", server_id)
    wait_status(cli, server_id, "ACTIVE")
    assert GuestCgroup(server_id).frozen() is False
    assert host_checks.guest_pid(server_id) == third

    cli("server", "rescue", server_id)
    wait_status(cli, server_id, "RESCUE")
    wait_for(lambda: guest_file(server_id, "/mnt/root/from-user-data") == "written\n")
    cli("server", "unrescue", server_id)
    wait_status(cli, server_id, "ACTIVE")

    cli("server", "resize", "--flavor", "m1.tiny", "--wait", server_id)
    assert status(cli, server_id) == "VERIFY_RESIZE"
    assert GuestCgroup(server_id).limits()[1] == 512 * 1024 * 1024
    cli("server", "resize", "confirm", server_id)
    wait_status(cli, server_id, "ACTIVE")

    # A snapshot is the server's root tree; rebuilt from it, the server has its files.
    snapshot = cli("server", "image", "create", "--name", "s1-snap", "--wait", server_id,
                   "-f", "json").json()  # fmt: skip
    boots = console(cli, server_id).count(image_builds.BOOT_MARKER)
    cli("server", "rebuild", "--image", snapshot["id"], "--wait", server_id)
    wait_for(lambda: console(cli, server_id).count(image_builds.BOOT_MARKER) == boots + 1)
    assert guest_file(server_id, "/root/from-user-data") == "written\n"

    processes = GuestCgroup(server_id).pids()
    cli("server", "delete", "--wait", server_id)
    assert not [p for p in processes if host_checks.running(p)]
    assert server_id not in namespaces.guest_netns()
    assert server_id not in cgroups.guest_groups()
    assert server_id not in Path("/proc/mounts").read_text()


def _user_data() -> Path:
    path = Path(f"/tmp/user-data-{uuid.uuid4().hex}")
    path.write_text("#!/bin/sh\necho written > /root/from-user-data\n")
    return path


def test_a_server_whose_init_dies_is_shut_off_with_an_action(cli: OpenStackCli) -> None:
    server_id = boot(cli, "dies")["id"]
    pid = wait_for(lambda: host_checks.guest_pid(server_id))
    os.kill(pid, signal.SIGKILL)
    wait_status(cli, server_id, "SHUTOFF")
    actions = cli("server", "event", "list", server_id, "-f", "json").json()
    assert actions[0]["Action"] == "stop"
    cli("server", "start", server_id)
    wait_status(cli, server_id, "ACTIVE")
    cli("server", "delete", "--wait", server_id)


def test_servers_survive_a_kill_9_of_the_cloud(cli: OpenStackCli, real_cloud: Server) -> None:
    cli("server", "create", "--flavor", "tiny", "--image", "busybox", "--nic", "none",
        "--min", "5", "--max", "5", "--wait", "keep")  # fmt: skip
    listed = cli("server", "list", "--name", "^keep", "-f", "json").json()
    ids = [s["ID"] for s in listed if s["Status"] == "ACTIVE"]
    assert len(ids) == 5, listed
    before: dict[str, int] = {s: wait_for(functools.partial(host_checks.guest_pid, s)) for s in ids}
    assert real_cloud.process is not None
    real_cloud.process.kill()
    real_cloud.process.wait()
    real_cloud.process = None
    # While the cloud is away, one guest goes down (its host "rebooted", say).
    down = ids[0]
    os.kill(before.pop(down), signal.SIGKILL)
    wait_for(lambda: host_checks.guest_pid(down) is None)
    real_cloud.start()
    listed = cli("server", "list", "--name", "^keep", "-f", "json").json()
    assert sorted(s["Status"] for s in listed) == ["ACTIVE"] * 5
    # The others' very same PID 1s run: adopted, neither restarted nor started twice; the
    # one that went down was started again (--resume-guests-on-start, the default).
    assert {server_id: host_checks.guest_pid(server_id) for server_id in ids[1:]} == before
    assert host_checks.guest_pid(down) is not None
    for server_id in ids:
        assert len(host_checks.pid1s(server_id)) == 1
    cli("server", "delete", "--wait", *ids)


def qemu_pids(server_id: str) -> list[int]:
    """The qemu processes running this server (named `ps-<server id>`)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                argv = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if argv[0].endswith(b"qemu-system-x86_64") and f"ps-{server_id}".encode() in argv:
                found.append(int(entry.name))
    return [pid for pid in found if host_checks.running(pid)]


def _vm_disks(real_cloud: Server, server_id: str) -> set[str]:
    """The block devices QEMU gives the VM, asked over its QMP socket."""
    (directory,) = (real_cloud.state_dir / "compute").glob(f"*/qemu/{server_id}")
    return {str(block.get("qdev", "")) for block in qemu.execute(directory, "query-block")}  # type: ignore[union-attr]


@pytest.mark.skipif(shutil.which("qemu-system-x86_64") is None, reason="qemu is not installed")
def test_a_tiny_vm_server_is_a_qemu_vm(cli: OpenStackCli, real_cloud: Server) -> None:
    server_id = boot(cli, "vm1", "tiny-vm")["id"]
    assert len(qemu_pids(server_id)) == 1
    wait_for(lambda: image_builds.BOOT_MARKER in console(cli, server_id), 60, "VM boot marker")
    first = qemu_pids(server_id)

    volume_id = _volume(cli, "vm-data")
    cli("server", "add", "volume", server_id, volume_id)
    wait_for(lambda: volume_status(cli, volume_id) == "in-use", 30, "the VM's volume in use")
    assert any(volume_id in disk for disk in _vm_disks(real_cloud, server_id))
    cli("server", "remove", "volume", server_id, volume_id)
    wait_for(lambda: volume_status(cli, volume_id) == "available", 30, "the VM's volume back")
    assert not any(volume_id in disk for disk in _vm_disks(real_cloud, server_id))
    cli("volume", "delete", volume_id)

    cli("server", "stop", server_id)
    wait_status(cli, server_id, "SHUTOFF", 30)
    assert qemu_pids(server_id) == []
    cli("server", "start", server_id)
    wait_status(cli, server_id, "ACTIVE", 30)
    assert qemu_pids(server_id) not in ([], first)

    cli("server", "rescue", server_id)
    wait_status(cli, server_id, "RESCUE", 30)
    cli("server", "unrescue", server_id)
    wait_status(cli, server_id, "ACTIVE", 30)
    assert len(qemu_pids(server_id)) == 1

    cli("server", "delete", "--wait", server_id)
    assert qemu_pids(server_id) == []


def _volume(cli: OpenStackCli, name: str, *extra: str) -> str:
    volume_id = str(cli("volume", "create", "--size", "1", *extra, name, "-f", "json").json()["id"])
    wait_for(lambda: volume_status(cli, volume_id) == "available", what=f"{name} available")
    return volume_id


def volume_status(cli: OpenStackCli, volume_id: str) -> str:
    return str(cli("volume", "show", volume_id, "-f", "json").json()["status"])


def _device(cli: OpenStackCli, server_id: str, volume_id: str) -> str:
    listed = cli("server", "volume", "list", server_id, "-f", "json").json()
    return next(str(a["Device"]) for a in listed if a["Volume ID"] == volume_id)


def _attach(cli: OpenStackCli, server_id: str, volume_id: str) -> str:
    """Attach and wait until the server has the disk; its device in the server."""
    cli("--os-compute-api-version", "2.60", "server", "add", "volume", server_id, volume_id)
    device = _device(cli, server_id, volume_id)
    wait_for(lambda: in_guest_ok(server_id, "test", "-b", device), what=f"{device} in {server_id}")
    return device


def in_guest_ok(server_id: str, *argv: str) -> bool:
    return host_checks.in_guest(server_id, *argv).returncode == 0


def _loops_of(volume_ids: list[str]) -> list[str]:
    listed = subprocess.run(["losetup", "--list", "--noheadings", "--output", "BACK-FILE"],
                            capture_output=True, text=True, check=True).stdout  # fmt: skip
    return [line for line in listed.splitlines() if any(v in line for v in volume_ids)]


def test_volumes_are_block_devices_inside_namespace_servers(cli: OpenStackCli) -> None:
    """A file system made in one server is read in another after a detach; a multi-attach
    volume is written by both at once; a plain volume in use refuses a second server."""
    first, second = boot(cli, "va")["id"], boot(cli, "vb")["id"]
    data = _volume(cli, "data")
    device = _attach(cli, first, data)
    assert volume_status(cli, data) == "in-use"
    made = host_checks.in_guest(first, "sh", "-c", f"mke2fs -q {device} && mount {device} /mnt"
                                " && echo kept > /mnt/note && umount /mnt")  # fmt: skip
    assert made.returncode == 0, made.stderr
    refused = cli("server", "add", "volume", second, data, check=False)
    assert refused.returncode != 0 and "multi-attach" in refused.stderr
    cli("server", "remove", "volume", first, data)
    wait_for(lambda: volume_status(cli, data) == "available", what="data detached")
    assert not in_guest_ok(first, "test", "-e", device)

    device = _attach(cli, second, data)
    read = host_checks.in_guest(second, "sh", "-c", f"mount {device} /mnt && cat /mnt/note"
                                " && umount /mnt")  # fmt: skip
    assert read.stdout == "kept\n", read.stderr
    cli("server", "reboot", "--wait", second)
    wait_for(lambda: in_guest_ok(second, "test", "-b", device), what="the disk after a reboot")

    cli("volume", "type", "create", "--property", "multiattach=<is> True", "shared")
    shared = _volume(cli, "both", "--type", "shared")
    on_first, on_second = _attach(cli, first, shared), _attach(cli, second, shared)
    write = "echo {} | dd of={} bs=512 count=1 conv=sync,fsync 2>/dev/null"
    read_back = "dd if={} bs=512 count=1 2>/dev/null | head -n 1"
    for writer, written, reader, seen in ((first, on_first, second, on_second),
                                          (second, on_second, first, on_first)):  # fmt: skip
        assert in_guest_ok(writer, "sh", "-c", write.format(f"from-{writer}", written))
        shown = host_checks.in_guest(reader, "sh", "-c", read_back.format(seen)).stdout
        assert shown == f"from-{writer}\n"

    cli("server", "delete", "--wait", first, second)
    wait_for(lambda: {volume_status(cli, v) for v in (data, shared)} == {"available"},
             what="volumes free after their servers went")  # fmt: skip
    assert _loops_of([data, shared]) == []
    cli("volume", "delete", data, shared)


def test_a_server_boots_from_a_volume_and_its_data_outlives_it(cli: OpenStackCli) -> None:
    """`--boot-from-volume`: the busybox image becomes a volume the server runs from; what
    the server writes is on the volume, and a new server booted from it (`--volume`)
    finds it."""
    created = boot(cli, "bfv", "busybox", "--boot-from-volume", "1")
    server_id = created["id"]
    (root,) = cli("server", "volume", "list", server_id, "-f", "json").json()
    volume_id = root["Volume ID"]
    assert root["Device"] == "/dev/vda"
    written = host_checks.in_guest(server_id, "sh", "-c", "echo on-the-volume > /root/kept")
    assert written.returncode == 0, written.stderr
    cli("server", "delete", "--wait", server_id)
    wait_for(lambda: volume_status(cli, volume_id) == "available", what="root volume free")
    assert _loops_of([volume_id]) == []

    again = cli("server", "create", "--flavor", "tiny", "--volume", volume_id, "--nic", "none",
                "--wait", "bfv2", "-f", "json").json()  # fmt: skip
    assert again["status"] == "ACTIVE", again
    wait_for(lambda: guest_file(again["id"], "/root/kept") == "on-the-volume\n",
             what="the first server's file")  # fmt: skip
    cli("server", "delete", "--wait", again["id"])
    wait_for(lambda: volume_status(cli, volume_id) == "available", what="root volume free")
    cli("volume", "delete", volume_id)
