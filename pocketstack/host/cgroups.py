"""A guest's control group: its flavor's limits, freezing, and finding every process.

Hosts differ: a pure cgroup v2 host has one tree with cpu.max, memory.max and
cgroup.freeze; older or hybrid hosts (these build machines) mount v1
controllers separately (cpu.cfs_quota_us, memory.limit_in_bytes,
freezer.state). One group is `pocketstack/<name>` in each hierarchy used.
A host with neither runs guests without limits and pauses with SIGSTOP.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")
PARENT = "pocketstack"
V1_CONTROLLERS = ("cpu", "memory", "freezer", "pids")
CPU_PERIOD_US = 100_000


def _write(path: Path, value: str) -> None:
    with contextlib.suppress(OSError):
        path.write_text(value)


class GuestCgroup:
    def __init__(self, name: str, root: Path = CGROUP_ROOT) -> None:
        self.name = name
        self.v2 = (root / "cgroup.controllers").exists()
        if self.v2:
            self.dirs = {"unified": root / PARENT / name}
            self._v2_parent = root / PARENT
            self._root = root
        else:
            self.dirs = {
                controller: root / controller / PARENT / name
                for controller in V1_CONTROLLERS
                if (root / controller / "cgroup.procs").exists()
            }

    @property
    def usable(self) -> bool:
        return bool(self.dirs)

    def exists(self) -> bool:
        return any(directory.is_dir() for directory in self.dirs.values())

    def create(self) -> None:
        if self.v2:
            self._v2_parent.mkdir(exist_ok=True)
            for controllers in (self._root, self._v2_parent):
                _write(controllers / "cgroup.subtree_control", "+cpu +memory +pids")
        for directory in self.dirs.values():
            directory.mkdir(parents=True, exist_ok=True)

    def procs_files(self) -> list[Path]:
        """Where a process writes its pid to join the group (before it starts the guest)."""
        return [directory / "cgroup.procs" for directory in self.dirs.values()]

    def limit(self, vcpus: int, memory_mb: int) -> None:
        """CPU time of `vcpus` whole CPUs and `memory_mb` of memory; applies at once."""
        quota_us, memory = vcpus * CPU_PERIOD_US, memory_mb * 1024 * 1024
        if self.v2:
            group = self.dirs["unified"]
            _write(group / "cpu.max", f"{quota_us} {CPU_PERIOD_US}")
            _write(group / "memory.max", str(memory))
            return
        if "cpu" in self.dirs:
            _write(self.dirs["cpu"] / "cpu.cfs_period_us", str(CPU_PERIOD_US))
            _write(self.dirs["cpu"] / "cpu.cfs_quota_us", str(quota_us))
        if "memory" in self.dirs:
            _write(self.dirs["memory"] / "memory.limit_in_bytes", str(memory))

    def limits(self) -> tuple[int | None, int | None]:
        """(CPU quota in µs per period, memory limit in bytes) as the kernel has them."""
        try:
            if self.v2:
                group = self.dirs["unified"]
                quota = (group / "cpu.max").read_text().split()[0]
                memory = (group / "memory.max").read_text().strip()
                return (
                    None if quota == "max" else int(quota),
                    None if memory == "max" else int(memory),
                )
            return (
                int((self.dirs["cpu"] / "cpu.cfs_quota_us").read_text()),
                int((self.dirs["memory"] / "memory.limit_in_bytes").read_text()),
            )
        except (OSError, KeyError, ValueError):
            return None, None

    def pids(self) -> set[int]:
        for directory in self.dirs.values():
            with contextlib.suppress(OSError):
                return {int(p) for p in (directory / "cgroup.procs").read_text().split()}
        return set()

    def _freezer_file(self) -> tuple[Path, str, str] | None:
        if self.v2:
            return self.dirs["unified"] / "cgroup.freeze", "1", "0"
        if "freezer" in self.dirs:
            return self.dirs["freezer"] / "freezer.state", "FROZEN", "THAWED"
        return None

    def set_frozen(self, frozen: bool) -> None:
        """Freeze or thaw every process of the group (SIGSTOP/SIGCONT without a freezer)."""
        freezer = self._freezer_file()
        if freezer is None:
            for pid in self.pids():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGSTOP if frozen else signal.SIGCONT)
            return
        path, on, off = freezer
        _write(path, on if frozen else off)
        deadline = time.monotonic() + 5.0
        while frozen and self.frozen() is not True and time.monotonic() < deadline:
            time.sleep(0.01)

    def frozen(self) -> bool | None:
        """Whether the group is frozen; None when the host has no freezer."""
        freezer = self._freezer_file()
        if freezer is None:
            return None
        path, on, _ = freezer
        if self.v2:
            path = self.dirs["unified"] / "cgroup.events"
            with contextlib.suppress(OSError):
                return "frozen 1" in path.read_text()
            return False
        with contextlib.suppress(OSError):
            return path.read_text().strip() == on
        return False

    def kill(self) -> None:
        """SIGKILL everything in the group (thawed first: a frozen task dies only when thawed)."""
        self.set_frozen(False)
        deadline = time.monotonic() + 5.0
        while (pids := self.pids()) and time.monotonic() < deadline:
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.02)

    def remove(self) -> None:
        """Kill what is left and remove the group from every hierarchy."""
        if not self.exists():
            return
        self.kill()
        for directory in self.dirs.values():
            with contextlib.suppress(FileNotFoundError):
                directory.rmdir()


def guest_groups(root: Path = CGROUP_ROOT) -> set[str]:
    """Names of every pocketstack group on the host (to find ones nobody owns)."""
    names: set[str] = set()
    parents = [root / PARENT] if (root / "cgroup.controllers").exists() else [
        root / controller / PARENT for controller in V1_CONTROLLERS
    ]  # fmt: skip
    for parent in parents:
        if parent.is_dir():
            names |= {entry.name for entry in parent.iterdir() if entry.is_dir()}
    return names
