"""Loop devices: a volume's file as a block device a namespace guest can open.

One loop device per (file, read-only) pair on the host: two guests attaching a
multi-attach volume get the same device, so they share its buffer cache and
see each other's writes at once. Nothing is kept about them here: `losetup`
tells which loop devices back a file, so a restarted agent finds them again.
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
from pathlib import Path

from pocketstack.host import commands


def _backing(path: Path, read_only: bool) -> list[str]:
    """The loop devices backed by `path`, opened read-only or not as asked."""
    listed = json.loads(
        commands.run(["losetup", "--list", "--json", "--output", "NAME,BACK-FILE,RO"]) or "{}"
    )
    target = str(path.resolve())
    return [
        device["name"]
        for device in listed.get("loopdevices", [])
        if (device.get("back-file") or "").removesuffix(" (deleted)") == target
        and bool(int(device.get("ro") or 0)) == read_only
    ]


def attach(path: Path, read_only: bool = False) -> str:
    """The loop device of `path` (made if there is none): its /dev path."""
    found = _backing(path, read_only)
    if found:
        return found[0]
    argv = ["losetup", "--find", "--show", *(["--read-only"] if read_only else []), str(path)]
    return commands.run(argv).strip()


def detach(path: Path, read_only: bool = False) -> None:
    """Remove the loop devices of `path`. One still open (a file system mounted on it) goes
    when it is closed: losetup marks it to clear itself."""
    for device in _backing(path, read_only):
        with contextlib.suppress(commands.HostCommandError):
            commands.run(["losetup", "--detach", device])


def make_node(dev_dir: Path, name: str, device: str) -> None:
    """A block device node `dev_dir/name` for the loop `device` (a guest's /dev, say)."""
    node = dev_dir / name
    rdev = os.stat(device).st_rdev
    with contextlib.suppress(FileNotFoundError):
        if node.stat().st_rdev == rdev:
            return
        node.unlink()
    os.mknod(node, stat.S_IFBLK | 0o660, rdev)


def remove_node(dev_dir: Path, name: str) -> None:
    (dev_dir / name).unlink(missing_ok=True)
