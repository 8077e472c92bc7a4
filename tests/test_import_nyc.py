"""The NYC 311 importer, on a slice of the real shared sample (read by path)."""

from __future__ import annotations

import csv
import xml.etree.ElementTree as ET
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
    assert request.status == RequestStatus.CLOSED  # closed in NYC, without a rating (close_unrated)
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


def test_imported_nyc_rows_read_back_through_open311(client, db, settings, tmp_path):
    """The NYC 311 import end to end in Open311 terms: rows imported from the real sample read back
    through /open311/v2 with their source's status (Closed → closed, Assigned/Pending → open), the
    resolution description as status_notes, the agency as agency_responsible, the complaint as a
    service listed by services.json, and the source's created and closed instants."""
    from civicloop.core.db import session_factory

    path = tmp_path / "nyc.csv"
    rows = _slice(path, set(range(2, 32)) | {238, 239, 335, 336})
    with session_factory(db)() as s:
        summary = import_nyc311(s, path=path, settings=settings)
        s.commit()
        ids = {r.external_id.removeprefix("nyc311:"): r.id for r in s.scalars(select(ServiceRequest))}
    assert summary.stored == 34
    window = {"start_date": "2011-02-15T00:00:00-05:00", "end_date": "2011-04-01T00:00:00-04:00"}
    listed = client.get("/open311/v2/requests.json", params=window)
    assert listed.status_code == 200, listed.text
    items = {item["service_request_id"]: item for item in listed.json()}
    assert set(items) == set(ids.values())
    want = {ids[r["Unique Key"]]: ("closed" if r["Status"] == "Closed" else "open") for r in rows}
    assert {i: item["status"] for i, item in items.items()} == want
    assert sorted(want.values()).count("open") == 4
    closed_only = client.get("/open311/v2/requests.json", params={**window, "status": "closed"}).json()
    assert len(closed_only) == 30

    first = rows[0]  # 19937896, DOF, closed 03/14/2011 03:59:20 PM
    item = items[ids[first["Unique Key"]]]
    assert item["status_notes"] == first["Resolution Description"]
    assert item["agency_responsible"] == "Refunds and Adjustments"
    assert datetime.fromisoformat(item["requested_datetime"]) == datetime(2011, 3, 1, 14, 27, 57, tzinfo=NEW_YORK)
    assert datetime.fromisoformat(item["updated_datetime"]) == datetime(2011, 3, 14, 15, 59, 20, tzinfo=NEW_YORK)
    services = {s["service_code"]: s for s in client.get("/open311/v2/services.json").json()}
    assert services[item["service_code"]]["service_name"] == item["service_name"] == first["Descriptor"]
    one = client.get(f"/open311/v2/requests/{item['service_request_id']}.xml")
    assert one.status_code == 200
    root = ET.fromstring(one.content)
    assert root.findtext("request/status") == "closed"
    assert root.findtext("request/agency_responsible") == "Refunds and Adjustments"

    assigned = items[ids[rows[30]["Unique Key"]]]  # line 238: Assigned to DPR, not yet acknowledged
    assert assigned["status"] == "open" and assigned["expected_datetime"] is not None

    # closed without a rating: counted apart from the resolution and satisfaction rates
    with session_factory(db)() as s:
        request = s.get(ServiceRequest, item["service_request_id"])
        assert request.status == RequestStatus.CLOSED
        (order,) = request.work_orders
        assert (order.status, order.callback_at, order.satisfaction) == ("closed", None, None)
