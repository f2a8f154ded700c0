"""The gunicorn settings module: workers freeze the objects of the loaded app."""

from __future__ import annotations

import contextlib
import gc
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path


def app(environ, start_response):
    """A WSGI app that tells how many objects its worker has frozen."""
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [str(gc.get_freeze_count()).encode()]


def test_a_gunicorn_worker_freezes_the_app_it_loaded():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [sys.executable, "-m", "gunicorn", "-c", "python:coordination.gunicorn_conf"]
    command += ["-w", "1", "-b", f"127.0.0.1:{port}", "tests.test_gunicorn_conf:app"]
    root = Path(__file__).resolve().parent.parent
    server = subprocess.Popen(command, cwd=root, stderr=subprocess.DEVNULL)
    try:
        frozen = None
        deadline = time.monotonic() + 60
        while frozen is None and time.monotonic() < deadline and server.poll() is None:
            with (
                contextlib.suppress(OSError),
                urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as answer,  # noqa: S310
            ):
                frozen = int(answer.read())
            time.sleep(0.2)
    finally:
        server.terminate()
        server.wait(timeout=30)

    assert frozen is not None and frozen > 1000
