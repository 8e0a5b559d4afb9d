"""Nova's reports and proxies as Tempest calls them: the image proxy, os-hosts, simple
tenant usage, the usage audit log, the nova-network proxies, server diagnostics,
migrations, server external events and extensions."""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from pocketstack.compute import metadata as compute_metadata
from tests.api.test_compute import Compute, _member


@pytest.fixture
def compute(cloud_factory: Any) -> Iterator[Compute]:
    with cloud_factory(background=True, fake_hosts=2) as cloud:
        yield Compute(cloud, cloud.admin)


def _project_id(compute: Compute, name: str) -> str:
    found = compute.cloud.client.get(
        f"/identity/v3/projects?name={name}", headers={"X-Auth-Token": compute.token}
    ).json()["projects"]
    return str(found[0]["id"])


def test_image_proxy_lists_shows_filters_and_retires_at_2_36(compute: Compute) -> None:
    image_id = compute.image()
    listed = compute("GET", "/images").json()["images"]
    assert [i["id"] for i in listed] == [image_id]
    assert [link["rel"] for link in listed[0]["links"]] == ["self", "bookmark", "alternate"]
    assert listed[0]["links"][2]["href"].endswith(f"/image/images/{image_id}")
    shown = compute("GET", f"/images/{image_id}").json()["image"]
    assert (shown["status"], shown["progress"], shown["minDisk"], shown["minRam"]) == (
        "ACTIVE", 100, 0, 0,
    )  # fmt: skip
    assert shown["OS-EXT-IMG-SIZE:size"] == 1024 and shown["metadata"] == {}
    assert shown["created"].endswith("Z") and "server" not in shown
    detail = compute("GET", "/images/detail?status=ACTIVE&name=tiny").json()["images"]
    assert [i["id"] for i in detail] == [image_id]
    assert compute("GET", "/images?name=other").json()["images"] == []
    assert compute("GET", "/images?type=snapshot").json()["images"] == []
    page = compute("GET", "/images?limit=1").json()
    assert "marker=" in page["images_links"][0]["href"]
    assert compute("GET", "/images?limit=0").status_code == 400
    missing = compute("GET", f"/images/{uuid.uuid4()}")
    assert missing.json()["itemNotFound"]["message"] == "Image not found."
    assert compute("GET", "/images", version="2.36").status_code == 404
    assert compute("GET", f"/images/{image_id}", version="2.35").status_code == 200

    server = str(uuid.uuid4())
    snapshot = {"metadata": {"image_type": "snapshot", "instance_uuid": server}}
    assert compute("POST", f"/images/{image_id}/metadata", snapshot).status_code == 200
    href = f"http://localhost/compute/v2.1/servers/{server}"
    by_server = compute("GET", f"/images/detail?server={href}&type=snapshot").json()["images"]
    assert [i["id"] for i in by_server] == [image_id]
    assert by_server[0]["server"]["id"] == server
    assert compute("GET", f"/images?server={uuid.uuid4()}").json()["images"] == []

    assert compute("DELETE", f"/images/{image_id}", version="2.36").status_code == 404
    assert compute("DELETE", f"/images/{image_id}").status_code == 204
    assert compute("GET", f"/images/{image_id}").status_code == 404
    assert compute("DELETE", f"/images/{image_id}").status_code == 404


def test_image_metadata_merge_replace_items_and_errors(compute: Compute) -> None:
    image_id = compute.image()
    path = f"/images/{image_id}/metadata"
    base = {"metadata": {"os_version": "value1", "os_distro": "value2"}}
    assert compute("PUT", path, base).json() == base
    merged = compute("POST", path, {"metadata": {"os_version": "alt1", "architecture": "x"}})
    assert merged.json()["metadata"] == {
        "os_version": "alt1", "os_distro": "value2", "architecture": "x",
    }  # fmt: skip
    replaced = {"metadata": {"os_version": "value2", "architecture": "value3"}}
    assert compute("PUT", path, replaced).json() == replaced
    assert compute("GET", path).json() == replaced
    assert compute("GET", f"{path}/architecture").json() == {"meta": {"architecture": "value3"}}
    assert compute("GET", f"{path}/nothing").status_code == 404
    item = compute("PUT", f"{path}/os_version", {"meta": {"os_version": "alt"}})
    assert item.json() == {"meta": {"os_version": "alt"}}
    mismatch = compute("PUT", f"{path}/os_version", {"meta": {"other": "x"}})
    assert mismatch.json()["badRequest"]["message"] == "Request body and URI mismatch"
    two = compute("PUT", f"{path}/a", {"meta": {"a": "1", "b": "2"}})
    assert two.status_code == 400
    assert compute("DELETE", f"{path}/os_version").status_code == 204
    assert compute("GET", path).json() == {"metadata": {"architecture": "value3"}}
    assert compute("DELETE", f"{path}/os_version").status_code == 404
    assert compute("POST", path, {"metadata": {"k": 1}}).status_code == 400
    assert compute("POST", path, {"metadata": {"bad/key": "v"}}).status_code == 400
    unknown = f"/images/{uuid.uuid4()}/metadata"
    assert compute("GET", unknown).status_code == 404
    assert compute("POST", unknown, base).status_code == 404
    assert compute("PUT", f"{unknown}/os_distro", {"meta": {"os_distro": "x"}}).status_code == 404
    assert compute("DELETE", f"{unknown}/os_distro").status_code == 404
    too_many = {"metadata": {f"k{i}": "v" for i in range(129)}}
    assert compute("PUT", path, too_many).status_code == 403
    assert compute("GET", path, version="2.38").status_code == 200
    assert compute("GET", path, version="2.39").status_code == 404
    # The image service's own rules: another project may not change a public image.
    tenant = _member(compute, "img-tenant")
    assert compute("GET", path, token=tenant).status_code == 200
    assert compute("POST", path, base, token=tenant).status_code == 403


def test_hosts_list_show_usage_and_actions_until_2_42(compute: Compute) -> None:
    server = compute.active("on-host")
    host = server["OS-EXT-SRV-ATTR:host"]
    hosts = compute("GET", "/os-hosts").json()["hosts"]
    computes = sorted(h["host_name"] for h in hosts if h["service"] == "compute")
    assert computes == ["fake-host-1", "fake-host-2"]
    assert {h["service"] for h in hosts} == {"compute", "scheduler", "conductor"}
    assert {h["zone"] for h in hosts if h["service"] != "compute"} == {"internal"}
    nova = compute("GET", "/os-hosts?zone=nova").json()["hosts"]
    assert sorted(h["host_name"] for h in nova) == computes
    assert len(compute("GET", "/os-hosts?zone=").json()["hosts"]) == len(hosts)
    assert compute("GET", "/os-hosts?zone=xxx").json()["hosts"] == []

    resources = [r["resource"] for r in compute("GET", f"/os-hosts/{host}").json()["host"]]
    assert [r["project"] for r in resources[:3]] == ["(total)", "(used_now)", "(used_max)"]
    assert all(r["host"] == host for r in resources)
    assert (resources[1]["cpu"], resources[1]["memory_mb"]) == (1, 512)
    assert (resources[2]["cpu"], resources[2]["memory_mb"], resources[2]["disk_gb"]) == (1, 512, 1)
    assert resources[3]["project"] == server["tenant_id"]
    assert compute("GET", "/os-hosts/nonexistent").status_code == 404

    body = {"status": "enable", "maintenance_mode": "disable"}
    updated = compute("PUT", f"/os-hosts/{host}", body).json()
    assert updated == {"host": host, "status": "enabled", "maintenance_mode": "off_maintenance"}
    assert compute("PUT", f"/os-hosts/{host}", {"status": "invalid"}).status_code == 400
    assert compute("PUT", f"/os-hosts/{host}", {}).status_code == 400
    assert compute("PUT", "/os-hosts/nonexistent", body).status_code == 404
    for action in ("startup", "shutdown", "reboot"):
        answered = compute("GET", f"/os-hosts/{host}/{action}").json()
        assert answered == {"host": host, "power_action": action}
        assert compute("GET", f"/os-hosts/nonexistent/{action}").status_code == 404
    tenant = _member(compute, "hosts-tenant")
    assert compute("GET", "/os-hosts", token=tenant).status_code == 403
    assert compute("GET", f"/os-hosts/{host}", token=tenant).status_code == 403
    assert compute("PUT", f"/os-hosts/{host}", body, token=tenant).status_code == 403
    assert compute("GET", f"/os-hosts/{host}/reboot", token=tenant).status_code == 403
    assert compute("GET", "/os-hosts", version="2.43").status_code == 404


def test_simple_tenant_usage_per_project_and_all(compute: Compute) -> None:
    server = compute.active("billed")
    project = server["tenant_id"]
    window = "start=2000-01-01T00:00:00&end=2999-01-01T00:00:00.000000"
    listed = compute("GET", f"/os-simple-tenant-usage?{window}&detailed=1").json()
    usage = listed["tenant_usages"][0]
    assert len(usage) == 8 and usage["tenant_id"] == project
    served = usage["server_usages"][0]
    assert (served["instance_id"], served["name"], served["flavor"]) == (
        server["id"], "billed", "m1.tiny",
    )  # fmt: skip
    assert (served["vcpus"], served["memory_mb"], served["local_gb"]) == (1, 512, 1)
    assert served["state"] == "active" and served["ended_at"] is None
    assert served["hours"] > 0 and usage["total_vcpus_usage"] == pytest.approx(served["hours"])
    brief = compute("GET", f"/os-simple-tenant-usage?{window}").json()["tenant_usages"][0]
    assert "server_usages" not in brief and len(brief) == 7
    shown = compute("GET", f"/os-simple-tenant-usage/{project}?{window}").json()["tenant_usage"]
    assert len(shown) == 8 and shown["server_usages"][0]["instance_id"] == server["id"]
    other = compute("GET", f"/os-simple-tenant-usage/nobody?{window}").json()
    assert other == {"tenant_usage": {}}
    swapped = "start=2999-01-01T00:00:00&end=2000-01-01T00:00:00"
    assert compute("GET", f"/os-simple-tenant-usage/{project}?{swapped}").status_code == 400
    assert compute("GET", "/os-simple-tenant-usage?start=yesterday").status_code == 400
    assert compute("GET", f"/os-simple-tenant-usage/?{window}").status_code == 404
    # Before the server launched: nothing.
    early = "start=2000-01-01T00:00:00&end=2001-01-01T00:00:00"
    assert compute("GET", f"/os-simple-tenant-usage?{early}").json()["tenant_usages"] == []

    compute.active("second")
    listing = f"/os-simple-tenant-usage?{window}&detailed=1"
    paged = compute("GET", f"{listing}&limit=1", version="2.40").json()
    assert len(paged["tenant_usages"][0]["server_usages"]) == 1
    link = paged["tenant_usages_links"][0]["href"]
    marker = link.split("marker=")[1]
    rest = compute("GET", f"{listing}&marker={marker}", version="2.40")
    assert len(rest.json()["tenant_usages"][0]["server_usages"]) == 1
    assert "tenant_usages_links" not in rest.json()
    bad = compute("GET", f"/os-simple-tenant-usage?{window}&marker=nope", version="2.40")
    assert bad.status_code == 400

    compute("DELETE", f"/servers/{server['id']}")
    deadline = time.monotonic() + 10
    while True:
        ended = compute("GET", f"/os-simple-tenant-usage/{project}?{window}").json()
        gone = {s["instance_id"]: s for s in ended["tenant_usage"]["server_usages"]}[server["id"]]
        if gone["ended_at"] is not None or time.monotonic() > deadline:
            break
        time.sleep(0.02)
    assert gone["state"] == "terminated" and gone["uptime"] >= 0

    tenant = _member(compute, "usage-tenant")
    tenant_project = _project_id(compute, "usage-tenant")
    own = compute("GET", f"/os-simple-tenant-usage/{tenant_project}?{window}", token=tenant)
    assert own.json() == {"tenant_usage": {}}
    assert compute("GET", f"/os-simple-tenant-usage/{project}", token=tenant).status_code == 403
    assert compute("GET", "/os-simple-tenant-usage", token=tenant).status_code == 403


def test_instance_usage_audit_log_without_the_task(compute: Compute) -> None:
    logs = compute("GET", "/os-instance_usage_audit_log").json()["instance_usage_audit_logs"]
    assert logs["num_hosts"] == 2 and logs["num_hosts_not_run"] == 2
    assert sorted(logs["hosts_not_run"]) == ["fake-host-1", "fake-host-2"]
    assert logs["overall_status"] == "0 of 2 hosts done. 0 errors." and logs["log"] == {}
    shown = compute("GET", "/os-instance_usage_audit_log/2026-11-25%2006%3A10%3A30").json()
    log = shown["instance_usage_audit_log"]
    assert (log["period_beginning"], log["period_ending"]) == (
        "2026-10-01 00:00:00", "2026-11-01 00:00:00",
    )  # fmt: skip
    january = compute("GET", "/os-instance_usage_audit_log/2026-01-01 00:00:00.5").json()
    assert january["instance_usage_audit_log"]["period_beginning"] == "2025-12-01 00:00:00"
    invalid = compute("GET", "/os-instance_usage_audit_log/invalid_time")
    assert invalid.json()["badRequest"]["message"] == "Invalid timestamp for date invalid_time"
    tenant = _member(compute, "audit-tenant")
    assert compute("GET", "/os-instance_usage_audit_log", token=tenant).status_code == 403


def test_network_proxies_without_a_networking_service(compute: Compute) -> None:
    assert compute("GET", "/os-networks").json() == {"networks": []}
    assert compute("GET", "/os-tenant-networks").json() == {"networks": []}
    missing = compute("GET", f"/os-networks/{uuid.uuid4()}")
    assert missing.json()["itemNotFound"]["message"] == "Network not found"
    assert compute("GET", f"/os-tenant-networks/{uuid.uuid4()}").status_code == 404
    assert compute("GET", "/os-networks", version="2.36").status_code == 404
    tenant = _member(compute, "net-tenant")
    assert compute("GET", "/os-networks", token=tenant).status_code == 200


def test_server_diagnostics_per_microversion(compute: Compute) -> None:
    server = compute.active("diag")
    path = f"/servers/{server['id']}/diagnostics"
    legacy = compute("GET", path).json()
    assert legacy and legacy["memory"] == 512 * 1024
    diagnostics = compute("GET", path, version="2.48").json()
    assert diagnostics["state"] == "running" and diagnostics["driver"] == "libvirt"
    assert diagnostics["hypervisor"] == "fake" and diagnostics["num_cpus"] == 1
    assert diagnostics["memory_details"] == {"maximum": 512, "used": None}
    assert diagnostics["cpu_details"] == diagnostics["nic_details"] == []
    assert diagnostics["disk_details"] == [] and isinstance(diagnostics["uptime"], int)
    assert compute("GET", f"/servers/{uuid.uuid4()}/diagnostics").status_code == 404
    tenant = _member(compute, "diag-tenant")
    booted = compute.boot("mine", token=tenant)
    own = booted.json()["server"]["id"]
    compute.wait(own, "ACTIVE", token=tenant)
    assert compute("GET", f"/servers/{own}/diagnostics", token=tenant).status_code == 403
    assert compute("GET", path, token=tenant).status_code == 404
    compute("POST", f"/servers/{server['id']}/action", {"os-stop": None})
    compute.wait(server["id"], "SHUTOFF")
    stopped = compute("GET", path, version="2.48")
    assert stopped.status_code == 409
    assert "power state shutdown" in stopped.json()["conflictingRequest"]["message"]


def test_migrations_list_is_empty_and_admin_only(compute: Compute) -> None:
    assert compute("GET", "/os-migrations").json() == {"migrations": []}
    assert compute("GET", "/os-migrations", version="2.80").json() == {"migrations": []}
    assert compute("GET", "/os-migrations?marker=x", version="2.59").status_code == 400
    bad_time = compute("GET", "/os-migrations?changes-since=soon", version="2.59")
    assert bad_time.status_code == 400
    tenant = _member(compute, "mig-tenant")
    assert compute("GET", "/os-migrations", token=tenant).status_code == 403


def test_server_external_events_per_event_codes(compute: Compute) -> None:
    server = compute.active("evented")
    events = [{"name": "network-changed", "server_uuid": server["id"]}]
    accepted = compute("POST", "/os-server-external-events", {"events": events})
    assert accepted.status_code == 200
    assert accepted.json()["events"] == [{**events[0], "status": "completed", "code": 200}]
    unknown = str(uuid.uuid4())
    mixed = [
        {"name": "network-vif-plugged", "server_uuid": server["id"], "tag": "port"},
        {"name": "network-vif-unplugged", "server_uuid": unknown, "status": "failed"},
        {"name": "volume-extended", "server_uuid": server["id"]},
    ]
    partial = compute("POST", "/os-server-external-events", {"events": mixed}, version="2.51")
    assert partial.status_code == 207
    assert [e["code"] for e in partial.json()["events"]] == [200, 404, 400]
    assert partial.json()["events"][0]["tag"] == "port"
    all_unknown = [{"name": "network-changed", "server_uuid": unknown}]
    assert compute("POST", "/os-server-external-events", {"events": all_unknown}).status_code == 207
    too_new = compute("POST", "/os-server-external-events", {"events": mixed})
    assert too_new.status_code == 400
    assert compute("POST", "/os-server-external-events", {"events": []}).status_code == 400
    not_uuid = [{"name": "network-changed", "server_uuid": "nope"}]
    assert compute("POST", "/os-server-external-events", {"events": not_uuid}).status_code == 400
    tenant = _member(compute, "events-tenant")
    refused = compute("POST", "/os-server-external-events", {"events": events}, token=tenant)
    assert refused.status_code == 403


def test_extensions_list_and_show(compute: Compute) -> None:
    extensions = compute("GET", "/extensions").json()["extensions"]
    assert "Hosts" in {e["name"] for e in extensions}
    assert all(
        set(e) == {"alias", "name", "description", "namespace", "updated", "links"}
        for e in extensions
    )
    shown = compute("GET", "/extensions/os-consoles").json()["extension"]
    assert shown["alias"] == "os-consoles"
    assert compute("GET", "/extensions/os-nothing").status_code == 404
    tenant = _member(compute, "ext-tenant")
    assert compute("GET", "/extensions", token=tenant).status_code == 200


def test_metadata_documents_tell_a_server_about_itself(compute: Compute) -> None:
    key = compute("POST", "/os-keypairs", {"keypair": {"name": "meta-key"}}).json()["keypair"]
    user_data = base64.b64encode(b"#!/bin/sh\necho hi\n").decode()
    server = compute.active("meta-vm", key_name="meta-key", user_data=user_data,
                            metadata={"role": "web"})  # fmt: skip
    ctx = compute.cloud.runtime.service_context("metadata-test")
    port = compute_metadata.PortAddresses("p1", "n1", "fa:16:3e:00:00:01", 1450, "100.64.0.5")

    def fetch(path: str) -> tuple[str, bytes] | None:
        return compute_metadata.document(ctx, server["id"], path, port)

    versions = fetch("/openstack")
    assert versions is not None and versions[1].splitlines()[-1] == b"latest"
    found = fetch("/openstack/latest/meta_data.json")
    assert found is not None and found[0] == "application/json"
    meta = json.loads(found[1])
    assert (meta["uuid"], meta["name"], meta["hostname"]) == (server["id"], "meta-vm", "meta-vm")
    assert meta["meta"] == {"role": "web"}
    assert meta["public_keys"] == {"meta-key": key["public_key"]}
    assert fetch("/openstack/2013-10-17/user_data") == (
        "application/octet-stream",
        b"#!/bin/sh\necho hi\n",
    )
    listing = fetch("/openstack/latest/")
    assert listing is not None and b"user_data" in listing[1].split()
    network = fetch("/openstack/latest/network_data.json")
    assert network is not None
    assert json.loads(network[1])["links"][0]["ethernet_mac_address"] == "fa:16:3e:00:00:01"
    assert fetch("/latest/meta-data/instance-id") == ("text/plain", server["id"].encode())
    assert fetch("/latest/meta-data/local-ipv4") == ("text/plain", b"100.64.0.5")
    keys = fetch("/latest/meta-data/public-keys/")
    assert keys == ("text/plain", b"0=meta-key/")
    assert fetch("/latest/user-data") == ("application/octet-stream", b"#!/bin/sh\necho hi\n")
    for missing in ("/openstack/1999-01-01/meta_data.json", "/latest/meta-data/nothing", "/x"):
        assert fetch(missing) is None
    assert compute_metadata.document(ctx, str(uuid.uuid4()), "/openstack", port) is None
