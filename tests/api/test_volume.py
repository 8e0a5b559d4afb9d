"""The block storage service as Cinder v3 clients use it: volumes, types, snapshots,
quotas, errors; the agent runs with the file backend, so volumes are real sparse files."""

from __future__ import annotations

import os
from pathlib import Path

from tests.api.conftest import Cloud, Volumes

LATEST = {"OpenStack-API-Version": "volume 3.71"}
GIB = 1 << 30


def _file(cloud: Cloud, volume_id: str) -> Path:
    folder = cloud.runtime.settings.state_dir / "volume" / "file" / "volumes"
    return folder / f"volume-{volume_id}.raw"


def test_version_documents(volumes: Volumes) -> None:
    client = volumes.cloud.client
    root = client.get("/volume/")
    assert root.status_code == 300
    version = client.get("/volume/v3/").json()["versions"][0]
    assert (version["id"], version["version"], version["min_version"]) == ("v3.0", "3.71", "3.0")
    too_new = volumes("GET", "/volumes", version="3.99")
    assert too_new.status_code == 406


def test_volume_lifecycle_is_a_sparse_file(volumes: Volumes) -> None:
    volume = volumes.create(name="data", metadata={"purpose": "test"})
    path = _file(volumes.cloud, volume["id"])
    assert path.stat().st_size == GIB and path.stat().st_blocks == 0
    assert volume["volume_type"] == "__DEFAULT__" and volume["bootable"] == "false"
    assert volume["volume_type_id"] and volume["consumes_quota"] is True
    old = volumes("GET", f"/volumes/{volume['id']}", version="3.0").json()["volume"]
    assert "volume_type_id" not in old and "group_id" not in old

    listed = volumes("GET", "/volumes?with_count=true&name=data").json()
    assert listed["count"] == 1 and listed["volumes"][0]["id"] == volume["id"]
    filtered = volumes("GET", '/volumes/detail?metadata={"purpose":"other"}').json()
    assert filtered["volumes"] == []

    renamed = volumes("PUT", f"/volumes/{volume['id']}", {"volume": {"name": "renamed"}})
    assert renamed.json()["volume"]["name"] == "renamed"

    extend = volumes("POST", f"/volumes/{volume['id']}/action", {"os-extend": {"new_size": 2}})
    assert extend.status_code == 202
    extended = volumes.wait(f"/volumes/{volume['id']}", "volume", "available")
    assert extended["size"] == 2 and path.stat().st_size == 2 * GIB
    shrink = volumes("POST", f"/volumes/{volume['id']}/action", {"os-extend": {"new_size": 1}})
    assert shrink.status_code == 400 and "greater than current size" in shrink.text

    assert volumes("DELETE", f"/volumes/{volume['id']}").status_code == 202
    volumes.wait(f"/volumes/{volume['id']}", "volume", "gone")
    assert not path.exists()


def test_snapshot_and_clones_keep_the_data(volumes: Volumes) -> None:
    source = volumes.create()
    with _file(volumes.cloud, source["id"]).open("r+b") as raw:
        raw.seek(GIB // 2)
        raw.write(b"pocketstack-block")
    made = volumes("POST", "/snapshots", {"snapshot": {"volume_id": source["id"], "name": "s"}})
    assert made.status_code == 202, made.text
    snapshot = volumes.wait(f"/snapshots/{made.json()['snapshot']['id']}", "snapshot", "available")
    assert snapshot["size"] == 1 and snapshot["user_id"]

    from_snapshot = volumes.create(snapshot_id=snapshot["id"], size=2)
    from_volume = volumes.create(source_volid=source["id"])
    for clone, size in ((from_snapshot, 2), (from_volume, 1)):
        path = _file(volumes.cloud, clone["id"])
        assert path.stat().st_size == size * GIB
        with path.open("rb") as raw:
            raw.seek(GIB // 2)
            assert raw.read(17) == b"pocketstack-block"
        assert os.stat(path).st_blocks < 1024  # a thin copy: only the written block
    assert from_snapshot["snapshot_id"] == snapshot["id"]

    blocked = volumes("DELETE", f"/volumes/{source['id']}")
    assert blocked.status_code == 400
    assert "have snapshots" in blocked.json()["badRequest"]["message"]
    assert volumes("DELETE", f"/volumes/{source['id']}?cascade=true").status_code == 202
    volumes.wait(f"/volumes/{source['id']}", "volume", "gone")
    volumes.wait(f"/snapshots/{snapshot['id']}", "snapshot", "gone")


def test_bad_requests_name_the_problem(volumes: Volumes) -> None:
    zero = volumes("POST", "/volumes", {"volume": {"size": 0}})
    assert zero.status_code == 400 and "greater than 0" in zero.json()["badRequest"]["message"]
    unknown = volumes("POST", "/volumes", {"volume": {"size": 1, "volume_type": "nope"}})
    assert unknown.status_code == 404 and "nope" in unknown.json()["itemNotFound"]["message"]
    extra = volumes("POST", "/volumes", {"volume": {"size": 1, "colour": "red"}})
    assert extra.status_code == 400 and "colour" in extra.text
    missing = volumes("GET", "/volumes/00000000-0000-0000-0000-000000000000")
    assert missing.status_code == 404 and "itemNotFound" in missing.json()
    quota = volumes("PUT", f"/os-quota-sets/{volumes.project_id}", {"quota_set": {"gigabytes": 3}})
    assert quota.status_code == 200 and quota.json()["quota_set"]["gigabytes"] == 3
    volumes.create(size=2)
    over = volumes("POST", "/volumes", {"volume": {"size": 2}})
    assert over.status_code == 413 and "gigabytes quota" in over.json()["overLimit"]["message"]
    usage = volumes("GET", f"/os-quota-sets/{volumes.project_id}?usage=true").json()
    expected = {"limit": 3, "in_use": 2, "reserved": 0, "allocated": 0}
    assert usage["quota_set"]["gigabytes"] == expected
    limits = volumes("GET", "/limits").json()["limits"]["absolute"]
    assert limits["totalGigabytesUsed"] == 2 and limits["maxTotalVolumeGigabytes"] == 3


def test_per_type_quotas_limit_volumes_of_that_type(volumes: Volumes) -> None:
    made = volumes("POST", "/types", {"volume_type": {"name": "gold"}})
    assert made.status_code == 200, made.text
    defaults = volumes("GET", f"/os-quota-sets/{volumes.project_id}/defaults").json()
    assert defaults["quota_set"]["volumes_gold"] == -1
    bogus = volumes("PUT", f"/os-quota-sets/{volumes.project_id}",
                    {"quota_set": {"volumes_silver": 1}})  # fmt: skip
    assert bogus.status_code == 400 and "volumes_silver" in bogus.json()["badRequest"]["message"]
    limited = volumes("PUT", "/os-quota-class-sets/default",
                      {"quota_class_set": {"volumes_gold": 1}})  # fmt: skip
    assert limited.status_code == 200 and limited.json()["quota_class_set"]["volumes_gold"] == 1
    volumes.create(volume_type="gold")
    over = volumes("POST", "/volumes", {"volume": {"size": 1, "volume_type": "gold"}})
    assert over.status_code == 413 and "volumes_gold" in over.json()["overLimit"]["message"]
    volumes.create()  # other types are not limited by it
    usage = volumes("GET", f"/os-quota-sets/{volumes.project_id}?usage=true").json()["quota_set"]
    assert usage["volumes_gold"]["in_use"] == 1 and usage["volumes"]["in_use"] == 2


def test_volume_types_set_what_volumes_can_do(volumes: Volumes) -> None:
    made = volumes("POST", "/types", {"volume_type": {
        "name": "shared-disk", "extra_specs": {"multiattach": "<is> True"}}})  # fmt: skip
    assert made.status_code == 200, made.text
    volume_type = made.json()["volume_type"]
    again = volumes("POST", "/types", {"volume_type": {"name": "shared-disk"}})
    assert again.status_code == 409
    volume = volumes.create(volume_type="shared-disk")
    assert volume["multiattach"] is True and volume["volume_type"] == "shared-disk"
    in_use = volumes("DELETE", f"/types/{volume_type['id']}")
    assert in_use.status_code == 400 and "still in use" in in_use.text
    specs = volumes("GET", f"/types/{volume_type['id']}/extra_specs").json()
    assert specs == {"extra_specs": {"multiattach": "<is> True"}}
    default = volumes("GET", "/types/default").json()["volume_type"]
    assert default["name"] == "__DEFAULT__"


def test_attachments_reserve_connect_complete_detach(volumes: Volumes) -> None:
    plain = volumes.create()
    server_a, server_b = "11111111-1111-1111-1111-111111111111", "22222222-2222-2222-2222-22222222"
    reserved = volumes("POST", "/attachments", {"attachment": {
        "volume_uuid": plain["id"], "instance_uuid": server_a}})  # fmt: skip
    assert reserved.status_code == 200, reserved.text
    attachment = reserved.json()["attachment"]
    assert attachment["status"] == "reserved" and attachment["connection_info"] == {}
    assert volumes("GET", f"/volumes/{plain['id']}").json()["volume"]["status"] == "reserved"

    connector = {"host": "compute-1", "mountpoint": "/dev/vdb"}
    updated = volumes("PUT", f"/attachments/{attachment['id']}",
                      {"attachment": {"connector": connector}})  # fmt: skip
    info = updated.json()["attachment"]["connection_info"]
    assert info["driver_volume_type"] == "local"
    assert info["data"]["device_path"] == str(_file(volumes.cloud, plain["id"]))
    done = volumes("POST", f"/attachments/{attachment['id']}/action", {"os-complete": None})
    assert done.status_code == 204
    shown = volumes("GET", f"/volumes/{plain['id']}").json()["volume"]
    assert shown["status"] == "in-use"
    assert [(a["server_id"], a["device"]) for a in shown["attachments"]] == [(server_a, "/dev/vdb")]

    second = volumes("POST", "/attachments", {"attachment": {
        "volume_uuid": plain["id"], "instance_uuid": server_b}})  # fmt: skip
    assert second.status_code == 400 and "multi-attach" in second.json()["badRequest"]["message"]
    busy = volumes("DELETE", f"/volumes/{plain['id']}")
    assert busy.status_code == 400

    assert volumes("DELETE", f"/attachments/{attachment['id']}").status_code == 200
    assert volumes("GET", f"/volumes/{plain['id']}").json()["volume"]["status"] == "available"


def test_multiattach_volume_takes_two_servers(volumes: Volumes) -> None:
    volumes("POST", "/types", {"volume_type": {
        "name": "multi", "extra_specs": {"multiattach": "<is> True"}}})  # fmt: skip
    shared = volumes.create(volume_type="multi")
    for server in ("11111111-1111-1111-1111-111111111111", "22222222-2222-2222-2222-222222222222"):
        made = volumes("POST", "/attachments", {"attachment": {
            "volume_uuid": shared["id"], "instance_uuid": server,
            "connector": {"host": "compute-1"}}})  # fmt: skip
        assert made.status_code == 200, made.text
        volumes("POST", f"/attachments/{made.json()['attachment']['id']}/action",
                {"os-complete": None})  # fmt: skip
    shown = volumes("GET", f"/volumes/{shared['id']}").json()["volume"]
    assert shown["status"] == "in-use" and len(shown["attachments"]) == 2
    old = volumes("POST", "/attachments", {"attachment": {"volume_uuid": shared["id"]}}, "3.0")
    assert old.status_code == 404


def test_legacy_attach_actions(volumes: Volumes) -> None:
    volume = volumes.create()
    path = f"/volumes/{volume['id']}/action"
    server = "33333333-3333-3333-3333-333333333333"
    assert volumes("POST", path, {"os-reserve": None}).status_code == 202
    assert volumes("GET", f"/volumes/{volume['id']}").json()["volume"]["status"] == "attaching"
    connection = volumes("POST", path, {"os-initialize_connection": {"connector": {"host": "h"}}})
    assert connection.json()["connection_info"]["data"]["device_path"].endswith(".raw")
    attach = {"os-attach": {"instance_uuid": server, "mountpoint": "/dev/vdc"}}
    assert volumes("POST", path, attach).status_code == 202
    shown = volumes("GET", f"/volumes/{volume['id']}").json()["volume"]
    assert shown["status"] == "in-use" and shown["attachments"][0]["server_id"] == server
    assert volumes("POST", path, {"os-begin_detaching": None}).status_code == 202
    assert volumes("POST", path, {"os-roll_detaching": None}).status_code == 202
    attachment_id = shown["attachments"][0]["attachment_id"]
    detach = volumes("POST", path, {"os-detach": {"attachment_id": attachment_id}})
    assert detach.status_code == 202
    assert volumes("GET", f"/volumes/{volume['id']}").json()["volume"]["status"] == "available"
    wrong = volumes("POST", path, {"os-roll_detaching": None})
    assert wrong.status_code == 400 and "detaching" in wrong.text


def test_volume_from_image_holds_its_disk(volumes: Volumes) -> None:
    client, token = volumes.cloud.client, volumes.token
    image = client.post(
        "/image/v2/images", headers={"X-Auth-Token": token},
        json={"name": "disk", "disk_format": "raw", "container_format": "bare"},
    ).json()  # fmt: skip
    disk = b"boot-sector" + bytes(4096) + b"end-of-disk"
    upload = client.put(
        f"/image/v2/images/{image['id']}/file", content=disk,
        headers={"X-Auth-Token": token, "Content-Type": "application/octet-stream"},
    )  # fmt: skip
    assert upload.status_code == 204, upload.text
    volume = volumes.create(imageRef=image["id"])
    assert volume["size"] == 1 and volume["bootable"] == "true"
    assert volume["volume_image_metadata"]["image_id"] == image["id"]
    path = _file(volumes.cloud, volume["id"])
    assert path.stat().st_size == GIB and path.read_bytes()[: len(disk)] == disk
    missing = volumes("POST", "/volumes", {"volume": {"size": 1, "imageRef": "nope"}})
    assert missing.status_code == 400 and "nope" in missing.json()["badRequest"]["message"]


def test_upload_to_image_gives_the_volumes_bytes(volumes: Volumes) -> None:
    volume = volumes.create(name="source")
    with _file(volumes.cloud, volume["id"]).open("r+b") as disk:
        disk.write(b"volume bytes" * 1000)
    qcow2 = {"image_name": "from-volume", "disk_format": "qcow2"}
    answer = volumes("POST", f"/volumes/{volume['id']}/action", {"os-volume_upload_image": qcow2})
    assert answer.status_code == 202, answer.text
    upload = answer.json()["os-volume_upload_image"]
    assert (upload["status"], upload["disk_format"]) == ("uploading", "qcow2")
    volumes.wait(f"/volumes/{volume['id']}", "volume", "available")
    headers = {"X-Auth-Token": volumes.token}
    image = volumes.cloud.client.get(f"/image/v2/images/{upload['image_id']}", headers=headers)
    assert image.json()["status"] == "active" and image.json()["disk_format"] == "qcow2"
    data = volumes.cloud.client.get(f"/image/v2/images/{upload['image_id']}/file",
                                    headers=headers).content  # fmt: skip
    assert data[:4] == b"QFI\xfb"  # a qcow2 image
    raw = volumes("POST", f"/volumes/{volume['id']}/action",
                  {"os-volume_upload_image": {"image_name": "raw-copy"}})  # fmt: skip
    # 1 GiB through the image's MD5 and SHA-512: seconds, and on a slow CPU more than 10.
    volumes.wait(f"/volumes/{volume['id']}", "volume", "available", within_s=60)
    image_id = raw.json()["os-volume_upload_image"]["image_id"]
    shown = volumes.cloud.client.get(f"/image/v2/images/{image_id}", headers=headers).json()
    assert (shown["status"], shown["size"]) == ("active", GIB)
    with volumes.cloud.client.stream("GET", f"/image/v2/images/{image_id}/file",
                                     headers=headers) as streamed:  # fmt: skip
        first = next(streamed.iter_bytes())
    assert first.startswith(b"volume bytes" * 100)
    refused = volumes("POST", f"/volumes/{volume['id']}/action", {
        "os-volume_upload_image": {"image_name": "x", "disk_format": "vmdk"}})  # fmt: skip
    assert refused.status_code == 400 and "disk-format" in refused.text


def test_summary_quota_class_and_pools(volumes: Volumes) -> None:
    volumes.create(metadata={"tier": "gold"})
    summary = volumes("GET", "/volumes/summary").json()["volume-summary"]
    assert (summary["total_count"], summary["total_size"]) == (1, 1)
    assert summary["metadata"] == {"tier": ["gold"]}
    made = volumes("PUT", "/os-quota-class-sets/default", {"quota_class_set": {"volumes": 3}})
    assert made.status_code == 200 and made.json()["quota_class_set"]["volumes"] == 3
    defaults = volumes("GET", f"/os-quota-sets/{volumes.project_id}/defaults").json()
    assert defaults["quota_set"]["volumes"] == 3
    shown = volumes("GET", "/os-quota-class-sets/default").json()["quota_class_set"]
    assert shown["id"] == "default" and shown["volumes"] == 3
    pools = volumes("GET", "/scheduler-stats/get_pools?detail=True").json()["pools"]
    assert pools[0]["capabilities"]["volume_backend_name"] == "file"


def test_volume_pages_by_each_sort_key_cover_every_volume_once(volumes: Volumes) -> None:
    made = [volumes.create(name=name)["id"] for name in ("b", "a", None, "c", "a")]
    for sort in ("name:asc", "name:desc", "created_at:asc", "size:desc,name:asc", "id:asc"):
        seen: list[str] = []
        path = f"/volumes?sort={sort}&limit=2&with_count=true"
        while True:
            body = volumes("GET", path).json()
            assert body["count"] == len(made)
            seen += [v["id"] for v in body["volumes"]]
            links = body.get("volumes_links")
            if not links:
                break
            path = "/volumes?" + links[0]["href"].split("?", 1)[1]
        assert sorted(seen) == sorted(made) and len(seen) == len(made), sort
    names = [v["name"] for v in volumes("GET", "/volumes?sort=name:asc").json()["volumes"]]
    assert names == [None, "a", "a", "b", "c"]
    skipped = volumes("GET", "/volumes?sort=name:asc&offset=3").json()["volumes"]
    assert [v["name"] for v in skipped] == ["b", "c"]
    gone = volumes("GET", "/volumes?marker=00000000-0000-0000-0000-000000000000")
    assert gone.status_code == 404
