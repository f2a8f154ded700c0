"""The REST API under /api/v1, described by OpenAPI at /api/v1/openapi.json (browsable at
/api/v1/docs). Errors are JSON ``{"code", "status", "message", "errors"}``."""

from __future__ import annotations

import importlib
import logging

from flask import Flask, current_app, jsonify, request
from flask.sessions import SecureCookieSessionInterface
from flask_smorest import Api
from sqlalchemy import text
from werkzeug.exceptions import HTTPException, InternalServerError, MethodNotAllowed

from coordination.api.auth import authenticate

log = logging.getLogger(__name__)

# Feature blueprints, each a module of this package exposing ``blp``.
BLUEPRINTS = ("companies", "approaches", "flags", "reports", "identity", "sync_runs", "admin")
PREFIX = "/api/v1/"


def init_api(app: Flask) -> Api:
    app.config.setdefault("API_TITLE", "Competence-needs coordination service")
    app.config.setdefault("API_VERSION", "v1")
    app.config.setdefault("OPENAPI_VERSION", "3.0.3")
    app.config.setdefault("OPENAPI_URL_PREFIX", "/api/v1")
    app.config.setdefault("OPENAPI_JSON_PATH", "openapi.json")
    app.config.setdefault("OPENAPI_REDOC_PATH", "docs")
    app.config.setdefault("OPENAPI_REDOC_URL", "/static/vendor/redoc.standalone.js")
    app.config.setdefault(
        "API_SPEC_OPTIONS",
        {
            "components": {"securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer"}}},
            "security": [{"bearerAuth": []}],
            "info": {"description": "See README.md and the specification's service.md."},
        },
    )
    app.session_interface = PagesOnlySessionInterface()
    api = Api(app)
    for name in BLUEPRINTS:
        module = importlib.import_module(f"coordination.api.{name}")
        api.register_blueprint(module.blp)
    app.add_url_rule("/healthz", "healthz", healthz)
    app.before_request(_authenticate_api_calls)
    # Registered after Api(app) so these replace flask-smorest's handler: the spec wants an
    # "errors" object in every error body and the Allow header kept on 405 answers.
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(MethodNotAllowed, _method_not_allowed)
    app.register_error_handler(Exception, _unexpected)
    return api


class PagesOnlySessionInterface(SecureCookieSessionInterface):
    """Flask's signed session cookie, left unopened on API requests: the API authenticates by
    bearer token alone and never reads the session, so checking the signature of a cookie a
    browser sends along (and saving it back) would be work for nothing. An API request sees
    an empty session that refuses writes."""

    def open_session(self, app, request):
        if request.path.startswith(PREFIX):
            return self.null_session_class()
        return super().open_session(app, request)


def _authenticate_api_calls() -> None:
    """Every API endpoint needs a token; checking it before argument parsing means a caller
    without one learns nothing else (401 comes before 422). Roles are checked per endpoint."""
    endpoint = request.endpoint or ""
    if request.path.startswith(PREFIX) and endpoint and not endpoint.startswith("api-docs."):
        authenticate()


def healthz():
    engine = current_app.extensions["coordination"]["engine"]
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except Exception as exc:  # the answer must say the database is unreachable, not crash
        return jsonify(status="error", database=f"unreachable: {type(exc).__name__}"), 503
    return jsonify(status="ok", database="reachable")


def error_body(code: int, status: str, message: str, errors: dict | None = None) -> dict:
    return {"code": code, "status": status, "message": message, "errors": _text_keys(errors or {})}


def _text_keys(messages):
    """Validation messages with every key a string: marshmallow keys list items by index, and a
    mix of int and str keys cannot be serialised as sorted JSON."""
    if isinstance(messages, dict):
        return {str(key): _text_keys(value) for key, value in messages.items()}
    if isinstance(messages, list | tuple):
        return [_text_keys(value) for value in messages]
    return messages


def _http_error(exc: HTTPException):
    data = getattr(exc, "data", None) or {}
    errors = data.get("messages") or data.get("errors") or {}
    message = data.get("message") or exc.description or exc.name
    response = jsonify(error_body(exc.code or 500, exc.name, message, errors))
    response.status_code = exc.code or 500
    for name, value in (data.get("headers") or {}).items():
        response.headers[name] = value
    return response


def _method_not_allowed(exc: MethodNotAllowed):
    response = jsonify(error_body(405, exc.name, exc.description))
    response.status_code = 405
    response.headers["Allow"] = ", ".join(exc.valid_methods or ())
    return response


def _unexpected(exc: Exception):
    if isinstance(exc, HTTPException):
        return _http_error(exc)
    log.exception("unhandled error")  # the client gets no stack trace, the log does
    server_error = InternalServerError()
    response = jsonify(error_body(500, server_error.name, "an internal error was logged"))
    response.status_code = 500
    return response
