"""Compute tables of the API database: what spans cells. Only compute's own modules touch them.

As in Nova's cells v2, the API database knows which cell holds each server
(instance mappings), which cell each host belongs to (host mappings), and the
things that are not tied to a host: flavors, keypairs. Servers themselves live
in the cell databases (cell_models.py).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, Float, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from pocketstack.core.db import Base, PreciseDateTime


class CellMapping(Base):
    """A cell and where its database is; cell0 holds servers that never scheduled."""

    __tablename__ = "compute_cell_mapping"
    uuid: Mapped[str] = mapped_column(String(36), primary_key=True)
    name: Mapped[str] = mapped_column(String(255), unique=True)
    database_url: Mapped[str] = mapped_column(Text)
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(PreciseDateTime)


class HostMapping(Base):
    """A compute host, its cell, and the resource provider that holds its inventory."""

    __tablename__ = "compute_host_mapping"
    host: Mapped[str] = mapped_column(String(255), primary_key=True)
    cell_uuid: Mapped[str] = mapped_column(ForeignKey("compute_cell_mapping.uuid"), index=True)
    provider_uuid: Mapped[str] = mapped_column(String(36), unique=True)
    created_at: Mapped[datetime] = mapped_column(PreciseDateTime)


class InstanceMapping(Base):
    """Which cell holds a server; a server is found through this row before its cell is read."""

    __tablename__ = "compute_instance_mapping"
    instance_uuid: Mapped[str] = mapped_column(String(36), primary_key=True)
    cell_uuid: Mapped[str] = mapped_column(ForeignKey("compute_cell_mapping.uuid"), index=True)
    project_id: Mapped[str] = mapped_column(String(255), index=True)
    user_id: Mapped[str] = mapped_column(String(255))
    queued_for_delete: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(PreciseDateTime)


class Flavor(Base):
    __tablename__ = "compute_flavor"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    flavorid: Mapped[str] = mapped_column(String(255), unique=True)
    name: Mapped[str] = mapped_column(String(255), unique=True)
    vcpus: Mapped[int] = mapped_column(Integer)
    memory_mb: Mapped[int] = mapped_column(Integer)
    root_gb: Mapped[int] = mapped_column(Integer)
    ephemeral_gb: Mapped[int] = mapped_column(Integer, default=0)
    swap: Mapped[int] = mapped_column(Integer, default=0)
    rxtx_factor: Mapped[float] = mapped_column(Float, default=1.0)
    is_public: Mapped[bool] = mapped_column(Boolean, default=True)
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    description: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(PreciseDateTime)
    updated_at: Mapped[datetime | None] = mapped_column(PreciseDateTime)


class FlavorExtraSpec(Base):
    __tablename__ = "compute_flavor_extra_spec"
    flavor_id: Mapped[int] = mapped_column(
        ForeignKey("compute_flavor.id", ondelete="CASCADE"), primary_key=True
    )
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    value: Mapped[str] = mapped_column(String(255))


class FlavorProject(Base):
    """A project given access to a private flavor."""

    __tablename__ = "compute_flavor_project"
    flavor_id: Mapped[int] = mapped_column(
        ForeignKey("compute_flavor.id", ondelete="CASCADE"), primary_key=True
    )
    project_id: Mapped[str] = mapped_column(String(255), primary_key=True)


class KeyPair(Base):
    __tablename__ = "compute_keypair"
    __table_args__ = (UniqueConstraint("user_id", "name"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    user_id: Mapped[str] = mapped_column(String(255), index=True)
    name: Mapped[str] = mapped_column(String(255))
    type: Mapped[str] = mapped_column(String(10))
    public_key: Mapped[str] = mapped_column(Text)
    fingerprint: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(PreciseDateTime)


class ServerGroup(Base):
    """A server group: servers scheduled with (anti-)affinity to each other."""

    __tablename__ = "compute_server_group"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    uuid: Mapped[str] = mapped_column(String(36), unique=True)
    name: Mapped[str] = mapped_column(String(255))
    project_id: Mapped[str] = mapped_column(String(255), index=True)
    user_id: Mapped[str] = mapped_column(String(255))
    policy: Mapped[str] = mapped_column(String(255))
    max_server_per_host: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(PreciseDateTime)


class ServerGroupMember(Base):
    """A server in a group, with the host it was placed on (None: it found no host)."""

    __tablename__ = "compute_server_group_member"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    group_id: Mapped[int] = mapped_column(
        ForeignKey("compute_server_group.id", ondelete="CASCADE"), index=True
    )
    instance_uuid: Mapped[str] = mapped_column(String(36), unique=True)
    user_id: Mapped[str] = mapped_column(String(255))
    host: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(PreciseDateTime)


class Aggregate(Base):
    """A host aggregate; its `availability_zone` metadata makes it an availability zone.
    Its uuid is also the placement aggregate its hosts' providers are members of."""

    __tablename__ = "compute_aggregate"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    uuid: Mapped[str] = mapped_column(String(36), unique=True)
    name: Mapped[str] = mapped_column(String(255), unique=True)
    created_at: Mapped[datetime] = mapped_column(PreciseDateTime)
    updated_at: Mapped[datetime | None] = mapped_column(PreciseDateTime)


class AggregateHost(Base):
    __tablename__ = "compute_aggregate_host"
    aggregate_id: Mapped[int] = mapped_column(
        ForeignKey("compute_aggregate.id", ondelete="CASCADE"), primary_key=True
    )
    host: Mapped[str] = mapped_column(String(255), primary_key=True)


class AggregateMetadata(Base):
    __tablename__ = "compute_aggregate_metadata"
    aggregate_id: Mapped[int] = mapped_column(
        ForeignKey("compute_aggregate.id", ondelete="CASCADE"), primary_key=True
    )
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    value: Mapped[str] = mapped_column(String(255), index=True)


class Quota(Base):
    """A project's (or, with `user_id`, one of its users') limit on one resource."""

    __tablename__ = "compute_quota"
    project_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(255), primary_key=True)  # "": the project
    resource: Mapped[str] = mapped_column(String(255), primary_key=True)
    hard_limit: Mapped[int] = mapped_column(Integer)


class QuotaClass(Base):
    """A quota class's limit on one resource; class `default` holds every project's defaults."""

    __tablename__ = "compute_quota_class"
    class_name: Mapped[str] = mapped_column(String(255), primary_key=True)
    resource: Mapped[str] = mapped_column(String(255), primary_key=True)
    hard_limit: Mapped[int] = mapped_column(Integer)
