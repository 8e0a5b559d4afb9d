"""Upstream Keystone from PyPI, set up and served like a small deployment.

Why: pocketstack's identity figures only mean something next to the real
thing measured on the same machine in the same run.  This module installs
Keystone into its own venv under /tmp (never into the project's), writes a
keystone.conf on SQLite, runs the documented ``keystone-manage`` steps
(db_sync, fernet_setup, credential_setup, bootstrap with RegionOne and a
public endpoint) and gives the command line that serves it.

Serving choice: uWSGI, one process, one thread (``--master --processes 1
--threads 1 --enable-threads --lazy-apps --die-on-term --buffer-size 65535
--add-header 'Connection: close'``, request logging left on), i.e. DevStack's uWSGI settings with
API_WORKERS=1, listening directly with ``--http-socket`` on 127.0.0.1.  Kolla
and the install guides run Apache mod_wsgi with ``threads=1``, which is the
same one-request-at-a-time model.  Keystone's WSGI entry point is the module
``keystone.wsgi.api:application`` (current releases ship no
``keystone-wsgi-public`` script); it reads its config from
``OS_KEYSTONE_CONFIG_FILES``.  ``--wsgi-server gunicorn`` (sync worker) is a
fallback for machines where uWSGI does not build (it compiles from source);
its options go in a gunicorn.conf.py because Keystone parses sys.argv.

Cache: Keystone's own default is ``[cache] enabled = true`` with oslo.cache's
``dogpile.cache.null`` backend, i.e. no cross-request cache.  The "cached"
variant only sets ``[cache] backend = dogpile.cache.memory`` (in-process, no
memcached needed); ``[token] caching`` etc. already default to true.

Password hashing: Keystone's default is bcrypt at cost 12 (``[identity]
password_hash_rounds`` unset -> 12); we write the cost explicitly so both
sides provably hash at the same cost.

Run on its own to set up and serve a Keystone by hand::

    python bench/upstream_keystone.py --port 5000 [--cache]
"""

from __future__ import annotations

import argparse
import grp
import os
import pwd
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import procs

KEYSTONE_SPEC = "keystone==30.0.0"
WSGI_SPECS = {"uwsgi": "uwsgi==2.0.31", "gunicorn": "gunicorn==27.0.1"}
DEFAULT_VENV = Path("/tmp/pocketstack-bench/keystone-venv")
DEFAULT_HASH_ROUNDS = 12  # Keystone's bcrypt default (keystone/conf/identity.py)


def ensure_venv(venv: Path, keystone_spec: str = KEYSTONE_SPEC, wsgi_server: str = "uwsgi") -> Path:
    """Create (or reuse) a venv holding Keystone and the WSGI server."""
    specs = [keystone_spec, WSGI_SPECS[wsgi_server]]
    return procs.venv_with(venv, specs)


@dataclass
class KeystoneSite:
    """One Keystone instance: its venv, state dir, port and settings."""

    venv: Path
    state_dir: Path
    port: int
    admin_password: str
    cache: bool = False
    hash_rounds: int = DEFAULT_HASH_ROUNDS
    wsgi_server: str = "uwsgi"

    @property
    def conf(self) -> Path:
        return self.state_dir / "keystone.conf"

    @property
    def log(self) -> Path:
        return self.state_dir / "server.log"

    def write_conf(self) -> None:
        """Minimal keystone.conf: SQLite, key repos in the state dir, bcrypt cost."""
        s = self.state_dir
        lines = [
            "[database]",
            f"connection = sqlite:///{s / 'keystone.db'}",
            "",
            "[fernet_tokens]",
            f"key_repository = {s / 'fernet-keys'}",
            "",
            "[fernet_receipts]",
            f"key_repository = {s / 'fernet-keys'}",
            "",
            "[credential]",
            f"key_repository = {s / 'credential-keys'}",
            "",
            "[identity]",
            "password_hash_algorithm = bcrypt",
            f"password_hash_rounds = {self.hash_rounds}",
            "",
        ]
        if self.cache:
            lines += ["[cache]", "enabled = true", "backend = dogpile.cache.memory", ""]
        self.conf.write_text("\n".join(lines))

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["OS_KEYSTONE_CONFIG_FILES"] = str(self.conf)
        env.pop("OS_KEYSTONE_CONFIG_DIR", None)
        return env

    def prepare(self) -> float:
        """Write the config and run the keystone-manage setup steps; seconds taken."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        for d in ("fernet-keys", "credential-keys"):
            (self.state_dir / d).mkdir(exist_ok=True, mode=0o700)
        self.write_conf()
        user = pwd.getpwuid(os.getuid()).pw_name
        group = grp.getgrgid(os.getgid()).gr_name
        owner = ["--keystone-user", user, "--keystone-group", group]
        manage = [str(self.venv / "bin" / "keystone-manage"), "--config-file", str(self.conf)]
        steps = [
            ["db_sync"],
            ["fernet_setup", *owner],
            ["credential_setup", *owner],
            [
                "bootstrap",
                "--bootstrap-password",
                self.admin_password,
                "--bootstrap-username",
                "admin",
                "--bootstrap-project-name",
                "admin",
                "--bootstrap-role-name",
                "admin",
                "--bootstrap-region-id",
                "RegionOne",
                "--bootstrap-public-url",
                f"http://127.0.0.1:{self.port}/v3",
            ],
        ]
        env = self.env()
        env["PYTHONWARNINGS"] = "ignore"  # eventlet deprecation noise from keystone-manage
        started = time.perf_counter()
        with open(self.state_dir / "manage.log", "ab") as log:
            for step in steps:
                rc = subprocess.run(
                    [*manage, *step], env=env, stdout=log, stderr=subprocess.STDOUT
                ).returncode
                if rc != 0:
                    raise RuntimeError(
                        f"keystone-manage {step[0]} failed ({rc}); "
                        f"see {self.state_dir / 'manage.log'}"
                    )
        return time.perf_counter() - started

    def command(self) -> list[str]:
        """The server command line (one worker, one request at a time); run it in state_dir.

        Keystone's WSGI app parses ``sys.argv`` with oslo.config, so gunicorn
        cannot take options on its command line: it reads them from
        ``gunicorn.conf.py`` in its working directory (the state dir) instead.
        """
        bind = f"127.0.0.1:{self.port}"
        if self.wsgi_server == "gunicorn":
            (self.state_dir / "gunicorn.conf.py").write_text(
                "wsgi_app = 'keystone.wsgi.api:application'\n"
                f"bind = {bind!r}\nworkers = 1\nworker_class = 'sync'\nthreads = 1\n"
                "control_socket_disable = True\n"
            )
            return [str(self.venv / "bin" / "gunicorn")]
        return [
            str(self.venv / "bin" / "uwsgi"),
            "--http-socket",
            bind,
            "--module",
            "keystone.wsgi.api:application",
            "--virtualenv",
            str(self.venv),
            "--master",
            "--processes",
            "1",
            "--threads",
            "1",
            "--enable-threads",
            "--lazy-apps",
            "--die-on-term",
            "--buffer-size",
            "65535",
            "--add-header",
            "Connection: close",
        ]


def main(argv: list[str] | None = None) -> int:
    """Set up a fresh Keystone and serve it in the foreground until Ctrl-C."""
    import tempfile

    p = argparse.ArgumentParser(description="Set up and serve upstream Keystone on SQLite.")
    p.add_argument("--venv", type=Path, default=DEFAULT_VENV)
    p.add_argument("--keystone-spec", default=KEYSTONE_SPEC)
    p.add_argument("--wsgi-server", choices=sorted(WSGI_SPECS), default="uwsgi")
    p.add_argument("--state-dir", type=Path, default=None)
    p.add_argument("--port", type=int, default=5000)
    p.add_argument("--admin-password", default="bench-admin-pw")
    p.add_argument("--cache", action="store_true", help="dogpile.cache.memory backend")
    p.add_argument("--hash-rounds", type=int, default=DEFAULT_HASH_ROUNDS)
    args = p.parse_args(argv)
    venv = ensure_venv(args.venv, args.keystone_spec, args.wsgi_server)
    state = args.state_dir or Path(
        tempfile.mkdtemp(prefix="keystone-", dir="/tmp/pocketstack-bench")
    )
    site = KeystoneSite(
        venv, state, args.port, args.admin_password, args.cache, args.hash_rounds, args.wsgi_server
    )
    print(f"setup took {site.prepare():.1f} s; state in {state}", flush=True)
    cmd = site.command()
    os.chdir(state)
    os.execve(cmd[0], cmd, site.env())


if __name__ == "__main__":
    sys.exit(main())
