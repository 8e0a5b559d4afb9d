"""tables of a compute cell database

Revision ID: compute_cell_0001
Revises:
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "compute_cell_0001"
down_revision = None
branch_labels = ("compute_cell",)
depends_on = None


def _moment() -> sa.types.TypeEngine:
    return sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mariadb", "mysql")


def upgrade() -> None:
    op.create_table(
        "compute_instance",
        sa.Column("uuid", sa.String(length=36), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("hostname", sa.String(length=255), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("project_id", sa.String(length=255), nullable=False),
        sa.Column("user_id", sa.String(length=255), nullable=False),
        sa.Column("host", sa.String(length=255), nullable=True),
        sa.Column("node", sa.String(length=255), nullable=True),
        sa.Column("availability_zone", sa.String(length=255), nullable=True),
        sa.Column("flavor", sa.Text(), nullable=False),
        sa.Column("flavor_id", sa.String(length=255), nullable=False),
        sa.Column("old_flavor", sa.Text(), nullable=True),
        sa.Column("image_ref", sa.String(length=255), nullable=False),
        sa.Column("key_name", sa.String(length=255), nullable=True),
        sa.Column("key_data", sa.Text(), nullable=True),
        sa.Column("user_data", sa.Text(), nullable=True),
        sa.Column("config_drive", sa.String(length=255), nullable=False),
        sa.Column("access_ip_v4", sa.String(length=39), nullable=True),
        sa.Column("access_ip_v6", sa.String(length=39), nullable=True),
        sa.Column("locked", sa.Boolean(), nullable=False),
        sa.Column("locked_by", sa.String(length=10), nullable=True),
        sa.Column("locked_reason", sa.Text(), nullable=True),
        sa.Column("vm_state", sa.String(length=255), nullable=False),
        sa.Column("task_state", sa.String(length=255), nullable=True),
        sa.Column("power_state", sa.Integer(), nullable=False),
        sa.Column("progress", sa.Integer(), nullable=False),
        sa.Column("desired_state", sa.String(length=20), nullable=False),
        sa.Column("boot_serial", sa.Integer(), nullable=False),
        sa.Column("reboot_type", sa.String(length=10), nullable=True),
        sa.Column("devices", sa.Text(), nullable=False),
        sa.Column("generation", sa.Integer(), nullable=False),
        sa.Column("observed_generation", sa.Integer(), nullable=False),
        sa.Column("launched_at", _moment(), nullable=True),
        sa.Column("terminated_at", _moment(), nullable=True),
        sa.Column("deleted", sa.Boolean(), nullable=False),
        sa.Column("deleted_at", _moment(), nullable=True),
        sa.Column("created_at", _moment(), nullable=False),
        sa.Column("updated_at", _moment(), nullable=False),
        sa.PrimaryKeyConstraint("uuid"),
    )
    op.create_index(
        op.f("ix_compute_instance_created_at"), "compute_instance", ["created_at"], unique=False
    )
    op.create_index(
        op.f("ix_compute_instance_deleted"), "compute_instance", ["deleted"], unique=False
    )
    op.create_index(op.f("ix_compute_instance_name"), "compute_instance", ["name"], unique=False)
    op.create_index(
        "ix_compute_instance_pending",
        "compute_instance",
        ["host"],
        unique=False,
        sqlite_where=sa.text("generation > observed_generation"),
        postgresql_where=sa.text("generation > observed_generation"),
    )
    op.create_index(
        "ix_compute_instance_project_created",
        "compute_instance",
        ["project_id", "created_at"],
        unique=False,
    )
    op.create_index(
        op.f("ix_compute_instance_updated_at"), "compute_instance", ["updated_at"], unique=False
    )
    op.create_index(
        op.f("ix_compute_instance_vm_state"), "compute_instance", ["vm_state"], unique=False
    )
    op.create_table(
        "compute_node",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("uuid", sa.String(length=36), nullable=False),
        sa.Column("host", sa.String(length=255), nullable=False),
        sa.Column("hypervisor_hostname", sa.String(length=255), nullable=False),
        sa.Column("hypervisor_type", sa.String(length=255), nullable=False),
        sa.Column("hypervisor_version", sa.Integer(), nullable=False),
        sa.Column("host_ip", sa.String(length=39), nullable=False),
        sa.Column("vcpus", sa.Integer(), nullable=False),
        sa.Column("memory_mb", sa.Integer(), nullable=False),
        sa.Column("local_gb", sa.Integer(), nullable=False),
        sa.Column("created_at", _moment(), nullable=False),
        sa.Column("updated_at", _moment(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("uuid"),
    )
    op.create_index(op.f("ix_compute_node_host"), "compute_node", ["host"], unique=False)
    op.create_table(
        "compute_service",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("uuid", sa.String(length=36), nullable=False),
        sa.Column("host", sa.String(length=255), nullable=False),
        sa.Column("binary", sa.String(length=255), nullable=False),
        sa.Column("disabled", sa.Boolean(), nullable=False),
        sa.Column("disabled_reason", sa.String(length=255), nullable=True),
        sa.Column("forced_down", sa.Boolean(), nullable=False),
        sa.Column("last_seen_up", _moment(), nullable=True),
        sa.Column("created_at", _moment(), nullable=False),
        sa.Column("updated_at", _moment(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("host", "binary"),
        sa.UniqueConstraint("uuid"),
    )
    op.create_table(
        "compute_instance_action",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("instance_uuid", sa.String(length=36), nullable=False),
        sa.Column("request_id", sa.String(length=255), nullable=False),
        sa.Column("action", sa.String(length=255), nullable=False),
        sa.Column("project_id", sa.String(length=255), nullable=True),
        sa.Column("user_id", sa.String(length=255), nullable=True),
        sa.Column("message", sa.String(length=255), nullable=True),
        sa.Column("start_time", _moment(), nullable=False),
        sa.Column("finish_time", _moment(), nullable=True),
        sa.Column("updated_at", _moment(), nullable=False),
        sa.ForeignKeyConstraint(["instance_uuid"], ["compute_instance.uuid"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        op.f("ix_compute_instance_action_instance_uuid"),
        "compute_instance_action",
        ["instance_uuid"],
        unique=False,
    )
    op.create_table(
        "compute_instance_fault",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("instance_uuid", sa.String(length=36), nullable=False),
        sa.Column("code", sa.Integer(), nullable=False),
        sa.Column("message", sa.String(length=255), nullable=False),
        sa.Column("details", sa.Text(), nullable=False),
        sa.Column("host", sa.String(length=255), nullable=True),
        sa.Column("created_at", _moment(), nullable=False),
        sa.ForeignKeyConstraint(["instance_uuid"], ["compute_instance.uuid"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        op.f("ix_compute_instance_fault_instance_uuid"),
        "compute_instance_fault",
        ["instance_uuid"],
        unique=False,
    )
    op.create_table(
        "compute_instance_metadata",
        sa.Column("instance_uuid", sa.String(length=36), nullable=False),
        sa.Column("key", sa.String(length=255), nullable=False),
        sa.Column("value", sa.String(length=255), nullable=False),
        sa.ForeignKeyConstraint(["instance_uuid"], ["compute_instance.uuid"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("instance_uuid", "key"),
    )
    op.create_table(
        "compute_instance_tag",
        sa.Column("instance_uuid", sa.String(length=36), nullable=False),
        sa.Column("tag", sa.String(length=80), nullable=False),
        sa.ForeignKeyConstraint(["instance_uuid"], ["compute_instance.uuid"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("instance_uuid", "tag"),
    )
    op.create_table(
        "compute_instance_action_event",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("action_id", sa.Integer(), nullable=False),
        sa.Column("event", sa.String(length=255), nullable=False),
        sa.Column("result", sa.String(length=255), nullable=True),
        sa.Column("traceback", sa.Text(), nullable=True),
        sa.Column("details", sa.Text(), nullable=True),
        sa.Column("host", sa.String(length=255), nullable=True),
        sa.Column("start_time", _moment(), nullable=False),
        sa.Column("finish_time", _moment(), nullable=True),
        sa.ForeignKeyConstraint(["action_id"], ["compute_instance_action.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        op.f("ix_compute_instance_action_event_action_id"),
        "compute_instance_action_event",
        ["action_id"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_table("compute_instance_action_event")
    op.drop_table("compute_instance_tag")
    op.drop_table("compute_instance_metadata")
    op.drop_table("compute_instance_fault")
    op.drop_table("compute_instance_action")
    op.drop_table("compute_service")
    op.drop_table("compute_node")
    op.drop_table("compute_instance")
