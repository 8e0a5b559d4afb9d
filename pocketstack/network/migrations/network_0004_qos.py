"""QoS policies and bandwidth-limit rules

Revision ID: network_0004
Revises: network_0003
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "network_0004"
down_revision = "network_0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "network_qos_policy",
        sa.Column("shared", sa.Boolean(), nullable=False),
        sa.Column("is_default", sa.Boolean(), nullable=False),
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("project_id", sa.String(length=255), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("description", sa.String(length=255), nullable=False),
        sa.Column("revision_number", sa.Integer(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime()
            .with_variant(mysql.DATETIME(fsp=6), "mariadb")
            .with_variant(mysql.DATETIME(fsp=6), "mysql"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime()
            .with_variant(mysql.DATETIME(fsp=6), "mariadb")
            .with_variant(mysql.DATETIME(fsp=6), "mysql"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        op.f("ix_network_qos_policy_project_id"), "network_qos_policy", ["project_id"], unique=False
    )
    op.create_table(
        "network_qos_bandwidth_limit_rule",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("qos_policy_id", sa.String(length=36), nullable=False),
        sa.Column("max_kbps", sa.Integer(), nullable=False),
        sa.Column("max_burst_kbps", sa.Integer(), nullable=False),
        sa.Column("direction", sa.String(length=8), nullable=False),
        sa.ForeignKeyConstraint(["qos_policy_id"], ["network_qos_policy.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("qos_policy_id", "direction"),
    )
    op.create_index(
        op.f("ix_network_qos_bandwidth_limit_rule_qos_policy_id"),
        "network_qos_bandwidth_limit_rule",
        ["qos_policy_id"],
        unique=False,
    )
