"""Tables owned by ``core``: the official calendar years and days entered by an admin, and the
tamper-evident audit log (see ``core.audit``)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Boolean, Date, Integer, String
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


class AuditEntry(Base):
    """One entry of the audit log: who (``actor``, ``role``) did what (``action``) to which record
    (``subject``, e.g. ``request:12``), with small structured ``data`` (ids, statuses; never free
    text). ``seq`` numbers the entries 1, 2, 3, … without gaps; ``hash`` is SHA-256 over
    ``prev_hash`` and the canonical encoding of the other fields (``core.audit.entry_hash``).
    Rows are only ever inserted: any edit, deletion, insertion or reordering breaks the chain."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger, unique=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    actor: Mapped[str] = mapped_column(String(100))
    role: Mapped[str] = mapped_column(String(20))
    action: Mapped[str] = mapped_column(String(50))
    subject: Mapped[str] = mapped_column(String(100), index=True)
    data: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64), index=True)
