"""Running host commands: the one place a subprocess is started and waited for.

Drivers call these (through the other `host/` modules) so a failure always
reaches the user as the command that failed and what it printed.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator, Sequence


class HostCommandError(Exception):
    """A host command failed; the message names the command and what it said."""

    def __init__(self, argv: Sequence[str], detail: str) -> None:
        self.argv = list(argv)
        self.detail = detail.strip()
        super().__init__(f"`{' '.join(self.argv)}` failed: {self.detail or 'no output'}")


def run(argv: Sequence[str], stdin: bytes | None = None, timeout_s: float = 120.0) -> str:
    """Run `argv` to completion; its stdout, or HostCommandError with its stderr."""
    try:
        done = subprocess.run(
            list(argv), input=stdin, capture_output=True, timeout=timeout_s, check=False
        )
    except FileNotFoundError as exc:
        raise HostCommandError(argv, f"{argv[0]} is not installed") from exc
    except subprocess.TimeoutExpired as exc:
        raise HostCommandError(argv, f"no answer in {timeout_s:.0f} s") from exc
    if done.returncode != 0:
        detail = done.stderr.decode(errors="replace") or done.stdout.decode(errors="replace")
        raise HostCommandError(argv, f"exit {done.returncode}: {detail}")
    return done.stdout.decode(errors="replace")


def stream(argv: Sequence[str], chunk_size: int = 1 << 20) -> Iterator[bytes]:
    """Run `argv` and yield its stdout as it comes; HostCommandError at the end if it
    failed (a reader stopping early kills it)."""
    try:
        child = subprocess.Popen(
            list(argv), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
    except FileNotFoundError as exc:
        raise HostCommandError(argv, f"{argv[0]} is not installed") from exc
    assert child.stdout is not None and child.stderr is not None
    try:
        while chunk := child.stdout.read(chunk_size):
            yield chunk
        detail = child.stderr.read().decode(errors="replace")
        if child.wait() != 0:
            raise HostCommandError(argv, f"exit {child.returncode}: {detail}")
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        child.stdout.close()
        child.stderr.close()
