"""Working days of the Chinese calendar (工作日 / 调休), as a pure rule with no I/O.

Source of the days: the State Council's annual notice on public holidays (国务院办公厅关于…部分节假日
安排的通知), as packaged by the maintained ``chinesecalendar`` library for the years it knows
(2004 up to the last announced year), extended and overridden by the years an admin enters in the
``calendar_days`` table (see ``core.calendar_service``).

A day in a year nobody has announced yet is counted by the weekend rule alone (Monday to Friday
work) and reported as *provisional*, so a hotline can still give a deadline in mid-December for
a request that runs into next year; the deadline is recomputed once the year is entered.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from functools import lru_cache

import chinese_calendar


@lru_cache(maxsize=1)
def library_years() -> tuple[int, int]:
    """Return the first and last year the ``chinesecalendar`` library has official data for."""
    from chinese_calendar import constants

    years = [d.year for d in constants.holidays] + [d.year for d in constants.workdays]
    return min(years), max(years)


@dataclass(frozen=True)
class DayStatus:
    """Whether a day is a working day, and whether that is known (official) or assumed."""

    working: bool
    known: bool


@dataclass
class WorkCalendar:
    """The working-day calendar: the library's years, plus entered years and single-day overrides.

    ``overrides`` maps a date to ``True`` (a working day, e.g. an adjusted Saturday) or ``False``
    (a holiday). ``entered_years`` are years whose official schedule was entered. In a year the
    library knows, entered days only correct it (an empty entry changes nothing); in a later year,
    the days not entered follow the weekend rule and count as known.
    """

    overrides: Mapping[date, bool] = field(default_factory=dict)
    entered_years: frozenset[int] = frozenset()

    def day(self, day: date) -> DayStatus:
        """Return the status of ``day``: overrides first, then the library, then entered years."""
        if day in self.overrides:
            return DayStatus(self.overrides[day], True)
        first, last = library_years()
        if first <= day.year <= last:
            return DayStatus(chinese_calendar.is_workday(day), True)
        return DayStatus(day.weekday() < 5, day.year in self.entered_years)

    def is_known_year(self, year: int) -> bool:
        """True when ``year``'s schedule is official (entered, or in the library)."""
        first, last = library_years()
        return year in self.entered_years or first <= year <= last

    def add_working_days(self, start: date, days: int) -> tuple[date, bool]:
        """Return the ``days``-th working day after ``start`` and whether the count is provisional.

        Counting begins the day after ``start`` (a request taken on a given day has that whole day
        plus ``days`` working days: 自受理之日起 … 个工作日). ``days`` must be ≥ 1 (``ValueError``).
        The result is provisional when any day crossed lies in a year nobody has announced.
        """
        if days < 1:
            raise ValueError("days must be >= 1")
        provisional = False
        current = start
        counted = 0
        while counted < days:
            current += timedelta(days=1)
            status = self.day(current)
            provisional = provisional or not status.known
            if status.working:
                counted += 1
        return current, provisional

    def working_days_between(self, start: date, end: date) -> int:
        """Count working days in the half-open range (``start``, ``end``]; 0 if ``end <= start``."""
        count = 0
        current = start
        while current < end:
            current += timedelta(days=1)
            if self.day(current).working:
                count += 1
        return count


END_OF_DAY = time(23, 59, 59)


def end_of_working_day_deadline(
    calendar: WorkCalendar, start_local: datetime, days: int
) -> tuple[datetime, bool]:
    """Return the deadline ``days`` working days after the aware local time ``start_local``.

    The deadline is 23:59:59 local time on the ``days``-th working day after the start's date
    (see :meth:`WorkCalendar.add_working_days`), in ``start_local``'s zone, and whether it is
    provisional. Raises ``ValueError`` for a naive ``start_local``.
    """
    if start_local.tzinfo is None:
        raise ValueError("start_local must be timezone-aware")
    due_day, provisional = calendar.add_working_days(start_local.date(), days)
    return datetime.combine(due_day, END_OF_DAY, tzinfo=start_local.tzinfo), provisional
