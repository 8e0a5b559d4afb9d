"""The registry of services: what `up` mounts, migrates, authorizes and lists in the catalog.

Adding a service means one entry here (see docs/architecture.md).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from starlette.types import ASGIApp

from pocketstack import config
from pocketstack.compute import api as compute_api
from pocketstack.compute import cells as compute_cells
from pocketstack.compute import policies as compute_policies
from pocketstack.compute import service as compute_service
from pocketstack.core import app as app_mod
from pocketstack.core import db as db_mod
from pocketstack.core import migrate
from pocketstack.core import policy as policy_mod
from pocketstack.core.runtime import Runtime
from pocketstack.identity import api as identity_api
from pocketstack.identity import auth as identity_auth
from pocketstack.identity import policies as identity_policies
from pocketstack.image import api as image_api
from pocketstack.image import policies as image_policies
from pocketstack.image import service as image_service
from pocketstack.network import agent as network_agent
from pocketstack.network import api as network_api
from pocketstack.network import policies as network_policies
from pocketstack.placement import api as placement_api
from pocketstack.placement import policies as placement_policies
from pocketstack.placement import service as placement_service
from pocketstack.volume import agent as volume_agent
from pocketstack.volume import api as volume_api
from pocketstack.volume import policies as volume_policies
from pocketstack.volume import service as volume_service

_PACKAGE = Path(__file__).parent


@dataclass(frozen=True, slots=True)
class ServiceSpec:
    """How one service plugs into the process."""

    name: str
    catalog_type: str
    catalog_name: str
    prefix: str
    catalog_suffix: str
    migrations: Path
    policies: Sequence[policy_mod.Rule]
    create_app: Callable[[], ASGIApp]
    install: Callable[[Runtime], object]
    prepare: Callable[[Runtime], None]
    # Background work (agents) while serving; returns the function that stops it.
    start: Callable[[Runtime], Callable[[], None]] | None = None
    # Closes what the service opened besides the runtime's database (cell engines).
    close: Callable[[Runtime], None] | None = None
    # More catalog types served at the same URL (Cinder's `block-storage` beside `volumev3`).
    catalog_aliases: tuple[str, ...] = ()
    # A second request id header the upstream service sends (x-compute-request-id).
    request_id_header: str | None = None

    def catalog_url(self, base_url: str) -> str:
        return f"{base_url}{self.prefix}{self.catalog_suffix}"


SERVICES: dict[str, ServiceSpec] = {
    "identity": ServiceSpec(
        name="identity",
        catalog_type="identity",
        catalog_name="keystone",
        prefix="/identity",
        catalog_suffix="",
        migrations=_PACKAGE / "identity" / "migrations",
        policies=identity_policies.RULES,
        create_app=identity_api.create_app,
        install=identity_auth.install,
        prepare=identity_auth.prepare,
    ),
    "placement": ServiceSpec(
        name="placement",
        catalog_type="placement",
        catalog_name="placement",
        prefix="/placement",
        catalog_suffix="",
        migrations=_PACKAGE / "placement" / "migrations",
        policies=placement_policies.RULES,
        create_app=placement_api.create_app,
        install=lambda _runtime: None,
        prepare=placement_service.prepare,
    ),
    "image": ServiceSpec(
        name="image",
        catalog_type="image",
        catalog_name="glance",
        prefix="/image",
        catalog_suffix="",
        migrations=_PACKAGE / "image" / "migrations",
        policies=image_policies.RULES,
        create_app=image_api.create_app,
        install=lambda _runtime: None,
        prepare=image_service.prepare,
    ),
    "compute": ServiceSpec(
        name="compute",
        catalog_type="compute",
        catalog_name="nova",
        prefix="/compute",
        catalog_suffix="/v2.1",
        migrations=_PACKAGE / "compute" / "migrations",
        policies=compute_policies.RULES,
        create_app=compute_api.create_app,
        install=lambda _runtime: None,
        prepare=compute_service.prepare,
        start=compute_service.start,
        close=compute_cells.dispose,
        request_id_header="x-compute-request-id",
    ),
    "network": ServiceSpec(
        name="network",
        catalog_type="network",
        catalog_name="neutron",
        prefix="/networking",
        catalog_suffix="",
        migrations=_PACKAGE / "network" / "migrations",
        policies=network_policies.RULES,
        create_app=network_api.create_app,
        install=lambda _runtime: None,
        prepare=lambda _runtime: None,
        start=network_agent.start,
    ),
    "volume": ServiceSpec(
        name="volume",
        catalog_type="volumev3",
        catalog_name="cinderv3",
        prefix="/volume",
        catalog_suffix="/v3/$(project_id)s",
        migrations=_PACKAGE / "volume" / "migrations",
        policies=volume_policies.RULES,
        create_app=volume_api.create_app,
        install=volume_agent.install,
        prepare=volume_service.prepare,
        start=volume_agent.start,
        catalog_aliases=("block-storage",),
    ),
}


def enabled(settings: config.Settings) -> list[ServiceSpec]:
    unknown = [name for name in settings.services if name not in SERVICES]
    if unknown:
        raise ValueError(f"unknown services: {', '.join(unknown)}; known: {', '.join(SERVICES)}")
    return [SERVICES[name] for name in settings.services]


def migration_dirs(specs: Sequence[ServiceSpec]) -> list[Path]:
    return [spec.migrations for spec in specs]


def build_runtime(settings: config.Settings) -> Runtime:
    """Database, policy and each service's process state; no schema changes, no HTTP."""
    enforcer = policy_mod.Enforcer(settings.policy_file)
    runtime = Runtime(
        settings=settings, db=db_mod.Database(settings.database_url), enforcer=enforcer
    )
    for spec in enabled(settings):
        enforcer.register(spec.policies)
        spec.install(runtime)
    return runtime


def upgrade_schema(runtime: Runtime) -> bool:
    return migrate.upgrade(runtime.db, migration_dirs(enabled(runtime.settings)))


def prepare(runtime: Runtime) -> None:
    """Each service's every-start setup that needs the schema (keys, standard data)."""
    for spec in enabled(runtime.settings):
        spec.prepare(runtime)


def start(runtime: Runtime) -> Callable[[], None]:
    """Start every service's background work; returns the function that stops it all."""
    stops = [spec.start(runtime) for spec in enabled(runtime.settings) if spec.start]

    def stop() -> None:
        for stop_one in reversed(stops):
            stop_one()

    return stop


def close(runtime: Runtime) -> None:
    """Release every database connection of the process."""
    for spec in enabled(runtime.settings):
        if spec.close is not None:
            spec.close(runtime)
    runtime.db.dispose()


def build_app(runtime: Runtime) -> ASGIApp:
    mounted = [
        app_mod.MountedService(spec.name, spec.prefix, spec.create_app(), spec.request_id_header)
        for spec in enabled(runtime.settings)
    ]
    return app_mod.RootApp(runtime, mounted, at_root=runtime.settings.serve_at_root)
