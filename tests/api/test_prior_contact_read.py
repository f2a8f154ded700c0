"""The prior-contact check's one-read answer and its write path (coordination.prior_contact_read),
and the API's token cache."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from sqlalchemy import event, func, select

from coordination.companies import company_by_cvr, local_today, prior_contact
from coordination.db import session_scope
from coordination.models import (
    AuditEntry,
    ContactPerson,
    Organisation,
    PlannedVisit,
    PriorContactCheck,
    ProductionUnit,
    utcnow,
)
from coordination.prior_contact_read import read_snapshot
from coordination.tokens import revoke
from tests.api.test_prior_contact import CHECK, CVR, ago, ahead
from tests.api.test_prior_contact import service_config as service_config  # noqa: F401
from tests.integration.test_coordination_timelines import JOBCENTER, VAEKSTHUS, VEU, Timeline

OTHER = "Erhvervsskolen Nord"  # a partner without a source of its own


@pytest.fixture
def timeline(engine):
    return Timeline(engine)


@pytest.fixture
def busy_company(timeline, engine) -> int:
    """A company with something of every kind the answer shows."""
    company = timeline.company("Madsen & Bøgh ApS", cvr=CVR)
    welding = ("upskilling", "SV1", "Svejsning", "komp:svejsning")
    unmapped = ("recruitment", "X9", "Noget helt andet", None)
    timeline.approach(company, JOBCENTER, ago(2), notes="Ring igen", needs=[welding, unmapped])
    timeline.approach(company, VAEKSTHUS, ago(2), notes="Vores note", needs=[welding])
    timeline.approach(company, VEU, ago(20), joint_with=[JOBCENTER], consultant="Anne Holm")
    timeline.approach(company, VEU, ago(45), needs=[unmapped, unmapped])
    timeline.approach(company, VAEKSTHUS, ago(80), channel="phone", purpose="Opfølgning")
    timeline.approach(company, JOBCENTER, ago(95))
    timeline.approach(company, JOBCENTER, ago(400))
    timeline.approach(company, VAEKSTHUS, ahead(5), status="planned", purpose="Møde")
    timeline.approach(company, VAEKSTHUS, local_today(), status="planned")
    cancelled = timeline.approach(company, VEU, ago(7))
    timeline.cancel(cancelled)
    timeline.check(company, JOBCENTER, ago(30))
    timeline.evaluate(company, today=local_today())
    timeline.sync_state(JOBCENTER, "succeeded", utcnow() - dt.timedelta(hours=3))
    timeline.sync_state(VEU, "failed", utcnow() - dt.timedelta(days=3))
    with session_scope(engine) as session:
        session.add_all(
            [
                ProductionUnit(p_number="1012345678", company_id=company, postcode="8000"),
                ProductionUnit(p_number="1000000001", company_id=company, city="Aarhus"),
                ContactPerson(company_id=company, person_key="b", name="Bo Berg", phone="1"),
                ContactPerson(company_id=company, person_key="a", name="Anne", email="a@x.dk"),
                ContactPerson(company_id=company, person_key="z", name=None, email="z@x.dk"),
                ContactPerson(
                    company_id=company, person_key="gone", name="Væk", anonymised_at=utcnow()
                ),
            ]
        )
    return company


def planned_visit(engine, company: int, organisation_id: int, on: dt.date) -> None:
    with session_scope(engine) as session:
        session.add(
            PlannedVisit(
                company_id=company, organisation_id=organisation_id, date=on, created_by="Kim"
            )
        )


@pytest.mark.parametrize("viewer", [JOBCENTER, VAEKSTHUS, OTHER])
@pytest.mark.parametrize("days", [1, 30, 90, 3650])
@pytest.mark.parametrize("with_contacts", [True, False])
def test_the_one_read_answer_is_the_answer_of_the_separate_queries(
    engine, service_config, timeline, busy_company, viewer, days, with_contacts
):
    timeline.source(JOBCENTER)
    with session_scope(engine) as session:
        organisation_id = session.execute(
            select(Organisation.id).where(Organisation.name == JOBCENTER)
        ).scalar_one()
    planned_visit(engine, busy_company, organisation_id, ahead(3))
    planned_visit(engine, busy_company, organisation_id, ago(3))
    today, now = local_today(), utcnow()

    with session_scope(engine) as session:
        company = company_by_cvr(session, CVR)
        expected = prior_contact(
            session, company, service_config, viewer, days, with_contacts, today, now
        )
        by_id = read_snapshot(session, viewer, days, today, company_id=company.id)
        snapshot = read_snapshot(session, viewer, days, today, cvr=CVR)
        answer = snapshot.answer(company, service_config, viewer, with_contacts, now)

    assert answer == expected
    assert by_id == snapshot
    assert expected["approaches"] and expected["open_flags"] or days < 30


def _answer_with_extra_keys(engine, service_config) -> dict:
    """The busy company's full answer, with its check, and a key the schema does not declare."""
    with session_scope(engine) as session:
        company = company_by_cvr(session, CVR)
        answer = prior_contact(
            session, company, service_config, VAEKSTHUS, 3650, True, local_today(), utcnow()
        )
    answer["check"] = {"id": 7, "organisation": VEU, "checked_at": utcnow()}
    answer["company"]["not_in_the_schema"] = "left out"
    return answer


def test_the_fast_dump_of_the_answer_is_marshmallows(engine, service_config, busy_company):
    from coordination.api.common import fast_dumper
    from coordination.api.companies import PriorContactSchema

    answer = _answer_with_extra_keys(engine, service_config)

    assert fast_dumper(PriorContactSchema())(answer) == PriorContactSchema().dump(answer)
    assert answer["company"]["contact_persons"] and answer["approaches"][0]["needs"]


def test_the_checks_json_answer_is_the_document_of_marshmallows_dump(
    app, engine, service_config, busy_company
):
    from coordination.api.common import json_answer
    from coordination.api.companies import PriorContactSchema

    answer = _answer_with_extra_keys(engine, service_config)
    answer["approaches"][0]["not_in_the_schema"] = "left out"
    with app.app_context():
        response = json_answer(PriorContactSchema())(answer)

    expected = json.loads(app.json.dumps(PriorContactSchema().dump(answer)))
    assert response.mimetype == "application/json"
    assert json.loads(response.get_data()) == expected
    assert "Bøgh" in response.get_data(as_text=True)  # UTF-8, not escaped
    assert expected["check"]["checked_at"] and expected["company"]["contact_persons"]


def test_the_snapshot_names_the_callers_stored_organisation(engine, busy_company):
    with session_scope(engine) as session:
        known = read_snapshot(
            session, "jobcenter  AARHUS", 30, local_today(), company_id=busy_company
        )
        unknown = read_snapshot(session, OTHER, 30, local_today(), company_id=busy_company)
        missing = read_snapshot(session, OTHER, 30, local_today(), cvr="10000033")

    assert known.organisation[1] == JOBCENTER
    assert unknown.organisation is None
    assert missing is None


def test_on_an_autocommit_connection_the_snapshot_read_by_the_driver_is_the_sessions(
    engine, busy_company
):
    """PostgreSQL runs the fast path's statements on psycopg's connection (DriverStatement):
    the same snapshot as through SQLAlchemy, by CVR number and by id, announced to the
    engine's statement events; SQLite has no driver path and reads through SQLAlchemy."""
    from coordination.db import DriverStatement

    sent = statements_of(engine)
    autocommit = engine.execution_options(isolation_level="AUTOCOMMIT")
    with session_scope(engine) as session:
        expected = [
            read_snapshot(session, viewer, days, local_today(), cvr=CVR)
            for viewer in (JOBCENTER, OTHER)
            for days in (1, 3650)
        ]
        by_id = read_snapshot(session, JOBCENTER, 1, local_today(), company_id=busy_company)
    sent.clear()
    with autocommit.connect() as connection:
        on_driver = DriverStatement.runs_on(connection)
        read = [
            read_snapshot(connection, viewer, days, local_today(), cvr=CVR)
            for viewer in (JOBCENTER, OTHER)
            for days in (1, 3650)
        ]
        read_by_id = read_snapshot(connection, JOBCENTER, 1, local_today(), company_id=busy_company)
        missing = read_snapshot(connection, JOBCENTER, 1, local_today(), cvr="10000033")

    assert on_driver is (engine.dialect.name == "postgresql")
    assert read == expected
    assert read_by_id == by_id == expected[0]
    assert missing is None
    assert len(sent) == 6


def test_the_checks_connection_goes_back_to_the_pool_transactional(app, client, auth, busy_company):
    """The fast path runs without a transaction on PostgreSQL; the next user of its
    connection has one: what it writes and rolls back is gone."""
    from sqlalchemy import text

    app_engine = app.extensions["coordination"]["engine"]
    assert client.get(CHECK, headers=auth("visitor", VEU)).status_code == 200

    insert = "INSERT INTO organisation (name, name_key, type) VALUES ('Rolled back', 'rb', 'other')"
    count = "SELECT count(*) FROM organisation WHERE name_key = 'rb'"
    with app_engine.connect() as connection:  # the pool's one connection, the check's
        connection.execute(text(insert))
        connection.rollback()
        assert connection.execute(text(count)).scalar() == 0
    assert app_engine.pool.checkedin() == 1


def test_a_check_on_connections_the_database_closed_fails_once_then_reconnects(
    app, client, auth, engine, busy_company
):
    """As with SQLAlchemy's own statements: a disconnect drops the pool's other connections
    too (they died with it), so the next check connects afresh."""
    app_engine = app.extensions["coordination"]["engine"]
    headers = auth("visitor", VEU)
    app.config["TOKEN_CACHE_SECONDS"] = 3600  # the token lookup must not meet a dead connection
    assert client.get(CHECK, headers=headers).status_code == 200
    with app_engine.connect() as first, app_engine.connect() as second:  # two in the pool
        lose = _losing(engine, [first, second])
    lose()  # while they wait in the pool

    assert client.get(CHECK, headers=headers).status_code == 500
    assert client.get(CHECK, headers=headers).status_code == 200


def _losing(engine, connections):
    """A function that makes ``connections`` lost: PostgreSQL ends their server processes (as
    a restart does); SQLite, which has no server, closes their driver connections."""
    from sqlalchemy import text

    if engine.dialect.name != "postgresql":
        drivers = [c.connection.driver_connection for c in connections]
        return lambda: [driver.close() for driver in drivers]
    backends = [c.execute(text("SELECT pg_backend_pid()")).scalar() for c in connections]

    def terminate() -> None:
        with engine.connect() as connection:
            for backend in backends:
                connection.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": backend})

    return terminate


def statements_of(engine):
    """A list that collects the SQL statements sent through the app's engine."""
    sent: list[str] = []
    event.listen(engine, "before_cursor_execute", lambda *a: sent.append(a[2]))
    return sent


def test_a_check_that_changes_no_coordination_costs_one_statement_on_postgresql(
    app, client, auth, engine, busy_company
):
    headers = auth("visitor", VEU)
    client.get(CHECK, headers=headers)  # stores nothing new after this one
    sent = statements_of(app.extensions["coordination"]["engine"])

    answer = client.get(CHECK, headers=headers)

    assert answer.status_code == 200
    # The read (the company by its CVR number with everything else) with the check and its
    # audit entry: one statement on PostgreSQL; on SQLite the read and two inserts.
    assert len(sent) == (1 if engine.dialect.name == "postgresql" else 3)
    with session_scope(engine) as session:
        checks = session.execute(
            select(PriorContactCheck).order_by(PriorContactCheck.id.desc())
        ).scalars()
        latest = next(iter(checks))
        entries = session.execute(
            select(AuditEntry).where(AuditEntry.action == "companies.prior_contact")
        ).scalars()
        audited = [e.details for e in entries]
    assert latest.id == answer.json["check"]["id"]
    assert answer.json["check"]["organisation"] == VEU
    assert audited[-1] == {"found": True, "company_id": busy_company, "days": 180}
    assert len(audited) == 2


def test_a_check_by_a_new_organisation_stores_it_and_is_recorded(client, auth, engine, company):
    answer = client.get(CHECK, headers=auth("visitor", OTHER))

    assert answer.json["check"]["organisation"] == OTHER
    with session_scope(engine) as session:
        count = session.execute(select(func.count()).select_from(PriorContactCheck)).scalar()
    assert count == 1


def test_a_check_that_coordinates_todays_approach_is_evaluated_at_once(
    client, auth, engine, timeline, company
):
    timeline.approach(company, VEU, ago(10))
    today_record = timeline.approach(company, JOBCENTER, local_today())
    timeline.evaluate(company, today=local_today())
    assert timeline.approach_of(today_record).coordinated is False

    answer = client.get(CHECK, headers=auth("visitor", JOBCENTER))

    assert timeline.approach_of(today_record).coordinated is True
    shown = {a["date"]: a["coordinated"] for a in answer.json["approaches"]}
    assert shown[local_today().isoformat()] is True
    with session_scope(engine) as session:
        checks = session.execute(select(PriorContactCheck)).scalars().all()
        entries = session.execute(
            select(AuditEntry).where(AuditEntry.action == "companies.prior_contact")
        ).scalars()
        audited = [e.details for e in entries]
    assert [c.id for c in checks] == [answer.json["check"]["id"]]  # recorded once
    assert audited == [{"found": True, "company_id": company, "days": 180}]


def test_a_check_that_changes_coordination_answers_as_the_full_check(
    app, client, auth, engine, service_config, timeline, company
):
    from coordination.api.companies import PriorContactSchema

    timeline.approach(company, VEU, ago(10))
    timeline.approach(company, JOBCENTER, local_today())
    timeline.approach(company, JOBCENTER, ago(3), notes="Ring igen")
    timeline.evaluate(company, today=local_today())

    answer = client.get(f"{CHECK}?days=30", headers=auth("visitor", JOBCENTER))

    with session_scope(engine) as session:
        stored = company_by_cvr(session, CVR)
        expected = prior_contact(
            session, stored, service_config, JOBCENTER, 30, True, local_today(), utcnow()
        )
        check = session.execute(select(PriorContactCheck)).scalar_one()
    expected["check"] = {"id": check.id, "organisation": JOBCENTER, "checked_at": check.checked_at}
    dumped = json.loads(app.json.dumps(PriorContactSchema().dump(expected)))
    assert answer.json == dumped
    assert dumped["approaches"][0]["date"] == local_today().isoformat()
    assert dumped["approaches"][0]["coordinated"] is True  # by this check


@pytest.fixture
def company(timeline) -> int:
    return timeline.company("Madsen & Bøgh ApS", cvr=CVR)


# --- the token cache --------------------------------------------------------------------------


def token_id_of(engine, plain: str) -> int:
    from coordination.models import ApiToken
    from coordination.tokens import hash_token

    with session_scope(engine) as session:
        return session.execute(
            select(ApiToken.id).where(ApiToken.token_hash == hash_token(plain))
        ).scalar_one()


def test_a_revoked_token_is_refused_once_its_cache_entry_is_older_than_allowed(
    client, make_token, engine, company, monkeypatch
):
    import coordination.api.auth as auth_module

    plain = make_token("visitor")
    headers = {"Authorization": f"Bearer {plain}"}
    assert client.get(CHECK, headers=headers).status_code == 200
    with session_scope(engine) as session:
        revoke(session, token_id_of(engine, plain))
    clock = auth_module.time.monotonic() + auth_module.TOKEN_CACHE_SECONDS + 0.1
    monkeypatch.setattr(auth_module.time, "monotonic", lambda: clock)

    assert client.get(CHECK, headers=headers).status_code == 401


def test_without_the_token_cache_revocation_takes_effect_at_once(
    service_config, make_token, engine, company
):
    from coordination import create_app

    app = create_app({"COORDINATION": service_config, "TOKEN_CACHE_SECONDS": 0})
    client = app.test_client()
    plain = make_token("visitor")
    headers = {"Authorization": f"Bearer {plain}"}
    assert client.get(CHECK, headers=headers).status_code == 200
    with session_scope(engine) as session:
        revoke(session, token_id_of(engine, plain))

    assert client.get(CHECK, headers=headers).status_code == 401
    app.extensions["coordination"]["engine"].dispose()


def test_an_expired_token_is_refused_even_while_cached(client, make_token, company, monkeypatch):
    import coordination.api.auth as auth_module

    plain = make_token("visitor", expires_at=utcnow() + dt.timedelta(minutes=1))
    headers = {"Authorization": f"Bearer {plain}"}
    assert client.get(CHECK, headers=headers).status_code == 200
    later = utcnow() + dt.timedelta(minutes=2)
    monkeypatch.setattr(auth_module, "utcnow", lambda: later)

    assert client.get(CHECK, headers=headers).status_code == 401


def test_a_check_of_a_merged_company_checks_the_company_it_was_merged_into(
    client, auth, engine, timeline, company
):
    from coordination.models import Company

    duplicate = timeline.company("Madsen og Bøgh", cvr=None)
    with session_scope(engine) as session:
        session.get(Company, duplicate).merged_into_id = company

    answer = client.get(
        f"/api/v1/companies/id/{duplicate}/prior-contact", headers=auth("visitor", VEU)
    )

    assert answer.json["company"]["id"] == company
    with session_scope(engine) as session:
        checked = session.execute(select(PriorContactCheck.company_id)).scalars().all()
    assert checked == [company]


# --- durable_checks (opt-in: the check's commit without waiting for the WAL flush) ------------


def test_durable_checks_defaults_to_true_and_is_read_from_the_database_table():
    from connectors.base import load_registry
    from coordination.config import ConfigError, parse_config

    registry = load_registry()
    assert parse_config({}, {}, registry).durable_checks is True
    off = parse_config({"database": {"durable_checks": False}}, {}, registry)
    assert off.durable_checks is False
    with pytest.raises(ConfigError) as error:
        parse_config({"database": {"durable_checks": "off"}}, {}, registry)
    assert error.value.key == "database.durable_checks"


def test_a_durable_check_never_touches_synchronous_commit(app, client, auth, busy_company):
    headers = auth("visitor", VEU)
    client.get(CHECK, headers=headers)
    sent = statements_of(app.extensions["coordination"]["engine"])

    assert client.get(CHECK, headers=headers).status_code == 200

    assert sent and not any("synchronous_commit" in statement for statement in sent)


def test_a_check_without_waiting_for_the_flush_is_stored_audited_and_answered_the_same(
    service_config, client, auth, engine, busy_company
):
    import dataclasses

    from sqlalchemy import text

    from coordination import create_app

    headers = auth("visitor", VEU)
    durable = client.get(CHECK, headers=headers)
    config = dataclasses.replace(service_config, durable_checks=False)
    app = create_app({"COORDINATION": config})
    app_engine = app.extensions["coordination"]["engine"]
    sent = statements_of(app_engine)

    quick = app.test_client().get(CHECK, headers=headers)

    assert quick.status_code == 200
    assert {k: v for k, v in quick.json.items() if k != "check"} == {
        k: v for k, v in durable.json.items() if k != "check"
    }
    with session_scope(engine) as session:
        latest = session.execute(select(func.max(PriorContactCheck.id))).scalar_one()
        audited = session.execute(
            select(AuditEntry.details).where(AuditEntry.action == "companies.prior_contact")
        ).scalars()
        assert len(list(audited)) == 2
    assert quick.json["check"]["id"] == latest
    if app_engine.dialect.name == "postgresql":
        # Asynchronous for the check's own statement only: the connection is unchanged after it.
        assert sum("set_config('synchronous_commit', 'off'" in s for s in sent) == 1
        with app_engine.connect() as connection:
            assert connection.execute(text("SHOW synchronous_commit")).scalar() == "on"
    app_engine.dispose()
