"""compute tables of the API database

Revision ID: compute_0001
Revises:
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "compute_0001"
down_revision = None
branch_labels = ("compute",)
depends_on = None


def _moment() -> sa.types.TypeEngine:
    return sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mariadb", "mysql")


def upgrade() -> None:
    op.create_table(
        "compute_cell_mapping",
        sa.Column("uuid", sa.String(length=36), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("database_url", sa.Text(), nullable=False),
        sa.Column("disabled", sa.Boolean(), nullable=False),
        sa.Column("created_at", _moment(), nullable=False),
        sa.PrimaryKeyConstraint("uuid"),
        sa.UniqueConstraint("name"),
    )
    op.create_table(
        "compute_flavor",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("flavorid", sa.String(length=255), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("vcpus", sa.Integer(), nullable=False),
        sa.Column("memory_mb", sa.Integer(), nullable=False),
        sa.Column("root_gb", sa.Integer(), nullable=False),
        sa.Column("ephemeral_gb", sa.Integer(), nullable=False),
        sa.Column("swap", sa.Integer(), nullable=False),
        sa.Column("rxtx_factor", sa.Float(), nullable=False),
        sa.Column("is_public", sa.Boolean(), nullable=False),
        sa.Column("disabled", sa.Boolean(), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("created_at", _moment(), nullable=False),
        sa.Column("updated_at", _moment(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("flavorid"),
        sa.UniqueConstraint("name"),
    )
    op.create_table(
        "compute_keypair",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("user_id", sa.String(length=255), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("type", sa.String(length=10), nullable=False),
        sa.Column("public_key", sa.Text(), nullable=False),
        sa.Column("fingerprint", sa.String(length=255), nullable=False),
        sa.Column("created_at", _moment(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("user_id", "name"),
    )
    op.create_index(
        op.f("ix_compute_keypair_user_id"), "compute_keypair", ["user_id"], unique=False
    )
    op.create_table(
        "compute_flavor_extra_spec",
        sa.Column("flavor_id", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(length=255), nullable=False),
        sa.Column("value", sa.String(length=255), nullable=False),
        sa.ForeignKeyConstraint(["flavor_id"], ["compute_flavor.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("flavor_id", "key"),
    )
    op.create_table(
        "compute_flavor_project",
        sa.Column("flavor_id", sa.Integer(), nullable=False),
        sa.Column("project_id", sa.String(length=255), nullable=False),
        sa.ForeignKeyConstraint(["flavor_id"], ["compute_flavor.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("flavor_id", "project_id"),
    )
    op.create_table(
        "compute_host_mapping",
        sa.Column("host", sa.String(length=255), nullable=False),
        sa.Column("cell_uuid", sa.String(length=36), nullable=False),
        sa.Column("provider_uuid", sa.String(length=36), nullable=False),
        sa.Column("created_at", _moment(), nullable=False),
        sa.ForeignKeyConstraint(
            ["cell_uuid"],
            ["compute_cell_mapping.uuid"],
        ),
        sa.PrimaryKeyConstraint("host"),
        sa.UniqueConstraint("provider_uuid"),
    )
    op.create_index(
        op.f("ix_compute_host_mapping_cell_uuid"),
        "compute_host_mapping",
        ["cell_uuid"],
        unique=False,
    )
    op.create_table(
        "compute_instance_mapping",
        sa.Column("instance_uuid", sa.String(length=36), nullable=False),
        sa.Column("cell_uuid", sa.String(length=36), nullable=False),
        sa.Column("project_id", sa.String(length=255), nullable=False),
        sa.Column("user_id", sa.String(length=255), nullable=False),
        sa.Column("queued_for_delete", sa.Boolean(), nullable=False),
        sa.Column("created_at", _moment(), nullable=False),
        sa.ForeignKeyConstraint(
            ["cell_uuid"],
            ["compute_cell_mapping.uuid"],
        ),
        sa.PrimaryKeyConstraint("instance_uuid"),
    )
    op.create_index(
        op.f("ix_compute_instance_mapping_cell_uuid"),
        "compute_instance_mapping",
        ["cell_uuid"],
        unique=False,
    )
    op.create_index(
        op.f("ix_compute_instance_mapping_project_id"),
        "compute_instance_mapping",
        ["project_id"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_table("compute_instance_mapping")
    op.drop_table("compute_host_mapping")
    op.drop_table("compute_flavor_project")
    op.drop_table("compute_flavor_extra_spec")
    op.drop_table("compute_keypair")
    op.drop_table("compute_flavor")
    op.drop_table("compute_cell_mapping")
