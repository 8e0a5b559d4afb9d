"""Long-lived processes the cloud starts and must find again after a restart.

A guest's PID 1, a qemu, later dnsmasq and haproxy: each is started detached
(its own session, so neither a Ctrl-C nor a kill -9 of `pocketstack up`
takes it down) and remembered as a `ProcessId`: the pid plus the kernel's
start time of that pid, so a pid reused by an unrelated process is never
mistaken for ours. The pair is saved next to the thing it runs.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from pocketstack.host.commands import HostCommandError

# Children this process started; polled so they never linger as zombies.
_children: dict[int, subprocess.Popen[bytes]] = {}
_children_lock = threading.Lock()


@dataclass(frozen=True, slots=True)
class ProcessId:
    pid: int
    started: int  # clock ticks after boot, field 22 of /proc/PID/stat

    def save(self, path: Path) -> None:
        partial = path.with_suffix(".tmp")
        partial.write_text(json.dumps({"pid": self.pid, "started": self.started}))
        partial.replace(path)

    @classmethod
    def load(cls, path: Path) -> ProcessId | None:
        try:
            saved = json.loads(path.read_text())
        except (OSError, ValueError):
            return None
        return cls(int(saved["pid"]), int(saved["started"]))


def _stat_fields(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: split after its last ")".
    return raw[raw.rindex(")") + 2 :].split()


def identify(pid: int) -> ProcessId | None:
    fields = _stat_fields(pid)
    return ProcessId(pid, int(fields[19])) if fields else None


def _reap(pid: int) -> None:
    with _children_lock:
        child = _children.get(pid)
        if child is not None and child.poll() is not None:
            del _children[pid]


def alive(process: ProcessId) -> bool:
    """Is this very process still running (not exited, not a zombie, pid not reused)?"""
    _reap(process.pid)
    fields = _stat_fields(process.pid)
    return fields is not None and fields[0] != "Z" and int(fields[19]) == process.started


def spawn(
    argv: Sequence[str], log: Path, env: Mapping[str, str] | None = None, cwd: Path | None = None
) -> ProcessId:
    """Start `argv` detached, its output appended to `log`."""
    with log.open("ab") as output:
        try:
            child = subprocess.Popen(
                list(argv), stdin=subprocess.DEVNULL, stdout=output, stderr=output,
                start_new_session=True, close_fds=True, env=dict(env) if env else None, cwd=cwd,
            )  # fmt: skip
        except OSError as exc:
            raise HostCommandError(argv, str(exc)) from exc
    with _children_lock:
        _children[child.pid] = child
    started = identify(child.pid)
    if started is None:
        raise HostCommandError(argv, f"exited at once; see {log}")
    return started


def send(process: ProcessId, signum: int) -> bool:
    """Signal the process if it is still ours; False when it is gone."""
    if not alive(process):
        return False
    try:
        os.kill(process.pid, signum)
    except ProcessLookupError:
        return False
    return True


def wait_gone(process: ProcessId, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while alive(process):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.02)
    return True


def stop(process: ProcessId, timeout_s: float, first: int = signal.SIGTERM) -> None:
    """Ask with `first`, then SIGKILL after `timeout_s`; returns when it is gone."""
    if send(process, first) and not wait_gone(process, timeout_s):
        send(process, signal.SIGKILL)
        wait_gone(process, 5.0)
