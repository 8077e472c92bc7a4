"""Tables owned by ``core``: the official calendar years and days entered by an admin, the
tamper-evident audit log (see ``core.audit``), and the users with their grids and their login
sessions and API tokens (see ``core.auth``)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Boolean, Date, ForeignKey, Integer, String
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


class User(Base):
    """A person who logs in: ``role`` (a ``core.roles.Role`` value) says what they may do, ``unit_id``
    which handling unit they work for (a handler's unit, a supervisor's district or street, none for
    city-wide staff and residents), and their grids (``UserGrid``) say what a grid worker covers.
    ``password_hash`` is an Argon2id PHC string (``core.auth.hash_password``), never the password."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    display_name: Mapped[str] = mapped_column(String(100), default="")
    password_hash: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(20), index=True)
    unit_id: Mapped[int | None] = mapped_column(ForeignKey("org_units.id"), index=True)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    last_login_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class UserGrid(Base):
    """A grid a grid worker (网格员) covers: they see the requests located in it."""

    __tablename__ = "user_grids"

    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    grid_id: Mapped[int] = mapped_column(ForeignKey("grids.id", ondelete="CASCADE"), primary_key=True, index=True)


class AuthToken(Base):
    """A login session of the web app (``kind`` ``session``, with its CSRF token) or an API token
    (``kind`` ``api``, sent as ``Authorization: Bearer``). Only the SHA-256 of the secret is stored,
    so a copy of the database lets nobody log in; ``revoked_at`` ends it before ``expires_at``."""

    __tablename__ = "auth_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(10))
    name: Mapped[str] = mapped_column(String(100), default="")
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    csrf_token: Mapped[str] = mapped_column(String(64), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
