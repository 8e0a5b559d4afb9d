"""The qemu driver on this machine: the tiny-vm build booted as real VMs (TCG).

The images are built once per module into a tmp dir; the kernel .deb is cached
in /var/cache/pocketstack/debs, so only the first run on a machine downloads it.
Each test makes its VMs under its own tmp dir with fresh server ids and
destroys them at the end, even when it fails; afterwards no qemu of theirs
runs and their directories are gone. Boots are shared between steps to keep
the file fast (a boot to the marker takes a few seconds under TCG).
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from pocketstack.compute import drivers
from pocketstack.compute.drivers import qemu as qemu_driver
from pocketstack.host import image_builds, processes, qemu, vm_image

DEB_CACHE = Path("/var/cache/pocketstack/debs")
BOOT_TIMEOUT_S = 60.0
RESOURCES = drivers.HostResources(2, 2048, 20, "QEMU", frozenset({"COMPUTE_NODE"}))
USER_DATA = """#!/bin/sh
echo "user data says hello"
echo pocketstack-disk-mark | dd of=/dev/vda conv=fsync 2>/dev/null && echo "disk written"
"""


def _missing() -> str | None:
    if os.geteuid() != 0:
        return "needs root"
    for command in ("qemu-system-x86_64", "qemu-img", "dpkg-deb", "apt-get"):
        if shutil.which(command) is None:
            return f"{command} is not installed"
    if not image_builds.BUSYBOX.exists():
        return "busybox-static is not installed"
    return None


pytestmark = pytest.mark.skipif(_missing() is not None, reason=f"qemu VMs: {_missing()}")


class Images:
    """The image source: the tiny-vm build, each image under its name as its id."""

    def __init__(self, built: list[image_builds.BuiltImage]) -> None:
        self.files: dict[str, drivers.ImageFile] = {}
        for image in built:
            properties = {**image.properties, **image.references}
            self.add(image.name, image.path, image.disk_format, properties)

    def add(self, image_id: str, path: Path, disk_format: str, properties: dict[str, str]) -> None:
        self.files[image_id] = drivers.ImageFile(image_id, path, disk_format, "bare", properties)

    def image(self, image_ref: str) -> drivers.ImageFile:
        found = self.files.get(image_ref)
        if found is None:
            raise drivers.DriverError(f"Image {image_ref} could not be found.")
        return found


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Images]:
    out = tmp_path_factory.mktemp("tiny-vm")
    try:
        yield Images(vm_image.build_tiny_vm(out, DEB_CACHE))
    finally:
        shutil.rmtree(out, ignore_errors=True)


@pytest.fixture
def driver(tmp_path: Path, images: Images) -> Iterator[qemu_driver.QemuDriver]:
    made = qemu_driver.QemuDriver("host-1", tmp_path / "vms", images, "tcg", lambda: RESOURCES)
    try:
        yield made
    finally:
        pids = [qemu.pid(made.records.dir(uuid_)) for uuid_ in made.records.uuids()]
        for uuid_ in made.guests():
            made.destroy(uuid_)
        for pid in pids:
            if pid is not None:
                processes.stop(pid, 1.0, signal.SIGKILL)
        shutil.rmtree(tmp_path / "vms", ignore_errors=True)


def spec(
    server_id: str, boot: int = 1, image: str = "tiny-vm", user_data: str | None = None,
    vcpus: int = 1, memory_mb: int = 256, disk_gb: int = 1,
) -> drivers.GuestSpec:  # fmt: skip
    encoded = base64.b64encode(user_data.encode()).decode() if user_data else None
    return drivers.GuestSpec(
        server_id, "vm-1", image, drivers.Size(vcpus, memory_mb, disk_gb), encoded, boot
    )


def wait_for(check: Callable[[], object], timeout_s: float = BOOT_TIMEOUT_S) -> float:
    started = time.monotonic()
    while not check():
        assert time.monotonic() - started < timeout_s, "timed out"
        time.sleep(0.05)
    return time.monotonic() - started


def wait_boots(driver: qemu_driver.QemuDriver, server_id: str, boots: int) -> float:
    """Seconds until the console shows the `boots`-th boot marker."""
    marker = f"{image_builds.BOOT_MARKER}: vm-1"
    return wait_for(lambda: driver.console_output(server_id).count(marker) >= boots)


def power(driver: qemu_driver.QemuDriver, server_id: str) -> int:
    return driver.guests()[server_id].power_state


def qemu_pid(driver: qemu_driver.QemuDriver, server_id: str) -> processes.ProcessId:
    found = qemu.running(driver.records.dir(server_id))
    assert found is not None, "qemu is not running"
    return found


def disk_start(driver: qemu_driver.QemuDriver, tmp_path: Path, server_id: str) -> bytes:
    """The first bytes of the server's disk, read from a snapshot."""
    snapshot = driver.snapshot(server_id)
    assert snapshot is not None
    copy = tmp_path / "snapshot.qcow2"
    with copy.open("wb") as out:
        for chunk in snapshot:
            out.write(chunk)
    info = json.loads(subprocess.check_output(["qemu-img", "info", "--output=json", str(copy)]))
    assert info["format"] == "qcow2" and "backing-filename" not in info
    raw = tmp_path / "snapshot.raw"
    subprocess.run(["qemu-img", "convert", "-O", "raw", str(copy), str(raw)], check=True)
    with raw.open("rb") as disk:
        start = disk.read(64)
    copy.unlink()
    raw.unlink()
    return start


def test_a_vm_boots_runs_its_user_data_and_goes_through_its_lifecycle(
    driver: qemu_driver.QemuDriver, tmp_path: Path
) -> None:
    server_id = str(uuid.uuid4())
    driver.spawn(spec(server_id, user_data=USER_DATA))
    booted = wait_boots(driver, server_id, 1)
    print(f"boot to the marker under TCG: {booted:.1f} s")
    wait_for(lambda: "disk written" in driver.console_output(server_id))
    console = driver.console_output(server_id)
    assert "user data says hello" in console
    guest = driver.guests()[server_id]
    assert (guest.power_state, guest.image_ref, guest.boot_serial) == (
        drivers.RUNNING,
        "tiny-vm",
        1,
    )
    assert not guest.rescued

    # The snapshot is a standalone qcow2 holding what the guest wrote.
    assert disk_start(driver, tmp_path, server_id).startswith(b"pocketstack-disk-mark\n")
    assert power(driver, server_id) == drivers.RUNNING
    assert not list(driver.records.dir(server_id).glob("snapshot-*"))

    driver.pause(server_id)
    assert power(driver, server_id) == drivers.PAUSED
    driver.unpause(server_id)
    assert power(driver, server_id) == drivers.RUNNING
    driver.suspend(server_id)
    assert power(driver, server_id) == drivers.SUSPENDED
    driver.resume(server_id)
    assert power(driver, server_id) == drivers.RUNNING

    # A restarted agent finds the VM through its record and pid file.
    again = qemu_driver.QemuDriver("host-1", driver.workdir, driver.images, "tcg", RESOURCES)
    assert again.guests()[server_id] == driver.guests()[server_id]

    # Soft power off: the guest sees the ACPI power button and powers off.
    first = qemu_pid(driver, server_id)
    driver.power_off(server_id)
    assert not processes.alive(first)
    assert "power button pressed" in driver.console_output(server_id)
    assert power(driver, server_id) == drivers.SHUTDOWN
    driver.power_on(server_id)
    wait_boots(driver, server_id, 2)
    assert power(driver, server_id) == drivers.RUNNING

    # Soft reboot onto boot 2, then hard reboot onto boot 3: new qemu, same disk.
    before = qemu_pid(driver, server_id)
    driver.reboot(spec(server_id, boot=2), hard=False)
    assert not processes.alive(before)
    wait_boots(driver, server_id, 3)
    driver.reboot(spec(server_id, boot=3), hard=True)
    wait_boots(driver, server_id, 4)
    assert driver.guests()[server_id].boot_serial == 3

    # A qemu that dies shows as SHUTDOWN; power on brings it back.
    processes.stop(qemu_pid(driver, server_id), 1.0, signal.SIGKILL)
    assert power(driver, server_id) == drivers.SHUTDOWN
    driver.power_on(server_id)
    wait_boots(driver, server_id, 5)
    assert disk_start(driver, tmp_path, server_id).startswith(b"pocketstack-disk-mark\n")

    last = qemu_pid(driver, server_id)
    directory = driver.records.dir(server_id)
    driver.destroy(server_id)
    assert not processes.alive(last)
    assert not directory.exists()
    assert server_id not in driver.guests()


def test_rescue_resize_and_rebuild(
    driver: qemu_driver.QemuDriver, images: Images, tmp_path: Path
) -> None:
    server_id = str(uuid.uuid4())
    driver.spawn(spec(server_id, user_data=USER_DATA))
    wait_for(lambda: "disk written" in driver.console_output(server_id))
    directory = driver.records.dir(server_id)

    # Rescue boots a fresh disk of the image, the server's own disk second.
    driver.rescue(server_id)
    assert driver.guests()[server_id].rescued
    blocks = qemu.execute(directory, "query-block")
    assert isinstance(blocks, list)
    files = [block["inserted"]["file"] for block in blocks if "inserted" in block]
    assert [Path(name).name for name in files] == ["rescue.qcow2", "disk.qcow2"]
    wait_boots(driver, server_id, 2)
    driver.unrescue(server_id)
    assert not driver.guests()[server_id].rescued
    assert not (directory / "rescue.qcow2").exists()
    wait_boots(driver, server_id, 3)

    # A resize is recorded now and applies at the next boot.
    driver.resize(spec(server_id, vcpus=2, memory_mb=384, disk_gb=2))
    assert driver.guests()[server_id].size == drivers.Size(2, 384, 2)
    driver.reboot(spec(server_id, boot=2), hard=True)
    cpus = qemu.execute(directory, "query-cpus-fast")
    memory = qemu.execute(directory, "query-memory-size-summary")
    assert isinstance(cpus, list) and len(cpus) == 2
    assert isinstance(memory, dict) and memory["base-memory"] == 384 << 20
    assert qemu.info(directory / "disk.qcow2", "qcow2", force_share=True).virtual_size == 2 << 30
    wait_boots(driver, server_id, 4)

    # Rebuild onto a snapshot of the server: a fresh disk from that image, its writes in it.
    snapshot_file = tmp_path / "vm-1-snapshot.qcow2"
    stream = driver.snapshot(server_id)
    assert stream is not None
    snapshot_file.write_bytes(b"".join(stream))
    properties = dict(images.image("tiny-vm").properties)
    images.add("vm-1-snapshot", snapshot_file, "qcow2", properties)
    driver.rebuild(spec(server_id, boot=3, image="vm-1-snapshot"))
    guest = driver.guests()[server_id]
    assert (guest.image_ref, guest.boot_serial) == ("vm-1-snapshot", 3)
    wait_boots(driver, server_id, 5)
    assert disk_start(driver, tmp_path, server_id).startswith(b"pocketstack-disk-mark\n")
    # The image may go away: the server keeps its own link to the bytes.
    snapshot_file.unlink()
    driver.reboot(spec(server_id, boot=4), hard=True)
    wait_boots(driver, server_id, 6)

    # Rebuild onto the empty tiny-vm image: the guest's writes are gone.
    driver.rebuild(spec(server_id, boot=5))
    assert disk_start(driver, tmp_path, server_id) == b"\0" * 64

    driver.destroy(server_id)
    assert not directory.exists()


def test_images_qemu_cannot_boot_are_refused(driver: qemu_driver.QemuDriver) -> None:
    server_id = str(uuid.uuid4())
    with pytest.raises(drivers.DriverError, match="kernel or ramdisk"):
        driver.spawn(spec(server_id, image="tiny-vm-kernel"))
    with pytest.raises(drivers.DriverError, match="could not be found"):
        driver.spawn(spec(server_id, image="no-such-image"))
    assert server_id not in driver.guests()


def test_a_directory_without_a_record_shows_as_a_stopped_guest_to_remove(
    driver: qemu_driver.QemuDriver,
) -> None:
    server_id = str(uuid.uuid4())
    (driver.records.dir(server_id) / "disk.qcow2.part").parent.mkdir(parents=True)
    assert driver.guests()[server_id].power_state == drivers.SHUTDOWN
    driver.destroy(server_id)
    assert server_id not in driver.guests()
    assert not driver.records.dir(server_id).exists()
