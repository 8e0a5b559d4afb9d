"""Compute services and hypervisors as admins see them (os-services, os-hypervisors).

Both come from the cells' tables that hosts' heartbeats keep (ComputeService,
ComputeNode), read across every cell; usage comes from placement. Disabling
a service keeps the scheduler off its host (hosts.host_states) and, as
Nova's compute does, puts COMPUTE_STATUS_DISABLED on the host's provider.
Integer ids are per cell, as in Nova, so one may name services in two
cells (400); uuids (2.53+) are unique.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import delete, select

from pocketstack.compute import aggregates, cell_models, cells, hosts, models
from pocketstack.core import errors
from pocketstack.core.context import RequestContext
from pocketstack.placement import service as placement_service

DISABLED_TRAIT = "COMPUTE_STATUS_DISABLED"


def now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


@dataclass(frozen=True, slots=True)
class ServiceView:
    id: int
    uuid: str
    host: str
    binary: str
    zone: str
    disabled: bool
    disabled_reason: str | None
    forced_down: bool
    up: bool
    updated_at: datetime | None
    cell_uuid: str


def _live_cells(ctx: RequestContext) -> Iterator[cells.Cell]:
    yield from (c for c in cells.list_cells(ctx.runtime) if not c.is_cell0)


def _service_view(row: cell_models.ComputeService, zone: str, cell_uuid: str) -> ServiceView:
    seen = row.last_seen_up
    up = not row.forced_down and seen is not None and now() - seen <= hosts.SERVICE_DOWN_AFTER
    return ServiceView(
        row.id, row.uuid, row.host, row.binary, zone, row.disabled, row.disabled_reason,
        row.forced_down, up, seen or row.updated_at, cell_uuid,
    )  # fmt: skip


def list_services(
    ctx: RequestContext, host: str | None = None, binary: str | None = None
) -> list[ServiceView]:
    zones = aggregates.zones_of_hosts(ctx)
    table = cell_models.ComputeService
    found = []
    for cell in _live_cells(ctx):
        stmt = select(table).order_by(table.id)
        if host:
            stmt = stmt.where(table.host == host)
        if binary:
            stmt = stmt.where(table.binary == binary)
        with cells.database(ctx.runtime, cell).read() as session:
            found += [
                _service_view(r, zones.get(r.host, aggregates.DEFAULT_AZ), cell.uuid)
                for r in session.scalars(stmt)
            ]
    return found


def get_service(ctx: RequestContext, service_id: str, by_uuid: bool) -> ServiceView:
    if by_uuid:
        matches = [s for s in list_services(ctx) if s.uuid == service_id]
    else:
        matches = [s for s in list_services(ctx) if str(s.id) == service_id]
    if not matches:
        raise errors.NotFound(f"Service {service_id} could not be found.")
    if len(matches) > 1:
        raise errors.Invalid(f"Service id {service_id} refers to multiple services.")
    return matches[0]


def find_service(ctx: RequestContext, host: str, binary: str) -> ServiceView:
    for service in list_services(ctx, host, binary):
        return service
    raise errors.NotFound(f"Compute host {host} could not be found.")


@dataclass(frozen=True, slots=True)
class ServiceChange:
    disabled: bool | None = None
    disabled_reason: str | None = None
    forced_down: bool | None = None


def update_service(ctx: RequestContext, service: ServiceView, change: ServiceChange) -> ServiceView:
    """Enable/disable (with a reason) or force down a compute service."""
    if service.binary != hosts.COMPUTE_BINARY:
        raise errors.Invalid(
            f"Updating a {service.binary} service is not supported. Only nova-compute services "
            "can be updated."
        )
    cell = cells.get_cell(ctx.runtime, service.cell_uuid)
    with cells.database(ctx.runtime, cell).write() as session:
        row = session.get(cell_models.ComputeService, service.id)
        if row is None:
            raise errors.NotFound(f"Service {service.uuid} could not be found.")
        if change.disabled is not None:
            row.disabled = change.disabled
            row.disabled_reason = change.disabled_reason if change.disabled else None
        if change.forced_down is not None:
            row.forced_down = change.forced_down
        row.updated_at = now()
        updated = _service_view(row, service.zone, service.cell_uuid)
    hosts.forget_hosts(ctx.runtime)
    if change.disabled is not None:
        _sync_disabled_trait(ctx, service.host, change.disabled)
    return updated


def _sync_disabled_trait(ctx: RequestContext, host: str, disabled: bool) -> None:
    """COMPUTE_STATUS_DISABLED on the host's provider exactly while it is disabled."""
    provider = hosts.provider_uuid(host)
    for _attempt in range(5):
        try:
            current, traits = placement_service.provider_traits(ctx, provider)
            wanted = (
                (set(traits) | {DISABLED_TRAIT}) if disabled else set(traits) - {DISABLED_TRAIT}
            )
            if wanted == set(traits):
                return
            placement_service.set_provider_traits(ctx, provider, current.generation, sorted(wanted))
            return
        except errors.NotFound:
            return
        except errors.GenerationConflict:
            continue  # a heartbeat moved the provider meanwhile


def delete_service(ctx: RequestContext, service: ServiceView) -> None:
    """Forget a compute service, its node, provider, aggregate memberships and host
    mapping; refused (409) while the host runs servers."""
    if service.binary == hosts.COMPUTE_BINARY:
        if aggregates.servers_on(ctx, [service.host]):
            raise errors.Conflict(
                "Unable to delete compute service that is hosting instances. Migrate or delete "
                "the instances first."
            )
        with ctx.db.write() as session:
            session.execute(
                delete(models.AggregateHost).where(models.AggregateHost.host == service.host)
            )
            session.execute(
                delete(models.HostMapping).where(models.HostMapping.host == service.host)
            )
        hosts.forget_hosts(ctx.runtime)
        root = hosts.provider_uuid(service.host)
        children = placement_service.list_providers(
            ctx, placement_service.ProviderFilter(in_tree=root)
        )
        for provider in sorted(children, key=lambda p: p.uuid == root):
            with contextlib.suppress(errors.NotFound):
                placement_service.delete_provider(ctx, provider.uuid)
    cell = cells.get_cell(ctx.runtime, service.cell_uuid)
    with cells.database(ctx.runtime, cell).write() as session:
        session.execute(
            delete(cell_models.ComputeNode).where(cell_models.ComputeNode.host == service.host)
        )
        session.execute(
            delete(cell_models.ComputeService).where(cell_models.ComputeService.id == service.id)
        )


# Hypervisors ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class HypervisorView:
    id: int
    uuid: str
    hostname: str
    host: str
    hypervisor_type: str
    hypervisor_version: int
    host_ip: str
    vcpus: int
    memory_mb: int
    local_gb: int
    vcpus_used: int
    memory_mb_used: int
    local_gb_used: int
    running_vms: int
    service: ServiceView
    servers: list[tuple[str, str]]  # (name, uuid) of the servers it runs

    @property
    def free_ram_mb(self) -> int:
        return self.memory_mb - self.memory_mb_used

    @property
    def free_disk_gb(self) -> int:
        return self.local_gb - self.local_gb_used


def list_hypervisors(ctx: RequestContext) -> list[HypervisorView]:
    """Every compute node with its service, placement usage and servers, by cell then id."""
    services = {(s.cell_uuid, s.host): s for s in list_services(ctx, binary=hosts.COMPUTE_BINARY)}
    found = []
    for cell in _live_cells(ctx):
        instance = cell_models.Instance
        with cells.database(ctx.runtime, cell).read() as session:
            nodes = session.scalars(
                select(cell_models.ComputeNode).order_by(cell_models.ComputeNode.id)
            ).all()
            servers: dict[str, list[tuple[str, str]]] = {}
            for host, name, uuid in session.execute(
                select(instance.host, instance.name, instance.uuid)
                .where(instance.host.is_not(None), instance.deleted.is_(False))
                .order_by(instance.created_at)
            ):
                servers.setdefault(host or "", []).append((name, uuid))
            for node in nodes:
                service = services.get((cell.uuid, node.host))
                if service is None:
                    continue
                usage = _usage(ctx, node.uuid)
                found.append(
                    HypervisorView(
                        node.id, node.uuid, node.hypervisor_hostname, node.host,
                        node.hypervisor_type, node.hypervisor_version, node.host_ip,
                        node.vcpus, node.memory_mb, node.local_gb, usage.get("VCPU", 0),
                        usage.get("MEMORY_MB", 0), usage.get("DISK_GB", 0),
                        len(servers.get(node.host, [])), service, servers.get(node.host, []),
                    )
                )  # fmt: skip
    return found


def _usage(ctx: RequestContext, provider_uuid: str) -> dict[str, int]:
    try:
        return placement_service.provider_usages(ctx, provider_uuid)[1]
    except errors.NotFound:
        return {}


def get_hypervisor(ctx: RequestContext, hypervisor_id: str, by_uuid: bool) -> HypervisorView:
    if by_uuid:
        matches = [h for h in list_hypervisors(ctx) if h.uuid == hypervisor_id]
    else:
        matches = [h for h in list_hypervisors(ctx) if str(h.id) == hypervisor_id]
    if len(matches) != 1:
        raise errors.NotFound(f"Hypervisor with ID '{hypervisor_id}' could not be found.")
    return matches[0]


def host_statuses(ctx: RequestContext) -> dict[str, str]:
    """Nova's host_status of each compute host: DOWN when its service is down or forced
    down, MAINTENANCE when disabled, else UP."""
    return {
        service.host: "DOWN" if not service.up else "MAINTENANCE" if service.disabled else "UP"
        for service in list_services(ctx, binary=hosts.COMPUTE_BINARY)
    }


def uptime(ctx: RequestContext, view: HypervisorView) -> str | None:
    """What `uptime` prints on the host, as Nova's libvirt driver reports it; None for a host
    that is down. The hosts this process runs have been up since its agents started."""
    if not view.service.up:
        return None
    started = hosts.agents_started_at(ctx.runtime, view.host)
    if started is None:
        return None
    minutes = int((now() - started).total_seconds() // 60)
    days, rest = divmod(minutes, 24 * 60)
    hours, mins = divmod(rest, 60)
    span = f"{days} days, {hours:2d}:{mins:02d}" if days else f"{hours:2d}:{mins:02d}"
    load = ", ".join(f"{value:.2f}" for value in os.getloadavg())
    return f" {now():%H:%M:%S} up {span},  1 user,  load average: {load}"
