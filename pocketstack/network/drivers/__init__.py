"""What a network driver does for the agent (network/agent.py): make one network's L2
data plane on this host match a `NetworkSetup`, remove a network's, and say which ports
are plugged. `fake.py` does nothing on the host; `linuxbridge.py` builds namespaces,
bridges, the DHCP port with dnsmasq and the security groups' filters.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from pocketstack.host.dnsmasq import DhcpConfig
from pocketstack.host.firewall import PortFilter


@dataclass(frozen=True, slots=True)
class DhcpSetup:
    """The network's DHCP port (plugged from `qdhcp-<id>`) and what its dnsmasq serves."""

    port_id: str
    mac: str
    cidrs: tuple[str, ...]  # the port's addresses with their prefix length
    config: DhcpConfig


@dataclass(frozen=True, slots=True)
class NetworkSetup:
    """One network as this host should have it."""

    network_id: str
    mtu: int
    dhcp: DhcpSetup | None
    filters: tuple[PortFilter, ...]


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
