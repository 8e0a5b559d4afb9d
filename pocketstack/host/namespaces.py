"""Guests as sets of Linux namespaces: the host side of the namespace compute driver.

A guest is a named network namespace (`ps-<server id>`, kept across reboots
so its ports stay plugged), an overlay root (the image tree shared read-only
below, the guest's own writes above) and a process tree in fresh pid, mount,
uts and ipc namespaces whose PID 1 is the image's /sbin/init. The launcher
joins the guest's cgroup first, so every process the guest ever starts is
in it. The console is PID 1's output, appended to a log.
"""

from __future__ import annotations

import contextlib
import gzip
import os
import shutil
import signal
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path

from pocketstack.host import commands, processes
from pocketstack.host.cgroups import GuestCgroup
from pocketstack.host.commands import HostCommandError

NETNS_DIR = Path("/run/netns")
NETNS_PREFIX = "ps-"
INIT = "/sbin/init"
# Device nodes a guest gets, bound from the host's /dev.
DEVICES = ("null", "zero", "full", "random", "urandom", "tty")

# Runs as PID 1 of the new pid namespace, before it becomes the guest's init:
# $1 root, $2 hostname, $3 a tree to show at /mnt (rescue) or "".
_INNER = """
set -e
root=$1
mount -t tmpfs -o mode=755,size=1m dev "$root/dev"
for node in %s; do
    : > "$root/dev/$node"
    mount --bind "/dev/$node" "$root/dev/$node"
done
mkdir -p "$root/dev/pts" "$root/dev/shm"
mount -t sysfs sysfs "$root/sys"
mount -t tmpfs -o mode=1777 tmpfs "$root/tmp"
[ -n "$3" ] && mount --rbind "$3" "$root/mnt"
hostname "$2"
exec chroot "$root" %s
""" % (" ".join(DEVICES), INIT)  # noqa: UP031

# Runs first, on the host: joins the cgroup, then becomes the namespaces' creator.
_OUTER = """
for procs in $CGROUP_PROCS; do echo $$ > "$procs"; done
exec nsenter --net="$NETNS" -- unshare --pid --mount --uts --ipc --fork --kill-child \\
    --mount-proc="$1/proc" -- /bin/sh -c "$INNER" guest-setup "$@"
"""


@dataclass(frozen=True, slots=True)
class Layout:
    """Where a guest's overlay lives inside its directory."""

    directory: Path

    @property
    def root(self) -> Path:
        return self.directory / "root"

    @property
    def upper(self) -> Path:
        return self.directory / "upper"

    @property
    def work(self) -> Path:
        return self.directory / "work"


def netns_name(name: str) -> str:
    return f"{NETNS_PREFIX}{name}"


def netns_path(name: str) -> Path:
    return NETNS_DIR / netns_name(name)


def create_netns(name: str) -> None:
    if not netns_path(name).exists():
        commands.run(["ip", "netns", "add", netns_name(name)])
        commands.run(["ip", "-n", netns_name(name), "link", "set", "lo", "up"])


def delete_netns(name: str) -> None:
    if netns_path(name).exists():
        commands.run(["ip", "netns", "delete", netns_name(name)])


def guest_netns() -> set[str]:
    """Names (server ids) of every guest network namespace on the host."""
    if not NETNS_DIR.is_dir():
        return set()
    return {
        e.name[len(NETNS_PREFIX) :] for e in NETNS_DIR.iterdir() if e.name.startswith(NETNS_PREFIX)
    }


def unpack_image(tarball: Path, tree: Path) -> Path:
    """The image's root tree, unpacked once and shared by every guest of the image."""
    if (tree / ".complete").exists():
        return tree
    partial = tree.with_name(f"{tree.name}.part")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    try:
        with tarfile.open(tarball) as archive:
            archive.extractall(partial, filter="tar")
    except (tarfile.TarError, OSError) as exc:
        shutil.rmtree(partial, ignore_errors=True)
        raise HostCommandError(["tar", "-x", str(tarball)], str(exc)) from exc
    (partial / ".complete").touch()
    shutil.rmtree(tree, ignore_errors=True)
    partial.replace(tree)
    return tree


def format_from_archive(volume: Path, scratch: Path) -> None:
    """Make the volume, which holds a root filesystem archive (a volume made from such an
    image), an ext4 file system of that tree: what a namespace guest can run from."""
    shutil.rmtree(scratch, ignore_errors=True)
    try:
        tree = unpack_image(volume, scratch)
        commands.run(["mke2fs", "-q", "-F", "-t", "ext4", "-d", str(tree), str(volume)])
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def is_tarball(path: Path) -> bool:
    """A tar archive (plain or gzipped) with POSIX headers: what root filesystems ship as.
    (tarfile.is_tarfile also takes any file of zeros, a raw disk's start.)"""
    try:
        with path.open("rb") as raw:
            head = raw.read(512)
            if head[:2] == b"\x1f\x8b":
                raw.seek(0)
                with gzip.open(raw) as unpacked:
                    head = unpacked.read(512)
    except (OSError, EOFError, gzip.BadGzipFile):
        return False
    return head[257:262] == b"ustar"


def mounted(path: Path) -> bool:
    with contextlib.suppress(OSError):
        target = str(path)
        return any(
            line.split()[1] == target for line in Path("/proc/mounts").read_text().splitlines()
        )
    return False


def mount_overlay(layout: Layout, lower: Path) -> None:
    if mounted(layout.root):
        return
    for directory in (layout.root, layout.upper, layout.work):
        directory.mkdir(parents=True, exist_ok=True)
    options = f"lowerdir={lower},upperdir={layout.upper},workdir={layout.work}"
    commands.run(["mount", "-t", "overlay", "overlay", "-o", options, str(layout.root)])


def unmount(path: Path) -> None:
    """Unmount `path` and whatever is mounted below it."""
    if mounted(path):
        commands.run(["umount", "--recursive", "--lazy", str(path)])


def launch(
    name: str,
    root: Path,
    hostname: str,
    console: Path,
    cgroup: GuestCgroup,
    mnt: Path | None = None,
) -> processes.ProcessId:
    """Start the guest's PID 1; the returned process is its namespaces' holder (unshare),
    whose death takes the whole guest with it."""
    env = {
        "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
        "NETNS": str(netns_path(name)),
        "CGROUP_PROCS": " ".join(str(p) for p in cgroup.procs_files()),
        "INNER": _INNER,
    }
    argv = ["/bin/sh", "-c", _OUTER, "launcher", str(root), hostname, str(mnt or "")]
    return processes.spawn(argv, console, env=env)


def init_of(holder: processes.ProcessId) -> int | None:
    """The pid (on the host) of the guest's PID 1: the holder's only child."""
    with contextlib.suppress(OSError, ValueError):
        children = Path(f"/proc/{holder.pid}/task/{holder.pid}/children").read_text().split()
        return int(children[0]) if children else None
    return None


def wait_booting(holder: processes.ProcessId, timeout_s: float) -> bool:
    """Wait until PID 1 runs the image's init; False if the guest died first."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not processes.alive(holder):
            return False
        pid = init_of(holder)
        if pid is not None:
            with contextlib.suppress(OSError):
                # The setup shell has become the image's init: ["/bin/sh", "/sbin/init"].
                if Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[1:2] == [INIT.encode()]:
                    return True
        time.sleep(0.005)
    return processes.alive(holder)


def stop(holder: processes.ProcessId, timeout_s: float, hard: bool) -> None:
    """Soft: SIGTERM to PID 1, SIGKILL after `timeout_s`. Hard: SIGKILL at once. Killing
    the holder kills PID 1, and with it every process of the pid namespace."""
    if not hard:
        pid = init_of(holder)
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
            if processes.wait_gone(holder, timeout_s):
                return
    processes.send(holder, signal.SIGKILL)
    processes.wait_gone(holder, 5.0)


REQUIRED_COMMANDS = ("unshare", "nsenter", "ip", "mount", "umount", "chroot")


def missing() -> str | None:
    """Why this machine cannot run namespace guests, or None when it can."""
    if os.geteuid() != 0:
        return "namespace guests need root"
    absent = [name for name in REQUIRED_COMMANDS if shutil.which(name) is None]
    if absent:
        return f"{', '.join(absent)} not installed (apt-get install util-linux iproute2)"
    if "overlay" not in Path("/proc/filesystems").read_text():
        return "the kernel has no overlay filesystem"
    return None
