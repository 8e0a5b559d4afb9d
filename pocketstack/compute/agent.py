"""The compute agent: makes each of its hosts run what the cell database says.

Level-based, as DESIGN.md's reconcile loops: for every server whose spec moved
past what its host reported (`generation > observed_generation`), compare the
spec with what the driver has, apply `plan(spec, guest)` with idempotent
driver calls and report the result; every so often look at all servers of the
host, so drift (a guest that vanished, one nobody owns) is repaired. Agents
reach the control plane only through `ControlPlane` (hosts.py implements it
in-process).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

from pocketstack.compute import drivers
from pocketstack.compute.drivers import Driver, DriverError, Guest, GuestSpec

LOG = logging.getLogger(__name__)
RESYNC_EVERY_S = 60.0  # resources to placement, and every server looked at again
ALIVE_EVERY_S = 10.0  # "this host is up" (Nova's report_interval)
POLL_EVERY_S = 1.0
WATCH_EVERY_S = 2.0  # guests that died on their own (Nova's power-state sync)

# The power state each wished-for state runs at.
POWER_OF = {
    "active": drivers.RUNNING,
    "resized": drivers.RUNNING,
    "rescued": drivers.RUNNING,
    "stopped": drivers.SHUTDOWN,
    "paused": drivers.PAUSED,
    "suspended": drivers.SUSPENDED,
}


@dataclass(frozen=True, slots=True)
class ServerSpec:
    """One server as its host should run it."""

    guest: GuestSpec
    host: str
    generation: int
    desired_state: str  # active, stopped, paused, suspended, rescued, resized, deleted
    reboot_hard: bool = False
    rebuild: bool = False  # the new boot is on a new root disk (rebuild), not a reboot
    # What the control plane last recorded: a settled spec whose guest still matches needs
    # no report (a resync of a quiet host writes nothing).
    observed_generation: int = 0
    recorded_power_state: int = drivers.NOSTATE
    # A stopped server waiting in VERIFY_RESIZE stays off, as in Nova.
    resized_while_stopped: bool = False


@dataclass(frozen=True, slots=True)
class ServerReport:
    """What the host did for one spec generation."""

    uuid: str
    host: str
    generation: int
    power_state: int
    vm_state: str
    fault: str | None = None
    # The guest stopped without being asked (its PID 1 or qemu died): the server becomes
    # SHUTOFF, as Nova's power-state sync stops it.
    power_lost: bool = False
    # Volumes whose attach or detach failed, with why.
    disk_faults: tuple[tuple[str, str], ...] = ()


class ControlPlane(Protocol):
    def heartbeat(self, host: str, resources: drivers.HostResources) -> None: ...

    def alive(self, hosts: Sequence[str]) -> None: ...

    def pending(self, hosts: Sequence[str]) -> list[ServerSpec]: ...

    def assigned(self, hosts: Sequence[str]) -> list[ServerSpec]: ...

    def report(self, report: ServerReport) -> None: ...


# A step is a driver call; `plan` returns them in the order to apply.
Step = tuple[str, Callable[[Driver, ServerSpec], None]]
# Steps named so ("disk:attach <volume id>") fail alone: the server goes on, and the
# control plane rolls back that volume's attachment, as Nova does when an attach fails.
DISK_STEP = "disk:"


def _power_steps(current: int, target: int) -> list[Step]:
    if current == target:
        return []
    resume_from = {
        drivers.PAUSED: ("unpause", lambda d, s: d.unpause(s.guest.uuid)),
        drivers.SUSPENDED: ("resume", lambda d, s: d.resume(s.guest.uuid)),
    }
    steps: list[Step] = []
    if current in resume_from and target != drivers.SHUTDOWN:
        steps.append(resume_from[current])
        current = drivers.RUNNING
    if current != drivers.RUNNING and target != drivers.SHUTDOWN:
        steps.append(("power_on", lambda d, s: d.power_on(s.guest.uuid)))
    if target == drivers.SHUTDOWN:
        steps.append(("power_off", lambda d, s: d.power_off(s.guest.uuid)))
    elif target == drivers.PAUSED:
        steps.append(("pause", lambda d, s: d.pause(s.guest.uuid)))
    elif target == drivers.SUSPENDED:
        steps.append(("suspend", lambda d, s: d.suspend(s.guest.uuid)))
    return steps


def _attach(disk: drivers.Disk) -> Callable[[Driver, ServerSpec], None]:
    return lambda d, s: d.attach_disk(s.guest.uuid, disk)


def _detach(volume_id: str) -> Callable[[Driver, ServerSpec], None]:
    return lambda d, s: d.detach_disk(s.guest.uuid, volume_id)


def _disk_steps(wanted: drivers.GuestSpec, connected: frozenset[str]) -> list[Step]:
    """Connect the volumes the spec has and the guest lacks; take away the others. A
    step's name carries its volume, so a failure is that volume's alone (see DISK_STEP)."""
    steps: list[Step] = [
        (f"{DISK_STEP}detach {volume_id}", _detach(volume_id))
        for volume_id in sorted(connected - {disk.volume_id for disk in wanted.disks})
    ]
    steps += [
        (f"{DISK_STEP}attach {disk.volume_id}", _attach(disk))
        for disk in wanted.disks
        if disk.volume_id not in connected
    ]
    return steps


def plan(spec: ServerSpec, guest: Guest | None) -> list[Step]:
    """The driver calls that take `guest` (None: nothing there) to `spec`. Pure. A spawn
    or a rebuild connects the spec's volumes itself."""
    if spec.desired_state == "deleted":
        return [("destroy", lambda d, s: d.destroy(s.guest.uuid))] if guest else []
    wanted = spec.guest
    if guest is None:
        steps: list[Step] = [("spawn", lambda d, s: d.spawn(s.guest))]
        current, rescued = drivers.RUNNING, False
    elif guest.image_ref != wanted.image_ref or (
        spec.rebuild and wanted.boot_serial > guest.boot_serial
    ):
        steps = [("rebuild", lambda d, s: d.rebuild(s.guest))]
        current, rescued = drivers.RUNNING, False
    else:
        steps = _disk_steps(wanted, guest.disks)
        current, rescued = guest.power_state, guest.rescued
        if guest.size != wanted.size:
            steps.append(("resize", lambda d, s: d.resize(s.guest)))
        if wanted.boot_serial > guest.boot_serial:
            steps.append(("reboot", lambda d, s: d.reboot(s.guest, s.reboot_hard)))
            current = drivers.RUNNING
    want_rescue = spec.desired_state == "rescued"
    if want_rescue != rescued:
        if current != drivers.RUNNING:
            steps += _power_steps(current, drivers.RUNNING)
            current = drivers.RUNNING
        steps.append(
            ("rescue", lambda d, s: d.rescue(s.guest.uuid))
            if want_rescue
            else ("unrescue", lambda d, s: d.unrescue(s.guest.uuid))
        )
    target = drivers.SHUTDOWN if spec.resized_while_stopped else POWER_OF[spec.desired_state]
    return steps + _power_steps(current, target)


class HostAgent:
    """One host: its driver, and the reconcile of one server spec at a time."""

    def __init__(self, host: str, driver: Driver, control: ControlPlane) -> None:
        self.host = host
        self.driver = driver
        self.control = control
        # The guests this agent made match their spec, with the power each should have.
        self.expected: dict[str, tuple[ServerSpec, int]] = {}

    def reconcile(self, spec: ServerSpec) -> None:
        guest = self.driver.guests().get(spec.guest.uuid)
        steps = plan(spec, guest)
        fault = None
        disk_faults: list[tuple[str, str]] = []
        try:
            for name, call in steps:
                try:
                    call(self.driver, spec)
                except DriverError as exc:
                    if not name.startswith(DISK_STEP):
                        raise
                    disk_faults.append((name.rsplit(" ", 1)[1], str(exc)))
        except DriverError as exc:
            fault = str(exc)
        guest = self.driver.guests().get(spec.guest.uuid)
        power = guest.power_state if guest else drivers.NOSTATE
        self.expected.pop(spec.guest.uuid, None)
        if fault is None and guest is not None and spec.desired_state != "deleted":
            self.expected[spec.guest.uuid] = (spec, power)
        settled = spec.observed_generation == spec.generation
        if settled and not steps and fault is None and power == spec.recorded_power_state:
            return
        vm_state = spec.desired_state if fault is None else "error"
        self.control.report(ServerReport(
            spec.guest.uuid, self.host, spec.generation, power, vm_state, fault,
            disk_faults=tuple(disk_faults),
        ))  # fmt: skip

    def lost(self) -> list[ServerReport]:
        """Guests that were up and are down now, nobody having asked: each is reported
        once, and the server is then stopped by the control plane."""
        if not self.expected:
            return []
        guests = self.driver.guests()
        reports = []
        for uuid, (spec, power) in list(self.expected.items()):
            guest = guests.get(uuid)
            if guest is None or power == drivers.SHUTDOWN:
                continue
            if guest.power_state == drivers.SHUTDOWN:
                del self.expected[uuid]
                reports.append(ServerReport(
                    uuid, self.host, spec.generation, drivers.SHUTDOWN, "stopped",
                    power_lost=True,
                ))  # fmt: skip
        return reports

    def orphans(self, known: set[str]) -> list[str]:
        """Guests on this host that no server of this host owns."""
        return [uuid for uuid in self.driver.guests() if uuid not in known]


class AgentRunner:
    """Runs the agents of this process on one thread: woken when a spec changes here,
    polling for changes made by other API workers, resyncing everything now and then."""

    def __init__(
        self, agents: Sequence[HostAgent], control: ControlPlane, resume_guests: bool = True
    ) -> None:
        self.agents = {agent.host: agent for agent in agents}
        self.control = control
        self.resume_guests = resume_guests
        self.wake = threading.Event()
        # Requests waiting for their servers' specs to be done (see `wait_done`).
        self._done = threading.Condition()
        self._passes_started = self._passes_done = 0
        self._just_done: set[str] = set()
        self.started_at = datetime.now(UTC).replace(tzinfo=None)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="compute-agent", daemon=True)

    def start(self) -> None:
        """Report the hosts, then bring their guests to their specs: guests that went down
        while this process was away are started again, or with `resume_guests` off,
        their servers are marked SHUTOFF (Nova's resume_guests_state_on_host_boot)."""
        for agent in self.agents.values():
            self.control.heartbeat(agent.host, agent.driver.resources())
        if not self.resume_guests:
            for spec in self.control.assigned(list(self.agents)):
                owner = self.agents.get(spec.host)
                if owner is not None and spec.observed_generation == spec.generation:
                    owner.expected[spec.guest.uuid] = (spec, spec.recorded_power_state)
            self.watch()
        self.resync()
        self._thread.start()

    def watch(self) -> None:
        """Report guests that died on their own."""
        for agent in self.agents.values():
            for report in agent.lost():
                LOG.warning("server %s stopped on %s without being asked", report.uuid, agent.host)
                self.control.report(report)

    def stop(self) -> None:
        self._stop.set()
        self.wake.set()
        self._thread.join(timeout=10)

    def run_pending(self) -> int:
        """Reconcile every spec that moved; the number handled."""
        with self._done:
            self._passes_started += 1
            this_pass = self._passes_started
        specs = self.control.pending(list(self.agents))
        for spec in specs:
            self._reconcile(spec)
            with self._done:
                self._just_done.add(spec.guest.uuid)
                self._done.notify_all()
        with self._done:
            self._passes_done = this_pass
            self._just_done.clear()
            self._done.notify_all()
        return len(specs)

    def wait_done(self, uuids: Sequence[str], timeout_s: float) -> None:
        """Wake the agents and wait (at most `timeout_s`) until a pass that started after
        this call has handled these servers' specs: a request that changed them answers
        once its host has acted, so a client looking right after sees the result (the
        `openstack ... --wait` commands look again only every 5 s). Servers of hosts this
        process does not run end the wait with that pass."""
        waiting = set(uuids)
        deadline = time.monotonic() + timeout_s
        with self._done:
            target = self._passes_started + 1
            self.wake.set()
            while self._passes_done < target:
                # `_just_done` holds what the pass under way handled so far.
                if self._passes_started >= target and waiting <= self._just_done:
                    return
                left = deadline - time.monotonic()
                if left <= 0:
                    return
                self._done.wait(left)

    def resync(self) -> None:
        """Look at every server of every host, not only the ones that changed."""
        specs = self.control.assigned(list(self.agents))
        for spec in specs:
            self._reconcile(spec)
        known = {spec.guest.uuid for spec in specs}
        for agent in self.agents.values():
            for uuid in agent.orphans(known):
                LOG.warning("removing guest %s on %s: no server owns it", uuid, agent.host)
                agent.driver.destroy(uuid)

    def _reconcile(self, spec: ServerSpec) -> None:
        agent = self.agents.get(spec.host)
        if agent is None:
            return
        try:
            agent.reconcile(spec)
        except Exception:
            LOG.exception("reconciling server %s on %s failed", spec.guest.uuid, spec.host)

    def _run(self) -> None:
        last_resync = last_alive = last_watch = time.monotonic()
        while not self._stop.is_set():
            self.wake.wait(POLL_EVERY_S)
            self.wake.clear()
            if self._stop.is_set():
                return
            try:
                self.run_pending()
                moment = time.monotonic()
                if moment - last_watch >= WATCH_EVERY_S:
                    last_watch = moment
                    self.watch()
                if moment - last_alive >= ALIVE_EVERY_S:
                    last_alive = moment
                    self.control.alive(list(self.agents))
                if moment - last_resync >= RESYNC_EVERY_S:
                    last_resync = moment
                    for agent in self.agents.values():
                        self.control.heartbeat(agent.host, agent.driver.resources())
                    self.resync()
            except Exception:
                LOG.exception("compute agent pass failed; retrying")
