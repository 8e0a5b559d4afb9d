"""Replication of the file backend: volumes of a replication_enabled type are mirrored to
the secondary site; `pocketstack manage volume failover` serves them from there (the
running cloud sees it at once, no database edit), `failback` brings the changes home."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from tests.api.conftest import Volumes

MIB = 1 << 20



def _site(volumes: Volumes, site: str, volume_id: str) -> Path:
    folder = "file" if site == "primary" else "file-replica"
    state = volumes.cloud.runtime.settings.state_dir
    return state / "volume" / folder / "volumes" / f"volume-{volume_id}.raw"


def _digest(path: Path) -> str:
    with path.open("rb") as data:
        return hashlib.file_digest(data, "sha256").hexdigest()


def _same_soon(first: Path, second: Path) -> None:
    deadline = time.monotonic() + 15
    while not (second.exists() and _digest(first) == _digest(second)):
        assert time.monotonic() < deadline, f"{second} never caught up with {first}"
        time.sleep(0.2)


def _manage(volumes: Volumes, verb: str) -> str:
    state = volumes.cloud.runtime.settings.state_dir
    done = subprocess.run(
        [sys.executable, "-m", "pocketstack.cli", "manage", "volume", verb, "--state-dir",
         str(state)], capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout


def _backend_service(volumes: Volumes) -> dict[str, Any]:
    listed = volumes("GET", "/os-services").json()["services"]
    return next(s for s in listed if s["binary"] == "cinder-volume")


def _write(path: Path, offset: int, data: bytes) -> None:
    with path.open("r+b") as disk:
        disk.seek(offset)
        disk.write(data)


def test_failover_and_failback_keep_a_replicated_volumes_data(volumes: Volumes) -> None:
    made = volumes("POST", "/types", {"volume_type": {
        "name": "replicated", "extra_specs": {"replication_enabled": "<is> True"}}})  # fmt: skip
    assert made.status_code == 200, made.text
    replicated = volumes.create(volume_type="replicated")
    plain = volumes.create()
    assert replicated["replication_status"] == "enabled"
    primary = _site(volumes, "primary", replicated["id"])
    _write(primary, 100 * MIB, os.urandom(8 * MIB))
    secondary = _site(volumes, "secondary", replicated["id"])
    _same_soon(primary, secondary)
    before_failover = _digest(primary)
    assert not _site(volumes, "secondary", plain["id"]).exists()

    assert "failed over" in _manage(volumes, "failover")
    service = _backend_service(volumes)
    assert (service["replication_status"], service["active_backend_id"]) == (
        "failed-over", "secondary"
    )
    connection = volumes("POST", f"/volumes/{replicated['id']}/action",
                         {"os-initialize_connection": {"connector": {"host": "h"}}})  # fmt: skip
    served = Path(connection.json()["connection_info"]["data"]["device_path"])
    assert served == secondary and _digest(served) == before_failover
    volumes.wait(f"/volumes/{plain['id']}", "volume", "error")  # no copy of it there
    assert volumes("GET", f"/volumes/{replicated['id']}").json()["volume"][
        "replication_status"] == "failed-over"  # fmt: skip
    _write(secondary, 300 * MIB, os.urandom(4 * MIB))  # written while failed over
    while_failed_over = _digest(secondary)

    assert "1 replicas copied" in _manage(volumes, "failback")
    assert _backend_service(volumes)["replication_status"] == "enabled"
    assert _digest(primary) == while_failed_over
    connection = volumes("POST", f"/volumes/{replicated['id']}/action",
                         {"os-initialize_connection": {"connector": {"host": "h"}}})  # fmt: skip
    assert Path(connection.json()["connection_info"]["data"]["device_path"]) == primary
    assert volumes.wait(f"/volumes/{plain['id']}", "volume", "available")
    assert volumes("GET", f"/volumes/{replicated['id']}").json()["volume"][
        "replication_status"] == "enabled"  # fmt: skip
