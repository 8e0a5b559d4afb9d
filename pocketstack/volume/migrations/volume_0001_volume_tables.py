"""volume tables

Revision ID: volume_0001
Revises:
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "volume_0001"
down_revision = None
branch_labels = ("volume",)
depends_on = None


def _moment() -> sa.types.TypeEngine:
    return sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mariadb", "mysql")


def upgrade() -> None:
    op.create_table(
        "volume_quota",
        sa.Column("project_id", sa.String(length=255), nullable=False),
        sa.Column("resource", sa.String(length=255), nullable=False),
        sa.Column("hard_limit", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("project_id", "resource"),
    )
    op.create_table(
        "volume_type",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("description", sa.String(length=255), nullable=True),
        sa.Column("is_public", sa.Boolean(), nullable=False),
        sa.Column("extra_specs", sa.JSON(), nullable=False),
        sa.Column("created_at", _moment(), nullable=False),
        sa.Column("updated_at", _moment(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("name"),
    )
    op.create_table(
        "volume_type_access",
        sa.Column("volume_type_id", sa.String(length=36), nullable=False),
        sa.Column("project_id", sa.String(length=255), nullable=False),
        sa.ForeignKeyConstraint(["volume_type_id"], ["volume_type.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("volume_type_id", "project_id"),
    )
    op.create_table(
        "volume_volume",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("project_id", sa.String(length=255), nullable=False),
        sa.Column("user_id", sa.String(length=255), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=True),
        sa.Column("description", sa.String(length=255), nullable=True),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("new_size", sa.Integer(), nullable=True),
        sa.Column("status", sa.String(length=40), nullable=False),
        sa.Column("previous_status", sa.String(length=40), nullable=True),
        sa.Column("attach_status", sa.String(length=20), nullable=False),
        sa.Column("availability_zone", sa.String(length=255), nullable=False),
        sa.Column("volume_type_id", sa.String(length=36), nullable=False),
        sa.Column("bootable", sa.Boolean(), nullable=False),
        sa.Column("readonly", sa.Boolean(), nullable=False),
        sa.Column("multiattach", sa.Boolean(), nullable=False),
        sa.Column("snapshot_id", sa.String(length=36), nullable=True),
        sa.Column("source_volid", sa.String(length=36), nullable=True),
        sa.Column("image_id", sa.String(length=36), nullable=True),
        sa.Column("metadata", sa.JSON(), nullable=False),
        sa.Column("image_metadata", sa.JSON(), nullable=False),
        sa.Column("host", sa.String(length=255), nullable=False),
        sa.Column("replication_status", sa.String(length=20), nullable=True),
        sa.Column("migration_status", sa.String(length=20), nullable=True),
        sa.Column("fail_reason", sa.Text(), nullable=True),
        sa.Column("created_at", _moment(), nullable=False),
        sa.Column("updated_at", _moment(), nullable=True),
        sa.Column("launched_at", _moment(), nullable=True),
        sa.ForeignKeyConstraint(
            ["volume_type_id"],
            ["volume_type.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(("ix_volume_volume_created_at"), "volume_volume", ["created_at"], unique=False)
    op.create_index(("ix_volume_volume_name"), "volume_volume", ["name"], unique=False)
    op.create_index(("ix_volume_volume_project_id"), "volume_volume", ["project_id"], unique=False)
    op.create_index(("ix_volume_volume_status"), "volume_volume", ["status"], unique=False)
    op.create_table(
        "volume_attachment",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("volume_id", sa.String(length=36), nullable=False),
        sa.Column("instance_uuid", sa.String(length=36), nullable=True),
        sa.Column("attached_host", sa.String(length=255), nullable=True),
        sa.Column("mountpoint", sa.String(length=255), nullable=True),
        sa.Column("attach_mode", sa.String(length=4), nullable=False),
        sa.Column("attach_status", sa.String(length=20), nullable=False),
        sa.Column("connector", sa.JSON(), nullable=True),
        sa.Column("attach_time", _moment(), nullable=True),
        sa.Column("detach_time", _moment(), nullable=True),
        sa.Column("created_at", _moment(), nullable=False),
        sa.Column("updated_at", _moment(), nullable=True),
        sa.ForeignKeyConstraint(["volume_id"], ["volume_volume.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        ("ix_volume_attachment_instance_uuid"), "volume_attachment", ["instance_uuid"], unique=False
    )
    op.create_index(
        ("ix_volume_attachment_volume_id"), "volume_attachment", ["volume_id"], unique=False
    )
    op.create_table(
        "volume_snapshot",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("project_id", sa.String(length=255), nullable=False),
        sa.Column("user_id", sa.String(length=255), nullable=False),
        sa.Column("volume_id", sa.String(length=36), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=True),
        sa.Column("description", sa.String(length=255), nullable=True),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=40), nullable=False),
        sa.Column("progress", sa.String(length=10), nullable=False),
        sa.Column("metadata", sa.JSON(), nullable=False),
        sa.Column("created_at", _moment(), nullable=False),
        sa.Column("updated_at", _moment(), nullable=True),
        sa.ForeignKeyConstraint(
            ["volume_id"],
            ["volume_volume.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        ("ix_volume_snapshot_created_at"), "volume_snapshot", ["created_at"], unique=False
    )
    op.create_index(
        ("ix_volume_snapshot_project_id"), "volume_snapshot", ["project_id"], unique=False
    )
    op.create_index(("ix_volume_snapshot_status"), "volume_snapshot", ["status"], unique=False)
    op.create_index(
        ("ix_volume_snapshot_volume_id"), "volume_snapshot", ["volume_id"], unique=False
    )
