"""The volume commands of the real `openstack` CLI and openstacksdk against a live
pocketstack: volumes, types, snapshots, clones, extend, quotas."""

from __future__ import annotations

import time
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
