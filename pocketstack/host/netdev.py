"""Network devices of the `linuxbridge` data plane: namespaces, bridges, veths, VXLAN.

The network agent's reconcile loop calls these to make the host match the
ports, networks and routers in the database. Every function is idempotent
(calling it twice does what calling it once did; deleting what is gone is
fine), and every object's name is derived from the id the caller gives, so
an agent that restarts finds what it made before (see the `*_name` and
`*_netns` functions below).

Namespace layout (one network namespace per role, all under /run/netns):

- `qnet-<network id>`: the network's Linux bridge `brq…`, its VXLAN device
  `vx-…` to other hosts, and the bridge side `tap…` of every port plugged
  into it (servers, router legs, the DHCP port). Its iptables `filter`
  table holds the security groups of exactly this network's ports
  (`physdev` matches, br_netfilter switched on in this namespace only), so
  a network's filtering is applied atomically in one `iptables-restore` and
  deleting the namespace leaves nothing of the network behind. Keeping
  bridges out of the host's root namespace also keeps them away from the
  host's own FORWARD rules, which see bridged traffic there
  (bridge-nf-call-iptables=1 on these hosts).
- `qdhcp-<network id>`: the DHCP port `ns-…` and the network's dnsmasq.
- `qrouter-<router id>`: the router's legs `qr-…` (internal) and `qg-…`
  (external), forwarding and the NAT table.
- `ps-<server id>`: made by the compute driver; a server's port is a veth
  whose inner end lives there (given by name, or by the PID of a process
  inside it).
- The host's root namespace holds one veth end per external network
  (`ext…`, with the external subnet's gateway address), so the host itself
  reaches floating IPs: `curl http://<floating ip>` works from the host.

A VXLAN device is created in the namespace of its underlay (the host's root
namespace, where the real NIC and the VTEP address are) and placed in the
network's namespace in the same netlink request; its UDP socket stays in
the underlay namespace.

Commands run through `commands.run` (`ip`, `bridge`, `nsenter`), so a
failure reaches the user as the command that failed.
"""

from __future__ import annotations

import ipaddress
import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pocketstack.host import commands
from pocketstack.host.commands import HostCommandError

NETNS_DIR = Path("/run/netns")
NETWORK_NETNS_PREFIX = "qnet-"
DHCP_NETNS_PREFIX = "qdhcp-"
ROUTER_NETNS_PREFIX = "qrouter-"
VXLAN_PORT = 4789
# The all-zero MAC of a VXLAN default-destination (flood) fdb entry.
FLOOD_MAC = "00:00:00:00:00:00"

# A network namespace: a name under /run/netns, the PID of a process inside
# one (a server's init), or None for the host's root namespace.
Netns = str | int | None


# --- names -----------------------------------------------------------------


def network_netns(network_id: str) -> str:
    return f"{NETWORK_NETNS_PREFIX}{network_id}"


def dhcp_netns(network_id: str) -> str:
    return f"{DHCP_NETNS_PREFIX}{network_id}"


def router_netns(router_id: str) -> str:
    return f"{ROUTER_NETNS_PREFIX}{router_id}"


def bridge_name(network_id: str) -> str:
    return f"brq{network_id[:11]}"


def vxlan_name(network_id: str) -> str:
    return f"vx-{network_id[:11]}"


def tap_name(port_id: str) -> str:
    """The bridge side of any port's veth (server, router leg, DHCP port)."""
    return f"tap{port_id[:11]}"


def router_port_name(port_id: str) -> str:
    return f"qr-{port_id[:11]}"


def gateway_port_name(port_id: str) -> str:
    return f"qg-{port_id[:11]}"


def dhcp_port_name(port_id: str) -> str:
    return f"ns-{port_id[:11]}"


def host_leg_names(network_id: str) -> tuple[str, str]:
    """(bridge side, host side) of the veth joining an external network to the host."""
    return f"upl{network_id[:11]}", f"ext{network_id[:11]}"


# --- running in a namespace --------------------------------------------------


def netns_path(netns: Netns) -> str:
    if netns is None:
        return "/proc/self/ns/net"
    if isinstance(netns, int):
        return f"/proc/{netns}/ns/net"
    return str(NETNS_DIR / netns)


def in_netns(netns: Netns) -> list[str]:
    """The argv prefix that runs a command inside `netns` (nothing for the root one)."""
    return [] if netns is None else ["nsenter", f"--net={netns_path(netns)}", "--"]


def _ip(netns: Netns) -> list[str]:
    if netns is None:
        return ["ip"]
    if isinstance(netns, int):
        return [*in_netns(netns), "ip"]
    return ["ip", "-n", netns]


def _netns_arg(netns: Netns) -> str:
    """How `ip link … netns X` names a namespace: its name, or a PID inside it (our own
    PID for the root namespace: this process never leaves it)."""
    if netns is None:
        return str(os.getpid())
    return str(netns)


def _json(argv: list[str]) -> list[dict[str, Any]]:
    out = commands.run(argv).strip()
    return json.loads(out) if out else []


# --- namespaces ----------------------------------------------------------------


def netns_exists(name: str) -> bool:
    return (NETNS_DIR / name).exists()


def create_netns(name: str) -> None:
    """A named network namespace with its loopback up."""
    if not netns_exists(name):
        try:
            commands.run(["ip", "netns", "add", name])
        except HostCommandError:
            if not netns_exists(name):  # lost a race with another caller: fine
                raise
    commands.run(["ip", "-n", name, "link", "set", "lo", "up"])


def delete_netns(name: str) -> None:
    """Remove the namespace's name; the namespace dies with its last process (stop
    daemons inside first). Its devices go with it, and each veth takes its peer along."""
    if netns_exists(name):
        try:
            commands.run(["ip", "netns", "delete", name])
        except HostCommandError:
            if netns_exists(name):
                raise


def list_netns(prefix: str = "") -> list[str]:
    """Names of the namespaces under /run/netns starting with `prefix`, sorted."""
    if not NETNS_DIR.is_dir():
        return []
    return sorted(e.name for e in NETNS_DIR.iterdir() if e.name.startswith(prefix))


def netns_pids(name: str) -> list[int]:
    """Processes running in the named namespace (what keeps it alive after deletion)."""
    if not netns_exists(name):
        return []
    return [int(pid) for pid in commands.run(["ip", "netns", "pids", name]).split()]


# --- links ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Link:
    name: str
    kind: str  # "bridge", "veth", "vxlan", "ifb", … ; "" for loopback and plain devices
    mac: str
    mtu: int
    up: bool  # administratively up
    master: str | None  # the bridge it is a port of


def _as_link(raw: Mapping[str, Any]) -> Link:
    return Link(
        name=str(raw["ifname"]),
        kind=str(raw.get("linkinfo", {}).get("info_kind", "")),
        mac=str(raw.get("address", "")),
        mtu=int(raw.get("mtu", 0)),
        up="UP" in raw.get("flags", []),
        master=raw.get("master"),
    )


def links(netns: Netns) -> list[Link]:
    """Every device in the namespace: what a resync compares against to find orphans."""
    return [_as_link(raw) for raw in _json([*_ip(netns), "-j", "-d", "link", "show"])]


def link(netns: Netns, name: str) -> Link | None:
    info = _link_info(netns, name)
    return _as_link(info) if info is not None else None


def _link_info(netns: Netns, name: str) -> dict[str, Any] | None:
    try:
        found = _json([*_ip(netns), "-j", "-d", "link", "show", "dev", name])
    except HostCommandError as exc:
        if "does not exist" in exc.detail or "Cannot find device" in exc.detail:
            return None
        raise
    return found[0] if found else None


def set_link(
    netns: Netns,
    name: str,
    *,
    mac: str | None = None,
    mtu: int | None = None,
    master: str | None = None,
    up: bool | None = True,
) -> None:
    """Bring a device to the given MAC, MTU, bridge and state; only what differs is changed."""
    current = link(netns, name)
    if current is None:
        raise HostCommandError([*_ip(netns), "link", "set", name], f"no device {name}")
    change: list[str] = []
    if mac is not None and current.mac.lower() != mac.lower():
        change += ["address", mac]
    if mtu is not None and current.mtu != mtu:
        change += ["mtu", str(mtu)]
    if master is not None and current.master != master:
        change += ["master", master]
    if up is not None and current.up != up:
        change.append("up" if up else "down")
    if change:
        commands.run([*_ip(netns), "link", "set", "dev", name, *change])


def rename_link(netns: Netns, name: str, new_name: str) -> None:
    """Rename a device (down for the moment it takes); done already when `new_name` is there."""
    current = link(netns, name)
    if current is None:
        if link(netns, new_name) is None:
            raise HostCommandError([*_ip(netns), "link", "set", name], f"no device {name}")
        return
    commands.run([*_ip(netns), "link", "set", "dev", name, "down"])
    commands.run([*_ip(netns), "link", "set", "dev", name, "name", new_name])
    if current.up:
        commands.run([*_ip(netns), "link", "set", "dev", new_name, "up"])


def move_link(netns: Netns, name: str, target: Netns, new_name: str | None = None) -> None:
    """Move a device into `target` (a namespace name, a PID inside one, or None for the
    root namespace), renaming it on the way if asked. Done already when it is there."""
    final = new_name or name
    if link(netns, name) is None:
        if link(target, final) is None:
            raise HostCommandError([*_ip(netns), "link", "set", name], f"no device {name}")
        return
    argv = [*_ip(netns), "link", "set", "dev", name, "netns", _netns_arg(target)]
    commands.run([*argv, *(["name", new_name] if new_name else [])])


def delete_link(netns: Netns, name: str) -> None:
    """Delete a device if it is there (a veth takes its peer along)."""
    if link(netns, name) is not None:
        try:
            commands.run([*_ip(netns), "link", "del", "dev", name])
        except HostCommandError:
            if link(netns, name) is not None:
                raise


def ensure_bridge(netns: Netns, name: str, mtu: int | None = None) -> None:
    """A Linux bridge, STP off and forwarding at once, up."""
    if link(netns, name) is None:
        commands.run(
            [*_ip(netns), "link", "add", name, "type", "bridge", "stp_state", "0",
             "forward_delay", "0"]
        )  # fmt: skip
    set_link(netns, name, mtu=mtu, up=True)


def ensure_veth(
    name: str,
    peer: str,
    *,
    netns: Netns = None,
    peer_netns: Netns = None,
    mtu: int | None = None,
    mac: str | None = None,
    peer_mac: str | None = None,
    master: str | None = None,
) -> None:
    """A veth pair: `name` in `netns` (a port of bridge `master` when given) and `peer` in
    `peer_netns` (a name, a PID inside it, or None for the root namespace), both up.

    Both ends are made in their namespaces in one request, so neither name ever
    appears in another namespace. When `name` exists already only its (and, if
    found where expected, its peer's) MAC, MTU, bridge and state are corrected:
    a guest may have renamed or moved its end.
    """
    if link(netns, name) is None:
        argv = [*_ip(netns), "link", "add", name]
        argv += ["address", mac] if mac else []
        argv += ["mtu", str(mtu)] if mtu else []
        argv += ["type", "veth", "peer", "name", peer]
        argv += ["address", peer_mac] if peer_mac else []
        argv += ["mtu", str(mtu)] if mtu else []
        argv += ["netns", _netns_arg(peer_netns)]
        commands.run(argv)
    set_link(netns, name, mac=mac, mtu=mtu, master=master, up=True)
    if link(peer_netns, peer) is not None:
        set_link(peer_netns, peer, mac=peer_mac, mtu=mtu, up=True)


def ensure_vxlan(
    netns: Netns,
    name: str,
    vni: int,
    *,
    local_ip: str,
    underlay_dev: str | None = None,
    underlay_netns: Netns = None,
    port: int = VXLAN_PORT,
    mtu: int | None = None,
    master: str | None = None,
) -> None:
    """A VXLAN device without learning (remote VTEPs come from `set_vxlan_remotes`), living
    in `netns`, its UDP socket bound to `local_ip` in `underlay_netns`. One whose VNI,
    local address or port differ is made again."""
    current = _link_info(netns, name)
    if current is not None:
        data = current.get("linkinfo", {}).get("info_data", {})
        if (data.get("id"), data.get("local"), data.get("port")) != (vni, local_ip, port):
            delete_link(netns, name)
            current = None
    if current is None:
        argv = [*_ip(underlay_netns), "link", "add", name]
        if netns != underlay_netns:
            argv += ["netns", _netns_arg(netns)]
        argv += ["type", "vxlan", "id", str(vni), "local", local_ip, "dstport", str(port)]
        argv += ["dev", underlay_dev] if underlay_dev else []
        commands.run([*argv, "nolearning"])
    set_link(netns, name, mtu=mtu, master=master, up=True)


def _bridge(netns: Netns) -> list[str]:
    if isinstance(netns, str):
        return ["bridge", "-n", netns]
    return [*in_netns(netns), "bridge"]


def vxlan_remotes(netns: Netns, name: str) -> set[str]:
    entries = _json([*_bridge(netns), "-j", "fdb", "show", "dev", name])
    return {str(e["dst"]) for e in entries if e.get("mac") == FLOOD_MAC and "dst" in e}


def set_vxlan_remotes(netns: Netns, name: str, remotes: Iterable[str]) -> None:
    """Flood (broadcast, unknown unicast, multicast) to exactly these remote VTEPs."""
    wanted = set(remotes)
    present = vxlan_remotes(netns, name)
    for dst in sorted(wanted - present):
        commands.run([*_bridge(netns), "fdb", "append", FLOOD_MAC, "dev", name, "dst", dst])
    for dst in sorted(present - wanted):
        commands.run([*_bridge(netns), "fdb", "del", FLOOD_MAC, "dev", name, "dst", dst])


# --- addresses and routes ----------------------------------------------------


def addresses(netns: Netns, dev: str) -> set[str]:
    """The device's permanent global addresses as CIDRs (link-local and SLAAC ones left out)."""
    found = _json([*_ip(netns), "-j", "addr", "show", "dev", dev])
    out: set[str] = set()
    for raw in found:
        for info in raw.get("addr_info", []):
            if info.get("scope") == "link" or info.get("dynamic"):
                continue
            out.add(str(ipaddress.ip_interface(f"{info['local']}/{info['prefixlen']}")))
    return out


def set_addresses(netns: Netns, dev: str, cidrs: Iterable[str]) -> set[str]:
    """Make the device's addresses exactly `cidrs` ("100.64.0.1/24", "fd00::1/64"); IPv6
    ones skip duplicate address detection, so they are usable at once. The ones it added."""
    wanted = {str(ipaddress.ip_interface(c)) for c in cidrs}
    present = addresses(netns, dev)
    for cidr in sorted(present - wanted):
        commands.run([*_ip(netns), "addr", "del", cidr, "dev", dev])
    for cidr in sorted(wanted - present):
        extra = ["nodad"] if ipaddress.ip_interface(cidr).version == 6 else []
        commands.run([*_ip(netns), "addr", "add", cidr, "dev", dev, *extra])
    return wanted - present


def announce(netns: Netns, dev: str, cidrs: Iterable[str]) -> None:
    """Gratuitous ARP for IPv4 addresses that just moved here (a floating IP, a router's
    gateway), so neighbours that were asking for them learn at once instead of retrying
    their ARP a second later."""
    for cidr in sorted(cidrs):
        address = str(ipaddress.ip_interface(cidr).ip)
        if ipaddress.ip_address(address).version == 4:
            commands.run([*in_netns(netns), "busybox", "arping", "-U", "-c", "1", "-w", "0",
                          "-I", dev, "-s", address, address])  # fmt: skip


@dataclass(frozen=True, slots=True)
class Route:
    dst: str  # "default" or a CIDR
    via: str | None = None
    dev: str | None = None

    @property
    def version(self) -> int:
        probe = self.via or (None if self.dst == "default" else self.dst)
        return ipaddress.ip_interface(probe).version if probe else 4

    def key(self) -> tuple[str, str | None, str | None]:
        dst = self.dst if self.dst == "default" else str(ipaddress.ip_network(self.dst, False))
        return dst, self.via, self.dev


def routes(netns: Netns, proto: str | None = "static") -> set[Route]:
    """The main table's routes of one origin: by default `proto static`, the ones this
    module manages; None for all of them (the kernel's connected routes too)."""
    out: set[Route] = set()
    only = ["proto", proto] if proto else []
    for family in ("-4", "-6"):
        for raw in _json([*_ip(netns), "-j", family, "route", "show", *only]):
            dst = str(raw["dst"])
            if dst != "default":
                dst = str(ipaddress.ip_network(dst, False))
            out.add(Route(dst, raw.get("gateway"), raw.get("dev")))
    return out


def set_routes(netns: Netns, wanted: Iterable[Route]) -> None:
    """Make the namespace's static routes exactly `wanted` (connected routes are the
    kernel's, from the addresses). A `via` needs its subnet on a device first."""
    wanted_keys = {r.key(): r for r in wanted}
    present = {r.key(): r for r in routes(netns)}
    for key, route in present.items():
        if key not in wanted_keys:
            commands.run([*_ip(netns), f"-{route.version}", "route", "del", *_route_args(route)])
    for key, route in wanted_keys.items():
        if key not in present:
            commands.run(
                [*_ip(netns), f"-{route.version}", "route", "replace", *_route_args(route)]
            )


def _route_args(route: Route) -> list[str]:
    argv = [route.key()[0]]
    argv += ["via", route.via] if route.via else []
    argv += ["dev", route.dev] if route.dev else []
    return [*argv, "proto", "static"]


# --- sysctls -------------------------------------------------------------------


def set_sysctls(netns: Netns, values: Mapping[str, str | int]) -> None:
    """Set per-namespace sysctls ("net.ipv4.ip_forward": 1) inside `netns`."""
    if values:
        pairs = [f"{key}={value}" for key, value in values.items()]
        commands.run([*in_netns(netns), "sysctl", "-q", "-w", *pairs])


def enable_forwarding(netns: Netns) -> None:
    """A router: forward IPv4 and IPv6 between its legs."""
    set_sysctls(netns, {"net.ipv4.ip_forward": 1, "net.ipv6.conf.all.forwarding": 1})


def enable_bridge_netfilter(netns: Netns) -> None:
    """Bridged IPv4/IPv6 frames pass this namespace's iptables (security groups)."""
    set_sysctls(
        netns,
        {"net.bridge.bridge-nf-call-iptables": 1, "net.bridge.bridge-nf-call-ip6tables": 1},
    )
