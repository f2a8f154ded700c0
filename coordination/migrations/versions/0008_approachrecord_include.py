"""covering index for looking up an approach's records (PostgreSQL)

Revision ID: 0008_approachrecord_include
Revises: 0007_fact_covering_indexes
Create Date: 2026-12-05 23:30:00.000000

Deriving a company's report facts (``coordination.reports.facts``) looks up, for each of its
approaches, the approach's records. With the record id included in the index on the approach id,
PostgreSQL answers from the index alone instead of reading each ``approachrecord`` row as well
(a refresh of 2,000 busy companies: about 0.2 s of the server's 3 s). SQLite's index holds the
record id already (the table's rowid): its index stays as it was.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0008_approachrecord_include"
down_revision: str | None = "0007_fact_covering_indexes"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.drop_index("ix_approachrecord_approach_id", table_name="approachrecord")
    op.create_index(
        "ix_approachrecord_approach_id",
        "approachrecord",
        ["approach_id"],
        postgresql_include=["source_record_id"],
    )


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.drop_index("ix_approachrecord_approach_id", table_name="approachrecord")
    op.create_index("ix_approachrecord_approach_id", "approachrecord", ["approach_id"])
