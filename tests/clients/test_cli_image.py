"""The image commands of the real `openstack` CLI against a live pocketstack."""

from __future__ import annotations

import hashlib
from pathlib import Path


def test_image_create_upload_save_set_delete(osc, unique, tmp_path: Path):
    data = bytes(range(256)) * 4096
    source = tmp_path / "disk.raw"
    source.write_bytes(data)
    name = unique("img")
    created = osc(
        "image",
        "create",
        "--file",
        str(source),
        "--disk-format",
        "raw",
        "--container-format",
        "bare",
        "--property",
        "os_distro=busybox",
        name,
        "-f",
        "json",
    ).json()
    assert created["status"] == "active"
    shown = osc("image", "show", name, "-f", "json").json()
    assert shown["checksum"] == hashlib.md5(data).hexdigest()
    assert shown["size"] == len(data)
    assert shown["properties"]["os_distro"] == "busybox"

    saved = tmp_path / "saved.raw"
    osc("image", "save", "--file", str(saved), name)
    assert saved.read_bytes() == data

    osc("image", "set", "--property", "hw_disk_bus=scsi", "--tag", "gold", "--min-ram", "128", name)
    updated = osc("image", "show", name, "-f", "json").json()
    assert updated["properties"]["hw_disk_bus"] == "scsi"
    assert updated["tags"] == ["gold"] and updated["min_ram"] == 128

    listed = osc("image", "list", "-f", "json").json()
    assert name in [row["Name"] for row in listed]
    osc("image", "delete", name)
    assert name not in [row["Name"] for row in osc("image", "list", "-f", "json").json()]
