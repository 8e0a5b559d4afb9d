"""Routers, floating IPs and port forwardings, as Neutron's L3 API keeps them.

A router's gateway and interfaces are ports the cloud makes (device_owner
`network:router_gateway` / `network:router_interface`, device_id the router);
a floating IP holds a `network:floatingip` port on its external network. A
floating IP reaches a port only through a router that has a gateway on the
floating IP's network and an interface on one of the port's subnets.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from pocketstack.core import errors
from pocketstack.core.context import RequestContext
from pocketstack.network import common, models, qos, quotas
from pocketstack.network import service as network_service
from pocketstack.network.query import ListQuery, filtered, paged, tags_of

GATEWAY_OWNER = "network:router_gateway"
INTERFACE_OWNER = "network:router_interface"
FLOATING_OWNER = "network:floatingip"
ROUTER_FILTERS = {
    "id": "id",
    "name": "name",
    "description": "description",
    "project_id": "project_id",
    "tenant_id": "project_id",
    "status": "status",
    "admin_state_up": "admin_state_up",
    "revision_number": "revision_number",
}
ROUTER_SORTS = (
    "id",
    "name",
    "project_id",
    "status",
    "admin_state_up",
    "created_at",
    "updated_at",
    "revision_number",
)
FLOATING_FILTERS = {
    "id": "id",
    "project_id": "project_id",
    "tenant_id": "project_id",
    "floating_network_id": "floating_network_id",
    "port_id": "port_id",
    "router_id": "router_id",
    "status": "status",
    "description": "description",
    "floating_ip_address": "floating_ip_address",
    "fixed_ip_address": "fixed_ip_address",
    "revision_number": "revision_number",
}
FLOATING_SORTS = (
    "id",
    "project_id",
    "floating_network_id",
    "floating_ip_address",
    "status",
    "router_id",
    "port_id",
    "created_at",
    "updated_at",
    "revision_number",
)


# Routers ---------------------------------------------------------------------------------


def _gateway_info(session: Session, row: models.Router, admin: bool) -> dict[str, Any] | None:
    if row.gateway_port_id is None:
        return None
    port = session.get(models.Port, row.gateway_port_id)
    if port is None:
        return None
    info: dict[str, Any] = {
        "network_id": port.network_id,
        "external_fixed_ips": [
            {"subnet_id": s, "ip_address": a}
            for s, a in network_service.addresses_of(session, port.id)
        ],
    }
    info["enable_snat"] = row.enable_snat
    return info


def _router_view(
    session: Session, ctx: RequestContext, row: models.Router, tags: list[str]
) -> dict[str, Any]:
    return {
        "id": row.id,
        "name": row.name,
        "description": row.description,
        "project_id": row.project_id,
        "tenant_id": row.project_id,
        "admin_state_up": row.admin_state_up,
        "status": row.status,
        "external_gateway_info": _gateway_info(session, row, ctx.is_admin),
        "routes": row.routes,
        "distributed": False,
        "ha": False,
        "flavor_id": None,
        "availability_zone_hints": [],
        "availability_zones": ["nova"],
        "revision_number": row.revision_number,
        "tags": tags,
        "created_at": common.timestamp(row.created_at),
        "updated_at": common.timestamp(row.updated_at),
    }


def _external_network(session: Session, ctx: RequestContext, network_id: str) -> models.Network:
    network = session.get(models.Network, network_id)
    if network is None or not (
        network.external or ctx.is_admin or network.project_id == ctx.project_id
    ):
        raise common.not_found("network", network_id)
    if not network.external:
        raise errors.Invalid(
            f"Bad router request: Network {network_id} is not an external network.",
            code="BadRequest",
        )
    return network


def _set_gateway(
    session: Session, ctx: RequestContext, row: models.Router, info: dict[str, Any] | None
) -> None:
    """Replace the router's gateway with `info` (None: no gateway)."""
    if info is not None and not isinstance(info, dict):
        raise errors.Invalid("Invalid input for external_gateway_info.", code="HTTPBadRequest")
    current = session.get(models.Port, row.gateway_port_id) if row.gateway_port_id else None
    if info is not None and "enable_snat" in info:
        ctx.authorize(
            "update_router:external_gateway_info:enable_snat", {"project_id": row.project_id}
        )
        row.enable_snat = bool(info["enable_snat"])
    elif info is not None:
        row.enable_snat = True
    wanted_network = info.get("network_id") if info else None
    fixed = info.get("external_fixed_ips") if info else None
    if fixed is not None and not (
        isinstance(fixed, list)
        and all(isinstance(f, dict) and set(f) <= {"subnet_id", "ip_address"} for f in fixed)
    ):
        raise errors.Invalid(
            "Invalid input for external_gateway_info: external_fixed_ips must be a list of "
            "{subnet_id, ip_address}.",
            code="HTTPBadRequest",
        )
    if fixed is not None:
        ctx.authorize(
            "update_router:external_gateway_info:external_fixed_ips", {"project_id": row.project_id}
        )
    if current is not None and (wanted_network != current.network_id or fixed is not None):
        if wanted_network is None:
            _refuse_if_floating_ips_use(session, row)
        row.gateway_port_id = None
        session.flush()
        session.delete(current)
        session.flush()
        current = None
    if wanted_network and current is None:
        _external_network(session, ctx, wanted_network)
        port = network_service.make_port(session, wanted_network, "", GATEWAY_OWNER, row.id, fixed)
        row.gateway_port_id = port.id


def _refuse_if_floating_ips_use(session: Session, row: models.Router) -> None:
    used = session.scalar(
        select(func.count())
        .select_from(models.FloatingIp)
        .where(models.FloatingIp.router_id == row.id)
    )
    if used:
        raise errors.Conflict(
            f"Gateway cannot be updated for router {row.id}, since a gateway to external "
            "network is required by one or more floating IPs.",
            code="RouterExternalGatewayInUseByFloatingIp",
        )


def _router(session: Session, ctx: RequestContext, router_id: str) -> models.Router:
    row: models.Router = common.get_row(session, ctx, models.Router, "router", router_id)
    return row


def _check_routes(session: Session, row: models.Router, routes: Any) -> list[dict[str, str]]:
    """Extra routes: each nexthop on a subnet the router has an interface on."""
    if not isinstance(routes, list):
        raise errors.Invalid("Invalid input for routes.", code="HTTPBadRequest")
    connected = [ipaddress.ip_network(s.cidr) for s in _interface_subnets(session, row.id)]
    checked = []
    for route in routes:
        if not isinstance(route, dict) or set(route) != {"destination", "nexthop"}:
            raise errors.Invalid(
                f"Invalid input for routes. Reason: {route} is not a route.", code="HTTPBadRequest"
            )
        try:
            destination = ipaddress.ip_network(route["destination"], strict=False)
            nexthop = ipaddress.ip_address(route["nexthop"])
        except ValueError:
            raise errors.Invalid(
                f"Invalid input for routes: {route}", code="HTTPBadRequest"
            ) from None
        if not any(nexthop in c for c in connected):
            raise errors.Invalid(
                f"Invalid format for routes: {route}, the nexthop is not connected with router",
                code="InvalidRoutes",
            )
        checked.append({"destination": str(destination), "nexthop": str(nexthop)})
    return checked


def _interface_subnets(session: Session, router_id: str) -> list[models.Subnet]:
    ports = select(models.Port.id).where(
        models.Port.device_id == router_id, models.Port.device_owner == INTERFACE_OWNER
    )
    subnet_ids = select(models.IpAllocation.subnet_id).where(models.IpAllocation.port_id.in_(ports))
    return list(session.scalars(select(models.Subnet).where(models.Subnet.id.in_(subnet_ids))))


@common.wakes
def create_router(ctx: RequestContext, body: dict[str, Any]) -> dict[str, Any]:
    project_id = common.check_project(ctx, body)
    ctx.authorize("create_router", {"project_id": project_id})
    with ctx.db.write() as session:
        quotas.check(session, project_id, "router", 1)
        moment = common.now()
        row = models.Router(
            id=common.new_id(),
            project_id=project_id,
            name=body.get("name", ""),
            description=body.get("description", ""),
            revision_number=1,
            created_at=moment,
            updated_at=moment,
            admin_state_up=body.get("admin_state_up", True),
            status="ACTIVE",
            enable_snat=True,
            routes=[],
        )
        session.add(row)
        session.flush()
        if body.get("external_gateway_info"):
            _set_gateway(session, ctx, row, body["external_gateway_info"])
        common.set_tags(session, "routers", row.id, body.get("tags", []))
        session.flush()
        return _router_view(session, ctx, row, common.tags(session, "routers", row.id))


def list_routers(ctx: RequestContext, query: ListQuery) -> list[dict[str, Any]]:
    ctx.authorize("get_router", {"project_id": ctx.project_id})
    table = models.Router
    with ctx.db.read() as session:
        stmt = filtered(
            select(table).where(common.owned(ctx, table)), table, query, ROUTER_FILTERS, "routers"
        )
        rows = paged(session, stmt, table, query, ROUTER_SORTS)
        tag_map = tags_of(session, "routers", [r.id for r in rows])
        return [_router_view(session, ctx, r, tag_map[r.id]) for r in rows]


def get_router(ctx: RequestContext, router_id: str) -> dict[str, Any]:
    with ctx.db.read() as session:
        row = _router(session, ctx, router_id)
        return _router_view(session, ctx, row, common.tags(session, "routers", row.id))


@common.wakes
def update_router(
    ctx: RequestContext, router_id: str, body: dict[str, Any], if_match: str | None = None
) -> dict[str, Any]:
    with ctx.db.write() as session:
        row = _router(session, ctx, router_id)
        ctx.authorize("update_router", {"project_id": row.project_id})
        common.check_revision(row, if_match)
        for attribute in ("name", "description", "admin_state_up"):
            if attribute in body:
                setattr(row, attribute, body[attribute])
        if "external_gateway_info" in body:
            _set_gateway(session, ctx, row, body["external_gateway_info"] or None)
        if "routes" in body:
            row.routes = _check_routes(session, row, body["routes"] or [])
        common.stamp(row)
        session.flush()
        return _router_view(session, ctx, row, common.tags(session, "routers", row.id))


@common.wakes
def delete_router(ctx: RequestContext, router_id: str) -> None:
    with ctx.db.write() as session:
        row = _router(session, ctx, router_id)
        ctx.authorize("delete_router", {"project_id": row.project_id})
        interfaces = session.scalar(
            select(func.count())
            .select_from(models.Port)
            .where(models.Port.device_id == router_id, models.Port.device_owner == INTERFACE_OWNER)
        )
        if interfaces:
            raise errors.Conflict(f"Router {router_id} still has ports", code="RouterInUse")
        _refuse_if_floating_ips_use(session, row)
        if row.gateway_port_id:
            gateway = session.get(models.Port, row.gateway_port_id)
            row.gateway_port_id = None
            session.flush()
            if gateway is not None:
                session.delete(gateway)
        common.forget_tags(session, "routers", router_id)
        session.delete(row)


def _interface_info(row: models.Router, port: models.Port, subnet_ids: list[str]) -> dict[str, Any]:
    return {
        "id": row.id,
        "tenant_id": row.project_id,
        "project_id": row.project_id,
        "port_id": port.id,
        "network_id": port.network_id,
        "subnet_id": subnet_ids[0] if subnet_ids else None,
        "subnet_ids": subnet_ids,
    }


@common.wakes
def add_interface(ctx: RequestContext, router_id: str, body: Any) -> dict[str, Any]:
    if not isinstance(body, dict) or not ({"subnet_id", "port_id"} & set(body)):
        raise errors.Invalid(
            "Bad router request: Either subnet_id or port_id must be specified", code="BadRequest"
        )
    if "subnet_id" in body and "port_id" in body:
        raise errors.Invalid(
            "Bad router request: Cannot specify both subnet-id and port-id", code="BadRequest"
        )
    with ctx.db.write() as session:
        row = _router(session, ctx, router_id)
        ctx.authorize("add_router_interface", {"project_id": row.project_id})
        if "port_id" in body:
            port = session.get(models.Port, body["port_id"])
            if port is None or not (ctx.is_admin or port.project_id == ctx.project_id):
                raise common.not_found("port", str(body["port_id"]))
            if port.device_id:
                raise errors.Conflict(
                    f"Unable to complete operation on port {port.id} for network "
                    f"{port.network_id}. Port already has an attached device {port.device_id}.",
                    code="PortInUse",
                )
            subnet_ids = [s for s, _ in network_service.addresses_of(session, port.id)]
            if not subnet_ids:
                raise errors.Invalid(
                    "Bad router request: Router port must have at least one fixed IP",
                    code="BadRequest",
                )
            _refuse_overlap(session, row.id, subnet_ids)
            port.device_id, port.device_owner = row.id, INTERFACE_OWNER
            common.stamp(port)
        else:
            subnet = network_service.subnet_row(session, ctx, str(body["subnet_id"]))
            if subnet.gateway_ip is None:
                raise errors.Invalid(
                    "Bad router request: Subnet for router interface must have a gateway IP",
                    code="BadRequest",
                )
            _refuse_overlap(session, row.id, [subnet.id])
            port = network_service.make_port(
                session,
                subnet.network_id,
                row.project_id,
                INTERFACE_OWNER,
                row.id,
                [{"subnet_id": subnet.id, "ip_address": subnet.gateway_ip}],
            )
            subnet_ids = [subnet.id]
        common.stamp(row)
        session.flush()
        return _interface_info(row, port, subnet_ids)


def _refuse_overlap(session: Session, router_id: str, subnet_ids: list[str]) -> None:
    connected = _interface_subnets(session, router_id)
    for subnet_id in subnet_ids:
        subnet = session.get(models.Subnet, subnet_id)
        assert subnet is not None
        for other in connected:
            if ipaddress.ip_network(other.cidr).overlaps(ipaddress.ip_network(subnet.cidr)):
                raise errors.Invalid(
                    f"Bad router request: Cidr {subnet.cidr} of subnet {subnet.id} overlaps "
                    f"with cidr {other.cidr} of subnet {other.id}.",
                    code="BadRequest",
                )


@common.wakes
def remove_interface(ctx: RequestContext, router_id: str, body: Any) -> dict[str, Any]:
    if not isinstance(body, dict) or not ({"subnet_id", "port_id"} & set(body)):
        raise errors.Invalid(
            "Bad router request: Either subnet_id or port_id must be specified", code="BadRequest"
        )
    with ctx.db.write() as session:
        row = _router(session, ctx, router_id)
        ctx.authorize("remove_router_interface", {"project_id": row.project_id})
        interfaces = list(
            session.scalars(
                select(models.Port).where(
                    models.Port.device_id == router_id, models.Port.device_owner == INTERFACE_OWNER
                )
            )
        )
        port = None
        for candidate in interfaces:
            subnets = [s for s, _ in network_service.addresses_of(session, candidate.id)]
            if candidate.id == body.get("port_id") or body.get("subnet_id") in subnets:
                port, subnet_ids = candidate, subnets
                break
        if port is None:
            if "port_id" in body:
                raise errors.NotFound(
                    f"Router {router_id} does not have an interface with id {body['port_id']}",
                    code="RouterInterfaceNotFound",
                )
            raise errors.NotFound(
                f"Router {router_id} has no interface on subnet {body['subnet_id']}",
                code="RouterInterfaceNotFoundForSubnet",
            )
        _refuse_if_routes_need(row, session, subnet_ids)
        _refuse_if_floating_ips_need(session, row.id, subnet_ids)
        info = _interface_info(row, port, subnet_ids)
        common.forget_tags(session, "ports", port.id)
        session.delete(port)
        common.stamp(row)
        return info


def _refuse_if_routes_need(row: models.Router, session: Session, subnet_ids: list[str]) -> None:
    for subnet_id in subnet_ids:
        subnet = session.get(models.Subnet, subnet_id)
        if subnet is None:
            continue
        for route in row.routes:
            if ipaddress.ip_address(route["nexthop"]) in ipaddress.ip_network(subnet.cidr):
                raise errors.Conflict(
                    f"Router interface for subnet {subnet_id} on router {row.id} cannot be "
                    f"deleted, as it is required by one or more routes.",
                    code="RouterInterfaceInUseByRoute",
                )


def _refuse_if_floating_ips_need(session: Session, router_id: str, subnet_ids: list[str]) -> None:
    fixed = select(models.IpAllocation.port_id).where(models.IpAllocation.subnet_id.in_(subnet_ids))
    used = session.scalar(
        select(func.count())
        .select_from(models.FloatingIp)
        .where(models.FloatingIp.router_id == router_id, models.FloatingIp.port_id.in_(fixed))
    )
    if used:
        raise errors.Conflict(
            f"Router interface for subnet {subnet_ids[0]} on router {router_id} cannot be "
            "deleted, as it is required by one or more floating IPs.",
            code="RouterInterfaceInUseByFloatingIP",
        )


# Floating IPs ----------------------------------------------------------------------------


def _floating_view(session: Session, row: models.FloatingIp, tags: list[str]) -> dict[str, Any]:
    return {
        "id": row.id,
        "project_id": row.project_id,
        "tenant_id": row.project_id,
        "floating_ip_address": row.floating_ip_address,
        "floating_network_id": row.floating_network_id,
        "router_id": row.router_id,
        "port_id": row.port_id,
        "fixed_ip_address": row.fixed_ip_address,
        "status": row.status,
        "description": row.description,
        "qos_policy_id": row.qos_policy_id,
        "dns_name": row.dns_name,
        "dns_domain": row.dns_domain,
        "port_forwardings": [],
        "revision_number": row.revision_number,
        "tags": tags,
        "created_at": common.timestamp(row.created_at),
        "updated_at": common.timestamp(row.updated_at),
    }


def _floating(session: Session, ctx: RequestContext, floating_id: str) -> models.FloatingIp:
    row: models.FloatingIp = common.get_row(
        session, ctx, models.FloatingIp, "floatingip", floating_id
    )
    return row


def _associate(
    session: Session,
    ctx: RequestContext,
    row: models.FloatingIp,
    port_id: str | None,
    fixed_ip: str | None,
) -> None:
    """Point the floating IP at a port's fixed address through the router that joins the
    port's subnet to the floating IP's network (None: no port)."""
    if port_id is None:
        row.port_id = row.fixed_ip_address = row.router_id = None
        row.status = "DOWN"
        return
    port = session.get(models.Port, port_id)
    if port is None or not (ctx.is_admin or port.project_id == ctx.project_id):
        raise common.not_found("port", port_id)
    addresses = [
        (s, a)
        for s, a in network_service.addresses_of(session, port.id)
        if ipaddress.ip_address(a).version == 4
    ]
    if fixed_ip is not None:
        addresses = [(s, a) for s, a in addresses if a == fixed_ip]
        if not addresses:
            raise errors.Invalid(
                f"Bad floatingip request: Port {port_id} does not have fixed ip {fixed_ip}.",
                code="BadRequest",
            )
    if not addresses:
        raise errors.Invalid(
            f"Bad floatingip request: Port {port_id} does not have any IPv4 address.",
            code="BadRequest",
        )
    if len(addresses) > 1 and fixed_ip is None:
        raise errors.Invalid(
            f"Bad floatingip request: Port {port_id} has multiple fixed IPv4 "
            "addresses. Must provide a specific IPv4 address when assigning "
            "a floating IP.",
            code="BadRequest",
        )
    subnet_id, address = addresses[0]
    router_id = _router_between(session, subnet_id, row.floating_network_id)
    if router_id is None:
        raise errors.NotFound(
            f"External network {row.floating_network_id} is not reachable from subnet "
            f"{subnet_id}. Therefore, cannot associate Port {port_id} with a Floating IP.",
            code="ExternalGatewayForFloatingIPNotFound",
        )
    taken = session.scalar(
        select(models.FloatingIp.id).where(
            models.FloatingIp.port_id == port_id,
            models.FloatingIp.fixed_ip_address == address,
            models.FloatingIp.id != row.id,
        )
    )
    if taken is not None:
        raise errors.Conflict(
            f"Cannot associate floating IP {row.floating_ip_address} ({row.id}) with port "
            f"{port_id} using fixed IP {address}, as that fixed IP already has a floating IP "
            f"on external network {row.floating_network_id}.",
            code="FloatingIPPortAlreadyAssociated",
        )
    if session.scalar(
        select(func.count())
        .select_from(models.PortForwarding)
        .where(models.PortForwarding.floatingip_id == row.id)
    ):
        raise errors.Conflict(
            f"Floating IP {row.id} has port forwardings: it cannot also be associated with a port.",
            code="FipInUseByPortForwarding",
        )
    row.port_id, row.fixed_ip_address, row.router_id = port_id, address, router_id
    row.status = "ACTIVE"


def _router_between(session: Session, subnet_id: str, external_network_id: str) -> str | None:
    interfaces = select(models.Port.device_id).where(
        models.Port.device_owner == INTERFACE_OWNER,
        models.Port.id.in_(
            select(models.IpAllocation.port_id).where(models.IpAllocation.subnet_id == subnet_id)
        ),
    )
    gateways = select(models.Port.id).where(
        models.Port.network_id == external_network_id, models.Port.device_owner == GATEWAY_OWNER
    )
    return session.scalar(
        select(models.Router.id).where(
            models.Router.id.in_(interfaces), models.Router.gateway_port_id.in_(gateways)
        )
    )


@common.wakes
def create_floating_ip(ctx: RequestContext, body: dict[str, Any]) -> dict[str, Any]:
    project_id = common.check_project(ctx, body)
    ctx.authorize("create_floatingip", {"project_id": project_id})
    if "floating_network_id" not in body:
        raise errors.Invalid(
            "Failed to parse request. Required attribute 'floating_network_id' not specified",
            code="HTTPBadRequest",
        )
    if "floating_ip_address" in body:
        ctx.authorize("create_floatingip:floating_ip_address", {"project_id": project_id})
    with ctx.db.write() as session:
        network = _external_network(session, ctx, body["floating_network_id"])
        quotas.check(session, project_id, "floatingip", 1)
        qos.check_usable(session, ctx, body.get("qos_policy_id"))
        fixed: list[dict[str, Any]] | None = None
        if body.get("floating_ip_address") or body.get("subnet_id"):
            fixed = [
                {
                    k: v
                    for k, v in (
                        ("ip_address", body.get("floating_ip_address")),
                        ("subnet_id", body.get("subnet_id")),
                    )
                    if v
                }
            ]
        floating_id = common.new_id()
        port = network_service.make_port(
            session, network.id, "", FLOATING_OWNER, floating_id, fixed
        )
        v4 = [
            a
            for _, a in network_service.addresses_of(session, port.id)
            if ipaddress.ip_address(a).version == 4
        ]
        if not v4:
            raise errors.Invalid(
                f"Bad floatingip request: Network {network.id} has no IPv4 subnet.",
                code="BadRequest",
            )
        moment = common.now()
        row = models.FloatingIp(
            id=floating_id,
            project_id=project_id,
            name="",
            description=body.get("description", ""),
            revision_number=1,
            created_at=moment,
            updated_at=moment,
            floating_network_id=network.id,
            floating_port_id=port.id,
            floating_ip_address=v4[0],
            status="DOWN",
            qos_policy_id=body.get("qos_policy_id"),
            dns_name=body.get("dns_name", ""),
            dns_domain=body.get("dns_domain", ""),
        )
        session.add(row)
        session.flush()
        if body.get("port_id"):
            _associate(session, ctx, row, body["port_id"], body.get("fixed_ip_address"))
        common.set_tags(session, "floatingips", row.id, body.get("tags", []))
        session.flush()
        return _floating_view(session, row, common.tags(session, "floatingips", row.id))


def list_floating_ips(ctx: RequestContext, query: ListQuery) -> list[dict[str, Any]]:
    ctx.authorize("get_floatingip", {"project_id": ctx.project_id})
    table = models.FloatingIp
    with ctx.db.read() as session:
        stmt = filtered(
            select(table).where(common.owned(ctx, table)),
            table,
            query,
            FLOATING_FILTERS,
            "floatingips",
        )
        rows = paged(session, stmt, table, query, FLOATING_SORTS)
        tag_map = tags_of(session, "floatingips", [r.id for r in rows])
        return [_floating_view(session, r, tag_map[r.id]) for r in rows]


def get_floating_ip(ctx: RequestContext, floating_id: str) -> dict[str, Any]:
    with ctx.db.read() as session:
        row = _floating(session, ctx, floating_id)
        return _floating_view(session, row, common.tags(session, "floatingips", row.id))


@common.wakes
def update_floating_ip(
    ctx: RequestContext, floating_id: str, body: dict[str, Any], if_match: str | None = None
) -> dict[str, Any]:
    with ctx.db.write() as session:
        row = _floating(session, ctx, floating_id)
        ctx.authorize("update_floatingip", {"project_id": row.project_id})
        common.check_revision(row, if_match)
        qos.check_usable(session, ctx, body.get("qos_policy_id"))
        if "port_id" in body:
            _associate(session, ctx, row, body["port_id"], body.get("fixed_ip_address"))
        for attribute in ("description", "qos_policy_id"):
            if attribute in body:
                setattr(row, attribute, body[attribute])
        common.stamp(row)
        session.flush()
        return _floating_view(session, row, common.tags(session, "floatingips", row.id))


@common.wakes
def delete_floating_ip(ctx: RequestContext, floating_id: str) -> None:
    with ctx.db.write() as session:
        row = _floating(session, ctx, floating_id)
        ctx.authorize("delete_floatingip", {"project_id": row.project_id})
        port = session.get(models.Port, row.floating_port_id)
        common.forget_tags(session, "floatingips", floating_id)
        session.delete(row)
        session.flush()
        if port is not None:
            session.delete(port)


# Port forwardings ------------------------------------------------------------------------

PROTOCOLS = ("tcp", "udp")


def _ports(value: Any, attribute: str) -> tuple[int, int]:
    """A port or a `low:high` range, as the API takes them."""
    text = str(value)
    low, _, high = text.partition(":")
    try:
        start, end = int(low), int(high or low)
    except ValueError:
        raise errors.Invalid(
            f"Invalid input for {attribute}. Reason: '{value}' is not a valid "
            "port number or range.",
            code="HTTPBadRequest",
        ) from None
    if not 1 <= start <= end <= 65535:
        raise errors.Invalid(
            f"Invalid input for {attribute}. Reason: '{value}' is out of the range 1 to 65535.",
            code="HTTPBadRequest",
        )
    return start, end


def _forwarding_view(row: models.PortForwarding) -> dict[str, Any]:
    single = row.internal_port_start == row.internal_port_end and (
        row.external_port_start == row.external_port_end
    )
    view: dict[str, Any] = {
        "id": row.id,
        "internal_port_id": row.internal_port_id,
        "internal_ip_address": row.internal_ip_address,
        "protocol": row.protocol,
        "description": row.description,
    }
    if single:
        view.update(
            internal_port=row.internal_port_start,
            external_port=row.external_port_start,
            internal_port_range=None,
            external_port_range=None,
        )
    else:
        view.update(
            internal_port=None,
            external_port=None,
            internal_port_range=f"{row.internal_port_start}:{row.internal_port_end}",
            external_port_range=f"{row.external_port_start}:{row.external_port_end}",
        )
    return view


def _forwarding_fields(body: dict[str, Any]) -> dict[str, Any]:
    protocol = body.get("protocol")
    if protocol not in PROTOCOLS:
        raise errors.Invalid(
            f"Invalid input for protocol. Reason: {protocol} is not in {list(PROTOCOLS)}.",
            code="HTTPBadRequest",
        )
    if "internal_port_range" in body or "external_port_range" in body:
        internal = _ports(body.get("internal_port_range"), "internal_port_range")
        external = _ports(body.get("external_port_range"), "external_port_range")
        if internal[1] - internal[0] != external[1] - external[0] and internal[0] != internal[1]:
            raise errors.Invalid(
                "The internal and external port ranges must be the same size "
                "(or the internal one a single port).",
                code="HTTPBadRequest",
            )
    else:
        internal = _ports(body.get("internal_port"), "internal_port")
        external = _ports(body.get("external_port"), "external_port")
    return {
        "protocol": protocol,
        "internal_port_start": internal[0],
        "internal_port_end": internal[1],
        "external_port_start": external[0],
        "external_port_end": external[1],
    }


@common.wakes
def create_port_forwarding(
    ctx: RequestContext, floating_id: str, body: dict[str, Any]
) -> dict[str, Any]:
    fields = _forwarding_fields(body)
    with ctx.db.write() as session:
        floating = _floating(session, ctx, floating_id)
        ctx.authorize("create_floatingip_port_forwarding", {"project_id": floating.project_id})
        if floating.port_id is not None:
            raise errors.Conflict(
                f"Floating IP {floating_id} is associated with port "
                f"{floating.port_id}: it cannot also forward ports.",
                code="FipAssociated",
            )
        port_id = str(body.get("internal_port_id", ""))
        port = session.get(models.Port, port_id)
        if port is None or not (ctx.is_admin or port.project_id == ctx.project_id):
            raise common.not_found("port", port_id)
        addresses = [(s, a) for s, a in network_service.addresses_of(session, port.id)]
        internal_ip = body.get("internal_ip_address") or next(
            (a for _, a in addresses if ipaddress.ip_address(a).version == 4), None
        )
        match = [(s, a) for s, a in addresses if a == internal_ip]
        if not match:
            raise errors.Invalid(
                f"Bad port forwarding request: port {port_id} has no fixed IP {internal_ip}.",
                code="BadRequest",
            )
        router_id = _router_between(session, match[0][0], floating.floating_network_id)
        if router_id is None:
            raise errors.NotFound(
                f"External network {floating.floating_network_id} is not reachable from subnet "
                f"{match[0][0]}.",
                code="ExternalGatewayForFloatingIPNotFound",
            )
        for other in session.scalars(
            select(models.PortForwarding).where(
                models.PortForwarding.floatingip_id == floating_id,
                models.PortForwarding.protocol == fields["protocol"],
            )
        ):
            if (
                other.external_port_start <= fields["external_port_end"]
                and fields["external_port_start"] <= other.external_port_end
            ):
                raise errors.Conflict(
                    f"A duplicate port forwarding entry with same attributes already exists, "
                    f"conflicting values are {{'floatingip_id': '{floating_id}', "
                    f"'external_port': {other.external_port_start}}}",
                    code="NeutronDbObjectDuplicateEntry",
                )
        row = models.PortForwarding(
            id=common.new_id(),
            floatingip_id=floating_id,
            internal_port_id=port_id,
            internal_ip_address=internal_ip,
            description=body.get("description", ""),
            **fields,
        )
        session.add(row)
        common.stamp(floating)
        floating.status = "ACTIVE"
        floating.router_id = router_id
        session.flush()
        return _forwarding_view(row)


def _forwarding(
    session: Session, ctx: RequestContext, floating_id: str, forwarding_id: str
) -> models.PortForwarding:
    _floating(session, ctx, floating_id)
    row = session.get(models.PortForwarding, forwarding_id)
    if row is None or row.floatingip_id != floating_id:
        raise errors.NotFound(
            f"Port Forwarding {forwarding_id} could not be found.", code="PortForwardingNotFound"
        )
    return row


def list_port_forwardings(ctx: RequestContext, floating_id: str) -> list[dict[str, Any]]:
    with ctx.db.read() as session:
        _floating(session, ctx, floating_id)
        rows = session.scalars(
            select(models.PortForwarding)
            .where(models.PortForwarding.floatingip_id == floating_id)
            .order_by(models.PortForwarding.id)
        )
        return [_forwarding_view(r) for r in rows]


def get_port_forwarding(
    ctx: RequestContext, floating_id: str, forwarding_id: str
) -> dict[str, Any]:
    with ctx.db.read() as session:
        return _forwarding_view(_forwarding(session, ctx, floating_id, forwarding_id))


@common.wakes
def update_port_forwarding(
    ctx: RequestContext, floating_id: str, forwarding_id: str, body: dict[str, Any]
) -> dict[str, Any]:
    with ctx.db.write() as session:
        row = _forwarding(session, ctx, floating_id, forwarding_id)
        merged = {**_forwarding_view(row), **body}
        if "internal_port_range" in body or "external_port_range" in body:
            merged.pop("internal_port", None)
            merged.pop("external_port", None)
        elif "internal_port" in body or "external_port" in body:
            merged.pop("internal_port_range", None)
            merged.pop("external_port_range", None)
        merged = {k: v for k, v in merged.items() if v is not None}
        for key, value in _forwarding_fields(merged).items():
            setattr(row, key, value)
        for attribute in ("description", "internal_ip_address", "internal_port_id"):
            if attribute in body:
                setattr(row, attribute, body[attribute])
        session.flush()
        return _forwarding_view(row)


@common.wakes
def delete_port_forwarding(ctx: RequestContext, floating_id: str, forwarding_id: str) -> None:
    with ctx.db.write() as session:
        row = _forwarding(session, ctx, floating_id, forwarding_id)
        session.delete(row)
        session.flush()
        left = session.scalar(
            select(func.count())
            .select_from(models.PortForwarding)
            .where(models.PortForwarding.floatingip_id == floating_id)
        )
        if not left:
            # The floating IP no longer needs the router that joined it to the port.
            floating = _floating(session, ctx, floating_id)
            floating.router_id = None
            floating.status = "DOWN"


def port_forwardings_of(
    ctx: RequestContext, floating_ids: list[str]
) -> dict[str, list[dict[str, Any]]]:
    """The port forwardings of these floating IPs in one read (for the network agent)."""
    found: dict[str, list[dict[str, Any]]] = {floating_id: [] for floating_id in floating_ids}
    if not floating_ids:
        return found
    with ctx.db.read() as session:
        rows = session.scalars(
            select(models.PortForwarding)
            .where(models.PortForwarding.floatingip_id.in_(floating_ids))
            .order_by(models.PortForwarding.id)
        )
        for row in rows:
            found[row.floatingip_id].append(_forwarding_view(row))
    return found
