"""What a real driver remembers about each guest, on disk beside the guest.

Every guest has a directory named after its server id under the driver's work
dir, holding `guest.json` (the record) and whatever the driver made for it
(overlay layers, disks, console log, pid files). A restarted agent reads these
to find its guests again; a directory whose server is gone is an orphan.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path
from typing import Any, Generic, TypeVar

Record = TypeVar("Record")

RECORD_FILE = "guest.json"


class GuestRecords(Generic[Record]):
    def __init__(self, root: Path, kind: type[Record]) -> None:
        self.root = root
        self.kind = kind

    def dir(self, uuid: str) -> Path:
        return self.root / uuid

    def load(self, uuid: str) -> Record | None:
        try:
            saved: dict[str, Any] = json.loads((self.dir(uuid) / RECORD_FILE).read_text())
        except (OSError, ValueError):
            return None
        return self.kind(**saved)

    def save(self, uuid: str, record: Record) -> None:
        """Write the record whole (a crash leaves the old one or the new one)."""
        directory = self.dir(uuid)
        directory.mkdir(parents=True, exist_ok=True)
        partial = directory / f"{RECORD_FILE}.tmp"
        partial.write_text(json.dumps(dataclasses.asdict(record)))  # type: ignore[call-overload]
        partial.replace(directory / RECORD_FILE)

    def uuids(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(entry.name for entry in self.root.iterdir() if entry.is_dir())

    def remove(self, uuid: str) -> None:
        shutil.rmtree(self.dir(uuid), ignore_errors=True)
