"""Per-project limits on networking resources, as Neutron's quota API keeps them.

Creates count the project's rows in the same transaction that adds the new
one, so the limit holds under concurrent creates (SQLite serializes writers;
on PostgreSQL a race may pass by one). Over the limit is a 409 OverQuota.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from pocketstack.core import errors
from pocketstack.core.context import RequestContext
from pocketstack.network import models

DEFAULTS: Mapping[str, int] = {
    "network": 100,
    "subnet": 100,
    "port": 500,
    "security_group": 10,
    "security_group_rule": 100,
    "router": 10,
    "floatingip": 50,
    "subnetpool": -1,
    "rbac_policy": 10,
}
COUNTED: Mapping[str, Any] = {
    "network": models.Network,
    "subnet": models.Subnet,
    "port": models.Port,
    "security_group": models.SecurityGroup,
    "security_group_rule": models.SecurityGroupRule,
    "router": models.Router,
    "floatingip": models.FloatingIp,
    "subnetpool": models.SubnetPool,
}


def limits(session: Session, project_id: str) -> dict[str, int]:
    found = dict(DEFAULTS)
    for row in session.scalars(select(models.Quota).where(models.Quota.project_id == project_id)):
        found[row.resource] = row.limit
    return found


def used(session: Session, project_id: str, resource: str) -> int:
    table = COUNTED.get(resource)
    if table is None:
        return 0
    counted = select(func.count()).select_from(table).where(table.project_id == project_id)
    return int(session.scalar(counted) or 0)


def check(session: Session, project_id: str, resource: str, adding: int) -> None:
    limit = limits(session, project_id).get(resource, -1)
    if limit >= 0 and used(session, project_id, resource) + adding > limit:
        raise errors.Conflict(f"Quota exceeded for resources: ['{resource}'].", code="OverQuota")


def get(ctx: RequestContext, project_id: str) -> dict[str, int]:
    ctx.authorize("get_quota", {"project_id": project_id})
    with ctx.db.read() as session:
        return limits(session, project_id)


def details(ctx: RequestContext, project_id: str) -> dict[str, dict[str, int]]:
    ctx.authorize("get_quota", {"project_id": project_id})
    with ctx.db.read() as session:
        return {
            resource: {"limit": limit, "used": used(session, project_id, resource), "reserved": 0}
            for resource, limit in limits(session, project_id).items()
        }


def listed(ctx: RequestContext) -> list[dict[str, Any]]:
    """Projects with limits of their own (Neutron lists only those)."""
    ctx.authorize("get_quota", {})
    with ctx.db.read() as session:
        projects = sorted(set(session.scalars(select(models.Quota.project_id))))
        return [{**limits(session, p), "project_id": p, "tenant_id": p} for p in projects]


def update(ctx: RequestContext, project_id: str, changes: Mapping[str, Any]) -> dict[str, int]:
    """New limits; with `check_limit` (quota-check-limit), none below what is in use."""
    ctx.authorize("update_quota", {"project_id": project_id})
    changes = dict(changes)
    check_limit = changes.pop("check_limit", False)
    for resource, value in changes.items():
        if resource not in DEFAULTS:
            raise errors.Invalid(f"Unrecognized attribute(s) '{resource}'", code="HTTPBadRequest")
        if not isinstance(value, int) or isinstance(value, bool) or value < -1:
            raise errors.Invalid(
                f"Invalid input for {resource}. Reason: '{value}' is not an integer >= -1.",
                code="HTTPBadRequest",
            )
    with ctx.db.write() as session:
        for resource, value in changes.items():
            if check_limit is True and 0 <= value < used(session, project_id, resource):
                raise errors.Invalid(
                    f"Quota limit {value} for {resource} must be greater than or equal to "
                    "already used and reserved "
                    f"{used(session, project_id, resource)}.",
                    code="InvalidQuotaValue",
                )
            row = session.get(models.Quota, (project_id, resource))
            if row is None:
                session.add(models.Quota(project_id=project_id, resource=resource, limit=value))
            else:
                row.limit = value
        session.flush()
        return limits(session, project_id)


def reset(ctx: RequestContext, project_id: str) -> None:
    ctx.authorize("delete_quota", {"project_id": project_id})
    with ctx.db.write() as session:
        session.execute(delete(models.Quota).where(models.Quota.project_id == project_id))
