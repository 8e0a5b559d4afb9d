"""Upstream OpenStack Placement from PyPI, set up and served for the benchmark.

Why: pocketstack's Placement figures only mean something next to the real
service measured on the same machine in the same run.  This module installs
openstack-placement into its own venv under /tmp (never into the project's),
writes a placement.conf, runs ``placement-manage db sync`` and gives the
command line that serves it.

Serving choice: gunicorn, one worker, ``sync`` worker class by default (one
request at a time, the connection closed after each response; the
one-process-one-thread model DevStack's uWSGI and Apache mod_wsgi setups
use), ``--timeout 900`` so that a slow allocation-candidates query at 10,000
providers is not killed.  ``--threads N`` > 1 switches to the ``gthread``
worker (keep-alive, N requests in flight).  Placement's WSGI entry point is
``placement.wsgi.api:application``; it reads ``placement.conf`` from
``OS_PLACEMENT_CONFIG_DIR`` and parses no command line, so gunicorn options go
on gunicorn's own command line.

Config: ``[placement_database] connection`` (SQLite file in the state dir by
default, or any SQLAlchemy URL, e.g. PostgreSQL), ``[api] auth_strategy =
noauth2`` (upstream's test middleware: ``X-Auth-Token: admin`` is an admin),
everything else at upstream defaults (``randomize_allocation_candidates =
false``, ``max_allocation_candidates = -1``, request logging at INFO).

Run on its own to set up and serve a Placement by hand::

    python bench/placement_upstream.py --port 8778
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import procs

PLACEMENT_SPEC = "openstack-placement==16.0.0"
GUNICORN_SPEC = "gunicorn==27.0.1"
# psycopg2, as upstream deployments use: with psycopg 3, placement 16.0.0's
# PUT /allocations fails ("'Cursor' object has no attribute 'lastrowid'").
PG_DRIVER_SPEC = "psycopg2-binary"
DEFAULT_VENV = Path("/tmp/pocketstack-bench/placement-venv")
WSGI_APP = "placement.wsgi.api:application"


def ensure_venv(venv: Path, placement_spec: str = PLACEMENT_SPEC, postgres: bool = False) -> Path:
    """Create (or reuse) a venv holding Placement and gunicorn (and psycopg2 if asked)."""
    specs = [placement_spec, GUNICORN_SPEC] + ([PG_DRIVER_SPEC] if postgres else [])
    return procs.venv_with(venv, specs)


@dataclass
class PlacementSite:
    """One upstream Placement: its venv, state dir, port, database and worker model."""

    venv: Path
    state_dir: Path
    port: int
    db_url: str | None = None  # None: SQLite file in the state dir
    threads: int = 1

    @property
    def conf(self) -> Path:
        return self.state_dir / "placement.conf"

    @property
    def log(self) -> Path:
        return self.state_dir / "server.log"

    @property
    def connection(self) -> str:
        return self.db_url or f"sqlite:///{self.state_dir / 'placement.db'}"

    @property
    def worker(self) -> str:
        """How gunicorn serves it, in words for the results."""
        if self.threads > 1:
            return f"gunicorn 1 worker, gthread x {self.threads} threads (keep-alive)"
        return "gunicorn 1 worker, sync (one request at a time, Connection: close)"

    def write_conf(self) -> None:
        self.conf.write_text(
            "\n".join(
                [
                    "[DEFAULT]",
                    "debug = false",
                    "",
                    "[api]",
                    "auth_strategy = noauth2",
                    "",
                    "[placement_database]",
                    f"connection = {self.connection}",
                    "",
                ]
            )
        )

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["OS_PLACEMENT_CONFIG_DIR"] = str(self.state_dir)
        env["PYTHONWARNINGS"] = "ignore"
        return env

    def prepare(self) -> float:
        """Write the config and run ``placement-manage db sync``; seconds taken."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.write_conf()
        manage = [str(self.venv / "bin" / "placement-manage"), "--config-file", str(self.conf)]
        started = time.perf_counter()
        with open(self.state_dir / "manage.log", "ab") as log:
            rc = subprocess.run(
                [*manage, "db", "sync"], env=self.env(), stdout=log, stderr=subprocess.STDOUT
            ).returncode
        if rc != 0:
            raise RuntimeError(
                f"placement-manage db sync failed ({rc}); see {self.state_dir / 'manage.log'}"
            )
        return time.perf_counter() - started

    def command(self) -> list[str]:
        """The gunicorn command line; run it with ``env()``."""
        cls = ["--worker-class", "gthread", "--threads", str(self.threads)]
        if self.threads <= 1:
            cls = ["--worker-class", "sync"]
        return [
            str(self.venv / "bin" / "gunicorn"),
            "--bind",
            f"127.0.0.1:{self.port}",
            "--workers",
            "1",
            *cls,
            "--timeout",
            "900",
            "--chdir",
            str(self.state_dir),
            WSGI_APP,
        ]


def main(argv: list[str] | None = None) -> int:
    """Set up a fresh Placement and serve it in the foreground until Ctrl-C."""
    import tempfile

    p = argparse.ArgumentParser(description="Set up and serve upstream Placement.")
    p.add_argument("--venv", type=Path, default=DEFAULT_VENV)
    p.add_argument("--placement-spec", default=PLACEMENT_SPEC)
    p.add_argument("--state-dir", type=Path, default=None)
    p.add_argument("--port", type=int, default=8778)
    p.add_argument("--db-url", default=None, help="SQLAlchemy URL (default: SQLite)")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    pg = bool(args.db_url and args.db_url.startswith("postgresql"))
    venv = ensure_venv(args.venv, args.placement_spec, postgres=pg)
    state = args.state_dir or Path(
        tempfile.mkdtemp(prefix="placement-", dir="/tmp/pocketstack-bench")
    )
    site = PlacementSite(venv, state, args.port, args.db_url, args.threads)
    print(f"db sync took {site.prepare():.1f} s; state in {state}", flush=True)
    cmd = site.command()
    os.execve(cmd[0], cmd, site.env())


if __name__ == "__main__":
    sys.exit(main())
