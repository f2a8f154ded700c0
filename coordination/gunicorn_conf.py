"""gunicorn settings of the service (``gunicorn -c python:coordination.gunicorn_conf ...``; see
docs/deployment.md). Only hooks live here; workers, binding and timeouts stay on the command
line."""

from __future__ import annotations

import gc


def post_worker_init(worker) -> None:
    """After the worker has built the app: keep its objects (SQLAlchemy's metadata and
    statement caches, the OpenAPI spec, code lists, ...), which live as long as the worker,
    out of the garbage collector's generations. A full collection then walks only what
    requests left behind: without this, one in a few thousand checks paid 50-75 ms for it."""
    gc.freeze()
