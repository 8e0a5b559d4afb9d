"""Block storage tables. Only volume/service.py (and the modules it splits into) touch them.

A row's `status` is both what the API shows and the work its backend still owes
it: the agent picks up volumes in `creating`, `extending`, `deleting`,
`reverting`, `uploading` and snapshots in `creating`, `deleting`, so a restarted process
finds every unfinished job in the database and finishes it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from pocketstack.core.db import Base, PreciseDateTime


class VolumeType(Base):
    __tablename__ = "volume_type"
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    name: Mapped[str] = mapped_column(String(255), unique=True)
    description: Mapped[str | None] = mapped_column(String(255))
    is_public: Mapped[bool] = mapped_column(Boolean, default=True)
    extra_specs: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    qos_specs_id: Mapped[str | None] = mapped_column(String(36))
    created_at: Mapped[datetime] = mapped_column(PreciseDateTime)
    updated_at: Mapped[datetime | None] = mapped_column(PreciseDateTime)


class VolumeTypeAccess(Base):
    """A project a private volume type is offered to."""

    __tablename__ = "volume_type_access"
    volume_type_id: Mapped[str] = mapped_column(
        ForeignKey("volume_type.id", ondelete="CASCADE"), primary_key=True
    )
    project_id: Mapped[str] = mapped_column(String(255), primary_key=True)


class Volume(Base):
    __tablename__ = "volume_volume"
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    project_id: Mapped[str] = mapped_column(String(255), index=True)
    user_id: Mapped[str] = mapped_column(String(255))
    name: Mapped[str | None] = mapped_column(String(255), index=True)
    description: Mapped[str | None] = mapped_column(String(255))
    size: Mapped[int] = mapped_column(Integer)
    # While `extending`: the size the backend is growing the volume to.
    new_size: Mapped[int | None] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(40), index=True)
    # The status an extend returns the volume to (`available` or `in-use`).
    previous_status: Mapped[str | None] = mapped_column(String(40))
    attach_status: Mapped[str] = mapped_column(String(20), default="detached")
    availability_zone: Mapped[str] = mapped_column(String(255))
    volume_type_id: Mapped[str] = mapped_column(ForeignKey("volume_type.id"))
    bootable: Mapped[bool] = mapped_column(Boolean, default=False)
    readonly: Mapped[bool] = mapped_column(Boolean, default=False)
    multiattach: Mapped[bool] = mapped_column(Boolean, default=False)
    snapshot_id: Mapped[str | None] = mapped_column(String(36))
    source_volid: Mapped[str | None] = mapped_column(String(36))
    image_id: Mapped[str | None] = mapped_column(String(36))
    backup_id: Mapped[str | None] = mapped_column(String(36))  # made from this backup
    upload_image_id: Mapped[str | None] = mapped_column(String(36))  # while `uploading`
    metadata_: Mapped[dict[str, str]] = mapped_column("metadata", JSON, default=dict)
    image_metadata: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    # Keys Cinder keeps apart from the owner's metadata and shows merged into it:
    # `readonly` (once the flag is set) and `attached_mode`.
    admin_metadata: Mapped[dict[str, str]] = mapped_column(JSON, default=dict, server_default="{}")
    group_id: Mapped[str | None] = mapped_column(String(36), index=True)
    host: Mapped[str] = mapped_column(String(255))
    replication_status: Mapped[str | None] = mapped_column(String(20))
    migration_status: Mapped[str | None] = mapped_column(String(20))
    fail_reason: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(PreciseDateTime, index=True)
    updated_at: Mapped[datetime | None] = mapped_column(PreciseDateTime)
    launched_at: Mapped[datetime | None] = mapped_column(PreciseDateTime)


class Snapshot(Base):
    __tablename__ = "volume_snapshot"
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    project_id: Mapped[str] = mapped_column(String(255), index=True)
    user_id: Mapped[str] = mapped_column(String(255))
    volume_id: Mapped[str] = mapped_column(ForeignKey("volume_volume.id"), index=True)
    name: Mapped[str | None] = mapped_column(String(255))
    description: Mapped[str | None] = mapped_column(String(255))
    size: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(40), index=True)
    progress: Mapped[str] = mapped_column(String(10), default="0%")
    group_snapshot_id: Mapped[str | None] = mapped_column(String(36), index=True)
    metadata_: Mapped[dict[str, str]] = mapped_column("metadata", JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(PreciseDateTime, index=True)
    updated_at: Mapped[datetime | None] = mapped_column(PreciseDateTime)


class Backup(Base):
    """A copy of a volume's bytes in the backup repository (its chunks and manifest there).

    Statuses that are work: `creating` (the agent reads the volume, or `snapshot_id`, the
    temporary snapshot of an in-use volume), `restoring` (into `restore_volume_id`),
    `deleting`. The volume may be gone: a backup outlives it."""

    __tablename__ = "volume_backup"
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    project_id: Mapped[str] = mapped_column(String(255), index=True)
    user_id: Mapped[str] = mapped_column(String(255))
    volume_id: Mapped[str] = mapped_column(String(36), index=True)
    snapshot_id: Mapped[str | None] = mapped_column(String(36))
    parent_id: Mapped[str | None] = mapped_column(String(36), index=True)
    name: Mapped[str | None] = mapped_column(String(255), index=True)
    description: Mapped[str | None] = mapped_column(String(255))
    container: Mapped[str | None] = mapped_column(String(255))
    availability_zone: Mapped[str] = mapped_column(String(255))
    size: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(40), index=True)
    object_count: Mapped[int] = mapped_column(Integer, default=0)  # chunks done, live
    is_incremental: Mapped[bool] = mapped_column(Boolean, default=False)
    # The temporary snapshot was made by the backup (a forced backup of an in-use volume).
    temporary_snapshot: Mapped[bool] = mapped_column(Boolean, default=False)
    restore_volume_id: Mapped[str | None] = mapped_column(String(36))
    fail_reason: Mapped[str | None] = mapped_column(Text)
    metadata_: Mapped[dict[str, str]] = mapped_column("metadata", JSON, default=dict)
    data_timestamp: Mapped[datetime] = mapped_column(PreciseDateTime)
    created_at: Mapped[datetime] = mapped_column(PreciseDateTime, index=True)
    updated_at: Mapped[datetime | None] = mapped_column(PreciseDateTime)


class Attachment(Base):
    """One server's use of a volume (Cinder's volume_attachment)."""

    __tablename__ = "volume_attachment"
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    volume_id: Mapped[str] = mapped_column(
        ForeignKey("volume_volume.id", ondelete="CASCADE"), index=True
    )
    instance_uuid: Mapped[str | None] = mapped_column(String(36), index=True)
    attached_host: Mapped[str | None] = mapped_column(String(255))
    mountpoint: Mapped[str | None] = mapped_column(String(255))
    attach_mode: Mapped[str] = mapped_column(String(4), default="rw")
    attach_status: Mapped[str] = mapped_column(String(20))
    connector: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    attach_time: Mapped[datetime | None] = mapped_column(PreciseDateTime)
    detach_time: Mapped[datetime | None] = mapped_column(PreciseDateTime)
    created_at: Mapped[datetime] = mapped_column(PreciseDateTime)
    updated_at: Mapped[datetime | None] = mapped_column(PreciseDateTime)


class QuotaLimit(Base):
    """A project's hard limit on one resource (`volumes`, `gigabytes`, `volumes_<type>`)."""

    __tablename__ = "volume_quota"
    project_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    resource: Mapped[str] = mapped_column(String(255), primary_key=True)
    hard_limit: Mapped[int] = mapped_column(Integer)


class Transfer(Base):
    """An offer of a volume to whoever shows its auth key; accepting it moves the volume
    (and, unless `no_snapshots`, its snapshots) to the acceptor's project."""

    __tablename__ = "volume_transfer"
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    volume_id: Mapped[str] = mapped_column(
        ForeignKey("volume_volume.id", ondelete="CASCADE"), unique=True
    )
    project_id: Mapped[str] = mapped_column(String(255), index=True)
    name: Mapped[str | None] = mapped_column(String(255))
    salt: Mapped[str] = mapped_column(String(255))
    crypt_hash: Mapped[str] = mapped_column(String(255))
    no_snapshots: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(PreciseDateTime)


class QosSpecs(Base):
    __tablename__ = "volume_qos_specs"
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    name: Mapped[str] = mapped_column(String(255), unique=True)
    consumer: Mapped[str] = mapped_column(String(20))  # front-end, back-end or both
    specs: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(PreciseDateTime)


class Encryption(Base):
    """How volumes of a type are encrypted (one per type)."""

    __tablename__ = "volume_encryption"
    volume_type_id: Mapped[str] = mapped_column(
        ForeignKey("volume_type.id", ondelete="CASCADE"), primary_key=True
    )
    encryption_id: Mapped[str] = mapped_column(String(36))
    provider: Mapped[str] = mapped_column(String(255))
    cipher: Mapped[str | None] = mapped_column(String(255))
    key_size: Mapped[int | None] = mapped_column(Integer)
    control_location: Mapped[str] = mapped_column(String(20))
    created_at: Mapped[datetime] = mapped_column(PreciseDateTime)
    updated_at: Mapped[datetime | None] = mapped_column(PreciseDateTime)


class GroupType(Base):
    __tablename__ = "volume_group_type"
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    name: Mapped[str] = mapped_column(String(255), unique=True)
    description: Mapped[str | None] = mapped_column(String(255))
    is_public: Mapped[bool] = mapped_column(Boolean, default=True)
    group_specs: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(PreciseDateTime)
    updated_at: Mapped[datetime | None] = mapped_column(PreciseDateTime)


class Group(Base):
    """Volumes managed together (snapshotted at once); `creating` and `deleting` are work
    the agent does, as for volumes."""

    __tablename__ = "volume_group"
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    project_id: Mapped[str] = mapped_column(String(255), index=True)
    user_id: Mapped[str] = mapped_column(String(255))
    name: Mapped[str | None] = mapped_column(String(255))
    description: Mapped[str | None] = mapped_column(String(255))
    status: Mapped[str] = mapped_column(String(40), index=True)
    availability_zone: Mapped[str] = mapped_column(String(255))
    group_type_id: Mapped[str] = mapped_column(String(36))
    volume_type_ids: Mapped[list[str]] = mapped_column(JSON, default=list)
    group_snapshot_id: Mapped[str | None] = mapped_column(String(36))
    source_group_id: Mapped[str | None] = mapped_column(String(36))
    replication_status: Mapped[str | None] = mapped_column(String(20))
    created_at: Mapped[datetime] = mapped_column(PreciseDateTime, index=True)
    updated_at: Mapped[datetime | None] = mapped_column(PreciseDateTime)


class GroupSnapshot(Base):
    """A snapshot of every volume of a group, taken together."""

    __tablename__ = "volume_group_snapshot"
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    project_id: Mapped[str] = mapped_column(String(255), index=True)
    user_id: Mapped[str] = mapped_column(String(255))
    group_id: Mapped[str] = mapped_column(String(36), index=True)
    group_type_id: Mapped[str] = mapped_column(String(36))
    name: Mapped[str | None] = mapped_column(String(255))
    description: Mapped[str | None] = mapped_column(String(255))
    status: Mapped[str] = mapped_column(String(40), index=True)
    created_at: Mapped[datetime] = mapped_column(PreciseDateTime, index=True)
    updated_at: Mapped[datetime | None] = mapped_column(PreciseDateTime)


class Message(Base):
    """A user message: why an asynchronous operation on a resource failed."""

    __tablename__ = "volume_message"
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    project_id: Mapped[str] = mapped_column(String(255), index=True)
    request_id: Mapped[str] = mapped_column(String(255))
    resource_type: Mapped[str] = mapped_column(String(40))
    resource_uuid: Mapped[str | None] = mapped_column(String(36))
    event_id: Mapped[str] = mapped_column(String(40))
    message_level: Mapped[str] = mapped_column(String(20))
    user_message: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(PreciseDateTime)
    expires_at: Mapped[datetime] = mapped_column(PreciseDateTime)


class ServiceState(Base):
    """What an operator set on a service (os-services disable, freeze); a service
    without a row is enabled and not frozen."""

    __tablename__ = "volume_service_state"
    binary: Mapped[str] = mapped_column(String(40), primary_key=True)
    host: Mapped[str] = mapped_column(String(255), primary_key=True)
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    disabled_reason: Mapped[str | None] = mapped_column(String(255))
    frozen: Mapped[bool] = mapped_column(Boolean, default=False)
    updated_at: Mapped[datetime] = mapped_column(PreciseDateTime)
