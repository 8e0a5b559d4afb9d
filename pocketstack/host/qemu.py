"""Virtual machines under qemu: the host side of the qemu compute driver.

A VM is one detached `qemu-system-x86_64` started in its guest's directory,
which then holds everything about it under fixed names: the pid file
(`qemu.json`), qemu's own output (`qemu.log`), the serial console
(`console.log`, appended across boots) and the QMP socket (`qmp.sock`). QEMU
is given these as paths relative to that directory, so a deep work dir never
exceeds the 108-byte limit of a unix socket path, and the QMP client below
connects through /proc/self/fd for the same reason.

Disks are qcow2 overlays over a backing image (`qemu-img create -b`), so a
guest's writes never touch the image. KVM or TCG is the caller's choice
(host/machine.py knows whether KVM works here). The
server's ports are tap devices qemu makes (`-netdev tap`), which the driver then
plugs into the ports' bridges; a VM without ports gets `-nic none`.

Called by compute/drivers/qemu.py.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from pocketstack.host import commands, processes
from pocketstack.host.commands import HostCommandError

QEMU = "qemu-system-x86_64"
QEMU_IMG = "qemu-img"
PID_FILE = "qemu.json"
LOG_FILE = "qemu.log"
CONSOLE_FILE = "console.log"
QMP_SOCKET = "qmp.sock"
START_TIMEOUT_S = 10.0
QMP_TIMEOUT_S = 5.0
POWERDOWN_RETRY_S = 2.0
ACCELERATORS = ("kvm", "tcg")
# What `qemu-img` calls the Glance disk formats it can run (ami: a raw disk).
DISK_FORMATS: Mapping[str, str] = {
    "qcow2": "qcow2", "raw": "raw", "ami": "raw", "vmdk": "vmdk", "vdi": "vdi",
    "vhd": "vpc", "vhdx": "vhdx",
}  # fmt: skip


@dataclass(frozen=True, slots=True)
class Volume:
    """A raw volume file given to a VM as a virtio disk, at boot or hot-plugged. Disks
    are opened with share-rw, so two VMs may write one multi-attach volume."""

    volume_id: str
    path: Path
    read_only: bool = False
    boot: bool = False  # the VM boots from it (a volume-backed server)

    @property
    def node(self) -> str:
        """The block node's name (QEMU allows up to 31 characters)."""
        return "vol" + self.volume_id.replace("-", "")[:24]

    @property
    def device_id(self) -> str:
        return f"disk-{self.volume_id}"

    def blockdev(self) -> dict[str, object]:
        return {
            "driver": "raw", "node-name": self.node, "read-only": self.read_only,
            "file": {"driver": "file", "filename": str(self.path)},
        }  # fmt: skip

    def device(self) -> dict[str, object]:
        device: dict[str, object] = {
            "driver": "virtio-blk-pci", "drive": self.node, "id": self.device_id,
            "share-rw": True,
        }  # fmt: skip
        if self.boot:
            device["bootindex"] = 0
        return device


@dataclass(frozen=True, slots=True)
class Machine:
    """One boot of a VM: what qemu is started with."""

    name: str
    accel: str
    vcpus: int
    memory_mb: int
    # qcow2 files, attached as virtio disks in this order (the first boots).
    disks: tuple[Path, ...]
    kernel: Path | None = None
    initrd: Path | None = None
    append: str = ""
    # (tap device name, MAC) per NIC: qemu makes each tap, the caller plugs it into a bridge.
    nics: tuple[tuple[str, str], ...] = ()
    volumes: tuple[Volume, ...] = ()  # after the disks


class QmpError(Exception):
    """QMP did not answer, or answered with an error."""


def argv(machine: Machine) -> list[str]:
    """The qemu command line; file paths relative to the guest's directory are fine."""
    if machine.accel not in ACCELERATORS:
        raise ValueError(f"accel must be one of {ACCELERATORS}, not {machine.accel!r}")
    args = [
        QEMU, "-name", machine.name,
        "-nodefaults", "-no-user-config", "-display", "none", "-monitor", "none",
        "-machine", "pc", "-accel", machine.accel,
        *(["-cpu", "host"] if machine.accel == "kvm" else []),
        "-m", str(machine.memory_mb), "-smp", str(machine.vcpus),
        "-chardev", f"file,id=console,path={CONSOLE_FILE},append=on",
        "-serial", "chardev:console",
        "-qmp", f"unix:{QMP_SOCKET},server=on,wait=off",
    ]  # fmt: skip
    if not machine.nics:
        args += ["-nic", "none"]
    for index, (tap, mac) in enumerate(machine.nics):
        args += [
            "-netdev", f"tap,id=nic{index},ifname={tap},script=no,downscript=no",
            "-device", f"virtio-net-pci,netdev=nic{index},mac={mac}",
        ]  # fmt: skip
    for index, disk in enumerate(machine.disks):
        args += ["-drive", f"file={disk},format=qcow2,if=virtio,index={index}"]
    for volume in machine.volumes:
        device = ",".join(
            f"{key}={'on' if value is True else value}" for key, value in volume.device().items()
        )
        args += ["-blockdev", json.dumps(volume.blockdev()), "-device", device]
    if machine.kernel is not None:
        args += ["-kernel", str(machine.kernel)]
        if machine.initrd is not None:
            args += ["-initrd", str(machine.initrd)]
        if machine.append:
            args += ["-append", machine.append]
    return args


def pid(directory: Path) -> processes.ProcessId | None:
    return processes.ProcessId.load(directory / PID_FILE)


def running(directory: Path) -> processes.ProcessId | None:
    """The qemu of this directory, if it is alive."""
    process = pid(directory)
    return process if process is not None and processes.alive(process) else None


def settle(directory: Path) -> None:
    """Wait until the last qemu of `directory`, if it has exited, has let go of its disks."""
    previous = pid(directory)
    if previous is not None and not processes.alive(previous):
        _wait_released(previous)


def start(machine: Machine, directory: Path) -> processes.ProcessId:
    """Start qemu for `machine` in `directory`; returns once it answers on QMP, or raises
    HostCommandError with what qemu said when it exits first."""
    settle(directory)
    socket_path = directory / QMP_SOCKET
    socket_path.unlink(missing_ok=True)  # a killed qemu leaves its socket behind
    command = argv(machine)
    log = directory / LOG_FILE
    logged = log.stat().st_size if log.exists() else 0
    process = processes.spawn(command, log, cwd=directory)
    process.save(directory / PID_FILE)
    # QEMU listens on QMP before it loads the kernel and disks, and answers once it has.
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        if not processes.alive(process):
            _wait_released(process)
            raise HostCommandError(command, _tail(log, logged) or "qemu exited")
        if socket_path.exists():
            with contextlib.suppress(QmpError):
                status(directory)
                return process
        if time.monotonic() >= deadline:
            processes.stop(process, 1.0)
            raise HostCommandError(command, f"no answer on QMP after {START_TIMEOUT_S:.0f} s")
        time.sleep(0.01)


def _tail(path: Path, start: int, limit: int = 2000) -> str:
    """What was written to `path` after offset `start`, its last `limit` bytes."""
    try:
        with path.open("rb") as log:
            size = log.seek(0, os.SEEK_END)
            log.seek(max(start, size - limit))
            return log.read().decode(errors="replace").strip()
    except OSError:
        return ""


class Qmp:
    """A synchronous QMP session over the VM's unix socket, used as a context manager:
    `with Qmp(directory) as qmp: qmp.execute("stop")`. QEMU serves one client at a
    time, so sessions are kept short."""

    def __init__(self, directory: Path, timeout_s: float = QMP_TIMEOUT_S) -> None:
        self.directory = directory
        self.timeout_s = timeout_s
        self._socket: socket.socket | None = None
        self._buffer = b""

    def __enter__(self) -> Qmp:
        directory_fd = os.open(self.directory, os.O_PATH | os.O_DIRECTORY)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout_s)
        try:
            sock.connect(f"/proc/self/fd/{directory_fd}/{QMP_SOCKET}")
            self._socket = sock
            greeting = self._message()
            if "QMP" not in greeting:
                raise QmpError(f"not a QMP greeting: {greeting}")
            self.execute("qmp_capabilities")
        except (OSError, QmpError) as exc:
            sock.close()
            self._socket = None
            raise QmpError(f"QMP of {self.directory}: {exc}") from exc
        finally:
            os.close(directory_fd)
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:  # fmt: skip
        if self._socket is not None:
            self._socket.close()
            self._socket = None

    def _message(self) -> dict[str, object]:
        assert self._socket is not None
        while b"\n" not in self._buffer:
            try:
                chunk = self._socket.recv(65536)
            except OSError as exc:
                raise QmpError(str(exc)) from exc
            if not chunk:
                raise QmpError("QMP connection closed")
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        message = json.loads(line)
        if not isinstance(message, dict):
            raise QmpError(f"unexpected QMP message: {line!r}")
        return message

    def execute(self, command: str, arguments: Mapping[str, object] | None = None) -> object:
        """Run one QMP command; its "return" value. Events that arrive meanwhile are
        skipped."""
        assert self._socket is not None, "use Qmp as a context manager"
        request: dict[str, object] = {"execute": command}
        if arguments:
            request["arguments"] = dict(arguments)
        try:
            self._socket.sendall(json.dumps(request).encode() + b"\n")
        except OSError as exc:
            raise QmpError(f"{command}: {exc}") from exc
        while True:
            message = self._message()
            if "return" in message:
                return message["return"]
            if "error" in message:
                raise QmpError(f"{command}: {message['error']}")


def execute(directory: Path, command: str, arguments: Mapping[str, object] | None = None) -> object:
    """One QMP command in a session of its own."""
    with Qmp(directory) as qmp:
        return qmp.execute(command, arguments)


UNPLUG_TIMEOUT_S = 10.0


def plug_volume(directory: Path, volume: Volume) -> None:
    """Hot-plug the volume into the running VM (already there: nothing to do)."""
    with Qmp(directory) as qmp:
        if _plugged(qmp, volume):
            return
        if volume.node not in _nodes(qmp):
            qmp.execute("blockdev-add", volume.blockdev())
        qmp.execute("device_add", volume.device())


def unplug_volume(directory: Path, volume: Volume) -> None:
    """Ask the guest to give the disk back, wait for it (a guest may refuse: QmpError after
    UNPLUG_TIMEOUT_S), then close the file."""
    with Qmp(directory) as qmp:
        if _plugged(qmp, volume):
            qmp.execute("device_del", {"id": volume.device_id})
            deadline = time.monotonic() + UNPLUG_TIMEOUT_S
            while _plugged(qmp, volume):
                if time.monotonic() > deadline:
                    raise QmpError(f"the guest did not release disk {volume.device_id}")
                time.sleep(0.1)
        if volume.node in _nodes(qmp):
            qmp.execute("blockdev-del", {"node-name": volume.node})


def _blocks(qmp: Qmp) -> list[dict[str, object]]:
    found = qmp.execute("query-block")
    return [b for b in found if isinstance(b, dict)] if isinstance(found, list) else []


def _nodes(qmp: Qmp) -> set[str]:
    found = qmp.execute("query-named-block-nodes")
    return {str(n.get("node-name")) for n in found if isinstance(n, dict)} if isinstance(
        found, list
    ) else set()  # fmt: skip


def _plugged(qmp: Qmp, volume: Volume) -> bool:
    """Is a device of the VM still on the volume's node?"""
    return any(
        isinstance(block.get("qdev"), str) and volume.device_id in str(block.get("qdev"))
        for block in _blocks(qmp)
    )


def status(directory: Path) -> str:
    """QEMU's run state: running, paused, shutdown, guest-panicked, ..."""
    answer = execute(directory, "query-status")
    if not isinstance(answer, dict) or not isinstance(answer.get("status"), str):
        raise QmpError(f"query-status answered {answer!r}")
    return str(answer["status"])


def stop(directory: Path, timeout_s: float, soft: bool) -> None:
    """Stop the VM of `directory`: with `soft`, press its ACPI power button and give the
    guest `timeout_s` to power off (a paused guest cannot: it is not asked); then QMP
    `quit`, then SIGTERM and SIGKILL."""
    process = running(directory)
    if process is None:
        return
    deadline = time.monotonic() + timeout_s
    while soft and time.monotonic() < deadline:
        # Pressed again every few seconds, as a guest still booting may miss a press.
        try:
            if status(directory) != "running":
                break
            execute(directory, "system_powerdown")
        except QmpError:
            break
        if processes.wait_gone(process, min(POWERDOWN_RETRY_S, deadline - time.monotonic())):
            _wait_released(process)
            return
    with contextlib.suppress(QmpError):
        execute(directory, "quit")
    if not processes.wait_gone(process, 3.0):
        processes.stop(process, 3.0)
    _wait_released(process)


def _wait_released(process: processes.ProcessId, timeout_s: float = 5.0) -> None:
    """Wait until every thread of an exited qemu is gone. Its main thread shows as a
    zombie while the others still exit holding the disks' locks, and a qemu started on
    the same disks meanwhile fails with 'Failed to get "write" lock'."""
    tasks = Path(f"/proc/{process.pid}/task")
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if processes.identify(process.pid) != process:
            return  # reaped (or the pid is another process's now)
        try:
            threads = os.listdir(tasks)
        except OSError:
            return
        if all(_thread_state(tasks / thread) in "ZXx" for thread in threads):
            return
        time.sleep(0.01)


def _thread_state(task: Path) -> str:
    """R, S, Z, ... of one thread; "X" (dead) once it is gone."""
    try:
        return (task / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return "X"


# Disks -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DiskInfo:
    format: str
    virtual_size: int


def info(path: Path, fmt: str | None = None, force_share: bool = False) -> DiskInfo:
    """What `qemu-img info` says; pass the format the file is meant to have, so that a raw
    image that looks like another format is never read as one."""
    command = [QEMU_IMG, "info", "--output=json", *(["-f", fmt] if fmt else []),
               *(["-U"] if force_share else []), str(path)]  # fmt: skip
    answer = json.loads(commands.run(command))
    return DiskInfo(str(answer["format"]), int(answer["virtual-size"]))


def create(path: Path, size_bytes: int) -> None:
    """An empty qcow2 disk."""
    commands.run([QEMU_IMG, "create", "-q", "-f", "qcow2", str(path), str(size_bytes)])


def create_overlay(path: Path, backing: Path, backing_format: str, size_bytes: int | None) -> None:
    """A qcow2 overlay over `backing`, which is named relative to the overlay when it lies
    beside it; `size_bytes` grows the disk beyond the backing image's size."""
    name = backing.name if backing.parent == path.parent else str(backing)
    command = [QEMU_IMG, "create", "-q", "-f", "qcow2", "-F", backing_format, "-b", name,
               str(path)]  # fmt: skip
    if size_bytes is not None:
        command.append(str(size_bytes))
    path.unlink(missing_ok=True)
    commands.run(command)


def resize(path: Path, size_bytes: int) -> None:
    commands.run([QEMU_IMG, "resize", "-q", str(path), str(size_bytes)])


def convert(source: Path, target: Path, force_share: bool = False) -> None:
    """`source` and its backing chain as one standalone qcow2 at `target`."""
    commands.run(
        [QEMU_IMG, "convert", *(["-U"] if force_share else []), "-O", "qcow2", str(source),
         str(target)],
        timeout_s=3600.0,
    )  # fmt: skip


def read_chunks(path: Path, chunk_size: int = 1 << 20) -> Iterator[bytes]:
    """The file's bytes in chunks. The file is opened and unlinked now, so nothing stays
    behind whether or not the reader reads to the end."""
    handle = path.open("rb")
    path.unlink()

    def chunks() -> Iterator[bytes]:
        with handle:
            while chunk := handle.read(chunk_size):
                yield chunk

    return chunks()


def disk_format(glance_format: str | None) -> str | None:
    """The qemu-img format for a Glance disk_format; None when qemu cannot boot it."""
    return DISK_FORMATS.get(glance_format or "")
