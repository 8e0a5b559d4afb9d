"""compute server groups, host aggregates and quotas

Revision ID: compute_0002
Revises: compute_0001
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "compute_0002"
down_revision = "compute_0001"
branch_labels = None
depends_on = None


def _moment() -> sa.types.TypeEngine:
    return sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mariadb", "mysql")


def upgrade() -> None:
    op.create_table(
        "compute_server_group",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("uuid", sa.String(length=36), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("project_id", sa.String(length=255), nullable=False),
        sa.Column("user_id", sa.String(length=255), nullable=False),
        sa.Column("policy", sa.String(length=255), nullable=False),
        sa.Column("max_server_per_host", sa.Integer(), nullable=True),
        sa.Column("created_at", _moment(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("uuid"),
    )
    op.create_index(
        op.f("ix_compute_server_group_project_id"),
        "compute_server_group",
        ["project_id"],
        unique=False,
    )
    op.create_table(
        "compute_server_group_member",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("group_id", sa.Integer(), nullable=False),
        sa.Column("instance_uuid", sa.String(length=36), nullable=False),
        sa.Column("user_id", sa.String(length=255), nullable=False),
        sa.Column("host", sa.String(length=255), nullable=True),
        sa.Column("created_at", _moment(), nullable=False),
        sa.ForeignKeyConstraint(["group_id"], ["compute_server_group.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("instance_uuid"),
    )
    op.create_index(
        op.f("ix_compute_server_group_member_group_id"),
        "compute_server_group_member",
        ["group_id"],
        unique=False,
    )
    op.create_table(
        "compute_aggregate",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("uuid", sa.String(length=36), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("created_at", _moment(), nullable=False),
        sa.Column("updated_at", _moment(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("name"),
        sa.UniqueConstraint("uuid"),
    )
    op.create_table(
        "compute_aggregate_host",
        sa.Column("aggregate_id", sa.Integer(), nullable=False),
        sa.Column("host", sa.String(length=255), nullable=False),
        sa.ForeignKeyConstraint(["aggregate_id"], ["compute_aggregate.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("aggregate_id", "host"),
    )
    op.create_table(
        "compute_aggregate_metadata",
        sa.Column("aggregate_id", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(length=255), nullable=False),
        sa.Column("value", sa.String(length=255), nullable=False),
        sa.ForeignKeyConstraint(["aggregate_id"], ["compute_aggregate.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("aggregate_id", "key"),
    )
    op.create_index(
        op.f("ix_compute_aggregate_metadata_value"),
        "compute_aggregate_metadata",
        ["value"],
        unique=False,
    )
    op.create_table(
        "compute_quota",
        sa.Column("project_id", sa.String(length=255), nullable=False),
        sa.Column("user_id", sa.String(length=255), nullable=False),
        sa.Column("resource", sa.String(length=255), nullable=False),
        sa.Column("hard_limit", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("project_id", "user_id", "resource"),
    )
    op.create_table(
        "compute_quota_class",
        sa.Column("class_name", sa.String(length=255), nullable=False),
        sa.Column("resource", sa.String(length=255), nullable=False),
        sa.Column("hard_limit", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("class_name", "resource"),
    )


def downgrade() -> None:
    op.drop_table("compute_quota_class")
    op.drop_table("compute_quota")
    op.drop_table("compute_aggregate_metadata")
    op.drop_table("compute_aggregate_host")
    op.drop_table("compute_aggregate")
    op.drop_table("compute_server_group_member")
    op.drop_table("compute_server_group")
