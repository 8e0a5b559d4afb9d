"""Networks, subnets and ports as Neutron keeps them; addresses through ipam.py.

Callers pass request bodies already checked by schemas.py; every function
returns Neutron's view of the resource (a dict), which the API narrows to the
requested `fields`. Provider attributes are shown to admins only, as Neutron's
policy does. Security groups live in security_groups.py, quotas in quotas.py.
"""

from __future__ import annotations

import ipaddress
import random
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from pocketstack.core import errors
from pocketstack.core.context import RequestContext
from pocketstack.core.runtime import Runtime
from pocketstack.network import (
    common,
    ipam,
    models,
    qos,
    quotas,
    schemas,
    security_groups,
    subnet_pools,
)
from pocketstack.network.query import ListQuery, filtered, paged, tags_of

NETWORK_TYPES = ("vxlan", "flat", "local")
DEFAULT_NETWORK_TYPE = "vxlan"
VXLAN_IDS = range(1, 16_000_000)
BASE_MTU = 1500
VXLAN_OVERHEAD = 50
NETWORK_OWNED_PREFIX = "network:"
# Ports the network removes with itself; any other port keeps a network or subnet in use.
DHCP_OWNER = "network:dhcp"
FLOATING_OWNER = "network:floatingip"
ALLOCATE_RETRIES = 20
Result = TypeVar("Result")


def _retrying(work: Callable[[], Result]) -> Result:
    """Run a write that may lose a race on an address or an id: again, with a fresh look."""
    for attempt in range(ALLOCATE_RETRIES):
        try:
            return work()
        except IntegrityError:
            if attempt == ALLOCATE_RETRIES - 1:
                raise errors.Conflict(
                    "Too many concurrent requests for the same addresses; try again.",
                    code="IpAddressGenerationFailure",
                ) from None
    raise AssertionError("unreachable")


# Networks --------------------------------------------------------------------------------

NETWORK_FILTERS = {
    "id": "id",
    "name": "name",
    "description": "description",
    "project_id": "project_id",
    "tenant_id": "project_id",
    "admin_state_up": "admin_state_up",
    "status": "status",
    "shared": "shared",
    "router:external": "external",
    "mtu": "mtu",
    "provider:network_type": "network_type",
    "provider:physical_network": "physical_network",
    "provider:segmentation_id": "segmentation_id",
    "revision_number": "revision_number",
    "port_security_enabled": "port_security_enabled",
    "dns_domain": "dns_domain",
    "is_default": "is_default",
}
NETWORK_SORTS = (
    "id",
    "name",
    "project_id",
    "status",
    "admin_state_up",
    "shared",
    "mtu",
    "created_at",
    "updated_at",
    "revision_number",
    "external",
)


def _network_view(session: Session, ctx: RequestContext, row: models.Network) -> dict[str, Any]:
    subnet_ids = list(
        session.scalars(select(models.Subnet.id).where(models.Subnet.network_id == row.id))
    )
    return schemas.network_view(
        row, subnet_ids, common.tags(session, "networks", row.id), ctx.is_admin
    )


def _network_views(
    session: Session, ctx: RequestContext, rows: Sequence[models.Network]
) -> list[dict[str, Any]]:
    ids = [r.id for r in rows]
    subnets: dict[str, list[str]] = {i: [] for i in ids}
    if ids:
        for subnet_id, network_id in session.execute(
            select(models.Subnet.id, models.Subnet.network_id).where(
                models.Subnet.network_id.in_(ids)
            )
        ):
            subnets[network_id].append(subnet_id)
    tag_map = tags_of(session, "networks", ids)
    return [schemas.network_view(r, subnets[r.id], tag_map[r.id], ctx.is_admin) for r in rows]


def _network(session: Session, ctx: RequestContext, network_id: str) -> models.Network:
    row = session.get(models.Network, network_id)
    visible = row is not None and (
        ctx.is_admin or row.project_id == ctx.project_id or row.shared or row.external
    )
    if not visible:
        raise common.not_found("network", network_id)
    assert row is not None
    return row


def _allocate_segment(
    session: Session, network_id: str, network_type: str, wanted: int | None
) -> int | None:
    if network_type != "vxlan":
        return wanted
    if wanted is not None:
        if session.get(models.SegmentId, ("vxlan", wanted)) is not None:
            raise errors.Conflict(
                f"Unable to create the network. The VXLAN {wanted} is in use.",
                code="TunnelIdInUse",
            )
        chosen = wanted
    else:
        highest = session.scalar(
            select(func.max(models.SegmentId.segmentation_id)).where(
                models.SegmentId.network_type == "vxlan"
            )
        )
        chosen = (highest or 0) + 1
    if chosen not in VXLAN_IDS:
        raise errors.Invalid(f"Invalid input for provider:segmentation_id: {chosen}")
    session.add(
        models.SegmentId(network_type="vxlan", segmentation_id=chosen, network_id=network_id)
    )
    return chosen


@common.wakes
def create_network(ctx: RequestContext, body: dict[str, Any]) -> dict[str, Any]:
    project_id = common.check_project(ctx, body)
    target = {"project_id": project_id}
    ctx.authorize("create_network", target)
    for attribute, rule in (
        ("shared", "create_network:shared"),
        ("router:external", "create_network:router:external"),
        ("provider:network_type", "create_network:provider:network_type"),
        ("provider:segmentation_id", "create_network:provider:segmentation_id"),
        ("provider:physical_network", "create_network:provider:physical_network"),
    ):
        if body.get(attribute) not in (None, False):
            ctx.authorize(rule, target)
    network_type = body.get("provider:network_type") or DEFAULT_NETWORK_TYPE
    if network_type not in NETWORK_TYPES:
        raise errors.Invalid(
            f"Invalid input for operation: network_type value '{network_type}' not supported.",
            code="InvalidInput",
        )
    largest = BASE_MTU - (VXLAN_OVERHEAD if network_type == "vxlan" else 0)
    mtu = body.get("mtu") or largest
    if mtu > largest:
        raise errors.Invalid(f"Requested MTU is too big, maximum is {largest}", code="InvalidInput")

    def work() -> dict[str, Any]:
        moment = common.now()
        with ctx.db.write() as session:
            quotas.check(session, project_id, "network", 1)
            qos.check_usable(session, ctx, body.get("qos_policy_id"))
            row = models.Network(
                id=common.new_id(),
                project_id=project_id,
                name=body.get("name", ""),
                description=body.get("description", ""),
                revision_number=1,
                created_at=moment,
                updated_at=moment,
                admin_state_up=body.get("admin_state_up", True),
                status="ACTIVE",
                shared=body.get("shared", False),
                external=body.get("router:external", False),
                is_default=body.get("is_default", False),
                mtu=mtu,
                port_security_enabled=body.get("port_security_enabled", True),
                dns_domain=body.get("dns_domain", ""),
                network_type=network_type,
                physical_network=body.get("provider:physical_network"),
                qos_policy_id=body.get("qos_policy_id"),
            )
            session.add(row)
            session.flush()
            row.segmentation_id = _allocate_segment(
                session, row.id, network_type, body.get("provider:segmentation_id")
            )
            common.set_tags(session, "networks", row.id, body.get("tags", []))
            session.flush()
            return _network_view(session, ctx, row)

    return _retrying(work)


def list_networks(ctx: RequestContext, query: ListQuery) -> list[dict[str, Any]]:
    ctx.authorize("get_network", {"project_id": ctx.project_id})
    table = models.Network
    with ctx.db.read() as session:
        stmt = select(table).where(common.network_visible(ctx))
        stmt = filtered(stmt, table, query, NETWORK_FILTERS, "networks")
        rows = paged(session, stmt, table, query, NETWORK_SORTS)
        return _network_views(session, ctx, rows)


def get_network(ctx: RequestContext, network_id: str) -> dict[str, Any]:
    with ctx.db.read() as session:
        row = _network(session, ctx, network_id)
        return _network_view(session, ctx, row)


@common.wakes
def update_network(
    ctx: RequestContext, network_id: str, body: dict[str, Any], if_match: str | None = None
) -> dict[str, Any]:
    with ctx.db.write() as session:
        row = _network(session, ctx, network_id)
        target = {"project_id": row.project_id}
        if not ctx.can("update_network", target):
            if row.project_id != ctx.project_id:
                raise common.not_found("network", network_id)
            ctx.authorize("update_network", target)
        common.check_revision(row, if_match)
        qos.check_usable(session, ctx, body.get("qos_policy_id"))
        for attribute, rule in (
            ("shared", "update_network:shared"),
            ("router:external", "update_network:router:external"),
        ):
            if attribute in body:
                ctx.authorize(rule, target)
        if body.get("shared") is False and row.shared:
            _refuse_unsharing(session, row)
        if "mtu" in body:
            largest = BASE_MTU - (VXLAN_OVERHEAD if row.network_type == "vxlan" else 0)
            if body["mtu"] > largest:
                raise errors.Invalid(f"Requested MTU is too big, maximum is {largest}")
        simple = {
            "name": "name",
            "description": "description",
            "admin_state_up": "admin_state_up",
            "shared": "shared",
            "router:external": "external",
            "mtu": "mtu",
            "port_security_enabled": "port_security_enabled",
            "dns_domain": "dns_domain",
            "qos_policy_id": "qos_policy_id",
            "is_default": "is_default",
        }
        for attribute, column in simple.items():
            if attribute in body:
                setattr(row, column, body[attribute])
        common.stamp(row)
        session.flush()
        return _network_view(session, ctx, row)


def _refuse_unsharing(session: Session, row: models.Network) -> None:
    """A network others have ports on stays shared (Neutron's InvalidSharedSetting)."""
    others = session.scalar(
        select(func.count())
        .select_from(models.Port)
        .where(
            models.Port.network_id == row.id,
            models.Port.project_id != row.project_id,
            ~models.Port.device_owner.startswith(NETWORK_OWNED_PREFIX),
        )
    )
    if others:
        raise errors.Conflict(
            f"Unable to reconfigure sharing settings for network {row.id}. Multiple tenants "
            "are using it.",
            code="InvalidSharedSetting",
        )


@common.wakes
def delete_network(ctx: RequestContext, network_id: str) -> None:
    with ctx.db.write() as session:
        row = _network(session, ctx, network_id)
        target = {"project_id": row.project_id}
        if not ctx.can("delete_network", target):
            if row.project_id != ctx.project_id:
                raise common.not_found("network", network_id)
            ctx.authorize("delete_network", target)
        owned = (DHCP_OWNER, FLOATING_OWNER)
        in_use = session.scalar(
            select(func.count())
            .select_from(models.Port)
            .where(models.Port.network_id == network_id, models.Port.device_owner.not_in(owned))
        )
        if in_use:
            raise errors.Conflict(
                f"Unable to complete operation on network {network_id}. There are one or more "
                "ports still in use on the network.",
                code="NetworkInUse",
            )
        for subnet_id in session.scalars(
            select(models.Subnet.id).where(models.Subnet.network_id == network_id)
        ):
            common.forget_tags(session, "subnets", subnet_id)
        for floating in session.scalars(
            select(models.FloatingIp).where(models.FloatingIp.floating_network_id == network_id)
        ):
            common.forget_tags(session, "floatingips", floating.id)
            session.delete(floating)
        common.forget_tags(session, "networks", network_id)
        session.delete(row)


# Subnets ---------------------------------------------------------------------------------

SUBNET_FILTERS = {
    "id": "id",
    "name": "name",
    "description": "description",
    "project_id": "project_id",
    "tenant_id": "project_id",
    "network_id": "network_id",
    "ip_version": "ip_version",
    "cidr": "cidr",
    "gateway_ip": "gateway_ip",
    "enable_dhcp": "enable_dhcp",
    "ipv6_ra_mode": "ipv6_ra_mode",
    "ipv6_address_mode": "ipv6_address_mode",
    "subnetpool_id": "subnetpool_id",
    "revision_number": "revision_number",
}
SUBNET_SORTS = (
    "id",
    "name",
    "project_id",
    "network_id",
    "ip_version",
    "cidr",
    "gateway_ip",
    "enable_dhcp",
    "created_at",
    "updated_at",
    "revision_number",
)


def subnet_row(session: Session, ctx: RequestContext, subnet_id: str) -> models.Subnet:
    row = session.get(models.Subnet, subnet_id)
    if row is not None and not ctx.is_admin and row.project_id != ctx.project_id:
        network = session.get(models.Network, row.network_id)
        if network is None or not (network.shared or network.external):
            row = None
    if row is None:
        raise common.not_found("subnet", subnet_id)
    return row


def _subnet_visible(ctx: RequestContext) -> Any:
    if ctx.is_admin:
        return True
    shared = select(models.Network.id).where(models.Network.shared)
    return (models.Subnet.project_id == ctx.project_id) | models.Subnet.network_id.in_(shared)


def _check_ipv6_modes(body: dict[str, Any], version: int) -> None:
    ra, address = body.get("ipv6_ra_mode"), body.get("ipv6_address_mode")
    if version == 4 and (ra or address):
        raise errors.Invalid(
            "Invalid input for operation: ipv6_ra_mode and ipv6_address_mode cannot be set "
            "for an IPv4 subnet.",
            code="InvalidInput",
        )
    if ra and address and ra != address:
        raise errors.Invalid(
            f"Invalid input for operation: ipv6_ra_mode set to '{ra}' with ipv6_address_mode "
            f"set to '{address}' is not valid. If both attributes are set, they must be the "
            "same value.",
            code="InvalidInput",
        )


def _check_gateway(cidr: ipam.IPNetwork, gateway: str | None) -> None:
    """A gateway may sit outside its subnet (Neutron adds a route), never on the subnet's
    own network or broadcast address."""
    if gateway is None:
        return
    value = ipam.address(gateway, "gateway_ip")
    if value.version != cidr.version or (
        cidr.version == 4 and value in (cidr.network_address, cidr.broadcast_address)
    ):
        raise errors.Invalid(f"Gateway is not valid on subnet: {gateway}", code="InvalidInput")


@common.wakes
def create_subnet(ctx: RequestContext, body: dict[str, Any]) -> dict[str, Any]:
    with ctx.db.read() as session:
        network = _network(session, ctx, body["network_id"])
        network_owner = network.project_id
    project_id = common.check_project(ctx, body)
    ctx.authorize("create_subnet", {"project_id": project_id, "network_owner": network_owner})
    if not ctx.is_admin and network_owner != ctx.project_id:
        raise errors.Forbidden(
            "Tenant is not allowed to create subnets on this network", code="PolicyNotAuthorized"
        )
    version = body["ip_version"]
    if body.get("subnetpool_id") and "cidr" not in body:
        body = {
            **body,
            "cidr": subnet_pools.carve(ctx, body["subnetpool_id"], body.get("prefixlen")),
        }
    if "cidr" not in body:
        raise errors.Invalid(
            "Bad subnets request: a cidr must be specified in the absence of a subnet pool",
            code="BadRequest",
        )
    cidr = ipam.network(body["cidr"])
    if cidr.version != version:
        raise errors.Invalid(
            f"Invalid input for operation: Cidr {body['cidr']} is not a valid IPv{version} subnet.",
            code="InvalidInput",
        )
    if (cidr.version == 4 and cidr.prefixlen > 30) or (cidr.version == 6 and cidr.prefixlen > 126):
        raise errors.Invalid(
            f"Invalid input for operation: Invalid CIDR {cidr} for IPv{version} subnet.",
            code="InvalidInput",
        )
    _check_ipv6_modes(body, version)
    gateway = body["gateway_ip"] if "gateway_ip" in body else str(cidr.network_address + 1)
    _check_gateway(cidr, gateway)
    pools = body.get("allocation_pools") or ipam.default_pools(cidr, gateway)
    ipam.check_pools(cidr, pools, gateway if body.get("allocation_pools") else None)
    with ctx.db.write() as session:
        _network(session, ctx, body["network_id"])
        for existing in session.scalars(
            select(models.Subnet).where(models.Subnet.network_id == body["network_id"])
        ):
            if ipam.network(existing.cidr).overlaps(cidr):
                raise errors.Invalid(
                    f"Invalid input for operation: Requested subnet with cidr: {cidr} for "
                    f"network: {body['network_id']} overlaps with another subnet.",
                    code="InvalidInput",
                )
        quotas.check(session, project_id, "subnet", 1)
        moment = common.now()
        row = models.Subnet(
            id=common.new_id(),
            project_id=project_id,
            name=body.get("name", ""),
            description=body.get("description", ""),
            revision_number=1,
            created_at=moment,
            updated_at=moment,
            network_id=body["network_id"],
            ip_version=version,
            cidr=str(cidr),
            gateway_ip=gateway,
            enable_dhcp=body.get("enable_dhcp", True),
            ipv6_ra_mode=body.get("ipv6_ra_mode"),
            ipv6_address_mode=body.get("ipv6_address_mode"),
            subnetpool_id=body.get("subnetpool_id"),
            allocation_pools=pools,
            dns_nameservers=body.get("dns_nameservers", []),
            host_routes=body.get("host_routes", []),
            service_types=body.get("service_types", []),
        )
        session.add(row)
        common.set_tags(session, "subnets", row.id, body.get("tags", []))
        session.flush()
        return schemas.subnet_view(row, common.tags(session, "subnets", row.id))


def list_subnets(ctx: RequestContext, query: ListQuery) -> list[dict[str, Any]]:
    ctx.authorize("get_subnet", {"project_id": ctx.project_id})
    table = models.Subnet
    with ctx.db.read() as session:
        stmt = filtered(
            select(table).where(_subnet_visible(ctx)), table, query, SUBNET_FILTERS, "subnets"
        )
        rows = paged(session, stmt, table, query, SUBNET_SORTS)
        tag_map = tags_of(session, "subnets", [r.id for r in rows])
        return [schemas.subnet_view(r, tag_map[r.id]) for r in rows]


def get_subnet(ctx: RequestContext, subnet_id: str) -> dict[str, Any]:
    with ctx.db.read() as session:
        row = subnet_row(session, ctx, subnet_id)
        return schemas.subnet_view(row, common.tags(session, "subnets", row.id))


@common.wakes
def update_subnet(
    ctx: RequestContext, subnet_id: str, body: dict[str, Any], if_match: str | None = None
) -> dict[str, Any]:
    for fixed in ("cidr", "ip_version", "network_id", "subnetpool_id"):
        if fixed in body:
            raise errors.Invalid(
                f"Cannot update read-only attribute {fixed}", code="HTTPBadRequest"
            )
    with ctx.db.write() as session:
        row = subnet_row(session, ctx, subnet_id)
        if not ctx.is_admin and row.project_id != ctx.project_id:
            raise errors.Forbidden("You are not authorized to update this subnet")
        common.check_revision(row, if_match)
        cidr = ipam.network(row.cidr)
        gateway = body.get("gateway_ip", row.gateway_ip)
        _check_gateway(cidr, gateway)
        pools = body.get("allocation_pools", row.allocation_pools)
        if "gateway_ip" in body or "allocation_pools" in body:
            ipam.check_pools(cidr, pools, gateway)
        for attribute in (
            "name",
            "description",
            "gateway_ip",
            "allocation_pools",
            "dns_nameservers",
            "host_routes",
            "enable_dhcp",
            "service_types",
        ):
            if attribute in body:
                setattr(row, attribute, body[attribute])
        common.stamp(row)
        session.flush()
        return schemas.subnet_view(row, common.tags(session, "subnets", row.id))


@common.wakes
def delete_subnet(ctx: RequestContext, subnet_id: str) -> None:
    with ctx.db.write() as session:
        row = subnet_row(session, ctx, subnet_id)
        if not ctx.is_admin and row.project_id != ctx.project_id:
            raise errors.Forbidden("You are not authorized to delete this subnet")
        users = session.scalar(
            select(func.count())
            .select_from(models.IpAllocation)
            .join(models.Port, models.Port.id == models.IpAllocation.port_id)
            .where(
                models.IpAllocation.subnet_id == subnet_id, models.Port.device_owner != DHCP_OWNER
            )
        )
        if users:
            raise errors.Conflict(
                f"Unable to complete operation on subnet {subnet_id}: One or more ports have an "
                "IP allocation from this subnet.",
                code="SubnetInUse",
            )
        common.forget_tags(session, "subnets", subnet_id)
        session.delete(row)


# Ports -----------------------------------------------------------------------------------

PORT_FILTERS = {
    "id": "id",
    "name": "name",
    "description": "description",
    "project_id": "project_id",
    "tenant_id": "project_id",
    "network_id": "network_id",
    "mac_address": "mac_address",
    "admin_state_up": "admin_state_up",
    "status": "status",
    "device_id": "device_id",
    "device_owner": "device_owner",
    "binding:host_id": "binding_host_id",
    "binding:vnic_type": "binding_vnic_type",
    "dns_name": "dns_name",
    "port_security_enabled": "port_security_enabled",
    "revision_number": "revision_number",
}
PORT_SORTS = (
    "id",
    "name",
    "project_id",
    "network_id",
    "mac_address",
    "status",
    "device_id",
    "device_owner",
    "admin_state_up",
    "created_at",
    "updated_at",
    "revision_number",
)


def _mac() -> str:
    """A MAC with Neutron's default fa:16:3e prefix."""
    return "fa:16:3e:" + ":".join(f"{random.randint(0, 255):02x}" for _ in range(3))


def _port_views(
    session: Session, ctx: RequestContext, rows: Sequence[models.Port]
) -> list[dict[str, Any]]:
    ids = [r.id for r in rows]
    fixed: dict[str, list[dict[str, str]]] = {i: [] for i in ids}
    groups: dict[str, list[str]] = {i: [] for i in ids}
    domains: dict[str, str] = {}
    if ids:
        for allocation in session.scalars(
            select(models.IpAllocation).where(models.IpAllocation.port_id.in_(ids))
        ):
            fixed[allocation.port_id].append(
                {"subnet_id": allocation.subnet_id, "ip_address": allocation.ip_address}
            )
        for binding in session.scalars(
            select(models.PortSecurityGroup).where(models.PortSecurityGroup.port_id.in_(ids))
        ):
            groups[binding.port_id].append(binding.security_group_id)
        network_ids = {r.network_id for r in rows}
        for network_id, domain in session.execute(
            select(models.Network.id, models.Network.dns_domain).where(
                models.Network.id.in_(network_ids)
            )
        ):
            domains[network_id] = domain
    tag_map = tags_of(session, "ports", ids)
    return [
        schemas.port_view(
            r,
            sorted(fixed[r.id], key=lambda f: (f["subnet_id"], f["ip_address"])),
            sorted(groups[r.id]),
            tag_map[r.id],
            domains.get(r.network_id, ""),
            ctx.is_admin,
        )
        for r in rows
    ]


def _port(session: Session, ctx: RequestContext, port_id: str) -> models.Port:
    row = session.get(models.Port, port_id)
    if row is not None and not (ctx.is_admin or row.project_id == ctx.project_id):
        network = session.get(models.Network, row.network_id)
        if network is None or network.project_id != ctx.project_id:
            row = None
    if row is None:
        raise common.not_found("port", port_id)
    return row


def _port_visible(ctx: RequestContext) -> Any:
    if ctx.is_admin:
        return True
    own_networks = select(models.Network.id).where(models.Network.project_id == ctx.project_id)
    return (models.Port.project_id == ctx.project_id) | models.Port.network_id.in_(own_networks)


def _subnets_of(session: Session, network_id: str) -> list[models.Subnet]:
    return list(
        session.scalars(
            select(models.Subnet)
            .where(models.Subnet.network_id == network_id)
            .order_by(models.Subnet.created_at, models.Subnet.id)
        )
    )


def _taken(session: Session, subnet_id: str) -> set[str]:
    return set(
        session.scalars(
            select(models.IpAllocation.ip_address).where(models.IpAllocation.subnet_id == subnet_id)
        )
    )


def _free_address(session: Session, subnet: models.Subnet) -> str | None:
    taken = _taken(session, subnet.id)
    return next((a for a in ipam.candidates(subnet.allocation_pools) if a not in taken), None)


def _addresses(
    session: Session, network_id: str, mac: str, requested: list[dict[str, Any]] | None
) -> list[tuple[str, str]]:
    """(subnet id, address) pairs for a port: what it asked for, or Neutron's defaults
    (one IPv4 address, one stateful IPv6 address, and the SLAAC address of every SLAAC
    subnet)."""
    subnets = {s.id: s for s in _subnets_of(session, network_id)}
    chosen: list[tuple[str, str]] = []
    if requested is None:
        picked_versions: set[int] = set()
        for each in subnets.values():
            if each.ip_version == 6 and each.ipv6_address_mode in ipam.SLAAC_MODES:
                chosen.append((each.id, ipam.slaac_address(ipam.network(each.cidr), mac)))
                continue
            if each.ip_version in picked_versions:
                continue
            free = _free_address(session, each)
            if free is not None:
                chosen.append((each.id, free))
                picked_versions.add(each.ip_version)
        if subnets and not chosen:
            raise errors.Conflict(
                f"No more IP addresses available on network {network_id}.",
                code="IpAddressGenerationFailure",
            )
        return chosen
    for entry in requested:
        subnet_id, wanted = entry.get("subnet_id"), entry.get("ip_address")
        if wanted is not None:
            wanted = str(ipam.address(str(wanted), "fixed_ips"))
        if subnet_id is None and wanted is not None:
            subnet_id = next(
                (
                    s.id
                    for s in subnets.values()
                    if ipaddress.ip_address(wanted) in ipam.network(s.cidr)
                ),
                None,
            )
            if subnet_id is None:
                raise errors.Invalid(
                    f"Invalid input for operation: IP address {wanted} is not a valid IP for "
                    "any of the subnets on the specified network.",
                    code="InvalidInput",
                )
        subnet = subnets.get(str(subnet_id))
        if subnet is None:
            raise errors.Invalid(
                f"Invalid input for operation: Failed to create port on network {network_id}, "
                f"because fixed_ips included invalid subnet {subnet_id}.",
                code="InvalidInput",
            )
        if wanted is None:
            if subnet.ip_version == 6 and subnet.ipv6_address_mode in ipam.SLAAC_MODES:
                wanted = ipam.slaac_address(ipam.network(subnet.cidr), mac)
            else:
                wanted = _free_address(session, subnet)
                if wanted is None:
                    raise errors.Conflict(
                        f"No more IP addresses available on network {network_id}.",
                        code="IpAddressGenerationFailure",
                    )
        else:
            if ipam.address(wanted, "fixed_ips") not in ipam.network(subnet.cidr):
                raise errors.Invalid(
                    f"Invalid input for operation: IP address {wanted} is not a valid IP for "
                    "the specified subnet.",
                    code="InvalidInput",
                )
            wanted = str(ipaddress.ip_address(wanted))
            if wanted in _taken(session, subnet.id):
                raise errors.Conflict(
                    f"IP address {wanted} already allocated in subnet {subnet.id}",
                    code="IpAddressAlreadyAllocated",
                )
        chosen.append((subnet.id, wanted))
    # SLAAC subnets address every port of the network, asked for or not, as in Neutron.
    asked = {subnet_id for subnet_id, _ in chosen}
    for each in subnets.values():
        if each.id not in asked and each.ipv6_address_mode in ipam.SLAAC_MODES:
            chosen.append((each.id, ipam.slaac_address(ipam.network(each.cidr), mac)))
    return chosen


def _bind_addresses(session: Session, port: models.Port, pairs: list[tuple[str, str]]) -> None:
    for subnet_id, value in pairs:
        session.add(
            models.IpAllocation(
                subnet_id=subnet_id, ip_address=value, port_id=port.id, network_id=port.network_id
            )
        )


def _check_mac(session: Session, network_id: str, mac: str, port_id: str | None = None) -> None:
    clash = session.scalar(
        select(models.Port.id).where(
            models.Port.network_id == network_id, models.Port.mac_address == mac
        )
    )
    if clash is not None and clash != port_id:
        raise errors.Conflict(
            f"Unable to complete operation for network {network_id}. The mac address {mac} is "
            "in use.",
            code="MacAddressInUse",
        )


def _bind(ctx: RequestContext, port: models.Port) -> None:
    """What a port's binding says, given its host: where to plug it, as the network agent's
    driver says; the fake data plane plugs at once, a real one reports ACTIVE once plugged
    (`report_port_status`). The network's own ports (router interfaces and gateways,
    floating IPs, DHCP) are always up."""
    if port.device_owner.startswith(NETWORK_OWNED_PREFIX):
        port.status = "ACTIVE"
        return
    plugging: Callable[[str], dict[str, Any] | None] | None = ctx.runtime.state.get(VIF_DETAILS_KEY)
    details = plugging(port.network_id) if plugging is not None else None
    if port.binding_host_id and details is not None:
        port.binding_vif_type = "bridge"
        port.binding_vif_details = details
        if not (port.status == "ACTIVE" and port.admin_state_up):
            port.status = "DOWN"
    elif port.binding_host_id:
        port.binding_vif_type = "bridge"
        port.binding_vif_details = {"port_filter": True, "connectivity": "l2"}
        port.status = "ACTIVE" if port.admin_state_up else "DOWN"
    else:
        port.binding_vif_type = "unbound"
        port.binding_vif_details = {}
        port.status = "DOWN"


def make_port(
    session: Session,
    network_id: str,
    project_id: str,
    device_owner: str,
    device_id: str,
    fixed_ips: list[dict[str, Any]] | None,
) -> models.Port:
    """A port the cloud makes for itself (router interfaces and gateways, floating IPs):
    no policy, no quota, no security groups; addresses as `fixed_ips` asks."""
    moment = common.now()
    mac = _mac()
    row = models.Port(
        id=common.new_id(),
        project_id=project_id,
        name="",
        description="",
        revision_number=1,
        created_at=moment,
        updated_at=moment,
        network_id=network_id,
        mac_address=mac,
        admin_state_up=True,
        device_id=device_id,
        device_owner=device_owner,
        binding_host_id="",
        binding_vnic_type="normal",
        binding_profile={},
        port_security_enabled=False,
        dns_name="",
        allowed_address_pairs=[],
        extra_dhcp_opts=[],
        status="ACTIVE",
    )
    session.add(row)
    session.flush()
    _bind_addresses(session, row, _addresses(session, network_id, mac, fixed_ips))
    session.flush()
    return row


def addresses_of(session: Session, port_id: str) -> list[tuple[str, str]]:
    """(subnet id, address) of a port."""
    return [
        (a.subnet_id, a.ip_address)
        for a in session.scalars(
            select(models.IpAllocation).where(models.IpAllocation.port_id == port_id)
        )
    ]


@common.wakes
def create_port(ctx: RequestContext, body: dict[str, Any]) -> dict[str, Any]:
    project_id = common.check_project(ctx, body)
    with ctx.db.read() as session:
        network = _network(session, ctx, body["network_id"])
        target = {"project_id": project_id, "network_owner": network.project_id}
    ctx.authorize("create_port", target)
    for attribute, rule in (
        ("mac_address", "create_port:mac_address"),
        ("binding:host_id", "create_port:binding:host_id"),
        ("binding:profile", "create_port:binding:profile"),
        ("fixed_ips", "create_port:fixed_ips"),
    ):
        if attribute in body:
            ctx.authorize(rule, target)
    device_owner = body.get("device_owner", "")
    security = body.get("port_security_enabled", network.port_security_enabled)
    if not security and (body.get("security_groups") or body.get("allowed_address_pairs")):
        raise errors.Conflict(
            "Port has security group associated. Cannot disable port security or ip address "
            "until security group is removed",
            code="PortSecurityAndIPRequiredForSecurityGroups",
        )
    if "security_groups" in body:
        group_ids = list(body["security_groups"] or [])
    elif security and not device_owner.startswith(NETWORK_OWNED_PREFIX):
        group_ids = [security_groups.default_group(ctx, project_id)]
    else:
        group_ids = []

    def work() -> dict[str, Any]:
        moment = common.now()
        with ctx.db.write() as session:
            _network(session, ctx, body["network_id"])
            security_groups.check_usable(session, ctx, group_ids, project_id)
            quotas.check(session, project_id, "port", 1)
            qos.check_usable(session, ctx, body.get("qos_policy_id"))
            mac = body.get("mac_address") or _mac()
            _check_mac(session, body["network_id"], mac)
            row = models.Port(
                id=common.new_id(),
                project_id=project_id,
                name=body.get("name", ""),
                description=body.get("description", ""),
                revision_number=1,
                created_at=moment,
                updated_at=moment,
                network_id=body["network_id"],
                mac_address=mac,
                admin_state_up=body.get("admin_state_up", True),
                device_id=body.get("device_id", ""),
                device_owner=device_owner,
                binding_host_id=body.get("binding:host_id", ""),
                binding_vnic_type=body.get("binding:vnic_type", "normal"),
                binding_profile=body.get("binding:profile") or {},
                port_security_enabled=security,
                dns_name=body.get("dns_name", ""),
                qos_policy_id=body.get("qos_policy_id"),
                allowed_address_pairs=schemas.address_pairs(
                    body.get("allowed_address_pairs", []), mac
                ),
                extra_dhcp_opts=body.get("extra_dhcp_opts", []),
            )
            _bind(ctx, row)
            session.add(row)
            session.flush()
            _bind_addresses(
                session, row, _addresses(session, row.network_id, mac, body.get("fixed_ips"))
            )
            for group_id in dict.fromkeys(group_ids):
                session.add(models.PortSecurityGroup(port_id=row.id, security_group_id=group_id))
            common.set_tags(session, "ports", row.id, body.get("tags", []))
            session.flush()
            return _port_views(session, ctx, [row])[0]

    return _retrying(work)


def list_ports(ctx: RequestContext, query: ListQuery) -> list[dict[str, Any]]:
    ctx.authorize("get_port", {"project_id": ctx.project_id})
    table = models.Port
    with ctx.db.read() as session:
        stmt = select(table).where(_port_visible(ctx))
        fixed_ips = query.filters.get("fixed_ips", ())
        for condition in fixed_ips:
            for part in condition.split(","):
                key, _, value = part.partition("=")
                column = {
                    "ip_address": models.IpAllocation.ip_address,
                    "subnet_id": models.IpAllocation.subnet_id,
                }.get(key)
                if column is not None:
                    holders = select(models.IpAllocation.port_id).where(column == value)
                    stmt = stmt.where(table.id.in_(holders))
        if "security_groups" in query.filters:
            bound = select(models.PortSecurityGroup.port_id).where(
                models.PortSecurityGroup.security_group_id.in_(query.filters["security_groups"])
            )
            stmt = stmt.where(table.id.in_(bound))
        stmt = filtered(stmt, table, query, PORT_FILTERS, "ports")
        rows = paged(session, stmt, table, query, PORT_SORTS)
        return _port_views(session, ctx, rows)


def get_port(ctx: RequestContext, port_id: str) -> dict[str, Any]:
    with ctx.db.read() as session:
        return _port_views(session, ctx, [_port(session, ctx, port_id)])[0]


@common.wakes
def update_port(
    ctx: RequestContext, port_id: str, body: dict[str, Any], if_match: str | None = None
) -> dict[str, Any]:
    if "network_id" in body:
        raise errors.Invalid("Cannot update read-only attribute network_id")

    def work() -> dict[str, Any]:
        with ctx.db.write() as session:
            row = _port(session, ctx, port_id)
            target = {"project_id": row.project_id}
            ctx.authorize("update_port", target)
            for attribute, rule in (
                ("mac_address", "update_port:mac_address"),
                ("binding:host_id", "update_port:binding:host_id"),
                ("binding:profile", "update_port:binding:profile"),
            ):
                if attribute in body:
                    ctx.authorize(rule, target)
            common.check_revision(row, if_match)
            qos.check_usable(session, ctx, body.get("qos_policy_id"))
            _update_port_fields(session, ctx, row, body)
            common.stamp(row)
            session.flush()
            return _port_views(session, ctx, [row])[0]

    return _retrying(work)


def _update_port_fields(
    session: Session, ctx: RequestContext, row: models.Port, body: dict[str, Any]
) -> None:
    security = body.get("port_security_enabled", row.port_security_enabled)
    groups = body.get("security_groups")
    current_groups = list(
        session.scalars(
            select(models.PortSecurityGroup.security_group_id).where(
                models.PortSecurityGroup.port_id == row.id
            )
        )
    )
    pairs = body.get("allowed_address_pairs", row.allowed_address_pairs)
    if not security and ((groups if groups is not None else current_groups) or pairs):
        raise errors.Conflict(
            "Port has security group associated. Cannot disable port security or ip address "
            "until security group is removed",
            code="PortSecurityAndIPRequiredForSecurityGroups",
        )
    if "mac_address" in body and body["mac_address"] != row.mac_address:
        if row.binding_host_id and row.binding_vif_type not in ("unbound", "binding_failed"):
            raise errors.Conflict(
                f"Port {row.id} is bound: its MAC address cannot change.", code="PortBound"
            )
        _check_mac(session, row.network_id, body["mac_address"], row.id)
        row.mac_address = body["mac_address"]
    simple = {
        "name": "name",
        "description": "description",
        "admin_state_up": "admin_state_up",
        "device_id": "device_id",
        "device_owner": "device_owner",
        "binding:host_id": "binding_host_id",
        "binding:vnic_type": "binding_vnic_type",
        "binding:profile": "binding_profile",
        "port_security_enabled": "port_security_enabled",
        "dns_name": "dns_name",
        "qos_policy_id": "qos_policy_id",
        "extra_dhcp_opts": "extra_dhcp_opts",
    }
    for attribute, column in simple.items():
        if attribute in body:
            setattr(
                row,
                column,
                body[attribute]
                if body[attribute] is not None
                else ({} if column == "binding_profile" else body[attribute]),
            )
    if "allowed_address_pairs" in body:
        row.allowed_address_pairs = schemas.address_pairs(
            body["allowed_address_pairs"] or [], row.mac_address
        )
    if groups is not None:
        security_groups.check_usable(session, ctx, groups, row.project_id)
        for binding in session.scalars(
            select(models.PortSecurityGroup).where(models.PortSecurityGroup.port_id == row.id)
        ):
            session.delete(binding)
        session.flush()
        for group_id in dict.fromkeys(groups):
            session.add(models.PortSecurityGroup(port_id=row.id, security_group_id=group_id))
    if "fixed_ips" in body:
        for allocation in session.scalars(
            select(models.IpAllocation).where(models.IpAllocation.port_id == row.id)
        ):
            session.delete(allocation)
        session.flush()
        _bind_addresses(
            session,
            row,
            _addresses(session, row.network_id, row.mac_address, body["fixed_ips"] or []),
        )
    _bind(ctx, row)


@common.wakes
def delete_port(ctx: RequestContext, port_id: str) -> None:
    """The port goes, and floating IPs that pointed at it point at nothing (Neutron)."""
    with ctx.db.write() as session:
        row = _port(session, ctx, port_id)
        ctx.authorize("delete_port", {"project_id": row.project_id})
        session.execute(
            update(models.FloatingIp)
            .where(models.FloatingIp.port_id == port_id)
            .values(port_id=None, fixed_ip_address=None, router_id=None, status="DOWN")
        )
        common.forget_tags(session, "ports", port_id)
        session.delete(row)


# The network agent's side (agent.py) --------------------------------------------------

VIF_DETAILS_KEY = "network.agent.vif_details"


def install_agent(
    runtime: Runtime, wake_agent: Callable[[], None] | None,
    vif_details: Callable[[str], dict[str, Any] | None] | None,
) -> None:  # fmt: skip
    """The agent of this process: how to wake it and where bound ports plug (None: gone)."""
    for key, value in ((common.AGENT_WAKE_KEY, wake_agent), (VIF_DETAILS_KEY, vif_details)):
        if value is None:
            runtime.state.pop(key, None)
        else:
            runtime.state[key] = value


def wake(ctx: RequestContext) -> None:
    """Wake this process's network agent (after writes it acts on)."""
    common.wake(ctx)


def report_port_status(ctx: RequestContext, statuses: dict[str, str]) -> None:
    """What the agent saw: each port ACTIVE (plugged) or DOWN. No wake-up, no revision."""
    if not statuses:
        return
    with ctx.db.write() as session:
        for port_id, status in statuses.items():
            row = session.get(models.Port, port_id)
            if row is not None and row.status != status:
                row.status = status


def network_names(ctx: RequestContext, network_ids: set[str]) -> dict[str, str]:
    """id -> name of these networks (compute's `addresses` are keyed by network name)."""
    if not network_ids:
        return {}
    with ctx.db.read() as session:
        rows = session.execute(
            select(models.Network.id, models.Network.name).where(
                models.Network.id.in_(list(network_ids))
            )
        )
        return {network_id: name for network_id, name in rows}
