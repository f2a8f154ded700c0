"""Server-rendered web pages (filled in by the web feature)."""

from flask import Flask


def init_web(app: Flask) -> None:
    """Attach the web pages to ``app``."""
