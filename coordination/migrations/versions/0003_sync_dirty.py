"""companies still to rebuild after a sync batch

Revision ID: 0003_sync_dirty
Revises: 0002
Create Date: 2026-12-05 11:40:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003_sync_dirty"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "dirtycompany",
        sa.Column("company_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("rebuilt", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("company_id"),
    )


def downgrade() -> None:
    op.drop_table("dirtycompany")
