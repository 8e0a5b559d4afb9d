"""Server groups: servers a project wants on one host (affinity) or apart (anti-affinity),
strictly or, with the soft policies, as a preference.

Called by the API (create, list, show, delete), by the boot path (the
`group` scheduler hint: quota of members, the policy the scheduler
honours) and by the scheduler, which records a member with the host it
claimed (`join`) and gives the claim up when a racing boot got there first.
Members live in the API database with their host, so the scheduler needs no
cell to know where a group's servers are.
"""

from __future__ import annotations

import uuid as uuidlib
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from pocketstack.compute import models, quotas
from pocketstack.core import errors
from pocketstack.core.context import RequestContext

AFFINITY = "affinity"
ANTI_AFFINITY = "anti-affinity"
SOFT_AFFINITY = "soft-affinity"
SOFT_ANTI_AFFINITY = "soft-anti-affinity"
POLICIES = (AFFINITY, ANTI_AFFINITY, SOFT_AFFINITY, SOFT_ANTI_AFFINITY)


def now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


@dataclass(frozen=True, slots=True)
class ServerGroupView:
    uuid: str
    name: str
    project_id: str
    user_id: str
    policy: str
    max_server_per_host: int | None
    members: list[str]

    @property
    def rules(self) -> dict[str, int]:
        if self.max_server_per_host is None:
            return {}
        return {"max_server_per_host": self.max_server_per_host}


@dataclass(frozen=True, slots=True)
class Placement:
    """What the scheduler needs of a group: its policy and where its members are."""

    uuid: str
    policy: str
    max_per_host: int
    members_on: Counter[str]  # host -> members placed there

    def allows(self, host: str) -> bool:
        """The hard policies as a filter; the soft ones allow every host."""
        count = self.members_on.get(host, 0)
        if self.policy == AFFINITY:
            return not self.members_on or count > 0
        if self.policy == ANTI_AFFINITY:
            return count < self.max_per_host
        return True

    def weight(self, host: str) -> int:
        """Higher is better: soft-affinity packs, soft-anti-affinity spreads."""
        count = self.members_on.get(host, 0)
        if self.policy == SOFT_AFFINITY:
            return count
        if self.policy == SOFT_ANTI_AFFINITY:
            return -count
        return 0


def _views(session: Session, rows: Sequence[models.ServerGroup]) -> list[ServerGroupView]:
    members: dict[int, list[str]] = {r.id: [] for r in rows}
    if rows:
        table = models.ServerGroupMember
        for group_id, instance_uuid in session.execute(
            select(table.group_id, table.instance_uuid)
            .where(table.group_id.in_(list(members)))
            .order_by(table.id)
        ):
            members[group_id].append(instance_uuid)
    return [
        ServerGroupView(
            r.uuid, r.name, r.project_id, r.user_id, r.policy, r.max_server_per_host, members[r.id]
        )
        for r in rows
    ]


def create_group(
    ctx: RequestContext, name: str, policy: str, max_server_per_host: int | None
) -> ServerGroupView:
    project_id, user_id = ctx.project_id or "", ctx.user_id or ""
    if policy not in POLICIES:
        raise errors.Invalid(f"Invalid server group policy {policy}.")
    if max_server_per_host is not None and policy != ANTI_AFFINITY:
        raise errors.Invalid("Only anti-affinity policy supports rules.")
    try:
        quotas.check(ctx, project_id, {"server_groups": 1})
    except errors.OverQuota:
        raise errors.OverQuota("Quota exceeded, too many server groups.") from None
    with ctx.db.write() as session:
        row = models.ServerGroup(
            uuid=str(uuidlib.uuid4()),
            name=name,
            project_id=project_id,
            user_id=user_id,
            policy=policy,
            max_server_per_host=max_server_per_host,
            created_at=now(),
        )
        session.add(row)
        session.flush()
        return _views(session, [row])[0]


def _row(session: Session, group_uuid: str) -> models.ServerGroup:
    row = session.scalar(select(models.ServerGroup).where(models.ServerGroup.uuid == group_uuid))
    if row is None:
        raise errors.NotFound(f"Instance group {group_uuid} could not be found.")
    return row


def get_group(ctx: RequestContext, group_uuid: str) -> ServerGroupView:
    with ctx.db.read() as session:
        return _views(session, [_row(session, group_uuid)])[0]


def list_groups(
    ctx: RequestContext, project_id: str | None, offset: int, limit: int | None
) -> list[ServerGroupView]:
    """A project's groups (every project's with None), oldest first."""
    stmt = select(models.ServerGroup).order_by(models.ServerGroup.id)
    if project_id is not None:
        stmt = stmt.where(models.ServerGroup.project_id == project_id)
    stmt = stmt.offset(offset)
    if limit is not None:
        stmt = stmt.limit(limit)
    with ctx.db.read() as session:
        return _views(session, session.scalars(stmt).all())


def delete_group(ctx: RequestContext, group_uuid: str) -> None:
    with ctx.db.write() as session:
        row = _row(session, group_uuid)
        session.execute(
            delete(models.ServerGroupMember).where(models.ServerGroupMember.group_id == row.id)
        )
        session.delete(row)


def for_boot(ctx: RequestContext, group_uuid: str, user_id: str, count: int) -> Placement:
    """The group a boot asks for (400 when unknown), after the members quota: the user's
    members of the group plus `count` must stay within `server_group_members`."""
    with ctx.db.read() as session:
        row = session.scalar(
            select(models.ServerGroup).where(models.ServerGroup.uuid == group_uuid)
        )
        if row is None:
            raise errors.Invalid(f"Instance group {group_uuid} could not be found.")
        table = models.ServerGroupMember
        mine = (
            session.scalar(
                select(func.count()).where(table.group_id == row.id, table.user_id == user_id)
            )
            or 0
        )
        project_id = row.project_id
    limit = quotas.limits(ctx, project_id, user_id)["server_group_members"]
    if limit >= 0 and mine + count > limit:
        raise errors.OverQuota("Quota exceeded, too many servers in group")
    return placement(ctx, group_uuid)


def placement(ctx: RequestContext, group_uuid: str) -> Placement:
    """The group's policy and its members' hosts, as of now."""
    with ctx.db.read() as session:
        row = _row(session, group_uuid)
        table = models.ServerGroupMember
        hosts = session.scalars(
            select(table.host).where(table.group_id == row.id, table.host.is_not(None))
        ).all()
        return Placement(
            row.uuid, row.policy, row.max_server_per_host or 1, Counter(h for h in hosts if h)
        )


def join(ctx: RequestContext, group_uuid: str, instance_uuid: str, user_id: str,
         host: str | None) -> bool:  # fmt: skip
    """Record the server as a member placed on `host`, then check the hard policy again
    against the members other boots recorded meanwhile; on a violation the record is
    taken back and False says to try another host. Two racing boots may both step back
    (each sees the other), never both stay."""
    with ctx.db.write() as session:
        row = _row(session, group_uuid)
        session.add(
            models.ServerGroupMember(
                group_id=row.id, instance_uuid=instance_uuid, user_id=user_id, host=host,
                created_at=now(),
            )
        )  # fmt: skip
        group_id, policy, max_per_host = row.id, row.policy, row.max_server_per_host or 1
    if host is None or policy not in (AFFINITY, ANTI_AFFINITY):
        return True
    table = models.ServerGroupMember
    with ctx.db.read() as session:
        others = Counter(
            h
            for h in session.scalars(
                select(table.host).where(
                    table.group_id == group_id,
                    table.instance_uuid != instance_uuid,
                    table.host.is_not(None),
                )
            )
            if h
        )
    if policy == ANTI_AFFINITY:
        ok = others.get(host, 0) < max_per_host
    else:
        ok = not others or set(others) == {host}
    if not ok:
        leave(ctx, instance_uuid)
    return ok


def leave(ctx: RequestContext, instance_uuid: str) -> None:
    """The server is no longer a member of its group (if it was in one)."""
    with ctx.db.write() as session:
        session.execute(
            delete(models.ServerGroupMember).where(
                models.ServerGroupMember.instance_uuid == instance_uuid
            )
        )


def groups_of(ctx: RequestContext, instance_uuid: str) -> list[str]:
    """The uuid of the server's group, in a list (Nova's `server_groups`, 2.71)."""
    with ctx.db.read() as session:
        return list(
            session.scalars(
                select(models.ServerGroup.uuid)
                .join(
                    models.ServerGroupMember,
                    models.ServerGroupMember.group_id == models.ServerGroup.id,
                )
                .where(models.ServerGroupMember.instance_uuid == instance_uuid)
            )
        )
