"""A server's ports as both real drivers plug them.

The guest record keeps each NIC (port, MAC, MTU, and the bridge and namespace
its binding's vif_details name); a boot waits a little for the network agent
to have made the bridge, since the agent alone makes and removes it, and once
plugged, for the agent to have made the port's filter (the bridge passes nothing
for a port before): what Nova waits for as the port's vif-plugged event.
"""

from __future__ import annotations

import time
from typing import Any

from pocketstack.compute.drivers import DriverError, GuestSpec
from pocketstack.host import firewall, netdev

BRIDGE_WAIT_S = 10.0  # for the network agent to make a network's bridge on this host
WIRING_WAIT_S = 30.0  # for it to filter a plugged port (Nova waits for vif-plugged)


def records(spec: GuestSpec) -> tuple[dict[str, Any], ...]:
    """The spec's NICs as a guest record keeps them."""
    return tuple(
        {"port_id": n.port_id, "mac": n.mac, "mtu": n.mtu, "bridge": n.bridge, "netns": n.netns}
        for n in spec.nics
    )


def wait_for_bridge(netns: str, bridge: str) -> bool:
    deadline = time.monotonic() + BRIDGE_WAIT_S
    while not (netdev.netns_exists(netns) and netdev.link(netns, bridge) is not None):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def pluggable(nic: dict[str, Any]) -> bool:
    """Does the binding name a bridge to plug into (not so on the fake data plane)?"""
    return bool(nic.get("bridge") and nic.get("netns"))


def wait_for_wiring(name: str, nic: dict[str, Any]) -> None:
    """Wait until the network agent filters the plugged port; a port it never wires
    fails the boot, as Nova's vif_plugging_is_fatal does."""
    tap = netdev.tap_name(nic["port_id"])
    deadline = time.monotonic() + WIRING_WAIT_S
    while not firewall.wired(nic["netns"], tap):
        if time.monotonic() > deadline:
            raise DriverError(
                f"{name}: port {nic['port_id']} was not wired by the network agent within "
                f"{WIRING_WAIT_S:.0f} s (is it running? see its log)"
            )
        time.sleep(0.02)
