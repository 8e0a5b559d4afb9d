"""Throwaway PostgreSQL and MariaDB servers on loopback, for the tests that must prove
pocketstack works on them as well as on SQLite.

Each server lives in a temp directory, listens on a free 127.0.0.1 port and is
stopped (and its files removed) when the context exits, even on failure.
`make install` installs the Debian packages as root; without them the
tests that need a server say which package is missing.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def postgres_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(found[-1]).parent if found else None


def missing_postgres() -> str | None:
    if postgres_bin() is None:
        return "PostgreSQL is not installed (Debian package postgresql; `make install` as root)"
    if os.geteuid() == 0 and shutil.which("runuser") is None:
        return "runuser is needed to start PostgreSQL as the postgres user"
    return None


def missing_mariadb() -> str | None:
    if shutil.which("mariadbd") is None and not Path("/usr/sbin/mariadbd").exists():
        return "MariaDB is not installed (Debian package mariadb-server; `make install` as root)"
    return None


def _as_postgres(cmd: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


@contextlib.contextmanager
def postgres() -> Iterator[str]:
    """A fresh PostgreSQL cluster; yields a SQLAlchemy URL to an empty database."""
    bin_dir = postgres_bin()
    assert bin_dir is not None, missing_postgres()
    work = Path(tempfile.mkdtemp(prefix="pocketstack-pg-"))
    data = work / "data"
    port = free_port()
    if os.geteuid() == 0:
        shutil.chown(work, "postgres", "postgres")
    subprocess.run(
        _as_postgres(
            [
                str(bin_dir / "initdb"),
                "-D",
                str(data),
                "-A",
                "trust",
                "-U",
                "pocketstack",
                "--no-sync",
            ]
        ),
        check=True,
        capture_output=True,
    )
    options = f"-c listen_addresses=127.0.0.1 -p {port} -k {work} -c fsync=off"
    pg_ctl = [
        str(bin_dir / "pg_ctl"),
        "-D",
        str(data),
        "-o",
        options,
        "-w",
        "-l",
        str(work / "log"),
    ]
    subprocess.run(_as_postgres([*pg_ctl, "start"]), check=True, capture_output=True)
    try:
        yield f"postgresql+psycopg://pocketstack@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(_as_postgres([*pg_ctl, "-m", "immediate", "stop"]), capture_output=True)
        shutil.rmtree(work, ignore_errors=True)


@contextlib.contextmanager
def mariadb() -> Iterator[str]:
    """A fresh MariaDB server; yields a SQLAlchemy URL to an empty database."""
    work = Path(tempfile.mkdtemp(prefix="pocketstack-mariadb-"))
    data, sock = work / "data", work / "mysqld.sock"
    port = free_port()
    subprocess.run(
        [
            "mariadb-install-db",
            "--no-defaults",
            f"--datadir={data}",
            "--user=root",
            "--auth-root-authentication-method=normal",
            "--skip-test-db",
        ],
        check=True,
        capture_output=True,
    )
    server = subprocess.Popen(
        [
            "mariadbd",
            "--no-defaults",
            f"--datadir={data}",
            f"--socket={sock}",
            f"--port={port}",
            "--bind-address=127.0.0.1",
            "--user=root",
            "--skip-grant-tables",
            "--skip-log-bin",
            f"--pid-file={work / 'pid'}",
            "--innodb-flush-log-at-trx-commit=0",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_for_port(port, server)
        subprocess.run(
            [
                "mariadb",
                "--no-defaults",
                f"--socket={sock}",
                "-e",
                "CREATE DATABASE pocketstack CHARACTER SET utf8mb4",
            ],
            check=True,
        )
        yield f"mariadb+pymysql://root@127.0.0.1:{port}/pocketstack?charset=utf8mb4"
    finally:
        server.terminate()
        server.wait(timeout=30)
        shutil.rmtree(work, ignore_errors=True)


def _wait_for_port(port: int, process: subprocess.Popen[bytes], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"database server exited with {process.returncode}")
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise TimeoutError(f"database server did not listen on {port} within {timeout} s")
