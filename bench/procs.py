"""Process helpers shared by both sides of the benchmark.

Why: start-to-ready and idle RSS must be measured the same way for
pocketstack and for Keystone, so launching, readiness polling, memory
accounting and shutdown live here once.  Every server runs in its own
session (process group) so that stopping it stops exactly the processes we
started — a uWSGI master and its worker, or pocketstack and whatever it
spawns — and nothing else.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path


def free_port() -> int:
    """A currently free TCP port on 127.0.0.1 (servers bind loopback only)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def launch(
    cmd: list[str], env: dict[str, str], log_path: Path, cwd: Path | None = None
) -> subprocess.Popen[bytes]:
    """Start ``cmd`` in a new session with stdout/stderr going to ``log_path``."""
    with open(log_path, "ab") as log:  # the child keeps its own copy of the fd
        return subprocess.Popen(
            cmd,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            cwd=cwd,
        )


def wait_ready(
    proc: subprocess.Popen[bytes],
    port: int,
    path: str,
    started: float,
    log_path: Path,
    timeout: float = 60.0,
) -> float:
    """Poll ``GET path`` every 10 ms until it answers 200; seconds since ``started``."""
    deadline = started + timeout
    while time.perf_counter() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(
                f"server exited with {proc.returncode} before ready:\n" + tail(log_path)
            )
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2.0)
        try:
            conn.request("GET", path)
            resp = conn.getresponse()
            resp.read()
            if resp.status == 200:
                return time.perf_counter() - started
        except (OSError, http.client.HTTPException):
            pass
        finally:
            conn.close()
        time.sleep(0.01)
    raise RuntimeError(f"server not ready after {timeout} s:\n" + tail(log_path))


def _children_map() -> dict[int, list[int]]:
    """ppid -> pids, from /proc (no psutil: the bench uses the stdlib only)."""
    kids: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        # The command name may contain spaces or parentheses: split after the last ')'.
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        kids.setdefault(ppid, []).append(int(entry))
    return kids


def tree_pids(root: int) -> list[int]:
    """``root`` and all its descendants."""
    kids = _children_map()
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(kids.get(pid, []))
    return out


def tree_rss_mb(root: int) -> float:
    """Sum of VmRSS over the whole process tree, in MB (10^6 bytes).

    Shared pages of forked children are counted once per process, as ``ps``
    and ``top`` would; that is the figure an operator sees.
    """
    total_kb = 0
    for pid in tree_pids(root):
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total_kb += int(line.split()[1])
        except OSError:
            continue
    return round(total_kb * 1024 / 1e6, 1)


def stop(proc: subprocess.Popen[bytes], grace: float = 15.0) -> None:
    """SIGTERM our own process group, then SIGKILL it if it lingers."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)
    # Stragglers left in the group after the leader exited.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


def tail(path: Path, lines: int = 30) -> str:
    """Last lines of a log, for error messages."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def venv_with(venv: Path, specs: list[str]) -> Path:
    """Create (or reuse) a venv holding `specs` (pip requirement strings).

    A marker file records what was installed, so a venv is reused only when it holds
    the requested versions.
    """
    marker = venv / ".pocketstack-bench"
    have = marker.read_text().split() if marker.exists() else []
    if set(have) >= set(specs):
        return venv
    if not (venv / "bin" / "python").exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    print(f"installing {' '.join(specs)} into {venv} (a minute or two) ...", flush=True)
    subprocess.run([str(venv / "bin" / "pip"), "install", "-q", *specs], check=True)
    marker.write_text("\n".join(sorted(set(have) | set(specs))) + "\n")
    return venv


def installed_version(venv: Path, dist: str) -> str:
    """Version of a distribution inside the venv ("python": the interpreter's)."""
    code = (
        "import platform; print(platform.python_version())"
        if dist == "python"
        else f"import importlib.metadata as m; print(m.version({dist!r}))"
    )
    out = subprocess.run(
        [str(venv / "bin" / "python"), "-c", code], capture_output=True, text=True, check=True
    )
    return out.stdout.strip()
