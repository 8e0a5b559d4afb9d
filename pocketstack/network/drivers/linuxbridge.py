"""The `linuxbridge` data plane: per network a `qnet-<id>` namespace with its bridge,
security-group filters and ports' QoS, and a `qdhcp-<id>` namespace with the DHCP port
and dnsmasq; on external networks a veth to the host's root namespace holding the
subnets' gateway addresses; per router a `qrouter-<id>` namespace with a veth leg on
each of its networks' bridges, its routes and its NAT and floating-IP limits
(host/netdev.py, host/dnsmasq.py, host/firewall.py, host/qos.py).

Other clouds on the same machine use the same namespace prefixes, so what this cloud
made is recorded as a directory per network under `<workdir>/networks/` and per
router under `<workdir>/routers/` (made before anything on the host, removed last):
only those are ever removed as orphans.
"""

from __future__ import annotations

import ipaddress
import os
import shutil
from pathlib import Path

from pocketstack.host import dnsmasq, firewall, netdev, qos
from pocketstack.host.commands import HostCommandError
from pocketstack.network.drivers import NetworkSetup, PortLimits, RouterLeg, RouterSetup

REQUIRED_COMMANDS = (
    "ip", "bridge", "tc", "nsenter", "sysctl", "iptables-restore", "ip6tables-restore", "nft",
    "dnsmasq", "busybox",
)  # fmt: skip


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
        self.router_records = workdir / "routers"
        # The limits each tap has now. Empty after a start, so the first pass sets (or
        # clears) every port's limits and later ones touch only ports whose limits moved.
        self._limits: dict[str, PortLimits] = {}

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
        bridge_end, host_end = netdev.host_leg_names(network_id)
        if setup.host_leg is None:
            netdev.delete_link(None, host_end)
        else:
            _refuse_taken_prefixes(host_end, setup.host_leg)
            netdev.ensure_veth(bridge_end, host_end, netns=bridge_ns, peer_netns=None,
                               mtu=setup.mtu, master=bridge)  # fmt: skip
            netdev.set_addresses(None, host_end, setup.host_leg)
        firewall.apply_port_filters(bridge_ns, setup.filters)
        self._apply_limits(bridge_ns, bridge, setup.limits)

    def _apply_limits(self, bridge_ns: str, bridge: str, limits: tuple[PortLimits, ...]) -> None:
        """Each plugged port's limits, where they differ from what it has (a port not plugged
        yet gets them on a later pass)."""
        on_bridge = {link.name for link in netdev.links(bridge_ns) if link.master == bridge}
        for wanted in limits:
            if wanted.tap not in on_bridge:
                self._limits.pop(wanted.tap, None)
            elif self._limits.get(wanted.tap) != wanted:
                qos.set_port_limits(bridge_ns, wanted.tap, egress=wanted.egress,
                                    ingress=wanted.ingress)  # fmt: skip
                self._limits[wanted.tap] = wanted

    def remove(self, network_id: str) -> None:
        """Everything of the network: dnsmasq, both namespaces (their devices and the ports'
        veths go with them), then the record."""
        dnsmasq.stop(self._dir(network_id) / "dhcp", purge=True)
        netdev.delete_netns(netdev.dhcp_netns(network_id))
        netdev.delete_link(None, netdev.host_leg_names(network_id)[1])
        netdev.delete_netns(netdev.network_netns(network_id))
        shutil.rmtree(self._dir(network_id), ignore_errors=True)

    def plugged(self, network_id: str) -> set[str]:
        bridge_ns = netdev.network_netns(network_id)
        if not netdev.netns_exists(bridge_ns):
            return set()
        bridge = netdev.bridge_name(network_id)
        return {link.name for link in netdev.links(bridge_ns) if link.master == bridge}

    # Routers ---------------------------------------------------------------------------

    def routers_made(self) -> set[str]:
        if not self.router_records.is_dir():
            return set()
        return {entry.name for entry in self.router_records.iterdir() if entry.is_dir()}

    def ensure_router(self, setup: RouterSetup) -> None:
        (self.router_records / setup.router_id).mkdir(parents=True, exist_ok=True)
        router_ns = netdev.router_netns(setup.router_id)
        netdev.create_netns(router_ns)
        netdev.enable_forwarding(router_ns)
        wanted = {netdev.router_port_name(leg.port_id): leg for leg in setup.interfaces}
        if setup.gateway is not None:
            wanted[netdev.gateway_port_name(setup.gateway.port_id)] = setup.gateway
        for link in netdev.links(router_ns):
            if link.name.startswith(("qr-", "qg-")) and link.name not in wanted:
                netdev.delete_link(router_ns, link.name)  # its bridge end goes with it
        for name, leg in wanted.items():
            _plug_leg(router_ns, name, leg)
        netdev.set_routes(router_ns, setup.routes)
        firewall.apply_router_nat(router_ns, setup.nat)
        if setup.gateway is not None:
            qos.set_floating_ip_limits(router_ns, netdev.gateway_port_name(setup.gateway.port_id),
                                       dict(setup.floating_limits))  # fmt: skip

    def remove_router(self, router_id: str) -> None:
        """The router's namespace (its legs go with it, and their bridge ends), then its
        record."""
        netdev.delete_netns(netdev.router_netns(router_id))
        shutil.rmtree(self.router_records / router_id, ignore_errors=True)


def _plug_leg(router_ns: str, name: str, leg: RouterLeg) -> None:
    """A router's leg: a veth from the network's bridge (`tap…`) to `name` in the router."""
    netdev.ensure_veth(
        netdev.tap_name(leg.port_id),
        name,
        netns=netdev.network_netns(leg.network_id),
        peer_netns=router_ns,
        mtu=leg.mtu,
        peer_mac=leg.mac,
        master=netdev.bridge_name(leg.network_id),
    )
    netdev.announce(router_ns, name, netdev.set_addresses(router_ns, name, leg.cidrs))


def _refuse_taken_prefixes(host_end: str, cidrs: tuple[str, ...]) -> None:
    """An external subnet the host already reaches through another device (another cloud's
    external network, a real LAN) would be ambiguous: say so instead of adding it."""
    for cidr in cidrs:
        prefix = ipaddress.ip_interface(cidr).network
        for route in netdev.routes(None, proto=None):
            if (
                route.dev != host_end
                and route.dst != "default"
                and ipaddress.ip_network(route.dst).overlaps(prefix)
            ):
                raise HostCommandError(
                    ["ip", "addr", "add", cidr, "dev", host_end],
                    f"{route.dst} is already routed through {route.dev} on this host; "
                    "start the cloud with another --external-cidr",
                )
