"""The synthetic city generator (``civicloop generate``): a city of its own and N requests, in bulk.

Row generation lives in ``generator_plan`` (decisions made once per run), ``generator_rows``
(one chunk of requests, work orders and supervision cases, drawn with numpy), ``generator_city``
(the city and the catalogue) and ``generator_text`` (the words). This module writes the chunks:

* to the database, bypassing the ORM: on SQLite one ``executemany`` of plain tuples per table and
  chunk, on PostgreSQL one ``COPY … FROM STDIN`` (psycopg 3) per table and chunk. Ids are assigned
  by the generator (max id + 1 onwards), so work orders reference their requests without a round
  trip; the PostgreSQL sequences are moved past them at the end. Values are stored exactly as the
  ORM's types store them (UTC timestamps, ``YYYY-MM-DD HH:MM:SS.ffffff`` on SQLite). The whole load
  is one transaction: an interrupted run leaves no requests behind (the city and the catalogue,
  committed first, stay and are reused). From ``BULK_MIN`` requests on, the secondary indexes (and
  on PostgreSQL the foreign keys) of the three tables are dropped and rebuilt inside that
  transaction, which is several times faster than maintaining them row by row.
* to Parquet (``requests.parquet``, ``work_orders.parquet``, ``supervisions.parquet``, and the
  small ``org_units``, ``grids`` and ``categories`` tables), one row group per chunk, so memory
  holds one chunk at a time whatever N is.

No request events (``request_events``) are written: a bulk request's history would be ~6 event
rows per request; the work orders carry every timestamp the events would. The manifest says so.

Every run returns a manifest (and writes it as JSON when asked): where the planted hotspots and
surges are, which categories are seasonal, which units are the planted laggard and model, the id
ranges and the counts, so analytics can be tested against known answers.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import date, datetime, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import Engine, func, insert, select, text
from sqlalchemy.orm import Session

from civicloop.catalog.models import Category
from civicloop.catalog.service import BUILTIN_TREE, load_tree
from civicloop.core import crypto
from civicloop.core.calendar import WorkCalendar
from civicloop.core.calendar_service import load_calendar
from civicloop.core.settings import Settings
from civicloop.importers.generator_city import PREFIX, builtin_categories, city_from_rows, leaves_of, plan_city
from civicloop.importers.generator_plan import TIERS, Options, Plan, build_plan
from civicloop.importers.generator_rows import (
    CHANNELS,
    ORDER_STATUS,
    REJ,
    REJECT_REASONS,
    REQUEST_STATUS,
    SATISFACTION,
    Chunk,
    make_chunk,
)
from civicloop.org.models import Grid, OrgUnit
from civicloop.requests.models import ServiceRequest, Supervision, WorkOrder

CHUNK = 50_000
BULK_MIN = 50_000  # from this many requests the load drops and rebuilds secondary indexes (see _load_*)
EVENTS_NOTE = ("request_events are not written for generated requests (they would multiply the rows by about 6); "
               "work_orders hold every timestamp of the loop")
DEADLINES_NOTE = ("response_due_at = dispatched_at + settings.response_seconds_urgent (2h tier) or "
                  "response_seconds_default; due_at from acknowledged_at by tier: 2h and 24h clock time, 7wd/15wd "
                  "23:59:59 local on the 7th/15th working day of the Chinese calendar (exact, from lookup tables); "
                  "approved extensions add 5 working days; overdue = pending past response_due_at or acknowledged "
                  "past due_at at any moment up to the horizon")

REQUEST_COLUMNS: list[tuple[str, str]] = [
    ("id", "int"), ("channel", "enum"), ("title", "str"), ("description", "str"), ("citizen_name", "str"),
    ("citizen_phone", "str"), ("address", "str"), ("lat", "float?"), ("lon", "float?"), ("grid_id", "int?"),
    ("street_id", "int?"), ("district_id", "int?"), ("category_id", "int?"), ("deadline_tier", "enum"),
    ("support_count", "int"), ("status", "enum"), ("reject_reason", "enum"), ("duplicate_of_id", "int?"),
    ("lead_unit_id", "int?"), ("return_count", "int"), ("reopen_count", "int"), ("fallback", "bool"),
    ("external_id", "str"), ("created_at", "time"), ("updated_at", "time"), ("closed_at", "time?"), ("version", "int"),
    ("citizen_key", "str"),
]
ORDER_COLUMNS: list[tuple[str, str]] = [
    ("id", "int"), ("request_id", "int"), ("unit_id", "int"), ("role", "enum"), ("round", "int"), ("status", "enum"),
    ("fallback", "bool"), ("deadline_tier", "enum"), ("dispatched_at", "time"), ("response_due_at", "time"),
    ("acknowledged_at", "time?"), ("due_at", "time?"), ("due_provisional", "bool"), ("returned_at", "time?"),
    ("return_reason", "str"), ("extension_status", "enum"), ("extension_until", "time?"),
    ("extension_reason", "str"), ("replied_at", "time?"), ("reply_text", "str"), ("callback_at", "time?"),
    ("resolved", "bool?"), ("satisfaction", "enum"), ("overdue", "bool"), ("closed_at", "time?"), ("version", "int"),
]
SUPERVISION_COLUMNS: list[tuple[str, str]] = [
    ("id", "int"), ("request_id", "int"), ("work_order_id", "int"), ("reason", "enum"), ("note", "str"),
    ("redo", "bool"), ("open", "bool"), ("opened_by", "str"), ("created_at", "time"), ("closed_at", "time?"),
]
VOCABULARIES: dict[tuple[str, str], tuple[str | None, ...]] = {
    ("service_requests", "channel"): CHANNELS, ("service_requests", "deadline_tier"): TIERS,
    ("service_requests", "status"): REQUEST_STATUS, ("service_requests", "reject_reason"): REJECT_REASONS,
    ("work_orders", "role"): ("lead", "assisting"), ("work_orders", "status"): ORDER_STATUS,
    ("work_orders", "deadline_tier"): TIERS, ("work_orders", "extension_status"): (None, "pending", "approved"),
    ("work_orders", "satisfaction"): SATISFACTION, ("supervisions", "reason"): ("overdue", "dissatisfied"),
}
TABLES = (("service_requests", REQUEST_COLUMNS), ("work_orders", ORDER_COLUMNS), ("supervisions", SUPERVISION_COLUMNS))


class DatabaseNotEmpty(ValueError):
    """The database already holds service requests and ``append`` was not asked for."""


def _columns(chunk: Chunk) -> dict[str, dict[str, Any]]:
    """The chunk's three tables, column name → values (see ``generator_rows.Chunk``)."""
    req = dict(chunk.requests)
    # the contact is stored encrypted and indexed blind, as intake stores it (core.crypto)
    req["citizen_key"] = [crypto.citizen_key(p) if p else None for p in req["citizen_phone"]]
    req["citizen_name"] = [crypto.encrypt(v) for v in req["citizen_name"]]
    req["citizen_phone"] = [crypto.encrypt(v) for v in req["citizen_phone"]]
    req["reject_reason"] = np.where(req["status"] == REJ, req["reject"], 0)
    req["external_id"] = [None] * chunk.rows
    return {"service_requests": req, "work_orders": chunk.orders, "supervisions": chunk.supervisions}


_EPOCH = date(1970, 1, 1)


@lru_cache(maxsize=4)
def _times_of_day(suffix: str) -> np.ndarray:
    return np.array([f"{s // 3600:02d}:{s // 60 % 60:02d}:{s % 60:02d}{suffix}" for s in range(86400)], dtype=object)


def _stamps(values: np.ndarray, suffix: str) -> np.ndarray:
    """UTC epoch seconds as ``YYYY-MM-DD HH:MM:SS`` + ``suffix`` strings (an object array)."""
    days = values // 86400
    unique, inverse = np.unique(days, return_inverse=True)
    dates = np.array([f"{_EPOCH + timedelta(days=int(d)):%Y-%m-%d} " for d in unique.tolist()], dtype=object)
    return dates[inverse] + _times_of_day(suffix)[values - days * 86400]


def python_values(table: str, name: str, kind: str, values: Any, *, dialect: str) -> list[Any]:
    """Return one column as the Python values a DB-API driver takes (``None`` for null).

    Times stay epoch seconds for SQLite (the INSERT turns them into the ORM's text form) and become
    ``YYYY-MM-DD HH:MM:SS+00`` text otherwise; enumerations become their strings, -1 ids and NaN
    floats ``None``."""
    if kind in ("str",):
        return list(values)
    if kind == "enum":
        vocab = np.array([*VOCABULARIES[(table, name)], None], dtype=object)
        return vocab[np.asarray(values)].tolist()
    values = np.asarray(values)
    if kind == "int":
        return values.tolist()
    if kind == "bool":
        return values.astype(bool).tolist()
    if kind == "bool?":
        return np.array([None, False, True], dtype=object)[values.astype(np.int64) + 1].tolist()
    if kind == "float?":
        out = values.astype(object)
        out[np.isnan(values)] = None
        return out.tolist()
    null = values < 0
    if kind == "int?" or (dialect == "sqlite" and kind.startswith("time")):
        out = values.astype(object)  # SQLite: epoch seconds, turned into text by the INSERT itself
    else:  # time, time?
        out = np.full(len(values), None, dtype=object)
        out[~null] = _stamps(values[~null], "+00")
    out[null] = None
    return out.tolist()


def _copy_text(table: str, columns: list[tuple[str, str]], data: dict[str, Any]) -> str:
    """The rows of one table in PostgreSQL's COPY text format (tab-separated, ``\\N`` for null)."""
    out = []
    for name, kind in columns:
        values = data[name]
        if kind == "str":
            joined = "".join(v for v in values if v)
            if any(c in joined for c in "\\\t\n\r"):
                values = [None if v is None else v.translate(_COPY_ESCAPES) for v in values]
            out.append([_NULL if v is None else v for v in values])
        elif kind == "enum":
            vocab = np.array([*(_NULL if v is None else v for v in VOCABULARIES[(table, name)]), _NULL], dtype=object)
            out.append(vocab[np.asarray(values)].tolist())
        elif kind == "bool":
            out.append(np.where(np.asarray(values, dtype=bool), "t", "f").tolist())
        elif kind == "bool?":
            out.append(np.array([_NULL, "f", "t"], dtype=object)[np.asarray(values).astype(np.int64) + 1].tolist())
        elif kind == "float?":
            out.append([_NULL if v != v else repr(v) for v in np.asarray(values).tolist()])
        elif kind == "int":
            out.append(list(map(str, np.asarray(values).tolist())))
        elif kind == "int?":
            out.append([_NULL if v < 0 else str(v) for v in np.asarray(values).tolist()])
        else:
            out.append(python_values(table, name, kind, values, dialect="postgresql"))
            out[-1] = [_NULL if v is None else v for v in out[-1]]
    return "\n".join(map("\t".join, zip(*out, strict=True))) + "\n" if out and out[0] else ""


_NULL = "\\N"
_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def _sqlite_insert(table: str, columns: list[tuple[str, str]]) -> str:
    """INSERT for one table; times go in as epoch seconds and are stored in the ORM's text form
    ('YYYY-MM-DD HH:MM:SS.ffffff', UTC) by SQLite itself."""
    names = ", ".join(f'"{name}"' for name, _ in columns)
    marks = ", ".join("datetime(?, 'unixepoch') || '.000000'" if kind.startswith("time") else "?"
                      for _, kind in columns)
    return f"INSERT INTO {table} ({names}) VALUES ({marks})"


BULK_TABLES = tuple(name for name, _ in TABLES)


def _load_sqlite(engine: Engine, chunks: Iterator[Chunk], bulk: bool) -> None:
    """Write every chunk in one SQLite transaction on a raw connection. In bulk mode the secondary
    indexes of the three tables are dropped first and rebuilt from their own SQL before the commit,
    and foreign-key enforcement is off for the load (the rows are consistent by construction)."""
    raw = engine.raw_connection()
    db = raw.driver_connection
    try:
        if bulk:
            db.execute("PRAGMA foreign_keys=OFF")
        db.execute("BEGIN IMMEDIATE")
        try:
            indexes = []
            if bulk:
                marks = ", ".join("?" for _ in BULK_TABLES)
                indexes = db.execute(f"SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL "
                                     f"AND tbl_name IN ({marks})", BULK_TABLES).fetchall()
                for name, _ in indexes:
                    db.execute(f'DROP INDEX "{name}"')
            for chunk in chunks:
                tables = _columns(chunk)
                for table, columns in TABLES:
                    data = tables[table]
                    values = [python_values(table, name, kind, data[name], dialect="sqlite") for name, kind in columns]
                    db.executemany(_sqlite_insert(table, columns), zip(*values, strict=True))
            for _, sql in indexes:
                db.execute(sql)
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
    finally:
        db.execute("PRAGMA foreign_keys=ON")
        raw.close()


def _load_postgresql(engine: Engine, chunks: Iterator[Chunk], bulk: bool) -> None:
    """Write every chunk with COPY in one PostgreSQL transaction. In bulk mode the secondary indexes
    and foreign keys of the three tables are dropped first and recreated from their catalogue
    definitions (``pg_get_indexdef``, ``pg_get_constraintdef``) before the commit: the whole load,
    DDL included, commits or rolls back as one. Other sessions wait on the tables meanwhile."""
    with engine.begin() as conn:
        indexes, foreign = [], []
        if bulk:
            names = ", ".join(f"'{t}'::regclass" for t in BULK_TABLES)
            foreign = conn.execute(text(
                f"SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid) FROM pg_constraint "
                f"WHERE contype = 'f' AND conrelid IN ({names})")).all()
            indexes = conn.execute(text(
                f"SELECT i.indexrelid::regclass::text, pg_get_indexdef(i.indexrelid) FROM pg_index i "
                f"WHERE i.indrelid IN ({names}) AND NOT i.indisprimary "
                f"AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid)")).all()
            for table, constraint, _ in foreign:
                conn.execute(text(f'ALTER TABLE {table} DROP CONSTRAINT "{constraint}"'))
            for index, _ in indexes:
                conn.execute(text(f"DROP INDEX {index}"))
        cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
        for chunk in chunks:
            tables = _columns(chunk)
            for table, columns in TABLES:
                payload = _copy_text(table, columns, tables[table])
                if payload:
                    names = ", ".join(f'"{name}"' for name, _ in columns)
                    with cursor.copy(f"COPY {table} ({names}) FROM STDIN") as copy:
                        copy.write(payload)
        for _, definition in indexes:
            conn.execute(text(definition))
        for table, constraint, definition in foreign:
            conn.execute(text(f'ALTER TABLE {table} ADD CONSTRAINT "{constraint}" {definition}'))
        for table in ("org_units", "grids", "categories", "service_requests", "work_orders", "supervisions"):
            conn.execute(text(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                              f"(SELECT coalesce(max(id), 0) + 1 FROM {table}), false)"))
        conn.execute(text("ANALYZE service_requests, work_orders, supervisions"))


def _arrow_table(table: str, columns: list[tuple[str, str]], data: dict[str, Any]) -> Any:
    import pyarrow as pa

    arrays, fields = [], []
    for name, kind in columns:
        values = data[name]
        if kind in ("str", "enum"):
            strings = python_values(table, name, kind, values, dialect="parquet")
            array, type_ = pa.array(strings, pa.string()), pa.string()
        elif kind in ("int", "int?"):
            values = np.asarray(values, dtype=np.int64)
            array, type_ = pa.array(values, pa.int64(), mask=values < 0 if kind == "int?" else None), pa.int64()
        elif kind == "float?":
            array, type_ = pa.array(values, pa.float64(), mask=np.isnan(values)), pa.float64()
        elif kind == "bool":
            array, type_ = pa.array(np.asarray(values, dtype=bool)), pa.bool_()
        elif kind == "bool?":
            values = np.asarray(values)
            array, type_ = pa.array(values == 1, pa.bool_(), mask=values < 0), pa.bool_()
        else:
            values = np.asarray(values, dtype=np.int64)
            type_ = pa.timestamp("us", tz="UTC")
            array = pa.array(values * 1_000_000, pa.int64(), mask=values < 0).view(type_)
        arrays.append(array)
        fields.append(pa.field(name, type_))
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields))


def _chunks(plan: Plan, on_progress: Callable[[int], None] | None) -> Iterator[Chunk]:
    """Make the plan's chunks in order, number their orders and cases after the chunks before,
    report progress, and record the id ranges in the plan's manifest at the end."""
    opts = plan.opts
    order_id, supervision_id = opts.order_id_base, opts.supervision_id_base
    for number in range((opts.requests + opts.chunk - 1) // opts.chunk):
        chunk = make_chunk(plan, number)
        chunk.offset(order_id, supervision_id)
        order_id += len(chunk.orders["id"])
        supervision_id += len(chunk.supervisions["id"])
        yield chunk
        if on_progress is not None:
            on_progress(chunk.rows)
    plan.manifest["id_ranges"] = {
        "service_requests": [opts.request_id_base, opts.request_id_base + opts.requests - 1],
        "work_orders": [opts.order_id_base, order_id - 1],
        "supervisions": [opts.supervision_id_base, supervision_id - 1],
    }


def _count(counts: dict[str, int], chunk: Chunk) -> None:
    for key, value in chunk.counts.items():
        counts[key] = counts.get(key, 0) + value
    for code, name in enumerate(CHANNELS):
        key = f"channel_{name}"
        counts[key] = counts.get(key, 0) + int((chunk.requests["channel"] == code).sum())


def _manifest(plan: Plan, counts: dict[str, int], **extra: Any) -> dict[str, Any]:
    opts, city = plan.opts, plan.city
    return {
        "generator": "civicloop.importers.generator", "seed": opts.seed, "requests": opts.requests,
        "start": opts.start.isoformat(), "end": opts.end.isoformat(), "timezone": str(opts.tz),
        "horizon": opts.end.isoformat(), "chunk": opts.chunk, **extra,
        "city": {"districts": len(city.district_ids), "streets": len(city.street_ids),
                 "communities": len(city.comm_ids), "grids": len(city.grid_ids), "units": len(city.unit_rows),
                 "unit_code_prefix": PREFIX},
        "id_ranges": plan.manifest.get("id_ranges"), "counts": counts,
        "hotspots": plan.manifest["hotspots"], "surges": plan.manifest["surges"],
        "seasonal": plan.manifest["seasonal"], "quality": plan.manifest["quality"],
        "events": EVENTS_NOTE, "deadlines": DEADLINES_NOTE,
    }


def _options(requests: int, seed: int, start: date, months: int, settings: Settings, chunk: int,
             **bases: int) -> Options:
    if requests < 1 or months < 1 or chunk < 1:
        raise ValueError("requests, months and chunk must be at least 1")
    tz = settings.tz
    total = start.month - 1 + months
    end = date(start.year + total // 12, total % 12 + 1, min(start.day, 28))
    return Options(
        requests=requests, seed=seed, start=datetime(start.year, start.month, start.day, tzinfo=tz),
        end=datetime(end.year, end.month, end.day, tzinfo=tz), tz=tz, max_returns=settings.max_returns,
        max_reopens=settings.max_reopens, response_urgent=settings.response_seconds_urgent,
        response_default=settings.response_seconds_default, chunk=chunk, **bases,
    )


def _next_id(session: Session, column: Any) -> int:
    return int(session.scalar(select(func.coalesce(func.max(column), 0))) or 0) + 1


def generate_to_database(
    engine: Engine, *, requests: int, seed: int, settings: Settings, start: date = date(2024, 1, 1), months: int = 24,
    append: bool = False, chunk: int = CHUNK, manifest_path: Path | None = None, bulk: bool | None = None,
    on_progress: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """Generate the city (unless a ``GC-`` city is already there) and ``requests`` requests from
    ``start`` (a local date in ``settings.tz``) over ``months`` months into the database of
    ``engine``, whose schema must be migrated. Uses the catalogue in the database when it has leaf
    categories, else loads the built-in tree first (committed before the load). The requests, work
    orders and supervision cases are written in one transaction, ``chunk`` requests at a time;
    ``bulk`` (default: at least ``BULK_MIN`` requests and no fewer than already stored) drops and
    rebuilds secondary indexes and, on PostgreSQL, foreign keys around the load (on SQLite foreign
    keys are not enforced during a bulk load; the rows are consistent by construction).

    With ``append`` the ids continue after the largest stored ones and an existing ``GC-`` city is
    reused as it is (the seed then only draws the requests, the unit profiles and the road names).
    Returns the manifest (and writes it as JSON to ``manifest_path`` when given). ``on_progress``
    gets the number of requests of each chunk made. Raises ``DatabaseNotEmpty`` when the database
    already holds requests and ``append`` is false, ``ValueError`` for a count, span or chunk below
    1, and the driver's error if a write fails (after rolling the load back).
    """
    with Session(engine) as session, session.begin():
        existing = int(session.scalar(select(func.count()).select_from(ServiceRequest)) or 0)
        if existing and not append:
            raise DatabaseNotEmpty("数据库中已有诉求；追加请用 --append。The database already holds service requests: "
                                   "pass --append to add to them.")
        source = "database"
        if not leaves_of(_category_rows(session)):
            load_tree(session, csv_path=BUILTIN_TREE)
            source = "builtin"
    with Session(engine) as session, session.begin():
        leaves = leaves_of(_category_rows(session))
        calendar = load_calendar(session)
        units = [dict(r._mapping) for r in session.execute(select(OrgUnit.__table__).where(OrgUnit.code.like(
            PREFIX + "%")))]
        grids = [dict(r._mapping) for r in session.execute(select(Grid.__table__).where(Grid.code.like(PREFIX + "%")))]
        created_city = not units
        if created_city:
            units, grids = plan_city(seed, unit_id_base=_next_id(session, OrgUnit.id),
                                     grid_id_base=_next_id(session, Grid.id))
            session.execute(insert(OrgUnit.__table__), units)
            session.execute(insert(Grid.__table__), grids)
        opts = _options(requests, seed, start, months, settings, chunk,
                        request_id_base=_next_id(session, ServiceRequest.id),
                        order_id_base=_next_id(session, WorkOrder.id),
                        supervision_id_base=_next_id(session, Supervision.id))
    plan = build_plan(opts, city_from_rows(units, grids, seed=seed), leaves, calendar)
    counts: dict[str, int] = {}

    def counted() -> Iterator[Chunk]:
        """The plan's chunks, each added to ``counts`` as it passes."""
        for part in _chunks(plan, on_progress):
            _count(counts, part)
            yield part

    if bulk is None:
        bulk = requests >= BULK_MIN and requests >= existing
    load = _load_postgresql if engine.dialect.name == "postgresql" else _load_sqlite
    load(engine, counted(), bulk)
    manifest = _manifest(plan, counts, output=engine.url.render_as_string(hide_password=True),
                         categories_source=source, city_created=created_city)
    if manifest_path is not None:
        write_manifest(manifest, manifest_path)
    return manifest


def _category_rows(session: Session) -> list[dict[str, Any]]:
    return [dict(r._mapping) for r in session.execute(select(Category.__table__))]


def generate_to_parquet(
    directory: Path, *, requests: int, seed: int, settings: Settings, start: date = date(2024, 1, 1),
    months: int = 24, chunk: int = CHUNK, categories: Path = BUILTIN_TREE,
    on_progress: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """Generate a city and ``requests`` requests as Parquet files in ``directory`` (created; files
    of an earlier run are replaced): ``requests.parquet``, ``work_orders.parquet`` and
    ``supervisions.parquet`` with one row group per chunk, plus ``org_units``, ``grids`` and
    ``categories`` (from the ``categories`` CSV, ids 1.. as an empty database would give them) and
    ``manifest.json``. No database is touched; working days come from the calendar library.

    Columns and values are those of the tables (times as UTC ``timestamp[us]``). Returns the
    manifest. Raises ``ValueError`` for a count, span or chunk below 1.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    directory.mkdir(parents=True, exist_ok=True)
    category_rows, leaves = builtin_categories(categories)
    units, grids = plan_city(seed)
    opts = _options(requests, seed, start, months, settings, chunk)
    plan = build_plan(opts, city_from_rows(units, grids, seed=seed), leaves, WorkCalendar())
    small = {"org_units": units, "grids": [{**g, "geometry": json.dumps(g["geometry"])} for g in grids],
             "categories": category_rows}
    for name, rows in small.items():
        pq.write_table(pa.Table.from_pylist(rows), directory / f"{name}.parquet")
    writers: dict[str, Any] = {}
    counts: dict[str, int] = {}
    try:
        for part in _chunks(plan, on_progress):
            tables = _columns(part)
            for table, columns in TABLES:
                arrow = _arrow_table(table, columns, tables[table])
                if table not in writers:
                    name = "requests" if table == "service_requests" else table
                    writers[table] = pq.ParquetWriter(directory / f"{name}.parquet", arrow.schema,
                                                      compression="zstd")
                writers[table].write_table(arrow, row_group_size=max(len(arrow), 1))
            _count(counts, part)
    finally:
        for writer in writers.values():
            writer.close()
    manifest = _manifest(plan, counts, output=str(directory), categories_source=str(categories), city_created=True)
    write_manifest(manifest, directory / "manifest.json")
    return manifest


def write_manifest(manifest: dict[str, Any], path: Path) -> None:
    """Write ``manifest`` as indented UTF-8 JSON to ``path`` (its folder is created)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(manifest, ensure_ascii=False, indent=2, default=str), encoding="utf-8")
