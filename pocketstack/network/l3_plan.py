"""The network agent's pure plan for routers: from what the service holds (facts.py) to
the `RouterSetup` each router should have on the host, and the bandwidth limits QoS
policies give ports and floating IPs.

A router's legs are its ports (interfaces on tenant subnets, the gateway on an
external network) with their addresses; the gateway leg also carries the
router's floating IPs as /32s, so the router answers ARP for them. It routes
by default to its external subnet's gateway (the host's leg on that network,
see agent.py), plus its extra routes. NAT: its IPv4 interface subnets SNAT to
the gateway address when `enable_snat` is on, each associated floating IP is
1:1 NAT to its fixed address, and port forwardings DNAT from the floating IP.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping, Sequence
from typing import cast

from pocketstack.host import netdev, qos
from pocketstack.host.firewall import FloatingIp, ForwardProtocol, PortForward, RouterNat
from pocketstack.network import routers
from pocketstack.network.drivers import RouterLeg, RouterSetup
from pocketstack.network.facts import (
    BandwidthLimit,
    Facts,
    FloatingFacts,
    NetworkFacts,
    PortFacts,
    QosFacts,
    RouterFacts,
    SubnetFacts,
)


def limit_of(bandwidth: BandwidthLimit | None) -> qos.Limit | None:
    if bandwidth is None:
        return None
    return qos.Limit(bandwidth.max_kbps, bandwidth.max_burst_kbps or None)


def policy_limits(
    policy_id: str | None, policies: Mapping[str, QosFacts]
) -> tuple[qos.Limit | None, qos.Limit | None]:
    """(egress, ingress) of a policy; no policy (or one without rules) limits nothing."""
    policy = policies.get(policy_id) if policy_id else None
    if policy is None:
        return None, None
    return limit_of(policy.egress), limit_of(policy.ingress)


def _leg(port: PortFacts, network: NetworkFacts, extra: Iterable[str] = ()) -> RouterLeg:
    prefixes = {s.id: ipaddress.ip_network(s.cidr, strict=False).prefixlen for s in network.subnets}
    cidrs = [f"{ip}/{prefixes[sid]}" for sid, ip in port.ips if sid in prefixes]
    return RouterLeg(port.id, port.network_id, port.mac, (*cidrs, *extra), network.mtu)


def _v4(address: str) -> bool:
    return ipaddress.ip_address(address).version == 4


def _forwards(floating: FloatingFacts) -> list[PortForward]:
    return [
        PortForward(
            cast(ForwardProtocol, forward.protocol),
            floating.address,
            forward.external_ports[0],
            forward.external_ports[1],
            forward.internal_ip,
            forward.internal_ports[0],
            forward.internal_ports[1],
        )
        for forward in floating.forwards
    ]


def _default_route(
    gateway: PortFacts, subnets: Mapping[str, SubnetFacts], leg_name: str
) -> list[netdev.Route]:
    for subnet_id, address in gateway.ips:
        subnet = subnets.get(subnet_id)
        if subnet is not None and _v4(address) and subnet.gateway_ip:
            return [netdev.Route("default", subnet.gateway_ip, leg_name)]
    return []


def router_setup(
    router: RouterFacts,
    legs: Sequence[PortFacts],
    networks: Mapping[str, NetworkFacts],
    floating: Sequence[FloatingFacts],
    policies: Mapping[str, QosFacts],
) -> RouterSetup:
    """One router from its ports and the floating IPs that go through it."""
    subnets = {s.id: s for n in networks.values() for s in n.subnets}
    interfaces = tuple(
        _leg(p, networks[p.network_id])
        for p in sorted(legs, key=lambda p: p.id)
        if p.device_owner == routers.INTERFACE_OWNER and p.network_id in networks
    )
    gateway_port = next(
        (p for p in legs if p.device_owner == routers.GATEWAY_OWNER and p.network_id in networks),
        None,
    )
    if gateway_port is None:
        return RouterSetup(router.id, interfaces, None)
    mine = sorted(floating, key=lambda f: f.address)
    gateway = _leg(gateway_port, networks[gateway_port.network_id],
                   (f"{f.address}/32" for f in mine))  # fmt: skip
    leg_name = netdev.gateway_port_name(gateway_port.id)
    gateway_ip = next((ip for _, ip in gateway_port.ips if _v4(ip)), None)
    routes = _default_route(gateway_port, subnets, leg_name)
    routes += [netdev.Route(dst, via) for dst, via in router.routes]
    nat = None
    if gateway_ip is not None:
        snat: tuple[str, ...] = ()
        if router.enable_snat:
            snat = tuple(
                subnets[sid].cidr
                for p in legs
                if p.device_owner == routers.INTERFACE_OWNER
                for sid, ip in p.ips
                if sid in subnets and _v4(ip)
            )
        nat = RouterNat(
            gateway_if=leg_name,
            gateway_ip=gateway_ip,
            snat_cidrs=tuple(sorted(set(snat))),
            floating=tuple(FloatingIp(f.address, f.fixed_ip) for f in mine if f.fixed_ip),
            forwards=tuple(forward for f in mine for forward in _forwards(f)),
        )
    limits = []
    for f in mine:
        egress, ingress = policy_limits(f.qos_policy_id, policies)
        if egress is not None or ingress is not None:
            limits.append((f.address, qos.FloatingIpLimits(egress=egress, ingress=ingress)))
    return RouterSetup(router.id, interfaces, gateway, tuple(routes), nat, tuple(limits))


def router_setups(facts: Facts) -> tuple[RouterSetup, ...]:
    """Every router that is up, as the host should have it."""
    networks = {n.id: n for n in facts.networks}
    policies = {p.id: p for p in facts.policies}
    legs: dict[str, list[PortFacts]] = {}
    for port in facts.ports:
        if port.device_owner in (routers.INTERFACE_OWNER, routers.GATEWAY_OWNER):
            legs.setdefault(port.device_id, []).append(port)
    through: dict[str, list[FloatingFacts]] = {}
    for floating in facts.floating_ips:
        if floating.router_id:
            through.setdefault(floating.router_id, []).append(floating)
    return tuple(
        router_setup(r, legs.get(r.id, []), networks, through.get(r.id, []), policies)
        for r in sorted(facts.routers, key=lambda r: r.id)
        if r.admin_up
    )
