"""Placement tables. Only placement/service.py touches them."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from pocketstack.core.db import Base, PreciseDateTime


class ResourceProvider(Base):
    __tablename__ = "placement_resource_provider"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    uuid: Mapped[str] = mapped_column(String(36), unique=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    generation: Mapped[int] = mapped_column(Integer, default=0)
    root_id: Mapped[int | None] = mapped_column(
        ForeignKey("placement_resource_provider.id"), index=True
    )
    parent_id: Mapped[int | None] = mapped_column(
        ForeignKey("placement_resource_provider.id"), index=True
    )
    created_at: Mapped[datetime] = mapped_column(PreciseDateTime)
    updated_at: Mapped[datetime] = mapped_column(PreciseDateTime)


class ResourceClass(Base):
    """Standard classes (from os-resource-classes) and CUSTOM_* ones, one id space."""

    __tablename__ = "placement_resource_class"
    # Ids are chosen (standards: their index, VCPU is 0), never generated.
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    name: Mapped[str] = mapped_column(String(255), unique=True)
    created_at: Mapped[datetime] = mapped_column(PreciseDateTime)
    updated_at: Mapped[datetime] = mapped_column(PreciseDateTime)


class Trait(Base):
    __tablename__ = "placement_trait"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(255), unique=True)
    created_at: Mapped[datetime] = mapped_column(PreciseDateTime)
    updated_at: Mapped[datetime] = mapped_column(PreciseDateTime)


class Inventory(Base):
    __tablename__ = "placement_inventory"
    resource_provider_id: Mapped[int] = mapped_column(
        ForeignKey("placement_resource_provider.id", ondelete="CASCADE"), primary_key=True
    )
    resource_class_id: Mapped[int] = mapped_column(
        ForeignKey("placement_resource_class.id"), primary_key=True, index=True
    )
    total: Mapped[int] = mapped_column(Integer)
    reserved: Mapped[int] = mapped_column(Integer)
    min_unit: Mapped[int] = mapped_column(Integer)
    max_unit: Mapped[int] = mapped_column(Integer)
    step_size: Mapped[int] = mapped_column(Integer)
    allocation_ratio: Mapped[float] = mapped_column(Float)


class ProviderTrait(Base):
    __tablename__ = "placement_provider_trait"
    resource_provider_id: Mapped[int] = mapped_column(
        ForeignKey("placement_resource_provider.id", ondelete="CASCADE"), primary_key=True
    )
    trait_id: Mapped[int] = mapped_column(
        ForeignKey("placement_trait.id"), primary_key=True, index=True
    )


class ProviderAggregate(Base):
    __tablename__ = "placement_provider_aggregate"
    resource_provider_id: Mapped[int] = mapped_column(
        ForeignKey("placement_resource_provider.id", ondelete="CASCADE"), primary_key=True
    )
    aggregate_uuid: Mapped[str] = mapped_column(String(36), primary_key=True, index=True)


class Consumer(Base):
    __tablename__ = "placement_consumer"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    uuid: Mapped[str] = mapped_column(String(36), unique=True)
    project_id: Mapped[str] = mapped_column(String(255), index=True)
    user_id: Mapped[str] = mapped_column(String(255), index=True)
    consumer_type: Mapped[str | None] = mapped_column(String(255))
    generation: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(PreciseDateTime)
    updated_at: Mapped[datetime] = mapped_column(PreciseDateTime)


class Allocation(Base):
    __tablename__ = "placement_allocation"
    __table_args__ = (
        UniqueConstraint("consumer_id", "resource_provider_id", "resource_class_id"),
        Index(
            "ix_placement_allocation_provider_class", "resource_provider_id", "resource_class_id"
        ),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    consumer_id: Mapped[int] = mapped_column(
        ForeignKey("placement_consumer.id", ondelete="CASCADE"), index=True
    )
    resource_provider_id: Mapped[int] = mapped_column(ForeignKey("placement_resource_provider.id"))
    resource_class_id: Mapped[int] = mapped_column(ForeignKey("placement_resource_class.id"))
    used: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(PreciseDateTime)
    updated_at: Mapped[datetime] = mapped_column(PreciseDateTime)


class Revision(Base):
    """One row whose value every placement write moves, in its own transaction, so a
    worker's candidate snapshot knows with one primary-key read whether it is current."""

    __tablename__ = "placement_revision"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    value: Mapped[int] = mapped_column(Integer)
