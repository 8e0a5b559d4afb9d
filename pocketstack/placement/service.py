"""Placement domain logic: providers and their trees, inventories, classes, traits,
aggregates and usages.

Every change to what a provider offers (inventory, traits, aggregates) is a
compare-and-swap on the provider's generation, as upstream does it, so two
writers racing on one provider cannot both win: the loser gets 409
`placement.concurrent_update` and re-reads.
"""

from __future__ import annotations

import contextlib
import functools
import re
import threading
import time
import uuid as uuidlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, cast

import os_resource_classes
import os_traits
from sqlalchemy import (
    Table,
    bindparam,
    delete,
    exists,
    func,
    insert,
    literal,
    select,
    true,
    union_all,
    update,
)
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.orm import Session

from pocketstack.core import errors
from pocketstack.core.context import RequestContext
from pocketstack.core.db import is_transient
from pocketstack.core.runtime import Runtime
from pocketstack.placement import candidates, models

CUSTOM_NAME = re.compile(r"^CUSTOM_[A-Z0-9_]+$")
FIRST_CUSTOM_CLASS_ID = 10000
MAX_INT = 2147483647
STANDARD_TRAITS = frozenset(os_traits.get_traits())

CONCURRENT_UPDATE = "placement.concurrent_update"
DUPLICATE_NAME = "placement.duplicate_name"
INVENTORY_INUSE = "placement.inventory.inuse"
PROVIDER_IN_USE = "placement.resource_provider.inuse"
PROVIDER_CANNOT_DELETE_PARENT = "placement.resource_provider.cannot_delete_parent"
PROVIDER_NOT_FOUND = "placement.resource_provider.not_found"


_REVISION = cast(Table, models.Revision.__table__)
_BUMP_REVISION = update(_REVISION).values(value=_REVISION.c.value + 1)


@contextlib.contextmanager
def _writing(ctx: RequestContext) -> Iterator[Session]:
    """The transaction of every placement write: it moves the revision that candidate
    snapshots (of every worker) check, so none of them can miss a change."""
    with ctx.db.write() as session:
        yield session
        session.execute(_BUMP_REVISION)


@dataclass(slots=True)
class _StatementWrite:
    """A claim's transaction. On PostgreSQL its first provider compare-and-swap also moves
    the revision (a data-modifying WITH), saving the claim a round trip to the server."""

    conn: Connection
    fold_revision: bool = False
    revision_moved: bool = False


@contextlib.contextmanager
def _writing_statements(ctx: RequestContext) -> Iterator[_StatementWrite]:
    """`_writing` for a claim, which is made only of table statements."""
    with ctx.db.write_statements() as conn:
        write = _StatementWrite(conn, fold_revision=conn.dialect.name == "postgresql")
        yield write
        if not write.revision_moved:
            conn.execute(_BUMP_REVISION)


def now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def concurrent_update(what: str) -> errors.GenerationConflict:
    return errors.GenerationConflict(
        f"{what} failed: resource provider generation conflict. Resource provider's "
        "generation already changed. Please update the generation and try again.",
        code=CONCURRENT_UPDATE,
    )


# Startup: the standard classes and traits ---------------------------------------


def prepare(runtime: Runtime) -> None:
    """Every start: the standard classes and traits of the installed os-* libraries."""
    with runtime.db.write() as session:
        sync_standards(session)
        session.execute(_BUMP_REVISION)


def sync_standards(session: Session) -> None:
    """Insert standard resource classes and traits this os-* library version knows."""
    moment = now()
    known_classes = set(session.scalars(select(models.ResourceClass.name)))
    for index, name in enumerate(os_resource_classes.STANDARDS):
        if name not in known_classes:
            session.add(
                models.ResourceClass(id=index, name=name, created_at=moment, updated_at=moment)
            )
    known_traits = set(session.scalars(select(models.Trait.name)))
    for name in sorted(STANDARD_TRAITS - known_traits):
        session.add(models.Trait(name=name, created_at=moment, updated_at=moment))


# Resource providers ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Provider:
    """A provider as the API shows it, with its parent and root as uuids."""

    id: int
    uuid: str
    name: str
    generation: int
    parent_uuid: str | None
    root_uuid: str
    updated_at: datetime


def _pairs(session: Session, stmt: Any) -> dict[Any, Any]:
    """A two-column query as a dict of first column to second."""
    return {first: second for first, second in session.execute(stmt)}


def _provider_views(session: Session, rows: Sequence[models.ResourceProvider]) -> list[Provider]:
    ids = {r.parent_id for r in rows if r.parent_id} | {r.root_id for r in rows if r.root_id}
    uuids = _pairs(
        session,
        select(models.ResourceProvider.id, models.ResourceProvider.uuid).where(
            models.ResourceProvider.id.in_(ids)
        ),
    )
    uuids.update({r.id: r.uuid for r in rows})
    return [
        Provider(
            r.id,
            r.uuid,
            r.name,
            r.generation,
            uuids.get(r.parent_id) if r.parent_id else None,
            uuids.get(r.root_id or r.id, r.uuid),
            r.updated_at,
        )
        for r in rows
    ]


def _provider_row(session: Session, provider_uuid: str) -> models.ResourceProvider:
    row = session.scalar(
        select(models.ResourceProvider).where(models.ResourceProvider.uuid == provider_uuid)
    )
    if row is None:
        raise errors.NotFound(
            f"No resource provider with uuid {provider_uuid} found", code=PROVIDER_NOT_FOUND
        )
    return row


def get_provider(ctx: RequestContext, provider_uuid: str) -> Provider:
    with ctx.db.read() as session:
        return _provider_views(session, [_provider_row(session, provider_uuid)])[0]


def create_provider(
    ctx: RequestContext, name: str, provider_uuid: str | None, parent_uuid: str | None
) -> Provider:
    key = str(uuidlib.UUID(provider_uuid)) if provider_uuid else str(uuidlib.uuid4())
    with _writing(ctx) as session:
        parent = None
        if parent_uuid and parent_uuid == key:
            raise errors.Invalid(
                f'Unable to create resource provider "{name}", {key}: parent provider UUID '
                "cannot be same as UUID. Please modify UUID or parent provider UUID."
            )
        if parent_uuid:
            parent = session.scalar(
                select(models.ResourceProvider).where(models.ResourceProvider.uuid == parent_uuid)
            )
            if parent is None:
                raise errors.Invalid(
                    f'Unable to create resource provider "{name}", {key}: '
                    "parent provider UUID does not exist."
                )
        _check_unique(session, name=name, provider_uuid=key)
        moment = now()
        row = models.ResourceProvider(
            uuid=key, name=name, generation=0, created_at=moment, updated_at=moment
        )
        if parent is not None:
            row.parent_id, row.root_id = parent.id, parent.root_id or parent.id
        session.add(row)
        session.flush()
        if row.root_id is None:
            row.root_id = row.id
        return _provider_views(session, [row])[0]


def _check_unique(
    session: Session, *, name: str | None, provider_uuid: str | None, exclude_id: int | None = None
) -> None:
    duplicates = []
    if provider_uuid:
        found = session.scalar(
            select(models.ResourceProvider.id).where(models.ResourceProvider.uuid == provider_uuid)
        )
        if found is not None and found != exclude_id:
            duplicates.append(f"uuid: {provider_uuid}")
    if name:
        found = session.scalar(
            select(models.ResourceProvider.id).where(models.ResourceProvider.name == name)
        )
        if found is not None and found != exclude_id:
            duplicates.append(f"name: {name}")
    if duplicates:
        raise errors.Conflict(
            f"Conflicting resource provider {', '.join(duplicates)} already exists.",
            code=DUPLICATE_NAME,
        )


def update_provider(
    ctx: RequestContext, provider_uuid: str, fields: Mapping[str, Any], allow_reparenting: bool
) -> Provider:
    with _writing(ctx) as session:
        row = _provider_row(session, provider_uuid)
        if "name" in fields and fields["name"] != row.name:
            _check_unique(session, name=fields["name"], provider_uuid=None, exclude_id=row.id)
            row.name = fields["name"]
        if "parent_provider_uuid" in fields:
            _reparent(session, row, fields["parent_provider_uuid"], allow_reparenting)
        row.updated_at = now()
        try:
            session.flush()
        except IntegrityError:
            raise errors.Conflict(
                f"Conflicting resource provider {fields.get('name')} already exists.",
                code=DUPLICATE_NAME,
            ) from None
        return _provider_views(session, [row])[0]


def _reparent(
    session: Session, row: models.ResourceProvider, parent_uuid: str | None, allow_reparenting: bool
) -> None:
    current = _provider_views(session, [row])[0].parent_uuid
    if parent_uuid == current:
        return
    if not allow_reparenting and current is not None and parent_uuid is not None:
        raise errors.Invalid(
            f"Unable to save resource provider {row.uuid}: Object action update failed "
            "because: re-parenting a provider is not currently allowed."
        )
    if parent_uuid is None:
        if not allow_reparenting:
            raise errors.Invalid(
                f"Unable to save resource provider {row.uuid}: Object action update failed "
                "because: un-parenting a provider is not currently allowed."
            )
        new_root = row.id
        row.parent_id = None
    else:
        parent = session.scalar(
            select(models.ResourceProvider).where(models.ResourceProvider.uuid == parent_uuid)
        )
        if parent is None:
            raise errors.Invalid(
                f"Unable to save resource provider {row.uuid}: Object action update failed "
                "because: parent provider UUID does not exist."
            )
        if parent.id == row.id or parent.id in _subtree_ids(session, row.id):
            raise errors.Invalid(
                f"Unable to save resource provider {row.uuid}: Object action update failed "
                "because: creating loop in the provider tree is not allowed."
            )
        row.parent_id = parent.id
        new_root = parent.root_id or parent.id
    session.execute(
        update(models.ResourceProvider)
        .where(models.ResourceProvider.id.in_(_subtree_ids(session, row.id) | {row.id}))
        .values(root_id=new_root)
    )
    row.root_id = new_root


def _subtree_ids(session: Session, provider_id: int) -> set[int]:
    """Every descendant of a provider (not the provider itself)."""
    found: set[int] = set()
    frontier = [provider_id]
    while frontier:
        children = list(
            session.scalars(
                select(models.ResourceProvider.id).where(
                    models.ResourceProvider.parent_id.in_(frontier)
                )
            )
        )
        frontier = [c for c in children if c not in found]
        found.update(frontier)
    return found


def delete_provider(ctx: RequestContext, provider_uuid: str) -> None:
    with _writing(ctx) as session:
        row = session.scalar(
            select(models.ResourceProvider).where(models.ResourceProvider.uuid == provider_uuid)
        )
        if row is None:
            raise errors.NotFound(
                f"No resource provider with uuid {provider_uuid} found for delete"
            )
        if (
            session.scalar(
                select(models.Allocation.id)
                .where(models.Allocation.resource_provider_id == row.id)
                .limit(1)
            )
            is not None
        ):
            raise errors.Conflict(
                f"Unable to delete resource provider {provider_uuid}: Resource provider has "
                "allocations.",
                code=PROVIDER_IN_USE,
            )
        if (
            session.scalar(
                select(models.ResourceProvider.id)
                .where(models.ResourceProvider.parent_id == row.id)
                .limit(1)
            )
            is not None
        ):
            raise errors.Conflict(
                f"Unable to delete parent resource provider {provider_uuid}: It has child "
                "resource providers.",
                code=PROVIDER_CANNOT_DELETE_PARENT,
            )
        for model in (models.Inventory, models.ProviderTrait, models.ProviderAggregate):
            session.execute(delete(model).where(model.resource_provider_id == row.id))
        session.delete(row)


@dataclass(frozen=True, slots=True)
class ProviderFilter:
    """The filters of GET /resource_providers."""

    name: str | None = None
    uuid: str | None = None
    in_tree: str | None = None
    member_of: Sequence[frozenset[str]] = ()
    forbidden_aggregates: frozenset[str] = frozenset()
    required_traits: Sequence[frozenset[str]] = ()
    forbidden_traits: frozenset[str] = frozenset()
    resources: Mapping[str, int] = field(default_factory=dict)


def list_providers(ctx: RequestContext, query: ProviderFilter) -> list[Provider]:
    with ctx.db.read() as session:
        stmt = select(models.ResourceProvider)
        if query.name is not None:
            stmt = stmt.where(models.ResourceProvider.name == query.name)
        if query.uuid is not None:
            stmt = stmt.where(models.ResourceProvider.uuid == query.uuid)
        if query.in_tree is not None:
            tree = session.scalar(
                select(models.ResourceProvider).where(models.ResourceProvider.uuid == query.in_tree)
            )
            if tree is None:
                return []
            stmt = stmt.where(models.ResourceProvider.root_id == (tree.root_id or tree.id))
        for any_of in query.member_of:
            stmt = stmt.where(
                models.ResourceProvider.id.in_(
                    select(models.ProviderAggregate.resource_provider_id).where(
                        models.ProviderAggregate.aggregate_uuid.in_(any_of)
                    )
                )
            )
        if query.forbidden_aggregates:
            stmt = stmt.where(
                models.ResourceProvider.id.not_in(
                    select(models.ProviderAggregate.resource_provider_id).where(
                        models.ProviderAggregate.aggregate_uuid.in_(query.forbidden_aggregates)
                    )
                )
            )
        for any_of in query.required_traits:
            stmt = stmt.where(models.ResourceProvider.id.in_(_with_traits(session, any_of)))
        if query.forbidden_traits:
            stmt = stmt.where(
                models.ResourceProvider.id.not_in(_with_traits(session, query.forbidden_traits))
            )
        for class_name, amount in query.resources.items():
            try:
                fitting = _with_capacity(session, class_name, amount)
            except errors.Invalid as exc:
                raise errors.Invalid(
                    f"Invalid resource class in resources parameter: {exc.message}"
                ) from None
            stmt = stmt.where(models.ResourceProvider.id.in_(fitting))
        rows = list(session.scalars(stmt.order_by(models.ResourceProvider.id)))
        return _provider_views(session, rows)


def _with_traits(session: Session, names: Iterable[str]) -> Any:
    trait_ids = _trait_ids(session, names)
    return select(models.ProviderTrait.resource_provider_id).where(
        models.ProviderTrait.trait_id.in_(trait_ids)
    )


def _with_capacity(session: Session, class_name: str, amount: int) -> Any:
    """Providers with an inventory of the class that can take `amount` more."""
    class_id = class_id_of(session, class_name)
    used = (
        select(func.coalesce(func.sum(models.Allocation.used), 0))
        .where(
            models.Allocation.resource_provider_id == models.Inventory.resource_provider_id,
            models.Allocation.resource_class_id == class_id,
        )
        .scalar_subquery()
    )
    inv = models.Inventory
    return select(inv.resource_provider_id).where(
        inv.resource_class_id == class_id,
        inv.min_unit <= amount,
        inv.max_unit >= amount,
        literal(amount) % inv.step_size == 0,
        (inv.total - inv.reserved) * inv.allocation_ratio - used >= amount,
    )


# Resource classes ------------------------------------------------------------------


def class_id_of(session: Session, name: str) -> int:
    class_id = session.scalar(
        select(models.ResourceClass.id).where(models.ResourceClass.name == name)
    )
    if class_id is None:
        raise errors.Invalid(f"No such resource class {name}.")
    return class_id


def list_resource_classes(ctx: RequestContext) -> list[models.ResourceClass]:
    with ctx.db.read() as session:
        return list(session.scalars(select(models.ResourceClass).order_by(models.ResourceClass.id)))


def get_resource_class(ctx: RequestContext, name: str) -> models.ResourceClass:
    with ctx.db.read() as session:
        row = session.scalar(select(models.ResourceClass).where(models.ResourceClass.name == name))
        if row is None:
            raise errors.NotFound(f"No such resource class {name}.")
        return row


def create_resource_class(ctx: RequestContext, name: str, exist_ok: bool) -> bool:
    """Create a CUSTOM_ class; returns False if it existed and `exist_ok` allowed that."""
    if not CUSTOM_NAME.match(name):
        raise errors.Invalid(
            f"Resource class names must start with CUSTOM_ and use A-Z, 0-9 and _: {name}"
        )
    with _writing(ctx) as session:
        if (
            session.scalar(select(models.ResourceClass.id).where(models.ResourceClass.name == name))
            is not None
        ):
            if exist_ok:
                return False
            raise errors.Conflict(
                f"Conflicting resource class already exists: {name}", code=DUPLICATE_NAME
            )
        next_id = max(
            FIRST_CUSTOM_CLASS_ID,
            (session.scalar(select(func.max(models.ResourceClass.id))) or 0) + 1,
        )
        moment = now()
        session.add(
            models.ResourceClass(id=next_id, name=name, created_at=moment, updated_at=moment)
        )
        return True


def update_resource_class(ctx: RequestContext, name: str, new_name: str) -> models.ResourceClass:
    """Pre-1.7 rename of a custom class."""
    if not CUSTOM_NAME.match(new_name):
        raise errors.Invalid(f"Resource class names must start with CUSTOM_: {new_name}")
    with _writing(ctx) as session:
        row = session.scalar(select(models.ResourceClass).where(models.ResourceClass.name == name))
        if row is None:
            raise errors.NotFound(f"No such resource class {name}.")
        if row.id < FIRST_CUSTOM_CLASS_ID:
            raise errors.Invalid(f"Cannot update standard resource class {name}")
        if (
            session.scalar(
                select(models.ResourceClass.id).where(models.ResourceClass.name == new_name)
            )
            is not None
        ):
            raise errors.Conflict(f"Resource class already exists: {new_name}", code=DUPLICATE_NAME)
        row.name, row.updated_at = new_name, now()
        return row


def delete_resource_class(ctx: RequestContext, name: str) -> None:
    with _writing(ctx) as session:
        row = session.scalar(select(models.ResourceClass).where(models.ResourceClass.name == name))
        if row is None:
            raise errors.NotFound(f"No such resource class {name}.")
        if row.id < FIRST_CUSTOM_CLASS_ID:
            raise errors.Invalid(f"Cannot delete standard resource class {name}")
        if (
            session.scalar(
                select(models.Inventory.resource_provider_id)
                .where(models.Inventory.resource_class_id == row.id)
                .limit(1)
            )
            is not None
        ):
            raise errors.Conflict(
                f"Error in delete resource class: Unable to delete resource class {name}. "
                "Resource class is in use in inventory"
            )
        session.delete(row)


# Traits ----------------------------------------------------------------------------


def _trait_ids(session: Session, names: Iterable[str]) -> list[int]:
    wanted = set(names)
    found = _pairs(
        session, select(models.Trait.name, models.Trait.id).where(models.Trait.name.in_(wanted))
    )
    missing = wanted - set(found)
    if missing:
        raise errors.Invalid(f"No such trait(s): {', '.join(sorted(missing))}.")
    return list(found.values())


def list_traits(
    ctx: RequestContext, names: Sequence[str] | None, prefix: str | None, associated: bool | None
) -> list[str]:
    with ctx.db.read() as session:
        stmt = select(models.Trait.name)
        if names is not None:
            stmt = stmt.where(models.Trait.name.in_(names))
        if prefix is not None:
            stmt = stmt.where(models.Trait.name.startswith(prefix, autoescape=True))
        linked = select(models.ProviderTrait.trait_id)
        if associated is True:
            stmt = stmt.where(models.Trait.id.in_(linked))
        elif associated is False:
            stmt = stmt.where(models.Trait.id.not_in(linked))
        return list(session.scalars(stmt.order_by(models.Trait.name)))


def trait_exists(ctx: RequestContext, name: str) -> bool:
    with ctx.db.read() as session:
        return session.scalar(select(models.Trait.id).where(models.Trait.name == name)) is not None


def create_trait(ctx: RequestContext, name: str) -> bool:
    """Create a CUSTOM_ trait; False when it already existed."""
    if not CUSTOM_NAME.match(name):
        raise errors.Invalid(
            f"The trait is invalid. A valid trait must be no longer than 255 "
            f'characters, start with the prefix "CUSTOM_" and use following '
            f'characters: "A"-"Z", "0"-"9" and "_": {name}'
        )
    with _writing(ctx) as session:
        if session.scalar(select(models.Trait.id).where(models.Trait.name == name)) is not None:
            return False
        moment = now()
        session.add(models.Trait(name=name, created_at=moment, updated_at=moment))
        return True


def delete_trait(ctx: RequestContext, name: str) -> None:
    with _writing(ctx) as session:
        row = session.scalar(select(models.Trait).where(models.Trait.name == name))
        if row is None:
            raise errors.NotFound(f"No such trait(s): {name}.")
        if name in STANDARD_TRAITS:
            raise errors.Invalid(f"Cannot delete standard trait {name}.")
        if (
            session.scalar(
                select(models.ProviderTrait.resource_provider_id)
                .where(models.ProviderTrait.trait_id == row.id)
                .limit(1)
            )
            is not None
        ):
            raise errors.Conflict(f"The trait {name} is in use by a resource provider.")
        session.delete(row)


def provider_traits(ctx: RequestContext, provider_uuid: str) -> tuple[Provider, list[str]]:
    with ctx.db.read() as session:
        row = _provider_row(session, provider_uuid)
        names = list(
            session.scalars(
                select(models.Trait.name)
                .join(models.ProviderTrait, models.ProviderTrait.trait_id == models.Trait.id)
                .where(models.ProviderTrait.resource_provider_id == row.id)
                .order_by(models.Trait.name)
            )
        )
        return _provider_views(session, [row])[0], names


def _bump_generation(
    session: Session, row: models.ResourceProvider, expected: int, what: str
) -> None:
    """The compare-and-swap every provider change goes through."""
    result = session.execute(
        update(models.ResourceProvider)
        .where(models.ResourceProvider.id == row.id, models.ResourceProvider.generation == expected)
        .values(generation=expected + 1, updated_at=now())
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        raise concurrent_update(what)
    session.refresh(row)


def set_provider_traits(
    ctx: RequestContext, provider_uuid: str, generation: int, names: Sequence[str]
) -> tuple[Provider, list[str]]:
    with _writing(ctx) as session:
        row = _provider_row(session, provider_uuid)
        trait_ids = _trait_ids(session, names)
        _bump_generation(session, row, generation, "Updating resource provider traits")
        session.execute(
            delete(models.ProviderTrait).where(models.ProviderTrait.resource_provider_id == row.id)
        )
        for trait_id in trait_ids:
            session.add(models.ProviderTrait(resource_provider_id=row.id, trait_id=trait_id))
        return _provider_views(session, [row])[0], sorted(set(names))


def delete_provider_traits(ctx: RequestContext, provider_uuid: str) -> None:
    with _writing(ctx) as session:
        row = _provider_row(session, provider_uuid)
        _bump_generation(session, row, row.generation, "Deleting resource provider traits")
        session.execute(
            delete(models.ProviderTrait).where(models.ProviderTrait.resource_provider_id == row.id)
        )


# Aggregates ------------------------------------------------------------------------


def provider_aggregates(ctx: RequestContext, provider_uuid: str) -> tuple[Provider, list[str]]:
    with ctx.db.read() as session:
        row = _provider_row(session, provider_uuid)
        aggregates = list(
            session.scalars(
                select(models.ProviderAggregate.aggregate_uuid)
                .where(models.ProviderAggregate.resource_provider_id == row.id)
                .order_by(models.ProviderAggregate.aggregate_uuid)
            )
        )
        return _provider_views(session, [row])[0], aggregates


def set_provider_aggregates(
    ctx: RequestContext, provider_uuid: str, generation: int | None, aggregates: Sequence[str]
) -> tuple[Provider, list[str]]:
    """Replace the aggregates; with a generation (1.19+) it must match and is bumped."""
    with _writing(ctx) as session:
        row = _provider_row(session, provider_uuid)
        expected = row.generation if generation is None else generation
        _bump_generation(session, row, expected, "Updating resource provider aggregates")
        session.execute(
            delete(models.ProviderAggregate).where(
                models.ProviderAggregate.resource_provider_id == row.id
            )
        )
        unique = list(dict.fromkeys(aggregates))
        for aggregate in unique:
            session.add(
                models.ProviderAggregate(resource_provider_id=row.id, aggregate_uuid=aggregate)
            )
        return _provider_views(session, [row])[0], unique


# Inventories -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class InventorySpec:
    total: int
    reserved: int = 0
    min_unit: int = 1
    max_unit: int | None = None  # upstream's default: the largest value, not the total
    step_size: int = 1
    allocation_ratio: float = 1.0


def _class_names(session: Session) -> dict[int, str]:
    return _pairs(session, select(models.ResourceClass.id, models.ResourceClass.name))


def provider_inventories(
    ctx: RequestContext, provider_uuid: str
) -> tuple[Provider, dict[str, models.Inventory]]:
    with ctx.db.read() as session:
        row = _provider_row(session, provider_uuid)
        return _provider_views(session, [row])[0], _inventories(session, row.id)


def _inventories(session: Session, provider_id: int) -> dict[str, models.Inventory]:
    names = _class_names(session)
    rows = session.scalars(
        select(models.Inventory).where(models.Inventory.resource_provider_id == provider_id)
    )
    return {names[r.resource_class_id]: r for r in rows}


def _usage_by_class(session: Session, provider_id: int) -> dict[int, int]:
    return _pairs(
        session,
        select(models.Allocation.resource_class_id, func.sum(models.Allocation.used))
        .where(models.Allocation.resource_provider_id == provider_id)
        .group_by(models.Allocation.resource_class_id),
    )


def _validate_inventory(class_name: str, spec: InventorySpec, allow_reserved_total: bool) -> None:
    max_unit = spec.max_unit if spec.max_unit is not None else MAX_INT
    if spec.reserved > spec.total or (spec.reserved == spec.total and not allow_reserved_total):
        raise errors.Invalid(
            f"Unable to update inventory for resource provider: Invalid inventory for "
            f"'{class_name}' on resource provider. The reserved value is greater than or "
            "equal to total."
        )
    if spec.min_unit > max_unit:
        raise errors.Invalid(
            f"Invalid inventory for '{class_name}': min_unit must be less than or equal to "
            "max_unit."
        )


def replace_inventories(
    ctx: RequestContext,
    provider_uuid: str,
    generation: int,
    inventories: Mapping[str, InventorySpec],
    allow_reserved_total: bool,
) -> tuple[Provider, dict[str, models.Inventory]]:
    """PUT /inventories: the provider offers exactly these; classes in use cannot go."""
    with _writing(ctx) as session:
        row = _provider_row(session, provider_uuid)
        for class_name, spec in inventories.items():
            try:
                class_id_of(session, class_name)
            except errors.Invalid:
                raise errors.Invalid(
                    f"Unknown resource class in inventory for resource provider "
                    f"{provider_uuid}: {class_name}"
                ) from None
            _validate_inventory(class_name, spec, allow_reserved_total)
        _bump_generation(session, row, generation, "Updating resource provider inventories")
        _set_exact_inventory(session, row, inventories)
        return _provider_views(session, [row])[0], _inventories(session, row.id)


def _write_inventory(
    session: Session, provider_id: int, class_id: int, spec: InventorySpec
) -> None:
    existing = session.get(models.Inventory, (provider_id, class_id))
    values = {
        "total": spec.total,
        "reserved": spec.reserved,
        "min_unit": spec.min_unit,
        "max_unit": spec.max_unit if spec.max_unit is not None else MAX_INT,
        "step_size": spec.step_size,
        "allocation_ratio": spec.allocation_ratio,
    }
    if existing is None:
        session.add(
            models.Inventory(resource_provider_id=provider_id, resource_class_id=class_id, **values)
        )
    else:
        for key, value in values.items():
            setattr(existing, key, value)


def set_inventory(
    ctx: RequestContext,
    provider_uuid: str,
    class_name: str,
    generation: int,
    spec: InventorySpec,
    create_only: bool,
    allow_reserved_total: bool,
) -> tuple[Provider, models.Inventory]:
    """POST (create_only) or PUT one class's inventory."""
    with _writing(ctx) as session:
        row = _provider_row(session, provider_uuid)
        try:
            class_id = class_id_of(session, class_name)
        except errors.Invalid:
            raise errors.Invalid(f"No such resource class {class_name}.") from None
        _validate_inventory(class_name, spec, allow_reserved_total)
        existing = session.get(models.Inventory, (row.id, class_id))
        if create_only and existing is not None:
            raise errors.Conflict(
                f"Update conflict: inventory for {class_name} already exists on resource "
                f"provider {provider_uuid}."
            )
        if not create_only and existing is None:
            raise errors.Invalid(
                f"No inventory record with resource class for resource provider "
                f"{provider_uuid}: {class_name}"
            )
        _bump_generation(session, row, generation, "Updating resource provider inventory")
        _write_inventory(session, row.id, class_id, spec)
        session.flush()
        return _provider_views(session, [row])[0], _inventories(session, row.id)[class_name]


def delete_inventory(
    ctx: RequestContext, provider_uuid: str, class_name: str, generation: int | None
) -> None:
    with _writing(ctx) as session:
        row = _provider_row(session, provider_uuid)
        class_id = session.scalar(
            select(models.ResourceClass.id).where(models.ResourceClass.name == class_name)
        )
        existing = (
            session.get(models.Inventory, (row.id, class_id)) if class_id is not None else None
        )
        if existing is None:
            raise errors.NotFound(f"No inventory of class {class_name} found for delete")
        expected = row.generation if generation is None else generation
        _bump_generation(session, row, expected, "Deleting resource provider inventory")
        if _usage_by_class(session, row.id).get(existing.resource_class_id):
            raise errors.Conflict(
                f"Inventory for '{class_name}' on resource provider '{provider_uuid}' in use.",
                code=INVENTORY_INUSE,
            )
        session.delete(existing)


def delete_inventories(ctx: RequestContext, provider_uuid: str) -> None:
    with _writing(ctx) as session:
        row = _provider_row(session, provider_uuid)
        usage = _usage_by_class(session, row.id)
        in_use = [n for c, n in sorted(_class_names(session).items()) if usage.get(c)]
        if in_use:
            raise errors.Conflict(
                f"Inventory for '{', '.join(in_use)}' on resource provider '{provider_uuid}' "
                "in use.",
                code=INVENTORY_INUSE,
            )
        _bump_generation(session, row, row.generation, "Deleting resource provider inventories")
        session.execute(
            delete(models.Inventory).where(models.Inventory.resource_provider_id == row.id)
        )


# Usages ----------------------------------------------------------------------------


def provider_usages(ctx: RequestContext, provider_uuid: str) -> tuple[Provider, dict[str, int]]:
    """Usage per class the provider has inventory or allocations of (0 when unused)."""
    with ctx.db.read() as session:
        row = _provider_row(session, provider_uuid)
        names = _class_names(session)
        usage = {names[c]: int(v) for c, v in _usage_by_class(session, row.id).items()}
        for class_name in _inventories(session, row.id):
            usage.setdefault(class_name, 0)
        return _provider_views(session, [row])[0], usage


# Allocations -----------------------------------------------------------------------

INCOMPLETE_CONSUMER_ID = "00000000-0000-0000-0000-000000000000"
_CLAIM_RETRIES = 10


@dataclass(frozen=True, slots=True)
class ConsumerClaim:
    """What one consumer should hold: provider uuid -> class -> amount ({} releases all)."""

    consumer_uuid: str
    allocations: Mapping[str, Mapping[str, int]]
    project_id: str | None = None
    user_id: str | None = None
    consumer_generation: int | None = None
    consumer_type: str | None = None


@dataclass(frozen=True, slots=True)
class ConsumerView:
    uuid: str
    project_id: str
    user_id: str
    generation: int
    consumer_type: str | None
    allocations: dict[str, dict[str, int]]  # provider uuid -> class -> amount
    provider_generations: dict[str, int]
    updated_at: datetime | None


def set_allocations(
    ctx: RequestContext,
    claims: Sequence[ConsumerClaim],
    check_generation: bool,
    bump_released: bool = True,
) -> None:
    """Replace the allocations of every consumer in `claims`, all or nothing.

    Capacity is checked against what the providers hold in this transaction;
    every touched provider's generation is compare-and-swapped, so a racing
    claim on the same provider makes one of the two retry with fresh usage and
    no provider is ever over-committed. `bump_released=False` (DELETE of a consumer's
    allocations, as upstream) leaves the generations of providers only released from.
    """
    if _fits_one_statement(ctx, claims, check_generation) and _claim_in_one_statement(
        ctx, claims[0]
    ):
        return
    for attempt in range(_CLAIM_RETRIES):
        try:
            with _writing_statements(ctx) as write:
                _apply_claims(write, claims, check_generation, bump_released)
            return
        except _ConsumerExists as exc:
            raise _consumer_exists_conflict(ctx, exc.consumer_uuid) from None
        except (_ProviderRace, DBAPIError) as exc:
            if isinstance(exc, DBAPIError) and not is_transient(exc):
                raise
            if attempt == _CLAIM_RETRIES - 1:
                raise errors.Conflict(
                    "Inventory and/or allocations changed while attempting to allocate: "
                    "Another thread concurrently updated the data. Please retry your update",
                    code=CONCURRENT_UPDATE,
                ) from None


def _fits_one_statement(
    ctx: RequestContext, claims: Sequence[ConsumerClaim], check_generation: bool
) -> bool:
    """The usual claim (Nova's for a server on one compute node): one new consumer, on one
    provider, on PostgreSQL."""
    if ctx.db.engine.dialect.name != "postgresql" or len(claims) != 1:
        return False
    claim = claims[0]
    return check_generation and claim.consumer_generation is None and len(claim.allocations) == 1


def _claim_in_one_statement(ctx: RequestContext, claim: ConsumerClaim) -> bool:
    """The claim as one statement that commits by itself: it checks every amount against
    the provider's inventory (units and capacity) as of its snapshot and swaps the
    generation of that snapshot, and inserts the consumer and its allocations (and moves
    the revision) only if the swap took, so nothing of a lost race or a refused claim is
    ever written. False leaves the claim to the transaction of set_allocations, which
    also says why one is refused."""
    ((provider_uuid, resources),) = claim.allocations.items()
    values: dict[str, Any] = {
        "provider_uuid": provider_uuid, "consumer_uuid": claim.consumer_uuid,
        "project_id": claim.project_id or INCOMPLETE_CONSUMER_ID,
        "user_id": claim.user_id or INCOMPLETE_CONSUMER_ID,
        "consumer_type": claim.consumer_type, "moment": now(),
    }  # fmt: skip
    for index, (class_name, amount) in enumerate(resources.items()):
        values[f"class_{index}"] = class_name
        values[f"used_{index}"] = amount
    with ctx.db.single_statements() as conn:
        try:
            return bool(conn.scalar(_one_statement_claim(len(resources)), values) == 1)
        except IntegrityError:  # the consumer exists after all
            return False


def _violates_units(inventory: Any, amount: int) -> bool:
    return bool(
        amount < inventory.min_unit or amount > inventory.max_unit or amount % inventory.step_size
    )


def _exceeds_capacity(inventory: Any, amount: int) -> bool:
    """`amount` more than what the inventory's other consumers hold would not fit."""
    return bool(
        inventory.used + amount
        > (inventory.total - inventory.reserved) * inventory.allocation_ratio
    )


@functools.cache
def _one_statement_claim(count: int) -> Any:
    """The statement of _claim_in_one_statement for `count` resource classes; it returns
    how many generations it swapped: 1, or 0 when an amount does not fit or another writer
    moved the provider since the statement's snapshot. Usage read in that snapshot can
    only be stale by claims that moved the generation (releases leave it, and only free
    room), so the swap guards the capacity check as the transaction's does."""
    provider = (
        select(_RP.c.id, _RP.c.generation)
        .where(_RP.c.uuid == bindparam("provider_uuid"))
        .cte("provider")
    )
    wanted = union_all(
        *(
            select(
                bindparam(f"class_{index}", type_=_CLASS.c.name.type).label("class_name"),
                bindparam(f"used_{index}", type_=_ALLOCATION.c.used.type).label("used"),
            )
            for index in range(count)
        )
    ).cte("wanted")
    used_now = (
        select(func.coalesce(func.sum(_ALLOCATION.c.used), 0))
        .where(
            _ALLOCATION.c.resource_provider_id == _INVENTORY.c.resource_provider_id,
            _ALLOCATION.c.resource_class_id == _INVENTORY.c.resource_class_id,
        )
        .scalar_subquery()
    )
    fitting = (
        select(_INVENTORY.c.resource_class_id.label("class_id"), wanted.c.used)
        .select_from(
            wanted.join(_CLASS, _CLASS.c.name == wanted.c.class_name).join(
                _INVENTORY, _INVENTORY.c.resource_class_id == _CLASS.c.id
            )
        )
        .where(
            _INVENTORY.c.resource_provider_id == select(provider.c.id).scalar_subquery(),
            wanted.c.used.between(_INVENTORY.c.min_unit, _INVENTORY.c.max_unit),
            wanted.c.used % _INVENTORY.c.step_size == 0,
            used_now + wanted.c.used
            <= (_INVENTORY.c.total - _INVENTORY.c.reserved) * _INVENTORY.c.allocation_ratio,
        )
        .cte("fitting")
    )
    swapped = (
        update(_RP)
        .where(
            _RP.c.id == provider.c.id,
            _RP.c.generation == provider.c.generation,
            select(func.count()).select_from(fitting).scalar_subquery() == count,
        )
        .values(generation=provider.c.generation + 1)
        .returning(_RP.c.id)
        .cte("swapped")
    )
    took = exists(select(swapped.c.id))
    moment = bindparam("moment", type_=_CONSUMER.c.created_at.type)
    consumer = (
        insert(_CONSUMER)
        .from_select(
            ["uuid", "project_id", "user_id", "consumer_type", "generation", "created_at",
             "updated_at"],
            select(
                *(bindparam(name, type_=_CONSUMER.c[column].type) for name, column in (
                    ("consumer_uuid", "uuid"), ("project_id", "project_id"),
                    ("user_id", "user_id"), ("consumer_type", "consumer_type"))),
                literal(1), moment, moment,
            ).where(took),
        )
        .returning(_CONSUMER.c.id)
        .cte("new_consumer")
    )  # fmt: skip
    allocations = (
        insert(_ALLOCATION)
        .from_select(
            list(_ALLOCATION_FIELDS),
            select(
                consumer.c.id, swapped.c.id, fitting.c.class_id, fitting.c.used, moment, moment
            ).select_from(consumer.join(swapped, true()).join(fitting, true())),
        )
        .cte("new_allocations")
    )
    revision = update(_REVISION).where(took).values(value=_REVISION.c.value + 1).cte("moved")
    return select(func.count()).select_from(swapped).add_cte(consumer, allocations, revision)


class _ProviderRace(Exception):
    """A provider's generation moved under a claim: retry the whole claim."""


_RP = cast(Table, models.ResourceProvider.__table__)
_CONSUMER = cast(Table, models.Consumer.__table__)
_ALLOCATION = cast(Table, models.Allocation.__table__)
_INVENTORY = cast(Table, models.Inventory.__table__)
# Claims are the hot write path: plain table statements built once (their compiled form is
# cached), no ORM identity map or unit of work.
_CONSUMERS_BY_UUID = select(
    _CONSUMER.c.id,
    _CONSUMER.c.uuid,
    _CONSUMER.c.generation,
    _CONSUMER.c.project_id,
    _CONSUMER.c.user_id,
    _CONSUMER.c.consumer_type,
).where(_CONSUMER.c.uuid.in_(bindparam("uuids", expanding=True)))
_PROVIDERS_BY_ID = select(_RP.c.id, _RP.c.uuid, _RP.c.generation).where(
    _RP.c.id.in_(bindparam("ids", expanding=True))
)
_PROVIDERS_OF_CONSUMERS = (
    select(_ALLOCATION.c.resource_provider_id)
    .where(_ALLOCATION.c.consumer_id.in_(bindparam("ids", expanding=True)))
    .distinct()
)
_CLASS = cast(Table, models.ResourceClass.__table__)
_USED_BY_OTHERS = (
    select(func.coalesce(func.sum(_ALLOCATION.c.used), 0))
    .where(
        _ALLOCATION.c.resource_provider_id == _INVENTORY.c.resource_provider_id,
        _ALLOCATION.c.resource_class_id == _INVENTORY.c.resource_class_id,
        _ALLOCATION.c.consumer_id.not_in(bindparam("claiming", expanding=True)),
    )
    .scalar_subquery()
)
# The named providers with each inventory, its class name and what consumers other than
# the claiming ones hold of it: everything a claim checks, in one round trip.
_PROVIDERS_WITH_INVENTORY = (
    select(
        _RP.c.id,
        _RP.c.uuid,
        _RP.c.generation,
        _INVENTORY.c.resource_class_id,
        _CLASS.c.name.label("class_name"),
        _INVENTORY.c.total,
        _INVENTORY.c.reserved,
        _INVENTORY.c.min_unit,
        _INVENTORY.c.max_unit,
        _INVENTORY.c.step_size,
        _INVENTORY.c.allocation_ratio,
        _USED_BY_OTHERS.label("used"),
    )
    .select_from(
        _RP.outerjoin(_INVENTORY, _INVENTORY.c.resource_provider_id == _RP.c.id).outerjoin(
            _CLASS, _CLASS.c.id == _INVENTORY.c.resource_class_id
        )
    )
    .where(_RP.c.uuid.in_(bindparam("uuids", expanding=True)))
)
_CLASS_ID_BY_NAME = select(_CLASS.c.id).where(_CLASS.c.name == bindparam("name"))
_DELETE_ALLOCATIONS_OF = delete(_ALLOCATION).where(
    _ALLOCATION.c.consumer_id.in_(bindparam("ids", expanding=True))
)
_INSERT_CONSUMER = insert(_CONSUMER)
_DELETE_CONSUMER = delete(_CONSUMER).where(_CONSUMER.c.id == bindparam("consumer_id"))
_UPDATE_CONSUMER = (
    update(_CONSUMER)
    .where(_CONSUMER.c.id == bindparam("consumer_id"))
    .values(
        generation=bindparam("new_generation"),
        project_id=bindparam("new_project_id"),
        user_id=bindparam("new_user_id"),
        consumer_type=bindparam("new_consumer_type"),
        updated_at=bindparam("moment"),
    )
)
_BUMP_PROVIDER = (
    update(_RP)
    .where(_RP.c.id == bindparam("provider_id"), _RP.c.generation == bindparam("expected"))
    .values(generation=bindparam("expected") + 1)
)


_BUMP_PROVIDER_AND_REVISION = _BUMP_PROVIDER.add_cte(_BUMP_REVISION.cte("revision_bump"))


_ALLOCATION_FIELDS = (
    "consumer_id",
    "resource_provider_id",
    "resource_class_id",
    "used",
    "created_at",
    "updated_at",
)


ROWS_PER_INSERT = 400  # SQLite takes at most 500 SELECTs in one UNION ALL


@functools.cache
def _insert_allocations(count: int) -> Any:
    """One INSERT of `count` allocations (at most ROWS_PER_INSERT), built once per count: an
    executemany costs PostgreSQL's driver a pipeline and its extra round trips. Its rows
    are a UNION ALL of SELECTs rather than a multi-row VALUES, which SQLAlchemy would
    compile anew for every claim (it does not cache those)."""
    rows = [
        select(*(bindparam(f"{name}_{index}", type_=_ALLOCATION.c[name].type)
                 for name in _ALLOCATION_FIELDS))
        for index in range(count)
    ]  # fmt: skip
    return insert(_ALLOCATION).from_select(
        list(_ALLOCATION_FIELDS), rows[0] if count == 1 else union_all(*rows)
    )


def _allocation_inserts(rows: Sequence[Mapping[str, Any]]) -> Iterator[tuple[Any, dict[str, Any]]]:
    """The INSERTs that store `rows`, ROWS_PER_INSERT at a time, with their values."""
    for start in range(0, len(rows), ROWS_PER_INSERT):
        batch = rows[start : start + ROWS_PER_INSERT]
        values = {f"{key}_{index}": value for index, row in enumerate(batch)
                  for key, value in row.items()}  # fmt: skip
        yield _insert_allocations(len(batch)), values


@functools.cache
def _bump_inserting_allocations(count: int, with_revision: bool) -> Any:
    """On PostgreSQL: a provider's compare-and-swap that also inserts the claim's `count`
    allocations (and moves the revision), one round trip for all three; a failed swap
    rolls the whole transaction back, allocations included."""
    bump = _BUMP_PROVIDER_AND_REVISION if with_revision else _BUMP_PROVIDER
    return bump.add_cte(_insert_allocations(count).cte("new_allocations"))


@dataclass(slots=True)
class _ConsumerState:
    id: int | None  # None: not stored yet
    generation: int
    project_id: str
    user_id: str
    consumer_type: str | None
    created: bool = False  # inserted by this claim, already at its new generation


class _ConsumerExists(Exception):
    """A claim for a new consumer (`consumer_generation: null`) found it already stored."""

    def __init__(self, consumer_uuid: str) -> None:
        super().__init__(consumer_uuid)
        self.consumer_uuid = consumer_uuid


def _consumer_exists_conflict(ctx: RequestContext, consumer_uuid: str) -> errors.Conflict:
    with ctx.db.read() as session:
        generation = session.scalar(
            select(models.Consumer.generation).where(models.Consumer.uuid == consumer_uuid)
        )
    return errors.Conflict(
        f"consumer generation conflict - expected null but got {generation}",
        code=CONCURRENT_UPDATE,
    )


def _apply_claims(
    write: _StatementWrite,
    claims: Sequence[ConsumerClaim],
    check_generation: bool,
    bump_released: bool = True,
) -> None:
    conn = write.conn
    moment = now()
    if check_generation and all(c.consumer_generation is None and c.allocations for c in claims):
        # New consumers only (the usual claim): insert them straight away; one that exists
        # after all is a generation conflict, found by its unique uuid.
        consumers = _created_consumers(conn, claims, moment)
    else:
        consumers = _claimed_consumers(conn, claims, check_generation)
    wanted_uuids = sorted({rp for c in claims for rp in c.allocations})
    stored = [s.id for s in consumers.values() if s.id is not None and not s.created]
    providers: dict[str, Any] = {}
    inventories: dict[tuple[int, str], Any] = {}
    for row in conn.execute(_PROVIDERS_WITH_INVENTORY, {"uuids": wanted_uuids, "claiming": stored}):
        providers[row.uuid] = row
        if row.class_name is not None:
            inventories[(row.id, row.class_name)] = row
    missing = [u for u in wanted_uuids if u not in providers]
    if missing:
        raise errors.Invalid(
            f"Allocation for resource provider '{missing[0]}' that does not exist."
        )
    # As upstream: the providers named in the new allocations change generation, and so do
    # those of consumers being emptied; a provider a moving consumer leaves does not (a
    # release cannot over-commit anything).
    generations = {row.id: row.generation for row in providers.values()}
    emptied = [
        consumers[c.consumer_uuid].id
        for c in claims
        if not c.allocations and bump_released and consumers[c.consumer_uuid].id is not None
    ]
    if emptied:
        released = set(conn.scalars(_PROVIDERS_OF_CONSUMERS, {"ids": emptied})) - set(generations)
        if released:
            for left in conn.execute(_PROVIDERS_BY_ID, {"ids": sorted(released)}):
                generations[left.id] = left.generation
    if stored:
        conn.execute(_DELETE_ALLOCATIONS_OF, {"ids": stored})
    needed: dict[tuple[int, str], int] = {}
    for claim in claims:
        for provider_uuid, resources in claim.allocations.items():
            provider = providers[provider_uuid]
            for class_name, amount in resources.items():
                inventory = inventories.get((provider.id, class_name))
                if (
                    inventory is None
                    and conn.scalar(_CLASS_ID_BY_NAME, {"name": class_name}) is None
                ):
                    raise errors.Invalid(
                        f"Unable to allocate inventory for consumer {claim.consumer_uuid}: "
                        f"No such resource class {class_name}."
                    )
                _check_unit(inventory, provider.uuid, class_name, amount)
                needed[(provider.id, class_name)] = (
                    needed.get((provider.id, class_name), 0) + amount
                )
    uuids = {row.id: row.uuid for row in providers.values()}
    for (provider_id, class_name), amount in needed.items():
        if _exceeds_capacity(inventories[(provider_id, class_name)], amount):
            raise errors.Conflict(
                f"Unable to allocate inventory: Unable to create allocation for "
                f"'{class_name}' on resource provider '{uuids[provider_id]}'. The "
                "requested amount would exceed the capacity."
            )
    _store_consumers(conn, claims, consumers, moment)
    rows = [
        {
            "consumer_id": consumers[claim.consumer_uuid].id,
            "resource_provider_id": providers[provider_uuid].id,
            "resource_class_id": inventories[
                (providers[provider_uuid].id, class_name)
            ].resource_class_id,
            "used": amount,
            "created_at": moment,
            "updated_at": moment,
        }
        for claim in claims
        for provider_uuid, resources in claim.allocations.items()
        for class_name, amount in resources.items()
    ]
    inserts = list(_allocation_inserts(rows))
    folded_insert = inserts.pop() if write.fold_revision and len(inserts) == 1 else None
    for statement, values in inserts:
        conn.execute(statement, values)
    for provider_id, generation in sorted(generations.items()):
        fold = write.fold_revision and not write.revision_moved
        statement, values = (_BUMP_PROVIDER_AND_REVISION if fold else _BUMP_PROVIDER), {}
        if folded_insert is not None:  # PostgreSQL: the first swap inserts the allocations
            statement, values = _bump_inserting_allocations(len(rows), fold), folded_insert[1]
            folded_insert = None
        result = conn.execute(statement, {"provider_id": provider_id, "expected": generation,
                                          **values})  # fmt: skip
        if result.rowcount != 1:
            raise _ProviderRace()
        write.revision_moved = write.revision_moved or fold


def _claimed_consumers(
    conn: Connection, claims: Sequence[ConsumerClaim], check_generation: bool
) -> dict[str, _ConsumerState]:
    """Each claim's consumer as stored (or as it will be created), generations checked."""
    found = {
        row.uuid: row
        for row in conn.execute(
            _CONSUMERS_BY_UUID, {"uuids": sorted({c.consumer_uuid for c in claims})}
        )
    }
    consumers: dict[str, _ConsumerState] = {}
    for claim in claims:
        row = found.get(claim.consumer_uuid)
        if row is None:
            if check_generation and claim.consumer_generation is not None:
                raise errors.Conflict(
                    "consumer generation conflict - expected null but got "
                    f"{claim.consumer_generation}",
                    code=CONCURRENT_UPDATE,
                )
            state = _ConsumerState(
                None,
                0,
                claim.project_id or INCOMPLETE_CONSUMER_ID,
                claim.user_id or INCOMPLETE_CONSUMER_ID,
                claim.consumer_type,
            )
        else:
            if check_generation and row.generation != claim.consumer_generation:
                raise errors.Conflict(
                    f"consumer generation conflict - expected {row.generation} but got "
                    f"{claim.consumer_generation}",
                    code=CONCURRENT_UPDATE,
                )
            state = _ConsumerState(
                row.id,
                row.generation,
                claim.project_id or row.project_id,
                claim.user_id or row.user_id,
                claim.consumer_type or row.consumer_type,
            )
        consumers[claim.consumer_uuid] = state
    return consumers


def _created_consumers(
    conn: Connection, claims: Sequence[ConsumerClaim], moment: datetime
) -> dict[str, _ConsumerState]:
    consumers = {}
    for claim in claims:
        state = _ConsumerState(
            None,
            1,
            claim.project_id or INCOMPLETE_CONSUMER_ID,
            claim.user_id or INCOMPLETE_CONSUMER_ID,
            claim.consumer_type,
            created=True,
        )
        try:
            state.id = _insert_consumer(conn, claim.consumer_uuid, state, moment)
        except IntegrityError:
            raise _ConsumerExists(claim.consumer_uuid) from None
        consumers[claim.consumer_uuid] = state
    return consumers


def _insert_consumer(
    conn: Connection, consumer_uuid: str, state: _ConsumerState, moment: datetime
) -> int:
    result = conn.execute(
        _INSERT_CONSUMER,
        {
            "uuid": consumer_uuid,
            "project_id": state.project_id,
            "user_id": state.user_id,
            "consumer_type": state.consumer_type,
            "generation": 1,
            "created_at": moment,
            "updated_at": moment,
        },
    )
    key = result.inserted_primary_key
    assert key is not None  # a single-row INSERT always reports it
    return int(key[0])


def _store_consumers(
    conn: Connection,
    claims: Sequence[ConsumerClaim],
    consumers: Mapping[str, _ConsumerState],
    moment: datetime,
) -> None:
    """Create the new consumers that hold something, bump the generation of the others,
    and delete those left with nothing (a consumer exists only while it holds allocations)."""
    for claim in claims:
        state = consumers[claim.consumer_uuid]
        if state.created:
            continue
        if not claim.allocations:
            if state.id is not None:
                conn.execute(_DELETE_CONSUMER, {"consumer_id": state.id})
        elif state.id is None:
            state.id = _insert_consumer(conn, claim.consumer_uuid, state, moment)
        else:
            conn.execute(
                _UPDATE_CONSUMER,
                {
                    "consumer_id": state.id,
                    "new_generation": state.generation + 1,
                    "new_project_id": state.project_id,
                    "new_user_id": state.user_id,
                    "new_consumer_type": state.consumer_type,
                    "moment": moment,
                },
            )


def _check_unit(inventory: Any, provider_uuid: str, class_name: str, amount: int) -> None:
    if inventory is None:
        raise errors.Conflict(
            f"Unable to allocate inventory: Inventory for '{class_name}' on resource provider "
            f"'{provider_uuid}' invalid."
        )
    if _violates_units(inventory, amount):
        raise errors.Conflict(
            f"Unable to allocate inventory: Unable to create allocation for '{class_name}' on "
            f"resource provider '{provider_uuid}'. The requested amount would violate "
            "inventory constraints."
        )


def get_consumer(ctx: RequestContext, consumer_uuid: str) -> ConsumerView | None:
    with ctx.db.read() as session:
        consumer = session.scalar(
            select(models.Consumer).where(models.Consumer.uuid == consumer_uuid)
        )
        if consumer is None:
            return None
        names = _class_names(session)
        rows = session.execute(
            select(
                models.Allocation, models.ResourceProvider.uuid, models.ResourceProvider.generation
            )
            .join(
                models.ResourceProvider,
                models.ResourceProvider.id == models.Allocation.resource_provider_id,
            )
            .where(models.Allocation.consumer_id == consumer.id)
        )
        allocations: dict[str, dict[str, int]] = {}
        generations: dict[str, int] = {}
        for allocation, provider_uuid, generation in rows:
            allocations.setdefault(provider_uuid, {})[names[allocation.resource_class_id]] = (
                allocation.used
            )
            generations[provider_uuid] = generation
        return ConsumerView(
            consumer.uuid,
            consumer.project_id,
            consumer.user_id,
            consumer.generation,
            consumer.consumer_type,
            allocations,
            generations,
            consumer.updated_at,
        )


def consumers_of_type(
    ctx: RequestContext, consumer_type: str, created_before: datetime
) -> list[str]:
    """Consumers of one type that exist since before a moment (for the services that own
    them to find claims left by a crash)."""
    with ctx.db.read() as session:
        return list(
            session.scalars(
                select(models.Consumer.uuid).where(
                    models.Consumer.consumer_type == consumer_type,
                    models.Consumer.created_at < created_before,
                )
            )
        )


def delete_allocations(ctx: RequestContext, consumer_uuid: str) -> None:
    current = get_consumer(ctx, consumer_uuid)
    if current is None or not current.allocations:
        raise errors.NotFound(f"No allocations for consumer '{consumer_uuid}'")
    set_allocations(
        ctx, [ConsumerClaim(consumer_uuid, {})], check_generation=False, bump_released=False
    )


def provider_allocations(
    ctx: RequestContext, provider_uuid: str
) -> tuple[Provider, dict[str, tuple[dict[str, int], int]]]:
    """Consumer uuid -> (class -> amount, consumer generation) on one provider."""
    with ctx.db.read() as session:
        row = _provider_row(session, provider_uuid)
        names = _class_names(session)
        result: dict[str, tuple[dict[str, int], int]] = {}
        for allocation, consumer_uuid, generation in session.execute(
            select(models.Allocation, models.Consumer.uuid, models.Consumer.generation)
            .join(models.Consumer, models.Consumer.id == models.Allocation.consumer_id)
            .where(models.Allocation.resource_provider_id == row.id)
        ):
            resources, _ = result.setdefault(consumer_uuid, ({}, generation))
            resources[names[allocation.resource_class_id]] = allocation.used
        return _provider_views(session, [row])[0], result


def total_usages(
    ctx: RequestContext,
    project_id: str,
    user_id: str | None,
    consumer_type: str | None,
    by_type: bool,
) -> dict[str, Any]:
    """Usage summed over a project's (and user's) consumers; grouped by consumer type when
    `by_type` (1.38), where "all" merges the types and "unknown" is the untyped ones."""
    with ctx.db.read() as session:
        stmt = (
            select(
                models.Consumer.consumer_type,
                models.Allocation.resource_class_id,
                func.sum(models.Allocation.used),
                func.count(func.distinct(models.Consumer.id)),
            )
            .join(models.Consumer, models.Consumer.id == models.Allocation.consumer_id)
            .where(models.Consumer.project_id == project_id)
            .group_by(models.Consumer.consumer_type, models.Allocation.resource_class_id)
        )
        if user_id is not None:
            stmt = stmt.where(models.Consumer.user_id == user_id)
        if consumer_type == "unknown":
            stmt = stmt.where(models.Consumer.consumer_type.is_(None))
        elif consumer_type not in (None, "all"):
            stmt = stmt.where(models.Consumer.consumer_type == consumer_type)
        names = _class_names(session)
        rows = session.execute(stmt).all()
        if not by_type:
            flat: dict[str, int] = {}
            for _type, class_id, used, _count in rows:
                flat[names[class_id]] = flat.get(names[class_id], 0) + int(used)
            return flat
        consumer_counts = _consumer_counts(session, project_id, user_id)
        grouped: dict[str, dict[str, int]] = {}
        for type_name, class_id, used, _count in rows:
            key = "all" if consumer_type == "all" else (type_name or "unknown")
            bucket = grouped.setdefault(key, {})
            bucket[names[class_id]] = bucket.get(names[class_id], 0) + int(used)
            bucket["consumer_count"] = (
                sum(consumer_counts.values()) if key == "all" else consumer_counts.get(type_name, 0)
            )
        return grouped


def _consumer_counts(
    session: Session, project_id: str, user_id: str | None
) -> dict[str | None, int]:
    stmt = (
        select(models.Consumer.consumer_type, func.count(models.Consumer.id))
        .where(models.Consumer.project_id == project_id)
        .group_by(models.Consumer.consumer_type)
    )
    if user_id is not None:
        stmt = stmt.where(models.Consumer.user_id == user_id)
    return _pairs(session, stmt)


# Allocation candidates -----------------------------------------------------------------


def allocation_candidates(
    ctx: RequestContext, query: candidates.Query, max_age_s: float = 0.0
) -> tuple[candidates.Snapshot, list[candidates.Candidate]]:
    """Check the names in the request exist (400 otherwise), then search a snapshot.

    `max_age_s` lets an in-process scheduler search a snapshot refreshed that recently
    instead of re-reading usage after every claim: its claims are checked against the
    database anyway, and it records them in the snapshot (`record_claim`)."""
    with ctx.db.read() as session:
        known_classes = set(session.scalars(select(models.ResourceClass.name)))
        for group in query.groups:
            for class_name in group.resources:
                if class_name not in known_classes:
                    raise errors.Invalid(
                        f"Invalid resource class in resources parameter: "
                        f"No such resource class {class_name}."
                    )
        wanted_traits = {t for g in query.groups for any_of in g.required for t in any_of}
        wanted_traits |= {t for g in query.groups for t in g.forbidden}
        wanted_traits |= query.root_required | query.root_forbidden
        if wanted_traits:
            _trait_ids(session, wanted_traits)
        snapshot = _current_snapshot(ctx, session, max_age_s)
    return snapshot, candidates.find(snapshot, query)


@dataclass(slots=True)
class _SnapshotCache:
    lock: threading.Lock = field(default_factory=threading.Lock)
    snapshot: candidates.Snapshot | None = None
    refreshed_at: float = 0.0


def _snapshot_cache(ctx: RequestContext) -> _SnapshotCache:
    cache: _SnapshotCache = ctx.runtime.state.setdefault("placement.snapshot", _SnapshotCache())
    return cache


def _current_snapshot(
    ctx: RequestContext, session: Session, max_age_s: float = 0.0
) -> candidates.Snapshot:
    """This process's snapshot, brought up to date with what changed in the database (by
    any worker) since it was last read, unless it was read less than `max_age_s` ago."""
    cache = _snapshot_cache(ctx)
    with cache.lock:
        moment = time.monotonic()
        if cache.snapshot is None or moment - cache.refreshed_at >= max_age_s:
            cache.snapshot = candidates.refresh_snapshot(session, cache.snapshot)
            cache.refreshed_at = moment
        return cache.snapshot


def record_claim(ctx: RequestContext, allocations: Mapping[str, Mapping[str, int]]) -> None:
    """Count a claim this process just made in its snapshot's usage, so searches that reuse
    the snapshot (`max_age_s`) see the room it took until the next refresh reads it back."""
    cache = _snapshot_cache(ctx)
    with cache.lock:
        snapshot = cache.snapshot
        if snapshot is None:
            return
        for provider_uuid, resources in allocations.items():
            node = snapshot.by_uuid.get(provider_uuid)
            if node is None:
                continue
            for class_name, amount in resources.items():
                key = (node.id, class_name)
                snapshot.usage[key] = snapshot.usage.get(key, 0) + amount


# Reshaper --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ProviderInventories:
    provider_uuid: str
    generation: int
    inventories: Mapping[str, InventorySpec]


def reshape(
    ctx: RequestContext,
    inventories: Sequence[ProviderInventories],
    claims: Sequence[ConsumerClaim],
) -> None:
    """Move inventory and the allocations against it in one transaction (e.g. VGPUs from a
    compute node to its new GPU children): new inventory is added first, allocations are
    replaced, then inventory that is no longer offered is removed."""
    with _writing(ctx) as session:
        rows = {}
        for item in inventories:
            row = session.scalar(
                select(models.ResourceProvider).where(
                    models.ResourceProvider.uuid == item.provider_uuid
                )
            )
            if row is None:
                raise errors.Invalid(
                    f"Resource provider {item.provider_uuid} in inventories not found",
                    code=PROVIDER_NOT_FOUND,
                )
            if row.generation != item.generation:
                raise errors.Conflict(
                    f"resource provider generation conflict for provider {item.provider_uuid}: "
                    f"actual: {row.generation}, given: {item.generation}",
                    code=CONCURRENT_UPDATE,
                )
            for class_name in item.inventories:
                if (
                    session.scalar(
                        select(models.ResourceClass.id).where(
                            models.ResourceClass.name == class_name
                        )
                    )
                    is None
                ):
                    raise errors.Invalid(
                        f"malformed reshaper data: No such resource class {class_name}."
                    )
            rows[item.provider_uuid] = row
        for item in inventories:
            if item.inventories:
                row = rows[item.provider_uuid]
                for class_name, spec in item.inventories.items():
                    _write_inventory(session, row.id, class_id_of(session, class_name), spec)
                _bump_generation(session, row, row.generation, "Reshaping inventories")
        session.flush()  # the new inventory, before the claims' table statements read it
        try:
            _apply_claims(_StatementWrite(session.connection()), claims, check_generation=True)
        except _ProviderRace:
            raise concurrent_update("Reshaping allocations") from None
        except _ConsumerExists as exc:
            raise _consumer_exists_conflict(ctx, exc.consumer_uuid) from None
        session.flush()
        for item in inventories:
            row = rows[item.provider_uuid]
            session.refresh(row)
            _set_exact_inventory(session, row, item.inventories)
            _bump_generation(session, row, row.generation, "Reshaping inventories")


def _set_exact_inventory(
    session: Session, row: models.ResourceProvider, inventories: Mapping[str, InventorySpec]
) -> None:
    wanted = {class_id_of(session, name): spec for name, spec in inventories.items()}
    usage = _usage_by_class(session, row.id)
    names = _class_names(session)
    in_use = [names[c] for c in sorted(usage) if c not in wanted and usage[c]]
    if in_use:
        raise errors.Conflict(
            f"update conflict: Inventory for '{', '.join(in_use)}' on resource provider "
            f"'{row.uuid}' in use.",
            code=INVENTORY_INUSE,
        )
    session.execute(
        delete(models.Inventory).where(
            models.Inventory.resource_provider_id == row.id,
            models.Inventory.resource_class_id.not_in(list(wanted)),
        )
    )
    for class_id, spec in wanted.items():
        _write_inventory(session, row.id, class_id, spec)
