"""What a block storage backend does: make, grow, copy and remove volume data.

The agent (agent.py) decides what to do; a backend only does it,
idempotently (a job cut short by a crash is run again from the start).
`file.py` keeps volumes as sparse files in the state dir; `fake.py` keeps
only their sizes, in memory, for API and scale tests.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol


class BackendError(Exception):
    """The backend could not do what was asked; shown as the volume's failure."""


class Backend(Protocol):
    name: str

    def create(self, volume_id: str, size_gb: int) -> None:
        """An empty volume of `size_gb` GiB."""
        ...

    def create_from_image(
        self, volume_id: str, image: Path, disk_format: str | None, size_gb: int
    ) -> None:
        """A volume whose first bytes are the image's disk (converted to raw)."""
        ...

    def create_from_volume(self, volume_id: str, source_id: str, size_gb: int) -> None: ...

    def create_from_snapshot(self, volume_id: str, snapshot_id: str, size_gb: int) -> None: ...

    def extend(self, volume_id: str, size_gb: int) -> None: ...

    def delete(self, volume_id: str) -> None:
        """Remove the volume's data; nothing there is not an error."""
        ...

    def snapshot(self, snapshot_id: str, volume_id: str) -> None:
        """Keep the volume's bytes as they are now under `snapshot_id`."""
        ...

    def revert(self, volume_id: str, snapshot_id: str) -> None:
        """Give the volume its bytes of the snapshot back."""
        ...

    def delete_snapshot(self, snapshot_id: str) -> None: ...

    def connection(self, volume_id: str) -> dict[str, object]:
        """How a host reaches the volume: Cinder's `connection_info` data (`device_path`)."""
        ...

    def volumes(self) -> set[str]:
        """The ids of every volume the backend holds data for."""
        ...

    def volume_file(self, volume_id: str) -> Path | None:
        """The file holding the volume's bytes, for backups (None: none are kept)."""
        ...

    def snapshot_file(self, snapshot_id: str) -> Path | None: ...

    def active_site(self) -> str:
        """ "primary", or "secondary" after a failover."""
        ...

    def replicate(self, volume_id: str) -> int:
        """Bring the volume's replica on the secondary up to date; the bytes written."""
        ...

    def fail_over(self) -> None: ...

    def fail_back(self) -> int: ...
