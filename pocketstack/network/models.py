"""Network tables. Only network/*.py services touch them.

Every resource carries Neutron's standard attributes (project, name,
description, revision_number, timestamps). Addresses are rows of
`network_ip_allocation` keyed by (subnet, address): the primary key is what
makes IPAM hand an address out once, whatever the concurrency; segmentation
ids are unique per network type the same way.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from pocketstack.core.db import Base, PreciseDateTime


class StandardAttrs:
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    project_id: Mapped[str] = mapped_column(String(255), index=True)
    name: Mapped[str] = mapped_column(String(255), default="")
    description: Mapped[str] = mapped_column(String(255), default="")
    revision_number: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(PreciseDateTime)
    updated_at: Mapped[datetime] = mapped_column(PreciseDateTime)


class Network(StandardAttrs, Base):
    __tablename__ = "network_network"
    admin_state_up: Mapped[bool] = mapped_column(Boolean, default=True)
    status: Mapped[str] = mapped_column(String(16), default="ACTIVE")
    shared: Mapped[bool] = mapped_column(Boolean, default=False)
    external: Mapped[bool] = mapped_column(Boolean, default=False)
    is_default: Mapped[bool] = mapped_column(Boolean, default=False)
    mtu: Mapped[int] = mapped_column(Integer)
    port_security_enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    dns_domain: Mapped[str] = mapped_column(String(255), default="")
    network_type: Mapped[str] = mapped_column(String(32))
    physical_network: Mapped[str | None] = mapped_column(String(64))
    segmentation_id: Mapped[int | None] = mapped_column(Integer)
    qos_policy_id: Mapped[str | None] = mapped_column(String(36))


class SegmentId(Base):
    """A segmentation id in use: the primary key keeps two networks off one VNI."""

    __tablename__ = "network_segment_id"
    network_type: Mapped[str] = mapped_column(String(32), primary_key=True)
    segmentation_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    network_id: Mapped[str] = mapped_column(
        ForeignKey("network_network.id", ondelete="CASCADE"), index=True
    )


class Subnet(StandardAttrs, Base):
    __tablename__ = "network_subnet"
    network_id: Mapped[str] = mapped_column(
        ForeignKey("network_network.id", ondelete="CASCADE"), index=True
    )
    ip_version: Mapped[int] = mapped_column(Integer)
    cidr: Mapped[str] = mapped_column(String(64))
    gateway_ip: Mapped[str | None] = mapped_column(String(64))
    enable_dhcp: Mapped[bool] = mapped_column(Boolean, default=True)
    ipv6_ra_mode: Mapped[str | None] = mapped_column(String(32))
    ipv6_address_mode: Mapped[str | None] = mapped_column(String(32))
    subnetpool_id: Mapped[str | None] = mapped_column(String(36))
    allocation_pools: Mapped[list[dict[str, str]]] = mapped_column(JSON, default=list)
    dns_nameservers: Mapped[list[str]] = mapped_column(JSON, default=list)
    host_routes: Mapped[list[dict[str, str]]] = mapped_column(JSON, default=list)
    service_types: Mapped[list[str]] = mapped_column(JSON, default=list)


class Port(StandardAttrs, Base):
    __tablename__ = "network_port"
    __table_args__ = (UniqueConstraint("network_id", "mac_address"),)
    network_id: Mapped[str] = mapped_column(
        ForeignKey("network_network.id", ondelete="CASCADE"), index=True
    )
    mac_address: Mapped[str] = mapped_column(String(32))
    admin_state_up: Mapped[bool] = mapped_column(Boolean, default=True)
    status: Mapped[str] = mapped_column(String(16), default="DOWN")
    device_id: Mapped[str] = mapped_column(String(255), default="", index=True)
    device_owner: Mapped[str] = mapped_column(String(255), default="", index=True)
    binding_host_id: Mapped[str] = mapped_column(String(255), default="", index=True)
    binding_vif_type: Mapped[str] = mapped_column(String(64), default="unbound")
    binding_vif_details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    binding_vnic_type: Mapped[str] = mapped_column(String(64), default="normal")
    binding_profile: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    port_security_enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    dns_name: Mapped[str] = mapped_column(String(255), default="")
    qos_policy_id: Mapped[str | None] = mapped_column(String(36))
    allowed_address_pairs: Mapped[list[dict[str, str]]] = mapped_column(JSON, default=list)
    extra_dhcp_opts: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)


class IpAllocation(Base):
    """An address held by a port; one row per (subnet, address), ever."""

    __tablename__ = "network_ip_allocation"
    subnet_id: Mapped[str] = mapped_column(
        ForeignKey("network_subnet.id", ondelete="CASCADE"), primary_key=True
    )
    ip_address: Mapped[str] = mapped_column(String(64), primary_key=True)
    port_id: Mapped[str] = mapped_column(
        ForeignKey("network_port.id", ondelete="CASCADE"), index=True
    )
    network_id: Mapped[str] = mapped_column(String(36), index=True)


class SecurityGroup(StandardAttrs, Base):
    __tablename__ = "network_security_group"
    stateful: Mapped[bool] = mapped_column(Boolean, default=True)


class DefaultSecurityGroup(Base):
    """Each project's `default` group: the primary key keeps it to one per project."""

    __tablename__ = "network_default_security_group"
    project_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    security_group_id: Mapped[str] = mapped_column(
        ForeignKey("network_security_group.id", ondelete="CASCADE")
    )


class SecurityGroupRule(Base):
    __tablename__ = "network_security_group_rule"
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    project_id: Mapped[str] = mapped_column(String(255), index=True)
    security_group_id: Mapped[str] = mapped_column(
        ForeignKey("network_security_group.id", ondelete="CASCADE"), index=True
    )
    direction: Mapped[str] = mapped_column(String(16))
    ethertype: Mapped[str] = mapped_column(String(8))
    protocol: Mapped[str | None] = mapped_column(String(40))
    port_range_min: Mapped[int | None] = mapped_column(Integer)
    port_range_max: Mapped[int | None] = mapped_column(Integer)
    remote_ip_prefix: Mapped[str | None] = mapped_column(String(64))
    remote_group_id: Mapped[str | None] = mapped_column(
        ForeignKey("network_security_group.id", ondelete="CASCADE")
    )
    description: Mapped[str] = mapped_column(String(255), default="")
    revision_number: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(PreciseDateTime)
    updated_at: Mapped[datetime] = mapped_column(PreciseDateTime)


class PortSecurityGroup(Base):
    __tablename__ = "network_port_security_group"
    port_id: Mapped[str] = mapped_column(
        ForeignKey("network_port.id", ondelete="CASCADE"), primary_key=True
    )
    security_group_id: Mapped[str] = mapped_column(
        ForeignKey("network_security_group.id"), primary_key=True, index=True
    )


class Tag(Base):
    """A tag on any resource (`resource_type` is its collection: networks, ports, ...)."""

    __tablename__ = "network_tag"
    resource_type: Mapped[str] = mapped_column(String(32), primary_key=True)
    resource_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    tag: Mapped[str] = mapped_column(String(255), primary_key=True)


class Quota(Base):
    __tablename__ = "network_quota"
    project_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    resource: Mapped[str] = mapped_column(String(64), primary_key=True)
    limit: Mapped[int] = mapped_column(Integer)


class Router(StandardAttrs, Base):
    """A router; its interfaces and gateway are ports whose device_id is the router's id."""

    __tablename__ = "network_router"
    admin_state_up: Mapped[bool] = mapped_column(Boolean, default=True)
    status: Mapped[str] = mapped_column(String(16), default="ACTIVE")
    gateway_port_id: Mapped[str | None] = mapped_column(
        ForeignKey("network_port.id", ondelete="SET NULL")
    )
    enable_snat: Mapped[bool] = mapped_column(Boolean, default=True)
    routes: Mapped[list[dict[str, str]]] = mapped_column(JSON, default=list)


class FloatingIp(StandardAttrs, Base):
    __tablename__ = "network_floating_ip"
    floating_network_id: Mapped[str] = mapped_column(ForeignKey("network_network.id"), index=True)
    floating_port_id: Mapped[str] = mapped_column(
        ForeignKey("network_port.id", ondelete="CASCADE"), unique=True
    )
    floating_ip_address: Mapped[str] = mapped_column(String(64))
    port_id: Mapped[str | None] = mapped_column(
        ForeignKey("network_port.id", ondelete="SET NULL"), index=True
    )
    fixed_ip_address: Mapped[str | None] = mapped_column(String(64))
    router_id: Mapped[str | None] = mapped_column(
        ForeignKey("network_router.id", ondelete="SET NULL"), index=True
    )
    status: Mapped[str] = mapped_column(String(16), default="DOWN")
    qos_policy_id: Mapped[str | None] = mapped_column(String(36))
    dns_name: Mapped[str] = mapped_column(String(255), default="")
    dns_domain: Mapped[str] = mapped_column(String(255), default="")


class PortForwarding(Base):
    """FIP:external port(s) -> internal address:port(s); one per (FIP, protocol, port)."""

    __tablename__ = "network_port_forwarding"
    __table_args__ = (UniqueConstraint("floatingip_id", "protocol", "external_port_start"),)
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    floatingip_id: Mapped[str] = mapped_column(
        ForeignKey("network_floating_ip.id", ondelete="CASCADE"), index=True
    )
    internal_port_id: Mapped[str] = mapped_column(
        ForeignKey("network_port.id", ondelete="CASCADE"), index=True
    )
    internal_ip_address: Mapped[str] = mapped_column(String(64))
    internal_port_start: Mapped[int] = mapped_column(Integer)
    internal_port_end: Mapped[int] = mapped_column(Integer)
    external_port_start: Mapped[int] = mapped_column(Integer)
    external_port_end: Mapped[int] = mapped_column(Integer)
    protocol: Mapped[str] = mapped_column(String(8))
    description: Mapped[str] = mapped_column(String(255), default="")


class SubnetPool(StandardAttrs, Base):
    """Prefixes subnets are carved from (`subnetpool_id` + `prefixlen` on a subnet)."""

    __tablename__ = "network_subnet_pool"
    ip_version: Mapped[int] = mapped_column(Integer)
    prefixes: Mapped[list[str]] = mapped_column(JSON, default=list)
    default_prefixlen: Mapped[int] = mapped_column(Integer)
    min_prefixlen: Mapped[int] = mapped_column(Integer)
    max_prefixlen: Mapped[int] = mapped_column(Integer)
    shared: Mapped[bool] = mapped_column(Boolean, default=False)
    is_default: Mapped[bool] = mapped_column(Boolean, default=False)
    default_quota: Mapped[int | None] = mapped_column(Integer)
    address_scope_id: Mapped[str | None] = mapped_column(String(36))


class QosPolicy(StandardAttrs, Base):
    __tablename__ = "network_qos_policy"
    shared: Mapped[bool] = mapped_column(Boolean, default=False)
    is_default: Mapped[bool] = mapped_column(Boolean, default=False)


class QosBandwidthLimitRule(Base):
    """At most one per (policy, direction), as Neutron allows."""

    __tablename__ = "network_qos_bandwidth_limit_rule"
    __table_args__ = (UniqueConstraint("qos_policy_id", "direction"),)
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    qos_policy_id: Mapped[str] = mapped_column(
        ForeignKey("network_qos_policy.id", ondelete="CASCADE"), index=True
    )
    max_kbps: Mapped[int] = mapped_column(Integer)
    max_burst_kbps: Mapped[int] = mapped_column(Integer, default=0)
    direction: Mapped[str] = mapped_column(String(8), default="egress")
