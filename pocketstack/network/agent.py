"""The network agent: a level-based reconcile loop for this host's data plane.

One loop per process (started by the network ServiceSpec's `start`). Each pass
reads the whole truth through the networking service (facts.py: networks,
subnets, ports, security group rules, routers, floating IPs, port forwardings,
QoS policies), makes sure every network with DHCP-enabled subnets has its DHCP
port in the database, computes with pure functions what the host should have
(`plan` here for networks, l3_plan.py for routers), has the driver make it so
with idempotent calls (networks first, then the routers whose legs plug into
them), and reports ports' status (ACTIVE once their device is on the
network's bridge, DOWN otherwise). A pass runs when the service wakes the loop
after a write (`service.wake`) and every RESYNC_S anyway. A woken pass applies only the networks
and routers whose setup changed since it was last applied (a network also when the
ports plugged into its bridge changed); every RESYNC_S a pass applies everything, so
drift (a deleted namespace, a killed dnsmasq) is repaired and nothing depends on a
wake-up having arrived.

This process's agent serves every router and is the host on every external
network: all-in-one has one host. VXLAN to other hosts waits for scale-out
agents (the host layer has it, netdev.ensure_vxlan).
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

from pocketstack.compute import metadata as compute_metadata
from pocketstack.compute.metadata import PortAddresses
from pocketstack.config import Settings
from pocketstack.core.context import RequestContext
from pocketstack.core.runtime import Runtime
from pocketstack.host import dnsmasq, metadata, netdev
from pocketstack.host.dnsmasq import AddressMode, DhcpConfig
from pocketstack.host.firewall import AddressPair, PortFilter, Rule
from pocketstack.network import l3_plan, routers
from pocketstack.network import service as network_service
from pocketstack.network.drivers import (
    DhcpSetup,
    Driver,
    NetworkSetup,
    PortLimits,
    RouterSetup,
    fake,
    linuxbridge,
)
from pocketstack.network.facts import (
    Facts,
    NetworkFacts,
    PortFacts,
    QosFacts,
    RuleFacts,
    SubnetFacts,
    read,
)

LOG = logging.getLogger(__name__)
RESYNC_S = 30.0
DHCP_OWNER = network_service.DHCP_OWNER
NETWORK_OWNED_PREFIX = network_service.NETWORK_OWNED_PREFIX
_AGENT_KEY = "network.agent"
AGENT_PROJECT = "pocketstack-network-agent"


# DHCP ports in the database (pure) ------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DhcpPortChange:
    """Make (port_id None), re-address (subnet_ids) or delete (no subnet_ids) a DHCP port."""

    network_id: str
    project_id: str
    port_id: str | None
    subnet_ids: tuple[str, ...]
    keep: tuple[tuple[str, str], ...] = ()  # the addresses it has on subnets it keeps


def dhcp_port_changes(host: str, facts: Facts) -> list[DhcpPortChange]:
    """One DHCP port per network that has DHCP-enabled subnets (not external ones), with an
    address on each; none on other networks."""
    changes: list[DhcpPortChange] = []
    dhcp_ports: dict[str, list[PortFacts]] = {}
    for port in facts.ports:
        if port.device_owner == DHCP_OWNER:
            dhcp_ports.setdefault(port.network_id, []).append(port)
    for network in facts.networks:
        wanted = () if network.external else tuple(s.id for s in network.dhcp_subnets)
        have = dhcp_ports.get(network.id, [])
        if not wanted:
            changes += [DhcpPortChange(network.id, network.project_id, p.id, ()) for p in have]
            continue
        if not have:
            changes.append(DhcpPortChange(network.id, network.project_id, None, wanted))
            continue
        first, extra = have[0], have[1:]
        changes += [DhcpPortChange(network.id, network.project_id, p.id, ()) for p in extra]
        on = {subnet_id for subnet_id, _ in first.ips}
        if not set(wanted) <= on:
            keep = tuple(ip for ip in first.ips if ip[0] in wanted)
            changes.append(DhcpPortChange(network.id, network.project_id, first.id, wanted, keep))
    return changes


# What the host should have (pure) ------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Plan:
    setups: tuple[NetworkSetup, ...]
    remove: tuple[str, ...]
    routers: tuple[RouterSetup, ...] = ()
    remove_routers: tuple[str, ...] = ()


def hostname_of(port: PortFacts) -> str | None:
    """The port's DNS name: its dns_name, or Neutron's host-<address with dashes>."""
    if port.dns_name:
        return port.dns_name
    if not port.ips:
        return None
    return "host-" + port.ips[0][1].replace(".", "-").replace(":", "-")


def _member_cidrs(ports: Iterable[PortFacts]) -> dict[str, set[str]]:
    """Security group id -> the host CIDRs of its member ports (remote_group_id)."""
    members: dict[str, set[str]] = {}
    for port in ports:
        for group in port.security_groups:
            for _, address in port.ips:
                bits = 128 if ":" in address else 32
                members.setdefault(group, set()).add(f"{address}/{bits}")
    return members


def _rules_of(
    port: PortFacts,
    rules_by_group: Mapping[str, Sequence[RuleFacts]],
    members: Mapping[str, set[str]],
) -> tuple[Rule, ...]:
    found: list[Rule] = []
    for group in port.security_groups:
        for each in rules_by_group.get(group, ()):
            ethertype = cast("Any", each.ethertype)
            direction = cast("Any", each.direction)
            base = Rule(direction, ethertype, each.protocol, each.port_min, each.port_max)
            if each.remote_group_id is None:
                found.append(_with_cidr(base, each.remote_cidr))
                continue
            version = 6 if each.ethertype == "IPv6" else 4
            for cidr in sorted(members.get(each.remote_group_id, ())):
                if ipaddress.ip_network(cidr).version == version:
                    found.append(_with_cidr(base, cidr))
    return tuple(dict.fromkeys(found))


def _with_cidr(rule: Rule, cidr: str | None) -> Rule:
    return Rule(rule.direction, rule.ethertype, rule.protocol, rule.port_min, rule.port_max, cidr)


def port_filter(
    port: PortFacts,
    rules_by_group: Mapping[str, Sequence[RuleFacts]],
    members: Mapping[str, set[str]],
) -> PortFilter:
    return PortFilter(
        tap=netdev.tap_name(port.id),
        mac=port.mac,
        ips=tuple(address for _, address in port.ips),
        allowed_pairs=tuple(AddressPair(ip, mac) for ip, mac in port.allowed_pairs),
        rules=_rules_of(port, rules_by_group, members) if port.port_security else (),
        port_security=port.port_security,
    )


def _dhcp_subnet(subnet: SubnetFacts, metadata_via: str | None) -> dnsmasq.Subnet:
    mode = subnet.ipv6_address_mode if subnet.ip_version == 6 else None
    routes = subnet.host_routes
    if metadata_via is not None:
        routes = (*routes, (metadata.METADATA_CIDR, metadata_via))
    return dnsmasq.Subnet(
        subnet_id=subnet.id,
        cidr=subnet.cidr,
        gateway_ip=subnet.gateway_ip,
        dns_servers=subnet.dns_nameservers,
        ipv6_address_mode=cast("AddressMode | None", mode),
        host_routes=routes,
    )


def dhcp_setup(network: NetworkFacts, ports: Sequence[PortFacts]) -> DhcpSetup | None:
    """The network's DHCP port and dnsmasq config: a static lease and a DNS name for
    every other port of the network. The DHCP port also holds the metadata address, and
    each IPv4 subnet's clients get a host route to it through the port."""
    subnets = network.dhcp_subnets
    dhcp_port = next((p for p in ports if p.device_owner == DHCP_OWNER), None)
    if network.external or not subnets or dhcp_port is None:
        return None
    prefixes = {s.id: ipaddress.ip_network(s.cidr, strict=False).prefixlen for s in network.subnets}
    cidrs = tuple(f"{ip}/{prefixes[sid]}" for sid, ip in dhcp_port.ips if sid in prefixes)
    via = {sid: ip for sid, ip in dhcp_port.ips if ipaddress.ip_address(ip).version == 4}
    if via:
        cidrs = (*cidrs, metadata.METADATA_CIDR)
    hosts = tuple(
        dnsmasq.Host(p.mac, tuple(ip for _, ip in p.ips), hostname_of(p))
        for p in sorted(ports, key=lambda p: p.id)
        if p.id != dhcp_port.id and p.ips
    )
    config = DhcpConfig(
        interface=netdev.dhcp_port_name(dhcp_port.id),
        subnets=tuple(_dhcp_subnet(s, via.get(s.id)) for s in subnets),
        hosts=hosts,
        domain=network.dns_domain.rstrip(".") or dnsmasq.DEFAULT_DOMAIN,
        mtu=network.mtu,
    )
    return DhcpSetup(dhcp_port.id, dhcp_port.mac, cidrs, config)


def metadata_askers(facts: Facts) -> dict[tuple[str, str], tuple[str, PortAddresses]]:
    """(network id, fixed IPv4) -> (server id, its port's addresses): who may ask for
    metadata from where. Only servers' ports (device_owner compute:…) are in it."""
    networks = {n.id: n for n in facts.networks}
    floating = {(f.port_id, f.fixed_ip): f.address for f in facts.floating_ips if f.port_id}
    askers: dict[tuple[str, str], tuple[str, PortAddresses]] = {}
    for port in facts.ports:
        network = networks.get(port.network_id)
        if network is None or not port.device_owner.startswith("compute:") or not port.device_id:
            continue
        for _, address in port.ips:
            if ipaddress.ip_address(address).version == 4:
                addresses = PortAddresses(port.id, port.network_id, port.mac, network.mtu,
                                          address, floating.get((port.id, address)))  # fmt: skip
                askers[(port.network_id, address)] = (port.device_id, addresses)
    return askers


def has_device(port: PortFacts) -> bool:
    """One of the network's own ports with a device on its bridge (DHCP, router legs; a
    floating IP's port is only an address)."""
    return port.network_owned and port.device_owner != routers.FLOATING_OWNER


def served_here(port: PortFacts, host: str) -> bool:
    """A port this host plugs into a bridge: bound here, not one of the network's own."""
    return port.host == host and not port.network_owned


def port_limits(
    port: PortFacts, network: NetworkFacts, policies: Mapping[str, QosFacts]
) -> PortLimits:
    """A port's own QoS policy, else its network's (Neutron's rule for ports servers use)."""
    egress, ingress = l3_plan.policy_limits(port.qos_policy_id or network.qos_policy_id, policies)
    return PortLimits(netdev.tap_name(port.id), egress, ingress)


def host_leg(network: NetworkFacts) -> tuple[str, ...] | None:
    """An external network's addresses for the host: each IPv4 subnet's gateway."""
    if not network.external:
        return None
    return tuple(
        f"{s.gateway_ip}/{ipaddress.ip_network(s.cidr, strict=False).prefixlen}"
        for s in sorted(network.subnets, key=lambda s: s.id)
        if s.ip_version == 4 and s.gateway_ip
    )


def plan(host: str, facts: Facts, made: set[str], routers_made: Iterable[str] = ()) -> Plan:
    """Every network with a port bound here, DHCP to serve or a router leg set up, and
    every external network (the host is on those); every router that is up; what this
    host made for networks and routers that are gone (or need nothing here), removed."""
    by_network: dict[str, list[PortFacts]] = {}
    for port in facts.ports:
        by_network.setdefault(port.network_id, []).append(port)
    rules_by_group: dict[str, list[RuleFacts]] = {}
    for rule in facts.rules:
        rules_by_group.setdefault(rule.group_id, []).append(rule)
    members = _member_cidrs(facts.ports)
    policies = {p.id: p for p in facts.policies}
    router_setups = l3_plan.router_setups(facts)
    legs = {leg.network_id for r in router_setups for leg in r.interfaces}
    legs |= {r.gateway.network_id for r in router_setups if r.gateway is not None}
    setups: list[NetworkSetup] = []
    for network in sorted(facts.networks, key=lambda n: n.id):
        ports = by_network.get(network.id, [])
        bound = sorted((p for p in ports if served_here(p, host)), key=lambda p: p.id)
        dhcp = dhcp_setup(network, ports)
        if not (bound or dhcp or network.id in legs or network.external):
            continue
        # The network's own ports (DHCP, router legs) pass unfiltered; the bridge passes
        # nothing for a port device it was not told of.
        own = sorted((p for p in ports if has_device(p)), key=lambda p: p.id)
        filters = tuple(port_filter(p, rules_by_group, members) for p in bound)
        filters += tuple(PortFilter(netdev.tap_name(p.id), p.mac, port_security=False) for p in own)
        limits = tuple(port_limits(p, network, policies) for p in bound)
        setups.append(
            NetworkSetup(network.id, network.mtu, dhcp, filters, limits, host_leg(network))
        )
    wanted = {s.network_id for s in setups}
    wanted_routers = {r.router_id for r in router_setups}
    return Plan(
        tuple(setups),
        tuple(sorted(made - wanted)),
        router_setups,
        tuple(sorted(set(routers_made) - wanted_routers)),
    )


def port_statuses(host: str, facts: Facts, plugged: Mapping[str, set[str]]) -> dict[str, str]:
    """The status each port bound here should show, where it differs from what it shows:
    ACTIVE when its device is on its network's bridge (and it is up), else DOWN."""
    changes: dict[str, str] = {}
    for port in facts.ports:
        if not served_here(port, host):
            continue
        on_bridge = netdev.tap_name(port.id) in plugged.get(port.network_id, set())
        status = "ACTIVE" if on_bridge and port.admin_up else "DOWN"
        if status != port.status:
            changes[port.id] = status
    return changes


# The loop ------------------------------------------------------------------------------


class NetworkAgent:
    def __init__(self, runtime: Runtime, host: str, driver: Driver) -> None:
        self.runtime = runtime
        self.host = host
        self.driver = driver
        self.wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="network-agent", daemon=True)
        self._lock = threading.Lock()
        self.metadata = metadata.MetadataListeners(self._answer_metadata)
        # What the last passes applied (see _full_pass_due).
        self._last_full: float | None = None
        self._applied_networks: dict[str, tuple[NetworkSetup, set[str]]] = {}
        self._applied_routers: dict[str, RouterSetup] = {}
        self._askers: dict[tuple[str, str], tuple[str, PortAddresses]] = {}

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self.wake.set()
        self._thread.join(timeout=30)
        self.metadata.close()

    def _answer_metadata(self, netns: str, client: str, path: str) -> metadata.Answer:
        """A server's request to 169.254.169.254, known by the DHCP namespace it came into
        and its (anti-spoofed) source address, as of the agent's last pass."""
        network_id = netns.removeprefix(netdev.DHCP_NETNS_PREFIX)
        asker = self._askers.get((network_id, client))
        if asker is None:
            return metadata.Answer(404, b"no server has this address\n")
        server_id, addresses = asker
        ctx = self.runtime.service_context(AGENT_PROJECT)
        found = compute_metadata.document(ctx, server_id, path, addresses)
        if found is None:
            return metadata.Answer(404, b"not found\n")
        return metadata.Answer(200, found[1], found[0])

    def _run(self) -> None:
        while not self._stop.is_set():
            self.wake.clear()
            try:
                self.reconcile()
            except Exception:
                LOG.exception("network agent pass failed; trying again")
            self.wake.wait(RESYNC_S)

    def _apply_dhcp_ports(self, ctx: RequestContext, changes: Sequence[DhcpPortChange]) -> None:
        for change in changes:
            try:
                if change.port_id is None:
                    network_service.create_port(
                        ctx,
                        {
                            "network_id": change.network_id,
                            "project_id": change.project_id,
                            "device_owner": DHCP_OWNER,
                            "device_id": f"dhcp-{change.network_id}",
                            "binding:host_id": self.host,
                            "port_security_enabled": False,
                            "fixed_ips": [{"subnet_id": s} for s in change.subnet_ids],
                        },
                    )
                elif change.subnet_ids:
                    kept = {sid for sid, _ in change.keep}
                    fixed = [{"subnet_id": s, "ip_address": ip} for s, ip in change.keep]
                    fixed += [{"subnet_id": s} for s in change.subnet_ids if s not in kept]
                    network_service.update_port(ctx, change.port_id, {"fixed_ips": fixed})
                else:
                    network_service.delete_port(ctx, change.port_id)
            except Exception:
                LOG.exception("DHCP port of network %s: could not be changed", change.network_id)

    def _serve_metadata(self, facts: Facts, wanted: Plan) -> None:
        """A listener in every DHCP namespace this host serves, and who may ask."""
        self._askers = metadata_askers(facts)
        serving = []
        for setup in wanted.setups:
            if setup.dhcp is None:
                continue
            netns = netdev.dhcp_netns(setup.network_id)
            try:
                self.metadata.ensure(netns)
                serving.append(netns)
            except Exception:
                LOG.exception("network %s: metadata could not be served", setup.network_id)
        self.metadata.keep_only(serving)

    def _full_pass_due(self) -> bool:
        """Every RESYNC_S (and first) a pass applies everything, repairing drift; between,
        a pass applies only what changed since it was last applied."""
        now = time.monotonic()
        if self._last_full is None or now - self._last_full >= RESYNC_S:
            self._last_full = now
            self._applied_networks.clear()
            self._applied_routers.clear()
            return True
        return False

    def _ensure_networks(
        self, setups: Sequence[NetworkSetup], full: bool
    ) -> tuple[dict[str, set[str]], set[str]]:
        """Each network set up unless it and its plugged ports are as last applied; the
        ports plugged per network, and the networks it set up."""
        plugged: dict[str, set[str]] = {}
        ensured: set[str] = set()
        for setup in setups:
            network_id = setup.network_id
            try:
                now = self.driver.plugged(network_id)
                if not full and self._applied_networks.get(network_id) == (setup, now):
                    plugged[network_id] = now
                    continue
                self._applied_networks.pop(network_id, None)
                self.driver.ensure(setup)
                ensured.add(network_id)
                plugged[network_id] = self.driver.plugged(network_id)
                self._applied_networks[network_id] = (setup, plugged[network_id])
            except Exception:
                LOG.exception("network %s: could not be set up on this host", network_id)
        return plugged, ensured

    def _ensure_routers(self, setups: Sequence[RouterSetup], full: bool, ensured: set[str]) -> None:
        """Each router set up unless it is as last applied and none of its networks was
        set up again in this pass (which may have remade the bridges its legs are on)."""
        for router in setups:
            networks = {leg.network_id for leg in router.interfaces}
            if router.gateway is not None:
                networks.add(router.gateway.network_id)
            same = self._applied_routers.get(router.router_id) == router
            if not full and same and not networks & ensured:
                continue
            self._applied_routers.pop(router.router_id, None)
            try:
                self.driver.ensure_router(router)
                self._applied_routers[router.router_id] = router
            except Exception:
                LOG.exception("router %s: could not be set up on this host", router.router_id)

    def reconcile(self) -> None:
        """One level-based pass over everything this host serves."""
        with self._lock:
            # Project-scoped admin (networking's rules are project-scoped): sees everything.
            ctx = self.runtime.service_context(AGENT_PROJECT)
            facts = read(ctx)
            # The fake data plane serves no DHCP and its ports are up at once (`_bind`).
            real = self.driver.name != "fake"
            changes = dhcp_port_changes(self.host, facts) if real else []
            if changes:
                self._apply_dhcp_ports(ctx, changes)
                facts = read(ctx)
            wanted = plan(self.host, facts, self.driver.made(), self.driver.routers_made())
            for router_id in wanted.remove_routers:
                self._applied_routers.pop(router_id, None)
                try:
                    self.driver.remove_router(router_id)
                except Exception:
                    LOG.exception("router %s: could not be removed from this host", router_id)
            for network_id in wanted.remove:
                self._applied_networks.pop(network_id, None)
                try:
                    self.driver.remove(network_id)
                except Exception:
                    LOG.exception("network %s: could not be removed from this host", network_id)
            full = self._full_pass_due()
            plugged, ensured = self._ensure_networks(wanted.setups, full)
            self._ensure_routers(wanted.routers, full, ensured)
            if real:
                self._serve_metadata(facts, wanted)
            if real:
                network_service.report_port_status(ctx, port_statuses(self.host, facts, plugged))


# Choosing the driver, starting ---------------------------------------------------------


class DriverUnavailable(Exception):
    """`--network-driver linuxbridge` on a machine that cannot run it."""


def _why_fake(settings: Settings) -> str | None:
    """Why this process runs the fake data plane (None: it runs linuxbridge)."""
    if settings.network_driver == "fake":
        return "--network-driver fake"
    if settings.fake_hosts:
        return "fake compute hosts"
    missing = linuxbridge.missing()
    if missing is not None and settings.network_driver == "linuxbridge":
        raise DriverUnavailable(f"the linuxbridge data plane cannot run here: {missing}")
    return missing


def describe(settings: Settings) -> str:
    """The data plane in words, for `pocketstack up`."""
    why = _why_fake(settings)
    if why is not None:
        return f"fake data plane ({why})"
    return "linuxbridge data plane (bridges, DHCP/DNS, security groups, QoS, routers with NAT)"


def choose_driver(runtime: Runtime) -> Driver:
    settings = runtime.settings
    if _why_fake(settings) is not None:
        return fake.FakeDriver()
    return linuxbridge.LinuxBridgeDriver(settings.state_dir / "network" / socket.gethostname())


def start(runtime: Runtime) -> Callable[[], None]:
    """Run this process's network agent; returns what stops it."""
    driver = choose_driver(runtime)
    agent = NetworkAgent(runtime, socket.gethostname(), driver)
    runtime.state[_AGENT_KEY] = agent
    network_service.install_agent(runtime, agent.wake.set, driver.vif_details)
    agent.start()

    def stop() -> None:
        agent.stop()
        network_service.install_agent(runtime, None, None)
        runtime.state.pop(_AGENT_KEY, None)

    return stop
