"""image metadata definitions (metadefs)

Revision ID: image_0002
Revises: image_0001
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "image_0002"
down_revision = "image_0001"
branch_labels = None
depends_on = None


def _moment() -> sa.types.TypeEngine:
    return sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mariadb", "mysql")


def _child(table: str, name_length: int, *columns: sa.Column) -> None:
    """A namespace's objects, properties or tags: unique by name within the namespace."""
    op.create_table(
        table,
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("namespace_id", sa.String(length=36), nullable=False),
        sa.Column("name", sa.String(length=name_length), nullable=False),
        *columns,
        sa.Column("created_at", _moment(), nullable=False),
        sa.Column("updated_at", _moment(), nullable=False),
        sa.ForeignKeyConstraint(
            ["namespace_id"], ["image_metadef_namespace.id"], ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("namespace_id", "name"),
    )


def upgrade() -> None:
    op.create_table(
        "image_metadef_namespace",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("namespace", sa.String(length=80), nullable=False),
        sa.Column("display_name", sa.String(length=80), nullable=True),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("visibility", sa.String(length=32), nullable=False),
        sa.Column("protected", sa.Boolean(), nullable=False),
        sa.Column("owner", sa.String(length=255), nullable=True),
        sa.Column("created_at", _moment(), nullable=False),
        sa.Column("updated_at", _moment(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("namespace"),
    )
    for column in ("owner", "created_at"):
        op.create_index(f"ix_image_metadef_namespace_{column}", "image_metadef_namespace", [column])
    _child(
        "image_metadef_object",
        80,
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("required", sa.Text(), nullable=False),
        sa.Column("properties", sa.Text(), nullable=False),
    )
    _child("image_metadef_property", 255, sa.Column("schema", sa.Text(), nullable=False))
    _child("image_metadef_tag", 255)
    op.create_table(
        "image_metadef_resource_type",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("name", sa.String(length=80), nullable=False),
        sa.Column("protected", sa.Boolean(), nullable=False),
        sa.Column("created_at", _moment(), nullable=False),
        sa.Column("updated_at", _moment(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("name"),
    )
    op.create_table(
        "image_metadef_resource_type_association",
        sa.Column("namespace_id", sa.String(length=36), nullable=False),
        sa.Column("resource_type_id", sa.String(length=36), nullable=False),
        sa.Column("prefix", sa.String(length=80), nullable=True),
        sa.Column("properties_target", sa.String(length=80), nullable=True),
        sa.Column("created_at", _moment(), nullable=False),
        sa.Column("updated_at", _moment(), nullable=False),
        sa.ForeignKeyConstraint(
            ["namespace_id"], ["image_metadef_namespace.id"], ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["resource_type_id"], ["image_metadef_resource_type.id"], ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("namespace_id", "resource_type_id"),
    )


def downgrade() -> None:
    op.drop_table("image_metadef_resource_type_association")
    op.drop_table("image_metadef_resource_type")
    op.drop_table("image_metadef_tag")
    op.drop_table("image_metadef_property")
    op.drop_table("image_metadef_object")
    op.drop_index("ix_image_metadef_namespace_created_at", "image_metadef_namespace")
    op.drop_index("ix_image_metadef_namespace_owner", "image_metadef_namespace")
    op.drop_table("image_metadef_namespace")
