"""The synthetic city generator: determinism, the loop's state machine, the planted patterns read
back with plain SQL, seasonality, the three rates on generated data, the CLI and Parquet.

Runs on every backend of the ``engine`` fixture (SQLite, and PostgreSQL when
``CIVICLOOP_TEST_POSTGRES_URL`` is set). The shared data set (``generated``) is made once per backend
in a database of this module's own, built by the migrations and dropped afterwards.
"""

from __future__ import annotations

import json
import os
from collections import Counter, defaultdict
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from itertools import pairwise
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import Engine, func, inspect, select, text
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from civicloop.analytics.metrics import three_rates, unit_counts
from civicloop.catalog.service import BUILTIN_TREE
from civicloop.core.calendar import WorkCalendar
from civicloop.core.db import make_engine
from civicloop.core.migrate import upgrade
from civicloop.core.settings import Settings
from civicloop.importers.generator import generate_to_database, generate_to_parquet
from civicloop.importers.generator_city import builtin_categories, city_from_rows, plan_city
from civicloop.importers.generator_plan import Options, build_plan
from civicloop.importers.generator_rows import make_chunk
from civicloop.org.models import OrgUnit
from civicloop.requests.deadlines import resolution_due
from civicloop.requests.models import ServiceRequest, Supervision, WorkOrder
from civicloop.requests.rules import REQUEST_ALLOWED, WORK_ORDER_ALLOWED
from tests.conftest import drop_database, empty_tables, own_database

pytestmark = pytest.mark.xdist_group("generator")

SHANGHAI = ZoneInfo("Asia/Shanghai")
SEED, N, CHUNK = 7, 12_000, 5_000
START = date(2024, 1, 1)
HORIZON = datetime(2026, 1, 1, tzinfo=SHANGHAI)
ACTIVE = {"pending", "acknowledged", "extension_requested", "replied"}
PG_URL = os.environ.get("CIVICLOOP_TEST_POSTGRES_URL")
BACKENDS = ["sqlite"] + (["postgresql"] if PG_URL else [])


def _settings() -> Settings:
    return Settings(_env_file=None)  # type: ignore[call-arg]


def _run(engine: Engine, **kw: Any) -> dict[str, Any]:
    args: dict[str, Any] = {"requests": N, "seed": SEED, "settings": _settings(), "start": START, "months": 24,
                            "chunk": CHUNK, **kw}
    return generate_to_database(engine, **args)


@pytest.fixture(scope="module", params=BACKENDS)
def generated(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
              ) -> Iterator[tuple[Engine, dict[str, Any]]]:
    """N requests over 2024–2025 (three chunks) in a database of this module's own (so the tests
    on the ``db`` fixture, which empty their tables, never see it), once per backend."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('generated') / 'generated.db'}"
    else:
        assert PG_URL
        url = own_database(PG_URL, "_gen")
    upgrade(url)
    engine = make_engine(url)
    try:
        yield engine, _run(engine)
    finally:
        engine.dispose()
        if request.param == "postgresql":
            assert PG_URL
            drop_database(PG_URL, url)


def _rows(engine: Engine, table: Any) -> list[dict[str, Any]]:
    with Session(engine) as s:
        return [dict(r._mapping) for r in s.execute(select(table).order_by(table.c.id))]


def _dump(engine: Engine) -> list[list[dict[str, Any]]]:
    return [_rows(engine, t.__table__) for t in (ServiceRequest, WorkOrder, Supervision)]


def _plan(seed: int, requests: int = 6_000) -> Any:
    _, leaves = builtin_categories(BUILTIN_TREE)
    units, grids = plan_city(seed)
    opts = Options(requests=requests, seed=seed, start=datetime(2024, 1, 1, tzinfo=SHANGHAI), end=HORIZON,
                   tz=SHANGHAI, chunk=2_000)
    return build_plan(opts, city_from_rows(units, grids, seed=seed), leaves, WorkCalendar())


def _same(a: Any, b: Any) -> bool:
    """Whether two chunks hold the same columns (numpy arrays compared by their values)."""

    def plain(chunk: Any) -> str:
        tables = (chunk.requests, chunk.orders, chunk.supervisions)
        return json.dumps(tables, default=lambda v: v.tolist(), sort_keys=True)

    return plain(a) == plain(b)


def test_chunks_are_deterministic_and_seeded() -> None:
    """Pure generation: the same seed and chunk give identical columns; another seed does not."""
    first, again, other = make_chunk(_plan(1), 1), make_chunk(_plan(1), 1), make_chunk(_plan(2), 1)
    assert _same(first, again)
    assert not _same(first, other)
    assert first.requests["title"] != other.requests["title"]


def test_same_seed_same_rows_in_the_database(db: Engine) -> None:
    """Three runs: seed 7 twice (identical rows, ids included), then seed 8 (different rows)."""
    _run(db, requests=2_000, chunk=800)
    first = _dump(db)
    empty_tables(db)
    _run(db, requests=2_000, chunk=800)
    assert _dump(db) == first
    empty_tables(db)
    _run(db, requests=2_000, chunk=800, seed=8)
    other = _dump(db)
    assert len(other[0]) == 2_000
    assert [r["title"] for r in other[0]] != [r["title"] for r in first[0]]


def test_database_and_parquet_hold_the_same_rows(db: Engine, tmp_path: Path) -> None:
    """On an empty database the ids of the catalogue and the city are those Parquet uses, so the
    same seed gives the same rows in both."""
    import pyarrow.parquet as pq

    _run(db, requests=2_000, chunk=1_000)
    generate_to_parquet(tmp_path, requests=2_000, seed=SEED, settings=_settings(), start=START, chunk=1_000)
    stored = _rows(db, ServiceRequest.__table__)
    written = pq.read_table(tmp_path / "requests.parquet").to_pylist()
    for column in ("id", "title", "description", "grid_id", "category_id", "status", "lead_unit_id", "created_at",
                   "closed_at", "support_count"):
        assert [r[column] for r in stored] == [r[column] for r in written], column
    orders = pq.read_table(tmp_path / "work_orders.parquet")
    assert orders.num_rows == len(_rows(db, WorkOrder.__table__))


def _path_ok(path: list[str], allowed: dict[str, frozenset[str]]) -> bool:
    return all(b in allowed.get(a, frozenset()) for a, b in pairwise(path))


def _order_path(o: dict[str, Any]) -> list[str]:
    """The statuses an order went through, rebuilt from its timestamps."""
    path = ["pending"]
    if o["returned_at"] is not None:
        return [*path, "returned"]
    if o["acknowledged_at"] is not None:
        path.append("acknowledged")
    if o["extension_status"] == "approved":
        path += ["extension_requested", "acknowledged"]
    elif o["extension_status"] == "pending":
        path.append("extension_requested")
    if o["replied_at"] is not None:
        path.append("replied")
    if o["status"] in ("closed", "reopened"):
        path.append(o["status"])
    return path


def test_every_row_follows_the_state_machine(generated: tuple[Engine, dict[str, Any]]) -> None:
    engine, manifest = generated
    settings = _settings()
    requests = _rows(engine, ServiceRequest.__table__)
    orders = _rows(engine, WorkOrder.__table__)
    cases = _rows(engine, Supervision.__table__)
    units = {u["id"]: u for u in _rows(engine, OrgUnit.__table__)}
    by_request: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for order in orders:
        by_request[order["request_id"]].append(order)
    ids = {r["id"]: r for r in requests}
    duplicates = Counter(r["duplicate_of_id"] for r in requests if r["duplicate_of_id"] is not None)
    dissatisfied_cases = {c["work_order_id"] for c in cases if c["reason"] == "dissatisfied"}
    statuses = Counter(r["status"] for r in requests)
    assert all(statuses[s] > 0 for s in ("closed", "rejected", "dispatched", "in_progress", "replied")), statuses
    assert {"duplicate", "no_content"} <= {r["reject_reason"] for r in requests}
    assert all(any(o["status"] == s for o in orders) for s in ("returned", "reopened"))
    assert any(r["fallback"] for r in requests) and any(o["role"] == "assisting" for o in orders)
    horizon = HORIZON
    for r in requests:
        status, mine = r["status"], by_request[r["id"]]
        leads = [o for o in mine if o["role"] == "lead"]
        active = [o for o in leads if o["status"] in ACTIVE]
        assert r["support_count"] == duplicates.get(r["id"], 0)
        if status in ("submitted", "rejected"):
            assert not mine
            assert (r["reject_reason"] is not None) == (status == "rejected")
            assert (r["closed_at"] is not None) == (status == "rejected")
            if r["reject_reason"] == "duplicate":
                original = ids[r["duplicate_of_id"]]
                assert original["id"] < r["id"] and original["status"] != "rejected"
                assert (original["grid_id"], original["category_id"]) == (r["grid_id"], r["category_id"])
            continue
        assert r["reject_reason"] is None and r["duplicate_of_id"] is None
        assert [o["round"] for o in leads] == list(range(1, len(leads) + 1))
        assert all(o["status"] in ("returned", "reopened") for o in leads[:-1])
        assert sum(o["status"] == "returned" for o in leads) == r["return_count"]
        assert sum(o["status"] == "reopened" for o in leads) == r["reopen_count"]
        if r["return_count"] >= settings.max_returns:
            assert r["fallback"] and leads[-1]["fallback"] and units[leads[-1]["unit_id"]]["kind"] == "district"
        if status == "accepted":
            assert not active and r["lead_unit_id"] is None and (not leads or leads[-1]["status"] == "returned")
        elif status == "closed":
            last = leads[-1]
            assert last["status"] == "closed" and last["callback_at"] == r["closed_at"] == last["closed_at"]
            assert last["resolved"] is not None and last["satisfaction"] is not None
            assert all(o["status"] in ("closed", "returned", "reopened") for o in mine)
            good = last["resolved"] and last["satisfaction"] != "dissatisfied"
            if not good:
                assert r["reopen_count"] == settings.max_reopens
                assert last["id"] in dissatisfied_cases
        else:
            expected = {"dispatched": {"pending"}, "in_progress": {"acknowledged", "extension_requested"},
                        "replied": {"replied"}}[status]
            assert len(active) == 1 and active[0]["status"] in expected and active[0] is leads[-1]
            assert r["lead_unit_id"] == active[0]["unit_id"] and active[0]["callback_at"] is None
        # the request's own path through the state machine, rebuilt from its lead orders
        path = ["submitted", "accepted"]
        for o in leads:
            path.append("dispatched")
            if o["status"] == "returned":
                path.append("accepted")
                continue
            steps = {"acknowledged": "in_progress", "replied": "replied"}
            path += [steps[s] for s in _order_path(o) if s in steps]  # a reopen dispatches the next round
        path += ["closed"] if status == "closed" else []
        assert _path_ok(path, REQUEST_ALLOWED), (r["id"], path)
        assert path[-1] == status, (r["id"], path)
    overdue_cases = {c["work_order_id"] for c in cases if c["reason"] == "overdue"}
    calendar = WorkCalendar()
    for i, o in enumerate(orders):
        assert _path_ok(_order_path(o), WORK_ORDER_ALLOWED), o
        window = settings.response_seconds_urgent if o["deadline_tier"] == "2h" else settings.response_seconds_default
        assert o["response_due_at"] == o["dispatched_at"] + timedelta(seconds=window)
        if o["acknowledged_at"] is not None and o["extension_status"] != "approved" and i % 7 == 0:
            due, provisional = resolution_due(o["deadline_tier"], o["acknowledged_at"], calendar, SHANGHAI)
            assert (o["due_at"], o["due_provisional"]) == (due, provisional)
        end_pending = o["acknowledged_at"] or o["returned_at"] or o["closed_at"] or horizon
        end_working = o["replied_at"] or o["closed_at"] or horizon
        late = end_pending > o["response_due_at"] or (
            o["acknowledged_at"] is not None and end_working > o["due_at"])
        assert o["overdue"] == late, o
        assert o["overdue"] == (o["id"] in overdue_cases)
    assert manifest["counts"]["work_orders"] == len(orders)
    assert manifest["id_ranges"]["service_requests"] == [1, N]


def _window(spot: dict[str, Any]) -> tuple[datetime, datetime]:
    return datetime.fromisoformat(spot["window_start"]), datetime.fromisoformat(spot["window_end"])


def test_planted_hotspots_are_found_with_sql(generated: tuple[Engine, dict[str, Any]]) -> None:
    engine, manifest = generated
    assert len(manifest["hotspots"]) == 3
    sr = ServiceRequest
    with Session(engine) as s:
        for spot in manifest["hotspots"]:
            start, end = _window(spot)
            groups = s.execute(
                select(sr.grid_id, sr.category_id, func.count(), func.min(sr.created_at), func.max(sr.created_at))
                .where(sr.address == spot["address"]).group_by(sr.grid_id, sr.category_id)).all()
            assert len(groups) == 1
            grid_id, category_id, count, first, last = groups[0]
            assert (grid_id, category_id, count) == (spot["grid_id"], spot["category_id"], spot["count"])
            assert start <= first.astimezone(SHANGHAI) and last.astimezone(SHANGHAI) < end
            top = s.execute(
                select(sr.address, func.count().label("n")).where(sr.created_at >= start, sr.created_at < end)
                .group_by(sr.grid_id, sr.category_id, sr.address).order_by(text("n DESC")).limit(1)).one()
            assert top.address == spot["address"]
            original = s.get(ServiceRequest, spot["first_request_id"])
            assert original is not None and original.address == spot["address"]
            assert original.support_count == spot["duplicates_rejected"] == s.scalar(
                select(func.count()).where(sr.duplicate_of_id == original.id))


def _local_month(moment: datetime) -> str:
    return f"{moment.astimezone(SHANGHAI):%Y-%m}"


def test_planted_surges_are_found_with_sql(generated: tuple[Engine, dict[str, Any]]) -> None:
    engine, manifest = generated
    assert len(manifest["surges"]) == 2
    sr = ServiceRequest
    with Session(engine) as s:
        for surge in manifest["surges"]:
            cells: Counter[tuple[int, str]] = Counter()
            for grid_id, created in s.execute(select(sr.grid_id, sr.created_at).where(
                    sr.category_id == surge["category_id"])):
                cells[(grid_id, _local_month(created))] += 1
            mine = cells[(surge["grid_id"], surge["month"])]
            assert mine >= surge["planted"]
            in_month = [n for (g, m), n in cells.items() if m == surge["month"] and g != surge["grid_id"]]
            assert mine > 3 * max(in_month, default=0)
            others = [cells[(surge["grid_id"], m)] for m in {m for _, m in cells} if m != surge["month"]]
            assert mine > 10 * (sum(others) / max(len(others), 1) + 0.5)


def test_heating_complaints_come_in_winter(generated: tuple[Engine, dict[str, Any]]) -> None:
    engine, manifest = generated
    heating = manifest["seasonal"]["heating"]["category_ids"]
    noise = manifest["seasonal"]["noise"]["category_ids"]
    with Session(engine) as s:
        def months(ids: list[int]) -> Counter[int]:
            return Counter(c.astimezone(SHANGHAI).month for c in s.scalars(
                select(ServiceRequest.created_at).where(ServiceRequest.category_id.in_(ids))))

        winter = months(heating)
        assert sum(winter[m] for m in (11, 12, 1, 2, 3)) > 0.9 * sum(winter.values()) > 100
        loud = months(noise)
        summer = sum(loud[m] for m in (6, 7, 8)) / 3
        rest = sum(loud[m] for m in range(1, 13) if m not in (6, 7, 8)) / 9
        assert summer > 1.4 * rest


def test_three_rates_differ_by_unit(generated: tuple[Engine, dict[str, Any]]) -> None:
    engine, manifest = generated
    settings = _settings()
    with Session(engine) as s:
        rows = three_rates(s, month="2025-06", level="unit", settings=settings, now=HORIZON, min_cases=8)
        ranked = [r for r in rows if r.rank is not None]
        assert len(ranked) >= 5
        responses = [r.response_rate for r in ranked if r.response_rate is not None]
        assert max(responses) - min(responses) > 0.1
        assert len({round(r.composite or 0, 3) for r in ranked}) > 3
        streets = three_rates(s, month="2025-06", level="street", settings=settings, now=HORIZON)
        assert streets
        whole = unit_counts(s, start=datetime(2024, 1, 1, tzinfo=SHANGHAI), end=HORIZON, now=HORIZON)
    quality = manifest["quality"]
    laggard, model = whole[quality["laggard_unit_id"]][2], whole[quality["model_unit_id"]][2]
    assert laggard.due > 20 and model.due > 20
    assert laggard.responded / laggard.due < model.responded / model.due - 0.3
    assert laggard.dissatisfied / laggard.called_back > model.dissatisfied / model.called_back + 0.1


def test_bulk_load_rebuilds_indexes_and_keys(db: Engine) -> None:
    """A bulk load drops and rebuilds secondary indexes (and foreign keys) inside its transaction:
    afterwards the schema is what the migrations built, and the rows satisfy every foreign key."""

    def schema() -> tuple[Any, ...]:
        found = inspect(db)
        tables = ("service_requests", "work_orders", "supervisions")
        return (sorted((t, i["name"], tuple(i["column_names"])) for t in tables for i in found.get_indexes(t)),
                sorted((t, f["name"]) for t in tables for f in found.get_foreign_keys(t)))

    before = schema()
    manifest = _run(db, requests=2_000, chunk=1_000, bulk=True)
    assert schema() == before
    with db.connect() as conn:
        if db.dialect.name == "sqlite":
            assert conn.exec_driver_sql("PRAGMA foreign_key_check").all() == []
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        else:
            assert conn.scalar(text("SELECT count(*) FROM pg_constraint WHERE contype = 'f' AND NOT convalidated")) == 0
    assert manifest["counts"]["requests_closed"] > 1_500


def test_cli_refuses_a_database_with_requests_unless_append(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import typer

    from civicloop.cli.generate import generate
    from civicloop.core.settings import get_settings

    app = typer.Typer()
    app.command()(generate)
    url = f"sqlite:///{tmp_path / 'city.db'}"
    monkeypatch.setenv("CIVICLOOP_DATABASE_URL", url)
    get_settings.cache_clear()
    runner = CliRunner()
    try:
        first = runner.invoke(app, ["--requests", "600", "--seed", "3", "--months", "3"])
        assert first.exit_code == 0, first.output
        manifest = json.loads((tmp_path / "city.generate.json").read_text(encoding="utf-8"))
        assert manifest["requests"] == 600 and manifest["city_created"]
        again = runner.invoke(app, ["--requests", "600", "--seed", "3"])
        assert again.exit_code == 2 and "--append" in again.output
        more = runner.invoke(app, ["--requests", "400", "--seed", "4", "--append", "--start", "2024-04-01",
                                   "--manifest", str(tmp_path / "more.json")])
        assert more.exit_code == 0, more.output
        appended = json.loads((tmp_path / "more.json").read_text(encoding="utf-8"))
        assert appended["id_ranges"]["service_requests"] == [601, 1000] and not appended["city_created"]
        bad = runner.invoke(app, ["--requests", "10", "--seed", "1", "--start", "2024-13-01"])
        assert bad.exit_code == 2
    finally:
        get_settings.cache_clear()
    from civicloop.core.db import make_engine

    engine = make_engine(url)
    with Session(engine) as s:
        assert s.scalar(select(func.count()).select_from(ServiceRequest)) == 1_000
        assert s.scalar(select(func.count()).select_from(OrgUnit).where(OrgUnit.code.like("GC-%"))) == \
            manifest["city"]["units"]
    engine.dispose()


def test_parquet_in_row_groups(tmp_path: Path) -> None:
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    manifest = generate_to_parquet(tmp_path, requests=50_000, seed=11, settings=_settings(), chunk=20_000)
    requests = pq.ParquetFile(tmp_path / "requests.parquet")
    assert requests.metadata.num_rows == 50_000 and requests.metadata.num_row_groups == 3
    table = requests.read(columns=["id", "address", "grid_id", "category_id", "created_at", "status"])
    for spot in manifest["hotspots"]:
        start, end = _window(spot)
        hits = table.filter(pc.equal(table["address"], spot["address"]))
        assert hits.num_rows == spot["count"]
        assert set(hits["grid_id"].to_pylist()) == {spot["grid_id"]}
        assert start <= pc.min(hits["created_at"]).as_py() and pc.max(hits["created_at"]).as_py() < end
    orders = pq.read_table(tmp_path / "work_orders.parquet", columns=["request_id", "role", "status"])
    assert orders.num_rows == manifest["counts"]["work_orders"]
    assert pc.all(pc.is_in(orders["request_id"], table["id"])).as_py()
    assert json.loads((tmp_path / "manifest.json").read_text(encoding="utf-8"))["seed"] == 11
    for name in ("org_units", "grids", "categories", "supervisions"):
        assert pq.read_metadata(tmp_path / f"{name}.parquet").num_rows > 0
