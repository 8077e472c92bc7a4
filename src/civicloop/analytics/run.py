"""One run of every finder of 未诉先办 over one source of requests (``civicloop analyze``, the API).

:func:`open_source` builds the view ``reqs`` (the loop's database, Parquet snapshots or a Teddy Cup
file) restricted to [since, until); :func:`analyze` runs the finders in order, times each, and picks
the month's topic from what they found.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb

from civicloop.analytics import assets, cooccurrence, hotspots, replies, surges, topics
from civicloop.analytics.duck import connect, open_database
from civicloop.analytics.findings import Finding
from civicloop.analytics.report import AnalysisResults
from civicloop.analytics.sources import from_operational, from_teddy_csv

Progress = Callable[[str, int, int], None]
"""Called as ``progress(step name, steps done, steps in all)``."""


def open_source(*, database_url: str | None = None, teddy_file: Path | None = None, parquet_dir: Path | None = None,
                since: date | None = None, until: date | None = None, timezone: str = "Asia/Shanghai",
                work_dir: Path | None = None, memory_limit: str | None = None
                ) -> tuple[duckdb.DuckDBPyConnection, str]:
    """Return a DuckDB connection whose table ``reqs`` holds the requests filed before ``until`` (a
    local date, ``None``: all), read once from the source, and a description of the source. ``since``
    is not applied here: the finders need the history before it as their baseline (:func:`analyze`
    keeps only the findings that reach into [since, until)). Exactly one of
    ``database_url``, ``teddy_file``, ``parquet_dir`` is used (in that order of preference: a file or a
    folder given wins over the database). ``work_dir`` and ``memory_limit``: where DuckDB keeps ``reqs``
    and what it may hold in memory (``analytics.duck.connect``; the default is all in memory). Raises
    ``AnalyticsUnavailable``, ``FileNotFoundError``, ``duckdb.Error`` (tables missing: run ``civicloop init``)."""
    if teddy_file is not None:
        conn = open_database(work_dir=work_dir, memory_limit=memory_limit)
        from_teddy_csv(conn, teddy_file, timezone=timezone)
        source = str(teddy_file)
    else:
        conn = connect(database_url, parquet_dir=parquet_dir, work_dir=work_dir, memory_limit=memory_limit)
        from_operational(conn, timezone=timezone)
        source = str(parquet_dir or database_url)
    # every finder reads reqs: build it once as a table (one scan of the source) for the period asked
    conn.execute("ALTER " + ("TABLE" if teddy_file is not None else "VIEW") + " reqs RENAME TO reqs_source")
    # the history before ``since`` stays: surges and seasons need their baseline (analyze filters findings)
    where = f" WHERE created_at < TIMESTAMP '{until.isoformat()}'" if until is not None else ""
    conn.execute(f"CREATE TABLE reqs AS SELECT * FROM reqs_source{where}")
    return conn, source


REPLY_DAYS = 31
REPLY_ALL_UP_TO = 200_000
"""Without ``since``, reply quality scores every replied request when there are at most this many, else
those filed in the last :data:`REPLY_DAYS` days of the data (a month's review, like the monthly three
rates): scoring costs about 0.6 ms per reply, so the 956,079 replies of a million generated requests would
take ten minutes. ``--since`` chooses the period."""


def _reply_window(conn: duckdb.DuckDBPyConnection) -> datetime | None:
    replied = conn.execute("SELECT count(*) FROM reqs WHERE replied_at IS NOT NULL").fetchone()[0]  # type: ignore[index]
    return None if replied <= REPLY_ALL_UP_TO else _last_days(conn, REPLY_DAYS)


def _last_days(conn: duckdb.DuckDBPyConnection, days: int) -> datetime | None:
    latest = conn.execute("SELECT max(created_at) FROM reqs").fetchone()[0]  # type: ignore[index]
    return latest - timedelta(days=days) if latest is not None else None


def _at(day: date | None) -> datetime | None:
    return datetime(day.year, day.month, day.day) if day is not None else None


def _month_of(findings: list[Finding]) -> str | None:
    """The month (YYYY-MM) of the latest evidence among ``findings``."""
    ends = [f.end for f in findings]
    return max(ends).strftime("%Y-%m") if ends else None


def analyze(conn: duckdb.DuckDBPyConnection, *, source: str = "", since: date | None = None,
            until: date | None = None, now: datetime | None = None,
            progress: Progress | None = None) -> AnalysisResults:
    """Run every finder on ``reqs`` and return the results with timings (``meta["seconds"]``).

    Order: hotspots, surges, co-occurrence, asset alerts, reply quality (requests filed since ``since``;
    without it all, or the last :data:`REPLY_DAYS` days beyond :data:`REPLY_ALL_UP_TO` replies), then the
    monthly topic chosen from the findings of the month of the latest evidence."""
    results = AnalysisResults()
    rows = int(conn.execute("SELECT count(*) FROM reqs").fetchone()[0])  # type: ignore[index]
    if since is not None:
        rows = int(conn.execute("SELECT count(*) FROM reqs WHERE created_at >= ?", [_at(since)]).fetchone()[0])  # type: ignore[index]
    seconds: dict[str, float] = {}
    reply_since = _at(since) or _reply_window(conn)
    steps: list[tuple[str, Callable[[], Any]]] = [
        ("hotspot", lambda: hotspots.find_hotspots(conn, since=since, now=now)),
        ("surge", lambda: surges.find_surges(conn)),
        ("cooccurrence", lambda: cooccurrence.find_cooccurrences(conn)),
        ("asset", lambda: assets.find_asset_failures(conn)),
        ("replies", lambda: replies.score_replies(conn, since=reply_since)),
    ]
    for done, (name, step) in enumerate(steps):
        if progress:
            progress(name, done, len(steps) + 1)
        started = time.perf_counter()
        value = step() if rows else ([] if name != "replies" else None)
        seconds[name] = round(time.perf_counter() - started, 3)
        if name == "replies":
            if value is not None and value.num_rows:
                results.reply_scores = value
                results.reply_units = replies.unit_table(value).to_pylist()
        else:
            results.findings[name] = [f for f in value if since is None or f.end.date() >= since]
    if progress:
        progress("topic", len(steps), len(steps) + 1)
    every = [f for kind in ("hotspot", "surge", "cooccurrence", "asset") for f in results.findings.get(kind, [])]
    month = _month_of(every)
    topic = topics.monthly_topic(every, month) if month else None
    results.findings["topic"] = [topic] if topic else []
    if progress:
        progress("done", len(steps) + 1, len(steps) + 1)
    results.meta = {"source": source, "since": since.isoformat() if since else None,
                    "until": until.isoformat() if until else None, "rows": rows, "seconds": seconds,
                    "month": month,
                    "replies_since": reply_since.isoformat(sep=" ") if reply_since else None,
                    "generated_at": datetime.now().isoformat(timespec="seconds")}
    return results
