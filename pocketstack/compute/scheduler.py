"""The scheduler: one allocation-candidates request, weighing, an atomic claim.

A flavor (`resources:<RC>=N`, `trait:<T>=required|forbidden`, granular
`resourcesN:`/`traitN:` groups, `group_policy`) and image properties
(`trait:<T>=required`) become one placement query; hosts that are disabled,
forced down or in a disabled cell are dropped; the rest are weighed (spread:
most free RAM first, as Nova's default RAM weigher; pack: least) and claimed in
that order, so a claim lost to a racing boot moves on to the next alternate.

A requested availability zone is a `member_of` its aggregates in the placement
query plus a check of each host's zone (the default zone has no aggregate). A
server group's hard policy filters hosts and its soft policy weighs first; a
claimed host is then recorded as the member's (server_groups.join), and when a
racing boot broke the policy meanwhile the claim is given back and the next
alternate tried.
"""

from __future__ import annotations

import math
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field

from pocketstack.compute import aggregates, hosts, server_groups
from pocketstack.compute.flavors import FlavorView
from pocketstack.core import errors
from pocketstack.core.context import RequestContext
from pocketstack.placement import candidates
from pocketstack.placement import service as placement_service

_RESOURCES = re.compile(r"^resources(\d*|_[a-zA-Z0-9_-]+)?:([A-Z0-9_]+)$")
_TRAIT = re.compile(r"^trait(\d*|_[a-zA-Z0-9_-]+)?:([A-Z0-9_]+)$")
MAX_ALTERNATES = 10
# How stale the placement snapshot searched for candidates may be: claims are checked in
# the database and counted in the snapshot as they are made, so a burst of boots does not
# re-read every provider's usage after each claim (a full read per boot at 10,000 servers).
SNAPSHOT_MAX_AGE_S = 1.0


class NoValidHost(errors.PocketstackError):
    """Nothing can take the server; the message says why."""

    status = 400  # never shown as an HTTP error: it becomes the server's fault

    def __init__(self, reason: str) -> None:
        super().__init__(f"No valid host was found. {reason}".strip())


@dataclass(frozen=True, slots=True)
class Request:
    instance_uuid: str
    project_id: str
    user_id: str
    flavor: FlavorView
    image_properties: Mapping[str, str] = field(default_factory=dict)
    excluded_hosts: frozenset[str] = frozenset()
    pack: bool = False
    zone: str | None = None  # the availability zone asked for
    group: server_groups.Placement | None = None
    cell_uuid: str | None = None  # a reschedule stays in the server's cell, as in Nova
    volume_backed: bool = False  # its root disk is a volume


@dataclass(frozen=True, slots=True)
class Selection:
    host: str
    cell_uuid: str
    provider_uuid: str
    allocations: dict[str, dict[str, int]]  # provider uuid -> class -> amount
    gpu_provider: str | None  # the child provider a VGPU came from


def _base_resources(flavor: FlavorView, volume_backed: bool) -> dict[str, int]:
    """A volume-backed server's root disk is its volume, on block storage: the host gives
    only its ephemeral and swap disks (Nova claims no root_gb for it)."""
    root = 0 if volume_backed else flavor.root_gb
    disk = root + flavor.ephemeral_gb + math.ceil(flavor.swap / 1024)
    return {"VCPU": flavor.vcpus, "MEMORY_MB": flavor.memory_mb, "DISK_GB": disk}


def placement_query(
    flavor: FlavorView,
    image_properties: Mapping[str, str],
    member_of: tuple[frozenset[str], ...] = (),
    volume_backed: bool = False,
) -> candidates.Query:
    """The request groups a flavor and an image ask for, as Nova builds them; `member_of`
    (a zone's aggregates) applies to the unsuffixed group."""
    unsuffixed = _base_resources(flavor, volume_backed)
    groups: dict[str, dict[str, int]] = {"": {}}
    required: dict[str, set[str]] = {"": set()}
    forbidden: dict[str, set[str]] = {"": set()}
    for key, value in flavor.extra_specs.items():
        if match := _RESOURCES.match(key):
            suffix, class_name = match.group(1) or "", match.group(2)
            try:
                amount = int(value)
            except ValueError:
                raise errors.Invalid(f"Invalid value {value!r} for extra spec {key}.") from None
            if suffix:
                groups.setdefault(suffix, {})[class_name] = amount
            else:
                unsuffixed[class_name] = amount
        elif match := _TRAIT.match(key):
            suffix, trait = match.group(1) or "", match.group(2)
            target = (
                required if value == "required" else forbidden if value == "forbidden" else None
            )
            if target is None:
                raise errors.Invalid(f"Invalid value {value!r} for extra spec {key}.")
            target.setdefault(suffix, set()).add(trait)
    for key, value in image_properties.items():
        if key.startswith("trait:") and value == "required":
            required[""].add(key.removeprefix("trait:"))
    groups[""] = {rc: n for rc, n in unsuffixed.items() if n > 0}
    query_groups = tuple(
        candidates.Group(
            suffix=suffix,
            resources=resources,
            required=tuple(frozenset({t}) for t in sorted(required.get(suffix, ()))),
            forbidden=frozenset(forbidden.get(suffix, ())),
            member_of=member_of if suffix == "" else (),
        )
        for suffix, resources in sorted(groups.items())
        if resources or suffix == ""
    )
    policy = flavor.extra_specs.get("group_policy", "none")
    return candidates.Query(groups=query_groups, group_policy=policy)


def _free_ram(snapshot: candidates.Snapshot, root_id: int) -> int:
    node = snapshot.nodes[root_id]
    capacity = node.inventory.get("MEMORY_MB")
    if capacity is None:
        return 0
    return capacity.capacity - snapshot.used(root_id, "MEMORY_MB")


def select_destination(ctx: RequestContext, request: Request) -> Selection:
    """Claim resources for the server on the best usable host; NoValidHost otherwise.

    The search starts from a recent snapshot; only when that finds nothing is it repeated
    on a fresh one (room freed by a delete a moment ago counts)."""
    try:
        return _select(ctx, request, SNAPSHOT_MAX_AGE_S)
    except NoValidHost:
        return _select(ctx, request, 0.0)


def _select(ctx: RequestContext, request: Request, max_age_s: float) -> Selection:
    member_of: tuple[frozenset[str], ...] = ()
    zones: dict[str, str] = {}
    if request.zone is not None:
        zone_aggregates = aggregates.aggregates_of_zone(ctx, request.zone)
        member_of = (frozenset(zone_aggregates),) if zone_aggregates else ()
        zones = aggregates.zones_of_hosts(ctx)
    query = placement_query(
        request.flavor, request.image_properties, member_of, request.volume_backed
    )
    try:
        snapshot, found = placement_service.allocation_candidates(ctx, query, max_age_s)
    except errors.Invalid as exc:
        raise NoValidHost(exc.message) from None
    states = hosts.host_states(ctx.runtime)
    usable = [
        c
        for c in found
        if (state := states.get(snapshot.nodes[c.root_id].uuid)) is not None
        and state.usable
        and state.host not in request.excluded_hosts
        and (request.cell_uuid is None or state.cell_uuid == request.cell_uuid)
        and (request.zone is None or zones.get(state.host, aggregates.DEFAULT_AZ) == request.zone)
    ]
    if not usable:
        return _no_host(found)
    group = request.group
    if group is not None:
        usable = [c for c in usable if group.allows(_host(snapshot, states, c))]
        if not usable:
            raise NoValidHost(
                f"The hosts with room would break server group {group.uuid}'s "
                f"{group.policy} policy."
            )
    ram_order = -1 if request.pack else 1
    usable.sort(
        key=lambda c: (
            group.weight(_host(snapshot, states, c)) if group else 0,
            ram_order * _free_ram(snapshot, c.root_id),
        ),
        reverse=True,
    )
    for candidate in usable[:MAX_ALTERNATES]:
        root_uuid = snapshot.nodes[candidate.root_id].uuid
        allocations = {
            snapshot.nodes[node_id].uuid: dict(resources)
            for node_id, resources in candidate.totals().items()
        }
        claim = placement_service.ConsumerClaim(
            request.instance_uuid,
            allocations,
            project_id=request.project_id,
            user_id=request.user_id,
            consumer_generation=None,
            consumer_type="INSTANCE",
        )
        try:
            placement_service.set_allocations(ctx, [claim], check_generation=True)
        except errors.Conflict:
            continue
        placement_service.record_claim(ctx, allocations)
        gpu = next(
            (
                snapshot.nodes[n].uuid
                for n, r in candidate.totals().items()
                if "VGPU" in r and n != candidate.root_id
            ),
            None,
        )
        state = states[root_uuid]
        if group is not None and not _joined(ctx, group, request, state.host):
            placement_service.delete_allocations(ctx, request.instance_uuid)
            continue
        return Selection(state.host, state.cell_uuid, root_uuid, allocations, gpu)
    raise NoValidHost("Every candidate host was claimed by other servers; try again.")


def _joined(
    ctx: RequestContext, group: server_groups.Placement, request: Request, host: str
) -> bool:
    """Record the server in its group on `host`; False if the policy no longer allows it.
    A group deleted meanwhile gives the claim back before the 400."""
    try:
        return server_groups.join(ctx, group.uuid, request.instance_uuid, request.user_id, host)
    except errors.NotFound:
        placement_service.delete_allocations(ctx, request.instance_uuid)
        raise errors.Invalid(f"Instance group {group.uuid} could not be found.") from None


def _host(
    snapshot: candidates.Snapshot, states: Mapping[str, hosts.HostState], c: candidates.Candidate
) -> str:
    return states[snapshot.nodes[c.root_id].uuid].host


def _no_host(found: Collection[candidates.Candidate]) -> Selection:
    if found:
        raise NoValidHost("The hosts with room are disabled, down or excluded.")
    raise NoValidHost("There are not enough hosts available.")
