"""clouds.yaml: our entry is added or replaced, the user's other clouds are kept."""

from pathlib import Path

import pytest
import yaml

from pocketstack import clouds


def test_merge_keeps_other_clouds_and_replaces_ours(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    user_file = tmp_path / "home" / ".config" / "openstack" / "clouds.yaml"
    user_file.parent.mkdir(parents=True)
    user_file.write_text(
        yaml.safe_dump(
            {"clouds": {"work": {"auth": {"auth_url": "x"}}, "pocketstack": {"stale": True}}}
        )
    )
    written = clouds.write(
        tmp_path / "state",
        "http://127.0.0.1:1/identity/v3",
        "pw",
        "RegionOne",
        merge_user_file=True,
    )
    assert written == [tmp_path / "state" / "clouds.yaml", user_file]
    merged = yaml.safe_load(user_file.read_text())["clouds"]
    assert merged["work"] == {"auth": {"auth_url": "x"}}
    assert merged["pocketstack"]["auth"]["password"] == "pw"
    assert "stale" not in merged["pocketstack"]
    assert user_file.stat().st_mode & 0o077 == 0


def test_state_dir_only_when_asked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    (tmp_path / "state").mkdir()
    written = clouds.write(
        tmp_path / "state", "http://x/identity/v3", "pw", "RegionOne", merge_user_file=False
    )
    assert written == [tmp_path / "state" / "clouds.yaml"]
    assert not (tmp_path / "home").exists()
