"""Working days of the Chinese calendar and the deadlines built on them.

2025: the National Day and Mid-Autumn holiday runs Wed 10-01 to Wed 10-08; Sunday 09-28 and
Saturday 10-11 are adjusted working days (State Council notice of 2024-11-12). The
``chinesecalendar`` library knows the years up to 2026, so 2027 is counted by weekends only
(provisional) until an admin enters it.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select

from civicloop.catalog.models import DeadlineTier
from civicloop.core.calendar import DayStatus, WorkCalendar, end_of_working_day_deadline, library_years
from civicloop.core.calendar_service import DayEntry, enter_year, load_calendar
from civicloop.core.db import session_factory
from civicloop.core.errors import FieldError
from civicloop.core.models import CalendarDay, CalendarYear
from civicloop.requests import handling
from civicloop.requests.deadlines import extend_by_working_days, resolution_due
from civicloop.requests.jobs import mark_overdue
from civicloop.requests.models import WorkOrder
from tests.helpers import HANDLER, dispatched

SH = ZoneInfo("Asia/Shanghai")
UTC = ZoneInfo("UTC")
LIB = WorkCalendar()
ADMIN = {"X-Civicloop-Role": "admin", "X-Civicloop-Actor": "admin-1"}


def local(y: int, m: int, d: int, hh: int = 23, mm: int = 59, ss: int = 59) -> datetime:
    return datetime(y, m, d, hh, mm, ss, tzinfo=SH)


# -- the pure calendar ------------------------------------------------------------------------


def test_library_covers_2004_to_2026():
    assert library_years() == (2004, 2026)
    assert LIB.is_known_year(2026) and not LIB.is_known_year(2027)


@pytest.mark.parametrize(("day", "status"), [
    (date(2025, 9, 28), DayStatus(True, True)),  # adjusted working Sunday
    (date(2025, 10, 1), DayStatus(False, True)),
    (date(2025, 10, 8), DayStatus(False, True)),
    (date(2025, 10, 9), DayStatus(True, True)),
    (date(2025, 10, 11), DayStatus(True, True)),  # adjusted working Saturday
    (date(2025, 10, 12), DayStatus(False, True)),
    (date(2027, 1, 1), DayStatus(True, False)),  # a Friday in an unknown year: weekend rule, not known
    (date(2027, 1, 2), DayStatus(False, False)),
])
def test_day_status(day, status):
    assert LIB.day(day) == status


def test_seven_working_days_over_national_day():
    # 10-09 Thu 1, 10-10 Fri 2, 10-11 Sat (adjusted) 3, 10-13..10-16 4..7
    assert LIB.add_working_days(date(2025, 9, 30), 7) == (date(2025, 10, 16), False)


def test_fifteen_working_days_over_national_day():
    # ... 10-16 is 7, 10-17 8, 10-20..10-24 9..13, 10-27 14, 10-28 15
    assert LIB.add_working_days(date(2025, 9, 30), 15) == (date(2025, 10, 28), False)
    assert LIB.working_days_between(date(2025, 9, 30), date(2025, 10, 28)) == 15
    assert LIB.working_days_between(date(2025, 10, 28), date(2025, 9, 30)) == 0


def test_counting_starts_the_day_after():
    assert LIB.add_working_days(date(2025, 10, 9), 1) == (date(2025, 10, 10), False)
    assert LIB.add_working_days(date(2025, 10, 10), 1) == (date(2025, 10, 11), False)  # the working Saturday
    with pytest.raises(ValueError):
        LIB.add_working_days(date(2025, 10, 10), 0)


def test_overrides_take_precedence_over_the_library():
    """A correction of a library year: 10-08 made a working day again."""
    corrected = WorkCalendar(overrides={date(2025, 10, 8): True})
    assert corrected.day(date(2025, 10, 8)) == DayStatus(True, True)
    # 10-08 1, 10-09 2, 10-10 3, 10-11 4, 10-13 5, 10-14 6, 10-15 7
    assert corrected.add_working_days(date(2025, 9, 30), 7) == (date(2025, 10, 15), False)
    holiday = WorkCalendar(overrides={date(2025, 10, 16): False})
    assert holiday.add_working_days(date(2025, 9, 30), 7) == (date(2025, 10, 17), False)


def test_an_entered_library_year_only_corrects_the_library():
    entered = WorkCalendar(entered_years=frozenset({2025}), overrides={date(2025, 10, 8): True})
    assert entered.day(date(2025, 10, 8)) == DayStatus(True, True)  # listed: the correction wins
    assert entered.day(date(2025, 10, 2)) == DayStatus(False, True)  # not listed: still the library's holiday
    assert entered.day(date(2025, 10, 11)) == DayStatus(True, True)  # the library's adjusted Saturday


def test_deadline_ends_at_local_midnight_minus_one_second():
    due, provisional = end_of_working_day_deadline(LIB, local(2025, 9, 30, 10, 0, 0), 7)
    assert (due, provisional) == (local(2025, 10, 16), False)
    assert due.tzinfo is SH
    with pytest.raises(ValueError):
        end_of_working_day_deadline(LIB, datetime(2025, 9, 30, 10, 0), 7)


# -- deadlines by tier ------------------------------------------------------------------------


@pytest.mark.parametrize(("tier", "due"), [
    (DeadlineTier.DAYS_7, local(2025, 10, 16)),
    (DeadlineTier.DAYS_15, local(2025, 10, 28)),
    (DeadlineTier.URGENT_2H, local(2025, 9, 30, 12, 0, 0)),
    (DeadlineTier.HOURS_24, local(2025, 10, 1, 10, 0, 0)),  # clock time, on a holiday
])
def test_resolution_due_by_tier(tier, due):
    got, provisional = resolution_due(tier, local(2025, 9, 30, 10, 0, 0), LIB, SH)
    assert (got, provisional) == (due, False)
    assert got.utcoffset() == timedelta(0)  # returned in UTC


def test_hour_tiers_are_clock_time_over_a_holiday():
    start = local(2025, 9, 30, 23, 30, 0)
    assert resolution_due(DeadlineTier.URGENT_2H, start, LIB, SH) == (local(2025, 10, 1, 1, 30, 0), False)
    assert resolution_due(DeadlineTier.HOURS_24, start, LIB, SH) == (local(2025, 10, 1, 23, 30, 0), False)
    with pytest.raises(ValueError):
        resolution_due("3d", start, LIB, SH)


def test_a_start_given_in_utc_counts_the_local_day():
    # 2025-09-30 17:00 UTC is 10-01 01:00 in Beijing: the count starts after 10-01, not 09-30
    start = datetime(2025, 9, 30, 17, 0, tzinfo=UTC)
    # 10-09 1, 10-10 2, 10-11 3, 10-13 4, 10-14 5, 10-15 6, 10-16 7: same day, since 10-01 is a holiday
    assert resolution_due(DeadlineTier.DAYS_7, start, LIB, SH) == (local(2025, 10, 16), False)
    start = datetime(2025, 10, 9, 17, 0, tzinfo=UTC)  # 10-10 01:00 local
    # 10-11 1, 10-13 2, 10-14 3, 10-15 4, 10-16 5, 10-17 6, 10-20 7
    assert resolution_due(DeadlineTier.DAYS_7, start, LIB, SH) == (local(2025, 10, 20), False)


def test_a_deadline_reaching_into_an_unknown_year_is_provisional():
    # 12-25 Fri 1, 12-28..12-31 2..5, 2027-01-01 Fri 6 (weekend rule), 01-04 Mon 7
    due, provisional = resolution_due(DeadlineTier.DAYS_7, local(2026, 12, 24, 10, 0, 0), LIB, SH)
    assert (due, provisional) == (local(2027, 1, 4), True)
    # entirely inside the known year: not provisional
    assert resolution_due(DeadlineTier.DAYS_7, local(2026, 12, 1, 10, 0, 0), LIB, SH)[1] is False


def test_extension_by_working_days():
    assert extend_by_working_days(local(2025, 10, 16), 3, LIB, SH) == (local(2025, 10, 21), False)
    assert extend_by_working_days(local(2026, 12, 30), 2, LIB, SH) == (local(2027, 1, 1), True)


# -- entering a year --------------------------------------------------------------------------


def test_enter_year_refuses_bad_days(session, db):
    with pytest.raises(FieldError) as info:
        enter_year(session, year=2027, days=[DayEntry(date(2027, 1, 1), False), DayEntry(date(2028, 1, 1), False)])
    assert info.value.field == ("days", "1", "date")
    with pytest.raises(FieldError) as info:
        enter_year(session, year=2027, days=[DayEntry(date(2027, 1, 1), False), DayEntry(date(2027, 1, 1), True)])
    assert (info.value.field, info.value.code) == (("days", "1", "date"), "v.duplicate_day")
    with pytest.raises(FieldError) as info:
        enter_year(session, year=1999, days=[])
    assert info.value.field == ("year",)
    assert session.scalar(select(func.count()).select_from(CalendarDay)) == 0


def test_entering_a_year_again_replaces_it(session, db):
    enter_year(session, year=2027, days=[DayEntry(date(2027, 1, 1), False, "元旦")], source="国办发明电〔2026〕1号")
    enter_year(session, year=2027, days=[DayEntry(date(2027, 2, 8), False, "春节")], source="更正")
    calendar = load_calendar(session)
    assert calendar.entered_years == frozenset({2027})
    assert dict(calendar.overrides) == {date(2027, 2, 8): False}
    assert session.get(CalendarYear, 2027).source == "更正"


def _read(db, fn):
    """Run ``fn(session)`` in a short session of its own: on SQLite a session that has read holds
    the write lock until it ends, and the API could not write meanwhile."""
    with session_factory(db)() as s:
        return fn(s)


def _order_deadline(db, order_id: int) -> tuple[datetime | None, bool]:
    return _read(db, lambda s: (s.get(WorkOrder, order_id).due_at, s.get(WorkOrder, order_id).due_provisional))


def _count(db, model) -> int:
    return _read(db, lambda s: s.scalar(select(func.count()).select_from(model)))


def _provisional_order(session, settings, city) -> int:
    """A 7-working-day order acknowledged 2026-12-24 10:00, committed; returns its id."""
    start = local(2026, 12, 24, 10, 0, 0)
    request = dispatched(session, settings, unit_id=city["D01-S01"], now=start)
    order = handling.acknowledge(session, work_order_id=request.work_orders[0].id, actor=HANDLER, settings=settings,
                                 now=start)
    session.commit()
    assert (order.due_at, order.due_provisional) == (local(2027, 1, 4), True)
    return order.id


def test_entering_2027_recomputes_the_provisional_deadline(client, db, session, settings, city):
    order_id = _provisional_order(session, settings, city)
    status = client.get("/api/v1/calendar").json()
    assert status["provisional_open_orders"] == [order_id]
    assert status["library"] == list(range(2004, 2027))
    assert status["entered"] == []
    assert mark_overdue(session, settings=settings, now=local(2026, 12, 25, 9, 0, 0)).provisional_open == 1
    session.rollback()  # end the transaction before the API writes

    body = {"source": "国务院办公厅关于2027年部分节假日安排的通知", "days": [
        {"date": "2027-01-01", "working": False, "name": "元旦"},
        {"date": "2027-02-06", "working": True, "name": "春节调休"},
    ]}
    response = client.put("/api/v1/calendar/years/2027", json=body, headers=ADMIN)
    assert response.status_code == 200, response.text
    assert response.json() == {"year": 2027, "days": 2, "recomputed_orders": [order_id]}

    # 12-25 1, 12-28..12-31 2..5, 2027-01-01 now a holiday, 01-04 6, 01-05 7
    assert _order_deadline(db, order_id) == (local(2027, 1, 5), False)
    status = client.get("/api/v1/calendar").json()
    assert (status["entered"], status["provisional_open_orders"]) == ([2027], [])
    assert _read(db, lambda s: (s.get(CalendarYear, 2027).entered_by, s.get(CalendarYear, 2027).source)) == (
        "admin-1", body["source"])


def test_only_an_admin_enters_a_year(client, db, session, settings, city):
    order_id = _provisional_order(session, settings, city)
    body = {"days": [{"date": "2027-01-01", "working": False}]}
    for role in ("operator", "supervisor", "dispatcher", "handler"):
        response = client.put("/api/v1/calendar/years/2027", json=body, headers={"X-Civicloop-Role": role})
        assert response.status_code == 403, response.text
        assert response.json()["error"]["code"] == "forbidden_role"
    assert _count(db, CalendarYear) == 0
    assert _order_deadline(db, order_id) == (local(2027, 1, 4), True)


@pytest.mark.parametrize(("days", "field", "code"), [
    ([{"date": "2027-01-01", "working": False}, {"date": "2028-01-01", "working": False}], "days.1.date",
     "v.day_outside_year"),
    ([{"date": "2027-01-01", "working": False}, {"date": "2027-01-01", "working": True}], "days.1.date",
     "v.duplicate_day"),
    ([{"date": "2027-02-30", "working": False}], "days.0.date", None),
    ([{"date": "2027-01-01"}], "days.0.working", "missing"),
])
def test_bad_days_are_422_with_the_field(client, db, session, settings, city, days, field, code):
    order_id = _provisional_order(session, settings, city)
    response = client.put("/api/v1/calendar/years/2027", json={"days": days}, headers=ADMIN)
    assert response.status_code == 422, response.text
    [error] = response.json()["error"]["fields"]
    assert error["field"] == field
    if code:
        assert error["type"] == code
    assert error["message"]
    assert _count(db, CalendarDay) == 0
    assert _order_deadline(db, order_id) == (local(2027, 1, 4), True)


def test_year_out_of_range_is_422(client, db):
    response = client.put("/api/v1/calendar/years/1999", json={"days": []}, headers=ADMIN)
    assert response.status_code == 422
    assert response.json()["error"]["fields"][0]["field"] == "year"


def test_entered_overrides_of_a_library_year_take_precedence(client, session, settings, city):
    """An admin corrects 2025 with 10-08 a working day: orders acknowledged afterwards count it;
    the library's other holidays of the week stay."""
    body = {"days": [{"date": "2025-10-08", "working": True, "name": "更正"}]}
    assert client.put("/api/v1/calendar/years/2025", json=body, headers=ADMIN).status_code == 200
    start = local(2025, 9, 30, 10, 0, 0)
    request = dispatched(session, settings, unit_id=city["D01-S01"], now=start)
    order = handling.acknowledge(session, work_order_id=request.work_orders[0].id, actor=HANDLER, settings=settings,
                                 now=start)
    # 10-08 1, 10-09 2, 10-10 3, 10-11 4, 10-13 5, 10-14 6, 10-15 7
    assert (order.due_at, order.due_provisional) == (local(2025, 10, 15), False)
    assert load_calendar(session).day(date(2025, 10, 8)) == DayStatus(True, True)
