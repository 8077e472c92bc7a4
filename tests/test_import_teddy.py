"""The Teddy Cup 2020 C importer, on the real shared files (read by path; a slice is copied to a
temporary folder so that the database part runs in seconds on both backends)."""

from __future__ import annotations

import csv
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select

from civicloop.importers.common import ImportSummary
from civicloop.importers.teddy import external_id, import_teddy, read_messages
from civicloop.intelligence.place_patterns import find_places, find_unit
from civicloop.org.models import OrgUnit, Place, PlaceKind, UnitKind
from civicloop.requests.ledger import LedgerFilter, ledger_rows
from civicloop.requests.models import RequestEvent, RequestStatus, ServiceRequest
from tests.conftest import SHARED_DATA

TEDDY = SHARED_DATA / "teddy2020c"
pytestmark = pytest.mark.skipif(not TEDDY.is_dir(), reason=f"shared data not found at {TEDDY}")
SHANGHAI = ZoneInfo("Asia/Shanghai")


def _slice(folder: Path, rows: int = 40) -> Path:
    """Copy the category tree and the first ``rows`` rows of each message file to ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "categories.csv").write_bytes((TEDDY / "categories.csv").read_bytes())
    for name in ("messages_labelled.csv", "messages_unlabelled.csv", "messages_with_votes.csv",
                 "messages_with_replies.csv"):
        with (TEDDY / name).open(encoding="utf-8", newline="") as src, (folder / name).open(
                "w", encoding="utf-8", newline="") as dst:
            reader = csv.reader(src)
            writer = csv.writer(dst)
            for index, row in enumerate(reader):
                if index > rows:
                    break
                writer.writerow(row)
    return folder


def test_the_whole_folder_reads_and_merges(settings):
    summary = ImportSummary()
    messages = read_messages(TEDDY, settings, summary)
    assert summary.read == 1998 + 2801 + 4326 + 2816
    # 33 messages appear in two files under the same id and title; one reply has no readable time
    assert len(messages) == summary.read - 33 - len(summary.skipped)
    assert summary.reasons() == {"unreadable replied_at": 1}
    assert len({m.key for m in messages}) == len(messages)
    assert sum(1 for m in messages if m.reply) == 2816 - 1
    assert all(m.created_at.tzinfo is not None for m in messages)
    # both time formats: 2019/4/25 9:32:09 and 2019-04-25 09:32:09 style rows are all read
    assert min(m.created_at for m in messages).year >= 2010


def test_places_and_units_of_real_messages():
    places = find_places("A3区潇楚南路洋湖段怎么还没修好？", "")
    assert (places.district, places.street) == ("A3区", None)
    reply = "网友“A00023583”：您好！针对您反映A3区潇楚南路洋湖段怎么还没修好的问题,A3区洋湖街道高度重视"
    assert find_unit(reply, places) == "A3区洋湖街道"
    a_city = find_places("请加快提高A市民营幼儿园老师的待遇", "")
    assert find_unit("经查，市住建局已督促开发商整改", a_city) == "A市住建局"
    assert find_unit("根据《中共A市委A市人民政府关于学前教育的意见》，现答复如下", a_city) is None
    assert find_places("A7县星沙街道丽发新城小区停水", "").estate == "丽发新城"
    assert find_places("A3区潇楚南路洋湖段怎么还没修好？", "").road == "潇楚南路"
    assert find_places("公交线路太少，走投无路", "").road is None


def test_import_replays_a_real_reply_with_its_real_delay(session, settings, tmp_path):
    summary = import_teddy(session, folder=_slice(tmp_path / "teddy"), settings=settings)
    assert summary.skipped == []
    assert summary.stored == session.scalar(select(func.count()).select_from(ServiceRequest))
    assert summary.notes["replies naming their unit"] + summary.notes["replies naming no unit"] == 40

    # message 2554 of messages_with_replies.csv, checked by hand against the file
    request = session.scalars(select(ServiceRequest).where(
        ServiceRequest.external_id == external_id("2554", "A3区潇楚南路洋湖段怎么还没修好？"))).one()
    assert (request.channel, request.status) == ("web", RequestStatus.REPLIED)
    filed = datetime(2019, 4, 24, 16, 3, 40, tzinfo=SHANGHAI)
    answered = datetime(2019, 5, 9, 9, 49, 10, tzinfo=SHANGHAI)
    assert request.created_at == filed
    (order,) = request.work_orders
    unit = session.get(OrgUnit, order.unit_id)
    assert (unit.name, unit.kind) == ("A3区洋湖街道", UnitKind.STREET)
    assert session.get(OrgUnit, unit.parent_id).name == "A3区"
    assert (order.dispatched_at, order.acknowledged_at, order.replied_at) == (filed, answered, answered)
    assert order.replied_at - order.dispatched_at == timedelta(days=14, hours=17, minutes=45, seconds=30)
    assert order.reply_text.startswith("网友“A00023583”：您好！针对您反映A3区潇楚南路洋湖段")
    # 7 working days from Wed 04-24: 25, 26, Sun 28 (worked for May Day), 29, 30, Sun 05-05 (worked), 05-06
    assert order.due_at == datetime(2019, 5, 6, 23, 59, 59, tzinfo=SHANGHAI)
    (row,) = [r for r in ledger_rows(session, filters=LedgerFilter(), settings=settings) if r.id == request.id]
    assert row.overdue is True and row.lead_unit_name == "A3区洋湖街道"
    actions = [e.action for e in session.scalars(select(RequestEvent).where(RequestEvent.request_id == request.id))]
    assert actions == ["submit", "accept", "dispatch", "acknowledge", "reply"]
    # the road it names is in the gazetteer, in its district
    road = session.scalars(select(Place).where(Place.name == "潇楚南路")).one()
    assert (road.kind, session.get(OrgUnit, road.district_id).name) == (PlaceKind.ROAD, "A3区")
    assert request.address == "A3区 潇楚南路"
    assert session.scalar(select(func.count()).select_from(Place).where(Place.kind == PlaceKind.DISTRICT)) >= 5


def test_a_message_without_reply_waits_for_intake_with_its_votes(session, settings, tmp_path):
    import_teddy(session, folder=_slice(tmp_path / "teddy"), settings=settings)
    with (TEDDY / "messages_with_votes.csv").open(encoding="utf-8") as handle:
        first = next(csv.DictReader(handle))
    request = session.scalars(select(ServiceRequest).where(
        ServiceRequest.external_id == external_id(first["message_id"], first["title"]))).one()
    assert (request.status, request.support_count, request.title) == (
        RequestStatus.SUBMITTED, int(first["upvotes"]), first["title"].strip())


def test_importing_twice_changes_nothing(session, settings, tmp_path):
    folder = _slice(tmp_path / "teddy", rows=15)
    first = import_teddy(session, folder=folder, settings=settings)
    tables = (ServiceRequest, OrgUnit, RequestEvent, Place)
    counts = [session.scalar(select(func.count()).select_from(t)) for t in tables]
    again = import_teddy(session, folder=folder, settings=settings)
    assert (again.stored, again.unchanged) == (0, first.stored)
    assert [session.scalar(select(func.count()).select_from(t)) for t in tables] == counts


def test_a_malformed_row_is_reported_with_its_line_and_skipped(session, settings, tmp_path):
    folder = _slice(tmp_path / "teddy", rows=5)
    path = folder / "messages_unlabelled.csv"
    with path.open("a", encoding="utf-8", newline="") as handle:
        csv.writer(handle).writerow(["999999", "U1", "坏数据", "2019年4月1日", "时间格式不对"])
        csv.writer(handle).writerow(["999998", "U2", "", "2019/4/1 8:00:00", ""])
    summary = import_teddy(session, folder=folder, settings=settings)
    assert summary.skipped == [("messages_unlabelled.csv", 7, "unreadable created_at"),
                               ("messages_unlabelled.csv", 8, "no title and no body")]
    assert session.scalar(select(func.count()).where(ServiceRequest.title == "坏数据")) == 0


def test_an_answering_department_sits_under_the_district_it_names(session):
    from civicloop.importers.teddy import Gazetteer
    from civicloop.intelligence.place_patterns import Places

    gazetteer = Gazetteer(session)
    places = Places(city="A市", district="A5区", street=None, estate=None)
    bureau = gazetteer.answering_unit("A5区教育局", places)
    assert (bureau.kind, session.get(OrgUnit, bureau.parent_id).name) == (UnitKind.DEPARTMENT, "A5区")
    city_bureau = gazetteer.answering_unit("A市住建局", places)
    assert (city_bureau.kind, city_bureau.parent_id) == (UnitKind.DEPARTMENT, None)
    government = gazetteer.answering_unit("A12县人民政府", places)
    assert (government.kind, government.name) == (UnitKind.DISTRICT, "A12县")
    assert gazetteer.answering_unit("A5区教育局", places).id == bureau.id  # matched, not created again
