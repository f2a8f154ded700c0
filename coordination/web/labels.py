"""Display names of the service's codes (channels, statuses, need and organisation types), in
Danish as the source language; Flask-Babel gives the English ones."""

from __future__ import annotations

import datetime as dt

from flask_babel import lazy_gettext as _l

CHANNELS = {
    "visit": _l("Besøg"),
    "phone": _l("Telefon"),
    "meeting": _l("Møde"),
    "email": _l("E-mail"),
    "online": _l("Onlinemøde"),
}
FLAG_STATUSES = {
    "open": _l("Åben"),
    "acknowledged": _l("Kvitteret"),
    "resolved": _l("Løst"),
}
NEED_TYPES = {
    "upskilling": _l("Opkvalificering"),
    "recruitment": _l("Rekruttering"),
}
ORGANISATION_TYPES = {
    "vaeksthus": _l("Væksthus (erhvervshus)"),
    "jobcenter": _l("Jobcenter"),
    "veu": _l("VEU-center"),
    "other": _l("Anden"),
}
RUN_STATUSES = {
    "running": _l("Kører"),
    "succeeded": _l("Gennemført"),
    "failed": _l("Fejlet"),
    "stopped": _l("Stoppet"),
}
ROLE_NAMES = {
    "visitor": _l("Konsulent"),
    "coordinator": _l("Koordinator"),
    "council": _l("Rådsanalytiker"),
    "admin": _l("Administrator"),
}
MATCH_STATUSES = {
    "proposed": _l("Foreslået"),
    "accepted": _l("Accepteret"),
    "rejected": _l("Afvist"),
}


RUN_TRIGGERS = {
    "cli": _l("Kommandolinje"),
    "api": _l("API"),
    "scheduler": _l("Planlagt kørsel"),
    "web": _l("Websiden"),
    "demo": _l("Demo"),
}
DECISION_ACTIONS = {
    "accept": _l("Accepteret forslag"),
    "reject": _l("Afvist forslag"),
    "merge": _l("Sammenlægning"),
    "split": _l("Udskillelse"),
    "undo": _l("Fortrydelse"),
}
GROUPINGS = {
    "sector": _l("Branche"),
    "municipality": _l("Kommune"),
    "organisation_type": _l("Organisationstype"),
}


def month_label(year: int, month: int) -> str:
    """A short month for chart axes, in the page's language ("jan. 26")."""
    from flask_babel import format_date

    return format_date(dt.date(year, month, 1), "MMM yy")


def label(table: dict, code: str | None) -> str:
    """The display name of ``code`` in ``table``, or the code itself when it has none."""
    if code is None:
        return "–"
    return str(table.get(code, code))


def address(item) -> str:
    """A company's address as "street, postcode city", leaving out what is missing."""
    town = " ".join(part for part in (item.get("postcode"), item.get("city")) if part)
    return ", ".join(part for part in (item.get("address"), town) if part) or "–"


JINJA_GLOBALS = {
    "address": address,
    "CHANNELS": CHANNELS,
    "FLAG_STATUSES": FLAG_STATUSES,
    "NEED_TYPES": NEED_TYPES,
    "ORGANISATION_TYPES": ORGANISATION_TYPES,
    "RUN_STATUSES": RUN_STATUSES,
    "MATCH_STATUSES": MATCH_STATUSES,
    "ROLE_NAMES": ROLE_NAMES,
    "GROUPINGS": GROUPINGS,
    "DECISION_ACTIONS": DECISION_ACTIONS,
    "RUN_TRIGGERS": RUN_TRIGGERS,
    "label": label,
}
