"""report facts per month, each fact's next day of its key, and approach facts

Revision ID: 0005_report_months
Revises: 0004_report_facts
Create Date: 2026-12-05 14:30:00.000000

The facts built so far lack the new marks, the monthly sums and the approach facts: the state row
is removed, so the next ``refresh_report_facts`` rebuilds them for every company (until then the
reports count from the approaches directly).
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0005_report_months"
down_revision: str | None = "0004_report_facts"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_AFTER = ("need_after", "type_need_after", "any_after", "type_after")


def upgrade() -> None:
    with op.batch_alter_table("reportneedfact") as batch:
        for name in _AFTER:
            batch.add_column(sa.Column(name, sa.Date(), nullable=True))
    text = sqlmodel.sql.sqltypes.AutoString
    op.create_table(
        "reportneedmonth",
        sa.Column("level", sa.Integer(), nullable=False),
        sa.Column("month", sa.Date(), nullable=False),
        sa.Column("municipality_code", text(length=3), nullable=False),
        sa.Column("industry_section", text(length=1), nullable=False),
        sa.Column("organisation_type", text(length=20), nullable=False),
        sa.Column("need_type", text(length=20), nullable=False),
        sa.Column("taxonomy_code", text(length=100), nullable=False),
        sa.Column("before_month", sa.Date(), nullable=False),
        sa.Column("facts", sa.Integer(), nullable=False),
        sa.Column("approaches", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint(
            "level",
            "month",
            "municipality_code",
            "industry_section",
            "organisation_type",
            "need_type",
            "taxonomy_code",
            "before_month",
        ),
    )
    op.create_table(
        "reportapproachfact",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("approach_id", sa.Integer(), nullable=False),
        sa.Column("company_id", sa.Integer(), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("municipality_code", text(length=3), nullable=True),
        sa.Column("organisation_id", sa.Integer(), nullable=True),
        sa.Column("coordinated", sa.Boolean(), nullable=False),
        sa.Column("approach_first", sa.Boolean(), nullable=False),
        sa.Column("organisation_before", sa.Date(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_reportapproachfact_day", "reportapproachfact", ["day"], unique=False)
    for column in ("approach_id", "company_id"):
        op.create_index(
            op.f(f"ix_reportapproachfact_{column}"), "reportapproachfact", [column], unique=False
        )
    op.execute("DELETE FROM reportfactstate")


def downgrade() -> None:
    for column in ("approach_id", "company_id"):
        op.drop_index(op.f(f"ix_reportapproachfact_{column}"), table_name="reportapproachfact")
    op.drop_index("ix_reportapproachfact_day", table_name="reportapproachfact")
    op.drop_table("reportapproachfact")
    op.drop_table("reportneedmonth")
    with op.batch_alter_table("reportneedfact") as batch:
        for name in _AFTER:
            batch.drop_column(name)
    op.execute("DELETE FROM reportfactstate")
