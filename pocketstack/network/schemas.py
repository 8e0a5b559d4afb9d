"""Request bodies checked as Neutron checks them, and the views of every resource.

Bodies: every attribute is known (else 400 "Unrecognized attribute(s)"), typed
(else 400 "Invalid input for X"), and allowed to be set on create or update as
Neutron's attribute map says. Views carry the standard attributes
(`tenant_id` beside `project_id`, revision_number, timestamps, tags).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping, Sequence
from typing import Any

from pocketstack.core import errors
from pocketstack.network import common, models

MAC = re.compile(r"^([0-9a-fA-F]{2}:){5}[0-9a-fA-F]{2}$")
_STR, _BOOL, _INT, _LIST, _DICT, _ANY = str, bool, int, list, dict, object

# attribute -> (type, settable on create, settable on update)
NETWORK = {
    "name": (_STR, True, True),
    "description": (_STR, True, True),
    "admin_state_up": (_BOOL, True, True),
    "shared": (_BOOL, True, True),
    "router:external": (_BOOL, True, True),
    "mtu": (_INT, True, True),
    "port_security_enabled": (_BOOL, True, True),
    "dns_domain": (_STR, True, True),
    "provider:network_type": (_STR, True, False),
    "provider:physical_network": (_STR, True, False),
    "provider:segmentation_id": (_INT, True, False),
    "qos_policy_id": (_ANY, True, True),
    "project_id": (_STR, True, False),
    "tenant_id": (_STR, True, False),
    "tags": (_LIST, True, False),
    "is_default": (_BOOL, True, True),
    "availability_zone_hints": (_LIST, True, False),
}
SUBNET = {
    "name": (_STR, True, True),
    "description": (_STR, True, True),
    "network_id": (_STR, True, False),
    "ip_version": (_INT, True, False),
    "cidr": (_STR, True, False),
    "gateway_ip": (_ANY, True, True),
    "allocation_pools": (_LIST, True, True),
    "dns_nameservers": (_LIST, True, True),
    "host_routes": (_LIST, True, True),
    "enable_dhcp": (_BOOL, True, True),
    "ipv6_ra_mode": (_ANY, True, False),
    "ipv6_address_mode": (_ANY, True, False),
    "subnetpool_id": (_ANY, True, False),
    "prefixlen": (_INT, True, False),
    "project_id": (_STR, True, False),
    "tenant_id": (_STR, True, False),
    "tags": (_LIST, True, False),
    "service_types": (_LIST, True, True),
    "segment_id": (_ANY, True, False),
    "use_default_subnetpool": (_BOOL, True, False),
}
PORT = {
    "name": (_STR, True, True),
    "description": (_STR, True, True),
    "network_id": (_STR, True, False),
    "mac_address": (_STR, True, True),
    "admin_state_up": (_BOOL, True, True),
    "fixed_ips": (_LIST, True, True),
    "device_id": (_STR, True, True),
    "device_owner": (_STR, True, True),
    "security_groups": (_ANY, True, True),
    "allowed_address_pairs": (_ANY, True, True),
    "binding:host_id": (_STR, True, True),
    "binding:profile": (_ANY, True, True),
    "binding:vnic_type": (_STR, True, True),
    "port_security_enabled": (_BOOL, True, True),
    "dns_name": (_STR, True, True),
    "qos_policy_id": (_ANY, True, True),
    "extra_dhcp_opts": (_ANY, True, True),
    "project_id": (_STR, True, False),
    "tenant_id": (_STR, True, False),
    "tags": (_LIST, True, False),
    "propagate_uplink_status": (_BOOL, True, True),
}
SECURITY_GROUP = {
    "name": (_STR, True, True),
    "description": (_STR, True, True),
    "stateful": (_BOOL, True, True),
    "project_id": (_STR, True, False),
    "tenant_id": (_STR, True, False),
    "tags": (_LIST, True, False),
}
SECURITY_GROUP_RULE = {
    "security_group_id": (_STR, True, False),
    "direction": (_STR, True, False),
    "ethertype": (_STR, True, False),
    "protocol": (_ANY, True, False),
    "port_range_min": (_ANY, True, False),
    "port_range_max": (_ANY, True, False),
    "remote_ip_prefix": (_ANY, True, False),
    "remote_group_id": (_ANY, True, False),
    "remote_address_group_id": (_ANY, True, False),
    "description": (_STR, True, False),
    "project_id": (_STR, True, False),
    "tenant_id": (_STR, True, False),
}
ROUTER = {
    "name": (_STR, True, True),
    "description": (_STR, True, True),
    "admin_state_up": (_BOOL, True, True),
    "external_gateway_info": (_ANY, True, True),
    "routes": (_ANY, False, True),
    "project_id": (_STR, True, False),
    "tenant_id": (_STR, True, False),
    "tags": (_LIST, True, False),
    "distributed": (_BOOL, True, True),
    "ha": (_BOOL, True, True),
    "availability_zone_hints": (_LIST, True, False),
}
FLOATING_IP = {
    "floating_network_id": (_STR, True, False),
    "floating_ip_address": (_STR, True, False),
    "subnet_id": (_STR, True, False),
    "port_id": (_ANY, True, True),
    "fixed_ip_address": (_ANY, True, True),
    "description": (_STR, True, True),
    "qos_policy_id": (_ANY, True, True),
    "dns_name": (_STR, True, False),
    "dns_domain": (_STR, True, False),
    "project_id": (_STR, True, False),
    "tenant_id": (_STR, True, False),
    "tags": (_LIST, True, False),
}
PORT_FORWARDING = {
    "internal_port_id": (_STR, True, True),
    "internal_ip_address": (_STR, True, True),
    "internal_port": (_ANY, True, True),
    "external_port": (_ANY, True, True),
    "internal_port_range": (_ANY, True, True),
    "external_port_range": (_ANY, True, True),
    "protocol": (_STR, True, True),
    "description": (_STR, True, True),
    "project_id": (_STR, True, False),
    "tenant_id": (_STR, True, False),
}
SUBNET_POOL = {
    "name": (_STR, True, True),
    "description": (_STR, True, True),
    "prefixes": (_LIST, True, True),
    "default_prefixlen": (_INT, True, True),
    "min_prefixlen": (_INT, True, True),
    "max_prefixlen": (_INT, True, True),
    "shared": (_BOOL, True, False),
    "is_default": (_BOOL, True, True),
    "default_quota": (_ANY, True, True),
    "address_scope_id": (_ANY, True, True),
    "project_id": (_STR, True, False),
    "tenant_id": (_STR, True, False),
    "tags": (_LIST, True, False),
}
QOS_POLICY = {
    "name": (_STR, True, True),
    "description": (_STR, True, True),
    "shared": (_BOOL, True, True),
    "is_default": (_BOOL, True, True),
    "project_id": (_STR, True, False),
    "tenant_id": (_STR, True, False),
    "tags": (_LIST, True, False),
}
VNIC_TYPES = (
    "normal",
    "direct",
    "macvtap",
    "baremetal",
    "direct-physical",
    "virtio-forwarder",
    "smart-nic",
    "vdpa",
    "accelerator-direct",
    "accelerator-direct-physical",
    "remote-managed",
)
IPV6_MODES = (None, "slaac", "dhcpv6-stateful", "dhcpv6-stateless")
READ_ONLY = ("id", "status", "created_at", "updated_at", "revision_number", "subnets")


def _type_name(kind: type) -> str:
    return {
        str: "a string",
        bool: "a boolean",
        int: "an integer",
        list: "a list",
        dict: "a dictionary",
    }.get(kind, "valid")


def checked(
    body: Any, member: str, attributes: Mapping[str, tuple[type, bool, bool]], creating: bool
) -> dict[str, Any]:
    """The member's attributes from `{member: {...}}`, each known, settable and typed."""
    if not isinstance(body, dict) or not isinstance(body.get(member), dict):
        raise errors.Invalid(
            f"Resource body required with '{member}' as its key", code="HTTPBadRequest"
        )
    values: dict[str, Any] = body[member]
    unknown = [k for k in values if k not in attributes and k not in READ_ONLY]
    if unknown:
        raise errors.Invalid(
            f"Unrecognized attribute(s) '{', '.join(sorted(unknown))}'", code="HTTPBadRequest"
        )
    for key, value in values.items():
        if key in READ_ONLY:
            raise errors.Invalid(
                f"Attribute '{key}' not allowed in {'POST' if creating else 'PUT'}",
                code="HTTPBadRequest",
            )
        kind, on_create, on_update = attributes[key]
        if not (on_create if creating else on_update):
            raise errors.Invalid(f"Cannot update read-only attribute {key}", code="HTTPBadRequest")
        if kind is bool and isinstance(value, str) and value.lower() in ("true", "false"):
            values[key] = value = value.lower() == "true"
        wrong_int = kind is int and (isinstance(value, bool) or not isinstance(value, int))
        if kind is not object and (wrong_int or not isinstance(value, kind)):
            raise errors.Invalid(
                f"Invalid input for {key}. Reason: '{value}' is not {_type_name(kind)}.",
                code="HTTPBadRequest",
            )
        if kind is str and len(value) > 255:
            raise errors.Invalid(
                f"Invalid input for {key}. Reason: '{value[:20]}...' exceeds maximum length of "
                "255.",
                code="HTTPBadRequest",
            )
    return values


def bodies(body: Any, member: str, collection: str) -> tuple[list[Any], bool]:
    """A create body: one `{member: {...}}` or bulk `{collection: [{...}, ...]}`."""
    if isinstance(body, dict) and isinstance(body.get(collection), list):
        return [{member: item} for item in body[collection]], True
    return [body], False


def router_body(body: Any, creating: bool) -> dict[str, Any]:
    values = checked(body, "router", ROUTER, creating)
    for flag in ("distributed", "ha"):
        if values.get(flag):
            raise errors.Invalid(
                f"Invalid input for {flag}: this cloud's routers are centralized and not HA.",
                code="HTTPBadRequest",
            )
    return values


def subnet_pool_body(body: Any, creating: bool) -> dict[str, Any]:
    values = checked(body, "subnetpool", SUBNET_POOL, creating)
    if creating and "prefixes" not in values:
        raise errors.Invalid(
            "Failed to parse request. Required attribute 'prefixes' not specified",
            code="HTTPBadRequest",
        )
    return values


def qos_policy_body(body: Any, creating: bool) -> dict[str, Any]:
    return checked(body, "policy", QOS_POLICY, creating)


def floating_ip_body(body: Any, creating: bool) -> dict[str, Any]:
    return checked(body, "floatingip", FLOATING_IP, creating)


def port_forwarding_body(body: Any, creating: bool) -> dict[str, Any]:
    return checked(body, "port_forwarding", PORT_FORWARDING, creating)


def network_body(body: Any, creating: bool) -> dict[str, Any]:
    values = checked(body, "network", NETWORK, creating)
    if "mtu" in values and values["mtu"] < 68:
        raise errors.Invalid(
            f"Invalid input for mtu. Reason: '{values['mtu']}' is too small - "
            "must be at least '68'.",
            code="HTTPBadRequest",
        )
    return values


def subnet_body(body: Any, creating: bool) -> dict[str, Any]:
    values = checked(body, "subnet", SUBNET, creating)
    if creating:
        for required in ("network_id", "ip_version"):
            if required not in values:
                raise errors.Invalid(
                    f"Failed to parse request. Required attribute '{required}' not specified",
                    code="HTTPBadRequest",
                )
        if values["ip_version"] not in (4, 6):
            raise errors.Invalid(
                f"Invalid input for ip_version. Reason: {values['ip_version']} is not in [4, 6].",
                code="HTTPBadRequest",
            )
    for mode in ("ipv6_ra_mode", "ipv6_address_mode"):
        if values.get(mode) not in IPV6_MODES:
            raise errors.Invalid(
                f"Invalid input for {mode}. Reason: {values[mode]} is not in valid_values.",
                code="HTTPBadRequest",
            )
    for server in values.get("dns_nameservers", []):
        _ip(server, "dns_nameservers")
    if len(set(values.get("dns_nameservers", []))) != len(values.get("dns_nameservers", [])):
        raise errors.Invalid(
            "Invalid input for dns_nameservers. Reason: Duplicate nameserver.",
            code="HTTPBadRequest",
        )
    for route in values.get("host_routes", []):
        if not isinstance(route, dict) or set(route) != {"destination", "nexthop"}:
            raise errors.Invalid(
                f"Invalid input for host_routes. Reason: {route} is not a valid route.",
                code="HTTPBadRequest",
            )
        _net(route["destination"], "host_routes")
        _ip(route["nexthop"], "host_routes")
    for pool in values.get("allocation_pools", []):
        if not isinstance(pool, dict) or set(pool) != {"start", "end"}:
            raise errors.Invalid(
                f"Invalid input for allocation_pools. Reason: {pool} is not a valid pool.",
                code="HTTPBadRequest",
            )
    return values


def port_body(body: Any, creating: bool) -> dict[str, Any]:
    values = checked(body, "port", PORT, creating)
    if creating and "network_id" not in values:
        raise errors.Invalid(
            "Failed to parse request. Required attribute 'network_id' not specified",
            code="HTTPBadRequest",
        )
    if "mac_address" in values and not MAC.match(values["mac_address"]):
        raise errors.Invalid(
            f"Invalid input for mac_address. Reason: '{values['mac_address']}' "
            "is not a valid MAC address.",
            code="HTTPBadRequest",
        )
    if values.get("binding:vnic_type", "normal") not in VNIC_TYPES:
        raise errors.Invalid(
            f"Invalid input for binding:vnic_type. Reason: "
            f"{values['binding:vnic_type']} is not in valid_values.",
            code="HTTPBadRequest",
        )
    for entry in values.get("fixed_ips") or []:
        if not isinstance(entry, dict) or not set(entry) <= {"subnet_id", "ip_address"}:
            raise errors.Invalid(
                f"Invalid input for fixed_ips. Reason: {entry} is not valid.", code="HTTPBadRequest"
            )
        if "ip_address" in entry:
            _ip(entry["ip_address"], "fixed_ips")
    groups = values.get("security_groups")
    if groups is not None and not (
        isinstance(groups, list) and all(isinstance(g, str) for g in groups)
    ):
        raise errors.Invalid("Invalid input for security_groups.", code="HTTPBadRequest")
    pairs = values.get("allowed_address_pairs")
    if pairs is not None:
        if not isinstance(pairs, list):
            raise errors.Invalid("Invalid input for allowed_address_pairs.", code="HTTPBadRequest")
        for pair in pairs:
            if (
                not isinstance(pair, dict)
                or "ip_address" not in pair
                or not set(pair) <= {"ip_address", "mac_address"}
            ):
                raise errors.Invalid(
                    f"Invalid input for allowed_address_pairs. Reason: {pair} is not valid.",
                    code="AllowedAddressPairsMissingIP"
                    if isinstance(pair, dict)
                    else "HTTPBadRequest",
                )
            _net(pair["ip_address"], "allowed_address_pairs")
            if "mac_address" in pair and not MAC.match(str(pair["mac_address"])):
                raise errors.Invalid(
                    "Invalid input for allowed_address_pairs: "
                    f"'{pair['mac_address']}' is not a valid MAC address.",
                    code="HTTPBadRequest",
                )
    return values


def _ip(value: Any, attribute: str) -> None:
    try:
        ipaddress.ip_address(str(value))
    except ValueError:
        raise errors.Invalid(
            f"Invalid input for {attribute}. Reason: '{value}' is not a valid IP address.",
            code="HTTPBadRequest",
        ) from None


def _net(value: Any, attribute: str) -> None:
    try:
        ipaddress.ip_network(str(value), strict=False)
    except ValueError:
        raise errors.Invalid(
            f"Invalid input for {attribute}. Reason: '{value}' is not a valid IP subnet.",
            code="HTTPBadRequest",
        ) from None


def address_pairs(pairs: Sequence[dict[str, str]], mac: str) -> list[dict[str, str]]:
    """Allowed address pairs with the port's own MAC where none is given."""
    return [
        {"ip_address": p["ip_address"], "mac_address": p.get("mac_address") or mac} for p in pairs
    ]


# Views ---------------------------------------------------------------------------------


def _standard(row: Any, tags: Sequence[str]) -> dict[str, Any]:
    return {
        "id": row.id,
        "name": row.name,
        "description": row.description,
        "project_id": row.project_id,
        "tenant_id": row.project_id,
        "revision_number": row.revision_number,
        "created_at": common.timestamp(row.created_at),
        "updated_at": common.timestamp(row.updated_at),
        "tags": list(tags),
    }


def network_view(
    row: models.Network, subnet_ids: Sequence[str], tags: Sequence[str], admin: bool
) -> dict[str, Any]:
    view = {
        **_standard(row, tags),
        "admin_state_up": row.admin_state_up,
        "status": row.status,
        "subnets": sorted(subnet_ids),
        "shared": row.shared,
        "router:external": row.external,
        "mtu": row.mtu,
        "port_security_enabled": row.port_security_enabled,
        "dns_domain": row.dns_domain,
        "qos_policy_id": row.qos_policy_id,
        "availability_zone_hints": [],
        "availability_zones": ["nova"],
        "ipv4_address_scope": None,
        "ipv6_address_scope": None,
        "l2_adjacency": True,
        "is_default": row.is_default,
    }
    if admin:
        view.update(
            {
                "provider:network_type": row.network_type,
                "provider:physical_network": row.physical_network,
                "provider:segmentation_id": row.segmentation_id,
            }
        )
    return view


def subnet_view(row: models.Subnet, tags: Sequence[str]) -> dict[str, Any]:
    return {
        **_standard(row, tags),
        "network_id": row.network_id,
        "ip_version": row.ip_version,
        "cidr": row.cidr,
        "gateway_ip": row.gateway_ip,
        "enable_dhcp": row.enable_dhcp,
        "ipv6_ra_mode": row.ipv6_ra_mode,
        "ipv6_address_mode": row.ipv6_address_mode,
        "subnetpool_id": row.subnetpool_id,
        "allocation_pools": row.allocation_pools,
        "dns_nameservers": row.dns_nameservers,
        "host_routes": row.host_routes,
        "service_types": row.service_types,
        "segment_id": None,
        "dns_publish_fixed_ip": False,
    }


def dns_assignment(
    row: models.Port, fixed_ips: Sequence[dict[str, str]], domain: str
) -> list[dict[str, str]]:
    """Each address's host name: the port's dns_name, or one made from the address."""
    assignment = []
    for fixed in fixed_ips:
        address = fixed["ip_address"]
        hostname = row.dns_name or "host-" + address.replace(".", "-").replace(":", "-")
        fqdn = f"{hostname}.{domain.rstrip('.')}." if domain else f"{hostname}.openstacklocal."
        assignment.append({"hostname": hostname, "ip_address": address, "fqdn": fqdn})
    return assignment


def port_view(
    row: models.Port,
    fixed_ips: Sequence[dict[str, str]],
    groups: Sequence[str],
    tags: Sequence[str],
    network_domain: str,
    admin: bool,
) -> dict[str, Any]:
    view = {
        **_standard(row, tags),
        "network_id": row.network_id,
        "mac_address": row.mac_address,
        "admin_state_up": row.admin_state_up,
        "status": row.status,
        "fixed_ips": list(fixed_ips),
        "device_id": row.device_id,
        "device_owner": row.device_owner,
        "security_groups": list(groups),
        "allowed_address_pairs": row.allowed_address_pairs,
        "extra_dhcp_opts": row.extra_dhcp_opts,
        "port_security_enabled": row.port_security_enabled,
        "dns_name": row.dns_name,
        "dns_assignment": dns_assignment(row, fixed_ips, network_domain),
        "dns_domain": "",
        "qos_policy_id": row.qos_policy_id,
        "qos_network_policy_id": None,
        "binding:vnic_type": row.binding_vnic_type,
        "propagate_uplink_status": False,
        "ip_allocation": "immediate",
        "resource_request": None,
    }
    if admin:
        view.update(
            {
                "binding:host_id": row.binding_host_id,
                "binding:vif_type": row.binding_vif_type,
                "binding:vif_details": row.binding_vif_details,
                "binding:profile": row.binding_profile,
            }
        )
    return view


def rule_view(row: models.SecurityGroupRule) -> dict[str, Any]:
    normalized = row.remote_ip_prefix or (
        None if row.remote_group_id else ("0.0.0.0/0" if row.ethertype == "IPv4" else "::/0")
    )
    return {
        "id": row.id,
        "project_id": row.project_id,
        "tenant_id": row.project_id,
        "security_group_id": row.security_group_id,
        "direction": row.direction,
        "ethertype": row.ethertype,
        "protocol": row.protocol,
        "port_range_min": row.port_range_min,
        "port_range_max": row.port_range_max,
        "remote_ip_prefix": row.remote_ip_prefix,
        "remote_group_id": row.remote_group_id,
        "remote_address_group_id": None,
        "normalized_cidr": normalized,
        "description": row.description,
        "revision_number": row.revision_number,
        "created_at": common.timestamp(row.created_at),
        "updated_at": common.timestamp(row.updated_at),
    }


def group_view(
    row: models.SecurityGroup, rules: Sequence[dict[str, Any]], tags: Sequence[str]
) -> dict[str, Any]:
    return {
        **_standard(row, tags),
        "security_group_rules": list(rules),
        "stateful": row.stateful,
        "shared": False,
    }
