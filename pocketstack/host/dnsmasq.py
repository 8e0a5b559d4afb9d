"""One dnsmasq per network: static DHCP leases, IPv6 router advertisements, DNS for ports.

The network agent calls `ensure(netns, directory, config)` for every network
with DHCP-enabled subnets on this host (the namespace is `qdhcp-<network
id>`, holding the DHCP port `ns-…`, see `netdev`), and `stop(directory)`
when the network goes. `ensure` is level-based: it writes the files below
atomically, starts dnsmasq if it is not running (a saved `ProcessId` finds
the one a previous agent started), restarts it when its command line
changes (subnets, domain, interface) and sends SIGHUP when only the files
did (hosts, DNS names, DHCP options), which dnsmasq re-reads without
dropping anything.

The directory holds:

- `host`: `--dhcp-hostsfile`, one line per (MAC, fixed IP): the only
  addresses handed out (`--dhcp-range=…,static`), so unknown MACs get none;
- `addn_hosts`: `--addn-hosts`, "IP fqdn name" per port with a DNS name,
  answered for the network's domain (`--local=/domain/` so AAAA and other
  misses are answered "no such data" instead of REFUSED under --no-resolv);
- `opts`: `--dhcp-optsfile`, per-subnet router, DNS servers, MTU, host routes;
- `argv.json`, `pid` (the running `ProcessId`), `leases`, `log`.

IPv6 address modes: `slaac` sends router advertisements with the prefix for
autoconfiguration (no DHCPv6), `dhcpv6-stateless` adds DHCPv6 for options,
`dhcpv6-stateful` hands out the ports' fixed addresses. The DHCP port is no
router, so its advertisements say so (router lifetime 0): IPv6 default
routes come from the router.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import shutil
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pocketstack.host import netdev, processes
from pocketstack.host.commands import HostCommandError

AddressMode = Literal["slaac", "dhcpv6-stateless", "dhcpv6-stateful"]
DEFAULT_DOMAIN = "openstacklocal"
READY_TIMEOUT_S = 5.0


@dataclass(frozen=True, slots=True)
class Subnet:
    subnet_id: str
    cidr: str
    gateway_ip: str | None = None
    dns_servers: tuple[str, ...] = ()  # none: dnsmasq offers itself
    ipv6_address_mode: AddressMode | None = None  # IPv6 only; None means dhcpv6-stateful
    host_routes: tuple[tuple[str, str], ...] = ()  # (destination CIDR, next hop)

    @property
    def network(self) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
        return ipaddress.ip_network(self.cidr, strict=False)

    @property
    def tag(self) -> str:
        return f"subnet-{self.subnet_id}"


@dataclass(frozen=True, slots=True)
class Host:
    """A port of the network: its MAC, fixed IPs and DNS name (None: no DNS record)."""

    mac: str
    ips: tuple[str, ...]
    hostname: str | None = None


@dataclass(frozen=True, slots=True)
class DhcpConfig:
    interface: str  # the DHCP port's device in the namespace (netdev.dhcp_port_name)
    subnets: tuple[Subnet, ...]  # the DHCP-enabled ones
    hosts: tuple[Host, ...] = ()
    domain: str = DEFAULT_DOMAIN
    mtu: int | None = None
    lease_s: int = 86400
    upstream_dns: tuple[str, ...] = ()  # where names outside the domain are forwarded


# --- what dnsmasq is given (pure) --------------------------------------------------


def _mode(subnet: Subnet) -> AddressMode:
    return subnet.ipv6_address_mode or "dhcpv6-stateful"


def _subnet_of(config: DhcpConfig, address: str) -> Subnet | None:
    ip = ipaddress.ip_address(address.split("/")[0])
    return next((s for s in config.subnets if ip in s.network), None)


def render_hosts(config: DhcpConfig) -> str:
    """The `--dhcp-hostsfile`: one static lease per fixed IP that DHCP hands out."""
    lines: list[str] = []
    for host in sorted(config.hosts, key=lambda h: h.mac):
        for address in host.ips:
            subnet = _subnet_of(config, address)
            if subnet is None:
                continue
            ip = ipaddress.ip_address(address.split("/")[0])
            if ip.version == 6:
                if _mode(subnet) != "dhcpv6-stateful":
                    continue
                shown = f"[{ip}]"
            else:
                shown = str(ip)
            name = f",{host.hostname}" if host.hostname else ""
            lines.append(f"{host.mac.lower()},{shown}{name}")
    return "".join(f"{line}\n" for line in lines)


def render_addn_hosts(config: DhcpConfig) -> str:
    """The `--addn-hosts` file: DNS answers for ports' names in the network's domain."""
    lines: list[str] = []
    for host in sorted(config.hosts, key=lambda h: h.mac):
        if not host.hostname:
            continue
        for address in host.ips:
            ip = ipaddress.ip_address(address.split("/")[0])
            lines.append(f"{ip} {host.hostname}.{config.domain} {host.hostname}")
    return "".join(f"{line}\n" for line in lines)


def render_opts(config: DhcpConfig) -> str:
    """The `--dhcp-optsfile`: per-subnet router, DNS servers, MTU and routes."""
    lines: list[str] = []
    for subnet in config.subnets:
        tag = f"tag:{subnet.tag}"
        if subnet.network.version == 4:
            # No gateway: an empty router option tells the client there is none.
            router = f",{subnet.gateway_ip}" if subnet.gateway_ip else ""
            lines.append(f"{tag},option:router{router}")
            if subnet.dns_servers:
                lines.append(f"{tag},option:dns-server,{','.join(subnet.dns_servers)}")
            if config.mtu:
                lines.append(f"{tag},option:mtu,{config.mtu}")
            if subnet.host_routes:
                # A client that gets classless routes ignores the router option.
                routes = [*subnet.host_routes]
                if subnet.gateway_ip:
                    routes.append(("0.0.0.0/0", subnet.gateway_ip))
                pairs = ",".join(f"{dst},{hop}" for dst, hop in routes)
                lines.append(f"{tag},option:classless-static-route,{pairs}")
        else:
            if subnet.dns_servers:
                servers = ",".join(f"[{s}]" for s in subnet.dns_servers)
                lines.append(f"{tag},option6:dns-server,{servers}")
            lines.append(f"{tag},option6:domain-search,{config.domain}")
    return "".join(f"{line}\n" for line in lines)


def _range(subnet: Subnet, lease_s: int) -> str:
    network = subnet.network
    if network.version == 4:
        return f"set:{subnet.tag},{network.network_address},static,{network.netmask},{lease_s}s"
    mode = {"slaac": "ra-only", "dhcpv6-stateless": "ra-stateless", "dhcpv6-stateful": "static"}
    return (
        f"set:{subnet.tag},{network.network_address},{mode[_mode(subnet)]},"
        f"{network.prefixlen},{lease_s}s"
    )


def render_argv(netns: str, directory: Path, config: DhcpConfig) -> list[str]:
    """The whole command line; a change in it means a restart, not a SIGHUP."""
    argv = [
        *netdev.in_netns(netns),
        "dnsmasq",
        "--keep-in-foreground",
        "--conf-file=/dev/null",
        "--user=root",
        "--no-hosts",
        "--no-resolv",
        "--no-ping",
        "--log-facility=-",
        f"--pid-file={directory / 'dnsmasq.pid'}",
        f"--interface={config.interface}",
        "--except-interface=lo",
        "--bind-dynamic",
        f"--dhcp-hostsfile={directory / 'host'}",
        f"--addn-hosts={directory / 'addn_hosts'}",
        f"--dhcp-optsfile={directory / 'opts'}",
        f"--dhcp-leasefile={directory / 'leases'}",
        f"--domain={config.domain}",
        f"--local=/{config.domain}/",
    ]
    argv += [f"--server={server}" for server in config.upstream_dns]
    argv += [f"--dhcp-range={_range(s, config.lease_s)}" for s in config.subnets]
    if any(s.network.version == 6 for s in config.subnets):
        mtu = f"mtu:{config.mtu}," if config.mtu else ""
        # Advertise every 60 s (and at once on a solicitation), as a router for 0 s.
        argv += ["--enable-ra", f"--ra-param={config.interface},{mtu}60,0"]
    return argv


# --- the running dnsmasq -------------------------------------------------------------


def _write(path: Path, text: str) -> bool:
    """Replace the file atomically if its text differs; did it?"""
    with contextlib.suppress(OSError):
        if path.read_text() == text:
            return False
    partial = path.with_name(f".{path.name}.tmp")
    partial.write_text(text)
    partial.replace(path)
    return True


def running(directory: Path) -> processes.ProcessId | None:
    """The dnsmasq started for this directory, if it still runs."""
    found = processes.ProcessId.load(directory / "pid")
    return found if found is not None and processes.alive(found) else None


def ensure(netns: str, directory: Path, config: DhcpConfig) -> processes.ProcessId:
    """Run dnsmasq in `netns` serving exactly `config`; its files live in `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    changed = _write(directory / "host", render_hosts(config))
    changed |= _write(directory / "addn_hosts", render_addn_hosts(config))
    changed |= _write(directory / "opts", render_opts(config))
    argv = render_argv(netns, directory, config)
    current = running(directory)
    if current is not None:
        with contextlib.suppress(OSError, ValueError):
            saved = json.loads((directory / "argv.json").read_text())
            # A namespace deleted and made again is a new one: the old dnsmasq serves nobody.
            if saved == argv and _same_netns(current.pid, netns):
                if changed:
                    processes.send(current, signal.SIGHUP)
                return current
        processes.stop(current, 5.0)
    _write(directory / "argv.json", json.dumps(argv))
    started = processes.spawn(argv, directory / "log")
    started.save(directory / "pid")
    _wait_ready(started, argv, directory / "log")
    return started


def stop(directory: Path, purge: bool = False) -> None:
    """Stop the directory's dnsmasq if it runs; `purge` removes its files too."""
    current = processes.ProcessId.load(directory / "pid")
    if current is not None:
        processes.stop(current, 5.0)
    if purge:
        shutil.rmtree(directory, ignore_errors=True)
    else:
        (directory / "pid").unlink(missing_ok=True)


def _same_netns(pid: int, netns: str) -> bool:
    with contextlib.suppress(OSError):
        return os.stat(f"/proc/{pid}/ns/net").st_ino == os.stat(netdev.netns_path(netns)).st_ino
    return False


def _catches_sighup(pid: int) -> bool:
    with contextlib.suppress(OSError, ValueError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("SigCgt:"):
                return bool(int(line.split()[1], 16) & (1 << (signal.SIGHUP - 1)))
    return False


def _listening(pid: int) -> bool:
    """Has dnsmasq bound its DHCP (67, 547) or DNS (53) socket? Seen through its netns."""
    wanted = {f":{port:04X}" for port in (53, 67, 547)}
    for table in ("udp", "udp6"):
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
                local = line.split()[1]
                if local[local.rindex(":") :] in wanted:
                    return True
    return False


def _wait_ready(started: processes.ProcessId, argv: list[str], log: Path) -> None:
    """Until dnsmasq serves (so a SIGHUP right after is a reload, not its death)."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if not processes.alive(started):
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise HostCommandError(argv, f"dnsmasq exited: {tail}")
        if _catches_sighup(started.pid) and _listening(started.pid):
            return
        time.sleep(0.01)
    raise HostCommandError(argv, f"dnsmasq not serving after {READY_TIMEOUT_S:.0f} s; see {log}")
