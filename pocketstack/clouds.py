"""clouds.yaml: the file every OpenStack client reads, so `OS_CLOUD=pocketstack` just works."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

CLOUD_NAME = "pocketstack"


def entry(auth_url: str, password: str, region: str) -> dict[str, Any]:
    return {
        "auth": {
            "auth_url": auth_url,
            "username": "admin",
            "password": password,
            "project_name": "admin",
            "user_domain_name": "Default",
            "project_domain_name": "Default",
        },
        "region_name": region,
        "interface": "public",
        "identity_api_version": 3,
    }


def _merge(path: Path, cloud: dict[str, Any]) -> None:
    """Replace only our entry, keeping every other cloud the user has."""
    data: dict[str, Any] = {}
    if path.exists():
        loaded = yaml.safe_load(path.read_text()) or {}
        if isinstance(loaded, dict):
            data = loaded
    clouds = data.get("clouds")
    if not isinstance(clouds, dict):
        clouds = {}
    clouds[CLOUD_NAME] = cloud
    data["clouds"] = clouds
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        yaml.safe_dump(data, handle, default_flow_style=False, sort_keys=False)
    tmp.replace(path)


def write(
    state_dir: Path, auth_url: str, password: str, region: str, merge_user_file: bool
) -> list[Path]:
    """Write <state_dir>/clouds.yaml and, unless disabled, merge into the user's; returns paths."""
    cloud = entry(auth_url, password, region)
    written = [state_dir / "clouds.yaml"]
    _merge(written[0], cloud)
    if merge_user_file:
        user_file = Path("~/.config/openstack/clouds.yaml").expanduser()
        _merge(user_file, cloud)
        written.append(user_file)
    return written
