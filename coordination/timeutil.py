"""Dates as the service's users see them (Europe/Copenhagen unless configured otherwise)."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo


def local_today(timezone: str = "Europe/Copenhagen") -> dt.date:
    return dt.datetime.now(ZoneInfo(timezone)).date()
