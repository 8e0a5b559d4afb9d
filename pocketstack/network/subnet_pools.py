"""Subnet pools: prefixes a project's subnets are carved from, as Neutron's
subnet_allocation extension serves them. A subnet asking for `subnetpool_id`
(and a `prefixlen`, or the pool's default) gets the first free prefix of the
pool that overlaps no subnet already taken from it."""

from __future__ import annotations

import ipaddress
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from pocketstack.core import errors
from pocketstack.core.context import RequestContext
from pocketstack.network import common, models
from pocketstack.network.query import ListQuery, filtered, paged, tags_of

FILTERS = {
    "id": "id",
    "name": "name",
    "description": "description",
    "project_id": "project_id",
    "tenant_id": "project_id",
    "ip_version": "ip_version",
    "shared": "shared",
    "is_default": "is_default",
    "default_prefixlen": "default_prefixlen",
    "min_prefixlen": "min_prefixlen",
    "max_prefixlen": "max_prefixlen",
    "address_scope_id": "address_scope_id",
    "revision_number": "revision_number",
}
SORTS = ("id", "name", "project_id", "ip_version", "created_at", "updated_at", "revision_number")


def _view(row: models.SubnetPool, tags: list[str]) -> dict[str, Any]:
    return {
        "id": row.id,
        "name": row.name,
        "description": row.description,
        "project_id": row.project_id,
        "tenant_id": row.project_id,
        "ip_version": row.ip_version,
        "prefixes": row.prefixes,
        "default_prefixlen": row.default_prefixlen,
        "min_prefixlen": row.min_prefixlen,
        "max_prefixlen": row.max_prefixlen,
        "shared": row.shared,
        "is_default": row.is_default,
        "default_quota": row.default_quota,
        "address_scope_id": row.address_scope_id,
        "revision_number": row.revision_number,
        "tags": tags,
        "created_at": common.timestamp(row.created_at),
        "updated_at": common.timestamp(row.updated_at),
    }


def _networks(prefixes: Any) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    if not isinstance(prefixes, list) or not prefixes:
        raise errors.Invalid(
            "Invalid input for prefixes: a list of CIDRs is required.", code="HTTPBadRequest"
        )
    try:
        found = [ipaddress.ip_network(str(p), strict=False) for p in prefixes]
    except ValueError as exc:
        raise errors.Invalid(f"Invalid input for prefixes: {exc}", code="HTTPBadRequest") from None
    if len({n.version for n in found}) != 1:
        raise errors.Invalid(
            "Cannot mix IPv4 and IPv6 prefixes in a subnet pool.", code="PrefixVersionMismatch"
        )
    return sorted(ipaddress.collapse_addresses(found))  # type: ignore[type-var]


def _visible(ctx: RequestContext) -> Any:
    table = models.SubnetPool
    return True if ctx.is_admin else (table.project_id == ctx.project_id) | table.shared


def _row(session: Session, ctx: RequestContext, pool_id: str) -> models.SubnetPool:
    row = session.get(models.SubnetPool, pool_id)
    if row is None or not (ctx.is_admin or row.shared or row.project_id == ctx.project_id):
        raise common.not_found("subnetpool", pool_id)
    return row


def create_pool(ctx: RequestContext, body: dict[str, Any]) -> dict[str, Any]:
    project_id = common.check_project(ctx, body)
    ctx.authorize("create_subnetpool", {"project_id": project_id})
    if body.get("shared") or body.get("is_default"):
        ctx.authorize("create_subnetpool:shared", {"project_id": project_id})
    prefixes = _networks(body.get("prefixes"))
    width = prefixes[0].max_prefixlen
    low = int(body.get("min_prefixlen", 8 if width == 32 else 64))
    high = int(body.get("max_prefixlen", width))
    default = int(body.get("default_prefixlen", low))
    if not low <= default <= high <= width:
        raise errors.Invalid(
            f"Illegal prefix bounds: min {low}, default {default}, max {high}.",
            code="IllegalSubnetPoolPrefixBounds",
        )
    moment = common.now()
    with ctx.db.write() as session:
        row = models.SubnetPool(
            id=common.new_id(),
            project_id=project_id,
            name=body.get("name", ""),
            description=body.get("description", ""),
            revision_number=1,
            created_at=moment,
            updated_at=moment,
            ip_version=prefixes[0].version,
            prefixes=[str(p) for p in prefixes],
            default_prefixlen=default,
            min_prefixlen=low,
            max_prefixlen=high,
            shared=body.get("shared", False),
            is_default=body.get("is_default", False),
            default_quota=body.get("default_quota"),
            address_scope_id=body.get("address_scope_id"),
        )
        session.add(row)
        common.set_tags(session, "subnetpools", row.id, body.get("tags", []))
        session.flush()
        return _view(row, common.tags(session, "subnetpools", row.id))


def list_pools(ctx: RequestContext, query: ListQuery) -> list[dict[str, Any]]:
    ctx.authorize("get_subnetpool", {"project_id": ctx.project_id})
    table = models.SubnetPool
    with ctx.db.read() as session:
        stmt = filtered(select(table).where(_visible(ctx)), table, query, FILTERS, "subnetpools")
        rows = paged(session, stmt, table, query, SORTS)
        tag_map = tags_of(session, "subnetpools", [r.id for r in rows])
        return [_view(r, tag_map[r.id]) for r in rows]


def get_pool(ctx: RequestContext, pool_id: str) -> dict[str, Any]:
    with ctx.db.read() as session:
        row = _row(session, ctx, pool_id)
        return _view(row, common.tags(session, "subnetpools", row.id))


def update_pool(
    ctx: RequestContext, pool_id: str, body: dict[str, Any], if_match: str | None = None
) -> dict[str, Any]:
    with ctx.db.write() as session:
        row = _row(session, ctx, pool_id)
        ctx.authorize("update_subnetpool", {"project_id": row.project_id})
        common.check_revision(row, if_match)
        if "prefixes" in body:
            added = _networks(body["prefixes"])
            kept = [ipaddress.ip_network(p) for p in row.prefixes]
            if not all(any(old.subnet_of(new) for new in added) for old in kept):  # type: ignore[arg-type]
                raise errors.Invalid(
                    "Existing prefixes must be a subset of the new prefixes",
                    code="IllegalSubnetPoolPrefixUpdate",
                )
            row.prefixes = [str(p) for p in added]
        for attribute in (
            "name",
            "description",
            "default_prefixlen",
            "min_prefixlen",
            "max_prefixlen",
            "is_default",
            "default_quota",
        ):
            if attribute in body:
                setattr(row, attribute, body[attribute])
        common.stamp(row)
        session.flush()
        return _view(row, common.tags(session, "subnetpools", row.id))


def delete_pool(ctx: RequestContext, pool_id: str) -> None:
    with ctx.db.write() as session:
        row = _row(session, ctx, pool_id)
        ctx.authorize("delete_subnetpool", {"project_id": row.project_id})
        used = session.scalar(
            select(models.Subnet.id).where(models.Subnet.subnetpool_id == pool_id)
        )
        if used is not None:
            raise errors.Conflict(
                f"Subnet pool {pool_id} could not be deleted: subnets use it.",
                code="SubnetPoolInUse",
            )
        common.forget_tags(session, "subnetpools", pool_id)
        session.delete(row)


def carve(ctx: RequestContext, pool_id: str, prefixlen: int | None) -> str:
    """The first free prefix of the pool (`prefixlen` or its default) for a new subnet."""
    with ctx.db.read() as session:
        pool = _row(session, ctx, pool_id)
        length = pool.default_prefixlen if prefixlen is None else int(prefixlen)
        if not pool.min_prefixlen <= length <= pool.max_prefixlen:
            raise errors.Invalid(
                f"Invalid input for prefixlen: {length} is outside the pool's bounds "
                f"{pool.min_prefixlen}-{pool.max_prefixlen}.",
                code="InvalidInput",
            )
        taken = [
            ipaddress.ip_network(c)
            for c in session.scalars(
                select(models.Subnet.cidr).where(models.Subnet.subnetpool_id == pool_id)
            )
        ]
        for prefix in pool.prefixes:
            for candidate in ipaddress.ip_network(prefix).subnets(new_prefix=length):
                if not any(candidate.overlaps(t) for t in taken):
                    return str(candidate)
    raise errors.Conflict(
        f"Insufficient prefix space to allocate subnet size /{length}.",
        code="SubnetAllocationError",
    )
