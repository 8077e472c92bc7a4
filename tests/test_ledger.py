"""The ledger (台账): rows, filters, the overdue flag, xlsx and CSV read back, and the two endpoints.

Requests (times Asia/Shanghai), ledger read at NOW = 2019-06-12 12:00:

r1  06-03 09:00, 望湖街道 grid, 路灯不亮, lead 望湖街道第一社区: acknowledged, replied 06-04, closed satisfied
r2  06-10 09:00, 东桥街道 grid, 施工噪声, lead 城市管理委员会: still pending, response deadline 06-11 09:00 passed
r3  05-31 23:30, only submitted (no lead order)
r4  06-01 00:10, lead 望湖街道第二社区: flagged overdue by the job on 06-03, then acknowledged and replied
r5  06-05 09:00, 望湖街道 grid: returned by 第一社区, re-dispatched to 第二社区 and acknowledged
"""

from __future__ import annotations

import csv
import io
from datetime import date, timedelta

import pytest
from openpyxl import load_workbook
from sqlalchemy import event

from civicloop.core.errors import FieldError
from civicloop.requests.jobs import mark_overdue
from civicloop.requests.ledger import LedgerFilter, ledger_rows, write_csv, write_xlsx
from civicloop.requests.models import Channel, RequestStatus, Satisfaction, ServiceRequest
from tests.helpers import make_request
from tests.helpers_metrics import SHANGHAI, ack, answer, at, call_back, dispatch_at, give_back, lead_order, redispatch

NOW = at(6, 12, 12)
WANGHU_GRID = {"lat": 39.905, "lon": 116.405}  # 望湖街道第一社区1号网格
DONGQIAO_GRID = {"lat": 39.925, "lon": 116.405}  # 东桥街道第一社区1号网格
LAMP = "城乡建设/市政设施/路灯不亮"
NOISE = "环境保护/噪声污染/施工噪声"
ZH_HEADER = ["诉求编号", "登记时间", "渠道", "诉求标题", "诉求分类", "所属街道", "主办单位", "办理时限", "状态",
             "答复内容", "答复时间", "是否解决", "满意度", "是否超期", "是否兜底", "退单次数", "重办次数"]


@pytest.fixture
def book(session, settings, city) -> dict[str, int]:
    """Build r1..r5 of the module docstring; returns request ids by name and unit ids."""
    a, b, c = city["D01-S01-C01"], city["D01-S01-C02"], city["DEP-CG"]
    r1 = dispatch_at(session, settings, unit_id=a, when=at(6, 3, 9), category_id=city[f"cat:{LAMP}"], **WANGHU_GRID)
    ack(session, settings, r1, at(6, 3, 10))
    answer(session, r1, at(6, 4, 10), text="已更换灯泡，路灯恢复照明。")
    call_back(session, settings, r1, at(6, 5, 10), resolved=True, satisfaction=Satisfaction.SATISFIED)
    r2 = dispatch_at(session, settings, unit_id=c, when=at(6, 10, 9), category_id=city[f"cat:{NOISE}"],
                     title="夜间施工噪声", channel=Channel.APP, **DONGQIAO_GRID)
    r3 = make_request(session, now=at(5, 31, 23, 30), title="咨询入学政策")
    r4 = dispatch_at(session, settings, unit_id=b, when=at(6, 1, 0, 10))
    assert mark_overdue(session, settings=settings, now=at(6, 3, 8)).marked == [lead_order(r4).id]
    ack(session, settings, r4, at(6, 3, 10))
    answer(session, r4, at(6, 4, 10))
    r5 = dispatch_at(session, settings, unit_id=a, when=at(6, 5, 9), **WANGHU_GRID)
    give_back(session, settings, r5, at(6, 5, 10))
    redispatch(session, settings, r5, unit_id=b, when=at(6, 5, 11))
    ack(session, settings, r5, at(6, 5, 12))
    session.flush()
    return {"r1": r1.id, "r2": r2.id, "r3": r3.id, "r4": r4.id, "r5": r5.id, "A": a, "B": b, "C": c,
            "wanghu": city["D01-S01"], "dongqiao": city["D01-S02"], "lamp": city[f"cat:{LAMP}"],
            "noise": city[f"cat:{NOISE}"], "top": city["cat:城乡建设"], "noise2": city["cat:环境保护/噪声污染"]}


def ids(rows) -> list[int]:
    return [r.id for r in rows]


def rows_of(session, settings, now=NOW, **filters):
    return ledger_rows(session, filters=LedgerFilter(**filters), settings=settings, now=now)


def test_rows_newest_first_with_lead_unit_street_and_result(session, settings, book):
    rows = rows_of(session, settings)
    assert ids(rows) == [book[k] for k in ("r2", "r5", "r1", "r4", "r3")]
    r1 = {r.id: r for r in rows}[book["r1"]]
    assert r1.created_at == at(6, 3, 9) and r1.created_at.utcoffset() == timedelta(hours=8)
    assert (r1.channel, r1.title, r1.category_path) == (Channel.HOTLINE, "小区路灯不亮", LAMP)
    assert (r1.street_id, r1.street_name) == (book["wanghu"], "望湖街道")
    assert (r1.lead_unit_id, r1.lead_unit_name) == (book["A"], "望湖街道第一社区")
    assert r1.status == RequestStatus.CLOSED
    assert (r1.reply_text, r1.replied_at) == ("已更换灯泡，路灯恢复照明。", at(6, 4, 10))
    assert (r1.resolved, r1.satisfaction, r1.overdue, r1.fallback) == (True, Satisfaction.SATISFIED, False, False)
    order = lead_order(session.get(ServiceRequest, book["r1"]))
    assert r1.deadline == order.due_at and r1.deadline.utcoffset() == timedelta(hours=8)

    r2 = {r.id: r for r in rows}[book["r2"]]
    assert (r2.street_name, r2.lead_unit_name, r2.status) == ("东桥街道", "城市管理委员会", RequestStatus.DISPATCHED)
    assert r2.deadline == at(6, 11, 9)  # not acknowledged: the response deadline, 24 h after dispatch
    assert (r2.reply_text, r2.replied_at, r2.resolved, r2.satisfaction) == (None, None, None, None)

    r3 = {r.id: r for r in rows}[book["r3"]]
    assert (r3.lead_unit_id, r3.lead_unit_name, r3.deadline, r3.street_name, r3.status) == (
        None, None, None, None, RequestStatus.SUBMITTED)

    r5 = {r.id: r for r in rows}[book["r5"]]
    # the latest lead order is the one of the unit it was re-dispatched to
    assert (r5.lead_unit_name, r5.return_count, r5.status) == ("望湖街道第二社区", 1, RequestStatus.IN_PROGRESS)


def test_overdue_flag(session, settings, book):
    flags = {r.id: r.overdue for r in rows_of(session, settings)}
    assert flags[book["r2"]] is True  # still pending past its response deadline, never flagged by the job
    assert flags[book["r4"]] is True  # flagged by the job, replied since
    assert (flags[book["r1"]], flags[book["r3"]], flags[book["r5"]]) == (False, False, False)
    before = {r.id: r.overdue for r in rows_of(session, settings, now=at(6, 11, 8))}
    assert before[book["r2"]] is False  # an hour before its deadline


def test_a_reply_after_the_deadline_is_overdue_without_the_job(session, settings, city):
    request = dispatch_at(session, settings, unit_id=city["D01-S01"], when=at(6, 3, 9))
    # 7 working days from Mon 06-03: 04, 05, 06, (07 Dragon Boat holiday), 10, 11, 12, 13
    order = ack(session, settings, request, at(6, 3, 10))
    assert order.due_at == at(6, 13, 23, 59) + timedelta(seconds=59)
    answer(session, request, at(6, 14, 9))  # nine hours late; no overdue job ran meanwhile
    assert order.overdue is False
    (row,) = rows_of(session, settings, now=at(6, 15, 9))
    assert row.overdue is True
    on_time = dispatch_at(session, settings, unit_id=city["D01-S01"], when=at(6, 3, 9))
    ack(session, settings, on_time, at(6, 3, 10))
    answer(session, on_time, at(6, 13, 23, 59))
    flags = {r.id: r.overdue for r in rows_of(session, settings, now=at(6, 15, 9))}
    assert flags[on_time.id] is False


def test_date_filter_is_inclusive_local_days(session, settings, book):
    june = rows_of(session, settings, start=date(2019, 6, 1), end=date(2019, 6, 30))
    assert set(ids(june)) == {book[k] for k in ("r1", "r2", "r4", "r5")}  # r3 is 05-31 23:30 local
    assert ids(rows_of(session, settings, start=date(2019, 5, 31), end=date(2019, 5, 31))) == [book["r3"]]
    assert ids(rows_of(session, settings, end=date(2019, 6, 3))) == [book[k] for k in ("r1", "r4", "r3")]
    assert ids(rows_of(session, settings, start=date(2019, 6, 10))) == [book["r2"]]


def test_unit_street_category_and_status_filters(session, settings, book):
    assert ids(rows_of(session, settings, unit_id=book["A"])) == [book["r1"]]  # r5 has moved on to B
    assert ids(rows_of(session, settings, unit_id=book["B"])) == [book["r5"], book["r4"]]
    assert ids(rows_of(session, settings, street_id=book["wanghu"])) == [book["r5"], book["r1"]]
    assert ids(rows_of(session, settings, street_id=book["dongqiao"])) == [book["r2"]]
    assert ids(rows_of(session, settings, category_id=book["lamp"])) == [book["r1"]]
    assert ids(rows_of(session, settings, category_id=book["top"])) == [book["r1"]]  # with its sub-categories
    assert ids(rows_of(session, settings, category_id=book["noise2"])) == [book["r2"]]
    assert ids(rows_of(session, settings, status=RequestStatus.CLOSED)) == [book["r1"]]
    assert ids(rows_of(session, settings, status=RequestStatus.IN_PROGRESS)) == [book["r5"]]
    assert ids(rows_of(session, settings, unit_id=book["B"], status=RequestStatus.REPLIED)) == [book["r4"]]
    assert rows_of(session, settings, unit_id=book["C"], street_id=book["wanghu"]) == []


def test_limit_keeps_the_newest(session, settings, book):
    rows = ledger_rows(session, filters=LedgerFilter(), settings=settings, now=NOW, limit=2)
    assert ids(rows) == [book["r2"], book["r5"]]


@pytest.mark.parametrize(("filters", "field", "code"), [
    ({"start": date(2019, 6, 30), "end": date(2019, 6, 1)}, "start", "v.date_range"),
    ({"start": date(1, 1, 1)}, "start", "v.year_range"),
    ({"end": date(9999, 12, 31)}, "end", "v.year_range"),
    ({"unit_id": 999_999}, "unit_id", "v.unknown_unit"),
    ({"street_id": 999_999}, "street_id", "v.unknown_unit"),
    ({"category_id": 999_999}, "category_id", "v.unknown_category"),
])
def test_bad_filters_are_field_errors(session, settings, book, filters, field, code):
    with pytest.raises(FieldError) as caught:
        rows_of(session, settings, **filters)
    assert (caught.value.field, caught.value.code) == ((field,), code)


def test_at_most_two_queries_whatever_the_rows(session, settings, book, db):
    statements: list[str] = []

    def count(conn, cursor, statement, *args):
        if statement.lstrip().upper().startswith("SELECT"):
            statements.append(statement)

    event.listen(db, "before_cursor_execute", count)
    try:
        assert len(rows_of(session, settings)) == 5
        assert len(statements) == 1
        statements.clear()
        rows_of(session, settings, unit_id=book["B"], street_id=book["wanghu"], category_id=book["top"])
        assert len(statements) == 2
    finally:
        event.remove(db, "before_cursor_execute", count)


def test_no_personal_data(session, settings, book):
    rows = rows_of(session, settings)
    text = io.StringIO()
    write_csv(rows, text)
    assert "张三" not in text.getvalue() and "13812341234" not in text.getvalue()
    assert not any("citizen" in field for field in type(rows[0]).__dataclass_fields__)


def test_xlsx_read_back(session, settings, book, tmp_path):
    rows = rows_of(session, settings)
    target = tmp_path / "台账.xlsx"
    write_xlsx(rows, target)
    sheet = load_workbook(target).active
    assert sheet.title == "台账"
    assert [c.value for c in sheet[1]] == ZH_HEADER
    assert all(c.font.b for c in sheet[1])
    assert sheet.freeze_panes == "A2"
    assert sheet.auto_filter.ref == "A1:Q6"
    assert sheet.column_dimensions["D"].width == 36
    line = {c.value: i for i, c in enumerate(sheet["A"], start=1)}[book["r1"]]
    values = [c.value for c in sheet[line]]
    assert values[1] == at(6, 3, 9).replace(tzinfo=None)  # local time, as Excel has no zones
    assert sheet.cell(row=line, column=2).number_format == "yyyy-mm-dd hh:mm"
    assert values[2:7] == ["热线", "小区路灯不亮", LAMP, "望湖街道", "望湖街道第一社区"]
    assert values[8:] == ["已结案", "已更换灯泡，路灯恢复照明。", at(6, 4, 10).replace(tzinfo=None), "是", "满意",
                          "否", "否", 0, 0]
    r3 = [c.value for c in sheet[{c.value: i for i, c in enumerate(sheet["A"], start=1)}[book["r3"]]]]
    assert r3[6:9] == [None, None, "待受理"]
    everything = " ".join(str(c.value) for row in sheet.iter_rows() for c in row)
    assert "张三" not in everything and "13812341234" not in everything


def test_xlsx_in_english(session, settings, book):
    target = io.BytesIO()
    write_xlsx(rows_of(session, settings, status=RequestStatus.CLOSED), target, lang="en")
    sheet = load_workbook(io.BytesIO(target.getvalue())).active
    assert sheet.title == "Ledger"
    assert [c.value for c in sheet[1]][:4] == ["Request ID", "Created", "Channel", "Title"]
    values = [c.value for c in sheet[2]]
    assert (values[2], values[8], values[11], values[12], values[13]) == (
        "hotline", "closed", "yes", "satisfied", "no")


def test_text_is_never_a_formula(session, settings, city):
    make_request(session, now=at(6, 3, 9), title='=HYPERLINK("http://evil.example","点我")')
    rows = rows_of(session, settings)
    target = io.BytesIO()
    write_xlsx(rows, target)
    cell = load_workbook(io.BytesIO(target.getvalue())).active["D2"]
    assert (cell.value, cell.data_type) == ('=HYPERLINK("http://evil.example","点我")', "s")
    text = io.StringIO()
    write_csv(rows, text)
    assert list(csv.reader(io.StringIO(text.getvalue())))[1][3] == '\'=HYPERLINK("http://evil.example","点我")'


def test_csv_read_back(session, settings, book):
    text = io.StringIO(newline="")
    write_csv(rows_of(session, settings), text)
    table = list(csv.reader(io.StringIO(text.getvalue())))
    assert table[0] == ZH_HEADER
    assert len(table) == 6
    r1 = next(line for line in table[1:] if line[0] == str(book["r1"]))
    assert r1[1:9] == ["2019-06-03 09:00", "热线", "小区路灯不亮", LAMP, "望湖街道", "望湖街道第一社区",
                       r1[7], "已结案"]
    assert r1[7].startswith("2019-06-") and len(r1[7]) == 16
    assert r1[10:] == ["2019-06-04 10:00", "是", "满意", "否", "否", "0", "0"]
    r2 = next(line for line in table[1:] if line[0] == str(book["r2"]))
    assert (r2[2], r2[7], r2[8], r2[13]) == ("App", "2019-06-11 09:00", "已派单", "是")
    english = io.StringIO()
    write_csv(rows_of(session, settings, unit_id=book["B"]), english, lang="en")
    table = list(csv.reader(io.StringIO(english.getvalue())))
    assert table[0][:3] == ["Request ID", "Created", "Channel"]
    assert [line[8] for line in table[1:]] == ["in progress", "replied"]
    assert [line[15] for line in table[1:]] == ["1", "0"]


# the API


def test_ledger_api(client, session, settings, book):
    session.commit()
    answer_ = client.get("/api/v1/ledger", params={"start": "2019-06-01", "end": "2019-06-30"})
    assert answer_.status_code == 200, answer_.text
    body = answer_.json()
    assert [r["id"] for r in body] == [book[k] for k in ("r2", "r5", "r1", "r4")]
    r1 = body[2]
    assert r1["created_at"] == "2019-06-03T09:00:00+08:00"
    assert (r1["status"], r1["satisfaction"], r1["lead_unit_name"], r1["street_name"]) == (
        "closed", "satisfied", "望湖街道第一社区", "望湖街道")
    assert "张三" not in answer_.text and "13812341234" not in answer_.text
    closed = client.get("/api/v1/ledger", params={"status": "closed", "unit_id": book["A"], "limit": 5000}).json()
    assert [r["id"] for r in closed] == [book["r1"]]
    by_category = client.get("/api/v1/ledger", params={"category_id": book["top"]}).json()
    assert [r["id"] for r in by_category] == [book["r1"]]


@pytest.mark.parametrize(("params", "field", "message"), [
    ({"start": "2019-06-30", "end": "2019-06-01"}, "start", "开始日期不能晚于结束日期"),
    ({"start": "2019-02-30"}, "start", "日期格式应为 YYYY-MM-DD"),
    ({"end": "2019-6-1"}, "end", "日期格式应为 YYYY-MM-DD"),
    ({"end": "20190601"}, "end", "日期格式应为 YYYY-MM-DD"),
    ({"start": "0001-01-01"}, "start", "年份须在 2000 到 2100 之间"),
    ({"unit_id": "999999"}, "unit_id", "承办单位不存在：999999"),
    ({"unit_id": "0"}, "unit_id", "不能小于 1"),
    ({"street_id": "abc"}, "street_id", "应为整数"),
    ({"category_id": "99999999999"}, "category_id", "不能大于 2147483647"),
    ({"limit": "5001"}, "limit", "不能大于 5000"),
])
def test_ledger_api_refuses_bad_filters(client, city, params, field, message):
    answer_ = client.get("/api/v1/ledger", params=params)
    assert answer_.status_code == 422, answer_.text
    assert [(f["field"], f["message"]) for f in answer_.json()["error"]["fields"]] == [(field, message)]


def test_ledger_api_status_must_be_known(client):
    answer_ = client.get("/api/v1/ledger", params={"status": "lost"})
    assert answer_.status_code == 422
    assert answer_.json()["error"]["fields"][0]["field"] == "status"


def test_date_range_message_in_english(client):
    answer_ = client.get("/api/v1/ledger/export", params={"start": "2019-06-30", "end": "2019-06-01", "lang": "en"})
    assert answer_.status_code == 422
    assert answer_.json()["error"]["fields"] == [
        {"field": "start", "type": "v.date_range", "message": "The start date must not be after the end date"}]


def test_export_xlsx(client, session, book):
    session.commit()
    answer_ = client.get("/api/v1/ledger/export", params={"start": "2019-06-01", "end": "2019-06-30"})
    assert answer_.status_code == 200, answer_.text
    assert answer_.headers["content-type"] == "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    disposition = answer_.headers["content-disposition"]
    assert disposition.startswith('attachment; filename="ledger-2019-06-01_2019-06-30.xlsx"')
    assert "filename*=UTF-8''%E5%8F%B0%E8%B4%A6-2019-06-01_2019-06-30.xlsx" in disposition
    sheet = load_workbook(io.BytesIO(answer_.content)).active
    assert [c.value for c in sheet[1]] == ZH_HEADER
    assert [c.value for c in sheet["A"]][1:] == [book[k] for k in ("r2", "r5", "r1", "r4")]


def test_export_csv_with_bom_in_english(client, session, book):
    session.commit()
    answer_ = client.get("/api/v1/ledger/export", params={"format": "csv", "status": "closed"},
                         headers={"Accept-Language": "en-US,en;q=0.9"})
    assert answer_.status_code == 200, answer_.text
    assert answer_.headers["content-type"].startswith("text/csv")
    assert answer_.headers["content-disposition"].startswith('attachment; filename="ledger-all.csv"')
    assert answer_.content.startswith(b"\xef\xbb\xbf")
    table = list(csv.reader(io.StringIO(answer_.content.decode("utf-8-sig"))))
    assert table[0][0] == "Request ID"
    assert [(line[0], line[8], line[12]) for line in table[1:]] == [(str(book["r1"]), "closed", "satisfied")]


def test_export_refuses_unknown_format(client):
    answer_ = client.get("/api/v1/ledger/export", params={"format": "pdf"})
    assert answer_.status_code == 422
    assert answer_.json()["error"]["fields"][0]["field"] == "format"


def test_local_day_ends_in_shanghai_not_utc(session, settings, city):
    # 06-01 07:59 local is 05-31 23:59 UTC: still the 1st of June for the ledger
    request = make_request(session, now=at(6, 1, 7, 59))
    assert ids(rows_of(session, settings, start=date(2019, 6, 1), end=date(2019, 6, 1))) == [request.id]
    assert rows_of(session, settings, end=date(2019, 5, 31)) == []
    assert request.created_at.astimezone(SHANGHAI).date() == date(2019, 6, 1)


def test_returned_request_shows_the_unit_that_returned_it(session, settings, city):
    # awaiting re-dispatch, the latest lead order is the returned one: its unit and deadline stay on the row
    unit = city["D01-S01-C01"]
    request = dispatch_at(session, settings, unit_id=unit, when=at(6, 3, 9))
    give_back(session, settings, request, at(6, 3, 10))
    assert request.lead_unit_id is None
    (row,) = rows_of(session, settings, unit_id=unit)
    assert (row.id, row.status, row.lead_unit_name, row.return_count) == (
        request.id, RequestStatus.ACCEPTED, "望湖街道第一社区", 1)
    assert (row.deadline, row.overdue) == (at(6, 4, 9), False)  # a returned order is no longer open
