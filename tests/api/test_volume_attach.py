"""Volumes attached to servers through Nova's os-volume_attachments, as the CLI and Nova
drive it: the volume goes reserved -> in-use once the host has the disk, a plain volume
takes one server, a multi-attach one two, a detach gives it back, a deleted server lets
go of its volumes (and deletes those marked delete_on_termination)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.api.conftest import Cloud


class Api:
    def __init__(self, cloud: Cloud) -> None:
        self.cloud = cloud
        admin = cloud.admin
        projects = cloud.call("GET", "/v3/projects?name=admin", admin).json()["projects"]
        self.project_id = projects[0]["id"]
        self.image_id = ""

    def compute(self, method: str, path: str, body: Any = None, version: str = "2.96") -> Any:
        headers = {"X-Auth-Token": self.cloud.admin, "X-OpenStack-Nova-API-Version": version}
        return self.cloud.client.request(method, f"/compute/v2.1{path}", json=body, headers=headers)

    def volume(self, method: str, path: str, body: Any = None) -> Any:
        headers = {"X-Auth-Token": self.cloud.admin, "OpenStack-API-Version": "volume 3.71"}
        url = f"/volume/v3/{self.project_id}{path}"
        return self.cloud.client.request(method, url, json=body, headers=headers)

    def wait(self, get: Any, key: str, field: str, value: str) -> dict[str, Any]:
        deadline = time.monotonic() + 10
        while True:
            shown = get()
            body = dict(shown.json()[key]) if shown.status_code == 200 else {}
            if body.get(field) == value and body.get("OS-EXT-STS:task_state") is None:
                return body
            assert time.monotonic() < deadline, f"{key} {field} is {body.get(field)}, not {value}"
            time.sleep(0.02)

    def server(self, name: str) -> str:
        if not self.image_id:
            headers = {"X-Auth-Token": self.cloud.admin}
            image = self.cloud.client.post("/image/v2/images", headers=headers, json={
                "name": "tiny", "disk_format": "raw", "container_format": "bare",
            }).json()  # fmt: skip
            self.cloud.client.put(
                f"/image/v2/images/{image['id']}/file", content=b"\0" * 512,
                headers={**headers, "Content-Type": "application/octet-stream"},
            )  # fmt: skip
            self.image_id = image["id"]
        body = {"name": name, "flavorRef": "1", "imageRef": self.image_id, "networks": "none"}
        booted = self.compute("POST", "/servers", {"server": body})
        assert booted.status_code == 202, booted.text
        server_id = str(booted.json()["server"]["id"])
        shown = lambda: self.compute("GET", f"/servers/{server_id}")  # noqa: E731
        self.wait(shown, "server", "status", "ACTIVE")
        return server_id

    def new_volume(self, **fields: Any) -> str:
        made = self.volume("POST", "/volumes", {"volume": {"size": 1, **fields}})
        assert made.status_code == 202, made.text
        volume_id = str(made.json()["volume"]["id"])
        self.volume_status(volume_id, "available")
        return volume_id

    def volume_status(self, volume_id: str, status: str) -> dict[str, Any]:
        return self.wait(lambda: self.volume("GET", f"/volumes/{volume_id}"), "volume", "status",
                         status)  # fmt: skip

    def attach(self, server_id: str, volume_id: str, **fields: Any) -> Any:
        body = {"volumeAttachment": {"volumeId": volume_id, **fields}}
        return self.compute("POST", f"/servers/{server_id}/os-volume_attachments", body)


@pytest.fixture
def api(cloud_factory: Any) -> Iterator[Api]:
    with cloud_factory(background=True) as cloud:
        yield Api(cloud)


def test_attach_detach_and_a_second_attach_of_a_plain_volume(api: Api) -> None:
    first, second = api.server("one"), api.server("two")
    volume_id = api.new_volume(name="data")
    attached = api.attach(first, volume_id)
    assert attached.status_code == 200, attached.text
    view = attached.json()["volumeAttachment"]
    assert view == {"id": volume_id, "serverId": first, "volumeId": volume_id,
                    "device": "/dev/vdb", "tag": None, "delete_on_termination": False}
    volume = api.volume_status(volume_id, "in-use")
    assert [a["server_id"] for a in volume["attachments"]] == [first]
    assert volume["attachments"][0]["device"] == "/dev/vdb"
    listed = api.compute("GET", f"/servers/{first}/os-volume_attachments").json()
    assert [(a["volumeId"], a["device"]) for a in listed["volumeAttachments"]] == [
        (volume_id, "/dev/vdb")
    ]
    assert set(listed["volumeAttachments"][0]) >= {"attachment_id", "bdm_uuid"}
    server = api.compute("GET", f"/servers/{first}").json()["server"]
    assert server["os-extended-volumes:volumes_attached"] == [
        {"id": volume_id, "delete_on_termination": False}
    ]

    refused = api.attach(second, volume_id)
    assert refused.status_code == 400
    message = refused.json()["badRequest"]["message"]
    assert volume_id in message and "multi-attach" in message

    detached = api.compute("DELETE", f"/servers/{first}/os-volume_attachments/{volume_id}")
    assert detached.status_code == 202, detached.text
    api.volume_status(volume_id, "available")
    assert api.compute("GET", f"/servers/{first}/os-volume_attachments").json() == {
        "volumeAttachments": []
    }
    again = api.attach(second, volume_id)
    assert again.status_code == 200, again.text
    api.volume_status(volume_id, "in-use")


def test_multiattach_volume_takes_two_servers(api: Api) -> None:
    first, second = api.server("one"), api.server("two")
    made = api.volume("POST", "/types", {"volume_type": {
        "name": "shared", "extra_specs": {"multiattach": "<is> True"},
    }})  # fmt: skip
    assert made.status_code == 200, made.text
    volume_id = api.new_volume(volume_type="shared")
    too_old = api.compute(
        "POST", f"/servers/{first}/os-volume_attachments",
        {"volumeAttachment": {"volumeId": volume_id}}, version="2.59",
    )  # fmt: skip
    assert too_old.status_code == 400 and "2.60" in too_old.text
    for server_id in (first, second):
        assert api.attach(server_id, volume_id).status_code == 200
    deadline = time.monotonic() + 10
    while len(api.volume("GET", f"/volumes/{volume_id}").json()["volume"]["attachments"]) < 2:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    volume = api.volume_status(volume_id, "in-use")
    assert {a["server_id"] for a in volume["attachments"]} == {first, second}
    api.compute("DELETE", f"/servers/{first}/os-volume_attachments/{volume_id}")
    deadline = time.monotonic() + 10
    while len(api.volume("GET", f"/volumes/{volume_id}").json()["volume"]["attachments"]) > 1:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    assert api.volume_status(volume_id, "in-use")["attachments"][0]["server_id"] == second


def test_bad_attach_requests_are_4xx(api: Api) -> None:
    server_id = api.server("one")
    volume_id = api.new_volume()
    missing = api.attach(server_id, "8f0e1d8a-0000-4000-8000-000000000000")
    assert missing.status_code == 404
    assert api.attach(server_id, "not-a-uuid").status_code == 400
    assert api.attach(server_id, volume_id, device="sdb").status_code == 400
    assert api.attach(server_id, volume_id, bogus=1).status_code == 400
    not_attached = api.compute("DELETE", f"/servers/{server_id}/os-volume_attachments/{volume_id}")
    assert not_attached.status_code == 404
    api.compute("POST", f"/servers/{server_id}/action", {"pause": None})
    api.wait(lambda: api.compute("GET", f"/servers/{server_id}"), "server", "status", "PAUSED")
    assert api.attach(server_id, volume_id).status_code == 200
    api.volume_status(volume_id, "in-use")


def test_deleting_a_server_lets_go_of_its_volumes(api: Api) -> None:
    server_id = api.server("one")
    kept, dropped = api.new_volume(name="kept"), api.new_volume(name="dropped")
    assert api.attach(server_id, kept).status_code == 200
    assert api.attach(server_id, dropped, delete_on_termination=True).status_code == 200
    api.volume_status(kept, "in-use")
    api.volume_status(dropped, "in-use")
    assert api.compute("DELETE", f"/servers/{server_id}").status_code == 204
    api.volume_status(kept, "available")
    deadline = time.monotonic() + 10
    while api.volume("GET", f"/volumes/{dropped}").status_code != 404:
        assert time.monotonic() < deadline, "the delete_on_termination volume stayed"
        time.sleep(0.05)


def test_a_host_that_fails_a_disk_rolls_that_volume_back(api: Api) -> None:
    server_id = api.server("one")
    volume_id = api.new_volume()
    (agent,) = api.cloud.runtime.state["compute.runner"].agents.values()
    agent.driver.failing_disks = True
    assert api.attach(server_id, volume_id).status_code == 200
    api.volume_status(volume_id, "available")
    assert api.compute("GET", f"/servers/{server_id}").json()["server"]["status"] == "ACTIVE"
    assert api.compute("GET", f"/servers/{server_id}/os-volume_attachments").json() == {
        "volumeAttachments": []
    }
    actions = api.compute("GET", f"/servers/{server_id}/os-instance-actions").json()
    attach = next(a for a in actions["instanceActions"] if a["action"] == "attach_volume")
    assert attach["message"] == "Error"

    agent.driver.failing_disks = False
    assert api.attach(server_id, volume_id).status_code == 200
    api.volume_status(volume_id, "in-use")
    agent.driver.failing_disks = True
    api.compute("DELETE", f"/servers/{server_id}/os-volume_attachments/{volume_id}")
    api.volume_status(volume_id, "in-use")
    listed = api.compute("GET", f"/servers/{server_id}/os-volume_attachments").json()
    assert [a["volumeId"] for a in listed["volumeAttachments"]] == [volume_id]


def test_a_server_boots_from_a_volume_made_from_an_image(api: Api) -> None:
    api.server("warm-up")  # uploads the image
    mapping = {"source_type": "image", "destination_type": "volume", "uuid": api.image_id,
               "boot_index": 0, "volume_size": 1, "delete_on_termination": True}  # fmt: skip
    body = {"name": "bfv", "flavorRef": "1", "networks": "none",
            "block_device_mapping_v2": [mapping]}  # fmt: skip
    booted = api.compute("POST", "/servers", {"server": body})
    assert booted.status_code == 202, booted.text
    server_id = booted.json()["server"]["id"]
    server = api.wait(lambda: api.compute("GET", f"/servers/{server_id}"), "server", "status",
                      "ACTIVE")  # fmt: skip
    assert server["image"] == ""
    (root,) = server["os-extended-volumes:volumes_attached"]
    volume = api.volume_status(root["id"], "in-use")
    assert volume["bootable"] == "true" and volume["attachments"][0]["device"] == "/dev/vda"
    assert volume["volume_image_metadata"]["image_id"] == api.image_id
    headers = {"X-Auth-Token": api.cloud.admin, "OpenStack-API-Version": "placement 1.39"}
    claimed = api.cloud.client.get(f"/placement/allocations/{server_id}", headers=headers).json()
    (resources,) = [a["resources"] for a in claimed["allocations"].values()]
    assert "DISK_GB" not in resources and resources["VCPU"] >= 1  # the root is the volume
    detach = api.compute("DELETE", f"/servers/{server_id}/os-volume_attachments/{root['id']}")
    assert detach.status_code == 400 and "root device" in detach.text

    no_size = {**mapping, "volume_size": None}
    refused = api.compute("POST", "/servers", {"server": {
        **body, "block_device_mapping_v2": [no_size]}})  # fmt: skip
    assert refused.status_code == 400 and "non-zero size" in refused.text
    in_use = {"source_type": "volume", "destination_type": "volume", "uuid": root["id"],
              "boot_index": 0}  # fmt: skip
    taken = api.compute("POST", "/servers", {"server": {
        **body, "block_device_mapping_v2": [in_use]}})  # fmt: skip
    assert taken.status_code == 400 and "in-use" in taken.text

    assert api.compute("DELETE", f"/servers/{server_id}").status_code == 204
    deadline = time.monotonic() + 10
    while api.volume("GET", f"/volumes/{root['id']}").status_code != 404:
        assert time.monotonic() < deadline, "the root volume marked delete_on_termination stayed"
        time.sleep(0.05)
