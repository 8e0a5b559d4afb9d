"""Real servers on this machine: namespace guests at 100, and a qemu VM under TCG.

    sudo python bench/compute_real.py [--servers 100] [--concurrency 8] [--no-doc]

One `pocketstack up` (SQLite, keystone tokens, loopback, real drivers; it builds
and registers `busybox` and `tiny-vm` itself) on a fresh state dir:

1. one `busybox` server: POST /servers to ACTIVE, and to the boot marker on its console;
2. `--servers` busybox servers (flavor `tiny`) posted from `--concurrency` client
   threads: seconds from the first POST until all are ACTIVE (target under 20 s);
3. the control plane's RSS (the `pocketstack up` process alone) with them running, and
   the guests' own RSS (every process in their cgroups);
4. one `tiny-vm` server under qemu: POST to ACTIVE and to the boot marker (target 60 s).

Every server is deleted at the end. Upstream Nova is not run beside it (libvirt/LXC
and a message queue are not installable here); the targets are absolute figures.
Results go to the "Compute on real drivers" section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import datetime
import json
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import compute_scale
import procs

REPO = compute_scale.REPO
SECTION = "## Compute on real drivers (namespaces, qemu)"
MARKER = "pocketstack guest booted"
# 100 one-vCPU servers on 2 cores: placement must allow the overcommit (the default 4.0
# gives 8 VCPUs here).
CPU_ALLOCATION_RATIO = 64.0


@contextmanager
def cloud() -> Iterator[tuple[compute_scale.Client, subprocess.Popen[bytes]]]:
    with tempfile.TemporaryDirectory(prefix="pocketstack-real-bench-") as tmp:
        state = Path(tmp) / "state"
        port = procs.free_port()
        log = Path(tmp) / "up.log"
        started = time.perf_counter()
        proc = procs.launch(
            [str(compute_scale.POCKETSTACK), "up", "--state-dir", str(state), "--bind",
             f"127.0.0.1:{port}", "--admin-password", compute_scale.PASSWORD,
             "--no-clouds-yaml", "--compute-driver", "real", "--cpu-allocation-ratio",
             str(CPU_ALLOCATION_RATIO)],
            {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": tmp}, log,
        )  # fmt: skip
        client = None
        try:
            procs.wait_ready(proc, port, "/identity/v3", started, log, timeout=600)
            client = compute_scale.Client(f"http://127.0.0.1:{port}")
            client.call("PUT", f"/compute/v2.1/os-quota-sets/{client.project_id}",
                        {"quota_set": {"instances": -1, "cores": -1, "ram": -1}})  # fmt: skip
            yield client, proc
        finally:
            if client is not None:
                delete_all(client)
            procs.stop(proc)


def image_id(client: compute_scale.Client, name: str) -> str:
    return str(client.call("GET", f"/image/v2/images?name={name}")["images"][0]["id"])


def post(client: compute_scale.Client, name: str, image: str) -> str:
    body = {"server": {"name": name, "imageRef": image, "flavorRef": "6", "networks": "none"}}
    return str(client.call("POST", "/compute/v2.1/servers", body)["server"]["id"])


def wait_server(client: compute_scale.Client, server_id: str, timeout: float) -> None:
    deadline = time.perf_counter() + timeout
    while True:
        status = client.call("GET", f"/compute/v2.1/servers/{server_id}")["server"]["status"]
        if status == "ACTIVE":
            return
        if status == "ERROR" or time.perf_counter() > deadline:
            raise RuntimeError(f"server {server_id} is {status}")
        time.sleep(0.02)


def wait_marker(client: compute_scale.Client, server_id: str, timeout: float) -> None:
    deadline = time.perf_counter() + timeout
    path = f"/compute/v2.1/servers/{server_id}/action"
    while MARKER not in client.call("POST", path, {"os-getConsoleOutput": {}})["output"]:
        if time.perf_counter() > deadline:
            raise RuntimeError(f"no boot marker on {server_id} after {timeout} s")
        time.sleep(0.05)


def one_server(client: compute_scale.Client, image: str, timeout: float) -> dict[str, float]:
    started = time.perf_counter()
    server_id = post(client, "one", image)
    wait_server(client, server_id, timeout)
    active = time.perf_counter()
    wait_marker(client, server_id, timeout)
    marker = time.perf_counter()
    client.call("DELETE", f"/compute/v2.1/servers/{server_id}")
    return {"active_s": active - started, "marker_s": marker - started}


def many_servers(client: compute_scale.Client, image: str, count: int, threads: int) -> float:
    lock = threading.Lock()
    remaining = iter(range(count))

    def worker() -> None:
        while True:
            with lock:
                index = next(remaining, None)
            if index is None:
                return
            post(client, f"n{index}", image)

    first = time.perf_counter()
    workers = [threading.Thread(target=worker) for _ in range(threads)]
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join()
    deadline = time.perf_counter() + 600
    while compute_scale.active_count(client) < count:
        failed = client.call("GET", "/compute/v2.1/servers/detail?status=ERROR")["servers"]
        if failed or time.perf_counter() > deadline:
            fault = failed[0].get("fault", {}).get("message") if failed else "timed out"
            raise RuntimeError(f"{len(failed)} servers in ERROR, e.g.: {fault}")
        time.sleep(0.2)
    return time.perf_counter() - first


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def guests_rss_mb() -> float:
    from pocketstack.host import cgroups

    total = 0.0
    for name in cgroups.guest_groups():
        for pid in cgroups.GuestCgroup(name).pids():
            try:
                total += rss_mb(pid)
            except OSError:
                continue
    return total


def delete_all(client: compute_scale.Client) -> None:
    servers = client.call("GET", "/compute/v2.1/servers?all_tenants=1&limit=1000")["servers"]
    for server in servers:
        client.call("DELETE", f"/compute/v2.1/servers/{server['id']}")
    deadline = time.perf_counter() + 300
    while client.call("GET", "/compute/v2.1/servers?all_tenants=1")["servers"]:
        if time.perf_counter() > deadline:
            raise RuntimeError("servers still there 300 s after their delete")
        time.sleep(0.2)


def run(count: int, threads: int) -> dict[str, Any]:
    with cloud() as (client, proc):
        busybox, tiny_vm = image_id(client, "busybox"), image_id(client, "tiny-vm")
        one = one_server(client, busybox, 30)
        idle_rss = rss_mb(proc.pid)
        spent = many_servers(client, busybox, count, threads)
        loaded_rss, guests = rss_mb(proc.pid), guests_rss_mb()
        delete_all(client)
        vm = one_server(client, tiny_vm, 120)
        return {"one": one, "servers": count, "threads": threads, "many_s": spent,
                "idle_rss_mb": idle_rss, "rss_mb": loaded_rss, "guests_rss_mb": guests,
                "vm": vm}  # fmt: skip


def render(result: dict[str, Any], command: str) -> str:
    date = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    count = result["servers"]
    one, vm = result["one"], result["vm"]
    return "\n".join([
        SECTION,
        "",
        f"Measured {date} on {compute_scale.machine()}; `{command}`, as root. One",
        "`pocketstack up` (SQLite, keystone tokens, loopback) on the namespace and qemu",
        f"drivers, `--cpu-allocation-ratio {CPU_ALLOCATION_RATIO:g}`, flavor `tiny`, no network. "
        "ACTIVE is what the API reports; the boot marker",
        "is the guest init's line on the console (os-getConsoleOutput). KVM is not usable",
        "here, so the VM runs under TCG. Upstream Nova is not run beside it.",
        "",
        "| run | figure | value |",
        "|---|---|---:|",
        f"| one busybox server | POST to ACTIVE / to boot marker | {one['active_s']:.2f} / "
        f"{one['marker_s']:.2f} s |",
        f"| {count} busybox servers, {result['threads']} client threads | first POST to all "
        f"ACTIVE (target under 20 s) | {result['many_s']:.1f} s |",
        f"| | control plane RSS, idle / with {count} servers | {result['idle_rss_mb']:.0f} / "
        f"{result['rss_mb']:.0f} MB |",
        f"| | the {count} guests' own RSS | {result['guests_rss_mb']:.0f} MB |",
        f"| one tiny-vm server (qemu, TCG) | POST to ACTIVE / to boot marker (target 60 s) | "
        f"{vm['active_s']:.2f} / {vm['marker_s']:.1f} s |",
    ]) + "\n"  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--servers", type=int, default=100)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--no-doc", action="store_true")
    args = parser.parse_args()
    result = run(args.servers, args.concurrency)
    print(json.dumps(result, indent=1), flush=True)
    if not args.no_doc:
        command = "python bench/compute_real.py " + " ".join(sys.argv[1:])
        compute_scale.write_section(
            REPO / "docs" / "benchmarks.md", render(result, command.strip())
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
