"""Service layer: the operations the CLI, the API, the scheduler and tests share."""

from __future__ import annotations

import threading
from collections.abc import Sequence

from connectors.base import load_registry
from coordination.config import Config
from coordination.db import make_engine
from coordination.progress import progress_reporter
from coordination.sync import SyncEngine, SyncResult


def run_sync(
    config: Config,
    source_names: Sequence[str] | None = None,
    trigger: str = "cli",
    interactive: bool = False,
    stop: threading.Event | None = None,
    engine=None,
) -> SyncResult:
    engine = engine or make_engine(config.database_url)
    sync_engine = SyncEngine(engine, config, load_registry(), classifier=_classifier(), stop=stop)
    with progress_reporter(interactive) as progress:
        return sync_engine.run(source_names, trigger=trigger, progress=progress)


def _classifier():
    from coordination.needs.classifier import TaxonomyClassifier

    return TaxonomyClassifier()
