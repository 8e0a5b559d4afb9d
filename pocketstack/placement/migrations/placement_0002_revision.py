"""placement revision counter

Revision ID: placement_0002
Revises: placement_0001
"""

import sqlalchemy as sa
from alembic import op

revision = "placement_0002"
down_revision = "placement_0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    table = op.create_table(
        "placement_revision",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("value", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.bulk_insert(table, [{"id": 1, "value": 0}])


def downgrade() -> None:
    op.drop_table("placement_revision")
