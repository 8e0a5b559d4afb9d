"""Looking at guests from the host, as a user checking "is it really running?" would."""

from __future__ import annotations

from pathlib import Path

from pocketstack.host.cgroups import GuestCgroup


def running(pid: int) -> bool:
    """A process that exists and has not exited (a zombie waits only for its reaping)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def is_pid1(pid: int) -> bool:
    """Is this host pid the PID 1 of its own pid namespace?"""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    for line in status.splitlines():
        if line.startswith("NSpid:"):
            nspids = line.split()[1:]
            return len(nspids) > 1 and nspids[-1] == "1"
    return False


def pid1s(server_id: str) -> list[int]:
    """The PID 1s running in the server's cgroup (one, when all is well)."""
    return [pid for pid in GuestCgroup(server_id).pids() if is_pid1(pid)]
