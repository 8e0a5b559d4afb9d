"""Networking on this machine's real data plane: ports at 500, and a server's way to
answering HTTP on its floating IP.

    sudo python bench/network_real.py [--ports 500] [--concurrency 8] [--boots 5] [--no-doc]

One `pocketstack up` (SQLite, keystone tokens, loopback, namespace servers,
linuxbridge data plane) on a fresh state dir, with an external network of its own
(a /24 of 198.19.0.0/16 nothing on the host routes yet):

1. `--ports` ports on one network with a DHCP subnet, created from `--concurrency`
   client threads: ports/s accepted by the API, and seconds until the network's
   dnsmasq has a static lease for every one of them (the agent's work);
2. `--boots` times: a busybox server on a routed network, booted, a floating IP
   associated with its port, and seconds from the POST until the host gets the
   server's page through the floating IP (median and worst);
3. a 10 Mbit egress QoS policy on that floating IP: the rate a 4 MB download from the
   server reaches on the host.

Everything is deleted at the end and the host swept of what the cloud made. Upstream
Neutron is not run beside it: neutron-server needs a message queue and its L2/L3/DHCP
agents, which this machine cannot run side by side; the figures are absolute. Results
go to the "Networking on the real data plane" section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import datetime
import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import compute_real
import compute_scale
import procs

REPO = compute_scale.REPO
sys.path.insert(0, str(REPO))
from tests.real import host_checks  # noqa: E402

SECTION = "## Networking on the real data plane"
NET = "/networking/v2.0"
LIMIT_KBPS = 10_000
BLOB_BYTES = 4_000_000


@contextmanager
def cloud() -> Iterator[tuple[compute_scale.Client, Path]]:
    with tempfile.TemporaryDirectory(prefix="pocketstack-network-bench-") as tmp:
        state = Path(tmp) / "state"
        port = procs.free_port()
        log = Path(tmp) / "up.log"
        started = time.perf_counter()
        proc = procs.launch(
            [str(compute_scale.POCKETSTACK), "up", "--state-dir", str(state), "--bind",
             f"127.0.0.1:{port}", "--admin-password", compute_scale.PASSWORD,
             "--no-clouds-yaml", "--compute-driver", "real", "--network-driver", "linuxbridge",
             "--external-cidr", host_checks.free_external_cidr(), "--cpu-allocation-ratio",
             str(compute_real.CPU_ALLOCATION_RATIO)],
            {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": tmp}, log,
        )  # fmt: skip
        client = None
        try:
            procs.wait_ready(proc, port, "/identity/v3", started, log, timeout=600)
            client = compute_scale.Client(f"http://127.0.0.1:{port}")
            client.call("PUT", f"{NET}/quotas/{client.project_id}",
                        {"quota": {"port": -1, "floatingip": -1}})  # fmt: skip
            yield client, state
        finally:
            if client is not None:
                compute_real.delete_all(client)
            procs.stop(proc)
            for workdir in (state / "network").glob("*"):
                host_checks.sweep_data_plane(workdir)


def create(client: compute_scale.Client, kind: str, body: dict[str, Any]) -> dict[str, Any]:
    path = f"{NET}/{kind.replace('_', '-')}s"
    found: dict[str, Any] = client.call("POST", path, {kind: body})[kind]
    return found


def network_with_subnet(client: compute_scale.Client, name: str, cidr: str) -> tuple[str, str]:
    network = create(client, "network", {"name": name})["id"]
    subnet = create(client, "subnet", {"network_id": network, "ip_version": 4, "cidr": cidr})
    return network, subnet["id"]


def leases(state: Path, network_id: str) -> int:
    """Static leases in the network's dnsmasq hosts file (the agent's output)."""
    found = list((state / "network").glob(f"*/networks/{network_id}/dhcp/host"))
    return len(found[0].read_text().splitlines()) if found else 0


def many_ports(
    client: compute_scale.Client, state: Path, count: int, threads: int
) -> dict[str, float]:
    network, _ = network_with_subnet(client, "ports", "100.64.0.0/22")
    lock = threading.Lock()
    remaining = iter(range(count))

    def worker() -> None:
        while True:
            with lock:
                index = next(remaining, None)
            if index is None:
                return
            create(client, "port", {"network_id": network, "name": f"p{index}"})

    first = time.perf_counter()
    workers = [threading.Thread(target=worker) for _ in range(threads)]
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join()
    created = time.perf_counter()
    deadline = created + 300
    while leases(state, network) < count:
        if time.perf_counter() > deadline:
            raise RuntimeError(f"only {leases(state, network)} leases after 300 s")
        time.sleep(0.1)
    leased = time.perf_counter()
    ports = client.call("GET", f"{NET}/ports?network_id={network}&device_owner=")["ports"]
    for port in ports:
        client.call("DELETE", f"{NET}/ports/{port['id']}")
    client.call("DELETE", f"{NET}/networks/{network}")
    return {"ports_per_s": count / (created - first), "leases_s": leased - first}


def fetch(url: str, timeout: float = 1.0) -> bytes | None:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            body: bytes = response.read()
            return body
    except OSError:  # URLError and timeouts are OSErrors
        return None


def routed_network(client: compute_scale.Client) -> str:
    network, subnet = network_with_subnet(client, "web", "100.64.8.0/24")
    public = client.call("GET", f"{NET}/networks?name=public")["networks"][0]["id"]
    router = create(client, "router", {"name": "r", "external_gateway_info": {
        "network_id": public}})  # fmt: skip
    client.call("PUT", f"{NET}/routers/{router['id']}/add_router_interface", {"subnet_id": subnet})
    group = create(client, "security_group", {"name": "web"})["id"]
    create(client, "security_group_rule", {"security_group_id": group, "direction": "ingress",
                                           "protocol": "tcp", "port_range_min": 80,
                                           "port_range_max": 80})  # fmt: skip
    return network


def boot_to_floating_http(
    client: compute_scale.Client, network: str, image: str, name: str
) -> tuple[float, str, str]:
    """Seconds from POST /servers to the page through a floating IP; the floating IP and
    the server's id."""
    public = client.call("GET", f"{NET}/networks?name=public")["networks"][0]["id"]
    floating = create(client, "floatingip", {"floating_network_id": public})
    address = floating["floating_ip_address"]
    started = time.perf_counter()
    body = {
        "server": {
            "name": name,
            "imageRef": image,
            "flavorRef": "6",
            "networks": [{"uuid": network}],
            "security_groups": [{"name": "web"}],
        }
    }
    server_id = client.call("POST", "/compute/v2.1/servers", body)["server"]["id"]  # fmt: skip
    compute_real.wait_server(client, server_id, 60)
    print(f"{name}: ACTIVE after {time.perf_counter() - started:.2f} s", flush=True)
    port = client.call("GET", f"{NET}/ports?device_id={server_id}")["ports"][0]["id"]
    client.call("PUT", f"{NET}/floatingips/{floating['id']}", {"floatingip": {"port_id": port}})
    deadline = started + 60
    while fetch(f"http://{address}/", timeout=0.25) != f"{name}\n".encode():
        if time.perf_counter() > deadline:
            raise RuntimeError(f"{name} not answering on {address} after 60 s")
        time.sleep(0.02)
    return time.perf_counter() - started, address, server_id


def limited_rate_kbit(client: compute_scale.Client, address: str, server_id: str) -> float:
    policy = client.call("POST", f"{NET}/qos/policies", {"policy": {"name": "slow"}})["policy"][
        "id"
    ]
    client.call(
        "POST",
        f"{NET}/qos/policies/{policy}/bandwidth_limit_rules",
        {"bandwidth_limit_rule": {"max_kbps": LIMIT_KBPS, "direction": "egress"}},
    )
    floating = client.call("GET", f"{NET}/floatingips?floating_ip_address={address}")
    client.call("PUT", f"{NET}/floatingips/{floating['floatingips'][0]['id']}",
                {"floatingip": {"qos_policy_id": policy}})  # fmt: skip
    pid = host_checks.guest_pid(server_id)
    assert pid is not None
    Path(f"/proc/{pid}/root/var/www/blob").write_bytes(b"\xa5" * BLOB_BYTES)
    time.sleep(2)  # the agent's pass
    started = time.perf_counter()
    subprocess.run(["curl", "-sf", "--noproxy", "*", "-o", "/dev/null", "--max-time", "60",
                    f"http://{address}/blob"], check=True)  # fmt: skip
    return BLOB_BYTES * 8 / 1000 / (time.perf_counter() - started)


def run(count: int, threads: int, boots: int) -> dict[str, Any]:
    with cloud() as (client, state):
        ports = many_ports(client, state, count, threads)
        image = compute_real.image_id(client, "busybox")
        network = routed_network(client)
        timings, last = [], ("", "")
        for index in range(boots):
            spent, address, server_id = boot_to_floating_http(client, network, image, f"w{index}")
            timings.append(spent)
            last = (address, server_id)
        rate = limited_rate_kbit(client, *last)
        return {"ports": count, "threads": threads, **ports, "boots": boots,
                "fip_http_median_s": statistics.median(timings),
                "fip_http_max_s": max(timings), "limited_kbit": rate}  # fmt: skip


def render(result: dict[str, Any], command: str) -> str:
    date = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    return "\n".join([
        SECTION,
        "",
        f"Measured {date} on {compute_scale.machine()}; `{command}`, as root. One",
        "`pocketstack up` (SQLite, keystone tokens, loopback) on the linuxbridge data plane",
        "and namespace servers, with its own external /24. Upstream Neutron is not run",
        "beside it (neutron-server needs a message queue and its agents).",
        "",
        "| run | figure | value |",
        "|---|---|---:|",
        f"| {result['ports']} ports on one network, {result['threads']} client threads | "
        f"POST /v2.0/ports accepted per s | {result['ports_per_s']:.1f} |",
        f"| | first POST until dnsmasq holds all {result['ports']} static leases | "
        f"{result['leases_s']:.1f} s |",
        f"| busybox server with a floating IP, {result['boots']} times | POST /servers until "
        f"the host gets its page through the floating IP, median / worst | "
        f"{result['fip_http_median_s']:.2f} / {result['fip_http_max_s']:.2f} s |",
        f"| 10 Mbit egress QoS on the floating IP | rate of a 4 MB download on the host | "
        f"{result['limited_kbit'] / 1000:.2f} Mbit/s |",
    ]) + "\n"  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ports", type=int, default=500)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--boots", type=int, default=5)
    parser.add_argument("--no-doc", action="store_true")
    args = parser.parse_args()
    result = run(args.ports, args.concurrency, args.boots)
    print(json.dumps(result, indent=1), flush=True)
    if not args.no_doc:
        command = "python bench/network_real.py " + " ".join(sys.argv[1:])
        compute_scale.write_section(
            REPO / "docs" / "benchmarks.md", render(result, command.strip())
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
