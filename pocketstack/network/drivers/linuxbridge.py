"""The `linuxbridge` data plane, L2 part: per network a `qnet-<id>` namespace with its
bridge and security-group filters, and a `qdhcp-<id>` namespace with the DHCP port and
dnsmasq (host/netdev.py, host/dnsmasq.py, host/firewall.py).

Other clouds on the same machine use the same namespace prefixes, so what this cloud
made is recorded as a directory per network under `<workdir>/networks/` (made before
anything on the host, removed last): only those are ever removed as orphans. Routers,
NAT, VXLAN to other hosts and QoS are not built here yet; they would be further steps
of `ensure` with their own records.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from pocketstack.host import dnsmasq, firewall, netdev
from pocketstack.network.drivers import NetworkSetup

REQUIRED_COMMANDS = ("ip", "nsenter", "iptables-restore", "ip6tables-restore", "nft", "dnsmasq")


def missing() -> str | None:
    """Why this machine cannot run the driver, or None."""
    if os.geteuid() != 0:
        return "not root"
    absent = [c for c in REQUIRED_COMMANDS if shutil.which(c) is None]
    return f"{', '.join(absent)} not installed" if absent else None


class LinuxBridgeDriver:
    name = "linuxbridge"

    def __init__(self, workdir: Path) -> None:
        self.records = workdir / "networks"

    def _dir(self, network_id: str) -> Path:
        return self.records / network_id

    def vif_details(self, network_id: str) -> dict[str, object] | None:
        return {
            "bridge_name": netdev.bridge_name(network_id),
            "netns": netdev.network_netns(network_id),
            "port_filter": True,
        }

    def made(self) -> set[str]:
        if not self.records.is_dir():
            return set()
        return {entry.name for entry in self.records.iterdir() if entry.is_dir()}

    def ensure(self, setup: NetworkSetup) -> None:
        network_id = setup.network_id
        self._dir(network_id).mkdir(parents=True, exist_ok=True)
        bridge_ns = netdev.network_netns(network_id)
        bridge = netdev.bridge_name(network_id)
        netdev.create_netns(bridge_ns)
        netdev.ensure_bridge(bridge_ns, bridge, mtu=setup.mtu)
        netdev.enable_bridge_netfilter(bridge_ns)
        dhcp_ns = netdev.dhcp_netns(network_id)
        dhcp_dir = self._dir(network_id) / "dhcp"
        if setup.dhcp is None:
            dnsmasq.stop(dhcp_dir, purge=True)
            netdev.delete_netns(dhcp_ns)
        else:
            dhcp = setup.dhcp
            netdev.create_netns(dhcp_ns)
            inner = netdev.dhcp_port_name(dhcp.port_id)
            netdev.ensure_veth(
                netdev.tap_name(dhcp.port_id),
                inner,
                netns=bridge_ns,
                peer_netns=dhcp_ns,
                mtu=setup.mtu,
                peer_mac=dhcp.mac,
                master=bridge,
            )
            netdev.set_addresses(dhcp_ns, inner, dhcp.cidrs)
            dnsmasq.ensure(dhcp_ns, dhcp_dir, dhcp.config)
        firewall.apply_port_filters(bridge_ns, setup.filters)

    def remove(self, network_id: str) -> None:
        """Everything of the network: dnsmasq, both namespaces (their devices and the ports'
        veths go with them), then the record."""
        dnsmasq.stop(self._dir(network_id) / "dhcp", purge=True)
        netdev.delete_netns(netdev.dhcp_netns(network_id))
        netdev.delete_netns(netdev.network_netns(network_id))
        shutil.rmtree(self._dir(network_id), ignore_errors=True)

    def plugged(self, network_id: str) -> set[str]:
        bridge_ns = netdev.network_netns(network_id)
        if not netdev.netns_exists(bridge_ns):
            return set()
        bridge = netdev.bridge_name(network_id)
        return {link.name for link in netdev.links(bridge_ns) if link.master == bridge}
