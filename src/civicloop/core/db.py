"""Database engine, sessions and the declarative base shared by every domain's models.

SQLite is the embedded default. Each SQLite connection runs in WAL mode with a busy timeout, and
every transaction starts with ``BEGIN IMMEDIATE``: a write transaction then holds the write lock
from its first statement, so two clerks racing on one work order are serialised and the loser's
conditional UPDATE finds the row already moved (a clean 409) instead of a 'database is locked'
error half-way. PostgreSQL (psycopg 3) is the production database.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from sqlalchemy import DateTime, Engine, MetaData, create_engine, event
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker
from sqlalchemy.types import TypeDecorator

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    """Declarative base of every civicloop table (one metadata, stable constraint names)."""

    metadata = MetaData(naming_convention=NAMING)


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp stored in UTC and always returned timezone-aware.

    Raises ``ValueError`` when given a naive datetime: the code base never guesses a zone.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def normalise_url(url: str) -> str:
    """Return ``url`` with PostgreSQL URLs pointed at the psycopg 3 driver."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    return url


def make_engine(url: str, **kwargs: Any) -> Engine:
    """Create an engine for ``url`` with civicloop's per-dialect connection set-up.

    SQLite: WAL journal, ``synchronous=NORMAL``, foreign keys on, 30 s busy timeout, and
    ``BEGIN IMMEDIATE`` transactions (see the module docstring). PostgreSQL: pool pre-ping.
    """
    url = normalise_url(url)
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30}, **kwargs)

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_conn: Any, _record: Any) -> None:
            dbapi_conn.isolation_level = None  # we issue BEGIN ourselves
            cur = dbapi_conn.cursor()
            if ":memory:" not in url:
                cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

        @event.listens_for(engine, "begin")
        def _on_begin(conn: Any) -> None:
            conn.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    return create_engine(url, pool_pre_ping=True, **kwargs)


@lru_cache
def get_engine(url: str | None = None) -> Engine:
    """Return the process-wide engine for ``url`` (default: the configured database); on PostgreSQL
    with the pool of ``settings.db_pool_size`` and ``db_max_overflow`` connections."""
    from civicloop.core.settings import get_settings

    settings = get_settings()
    url = normalise_url(url or settings.database_url)
    if url.startswith("postgresql"):
        return make_engine(url, pool_size=settings.db_pool_size, max_overflow=settings.db_max_overflow)
    return make_engine(url)


def session_factory(engine: Engine) -> sessionmaker[Session]:
    """Return a session factory bound to ``engine`` (objects stay readable after commit)."""
    return sessionmaker(bind=engine, expire_on_commit=False)


@contextmanager
def session_scope(engine: Engine | None = None) -> Iterator[Session]:
    """Yield a session whose transaction commits when the block ends and rolls back on error.

    The caller (an HTTP request, a job, a CLI command) owns the transaction; services never commit.
    """
    factory = session_factory(engine or get_engine())
    session = factory()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


MEMO = "civicloop.transaction_memo"
"""Key in ``Session.info`` of :func:`transaction_memo`'s dicts."""


def transaction_memo(session: Session, name: str, *, create: bool = True) -> dict[Any, Any] | None:
    """Return the dict ``name`` that lives as long as ``session``'s current transaction (a fresh one
    after a commit or rollback; ``None`` when ``create`` is false and there is none yet). Begins the
    session's transaction when it has not begun, as the caller's next query would.

    For what one transaction reads again and again and nobody changes under it: the routes of a batch
    of requests, or strong references that keep rows in the session's identity map (which holds its
    objects weakly, so ``session.get`` of a category or a unit read a moment ago queried again: issue
    9, docs/benchmarks.md)."""
    transaction = session.get_transaction()
    if transaction is None:
        if not create:
            return None
        session.connection()  # begins the transaction (as the caller's next query would)
        transaction = session.get_transaction()
    memos = session.info.get(MEMO)
    if memos is None or memos[0] is not transaction:
        if not create:
            return None
        memos = (transaction, {})
        session.info[MEMO] = memos
    found: dict[Any, Any] | None = memos[1].get(name)
    if found is None and create:
        found = memos[1][name] = {}
    return found


def keep(session: Session, obj: Any) -> Any:
    """Hold ``obj`` (a loaded row, or ``None``) for the rest of the transaction, so the next
    ``session.get`` of it is answered from the identity map without a query; returns ``obj``."""
    if obj is not None:
        memo = transaction_memo(session, "kept")
        assert memo is not None
        memo[id(obj)] = obj
    return obj
