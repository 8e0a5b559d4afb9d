"""How Neutron lists: any attribute as a filter (repeated = any of), `fields`, sort keys,
limit/marker, tags filters. Services describe their resources' filterable columns; the
API layer parses the query string into a `ListQuery`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Boolean, Integer, Select, and_, exists, not_, select

from pocketstack.core import errors, pagination
from pocketstack.network import models

TRUE_WORDS = {"true", "1", "yes", "on"}
FALSE_WORDS = {"false", "0", "no", "off"}


@dataclass(frozen=True, slots=True)
class ListQuery:
    filters: Mapping[str, Sequence[str]] = field(default_factory=dict)
    sort_keys: Sequence[str] = ()
    sort_dirs: Sequence[str] = ()
    limit: int | None = None
    marker: str | None = None
    page_reverse: bool = False
    tags: Sequence[str] = ()
    tags_any: Sequence[str] = ()
    not_tags: Sequence[str] = ()
    not_tags_any: Sequence[str] = ()


def _value(column: Any, raw: str, attribute: str) -> Any:
    """A filter value as the column's type."""
    if isinstance(column.type, Boolean):
        word = raw.lower()
        if word in TRUE_WORDS:
            return True
        if word in FALSE_WORDS:
            return False
        raise errors.Invalid(f"Invalid input for {attribute}. Reason: '{raw}' is not boolean.")
    if isinstance(column.type, Integer):
        try:
            return int(raw)
        except ValueError:
            raise errors.Invalid(
                f"Invalid input for {attribute}. Reason: '{raw}' is not an integer."
            ) from None
    return raw


def filtered(
    stmt: Select[Any], model: Any, query: ListQuery, columns: Mapping[str, str], kind: str
) -> Select[Any]:
    """`stmt` narrowed by the query's attribute and tag filters. `columns` maps an API
    attribute to its model column; filters on attributes not in it are ignored, as Neutron
    ignores unknown filters."""
    for attribute, raw_values in query.filters.items():
        column_name = columns.get(attribute)
        if column_name is None:
            continue
        column = getattr(model, column_name)
        values = [_value(column, raw, attribute) for raw in raw_values]
        if any(v is None or v == "" for v in values) and column.nullable:
            stmt = stmt.where((column.in_([v for v in values if v])) | column.is_(None))
        else:
            stmt = stmt.where(column.in_(values))
    return _tag_filtered(stmt, model, query, kind)


def _has_tag(model: Any, kind: str, tag: str) -> Any:
    tag_table = models.Tag
    return exists().where(
        tag_table.resource_type == kind, tag_table.resource_id == model.id, tag_table.tag == tag
    )


def _tag_filtered(stmt: Select[Any], model: Any, query: ListQuery, kind: str) -> Select[Any]:
    if query.tags:
        stmt = stmt.where(and_(*(_has_tag(model, kind, t) for t in query.tags)))
    if query.tags_any:
        stmt = stmt.where(_any(model, kind, query.tags_any))
    if query.not_tags:
        stmt = stmt.where(not_(and_(*(_has_tag(model, kind, t) for t in query.not_tags))))
    if query.not_tags_any:
        stmt = stmt.where(not_(_any(model, kind, query.not_tags_any)))
    return stmt


def _any(model: Any, kind: str, tags: Sequence[str]) -> Any:
    tag_table = models.Tag
    return exists().where(
        tag_table.resource_type == kind,
        tag_table.resource_id == model.id,
        tag_table.tag.in_(list(tags)),
    )


def paged(
    session: Any, stmt: Select[Any], model: Any, query: ListQuery, sortable: Sequence[str]
) -> list[Any]:
    """Sorted and paged rows (`page_reverse` walks backwards from the marker)."""
    sort = pagination.parse_sort(query.sort_keys, query.sort_dirs, sortable)
    if query.page_reverse:
        sort = [pagination.SortKey(k.column, not k.descending) for k in sort]
    marker = None
    if query.marker is not None:
        marker = session.get(model, query.marker)
        if marker is None:
            raise errors.NotFound(f"Marker {query.marker} could not be found.")
    rows = list(session.scalars(pagination.apply(stmt, model, sort, marker, query.limit)))
    return rows[::-1] if query.page_reverse else rows


def tags_of(session: Any, kind: str, ids: Sequence[str]) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {resource_id: [] for resource_id in ids}
    if ids:
        for row in session.scalars(
            select(models.Tag).where(
                models.Tag.resource_type == kind, models.Tag.resource_id.in_(list(ids))
            )
        ):
            found[row.resource_id].append(row.tag)
    return {k: sorted(v) for k, v in found.items()}
