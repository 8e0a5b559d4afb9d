"""The control plane's side of compute hosts: registration, heartbeats and the agent
interface (agent.ControlPlane) served in-process.

A host is mapped to a cell once (host mapping) and is a resource provider in
placement named after the host, with VCPU, MEMORY_MB and DISK_GB inventory
and its traits; each physical GPU is a child provider `<host>_pci_<address>`
holding VGPU inventory with the GPU model as a trait, as Nova's libvirt
driver reports them. `start` runs the agents of this process.
"""

from __future__ import annotations

import json
import socket
import threading
import time
import uuid as uuidlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select, update

from pocketstack.compute import agent as agent_mod
from pocketstack.compute import cell_models, cells, drivers, images, models
from pocketstack.compute import volumes as compute_volumes
from pocketstack.compute.drivers import fake, local, namespace, qemu
from pocketstack.config import Settings
from pocketstack.core import errors
from pocketstack.core.runtime import Runtime
from pocketstack.host import gpus as host_gpus
from pocketstack.host import machine
from pocketstack.host import namespaces as host_namespaces
from pocketstack.placement import service as placement_service

COMPUTE_BINARY = "nova-compute"
_PROVIDER_NAMESPACE = uuidlib.UUID("6f1c2b8e-7d1a-4f0e-9a51-0c2d3e4f5a6b")
_RUNNER_KEY = "compute.runner"
_HOST_CELLS_KEY = "compute.host_cells"


def now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def provider_uuid(name: str) -> str:
    """Deterministic, so a host that comes back finds its provider."""
    return str(uuidlib.uuid5(_PROVIDER_NAMESPACE, name))


def gpu_provider_name(host: str, pci_address: str) -> str:
    return f"{host}_pci_{pci_address.replace(':', '_').replace('.', '_')}"


@dataclass(frozen=True, slots=True)
class HostState:
    """What the scheduler needs to know of a host besides placement."""

    host: str
    cell_uuid: str
    provider_uuid: str
    usable: bool  # enabled, not forced down, in an enabled cell


# How long this process trusts what it read of the hosts' services and mappings; changes
# made in this process (a service disabled, a host added) are seen at once (forget_hosts).
HOST_STATES_MAX_AGE_S = 1.0
# A host not heard from for this long is down and gets no new server (Nova's
# service_down_time); agents say they are alive every agent.ALIVE_EVERY_S.
SERVICE_DOWN_AFTER = timedelta(seconds=60)
_HOST_STATES_KEY = "compute.host_states"


@dataclass(frozen=True, slots=True)
class _HostsRead:
    at: float
    mappings: tuple[tuple[str, str, str], ...]  # host, cell uuid, provider uuid
    unusable: frozenset[str]


def forget_hosts(runtime: Runtime) -> None:
    """Make the next host_states() read the databases again."""
    runtime.state.pop(_HOST_STATES_KEY, None)


def _read_hosts(runtime: Runtime, cell_list: Mapping[str, cells.Cell]) -> _HostsRead:
    cached: _HostsRead | None = runtime.state.get(_HOST_STATES_KEY)
    if cached is not None and time.monotonic() - cached.at < HOST_STATES_MAX_AGE_S:
        return cached
    moment = time.monotonic()
    with runtime.db.read() as session:
        mappings = tuple(
            (m.host, m.cell_uuid, m.provider_uuid)
            for m in session.scalars(select(models.HostMapping))
        )
    unusable: set[str] = set()
    for cell in cell_list.values():
        if cell.is_cell0:
            continue
        service = cell_models.ComputeService
        with cells.database(runtime, cell).read() as session:
            unusable.update(
                session.scalars(
                    select(service.host).where(
                        service.disabled.is_(True)
                        | service.forced_down.is_(True)
                        | (service.last_seen_up < now() - SERVICE_DOWN_AFTER)
                    )
                )
            )
    read = _HostsRead(moment, mappings, frozenset(unusable))
    runtime.state[_HOST_STATES_KEY] = read
    return read


def host_states(runtime: Runtime) -> dict[str, HostState]:
    """Every mapped host by its root provider uuid. Cells are read every time (a disabled
    cell takes no new server from the next request on); services and mappings are reused
    for HOST_STATES_MAX_AGE_S."""
    cell_list = {cell.uuid: cell for cell in cells.list_cells(runtime)}
    read = _read_hosts(runtime, cell_list)
    return {
        provider: HostState(
            host,
            cell_uuid,
            provider,
            usable=host not in read.unusable and not cell_list[cell_uuid].disabled,
        )
        for host, cell_uuid, provider in read.mappings
    }


def cell_of_host(runtime: Runtime, host: str) -> cells.Cell:
    cached: dict[str, cells.Cell] = runtime.state.setdefault(_HOST_CELLS_KEY, {})
    found = cached.get(host)
    if found is not None:
        return found
    with runtime.db.read() as session:
        mapping = session.get(models.HostMapping, host)
    if mapping is None:
        raise errors.NotFound(f"Compute host {host} could not be found.")
    cell = cells.get_cell(runtime, mapping.cell_uuid)
    cached[host] = cell
    return cell


def map_host(runtime: Runtime, host: str, cell_name: str | None) -> cells.Cell:
    """The host's cell: as mapped before, else `cell_name`, else the first enabled cell."""
    with runtime.db.write() as session:
        mapping = session.get(models.HostMapping, host)
        if mapping is None:
            candidates = [c for c in cells.list_cells(runtime) if not c.is_cell0]
            chosen = next(
                (c for c in candidates if c.name == cell_name)
                if cell_name
                else (c for c in candidates if not c.disabled),
                None,
            )
            if chosen is None:
                raise errors.NotFound(f"No cell {cell_name or '(enabled)'} to put {host} in.")
            session.add(
                models.HostMapping(
                    host=host,
                    cell_uuid=chosen.uuid,
                    provider_uuid=provider_uuid(host),
                    created_at=now(),
                )
            )
            forget_hosts(runtime)
            return chosen
    return cells.get_cell(runtime, mapping.cell_uuid)


def _sync_provider(
    runtime: Runtime,
    name: str,
    parent: str | None,
    inventory: dict[str, placement_service.InventorySpec],
    traits: frozenset[str],
) -> str:
    """Make placement hold provider `name` with exactly this inventory and at least these
    traits; write only what differs, so a steady heartbeat moves no generation."""
    ctx = runtime.context()
    key = provider_uuid(name)
    try:
        provider = placement_service.get_provider(ctx, key)
    except errors.NotFound:
        provider = placement_service.create_provider(ctx, name, key, parent)
    _, current = placement_service.provider_inventories(ctx, key)
    as_specs = {
        rc: placement_service.InventorySpec(
            inv.total, inv.reserved, inv.min_unit, inv.max_unit, inv.step_size,
            inv.allocation_ratio,
        )
        for rc, inv in current.items()
    }  # fmt: skip
    if as_specs != inventory:
        provider, _ = placement_service.replace_inventories(
            ctx, key, provider.generation, inventory, allow_reserved_total=False
        )
    provider, current_traits = placement_service.provider_traits(ctx, key)
    missing = traits - set(current_traits)
    if missing:
        for trait in missing:
            if trait.startswith("CUSTOM_"):
                placement_service.create_trait(ctx, trait)
        # Traits an operator put on the provider (CUSTOM_SSD, ...) stay, as Nova keeps them.
        placement_service.set_provider_traits(
            ctx, key, provider.generation, sorted(traits | set(current_traits))
        )
    return key


def _inventory(total: int, ratio: float) -> placement_service.InventorySpec:
    return placement_service.InventorySpec(total=total, max_unit=total, allocation_ratio=ratio)


def heartbeat(runtime: Runtime, host: str, resources: drivers.HostResources) -> None:
    """Record that `host` is up and what it has, in its cell and in placement."""
    cell = cell_of_host(runtime, host)
    moment = now()
    settings = runtime.settings
    root = _sync_provider(
        runtime,
        host,
        None,
        {
            "VCPU": _inventory(resources.vcpus, settings.cpu_allocation_ratio),
            "MEMORY_MB": _inventory(resources.memory_mb, settings.ram_allocation_ratio),
            "DISK_GB": _inventory(resources.disk_gb, settings.disk_allocation_ratio),
        },
        resources.traits,
    )
    for gpu in resources.gpus:
        _sync_provider(
            runtime,
            gpu_provider_name(host, gpu.pci_address),
            root,
            {"VGPU": _inventory(gpu.vgpus, 1.0)},
            frozenset({gpu.model}),
        )
    with cells.database(runtime, cell).write() as session:
        service = session.scalar(
            select(cell_models.ComputeService).where(
                cell_models.ComputeService.host == host,
                cell_models.ComputeService.binary == COMPUTE_BINARY,
            )
        )
        if service is None:
            session.add(
                cell_models.ComputeService(
                    uuid=str(uuidlib.uuid4()), host=host, binary=COMPUTE_BINARY,
                    disabled=False, forced_down=False, last_seen_up=moment, created_at=moment,
                )
            )  # fmt: skip
        else:
            service.last_seen_up = moment
        node = session.scalar(
            select(cell_models.ComputeNode).where(cell_models.ComputeNode.host == host)
        )
        if node is None:
            node = cell_models.ComputeNode(
                uuid=root, host=host, hypervisor_hostname=host, created_at=moment,
                host_ip="127.0.0.1",
            )  # fmt: skip
            session.add(node)
        node.hypervisor_type = resources.hypervisor_type
        node.vcpus, node.memory_mb = resources.vcpus, resources.memory_mb
        node.local_gb, node.updated_at = resources.disk_gb, moment


# The agent interface, in-process -------------------------------------------------------


def _size(flavor_json: str) -> drivers.Size:
    flavor = json.loads(flavor_json)
    return drivers.Size(flavor["vcpus"], flavor["ram"], flavor["disk"])


def _nics(devices: dict[str, Any]) -> tuple[drivers.Nic, ...]:
    """The server's ports as its host plugs them (entries from before MACs were kept in
    the devices have none to plug)."""
    return tuple(
        drivers.Nic(p["port_id"], p["mac"], p.get("mtu"), p.get("vif_details") or {})
        for p in devices.get("ports", [])
        if p.get("mac")
    )


def _spec(row: cell_models.Instance) -> agent_mod.ServerSpec:
    devices = json.loads(row.devices or "{}")
    return agent_mod.ServerSpec(
        guest=drivers.GuestSpec(
            uuid=row.uuid,
            name=row.hostname,
            image_ref=row.image_ref or compute_volumes.root_image(devices),
            size=_size(row.flavor),
            user_data=row.user_data,
            boot_serial=row.boot_serial,
            nics=_nics(devices),
            disks=compute_volumes.disks(devices),
        ),
        host=row.host or "",
        generation=row.generation,
        desired_state=row.desired_state,
        resized_while_stopped=row.desired_state == "resized"
        and devices.get("resized_from_state") == "stopped",
        reboot_hard=row.reboot_type == "HARD",
        rebuild=row.reboot_type == "REBUILD",
        observed_generation=row.observed_generation,
        recorded_power_state=row.power_state,
    )


class InProcessControlPlane:
    """agent.ControlPlane over this process's databases; `on_report` is the compute
    service's handler of what hosts report (it owns server state transitions)."""

    def __init__(
        self, runtime: Runtime, on_report: Callable[[Runtime, agent_mod.ServerReport], None]
    ) -> None:
        self.runtime = runtime
        self.on_report = on_report

    def heartbeat(self, host: str, resources: drivers.HostResources) -> None:
        heartbeat(self.runtime, host, resources)

    def _by_cell(self, hosts: Sequence[str]) -> dict[cells.Cell, list[str]]:
        grouped: dict[cells.Cell, list[str]] = {}
        for host in hosts:
            grouped.setdefault(cell_of_host(self.runtime, host), []).append(host)
        return grouped

    def _specs(self, hosts: Sequence[str], pending_only: bool) -> list[agent_mod.ServerSpec]:
        specs: list[agent_mod.ServerSpec] = []
        table = cell_models.Instance
        for cell, cell_hosts in self._by_cell(hosts).items():
            stmt = select(table).where(table.host.in_(cell_hosts), table.deleted.is_(False))
            if pending_only:
                stmt = stmt.where(table.generation > table.observed_generation)
            with cells.database(self.runtime, cell).read() as session:
                specs += [_spec(row) for row in session.scalars(stmt.order_by(table.updated_at))]
        return specs

    def alive(self, hosts: Sequence[str]) -> None:
        """Mark the hosts' compute services as seen now: one statement per cell."""
        moment = now()
        table = cell_models.ComputeService
        for cell, cell_hosts in self._by_cell(hosts).items():
            with cells.database(self.runtime, cell).write() as session:
                session.execute(
                    update(table)
                    .where(table.host.in_(cell_hosts), table.binary == COMPUTE_BINARY)
                    .values(last_seen_up=moment)
                )

    def pending(self, hosts: Sequence[str]) -> list[agent_mod.ServerSpec]:
        return self._specs(hosts, pending_only=True)

    def assigned(self, hosts: Sequence[str]) -> list[agent_mod.ServerSpec]:
        return self._specs(hosts, pending_only=False)

    def report(self, report: agent_mod.ServerReport) -> None:
        self.on_report(self.runtime, report)


def agents_started_at(runtime: Runtime, host: str) -> datetime | None:
    """When this process started running `host`'s agent (None: not one of ours)."""
    runner: agent_mod.AgentRunner | None = runtime.state.get(_RUNNER_KEY)
    if runner is None or host not in runner.agents:
        return None
    return runner.started_at


# How long a request that changed servers waits for this process's hosts to act on them.
SETTLE_WAIT_S = 2.0


def wake_agents(runtime: Runtime, settle: Sequence[str] = ()) -> None:
    """Tell this process's agents that a spec changed (other processes poll); with `settle`,
    return once they have acted on those servers, or after SETTLE_WAIT_S."""
    runner: agent_mod.AgentRunner | None = runtime.state.get(_RUNNER_KEY)
    if runner is None:
        return
    if settle:
        runner.wait_done(settle, SETTLE_WAIT_S)
    else:
        runner.wake.set()


def driver_of(runtime: Runtime, host: str) -> drivers.Driver:
    """The driver of a host this process runs (console output, diagnostics)."""
    runner: agent_mod.AgentRunner | None = runtime.state.get(_RUNNER_KEY)
    agent = runner.agents.get(host) if runner is not None else None
    if agent is None:
        raise errors.Conflict(f"Compute host {host} is not reachable from this API worker.")
    return agent.driver


def _machine_gpus() -> tuple[drivers.Gpu, ...]:
    """This machine's NVIDIA GPUs, each reported with its model as a trait."""
    return tuple(drivers.Gpu(g.pci_address, g.trait, g.vgpus) for g in host_gpus.discover())


def fake_host_names(count: int) -> list[str]:
    return [f"fake-host-{i}" for i in range(1, count + 1)]


@dataclass(frozen=True, slots=True)
class DriverChoice:
    """Which driver this process's hosts run, and why (`pocketstack up` shows it)."""

    real: bool
    description: str


class DriverUnavailable(Exception):
    """`--compute-driver real` on a machine that cannot run it; says what is missing."""


def choose_driver(settings: Settings) -> DriverChoice:
    if settings.fake_hosts:
        gpus = f", {settings.fake_vgpus} VGPUs each" if settings.fake_vgpus else ""
        return DriverChoice(False, f"{settings.fake_hosts} fake hosts{gpus} (driver: fake)")
    if settings.compute_driver == "fake":
        return DriverChoice(False, "this machine as one fake host (--compute-driver fake)")
    missing = host_namespaces.missing()
    if missing:
        if settings.compute_driver == "real":
            raise DriverUnavailable(f"the namespace driver cannot run here: {missing}")
        return DriverChoice(False, f"this machine as one fake host ({missing})")
    vms = qemu_state()
    return DriverChoice(
        True, f"this machine as host {socket.gethostname()} (namespace guests; {vms})"
    )


def qemu_state() -> str:
    """What the qemu driver will do here, in words: TCG, KVM, or why it is off."""
    missing = machine.qemu_missing()
    if missing:
        return f"no qemu VMs: {missing}"
    usable, reason = machine.kvm_usable()
    return "qemu VMs with KVM" if usable else f"qemu VMs: {reason}"


def _machine_resources(runtime: Runtime) -> drivers.HostResources:
    return drivers.HostResources(
        vcpus=machine.vcpus(),
        memory_mb=machine.memory_mb(),
        disk_gb=machine.disk_gb(runtime.settings.state_dir),
        hypervisor_type="QEMU",
        traits=frozenset({"COMPUTE_NODE", *machine.cpu_traits()}),
        gpus=_machine_gpus(),
    )


def _local_driver(runtime: Runtime, host: str) -> local.LocalDriver:
    """The namespace driver, and qemu beside it when this machine has it."""
    workdir = runtime.settings.state_dir / "compute" / host
    source = images.LocalImages(runtime)

    def resources() -> drivers.HostResources:
        return _machine_resources(runtime)

    guests = namespace.NamespaceDriver(host, workdir / "namespace", source, resources)
    no_vms = machine.qemu_missing()
    vms = None
    if not no_vms:
        accel = "kvm" if machine.kvm_usable()[0] else "tcg"
        vms = qemu.QemuDriver(host, workdir / "qemu", source, accel, resources)
    return local.LocalDriver(source, guests, vms, resources, no_vms or "")


def start(
    runtime: Runtime, on_report: Callable[[Runtime, agent_mod.ServerReport], None]
) -> Callable[[], None]:
    """Run this process's hosts: N fake ones, or this machine on its real drivers (or as
    one fake host when it cannot run them). Returns the function that stops them."""
    settings = runtime.settings
    choice = choose_driver(settings)
    names = fake_host_names(settings.fake_hosts) if settings.fake_hosts else [socket.gethostname()]
    machine_gpus = () if settings.fake_hosts else _machine_gpus()
    enabled = [c for c in cells.list_cells(runtime) if not c.is_cell0]
    control = InProcessControlPlane(runtime, on_report)
    agents = []
    for index, name in enumerate(names):
        spread_over = [c for c in enabled if not c.disabled] or enabled
        map_host(runtime, name, spread_over[index % len(spread_over)].name)
        driver: drivers.Driver = (
            _local_driver(runtime, name) if choice.real
            else fake.FakeDriver(name, vgpus=settings.fake_vgpus, gpus=machine_gpus)
        )  # fmt: skip
        agents.append(agent_mod.HostAgent(name, driver, control))
    runner = agent_mod.AgentRunner(agents, control, settings.resume_guests_on_start)
    runtime.state[_RUNNER_KEY] = runner
    runner.start()
    stop_lock = threading.Lock()

    def stop() -> None:
        with stop_lock:
            runner.stop()
            runtime.state.pop(_RUNNER_KEY, None)

    return stop
