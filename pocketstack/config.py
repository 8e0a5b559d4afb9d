"""Settings: one object, built once from the command line and environment, passed explicitly."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

DEFAULT_PORT = 8780
KNOWN_SERVICES = ("identity", "placement", "image", "compute", "network", "volume")
DEFAULT_SERVICES = KNOWN_SERVICES
DEFAULT_STATE_DIR = Path("~/.local/share/pocketstack").expanduser()
_DRIVERS = {
    "postgresql": "postgresql+psycopg",
    "postgres": "postgresql+psycopg",
    "mysql": "mysql+pymysql",
    "mariadb": "mariadb+pymysql",
}


@dataclass(frozen=True, slots=True)
class Settings:
    state_dir: Path = DEFAULT_STATE_DIR
    bind_host: str = "127.0.0.1"
    bind_port: int = DEFAULT_PORT
    db_url: str = ""
    admin_password: str | None = None
    policy_file: Path | None = None
    write_clouds_yaml: bool = True
    token_expiration_s: int = 3600
    password_hash_rounds: int = 12
    max_active_keys: int = 3
    region: str = "RegionOne"
    public_host: str = ""
    services: tuple[str, ...] = DEFAULT_SERVICES
    # "keystone" (tokens) or "noauth" (trust the token's words; loopback-only, for tests)
    auth: str = "keystone"
    # A service that also answers at `/` (standalone style), besides its own prefix.
    serve_at_root: str | None = None
    # Compute hosts this process runs: N fake hosts (0: this machine itself), and the
    # VGPUs of the one fake GPU each fake host has (0: none).
    fake_hosts: int = 0
    fake_vgpus: int = 0
    # "auto": this machine's real drivers (namespaces, qemu) when it can run them, else
    # the fake one; "real" insists on them, "fake" never runs anything.
    compute_driver: str = "auto"
    # The data plane: "linuxbridge" (namespaces, bridges, dnsmasq, iptables; needs root),
    # "fake" (ports are up at once, nothing on the host), "auto": linuxbridge when it can.
    network_driver: str = "auto"
    # Block storage: "file" (sparse files in the state dir) or "fake" (nothing stored).
    volume_driver: str = "file"
    # Start the servers that should run when this host comes back (Nova's
    # resume_guests_state_on_host_boot); off, they are marked SHUTOFF instead.
    resume_guests_on_start: bool = True
    # Placement inventory of a real host: what may be promised per physical unit.
    cpu_allocation_ratio: float = 4.0
    ram_allocation_ratio: float = 1.0
    disk_allocation_ratio: float = 1.0
    # Build and register the `busybox` and `tiny-vm` images when they are missing.
    builtin_images: bool = True
    # The external network `up` makes (`public`): floating IPs and router gateways.
    external_cidr: str = "198.18.0.0/24"

    @property
    def database_url(self) -> str:
        """The SQLAlchemy URL, with the drivers pocketstack ships chosen for bare schemes."""
        if not self.db_url:
            return f"sqlite:///{self.state_dir / 'pocketstack.db'}"
        scheme, sep, rest = self.db_url.partition("://")
        return f"{_DRIVERS.get(scheme, scheme)}{sep}{rest}"

    @property
    def base_url(self) -> str:
        """The URL clients reach: the bind address, or loopback when bound to all addresses."""
        host = self.public_host or self.bind_host
        if host in ("0.0.0.0", "::", ""):
            host = "127.0.0.1"
        if ":" in host and not host.startswith("["):
            host = f"[{host}]"
        return f"http://{host}:{self.bind_port}"

    @property
    def key_dir(self) -> Path:
        return self.state_dir / "fernet-keys"


def password_hash_rounds_from_env(default: int = 12) -> int:
    """The bcrypt cost; operators and benchmarks match Keystone's through the environment."""
    raw = os.environ.get("POCKETSTACK_PASSWORD_HASH_ROUNDS")
    if not raw:
        return default
    rounds = int(raw)
    if not 4 <= rounds <= 31:
        raise ValueError("POCKETSTACK_PASSWORD_HASH_ROUNDS must be between 4 and 31")
    return rounds
