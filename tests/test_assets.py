"""Repeated asset failures (设施反复故障): one elevator failing again and again → an alert with the right
predicted date; different buildings are not merged; one breakdown reported by many is one failure."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any

from civicloop.analytics.assets import asset_label, clean_place, episodes, find_asset_failures, number
from tests.test_surges import reqs_table


def report(text: str, at: datetime, citizen: str, *, title: str | None = None) -> dict[str, Any]:
    return {"title": title or text[:20], "description": text, "created_at": at, "citizen": citizen,
            "district": "A7县", "street": "暮云街道", "place": "丽发新城", "category": "城乡建设"}


def background() -> list[dict[str, Any]]:
    """Two years (2022-06 to 2024-06) of single elevator reports in twelve other buildings of the estate
    and of other estates, and some reports that name no facility."""
    rows = [report(f"丽发新城小区{b}栋1单元电梯坏了", datetime(2022, 6, 1, 9) + timedelta(days=60 * i), f"b{b}")
            for i, b in enumerate(range(4, 16))]
    rows += [report("我家住在云景花园7号楼3单元，电梯困人", datetime(2022, 9, 1, 9), "x1"),
             report("小区门口的路面坑洼", datetime(2024, 6, 30, 9), "x2")]
    return rows


ELEVATOR_DAYS = [date(2024, 1, 10), date(2024, 2, 9), date(2024, 3, 10), date(2024, 4, 9), date(2024, 5, 9)]


def test_an_elevator_failing_five_times_gives_an_alert_with_the_predicted_date() -> None:
    rows = background()
    rows += [report("A市丽发新城小区3栋2单元电梯又停运了", datetime(d.year, d.month, d.day, 8), f"r{i}")
             for i, d in enumerate(ELEVATOR_DAYS)]
    # a neighbour calls about the same breakdown the next day: one failure, two reports
    rows.append(report("我家住在丽发新城3栋2单元，电梯三天两头坏", datetime(2024, 3, 11, 20), "n1"))
    findings = find_asset_failures(reqs_table(rows))
    assert len(findings) == 1
    alert = findings[0]
    assert alert.kind == "asset" and alert.rank == 1 and alert.place == "丽发新城"
    assert alert.details["building"] == 3 and alert.details["unit"] == 2 and alert.details["facility"] == "电梯"
    assert alert.details["failures"] == 5 and alert.details["reports"] == 6 and len(alert.request_ids) == 6
    assert alert.details["failure_dates"] == [d.isoformat() for d in ELEVATOR_DAYS]
    assert alert.details["median_interval_days"] == 30.0
    assert alert.details["next_failure"] == "2024-06-08"  # 9 May + 30 days
    assert alert.summary == ("丽发新城3号楼2单元电梯120天内报修5次（6件诉求），中位间隔30天，"
                             "预计下次故障约在2024年6月8日前，建议维保")
    assert alert.people == 6 and alert.start == datetime(2024, 1, 10, 8) and alert.end == datetime(2024, 5, 9, 8)


def test_different_buildings_are_not_merged_and_one_breakdown_is_one_failure() -> None:
    rows = background()
    # building 3 and building 13 each twice, on the same days: four reports, no asset with three failures
    for i, d in enumerate(ELEVATOR_DAYS[:2]):
        rows.append(report("丽发新城小区3栋2单元电梯坏了", datetime(d.year, d.month, d.day, 8), f"p{i}"))
        rows.append(report("丽发新城小区13栋2单元电梯坏了", datetime(d.year, d.month, d.day, 9), f"q{i}"))
    # 20 neighbours report one breakdown of building 20 within two days: a hotspot, not a recurrence
    rows += [report("丽发新城20栋1单元电梯困人", datetime(2024, 4, 1, 8) + timedelta(hours=2 * i), f"h{i}")
             for i in range(20)]
    # the same letter sent again and again by one citizen is not a new failure each time
    rows += [report("丽发新城21栋1单元电梯坏了", datetime(2024, 1, 1, 8) + timedelta(days=10 * i), "same",
                    title="丽发新城21栋电梯坏了没人修") for i in range(5)]
    assert find_asset_failures(reqs_table(rows)) == []


def test_the_pieces() -> None:
    assert number("12") == 12 and number("十二") == 12 and number("三") == 3 and number("") is None
    assert clean_place("我家住在丽发新城小区") == "丽发新城"
    assert clean_place("A市A7县暮云街道丽发新城小区") == "丽发新城"
    assert clean_place("要求拆除") is None
    t0 = datetime(2024, 1, 1)
    assert episodes([t0, t0 + timedelta(hours=5), t0 + timedelta(days=10)], 3) == [[0, 1], [2]]
    assert asset_label("丽发新城", 3, 2, "电梯") == "丽发新城3号楼2单元电梯"
    assert asset_label("松峰路", None, None, "路灯") == "松峰路路灯"
