"""Server-rendered web pages, in Danish (English through Flask-Babel).

Pages: log-in (``/log-ind``), the prior-contact check (``/tjek``, ``/virksomhed/<id>``), the flag
inbox (``/flag``), match review (``/match``), reports (``/rapporter``,
``/rapporter/koordinering``, downloads ``/rapporter/kompetencebehov.csv|xlsx``) and sync status
(``/synkronisering``). Each page calls the service layer of its feature; the handlers only
translate between forms and services. Who may see a page follows the API's role table
(``coordination.tokens.ROLE_GRANTS``); the login takes an API token, so the pages use the same
identities as the API.

Configuration (app config, usually from the environment):

- ``SECRET_KEY`` signs the session cookie and the forms' CSRF tokens. It is read from the
  environment variable ``COORDINATION_SECRET_KEY``. Without it, a random key is generated per
  process: enough for the demo and for one development server, but every restart logs everyone
  out and several gunicorn workers would not accept each other's cookies, so set the variable in
  production.
- ``COORDINATION_SECURE_COOKIES=1`` marks the session cookie ``Secure`` (behind HTTPS).
- ``COORDINATION_SESSION_HOURS`` (default 8): how long a login lasts.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import secrets

from flask import Flask

log = logging.getLogger(__name__)


def init_web(app: Flask) -> None:
    """Attach the web pages to ``app``."""
    from coordination.web import views  # noqa: F401  (attaches the pages to the blueprint)
    from coordination.web.blueprint import bp, csrf
    from coordination.web.formatting import FILTERS
    from coordination.web.headers import init_headers
    from coordination.web.i18n import init_i18n
    from coordination.web.labels import JINJA_GLOBALS

    _configure_session(app)
    app.config.setdefault("WTF_CSRF_CHECK_DEFAULT", False)  # the web blueprint checks its forms
    app.config.setdefault("WTF_CSRF_TIME_LIMIT", None)  # valid as long as the login
    csrf.init_app(app)
    init_i18n(app)
    init_headers(app)
    app.jinja_env.globals.update(JINJA_GLOBALS)
    app.jinja_env.filters.update(FILTERS)
    app.register_blueprint(bp)


def _configure_session(app: Flask) -> None:
    if not app.config.get("SECRET_KEY"):
        key = os.environ.get("COORDINATION_SECRET_KEY")
        if not key:
            log.warning(
                "COORDINATION_SECRET_KEY is not set: using a random key for this process "
                "(logins end at restart and are not shared between workers)"
            )
            key = secrets.token_urlsafe(48)
        app.config["SECRET_KEY"] = key
    # Flask sets defaults for these keys, so setdefault would change nothing.
    app.config["SESSION_COOKIE_NAME"] = "coordination_session"
    app.config["SESSION_COOKIE_HTTPONLY"] = True
    app.config["SESSION_COOKIE_SAMESITE"] = "Lax"
    app.config["SESSION_COOKIE_SECURE"] = os.environ.get("COORDINATION_SECURE_COOKIES") == "1"
    hours = _positive_int(os.environ.get("COORDINATION_SESSION_HOURS"), default=8)
    app.config["PERMANENT_SESSION_LIFETIME"] = dt.timedelta(hours=hours)


def _positive_int(value: str | None, default: int) -> int:
    try:
        number = int(value) if value else default
    except ValueError:
        return default
    return number if number > 0 else default
