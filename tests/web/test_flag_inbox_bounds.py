"""The flag inbox shows a bounded number of approaches per flag."""

from __future__ import annotations

import datetime as dt

from coordination.companies import local_today
from coordination.web.views.flags import APPROACHES_PER_FLAG
from tests.integration.test_coordination_timelines import JOBCENTER, VEU, Timeline
from tests.web.test_pages import login as login  # noqa: F401
from tests.web.test_pages import text


def test_a_flag_over_many_approaches_shows_the_newest_and_counts_the_rest(engine, login):
    timeline = Timeline(engine)
    company = timeline.company("Travle Tømrere ApS", cvr="25313763")
    count = APPROACHES_PER_FLAG + 4
    first = local_today() - dt.timedelta(days=5 * count)
    for n in range(count):
        organisation = JOBCENTER if n % 2 else VEU
        timeline.approach(company, organisation, first + dt.timedelta(days=5 * n), purpose=f"B{n}")
    timeline.evaluate(company, today=local_today())
    (flag,) = timeline.flags(company)
    hidden = len(flag.approach_ids) - APPROACHES_PER_FLAG

    page = text(login("coordinator").get("/flag"))

    shown = page[page.index('data-testid="flag"') :]
    assert shown.count("<time") == APPROACHES_PER_FLAG
    assert f"B{count - 1}<" in shown and f"B{count - APPROACHES_PER_FLAG}<" in shown
    assert f"B{count - APPROACHES_PER_FLAG - 1}<" not in shown
    assert f"og {hidden} ældre henvendelser" in shown
