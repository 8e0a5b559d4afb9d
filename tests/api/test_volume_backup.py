"""Volume backups on the file backend and the directory repository: full and incremental
backups store only chunks they lack, restores give back the same bytes (and refuse a
damaged chunk), and the API's rules (force for in-use volumes, no delete under an
incremental) hold."""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path
from typing import Any

import zstandard

from pocketstack.volume import backup_engine
from tests.api.conftest import Cloud, Volumes
from tests.api.test_volume import _file

MIB = 1 << 20



def _repository(cloud: Cloud) -> Path:
    return cloud.runtime.settings.state_dir / "volume" / "backups"


def _stored_bytes(cloud: Cloud) -> int:
    return sum(p.stat().st_size for p in (_repository(cloud) / "chunks").glob("*/*.zst"))


def _digest(path: Path) -> str:
    with path.open("rb") as data:
        return hashlib.file_digest(data, "sha256").hexdigest()


def _backup(volumes: Volumes, volume_id: str, **fields: Any) -> dict[str, Any]:
    made = volumes("POST", "/backups", {"backup": {"volume_id": volume_id, **fields}})
    assert made.status_code == 202, made.text
    assert set(made.json()["backup"]) == {"id", "name", "links"}
    return volumes.wait(f"/backups/{made.json()['backup']['id']}", "backup", "available")


def test_full_and_incremental_backups_and_restores(volumes: Volumes) -> None:
    volume = volumes.create(name="data")
    path = _file(volumes.cloud, volume["id"])
    with path.open("r+b") as disk:  # 24 MiB of random data among zeros
        for offset in range(0, 48 * MIB, 8 * MIB):
            disk.seek(offset)
            disk.write(os.urandom(4 * MIB))
    before = _digest(path)

    full = _backup(volumes, volume["id"], name="full")
    assert volumes("GET", f"/volumes/{volume['id']}").json()["volume"]["status"] == "available"
    assert full["is_incremental"] is False and full["object_count"] == 256
    after_full = _stored_bytes(volumes.cloud)
    assert 24 * MIB <= after_full < 25 * MIB  # random data does not compress; zeros not kept

    with path.open("r+b") as disk:  # change 1% of the volume (10 MiB of 1 GiB)
        disk.seek(600 * MIB)
        disk.write(os.urandom(10 * MIB))
    changed = _digest(path)
    incremental = _backup(volumes, volume["id"], name="incr", incremental=True)
    assert incremental["is_incremental"] is True
    growth = _stored_bytes(volumes.cloud) - after_full
    assert 10 * MIB <= growth < 13 * MIB, growth
    shown = volumes("GET", f"/backups/{full['id']}").json()["backup"]
    assert shown["has_dependent_backups"] is True
    refused = volumes("DELETE", f"/backups/{full['id']}")
    assert refused.status_code == 400 and "Incremental backups exist" in refused.text

    made = volumes("POST", "/volumes", {"volume": {"backup_id": incremental["id"]}})
    assert made.status_code == 202, made.text
    assert made.json()["volume"]["status"] == "restoring-backup"
    restored = volumes.wait(f"/volumes/{made.json()['volume']['id']}", "volume", "available")
    assert restored["size"] == 1
    assert _digest(_file(volumes.cloud, restored["id"])) == changed

    answer = volumes("POST", f"/backups/{full['id']}/restore",
                     {"restore": {"volume_id": restored["id"]}})  # fmt: skip
    assert answer.status_code == 202, answer.text
    assert answer.json()["restore"]["volume_id"] == restored["id"]
    volumes.wait(f"/volumes/{restored['id']}", "volume", "available")
    volumes.wait(f"/backups/{full['id']}", "backup", "available")
    assert _digest(_file(volumes.cloud, restored["id"])) == before

    usage = volumes("GET", f"/os-quota-sets/{volumes.project_id}?usage=True").json()
    assert usage["quota_set"]["backups"]["in_use"] == 2

    for backup_id in (incremental["id"], full["id"]):
        assert volumes("DELETE", f"/backups/{backup_id}").status_code == 202
        volumes.wait(f"/backups/{backup_id}", "backup", "gone")
    assert _stored_bytes(volumes.cloud) == 0


def test_a_damaged_chunk_fails_the_restore(volumes: Volumes) -> None:
    volume = volumes.create()
    with _file(volumes.cloud, volume["id"]).open("r+b") as disk:
        disk.write(os.urandom(backup_engine.CHUNK_BYTES))
    backup = _backup(volumes, volume["id"])
    (chunk,) = (_repository(volumes.cloud) / "chunks").glob("*/*.zst")
    chunk.write_bytes(zstandard.ZstdCompressor().compress(b"not what was backed up"))
    made = volumes("POST", "/volumes", {"volume": {"backup_id": backup["id"]}})
    volumes.wait(f"/volumes/{made.json()['volume']['id']}", "volume", "error_restoring")
    assert volumes("GET", f"/backups/{backup['id']}").json()["backup"]["status"] == "available"


def test_backup_requests_checked_as_cinder_checks_them(volumes: Volumes) -> None:
    volume = volumes.create()
    refused = volumes("POST", "/backups", {"backup": {"volume_id": volume["id"],
                                                      "incremental": True}})  # fmt: skip
    assert refused.status_code == 400 and "incremental" in refused.text
    assert volumes("POST", "/backups", {"backup": {}}).status_code == 400
    missing = volumes("POST", "/backups", {"backup": {"volume_id": "no-such-volume"}})
    assert missing.status_code == 404
    volumes("POST", f"/volumes/{volume['id']}/action", {"os-reserve": None})
    volumes("POST", f"/volumes/{volume['id']}/action", {
        "os-attach": {"instance_uuid": "8f0e1d8a-0000-4000-8000-000000000001",
                      "mountpoint": "/dev/vdb"}})  # fmt: skip
    in_use = volumes("POST", "/backups", {"backup": {"volume_id": volume["id"]}})
    assert in_use.status_code == 400 and "force" in in_use.text
    forced = _backup(volumes, volume["id"], force=True)
    assert volumes("GET", f"/volumes/{volume['id']}").json()["volume"]["status"] == "in-use"
    listed = volumes("GET", "/backups").json()
    assert list(listed) == ["backups"] and listed["backups"][0]["id"] == forced["id"]
    deadline = time.monotonic() + 5
    snapshots = volumes.cloud.runtime.settings.state_dir / "volume" / "file" / "snapshots"
    while list(snapshots.glob("*")) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert list(snapshots.glob("*")) == [], "the temporary snapshot stayed"
