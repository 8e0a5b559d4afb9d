"""The `file` backend: each volume a sparse raw file in the state dir.

What exists for volume V: `<site>/volumes/volume-V.raw`; for snapshot S:
`<site>/snapshots/snapshot-S.raw`. Raw files are what a loop device (namespace
servers) and qemu (`format=raw`) attach directly; a snapshot or clone copies
only allocated blocks (or shares them, where the file system has reflinks).

Replication: the backend has a primary site and a secondary one (two
directories; on a real edge site, two disks or a network mount). Volumes of
a `replication_enabled` type are mirrored to the secondary, only changed
chunks written; a volume not written since its last mirror is not even read.
Which site is active is kept in the `active-site` file beside them, not in the
database: `pocketstack manage volume failover` points it at the secondary
(whose copies then serve), `failback` copies what changed there back to the
primary and points it home again.
"""

from __future__ import annotations

import time
from pathlib import Path

from pocketstack.host import blockfiles
from pocketstack.host.commands import HostCommandError
from pocketstack.volume.drivers import BackendError

PRIMARY, SECONDARY = "primary", "secondary"
SETTLED_NS = 1_000_000_000
ACTIVE_SITE_FILE = "active-site"


class FileBackend:
    name = "file"

    def __init__(self, primary: Path, secondary: Path) -> None:
        self.primary = primary
        self.secondary = secondary
        # Per volume: the (mtime, size) it had when its last mirror began, and when that
        # was. File times tick coarsely, so a write in the same tick as that look leaves
        # the mtime as it was: a volume counts as unchanged only once its mtime is older
        # than the copy by SETTLED_NS.
        self._mirrored: dict[str, tuple[tuple[int, int], int]] = {}

    @property
    def _marker(self) -> Path:
        return self.primary.parent / ACTIVE_SITE_FILE

    def active_site(self) -> str:
        """Read at every use, so a failover made by the CLI applies to a running cloud."""
        try:
            return self._marker.read_text().strip() or PRIMARY
        except FileNotFoundError:
            return PRIMARY

    @property
    def root(self) -> Path:
        return self.secondary if self.active_site() == SECONDARY else self.primary

    def _set_site(self, site: str) -> None:
        partial = self._marker.with_name(f"{ACTIVE_SITE_FILE}.part")
        partial.parent.mkdir(parents=True, exist_ok=True)
        partial.write_text(site + "\n")
        partial.replace(self._marker)

    def replicate(self, volume_id: str) -> int:
        """Mirror the volume to the secondary site (nothing while failed over); the bytes
        written."""
        if self.active_site() == SECONDARY:
            return 0
        source = self.primary / "volumes" / f"volume-{volume_id}.raw"
        try:
            seen = source.stat()
        except FileNotFoundError:
            return 0
        version = (seen.st_mtime_ns, seen.st_size)
        last = self._mirrored.get(volume_id)
        if last is not None and last[0] == version and version[0] < last[1] - SETTLED_NS:
            return 0  # unwritten since a copy that began after its last write had settled
        started = time.time_ns()
        written = blockfiles.mirror(source, self.secondary / "volumes" / source.name)
        self._mirrored[volume_id] = (version, started)
        return written

    def fail_over(self) -> None:
        self._set_site(SECONDARY)

    def fail_back(self) -> int:
        """Copy every replica's changes back to the primary, then serve from it; the number
        of volumes copied."""
        replicas = sorted((self.secondary / "volumes").glob("volume-*.raw"))
        for replica in replicas:
            blockfiles.mirror(replica, self.primary / "volumes" / replica.name)
        self._set_site(PRIMARY)
        return len(replicas)

    def volume_path(self, volume_id: str) -> Path:
        return self.root / "volumes" / f"volume-{volume_id}.raw"

    def snapshot_path(self, snapshot_id: str) -> Path:
        return self.root / "snapshots" / f"snapshot-{snapshot_id}.raw"

    def _clone(self, source: Path, target: Path, size_gb: int, what: str) -> None:
        if not source.exists():
            raise BackendError(f"{what} has no data on backend file ({source} is missing)")
        try:
            blockfiles.clone(source, target, size_gb)
        except HostCommandError as exc:
            raise BackendError(f"copying {what} failed: {exc}") from exc

    def create(self, volume_id: str, size_gb: int) -> None:
        blockfiles.create_sparse(self.volume_path(volume_id), size_gb)

    def create_from_image(
        self, volume_id: str, image: Path, disk_format: str | None, size_gb: int
    ) -> None:
        target = self.volume_path(volume_id)
        if target.exists():
            return
        try:
            blockfiles.write_image(image, target, disk_format, size_gb)
        except (HostCommandError, ValueError) as exc:
            raise BackendError(f"writing image {image.name} to the volume failed: {exc}") from exc

    def create_from_volume(self, volume_id: str, source_id: str, size_gb: int) -> None:
        target = self.volume_path(volume_id)
        if not target.exists():
            self._clone(self.volume_path(source_id), target, size_gb, f"volume {source_id}")

    def create_from_snapshot(self, volume_id: str, snapshot_id: str, size_gb: int) -> None:
        target = self.volume_path(volume_id)
        if not target.exists():
            source = self.snapshot_path(snapshot_id)
            self._clone(source, target, size_gb, f"snapshot {snapshot_id}")

    def extend(self, volume_id: str, size_gb: int) -> None:
        path = self.volume_path(volume_id)
        if not path.exists():
            raise BackendError(f"volume {volume_id} has no data on backend file")
        blockfiles.grow(path, size_gb)

    def delete(self, volume_id: str) -> None:
        for site in (self.primary, self.secondary):
            blockfiles.remove(site / "volumes" / f"volume-{volume_id}.raw")

    def snapshot(self, snapshot_id: str, volume_id: str) -> None:
        target = self.snapshot_path(snapshot_id)
        if not target.exists():
            self._clone(self.volume_path(volume_id), target, 0, f"volume {volume_id}")

    def revert(self, volume_id: str, snapshot_id: str) -> None:
        path = self.volume_path(volume_id)
        blockfiles.remove(path)
        self._clone(self.snapshot_path(snapshot_id), path, 0, f"snapshot {snapshot_id}")

    def delete_snapshot(self, snapshot_id: str) -> None:
        blockfiles.remove(self.snapshot_path(snapshot_id))

    def volume_file(self, volume_id: str) -> Path | None:
        return self.volume_path(volume_id)

    def snapshot_file(self, snapshot_id: str) -> Path | None:
        return self.snapshot_path(snapshot_id)

    def connection(self, volume_id: str) -> dict[str, object]:
        return {"volume_id": volume_id, "device_path": str(self.volume_path(volume_id))}

    def volumes(self) -> set[str]:
        folder = self.root / "volumes"
        if not folder.is_dir():
            return set()
        return {
            p.name.removeprefix("volume-").removesuffix(".raw") for p in folder.glob("volume-*.raw")
        }
