"""Competence-needs coordination service.

``create_app()`` is the application factory (``gunicorn "coordination:create_app()"``). Nothing
connects, loads or starts at import time.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flask import Flask


def create_app(test_config: Mapping[str, Any] | None = None) -> Flask:
    """Build the web application: defaults, then the configuration file and environment
    (``coordination.config``), then ``test_config`` (tests pass a ready ``COORDINATION`` config
    and may pass ``DATABASE_URL``)."""
    from coordination.config import load_config
    from coordination.db import make_engine

    app = Flask(__name__)
    app.config.from_mapping(
        MAX_CONTENT_LENGTH=1 * 1024 * 1024,
        JSON_SORT_KEYS=False,
    )
    if test_config:
        app.config.update(test_config)
    config = app.config.get("COORDINATION") or load_config()
    app.config["COORDINATION"] = config
    engine = make_engine(app.config.get("DATABASE_URL") or config.database_url)
    app.extensions["coordination"] = {"config": config, "engine": engine}

    from coordination.api import init_api
    from coordination.web import init_web

    init_api(app)
    init_web(app)
    return app
