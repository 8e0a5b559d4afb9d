"""Block storage as operators and a second project use it: services that are disabled or
frozen, user messages, volume transfers between projects, image metadata and snapshot
status actions."""

from __future__ import annotations

from tests.api.conftest import Volumes


def other_project(volumes: Volumes, name: str) -> Volumes:
    cloud, admin = volumes.cloud, volumes.cloud.admin
    project = cloud.create(admin, "project", name=name, domain_id="default")
    cloud.user_with_role(admin, f"{name}-user", project["id"], "member")
    return Volumes(cloud, cloud.token(f"{name}-user", f"{name}-user-pw", project=name),
                   project["id"])  # fmt: skip


def test_a_disabled_volume_service_places_nothing_and_says_why(volumes: Volumes) -> None:
    services = volumes("GET", "/os-services?binary=cinder-volume").json()["services"]
    assert [s["binary"] for s in services] == ["cinder-volume"]
    host = services[0]["host"]
    assert volumes("GET", f"/os-services?host={host.split('@')[0]}").json()["services"]
    off = volumes(
        "PUT",
        "/os-services/disable-log-reason",
        {"host": host, "binary": "cinder-volume", "disabled_reason": "disk swap"},
    )
    assert off.status_code == 200 and off.json()["disabled_reason"] == "disk swap"
    made = volumes("POST", "/volumes", {"volume": {"size": 1}})
    assert made.status_code == 202
    failed = volumes.wait(f"/volumes/{made.json()['volume']['id']}", "volume", "error")
    found = volumes("GET", "/messages", version="3.3").json()["messages"]
    message = next(m for m in found if m["resource_uuid"] == failed["id"])
    assert message["event_id"] == "VOLUME_VOLUME_001_003" and message["message_level"] == "ERROR"
    assert "backend" in message["user_message"]
    assert volumes("GET", f"/messages/{message['id']}", version="3.0").status_code == 404
    deleted = volumes("DELETE", f"/messages/{message['id']}", version="3.3")
    assert deleted.status_code == 204
    on = volumes("PUT", "/os-services/enable", {"host": host, "binary": "cinder-volume"})
    assert on.status_code == 200 and on.json()["status"] == "enabled"
    volumes.create()
    nowhere = volumes(
        "PUT", "/os-services/enable", {"host": "elsewhere", "binary": "cinder-volume"}
    )
    assert nowhere.status_code == 404


def test_a_type_asking_for_what_the_pool_lacks_fails_the_volume(volumes: Volumes) -> None:
    made = volumes("POST", "/types", {"volume_type": {
        "name": "remote", "extra_specs": {"vendor_name": "Nobody Inc"}}})  # fmt: skip
    assert made.status_code == 200
    created = volumes("POST", "/volumes", {"volume": {"size": 1, "volume_type": "remote"}})
    volumes.wait(f"/volumes/{created.json()['volume']['id']}", "volume", "error")
    pools = volumes("GET", "/scheduler-stats/get_pools?detail=true").json()["pools"]
    vendor = pools[0]["capabilities"]["vendor_name"]
    volumes("POST", "/types", {"volume_type": {
        "name": "local", "extra_specs": {"capabilities:vendor_name": vendor}}})  # fmt: skip
    volumes.create(volume_type="local")
    shown = volumes("GET", f"/capabilities/{pools[0]['name'].split('#')[0]}").json()
    assert shown["vendor_name"] == vendor and shown["namespace"].startswith("OS::Storage::")


def test_a_frozen_backend_refuses_management_until_thawed(volumes: Volumes) -> None:
    volume = volumes.create()
    host = volumes("GET", "/os-services?binary=cinder-volume").json()["services"][0]["host"]
    assert volumes("PUT", "/os-services/freeze", {"host": "elsewhere"}).status_code == 400
    assert volumes("PUT", "/os-services/freeze", {"host": host}).status_code == 200
    refused = volumes("DELETE", f"/volumes/{volume['id']}")
    assert refused.status_code == 400 and "thaw" in refused.json()["badRequest"]["message"]
    assert volumes("GET", "/os-services?binary=cinder-volume").json()["services"][0]["frozen"]
    assert volumes("PUT", "/os-services/thaw", {"host": host}).status_code == 200
    assert volumes("DELETE", f"/volumes/{volume['id']}").status_code == 202


def test_hosts_list_services_and_show_usage(volumes: Volumes) -> None:
    volumes.create(size=2)
    listed = volumes("GET", "/os-hosts").json()["hosts"]
    volume_host = next(h["host_name"] for h in listed if h["service"] == "cinder-volume")
    usage = volumes("GET", f"/os-hosts/{volume_host}").json()["host"]
    total = usage[0]["resource"]
    assert total["project"] == "(total)" and (total["volume_count"], total["total_volume_gb"]) == (
        "1", "2")  # fmt: skip
    assert volumes("GET", "/os-hosts/nowhere").status_code == 404


def test_a_transfer_moves_the_volume_and_its_quota(volumes: Volumes) -> None:
    other = other_project(volumes, "receiver")
    volume = volumes.create(size=2)
    volumes("POST", "/snapshots", {"snapshot": {"volume_id": volume["id"]}})
    snapshot = volumes("GET", "/snapshots").json()["snapshots"][0]
    volumes.wait(f"/snapshots/{snapshot['id']}", "snapshot", "available")
    offered = volumes(
        "POST", "/volume-transfers", {"transfer": {"volume_id": volume["id"], "name": " gift "}}
    )
    assert offered.status_code == 202, offered.text
    transfer = offered.json()["transfer"]
    assert transfer["name"] == "gift" and len(transfer["auth_key"]) == 16
    assert volumes("GET", f"/volumes/{volume['id']}").json()["volume"]["status"] == (
        "awaiting-transfer")  # fmt: skip
    shown = volumes("GET", f"/volume-transfers/{transfer['id']}").json()["transfer"]
    assert "auth_key" not in shown and shown["accepted"] is False
    assert volumes("DELETE", f"/volumes/{volume['id']}").status_code == 400
    wrong = other("POST", f"/os-volume-transfer/{transfer['id']}/accept",
                  {"accept": {"auth_key": "0" * 16}})  # fmt: skip
    assert wrong.status_code == 400 and "auth key" in wrong.json()["badRequest"]["message"]
    taken = other("POST", f"/os-volume-transfer/{transfer['id']}/accept",
                  {"accept": {"auth_key": transfer["auth_key"]}})  # fmt: skip
    assert taken.status_code == 202 and taken.json()["transfer"]["volume_id"] == volume["id"]
    mine = other("GET", f"/volumes/{volume['id']}").json()["volume"]
    assert (
        mine["status"] == "available" and mine["os-vol-tenant-attr:tenant_id"] == other.project_id
    )
    assert other("GET", f"/snapshots/{snapshot['id']}").status_code == 200
    usage = other("GET", f"/os-quota-sets/{other.project_id}?usage=true").json()["quota_set"]
    assert usage["volumes"]["in_use"] == 1 and usage["gigabytes"]["in_use"] == 4
    assert volumes("GET", f"/volume-transfers/{transfer['id']}").status_code == 404


def test_a_withdrawn_transfer_frees_the_volume(volumes: Volumes) -> None:
    volume = volumes.create()
    legacy = volumes("POST", "/os-volume-transfer", {"transfer": {
        "volume_id": volume["id"], "no_snapshots": True}})  # fmt: skip
    assert legacy.status_code == 400 and "no_snapshots" in legacy.text
    offered = volumes("POST", "/os-volume-transfer", {"transfer": {"volume_id": volume["id"]}})
    transfer_id = offered.json()["transfer"]["id"]
    listed = volumes("GET", "/os-volume-transfer").json()["transfers"]
    assert [t["id"] for t in listed] == [transfer_id] and "created_at" not in listed[0]
    assert volumes("DELETE", f"/os-volume-transfer/{transfer_id}").status_code == 202
    assert volumes("GET", f"/volumes/{volume['id']}").json()["volume"]["status"] == "available"


def test_image_metadata_readonly_and_snapshot_status_actions(volumes: Volumes) -> None:
    volume = volumes.create()
    action = f"/volumes/{volume['id']}/action"
    set_ = volumes("POST", action, {"os-set_image_metadata": {"metadata": {"kernel_id": "k1"}}})
    assert set_.status_code == 200 and set_.json()["metadata"] == {"kernel_id": "k1"}
    shown = volumes("GET", f"/volumes/{volume['id']}").json()["volume"]
    assert shown["volume_image_metadata"] == {"kernel_id": "k1"}
    unset = volumes("POST", action, {"os-unset_image_metadata": {"key": "kernel_id"}})
    assert unset.status_code == 200
    missing = volumes("POST", action, {"os-unset_image_metadata": {"key": "kernel_id"}})
    assert missing.status_code == 404
    assert volumes("POST", action, {"os-show_image_metadata": None}).json() == {"metadata": {}}
    volumes("POST", action, {"os-update_readonly_flag": {"readonly": True}})
    assert volumes("GET", f"/volumes/{volume['id']}").json()["volume"]["metadata"] == {
        "readonly": "True"}  # fmt: skip
    made = volumes("POST", "/snapshots", {"snapshot": {"volume_id": volume["id"]}})
    snapshot_id = made.json()["snapshot"]["id"]
    volumes.wait(f"/snapshots/{snapshot_id}", "snapshot", "available")
    snap_action = f"/snapshots/{snapshot_id}/action"
    refused = volumes("POST", snap_action, {"os-update_snapshot_status": {"status": "error"}})
    assert refused.status_code == 400 and "available" in refused.text
    volumes("POST", snap_action, {"os-reset_status": {"status": "creating"}})
    moved = volumes("POST", snap_action, {"os-update_snapshot_status": {
        "status": "error", "progress": "80%"}})  # fmt: skip
    assert moved.status_code == 202
    snapshot = volumes("GET", f"/snapshots/{snapshot_id}").json()["snapshot"]
    assert snapshot["status"] == "error"
    assert snapshot["os-extended-snapshot-attributes:progress"] == "80%"
