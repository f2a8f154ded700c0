"""covering indexes for deriving the report facts of a company's approaches (PostgreSQL)

Revision ID: 0007_fact_covering_indexes
Revises: 0006_report_cache
Create Date: 2026-12-05 20:00:00.000000

Deriving a company's report facts (``coordination.reports.facts``) looks up, for each record of
its approaches, the record's source (for the organisation type) and its needs (type and taxonomy
code). At 2,000,000 approaches most of a nightly refresh's server time was those look-ups reading
the wide ``sourcerecord`` rows (mostly payload) and the ``need`` rows. With the looked-up columns
included in the index, PostgreSQL answers them from the index alone. SQLite has no INCLUDE: its
need index stays as it was (the record's id is its rowid, the index would add nothing there).
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0007_fact_covering_indexes"
down_revision: str | None = "0006_report_cache"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.create_index(
        "ix_sourcerecord_id_source", "sourcerecord", ["id"], postgresql_include=["source_id"]
    )
    op.drop_index("ix_need_source_record_id", table_name="need")
    op.create_index(
        "ix_need_source_record_id",
        "need",
        ["source_record_id"],
        postgresql_include=["type", "taxonomy_code"],
    )


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.drop_index("ix_need_source_record_id", table_name="need")
    op.create_index("ix_need_source_record_id", "need", ["source_record_id"])
    op.drop_index("ix_sourcerecord_id_source", table_name="sourcerecord")
