"""Surges (高频与季节性): hand-made ``reqs`` tables with hand-checked answers, and the generator's planted
surges found again."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import date, datetime
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pytest

from civicloop.analytics.sources import COLUMNS
from civicloop.analytics.surges import find_surges, month_runs, seasonal_months

NOISE = "环境保护/噪声污染/商业噪声"
PARKING = "交通运输/道路交通/违章停车"
LIGHT = "城乡建设/市政设施/路灯不亮"
TYPES = {"id": pa.int64(), "created_at": pa.timestamp("us"), "replied_at": pa.timestamp("us"),
         "district_id": pa.int64(), "street_id": pa.int64(), "grid_id": pa.int64(), "support_count": pa.int32()}


def reqs_table(rows: list[dict[str, Any]]) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB whose table ``reqs`` holds ``rows`` (columns of ``sources.COLUMNS``; missing ones
    are NULL, ids are numbered when absent)."""
    data: dict[str, list[Any]] = {c: [] for c in COLUMNS}
    for i, row in enumerate(rows, start=1):
        for c in COLUMNS:
            data[c].append(row.get(c, i if c == "id" else None))
    conn = duckdb.connect()
    conn.register("rows_arrow", pa.table({c: pa.array(data[c], type=TYPES.get(c, pa.string())) for c in COLUMNS}))
    conn.execute("CREATE TABLE reqs AS SELECT * FROM rows_arrow")
    conn.unregister("rows_arrow")
    return conn


def month_rows(category: str, grid: str, month: date, n: int, street: str = "望湖街道") -> list[dict[str, Any]]:
    """``n`` requests of one category in one grid spread over the days of one month (local 10:00)."""
    return [{"category": category, "grid": grid, "place": grid, "street": street, "district": "云河区",
             "title": f"{category.rsplit('/', 1)[-1]}", "created_at": datetime(month.year, month.month, 1 + i % 27, 10),
             "citizen": f"c{grid}{month}{category}{i}"} for i in range(n)]


def months(first: date, count: int) -> list[date]:
    out, y, m = [], first.year, first.month
    for _ in range(count):
        out.append(date(y, m, 1))
        y, m = (y + 1, 1) if m == 12 else (y, m + 1)
    return out


@pytest.fixture(scope="module")
def city() -> duckdb.DuckDBPyConnection:
    """Three years (2022–2024) of six grids: street lights flat (3 a month), parking flat (2 a month) but
    20 in grid 3 in 2023-10, noise flat (3) except grid 甲 where it is 14 a month every June–August."""
    rows: list[dict[str, Any]] = []
    grids = ["甲社区1号网格", *(f"乙社区{i}号网格" for i in range(2, 7))]
    for m in months(date(2022, 1, 1), 36):
        for k, grid in enumerate(grids):
            rows += month_rows(LIGHT, grid, m, 3)
            rows += month_rows(PARKING, grid, m, 20 if (k == 2 and m == date(2023, 10, 1)) else 2)
            rows += month_rows(NOISE, grid, m, 14 if (k == 0 and m.month in (6, 7, 8)) else 3)
    return reqs_table(rows)


def test_a_seasonal_pattern_is_flagged_in_its_season_and_not_out_of_it(city: duckdb.DuckDBPyConnection) -> None:
    findings = find_surges(city)
    noise_at_a = [f for f in findings if f.category == NOISE and f.place == "甲社区1号网格"]
    assert [f.details["sort"] for f in noise_at_a] == ["seasonal_place"]
    seasonal = noise_at_a[0]
    assert seasonal.details["months"] == [6, 7, 8] and seasonal.details["years"] == [2022, 2023, 2024]
    assert "每年6–8月高发" in seasonal.summary and "建议5月前" in seasonal.summary
    # evidence: the latest season's requests, 3 × 14, all in June–August 2024
    assert len(seasonal.request_ids) == 42
    assert seasonal.start >= datetime(2024, 6, 1) and seasonal.end < datetime(2024, 9, 1)
    # summers are the season, not anomalies; no month outside June–August is flagged for noise anywhere
    for f in findings:
        if f.category == NOISE:
            assert f.details["sort"] != "anomalous"
            assert set(f.details["months"]) <= {6, 7, 8}


def test_a_one_off_surge_is_flagged_and_flat_series_are_not(city: duckdb.DuckDBPyConnection) -> None:
    findings = find_surges(city)
    parking = [f for f in findings if f.category == PARKING]
    assert len(parking) == 1
    surge = parking[0]
    assert surge.details["sort"] == "anomalous" and surge.details["period_label"] == "2023-10"
    assert surge.place == "乙社区3号网格" and surge.details["count"] == 20
    assert 1.5 < surge.details["expected"] < 2.5  # the grid's own 2 a month, its own cell left out
    assert len(surge.request_ids) == 20 and surge.people == 20
    assert surge.summary.startswith("望湖街道乙社区3号网格违章停车诉求2023年10月激增：20件")
    assert not [f for f in findings if f.category == LIGHT]
    assert [f.rank for f in findings] == list(range(1, len(findings) + 1))
    assert findings[0].details["sort"] == "anomalous"  # act now before plan ahead


def test_keys_are_stable_and_the_period_is_checked(city: duckdb.DuckDBPyConnection) -> None:
    assert [f.key for f in find_surges(city)] == [f.key for f in find_surges(city)]
    with pytest.raises(ValueError):
        find_surges(city, period="day")
    with pytest.raises(ValueError):
        find_surges(city, levels=("building",))


def test_weekly_surges_merge_consecutive_weeks() -> None:
    rows: list[dict[str, Any]] = []
    for m in months(date(2023, 1, 1), 24):
        for grid in ("A网格", "B网格", "C网格"):
            rows += month_rows(PARKING, grid, m, 4)
    # 12 a day for 10 days in grid A from Monday 2024-03-04: two consecutive weeks far above 1 a week
    rows += [{"category": PARKING, "grid": "A网格", "place": "A网格", "street": "望湖街道",
              "created_at": datetime(2024, 3, 4 + d, 9 + h)} for d in range(10) for h in range(12)]
    found = [f for f in find_surges(reqs_table(rows), period="week") if f.details["sort"] == "anomalous"]
    assert len(found) == 1
    assert found[0].place == "A网格" and found[0].details["periods"] == 2
    assert found[0].details["period_label"] == "2024-W10/2024-W11"


def test_seasonal_months_by_stl_and_month_runs() -> None:
    weights = np.array([4, 3, 1.5, .05, .05, .05, .05, .05, .05, .05, 3, 4])  # the generator's heating
    series = np.tile(weights * 100, 3)
    assert sorted(seasonal_months(series, 1)) == [1, 2, 3, 11, 12]  # March: 30 times the summer
    assert seasonal_months(np.full(36, 50.0), 1) == {}
    assert seasonal_months(series[:20], 1) == {}  # under two years: no season claimed
    assert month_runs([1, 2, 6, 7, 12]) == [[12, 1, 2], [6, 7]]


# --- the generator's planted surges -------------------------------------------------------------------


@pytest.fixture(scope="session")
def generated(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """A generated city of 40,000 requests (seed 7) in a SQLite file, and its manifest."""
    folder = tmp_path_factory.mktemp("generated")
    db = folder / "gen.db"
    env = {**os.environ, "CIVICLOOP_DATABASE_URL": f"sqlite:///{db}"}
    cli = Path(sys.executable).with_name("civicloop")
    subprocess.run([str(cli), "generate", "--requests", "40000", "--seed", "7"], env=env, check=True,
                   capture_output=True)
    return db, json.loads((folder / "gen.generate.json").read_text(encoding="utf-8"))


def test_the_planted_surges_are_found(generated: tuple[Path, dict[str, Any]]) -> None:
    from civicloop.analytics.duck import connect
    from civicloop.analytics.sources import from_operational

    db, manifest = generated
    conn = connect(f"sqlite:///{db}")
    from_operational(conn)
    conn.execute("CREATE TABLE reqs_copy AS SELECT * FROM reqs")
    grid_names = dict(conn.execute("SELECT id, name FROM ops.grids").fetchall())
    conn.execute("DROP VIEW reqs")
    conn.execute("ALTER TABLE reqs_copy RENAME TO reqs")
    findings = find_surges(conn)
    anomalies = {(f.category, f.place, f.details["period_label"]): f for f in findings
                 if f.details["sort"] == "anomalous"}
    assert len(manifest["surges"]) == 2
    for planted in manifest["surges"]:
        found = anomalies.get((planted["category_path"], grid_names[planted["grid_id"]], planted["month"]))
        assert found is not None, planted
        assert found.details["count"] >= planted["planted"]
    # the generator's seasonal topics are flagged in season, city-wide
    seasons = {f.category: f.details["months"] for f in findings if f.details["sort"] == "seasonal_city"}
    heating = [c for c in seasons if "暖气" in c or "供暖" in c]
    assert heating and all(set(seasons[c]) <= {11, 12, 1, 2, 3} for c in heating)
    noise = [c for c in seasons if "噪声" in c]
    assert noise and all(set(seasons[c]) <= {5, 6, 7, 8, 9} for c in noise)


def test_one_person_writing_many_times_is_no_surge() -> None:
    # found by a user trial: one citizen's five copies of a message came out as a "surge"
    rows: list[dict[str, Any]] = []
    for m in months(date(2022, 1, 1), 24):
        for grid in ("丙社区1号网格", "丙社区2号网格", "丙社区3号网格", "丙社区4号网格"):
            rows += month_rows(PARKING, grid, m, 2)
    one_person = [{**row, "citizen": "same-person"}
                  for row in month_rows(PARKING, "丙社区1号网格", date(2023, 12, 1), 12)]
    assert not [f for f in find_surges(reqs_table(rows + one_person)) if f.details["sort"] == "anomalous"]
    many = month_rows(PARKING, "丙社区1号网格", date(2023, 12, 1), 12)
    surges = [f for f in find_surges(reqs_table(rows + many)) if f.details["sort"] == "anomalous"]
    assert len(surges) == 1 and surges[0].people == 12
    assert "约为基线2件的7倍" in surges[0].summary and surges[0].details["count"] == 14  # 12 + the usual 2
