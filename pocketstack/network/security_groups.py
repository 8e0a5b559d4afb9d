"""Security groups and their rules, and each project's `default` group.

A project gets its default group the first time it needs one (listing groups,
creating a port), made once even under concurrent requests (the default-group
table's key is the project). Its rules are Neutron's: all egress, and ingress
from members of the same group, for IPv4 and IPv6.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from pocketstack.core import errors
from pocketstack.core.context import RequestContext
from pocketstack.network import common, models, quotas, schemas
from pocketstack.network.query import ListQuery, filtered, paged, tags_of

GROUP_FILTERS = {
    "id": "id",
    "name": "name",
    "description": "description",
    "project_id": "project_id",
    "tenant_id": "project_id",
    "revision_number": "revision_number",
    "stateful": "stateful",
}
GROUP_SORTS = ("id", "name", "project_id", "created_at", "updated_at", "revision_number")
RULE_FILTERS = {
    "id": "id",
    "security_group_id": "security_group_id",
    "direction": "direction",
    "ethertype": "ethertype",
    "protocol": "protocol",
    "port_range_min": "port_range_min",
    "port_range_max": "port_range_max",
    "remote_ip_prefix": "remote_ip_prefix",
    "remote_group_id": "remote_group_id",
    "project_id": "project_id",
    "tenant_id": "project_id",
    "description": "description",
}
RULE_SORTS = (
    "id",
    "security_group_id",
    "direction",
    "ethertype",
    "protocol",
    "project_id",
    "created_at",
    "updated_at",
)
PROTOCOL_NUMBERS = {
    "icmp": 1,
    "tcp": 6,
    "udp": 17,
    "icmpv6": 58,
    "ipv6-icmp": 58,
    "sctp": 132,
    "ah": 51,
    "esp": 50,
    "gre": 47,
    "vrrp": 112,
}
PORT_PROTOCOLS = ("tcp", "udp", "sctp", "dccp", "udplite", "6", "17", "132", "33", "136")
ICMP_PROTOCOLS = ("icmp", "icmpv6", "ipv6-icmp", "1", "58")


def _rule(
    group_id: str,
    project_id: str,
    direction: str,
    ethertype: str,
    remote_group_id: str | None = None,
) -> models.SecurityGroupRule:
    moment = common.now()
    return models.SecurityGroupRule(
        id=common.new_id(),
        project_id=project_id,
        security_group_id=group_id,
        direction=direction,
        ethertype=ethertype,
        remote_group_id=remote_group_id,
        description="",
        revision_number=0,
        created_at=moment,
        updated_at=moment,
    )


def _new_group(
    session: Session, project_id: str, name: str, description: str, stateful: bool = True
) -> models.SecurityGroup:
    """A group with Neutron's starting rules: all egress (and, for `default`, ingress from
    its own members)."""
    moment = common.now()
    group = models.SecurityGroup(
        id=common.new_id(),
        project_id=project_id,
        name=name,
        description=description,
        revision_number=1,
        created_at=moment,
        updated_at=moment,
        stateful=stateful,
    )
    session.add(group)
    session.flush()
    for ethertype in ("IPv4", "IPv6"):
        session.add(_rule(group.id, project_id, "egress", ethertype))
        if name == "default":
            session.add(_rule(group.id, project_id, "ingress", ethertype, group.id))
    return group


def default_group(ctx: RequestContext, project_id: str) -> str:
    """The project's default group, made on first need."""
    with ctx.db.read() as session:
        found = session.get(models.DefaultSecurityGroup, project_id)
        if found is not None:
            return found.security_group_id
    try:
        with ctx.db.write() as session:
            found = session.get(models.DefaultSecurityGroup, project_id)
            if found is not None:
                return found.security_group_id
            group = _new_group(session, project_id, "default", "Default security group")
            session.add(
                models.DefaultSecurityGroup(project_id=project_id, security_group_id=group.id)
            )
            return group.id
    except IntegrityError:
        with ctx.db.read() as session:
            raced = session.get(models.DefaultSecurityGroup, project_id)
            assert raced is not None
            return raced.security_group_id


def check_usable(
    session: Session, ctx: RequestContext, group_ids: Sequence[str], project_id: str
) -> None:
    """Groups a port of `project_id` may use: existing ones of that project."""
    for group_id in group_ids:
        group = session.get(models.SecurityGroup, group_id)
        if group is None or not (ctx.is_admin or group.project_id in (project_id, ctx.project_id)):
            raise common.not_found("security_group", group_id)


def _views(session: Session, rows: Sequence[models.SecurityGroup]) -> list[dict[str, Any]]:
    ids = [r.id for r in rows]
    rules: dict[str, list[dict[str, Any]]] = {i: [] for i in ids}
    if ids:
        for rule in session.scalars(
            select(models.SecurityGroupRule)
            .where(models.SecurityGroupRule.security_group_id.in_(ids))
            .order_by(models.SecurityGroupRule.created_at, models.SecurityGroupRule.id)
        ):
            rules[rule.security_group_id].append(schemas.rule_view(rule))
    tag_map = tags_of(session, "security-groups", ids)
    return [schemas.group_view(r, rules[r.id], tag_map[r.id]) for r in rows]


def create_group(ctx: RequestContext, body: dict[str, Any]) -> dict[str, Any]:
    project_id = common.check_project(ctx, body)
    ctx.authorize("create_security_group", {"project_id": project_id})
    if body.get("name") == "default":
        raise errors.Conflict(
            "Default security group already exists.", code="SecurityGroupDefaultAlreadyExists"
        )
    default_group(ctx, project_id)
    with ctx.db.write() as session:
        quotas.check(session, project_id, "security_group", 1)
        group = _new_group(
            session,
            project_id,
            body.get("name", ""),
            body.get("description", ""),
            body.get("stateful", True),
        )
        common.set_tags(session, "security-groups", group.id, body.get("tags", []))
        session.flush()
        return _views(session, [group])[0]


def list_groups(ctx: RequestContext, query: ListQuery) -> list[dict[str, Any]]:
    ctx.authorize("get_security_group", {"project_id": ctx.project_id})
    if ctx.project_id is not None:
        default_group(ctx, ctx.project_id)
    table = models.SecurityGroup
    with ctx.db.read() as session:
        stmt = filtered(
            select(table).where(common.owned(ctx, table)),
            table,
            query,
            GROUP_FILTERS,
            "security-groups",
        )
        return _views(session, paged(session, stmt, table, query, GROUP_SORTS))


def get_group(ctx: RequestContext, group_id: str) -> dict[str, Any]:
    with ctx.db.read() as session:
        row = common.get_row(session, ctx, models.SecurityGroup, "security_group", group_id)
        return _views(session, [row])[0]


def update_group(
    ctx: RequestContext, group_id: str, body: dict[str, Any], if_match: str | None = None
) -> dict[str, Any]:
    with ctx.db.write() as session:
        row = common.get_row(session, ctx, models.SecurityGroup, "security_group", group_id)
        ctx.authorize("update_security_group", {"project_id": row.project_id})
        common.check_revision(row, if_match)
        if body.get("name") == "default" and row.name != "default":
            raise errors.Conflict(
                "Default security group already exists.",
                code="SecurityGroupDefaultAlreadyExists",
            )
        if "name" in body and row.name == "default" and body["name"] != "default":
            raise errors.Conflict(
                "Updating default security group not allowed.",
                code="SecurityGroupCannotUpdateDefault",
            )
        for attribute in ("name", "description", "stateful"):
            if attribute in body:
                setattr(row, attribute, body[attribute])
        common.stamp(row)
        session.flush()
        return _views(session, [row])[0]


@common.wakes
def delete_group(ctx: RequestContext, group_id: str) -> None:
    with ctx.db.write() as session:
        row = common.get_row(session, ctx, models.SecurityGroup, "security_group", group_id)
        ctx.authorize("delete_security_group", {"project_id": row.project_id})
        is_default = session.scalar(
            select(func.count())
            .select_from(models.DefaultSecurityGroup)
            .where(models.DefaultSecurityGroup.security_group_id == group_id)
        )
        if is_default and not ctx.is_admin:
            raise errors.Conflict(
                "Removing default security group not allowed.",
                code="SecurityGroupCannotRemoveDefault",
            )
        in_use = session.scalar(
            select(func.count())
            .select_from(models.PortSecurityGroup)
            .where(models.PortSecurityGroup.security_group_id == group_id)
        )
        if in_use:
            raise errors.Conflict(f"Security Group {group_id} in use.", code="SecurityGroupInUse")
        common.forget_tags(session, "security-groups", group_id)
        session.delete(row)


# Rules -----------------------------------------------------------------------------------


def _check_rule(body: dict[str, Any]) -> dict[str, Any]:
    """Neutron's checks of a rule body; the normalized fields."""
    direction = body.get("direction")
    if direction not in ("ingress", "egress"):
        raise errors.Invalid(
            f"Invalid input for direction. Reason: {direction} is not in valid_values.",
            code="HTTPBadRequest",
        )
    ethertype = body.get("ethertype", "IPv4")
    if ethertype not in ("IPv4", "IPv6"):
        raise errors.Invalid(
            f"Invalid input for ethertype. Reason: {ethertype} is not in valid_values.",
            code="HTTPBadRequest",
        )
    protocol = body.get("protocol")
    if protocol is not None:
        protocol = str(protocol).lower()
        if protocol not in PROTOCOL_NUMBERS and not (protocol.isdigit() and int(protocol) < 256):
            raise errors.Invalid(
                f"Security group rule protocol {protocol} not supported. Only protocol values "
                f"{sorted(PROTOCOL_NUMBERS)} and integer representations [0 to 255] are "
                "supported.",
                code="SecurityGroupRuleInvalidProtocol",
            )
        if ethertype == "IPv4" and protocol in ("icmpv6", "ipv6-icmp", "58"):
            raise errors.Invalid(
                f"Invalid ethertype {ethertype} for protocol {protocol}.",
                code="SecurityGroupRuleInvalidEtherType",
            )
    low, high = body.get("port_range_min"), body.get("port_range_max")
    for value in (low, high):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            raise errors.Invalid(f"Invalid value for port {value}", code="HTTPBadRequest")
    if (low is not None or high is not None) and protocol is None:
        raise errors.Invalid(
            "Must also specify protocol if port range is given.",
            code="SecurityGroupProtocolRequiredWithPorts",
        )
    if protocol in PORT_PROTOCOLS:
        _check_port_range(low, high)
    elif protocol in ICMP_PROTOCOLS:
        _check_icmp(low, high)
    prefix = body.get("remote_ip_prefix")
    if prefix is not None:
        try:
            network = ipaddress.ip_network(prefix, strict=False)
        except ValueError:
            raise errors.Invalid(
                f"Invalid input for remote_ip_prefix. Reason: '{prefix}' is not a valid IP subnet.",
                code="HTTPBadRequest",
            ) from None
        if (network.version == 4) != (ethertype == "IPv4"):
            raise errors.Invalid(
                f"Conflicting value ethertype {ethertype} for CIDR {prefix}",
                code="SecurityGroupRuleParameterConflict",
            )
        prefix = str(network)
    if prefix is not None and body.get("remote_group_id"):
        raise errors.Invalid(
            "Only remote_ip_prefix or remote_group_id may be provided.",
            code="SecurityGroupRemoteGroupAndRemoteIpPrefix",
        )
    return {
        "direction": direction,
        "ethertype": ethertype,
        "protocol": protocol,
        "port_range_min": low,
        "port_range_max": high,
        "remote_ip_prefix": prefix,
        "remote_group_id": body.get("remote_group_id"),
        "description": body.get("description", ""),
    }


def _check_port_range(low: int | None, high: int | None) -> None:
    for value in (low, high):
        if value is not None and not 0 <= value <= 65535:
            raise errors.Invalid(
                f"Invalid value for port {value}", code="SecurityGroupInvalidPortValue"
            )
    if (low is None) != (high is None) or (low is not None and high is not None and low > high):
        raise errors.Invalid(
            "For TCP/UDP protocols, port_range_min must be <= port_range_max",
            code="SecurityGroupInvalidPortRange",
        )


def _check_icmp(icmp_type: int | None, icmp_code: int | None) -> None:
    """For ICMP, port_range_min is the type and port_range_max the code."""
    for field, name, value in (
        ("port_range_min", "type", icmp_type),
        ("port_range_max", "code", icmp_code),
    ):
        if value is not None and not 0 <= value <= 255:
            raise errors.Invalid(
                f"Invalid value for ICMP {name} ({field}): {value}. It must be 0 to 255.",
                code="SecurityGroupInvalidIcmpValue",
            )
    if icmp_type is None and icmp_code is not None:
        raise errors.Invalid(
            "ICMP code (port-range-max) is provided but ICMP type (port-range-min) is missing.",
            code="SecurityGroupMissingIcmpType",
        )


def _same_rule(session: Session, group_id: str, fields: dict[str, Any]) -> str | None:
    table = models.SecurityGroupRule
    for rule in session.scalars(select(table).where(table.security_group_id == group_id)):
        if all(getattr(rule, k) == v for k, v in fields.items() if k != "description"):
            return rule.id
    return None


@common.wakes
def create_rule(ctx: RequestContext, body: dict[str, Any]) -> dict[str, Any]:
    fields = _check_rule(body)
    group_id = body.get("security_group_id")
    if not group_id:
        raise errors.Invalid(
            "Failed to parse request. Required attribute 'security_group_id' not specified",
            code="HTTPBadRequest",
        )
    with ctx.db.write() as session:
        group = common.get_row(session, ctx, models.SecurityGroup, "security_group", group_id)
        ctx.authorize("create_security_group_rule", {"project_id": group.project_id})
        if fields["remote_group_id"]:
            common.get_row(
                session, ctx, models.SecurityGroup, "security_group", fields["remote_group_id"]
            )
        duplicate = _same_rule(session, group_id, fields)
        if duplicate is not None:
            raise errors.Conflict(
                f"Security group rule already exists. Rule id is {duplicate}.",
                code="SecurityGroupRuleExists",
            )
        project_id = group.project_id
        quotas.check(session, project_id, "security_group_rule", 1)
        moment = common.now()
        rule = models.SecurityGroupRule(
            id=common.new_id(),
            project_id=project_id,
            security_group_id=group_id,
            revision_number=0,
            created_at=moment,
            updated_at=moment,
            **fields,
        )
        session.add(rule)
        common.stamp(group)
        session.flush()
        return schemas.rule_view(rule)


def list_rules(ctx: RequestContext, query: ListQuery) -> list[dict[str, Any]]:
    ctx.authorize("get_security_group_rule", {"project_id": ctx.project_id})
    table = models.SecurityGroupRule
    with ctx.db.read() as session:
        stmt = filtered(
            select(table).where(common.owned(ctx, table)),
            table,
            query,
            RULE_FILTERS,
            "security-group-rules",
        )
        return [schemas.rule_view(r) for r in paged(session, stmt, table, query, RULE_SORTS)]


def get_rule(ctx: RequestContext, rule_id: str) -> dict[str, Any]:
    with ctx.db.read() as session:
        rule = common.get_row(
            session, ctx, models.SecurityGroupRule, "security_group_rule", rule_id
        )
        return schemas.rule_view(rule)


@common.wakes
def delete_rule(ctx: RequestContext, rule_id: str) -> None:
    with ctx.db.write() as session:
        rule = common.get_row(
            session, ctx, models.SecurityGroupRule, "security_group_rule", rule_id
        )
        ctx.authorize("delete_security_group_rule", {"project_id": rule.project_id})
        group = session.get(models.SecurityGroup, rule.security_group_id)
        if group is not None:
            common.stamp(group)
        session.delete(rule)
