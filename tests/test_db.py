"""The SQLite connections ``make_engine`` hands out: WAL, foreign keys, and the checkpoint
interval a sync needs once its indexes outgrow SQLite's default."""

from __future__ import annotations

from sqlalchemy import text

from coordination.db import SQLITE_CHECKPOINT_PAGES, make_engine


def test_every_sqlite_connection_gets_the_pragmas(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'pragmas.db'}")
    try:
        for _ in range(2):  # a second connection as well as the first
            with engine.connect() as connection:
                pragma = {
                    name: connection.execute(text(f"PRAGMA {name}")).scalar()
                    for name in ("journal_mode", "foreign_keys", "cache_size", "wal_autocheckpoint")
                }
            assert pragma == {
                "journal_mode": "wal",
                "foreign_keys": 1,
                "cache_size": -2000,  # SQLite's default: a sort may use as much memory
                "wal_autocheckpoint": SQLITE_CHECKPOINT_PAGES,
            }
            engine.dispose()
    finally:
        engine.dispose()


def test_the_checkpoint_is_rarer_than_sqlites_default():
    assert SQLITE_CHECKPOINT_PAGES > 1_000
