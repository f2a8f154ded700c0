"""Dates as the service's users see them (Europe/Copenhagen unless configured otherwise)."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo


def local_date(moment: dt.datetime, timezone: str = "Europe/Copenhagen") -> dt.date:
    """The date of a stored moment where the users are (SQLite hands back naive UTC)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return moment.astimezone(ZoneInfo(timezone)).date()


def local_today(timezone: str = "Europe/Copenhagen") -> dt.date:
    return dt.datetime.now(ZoneInfo(timezone)).date()
