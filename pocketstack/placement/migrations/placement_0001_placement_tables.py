"""placement tables

Revision ID: placement_0001
Revises:
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "placement_0001"
down_revision = None
branch_labels = ("placement",)
depends_on = None


def upgrade() -> None:

    op.create_table(
        "placement_consumer",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("uuid", sa.String(length=36), nullable=False),
        sa.Column("project_id", sa.String(length=255), nullable=False),
        sa.Column("user_id", sa.String(length=255), nullable=False),
        sa.Column("consumer_type", sa.String(length=255), nullable=True),
        sa.Column("generation", sa.Integer(), nullable=False),
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
        sa.UniqueConstraint("uuid"),
    )
    with op.batch_alter_table("placement_consumer", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_placement_consumer_project_id"), ["project_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_placement_consumer_user_id"), ["user_id"], unique=False
        )

    op.create_table(
        "placement_resource_class",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
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
        sa.UniqueConstraint("name"),
    )
    op.create_table(
        "placement_resource_provider",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("uuid", sa.String(length=36), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("generation", sa.Integer(), nullable=False),
        sa.Column("root_id", sa.Integer(), nullable=True),
        sa.Column("parent_id", sa.Integer(), nullable=True),
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
            ["parent_id"],
            ["placement_resource_provider.id"],
        ),
        sa.ForeignKeyConstraint(
            ["root_id"],
            ["placement_resource_provider.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("name"),
        sa.UniqueConstraint("uuid"),
    )
    with op.batch_alter_table("placement_resource_provider", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_placement_resource_provider_parent_id"), ["parent_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_placement_resource_provider_root_id"), ["root_id"], unique=False
        )

    op.create_table(
        "placement_trait",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
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
        sa.UniqueConstraint("name"),
    )
    op.create_table(
        "placement_allocation",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("consumer_id", sa.Integer(), nullable=False),
        sa.Column("resource_provider_id", sa.Integer(), nullable=False),
        sa.Column("resource_class_id", sa.Integer(), nullable=False),
        sa.Column("used", sa.Integer(), nullable=False),
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
        sa.ForeignKeyConstraint(["consumer_id"], ["placement_consumer.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(
            ["resource_class_id"],
            ["placement_resource_class.id"],
        ),
        sa.ForeignKeyConstraint(
            ["resource_provider_id"],
            ["placement_resource_provider.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("consumer_id", "resource_provider_id", "resource_class_id"),
    )
    with op.batch_alter_table("placement_allocation", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_placement_allocation_consumer_id"), ["consumer_id"], unique=False
        )
        batch_op.create_index(
            "ix_placement_allocation_provider_class",
            ["resource_provider_id", "resource_class_id"],
            unique=False,
        )

    op.create_table(
        "placement_inventory",
        sa.Column("resource_provider_id", sa.Integer(), nullable=False),
        sa.Column("resource_class_id", sa.Integer(), nullable=False),
        sa.Column("total", sa.Integer(), nullable=False),
        sa.Column("reserved", sa.Integer(), nullable=False),
        sa.Column("min_unit", sa.Integer(), nullable=False),
        sa.Column("max_unit", sa.Integer(), nullable=False),
        sa.Column("step_size", sa.Integer(), nullable=False),
        sa.Column("allocation_ratio", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(
            ["resource_class_id"],
            ["placement_resource_class.id"],
        ),
        sa.ForeignKeyConstraint(
            ["resource_provider_id"], ["placement_resource_provider.id"], ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("resource_provider_id", "resource_class_id"),
    )
    with op.batch_alter_table("placement_inventory", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_placement_inventory_resource_class_id"),
            ["resource_class_id"],
            unique=False,
        )

    op.create_table(
        "placement_provider_aggregate",
        sa.Column("resource_provider_id", sa.Integer(), nullable=False),
        sa.Column("aggregate_uuid", sa.String(length=36), nullable=False),
        sa.ForeignKeyConstraint(
            ["resource_provider_id"], ["placement_resource_provider.id"], ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("resource_provider_id", "aggregate_uuid"),
    )
    with op.batch_alter_table("placement_provider_aggregate", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_placement_provider_aggregate_aggregate_uuid"),
            ["aggregate_uuid"],
            unique=False,
        )

    op.create_table(
        "placement_provider_trait",
        sa.Column("resource_provider_id", sa.Integer(), nullable=False),
        sa.Column("trait_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["resource_provider_id"], ["placement_resource_provider.id"], ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["trait_id"],
            ["placement_trait.id"],
        ),
        sa.PrimaryKeyConstraint("resource_provider_id", "trait_id"),
    )
    with op.batch_alter_table("placement_provider_trait", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_placement_provider_trait_trait_id"), ["trait_id"], unique=False
        )
