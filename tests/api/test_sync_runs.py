"""The sync-run endpoints: history, starting a run (202, or 409 while one runs), and the
staleness of each configured source."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import func, select
from sqlmodel import Session

from coordination import create_app
from coordination.db import session_scope
from coordination.locks import sync_lock
from coordination.models import AuditEntry, Source, SyncRun
from coordination.services import run_sync
from coordination.sync import register_sources
from tests.scheduler import csv_source, jobcenter_row, make_config, write_export


@pytest.fixture
def drop_folder(tmp_path):
    folder = tmp_path / "drop"
    rows = [jobcenter_row("1", "Ålborg Værktøj ApS"), jobcenter_row("2", "Bøgh & Søn I/S")]
    write_export(folder, "virksomhedskontakter_20260303.csv", rows)
    return folder


@pytest.fixture
def sources_config(db_url, drop_folder, tmp_path):
    (tmp_path / "empty").mkdir()
    return make_config(
        db_url,
        [
            csv_source(drop_folder),
            csv_source(
                tmp_path / "empty", name="jobcenter-herning", organisation="Jobcenter Herning"
            ),
        ],
    )


@pytest.fixture
def sync_app(sources_config):
    app = create_app({"TESTING": True, "COORDINATION": sources_config, "AUTH_MAX_FAILURES": 10_000})
    yield app
    for background in app.extensions["coordination"].get("background_syncs", []):
        background.join(30)
    app.extensions["coordination"]["engine"].dispose()


@pytest.fixture
def sync_client(sync_app):
    return sync_app.test_client()


def finish_background_runs(app) -> None:
    for background in app.extensions["coordination"].get("background_syncs", []):
        background.join(30)
        assert not background.thread.is_alive()


# --- starting a run ---------------------------------------------------------------------------


def test_post_starts_a_run_and_answers_202_with_its_id(sync_app, sync_client, auth):
    answer = sync_client.post("/api/v1/sync-runs", headers=auth("admin"))
    assert answer.status_code == 202
    run_id = answer.json["id"]
    assert answer.json["trigger"] == "api"
    assert answer.headers["Location"].endswith(f"/api/v1/sync-runs/{run_id}")
    finish_background_runs(sync_app)
    run = sync_client.get(f"/api/v1/sync-runs/{run_id}", headers=auth("admin")).json
    assert run["status"] == "succeeded"
    assert run["error"] is None
    assert run["duration_seconds"] >= 0
    counts = {s["source"]: (s["status"], s["new"]) for s in run["sources"]}
    assert counts == {"jobcenter-aarhus": ("succeeded", 2), "jobcenter-herning": ("succeeded", 0)}


def test_post_with_sources_syncs_only_those(sync_app, sync_client, auth):
    answer = sync_client.post(
        "/api/v1/sync-runs", json={"sources": ["jobcenter-aarhus"]}, headers=auth("admin")
    )
    assert answer.status_code == 202
    finish_background_runs(sync_app)
    run = sync_client.get(f"/api/v1/sync-runs/{answer.json['id']}", headers=auth("admin")).json
    assert [s["source"] for s in run["sources"]] == ["jobcenter-aarhus"]
    assert run["status"] == "succeeded"


def test_post_while_another_sync_holds_the_lock_is_409(sync_app, sync_client, auth, engine):
    with sync_lock(engine):
        answer = sync_client.post("/api/v1/sync-runs", headers=auth("admin"))
    assert answer.status_code == 409
    assert "already in progress" in answer.json["message"]
    with Session(engine) as session:
        assert session.execute(select(func.count()).select_from(SyncRun)).scalar_one() == 0


def test_the_lock_is_free_again_when_the_background_run_ends(sync_app, sync_client, auth, engine):
    sync_client.post("/api/v1/sync-runs", headers=auth("admin"))
    finish_background_runs(sync_app)
    lock = sync_lock(engine)
    assert lock.try_acquire()
    lock.release()


def test_post_is_audited(sync_app, sync_client, auth, engine):
    answer = sync_client.post("/api/v1/sync-runs", headers=auth("admin"))
    finish_background_runs(sync_app)
    with Session(engine) as session:
        [entry] = session.execute(select(AuditEntry)).scalars()
    assert (entry.action, entry.target) == ("sync.start", f"sync-run:{answer.json['id']}")


def test_post_with_an_unknown_source_is_422(sync_client, auth):
    answer = sync_client.post(
        "/api/v1/sync-runs", json={"sources": ["no-such-source"]}, headers=auth("admin")
    )
    assert answer.status_code == 422
    assert "no-such-source" in str(answer.json["errors"])


def test_post_with_a_malformed_body_is_422(sync_client, auth):
    answer = sync_client.post("/api/v1/sync-runs", json={"sources": "all"}, headers=auth("admin"))
    assert answer.status_code == 422


def test_post_needs_the_admin_role(sync_client, auth):
    answer = sync_client.post("/api/v1/sync-runs", headers=auth("coordinator"))
    assert answer.status_code == 403


# --- reading runs -----------------------------------------------------------------------------


def test_history_lists_runs_newest_first(sync_app, sync_client, auth):
    first = sync_client.post("/api/v1/sync-runs", headers=auth("admin")).json["id"]
    finish_background_runs(sync_app)
    second = sync_client.post("/api/v1/sync-runs", headers=auth("admin")).json["id"]
    finish_background_runs(sync_app)
    page = sync_client.get("/api/v1/sync-runs", headers=auth("admin")).json
    assert [run["id"] for run in page["items"]] == [second, first]
    assert page["total"] == 2


def test_a_run_with_a_failed_source_shows_the_error(client, auth, engine, db_url, tmp_path):
    config = make_config(db_url, [csv_source(tmp_path / "missing", name="jobcenter-skive")])
    run_sync(config, engine=engine)
    [run] = client.get("/api/v1/sync-runs", headers=auth("admin")).json["items"]
    assert run["status"] == "failed"
    assert run["error"].startswith("jobcenter-skive: FatalError: drop folder")
    assert run["sources"][0]["error"] in run["error"]


@pytest.mark.parametrize("run_id", ["999", "99999999999999999999999"])
def test_an_unknown_run_is_404(sync_client, auth, run_id):
    answer = sync_client.get(f"/api/v1/sync-runs/{run_id}", headers=auth("admin"))
    assert answer.status_code == 404
    assert answer.json["code"] == 404


# --- source staleness -------------------------------------------------------------------------


def test_sources_show_which_are_stale_and_why(db_url, engine, tmp_path, auth):
    config = make_config(
        db_url,
        [
            csv_source(tmp_path / "a", name="current", organisation="Jobcenter Århus"),
            csv_source(tmp_path / "b", name="failed-last", organisation="Jobcenter Herning"),
            csv_source(tmp_path / "c", name="old-success", organisation="Jobcenter Randers"),
            csv_source(tmp_path / "d", name="never-synced", organisation="Jobcenter Skive"),
        ],
    )
    now = dt.datetime.now(dt.UTC)
    last_runs = {
        "current": ("succeeded", now - dt.timedelta(hours=47)),
        "failed-last": ("failed", now - dt.timedelta(hours=1)),
        "old-success": ("succeeded", now - dt.timedelta(hours=49)),
    }
    with session_scope(engine) as session:
        register_sources(session, config)
        for source in session.execute(select(Source)).scalars():
            if source.name in last_runs:
                source.last_status, source.last_success_at = last_runs[source.name]
    app = create_app({"TESTING": True, "COORDINATION": config, "AUTH_MAX_FAILURES": 10_000})
    try:
        answer = app.test_client().get("/api/v1/sync-runs/sources", headers=auth("admin"))
    finally:
        app.extensions["coordination"]["engine"].dispose()

    assert answer.status_code == 200
    items = {item["name"]: item for item in answer.json["items"]}
    assert list(items) == ["current", "failed-last", "old-success", "never-synced"]
    assert {name: item["stale"] for name, item in items.items()} == {
        "current": False,
        "failed-last": True,
        "old-success": True,
        "never-synced": True,
    }
    assert items["current"]["organisation"] == "Jobcenter Århus"
    assert items["failed-last"]["stale_reason"] == "its last run failed"
    assert items["old-success"]["stale_reason"] == "no successful sync for more than 48 hours"
    assert items["never-synced"]["last_success_at"] is None
    assert items["never-synced"]["stale_reason"] == "it has never been synced successfully"


def test_sources_need_the_admin_role(client, auth):
    answer = client.get("/api/v1/sync-runs/sources", headers=auth("council"))
    assert answer.status_code == 403


def test_the_openapi_document_describes_the_new_endpoints(client):
    paths = client.get("/api/v1/openapi.json").json["paths"]
    assert "post" in paths["/api/v1/sync-runs"]
    assert "409" in paths["/api/v1/sync-runs"]["post"]["responses"]
    assert "/api/v1/sync-runs/{run_id}" in paths
    assert "/api/v1/sync-runs/sources" in paths
