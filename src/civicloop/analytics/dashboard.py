"""The dashboards' queries, and their fast path: DuckDB over a Parquet snapshot of the operational tables.

Three questions a city's dashboards ask all day (issue 9, item 3):

* :func:`category_district_counts` — requests filed in [start, end) by category and district (the
  30-day panel, ``GET /api/v1/dashboard``);
* :func:`hotspot_candidates` — grid × category cells of the last ``days`` days (7) holding more
  requests than their baseline predicts (the Poisson 3σ rule of the hotspot finder's candidate cells,
  ``analytics/hotspots.py``, with the previous weeks as the baseline);
* :func:`unit_counts` — the month's counts behind the three rates per unit (``metrics.three_rates``:
  ``GET /api/v1/metrics`` and the supervisor's ranking).

Each has a plain SQL form on the operational tables (SQLAlchemy Core, SQLite and PostgreSQL: what the
app ran before, the fallback and the reference of ``benchmarks/scale.py``) and a fast form over a
*snapshot* (:func:`write_snapshot`): two Parquet files holding the few columns these queries read,
``requests.parquet`` sorted by filing time and ``work_orders.parquet`` sorted by dispatch time, so
DuckDB reads only the row groups of the period asked (their min/max statistics) instead of every row
of the table. The architecture calls for it (docs/architecture.md, "Databases and scale": analytics
over Parquet snapshots for very large histories).

What a snapshot holds, and so how far its answers are exact:

* the requests filed and the work orders dispatched before its **watermark** (the time it was taken
  less :data:`MARGIN`, so that transactions still open then are not half seen), as they stood then;
* the counts of requests add the rows filed since the watermark, read from the operational table
  through its ``created_at`` index (:func:`live_requests`): a request filed after the last refresh is
  counted at once. A request whose category, district or grid changed after the refresh counts where
  it was until the next refresh (``civicloop analyze --snapshot``, e.g. hourly from cron);
* the three rates of a month come from the snapshot only when the month ended :data:`SETTLE` before
  the watermark (orders are acknowledged, returned and called back for days after dispatch); any other
  month is counted with plain SQL.

Where the app finds the snapshot: ``CIVICLOOP_SNAPSHOT_DIR``, else for a SQLite file ``x.db`` the folder
``x.snapshot`` beside it (:func:`snapshot_dir`); without one every query is plain SQL.
"""

from __future__ import annotations

import json
import os
import shutil
import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import duckdb
import pyarrow as pa
from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from civicloop.analytics.duck import connect
from civicloop.analytics.metrics import Counts
from civicloop.org.models import OrgUnit
from civicloop.requests.models import (
    Satisfaction,
    ServiceRequest,
    WorkOrderRole,
    WorkOrderStatus,
)

SNAPSHOT_ENV = "CIVICLOOP_SNAPSHOT_DIR"
MARGIN = timedelta(minutes=5)
"""The watermark is this much before the snapshot was taken: a request whose transaction was still open
then (filed before, committed after) is read from the operational table instead of being missed."""
SETTLE = timedelta(days=7)
"""A month's three rates are read from the snapshot only when the month ended at least this long before
the watermark; younger orders may still be acknowledged, returned or called back."""
ROW_GROUP = 100_000
"""Rows per Parquet row group: the unit DuckDB skips by the groups' min/max of the time columns."""
Z = 3.0
"""Poisson standard deviations above the expectation that make a cell a hotspot candidate (as in
``analytics/hotspots.py``)."""

CellKey = tuple[int | None, int | None]


# ---------------------------------------------------------------------------------------------------
# the snapshot


def snapshot_dir(database_url: str) -> Path | None:
    """Return the folder of the dashboards' snapshot for ``database_url``: ``$CIVICLOOP_SNAPSHOT_DIR``
    when set, else ``x.snapshot`` beside a SQLite file ``x.db``, else ``None`` (no snapshot: plain SQL).
    The folder need not exist."""
    configured = os.environ.get(SNAPSHOT_ENV, "").strip()
    if configured:
        return Path(configured)
    if database_url.startswith("sqlite") and ":memory:" not in database_url and "///" in database_url:
        path = Path(database_url.split("///", 1)[1].split("?", 1)[0])
        return path.with_name(path.stem + ".snapshot")
    return None


def _naive_utc(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        raise ValueError("an aware datetime is needed (UTC stored, zone-aware everywhere)")
    return moment.astimezone(UTC).replace(tzinfo=None)


def _ts(column: str) -> str:
    # SQLite keeps UTC text, PostgreSQL timestamptz (read as UTC: the connection's TimeZone is UTC)
    return f"CAST({column} AS TIMESTAMP)"


def write_snapshot(database_url: str, folder: Path, *, now: datetime | None = None, timezone: str = "Asia/Shanghai",
                   memory_limit: str = "1GB") -> dict[str, Any]:
    """Write the dashboards' snapshot of the database at ``database_url`` into ``folder`` (replaced as a
    whole: a reader sees the old or the new snapshot, never half of one).

    ``now`` (aware; default the current time) is when it is taken; rows filed or dispatched before
    ``now − MARGIN`` (the watermark) go in. ``unit_months.parquet`` holds the three rates' counts per
    unit and calendar month of ``timezone`` (:func:`unit_months`). DuckDB reads the tables through its ``sqlite`` /
    ``postgres`` extension within ``memory_limit`` (a DuckDB size, spilling to ``folder``'s parent).
    Returns the manifest also written as ``meta.json``: ``taken_at``, ``watermark`` (ISO, UTC),
    ``requests``, ``work_orders`` (rows), ``seconds``. Raises ``AnalyticsUnavailable`` when the database
    cannot be attached and ``duckdb.Error`` when its tables are missing."""
    started = datetime.now(UTC)
    taken = (now or started).astimezone(UTC)
    watermark = taken - MARGIN
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    fresh = folder.with_name(folder.name + ".new")
    shutil.rmtree(fresh, ignore_errors=True)
    fresh.mkdir()
    conn = connect(database_url)
    try:
        conn.execute("SET TimeZone = 'UTC'")
        conn.execute("SET enable_progress_bar = false")
        conn.execute(f"SET memory_limit = '{memory_limit}'")
        conn.execute(f"SET temp_directory = '{(fresh / 'tmp').as_posix()}'")
        conn.execute("SET preserve_insertion_order = false")
        mark = _naive_utc(watermark)
        target = (fresh / "requests.parquet").as_posix().replace("'", "''")
        conn.execute(f"""
            COPY (
                SELECT id::BIGINT AS id, {_ts('created_at')} AS created_at, category_id::BIGINT AS category_id,
                       district_id::BIGINT AS district_id, street_id::BIGINT AS street_id,
                       grid_id::BIGINT AS grid_id, status::VARCHAR AS status
                FROM ops.service_requests WHERE {_ts('created_at')} < ?
                ORDER BY created_at, id
            ) TO '{target}' (FORMAT parquet, COMPRESSION snappy, ROW_GROUP_SIZE {ROW_GROUP})
        """, [mark])
        target = (fresh / "work_orders.parquet").as_posix().replace("'", "''")
        conn.execute(f"""
            COPY (
                SELECT id::BIGINT AS id, request_id::BIGINT AS request_id, unit_id::BIGINT AS unit_id,
                       role::VARCHAR AS role, status::VARCHAR AS status, {_ts('dispatched_at')} AS dispatched_at,
                       {_ts('response_due_at')} AS response_due_at, {_ts('acknowledged_at')} AS acknowledged_at,
                       {_ts('callback_at')} AS callback_at, CAST(resolved AS BOOLEAN) AS resolved,
                       satisfaction::VARCHAR AS satisfaction
                FROM ops.work_orders WHERE {_ts('dispatched_at')} < ?
                ORDER BY dispatched_at, id
            ) TO '{target}' (FORMAT parquet, COMPRESSION snappy, ROW_GROUP_SIZE {ROW_GROUP})
        """, [mark])
        unit_months(conn, fresh, watermark=mark, timezone=timezone)
        counts = {}
        for name in ("requests", "work_orders"):
            written = (fresh / f"{name}.parquet").as_posix().replace("'", "''")
            counts[name] = int(conn.execute(f"SELECT count(*) FROM read_parquet('{written}')").fetchone()[0])  # type: ignore[index]
    finally:
        conn.close()
    shutil.rmtree(fresh / "tmp", ignore_errors=True)
    meta = {"taken_at": taken.isoformat(), "watermark": watermark.isoformat(), "timezone": timezone, **counts,
            "seconds": round((datetime.now(UTC) - started).total_seconds(), 3)}
    (fresh / "meta.json").write_text(json.dumps(meta, indent=1), encoding="utf-8")
    old = folder.with_name(folder.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if folder.exists():
        folder.rename(old)
    fresh.rename(folder)
    shutil.rmtree(old, ignore_errors=True)
    return meta


def unit_months(conn: duckdb.DuckDBPyConnection, folder: Path, *, watermark: datetime, timezone: str) -> None:
    """Write ``folder/unit_months.parquet`` from ``folder/work_orders.parquet``: for each calendar month of
    ``timezone`` (``month_start``, ``month_end``: its bounds as naive UTC) and unit, the counts of
    ``metrics.unit_counts`` with ``now`` = ``watermark`` (naive UTC), and per month ``pending_due_max``: the
    latest response deadline of a lead order dispatched in the month and still pending. The counts hold
    for any ``now`` after ``pending_due_max`` (and after the watermark, as the snapshot does), since only
    pending orders whose deadline lies between the two instants would be counted differently
    (:func:`month_counts` checks it). Months are bounded in Python as
    ``metrics.parse_month`` bounds them and rows placed in them by an ASOF join."""
    orders = (folder / "work_orders.parquet").as_posix().replace("'", "''")
    target = (folder / "unit_months.parquet").as_posix().replace("'", "''")
    first, last = conn.execute(  # type: ignore[misc]
        "SELECT least(min(dispatched_at), min(callback_at)), greatest(max(dispatched_at), max(callback_at))"
        f" FROM read_parquet('{orders}')").fetchone()
    tz = ZoneInfo(timezone)
    starts: list[datetime] = []
    if first is not None:
        local = first.replace(tzinfo=UTC).astimezone(tz)
        year, month = local.year, local.month
        while True:  # the calendar months of the zone, as metrics.parse_month bounds them
            start = datetime(year, month, 1, tzinfo=tz).astimezone(UTC)
            if start > last.replace(tzinfo=UTC):
                break
            starts.append(start)
            year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    ends = [*starts[1:], _month_after(starts[-1], tz)] if starts else []
    bounds = pa.table({
        "month_start": pa.array([x.replace(tzinfo=None) for x in starts], type=pa.timestamp("us")),
        "month_end": pa.array([x.replace(tzinfo=None) for x in ends], type=pa.timestamp("us"))})
    offsets = {x.astimezone(tz).utcoffset() for x in [*starts, *ends]}
    if len(offsets) <= 1:
        # every month starts at the same UTC offset (no daylight saving at a month's start; Asia/Shanghai
        # always): each local day (epoch + offset, in whole days: integer arithmetic) lies in one month,
        # so rows are counted per day and unit first, and the few day counts placed in their months
        offset_us = int(next(iter(offsets), timedelta()).total_seconds() * 1_000_000)
        day = 86_400_000_000
        bounds = bounds.append_column("first_day", pa.array(
            [(int(x.timestamp() * 1_000_000) + offset_us) // day for x in starts], type=pa.int64()))
        bounds = bounds.append_column("end_day", pa.array(
            [(int(x.timestamp() * 1_000_000) + offset_us) // day for x in ends], type=pa.int64()))
    conn.register("month_bounds", bounds)

    def month(column: str, counts: str) -> str:
        """Rows of ``o`` grouped by the month of ``column`` and unit, with the aggregates ``counts``."""
        if len(offsets) <= 1:
            return (f"(SELECT b.month_start, b.month_end, d.* EXCLUDE (day) FROM"
                    f" (SELECT (epoch_us({column}) + {offset_us}) // {day} AS day, unit_id, {counts}"
                    f"  FROM o WHERE {column} IS NOT NULL GROUP BY ALL) d"
                    f" JOIN month_bounds b ON d.day >= b.first_day AND d.day < b.end_day)")
        return (f"(SELECT b.month_start, b.month_end, o.unit_id, {counts} FROM o ASOF JOIN month_bounds b"
                f" ON o.{column} >= b.month_start GROUP BY ALL)")

    dispatched = """count(*) FILTER (status NOT IN ($returned, $cancelled)
                                    AND NOT (status = $pending AND response_due_at >= $mark)) AS due,
                   count(*) FILTER (status NOT IN ($returned, $cancelled)
                                    AND NOT (status = $pending AND response_due_at >= $mark)
                                    AND acknowledged_at IS NOT NULL AND acknowledged_at <= response_due_at)
                       AS responded,
                   max(response_due_at) FILTER (status = $pending) AS pending_due_max"""
    called = """count(*) AS called_back, count(*) FILTER (resolved) AS resolved,
                count(*) FILTER (satisfaction = $sat) AS satisfied,
                count(*) FILTER (satisfaction = $basic) AS basically_satisfied,
                count(*) FILTER (satisfaction = $dis) AS dissatisfied"""

    conn.execute(f"""
        COPY (
            WITH o AS (SELECT * FROM read_parquet('{orders}') WHERE role = $lead),
            d AS (
                SELECT month_start, month_end, unit_id, sum(due) AS due, sum(responded) AS responded,
                       max(pending_due_max) AS pending_due_max
                FROM {month('dispatched_at', dispatched)} GROUP BY ALL
            ),
            c AS (
                SELECT month_start, month_end, unit_id, sum(called_back) AS called_back, sum(resolved) AS resolved,
                       sum(satisfied) AS satisfied, sum(basically_satisfied) AS basically_satisfied,
                       sum(dissatisfied) AS dissatisfied
                FROM {month('callback_at', called)} GROUP BY ALL
            ),
            joined AS (
                SELECT coalesce(d.month_start, c.month_start) AS month_start,
                       coalesce(d.month_end, c.month_end) AS month_end, coalesce(d.unit_id, c.unit_id) AS unit_id,
                       coalesce(d.due, 0) AS due, coalesce(d.responded, 0) AS responded,
                       coalesce(c.called_back, 0) AS called_back, coalesce(c.resolved, 0) AS resolved,
                       coalesce(c.satisfied, 0) AS satisfied, coalesce(c.basically_satisfied, 0) AS basically_satisfied,
                       coalesce(c.dissatisfied, 0) AS dissatisfied, d.pending_due_max
                FROM d FULL OUTER JOIN c ON d.month_start = c.month_start AND d.unit_id = c.unit_id
            )
            SELECT * EXCLUDE (pending_due_max),
                   max(pending_due_max) OVER (PARTITION BY month_start) AS pending_due_max
            FROM joined ORDER BY month_start, unit_id
        ) TO '{target}' (FORMAT parquet, COMPRESSION zstd)
    """, {"lead": WorkOrderRole.LEAD.value, "returned": WorkOrderStatus.RETURNED.value,
          "cancelled": WorkOrderStatus.CANCELLED.value, "pending": WorkOrderStatus.PENDING.value, "mark": watermark,
          "sat": Satisfaction.SATISFIED.value, "basic": Satisfaction.BASICALLY_SATISFIED.value,
          "dis": Satisfaction.DISSATISFIED.value})
    conn.unregister("month_bounds")


def _month_after(start: datetime, tz: ZoneInfo) -> datetime:
    local = start.astimezone(tz)
    year, month = (local.year + 1, 1) if local.month == 12 else (local.year, local.month + 1)
    return datetime(year, month, 1, tzinfo=tz).astimezone(UTC)


@dataclass
class Snapshot:
    """An open snapshot: the views ``snap_requests`` and ``snap_orders`` on one in-memory DuckDB
    database (:meth:`cursor` gives each caller its own connection to it, as DuckDB requires for
    threads), and the watermark (aware UTC) up to which it holds the rows."""

    folder: Path
    watermark: datetime
    taken_at: datetime
    conn: duckdb.DuckDBPyConnection

    def cursor(self) -> duckdb.DuckDBPyConnection:
        """Return a new connection to the snapshot's database (one per thread or query)."""
        return self.conn.cursor()


_OPEN: dict[Path, tuple[float, Snapshot]] = {}
_LOCK = threading.Lock()


def open_snapshot(folder: Path | None, *, threads: int = 2) -> Snapshot | None:
    """Return the snapshot in ``folder`` (opened once, and again after a refresh: keyed by the mtime of
    its ``meta.json``), or ``None`` when ``folder`` is ``None`` or holds no complete snapshot.
    ``threads``: DuckDB's worker threads for its queries."""
    if folder is None:
        return None
    meta_path = Path(folder) / "meta.json"
    try:
        stamp = meta_path.stat().st_mtime
    except OSError:
        return None
    key = Path(folder).resolve()
    with _LOCK:
        cached = _OPEN.get(key)
        if cached is not None and cached[0] == stamp:
            return cached[1]
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        conn = duckdb.connect()
        conn.execute(f"SET threads = {int(threads)}")
        conn.execute("SET parquet_metadata_cache = true")
        conn.execute("SET enable_progress_bar = false")
        for view, name in (("snap_requests", "requests"), ("snap_orders", "work_orders"),
                           ("snap_unit_months", "unit_months")):
            path = (key / f"{name}.parquet").as_posix().replace("'", "''")
            conn.execute(f"CREATE VIEW {view} AS SELECT * FROM read_parquet('{path}')")
        snapshot = Snapshot(folder=key, watermark=datetime.fromisoformat(meta["watermark"]),
                            taken_at=datetime.fromisoformat(meta["taken_at"]), conn=conn)
        if cached is not None:
            cached[1].conn.close()
        _OPEN[key] = (stamp, snapshot)
        return snapshot


def snapshot_for(session: Session) -> Snapshot | None:
    """Return the snapshot of the database ``session`` is bound to (:func:`snapshot_dir`), or ``None``."""
    bind = session.get_bind()
    return open_snapshot(snapshot_dir(bind.url.render_as_string(hide_password=False)))  # type: ignore[union-attr]


# ---------------------------------------------------------------------------------------------------
# counts by category and district


def category_district_counts_sql(session: Session, *, start: datetime, end: datetime) -> dict[CellKey, int]:
    """Count the requests filed in [``start``, ``end``) (aware instants) by (category id, district id)
    with one ``GROUP BY`` on the operational table (``None`` for a request without one). Plain SQL."""
    query = (select(ServiceRequest.category_id, ServiceRequest.district_id, func.count())
             .where(ServiceRequest.created_at >= start, ServiceRequest.created_at < end)
             .group_by(ServiceRequest.category_id, ServiceRequest.district_id))
    return {(category, district): int(n) for category, district, n in session.execute(query)}


def live_requests(session: Session, snapshot: Snapshot, *, start: datetime, end: datetime) -> pa.Table:
    """Return the requests filed in [max(``start``, watermark), ``end``) — those the snapshot does not
    hold — from the operational table (its ``created_at`` index) as an Arrow table of ``created_at``
    (naive UTC), ``category_id``, ``district_id``, ``grid_id``; empty when ``end`` ≤ the watermark."""
    names = ("created_at", "category_id", "district_id", "grid_id")
    types = (pa.timestamp("us"), pa.int64(), pa.int64(), pa.int64())
    lower = max(start, snapshot.watermark)
    rows: list[Any] = []
    if end > lower:
        rows = list(session.execute(
            select(ServiceRequest.created_at, ServiceRequest.category_id, ServiceRequest.district_id,
                   ServiceRequest.grid_id)
            .where(ServiceRequest.created_at >= lower, ServiceRequest.created_at < end)))
    columns = [[_naive_utc(r[0]) for r in rows]] + [[r[i] for r in rows] for i in (1, 2, 3)]
    return pa.table({n: pa.array(c, type=t) for n, c, t in zip(names, columns, types, strict=True)})


def _requests_source(cur: duckdb.DuckDBPyConnection, live: pa.Table) -> str:
    """Register ``live`` on ``cur`` and return the FROM clause of the snapshot's requests plus those."""
    if live.num_rows == 0:
        return "(SELECT created_at, category_id, district_id, grid_id FROM snap_requests)"
    cur.register("live_requests", live)
    return ("(SELECT created_at, category_id, district_id, grid_id FROM snap_requests"
            " UNION ALL SELECT created_at, category_id, district_id, grid_id FROM live_requests)")


def category_district_counts_fast(session: Session, snapshot: Snapshot, *, start: datetime,
                                  end: datetime) -> dict[CellKey, int]:
    """The same counts as :func:`category_district_counts_sql`, from the snapshot plus the requests filed
    since its watermark (:func:`live_requests`)."""
    live = live_requests(session, snapshot, start=start, end=end)
    cur = snapshot.cursor()
    try:
        source = _requests_source(cur, live)
        rows = cur.execute(f"""
            SELECT category_id, district_id, count(*) FROM {source}
            WHERE created_at >= ? AND created_at < ? GROUP BY ALL
        """, [_naive_utc(start), _naive_utc(end)]).fetchall()
    finally:
        cur.close()
    return {(category, district): int(n) for category, district, n in rows}


def category_district_counts(session: Session, *, start: datetime, end: datetime,
                             snapshot: Snapshot | None = None) -> dict[CellKey, int]:
    """Requests filed in [``start``, ``end``) by (category id, district id): from ``snapshot`` (default:
    the database's own, :func:`snapshot_for`) when there is one, else with plain SQL. Same numbers either
    way (``tests/test_dashboard_fast.py``)."""
    snapshot = snapshot or snapshot_for(session)
    if snapshot is None:
        return category_district_counts_sql(session, start=start, end=end)
    return category_district_counts_fast(session, snapshot, start=start, end=end)


# ---------------------------------------------------------------------------------------------------
# hotspot candidates


@dataclass(frozen=True)
class Candidate:
    """A grid × category cell of the window with more requests than its baseline predicts.

    ``requests``: filed in the window; ``baseline``: filed in the cell over the baseline periods;
    ``expected``: baseline × (the category's requests city-wide in the window ÷ over the baseline), the
    window's expectation (0 when the category had no request in the baseline)."""

    grid_id: int
    category_id: int
    requests: int
    baseline: int
    expected: float


def _windows(end: datetime, days: int, periods: int) -> tuple[datetime, datetime]:
    if days <= 0 or periods <= 0:
        raise ValueError("days and baseline periods must be positive")
    window = end - timedelta(days=days)
    return window, window - timedelta(days=days * periods)


def judge_cells(cells: list[tuple[int, int, int, int]], totals: dict[int, tuple[int, int]],
                *, min_requests: int) -> list[Candidate]:
    """Return the candidates among ``cells`` = (grid id, category id, requests in the window, in the
    baseline), given ``totals`` = category id → (requests city-wide in the window, in the baseline):
    at least ``min_requests`` and more than e + Z·√e with e = baseline × window total ÷ baseline total
    (e = 0 without a baseline total). Decided on integers (no floating point near the edge), so the SQL
    and the snapshot agree exactly. Sorted by requests, then excess over e, then ids."""
    out: list[Candidate] = []
    for grid, category, n, base in cells:
        if n < min_requests:
            continue
        window_total, base_total = totals.get(category, (0, 0))
        if base_total == 0:
            expected_num, expected_den = 0, 1
        else:
            expected_num, expected_den = base * window_total, base_total
        # n > e + Z√e  ⇔  n·d − E > 0 and (n·d − E)² > Z²·E·d   with e = E/d (Z = 3: Z² = 9)
        excess = n * expected_den - expected_num
        if excess > 0 and excess * excess > int(Z * Z) * expected_num * expected_den:
            out.append(Candidate(grid_id=grid, category_id=category, requests=n, baseline=base,
                                 expected=expected_num / expected_den))
    out.sort(key=lambda c: (-c.requests, -(c.requests - c.expected), c.grid_id, c.category_id))
    return out


def hotspot_cells_sql(session: Session, *, end: datetime, days: int = 7, periods: int = 8,
                      min_requests: int = 3) -> tuple[list[tuple[int, int, int, int]], dict[int, tuple[int, int]]]:
    """The counts behind :func:`hotspot_candidates` with plain SQL on the operational table: the cells
    (grid, category, requests in the window [end − days, end), in the ``periods`` × ``days`` before it)
    with at least ``min_requests`` in the window, and every category's (window, baseline) totals over
    requests with a grid. Two ``GROUP BY`` queries over the baseline's and the window's rows."""
    window, base = _windows(end, days, periods)
    r = ServiceRequest
    in_window = func.sum(case((r.created_at >= window, 1), else_=0))
    in_base = func.sum(case((r.created_at < window, 1), else_=0))
    where = (r.created_at >= base, r.created_at < end, r.grid_id.is_not(None), r.category_id.is_not(None))
    cells = [(int(g), int(c), int(n), int(b)) for g, c, n, b in session.execute(
        select(r.grid_id, r.category_id, in_window, in_base).where(*where)
        .group_by(r.grid_id, r.category_id).having(in_window >= min_requests))]
    totals = {int(c): (int(n), int(b)) for c, n, b in session.execute(
        select(r.category_id, in_window, in_base).where(*where).group_by(r.category_id))}
    return cells, totals


def hotspot_cells_fast(session: Session, snapshot: Snapshot, *, end: datetime, days: int = 7, periods: int = 8,
                       min_requests: int = 3) -> tuple[list[tuple[int, int, int, int]], dict[int, tuple[int, int]]]:
    """The same counts as :func:`hotspot_cells_sql`, from the snapshot plus the requests filed since its
    watermark, in one DuckDB query."""
    window, base = _windows(end, days, periods)
    live = live_requests(session, snapshot, start=base, end=end)
    cur = snapshot.cursor()
    try:
        source = _requests_source(cur, live)
        rows = cur.execute(f"""
            WITH r AS (
                SELECT grid_id, category_id, (created_at >= $window)::INTEGER AS w FROM {source}
                WHERE created_at >= $base AND created_at < $end AND grid_id IS NOT NULL AND category_id IS NOT NULL
            ),
            cell AS (SELECT grid_id, category_id, sum(w) AS n, count(*) - sum(w) AS b FROM r GROUP BY ALL),
            total AS (SELECT category_id, sum(n) AS n, sum(b) AS b FROM cell GROUP BY ALL)
            SELECT 'cell', grid_id, category_id, n, b FROM cell WHERE n >= $min
            UNION ALL SELECT 'total', NULL, category_id, n, b FROM total
        """, {"window": _naive_utc(window), "base": _naive_utc(base), "end": _naive_utc(end),
              "min": min_requests}).fetchall()
    finally:
        cur.close()
    cells = [(int(g), int(c), int(n), int(b)) for kind, g, c, n, b in rows if kind == "cell"]
    totals = {int(c): (int(n), int(b)) for kind, _, c, n, b in rows if kind == "total"}
    return cells, totals


def hotspot_candidates(session: Session, *, end: datetime, days: int = 7, periods: int = 8, min_requests: int = 3,
                       snapshot: Snapshot | None = None) -> list[Candidate]:
    """Return the grid × category cells of the ``days`` days before ``end`` (aware) with at least
    ``min_requests`` requests and more than Z = 3 Poisson standard deviations above what the previous
    ``periods`` × ``days`` days predict (:func:`judge_cells`; the rule of the hotspot finder's candidate
    cells, docs/analytics.md). From ``snapshot`` (default: the database's own) when there is one, else
    plain SQL. Raises ``ValueError`` for non-positive ``days`` or ``periods``."""
    snapshot = snapshot or snapshot_for(session)
    args = {"end": end, "days": days, "periods": periods, "min_requests": min_requests}
    cells, totals = (hotspot_cells_sql(session, **args) if snapshot is None  # type: ignore[arg-type]
                     else hotspot_cells_fast(session, snapshot, **args))  # type: ignore[arg-type]
    return judge_cells(cells, totals, min_requests=min_requests)


# ---------------------------------------------------------------------------------------------------
# the three rates' counts per unit


def settled(snapshot: Snapshot, end: datetime) -> bool:
    """Whether a period ending at ``end`` (aware) ended :data:`SETTLE` or more before the watermark, so
    its three rates may be read from ``snapshot``."""
    return end + SETTLE <= snapshot.watermark


def unit_counts_fast(snapshot: Snapshot, *, start: datetime, end: datetime, now: datetime) -> dict[int, Counts]:
    """The counts of ``metrics.unit_counts`` (lead orders dispatched or called back in [``start``,
    ``end``), ``now`` deciding which pending orders are due) from the snapshot's work orders, per unit
    id. Exact as of the snapshot; use it only for a :func:`settled` period. A calendar month of the
    snapshot's zone is read from its ``unit_months`` when ``now`` is past the watermark and every pending
    order's response deadline of the month (:func:`unit_months`); any other period from its orders."""
    rolled = month_counts(snapshot, start=start, end=end, now=now)
    if rolled is not None:
        return rolled
    cur = snapshot.cursor()
    try:
        rows = cur.execute("""
            WITH o AS (
                SELECT * FROM snap_orders WHERE role = $lead AND dispatched_at >= $start AND dispatched_at < $end
                UNION ALL
                SELECT * FROM snap_orders WHERE role = $lead AND callback_at >= $start AND callback_at < $end
                    AND NOT (dispatched_at >= $start AND dispatched_at < $end)
            ),
            f AS (
                SELECT unit_id, resolved, satisfaction,
                       coalesce(dispatched_at >= $start AND dispatched_at < $end
                                AND status NOT IN ($returned, $cancelled)
                                AND NOT (status = $pending AND response_due_at >= $now), false) AS due,
                       coalesce(callback_at >= $start AND callback_at < $end, false) AS called,
                       acknowledged_at IS NOT NULL AND acknowledged_at <= response_due_at AS on_time
                FROM o
            )
            SELECT unit_id, count(*) FILTER (due), count(*) FILTER (due AND on_time), count(*) FILTER (called),
                   count(*) FILTER (called AND resolved), count(*) FILTER (called AND satisfaction = $sat),
                   count(*) FILTER (called AND satisfaction = $basic), count(*) FILTER (called AND satisfaction = $dis)
            FROM f GROUP BY unit_id
        """, {"lead": WorkOrderRole.LEAD.value, "start": _naive_utc(start), "end": _naive_utc(end),
              "now": _naive_utc(now), "returned": WorkOrderStatus.RETURNED.value,
              "cancelled": WorkOrderStatus.CANCELLED.value, "pending": WorkOrderStatus.PENDING.value,
              "sat": Satisfaction.SATISFIED.value, "basic": Satisfaction.BASICALLY_SATISFIED.value,
              "dis": Satisfaction.DISSATISFIED.value}).fetchall()
    finally:
        cur.close()
    return {int(unit): Counts(*(int(n) for n in numbers)) for unit, *numbers in rows}


def month_counts(snapshot: Snapshot, *, start: datetime, end: datetime, now: datetime) -> dict[int, Counts] | None:
    """The counts of :func:`unit_counts_fast` from the snapshot's ``unit_months`` (:func:`unit_months`), or
    ``None`` when [``start``, ``end``) is not one of its calendar months or ``now`` would count a pending
    order otherwise than the watermark did (a pending order of the month whose response deadline is not
    before both)."""
    cur = snapshot.cursor()
    try:
        bounds = [_naive_utc(start), _naive_utc(end)]
        month = cur.execute("SELECT max(pending_due_max), count(*) FROM snap_unit_months"
                            " WHERE month_start = ? AND month_end = ?", bounds).fetchone()
        if month is None or not month[1]:
            return None
        latest = month[0]
        if latest is not None and not (latest < _naive_utc(now) and latest < _naive_utc(snapshot.watermark)):
            return None
        rows = cur.execute("""
            SELECT unit_id, due, responded, called_back, resolved, satisfied, basically_satisfied, dissatisfied
            FROM snap_unit_months WHERE month_start = ? AND month_end = ?
        """, bounds).fetchall()
    finally:
        cur.close()
    return {int(unit): Counts(*(int(n) for n in numbers)) for unit, *numbers in rows}


def unit_counts(session: Session, *, start: datetime, end: datetime, now: datetime,
                snapshot: Snapshot | None = None) -> dict[int, tuple[str, str, Counts]] | None:
    """The month's counts per unit (the shape of ``metrics.unit_counts``: unit id → (name, kind,
    ``Counts``)) from ``snapshot`` (default: the database's own), with the units' names and kinds read
    from the operational table; ``None`` when there is no snapshot or the period is not :func:`settled`
    in it (the caller then counts with plain SQL)."""
    snapshot = snapshot or snapshot_for(session)
    if snapshot is None or not settled(snapshot, end):
        return None
    counts = unit_counts_fast(snapshot, start=start, end=end, now=now)
    if not counts:
        return {}
    names = {uid: (name, str(kind)) for uid, name, kind in session.execute(
        select(OrgUnit.id, OrgUnit.name, OrgUnit.kind).where(OrgUnit.id.in_(list(counts))))}
    return {uid: (*names[uid], c) for uid, c in counts.items() if uid in names}


def unit_counts_sql(session: Session, *, start: datetime, end: datetime, now: datetime) -> dict[int, Counts]:
    """The counts of :func:`unit_counts_fast` with plain SQL (``metrics.unit_counts`` without the names):
    the reference for the benchmark and the tests."""
    from civicloop.analytics.metrics import unit_counts as plain

    return {uid: c for uid, (_, _, c) in plain(session, start=start, end=end, now=now).items()}

