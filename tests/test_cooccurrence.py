"""Co-occurrence (多类并发): several matters rising together in one grid in one month, and only then."""

from __future__ import annotations

from datetime import date
from typing import Any

import duckdb
import pytest

from civicloop.analytics.cooccurrence import family, find_cooccurrences
from tests.test_surges import month_rows, months, reqs_table

RENTAL = "城乡建设/住房与物业/群租"
FUMES = "环境保护/大气污染/油烟扰民"
NOISE = "环境保护/噪声污染/商业噪声"
BUILD_NOISE = "环境保护/噪声污染/施工噪声"
MAY = date(2024, 5, 1)


@pytest.fixture(scope="module")
def city() -> duckdb.DuckDBPyConnection:
    """Two years of ten grids, every matter 2 a month. In May 2024: grid 1 gets 15 of each of group
    rentals, cooking fumes and noise; grid 2 only rentals and grid 3 only fumes (different grids); grid
    4 rentals in March and fumes in August (different months); grid 5 two kinds of noise (one family)."""
    special = {("1号网格", RENTAL, MAY), ("1号网格", FUMES, MAY), ("1号网格", NOISE, MAY),
               ("2号网格", RENTAL, MAY), ("3号网格", FUMES, MAY),
               ("4号网格", RENTAL, date(2024, 3, 1)), ("4号网格", FUMES, date(2024, 8, 1)),
               ("5号网格", NOISE, MAY), ("5号网格", BUILD_NOISE, MAY)}
    rows: list[dict[str, Any]] = []
    for m in months(date(2023, 1, 1), 24):
        for g in range(1, 11):
            grid = f"{g}号网格"
            for category in (RENTAL, FUMES, NOISE, BUILD_NOISE):
                rows += month_rows(category, grid, m, 15 if (grid, category, m) in special else 2)
    return reqs_table(rows)


def test_three_matters_rising_together_in_one_grid_make_one_topic(city: duckdb.DuckDBPyConnection) -> None:
    findings = find_cooccurrences(city)
    assert [f.place for f in findings] == ["1号网格"]
    topic = findings[0]
    assert topic.kind == "cooccurrence" and topic.rank == 1
    assert topic.details["months"] == ["2024-05"]
    assert {c["category"] for c in topic.details["categories"]} == {RENTAL, FUMES, NOISE}
    assert all(c["count"] == 15 for c in topic.details["categories"])
    assert topic.summary.startswith("望湖街道1号网格：2024-05") and topic.summary.endswith("同时上升，建议综合治理")
    for word in ("群租", "油烟扰民", "商业噪声"):
        assert word in topic.summary
    assert len(topic.request_ids) == 45


def test_rises_in_different_grids_months_or_one_family_are_not_cooccurrences(city: duckdb.DuckDBPyConnection) -> None:
    places = {f.place for f in find_cooccurrences(city)}
    assert not places & {"2号网格", "3号网格", "4号网格", "5号网格", "6号网格"}
    assert family(BUILD_NOISE) == family(NOISE) == "环境保护/噪声污染"
    # with one family enough, the two kinds of noise in grid 5 would count
    assert "5号网格" in {f.place for f in find_cooccurrences(city, min_families=1)}


def test_consecutive_months_of_one_place_are_one_finding() -> None:
    rows: list[dict[str, Any]] = []
    for m in months(date(2023, 1, 1), 24):
        for g in range(1, 9):
            for category in (RENTAL, FUMES):
                high = g == 1 and m in (date(2024, 5, 1), date(2024, 6, 1))
                rows += month_rows(category, f"{g}号网格", m, 15 if high else 2)
    findings = find_cooccurrences(reqs_table(rows))
    assert len(findings) == 1 and findings[0].details["months"] == ["2024-05", "2024-06"]
