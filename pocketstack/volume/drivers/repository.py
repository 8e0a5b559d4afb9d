"""Backup repositories: where backups keep their chunks and manifests.

A chunk is stored once, under the hash of its uncompressed bytes, as a zstd
frame; a manifest lists, for one backup, the hash of every chunk of the
volume in order (None for a chunk of zeros, which is not stored). A backup
is complete once its manifest is written; chunks no manifest names are
garbage, removed after a delete. `DirectoryRepository` keeps both as files;
an object store keeps the same keys as objects (chunks/<hash>, manifests/<id>),
which is why nothing here assumes more than put, get, exists and delete.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol

IOV_MAX = os.sysconf("SC_IOV_MAX")

# A stored chunk arrives in pieces, so a chunk kept as zstd raw blocks is written
# straight from the buffer it was read into (see backup_engine).
Pieces = Sequence[bytes | bytearray | memoryview]


class Repository(Protocol):
    def has_chunk(self, digest: str) -> bool: ...

    def put_chunk(self, digest: str, pieces: Pieces) -> int:
        """Store a chunk, the pieces one after another (kept if there); the bytes it took."""
        ...

    def get_chunk(self, digest: str) -> bytes: ...

    def put_manifest(self, backup_id: str, manifest: dict[str, Any]) -> None: ...

    def get_manifest(self, backup_id: str) -> dict[str, Any] | None: ...

    def delete_manifest(self, backup_id: str) -> None: ...

    def collect_garbage(self) -> int:
        """Remove the chunks no manifest names; how many went."""
        ...


class DirectoryRepository:
    """chunks/<2 hex>/<chunk hash>.zst and manifests/<backup id>.json under `root`; every file
    is written under a temporary name and renamed, so a crash leaves no half chunk."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def _chunk(self, digest: str) -> Path:
        return self.root / "chunks" / digest[:2] / f"{digest}.zst"

    def _manifest(self, backup_id: str) -> Path:
        return self.root / "manifests" / f"{backup_id}.json"

    @staticmethod
    def _write(path: Path, pieces: Pieces) -> int:
        """The pieces under `path`, written under a temporary name first; the bytes written."""
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{path.name}.{os.getpid()}.part")
        with partial.open("wb") as handle:
            written = _write_all(handle.fileno(), pieces)
        partial.replace(path)
        return written

    def has_chunk(self, digest: str) -> bool:
        return self._chunk(digest).exists()

    def put_chunk(self, digest: str, pieces: Pieces) -> int:
        path = self._chunk(digest)
        if path.exists():
            return 0
        return self._write(path, pieces)

    def get_chunk(self, digest: str) -> bytes:
        return self._chunk(digest).read_bytes()

    def put_manifest(self, backup_id: str, manifest: dict[str, Any]) -> None:
        self._write(self._manifest(backup_id), [json.dumps(manifest).encode()])

    def get_manifest(self, backup_id: str) -> dict[str, Any] | None:
        try:
            found: dict[str, Any] = json.loads(self._manifest(backup_id).read_text())
        except FileNotFoundError:
            return None
        return found

    def delete_manifest(self, backup_id: str) -> None:
        self._manifest(backup_id).unlink(missing_ok=True)

    def _manifests(self) -> Iterator[dict[str, Any]]:
        folder = self.root / "manifests"
        for path in folder.glob("*.json") if folder.is_dir() else ():
            yield json.loads(path.read_text())

    def collect_garbage(self) -> int:
        named = {digest for m in self._manifests() for digest in m["chunks"] if digest}
        removed = 0
        folder = self.root / "chunks"
        for path in folder.glob("*/*.zst") if folder.is_dir() else ():
            if path.stem not in named:
                path.unlink(missing_ok=True)
                removed += 1
        return removed


def _write_all(fd: int, pieces: Pieces) -> int:
    """Write the pieces with as few writev calls as the kernel allows; the bytes written."""
    views = [memoryview(piece).cast("B") for piece in pieces]
    total = sum(len(view) for view in views)
    while views:
        written = os.writev(fd, views[:IOV_MAX])
        while views and written >= len(views[0]):
            written -= len(views.pop(0))
        if views:
            views[0] = views[0][written:]
    return total
