"""Image bytes: one file per image under the state dir, written whole or not at all.

An upload streams into a temporary file next to its destination while the
checksums are computed; only a complete upload is renamed into place, so a
broken connection or a killed process never leaves a partial image where a
download (or a server boot) could find it.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

CHUNK = 1 << 16
HASH_ALGO = "sha512"


@dataclass(frozen=True, slots=True)
class Stored:
    size: int
    checksum: str  # md5, as Glance's legacy `checksum`
    hash_value: str  # HASH_ALGO, Glance's `os_hash_value`


class ImageStore:
    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, image_id: str) -> Path:
        return self.root / image_id

    def begin(self, image_id: str) -> Upload:
        self.root.mkdir(parents=True, exist_ok=True)
        return Upload(self.path(image_id))

    def exists(self, image_id: str) -> bool:
        return self.path(image_id).exists()

    def read(self, image_id: str) -> Iterator[bytes]:
        with self.path(image_id).open("rb") as data:
            while chunk := data.read(CHUNK):
                yield chunk

    def uploading(self, image_id: str) -> bool:
        """Is some live process writing this image's bytes?"""
        return any(self.root.glob(f"{image_id}.part-*"))

    def remove_abandoned_uploads(self) -> set[str]:
        """Delete partial files of processes that are gone; the ids of their images."""
        abandoned = set()
        for partial in self.root.glob("*.part-*"):
            image_id, _, owner = partial.name.partition(".part-")
            if not _alive(int(owner.split("-")[0])):
                partial.unlink(missing_ok=True)
                abandoned.add(image_id)
        return abandoned

    def delete(self, image_id: str) -> None:
        self.path(image_id).unlink(missing_ok=True)
        for leftover in self.root.glob(f"{image_id}.part-*"):
            leftover.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Upload:
    """One upload in progress: `write` chunks, then `commit` (or `abort`)."""

    def __init__(self, final: Path) -> None:
        self.final = final
        self.partial = final.with_name(f"{final.name}.part-{os.getpid()}-{id(self)}")
        self._file = self.partial.open("wb")
        self._md5 = hashlib.md5(usedforsecurity=False)
        self._hash = hashlib.new(HASH_ALGO)
        self.size = 0

    def write(self, chunk: bytes) -> None:
        self._file.write(chunk)
        self._md5.update(chunk)
        self._hash.update(chunk)
        self.size += len(chunk)

    def commit(self) -> Stored:
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        os.replace(self.partial, self.final)
        return Stored(self.size, self._md5.hexdigest(), self._hash.hexdigest())

    def abort(self) -> None:
        self._file.close()
        self.partial.unlink(missing_ok=True)
