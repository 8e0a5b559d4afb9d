"""What a real driver remembers about each guest, on disk beside the guest.

Every guest has a directory named after its server id under the driver's work
dir, holding `guest.json` (the record) and whatever the driver made for it
(overlay layers, disks, console log, pid files). A restarted agent reads these
to find its guests again; a directory whose server is gone is an orphan. The
records are read once and kept in memory: only this driver writes them.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar

from pocketstack.compute.drivers import SHUTDOWN, DriverError, Guest, Size

RECORD_FILE = "guest.json"


class GuestFacts(Protocol):
    """What every driver's record says about its guest (frozen dataclasses)."""

    @property
    def image_ref(self) -> str: ...

    @property
    def boot_serial(self) -> int: ...

    @property
    def rescued(self) -> bool: ...

    @property
    def size(self) -> Size: ...

    @property
    def disks(self) -> tuple[dict[str, Any], ...]:
        """The volumes attached (drivers.Disk fields), connected at every boot."""
        ...


Record = TypeVar("Record", bound=GuestFacts)


class GuestRecords(Generic[Record]):
    def __init__(self, root: Path, kind: type[Record], what: str = "guest") -> None:
        """`what` names a guest in errors ("VM")."""
        self.root = root
        self.kind = kind
        self.what = what
        self._cache = {uuid: record for uuid in self.uuids() if (record := self._load(uuid))}

    def dir(self, uuid: str) -> Path:
        return self.root / uuid

    def _load(self, uuid: str) -> Record | None:
        try:
            saved: dict[str, Any] = json.loads((self.dir(uuid) / RECORD_FILE).read_text())
        except (OSError, ValueError):
            return None
        return self.kind(**saved)

    def get(self, uuid: str) -> Record | None:
        return self._cache.get(uuid)

    def require(self, uuid: str, host: str) -> Record:
        record = self._cache.get(uuid)
        if record is None:
            raise DriverError(f"server {uuid} has no {self.what} on host {host}")
        return record

    def save(self, uuid: str, record: Record) -> None:
        """Write the record whole (a crash leaves the old one or the new one)."""
        directory = self.dir(uuid)
        directory.mkdir(parents=True, exist_ok=True)
        partial = directory / f"{RECORD_FILE}.tmp"
        partial.write_text(json.dumps(dataclasses.asdict(record)))  # type: ignore[call-overload]
        partial.replace(directory / RECORD_FILE)
        self._cache[uuid] = record

    def update(self, uuid: str, host: str, **changes: object) -> Record:
        record: Record = dataclasses.replace(self.require(uuid, host), **changes)  # type: ignore[type-var]
        self.save(uuid, record)
        return record

    def uuids(self) -> list[str]:
        """Every guest directory, with a record or not."""
        if not self.root.is_dir():
            return []
        return sorted(entry.name for entry in self.root.iterdir() if entry.is_dir())

    def sharing(self, uuid: str, disk: dict[str, Any]) -> bool:
        """Does another guest here have the same volume file attached the same way?"""
        return any(
            other_uuid != uuid
            and any((d["path"], d["read_only"]) == (disk["path"], disk["read_only"])
                    for d in other.disks)
            for other_uuid, other in self._cache.items()
        )  # fmt: skip

    def remove(self, uuid: str) -> None:
        shutil.rmtree(self.dir(uuid), ignore_errors=True)
        self._cache.pop(uuid, None)

    def guests(self, power: Callable[[str, Record], int]) -> dict[str, Guest]:
        """What the driver has, `power` telling each guest's power state. A directory
        without a record (a crash cut a spawn or a delete short) shows as a SHUTDOWN guest,
        so the agent's orphan check removes what is left of it."""
        found = {
            uuid: Guest(uuid, power(uuid, record), record.image_ref, record.size,
                        record.boot_serial, record.rescued,
                        frozenset(disk["volume_id"] for disk in record.disks))
            for uuid, record in list(self._cache.items())
        }  # fmt: skip
        for uuid in set(self.uuids()) - found.keys():
            found[uuid] = Guest(uuid, SHUTDOWN, "", Size(0, 0, 0), 0, False)
        return found
