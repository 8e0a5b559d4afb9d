"""QoS policies with bandwidth-limit rules, as Neutron's qos extension serves them.

A policy is applied by naming it in a port's, a network's or a floating IP's
`qos_policy_id`; a port without one takes its network's. The data plane turns
each rule into HTB classes (host/qos.py).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, or_, select
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
    "shared": "shared",
    "is_default": "is_default",
    "revision_number": "revision_number",
}
SORTS = ("id", "name", "project_id", "created_at", "updated_at", "revision_number")
DIRECTIONS = ("egress", "ingress")
RULE_TYPES = [{"type": "bandwidth_limit"}]


def _rule_view(rule: models.QosBandwidthLimitRule) -> dict[str, Any]:
    return {
        "id": rule.id,
        "qos_policy_id": rule.qos_policy_id,
        "max_kbps": rule.max_kbps,
        "max_burst_kbps": rule.max_burst_kbps,
        "direction": rule.direction,
        "type": "bandwidth_limit",
    }


def _view(session: Session, row: models.QosPolicy, tags: list[str]) -> dict[str, Any]:
    rules = session.scalars(
        select(models.QosBandwidthLimitRule)
        .where(models.QosBandwidthLimitRule.qos_policy_id == row.id)
        .order_by(models.QosBandwidthLimitRule.direction)
    )
    return {
        "id": row.id,
        "name": row.name,
        "description": row.description,
        "project_id": row.project_id,
        "tenant_id": row.project_id,
        "shared": row.shared,
        "is_default": row.is_default,
        "rules": [_rule_view(r) for r in rules],
        "revision_number": row.revision_number,
        "tags": tags,
        "created_at": common.timestamp(row.created_at),
        "updated_at": common.timestamp(row.updated_at),
    }


def _row(session: Session, ctx: RequestContext, policy_id: str) -> models.QosPolicy:
    row = session.get(models.QosPolicy, policy_id)
    if row is None or not (ctx.is_admin or row.shared or row.project_id == ctx.project_id):
        raise errors.NotFound(
            f"QoS policy {policy_id} could not be found.", code="QosPolicyNotFound"
        )
    return row


def check_usable(session: Session, ctx: RequestContext, policy_id: str | None) -> None:
    """A port's, network's or floating IP's qos_policy_id must name a policy it may use."""
    if policy_id is not None:
        _row(session, ctx, policy_id)


def create_policy(ctx: RequestContext, body: dict[str, Any]) -> dict[str, Any]:
    project_id = common.check_project(ctx, body)
    ctx.authorize("create_policy", {"project_id": project_id})
    moment = common.now()
    with ctx.db.write() as session:
        row = models.QosPolicy(
            id=common.new_id(),
            project_id=project_id,
            name=body.get("name", ""),
            description=body.get("description", ""),
            revision_number=1,
            created_at=moment,
            updated_at=moment,
            shared=body.get("shared", False),
            is_default=body.get("is_default", False),
        )
        session.add(row)
        common.set_tags(session, "policies", row.id, body.get("tags", []))
        session.flush()
        return _view(session, row, common.tags(session, "policies", row.id))


def list_policies(ctx: RequestContext, query: ListQuery) -> list[dict[str, Any]]:
    ctx.authorize("get_policy", {"project_id": ctx.project_id})
    table = models.QosPolicy
    stmt = select(table)
    if not ctx.is_admin:
        stmt = stmt.where(or_(table.project_id == ctx.project_id, table.shared))
    with ctx.db.read() as session:
        stmt = filtered(stmt, table, query, FILTERS, "policies")
        rows = paged(session, stmt, table, query, SORTS)
        tag_map = tags_of(session, "policies", [r.id for r in rows])
        return [_view(session, r, tag_map[r.id]) for r in rows]


def get_policy(ctx: RequestContext, policy_id: str) -> dict[str, Any]:
    with ctx.db.read() as session:
        row = _row(session, ctx, policy_id)
        return _view(session, row, common.tags(session, "policies", row.id))


@common.wakes
def update_policy(
    ctx: RequestContext, policy_id: str, body: dict[str, Any], if_match: str | None = None
) -> dict[str, Any]:
    with ctx.db.write() as session:
        row = _row(session, ctx, policy_id)
        ctx.authorize("update_policy", {"project_id": row.project_id})
        common.check_revision(row, if_match)
        for attribute in ("name", "description", "shared", "is_default"):
            if attribute in body:
                setattr(row, attribute, body[attribute])
        common.stamp(row)
        session.flush()
        return _view(session, row, common.tags(session, "policies", row.id))


@common.wakes
def delete_policy(ctx: RequestContext, policy_id: str) -> None:
    with ctx.db.write() as session:
        row = _row(session, ctx, policy_id)
        ctx.authorize("delete_policy", {"project_id": row.project_id})
        for table in (models.Port, models.Network, models.FloatingIp):
            users = session.scalar(
                select(func.count()).select_from(table).where(table.qos_policy_id == policy_id)
            )
            if users:
                raise errors.Conflict(
                    f"QoS Policy {policy_id} is used by {table.__tablename__[8:]} objects.",
                    code="QosPolicyInUse",
                )
        common.forget_tags(session, "policies", policy_id)
        session.delete(row)


def _check_rule(body: dict[str, Any], creating: bool) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    for name in ("max_kbps", "max_burst_kbps"):
        if name in body:
            value = body[name]
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise errors.Invalid(
                    f"Invalid input for {name}. Reason: '{value}' is not a non-negative integer.",
                    code="HTTPBadRequest",
                )
            fields[name] = value
    if creating and "max_kbps" not in fields:
        raise errors.Invalid(
            "Failed to parse request. Required attribute 'max_kbps' not specified",
            code="HTTPBadRequest",
        )
    if "direction" in body or creating:
        direction = body.get("direction", "egress")
        if direction not in DIRECTIONS:
            raise errors.Invalid(
                f"Invalid input for direction. Reason: {direction} is not in {list(DIRECTIONS)}.",
                code="HTTPBadRequest",
            )
        fields["direction"] = direction
    unknown = set(body) - {"max_kbps", "max_burst_kbps", "direction", "type"}
    if unknown:
        raise errors.Invalid(
            f"Unrecognized attribute(s) '{', '.join(sorted(unknown))}'", code="HTTPBadRequest"
        )
    return fields


@common.wakes
def create_rule(ctx: RequestContext, policy_id: str, body: dict[str, Any]) -> dict[str, Any]:
    fields = _check_rule(body, True)
    with ctx.db.write() as session:
        policy = _row(session, ctx, policy_id)
        ctx.authorize("create_policy_bandwidth_limit_rule", {"project_id": policy.project_id})
        clash = session.scalar(
            select(models.QosBandwidthLimitRule.id).where(
                models.QosBandwidthLimitRule.qos_policy_id == policy_id,
                models.QosBandwidthLimitRule.direction == fields["direction"],
            )
        )
        if clash is not None:
            raise errors.Conflict(
                f"A bandwidth_limit rule for direction {fields['direction']} already exists in "
                f"policy {policy_id}.",
                code="QoSRulesConflict",
            )
        rule = models.QosBandwidthLimitRule(
            id=common.new_id(), qos_policy_id=policy_id, max_burst_kbps=0, **fields
        )
        session.add(rule)
        common.stamp(policy)
        session.flush()
        return _rule_view(rule)


def _rule(
    session: Session, ctx: RequestContext, policy_id: str, rule_id: str
) -> models.QosBandwidthLimitRule:
    _row(session, ctx, policy_id)
    rule = session.get(models.QosBandwidthLimitRule, rule_id)
    if rule is None or rule.qos_policy_id != policy_id:
        raise errors.NotFound(
            f"QoS rule {rule_id} for policy {policy_id} could not be found.", code="QosRuleNotFound"
        )
    return rule


def list_rules(ctx: RequestContext, policy_id: str) -> list[dict[str, Any]]:
    with ctx.db.read() as session:
        _row(session, ctx, policy_id)
        rules = session.scalars(
            select(models.QosBandwidthLimitRule).where(
                models.QosBandwidthLimitRule.qos_policy_id == policy_id
            )
        )
        return [_rule_view(r) for r in rules]


def get_rule(ctx: RequestContext, policy_id: str, rule_id: str) -> dict[str, Any]:
    with ctx.db.read() as session:
        return _rule_view(_rule(session, ctx, policy_id, rule_id))


@common.wakes
def update_rule(
    ctx: RequestContext, policy_id: str, rule_id: str, body: dict[str, Any]
) -> dict[str, Any]:
    fields = _check_rule(body, False)
    with ctx.db.write() as session:
        rule = _rule(session, ctx, policy_id, rule_id)
        policy = session.get(models.QosPolicy, policy_id)
        assert policy is not None
        ctx.authorize("update_policy_bandwidth_limit_rule", {"project_id": policy.project_id})
        for key, value in fields.items():
            setattr(rule, key, value)
        common.stamp(policy)
        session.flush()
        return _rule_view(rule)


@common.wakes
def delete_rule(ctx: RequestContext, policy_id: str, rule_id: str) -> None:
    with ctx.db.write() as session:
        rule = _rule(session, ctx, policy_id, rule_id)
        policy = session.get(models.QosPolicy, policy_id)
        assert policy is not None
        ctx.authorize("delete_policy_bandwidth_limit_rule", {"project_id": policy.project_id})
        common.stamp(policy)
        session.delete(rule)
