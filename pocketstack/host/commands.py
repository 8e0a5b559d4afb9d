"""Running host commands: the one place a subprocess is started and waited for.

Drivers call these (through the other `host/` modules) so a failure always
reaches the user as the command that failed and what it printed.
"""

from __future__ import annotations

import subprocess
from collections.abc import Sequence


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
