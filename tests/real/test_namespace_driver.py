"""The namespace driver on this machine: real namespaces, overlays, cgroups, processes.

Each test makes its guests under its own tmp dir with fresh server ids and
destroys them at the end, even when it fails; afterwards nothing of them may
be left on the host (processes, mounts, network namespaces, cgroups, files).
"""

from __future__ import annotations

import base64
import io
import os
import subprocess
import tarfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from pocketstack.compute import drivers
from pocketstack.compute.drivers import namespace
from pocketstack.host import cgroups, image_builds, namespaces
from pocketstack.host.cgroups import GuestCgroup
from tests.real import host_checks

pytestmark = pytest.mark.skipif(
    namespaces.missing() is not None, reason=f"namespace guests: {namespaces.missing()}"
)

RESOURCES = drivers.HostResources(2, 2048, 20, "QEMU", frozenset({"COMPUTE_NODE"}))


class Images:
    """The image source: the busybox build, under its own id."""

    def __init__(self, busybox: Path) -> None:
        self.files = {"busybox": busybox}

    def image(self, image_ref: str) -> drivers.ImageFile:
        path = self.files.get(image_ref)
        if path is None:
            raise drivers.DriverError(f"Image {image_ref} could not be found.")
        return drivers.ImageFile(image_ref, path, "raw", "bare", {})


@pytest.fixture(scope="module")
def busybox(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return image_builds.build("busybox", tmp_path_factory.mktemp("images"))[0].path


@pytest.fixture
def driver(tmp_path: Path, busybox: Path) -> Iterator[namespace.NamespaceDriver]:
    made = namespace.NamespaceDriver(
        "host-1", tmp_path / "work", Images(busybox), lambda: RESOURCES
    )
    try:
        yield made
    finally:
        for uuid_ in made.guests():
            made.destroy(uuid_)


def spec(
    server_id: str,
    boot: int = 1,
    vcpus: int = 1,
    memory_mb: int = 128,
    user_data: str | None = None,
) -> drivers.GuestSpec:
    encoded = base64.b64encode(user_data.encode()).decode() if user_data else None
    return drivers.GuestSpec(
        server_id, "web-1", "busybox", drivers.Size(vcpus, memory_mb, 1), encoded, boot
    )


def wait_for(check: object, timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def fetch_page(server_id: str, timeout_s: float = 10.0) -> str:
    """GET the guest's web page from inside its network namespace ("" on no answer).
    (Debian's busybox wget crashes with -T: the timeout is the subprocess's.)"""
    try:
        done = subprocess.run(
            ["ip", "netns", "exec", namespaces.netns_name(server_id), "busybox", "wget", "-qO-",
             "http://127.0.0.1/"],
            capture_output=True, text=True, timeout=timeout_s, check=False,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        return ""
    return done.stdout


def pid1(driver: namespace.NamespaceDriver, server_id: str) -> int:
    holder = driver._holder(server_id)
    assert holder is not None
    pid = namespaces.init_of(holder)
    assert pid is not None
    return pid


def guest_files(server_id: str, path: str) -> str:
    """Read a file as the guest sees it (its own mount namespace and root)."""
    done = subprocess.run(
        ["nsenter", "-t", str(pid1_of(server_id)), "-m", "-r", "cat", path],
        capture_output=True, text=True, timeout=10, check=False,
    )  # fmt: skip
    return done.stdout


def pid1_of(server_id: str) -> int:
    inits = host_checks.pid1s(server_id)
    assert len(inits) == 1, inits
    return inits[0]


def left_on_host(server_id: str, workdir: Path) -> list[str]:
    found = []
    if server_id in namespaces.guest_netns():
        found.append("network namespace")
    if server_id in cgroups.guest_groups():
        found.append("cgroup")
    if server_id in Path("/proc/mounts").read_text():
        found.append("mount")
    if (workdir / "guests" / server_id).exists():
        found.append("directory")
    return found


def test_a_guest_boots_serves_http_and_goes_away_without_a_trace(
    driver: namespace.NamespaceDriver, tmp_path: Path
) -> None:
    server_id = str(uuid.uuid4())
    started = time.monotonic()
    driver.spawn(spec(server_id, user_data="#!/bin/sh\necho hello from user data > /root/note\n"))
    assert time.monotonic() - started < 2.0
    assert driver.guests()[server_id].power_state == drivers.RUNNING
    wait_for(lambda: image_builds.BOOT_MARKER in driver.console_output(server_id))
    assert "web-1" in driver.console_output(server_id)
    assert fetch_page(server_id).strip() == "web-1"
    wait_for(lambda: guest_files(server_id, "/root/note") == "hello from user data\n")
    # One PID 1 in its own pid namespace, different from the host's.
    init = pid1(driver, server_id)
    assert os.readlink(f"/proc/{init}/ns/pid") != os.readlink("/proc/self/ns/pid")
    assert os.readlink(f"/proc/{init}/ns/net") != os.readlink("/proc/self/ns/net")
    cpu_quota, memory = GuestCgroup(server_id).limits()
    assert (cpu_quota, memory) == (100_000, 128 * 1024 * 1024)
    processes = GuestCgroup(server_id).pids()

    driver.destroy(server_id)
    assert server_id not in driver.guests()
    assert not [p for p in processes if host_checks.running(p)]
    assert left_on_host(server_id, tmp_path / "work") == []


def test_power_actions_act_on_the_real_processes(driver: namespace.NamespaceDriver) -> None:
    server_id = str(uuid.uuid4())
    driver.spawn(spec(server_id))
    first = pid1(driver, server_id)

    driver.pause(server_id)
    assert driver.guests()[server_id].power_state == drivers.PAUSED
    state = Path(f"/proc/{first}/status").read_text()
    assert GuestCgroup(server_id).frozen() in (True, None) and "State:" in state
    assert fetch_page(server_id, 1.0) == ""
    driver.unpause(server_id)
    wait_for(lambda: fetch_page(server_id, 1.0) == "web-1\n")

    driver.suspend(server_id)
    assert driver.guests()[server_id].power_state == drivers.SUSPENDED
    driver.resume(server_id)
    assert driver.guests()[server_id].power_state == drivers.RUNNING

    driver.reboot(spec(server_id, boot=2), hard=False)
    second = pid1(driver, server_id)
    assert second != first
    assert "web-1 stopping" in driver.console_output(server_id)
    assert driver.guests()[server_id].boot_serial == 2
    driver.reboot(spec(server_id, boot=3), hard=True)
    assert pid1(driver, server_id) != second

    driver.power_off(server_id)
    assert driver.guests()[server_id].power_state == drivers.SHUTDOWN
    assert GuestCgroup(server_id).pids() == set()
    driver.power_on(server_id)
    assert driver.guests()[server_id].power_state == drivers.RUNNING
    assert GuestCgroup(server_id).pids()


def test_a_paused_guest_can_be_stopped(driver: namespace.NamespaceDriver) -> None:
    server_id = str(uuid.uuid4())
    driver.spawn(spec(server_id))
    driver.pause(server_id)
    driver.power_off(server_id)
    assert driver.guests()[server_id].power_state == drivers.SHUTDOWN
    assert GuestCgroup(server_id).pids() == set()


def test_rescue_rebuild_resize_and_snapshot(driver: namespace.NamespaceDriver) -> None:
    server_id = str(uuid.uuid4())
    driver.spawn(spec(server_id, user_data="echo mine > /root/mine\n"))
    wait_for(lambda: guest_files(server_id, "/root/mine") == "mine\n")

    driver.rescue(server_id)
    assert driver.guests()[server_id].rescued
    assert guest_files(server_id, "/root/mine") == ""  # a fresh root ...
    assert guest_files(server_id, "/mnt/root/mine") == "mine\n"  # ... with the server's at /mnt
    driver.unrescue(server_id)
    assert not driver.guests()[server_id].rescued
    assert guest_files(server_id, "/root/mine") == "mine\n"

    snapshot = driver.snapshot(server_id)
    assert snapshot is not None
    with tarfile.open(fileobj=io.BytesIO(b"".join(snapshot))) as archive:
        names = archive.getnames()
    assert "./root/mine" in names and "./sbin/init" in names

    driver.resize(spec(server_id, vcpus=2, memory_mb=256))
    assert GuestCgroup(server_id).limits() == (200_000, 256 * 1024 * 1024)
    assert driver.guests()[server_id].size == drivers.Size(2, 256, 1)

    driver.rebuild(spec(server_id, boot=2))
    wait_for(lambda: image_builds.BOOT_MARKER in driver.console_output(server_id))
    assert guest_files(server_id, "/root/mine") == ""  # the new root has none of the old writes


def test_a_restarted_driver_finds_its_guests_and_what_nobody_owns(
    driver: namespace.NamespaceDriver, tmp_path: Path, busybox: Path
) -> None:
    server_id = str(uuid.uuid4())
    driver.spawn(spec(server_id))
    before = pid1(driver, server_id)

    again = namespace.NamespaceDriver(
        "host-1", tmp_path / "work", Images(busybox), lambda: RESOURCES
    )
    assert again.guests()[server_id].power_state == drivers.RUNNING
    assert pid1(again, server_id) == before

    # What a crash in the middle of a spawn leaves: a directory and a namespace, no record.
    stray = str(uuid.uuid4())
    (tmp_path / "work" / "guests" / stray).mkdir()
    namespaces.create_netns(stray)
    try:
        assert again.guests()[stray].power_state == drivers.SHUTDOWN
        again.destroy(stray)
        assert stray not in namespaces.guest_netns()
        assert left_on_host(stray, tmp_path / "work") == []
    finally:
        namespaces.delete_netns(stray)


def test_names_of_other_clouds_on_the_machine_are_left_alone(
    driver: namespace.NamespaceDriver,
) -> None:
    theirs = str(uuid.uuid4())
    namespaces.create_netns(theirs)
    try:
        assert theirs not in driver.guests()
    finally:
        namespaces.delete_netns(theirs)


def test_a_guest_whose_init_dies_is_shut_down(driver: namespace.NamespaceDriver) -> None:
    server_id = str(uuid.uuid4())
    driver.spawn(spec(server_id))
    os.kill(pid1(driver, server_id), 9)
    wait_for(lambda: driver.guests()[server_id].power_state == drivers.SHUTDOWN)


def test_an_image_that_is_not_a_root_filesystem_is_refused(
    driver: namespace.NamespaceDriver, tmp_path: Path
) -> None:
    disk = tmp_path / "disk.img"
    disk.write_bytes(b"\0" * 4096)
    driver.images.files["disk"] = disk  # type: ignore[attr-defined]
    with pytest.raises(drivers.DriverError, match="not a root filesystem"):
        driver.spawn(
            drivers.GuestSpec(str(uuid.uuid4()), "d", "disk", drivers.Size(1, 64, 1), None, 1)
        )
