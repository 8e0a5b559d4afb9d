"""Looking at guests from the host, as a user checking "is it really running?" would."""

from __future__ import annotations

import ipaddress
import json
import subprocess
import uuid
from pathlib import Path

from pocketstack.host.cgroups import GuestCgroup
from pocketstack.network.drivers import linuxbridge


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


GUEST_PATH = "PATH=/bin:/sbin:/usr/bin:/usr/sbin"


def free_external_cidr() -> str:
    """A /24 of 198.19.0.0/16 that no route of the host's root namespace touches yet: an
    external network for a test cloud that no other cloud on the machine is using."""
    shown = subprocess.run(["ip", "-j", "route"], capture_output=True, text=True, check=True)
    used = [
        ipaddress.ip_network(r["dst"]) for r in json.loads(shown.stdout) if r["dst"] != "default"
    ]
    for _ in range(100):
        candidate = ipaddress.IPv4Network(f"198.19.{uuid.uuid4().int % 254 + 1}.0/24")
        if not any(candidate.overlaps(u) for u in used):
            return str(candidate)
    raise RuntimeError("no free /24 in 198.19.0.0/16")


def guest_pid(server_id: str) -> int | None:
    """The host pid of the server's PID 1 (its image's init), if it runs."""
    return next(iter(pid1s(server_id)), None)


def in_guest(server_id: str, *argv: str, timeout: float = 15.0) -> subprocess.CompletedProcess[str]:
    """Run a command inside a namespace server, as a user with a console on it would:
    its network, mounts, hostname and root filesystem."""
    pid = guest_pid(server_id)
    assert pid is not None, f"server {server_id} is not running"
    return subprocess.run(
        ["nsenter", "-t", str(pid), "-n", "-m", "-u", "-r", "--", "env", "-i", GUEST_PATH, *argv],
        capture_output=True, text=True, timeout=timeout, check=False,
    )  # fmt: skip


def sweep_data_plane(workdir: Path) -> set[str]:
    """Remove every network and router a stopped cloud's linuxbridge driver recorded under
    `workdir` (its state dir's network/<host>); what it found."""
    driver = linuxbridge.LinuxBridgeDriver(workdir)
    found = driver.made() | driver.routers_made()
    for router_id in driver.routers_made():
        driver.remove_router(router_id)
    for network_id in driver.made():
        driver.remove(network_id)
    return found
