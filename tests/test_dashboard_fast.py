"""The dashboards' fast path (``analytics.dashboard``: DuckDB over a Parquet snapshot plus the rows filed
since its watermark) gives the same numbers as plain SQL on the operational tables, on SQLite and
PostgreSQL, over a generated city of 6,000 requests (2024–2025, planted hotspots)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from civicloop.analytics import dashboard
from civicloop.analytics.metrics import parse_month, three_rates
from civicloop.core.db import make_engine, session_factory
from civicloop.core.migrate import upgrade
from civicloop.core.settings import Settings
from civicloop.importers.generator import generate_to_database
from civicloop.requests.models import ServiceRequest
from tests.conftest import drop_database, own_database
from tests.helpers import make_request

pytestmark = pytest.mark.xdist_group("generator")

SHANGHAI = ZoneInfo("Asia/Shanghai")
HORIZON = datetime(2026, 1, 1, tzinfo=SHANGHAI)
PG_URL = os.environ.get("CIVICLOOP_TEST_POSTGRES_URL")
BACKENDS = ["sqlite"] + (["postgresql"] if PG_URL else [])


def _settings() -> Settings:
    return Settings(_env_file=None)  # type: ignore[call-arg]


@pytest.fixture(scope="module", params=BACKENDS)
def generated(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
              ) -> Iterator[tuple[Engine, str, dict[str, Any]]]:
    """6,000 generated requests over 2024–2025 in a database of this module's own, once per backend."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('dash') / 'dash.db'}"
    else:
        assert PG_URL
        url = own_database(PG_URL, "_dash")
    upgrade(url)
    engine = make_engine(url)
    try:
        manifest = generate_to_database(engine, requests=6_000, seed=11, settings=_settings(), start=date(2024, 1, 1),
                                        months=24, chunk=2_000)
        yield engine, url, manifest
    finally:
        engine.dispose()
        if request.param == "postgresql":
            assert PG_URL
            drop_database(PG_URL, url)


def _ends(manifest: dict[str, Any]) -> list[datetime]:
    """Window ends: every 61 days across the span, and the day after each planted hotspot's window."""
    ends = [datetime(2024, 2, 1, tzinfo=UTC) + timedelta(days=61 * i) for i in range(12)]
    for spot in manifest["hotspots"]:
        last = datetime.fromisoformat(spot["window_end"])
        ends.append((last if last.tzinfo else last.replace(tzinfo=SHANGHAI)) + timedelta(days=1))
    return ends


def test_a_full_snapshot_answers_as_plain_sql(generated: tuple[Engine, str, dict[str, Any]], tmp_path: Path) -> None:
    engine, url, manifest = generated
    meta = dashboard.write_snapshot(url, tmp_path / "snap", now=HORIZON + timedelta(days=30))
    snap = dashboard.open_snapshot(tmp_path / "snap")
    assert snap is not None and meta["requests"] == 6_000
    found_candidates = used_rollup = 0
    with Session(engine) as s:
        for end in _ends(manifest):
            start = end - timedelta(days=30)
            plain = dashboard.category_district_counts_sql(s, start=start, end=end)
            assert dashboard.category_district_counts(s, start=start, end=end, snapshot=snap) == plain
            assert sum(plain.values()) > 0
            cells_sql = dashboard.hotspot_cells_sql(s, end=end)
            cells_fast = dashboard.hotspot_cells_fast(s, snap, end=end)
            assert sorted(cells_fast[0]) == sorted(cells_sql[0]) and cells_fast[1] == cells_sql[1]
            found = dashboard.hotspot_candidates(s, end=end, snapshot=snap)
            assert found == dashboard.judge_cells(*cells_sql, min_requests=3)
            found_candidates += len(found)
        for month in ("2024-03", "2024-11", "2025-06", "2025-12"):
            start, end = parse_month(month, SHANGHAI)
            plain_units = dashboard.unit_counts_sql(s, start=start, end=end, now=HORIZON)
            assert plain_units and dashboard.unit_counts_fast(snap, start=start, end=end, now=HORIZON) == plain_units
            fast = dashboard.unit_counts(s, start=start, end=end, now=HORIZON, snapshot=snap)
            assert fast is not None and {uid: c for uid, (_, _, c) in fast.items()} == plain_units
            later = HORIZON + timedelta(days=90)  # after the watermark: the monthly rollup answers
            assert dashboard.month_counts(snap, start=start, end=end, now=later) == \
                dashboard.unit_counts_sql(s, start=start, end=end, now=later)
            rolled = dashboard.month_counts(snap, start=start, end=end, now=HORIZON)
            assert rolled is None or rolled == plain_units
            used_rollup += rolled is not None
    assert found_candidates >= 3  # the planted hotspots (at least) are candidates
    assert used_rollup >= 3  # all but (perhaps) December, whose orders may still be pending at HORIZON


def test_rows_filed_after_the_watermark_are_counted_live(generated: tuple[Engine, str, dict[str, Any]],
                                                        tmp_path: Path) -> None:
    engine, url, _ = generated
    taken = datetime(2025, 3, 5, 12, tzinfo=UTC)
    dashboard.write_snapshot(url, tmp_path / "half", now=taken)
    snap = dashboard.open_snapshot(tmp_path / "half")
    assert snap is not None and snap.watermark == taken - dashboard.MARGIN
    with Session(engine) as s:
        filed_after = s.scalar(select(ServiceRequest.id).where(ServiceRequest.created_at >= snap.watermark).limit(1))
        assert filed_after is not None  # the snapshot does not hold the whole history
        for end in (taken - timedelta(days=3), taken + timedelta(days=2), taken + timedelta(days=20)):
            start = end - timedelta(days=30)
            assert dashboard.category_district_counts(s, start=start, end=end, snapshot=snap) == \
                dashboard.category_district_counts_sql(s, start=start, end=end)
            assert dashboard.hotspot_candidates(s, end=end, snapshot=snap) == dashboard.judge_cells(
                *dashboard.hotspot_cells_sql(s, end=end), min_requests=3)
        # a month that ends after the watermark (or within SETTLE of it) is not read from the snapshot
        start, end = parse_month("2025-03", SHANGHAI)
        assert dashboard.unit_counts(s, start=start, end=end, now=HORIZON, snapshot=snap) is None
        start, end = parse_month("2025-02", SHANGHAI)
        assert not dashboard.settled(snap, end)  # ends 2025-02-28 16:00 UTC, within 7 days of 2025-03-05
        start, end = parse_month("2025-01", SHANGHAI)
        fast = dashboard.unit_counts(s, start=start, end=end, now=HORIZON, snapshot=snap)
        assert fast is not None
        plain = dashboard.unit_counts_sql(s, start=start, end=end, now=HORIZON)
        assert {u: c for u, (_, _, c) in fast.items()} == plain


def test_monthly_rollup_in_a_zone_with_daylight_saving(generated: tuple[Engine, str, dict[str, Any]],
                                                      tmp_path: Path) -> None:
    # Europe/Berlin months start at +01:00 in winter and +02:00 in summer: the rollup places rows in
    # months by an ASOF join instead of whole local days, and must still agree with plain SQL
    engine, url, _ = generated
    dashboard.write_snapshot(url, tmp_path / "berlin", now=HORIZON + timedelta(days=30), timezone="Europe/Berlin")
    snap = dashboard.open_snapshot(tmp_path / "berlin")
    assert snap is not None
    later = HORIZON + timedelta(days=90)
    with Session(engine) as s:
        for month in ("2024-03", "2024-07", "2025-10"):
            start, end = parse_month(month, ZoneInfo("Europe/Berlin"))
            rolled = dashboard.month_counts(snap, start=start, end=end, now=later)
            assert rolled and rolled == dashboard.unit_counts_sql(s, start=start, end=end, now=later)
        start, end = parse_month("2024-07", SHANGHAI)  # not a month of the snapshot's zone: no rollup
        assert dashboard.month_counts(snap, start=start, end=end, now=later) is None


def test_three_rates_read_the_snapshot_when_configured(generated: tuple[Engine, str, dict[str, Any]], tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    engine, url, _ = generated
    settings = _settings()
    with Session(engine) as s:
        plain = three_rates(s, month="2025-06", level="street", settings=settings, now=HORIZON)
        monkeypatch.setenv(dashboard.SNAPSHOT_ENV, str(tmp_path / "configured"))
        assert dashboard.snapshot_for(s) is None  # configured but not written yet: plain SQL
        dashboard.write_snapshot(url, tmp_path / "configured", now=HORIZON)
        snap = dashboard.snapshot_for(s)
        assert snap is not None and dashboard.settled(snap, parse_month("2025-06", SHANGHAI)[1])
        assert three_rates(s, month="2025-06", level="street", settings=settings, now=HORIZON) == plain
        assert len(plain) > 3


def test_snapshot_folder_beside_a_sqlite_file(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(dashboard.SNAPSHOT_ENV, raising=False)
    assert dashboard.snapshot_dir("sqlite:////srv/city/civicloop.db") == Path("/srv/city/civicloop.snapshot")
    assert dashboard.snapshot_dir("postgresql://u@h/d") is None
    monkeypatch.setenv(dashboard.SNAPSHOT_ENV, "/data/snap")
    assert dashboard.snapshot_dir("postgresql://u@h/d") == Path("/data/snap")


def test_candidates_are_judged_on_integers() -> None:
    # window total 10, baseline total 80 in the category: e = baseline / 8
    totals = {5: (10, 80)}
    # 3 requests, baseline 0: e = 0 → candidate; 4 with baseline 8 (e = 1, bar 1 + 3 = 4): not (needs > 4)
    cells = [(1, 5, 3, 0), (2, 5, 4, 8), (3, 5, 5, 8), (4, 5, 2, 0)]
    found = dashboard.judge_cells(cells, totals, min_requests=3)
    assert [(c.grid_id, c.requests, c.expected) for c in found] == [(3, 5, 1.0), (1, 3, 0.0)]
    with pytest.raises(ValueError):
        dashboard._windows(datetime(2025, 1, 1, tzinfo=UTC), 0, 8)


def test_dashboard_api_same_with_and_without_snapshot(client: Any, db: Engine, city: dict[str, int], tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(dashboard.SNAPSHOT_ENV, str(tmp_path / "api-snap"))
    now = datetime.now(UTC)
    with session_factory(db)() as s:
        for days in (1, 2, 40):
            make_request(s, now=now - timedelta(days=days), category_id=city["cat:城乡建设/市政设施/路灯不亮"])
        s.commit()
    plain = client.get("/api/v1/dashboard")
    assert plain.status_code == 200, plain.text
    assert plain.json()["source"] == "sql"
    rows = plain.json()["counts"]["rows"]
    assert [(r["category"], r["requests"]) for r in rows] == [("城乡建设/市政设施/路灯不亮", 2)]
    assert sum(r["requests"] for r in plain.json()["counts"]["rows"]) == 2  # the one 40 days ago is outside
    dashboard.write_snapshot(db.url.render_as_string(hide_password=False), tmp_path / "api-snap")
    with session_factory(db)() as s:
        make_request(s)  # filed after the snapshot: counted live
        s.commit()
    fast = client.get("/api/v1/dashboard").json()
    assert fast["source"] == "snapshot"
    assert sum(r["requests"] for r in fast["counts"]["rows"]) == 3


def test_analyze_snapshot_needs_a_folder_for_postgresql(monkeypatch: pytest.MonkeyPatch) -> None:
    import typer

    from civicloop.cli.analyze import refresh_snapshot

    monkeypatch.delenv(dashboard.SNAPSHOT_ENV, raising=False)
    with pytest.raises(typer.Exit) as exited:
        refresh_snapshot("postgresql://u@127.0.0.1:1/none")
    assert exited.value.exit_code == 2
