"""Tables of a cell database: servers and what the hosts of the cell report.

Each cell is its own database with its own schema history (cell_migrations/),
so these tables hang off their own declarative base. A server row carries the
user's wish (`desired_state`, `boot_serial`, flavor and image, bumped
`generation`) and what its host reported (`vm_state`, `power_state`,
`observed_generation`); the host's agent works on rows where the two differ.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, ForeignKey, Index, Integer, String, Text, UniqueConstraint, text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from pocketstack.core.db import PreciseDateTime


class CellBase(DeclarativeBase):
    """Declarative base of the cell databases (apart from the API database's Base)."""


class Instance(CellBase):
    __tablename__ = "compute_instance"
    __table_args__ = (
        # The agent's work queue: rows whose spec moved past what their host reported.
        Index(
            "ix_compute_instance_pending",
            "host",
            sqlite_where=text("generation > observed_generation"),
            postgresql_where=text("generation > observed_generation"),
        ),
        Index("ix_compute_instance_project_created", "project_id", "created_at"),
    )
    uuid: Mapped[str] = mapped_column(String(36), primary_key=True)
    name: Mapped[str] = mapped_column(String(255), index=True)
    hostname: Mapped[str] = mapped_column(String(255))
    description: Mapped[str | None] = mapped_column(Text)
    project_id: Mapped[str] = mapped_column(String(255))
    user_id: Mapped[str] = mapped_column(String(255))
    host: Mapped[str | None] = mapped_column(String(255))
    node: Mapped[str | None] = mapped_column(String(255))
    availability_zone: Mapped[str | None] = mapped_column(String(255))  # its host's zone
    pinned_availability_zone: Mapped[str | None] = mapped_column(String(255))  # asked for
    flavor: Mapped[str] = mapped_column(Text)  # JSON: the flavor as it was at boot/resize
    flavor_id: Mapped[str] = mapped_column(String(255))
    old_flavor: Mapped[str | None] = mapped_column(Text)  # JSON, while a resize awaits confirm
    image_ref: Mapped[str] = mapped_column(String(255))
    key_name: Mapped[str | None] = mapped_column(String(255))
    key_data: Mapped[str | None] = mapped_column(Text)
    user_data: Mapped[str | None] = mapped_column(Text)
    config_drive: Mapped[str] = mapped_column(String(255), default="")
    access_ip_v4: Mapped[str | None] = mapped_column(String(39))
    access_ip_v6: Mapped[str | None] = mapped_column(String(39))
    locked: Mapped[bool] = mapped_column(Boolean, default=False)
    locked_by: Mapped[str | None] = mapped_column(String(10))
    locked_reason: Mapped[str | None] = mapped_column(Text)
    vm_state: Mapped[str] = mapped_column(String(255), index=True)
    task_state: Mapped[str | None] = mapped_column(String(255))
    power_state: Mapped[int] = mapped_column(Integer, default=0)
    progress: Mapped[int] = mapped_column(Integer, default=0)
    desired_state: Mapped[str] = mapped_column(String(20))
    boot_serial: Mapped[int] = mapped_column(Integer, default=0)
    reboot_type: Mapped[str | None] = mapped_column(String(10))
    devices: Mapped[str] = mapped_column(Text, default="{}")  # JSON: e.g. the GPU it got
    generation: Mapped[int] = mapped_column(Integer, default=1)
    observed_generation: Mapped[int] = mapped_column(Integer, default=0)
    launched_at: Mapped[datetime | None] = mapped_column(PreciseDateTime)
    terminated_at: Mapped[datetime | None] = mapped_column(PreciseDateTime)
    deleted: Mapped[bool] = mapped_column(Boolean, default=False, index=True)
    deleted_at: Mapped[datetime | None] = mapped_column(PreciseDateTime)
    created_at: Mapped[datetime] = mapped_column(PreciseDateTime, index=True)
    updated_at: Mapped[datetime] = mapped_column(PreciseDateTime, index=True)


class InstanceMetadata(CellBase):
    __tablename__ = "compute_instance_metadata"
    instance_uuid: Mapped[str] = mapped_column(
        ForeignKey("compute_instance.uuid", ondelete="CASCADE"), primary_key=True
    )
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    value: Mapped[str] = mapped_column(String(255))


class InstanceTag(CellBase):
    __tablename__ = "compute_instance_tag"
    instance_uuid: Mapped[str] = mapped_column(
        ForeignKey("compute_instance.uuid", ondelete="CASCADE"), primary_key=True
    )
    tag: Mapped[str] = mapped_column(String(80), primary_key=True)


class InstanceFault(CellBase):
    __tablename__ = "compute_instance_fault"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    instance_uuid: Mapped[str] = mapped_column(
        ForeignKey("compute_instance.uuid", ondelete="CASCADE"), index=True
    )
    code: Mapped[int] = mapped_column(Integer)
    message: Mapped[str] = mapped_column(String(255))
    details: Mapped[str] = mapped_column(Text, default="")
    host: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(PreciseDateTime)


class InstanceAction(CellBase):
    __tablename__ = "compute_instance_action"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    instance_uuid: Mapped[str] = mapped_column(
        ForeignKey("compute_instance.uuid", ondelete="CASCADE"), index=True
    )
    request_id: Mapped[str] = mapped_column(String(255))
    action: Mapped[str] = mapped_column(String(255))
    project_id: Mapped[str | None] = mapped_column(String(255))
    user_id: Mapped[str | None] = mapped_column(String(255))
    message: Mapped[str | None] = mapped_column(String(255))
    start_time: Mapped[datetime] = mapped_column(PreciseDateTime)
    finish_time: Mapped[datetime | None] = mapped_column(PreciseDateTime)
    updated_at: Mapped[datetime] = mapped_column(PreciseDateTime)


class InstanceActionEvent(CellBase):
    __tablename__ = "compute_instance_action_event"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    action_id: Mapped[int] = mapped_column(
        ForeignKey("compute_instance_action.id", ondelete="CASCADE"), index=True
    )
    event: Mapped[str] = mapped_column(String(255))
    result: Mapped[str | None] = mapped_column(String(255))
    traceback: Mapped[str | None] = mapped_column(Text)
    details: Mapped[str | None] = mapped_column(Text)
    host: Mapped[str | None] = mapped_column(String(255))
    start_time: Mapped[datetime] = mapped_column(PreciseDateTime)
    finish_time: Mapped[datetime | None] = mapped_column(PreciseDateTime)


class ComputeService(CellBase):
    """A host's compute service: enabled or not, and when it last reported."""

    __tablename__ = "compute_service"
    __table_args__ = (UniqueConstraint("host", "binary"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    uuid: Mapped[str] = mapped_column(String(36), unique=True)
    host: Mapped[str] = mapped_column(String(255))
    binary: Mapped[str] = mapped_column(String(255))
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    disabled_reason: Mapped[str | None] = mapped_column(String(255))
    forced_down: Mapped[bool] = mapped_column(Boolean, default=False)
    last_seen_up: Mapped[datetime | None] = mapped_column(PreciseDateTime)
    created_at: Mapped[datetime] = mapped_column(PreciseDateTime)
    updated_at: Mapped[datetime | None] = mapped_column(PreciseDateTime)


class ComputeNode(CellBase):
    """A hypervisor: what a host has, as its agent last reported it."""

    __tablename__ = "compute_node"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    uuid: Mapped[str] = mapped_column(String(36), unique=True)
    host: Mapped[str] = mapped_column(String(255), index=True)
    hypervisor_hostname: Mapped[str] = mapped_column(String(255))
    hypervisor_type: Mapped[str] = mapped_column(String(255))
    hypervisor_version: Mapped[int] = mapped_column(Integer, default=1)
    host_ip: Mapped[str] = mapped_column(String(39))
    vcpus: Mapped[int] = mapped_column(Integer)
    memory_mb: Mapped[int] = mapped_column(Integer)
    local_gb: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(PreciseDateTime)
    updated_at: Mapped[datetime | None] = mapped_column(PreciseDateTime)
