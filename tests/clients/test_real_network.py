"""A tenant network wired to the outside, through the real `openstack` CLI, on this
machine's real data plane (linuxbridge) and namespace servers.

The user's story: a network with an IPv4 and an IPv6 SLAAC subnet, a router with a
gateway on `public`, two busybox servers. Each looks from where a user would: inside a
server (`nsenter` into its namespaces and root, as a console would be), and from the
host, which is on the external network. The cloud has an external network of its own
(`--external-cidr`, a /24 of 198.19.0.0/16 nothing else on the host uses).

The tests run in order on one cloud: the story, a kill -9 of the cloud with drift on
the host while it is away, then deleting everything.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest

from pocketstack.host import dnsmasq, namespaces, netdev
from pocketstack.network.drivers import linuxbridge
from tests.clients.conftest import OpenStackCli, Server, real_cloud_running
from tests.real import host_checks

pytestmark = pytest.mark.skipif(
    (namespaces.missing() or linuxbridge.missing()) is not None,
    reason=f"real networking: {namespaces.missing() or linuxbridge.missing()}",
)

LIMIT_KBPS = 10_000
METADATA = "http://169.254.169.254"
BLOB_BYTES = 3_000_000
SUFFIX = uuid.uuid4().hex[:6]


@pytest.fixture(scope="module")
def real_cloud(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with real_cloud_running(tmp_path_factory.mktemp("real-network")) as server:
        yield server


@pytest.fixture(scope="module")
def cli(real_cloud: Server) -> OpenStackCli:
    return OpenStackCli(real_cloud)


def wait_for(check: Callable[[], Any], what: str, timeout_s: float = 15.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        result = check()
        if result:
            return result
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def from_host(url: str, timeout_s: float = 2.0) -> str | None:
    done = subprocess.run(
        ["curl", "-sf", "--noproxy", "*", "--max-time", str(timeout_s), url],
        capture_output=True, text=True, timeout=timeout_s + 5, check=False,
    )  # fmt: skip
    return done.stdout.strip() if done.returncode == 0 else None


def from_guest(server_id: str, url: str, timeout_s: int = 2) -> str | None:
    # (busybox wget's own -T crashes here: the guest's `timeout` bounds it)
    done = host_checks.in_guest(server_id, "timeout", str(timeout_s), "wget", "-q", "-O", "-", url)
    return done.stdout.strip() if done.returncode == 0 else None


def guest_addresses(server_id: str) -> set[str]:
    shown = host_checks.in_guest(server_id, "ip", "-o", "addr", "show", "dev", "eth0").stdout
    return {line.split()[3].split("/")[0] for line in shown.splitlines() if " inet" in line}


def rate_kbit(url: str) -> float:
    started = time.monotonic()
    done = subprocess.run(
        ["curl", "-sf", "--noproxy", "*", "--max-time", "20", "-o", "/dev/null", "-w",
         "%{size_download}", url],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    elapsed = time.monotonic() - started
    assert done.returncode == 0 and int(float(done.stdout)) == BLOB_BYTES, done
    return BLOB_BYTES * 8 / 1000 / elapsed


def host_addresses() -> list[set[str]]:
    return [netdev.addresses(None, link.name) for link in netdev.links(None)]


class Story:
    """What the first test builds and the later ones look at."""

    servers: ClassVar[dict[str, str]] = {}  # name -> id
    fixed: ClassVar[dict[str, str]] = {}  # name -> IPv4 address
    floating_ip = ""
    forward_ip = ""
    router_id = ""
    network_id = ""
    gateway_ip = ""
    web_rule = ""


@pytest.fixture(scope="module")
def host_web(real_cloud: Server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A web server on the host's leg of the external network that shows each client's
    address: where servers go out to through SNAT."""
    args = real_cloud.extra_args
    external = ipaddress.ip_network(args[args.index("--external-cidr") + 1])
    host_ip = str(external.network_address + 1)
    host_cidr = f"{host_ip}/{external.prefixlen}"
    root = tmp_path_factory.mktemp("host-web")
    (root / "cgi-bin").mkdir()
    script = root / "cgi-bin" / "ip"
    script.write_text('#!/bin/sh\necho "Content-Type: text/plain"; echo; echo "$REMOTE_ADDR"\n')
    script.chmod(0o755)
    wait_for(lambda: any(host_cidr in found for found in host_addresses()), "the host leg")
    child = subprocess.Popen(["busybox", "httpd", "-f", "-p", f"{host_ip}:18080", "-h", str(root)])
    try:
        yield f"http://{host_ip}:18080/cgi-bin/ip"
    finally:
        child.kill()
        child.wait()


def test_two_servers_reach_each_other_by_name_and_the_outside_through_the_router(
    cli: OpenStackCli, host_web: str
) -> None:
    v4 = f"100.{64 + uuid.uuid4().int % 60}.{uuid.uuid4().int % 250}.0/24"
    v6 = f"fd64:{uuid.uuid4().int % 0xFFFF:x}::/64"
    Story.network_id = cli("network", "create", f"net-{SUFFIX}", "-f", "json").json()["id"]
    cli("subnet", "create", "--network", Story.network_id, "--subnet-range", v4, f"v4-{SUFFIX}")
    cli("subnet", "create", "--network", Story.network_id, "--ip-version", "6",
        "--ipv6-ra-mode", "slaac", "--ipv6-address-mode", "slaac", "--subnet-range", v6,
        f"v6-{SUFFIX}")  # fmt: skip
    router = cli("router", "create", "--external-gateway", "public", f"r-{SUFFIX}",
                 "-f", "json").json()  # fmt: skip
    Story.router_id = router["id"]
    Story.gateway_ip = router["external_gateway_info"]["external_fixed_ips"][0]["ip_address"]
    cli("router", "add", "subnet", Story.router_id, f"v4-{SUFFIX}")
    group = f"web-{SUFFIX}"
    cli("security", "group", "create", group)
    Story.web_rule = cli("security", "group", "rule", "create", "--protocol", "tcp",
                         "--dst-port", "80", group, "-f", "json").json()["id"]  # fmt: skip
    cli("security", "group", "rule", "create", "--protocol", "tcp", "--dst-port", "80",
        "--ethertype", "IPv6", group)  # fmt: skip
    cli("keypair", "create", f"key-{SUFFIX}")
    user_data = Path(f"/tmp/user-data-{SUFFIX}")
    user_data.write_text("#!/bin/sh\necho from user data\n")
    for name in ("web1", "web2"):
        created = cli("server", "create", "--flavor", "tiny", "--image", "busybox", "--network",
                      Story.network_id, "--security-group", group, "--key-name", f"key-{SUFFIX}",
                      "--user-data", str(user_data), "--wait", name,
                      "-f", "json").json()  # fmt: skip
        assert created["status"] == "ACTIVE", created
        Story.servers[name] = created["id"]
    user_data.unlink()
    web1, web2 = Story.servers["web1"], Story.servers["web2"]

    # Each server has what its port says, by DHCP (IPv4) and SLAAC (IPv6).
    for name, server_id in Story.servers.items():
        port = cli("port", "list", "--server", server_id, "-f", "json", "--long").json()[0]
        wanted = {f["ip_address"] for f in port["Fixed IP Addresses"]}
        wait_for(lambda s=server_id, w=wanted: w <= guest_addresses(s), f"{name}'s addresses")
        Story.fixed[name] = next(a for a in wanted if ipaddress.ip_address(a).version == 4)
    # web1 finds web2 by name through the network's DNS and reaches it (IPv4 and IPv6).
    looked_up = host_checks.in_guest(web1, "nslookup", "web2").stdout
    assert Story.fixed["web2"] in looked_up
    assert wait_for(lambda: from_guest(web1, "http://web2/"), "web2 by name") == "web2"
    assert from_guest(web1, f"http://{Story.fixed['web2']}/") == "web2"
    # Out through the router: the outside sees the router's gateway address.
    assert wait_for(lambda: from_guest(web1, host_web), "the host through SNAT") == (
        Story.gateway_ip
    )

    # Each server gets its own metadata from 169.254.169.254, through the DHCP port.
    for name, server_id in Story.servers.items():
        meta = json.loads(
            from_guest(server_id, f"{METADATA}/openstack/latest/meta_data.json") or "{}"
        )
        assert (meta.get("uuid"), meta.get("name")) == (server_id, name), meta
        assert list(meta["public_keys"]) == [f"key-{SUFFIX}"]
        assert from_guest(server_id, f"{METADATA}/openstack/latest/user_data") == (
            "#!/bin/sh\necho from user data"
        )
        assert from_guest(server_id, f"{METADATA}/latest/meta-data/instance-id") == server_id
        assert (
            from_guest(server_id, f"{METADATA}/latest/meta-data/local-ipv4") == (Story.fixed[name])
        )

    # A floating IP on web1 answers from the host, and web1 goes out as it.
    Story.floating_ip = cli("floating", "ip", "create", "public", "-f", "json").json()[
        "floating_ip_address"
    ]
    cli("server", "add", "floating", "ip", web1, Story.floating_ip)
    assert wait_for(lambda: from_host(f"http://{Story.floating_ip}/"), "the FIP") == "web1"
    assert wait_for(lambda: from_guest(web1, host_web) == Story.floating_ip, "SNAT as the FIP")
    public = f"{METADATA}/latest/meta-data/public-ipv4"
    assert wait_for(lambda: from_guest(web1, public) == Story.floating_ip, "public-ipv4")

    # A port forwarding FIP:8080 -> web2:80.
    Story.forward_ip = cli("floating", "ip", "create", "public", "-f", "json").json()[
        "floating_ip_address"
    ]
    port_id = cli("port", "list", "--server", web2, "-f", "value", "-c", "ID").stdout.strip()
    cli("floating", "ip", "port", "forwarding", "create", "--internal-ip-address",
        Story.fixed["web2"], "--port", port_id, "--internal-protocol-port", "80",
        "--external-protocol-port", "8080", "--protocol", "tcp", Story.forward_ip)  # fmt: skip
    forwarded = f"http://{Story.forward_ip}:8080/"
    assert wait_for(lambda: from_host(forwarded), "the port forwarding") == "web2"

    # A 10 Mbit egress limit on web1's floating IP holds (a loaded machine may move less).
    cli("network", "qos", "policy", "create", f"slow-{SUFFIX}")
    cli("network", "qos", "rule", "create", "--type", "bandwidth-limit", "--max-kbps",
        str(LIMIT_KBPS), "--egress", f"slow-{SUFFIX}")  # fmt: skip
    pid = host_checks.guest_pid(web1)
    assert pid is not None
    Path(f"/proc/{pid}/root/var/www/blob").write_bytes(os.urandom(BLOB_BYTES))
    cli("floating", "ip", "set", "--qos-policy", f"slow-{SUFFIX}", Story.floating_ip)
    shaped = f"http://{Story.floating_ip}/blob"
    limited = wait_for(lambda: (r := rate_kbit(shaped)) < 1.2 * LIMIT_KBPS and r, "the limit")
    assert limited > 0.1 * LIMIT_KBPS
    cli("floating", "ip", "unset", "--qos-policy", Story.floating_ip)
    assert wait_for(lambda: rate_kbit(shaped) > 2 * LIMIT_KBPS, "no limit")

    # Without tcp/80 in their group, nobody reaches the servers' web; the rule opens it.
    cli("security", "group", "rule", "delete", Story.web_rule)
    wait_for(lambda: from_host(f"http://{Story.floating_ip}/", 1) is None, "the FIP closed")
    assert from_guest(web2, f"http://{Story.fixed['web1']}/", 1) is None
    cli("security", "group", "rule", "create", "--protocol", "tcp", "--dst-port", "80", group)
    assert wait_for(lambda: from_host(f"http://{Story.floating_ip}/"), "the FIP open") == "web1"
    assert from_guest(web2, f"http://{Story.fixed['web1']}/") == "web1"


def dnsmasq_dir(real_cloud: Server) -> Path:
    (workdir,) = (real_cloud.state_dir / "network").glob("*")
    return workdir / "networks" / Story.network_id / "dhcp"


def test_after_a_kill_9_and_drift_the_data_plane_converges(
    cli: OpenStackCli, real_cloud: Server
) -> None:
    assert Story.floating_ip, "needs the story above"
    assert real_cloud.process is not None
    real_cloud.process.kill()
    real_cloud.process.wait()
    real_cloud.process = None
    # While the cloud is away, the host loses the router and the network's dnsmasq.
    netdev.delete_netns(netdev.router_netns(Story.router_id))
    running = dnsmasq.running(dnsmasq_dir(real_cloud))
    assert running is not None
    os.kill(running.pid, 9)
    # (a deleted namespace's devices go a moment later)
    wait_for(lambda: from_host(f"http://{Story.floating_ip}/", 1) is None, "the FIP gone")
    real_cloud.start()
    assert wait_for(lambda: from_host(f"http://{Story.floating_ip}/"), "the FIP again") == "web1"
    assert wait_for(lambda: from_host(f"http://{Story.forward_ip}:8080/"), "forward") == "web2"
    assert wait_for(lambda: dnsmasq.running(dnsmasq_dir(real_cloud)), "dnsmasq again")
    web1 = Story.servers["web1"]
    assert from_guest(web1, "http://web2/") == "web2"
    # One of everything: no second router namespace, no second dnsmasq.
    assert netdev.list_netns(netdev.router_netns(Story.router_id)) == [
        netdev.router_netns(Story.router_id)
    ]
    dnsmasqs = subprocess.run(["pgrep", "-f", f"dnsmasq.*{Story.network_id}"],
                              capture_output=True, text=True).stdout.split()  # fmt: skip
    assert len(dnsmasqs) == 1, dnsmasqs


def test_deleting_everything_leaves_nothing_of_it_on_the_host(
    cli: OpenStackCli, real_cloud: Server
) -> None:
    assert Story.router_id, "needs the story above"
    cli("server", "delete", "--wait", *Story.servers.values())
    for address in (Story.floating_ip, Story.forward_ip):
        cli("floating", "ip", "delete", address)
    cli("router", "remove", "subnet", Story.router_id, f"v4-{SUFFIX}")
    cli("router", "delete", Story.router_id)
    cli("network", "delete", Story.network_id)
    cli("network", "qos", "policy", "delete", f"slow-{SUFFIX}")
    cli("security", "group", "delete", f"web-{SUFFIX}")

    def nothing_left() -> bool:
        names = netdev.list_netns()
        return not [n for n in names if Story.network_id in n or Story.router_id in n]

    wait_for(nothing_left, "the network's and router's namespaces gone")
    assert not [n for n in netdev.list_netns("ps-") if n[3:] in Story.servers.values()]
    with contextlib.suppress(FileNotFoundError):
        dnsmasqs = subprocess.run(["pgrep", "-af", "dnsmasq"], capture_output=True, text=True)
        assert Story.network_id not in dnsmasqs.stdout
    (workdir,) = (real_cloud.state_dir / "network").glob("*")
    assert not (workdir / "networks" / Story.network_id).exists()
    assert not (workdir / "routers" / Story.router_id).exists()
    # The host keeps only its leg on `public`.
    root_links = {link.name for link in netdev.links(None)}
    assert not [name for name in root_links if name.startswith(("tap", "qr-", "qg-"))]
