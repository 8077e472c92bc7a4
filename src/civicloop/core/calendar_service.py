"""Load the working-day calendar from the database and let an admin enter a year's schedule."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from civicloop.core import audit
from civicloop.core.calendar import WorkCalendar, library_years
from civicloop.core.errors import FieldError
from civicloop.core.models import CalendarDay, CalendarYear
from civicloop.core.timeutil import utcnow

MIN_YEAR, MAX_YEAR = 2000, 2100


@dataclass(frozen=True)
class DayEntry:
    """One official exception to the weekend rule."""

    day: date
    working: bool
    name: str = ""


def load_calendar(session: Session) -> WorkCalendar:
    """Return the calendar: the library's years overridden and extended by the entered ones.

    Reads two small tables (a few dozen rows a year); call once per operation, not per day.
    """
    overrides = {row.day: row.working for row in session.scalars(select(CalendarDay))}
    years = frozenset(session.scalars(select(CalendarYear.year)))
    return WorkCalendar(overrides=overrides, entered_years=years)


def enter_year(
    session: Session,
    *,
    year: int,
    days: Iterable[DayEntry],
    source: str = "",
    actor: str = "",
    now: datetime | None = None,
) -> CalendarYear:
    """Store ``year``'s official schedule, replacing any earlier entry for that year.

    ``days`` lists the exceptions to the weekend rule: holidays on weekdays (working=False) and
    adjusted working weekend days (working=True); listing a holiday that falls on a weekend is
    harmless. Raises ``FieldError`` for a year outside 2000–2100, a day outside ``year`` or a day
    listed twice. The caller then recomputes provisional deadlines (``requests.deadlines``).
    The entry goes to the audit log (``core.audit``) as ``enter_calendar`` by ``actor`` (``system``
    when empty), with every day listed.
    """
    if not MIN_YEAR <= year <= MAX_YEAR:
        raise FieldError("year", "v.year_range", min=MIN_YEAR, max=MAX_YEAR)
    entries = list(days)
    seen: set[date] = set()
    for index, entry in enumerate(entries):
        if entry.day.year != year:
            raise FieldError(("days", str(index), "date"), "v.day_outside_year", date=entry.day, year=year)
        if entry.day in seen:
            raise FieldError(("days", str(index), "date"), "v.duplicate_day", date=entry.day)
        seen.add(entry.day)
    session.execute(
        delete(CalendarDay).where(CalendarDay.day >= date(year, 1, 1), CalendarDay.day <= date(year, 12, 31))
    )
    record = session.get(CalendarYear, year)
    if record is None:
        record = CalendarYear(year=year)
        session.add(record)
    record.source = source[:200]
    record.entered_by = actor[:100]
    record.entered_at = now or utcnow()
    session.add_all(CalendarDay(day=e.day, working=e.working, name=e.name[:100]) for e in entries)
    session.flush()
    who = actor or "system"
    audit.enqueue(session, actor=who, role=audit.admin_role(who), action="enter_calendar", subject=f"calendar:{year}",
                  data={"source": record.source, "days": [[e.day, e.working, e.name[:100]] for e in entries]})
    return record


def known_years(session: Session) -> dict[str, list[int]]:
    """Return ``{"library": [first..last], "entered": [...]}``: the years with an official schedule."""
    first, last = library_years()
    entered = sorted(session.scalars(select(CalendarYear.year)))
    return {"library": list(range(first, last + 1)), "entered": entered}
