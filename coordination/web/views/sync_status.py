"""Synkroniseringsstatus (admins): each source's last run, counts, errors and staleness, the
recent runs, and a button that starts a run."""

from __future__ import annotations

from flask import current_app, flash, redirect, render_template, url_for
from flask_babel import gettext

from coordination.api.common import audit, config, engine, unit_of_work
from coordination.services import SyncAlreadyRunning, source_health, start_sync_in_background
from coordination.web.access import page_for
from coordination.web.blueprint import bp
from coordination.web.forms import StartSyncForm
from coordination.web.queries import (
    latest_run_per_source,
    open_quarantine_per_source,
    recent_runs,
)

RECENT_RUNS = 10


@bp.get("/synkronisering")
@page_for("admin")
def sync_status():
    with unit_of_work() as session:
        health = source_health(session, config())
        latest = latest_run_per_source(session)
        quarantined = open_quarantine_per_source(session)
        runs = recent_runs(session, RECENT_RUNS)
    sources = [
        {
            "health": entry,
            "last_run": latest.get(entry.name),
            "quarantined": quarantined.get(entry.name, 0),
        }
        for entry in health
    ]
    return render_template(
        "sync_status.html",
        sources=sources,
        stale=[s for s in sources if s["health"].stale],
        runs=runs,
        form=StartSyncForm(),
    )


@bp.post("/synkronisering")
@page_for("admin")
def start_sync():
    form = StartSyncForm()
    if not form.validate_on_submit():
        return redirect(url_for("web.sync_status"))
    try:
        background = start_sync_in_background(config(), engine(), None, trigger="web")
    except SyncAlreadyRunning:
        flash(gettext("En synkronisering kører allerede. Prøv igen, når den er færdig."), "error")
        return redirect(url_for("web.sync_status"))
    current_app.extensions["coordination"].setdefault("background_syncs", []).append(background)
    with unit_of_work() as session:
        audit(session, "sync.start", f"sync-run:{background.run_id}", sources="all", via="web")
    flash(gettext("Synkronisering %(id)s er startet.", id=background.run_id), "success")
    return redirect(url_for("web.sync_status"))
