"""A small, bounded HTTP load generator for the side-by-side benchmark.

Why our own: the benchmark has to run with nothing but the standard library
(under the project's .venv or a bare python3), talk only to loopback, and
stop by itself.  Each run is bounded both by a request count and by a
duration; requests still in flight at the deadline finish (each has a socket
timeout), so a run never outlives ``duration + timeout``.

Each of the N clients is a thread with its own ``http.client`` connection,
kept alive when the server allows it and reopened when the server closes it
(uWSGI behind ``Connection: close`` and gunicorn's sync worker do).  Any
response outside 2xx, and any transport error, counts as an error; latency
percentiles are over successful requests only.

Usable on its own too::

    python bench/load.py --url http://127.0.0.1:5000/v3 --clients 8 --duration 5
"""

from __future__ import annotations

import argparse
import http.client
import ipaddress
import json
import socket
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from urllib.parse import urlsplit


@dataclass(frozen=True)
class Request:
    """One request to repeat: every client sends exactly this."""

    method: str
    path: str
    body: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class LoadResult:
    """What one bounded run measured."""

    clients: int
    requests: int
    errors: int
    seconds: float
    rps: float
    p50_ms: float
    p99_ms: float
    first_error: str | None = None


def assert_loopback(host: str) -> None:
    """Refuse anything but a loopback target: this tool must never leave the machine."""
    addr = ipaddress.ip_address(socket.gethostbyname(host))
    if not addr.is_loopback:
        raise ValueError(f"refusing non-loopback target {host} ({addr})")


def _percentile(sorted_values: list[float], pct: float) -> float:
    """Nearest-rank percentile; 0.0 for an empty list."""
    if not sorted_values:
        return 0.0
    rank = max(1, round(pct / 100.0 * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


def run_load(
    host: str,
    port: int,
    request: Request,
    *,
    clients: int = 8,
    duration: float = 10.0,
    max_requests: int = 200_000,
    timeout: float = 30.0,
) -> LoadResult:
    """Send ``request`` from ``clients`` threads until the count or time bound is hit."""
    assert_loopback(host)
    lock = threading.Lock()
    latencies: list[float] = []
    state = {"issued": 0, "errors": 0}
    first_error: list[str] = []
    start_barrier = threading.Barrier(clients + 1)
    deadline = [0.0]

    def claim() -> bool:
        with lock:
            if state["issued"] >= max_requests or time.perf_counter() >= deadline[0]:
                return False
            state["issued"] += 1
            return True

    def fail(msg: str) -> None:
        with lock:
            state["errors"] += 1
            if not first_error:
                first_error.append(msg)

    def client() -> None:
        conn: http.client.HTTPConnection | None = None
        mine: list[float] = []
        start_barrier.wait()
        while claim():
            if conn is None:
                conn = http.client.HTTPConnection(host, port, timeout=timeout)
            t0 = time.perf_counter()
            try:
                conn.request(
                    request.method, request.path, body=request.body, headers=request.headers
                )
                resp = conn.getresponse()
                body = resp.read()
            except (OSError, http.client.HTTPException) as exc:
                fail(f"{type(exc).__name__}: {exc}")
                conn.close()
                conn = None
                continue
            elapsed = time.perf_counter() - t0
            if 200 <= resp.status < 300:
                mine.append(elapsed)
            else:
                fail(f"HTTP {resp.status}: {body[:200]!r}")
            if resp.will_close:
                conn.close()
                conn = None
        if conn is not None:
            conn.close()
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=client, daemon=True) for _ in range(clients)]
    for t in threads:
        t.start()
    started = time.perf_counter()
    deadline[0] = started + duration
    start_barrier.wait()
    for t in threads:
        t.join(duration + timeout + 5.0)
    seconds = time.perf_counter() - started
    latencies.sort()
    done = len(latencies) + state["errors"]
    return LoadResult(
        clients=clients,
        requests=done,
        errors=state["errors"],
        seconds=round(seconds, 3),
        rps=round(len(latencies) / seconds, 1) if seconds > 0 else 0.0,
        p50_ms=round(_percentile(latencies, 50) * 1000, 1),
        p99_ms=round(_percentile(latencies, 99) * 1000, 1),
        first_error=first_error[0] if first_error else None,
    )


def main(argv: list[str] | None = None) -> int:
    """CLI: one bounded run against a loopback URL, result printed as JSON."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--url", required=True)
    p.add_argument("--method", default="GET")
    p.add_argument("--header", action="append", default=[], help="Name: value")
    p.add_argument("--body", default=None, help="request body (sent as UTF-8)")
    p.add_argument("--clients", type=int, default=8)
    p.add_argument("--duration", type=float, default=5.0)
    p.add_argument("--max-requests", type=int, default=200_000)
    args = p.parse_args(argv)
    url = urlsplit(args.url)
    if url.scheme != "http" or not url.hostname:
        p.error("only http://loopback URLs are supported")
    headers = dict(h.split(":", 1) for h in args.header)
    headers = {k.strip(): v.strip() for k, v in headers.items()}
    path = url.path or "/"
    if url.query:
        path += "?" + url.query
    req = Request(args.method, path, args.body.encode() if args.body else None, headers)
    result = run_load(
        url.hostname,
        url.port or 80,
        req,
        clients=args.clients,
        duration=args.duration,
        max_requests=args.max_requests,
    )
    json.dump(asdict(result), sys.stdout, indent=2)
    print()
    return 0 if result.errors == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
