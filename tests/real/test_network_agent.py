"""The linuxbridge data plane driven by the network agent, with real namespace servers.

An in-process cloud (compute on the namespace driver, networking on
linuxbridge) boots two busybox servers on a tenant network; the test looks
as a user would, from inside a server's namespace: each got its fixed IP by
DHCP, one reaches the other's httpd, a security group without tcp/80 blocks
it and adding the rule opens it. Deleting the servers and the network leaves
nothing of this cloud on the host. Whatever happens, the servers and every
network the agent made are removed at the end.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest

from pocketstack.compute import hosts
from pocketstack.host import machine, namespaces, netdev
from pocketstack.image import builtin as builtin_images
from pocketstack.network import agent as network_agent
from pocketstack.network.drivers import linuxbridge
from tests.api.conftest import Cloud, cloud_factory, template_dir  # noqa: F401 (fixtures)


def _missing() -> str | None:
    if os.geteuid() != 0:
        return "needs root"
    if linuxbridge.missing() or namespaces.missing():
        return linuxbridge.missing() or namespaces.missing()
    absent = [t for t in ("curl", "busybox") if shutil.which(t) is None]
    return f"{', '.join(absent)} not installed" if absent else None


pytestmark = pytest.mark.skipif(_missing() is not None, reason=f"network agent: {_missing()}")

NET = "/networking/v2.0"


def eventually(check: Callable[[], Any], what: str, timeout: float = 15.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found:
            return found
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


class User:
    def __init__(self, cloud: Cloud) -> None:
        self.cloud, self.token = cloud, cloud.admin

    def __call__(self, method: str, path: str, body: Any = None, code: int | None = None) -> Any:
        headers = {"X-Auth-Token": self.token, "X-OpenStack-Nova-API-Version": "2.96"}
        answered = self.cloud.client.request(method, path, json=body, headers=headers)
        if code is not None:
            assert answered.status_code == code, answered.text
        return answered.json() if answered.content else None


def http(netns: str, address: str) -> str | None:
    done = subprocess.run(
        [
            "ip",
            "netns",
            "exec",
            netns,
            "curl",
            "-sf",
            "--noproxy",
            "*",
            "--max-time",
            "2",
            f"http://{address}/",
        ],
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
    )
    return done.stdout.strip() if done.returncode == 0 else None


def addresses(netns: str) -> set[str]:
    shown = subprocess.run(
        ["ip", "-n", netns, "-j", "addr", "show"], capture_output=True, text=True, check=False
    ).stdout
    return {a["local"] for link in json.loads(shown or "[]") for a in link.get("addr_info", [])}


def ours(network_id: str) -> list[str]:
    return [n for n in netdev.list_netns() if network_id in n]


def test_servers_get_dhcp_reach_each_other_and_security_groups_apply(
    cloud_factory: Any,  # noqa: F811 (the fixture imported above)
) -> None:
    settings = {"background": True, "compute_driver": "real", "network_driver": "linuxbridge"}
    servers: list[str] = []
    network_id = ""
    cleanups: list[Callable[[], None]] = []
    try:
        with cloud_factory(**settings) as cloud:
            user = User(cloud)
            agent: network_agent.NetworkAgent = cloud.runtime.state["network.agent"]
            driver = agent.driver
            assert isinstance(driver, linuxbridge.LinuxBridgeDriver)
            guests = hosts.driver_of(cloud.runtime, agent.host)
            # After the cloud stopped (its agents make nothing any more): the servers, then
            # every network, even ones the agent had no time to record.
            cleanups += [lambda: [guests.destroy(s) for s in servers]]
            cleanups += [lambda: [driver.remove(n) for n in {*driver.made(), network_id} if n]]
            admin_project = user("GET", "/identity/v3/projects?name=admin")["projects"][0]["id"]
            builtin_images.register_missing(cloud.runtime, admin_project, lambda _line: None)
            image = user("GET", "/image/v2/images?name=busybox")["images"][0]["id"]
            cidr = ipaddress.ip_network(
                f"100.{64 + uuid.uuid4().int % 60}.{uuid.uuid4().int % 250}.0/24"
            )
            network_id = user("POST", f"{NET}/networks", {"network": {"name": "n1"}}, 201)[
                "network"
            ]["id"]
            user(
                "POST",
                f"{NET}/subnets",
                {"subnet": {"network_id": network_id, "ip_version": 4, "cidr": str(cidr)}},
                201,
            )
            for name in ("vm-a", "vm-b"):
                body = {
                    "server": {
                        "name": name,
                        "flavorRef": "1",
                        "imageRef": image,
                        "networks": [{"uuid": network_id}],
                    }
                }
                servers.append(user("POST", "/compute/v2.1/servers", body, 202)["server"]["id"])
            ports = {}
            for server_id in servers:
                eventually(
                    lambda s=server_id: (
                        user("GET", f"/compute/v2.1/servers/{s}")["server"]["status"] == "ACTIVE"
                    ),
                    "ACTIVE",
                )
                port = user("GET", f"{NET}/ports?device_id={server_id}")["ports"][0]
                ports[server_id] = port
                assert port["binding:vif_details"] == {
                    "bridge_name": netdev.bridge_name(network_id),
                    "netns": netdev.network_netns(network_id),
                    "port_filter": True,
                }
                # Each server got its fixed IP by DHCP; its port is ACTIVE once plugged.
                fixed = port["fixed_ips"][0]["ip_address"]
                eventually(lambda s=server_id, f=fixed: f in addresses(f"ps-{s}"), "a lease")
                eventually(
                    lambda p=port["id"]: (
                        user("GET", f"{NET}/ports/{p}")["port"]["status"] == "ACTIVE"
                    ),
                    "the port ACTIVE",
                )
            a, b = servers
            b_ip = ports[b]["fixed_ips"][0]["ip_address"]
            assert eventually(lambda: http(f"ps-{a}", b_ip), "httpd of vm-b") == "vm-b"

            # A group without tcp/80 closes vm-b's httpd; the rule opens it again.
            group = user(
                "POST", f"{NET}/security-groups", {"security_group": {"name": "web"}}, 201
            )["security_group"]["id"]
            user(
                "PUT", f"{NET}/ports/{ports[b]['id']}", {"port": {"security_groups": [group]}}, 200
            )
            eventually(lambda: http(f"ps-{a}", b_ip) is None, "vm-b closed")
            user(
                "POST",
                f"{NET}/security-group-rules",
                {
                    "security_group_rule": {
                        "security_group_id": group,
                        "direction": "ingress",
                        "protocol": "tcp",
                        "port_range_min": 80,
                        "port_range_max": 80,
                    }
                },
                201,
            )
            assert eventually(lambda: http(f"ps-{a}", b_ip), "vm-b open") == "vm-b"

            # A qemu VM on the same network: its tap is on the bridge, it gets its address
            # by DHCP inside the VM and serves its page to vm-a.
            if machine.qemu_missing() is None:
                tiny_vm = user("GET", "/image/v2/images?name=tiny-vm")["images"][0]["id"]
                body = {"server": {"name": "vm-c", "flavorRef": "1", "imageRef": tiny_vm,
                                   "networks": [{"uuid": network_id}]}}  # fmt: skip
                servers.append(user("POST", "/compute/v2.1/servers", body, 202)["server"]["id"])
                c = servers[-1]
                eventually(
                    lambda: (
                        user("GET", f"/compute/v2.1/servers/{c}")["server"]["status"] == "ACTIVE"
                    ),
                    "the VM ACTIVE",
                )
                vm_port = user("GET", f"{NET}/ports?device_id={c}")["ports"][0]
                tap = netdev.tap_name(vm_port["id"])
                on_bridge = netdev.link(netdev.network_netns(network_id), tap)
                assert on_bridge is not None and on_bridge.master == netdev.bridge_name(network_id)
                vm_ip = vm_port["fixed_ips"][0]["ip_address"]
                assert eventually(lambda: http(f"ps-{a}", vm_ip), "the VM's httpd", 90) == "vm-c"

            # Deleting the servers and the network leaves nothing of them on the host.
            taps = [netdev.tap_name(p["id"]) for p in ports.values()]
            for server_id in servers:
                user("DELETE", f"/compute/v2.1/servers/{server_id}", code=204)
            for server_id in servers:
                eventually(
                    lambda s=server_id: user("GET", f"/compute/v2.1/servers/{s}").get(
                        "itemNotFound"
                    ),
                    "server gone",
                )
            eventually(
                lambda: not user("GET", f"{NET}/ports?device_owner=compute:nova")["ports"],
                "server ports gone",
            )
            user("DELETE", f"{NET}/networks/{network_id}", code=204)
            eventually(lambda: not ours(network_id), "the network's namespaces gone")
            assert network_id not in driver.made()
            assert not (driver.records / network_id).exists()
            assert not [link for link in netdev.links(None) if link.name in taps], (
                "no tap left in the root namespace"
            )
            dnsmasqs = subprocess.run(
                ["pgrep", "-af", "dnsmasq"], capture_output=True, text=True
            ).stdout
            assert network_id not in dnsmasqs
    finally:
        for cleanup in cleanups:
            with contextlib.suppress(Exception):
                cleanup()
    if network_id:
        assert not ours(network_id)
