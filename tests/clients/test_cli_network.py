"""Networking through the real `openstack` CLI: what a user types to build a network."""

from __future__ import annotations

from collections.abc import Callable

from tests.clients.conftest import OpenStackCli


def test_a_user_builds_a_network_with_subnets_ports_and_a_security_group(
    osc: OpenStackCli, unique: Callable[[str], str]
) -> None:
    name = unique("net")
    network = osc("network", "create", name, "-f", "json").json()
    assert network["status"] == "ACTIVE" and network["mtu"] == 1450
    v4 = osc(
        "subnet",
        "create",
        "--network",
        name,
        "--subnet-range",
        "100.64.60.0/24",
        "--dns-nameserver",
        "198.18.0.1",
        f"{name}-v4",
        "-f",
        "json",
    ).json()
    assert v4["gateway_ip"] == "100.64.60.1"
    osc(
        "subnet",
        "create",
        "--network",
        name,
        "--ip-version",
        "6",
        "--ipv6-ra-mode",
        "slaac",
        "--ipv6-address-mode",
        "slaac",
        "--subnet-range",
        "fd00:60::/64",
        f"{name}-v6",
    )
    group = osc("security group", "create", unique("web"), "-f", "json").json()
    osc("security group rule", "create", "--protocol", "tcp", "--dst-port", "80", group["id"])
    port = osc(
        "port",
        "create",
        "--network",
        name,
        "--security-group",
        group["id"],
        "--fixed-ip",
        "ip-address=100.64.60.10",
        "--dns-name",
        "web",
        unique("port"),
        "-f",
        "json",
    ).json()
    addresses = {f["ip_address"] for f in port["fixed_ips"]}
    assert "100.64.60.10" in addresses
    assert any(a.startswith("fd00:60::") for a in addresses)
    assert port["security_group_ids"] == [group["id"]]
    listed = osc("port", "list", "--network", name, "-f", "json").json()
    assert [p["ID"] for p in listed] == [port["id"]]
    clash = osc(
        "port",
        "create",
        "--network",
        name,
        "--fixed-ip",
        "ip-address=100.64.60.10",
        unique("clash"),
        check=False,
    )
    assert clash.returncode != 0 and "already allocated" in clash.stderr
    osc("network", "set", "--name", f"{name}-renamed", "--tag", "blue", name)
    shown = osc("network", "show", f"{name}-renamed", "-f", "json").json()
    assert shown["tags"] == ["blue"] and shown["revision_number"] > network["revision_number"]
    busy = osc("network", "delete", f"{name}-renamed", check=False)
    assert busy.returncode != 0
    osc("port", "delete", port["id"])
    osc("security group", "delete", group["id"])
    osc("network", "delete", f"{name}-renamed")
    assert osc("network", "show", f"{name}-renamed", check=False).returncode != 0


def _quota(osc: OpenStackCli) -> dict[str, int | None]:
    rows = osc("quota", "show", "--network", "admin", "-f", "json").json()
    return {row["Resource"]: row["Limit"] for row in rows}


def test_network_quotas_show_and_change(osc: OpenStackCli) -> None:
    assert _quota(osc)["networks"] == 100
    osc("quota", "set", "--networks", "77", "admin")
    assert _quota(osc)["networks"] == 77
    osc("quota", "set", "--networks", "100", "admin")
