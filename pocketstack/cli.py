"""The `pocketstack` command: `up`, `db upgrade`, `status`, `token rotate-keys`.

Every error it prints says what to do next; it exits non-zero on failure.
"""

from __future__ import annotations

import argparse
import dataclasses
import ipaddress
import json
import os
import secrets
import signal
import socket
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from pocketstack import __version__, clouds, config
from pocketstack.identity import passwords

PASSWORD_FILE = "admin-password"
SERVER_FILE = "server.json"


class UsageError(Exception):
    """A problem the user can fix; the message says how."""


def _parse_bind(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        raise UsageError(f"--bind expects HOST:PORT (for example 127.0.0.1:8780), got {text!r}")
    return host.strip("[]") or "127.0.0.1", int(port)


def _common_args(parser: argparse.ArgumentParser, db_flag: str = "--db") -> None:
    parser.add_argument(
        "--state-dir",
        type=Path,
        default=config.DEFAULT_STATE_DIR,
        help="where the database, keys and images live (default: %(default)s)",
    )
    parser.add_argument(
        db_flag,
        dest="db",
        default="",
        help="database URL (default: SQLite in the state dir); "
        "postgresql+psycopg://… and mysql+pymysql://… work too",
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pocketstack", description="An OpenStack-compatible cloud in one process."
    )
    parser.add_argument("--version", action="version", version=f"pocketstack {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    up = commands.add_parser("up", help="start the all-in-one cloud")
    _common_args(up)
    up.add_argument(
        "--bind",
        default=f"127.0.0.1:{config.DEFAULT_PORT}",
        help="HOST:PORT to serve on (default: %(default)s)",
    )
    up.add_argument(
        "--admin-password",
        default=None,
        help="admin password (else $POCKETSTACK_ADMIN_PASSWORD, else generated)",
    )
    up.add_argument(
        "--policy-file",
        type=Path,
        default=None,
        help="YAML file of policy rules overriding the defaults",
    )
    up.add_argument(
        "--no-clouds-yaml",
        action="store_true",
        help="do not merge a 'pocketstack' entry into ~/.config/openstack/clouds.yaml",
    )
    up.add_argument(
        "--services",
        default=",".join(config.DEFAULT_SERVICES),
        help="comma-separated services to run (default: %(default)s; "
        f"known: {', '.join(config.KNOWN_SERVICES)})",
    )
    up.add_argument(
        "--auth",
        choices=["keystone", "noauth"],
        default="keystone",
        help="noauth trusts X-Auth-Token as user[:project] like upstream's test "
        "middleware; only for running upstream test suites, loopback only",
    )
    up.add_argument(
        "--serve-at-root",
        default=None,
        metavar="SERVICE",
        help="also answer at / with this service, as its standalone server does "
        "(e.g. placement, for tools that expect it there)",
    )
    up.add_argument(
        "--fake-hosts",
        type=int,
        default=0,
        metavar="N",
        help="run N fake compute hosts (instant, in memory; for tests and scale runs)",
    )
    up.add_argument(
        "--fake-vgpus",
        type=int,
        default=0,
        metavar="K",
        help="give each fake host one fake GPU offering K VGPUs",
    )
    up.add_argument(
        "--compute-driver",
        choices=["auto", "real", "fake"],
        default="auto",
        help="real: namespace guests for root-filesystem images and qemu VMs for disk "
        "images (needs root); fake: run nothing; auto: real when this machine can",
    )
    up.add_argument(
        "--network-driver",
        choices=["auto", "linuxbridge", "fake"],
        default="auto",
        help="linuxbridge: bridges, DHCP and security groups in namespaces (needs root); "
        "fake: nothing on the host; auto: linuxbridge when this machine can",
    )
    up.add_argument(
        "--volume-driver",
        choices=["file", "fake"],
        default="file",
        help="file: volumes as sparse files in the state dir; fake: store nothing",
    )
    up.add_argument(
        "--resume-guests-on-start",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="start again the servers that should run when the cloud comes back "
        "(off: they are marked SHUTOFF)",
    )
    for resource, default in (("cpu", 4.0), ("ram", 1.0), ("disk", 1.0)):
        up.add_argument(
            f"--{resource}-allocation-ratio",
            type=float,
            default=default,
            metavar="RATIO",
            help=f"placement {resource} allocation ratio of this host (default {default})",
        )
    up.add_argument(
        "--external-cidr",
        default="198.18.0.0/24",
        metavar="CIDR",
        help="the subnet of the external network `public` (floating IPs, router gateways)",
    )
    up.add_argument(
        "--no-builtin-images",
        action="store_true",
        help="do not build and register the busybox and tiny-vm images",
    )
    up.add_argument("--log-level", default="warning", choices=["debug", "info", "warning", "error"])

    manage = commands.add_parser("manage", help="operator tasks (cells, volume failover)")
    manage_commands = manage.add_subparsers(dest="manage_command", required=True)
    cell = manage_commands.add_parser("cell", help="compute cells v2")
    cell_commands = cell.add_subparsers(dest="cell_command", required=True)
    cell_create = cell_commands.add_parser("create", help="map a new cell")
    _common_args(cell_create, db_flag="--api-db")
    cell_create.add_argument("--name", required=True)
    cell_create.add_argument(
        "--db",
        dest="cell_db",
        default=None,
        help="the cell's database URL (default: beside the API database)",
    )
    cell_list = cell_commands.add_parser("list", help="list cells")
    _common_args(cell_list)
    for verb, text in (("disable", "stop scheduling new servers to a cell"),
                       ("enable", "schedule to a cell again"),
                       ("delete", "unmap an empty cell")):  # fmt: skip
        sub = cell_commands.add_parser(verb, help=text)
        _common_args(sub)
        sub.add_argument("name")

    volume = manage_commands.add_parser("volume", help="block storage backends")
    volume_commands = volume.add_subparsers(dest="volume_command", required=True)
    for verb, text in (("failover", "serve replicated volumes from the secondary site"),
                       ("failback", "copy changes back, serve from the primary")):  # fmt: skip
        sub = volume_commands.add_parser(verb, help=text)
        _common_args(sub)
        sub.add_argument("--backend", default="file", help="the backend (default: file)")

    image = commands.add_parser("image", help="guest images built from Debian packages")
    image_commands = image.add_subparsers(dest="image_command", required=True)
    image_build = image_commands.add_parser(
        "build", help="build busybox (namespace guests) or tiny-vm (qemu) into a directory"
    )
    image_build.add_argument("name", choices=["busybox", "tiny-vm"])
    image_build.add_argument(
        "--output", type=Path, default=Path("."), help="where the files go (default: here)"
    )

    db = commands.add_parser("db", help="database maintenance")
    db_commands = db.add_subparsers(dest="db_command", required=True)
    upgrade = db_commands.add_parser("upgrade", help="apply pending schema migrations")
    _common_args(upgrade)

    status = commands.add_parser("status", help="show whether the cloud is up and where")
    _common_args(status)

    token = commands.add_parser("token", help="token key management")
    token_commands = token.add_subparsers(dest="token_command", required=True)
    rotate = token_commands.add_parser("rotate-keys", help="promote the staged token key")
    _common_args(rotate)
    return parser


def _settings(args: argparse.Namespace) -> config.Settings:
    return config.Settings(
        state_dir=args.state_dir.expanduser().resolve(),
        db_url=args.db,
        password_hash_rounds=config.password_hash_rounds_from_env(),
    )


def _auth_mode(mode: str, host: str) -> str:
    if mode == "noauth" and not _is_loopback(host):
        raise UsageError(
            f"--auth noauth lets anyone act as anyone, so it only binds to loopback; use "
            f"--bind 127.0.0.1:PORT (got {host})"
        )
    return mode


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def _services(text: str) -> tuple[str, ...]:
    names = tuple(dict.fromkeys(n.strip() for n in text.split(",") if n.strip()))
    unknown = [n for n in names if n not in config.KNOWN_SERVICES]
    if unknown or "identity" not in names:
        raise UsageError(
            f"--services takes a comma-separated list that includes identity, from: "
            f"{', '.join(config.KNOWN_SERVICES)} (got {text!r})"
        )
    return names


def _admin_password(args: argparse.Namespace, state_dir: Path) -> tuple[str, str]:
    """(password, where it came from: "given", "stored" or "generated").

    The password in force is kept in the state dir, so a later `up` without
    --admin-password keeps using it."""
    stored = state_dir / PASSWORD_FILE
    given = args.admin_password or os.environ.get("POCKETSTACK_ADMIN_PASSWORD")
    if not given and stored.exists():
        return stored.read_text().strip(), "stored"
    password = given or secrets.token_urlsafe(18)
    tmp = stored.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(password + "\n")
    tmp.replace(stored)
    return password, "given" if given else "generated"


def _bound_socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP explicitly: asyncio only sets TCP_NODELAY on accepted sockets whose
    # protocol says TCP, and without it keep-alive responses stall on delayed ACKs.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise UsageError(
            f"cannot listen on {host}:{port} ({exc.strerror}); is another pocketstack running? "
            f"Stop it, or pick another port with --bind {host}:PORT"
        ) from None
    sock.listen(1024)
    sock.set_inheritable(True)
    return sock


def cmd_up(args: argparse.Namespace) -> int:
    started = time.monotonic()
    host, port = _parse_bind(args.bind)
    settings = dataclasses.replace(
        _settings(args),
        bind_host=host,
        bind_port=port,
        policy_file=args.policy_file,
        write_clouds_yaml=not args.no_clouds_yaml,
        services=_services(args.services),
        auth=_auth_mode(args.auth, host),
        serve_at_root=args.serve_at_root,
        fake_hosts=args.fake_hosts,
        fake_vgpus=args.fake_vgpus,
        compute_driver=args.compute_driver,
        network_driver=args.network_driver,
        volume_driver=args.volume_driver,
        resume_guests_on_start=args.resume_guests_on_start,
        cpu_allocation_ratio=args.cpu_allocation_ratio,
        ram_allocation_ratio=args.ram_allocation_ratio,
        disk_allocation_ratio=args.disk_allocation_ratio,
        builtin_images=not args.no_builtin_images,
        external_cidr=args.external_cidr,
    )
    if settings.serve_at_root not in (None, *settings.services):
        raise UsageError(
            f"--serve-at-root {settings.serve_at_root}: that service is not in "
            f"--services ({', '.join(settings.services)})"
        )
    if "compute" in settings.services:
        from pocketstack.compute import hosts

        try:
            hosts.choose_driver(settings)
        except hosts.DriverUnavailable as exc:
            raise UsageError(
                f"--compute-driver real: {exc}; or start with --compute-driver fake"
            ) from None
    settings.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    sock = _bound_socket(host, port)
    password, source = _admin_password(args, settings.state_dir)
    # bcrypt releases the GIL: hash on the other core while the imports below run.
    with ThreadPoolExecutor(max_workers=1) as hasher:
        password_hash = hasher.submit(
            passwords.hash_secret, password, settings.password_hash_rounds
        )
        import uvicorn

        from pocketstack import services
        from pocketstack.identity import bootstrap as identity_bootstrap

        runtime = services.build_runtime(settings)
        services.upgrade_schema(runtime)
        services.prepare(runtime)
        enabled = services.enabled(settings)
        admin_project = identity_bootstrap.bootstrap(
            runtime,
            password_hash.result(),
            source != "stored",
            [
                identity_bootstrap.CatalogService(
                    catalog_type, s.catalog_name, s.catalog_url(settings.base_url)
                )
                for s in enabled
                for catalog_type in (s.catalog_type, *s.catalog_aliases)
            ],
        )
        if "network" in settings.services:
            from pocketstack.network import builtin as builtin_network

            builtin_network.ensure_public_network(runtime, admin_project, settings.external_cidr)
        if settings.builtin_images and "image" in settings.services:
            from pocketstack.image import builtin as builtin_images

            builtin_images.register_missing(
                runtime, admin_project, progress=lambda line: print(line, flush=True)
            )
    auth_url = f"{settings.base_url}/identity/v3"
    written = clouds.write(
        settings.state_dir,
        auth_url,
        password,
        settings.region,
        merge_user_file=settings.write_clouds_yaml,
    )
    app = services.build_app(runtime)
    server = uvicorn.Server(
        uvicorn.Config(
            app, log_level=args.log_level, lifespan="off", http="httptools", access_log=False
        )
    )
    (settings.state_dir / SERVER_FILE).write_text(
        json.dumps({"url": settings.base_url, "pid": os.getpid(), "auth_url": auth_url})
    )
    _print_banner(
        settings,
        auth_url,
        password if source == "generated" else None,
        written,
        [s.name for s in enabled],
        time.monotonic() - started,
    )
    _stop_quietly_on_signals()
    stop_background = services.start(runtime)
    try:
        server.run(sockets=[sock])
    finally:
        stop_background()
        (settings.state_dir / SERVER_FILE).unlink(missing_ok=True)
        services.close(runtime)
    print("pocketstack stopped.", flush=True)
    return 0


def _stop_quietly_on_signals() -> None:
    """uvicorn handles SIGINT/SIGTERM while serving, then re-raises the signal once it has
    drained connections; with these handlers in place that re-raise lets `up` finish its
    cleanup and exit 0 instead of dying mid-way."""
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda _signum, _frame: None)


def _print_banner(
    settings: config.Settings,
    auth_url: str,
    new_password: str | None,
    clouds_files: Sequence[Path],
    service_names: Sequence[str],
    elapsed: float,
) -> None:
    lines = [
        f"pocketstack {__version__} is ready at {settings.base_url} ({elapsed:.2f} s)",
        f"  identity (Keystone v3): {auth_url}",
        f"  services: {', '.join(service_names)}",
        "  drivers: identity=sql (tokens: fernet, passwords: bcrypt "
        f"cost {settings.password_hash_rounds})",
        *_compute_line(settings, service_names),
        *_network_line(settings, service_names),
        f"  state: {settings.state_dir}  database: {_redact(settings.database_url)}",
        f"  clouds.yaml: {', '.join(str(p) for p in clouds_files)}",
    ]
    if settings.auth == "noauth":
        lines.append("  AUTH IS OFF (--auth noauth): any X-Auth-Token is trusted; tests only")
    if new_password is not None:
        lines.append(
            f"  admin password (shown once, kept in {settings.state_dir / PASSWORD_FILE}):"
            f" {new_password}"
        )
    lines += [
        "",
        "  export OS_CLOUD=pocketstack",
        "  openstack token issue",
        "",
        "Press Ctrl+C to stop.",
    ]
    print("\n".join(lines), flush=True)


def _compute_line(settings: config.Settings, service_names: Sequence[str]) -> list[str]:
    if "compute" not in service_names:
        return []
    from pocketstack.compute import hosts

    return [f"  compute: {hosts.choose_driver(settings).description}"]


def _network_line(settings: config.Settings, service_names: Sequence[str]) -> list[str]:
    if "network" not in service_names:
        return []
    from pocketstack.network import agent as network_agent

    return [f"  network: {network_agent.describe(settings)}"]


def _redact(url: str) -> str:
    if "@" not in url:
        return url
    scheme, _, rest = url.partition("://")
    return f"{scheme}://***@{rest.split('@', 1)[1]}"


def cmd_db_upgrade(args: argparse.Namespace) -> int:
    from pocketstack import services

    settings = _settings(args)
    settings.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    runtime = services.build_runtime(settings)
    changed = services.upgrade_schema(runtime)
    print("database upgraded" if changed else "database already up to date")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    import urllib.error
    import urllib.request

    settings = _settings(args)
    server_file = settings.state_dir / SERVER_FILE
    if not server_file.exists():
        print(
            f"pocketstack is not running for {settings.state_dir}. Start it with: pocketstack up"
            f" --state-dir {settings.state_dir}"
        )
        return 3
    info = json.loads(server_file.read_text())
    try:
        with urllib.request.urlopen(f"{info['url']}/identity/v3", timeout=5) as response:
            healthy = response.status == 200
    except (urllib.error.URLError, OSError) as exc:
        print(
            f"pocketstack (pid {info['pid']}) is not answering at {info['url']}: {exc}. "
            "If it crashed, start it again with: pocketstack up"
        )
        return 1
    print(
        f"pocketstack is up at {info['url']} (pid {info['pid']})"
        if healthy
        else f"pocketstack at {info['url']} answered unexpectedly; see its log"
    )
    print(f"  auth url: {info['auth_url']}\n  state: {settings.state_dir}")
    return 0 if healthy else 1


def cmd_rotate_keys(args: argparse.Namespace) -> int:
    from pocketstack.identity import tokens

    settings = _settings(args)
    repository = tokens.KeyRepository(settings.key_dir, settings.max_active_keys)
    primary = repository.rotate()
    print(
        f"token keys rotated in {settings.key_dir}: key {primary} now signs new tokens; "
        "running servers pick it up within a second"
    )
    return 0


def cmd_image_build(args: argparse.Namespace) -> int:
    """`pocketstack image build NAME`: the files, and the upload that registers them (`up`
    does both by itself for a new cloud)."""
    from pocketstack.host import image_builds
    from pocketstack.host.commands import HostCommandError

    print(f"building {args.name} into {args.output.resolve()} ...", flush=True)
    try:
        built = image_builds.build(args.name, args.output)
    except (image_builds.ImageBuildError, HostCommandError) as exc:
        raise UsageError(f"image {args.name} could not be built: {exc}") from None
    for image in built:
        options = [f"--disk-format {image.disk_format}",
                   f"--container-format {image.container_format}"]  # fmt: skip
        options += [f"--property {key}={value}" for key, value in image.properties.items()]
        options += [f"--property {key}=<id of {ref}>" for key, ref in image.references.items()]
        print(f"{image.path}\n  openstack image create --public --file {image.path} "
              f"{' '.join(options)} {image.name}")  # fmt: skip
    return 0


def cmd_manage(args: argparse.Namespace) -> int:
    return cmd_manage_volume(args) if args.manage_command == "volume" else cmd_manage_cell(args)


def cmd_manage_volume(args: argparse.Namespace) -> int:
    """`pocketstack manage volume failover|failback`: the backend's active site is switched
    on disk, not in the database; a running cloud serves from the new site at once."""
    from pocketstack.volume import agent as volume_agent

    settings = _settings(args)
    if args.backend != "file" or settings.volume_driver != "file":
        raise UsageError(
            f"backend {args.backend!r} has no replication; only the file backend does "
            "(see `pocketstack up --volume-driver`)"
        )
    backend = volume_agent.file_backend_of(settings.state_dir)
    if args.volume_command == "failover":
        backend.fail_over()
        print("volume backend file failed over: replicated volumes are served from the "
              "secondary site; `pocketstack manage volume failback` returns")  # fmt: skip
    else:
        copied = backend.fail_back()
        print(f"volume backend file failed back: {copied} replicas copied to the primary site")
    return 0


def cmd_manage_cell(args: argparse.Namespace) -> int:
    """`pocketstack manage cell ...`: cells are mapped in the API database; the schema of a
    new cell's database is created on the spot."""
    from pocketstack import services
    from pocketstack.compute import cells
    from pocketstack.core import errors

    settings = _settings(args)
    settings.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    runtime = services.build_runtime(settings)
    services.upgrade_schema(runtime)
    try:
        cells.prepare(runtime)
        if args.cell_command == "create":
            cell = cells.create_cell(runtime, args.name, args.cell_db)
            url = _redact(cells.url_of(settings, cell))
            print(f"cell {cell.name} created: {cell.uuid} at {url}")
        elif args.cell_command == "list":
            print(f"{'name':<16} {'uuid':<36}  {'state':<8} database")
            for cell in cells.list_cells(runtime):
                state = "disabled" if cell.disabled else "enabled"
                url = _redact(cells.url_of(settings, cell))
                print(f"{cell.name:<16} {cell.uuid:<36}  {state:<8} {url}")
        elif args.cell_command in ("disable", "enable"):
            cell = cells.set_disabled(runtime, args.name, args.cell_command == "disable")
            print(f"cell {cell.name} {args.cell_command}d")
        else:
            cells.delete_cell(runtime, args.name)
            print(f"cell {args.name} deleted")
    except errors.PocketstackError as exc:
        raise UsageError(f"{exc.message} (see `pocketstack manage cell list`)") from None
    finally:
        services.close(runtime)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    handlers = {
        "up": cmd_up,
        "db": cmd_db_upgrade,
        "status": cmd_status,
        "token": cmd_rotate_keys,
        "manage": cmd_manage,
        "image": cmd_image_build,
    }
    try:
        return handlers[args.command](args)
    except UsageError as exc:
        print(f"pocketstack: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        import sqlalchemy.exc  # here, not at the top: `up` must not wait for it to start hashing

        if not isinstance(exc, sqlalchemy.exc.OperationalError):
            raise
        print(
            f"pocketstack: cannot use the database ({exc.orig}). Check that the server in "
            "--db is running and reachable and the credentials are right, or leave --db out "
            "to use SQLite in the state dir.",
            file=sys.stderr,
        )
        return 1


if __name__ == "__main__":
    sys.exit(main())
