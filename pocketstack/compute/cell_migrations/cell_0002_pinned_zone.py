"""the availability zone a server was asked for (shown from 2.96)

Revision ID: compute_cell_0002
Revises: compute_cell_0001
"""

import sqlalchemy as sa
from alembic import op

revision = "compute_cell_0002"
down_revision = "compute_cell_0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("compute_instance") as batch:
        batch.add_column(sa.Column("pinned_availability_zone", sa.String(length=255)))


def downgrade() -> None:
    with op.batch_alter_table("compute_instance") as batch:
        batch.drop_column("pinned_availability_zone")
