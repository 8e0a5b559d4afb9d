"""Compute at scale on fake hosts: boot throughput and server-list latency across cells.

    python bench/compute_scale.py [--hosts 100] [--servers 1000] [--list-hosts 200]
                                  [--list-servers 10000] [--cells 3] [--no-doc]

Two runs, each on a fresh `pocketstack up` (SQLite, keystone tokens, loopback):

1. boot: `--servers` servers, one POST /servers each from `--concurrency` client
   threads, over `--hosts` fake hosts. Reported: servers/s from the first POST until
   every server is ACTIVE, and the POST latency.
2. list: `--list-servers` servers booted with multi-create over `--list-hosts` fake
   hosts spread over `--cells` cells (cell1 plus ones made with `pocketstack manage
   cell create`), then GET /servers/detail and GET /servers (each a full page) and
   /servers/detail?limit=50 timed sequentially.

Upstream Nova is not run side by side: it needs a message queue, a conductor, a
scheduler and compute services with the fake virt driver, none of which this
machine can install from PyPI alone; the issue's targets are absolute figures.
Results go to the "Compute at scale" section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import procs

REPO = Path(__file__).resolve().parents[1]
POCKETSTACK = REPO / ".venv" / "bin" / "pocketstack"
PASSWORD = "bench-admin-pw"
SECTION = "## Compute at scale (fake hosts)"


class Client:
    """JSON over HTTP to one cloud, with an admin token."""

    def __init__(self, base: str) -> None:
        self.base = base
        auth = {"auth": {"identity": {"methods": ["password"], "password": {"user": {
            "name": "admin", "domain": {"name": "Default"}, "password": PASSWORD}}},
            "scope": {"project": {"name": "admin", "domain": {"name": "Default"}}}}}  # fmt: skip
        response = self.call("POST", "/identity/v3/auth/tokens", auth, raw=True)
        self.token = response.headers["X-Subject-Token"]
        self.project_id = json.loads(response.read())["token"]["project"]["id"]

    def call(self, method: str, path: str, body: Any = None, raw: bool = False,
             data: bytes | None = None, content_type: str = "application/json") -> Any:  # fmt: skip
        headers = {"Content-Type": content_type, "X-OpenStack-Nova-API-Version": "2.96"}
        if getattr(self, "token", None):
            headers["X-Auth-Token"] = self.token
        payload = data if data is not None else (json.dumps(body).encode() if body else None)
        request = urllib.request.Request(self.base + path, payload, headers, method=method)
        response = urllib.request.urlopen(request, timeout=120)
        if raw:
            return response
        text = response.read()
        return json.loads(text) if text else None


@contextmanager
def cloud(hosts: int, extra_cells: int) -> Iterator[Client]:
    with tempfile.TemporaryDirectory(prefix="pocketstack-compute-bench-") as tmp:
        state = Path(tmp) / "state"
        state.mkdir()
        for index in range(extra_cells):
            subprocess.run([str(POCKETSTACK), "manage", "cell", "create", "--name",
                            f"cell{index + 2}", "--state-dir", str(state)],
                           check=True, capture_output=True)  # fmt: skip
        port = procs.free_port()
        log = Path(tmp) / "up.log"
        started = time.perf_counter()
        proc = procs.launch(
            [str(POCKETSTACK), "up", "--state-dir", str(state), "--bind", f"127.0.0.1:{port}",
             "--admin-password", PASSWORD, "--no-clouds-yaml", "--fake-hosts", str(hosts)],
            {"PATH": "/usr/bin:/bin", "HOME": tmp}, log,
        )  # fmt: skip
        try:
            procs.wait_ready(proc, port, "/identity/v3", started, log, timeout=300)
            client = Client(f"http://127.0.0.1:{port}")
            client.call("PUT", f"/compute/v2.1/os-quota-sets/{client.project_id}",
                        {"quota_set": {"instances": -1, "cores": -1, "ram": -1}})  # fmt: skip
            yield client
        finally:
            procs.stop(proc)


def image(client: Client) -> str:
    created = client.call("POST", "/image/v2/images", {"name": "bench", "disk_format": "raw",
                          "container_format": "bare", "visibility": "public"})  # fmt: skip
    client.call("PUT", f"/image/v2/images/{created['id']}/file", data=b"\0" * 4096,
                content_type="application/octet-stream")  # fmt: skip
    return str(created["id"])


def flavor(client: Client) -> str:
    body = {"flavor": {"name": "bench", "ram": 64, "vcpus": 1, "disk": 1, "id": "bench"}}
    client.call("POST", "/compute/v2.1/flavors", body)
    return "bench"


def active_count(client: Client) -> int:
    total, marker = 0, ""
    while True:
        page = client.call("GET", f"/compute/v2.1/servers?status=ACTIVE&limit=1000{marker}")
        total += len(page["servers"])
        if len(page["servers"]) < 1000:
            return total
        marker = f"&marker={page['servers'][-1]['id']}"


def wait_active(client: Client, count: int, timeout: float) -> float:
    deadline = time.perf_counter() + timeout
    while (done := active_count(client)) < count:
        if time.perf_counter() > deadline:
            raise RuntimeError(f"only {done} of {count} servers ACTIVE after {timeout} s")
        time.sleep(0.2)
    return time.perf_counter()


def boot_run(hosts: int, servers: int, concurrency: int) -> dict[str, Any]:
    with cloud(hosts, 0) as client:
        image_id, flavor_id = image(client), flavor(client)
        latencies: list[float] = []
        lock = threading.Lock()
        remaining = iter(range(servers))

        def worker() -> None:
            while True:
                with lock:
                    index = next(remaining, None)
                if index is None:
                    return
                body = {"server": {"name": f"b{index}", "imageRef": image_id,
                                   "flavorRef": flavor_id, "networks": "none"}}  # fmt: skip
                started = time.perf_counter()
                client.call("POST", "/compute/v2.1/servers", body)
                with lock:
                    latencies.append(time.perf_counter() - started)

        first = time.perf_counter()
        threads = [threading.Thread(target=worker) for _ in range(concurrency)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        posted = time.perf_counter()
        done = wait_active(client, servers, timeout=600)
        latencies.sort()
        return {
            "servers": servers,
            "hosts": hosts,
            "concurrency": concurrency,
            "posts_per_s": servers / (posted - first),
            "active_per_s": servers / (done - first),
            "post_p50_ms": 1000 * statistics.median(latencies),
            "post_p95_ms": 1000 * latencies[int(0.95 * (len(latencies) - 1))],
        }


def list_run(hosts: int, servers: int, cells: int, repeats: int) -> dict[str, Any]:
    with cloud(hosts, cells - 1) as client:
        image_id, flavor_id = image(client), flavor(client)
        batch = 100
        started = time.perf_counter()
        for first in range(0, servers, batch):
            count = min(batch, servers - first)
            body = {"server": {"name": f"l{first}", "imageRef": image_id,
                               "flavorRef": flavor_id, "networks": "none",
                               "min_count": count, "max_count": count}}  # fmt: skip
            client.call("POST", "/compute/v2.1/servers", body)
        wait_active(client, servers, timeout=1800)
        filled_s = time.perf_counter() - started
        timings = {}
        for label, query in (
            ("detail, default page (1000)", "/detail"),
            ("list, default page (1000)", ""),
            ("detail?limit=50", "/detail?limit=50"),
            ("detail?limit=50&sort_key=display_name",
             "/detail?limit=50&sort_key=display_name&sort_dir=asc"),
        ):  # fmt: skip
            path = f"/compute/v2.1/servers{query}"
            samples = []
            for _ in range(repeats):
                t0 = time.perf_counter()
                client.call("GET", path)
                samples.append(time.perf_counter() - t0)
            timings[label] = 1000 * statistics.median(samples)
        return {"servers": servers, "hosts": hosts, "cells": cells, "fill_s": filled_s,
                "p50_ms": timings, "repeats": repeats}  # fmt: skip


def machine() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text()
                .splitlines() if line.startswith("model name")), "?")  # fmt: skip
    import os

    return f"{os.cpu_count()} vCPU ({cpu}), Python {platform.python_version()}"


def render(boot: dict[str, Any], listing: dict[str, Any], command: str) -> str:
    date = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        SECTION,
        "",
        f"Measured {date} on {machine()}; `{command}`. One `pocketstack up` per run",
        "(SQLite, keystone tokens, loopback), fake compute hosts (instant, in memory); the",
        "figures include scheduling on placement, the claim, the cell write and the host agent",
        "reconciling each server to ACTIVE. Upstream Nova is not run beside it (it needs a",
        "message queue, conductor, scheduler and compute services).",
        "",
        "| run | figure | value |",
        "|---|---|---:|",
        f"| boot {boot['servers']} servers over {boot['hosts']} hosts, {boot['concurrency']} "
        f"client threads | servers/s to ACTIVE (target ≥ 50) | {boot['active_per_s']:.1f} |",
        f"| | POST /servers accepted per s | {boot['posts_per_s']:.1f} |",
        f"| | POST /servers p50 / p95 | {boot['post_p50_ms']:.1f} / {boot['post_p95_ms']:.1f} ms |",
    ]
    first = True
    for label, value in listing["p50_ms"].items():
        run = (
            f"list {listing['servers']} servers over {listing['cells']} cells, "
            f"{listing['hosts']} hosts"
            if first
            else ""
        )
        lines.append(f"| {run} | GET {label}, p50 of {listing['repeats']} | {value:.1f} ms |")
        first = False
    lines.append(f"| | time to boot them all to ACTIVE | {listing['fill_s']:.0f} s |")
    return "\n".join(lines) + "\n"


def write_section(doc: Path, section: str) -> None:
    """Replace the section whose heading is `section`'s first line (or append it)."""
    heading = section.splitlines()[0]
    text = doc.read_text() if doc.exists() else "# Benchmarks\n"
    start = text.find(heading)
    if start < 0:
        text = text.rstrip() + "\n\n" + section
    else:
        end = text.find("\n## ", start + len(heading))
        text = text[:start] + section + (text[end + 1 :] if end >= 0 else "")
    doc.write_text(text)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, default=100)
    parser.add_argument("--servers", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--list-hosts", type=int, default=200)
    parser.add_argument("--list-servers", type=int, default=10000)
    parser.add_argument("--cells", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--no-doc", action="store_true")
    args = parser.parse_args()
    boot = boot_run(args.hosts, args.servers, args.concurrency)
    print(json.dumps(boot, indent=1), flush=True)
    listing = list_run(args.list_hosts, args.list_servers, args.cells, args.repeats)
    print(json.dumps(listing, indent=1), flush=True)
    if not args.no_doc:
        command = "python bench/compute_scale.py " + " ".join(sys.argv[1:])
        write_section(REPO / "docs" / "benchmarks.md", render(boot, listing, command.strip()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
