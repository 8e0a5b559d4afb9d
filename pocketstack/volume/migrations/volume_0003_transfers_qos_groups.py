"""volume transfers, QoS specs, encryption types, group types, groups and group snapshots,
user messages, the state operators give services, admin metadata of volumes

Revision ID: volume_0003
Revises: volume_0002
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "volume_0003"
down_revision = "volume_0002"
branch_labels = None
depends_on = None


def _moment() -> sa.types.TypeEngine:
    return sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mariadb", "mysql")


def _id(name: str = "id", nullable: bool = False) -> sa.Column:
    return sa.Column(name, sa.String(length=36), nullable=nullable)


def _text(name: str, nullable: bool = True) -> sa.Column:
    return sa.Column(name, sa.String(length=255), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "volume_transfer",
        _id(),
        sa.Column("volume_id", sa.String(length=36), nullable=False),
        _text("project_id", nullable=False),
        _text("name"),
        sa.Column("salt", sa.String(length=255), nullable=False),
        sa.Column("crypt_hash", sa.String(length=255), nullable=False),
        sa.Column("no_snapshots", sa.Boolean(), nullable=False),
        sa.Column("created_at", _moment(), nullable=False),
        sa.ForeignKeyConstraint(["volume_id"], ["volume_volume.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("volume_id"),
    )
    op.create_index("ix_volume_transfer_project_id", "volume_transfer", ["project_id"])
    op.create_table(
        "volume_qos_specs",
        _id(),
        _text("name", nullable=False),
        sa.Column("consumer", sa.String(length=20), nullable=False),
        sa.Column("specs", sa.JSON(), nullable=False),
        sa.Column("created_at", _moment(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("name"),
    )
    op.create_table(
        "volume_encryption",
        _id("volume_type_id"),
        _id("encryption_id"),
        _text("provider", nullable=False),
        _text("cipher"),
        sa.Column("key_size", sa.Integer(), nullable=True),
        sa.Column("control_location", sa.String(length=20), nullable=False),
        sa.Column("created_at", _moment(), nullable=False),
        sa.Column("updated_at", _moment(), nullable=True),
        sa.ForeignKeyConstraint(["volume_type_id"], ["volume_type.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("volume_type_id"),
    )
    op.create_table(
        "volume_group_type",
        _id(),
        _text("name", nullable=False),
        _text("description"),
        sa.Column("is_public", sa.Boolean(), nullable=False),
        sa.Column("group_specs", sa.JSON(), nullable=False),
        sa.Column("created_at", _moment(), nullable=False),
        sa.Column("updated_at", _moment(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("name"),
    )
    op.create_table(
        "volume_group",
        _id(),
        _text("project_id", nullable=False),
        _text("user_id", nullable=False),
        _text("name"),
        _text("description"),
        sa.Column("status", sa.String(length=40), nullable=False),
        _text("availability_zone", nullable=False),
        _id("group_type_id"),
        sa.Column("volume_type_ids", sa.JSON(), nullable=False),
        _id("group_snapshot_id", nullable=True),
        _id("source_group_id", nullable=True),
        sa.Column("replication_status", sa.String(length=20), nullable=True),
        sa.Column("created_at", _moment(), nullable=False),
        sa.Column("updated_at", _moment(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    for column in ("project_id", "status", "created_at"):
        op.create_index(f"ix_volume_group_{column}", "volume_group", [column])
    op.create_table(
        "volume_group_snapshot",
        _id(),
        _text("project_id", nullable=False),
        _text("user_id", nullable=False),
        _id("group_id"),
        _id("group_type_id"),
        _text("name"),
        _text("description"),
        sa.Column("status", sa.String(length=40), nullable=False),
        sa.Column("created_at", _moment(), nullable=False),
        sa.Column("updated_at", _moment(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    for column in ("project_id", "group_id", "status", "created_at"):
        op.create_index(f"ix_volume_group_snapshot_{column}", "volume_group_snapshot", [column])
    op.create_table(
        "volume_message",
        _id(),
        _text("project_id", nullable=False),
        _text("request_id", nullable=False),
        sa.Column("resource_type", sa.String(length=40), nullable=False),
        _id("resource_uuid", nullable=True),
        sa.Column("event_id", sa.String(length=40), nullable=False),
        sa.Column("message_level", sa.String(length=20), nullable=False),
        sa.Column("user_message", sa.Text(), nullable=False),
        sa.Column("created_at", _moment(), nullable=False),
        sa.Column("expires_at", _moment(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_volume_message_project_id", "volume_message", ["project_id"])
    op.create_table(
        "volume_service_state",
        sa.Column("binary", sa.String(length=40), nullable=False),
        _text("host", nullable=False),
        sa.Column("disabled", sa.Boolean(), nullable=False),
        _text("disabled_reason"),
        sa.Column("frozen", sa.Boolean(), nullable=False),
        sa.Column("updated_at", _moment(), nullable=False),
        sa.PrimaryKeyConstraint("binary", "host"),
    )
    with op.batch_alter_table("volume_volume") as batch:
        batch.add_column(
            sa.Column("admin_metadata", sa.JSON(), nullable=False, server_default="{}")
        )
        batch.add_column(sa.Column("group_id", sa.String(length=36), nullable=True))
        batch.create_index("ix_volume_volume_group_id", ["group_id"])
    with op.batch_alter_table("volume_snapshot") as batch:
        batch.add_column(sa.Column("group_snapshot_id", sa.String(length=36), nullable=True))
        batch.create_index("ix_volume_snapshot_group_snapshot_id", ["group_snapshot_id"])
    with op.batch_alter_table("volume_type") as batch:
        batch.add_column(sa.Column("qos_specs_id", sa.String(length=36), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("volume_type") as batch:
        batch.drop_column("qos_specs_id")
    with op.batch_alter_table("volume_snapshot") as batch:
        batch.drop_index("ix_volume_snapshot_group_snapshot_id")
        batch.drop_column("group_snapshot_id")
    with op.batch_alter_table("volume_volume") as batch:
        batch.drop_index("ix_volume_volume_group_id")
        batch.drop_column("group_id")
        batch.drop_column("admin_metadata")
    for table in ("volume_service_state", "volume_message", "volume_group_snapshot",
                  "volume_group", "volume_group_type", "volume_encryption",
                  "volume_qos_specs", "volume_transfer"):  # fmt: skip
        op.drop_table(table)
