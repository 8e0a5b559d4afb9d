"""routers, floating IPs and port forwardings

Revision ID: network_0002
Revises: network_0001
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "network_0002"
down_revision = "network_0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "network_router",
        sa.Column("admin_state_up", sa.Boolean(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("gateway_port_id", sa.String(length=36), nullable=True),
        sa.Column("enable_snat", sa.Boolean(), nullable=False),
        sa.Column("routes", sa.JSON(), nullable=False),
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
        sa.ForeignKeyConstraint(["gateway_port_id"], ["network_port.id"], ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        op.f("ix_network_router_project_id"), "network_router", ["project_id"], unique=False
    )
    op.create_table(
        "network_floating_ip",
        sa.Column("floating_network_id", sa.String(length=36), nullable=False),
        sa.Column("floating_port_id", sa.String(length=36), nullable=False),
        sa.Column("floating_ip_address", sa.String(length=64), nullable=False),
        sa.Column("port_id", sa.String(length=36), nullable=True),
        sa.Column("fixed_ip_address", sa.String(length=64), nullable=True),
        sa.Column("router_id", sa.String(length=36), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("qos_policy_id", sa.String(length=36), nullable=True),
        sa.Column("dns_name", sa.String(length=255), nullable=False),
        sa.Column("dns_domain", sa.String(length=255), nullable=False),
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
        sa.ForeignKeyConstraint(
            ["floating_network_id"],
            ["network_network.id"],
        ),
        sa.ForeignKeyConstraint(["floating_port_id"], ["network_port.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["port_id"], ["network_port.id"], ondelete="SET NULL"),
        sa.ForeignKeyConstraint(["router_id"], ["network_router.id"], ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("floating_port_id"),
    )
    op.create_index(
        op.f("ix_network_floating_ip_floating_network_id"),
        "network_floating_ip",
        ["floating_network_id"],
        unique=False,
    )
    op.create_index(
        op.f("ix_network_floating_ip_port_id"), "network_floating_ip", ["port_id"], unique=False
    )
    op.create_index(
        op.f("ix_network_floating_ip_project_id"),
        "network_floating_ip",
        ["project_id"],
        unique=False,
    )
    op.create_index(
        op.f("ix_network_floating_ip_router_id"), "network_floating_ip", ["router_id"], unique=False
    )
    op.create_table(
        "network_port_forwarding",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("floatingip_id", sa.String(length=36), nullable=False),
        sa.Column("internal_port_id", sa.String(length=36), nullable=False),
        sa.Column("internal_ip_address", sa.String(length=64), nullable=False),
        sa.Column("internal_port_start", sa.Integer(), nullable=False),
        sa.Column("internal_port_end", sa.Integer(), nullable=False),
        sa.Column("external_port_start", sa.Integer(), nullable=False),
        sa.Column("external_port_end", sa.Integer(), nullable=False),
        sa.Column("protocol", sa.String(length=8), nullable=False),
        sa.Column("description", sa.String(length=255), nullable=False),
        sa.ForeignKeyConstraint(["floatingip_id"], ["network_floating_ip.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["internal_port_id"], ["network_port.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("floatingip_id", "protocol", "external_port_start"),
    )
    op.create_index(
        op.f("ix_network_port_forwarding_floatingip_id"),
        "network_port_forwarding",
        ["floatingip_id"],
        unique=False,
    )
    op.create_index(
        op.f("ix_network_port_forwarding_internal_port_id"),
        "network_port_forwarding",
        ["internal_port_id"],
        unique=False,
    )
