"""DuckDB over the operational database: analytics read columns in bulk, never ORM rows one by one.

:func:`connect` opens an in-memory DuckDB with the operational database attached read-only as
``ops`` — SQLite through DuckDB's ``sqlite`` extension, PostgreSQL through its ``postgres`` extension —
so a finder writes plain SQL such as ``SELECT … FROM ops.service_requests``. For very large histories
:func:`connect` can instead expose Parquet snapshots (``civicloop generate --parquet DIR``) under the
same names.

The extensions come from PyPI (``duckdb-ext-sqlite``, ``duckdb-ext-postgres``, built for DuckDB 1.4,
the long-term-support line), not downloaded at run time: a city's server may have no internet.
"""

from __future__ import annotations

from pathlib import Path

import duckdb
from sqlalchemy.engine import make_url

from civicloop.core.db import normalise_url

PARQUET_NAMES = {"requests": "service_requests"}
"""Parquet snapshot files named otherwise than their table (``civicloop generate --parquet``)."""


def has_table(conn: duckdb.DuckDBPyConnection, name: str, schema: str = "ops") -> bool:
    """Whether ``schema.name`` can be read on ``conn`` (an attached table or a snapshot view)."""
    try:
        conn.execute(f"SELECT 1 FROM {schema}.{name} LIMIT 0")
    except duckdb.Error:
        return False
    return True


class AnalyticsUnavailable(RuntimeError):
    """The operational database cannot be attached (unknown kind, or the extension is missing)."""


def extension_directory() -> Path | None:
    """Return the folder that holds the DuckDB extensions installed from PyPI, or ``None``."""
    try:
        import duckdb_ext  # type: ignore[import-not-found]  # namespace package of duckdb-ext-*
    except ImportError:
        return None
    for root in getattr(duckdb_ext, "__path__", []):
        folder = Path(root) / "extensions"
        if folder.is_dir():
            return folder
    return None


def _load(conn: duckdb.DuckDBPyConnection, name: str) -> None:
    folder = extension_directory()
    if folder is not None:
        conn.execute(f"SET extension_directory = '{folder.as_posix()}'")
    try:
        conn.execute(f"LOAD {name}")
    except duckdb.Error as exc:
        raise AnalyticsUnavailable(f"DuckDB extension {name!r} is not installed: {exc}") from exc


def attach_clause(database_url: str) -> tuple[str, str]:
    """Return (extension, ATTACH statement) that attaches ``database_url`` read-only as ``ops``.

    SQLite: the file path; PostgreSQL: a libpq connection string from the URL's parts. Raises
    :class:`AnalyticsUnavailable` for another kind of database or an in-memory SQLite."""
    url = make_url(normalise_url(database_url))
    if url.drivername.startswith("sqlite"):
        if not url.database or url.database == ":memory:":
            raise AnalyticsUnavailable("an in-memory SQLite database cannot be attached")
        path = Path(url.database).resolve().as_posix().replace("'", "''")
        return "sqlite", f"ATTACH '{path}' AS ops (TYPE sqlite, READ_ONLY)"
    if url.drivername.startswith("postgresql"):
        parts = {"dbname": url.database, "host": url.host, "port": url.port, "user": url.username,
                 "password": url.password}
        dsn = " ".join(f"{k}={v}" for k, v in parts.items() if v not in (None, ""))
        return "postgres", f"ATTACH '{dsn.replace(chr(39), chr(39) * 2)}' AS ops (TYPE postgres, READ_ONLY)"
    raise AnalyticsUnavailable(f"unsupported database for analytics: {url.drivername}")


def open_database(*, work_dir: Path | None = None, memory_limit: str | None = None) -> duckdb.DuckDBPyConnection:
    """Return a new DuckDB database: in memory, or with ``work_dir`` (an existing folder) a file
    ``analytics.duckdb`` there with its spill files beside it; ``memory_limit`` (a DuckDB size, ``"2GB"``)
    caps what DuckDB holds in memory (default: DuckDB's own, 80 % of the machine's memory)."""
    if work_dir is not None:
        conn = duckdb.connect(str(Path(work_dir) / "analytics.duckdb"))
        conn.execute(f"SET temp_directory = '{(Path(work_dir) / 'spill').as_posix().replace(chr(39), chr(39) * 2)}'")
    else:
        conn = duckdb.connect()
    if memory_limit is not None:
        conn.execute(f"SET memory_limit = '{memory_limit.replace(chr(39), '')}'")
    return conn


def connect(database_url: str | None = None, *, parquet_dir: Path | None = None,
            work_dir: Path | None = None, memory_limit: str | None = None) -> duckdb.DuckDBPyConnection:
    """Return a DuckDB connection whose schema ``ops`` is the operational database.

    Takes the SQLAlchemy URL of the operational database (SQLite file or PostgreSQL), or a folder of
    Parquet snapshots (``<table>.parquet`` files, exposed as views ``ops.<table>``). DuckDB's own
    tables live in memory, or with ``work_dir`` (an existing folder) in a database file there, so that
    with ``memory_limit`` (a DuckDB size such as ``"2GB"``; default: DuckDB's, 80 % of the machine's
    memory) tables and intermediate results beyond it go to disk (``work_dir`` also holds the spill
    files) instead of growing the process: ``civicloop analyze`` on 10⁷ requests (docs/benchmarks.md).
    Raises :class:`AnalyticsUnavailable` when neither source can be attached."""
    conn = open_database(work_dir=work_dir, memory_limit=memory_limit)
    if parquet_dir is not None:
        conn.execute("CREATE SCHEMA ops")
        for file in sorted(Path(parquet_dir).glob("*.parquet")):
            path = file.resolve().as_posix().replace("'", "''")
            name = PARQUET_NAMES.get(file.stem, file.stem)
            conn.execute(f"CREATE VIEW ops.\"{name}\" AS SELECT * FROM read_parquet('{path}')")
        return conn
    if database_url is None:
        raise AnalyticsUnavailable("no database URL and no Parquet folder given")
    extension, attach = attach_clause(database_url)
    _load(conn, extension)
    conn.execute(attach)
    return conn
