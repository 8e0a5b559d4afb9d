"""volume backups, the backup a volume is made from, the image a volume is uploaded to

Revision ID: volume_0002
Revises: volume_0001
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "volume_0002"
down_revision = "volume_0001"
branch_labels = None
depends_on = None


def _moment() -> sa.types.TypeEngine:
    return sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mariadb", "mysql")


def upgrade() -> None:
    op.create_table(
        "volume_backup",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("project_id", sa.String(length=255), nullable=False),
        sa.Column("user_id", sa.String(length=255), nullable=False),
        sa.Column("volume_id", sa.String(length=36), nullable=False),
        sa.Column("snapshot_id", sa.String(length=36), nullable=True),
        sa.Column("parent_id", sa.String(length=36), nullable=True),
        sa.Column("name", sa.String(length=255), nullable=True),
        sa.Column("description", sa.String(length=255), nullable=True),
        sa.Column("container", sa.String(length=255), nullable=True),
        sa.Column("availability_zone", sa.String(length=255), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=40), nullable=False),
        sa.Column("object_count", sa.Integer(), nullable=False),
        sa.Column("is_incremental", sa.Boolean(), nullable=False),
        sa.Column("temporary_snapshot", sa.Boolean(), nullable=False),
        sa.Column("restore_volume_id", sa.String(length=36), nullable=True),
        sa.Column("fail_reason", sa.Text(), nullable=True),
        sa.Column("metadata", sa.JSON(), nullable=False),
        sa.Column("data_timestamp", _moment(), nullable=False),
        sa.Column("created_at", _moment(), nullable=False),
        sa.Column("updated_at", _moment(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    for column in ("project_id", "volume_id", "parent_id", "name", "status", "created_at"):
        op.create_index(f"ix_volume_backup_{column}", "volume_backup", [column], unique=False)
    with op.batch_alter_table("volume_volume") as batch:
        batch.add_column(sa.Column("backup_id", sa.String(length=36), nullable=True))
        batch.add_column(sa.Column("upload_image_id", sa.String(length=36), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("volume_volume") as batch:
        batch.drop_column("upload_image_id")
        batch.drop_column("backup_id")
    op.drop_table("volume_backup")
