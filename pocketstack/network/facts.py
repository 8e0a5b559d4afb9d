"""What the network agent reads: the whole truth of the networking service as plain,
frozen values, so that its plans (agent.py for networks, l3_plan.py for routers) are
pure functions with unit tests, and the reading happens in one place (`read`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pocketstack.core.context import RequestContext
from pocketstack.network import qos, routers, security_groups
from pocketstack.network import service as network_service
from pocketstack.network.query import ListQuery

NETWORK_OWNED_PREFIX = network_service.NETWORK_OWNED_PREFIX


@dataclass(frozen=True, slots=True)
class SubnetFacts:
    id: str
    cidr: str
    ip_version: int
    gateway_ip: str | None
    enable_dhcp: bool
    dns_nameservers: tuple[str, ...] = ()
    host_routes: tuple[tuple[str, str], ...] = ()
    ipv6_address_mode: str | None = None


@dataclass(frozen=True, slots=True)
class NetworkFacts:
    id: str
    project_id: str
    mtu: int
    dns_domain: str = ""
    external: bool = False
    subnets: tuple[SubnetFacts, ...] = ()
    qos_policy_id: str | None = None

    @property
    def dhcp_subnets(self) -> tuple[SubnetFacts, ...]:
        return tuple(s for s in self.subnets if s.enable_dhcp)


@dataclass(frozen=True, slots=True)
class PortFacts:
    id: str
    network_id: str
    mac: str
    ips: tuple[tuple[str, str], ...] = ()  # (subnet id, address)
    device_owner: str = ""
    host: str = ""
    dns_name: str = ""
    security_groups: tuple[str, ...] = ()
    port_security: bool = True
    allowed_pairs: tuple[tuple[str, str | None], ...] = ()  # (ip or CIDR, MAC)
    admin_up: bool = True
    status: str = "DOWN"
    device_id: str = ""
    qos_policy_id: str | None = None

    @property
    def network_owned(self) -> bool:
        return self.device_owner.startswith(NETWORK_OWNED_PREFIX)


@dataclass(frozen=True, slots=True)
class RuleFacts:
    group_id: str
    direction: str
    ethertype: str = "IPv4"
    protocol: str | None = None
    port_min: int | None = None
    port_max: int | None = None
    remote_cidr: str | None = None
    remote_group_id: str | None = None


@dataclass(frozen=True, slots=True)
class RouterFacts:
    """A router; its legs are the ports whose device_id it is (routers.py)."""

    id: str
    admin_up: bool = True
    enable_snat: bool = True
    routes: tuple[tuple[str, str], ...] = ()  # (destination, nexthop)


@dataclass(frozen=True, slots=True)
class ForwardFacts:
    protocol: str
    internal_ip: str
    internal_ports: tuple[int, int]
    external_ports: tuple[int, int]


@dataclass(frozen=True, slots=True)
class FloatingFacts:
    id: str
    address: str
    router_id: str | None = None
    fixed_ip: str | None = None  # None: not associated with a port
    port_id: str | None = None
    qos_policy_id: str | None = None
    forwards: tuple[ForwardFacts, ...] = ()


@dataclass(frozen=True, slots=True)
class BandwidthLimit:
    max_kbps: int
    max_burst_kbps: int = 0  # 0: the data plane's default burst


@dataclass(frozen=True, slots=True)
class QosFacts:
    """A QoS policy's bandwidth limits, each direction seen from the server."""

    id: str
    egress: BandwidthLimit | None = None
    ingress: BandwidthLimit | None = None


@dataclass(frozen=True, slots=True)
class Facts:
    networks: tuple[NetworkFacts, ...]
    ports: tuple[PortFacts, ...]
    rules: tuple[RuleFacts, ...]
    routers: tuple[RouterFacts, ...] = ()
    floating_ips: tuple[FloatingFacts, ...] = ()
    policies: tuple[QosFacts, ...] = ()


def _subnet_facts(raw: Mapping[str, Any]) -> SubnetFacts:
    return SubnetFacts(
        id=raw["id"],
        cidr=raw["cidr"],
        ip_version=int(raw["ip_version"]),
        gateway_ip=raw.get("gateway_ip"),
        enable_dhcp=bool(raw.get("enable_dhcp")),
        dns_nameservers=tuple(raw.get("dns_nameservers") or ()),
        host_routes=tuple((r["destination"], r["nexthop"]) for r in raw.get("host_routes") or ()),
        ipv6_address_mode=raw.get("ipv6_address_mode"),
    )


def _port_facts(raw: Mapping[str, Any]) -> PortFacts:
    return PortFacts(
        id=raw["id"],
        network_id=raw["network_id"],
        mac=raw["mac_address"],
        ips=tuple((f["subnet_id"], f["ip_address"]) for f in raw["fixed_ips"]),
        device_owner=raw["device_owner"],
        host=raw.get("binding:host_id") or "",
        dns_name=raw.get("dns_name") or "",
        security_groups=tuple(raw.get("security_groups") or ()),
        port_security=bool(raw.get("port_security_enabled")),
        allowed_pairs=tuple(
            (p["ip_address"], p.get("mac_address")) for p in raw.get("allowed_address_pairs") or ()
        ),
        admin_up=bool(raw["admin_state_up"]),
        status=raw["status"],
        device_id=raw.get("device_id") or "",
        qos_policy_id=raw.get("qos_policy_id"),
    )


def _forward_facts(raw: Mapping[str, Any]) -> ForwardFacts:
    def ports(single: str, ranged: str) -> tuple[int, int]:
        if raw.get(single) is not None:
            return int(raw[single]), int(raw[single])
        low, high = str(raw[ranged]).split(":")
        return int(low), int(high)

    return ForwardFacts(
        protocol=raw["protocol"],
        internal_ip=raw["internal_ip_address"],
        internal_ports=ports("internal_port", "internal_port_range"),
        external_ports=ports("external_port", "external_port_range"),
    )


def _policy_facts(raw: Mapping[str, Any]) -> QosFacts:
    limits = {
        rule["direction"]: BandwidthLimit(int(rule["max_kbps"]), int(rule["max_burst_kbps"] or 0))
        for rule in raw.get("rules") or ()
        if rule.get("type") == "bandwidth_limit"
    }
    return QosFacts(raw["id"], limits.get("egress"), limits.get("ingress"))


def read(ctx: RequestContext) -> Facts:
    """Everything the agent acts on, read through the service (an admin context sees all)."""
    everything = ListQuery()
    subnets: dict[str, list[SubnetFacts]] = {}
    for raw in network_service.list_subnets(ctx, everything):
        subnets.setdefault(raw["network_id"], []).append(_subnet_facts(raw))
    networks = tuple(
        NetworkFacts(
            id=raw["id"],
            project_id=raw["project_id"],
            mtu=int(raw["mtu"]),
            dns_domain=raw.get("dns_domain") or "",
            external=bool(raw.get("router:external")),
            subnets=tuple(subnets.get(raw["id"], ())),
            qos_policy_id=raw.get("qos_policy_id"),
        )
        for raw in network_service.list_networks(ctx, everything)
    )
    ports = tuple(_port_facts(raw) for raw in network_service.list_ports(ctx, everything))
    rules = tuple(
        RuleFacts(
            group_id=raw["security_group_id"],
            direction=raw["direction"],
            ethertype=raw["ethertype"],
            protocol=raw.get("protocol"),
            port_min=raw.get("port_range_min"),
            port_max=raw.get("port_range_max"),
            remote_cidr=raw.get("remote_ip_prefix"),
            remote_group_id=raw.get("remote_group_id"),
        )
        for raw in security_groups.list_rules(ctx, everything)
    )
    router_facts = tuple(
        RouterFacts(
            id=raw["id"],
            admin_up=bool(raw["admin_state_up"]),
            enable_snat=bool((raw.get("external_gateway_info") or {}).get("enable_snat", True)),
            routes=tuple((r["destination"], r["nexthop"]) for r in raw.get("routes") or ()),
        )
        for raw in routers.list_routers(ctx, everything)
    )
    raw_floating = routers.list_floating_ips(ctx, everything)
    forwards = routers.port_forwardings_of(ctx, [raw["id"] for raw in raw_floating])
    floating = tuple(
        FloatingFacts(
            id=raw["id"],
            address=raw["floating_ip_address"],
            router_id=raw.get("router_id"),
            fixed_ip=raw.get("fixed_ip_address"),
            port_id=raw.get("port_id"),
            qos_policy_id=raw.get("qos_policy_id"),
            forwards=tuple(_forward_facts(f) for f in forwards.get(raw["id"], ())),
        )
        for raw in raw_floating
    )
    policies = tuple(_policy_facts(raw) for raw in qos.list_policies(ctx, everything))
    return Facts(networks, ports, rules, router_facts, floating, policies)
