"""Allocation candidates: which providers could satisfy a request, and how.

The search runs over a snapshot of every provider (tree links, traits,
aggregates, inventory and usage) read in one transaction, so the answer is
consistent; it works per anchor tree: a provider tree plus the sharing
providers (trait MISC_SHARES_VIA_AGGREGATE) that share an aggregate with
some member of it. Each request group yields its options within the tree;
candidates are their combinations that pass group_policy, capacity summed
across groups, same_subtree and root_required.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from pocketstack.placement import models

SHARING_TRAIT = "MISC_SHARES_VIA_AGGREGATE"

# One group's share of a candidate: provider id -> class -> amount.
Assignment = dict[int, dict[str, int]]


@dataclass(frozen=True, slots=True)
class Capacity:
    total: int
    reserved: int
    min_unit: int
    max_unit: int
    step_size: int
    allocation_ratio: float

    @property
    def capacity(self) -> int:
        return int((self.total - self.reserved) * self.allocation_ratio)

    def fits(self, amount: int, used: int) -> bool:
        return (
            self.min_unit <= amount <= self.max_unit
            and amount % self.step_size == 0
            and used + amount <= self.capacity
        )


@dataclass(slots=True)
class Node:
    id: int
    uuid: str
    parent_id: int | None
    root_id: int
    traits: frozenset[str]
    aggregates: frozenset[str]
    inventory: dict[str, Capacity]
    generation: int = 0


@dataclass(frozen=True, slots=True)
class Group:
    """One request group: `resources`, `required`, ... with the same suffix."""

    suffix: str
    resources: Mapping[str, int]
    required: tuple[frozenset[str], ...] = ()
    forbidden: frozenset[str] = frozenset()
    member_of: tuple[frozenset[str], ...] = ()
    forbidden_aggregates: frozenset[str] = frozenset()
    in_tree: str | None = None


@dataclass(frozen=True, slots=True)
class Query:
    groups: tuple[Group, ...]
    group_policy: str = "none"
    limit: int | None = None
    root_required: frozenset[str] = frozenset()
    root_forbidden: frozenset[str] = frozenset()
    same_subtree: tuple[frozenset[str], ...] = ()
    nested_aware: bool = True


@dataclass(frozen=True, slots=True)
class Candidate:
    root_id: int
    by_group: tuple[tuple[str, Assignment], ...]

    def key(self) -> tuple[Any, ...]:
        """Identical requests reached through different anchor trees (a sharing provider
        serving several trees) are one candidate."""
        return tuple(
            (suffix, tuple(sorted((n, tuple(sorted(r.items()))) for n, r in a.items())))
            for suffix, a in self.by_group
        )

    def totals(self) -> dict[int, dict[str, int]]:
        summed: dict[int, dict[str, int]] = {}
        for _suffix, assignment in self.by_group:
            for node_id, resources in assignment.items():
                if not resources:
                    continue
                target = summed.setdefault(node_id, {})
                for class_name, amount in resources.items():
                    target[class_name] = target.get(class_name, 0) + amount
        return summed


@dataclass(slots=True)
class Snapshot:
    """Providers (rebuilt when their generation moves) and usage (re-read whenever the
    revision moved: a consumer moving off a provider does not move its generation), as of
    placement revision `revision`."""

    nodes: dict[int, Node]
    usage: dict[tuple[int, str], int] = field(default_factory=dict)
    trait_ids: dict[str, int] = field(default_factory=dict)
    revision: int = -1
    by_uuid: dict[str, Node] = field(default_factory=dict)
    trees: dict[int, list[int]] = field(default_factory=dict)
    roots: list[int] = field(default_factory=list)
    # Per anchor tree: the sharing providers of other trees it can use, and the union of
    # the traits and aggregates of everything it can use (a tree lacking what a request
    # group needs is skipped without looking at its providers).
    shared: dict[int, list[int]] = field(default_factory=dict)
    reach_traits: dict[int, frozenset[str]] = field(default_factory=dict)
    reach_aggregates: dict[int, frozenset[str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.by_uuid = {n.uuid: n for n in self.nodes.values()}
        for node in sorted(self.nodes.values(), key=lambda n: n.id):
            self.trees.setdefault(node.root_id, []).append(node.id)
        self.roots = sorted(self.trees)
        members_by_aggregate: dict[str, set[int]] = {}
        for node in self.nodes.values():
            for aggregate in node.aggregates:
                members_by_aggregate.setdefault(aggregate, set()).add(node.id)
        for node in sorted(self.nodes.values(), key=lambda n: n.id):
            if SHARING_TRAIT in node.traits:
                roots = {
                    self.nodes[m].root_id for a in node.aggregates for m in members_by_aggregate[a]
                }
                for root_id in sorted(roots - {node.root_id}):
                    self.shared.setdefault(root_id, []).append(node.id)
        for root_id, members in self.trees.items():
            reachable = [self.nodes[n] for n in (*members, *self.shared.get(root_id, ()))]
            self.reach_traits[root_id] = frozenset().union(*(n.traits for n in reachable))
            self.reach_aggregates[root_id] = frozenset().union(*(n.aggregates for n in reachable))

    def used(self, node_id: int, class_name: str) -> int:
        return self.usage.get((node_id, class_name), 0)

    def fits(self, node: Node, class_name: str, amount: int) -> bool:
        capacity = node.inventory.get(class_name)
        return capacity is not None and capacity.fits(amount, self.used(node.id, class_name))

    @property
    def nested(self) -> bool:
        return any(n.parent_id is not None for n in self.nodes.values())

    def is_ancestor_or_self(self, ancestor: int, node_id: int) -> bool:
        current: int | None = node_id
        while current is not None:
            if current == ancestor:
                return True
            current = self.nodes[current].parent_id
        return False


_FULL_RELOAD_ABOVE = 2000


def current_revision(session: Session) -> int:
    """The placement revision: every placement write moves it in its own transaction."""
    return int(session.scalar(select(models.Revision.value)) or 0)


def refresh_snapshot(session: Session, previous: Snapshot | None) -> Snapshot:
    """The current snapshot: `previous` when the revision has not moved, else with the
    providers whose generation or tree links moved re-read (all of them past a threshold)
    and usage re-read."""
    revision = current_revision(session)
    if previous is not None and previous.revision == revision:
        return previous
    rows = session.execute(
        select(
            models.ResourceProvider.id,
            models.ResourceProvider.uuid,
            models.ResourceProvider.parent_id,
            models.ResourceProvider.root_id,
            models.ResourceProvider.generation,
        )
    ).all()
    if previous is None:
        return _load(session, rows, None, None, revision)
    changed = {
        row.id
        for row in rows
        if (old := previous.nodes.get(row.id)) is None
        or old.generation != row.generation
        or old.parent_id != row.parent_id
        or old.root_id != (row.root_id or row.id)
    }
    if len(changed) > _FULL_RELOAD_ABOVE:
        return _load(session, rows, None, None, revision)
    return _load(session, rows, previous, changed, revision)


def _load(
    session: Session,
    rows: Sequence[Any],
    previous: Snapshot | None,
    only: set[int] | None,
    revision: int,
) -> Snapshot:
    """Read traits, aggregates and inventory for `only` these providers (reusing `previous`
    for the rest) or for all, and the usage of every provider."""

    def restrict(stmt: Any, column: Any) -> Any:
        return stmt if only is None else stmt.where(column.in_(only))

    class_names = _pairs(session, select(models.ResourceClass.id, models.ResourceClass.name))
    trait_names = _pairs(session, select(models.Trait.id, models.Trait.name))
    traits: dict[int, set[str]] = {}
    for provider_id, trait_id in session.execute(
        restrict(
            select(models.ProviderTrait.resource_provider_id, models.ProviderTrait.trait_id),
            models.ProviderTrait.resource_provider_id,
        )
    ):
        traits.setdefault(provider_id, set()).add(trait_names[trait_id])
    aggregates: dict[int, set[str]] = {}
    for provider_id, aggregate in session.execute(
        restrict(
            select(
                models.ProviderAggregate.resource_provider_id,
                models.ProviderAggregate.aggregate_uuid,
            ),
            models.ProviderAggregate.resource_provider_id,
        )
    ):
        aggregates.setdefault(provider_id, set()).add(aggregate)
    inventory: dict[int, dict[str, Capacity]] = {}
    inv = models.Inventory
    for row in session.execute(
        restrict(
            select(
                inv.resource_provider_id,
                inv.resource_class_id,
                inv.total,
                inv.reserved,
                inv.min_unit,
                inv.max_unit,
                inv.step_size,
                inv.allocation_ratio,
            ),
            inv.resource_provider_id,
        )
    ):
        inventory.setdefault(row.resource_provider_id, {})[class_names[row.resource_class_id]] = (
            Capacity(
                row.total,
                row.reserved,
                row.min_unit,
                row.max_unit,
                row.step_size,
                row.allocation_ratio,
            )
        )
    usage = {
        (provider_id, class_names[class_id]): int(used)
        for provider_id, class_id, used in session.execute(
            select(
                models.Allocation.resource_provider_id,
                models.Allocation.resource_class_id,
                func.sum(models.Allocation.used),
            ).group_by(models.Allocation.resource_provider_id, models.Allocation.resource_class_id)
        )
    }
    nodes: dict[int, Node] = {}
    for row in rows:
        if previous is not None and only is not None and row.id not in only:
            nodes[row.id] = previous.nodes[row.id]
            continue
        nodes[row.id] = Node(
            row.id,
            row.uuid,
            row.parent_id,
            row.root_id or row.id,
            frozenset(traits.get(row.id, ())),
            frozenset(aggregates.get(row.id, ())),
            inventory.get(row.id, {}),
            row.generation,
        )
    return Snapshot(nodes, usage, {name: i for i, name in trait_names.items()}, revision)


def _pairs(session: Session, stmt: Any) -> dict[Any, Any]:
    return {first: second for first, second in session.execute(stmt)}


def find(snapshot: Snapshot, query: Query) -> list[Candidate]:
    """Every candidate, anchor trees in provider-id order, then up to `limit`."""
    results: list[Candidate] = []
    seen: set[tuple[Any, ...]] = set()
    for root_id in snapshot.roots:
        if not _root_allowed(snapshot, root_id, query) or not _within_reach(
            snapshot, root_id, query
        ):
            continue
        members = _members(snapshot, root_id)
        per_group = []
        for group in query.groups:
            options = list(_group_options(snapshot, root_id, members, group))
            if not options:
                break
            per_group.append((group.suffix, options))
        else:
            for combination in itertools.product(*(opts for _s, opts in per_group)):
                candidate = Candidate(
                    root_id,
                    tuple((s, a) for (s, _o), a in zip(per_group, combination, strict=True)),
                )
                key = candidate.key()
                if key not in seen and _acceptable(snapshot, candidate, query):
                    seen.add(key)
                    results.append(candidate)
                    if query.limit is not None and len(results) >= query.limit:
                        return results
    return results


def _within_reach(snapshot: Snapshot, root_id: int, query: Query) -> bool:
    """Can the tree's providers, together, have each group's traits and aggregates?"""
    traits = snapshot.reach_traits[root_id]
    aggregates = snapshot.reach_aggregates[root_id]
    return all(
        all(any_of & traits for any_of in group.required)
        and all(any_of & aggregates for any_of in group.member_of)
        for group in query.groups
    )


def _root_allowed(snapshot: Snapshot, root_id: int, query: Query) -> bool:
    root = snapshot.nodes[root_id]
    return query.root_required <= root.traits and not (query.root_forbidden & root.traits)


def _members(snapshot: Snapshot, root_id: int) -> list[int]:
    """The tree's providers, then the sharing providers anchored to it."""
    return snapshot.trees[root_id] + snapshot.shared.get(root_id, [])


def _in_aggregates(node: Node, anchor: Node, group: Group) -> bool:
    """A tree member counts its root's aggregates too; a sharing provider only its own."""
    keys = node.aggregates | anchor.aggregates if node.root_id == anchor.id else node.aggregates
    if group.forbidden_aggregates & keys:
        return False
    return all(any_of & keys for any_of in group.member_of)


def _group_options(
    snapshot: Snapshot, root_id: int, members: Sequence[int], group: Group
) -> Iterator[Assignment]:
    anchor = snapshot.nodes[root_id]
    if group.in_tree is not None:
        pinned = snapshot.by_uuid.get(group.in_tree)
        if pinned is None:
            return
        if group.suffix:
            members = [m for m in members if snapshot.nodes[m].root_id == pinned.root_id]
        else:
            if pinned.root_id != root_id:
                return
            members = [m for m in members if snapshot.nodes[m].root_id == root_id]
    if group.suffix:
        yield from _single_provider_options(snapshot, anchor, members, group)
    else:
        yield from _spread_options(snapshot, anchor, members, group)


def _single_provider_options(
    snapshot: Snapshot, anchor: Node, members: Sequence[int], group: Group
) -> Iterator[Assignment]:
    for node_id in members:
        node = snapshot.nodes[node_id]
        if not all(any_of & node.traits for any_of in group.required):
            continue
        if group.forbidden & node.traits or not _in_aggregates(node, node, group):
            continue
        if all(snapshot.fits(node, cls, amount) for cls, amount in group.resources.items()):
            yield {node_id: dict(group.resources)}


def _spread_options(
    snapshot: Snapshot, anchor: Node, members: Sequence[int], group: Group
) -> Iterator[Assignment]:
    """Each class from one provider of the anchor tree; traits over the providers used."""
    choices: list[list[int]] = []
    for cls, amount in group.resources.items():
        fitting = [
            m
            for m in members
            if snapshot.fits(snapshot.nodes[m], cls, amount)
            and not group.forbidden & snapshot.nodes[m].traits
            and _in_aggregates(snapshot.nodes[m], anchor, group)
        ]
        if not fitting:
            return
        choices.append(fitting)
    classes = list(group.resources)
    for picked in itertools.product(*choices):
        used = {n: snapshot.nodes[n] for n in picked}
        traits = frozenset().union(*(n.traits for n in used.values()))
        if not all(any_of & traits for any_of in group.required):
            continue
        assignment: Assignment = {}
        for cls, node_id in zip(classes, picked, strict=True):
            assignment.setdefault(node_id, {})[cls] = group.resources[cls]
        yield assignment


def _acceptable(snapshot: Snapshot, candidate: Candidate, query: Query) -> bool:
    suffixed = [(s, a) for s, a in candidate.by_group if s]
    if query.group_policy == "isolate":
        providers = [next(iter(a)) for _s, a in suffixed]
        if len(set(providers)) != len(providers):
            return False
    if len(query.groups) > 1:
        for node_id, resources in candidate.totals().items():
            node = snapshot.nodes[node_id]
            for cls, amount in resources.items():
                capacity = node.inventory[cls]
                used = snapshot.used(node_id, cls)
                if amount > capacity.max_unit or used + amount > capacity.capacity:
                    return False
    providers_by_suffix = {s: set(a) for s, a in candidate.by_group}
    for suffixes in query.same_subtree:
        chosen = set().union(*(providers_by_suffix.get(s, set()) for s in suffixes))
        if chosen and not any(
            all(snapshot.is_ancestor_or_self(top, n) for n in chosen) for top in chosen
        ):
            return False
    if not query.nested_aware and snapshot.nested:
        trees = [snapshot.nodes[n].root_id for n in candidate.totals()]
        if len(trees) != len(set(trees)):
            return False
    return True


def summary_nodes(
    snapshot: Snapshot, candidates: Iterable[Candidate], nested_aware: bool
) -> list[Node]:
    """Providers to describe: every member of every tree a candidate uses (1.29+), else
    just the providers candidates use."""
    used: set[int] = set()
    for candidate in candidates:
        used.update(candidate.totals())
    if not nested_aware:
        return [snapshot.nodes[n] for n in sorted(used)]
    roots = {snapshot.nodes[n].root_id for n in used}
    return [snapshot.nodes[n] for root in sorted(roots) for n in sorted(snapshot.trees[root])]
