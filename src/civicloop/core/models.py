"""Tables owned by ``core``: the official calendar years and days entered by an admin."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import Boolean, Date, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from civicloop.core.db import Base, UTCDateTime


class CalendarYear(Base):
    """A year whose official holiday schedule has been entered (it overrides the library)."""

    __tablename__ = "calendar_years"

    year: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    source: Mapped[str] = mapped_column(String(200), default="")
    entered_by: Mapped[str] = mapped_column(String(100), default="")
    entered_at: Mapped[datetime] = mapped_column(UTCDateTime())


class CalendarDay(Base):
    """One day that differs from the weekend rule: a holiday (working=False) or an adjusted
    working weekend day (working=True)."""

    __tablename__ = "calendar_days"

    day: Mapped[date] = mapped_column(Date, primary_key=True)
    working: Mapped[bool] = mapped_column(Boolean)
    name: Mapped[str] = mapped_column(String(100), default="")
