"""report result cache, keyed by a version of the report facts

Revision ID: 0006_report_cache
Revises: 0005_report_months
Create Date: 2026-12-05 17:00:00.000000

``reportfactchange`` gets a row in every transaction that changes the report facts (their version
is its number of rows and newest id); ``reportcache`` holds report results computed from one
version (``coordination.reports.cache``). Both start empty: the facts' first version is the empty
log.
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0006_report_cache"
down_revision: str | None = "0005_report_months"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    text = sqlmodel.sql.sqltypes.AutoString
    op.create_table(
        "reportfactchange",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "reportcache",
        sa.Column("key", text(length=64), nullable=False),
        sa.Column("kind", text(length=40), nullable=False),
        sa.Column("version", text(length=32), nullable=False),
        sa.Column("result", text(), nullable=False),
        sa.Column("created_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("key"),
    )


def downgrade() -> None:
    op.drop_table("reportcache")
    op.drop_table("reportfactchange")
