"""Reply timeliness (答复时效) per unit, on both backends, against counts worked out by hand."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from civicloop.analytics.timeliness import reply_timeliness
from civicloop.requests import handling
from tests.helpers import HANDLER, dispatched

SH = ZoneInfo("Asia/Shanghai")
T0 = datetime(2019, 3, 4, 9, 0, tzinfo=SH)  # a Monday


def _replied_after(session, settings, unit_id: int, days: float) -> None:
    request = dispatched(session, settings, unit_id=unit_id, now=T0)
    order = request.work_orders[-1]
    handling.acknowledge(session, work_order_id=order.id, actor=HANDLER, settings=settings, now=T0)
    handling.reply(session, work_order_id=order.id, actor=HANDLER, text="已答复", now=T0 + timedelta(days=days))


def test_on_time_rate_waits_and_ranking(session, settings, city):
    street, community = city["D01-S01"], city["D01-S01-C01"]
    for days in (1, 2, 3, 20, 30):  # 7 working days from Monday 4 March: due Wednesday 13 March
        _replied_after(session, settings, street, days)
    for days in (1, 1, 2, 2, 4, 5):
        _replied_after(session, settings, community, days)
    _replied_after(session, settings, city["D01"], 0.5)  # one reply only: listed, not ranked
    dispatched(session, settings, unit_id=street, now=T0)  # no reply: not counted
    session.flush()
    rows = reply_timeliness(session, start=datetime(2019, 1, 1, tzinfo=SH), end=datetime(2020, 1, 1, tzinfo=SH))
    by_unit = {r.unit_id: r for r in rows}
    s, c, d = by_unit[street], by_unit[community], by_unit[city["D01"]]
    assert (s.replied, s.on_time, s.median_days, s.p90_days) == (5, 3, 3.0, 30.0)
    assert s.on_time_rate == pytest.approx(0.6)
    assert (c.replied, c.on_time, c.on_time_rate, c.median_days, c.p90_days) == (6, 6, 1.0, 2.0, 5.0)
    assert [(r.rank, r.unit_id) for r in rows] == [(1, community), (2, street), (None, city["D01"])]
    assert d.replied == 1
    # the period is by reply time: nothing was replied in 2018
    assert reply_timeliness(session, start=datetime(2018, 1, 1, tzinfo=SH), end=datetime(2019, 1, 1, tzinfo=SH)) == []


def test_bad_periods_are_refused(session):
    with pytest.raises(ValueError):
        reply_timeliness(session, start=datetime(2019, 1, 1), end=datetime(2020, 1, 1, tzinfo=SH))
    with pytest.raises(ValueError):
        reply_timeliness(session, start=datetime(2020, 1, 1, tzinfo=SH), end=datetime(2019, 1, 1, tzinfo=SH))
