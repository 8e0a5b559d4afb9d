"""The services and hosts of block storage as operators see them: `os-services` (with
enable, disable, freeze and thaw), `os-hosts`, the pools and their capabilities.

This cloud runs one cinder-scheduler and one cinder-volume (host `pocketstack@<backend>`,
one pool `pocketstack@<backend>#<backend>`); what an operator sets on them is kept in
ServiceState rows, so a disabled volume service stays disabled across restarts and the
scheduler (volume/service.py) places no new volume on it."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from pocketstack.core import errors
from pocketstack.core.context import RequestContext
from pocketstack.volume import models
from pocketstack.volume import service as volume_service

SCHEDULER, VOLUME = "cinder-scheduler", "cinder-volume"
SCHEDULER_HOST = "pocketstack"


def volume_host(ctx: RequestContext) -> str:
    """`pocketstack@<backend>`: the cinder-volume service's host (the pool name less `#pool`)."""
    return volume_service.pool_name(ctx).split("#")[0]


def _hosts(ctx: RequestContext) -> dict[str, str]:
    return {SCHEDULER: SCHEDULER_HOST, VOLUME: volume_host(ctx)}


def _matches(host: str, wanted: str) -> bool:
    """Cinder's host filter: `h` matches `h`, `h@backend` and `h@backend#pool`."""
    return host == wanted or host.startswith((f"{wanted}@", f"{wanted}#"))


def _state(session: Session, binary: str, host: str) -> models.ServiceState | None:
    return session.get(models.ServiceState, (binary, host))


def services(
    ctx: RequestContext, host: str | None = None, binary: str | None = None
) -> list[dict[str, Any]]:
    """The services, as `os-services` lists them, filtered by host and binary."""
    up = "up" if volume_service.WAKE_KEY in ctx.runtime.state else "down"
    failed_over = volume_service.active_site(ctx) == "secondary"
    found = []
    with ctx.db.read() as session:
        for name, service_host in _hosts(ctx).items():
            if (binary and binary != name) or (host and not _matches(service_host, host)):
                continue
            state = _state(session, name, service_host)
            entry: dict[str, Any] = {
                "binary": name, "host": service_host, "zone": volume_service.AVAILABILITY_ZONE,
                "status": "disabled" if state and state.disabled else "enabled", "state": up,
                "updated_at": volume_service.now().isoformat(timespec="microseconds"),
                "disabled_reason": state.disabled_reason if state else None,
            }  # fmt: skip
            if name == VOLUME:
                entry |= {
                    "replication_status": "failed-over" if failed_over else "enabled",
                    "active_backend_id": "secondary" if failed_over else None,
                    "frozen": bool(state and state.frozen),
                }
            found.append(entry)
    return found


def set_enabled(
    ctx: RequestContext, host: str, binary: str, enabled: bool, reason: str | None = None
) -> dict[str, Any]:
    """os-services enable / disable / disable-log-reason."""
    known = _hosts(ctx)
    if binary not in known or not _matches(known[binary], host):
        raise errors.NotFound(f"Service {binary} on host {host} could not be found.")
    with ctx.db.write() as session:
        state = _state(session, binary, known[binary]) or models.ServiceState(
            binary=binary, host=known[binary], frozen=False
        )
        state.disabled, state.disabled_reason = not enabled, None if enabled else reason
        state.updated_at = volume_service.now()
        session.add(state)
    answer = {"host": host, "service": binary, "binary": binary, "disabled": not enabled,
              "status": "enabled" if enabled else "disabled"}  # fmt: skip
    return answer if reason is None and not enabled else {**answer, "disabled_reason": reason}


def set_frozen(ctx: RequestContext, host: str, frozen: bool) -> None:
    """freeze / thaw: a frozen backend takes no management operation (volume/service.py
    checks) until it is thawed, as a backend being failed over should."""
    own = volume_host(ctx)
    if not _matches(own, host):
        raise errors.Invalid(f"Invalid input received: Host {host} is not a volume host; "
                             f"this cloud's is {own}.")  # fmt: skip
    with ctx.db.write() as session:
        state = _state(session, VOLUME, own) or models.ServiceState(
            binary=VOLUME, host=own, disabled=False
        )
        state.frozen, state.updated_at = frozen, volume_service.now()
        session.add(state)


def hosts(ctx: RequestContext) -> list[dict[str, Any]]:
    """`os-hosts`: one entry per service, as Cinder's hosts extension lists them."""
    return [
        {"host_name": s["host"], "service": s["binary"], "zone": s["zone"],
         "service-status": "available" if s["state"] == "up" else "unavailable",
         "service-state": s["status"], "last-update": s["updated_at"]}
        for s in services(ctx)
    ]  # fmt: skip


def _per_project(
    session: Session, model: type[models.Volume] | type[models.Snapshot]
) -> dict[str, tuple[int, int]]:
    """Per project: how many rows of `model`, and their GiB."""
    stmt = select(model.project_id, func.count(), func.sum(model.size)).group_by(model.project_id)
    return {project: (count, size) for project, count, size in session.execute(stmt)}


def host_usage(ctx: RequestContext, host: str) -> list[dict[str, Any]]:
    """`os-hosts/{host}`: the volumes and snapshots on an enabled volume host, in total and
    per project (counts and sizes as strings, as Cinder answers)."""
    own = [s for s in services(ctx, host=host, binary=VOLUME) if s["status"] == "enabled"]
    if not own:
        raise errors.NotFound(f"Host {host} could not be found (or runs no enabled "
                              f"cinder-volume); see os-hosts for the hosts.")  # fmt: skip
    with ctx.db.read() as session:
        volumes = _per_project(session, models.Volume)
        snapshots = _per_project(session, models.Snapshot)

    def entry(project: str, volume: tuple[int, int], snapshot: tuple[int, int]) -> dict[str, Any]:
        return {"resource": {
            "host": own[0]["host"], "project": project, "volume_count": str(volume[0]),
            "total_volume_gb": str(volume[1]), "snapshot_count": str(snapshot[0]),
            "total_snapshot_gb": str(snapshot[1]),
        }}  # fmt: skip

    total_volumes = (sum(c for c, _ in volumes.values()), sum(s for _, s in volumes.values()))
    total_snaps = (sum(c for c, _ in snapshots.values()), sum(s for _, s in snapshots.values()))
    found = [entry("(total)", total_volumes, total_snaps)]
    for project in sorted(set(volumes) | set(snapshots)):
        found.append(entry(project, volumes.get(project, (0, 0)), snapshots.get(project, (0, 0))))
    return found


def capabilities(ctx: RequestContext, host: str) -> dict[str, Any]:
    """`capabilities/{host}`: what the backend on `host` offers, as volume types may ask."""
    own = volume_host(ctx)
    if not _matches(own, host.split("#")[0]):
        raise errors.NotFound(f"Host {host} could not be found; see scheduler-stats/get_pools.")
    backend = volume_service.backend_of(ctx)

    def boolean(title: str, description: str) -> dict[str, str]:
        return {"title": title, "description": description, "type": "boolean"}

    return {
        "namespace": f"OS::Storage::Capabilities::{own}", "vendor_name": volume_service.VENDOR,
        "volume_backend_name": backend.name, "pool_name": None,
        "driver_version": volume_service.DRIVER_VERSION,
        "storage_protocol": backend.name, "display_name": None, "description": None,
        "visibility": None, "replication_targets": ["secondary"],
        "properties": {
            "thin_provisioning": boolean("Thin Provisioning", "Sets thin provisioning."),
            "multiattach": boolean("Multi-attach", "Volumes may attach to several servers."),
        },
    }  # fmt: skip
