"""Volume groups as Cinder clients use them (3.11-3.20): group types and their specs,
groups of volumes, group snapshots taken together, and groups made again from both."""

from __future__ import annotations

from tests.api.conftest import Volumes
from tests.api.test_volume_operations import other_project


def _setup(volumes: Volumes) -> tuple[str, str, str]:
    volume_type = volumes("POST", "/types", {"volume_type": {"name": "grouped"}}).json()
    made = volumes("POST", "/group_types", {"group_type": {
        "name": "consistent", "group_specs": {"consistent_group_snapshot_enabled": "<is> True"}}},
        version="3.11")  # fmt: skip
    assert made.status_code == 202, made.text
    group_type = made.json()["group_type"]
    created = volumes("POST", "/groups", {"group": {
        "name": "db", "group_type": group_type["id"],
        "volume_types": [volume_type["volume_type"]["id"]]}}, version="3.13")  # fmt: skip
    assert created.status_code == 202, created.text
    return volume_type["volume_type"]["id"], group_type["id"], created.json()["group"]["id"]


def test_group_types_and_specs(volumes: Volumes) -> None:
    assert volumes("GET", "/group_types", version="3.10").status_code == 404
    _, group_type_id, _ = _setup(volumes)
    again = volumes("POST", "/group_types", {"group_type": {"name": "consistent"}},
                    version="3.11")  # fmt: skip
    assert again.status_code == 409
    specs = f"/group_types/{group_type_id}/group_specs"
    added = volumes("POST", specs, {"group_specs": {"tier": "gold"}}, version="3.11")
    assert added.status_code == 202 and added.json() == {"group_specs": {"tier": "gold"}}
    assert volumes("GET", f"{specs}/tier", version="3.11").json() == {"tier": "gold"}
    mismatch = volumes("PUT", f"{specs}/tier", {"other": "x"}, version="3.11")
    assert mismatch.status_code == 400
    assert volumes("DELETE", f"{specs}/tier", version="3.11").status_code == 202
    assert volumes("GET", f"{specs}/tier", version="3.11").status_code == 404
    renamed = volumes("PUT", f"/group_types/{group_type_id}",
                      {"group_type": {"name": "renamed"}}, version="3.11")  # fmt: skip
    assert renamed.json()["group_type"]["name"] == "renamed"
    in_use = volumes("DELETE", f"/group_types/{group_type_id}", version="3.11")
    assert in_use.status_code == 400


def test_group_volumes_snapshots_and_copies(volumes: Volumes) -> None:
    type_id, _, group_id = _setup(volumes)
    shown = volumes("GET", f"/groups/{group_id}", version="3.14").json()["group"]
    assert shown["status"] == "available" and shown["volume_types"] == [type_id]
    other_type = volumes("POST", "/volumes", {"volume": {"size": 1, "group_id": group_id}},
                         version="3.13")  # fmt: skip
    assert other_type.status_code == 400 and "types of group" in other_type.text
    members = [volumes.create(volume_type=type_id, group_id=group_id)["id"] for _ in range(2)]
    assert volumes("DELETE", f"/volumes/{members[0]}").status_code == 400
    listed = volumes("GET", f"/groups/{group_id}?list_volume=true", version="3.25").json()
    assert sorted(listed["group"]["volumes"]) == sorted(members)
    removed = volumes("PUT", f"/groups/{group_id}", {"group": {"remove_volumes": members[1]}},
                      version="3.13")  # fmt: skip
    assert removed.status_code == 202
    assert volumes("GET", f"/volumes/{members[1]}").json()["volume"].get("group_id") is None
    volumes("PUT", f"/groups/{group_id}", {"group": {"add_volumes": members[1]}}, version="3.13")
    taken = volumes("POST", "/group_snapshots", {"group_snapshot": {"group_id": group_id}},
                    version="3.14")  # fmt: skip
    assert taken.status_code == 202, taken.text
    snapshot_id = taken.json()["group_snapshot"]["id"]
    volumes.wait(f"/group_snapshots/{snapshot_id}", "group_snapshot", "available")
    snapshots = volumes("GET", "/snapshots/detail").json()["snapshots"]
    assert sorted(s["volume_id"] for s in snapshots) == sorted(members)
    copy = volumes("POST", "/groups/action", {"create-from-src": {
        "group_snapshot_id": snapshot_id, "name": "restored"}}, version="3.14")  # fmt: skip
    assert copy.status_code == 202, copy.text
    copy_id = copy.json()["group"]["id"]
    restored = volumes.wait(f"/groups/{copy_id}", "group", "available")
    assert restored["group_snapshot_id"] == snapshot_id
    blocked = volumes("POST", f"/groups/{group_id}/action", {"delete": {}}, version="3.13")
    assert blocked.status_code == 400
    assert volumes("DELETE", f"/group_snapshots/{snapshot_id}", version="3.14").status_code == 202
    for snapshot in snapshots:
        volumes.wait(f"/snapshots/{snapshot['id']}", "snapshot", "gone")
    for target in (group_id, copy_id):
        deleted = volumes("POST", f"/groups/{target}/action",
                          {"delete": {"delete-volumes": True}}, version="3.13")  # fmt: skip
        assert deleted.status_code == 202, deleted.text
    for volume_id in members:
        volumes.wait(f"/volumes/{volume_id}", "volume", "gone")
    assert volumes("GET", "/groups/detail", version="3.13").json() == {"groups": []}


def test_group_status_resets_are_for_admins_and_checked(volumes: Volumes) -> None:
    _, _, group_id = _setup(volumes)
    action = f"/groups/{group_id}/action"
    assert volumes("POST", action, {"reset_status": {"status": "error"}},
                   version="3.19").status_code == 400  # fmt: skip
    bad = volumes("POST", action, {"reset_status": {"status": "in-use"}}, version="3.20")
    assert bad.status_code == 400
    assert volumes("POST", action, {"reset_status": {"status": "error"}},
                   version="3.20").status_code == 202  # fmt: skip
    assert volumes("GET", f"/groups/{group_id}", version="3.20").json()["group"]["status"] == (
        "error")  # fmt: skip


def test_a_project_member_makes_groups_of_its_own(volumes: Volumes) -> None:
    type_id, group_type_id, _ = _setup(volumes)
    member = other_project(volumes, "grouper")
    made = member("POST", "/groups", {"group": {
        "name": "mine", "group_type": group_type_id, "volume_types": [type_id]}},
        version="3.13")  # fmt: skip
    assert made.status_code == 202, made.text
    listed = member("GET", "/groups", version="3.13").json()["groups"]
    assert [g["name"] for g in listed] == ["mine"]
    kinds = member("GET", "/group_types", version="3.11").json()["group_types"]
    assert kinds and "group_specs" not in kinds[0]
    refused = member("POST", "/group_types", {"group_type": {"name": "x"}}, version="3.11")
    assert refused.status_code == 403
