"""limit/marker pagination and sort keys, as OpenStack list APIs take them.

Pages are keyset pages: the marker row's sort values bound the next page, so
a page costs the same at any depth and rows added meanwhile are not skipped.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, func, literal, or_

from pocketstack.core import errors


@dataclass(frozen=True, slots=True)
class SortKey:
    column: str
    descending: bool = False


def parse_limit(raw: str | None, maximum: int | None = None) -> int | None:
    """Validate `limit`; None means no limit. The service cap applies silently, as upstream."""
    if raw is None or raw == "":
        return maximum
    try:
        limit = int(raw)
    except ValueError:
        raise errors.Invalid(f"limit must be an integer, got {raw!r}") from None
    if limit < 0:
        raise errors.Invalid("limit must be 0 or greater")
    return min(limit, maximum) if maximum is not None else limit


def parse_sort(
    keys: Sequence[str], dirs: Sequence[str], allowed: Sequence[str], default: str = "id"
) -> list[SortKey]:
    """Turn `sort_key`/`sort_dir` (or `sort=key:dir`) lists into sort keys, checking both."""
    result: list[SortKey] = []
    for index, key in enumerate(keys):
        if key not in allowed:
            raise errors.Invalid(f"Invalid sort key {key!r}; allowed: {', '.join(allowed)}")
        direction = dirs[index] if index < len(dirs) else (dirs[-1] if dirs else "asc")
        if direction not in ("asc", "desc"):
            raise errors.Invalid(f"Invalid sort direction {direction!r}; use 'asc' or 'desc'")
        result.append(SortKey(key, direction == "desc"))
    if not any(k.column == default for k in result):
        result.append(SortKey(default, result[-1].descending if result else False))
    return result


def apply(
    stmt: Select[Any],
    model: Any,
    sort: Sequence[SortKey],
    marker: Any | None,
    limit: int | None,
    nulls_as: Mapping[str, Any] | None = None,
) -> Select[Any]:
    """Order `stmt` by `sort`, start after the `marker` row, and cap at `limit`.

    `nulls_as` gives nullable sort columns a stand-in value, so NULLs sort the same on
    every database (SQLite and MariaDB put them first, PostgreSQL last) and a marker row
    with a NULL still bounds the next page."""
    keyset = _Keyset(model, nulls_as or {})
    for key in sort:
        column = keyset.column(key.column)
        stmt = stmt.order_by(column.desc() if key.descending else column.asc())
    if marker is not None:
        stmt = stmt.where(keyset.after(sort, marker))
    if limit is not None:
        stmt = stmt.limit(limit)
    return stmt


@dataclass(frozen=True, slots=True)
class _Keyset:
    model: Any
    nulls_as: Mapping[str, Any]

    def column(self, name: str) -> Any:
        column = getattr(self.model, name)
        return func.coalesce(column, self.nulls_as[name]) if name in self.nulls_as else column

    def value(self, row: Any, name: str) -> Any:
        """The marker row's value as a bound parameter of the column's type (a boolean one
        too, which SQLAlchemy would otherwise take for a constant it cannot compare)."""
        value = getattr(row, name)
        value = self.nulls_as.get(name) if value is None else value
        return literal(value, type_=getattr(self.model, name).type)

    def after(self, sort: Sequence[SortKey], marker: Any) -> ColumnElement[bool]:
        """Rows strictly after `marker` in the (key1, key2, ...) lexicographic order."""
        clauses = []
        for index, key in enumerate(sort):
            equal_prefix = [
                self.column(k.column) == self.value(marker, k.column) for k in sort[:index]
            ]
            column, value = self.column(key.column), self.value(marker, key.column)
            beyond = column < value if key.descending else column > value
            clauses.append(and_(*equal_prefix, beyond))
        return or_(*clauses)
