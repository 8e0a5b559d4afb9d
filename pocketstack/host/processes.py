"""Long-lived processes the cloud starts and must find again after a restart.

A guest's PID 1, a qemu, dnsmasq, later haproxy: each is started detached
(its own session, so neither a Ctrl-C nor a kill -9 of `pocketstack up`
takes it down, and init's child, so this process never reaps or waits for it)
and remembered as a `ProcessId`: the pid plus the kernel's
start time of that pid, so a pid reused by an unrelated process is never
mistaken for ours. The pair is saved next to the thing it runs.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from pocketstack.host.commands import HostCommandError

# Starts `$@` in the background with its output appended to `$1`, prints its pid and exits:
# the process is then init's child, not ours, so this process never has to reap it.
_DETACH = 'log=$1; shift; "$@" </dev/null >>"$log" 2>&1 & echo $!'


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


def alive(process: ProcessId) -> bool:
    """Is this very process still running (not exited, not a zombie, pid not reused)?"""
    fields = _stat_fields(process.pid)
    return fields is not None and fields[0] != "Z" and int(fields[19]) == process.started


def spawn(
    argv: Sequence[str], log: Path, env: Mapping[str, str] | None = None, cwd: Path | None = None
) -> ProcessId:
    """Start `argv` detached (its own session, init's child), its output appended to `log`."""
    log.touch()
    try:
        done = subprocess.run(
            ["/bin/sh", "-c", _DETACH, "detach", str(log), *argv], capture_output=True,
            start_new_session=True, env=dict(env) if env else None, cwd=cwd, check=False,
            timeout=30,
        )  # fmt: skip
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise HostCommandError(argv, str(exc)) from exc
    pid_text = done.stdout.decode().strip()
    started = identify(int(pid_text)) if pid_text.isdigit() else None
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
