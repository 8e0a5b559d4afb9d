"""The image service as Glance v2 clients use it: records, data, patches, listing,
visibility and membership."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest

from tests.api.conftest import Cloud

PATCH = {"Content-Type": "application/openstack-images-v2.1-json-patch"}
OCTETS = {"Content-Type": "application/octet-stream"}


class Images:
    def __init__(self, cloud: Cloud, token: str) -> None:
        self.cloud, self.token = cloud, token

    def __call__(
        self,
        method: str,
        path: str,
        body: Any = None,
        headers: dict[str, str] | None = None,
        content: bytes | None = None,
        token: str | None = None,
    ) -> Any:
        all_headers = {"X-Auth-Token": token or self.token, **(headers or {})}
        if content is not None:
            return self.cloud.client.request(
                method, f"/image{path}", content=content, headers=all_headers
            )
        return self.cloud.client.request(method, f"/image{path}", json=body, headers=all_headers)

    def create(self, token: str | None = None, **fields: Any) -> dict[str, Any]:
        body = {"disk_format": "raw", "container_format": "bare", **fields}
        response = self("POST", "/v2/images", body, token=token)
        assert response.status_code == 201, response.text
        return dict(response.json())


@pytest.fixture
def images(cloud: Cloud) -> Images:
    return Images(cloud, cloud.admin)


def _project_member(cloud: Cloud, name: str) -> tuple[str, str]:
    """A new project with a member user; (token, project id)."""
    admin = cloud.admin
    project = cloud.create(admin, "project", name=name, domain_id="default")
    cloud.user_with_role(admin, f"{name}-user", project["id"], "member")
    return cloud.token(f"{name}-user", f"{name}-user-pw", project=name), project["id"]


def test_version_documents(images: Images) -> None:
    root = images("GET", "/")
    assert root.status_code == 300
    listed = images("GET", "/versions").json()["versions"]
    current = [v for v in listed if v["status"] == "CURRENT"]
    assert [v["id"] for v in current] == ["v2.17"]
    assert current[0]["links"][0]["href"].endswith("/image/v2/")
    assert images("GET", "/v2/images/").status_code == 404
    methods = images("GET", "/v2/info/import").json()["import-methods"]
    assert methods["value"] == []


def test_upload_then_download_round_trips_the_bytes(images: Images) -> None:
    data = bytes(range(256)) * 1000
    created = images.create(name="cirros", tags=["small"], os_distro="cirros")
    assert created["status"] == "queued" and created["visibility"] == "shared"
    assert created["os_distro"] == "cirros" and created["tags"] == ["small"]
    assert created["self"] == f"/v2/images/{created['id']}" and created["size"] is None
    path = f"/v2/images/{created['id']}"
    assert images("GET", f"{path}/file").status_code == 204
    assert images("PUT", f"{path}/file", content=data, headers=OCTETS).status_code == 204
    shown = images("GET", path).json()
    assert shown["status"] == "active" and shown["size"] == len(data)
    assert shown["checksum"] == hashlib.md5(data).hexdigest()
    assert shown["os_hash_algo"] == "sha512"
    assert shown["os_hash_value"] == hashlib.sha512(data).hexdigest()
    again = images("PUT", f"{path}/file", content=b"x", headers=OCTETS)
    assert again.status_code == 409
    downloaded = images("GET", f"{path}/file")
    assert downloaded.status_code == 200 and downloaded.content == data
    assert downloaded.headers["content-md5"] == shown["checksum"]


def test_upload_needs_formats_and_octets(images: Images) -> None:
    bare = images("POST", "/v2/images", {"name": "no-formats"}).json()
    path = f"/v2/images/{bare['id']}/file"
    assert images("PUT", path, content=b"x", headers=OCTETS).status_code == 400
    assert images("GET", f"/v2/images/{bare['id']}").json()["status"] == "queued"
    assert (
        images("PUT", path, content=b"x", headers={"Content-Type": "text/plain"}).status_code == 415
    )


def test_create_refuses_bad_attributes(images: Images) -> None:
    assert images("POST", "/v2/images", {"disk_format": "floppy"}).status_code == 400
    assert images("POST", "/v2/images", {"container_format": "zip"}).status_code == 400
    assert images("POST", "/v2/images", {"min_ram": -1}).status_code == 400
    assert images("POST", "/v2/images", {"visibility": "everyone"}).status_code == 400
    assert images("POST", "/v2/images", {"checksum": "x"}).status_code == 403
    assert images("POST", "/v2/images", {"self": "x"}).status_code == 403
    assert images("POST", "/v2/images", {"os_glance_x": "y"}).status_code == 403
    assert images("POST", "/v2/images", {"ramdisk_id": "not-a-uuid"}).status_code == 400
    assert images("POST", "/v2/images", {"hw_disk_bus": 3}).status_code == 400
    taken = images.create(name="fixed-id")
    assert images("POST", "/v2/images", {"id": taken["id"]}).status_code == 409


def test_json_patch_updates(images: Images) -> None:
    image = images.create(name="before")
    path = f"/v2/images/{image['id']}"
    patch = [
        {"op": "replace", "path": "/name", "value": "after"},
        {"op": "add", "path": "/hw_disk_bus", "value": "scsi"},
        {"op": "add", "path": "/tags", "value": ["a", "b"]},
        {"op": "replace", "path": "/min_ram", "value": 512},
    ]
    updated = images("PATCH", path, patch, headers=PATCH)
    assert updated.status_code == 200, updated.text
    body = updated.json()
    assert (body["name"], body["hw_disk_bus"], body["tags"], body["min_ram"]) == (
        "after",
        "scsi",
        ["a", "b"],
        512,
    )
    removed = images("PATCH", path, [{"op": "remove", "path": "/hw_disk_bus"}], headers=PATCH)
    assert "hw_disk_bus" not in removed.json()
    missing = images("PATCH", path, [{"op": "remove", "path": "/hw_disk_bus"}], headers=PATCH)
    assert missing.status_code == 409
    read_only = images(
        "PATCH", path, [{"op": "replace", "path": "/size", "value": 1}], headers=PATCH
    )
    assert read_only.status_code == 403
    bad_op = images("PATCH", path, [{"op": "move", "path": "/name"}], headers=PATCH)
    assert bad_op.status_code == 400
    plain = images("PATCH", path, [{"op": "replace", "path": "/name", "value": "x"}])
    assert plain.status_code == 415
    assert images("GET", path).json()["name"] == "after"
    draft4 = {"Content-Type": "application/openstack-images-v2.0-json-patch"}
    renamed = images("PATCH", path, [{"replace": "/name", "value": "draft4"}], headers=draft4)
    assert renamed.status_code == 200 and renamed.json()["name"] == "draft4"
    assert (
        images("PATCH", path, [{"add": "/name", "value": "x"}], headers=draft4).status_code == 409
    )
    reserved = [{"op": "add", "path": "/os_glance_x", "value": "y"}]
    assert images("PATCH", path, reserved, headers=PATCH).status_code == 403
    deep = [{"op": "add", "path": "/tags/0", "value": "y"}]
    assert images("PATCH", path, deep, headers=PATCH).status_code == 400


def test_tags_protection_and_delete(images: Images) -> None:
    image = images.create(name="tagged", protected=True)
    path = f"/v2/images/{image['id']}"
    assert images("PUT", f"{path}/tags/gold").status_code == 204
    assert images("PUT", f"{path}/tags/gold").status_code == 204
    assert images("GET", path).json()["tags"] == ["gold"]
    assert images("DELETE", f"{path}/tags/gold").status_code == 204
    assert images("DELETE", f"{path}/tags/gold").status_code == 404
    assert images("DELETE", path).status_code == 403
    images("PATCH", path, [{"op": "replace", "path": "/protected", "value": False}], headers=PATCH)
    assert images("DELETE", path).status_code == 204
    assert images("GET", path).status_code == 404
    assert images("DELETE", path).status_code == 404
    assert images("POST", "/v2/images", {"id": image["id"]}).status_code == 409
    assert image["id"] not in [i["id"] for i in images("GET", "/v2/images").json()["images"]]


def test_listing_filters_sorts_and_pages(images: Images) -> None:
    for name in ("list-c", "list-a", "list-b"):
        images.create(name=name, tags=["listing"], os_type="linux" if name != "list-b" else "bsd")
    names = [
        i["name"] for i in images("GET", "/v2/images?tag=listing&sort=name:asc").json()["images"]
    ]
    assert names == ["list-a", "list-b", "list-c"]
    first = images("GET", "/v2/images?tag=listing&sort_key=name&sort_dir=asc&limit=2").json()
    assert [i["name"] for i in first["images"]] == ["list-a", "list-b"]
    assert first["first"] == "/v2/images?tag=listing&sort_key=name&sort_dir=asc&limit=2"
    assert first["schema"] == "/v2/schemas/images"
    rest = images("GET", first["next"]).json()
    assert [i["name"] for i in rest["images"]] == ["list-c"] and "next" not in rest
    linux = images("GET", "/v2/images?tag=listing&os_type=linux").json()["images"]
    assert sorted(i["name"] for i in linux) == ["list-a", "list-c"]
    assert images("GET", "/v2/images?sort_key=colour").status_code == 400
    assert images("GET", "/v2/images?marker=nope").status_code == 400


def test_visibility_and_membership(cloud: Cloud, images: Images) -> None:
    owner_token, owner_project = _project_member(cloud, "img-owner")
    other_token, other_project = _project_member(cloud, "img-other")
    private = images.create(token=owner_token, name="private-one", visibility="private")
    shared = images.create(token=owner_token, name="shared-one")
    assert images("GET", f"/v2/images/{private['id']}", token=other_token).status_code == 404
    assert (
        images("POST", "/v2/images", {"visibility": "public"}, token=owner_token).status_code == 403
    )
    members = f"/v2/images/{shared['id']}/members"
    added = images("POST", members, {"member": other_project}, token=owner_token)
    assert added.status_code == 200 and added.json()["status"] == "pending"
    assert images("POST", members, {"member": other_project}, token=owner_token).status_code == 409

    def listed_by_other(query: str = "") -> set[str]:
        found = images("GET", f"/v2/images{query}", token=other_token).json()["images"]
        return {i["name"] for i in found}

    assert "shared-one" not in listed_by_other()
    assert "shared-one" in listed_by_other("?member_status=pending")
    by_owner = images(
        "PUT", f"{members}/{other_project}", {"status": "accepted"}, token=owner_token
    )
    assert by_owner.status_code == 403
    invalid = images("PUT", f"{members}/{other_project}", {"status": "maybe"}, token=other_token)
    assert invalid.status_code == 400
    accepted = images(
        "PUT", f"{members}/{other_project}", {"status": "accepted"}, token=other_token
    )
    assert accepted.status_code == 200 and accepted.json()["status"] == "accepted"
    assert "shared-one" in listed_by_other()
    assert (
        images(
            "PATCH", f"/v2/images/{shared['id']}", [], token=other_token, headers=PATCH
        ).status_code
        == 403
    )
    assert (
        images("GET", members, token=owner_token).json()["members"][0]["member_id"] == other_project
    )
    assert images("DELETE", f"{members}/{other_project}", token=owner_token).status_code == 204
    assert images("GET", f"/v2/images/{shared['id']}", token=other_token).status_code == 404
    assert (
        images(
            "POST",
            f"/v2/images/{private['id']}/members",
            {"member": other_project},
            token=owner_token,
        ).status_code
        == 403
    )
    assert owner_project != other_project


def test_deactivated_images_are_not_downloadable_except_by_admins(
    cloud: Cloud, images: Images
) -> None:
    user_token, _project = _project_member(cloud, "img-deact")
    image = images.create(token=user_token, name="to-deactivate")
    path = f"/v2/images/{image['id']}"
    images("PUT", f"{path}/file", content=b"payload", headers=OCTETS, token=user_token)
    assert images("POST", f"{path}/actions/deactivate", token=user_token).status_code == 204
    assert images("GET", path).json()["status"] == "deactivated"
    assert images("GET", f"{path}/file", token=user_token).status_code == 403
    assert images("GET", f"{path}/file").content == b"payload"
    assert images("POST", f"{path}/actions/reactivate", token=user_token).status_code == 204
    assert images("GET", f"{path}/file", token=user_token).content == b"payload"


def test_schemas(images: Images) -> None:
    image = images("GET", "/v2/schemas/image").json()
    assert image["name"] == "image" and "disk_format" in image["properties"]
    assert images("GET", "/v2/schemas/images").json()["name"] == "images"
    assert images("GET", "/v2/schemas/member").json()["name"] == "member"
    assert images("GET", "/v2/schemas/members").json()["name"] == "members"


def test_an_upload_cut_off_by_a_stopped_process_leaves_the_image_queued(
    cloud: Cloud, images: Images
) -> None:
    from sqlalchemy import text

    from pocketstack.image import service as image_service

    image = images.create(name="cut-off")
    with cloud.runtime.db.write() as session:
        session.execute(
            text("UPDATE image_image SET status = 'saving' WHERE id = :id"), {"id": image["id"]}
        )
    store = image_service.store_of(cloud.runtime)
    store.root.mkdir(parents=True, exist_ok=True)
    partial = store.root / f"{image['id']}.part-2147483646-1"
    partial.write_bytes(b"half of it")
    image_service.prepare(cloud.runtime)
    assert not partial.exists()
    assert images("GET", f"/v2/images/{image['id']}").json()["status"] == "queued"
    again = images("PUT", f"/v2/images/{image['id']}/file", content=b"whole", headers=OCTETS)
    assert again.status_code == 204
