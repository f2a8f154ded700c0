"""The REST API under /api/v1, described by OpenAPI at /api/v1/openapi.json."""

from __future__ import annotations

from flask import Flask, current_app, jsonify
from flask_smorest import Api
from sqlalchemy import text
from werkzeug.exceptions import HTTPException, MethodNotAllowed


def init_api(app: Flask) -> None:
    app.config.setdefault("API_TITLE", "Competence-needs coordination service")
    app.config.setdefault("API_VERSION", "v1")
    app.config.setdefault("OPENAPI_VERSION", "3.0.3")
    app.config.setdefault("OPENAPI_URL_PREFIX", "/api/v1")
    app.config.setdefault("OPENAPI_JSON_PATH", "openapi.json")
    app.config.setdefault("OPENAPI_SWAGGER_UI_PATH", None)
    app.config.setdefault("OPENAPI_REDOC_PATH", "docs")
    app.config.setdefault("OPENAPI_REDOC_URL", "/static/vendor/redoc.standalone.js")
    api = Api(app)
    from coordination.api import sync_runs

    api.register_blueprint(sync_runs.blp)
    app.add_url_rule("/healthz", "healthz", healthz)
    app.register_error_handler(HTTPException, _json_error)


def healthz():
    engine = current_app.extensions["coordination"]["engine"]
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except Exception as exc:  # the answer must say the database is unreachable, not crash
        return jsonify(status="error", database=f"unreachable: {type(exc).__name__}"), 503
    return jsonify(status="ok", database="reachable")


def _json_error(exc: HTTPException):
    body = {
        "code": exc.code,
        "status": exc.name,
        "message": exc.description or exc.name,
        "errors": getattr(exc, "data", {}).get("messages", {}) if hasattr(exc, "data") else {},
    }
    response = jsonify(body)
    response.status_code = exc.code or 500
    if isinstance(exc, MethodNotAllowed) and exc.valid_methods:
        response.headers["Allow"] = ", ".join(exc.valid_methods)
    return response
