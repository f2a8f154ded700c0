"""The pages' language: Danish (the source language of every text) or English.

A language chosen with the switch on every page is kept in the session; otherwise the browser's
Accept-Language decides, and Danish is the default.
"""

from __future__ import annotations

from pathlib import Path

from flask import Flask, request, session
from flask_babel import Babel

LANGUAGES = {"da": "Dansk", "en": "English"}
DEFAULT_LANGUAGE = "da"
TRANSLATIONS = Path(__file__).resolve().parent.parent / "translations"


def init_i18n(app: Flask) -> None:
    app.config.setdefault("BABEL_DEFAULT_LOCALE", DEFAULT_LANGUAGE)
    app.config.setdefault("BABEL_DEFAULT_TIMEZONE", "Europe/Copenhagen")
    app.config.setdefault("BABEL_TRANSLATION_DIRECTORIES", str(TRANSLATIONS))
    Babel(app, locale_selector=select_language)


def select_language() -> str:
    chosen = session.get("lang")
    if chosen in LANGUAGES:
        return chosen
    return request.accept_languages.best_match(list(LANGUAGES)) or DEFAULT_LANGUAGE


def choose_language(code: str) -> bool:
    """Keep ``code`` as this session's language; False when it is not offered."""
    if code not in LANGUAGES:
        return False
    session["lang"] = code
    return True
