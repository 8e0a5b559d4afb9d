"""What a network driver does for the agent (network/agent.py): make one network's L2
data plane on this host match a `NetworkSetup` and one router's match a `RouterSetup`,
remove either, and say which ports are plugged. `fake.py` does nothing on the host;
`linuxbridge.py` builds namespaces, bridges, the DHCP port with dnsmasq, the security
groups' filters, port QoS, the host's leg on external networks, and routers with NAT.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from pocketstack.host.dnsmasq import DhcpConfig
from pocketstack.host.firewall import PortFilter, RouterNat
from pocketstack.host.netdev import Route
from pocketstack.host.qos import FloatingIpLimits, Limit


@dataclass(frozen=True, slots=True)
class DhcpSetup:
    """The network's DHCP port (plugged from `qdhcp-<id>`) and what its dnsmasq serves."""

    port_id: str
    mac: str
    cidrs: tuple[str, ...]  # the port's addresses with their prefix length
    config: DhcpConfig


@dataclass(frozen=True, slots=True)
class PortLimits:
    """A bound port's bandwidth limits, from the server's side (None: unlimited)."""

    tap: str
    egress: Limit | None = None
    ingress: Limit | None = None


@dataclass(frozen=True, slots=True)
class NetworkSetup:
    """One network as this host should have it."""

    network_id: str
    mtu: int
    dhcp: DhcpSetup | None
    filters: tuple[PortFilter, ...]
    limits: tuple[PortLimits, ...] = ()  # every port bound here, limited or not
    # External networks: the host's own addresses on them (their subnets' gateways), so
    # the host reaches floating IPs. None: the host is not on the network.
    host_leg: tuple[str, ...] | None = None


@dataclass(frozen=True, slots=True)
class RouterLeg:
    """A router's port on a network: a veth from the network's bridge into the router."""

    port_id: str
    network_id: str
    mac: str
    cidrs: tuple[str, ...]  # the port's addresses with their subnets' prefix length
    mtu: int


@dataclass(frozen=True, slots=True)
class RouterSetup:
    """One router as this host should have it."""

    router_id: str
    interfaces: tuple[RouterLeg, ...]
    gateway: RouterLeg | None  # its cidrs include the router's floating IPs as /32
    routes: tuple[Route, ...] = ()
    nat: RouterNat | None = None
    floating_limits: tuple[tuple[str, FloatingIpLimits], ...] = ()  # (floating IP, limits)


class Driver(Protocol):
    name: str

    def vif_details(self, network_id: str) -> dict[str, object] | None:
        """What a bound port's `binding:vif_details` says (None: the fake data plane's)."""
        ...

    def made(self) -> set[str]:
        """The networks this driver made on this host (found again after a restart)."""
        ...

    def ensure(self, setup: NetworkSetup) -> None: ...

    def remove(self, network_id: str) -> None: ...

    def plugged(self, network_id: str) -> set[str]:
        """The port devices (`tap…`) on the network's bridge now."""
        ...

    def routers_made(self) -> set[str]:
        """The routers this driver made on this host (found again after a restart)."""
        ...

    def ensure_router(self, setup: RouterSetup) -> None:
        """Make the router match; the networks it has legs on are set up already."""
        ...

    def remove_router(self, router_id: str) -> None: ...
