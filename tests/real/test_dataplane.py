"""The linuxbridge data plane's host layer on this machine, end to end, in namespaces.

One miniature cloud is built per module run, every name carrying a random
suffix so parallel runs never meet: an internal network (bridge namespace,
DHCP namespace with dnsmasq), an external network reachable from the host
through a veth in the root namespace, a router between them with SNAT, a
floating IP and port forwards, a fake "world" namespace on the external
network, and busybox-httpd "servers" in plain namespaces whose addresses
come from dnsmasq through `busybox udhcpc`. Tests look from where a user
would (a server, the world, the host) and restore what they change; the
fixture removes every namespace, process and host link even on failure.
"""

from __future__ import annotations

import contextlib
import dataclasses
import ipaddress
import json
import os
import re
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from pocketstack.host import dnsmasq, firewall, netdev, processes, qos
from pocketstack.host.dnsmasq import DhcpConfig, Host, Subnet
from pocketstack.host.firewall import (
    AddressPair,
    FloatingIp,
    PortFilter,
    PortForward,
    RouterNat,
    Rule,
)
from tests.real import host_checks


def _missing() -> str | None:
    if os.geteuid() != 0:
        return "needs root (namespaces, bridges, iptables)"
    tools = ("ip", "bridge", "tc", "iptables-restore", "ip6tables-restore", "dnsmasq",
             "busybox", "curl", "nsenter", "sysctl")  # fmt: skip
    absent = [t for t in tools if shutil.which(t) is None]
    if absent:
        return f"{', '.join(absent)} not installed"
    version = subprocess.run(["iptables", "--version"], capture_output=True, text=True).stdout
    if "nf_tables" not in version:
        return "iptables is not the nft backend"
    return None


pytestmark = pytest.mark.skipif(_missing() is not None, reason=f"data plane: {_missing()}")

SUFFIX = uuid.uuid4().hex[:6]
DOMAIN = f"t{SUFFIX}.test"
INTERNAL = ipaddress.IPv4Network("100.64.10.0/24")
INTERNAL6 = ipaddress.IPv6Network("fd64:10::/64")
DHCP_IP = INTERNAL.network_address + 2
DHCP_IP6 = INTERNAL6.network_address + 2
UNDERLAY = ipaddress.ip_network("198.18.250.0/30")  # only inside two underlay namespaces
MTU = 1450
BLOB_BYTES = 2 * 1024 * 1024
RATE_KBIT = 16_000


def ident(role: str) -> str:
    """An id whose first 11 characters (what device names keep) are unique to this run."""
    assert len(role) == 4
    return f"{SUFFIX}{role}-{uuid.uuid4()}"


def mac(n: int) -> str:
    return f"fa:16:3e:{SUFFIX[:2]}:{SUFFIX[2:4]}:{n:02x}"


def eui64(prefix: ipaddress.IPv6Network, mac_address: str) -> str:
    link_local = ipaddress.IPv6Address(firewall.link_local(mac_address))
    return str(prefix.network_address + (int(link_local) & ((1 << 64) - 1)))


def external_subnet() -> ipaddress.IPv4Network:
    return ipaddress.IPv4Network(host_checks.free_external_cidr())


def run(netns: str | None, *argv: str, timeout: float = 10.0) -> subprocess.CompletedProcess[str]:
    prefix = ["ip", "netns", "exec", netns] if netns else []
    return subprocess.run(
        [*prefix, *argv], capture_output=True, text=True, timeout=timeout, check=False
    )


def http(netns: str | None, url: str, timeout: float = 1.0) -> str | None:
    """The body at `url` seen from `netns` (None: the host), or None when nothing answers."""
    done = run(netns, "curl", "-sf", "--noproxy", "*", "--max-time", str(timeout), url,
               timeout=timeout + 5)  # fmt: skip
    return done.stdout.strip() if done.returncode == 0 else None


def timed_rate_kbit(netns: str | None, url: str, data: Path | None = None) -> float:
    """Download (or upload `data`) a blob; the rate it went at."""
    # (no "Expect: 100-continue": busybox httpd never answers it, curl would wait 1 s)
    upload = ["--data-binary", f"@{data}", "-H", "Expect:"] if data else []
    started = time.monotonic()
    done = run(netns, "curl", "-sf", "--noproxy", "*", "--max-time", "10", "-o", "/dev/null",
               "-w", "%{size_download} %{size_upload}", *upload, url, timeout=15)  # fmt: skip
    elapsed = time.monotonic() - started
    assert done.returncode == 0, done.stderr
    assert BLOB_BYTES in [int(float(n)) for n in done.stdout.split()]
    return BLOB_BYTES * 8 / 1000 / elapsed


def ping(netns: str, address: str, source: str | None = None) -> bool:
    extra = ["-I", source] if source else []
    return run(netns, "busybox", "ping", "-c", "1", "-W", "1", *extra, address).returncode == 0


def arping(netns: str, address: str, source: str) -> bool:
    """Does `address` answer an ARP request that says it comes from `source`?"""
    done = run(netns, "busybox", "arping", "-f", "-c", "1", "-w", "1", "-I", "eth0", "-s",
               source, address)  # fmt: skip
    return done.returncode == 0


@dataclass
class Server:
    name: str
    port_id: str
    mac: str
    ip: str
    netns: str
    docroot: Path

    @property
    def tap(self) -> str:
        return netdev.tap_name(self.port_id)


@dataclass
class Scenario:
    tmp: Path
    network_id: str = field(default_factory=lambda: ident("neti"))
    external_id: str = field(default_factory=lambda: ident("nete"))
    router_id: str = field(default_factory=lambda: ident("rtr1"))
    dhcp_port: str = field(default_factory=lambda: ident("dhcp"))
    router_port: str = field(default_factory=lambda: ident("rint"))
    gateway_port: str = field(default_factory=lambda: ident("rext"))
    world_port: str = field(default_factory=lambda: ident("wrld"))
    external: ipaddress.IPv4Network = field(default_factory=external_subnet)
    namespaces: list[str] = field(default_factory=list)
    children: list[subprocess.Popen[bytes]] = field(default_factory=list)
    servers: dict[str, Server] = field(default_factory=dict)
    hosts: list[Host] = field(default_factory=list)
    subnets: list[Subnet] = field(default_factory=list)

    # addresses
    def ext(self, n: int) -> str:
        return str(self.external.network_address + n)

    @property
    def fip(self) -> str:
        return self.ext(20)

    @property
    def forward_ip(self) -> str:
        return self.ext(21)

    @property
    def gateway_ip(self) -> str:
        return self.ext(10)

    @property
    def host_ip(self) -> str:
        return self.ext(1)

    @property
    def world_ip(self) -> str:
        return self.ext(100)

    @property
    def bridge_ns(self) -> str:
        return netdev.network_netns(self.network_id)

    @property
    def ext_bridge_ns(self) -> str:
        return netdev.network_netns(self.external_id)

    @property
    def dhcp_ns(self) -> str:
        return netdev.dhcp_netns(self.network_id)

    @property
    def router_ns(self) -> str:
        return netdev.router_netns(self.router_id)

    @property
    def world_ns(self) -> str:
        return f"pst-{SUFFIX}-wrld"

    @property
    def dhcp_dir(self) -> Path:
        return self.tmp / "dhcp"

    @property
    def gateway_if(self) -> str:
        return netdev.gateway_port_name(self.gateway_port)

    def namespace(self, name: str) -> str:
        if name not in self.namespaces:
            self.namespaces.append(name)
        netdev.create_netns(name)
        return name

    def start(self, netns: str, *argv: str) -> subprocess.Popen[bytes]:
        child = subprocess.Popen(
            ["ip", "netns", "exec", netns, *argv],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        self.children.append(child)
        return child

    def serve(self, netns: str, name: str) -> Path:
        """busybox httpd on :80 and :81 with its name, a blob, its client's address and a
        sink for uploads."""
        docroot = self.tmp / f"www-{name}"
        (docroot / "cgi-bin").mkdir(parents=True)
        (docroot / "index.html").write_text(f"{name}\n")
        (docroot / "blob").write_bytes(os.urandom(BLOB_BYTES))
        cgi = {
            # busybox httpd shows IPv4 clients as [::ffff:a.b.c.d]
            "ip": 'a=${REMOTE_ADDR#[}; a=${a%]}; echo "Content-Type: text/plain"; echo; '
            'echo "${a#::ffff:}"',
            "sink": 'head -c "$CONTENT_LENGTH" >/dev/null; echo "Content-Type: text/plain"; '
            "echo; echo ok",
        }
        for script, body in cgi.items():
            path = docroot / "cgi-bin" / script
            path.write_text(f"#!/bin/sh\n{body}\n")
            path.chmod(0o755)
        docroot81 = self.tmp / f"www-{name}-81"
        docroot81.mkdir()
        (docroot81 / "index.html").write_text(f"{name}:81\n")
        self.start(netns, "busybox", "httpd", "-f", "-p", "80", "-h", str(docroot))
        self.start(netns, "busybox", "httpd", "-f", "-p", "81", "-h", str(docroot81))
        return docroot

    def plug(self, name: str, n: int) -> Server:
        """A server namespace with eth0 on the internal bridge (no address yet)."""
        server = self.servers.get(name)
        if server is None:
            server = Server(name, ident(name), mac(n), str(INTERNAL.network_address + n),
                            f"pst-{SUFFIX}-{name}", self.tmp / f"www-{name}")  # fmt: skip
            self.servers[name] = server
        self.namespace(server.netns)
        netdev.ensure_veth(server.tap, "eth0", netns=self.bridge_ns, peer_netns=server.netns,
                           mtu=MTU, peer_mac=server.mac,
                           master=netdev.bridge_name(self.network_id))  # fmt: skip
        return server

    def dhcp_config(self) -> DhcpConfig:
        return DhcpConfig(
            interface=netdev.dhcp_port_name(self.dhcp_port),
            subnets=tuple(self.subnets),
            hosts=tuple(self.hosts),
            domain=DOMAIN,
            mtu=MTU,
        )

    def lease(self, server: Server, attempts: int = 3) -> dict[str, str] | None:
        """Ask for an address with busybox udhcpc; what it was told, or None."""
        out = self.tmp / f"lease-{server.name}"
        out.unlink(missing_ok=True)
        done = run(
            server.netns, "env", f"LEASE_OUT={out}", "busybox", "udhcpc", "-i", "eth0", "-n",
            "-q", "-f", "-t", str(attempts), "-T", "1", "-O", "mtu", "-s",
            str(self.tmp / "udhcpc.sh"), timeout=attempts + 10,
        )  # fmt: skip
        if done.returncode != 0 or not out.exists():
            return None
        return dict(line.split("=", 1) for line in out.read_text().splitlines() if "=" in line)


UDHCPC_SCRIPT = """#!/bin/sh
case "$1" in
bound|renew)
    ip -4 addr flush dev "$interface" scope global
    ip addr add "$ip/$mask" dev "$interface"
    [ -n "$router" ] && ip route replace default via "${router%% *}" dev "$interface"
    for v in ip mask router dns hostname domain mtu; do eval echo "$v=\\$$v"; done > "$LEASE_OUT"
    ;;
esac
exit 0
"""


def build(s: Scenario) -> None:
    (s.tmp / "udhcpc.sh").write_text(UDHCPC_SCRIPT)
    (s.tmp / "udhcpc.sh").chmod(0o755)
    s.subnets += [
        Subnet(ident("sub4"), str(INTERNAL), str(INTERNAL.network_address + 1)),
        Subnet(ident("sub6"), str(INTERNAL6), ipv6_address_mode="slaac"),
    ]
    converge(s)
    for name in ("world", "vm-a", "vm-b"):
        s.serve(s.world_ns if name == "world" else s.servers[name].netns, name)
    for server in s.servers.values():
        assert s.lease(server) is not None, f"{server.name} got no lease"


def converge(s: Scenario) -> None:
    """What a network agent does for this scenario's resources: idempotent calls only."""
    # The internal network: bridge namespace, DHCP namespace with its port.
    bridge = netdev.bridge_name(s.network_id)
    s.namespace(s.bridge_ns)
    netdev.ensure_bridge(s.bridge_ns, bridge, mtu=MTU)
    netdev.enable_bridge_netfilter(s.bridge_ns)
    s.namespace(s.dhcp_ns)
    ns_port = netdev.dhcp_port_name(s.dhcp_port)
    netdev.ensure_veth(netdev.tap_name(s.dhcp_port), ns_port, netns=s.bridge_ns,
                       peer_netns=s.dhcp_ns, mtu=MTU, master=bridge)  # fmt: skip
    netdev.set_addresses(s.dhcp_ns, ns_port, [f"{DHCP_IP}/24", f"{DHCP_IP6}/64"])

    # The external network, reachable from the host through a veth in the root namespace.
    ext_bridge = netdev.bridge_name(s.external_id)
    s.namespace(s.ext_bridge_ns)
    netdev.ensure_bridge(s.ext_bridge_ns, ext_bridge)
    bridge_end, host_end = netdev.host_leg_names(s.external_id)
    netdev.ensure_veth(bridge_end, host_end, netns=s.ext_bridge_ns, peer_netns=None,
                       master=ext_bridge)  # fmt: skip
    netdev.set_addresses(None, host_end, [f"{s.host_ip}/24"])
    world = s.namespace(s.world_ns)
    netdev.ensure_veth(netdev.tap_name(s.world_port), "eth0", netns=s.ext_bridge_ns,
                       peer_netns=world, master=ext_bridge)  # fmt: skip
    netdev.set_addresses(world, "eth0", [f"{s.world_ip}/24"])

    # The router: one leg on each network, NAT.
    s.namespace(s.router_ns)
    qr = netdev.router_port_name(s.router_port)
    netdev.ensure_veth(netdev.tap_name(s.router_port), qr, netns=s.bridge_ns,
                       peer_netns=s.router_ns, mtu=MTU, master=bridge)  # fmt: skip
    netdev.ensure_veth(netdev.tap_name(s.gateway_port), s.gateway_if, netns=s.ext_bridge_ns,
                       peer_netns=s.router_ns, master=ext_bridge)  # fmt: skip
    netdev.set_addresses(s.router_ns, qr, [f"{INTERNAL.network_address + 1}/24"])
    netdev.set_addresses(
        s.router_ns, s.gateway_if, [f"{s.gateway_ip}/24", f"{s.fip}/32", f"{s.forward_ip}/32"]
    )
    netdev.enable_forwarding(s.router_ns)
    netdev.set_routes(s.router_ns, [netdev.Route("default", s.host_ip, s.gateway_if)])
    firewall.apply_router_nat(s.router_ns, router_nat(s))

    # Two servers with their static leases and DNS names (IPv4 and SLAAC IPv6).
    for name, n in (("vm-a", 11), ("vm-b", 12)):
        server = s.plug(name, n)
        host = Host(server.mac, (server.ip, eui64(INTERNAL6, server.mac)), name)
        if host not in s.hosts:
            s.hosts.append(host)
    dnsmasq.ensure(s.dhcp_ns, s.dhcp_dir, s.dhcp_config())


def router_nat(s: Scenario) -> RouterNat:
    vm_b = str(INTERNAL.network_address + 12)
    return RouterNat(
        gateway_if=s.gateway_if,
        gateway_ip=s.gateway_ip,
        snat_cidrs=(str(INTERNAL),),
        floating=(FloatingIp(s.fip, vm_b),),
        forwards=(
            PortForward("tcp", s.forward_ip, 8080, 8080, vm_b, 80, 80),
            PortForward("tcp", s.forward_ip, 9080, 9081, vm_b, 80, 81),
        ),
    )


def teardown(s: Scenario) -> None:
    for child in s.children:
        with contextlib.suppress(ProcessLookupError):
            child.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.wait(5)
    dnsmasq.stop(s.dhcp_dir, purge=True)
    netdev.delete_link(None, netdev.host_leg_names(s.external_id)[1])
    for name in reversed(s.namespaces):
        netdev.delete_netns(name)


@pytest.fixture(scope="module")
def scenario(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scenario]:
    s = Scenario(tmp_path_factory.mktemp("dataplane"))
    try:
        build(s)
        yield s
    finally:
        teardown(s)
    assert not [n for n in netdev.list_netns() if SUFFIX in n]
    assert netdev.link(None, netdev.host_leg_names(s.external_id)[1]) is None


# --- DHCP and DNS ---------------------------------------------------------------------


def nslookup(netns: str, name: str, kind: str = "A") -> str:
    done = run(netns, "busybox", "nslookup", f"-type={kind}", name, str(DHCP_IP))
    return done.stdout + done.stderr


def test_servers_get_their_static_leases_and_find_each_other_by_name(s: Scenario) -> None:
    vm_a = s.servers["vm-a"]
    assert s.lease(vm_a) == {
        "ip": vm_a.ip,
        "mask": "24",
        "router": str(INTERNAL.network_address + 1),
        "dns": str(DHCP_IP),
        "hostname": "vm-a",
        "domain": DOMAIN,
        "mtu": str(MTU),
    }
    assert s.servers["vm-b"].ip in nslookup(vm_a.netns, f"vm-b.{DOMAIN}")

    # A MAC dnsmasq does not know gets nothing; once the port is added (a SIGHUP, not a
    # restart) it gets its address and its name resolves.
    process = dnsmasq.running(s.dhcp_dir)
    newcomer = s.plug("vm-n", 13)
    assert s.lease(newcomer, attempts=1) is None
    s.hosts.append(Host(newcomer.mac, (newcomer.ip,), "newcomer"))
    assert dnsmasq.ensure(s.dhcp_ns, s.dhcp_dir, s.dhcp_config()) == process
    lease = s.lease(newcomer)
    assert lease is not None and lease["ip"] == newcomer.ip and lease["hostname"] == "newcomer"
    assert newcomer.ip in nslookup(vm_a.netns, "newcomer")


def test_dnsmasq_is_found_again_restarted_on_new_arguments_and_stopped(s: Scenario) -> None:
    process = dnsmasq.running(s.dhcp_dir)
    assert process is not None
    assert dnsmasq.ensure(s.dhcp_ns, s.dhcp_dir, s.dhcp_config()) == process
    shorter = dataclasses.replace(s.dhcp_config(), lease_s=600)
    restarted = dnsmasq.ensure(s.dhcp_ns, s.dhcp_dir, shorter)
    assert restarted != process and not processes.alive(process)
    assert "--dhcp-range=set:" in Path(f"/proc/{restarted.pid}/cmdline").read_text()
    dnsmasq.stop(s.dhcp_dir)
    assert dnsmasq.running(s.dhcp_dir) is None and not processes.alive(restarted)
    dnsmasq.stop(s.dhcp_dir)  # gone already: fine
    again = dnsmasq.ensure(s.dhcp_ns, s.dhcp_dir, s.dhcp_config())
    assert dnsmasq.running(s.dhcp_dir) == again
    assert s.lease(s.servers["vm-a"]) is not None


# A DHCPv6 client in a few lines (busybox has none): SOLICIT with a DUID-LL of the MAC
# and one IA_NA, print the ADVERTISE's address and DNS servers as JSON.
DHCP6_CLIENT = r"""
import ipaddress, json, os, socket, struct, sys
iface, mac = sys.argv[1], bytes.fromhex(sys.argv[2].replace(":", ""))
def opt(code, data):
    return struct.pack("!HH", code, len(data)) + data
def options(buf):
    while len(buf) >= 4:
        code, size = struct.unpack("!HH", buf[:4])
        yield code, buf[4 : 4 + size]
        buf = buf[4 + size :]
solicit = (b"\x01" + os.urandom(3) + opt(1, struct.pack("!HH", 3, 1) + mac)
           + opt(3, struct.pack("!III", 1, 0, 0)) + opt(8, b"\0\0") + opt(6, b"\0\x17"))
sock = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, iface.encode())
sock.bind(("::", 546))
sock.settimeout(3)
sock.sendto(solicit, ("ff02::1:2", 547, 0, socket.if_nametoindex(iface)))
reply, found = sock.recv(4096), {}
for code, body in options(reply[4:]):
    if code == 3:
        for inner, value in options(body[12:]):
            if inner == 5:
                found["address"] = str(ipaddress.IPv6Address(value[:16]))
    if code == 23:
        found["dns"] = [str(ipaddress.IPv6Address(body[i:i + 16])) for i in range(0, len(body), 16)]
print(json.dumps(found))
"""


def test_dnsmasq_takes_every_ipv6_address_mode_and_leases_stateful_ones(s: Scenario) -> None:
    server, client = s.namespace(f"pst-{SUFFIX}-d6"), s.namespace(f"pst-{SUFFIX}-d6c")
    for netns in (server, client):  # link-local addresses usable at once
        netdev.set_sysctls(netns, {"net.ipv6.conf.default.accept_dad": 0})
    netdev.ensure_veth("ns-modes", "eth0", netns=server, peer_netns=client, peer_mac=mac(50))
    prefixes = [ipaddress.IPv6Network(f"fd64:{n}::/64") for n in (1, 2, 3)]
    netdev.set_addresses(server, "ns-modes", [f"{p.network_address + 2}/64" for p in prefixes])
    modes: tuple[dnsmasq.AddressMode, ...] = ("slaac", "dhcpv6-stateless", "dhcpv6-stateful")
    subnets = [
        Subnet(f"m{n}", str(p), dns_servers=(str(p.network_address + 53),), ipv6_address_mode=m)
        for n, (p, m) in enumerate(zip(prefixes, modes, strict=True))
    ]
    fixed = str(prefixes[2].network_address + 50)
    config = DhcpConfig(
        interface="ns-modes",
        subnets=tuple(subnets),
        hosts=(Host(mac(50), (fixed,), "v6"),),
        domain=DOMAIN,
    )
    directory = s.tmp / "dhcp-modes"
    try:
        process = dnsmasq.ensure(server, directory, config)
        assert processes.alive(process)
        assert f"{mac(50)},[{fixed}],v6" in (directory / "host").read_text()
        deadline = time.monotonic() + 5
        while not any(a.startswith("fe80:") for a in _ipv6(client)):
            assert time.monotonic() < deadline, "no link-local address"
            time.sleep(0.02)
        done = run(client, sys.executable, "-c", DHCP6_CLIENT, "eth0", mac(50))
        assert done.returncode == 0, done.stderr
        answer = json.loads(done.stdout)
        assert answer["address"] == fixed
        assert str(prefixes[2].network_address + 53) in answer["dns"]

        # The namespace deleted and made again (a resync after drift): dnsmasq, still in
        # the old one, is replaced by one in the new.
        netdev.delete_link(client, "eth0")
        netdev.delete_netns(server)
        netdev.create_netns(server)
        netdev.ensure_veth("ns-modes", "eth0", netns=server, peer_netns=client, peer_mac=mac(50))
        netdev.set_addresses(server, "ns-modes", [f"{p.network_address + 2}/64" for p in prefixes])
        replaced = dnsmasq.ensure(server, directory, config)
        assert replaced != process and not processes.alive(process)
        assert (
            os.stat(f"/proc/{replaced.pid}/ns/net").st_ino == os.stat(f"/run/netns/{server}").st_ino
        )
    finally:
        dnsmasq.stop(directory, purge=True)


def wait_slaac(server: Server) -> str:
    """The server's SLAAC address, once the kernel has made it from an advertisement."""
    expected = eui64(INTERNAL6, server.mac)
    for wait_s in (3.0, 10.0):
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            if expected in _ipv6(server.netns):
                return expected
            time.sleep(0.05)
        # Solicit an advertisement now (restarting IPv6 only: a link going down would
        # take the IPv4 default route with it).
        for off in (1, 0):
            netdev.set_sysctls(server.netns, {"net.ipv6.conf.eth0.disable_ipv6": off})
    raise AssertionError(f"{server.name} made no SLAAC address")


def _ipv6(netns: str) -> set[str]:
    found = json.loads(run(netns, "ip", "-j", "-6", "addr", "show", "dev", "eth0").stdout)
    return {
        str(a["local"])
        for d in found
        for a in d.get("addr_info", [])
        if not a.get("tentative")  # still in duplicate address detection: not answering yet
    }


def test_ipv6_slaac_addresses_and_aaaa_answers(s: Scenario) -> None:
    vm_a, vm_b = s.servers["vm-a"], s.servers["vm-b"]
    wait_slaac(vm_a)
    vm_b6 = wait_slaac(vm_b)
    assert vm_b6 in nslookup(vm_a.netns, f"vm-b.{DOMAIN}", "AAAA")
    assert run(vm_a.netns, "busybox", "ping6", "-c", "1", "-W", "2", vm_b6).returncode == 0
    # A name with no IPv6 address gets "no data", not REFUSED (--local=/domain/).
    assert "REFUSED" not in nslookup(vm_a.netns, f"nowhere.{DOMAIN}", "AAAA")


# --- VXLAN --------------------------------------------------------------------------------


def test_vxlan_carries_the_network_to_a_second_host(s: Scenario) -> None:
    # Two "hypervisors" joined by an underlay veth; the second has its own bridge
    # namespace with a server plugged into it by the PID of a process inside.
    u1 = s.namespace(f"pst-{SUFFIX}-und1")
    u2 = s.namespace(f"pst-{SUFFIX}-und2")
    netdev.ensure_veth("ul", "ul", netns=u1, peer_netns=u2)
    local, remote = str(UNDERLAY.network_address + 1), str(UNDERLAY.network_address + 2)
    netdev.set_addresses(u1, "ul", [f"{local}/30"])
    netdev.set_addresses(u2, "ul", [f"{remote}/30"])
    host2 = s.namespace(f"pst-{SUFFIX}-hst2")
    netdev.ensure_bridge(host2, "br2", mtu=MTU)
    vx = netdev.vxlan_name(s.network_id)
    for netns, underlay, here, there, master in (
        (s.bridge_ns, u1, local, remote, netdev.bridge_name(s.network_id)),
        (host2, u2, remote, local, "br2"),
    ):
        for _ in range(2):  # idempotent
            netdev.ensure_vxlan(netns, vx, 4242, local_ip=here, underlay_dev="ul",
                                underlay_netns=underlay, mtu=MTU, master=master)  # fmt: skip
            netdev.set_vxlan_remotes(netns, vx, [there])
        assert netdev.vxlan_remotes(netns, vx) == {there}

    vm_c_ns = s.namespace(f"pst-{SUFFIX}-vm-c")
    holder = s.start(vm_c_ns, "sleep", "60")
    deadline = time.monotonic() + 5
    while os.readlink(f"/proc/{holder.pid}/ns/net") == os.readlink("/proc/self/ns/net"):
        assert time.monotonic() < deadline
        time.sleep(0.01)
    port_id = ident("vm-c")
    netdev.ensure_veth(netdev.tap_name(port_id), "eth0", netns=host2, peer_netns=holder.pid,
                       mtu=MTU, peer_mac=mac(14), master="br2")  # fmt: skip
    vm_c = Server("vm-c", port_id, mac(14), str(INTERNAL.network_address + 14), vm_c_ns,
                  s.tmp)  # fmt: skip
    s.hosts.append(Host(vm_c.mac, (vm_c.ip,), "vm-c"))
    dnsmasq.ensure(s.dhcp_ns, s.dhcp_dir, s.dhcp_config())
    lease = s.lease(vm_c)
    assert lease is not None and lease["ip"] == vm_c.ip
    assert http(vm_c.netns, f"http://{s.servers['vm-a'].ip}/") == "vm-a"

    # A changed VNI makes the device again; remotes follow the list given.
    netdev.ensure_vxlan(host2, vx, 4243, local_ip=remote, underlay_dev="ul",
                        underlay_netns=u2, master="br2")  # fmt: skip
    assert netdev.vxlan_remotes(host2, vx) == set()
    netdev.set_vxlan_remotes(host2, vx, [])
    assert http(vm_c.netns, f"http://{s.servers['vm-a'].ip}/", timeout=0.5) is None


# --- the router -----------------------------------------------------------------------


def test_router_snat_floating_ip_and_port_forwards(s: Scenario) -> None:
    vm_a, vm_b = s.servers["vm-a"], s.servers["vm-b"]
    # Out through the gateway: SNAT to the router's address, or to the floating IP.
    assert http(vm_a.netns, f"http://{s.world_ip}/cgi-bin/ip") == s.gateway_ip
    assert http(vm_b.netns, f"http://{s.world_ip}/cgi-bin/ip") == s.fip
    # In through the floating IP, from the world and from the host itself.
    assert http(s.world_ns, f"http://{s.fip}/") == "vm-b"
    assert http(None, f"http://{s.fip}/") == "vm-b"
    assert http(None, f"http://{s.fip}/cgi-bin/ip") == s.host_ip  # DNAT only: the client shows
    # Port forwards: one port, and a range shifted onto another.
    assert http(None, f"http://{s.forward_ip}:8080/") == "vm-b"
    assert http(None, f"http://{s.forward_ip}:9080/") == "vm-b"
    assert http(None, f"http://{s.forward_ip}:9081/") == "vm-b:81"
    assert http(None, f"http://{s.forward_ip}:9082/", timeout=0.5) is None
    # Hairpin: a server reaches its neighbour's floating IP.
    assert http(vm_a.netns, f"http://{s.fip}/") == "vm-b"

    # Converging: without the floating IP the server goes out as the router; applying
    # the same state twice changes nothing.
    nat = router_nat(s)
    firewall.apply_router_nat(s.router_ns, RouterNat(nat.gateway_if, nat.gateway_ip,
                                                     nat.snat_cidrs))  # fmt: skip
    assert http(vm_b.netns, f"http://{s.world_ip}/cgi-bin/ip") == s.gateway_ip
    assert http(None, f"http://{s.fip}/", timeout=0.5) is None
    for _ in range(2):
        firewall.apply_router_nat(s.router_ns, nat)
    saved = run(s.router_ns, "iptables-save", "-t", "nat").stdout
    assert saved.count("-j DNAT") == 3 and saved.count("--to-source") == 2
    assert http(None, f"http://{s.fip}/") == "vm-b"


# --- security groups ---------------------------------------------------------------------


def vm_b_filter(s: Scenario, *rules: Rule, pairs: tuple[AddressPair, ...] = ()) -> PortFilter:
    vm_b = s.servers["vm-b"]
    allow = (Rule("egress", "IPv4"), Rule("egress", "IPv6"), Rule("ingress", "IPv6", "icmp"))
    ips = (vm_b.ip, eui64(INTERNAL6, vm_b.mac))
    return PortFilter(vm_b.tap, vm_b.mac, ips, pairs, (*allow, *rules))


def known(s: Scenario, *filtered: PortFilter, leave_out: str = "") -> list[PortFilter]:
    """These filters, and every other port device on the internal bridge passing
    unfiltered (the agent names them all: the bridge passes nothing for others)."""
    taps = [netdev.tap_name(p) for p in (s.dhcp_port, s.router_port)]
    taps += [server.tap for server in s.servers.values()]
    named = {f.tap for f in filtered}
    return [*filtered, *(PortFilter(tap, mac(0), port_security=False) for tap in taps
                         if tap not in named and tap != leave_out)]  # fmt: skip


def test_security_groups_filter_a_port(s: Scenario) -> None:
    vm_a, vm_b = s.servers["vm-a"], s.servers["vm-b"]
    icmp = Rule("ingress", "IPv4", "icmp")
    try:
        firewall.apply_port_filters(s.bridge_ns, known(s, vm_b_filter(s, icmp)))
        assert ping(vm_a.netns, vm_b.ip)
        vm_b6 = wait_slaac(vm_b)  # neighbour discovery passes, and ICMPv6 as allowed
        assert run(vm_a.netns, "busybox", "ping6", "-c", "1", "-W", "2", vm_b6).returncode == 0
        assert http(vm_a.netns, f"http://{vm_b.ip}/", timeout=0.5) is None
        assert http(None, f"http://{s.fip}/", timeout=0.5) is None
        # Its own connections out still work (replies are tracked), and DHCP too.
        assert http(vm_b.netns, f"http://{vm_a.ip}/") == "vm-a"
        assert s.lease(vm_b) is not None

        web = Rule("ingress", "IPv4", "tcp", 80, 80)
        only_a = Rule("ingress", "IPv4", "tcp", 81, 81, f"{vm_a.ip}/32")
        for _ in range(2):  # idempotent
            firewall.apply_port_filters(s.bridge_ns, known(s, vm_b_filter(s, icmp, web, only_a)))
        assert http(vm_a.netns, f"http://{vm_b.ip}/") == "vm-b"
        assert http(None, f"http://{s.fip}/") == "vm-b"
        assert http(vm_a.netns, f"http://{vm_b.ip}:81/") == "vm-b:81"
        assert http(None, f"http://{s.forward_ip}:9081/", timeout=0.5) is None

        # Anti-spoofing: another source address passes only as an allowed address pair.
        spoofed = str(INTERNAL.network_address + 99)
        netdev.set_addresses(vm_b.netns, "eth0", [f"{vm_b.ip}/24", f"{spoofed}/24"])
        assert ping(vm_b.netns, vm_a.ip, source=vm_b.ip)
        assert arping(vm_b.netns, vm_a.ip, source=vm_b.ip)
        assert not ping(vm_b.netns, vm_a.ip, source=spoofed)
        assert not arping(vm_b.netns, vm_a.ip, source=spoofed)  # nft bridge table
        pair = (AddressPair(spoofed),)
        firewall.apply_port_filters(s.bridge_ns, known(s, vm_b_filter(s, icmp, web, pairs=pair)))
        assert ping(vm_b.netns, vm_a.ip, source=spoofed)
        assert arping(vm_b.netns, vm_a.ip, source=spoofed)
        # A port device the filters do not name gets nothing through either way.
        firewall.apply_port_filters(s.bridge_ns, known(s, leave_out=vm_a.tap))
        assert not ping(vm_a.netns, vm_b.ip)
        assert http(vm_b.netns, f"http://{vm_a.ip}/", timeout=0.5) is None
        firewall.apply_port_filters(s.bridge_ns, known(s, vm_b_filter(s, icmp, web, pairs=pair)))
        assert ping(vm_a.netns, vm_b.ip)
        # Another MAC gets nothing through at all.
        netdev.set_link(vm_b.netns, "eth0", mac=mac(98))
        assert not arping(vm_b.netns, vm_a.ip, source=vm_b.ip)
        netdev.set_link(vm_b.netns, "eth0", mac=vm_b.mac)
        assert arping(vm_b.netns, vm_a.ip, source=vm_b.ip)
    finally:
        firewall.apply_port_filters(s.bridge_ns, known(s))
        netdev.set_addresses(vm_b.netns, "eth0", [f"{vm_b.ip}/24"])
        netdev.set_link(vm_b.netns, "eth0", mac=vm_b.mac)
    assert http(None, f"http://{s.forward_ip}:9081/") == "vm-b:81"
    saved = run(s.bridge_ns, "iptables-save", "-t", "filter").stdout
    assert "ps-i-" not in saved
    assert "pocketstack" not in run(s.bridge_ns, "nft", "list", "tables").stdout


def test_iptables_takes_every_kind_of_rule_and_nat(s: Scenario) -> None:
    netns = s.namespace(f"pst-{SUFFIX}-ipt")
    rules = (
        Rule("ingress", "IPv4", "tcp", 22, 22, "10.0.0.0/8"),
        Rule("ingress", "IPv4", "udp", 1000, 2000),
        Rule("ingress", "IPv4", "icmp", 8, 0),
        Rule("ingress", "IPv4", "sctp", 9, None),
        Rule("ingress", "IPv4", "dccp", 9, 10),
        Rule("ingress", "IPv4", "47"),
        Rule("egress", "IPv4", None, None, None, "198.18.0.0/15"),
        Rule("ingress", "IPv6", "icmp", 128, 0),
        Rule("ingress", "IPv6", "udp", 53, 53, "fd00::/8"),
        Rule("egress", "IPv6"),
    )
    pairs = (AddressPair("100.64.0.0/28"), AddressPair("fd00::99", mac(7)))
    filters = [
        PortFilter("tap0123456789a", mac(5), ("100.64.0.5", "fd00::5"), pairs, rules),
        PortFilter("tap0123456789b", mac(6), ("100.64.0.6",), port_security=False),
    ]
    firewall.apply_port_filters(netns, filters)
    saved = run(netns, "iptables-save", "-t", "filter").stdout
    assert "--dport 1000:2000" in saved and "--icmp-type 8/0" in saved
    saved6 = run(netns, "ip6tables-save", "-t", "filter").stdout
    assert "--icmpv6-type 128/0" in saved6 and "fe80::" in saved6
    nat = RouterNat(
        "qg-x", "198.18.0.10", ("100.64.0.0/24",), (FloatingIp("198.18.0.20", "100.64.0.5"),),
        (PortForward("udp", "198.18.0.21", 5000, 5009, "100.64.0.6", 6000, 6009),),
    )  # fmt: skip
    firewall.apply_router_nat(netns, nat)
    assert "100.64.0.6:6000-6009/5000" in run(netns, "iptables-save", "-t", "nat").stdout
    firewall.apply_router_nat(netns, None)
    assert "DNAT" not in run(netns, "iptables-save", "-t", "nat").stdout


# --- QoS -------------------------------------------------------------------------------


def within(measured_kbit: float, limit_kbit: int) -> bool:
    """The limit holds (never more than 30% above it) and traffic still flows. Only the upper
    side is the limiter's doing; a loaded machine may move less, which is not a failure
    (rates themselves are measured in bench/, not asserted here)."""
    return 0.1 * limit_kbit <= measured_kbit <= 1.3 * limit_kbit


def test_qos_limits_a_port_and_a_floating_ip(s: Scenario) -> None:
    vm_a, vm_b = s.servers["vm-a"], s.servers["vm-b"]
    limit = qos.Limit(RATE_KBIT)
    try:
        for _ in range(2):  # idempotent
            qos.set_port_limits(s.bridge_ns, vm_b.tap, egress=limit, ingress=limit)
        # vm-b sends (egress, shaped on the tap's IFB) and receives (ingress, on the tap).
        sent = timed_rate_kbit(vm_a.netns, f"http://{vm_b.ip}/blob")
        received = timed_rate_kbit(vm_b.netns, f"http://{vm_a.ip}/blob")
        assert within(sent, RATE_KBIT), sent
        assert within(received, RATE_KBIT), received
        qos.set_port_limits(s.bridge_ns, vm_b.tap, egress=None, ingress=None)
        assert netdev.link(s.bridge_ns, qos.ifb_name(vm_b.tap)) is None
        assert "htb" not in run(s.bridge_ns, "tc", "qdisc", "show", "dev", vm_b.tap).stdout

        both = qos.FloatingIpLimits(egress=limit, ingress=limit)
        for _ in range(2):
            qos.set_floating_ip_limits(s.router_ns, s.gateway_if, {s.fip: both})
        down = timed_rate_kbit(None, f"http://{s.fip}/blob")
        up = timed_rate_kbit(None, f"http://{s.fip}/cgi-bin/sink", data=vm_b.docroot / "blob")
        assert within(down, RATE_KBIT), down
        assert within(up, RATE_KBIT), up
        # Other traffic through the gateway is not limited by the floating IP's class.
        other = timed_rate_kbit(None, f"http://{s.forward_ip}:8080/blob")
        assert other > 2 * RATE_KBIT, other
    finally:
        qos.clear(s.bridge_ns, vm_b.tap)
        qos.set_floating_ip_limits(s.router_ns, s.gateway_if, {})
    assert netdev.link(s.router_ns, qos.ifb_name(s.gateway_if)) is None
    assert "htb" not in run(s.router_ns, "tc", "qdisc", "show", "dev", s.gateway_if).stdout


# --- reconciling ------------------------------------------------------------------------


def observed(s: Scenario) -> dict[str, object]:
    """What an agent's resync would compare: devices, addresses, routes, rules, processes."""
    seen: dict[str, object] = {"dnsmasq": dnsmasq.running(s.dhcp_dir)}
    for netns in [None, *s.namespaces]:
        if netns is not None and not netdev.netns_exists(netns):
            continue
        devices = [d for d in netdev.links(netns) if netns is not None or SUFFIX[:3] in d.name
                   or d.name == netdev.host_leg_names(s.external_id)[1]]  # fmt: skip
        seen[f"{netns}:links"] = devices
        seen[f"{netns}:addresses"] = {d.name: netdev.addresses(netns, d.name) for d in devices}
        if netns is not None:
            seen[f"{netns}:routes"] = netdev.routes(netns)
            for tool in ("iptables-save", "ip6tables-save"):
                saved = run(netns, tool).stdout
                seen[f"{netns}:{tool}"] = re.sub(r"\[\d+:\d+\]|^#.*$", "", saved, flags=re.M)
    return seen


def test_converging_again_changes_nothing(s: Scenario) -> None:
    before = observed(s)
    converge(s)
    converge(s)
    assert observed(s) == before
    assert http(None, f"http://{s.fip}/") == "vm-b"


# --- links ----------------------------------------------------------------------------


def test_links_show_what_is_plugged_and_devices_move_and_rename(s: Scenario) -> None:
    bridge = netdev.bridge_name(s.network_id)
    found = {link.name: link for link in netdev.links(s.bridge_ns)}
    assert found[bridge].kind == "bridge" and found[bridge].up
    for server in s.servers.values():
        assert found[server.tap].master == bridge and found[server.tap].mtu == MTU
    assert netdev.link(s.servers["vm-a"].netns, "eth0") is not None

    spare = s.namespace(f"pst-{SUFFIX}-spar")
    netdev.ensure_veth("sp0", "sp1", netns=spare, peer_netns=spare)
    netdev.set_link(spare, "sp1", mac=mac(99), mtu=1400)
    netdev.rename_link(spare, "sp1", "sp-renamed")
    netdev.rename_link(spare, "sp1", "sp-renamed")  # done already
    vm_a = s.servers["vm-a"].netns
    for _ in range(2):
        netdev.move_link(spare, "sp-renamed", vm_a, new_name="eth1")
    moved = netdev.link(vm_a, "eth1")
    assert moved is not None and moved.mac == mac(99) and moved.mtu == 1400
    netdev.delete_link(vm_a, "eth1")
    netdev.delete_link(vm_a, "eth1")
    assert [link.name for link in netdev.links(spare)] == ["lo"]
    assert s.bridge_ns in netdev.list_netns(netdev.NETWORK_NETNS_PREFIX)


@pytest.fixture
def s(scenario: Scenario) -> Scenario:
    return scenario
