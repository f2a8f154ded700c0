"""Browser-test fixtures: Debian's Chromium driven by Playwright, against the real app served by a
werkzeug thread on 127.0.0.1 over a database seeded by a real sync (``tests.web.seed_region``).

The browser is started once per session, and the seeded database and its server once per module
(seeding a fresh database for every test would double the run time on PostgreSQL); every test
gets a fresh browser context (1366x768, Danish) and tokens of its own, so tests share only the
data, and each test changes only what no other test looks at. Screenshots go to
``artifacts/screenshots/`` in the project.
"""

from __future__ import annotations

import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, sync_playwright
from sqlalchemy.engine import make_url
from werkzeug.serving import make_server

from coordination import create_app
from coordination.db import make_engine, session_scope
from coordination.tokens import create_token
from tests.conftest import POSTGRES_URL, _truncate_all
from tests.web import seed_region

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]
SCREENSHOTS = Path(__file__).resolve().parents[2] / "artifacts" / "screenshots"
VIEWPORT = {"width": 1366, "height": 768}
TIMEOUT_MS = 10_000


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        yield chromium
        chromium.close()


@pytest.fixture(scope="session")
def screenshots() -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    return SCREENSHOTS


@pytest.fixture(scope="module")
def region_url(_migrated_url, tmp_path_factory) -> str:
    """A migrated, empty database for this module (as the ``db_url`` fixture makes one)."""
    if POSTGRES_URL:
        _truncate_all(POSTGRES_URL)
        return POSTGRES_URL
    target = tmp_path_factory.mktemp("browser") / "coordination.db"
    shutil.copyfile(make_url(_migrated_url).database, target)
    return f"sqlite:///{target}"


@pytest.fixture(scope="module")
def region_engine(region_url):
    engine = make_engine(region_url)
    yield engine
    engine.dispose()


@pytest.fixture(scope="module")
def region(region_engine, region_url, tmp_path_factory):
    """The seeded region's configuration."""
    return seed_region(region_engine, region_url, tmp_path_factory.mktemp("deliveries"))


@pytest.fixture
def make_token(region_engine):
    """``make_token(role, organisation=...) -> plain token`` on the module's database."""

    def make(role: str, organisation: str = "Jobcenter Aarhus") -> str:
        with session_scope(region_engine) as session:
            _, plain = create_token(session, organisation, role)
        return plain

    return make


@pytest.fixture(scope="module")
def live_server(region, region_url) -> Iterator[str]:
    """The app on a free port of 127.0.0.1; yields its base URL."""
    app = create_app(
        {
            "TESTING": True,
            "COORDINATION": region,
            "DATABASE_URL": region_url,
            "SECRET_KEY": "browser-test-secret",
            "AUTH_MAX_FAILURES": 10_000,
        }
    )
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="live-server", daemon=True
    )
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    thread.join(timeout=5)
    app.extensions["coordination"]["engine"].dispose()


@pytest.fixture
def page(browser: Browser, live_server: str) -> Iterator[Page]:
    context = browser.new_context(
        viewport=VIEWPORT, locale="da-DK", accept_downloads=True, base_url=live_server
    )
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    errors: list[str] = []
    # A page that breaks its own Content-Security-Policy or throws shows up here.
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    yield page
    context.close()
    assert errors == [], f"the browser reported errors: {errors}"


@pytest.fixture
def log_in(page: Page, make_token):
    """``log_in(role, organisation=..., name=...)``: log in through the form; returns the token."""

    def go(role: str, organisation: str = "Jobcenter Aarhus", name: str = "Åse Bøgh") -> str:
        token = make_token(role, organisation)
        page.goto("/log-ind")
        page.get_by_label("Adgangsnøgle (API-token)").fill(token)
        page.get_by_label("Dit navn (valgfrit)").fill(name)
        page.get_by_role("button", name="Log ind").click()
        page.get_by_test_id("who").wait_for()
        # The landing page's scripts (htmx) must be running before a test types into it;
        # otherwise the first keystrokes can fire no request at all on a loaded machine.
        page.wait_for_load_state("load")
        return token

    return go
