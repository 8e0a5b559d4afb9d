"""iptables (nft backend) in the data plane's namespaces: security groups and router NAT.

The network agent fills the dataclasses below from the database and calls
`apply_port_filters` / `apply_router_nat`; each renders the whole table as
`iptables-restore` text (pure functions, unit-tested) and loads it in one
atomic transaction inside the namespace, so every call converges to exactly
the given state, whatever was there before. Only the nft-backed
`iptables-restore` is used (never the legacy one in the same namespace).

Security groups live in a network's bridge namespace (`qnet-…`, see
`netdev`): a bridged frame passes its FORWARD chain (br_netfilter is on
there), `physdev` tells which `tap…` it came in by and leaves by. Each
filtered port has three chains: `ps-i-<tap>` for traffic to the port
(ingress), `ps-o-<tap>` for traffic from it (egress) and `ps-s-<tap>`, its
anti-spoofing list of (MAC, source address) pairs. An allowed packet
RETURNs to the dispatch chain, so a packet between two filtered ports of
one network passes the receiver's ingress and the sender's egress chain; a
packet that no rule allows is dropped. A port device the table does not
name at all passes nothing (`ps-known-in`/`ps-known-out`). As in OpenStack, rules are
allow-lists for both directions (a port with no egress rule sends nothing
but DHCP and neighbour discovery), connections are tracked (replies and
related ICMP pass), and ports without port security are not filtered.
`remote_group_id` rules arrive here already resolved into CIDRs.

Router NAT lives in `qrouter-…`'s `nat` table: SNAT of internal subnets out
of the gateway leg, 1:1 floating IPs (DNAT in, SNAT out) and port forwards
(tcp/udp, single ports or equal-sized ranges), plus hairpin NAT so an
internal client reaches a floating IP of its own router.

Removing a rule does not cut connections it let in already (their conntrack
entries stay until they expire): no `conntrack` tool is installed here.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

from pocketstack.host import commands, netdev

Direction = Literal["ingress", "egress"]
Ethertype = Literal["IPv4", "IPv6"]
ForwardProtocol = Literal["tcp", "udp"]

SG_CHAIN = "ps-sg"
KNOWN_IN_CHAIN = "ps-known-in"
KNOWN_OUT_CHAIN = "ps-known-out"
PORT_DEVICES = "tap+"  # every port's device on a bridge (netdev.tap_name)
DNAT_CHAIN = "ps-dnat"
SNAT_CHAIN = "ps-snat"
SPOOF_TABLE = "pocketstack-spoof"

# Protocols whose rules may name ports.
_PORT_PROTOCOLS = frozenset({"tcp", "udp", "sctp", "dccp"})
_BY_NUMBER = {"1": "icmp", "6": "tcp", "17": "udp", "33": "dccp", "58": "ipv6-icmp", "132": "sctp"}
# ICMPv6 a port needs whatever its rules say: MLD (130-132, 143), router
# solicitation/advertisement (133/134), neighbour solicitation/advertisement (135/136).
_ND_IN = (130, 131, 132, 134, 135, 136, 143)
_ND_OUT = (130, 131, 132, 133, 135, 136, 143)


@dataclass(frozen=True, slots=True)
class Rule:
    """One security group rule, as Neutron has it (remote groups resolved to CIDRs)."""

    direction: Direction
    ethertype: Ethertype = "IPv4"
    protocol: str | None = None  # "tcp", "udp", "icmp", "icmpv6", a number as text; None: any
    port_min: int | None = None  # for ICMP: the type
    port_max: int | None = None  # for ICMP: the code
    remote_cidr: str | None = None


@dataclass(frozen=True, slots=True)
class AddressPair:
    """An allowed address pair: another address (or CIDR) the port may send from."""

    ip: str
    mac: str | None = None  # None: the port's own MAC


@dataclass(frozen=True, slots=True)
class PortFilter:
    tap: str  # the port's device on the bridge (netdev.tap_name)
    mac: str
    ips: tuple[str, ...] = ()
    allowed_pairs: tuple[AddressPair, ...] = ()
    rules: tuple[Rule, ...] = ()
    port_security: bool = True  # False: the port is not filtered at all


@dataclass(frozen=True, slots=True)
class FloatingIp:
    floating_ip: str
    fixed_ip: str


@dataclass(frozen=True, slots=True)
class PortForward:
    """`external_ip`:[min, max] → `internal_ip`:[min, max]; both ranges of one size, or a
    range onto one internal port."""

    protocol: ForwardProtocol
    external_ip: str
    external_port_min: int
    external_port_max: int
    internal_ip: str
    internal_port_min: int
    internal_port_max: int


@dataclass(frozen=True, slots=True)
class RouterNat:
    gateway_if: str  # the router's external leg (netdev.gateway_port_name)
    gateway_ip: str
    snat_cidrs: tuple[str, ...] = ()  # internal subnets that reach out through the gateway
    floating: tuple[FloatingIp, ...] = ()
    forwards: tuple[PortForward, ...] = ()


# --- security groups -----------------------------------------------------------


def _version(ethertype: Ethertype) -> int:
    return 4 if ethertype == "IPv4" else 6


def _protocol(protocol: str | None, version: int) -> str | None:
    if protocol is None or protocol.lower() in ("", "any"):
        return None
    name = _BY_NUMBER.get(protocol, protocol.lower())
    if version == 6 and name in ("icmp", "icmpv6", "ipv6-icmp"):
        return "ipv6-icmp"
    if version == 4 and name in ("icmpv6", "ipv6-icmp"):
        raise ValueError(f"protocol {protocol} is not an IPv4 protocol")
    return name


def _rule_match(rule: Rule, version: int) -> list[str]:
    match: list[str] = []
    if rule.remote_cidr:
        network = ipaddress.ip_network(rule.remote_cidr, strict=False)
        if network.version != version:
            raise ValueError(f"remote {rule.remote_cidr} is not {rule.ethertype}")
        if network.prefixlen:
            match += ["-s" if rule.direction == "ingress" else "-d", str(network)]
    protocol = _protocol(rule.protocol, version)
    if protocol is None:
        return match
    match += ["-p", protocol]
    low, high = rule.port_min, rule.port_max
    if protocol in _PORT_PROTOCOLS and (low is not None or high is not None):
        low = low if low is not None else high
        high = high if high is not None else low
        ports = str(low) if low == high else f"{low}:{high}"
        match += ["-m", protocol, "--dport", ports]
    elif protocol in ("icmp", "ipv6-icmp") and low is not None:
        kind = str(low) if high is None else f"{low}/{high}"
        if protocol == "icmp":
            match += ["-m", "icmp", "--icmp-type", kind]
        else:
            match += ["-m", "icmp6", "--icmpv6-type", kind]
    return match


def _host_cidr(address: str) -> str:
    """An address ("100.64.0.5") or CIDR as the CIDR iptables prints."""
    return str(ipaddress.ip_network(address, strict=False))


def link_local(mac: str) -> str:
    """The EUI-64 IPv6 link-local address a port with this MAC configures for itself."""
    octets = [int(part, 16) for part in mac.split(":")]
    octets[0] ^= 0x02
    eui = [*octets[:3], 0xFF, 0xFE, *octets[3:]]
    return str(ipaddress.IPv6Address(bytes([0xFE, 0x80, *[0] * 6, *eui])))


def _sources(port: PortFilter, version: int) -> list[tuple[str, str]]:
    """(MAC, source CIDR) pairs the port may send from."""
    pairs = [(port.mac, address) for address in port.ips]
    pairs += [(pair.mac or port.mac, pair.ip) for pair in port.allowed_pairs]
    if version == 6:
        pairs.append((port.mac, link_local(port.mac)))
        pairs += [(pair.mac, link_local(pair.mac)) for pair in port.allowed_pairs if pair.mac]
    out: list[tuple[str, str]] = []
    for mac, address in pairs:
        cidr = _host_cidr(address)
        if ipaddress.ip_network(cidr).version == version and (mac.lower(), cidr) not in out:
            out.append((mac.lower(), cidr))
    return out


def _port_chains(port: PortFilter) -> tuple[str, str, str]:
    return f"ps-i-{port.tap}", f"ps-o-{port.tap}", f"ps-s-{port.tap}"


def _port_rules(port: PortFilter, version: int) -> list[str]:
    ingress, egress, spoof = _port_chains(port)
    established = ["-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED", "-j", "RETURN"]
    invalid = ["-m", "conntrack", "--ctstate", "INVALID", "-j", "DROP"]
    lines: list[list[str]] = []

    def add(chain: str, *spec: str) -> None:
        lines.append(["-A", chain, *spec])

    # Traffic to the port.
    if version == 4:
        add(ingress, *established)
        add(ingress, "-p", "udp", "-m", "udp", "--sport", "67", "--dport", "68", "-j", "RETURN")
    else:
        for kind in _ND_IN:
            add(ingress, "-p", "ipv6-icmp", "-m", "icmp6", "--icmpv6-type", str(kind), "-j",
                "RETURN")  # fmt: skip
        add(ingress, *established)
        add(ingress, "-p", "udp", "-m", "udp", "--sport", "547", "--dport", "546", "-j", "RETURN")
    add(ingress, *invalid)
    for rule in port.rules:
        if rule.direction == "ingress" and _version(rule.ethertype) == version:
            add(ingress, *_rule_match(rule, version), "-j", "RETURN")
    add(ingress, "-j", "DROP")

    # Traffic from the port: DHCP/ND from no address yet, then its own addresses only.
    if version == 4:
        add(egress, "-s", "0.0.0.0/32", "-d", "255.255.255.255/32", "-p", "udp", "-m", "udp",
            "--sport", "68", "--dport", "67", "-j", "RETURN")  # fmt: skip
        add(egress, "-j", spoof)
        add(egress, "-p", "udp", "-m", "udp", "--sport", "68", "--dport", "67", "-j", "RETURN")
        add(egress, "-p", "udp", "-m", "udp", "--sport", "67", "--dport", "68", "-j", "DROP")
    else:
        for kind in (131, 133, 135, 143):  # DAD, router solicitation, MLD from "::"
            add(egress, "-s", "::/128", "-p", "ipv6-icmp", "-m", "icmp6", "--icmpv6-type",
                str(kind), "-j", "RETURN")  # fmt: skip
        add(egress, "-j", spoof)
        add(egress, "-p", "ipv6-icmp", "-m", "icmp6", "--icmpv6-type", "134", "-j", "DROP")
        for kind in _ND_OUT:
            add(egress, "-p", "ipv6-icmp", "-m", "icmp6", "--icmpv6-type", str(kind), "-j",
                "RETURN")  # fmt: skip
        add(egress, "-p", "udp", "-m", "udp", "--sport", "546", "--dport", "547", "-j", "RETURN")
        add(egress, "-p", "udp", "-m", "udp", "--sport", "547", "--dport", "546", "-j", "DROP")
    add(egress, *established)
    add(egress, *invalid)
    for rule in port.rules:
        if rule.direction == "egress" and _version(rule.ethertype) == version:
            add(egress, *_rule_match(rule, version), "-j", "RETURN")
    add(egress, "-j", "DROP")

    for mac, cidr in _sources(port, version):
        add(spoof, "-s", cidr, "-m", "mac", "--mac-source", mac, "-j", "RETURN")
    add(spoof, "-j", "DROP")
    return [" ".join(line) for line in lines]


def render_port_filters(ports: Sequence[PortFilter], ethertype: Ethertype) -> str:
    """The whole `filter` table of a bridge namespace for one family, as
    `iptables-restore` (IPv4) or `ip6tables-restore` (IPv6) input.

    Every port device (`tap…`) the bridge may carry is given, filtered or not: a
    tap that is not (a server's port plugged before its filter was made) passes
    nothing either way until it is, so no port is ever open by accident. Other
    devices (the host's leg, VXLAN) pass."""
    version = _version(ethertype)
    known = sorted(ports, key=lambda p: p.tap)
    taps = [p.tap for p in known]
    if len(set(taps)) != len(taps):
        raise ValueError("two port filters for one tap")
    filtered = [p for p in known if p.port_security]
    declare = [":INPUT ACCEPT [0:0]", ":FORWARD ACCEPT [0:0]", ":OUTPUT ACCEPT [0:0]"]
    declare += [f":{chain} - [0:0]" for chain in (SG_CHAIN, KNOWN_IN_CHAIN, KNOWN_OUT_CHAIN)]
    body = [f"-A FORWARD -m physdev --physdev-is-bridged -j {SG_CHAIN}"]
    for port in filtered:
        ingress, egress, spoof = _port_chains(port)
        declare += [f":{chain} - [0:0]" for chain in (ingress, egress, spoof)]
        body.append(
            f"-A {SG_CHAIN} -m physdev --physdev-out {port.tap} --physdev-is-bridged -j {ingress}"
        )
        body.append(
            f"-A {SG_CHAIN} -m physdev --physdev-in {port.tap} --physdev-is-bridged -j {egress}"
        )
    body += [
        f"-A {SG_CHAIN} -m physdev --physdev-in {PORT_DEVICES} --physdev-is-bridged "
        f"-j {KNOWN_IN_CHAIN}",
        f"-A {SG_CHAIN} -m physdev --physdev-out {PORT_DEVICES} --physdev-is-bridged "
        f"-j {KNOWN_OUT_CHAIN}",
        f"-A {SG_CHAIN} -j ACCEPT",
    ]
    for port in known:
        body.append(f"-A {KNOWN_IN_CHAIN} -m physdev --physdev-in {port.tap} -j RETURN")
        body.append(f"-A {KNOWN_OUT_CHAIN} -m physdev --physdev-out {port.tap} -j RETURN")
    body += [f"-A {KNOWN_IN_CHAIN} -j DROP", f"-A {KNOWN_OUT_CHAIN} -j DROP"]
    for port in filtered:
        body += _port_rules(port, version)
    return "\n".join(["*filter", *declare, *body, "COMMIT", ""])


def wired(netns: str, tap: str) -> bool:
    """Has the bridge namespace's filter been made for this port device (it passes
    nothing before)? What a boot waits for, as Nova waits for a port's vif-plugged."""
    try:
        listed = commands.run([*netdev.in_netns(netns), "iptables", "-w", "5", "-S",
                               KNOWN_IN_CHAIN])  # fmt: skip
    except commands.HostCommandError:
        return False
    return f"--physdev-in {tap} " in listed


def render_link_spoofing(ports: Sequence[PortFilter]) -> str:
    """An nft bridge-family table (as `nft -f` input, replacing any earlier one in one
    transaction) that drops frames a filtered port sends from another MAC, and ARP
    claiming another MAC or IPv4 address: what iptables never sees."""
    lines = [f"table bridge {SPOOF_TABLE}", f"delete table bridge {SPOOF_TABLE}"]
    filtered = sorted((p for p in ports if p.port_security), key=lambda p: p.tap)
    if not filtered:
        return "\n".join([*lines, ""])
    lines += [
        f"table bridge {SPOOF_TABLE} {{",
        "  chain ports {",
        "    type filter hook prerouting priority -300; policy accept;",
    ]
    for port in filtered:
        macs = sorted({port.mac.lower(), *(p.mac.lower() for p in port.allowed_pairs if p.mac)})
        # 0.0.0.0: the sender address of ARP probes (address conflict detection).
        ips = ["0.0.0.0", *(cidr for _mac, cidr in _sources(port, 4))]
        device = f'iifname "{port.tap}"'
        lines += [
            f"    {device} ether saddr != {{ {', '.join(macs)} }} drop",
            f"    {device} ether type arp arp saddr ether != {{ {', '.join(macs)} }} drop",
            f"    {device} ether type arp arp saddr ip != {{ {', '.join(ips)} }} drop",
        ]
    return "\n".join([*lines, "  }", "}", ""])


def apply_port_filters(netns: str, ports: Sequence[PortFilter]) -> None:
    """Filter the bridge namespace's ports exactly as given (IPv4, IPv6 and link-layer
    spoofing, each in one atomic transaction); an empty list lets everything pass."""
    netdev.enable_bridge_netfilter(netns)
    _restore(netns, "iptables-restore", render_port_filters(ports, "IPv4"))
    _restore(netns, "ip6tables-restore", render_port_filters(ports, "IPv6"))
    commands.run([*netdev.in_netns(netns), "nft", "-f", "-"],
                 stdin=render_link_spoofing(ports).encode())  # fmt: skip


# --- router NAT ------------------------------------------------------------------


def _forward_rule(forward: PortForward) -> str:
    if forward.protocol not in ("tcp", "udp"):
        raise ValueError(f"port forwarding needs tcp or udp, not {forward.protocol}")
    ext_min, ext_max = forward.external_port_min, forward.external_port_max
    int_min, int_max = forward.internal_port_min, forward.internal_port_max
    if ext_max < ext_min or int_max < int_min:
        raise ValueError("a port range ends before it starts")
    if ext_min == ext_max:
        if int_min != int_max:
            raise ValueError("one external port cannot forward to a range")
        ports, target = str(ext_min), f"{forward.internal_ip}:{int_min}"
    elif int_min == int_max:
        ports, target = f"{ext_min}:{ext_max}", f"{forward.internal_ip}:{int_min}"
    elif ext_max - ext_min == int_max - int_min:
        # Shifted mapping: external port p goes to int_min + (p - ext_min).
        ports = f"{ext_min}:{ext_max}"
        target = f"{forward.internal_ip}:{int_min}-{int_max}/{ext_min}"
    else:
        raise ValueError("external and internal port ranges differ in size")
    return (
        f"-A {DNAT_CHAIN} -d {_host_cidr(forward.external_ip)} -p {forward.protocol} "
        f"-m {forward.protocol} --dport {ports} -j DNAT --to-destination {target}"
    )


def render_router_nat(nat: RouterNat | None) -> str:
    """The whole `nat` table of a router namespace, as `iptables-restore` input."""
    lines = [
        "*nat",
        ":PREROUTING ACCEPT [0:0]",
        ":INPUT ACCEPT [0:0]",
        ":OUTPUT ACCEPT [0:0]",
        ":POSTROUTING ACCEPT [0:0]",
        f":{DNAT_CHAIN} - [0:0]",
        f":{SNAT_CHAIN} - [0:0]",
        f"-A PREROUTING -j {DNAT_CHAIN}",
        f"-A OUTPUT -j {DNAT_CHAIN}",
        f"-A POSTROUTING -j {SNAT_CHAIN}",
    ]
    if nat is not None:
        gateway = nat.gateway_if
        lines += [_forward_rule(forward) for forward in nat.forwards]
        for fip in nat.floating:
            lines.append(
                f"-A {DNAT_CHAIN} -d {_host_cidr(fip.floating_ip)} "
                f"-j DNAT --to-destination {fip.fixed_ip}"
            )
        for fip in nat.floating:
            lines.append(
                f"-A {SNAT_CHAIN} -s {_host_cidr(fip.fixed_ip)} -o {gateway} "
                f"-j SNAT --to-source {fip.floating_ip}"
            )
        for cidr in _cidrs(nat.snat_cidrs):
            lines.append(
                f"-A {SNAT_CHAIN} -s {cidr} -o {gateway} -j SNAT --to-source {nat.gateway_ip}"
            )
        for cidr in _cidrs(nat.snat_cidrs):
            # Hairpin: an internal client reaching a floating IP or forward of this router
            # gets the router's address as source, so the reply comes back through it.
            lines.append(
                f"-A {SNAT_CHAIN} -s {cidr} ! -o {gateway} -m conntrack --ctstate DNAT "
                "-j MASQUERADE"
            )
    return "\n".join([*lines, "COMMIT", ""])


def _cidrs(cidrs: Iterable[str]) -> list[str]:
    return [str(ipaddress.ip_network(c, strict=False)) for c in cidrs]


def apply_router_nat(netns: str, nat: RouterNat | None) -> None:
    """Make the router namespace's NAT exactly `nat` (None: no NAT at all), atomically."""
    _restore(netns, "iptables-restore", render_router_nat(nat))


def _restore(netns: str, tool: str, text: str) -> None:
    commands.run([*netdev.in_netns(netns), tool, "-w", "5"], stdin=text.encode())
