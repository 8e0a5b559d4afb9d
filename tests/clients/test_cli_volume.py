"""The volume commands of the real `openstack` CLI and openstacksdk against a live
pocketstack: volumes, types, snapshots, clones, extend, quotas."""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path
from typing import Any


def _wait(osc: Any, kind: str, name: str, status: str) -> dict[str, Any]:
    deadline = time.monotonic() + 20
    shown: dict[str, Any] = {}
    while time.monotonic() < deadline:
        shown = osc(kind, "show", name, "-f", "json").json()
        if shown["status"] == status:
            return shown
        time.sleep(0.1)
    raise AssertionError(f"{kind} {name} never became {status}: {shown}")


def test_volume_create_snapshot_clone_extend_delete(osc, unique):
    name, snap, clone = unique("vol"), unique("snap"), unique("clone")
    created = osc("volume", "create", "--size", "1", "--property", "tier=gold", name,
                  "-f", "json").json()  # fmt: skip
    assert created["size"] == 1
    shown = _wait(osc, "volume", name, "available")
    assert shown["type"] == "__DEFAULT__" and shown["properties"] == {"tier": "gold"}

    osc("volume", "snapshot", "create", "--volume", name, snap)
    assert _wait(osc, "volume snapshot", snap, "available")["size"] == 1
    osc("volume", "create", "--snapshot", snap, "--size", "2", clone)
    assert _wait(osc, "volume", clone, "available")["size"] == 2

    osc("volume", "set", "--size", "3", name)
    assert _wait(osc, "volume", name, "available")["size"] == 3
    listed = [row["Name"] for row in osc("volume", "list", "-f", "json").json()]
    assert {name, clone} <= set(listed)

    osc("volume", "delete", clone)
    osc("volume", "delete", "--purge", name)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        left = {row["Name"] for row in osc("volume", "list", "-f", "json").json()}
        if not left & {name, clone}:
            break
        time.sleep(0.1)
    assert not left & {name, clone}


def test_volume_type_and_quota(osc, unique):
    type_name = unique("multi")
    osc("volume", "type", "create", "--property", "multiattach=<is> True", type_name)
    shown = osc("volume", "type", "show", type_name, "-f", "json").json()
    assert shown["properties"] == {"multiattach": "<is> True"}
    name = unique("shared")
    osc("volume", "create", "--size", "1", "--type", type_name, name)
    assert _wait(osc, "volume", name, "available")["multiattach"] is True
    quota = osc("quota", "show", "--volume", "-f", "json").json()
    limits = {row["Resource"]: row["Limit"] for row in quota}
    assert limits["volumes"] == 10 and limits["gigabytes"] == 1000
    osc("volume", "delete", name)


def test_sdk_lists_volumes(sdk_admin, unique):
    volume = sdk_admin.block_storage.create_volume(size=1, name=unique("sdkvol"))
    sdk_admin.block_storage.wait_for_status(volume, "available", wait=20)
    assert volume.id in [v.id for v in sdk_admin.block_storage.volumes()]
    sdk_admin.block_storage.delete_volume(volume)
    sdk_admin.block_storage.wait_for_delete(volume, wait=20)


def _volume_file(cloud: Any, volume_id: str) -> Path:
    return Path(cloud.state_dir) / "volume" / "file" / "volumes" / f"volume-{volume_id}.raw"


def _digest(path: Path) -> str:
    with path.open("rb") as data:
        return hashlib.file_digest(data, "sha256").hexdigest()


def _repository_bytes(cloud: Any) -> int:
    chunks = Path(cloud.state_dir) / "volume" / "backups" / "chunks"
    return sum(p.stat().st_size for p in chunks.glob("*/*.zst"))


def test_backup_incremental_and_volume_from_backup(osc, cloud, unique):
    """Full backup; 1% more written; an incremental backup grows the repository by about
    that much; `volume create --backup` gives the bytes of the volume at backup time."""
    name = unique("bk")
    volume_id = osc("volume", "create", "--size", "1", name, "-f", "json").json()["id"]
    _wait(osc, "volume", name, "available")
    path = _volume_file(cloud, volume_id)
    with path.open("r+b") as disk:
        for offset in range(0, 64 << 20, 16 << 20):
            disk.seek(offset)
            disk.write(os.urandom(8 << 20))
    start = _repository_bytes(cloud)
    full = osc("volume", "backup", "create", "--name", unique("full"), name, "-f", "json").json()
    _wait(osc, "volume backup", full["id"], "available")
    after_full = _repository_bytes(cloud)
    assert after_full - start >= 32 << 20

    with path.open("r+b") as disk:
        disk.seek(512 << 20)
        disk.write(os.urandom(10 << 20))  # 1% of the volume
    changed = _digest(path)
    incremental = osc("volume", "backup", "create", "--incremental", "--name", unique("inc"),
                      name, "-f", "json").json()  # fmt: skip
    shown = _wait(osc, "volume backup", incremental["id"], "available")
    assert shown["is_incremental"] is True
    growth = _repository_bytes(cloud) - after_full
    assert (10 << 20) <= growth < (13 << 20), growth

    restored = unique("restored")
    osc("volume", "create", "--backup", incremental["id"], restored)
    restored_id = _wait(osc, "volume", restored, "available")["id"]
    assert _digest(_volume_file(cloud, restored_id)) == changed

    osc("volume", "backup", "delete", incremental["id"])
    _wait_gone(osc, "volume backup", incremental["id"])
    osc("volume", "backup", "delete", full["id"])
    _wait_gone(osc, "volume backup", full["id"])
    osc("volume", "delete", name, restored)


def _wait_gone(osc: Any, kind: str, name: str) -> None:
    deadline = time.monotonic() + 20
    while osc(*kind.split(), "show", name, check=False).returncode == 0:
        assert time.monotonic() < deadline, f"{kind} {name} stayed"
        time.sleep(0.1)


def test_image_create_from_a_volume(osc, unique):
    name, image = unique("tobe-image"), unique("from-volume")
    osc("volume", "create", "--size", "1", name)
    _wait(osc, "volume", name, "available")
    osc("image", "create", "--volume", name, image)
    deadline = time.monotonic() + 30
    while osc("image", "show", image, "-f", "json").json()["status"] != "active":
        assert time.monotonic() < deadline, "the image from the volume never became active"
        time.sleep(0.2)
    _wait(osc, "volume", name, "available")
    osc("image", "delete", image)
    osc("volume", "delete", name)


def test_transfer_request_moves_a_volume_to_another_project(osc, make_account, unique):
    name = unique("gift")
    osc("volume", "create", "--size", "1", name)
    _wait(osc, "volume", name, "available")
    request = osc("volume", "transfer", "request", "create", "--name", unique("offer"), name,
                  "-f", "json").json()  # fmt: skip
    assert request["auth_key"] and _wait(osc, "volume", name, "awaiting-transfer")
    receiver = make_account()
    accepted = osc("volume", "transfer", "request", "accept", "--auth-key", request["auth_key"],
                   request["id"], "-f", "json", env=receiver.os_env()).json()  # fmt: skip
    assert accepted["volume_id"] == request["volume_id"]
    mine = osc("volume", "show", request["volume_id"], "-f", "json", env=receiver.os_env()).json()
    assert mine["status"] == "available"
    assert name not in {row["Name"] for row in osc("volume", "list", "-f", "json").json()}
    osc("volume", "delete", request["volume_id"], env=receiver.os_env())


def test_qos_specs_and_volume_groups(osc, unique):
    qos, volume_type = unique("qos"), unique("vtype")
    osc("volume", "qos", "create", "--consumer", "front-end", "--property", "read_iops_sec=500",
        qos)  # fmt: skip
    osc("volume", "type", "create", volume_type)
    osc("volume", "qos", "associate", qos, volume_type)
    shown = osc("volume", "qos", "show", qos, "-f", "json").json()
    assert shown["properties"] == {"read_iops_sec": "500"}
    assert [a for a in shown["associations"] if volume_type in str(a)]
    group_type, group = unique("gtype"), unique("group")
    mv = ("--os-volume-api-version", "3.14")
    osc(*mv, "volume", "group", "type", "create", group_type)
    made = osc(*mv, "volume", "group", "create", "--volume-group-type", group_type,
               "--volume-type", volume_type, "--name", group, "-f", "json").json()  # fmt: skip
    assert made["Status"] == "available" and made["Name"] == group
    listed = osc(*mv, "volume", "group", "list", "-f", "json").json()
    assert group in {row["Name"] for row in listed}
    osc(*mv, "volume", "group", "delete", group)
    osc(*mv, "volume", "group", "type", "delete", group_type)
    osc("volume", "qos", "disassociate", "--volume-type", volume_type, qos)
    osc("volume", "qos", "delete", qos)
    osc("volume", "type", "delete", volume_type)
