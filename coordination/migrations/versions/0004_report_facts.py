"""report facts: the needs of approaches as the competence-needs report reads them

Revision ID: 0004_report_facts
Revises: 0003_sync_dirty
Create Date: 2026-12-05 11:55:00.000000

The table starts empty; the first ``refresh_report_facts`` builds it for every company, and until
then the reports count from the approaches directly.
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0004_report_facts"
down_revision: str | None = "0003_sync_dirty"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "reportneedfact",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("approach_id", sa.Integer(), nullable=False),
        sa.Column("company_id", sa.Integer(), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("municipality_code", sqlmodel.sql.sqltypes.AutoString(length=3), nullable=True),
        sa.Column("industry_section", sqlmodel.sql.sqltypes.AutoString(length=1), nullable=True),
        sa.Column("organisation_type", sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
        sa.Column("need_type", sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
        sa.Column("taxonomy_code", sqlmodel.sql.sqltypes.AutoString(length=100), nullable=True),
        sa.Column("need_before", sa.Date(), nullable=True),
        sa.Column("type_need_before", sa.Date(), nullable=True),
        sa.Column("any_before", sa.Date(), nullable=True),
        sa.Column("type_before", sa.Date(), nullable=True),
        sa.Column("approach_need_first", sa.Boolean(), nullable=False),
        sa.Column("approach_first", sa.Boolean(), nullable=False),
        sa.Column("approach_type_first", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_reportneedfact_day", "reportneedfact", ["day"], unique=False)
    op.create_index(
        op.f("ix_reportneedfact_company_id"), "reportneedfact", ["company_id"], unique=False
    )
    op.create_table(
        "reportfactstate",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("built_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )


def downgrade() -> None:
    op.drop_table("reportfactstate")
    op.drop_index(op.f("ix_reportneedfact_company_id"), table_name="reportneedfact")
    op.drop_index("ix_reportneedfact_day", table_name="reportneedfact")
    op.drop_table("reportneedfact")
