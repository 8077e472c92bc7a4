"""The NYC 311 importer, on a slice of the real shared sample (read by path)."""

from __future__ import annotations

import csv
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select

from civicloop.catalog.models import Category
from civicloop.importers.nyc311 import import_nyc311
from civicloop.org.models import OrgUnit
from civicloop.requests.models import RequestStatus, ServiceRequest
from tests.conftest import SHARED_DATA

NYC = SHARED_DATA / "open311" / "nyc311_2011_sample.csv"
pytestmark = pytest.mark.skipif(not NYC.is_file(), reason=f"shared data not found at {NYC}")
NEW_YORK = ZoneInfo("America/New_York")


def _slice(path: Path, lines: set[int]) -> list[dict[str, str]]:
    """Write the header and the given file lines (2 = first data row) of the sample to ``path``."""
    with NYC.open(encoding="utf-8", newline="") as src, path.open("w", encoding="utf-8", newline="") as dst:
        reader, writer = csv.reader(src), csv.writer(dst)
        header = next(reader)
        writer.writerow(header)
        kept = []
        for line, row in enumerate(reader, start=2):
            if line in lines:
                writer.writerow(row)
                kept.append(dict(zip(header, row, strict=True)))
    return kept


def test_closed_rows_are_replayed_with_their_resolution(session, settings, tmp_path):
    path = tmp_path / "nyc.csv"
    rows = _slice(path, set(range(2, 62)) | {1604})
    summary = import_nyc311(session, path=path, settings=settings)
    assert summary.skipped == [("nyc.csv", 62, "closed before created")]  # file line 1604, now the 62nd
    assert summary.stored == 60
    first = rows[0]  # 19937896, DOF, closed 03/14/2011 03:59:20 PM
    request = session.scalars(select(ServiceRequest).where(
        ServiceRequest.external_id == f"nyc311:{first['Unique Key']}")).one()
    assert request.status == RequestStatus.REPLIED
    assert request.created_at == datetime(2011, 3, 1, 14, 27, 57, tzinfo=NEW_YORK)
    (order,) = request.work_orders
    assert order.replied_at == datetime(2011, 3, 14, 15, 59, 20, tzinfo=NEW_YORK)
    assert order.reply_text == first["Resolution Description"]
    unit = session.get(OrgUnit, order.unit_id)
    assert (unit.code, unit.name) == ("nyc:DOF", "Refunds and Adjustments")
    category = session.get(Category, request.category_id)
    assert (category.path, category.level) == ("DOF Property - Payment Issue/Misapplied Payment", 2)
    assert request.channel == "hotline"  # Open Data Channel Type PHONE
    statuses = {r["Status"] for r in rows[:60]}
    stored = {s for (s,) in session.execute(select(ServiceRequest.status).distinct())}
    if "Assigned" in statuses:
        assert RequestStatus.DISPATCHED in stored


def test_importing_twice_changes_nothing(session, settings, tmp_path):
    path = tmp_path / "nyc.csv"
    _slice(path, set(range(2, 22)))
    first = import_nyc311(session, path=path, settings=settings)
    again = import_nyc311(session, path=path, settings=settings)
    assert (first.stored, again.stored, again.unchanged) == (20, 0, 20)
    assert session.scalar(select(func.count()).select_from(ServiceRequest)) == 20


def test_bad_rows_are_skipped_with_their_line(session, settings, tmp_path):
    path = tmp_path / "nyc.csv"
    rows = _slice(path, {2, 3})
    bad = dict(rows[0], **{"Unique Key": "1", "Created Date": "yesterday"})
    far = dict(rows[0], **{"Unique Key": "2", "Latitude": "123.0", "Longitude": "-73.9"})
    with path.open("a", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writerow(bad)
        writer.writerow(far)
    summary = import_nyc311(session, path=path, settings=settings)
    assert summary.skipped == [("nyc.csv", 4, "unreadable Created Date"), ("nyc.csv", 5, "coordinates out of range")]
    assert summary.stored == 2


def test_located_requests_land_in_their_community_board_grid(session, settings, tmp_path):
    from civicloop.org.models import Grid

    path = tmp_path / "nyc.csv"
    rows = _slice(path, set(range(2, 402)))
    summary = import_nyc311(session, path=path, settings=settings)
    assert summary.notes["community board grids"] > 30
    points: dict[str, set[tuple[str, str]]] = {}
    for r in rows:
        if r["Latitude"] and not r["Community Board"].startswith("0 "):
            points.setdefault(r["Community Board"], set()).add((r["Latitude"], r["Longitude"]))
    # boards with three distinct points or more get a grid (a hull needs them)
    located = [r for r in rows if r["Latitude"] and len(points.get(r["Community Board"], ())) >= 3]
    own = in_some = same_borough = 0
    for row in located:
        request = session.scalars(select(ServiceRequest).where(
            ServiceRequest.external_id == f"nyc311:{row['Unique Key']}")).one()
        if request.grid_id is None:
            continue
        in_some += 1
        grid = session.get(Grid, request.grid_id)
        own += grid.code == f"nyc:cb:{row['Community Board']}"
        same_borough += session.get(OrgUnit, request.district_id).name == row["Borough"].title()
    # every such point lies in the hull of its own board
    assert in_some == len(located) > 100
    assert own >= 0.8 * len(located) and same_borough >= 0.9 * len(located)
    unlocated = next(r for r in rows if not r["Latitude"])
    request = session.scalars(select(ServiceRequest).where(
        ServiceRequest.external_id == f"nyc311:{unlocated['Unique Key']}")).one()
    assert request.grid_id is None
