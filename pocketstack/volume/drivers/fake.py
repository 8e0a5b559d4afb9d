"""A backend that stores nothing: sizes in memory, every job done at once."""

from __future__ import annotations

from pathlib import Path

from pocketstack.volume.drivers import BackendError


class FakeBackend:
    name = "fake"

    def __init__(self) -> None:
        self.sizes: dict[str, int] = {}
        self.snapshots: dict[str, int] = {}
        self.site = "primary"

    def create(self, volume_id: str, size_gb: int) -> None:
        self.sizes[volume_id] = size_gb

    def create_from_image(
        self, volume_id: str, image: Path, disk_format: str | None, size_gb: int
    ) -> None:
        self.sizes[volume_id] = size_gb

    def create_from_volume(self, volume_id: str, source_id: str, size_gb: int) -> None:
        if source_id not in self.sizes:
            raise BackendError(f"source volume {source_id} has no data on backend fake")
        self.sizes[volume_id] = size_gb

    def create_from_snapshot(self, volume_id: str, snapshot_id: str, size_gb: int) -> None:
        if snapshot_id not in self.snapshots:
            raise BackendError(f"snapshot {snapshot_id} has no data on backend fake")
        self.sizes[volume_id] = size_gb

    def extend(self, volume_id: str, size_gb: int) -> None:
        self.sizes[volume_id] = size_gb

    def delete(self, volume_id: str) -> None:
        self.sizes.pop(volume_id, None)

    def snapshot(self, snapshot_id: str, volume_id: str) -> None:
        self.snapshots[snapshot_id] = self.sizes.get(volume_id, 0)

    def revert(self, volume_id: str, snapshot_id: str) -> None:
        if snapshot_id not in self.snapshots:
            raise BackendError(f"snapshot {snapshot_id} has no data on backend fake")

    def delete_snapshot(self, snapshot_id: str) -> None:
        self.snapshots.pop(snapshot_id, None)

    def connection(self, volume_id: str) -> dict[str, object]:
        return {"volume_id": volume_id}

    def volume_file(self, volume_id: str) -> Path | None:
        return None  # sizes only: a backup of a fake volume is all zeros

    def snapshot_file(self, snapshot_id: str) -> Path | None:
        return None

    def active_site(self) -> str:
        return self.site

    def replicate(self, volume_id: str) -> int:
        return 0

    def fail_over(self) -> None:
        self.site = "secondary"

    def fail_back(self) -> int:
        self.site = "primary"
        return 0

    def volumes(self) -> set[str]:
        return set(self.sizes)
