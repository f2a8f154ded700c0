"""Jinja filters that format figures, dates and times in the page's language.

Report tables hold many figures, so the filters for them are plain functions (a Jinja macro per
cell costs several times more)."""

from __future__ import annotations

import datetime as dt

from flask import g
from flask_babel import format_date, format_datetime, format_decimal, get_locale, gettext
from markupsafe import Markup

SUPPRESSED = Markup('<span class="suppressed" title="{title}">*</span>')


def number(value) -> str:
    """A figure with the language's digit grouping (1.234 in Danish, 1,234 in English)."""
    if value is None:
        return ""
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}".replace(",", _page_formats()["group"])
    return format_decimal(value)


def figure(value, suppressed: bool = False) -> Markup | str:
    """A report figure, or the suppression mark when it may not be shown."""
    if suppressed or value is None:
        return _page_formats()["suppressed"]
    return number(value)


def change(value) -> Markup | str:
    """A change against the previous period, with its sign."""
    if value is None:
        return _page_formats()["suppressed"]
    return f"+{number(value)}" if value > 0 else number(value)


def percent(share, undefined: bool = False) -> Markup | str:
    """A share (0-1) as a percentage; "–" when there is nothing to take a share of."""
    if undefined:
        return "–"
    if share is None:
        return _page_formats()["suppressed"]
    return f"{format_decimal(round(share * 100, 1))} %"


def date(value) -> str:
    return format_date(value, "medium") if value else ""


def datetime(value) -> str:
    if not value:
        return ""
    if value.tzinfo is None:  # SQLite hands back naive UTC
        value = value.replace(tzinfo=dt.UTC)
    return format_datetime(value, "short")


FILTERS = {
    "number": number,
    "figure": figure,
    "change": change,
    "percent": percent,
    "date": date,
    "datetime": datetime,
}


def _page_formats() -> dict:
    """What every figure of this request shares, worked out once per request."""
    if "page_formats" not in g:
        from babel.numbers import get_group_symbol

        title = gettext("Skjult: færre end 3 virksomheder")
        g.page_formats = {
            "group": get_group_symbol(get_locale()),
            "suppressed": SUPPRESSED.format(title=title),
        }
    return g.page_formats
