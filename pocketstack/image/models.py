"""Image tables. Only image/service.py and image/metadefs.py touch them."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Boolean, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from pocketstack.core.db import Base, PreciseDateTime


class Image(Base):
    """An image record; its bytes live in the state dir under the image id."""

    __tablename__ = "image_image"
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    name: Mapped[str | None] = mapped_column(String(255), index=True)
    status: Mapped[str] = mapped_column(String(30), index=True)
    visibility: Mapped[str] = mapped_column(String(20), index=True)
    protected: Mapped[bool] = mapped_column(Boolean, default=False)
    os_hidden: Mapped[bool] = mapped_column(Boolean, default=False)
    checksum: Mapped[str | None] = mapped_column(String(32))
    os_hash_algo: Mapped[str | None] = mapped_column(String(64))
    os_hash_value: Mapped[str | None] = mapped_column(String(128))
    size: Mapped[int | None] = mapped_column(BigInteger)
    virtual_size: Mapped[int | None] = mapped_column(BigInteger)
    min_disk: Mapped[int] = mapped_column(Integer, default=0)
    min_ram: Mapped[int] = mapped_column(Integer, default=0)
    disk_format: Mapped[str | None] = mapped_column(String(20))
    container_format: Mapped[str | None] = mapped_column(String(20))
    owner: Mapped[str | None] = mapped_column(String(255), index=True)
    created_at: Mapped[datetime] = mapped_column(PreciseDateTime, index=True)
    updated_at: Mapped[datetime] = mapped_column(PreciseDateTime, index=True)


class ImageProperty(Base):
    """A user-defined property (`hw_disk_bus`, `os_distro`, ...), shown as a top-level key."""

    __tablename__ = "image_property"
    image_id: Mapped[str] = mapped_column(
        ForeignKey("image_image.id", ondelete="CASCADE"), primary_key=True
    )
    name: Mapped[str] = mapped_column(String(255), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class ImageTag(Base):
    __tablename__ = "image_tag"
    image_id: Mapped[str] = mapped_column(
        ForeignKey("image_image.id", ondelete="CASCADE"), primary_key=True
    )
    value: Mapped[str] = mapped_column(String(255), primary_key=True)


class ImageMember(Base):
    """A project a `shared` image is offered to, and whether it accepted."""

    __tablename__ = "image_member"
    image_id: Mapped[str] = mapped_column(
        ForeignKey("image_image.id", ondelete="CASCADE"), primary_key=True
    )
    member: Mapped[str] = mapped_column(String(255), primary_key=True)
    status: Mapped[str] = mapped_column(String(20))
    created_at: Mapped[datetime] = mapped_column(PreciseDateTime)
    updated_at: Mapped[datetime] = mapped_column(PreciseDateTime)


# Metadata definitions (metadefs): a catalog of namespaces that describe the properties,
# objects and tags an image, flavor or volume may carry. JSON-schema fragments are kept
# as JSON text.


class MetadefNamespace(Base):
    __tablename__ = "image_metadef_namespace"
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    namespace: Mapped[str] = mapped_column(String(80), unique=True)
    display_name: Mapped[str | None] = mapped_column(String(80))
    description: Mapped[str | None] = mapped_column(Text)
    visibility: Mapped[str] = mapped_column(String(32))
    protected: Mapped[bool] = mapped_column(Boolean, default=False)
    owner: Mapped[str | None] = mapped_column(String(255), index=True)
    created_at: Mapped[datetime] = mapped_column(PreciseDateTime, index=True)
    updated_at: Mapped[datetime] = mapped_column(PreciseDateTime)


class MetadefObject(Base):
    __tablename__ = "image_metadef_object"
    __table_args__ = (UniqueConstraint("namespace_id", "name"),)
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    namespace_id: Mapped[str] = mapped_column(
        ForeignKey("image_metadef_namespace.id", ondelete="CASCADE")
    )
    name: Mapped[str] = mapped_column(String(80))
    description: Mapped[str | None] = mapped_column(Text)
    required: Mapped[str] = mapped_column(Text)  # JSON list of property names
    properties: Mapped[str] = mapped_column(Text)  # JSON object: name -> property schema
    created_at: Mapped[datetime] = mapped_column(PreciseDateTime)
    updated_at: Mapped[datetime] = mapped_column(PreciseDateTime)


class MetadefProperty(Base):
    __tablename__ = "image_metadef_property"
    __table_args__ = (UniqueConstraint("namespace_id", "name"),)
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    namespace_id: Mapped[str] = mapped_column(
        ForeignKey("image_metadef_namespace.id", ondelete="CASCADE")
    )
    name: Mapped[str] = mapped_column(String(255))
    schema: Mapped[str] = mapped_column(Text)  # JSON object: title, type, enum, ...
    created_at: Mapped[datetime] = mapped_column(PreciseDateTime)
    updated_at: Mapped[datetime] = mapped_column(PreciseDateTime)


class MetadefTag(Base):
    __tablename__ = "image_metadef_tag"
    __table_args__ = (UniqueConstraint("namespace_id", "name"),)
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    namespace_id: Mapped[str] = mapped_column(
        ForeignKey("image_metadef_namespace.id", ondelete="CASCADE")
    )
    name: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(PreciseDateTime)
    updated_at: Mapped[datetime] = mapped_column(PreciseDateTime)


class MetadefResourceType(Base):
    """A kind of resource namespaces apply to (`OS::Glance::Image`, `OS::Nova::Flavor`)."""

    __tablename__ = "image_metadef_resource_type"
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    name: Mapped[str] = mapped_column(String(80), unique=True)
    protected: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(PreciseDateTime)
    updated_at: Mapped[datetime] = mapped_column(PreciseDateTime)


class MetadefResourceTypeAssociation(Base):
    """A namespace applies to a resource type, its properties named with `prefix`."""

    __tablename__ = "image_metadef_resource_type_association"
    namespace_id: Mapped[str] = mapped_column(
        ForeignKey("image_metadef_namespace.id", ondelete="CASCADE"), primary_key=True
    )
    resource_type_id: Mapped[str] = mapped_column(
        ForeignKey("image_metadef_resource_type.id", ondelete="CASCADE"), primary_key=True
    )
    prefix: Mapped[str | None] = mapped_column(String(80))
    properties_target: Mapped[str | None] = mapped_column(String(80))
    created_at: Mapped[datetime] = mapped_column(PreciseDateTime)
    updated_at: Mapped[datetime] = mapped_column(PreciseDateTime)
