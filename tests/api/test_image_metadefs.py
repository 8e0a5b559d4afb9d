"""Glance's metadata definitions catalog (`/image/v2/metadefs`) as its clients use it:
namespaces with their objects, properties, tags and resource types, who may see and
change them, and the schema documents that describe them."""

from __future__ import annotations

from typing import Any

import pytest

from tests.api.conftest import Cloud

NAMESPACES = "/v2/metadefs/namespaces"


class Metadefs:
    def __init__(self, cloud: Cloud, token: str) -> None:
        self.cloud, self.token = cloud, token

    def __call__(
        self,
        method: str,
        path: str,
        body: Any = None,
        token: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> Any:
        all_headers = {"X-Auth-Token": token or self.token, **(headers or {})}
        return self.cloud.client.request(method, f"/image{path}", json=body, headers=all_headers)

    def namespace(self, name: str, **fields: Any) -> dict[str, Any]:
        response = self("POST", NAMESPACES, {"namespace": name, **fields})
        assert response.status_code == 201, response.text
        return dict(response.json())


@pytest.fixture
def md(cloud: Cloud) -> Metadefs:
    return Metadefs(cloud, cloud.admin)


def _user(cloud: Cloud, project: str, role: str) -> tuple[str, str]:
    """A user with `role` in a new project `project`: (token, project id)."""
    admin = cloud.admin
    created = cloud.create(admin, "project", name=project, domain_id="default")
    cloud.user_with_role(admin, f"{project}-user", created["id"], role)
    return cloud.token(f"{project}-user", f"{project}-user-pw", project=project), created["id"]


def test_resource_types_are_listed_before_any_namespace_exists(md: Metadefs) -> None:
    listed = md("GET", "/v2/metadefs/resource_types")
    assert listed.status_code == 200
    names = [t["name"] for t in listed.json()["resource_types"]]
    assert {"OS::Glance::Image", "OS::Nova::Flavor", "OS::Cinder::Volume"} <= set(names)
    assert all("created_at" in t for t in listed.json()["resource_types"])


def test_namespace_lifecycle_with_protection(md: Metadefs) -> None:
    created = md.namespace(
        "OS::Test::Hypervisor",
        display_name="Hypervisor",
        description="Pick a hypervisor",
        visibility="public",
        protected=True,
        resource_type_associations=[{"name": "OS::Glance::Image", "prefix": "hw_"}],
        properties={"hypervisor_type": {"title": "Hypervisor", "type": "string", "enum": ["kvm"]}},
        objects=[{"name": "CPU", "properties": {"cpus": {"title": "CPUs", "type": "integer"}}}],
        tags=[{"name": "fast"}],
    )
    assert created["self"] == f"{NAMESPACES}/OS::Test::Hypervisor"
    assert created["schema"] == "/v2/schemas/metadefs/namespace"
    assert created["visibility"] == "public" and created["protected"] is True
    path = f"{NAMESPACES}/OS::Test::Hypervisor"

    listed = md("GET", NAMESPACES).json()
    assert [n["namespace"] for n in listed["namespaces"]] == ["OS::Test::Hypervisor"]
    assert listed["schema"] == "/v2/schemas/metadefs/namespaces"
    assert listed["namespaces"][0]["resource_type_associations"][0]["name"] == "OS::Glance::Image"

    shown = md("GET", path).json()
    assert shown["properties"]["hypervisor_type"]["enum"] == ["kvm"]
    assert shown["objects"][0]["name"] == "CPU" and shown["tags"] == [{"name": "fast"}]
    prefixed = md("GET", f"{path}?resource_type=OS::Glance::Image").json()
    assert list(prefixed["properties"]) == ["hw_hypervisor_type"]
    assert list(prefixed["objects"][0]["properties"]) == ["hw_cpus"]

    refused = md("DELETE", path)
    assert refused.status_code == 403
    assert "is protected and cannot be deleted" in refused.json()["message"]
    assert md("DELETE", f"{path}/tags").status_code == 403
    assert md("DELETE", f"{path}/objects/CPU").status_code == 403

    updated = md(
        "PUT",
        path,
        {"namespace": "OS::Test::Hypervisor", "visibility": "private", "protected": False},
    )
    assert updated.status_code == 200, updated.text
    assert updated.json()["visibility"] == "private" and updated.json()["protected"] is False
    assert "display_name" not in updated.json()  # a PUT replaces the whole namespace

    assert md("DELETE", path).status_code == 204
    assert md("GET", path).status_code == 404
    assert md("GET", f"{path}/objects").status_code == 404


def test_duplicates_conflict_and_bad_bodies_are_refused(md: Metadefs) -> None:
    md.namespace("dup")
    again = md("POST", NAMESPACES, {"namespace": "dup"})
    assert again.status_code == 409
    assert again.json()["message"] == "The metadata definition namespace=dup already exists."
    assert again.json()["code"] == "409 Conflict"
    md.namespace("other")
    renamed = md("PUT", f"{NAMESPACES}/other", {"namespace": "dup"})
    assert renamed.status_code == 409

    bad = md("POST", NAMESPACES, {"namespace": "x", "visibility": "shared"})
    assert bad.status_code == 400 and "'namespace'" in bad.json()["message"]
    assert md("POST", NAMESPACES, {"display_name": "no name"}).status_code == 400
    assert md("POST", NAMESPACES, {"namespace": "x", "bogus": 1}).status_code == 400
    assert md("POST", NAMESPACES, {"namespace": "x", "self": "/x"}).status_code == 403
    untyped = md("POST", f"{NAMESPACES}/dup/properties", {"name": "p", "title": "P"})
    assert untyped.status_code == 400 and "'type' is a required property" in untyped.text
    assert md("GET", f"{NAMESPACES}/missing").status_code == 404
    assert md("GET", f"{NAMESPACES}/dup/objects/missing").status_code == 404
    assert md("GET", f"{NAMESPACES}/dup/properties/missing").status_code == 404
    assert md("GET", f"{NAMESPACES}/dup/tags/missing").status_code == 404
    assert md("GET", f"{NAMESPACES}?visibility=shared").status_code == 400


def test_objects_can_be_created_renamed_listed_and_deleted(md: Metadefs) -> None:
    md.namespace("objs")
    base = f"{NAMESPACES}/objs/objects"
    created = md("POST", base, {"name": "Disk QoS", "required": ["read"], "properties": {}})
    assert created.status_code == 201, created.text
    assert created.json()["self"] == f"{base}/Disk QoS"
    assert md("POST", base, {"name": "Disk QoS"}).status_code == 409
    renamed = md("PUT", f"{base}/Disk QoS", {"name": "Disk limits"})
    assert renamed.status_code == 200 and renamed.json()["name"] == "Disk limits"
    assert md("GET", f"{base}/Disk QoS").status_code == 404
    assert md("GET", f"{base}/Disk limits").json()["required"] == []
    listed = md("GET", base).json()
    assert [o["name"] for o in listed["objects"]] == ["Disk limits"]
    assert md("DELETE", f"{base}/Disk limits").status_code == 204
    assert md("GET", base).json()["objects"] == []


def test_properties_take_resource_type_names_and_are_shown_by_prefix(md: Metadefs) -> None:
    md.namespace("props")
    base = f"{NAMESPACES}/props/properties"
    body = {"name": "OS::Nova::Flavor", "title": "t1", "type": "string", "enum": ["a", "b"]}
    created = md("POST", base, body)
    assert created.status_code == 201 and created.json() == body
    assert md("POST", base, body).status_code == 409
    shown = md("GET", f"{base}/OS::Nova::Flavor").json()
    assert shown["name"] == "OS::Nova::Flavor" and shown["enum"] == ["a", "b"]
    updated = md("PUT", f"{base}/OS::Nova::Flavor", {**body, "title": "t2"})
    assert updated.status_code == 200 and updated.json()["title"] == "t2"
    assert md("GET", base).json() == {
        "properties": {"OS::Nova::Flavor": {"title": "t2", "type": "string", "enum": ["a", "b"]}}
    }

    associate = {"name": "OS::Glance::Image", "prefix": "hw_"}
    assert md("POST", f"{NAMESPACES}/props/resource_types", associate).status_code == 201
    md("POST", base, {"name": "disk_bus", "title": "Disk bus", "type": "string"})
    by_prefix = md("GET", f"{base}/hw_disk_bus?resource_type=OS::Glance::Image")
    assert by_prefix.status_code == 200 and by_prefix.json()["name"] == "disk_bus"
    assert md("GET", f"{base}/disk_bus?resource_type=OS::Glance::Image").status_code == 404

    assert md("DELETE", f"{base}/OS::Nova::Flavor").status_code == 204
    assert list(md("GET", base).json()["properties"]) == ["disk_bus"]
    assert md("DELETE", base).status_code == 204
    assert md("GET", base).json() == {"properties": {}}


def test_tags_in_bulk_replace_unless_appended_and_are_case_insensitive(md: Metadefs) -> None:
    md.namespace("tagged")
    base = f"{NAMESPACES}/tagged/tags"
    bulk = md("POST", base, {"tags": [{"name": "a"}, {"name": "b"}, {"name": "c"}]})
    assert bulk.status_code == 201
    assert bulk.json() == {"tags": [{"name": "a"}, {"name": "b"}, {"name": "c"}]}
    assert len(md("GET", base).json()["tags"]) == 3
    md("POST", base, {"tags": [{"name": "d"}]})
    assert md("GET", base).json()["tags"] == [{"name": "d"}]
    md("POST", base, {"tags": [{"name": "e"}]}, headers={"X-Openstack-Append": "True"})
    assert {t["name"] for t in md("GET", base).json()["tags"]} == {"d", "e"}
    twice = md("POST", base, {"tags": [{"name": "x"}, {"name": "X"}]})
    assert twice.status_code == 409 and "case insensitive" in twice.json()["message"]
    assert {t["name"] for t in md("GET", base).json()["tags"]} == {"d", "e"}

    single = md("POST", f"{base}/solo")
    assert single.status_code == 201 and single.json()["name"] == "solo"
    assert md("POST", f"{base}/SOLO").status_code == 409
    assert md("GET", f"{base}/solo").json()["name"] == "solo"
    renamed = md("PUT", f"{base}/solo", {"name": "duo"})
    assert renamed.status_code == 200 and renamed.json()["name"] == "duo"
    assert md("DELETE", f"{base}/duo").status_code == 204
    assert md("DELETE", f"{base}/duo").status_code == 404
    assert md("DELETE", base).status_code == 204
    assert md("GET", base).json() == {"tags": []}


def test_resource_type_associations(md: Metadefs) -> None:
    md.namespace("assoc")
    base = f"{NAMESPACES}/assoc/resource_types"
    created = md("POST", base, {"name": "OS::Nova::Flavor", "prefix": "hw:"})
    assert created.status_code == 201
    assert created.json()["name"] == "OS::Nova::Flavor" and created.json()["prefix"] == "hw:"
    assert md("POST", base, {"name": "OS::Nova::Flavor"}).status_code == 409
    # An unknown resource type is created on first use, as in Glance.
    assert md("POST", base, {"name": "OS::Custom::Thing"}).status_code == 201
    names = {t["name"] for t in md("GET", "/v2/metadefs/resource_types").json()["resource_types"]}
    assert "OS::Custom::Thing" in names
    listed = md("GET", base).json()["resource_type_associations"]
    assert {a["name"] for a in listed} == {"OS::Nova::Flavor", "OS::Custom::Thing"}
    filtered = md("GET", f"{NAMESPACES}?resource_types=OS::Custom::Thing").json()
    assert [n["namespace"] for n in filtered["namespaces"]] == ["assoc"]
    assert md("DELETE", f"{base}/OS::Nova::Flavor").status_code == 204
    assert md("DELETE", f"{base}/OS::Nova::Flavor").status_code == 404
    assert [a["name"] for a in md("GET", base).json()["resource_type_associations"]] == [
        "OS::Custom::Thing"
    ]


def test_private_namespaces_are_hidden_from_other_projects(cloud: Cloud, md: Metadefs) -> None:
    md.namespace("public-ns", visibility="public")
    md.namespace("admin-private")
    md("POST", f"{NAMESPACES}/admin-private/tags/secret")
    token, project_id = _user(cloud, "reading", "reader")
    md.namespace("theirs", owner=project_id)

    seen = md("GET", NAMESPACES, token=token)
    assert seen.status_code == 200
    assert {n["namespace"] for n in seen.json()["namespaces"]} == {"public-ns", "theirs"}
    assert md("GET", f"{NAMESPACES}/public-ns", token=token).status_code == 200
    assert md("GET", f"{NAMESPACES}/theirs", token=token).status_code == 200
    for path in ("", "/tags", "/tags/secret", "/objects", "/properties", "/resource_types"):
        assert md("GET", f"{NAMESPACES}/admin-private{path}", token=token).status_code == 404
    assert md("DELETE", f"{NAMESPACES}/admin-private", token=token).status_code == 404


def test_only_admins_write_the_catalog(cloud: Cloud, md: Metadefs) -> None:
    token, _ = _user(cloud, "members", "member")
    refused = md("POST", NAMESPACES, {"namespace": "mine"}, token=token)
    assert refused.status_code == 403
    assert refused.json()["message"] == (
        "You are not authorized to perform the requested action: add_metadef_namespace."
    )
    md.namespace("shared-catalog", visibility="public")
    path = f"{NAMESPACES}/shared-catalog"
    assert md("GET", path, token=token).status_code == 200
    assert md("DELETE", path, token=token).status_code == 403
    assert md("POST", f"{path}/tags/t", token=token).status_code == 403
    assert md("POST", f"{path}/objects", {"name": "o"}, token=token).status_code == 403
    assert md("GET", "/v2/metadefs/resource_types", token=token).status_code == 200


@pytest.mark.parametrize(
    ("path", "name"),
    [
        ("namespace", "namespace"),
        ("namespaces", "namespaces"),
        ("object", "object"),
        ("objects", "objects"),
        ("property", "property"),
        ("properties", "properties"),
        ("tag", "tag"),
        ("tags", "tags"),
        ("resource_type", "resource_type_association"),
        ("resource_types", "resource_type_associations"),
    ],
)
def test_schema_documents(md: Metadefs, path: str, name: str) -> None:
    document = md("GET", f"/v2/schemas/metadefs/{path}")
    assert document.status_code == 200
    assert document.json()["name"] == name
    assert md("GET", "/v2/schemas/metadefs/nothing").status_code == 404
