"""Keyset pages: every row exactly once, in order, whatever the page size."""

import pytest
from sqlalchemy import Integer, String, create_engine, select
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from pocketstack.core import errors, pagination


class _Base(DeclarativeBase):
    pass


class Item(_Base):
    __tablename__ = "item"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(10))


@pytest.fixture
def session() -> Session:
    engine = create_engine("sqlite://")
    _Base.metadata.create_all(engine)
    session = Session(engine)
    session.add_all(Item(id=i, name="abc"[i % 3]) for i in range(1, 11))
    session.commit()
    return session


@pytest.mark.parametrize("descending", [False, True])
def test_pages_cover_every_row_once(session: Session, descending: bool) -> None:
    sort = pagination.parse_sort(["name"], ["desc" if descending else "asc"], ["name", "id"])
    seen: list[int] = []
    marker = None
    while True:
        page = list(session.scalars(pagination.apply(select(Item), Item, sort, marker, 3)))
        if not page:
            break
        seen.extend(item.id for item in page)
        marker = page[-1]
    full = list(session.scalars(pagination.apply(select(Item), Item, sort, None, None)))
    assert seen == [item.id for item in full]
    assert sorted(seen) == list(range(1, 11))


def test_limits_are_validated() -> None:
    assert pagination.parse_limit(None) is None
    assert pagination.parse_limit("5", maximum=3) == 3
    with pytest.raises(errors.Invalid):
        pagination.parse_limit("-1")
    with pytest.raises(errors.Invalid):
        pagination.parse_limit("many")


def test_unknown_sort_key_is_rejected() -> None:
    with pytest.raises(errors.Invalid, match="sort key"):
        pagination.parse_sort(["password"], [], ["name"])
    with pytest.raises(errors.Invalid, match="direction"):
        pagination.parse_sort(["name"], ["sideways"], ["name"])
