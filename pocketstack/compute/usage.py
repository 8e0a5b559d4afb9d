"""What servers used and what hosts hold, as Nova's admin reports show it: simple tenant
usage (os-simple-tenant-usage), the instance usage audit log, os-hosts (hosts and their
resources per project) and server diagnostics.

Usage is computed from servers' launched_at/terminated_at and the flavor each server
keeps, over every cell, deleted servers included (they were billed while they ran).
Called by more_api.py.
"""

from __future__ import annotations

import heapq
import json
import socket
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import and_, or_, select

from pocketstack.compute import aggregates, cell_models, cells, hosts, hypervisors, models
from pocketstack.compute import service as compute_service
from pocketstack.compute.drivers import CRASHED, NOSTATE, PAUSED, RUNNING, SHUTDOWN, SUSPENDED
from pocketstack.core import errors
from pocketstack.core.context import RequestContext

_I = cell_models.Instance


def now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


# Simple tenant usage --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ServerUsage:
    instance_id: str
    name: str
    tenant_id: str
    flavor: str
    vcpus: int
    memory_mb: int
    local_gb: int
    hours: float
    started_at: datetime
    ended_at: datetime | None
    state: str
    uptime: int


@dataclass(slots=True)
class TenantUsage:
    tenant_id: str
    start: datetime
    stop: datetime
    total_hours: float = 0.0
    total_local_gb_usage: float = 0.0
    total_memory_mb_usage: float = 0.0
    total_vcpus_usage: float = 0.0
    server_usages: list[ServerUsage] = field(default_factory=list)


def _hours(
    launched: datetime | None, ended: datetime | None, start: datetime, stop: datetime
) -> float:
    """Hours the server ran inside [start, stop]."""
    if launched is None or (ended is not None and ended < start) or launched > stop:
        return 0.0
    begin = max(launched, start)
    end = min(stop, ended) if ended is not None else stop
    return (end - begin).total_seconds() / 3600.0


def _marker_key(ctx: RequestContext, marker: str) -> tuple[str, str]:
    with ctx.db.read() as session:
        mapping = session.get(models.InstanceMapping, marker)
    if mapping is not None:
        cell = cells.get_cell(ctx.runtime, mapping.cell_uuid)
        with cells.database(ctx.runtime, cell).read() as session:
            row = session.get(_I, marker)
            if row is not None:
                return row.project_id, row.uuid
    raise errors.Invalid(f"Marker {marker} could not be found.")


def tenant_usages(
    ctx: RequestContext,
    start: datetime,
    stop: datetime,
    project_id: str | None = None,
    limit: int | None = None,
    marker: str | None = None,
) -> tuple[list[TenantUsage], list[ServerUsage]]:
    """Usage per project of the servers that ran in [start, stop], ordered by project and
    server id across the cells; `limit`/`marker` page over servers. Returns the projects'
    totals (each with its servers) and the servers of the page."""
    after = _marker_key(ctx, marker) if marker else None
    stmt = select(
        _I.uuid, _I.name, _I.project_id, _I.vm_state, _I.flavor, _I.launched_at, _I.terminated_at
    ).where(or_(_I.terminated_at.is_(None), _I.terminated_at > start), _I.launched_at < stop)
    if project_id is not None:
        stmt = stmt.where(_I.project_id == project_id)
    if after is not None:
        stmt = stmt.where(
            or_(_I.project_id > after[0], and_(_I.project_id == after[0], _I.uuid > after[1]))
        )
    stmt = stmt.order_by(_I.project_id, _I.uuid)
    if limit is not None:
        stmt = stmt.limit(limit)
    pages = []
    for cell in cells.list_cells(ctx.runtime):
        with cells.database(ctx.runtime, cell).read() as session:
            pages.append(session.execute(stmt).all())
    rows = list(heapq.merge(*pages, key=lambda r: (r.project_id, r.uuid)))[:limit]
    moment = now()
    totals: dict[str, TenantUsage] = {}
    servers = []
    for row in rows:
        flavor: dict[str, Any] = json.loads(row.flavor)
        hours = _hours(row.launched_at, row.terminated_at, start, stop)
        ended = row.terminated_at
        usage = ServerUsage(
            instance_id=row.uuid, name=row.name, tenant_id=row.project_id,
            flavor=flavor.get("name", ""), vcpus=flavor["vcpus"], memory_mb=flavor["ram"],
            local_gb=flavor["disk"] + flavor.get("ephemeral", 0), hours=hours,
            started_at=row.launched_at, ended_at=ended,
            state="terminated" if ended else row.vm_state,
            uptime=int(((ended or moment) - row.launched_at).total_seconds()),
        )  # fmt: skip
        total = totals.setdefault(row.project_id, TenantUsage(row.project_id, start, stop))
        total.total_hours += hours
        total.total_vcpus_usage += usage.vcpus * hours
        total.total_memory_mb_usage += usage.memory_mb * hours
        total.total_local_gb_usage += usage.local_gb * hours
        total.server_usages.append(usage)
        servers.append(usage)
    return list(totals.values()), servers


# Instance usage audit log ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AuditLog:
    period_beginning: datetime
    period_ending: datetime
    hosts: list[str]  # compute hosts, none of which has run the audit task


def audit_period(before: datetime | None = None) -> tuple[datetime, datetime]:
    """The last whole month (Nova's default instance_usage_audit_period) ended before
    `before` (default now): from the first of one month to the first of the next."""
    moment = before or now()
    end = datetime(moment.year, moment.month, 1)
    if end >= moment:
        end = datetime(end.year - 1, 12, 1) if end.month == 1 else end.replace(month=end.month - 1)
    begin = datetime(end.year - 1, 12, 1) if end.month == 1 else end.replace(month=end.month - 1)
    return begin, end


def audit_log(ctx: RequestContext, before: datetime | None = None) -> AuditLog:
    """The audit task never runs here, so no host has a log for the period."""
    begin, end = audit_period(before)
    found = hypervisors.list_services(ctx, binary=hosts.COMPUTE_BINARY)
    return AuditLog(begin, end, sorted({s.host for s in found}))


# os-hosts -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class HostService:
    host_name: str
    service: str  # the service's topic: compute, scheduler, conductor
    zone: str


def control_services() -> list[HostService]:
    """The control plane plays Nova's scheduler and conductor, in the internal zone."""
    name = socket.gethostname()
    return [
        HostService(name, "scheduler", aggregates.INTERNAL_AZ),
        HostService(name, "conductor", aggregates.INTERNAL_AZ),
    ]


def list_host_services(ctx: RequestContext, zone: str | None) -> list[HostService]:
    """Enabled services with their hosts and zones, as os-hosts lists them."""
    found = [
        HostService(s.host, s.binary.removeprefix("nova-"), s.zone)
        for s in hypervisors.list_services(ctx)
        if not s.disabled
    ]
    found += control_services()
    return [s for s in found if not zone or s.zone == zone]


def check_host(ctx: RequestContext, host: str) -> None:
    """404 unless `host` is a mapped compute host."""
    with ctx.db.read() as session:
        mapping = session.get(models.HostMapping, host)
    if mapping is None:
        raise errors.NotFound(f"Host '{host}' is not mapped to any cell")
    if not hypervisors.list_services(ctx, host=host, binary=hosts.COMPUTE_BINARY):
        raise errors.NotFound(f"Compute host {host} could not be found.")


@dataclass(frozen=True, slots=True)
class HostResource:
    host: str
    project: str  # a project id, or (total), (used_now), (used_max)
    cpu: int
    memory_mb: int
    disk_gb: int


def host_resources(ctx: RequestContext, host: str) -> list[HostResource]:
    """The host's size, its use now, the sum of its servers' flavors, then that sum per
    project."""
    with ctx.db.read() as session:
        mapping = session.get(models.HostMapping, host)
    if mapping is None:
        raise errors.NotFound(f"Host '{host}' is not mapped to any cell")
    node = next((h for h in hypervisors.list_hypervisors(ctx) if h.host == host), None)
    if node is None:
        raise errors.NotFound(f"Compute host {host} could not be found.")
    cell = cells.get_cell(ctx.runtime, mapping.cell_uuid)
    with cells.database(ctx.runtime, cell).read() as session:
        rows = session.execute(
            select(_I.project_id, _I.flavor)
            .where(_I.host == host, _I.deleted.is_(False))
            .order_by(_I.created_at)
        ).all()
    per_project: dict[str, list[int]] = {}
    for project_id, flavor_json in rows:
        flavor = json.loads(flavor_json)
        sums = per_project.setdefault(project_id, [0, 0, 0])
        sums[0] += flavor["vcpus"]
        sums[1] += flavor["ram"]
        sums[2] += flavor["disk"] + flavor.get("ephemeral", 0)
    used_max = [sum(s[i] for s in per_project.values()) for i in range(3)]
    return [
        HostResource(host, "(total)", node.vcpus, node.memory_mb, node.local_gb),
        HostResource(host, "(used_now)", node.vcpus_used, node.memory_mb_used, node.local_gb_used),
        HostResource(host, "(used_max)", *used_max),
        *(HostResource(host, project, *sums) for project, sums in per_project.items()),
    ]


# Diagnostics ----------------------------------------------------------------------------------

POWER_STATE_NAMES = {
    NOSTATE: "pending",
    RUNNING: "running",
    PAUSED: "paused",
    SHUTDOWN: "shutdown",
    CRASHED: "crashed",
    SUSPENDED: "suspended",
}


@dataclass(frozen=True, slots=True)
class Diagnostics:
    state: str
    hypervisor: str | None
    uptime: int | None
    config_drive: bool
    num_cpus: int
    memory_mb: int


def diagnostics(ctx: RequestContext, server: compute_service.ServerView) -> Diagnostics:
    """What is known of a running server; 409 while it is not on a host or not running."""
    if not server.host:
        raise errors.Conflict(f"Instance {server.uuid} is not ready")
    state = POWER_STATE_NAMES.get(server.power_state, "pending")
    if server.power_state != RUNNING:
        raise errors.Conflict(
            f"Cannot 'get_diagnostics' instance {server.uuid} while it is in power state {state}"
        )
    node = next((h for h in hypervisors.list_hypervisors(ctx) if h.host == server.host), None)
    uptime = None
    if server.launched_at is not None:
        uptime = int((now() - server.launched_at).total_seconds())
    return Diagnostics(
        state=state,
        hypervisor=node.hypervisor_type if node else None,
        uptime=uptime,
        config_drive=server.config_drive.lower() in ("true", "1", "yes"),
        num_cpus=int(server.flavor.get("vcpus", 0)),
        memory_mb=int(server.flavor.get("ram", 0)),
    )
