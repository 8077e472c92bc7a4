"""What a fresh user's trial found: phone numbers in free text, loose booleans and phone numbers,
and an empty calendar entry for a year the library knows."""

from __future__ import annotations

from datetime import date, datetime
from zoneinfo import ZoneInfo

from civicloop.core.calendar import WorkCalendar
from civicloop.core.validation import mask_phones_in_text
from civicloop.requests.ledger import LedgerFilter, ledger_rows
from tests.test_api import API, DISPATCHER, NEW, OPERATOR, handler

ADMIN = {"X-Civicloop-Role": "admin"}


def test_mobile_numbers_in_free_text_are_masked():
    assert mask_phones_in_text("我的电话13700002222请回电") == "我的电话137****2222请回电"
    assert mask_phones_in_text("编号201913700002222") == "编号201913700002222"  # part of a longer number
    assert mask_phones_in_text("请拨12345") == "请拨12345"
    assert mask_phones_in_text(None) is None


def test_numbers_typed_into_description_and_reply_never_leave_the_server(client, city, session, settings):
    body = {**NEW, "description": "我的电话13700002222请回电", "title": "请回电13700002222"}
    request = client.post(f"{API}/requests", json=body, headers=OPERATOR).json()
    client.post(f"{API}/requests/{request['id']}/accept", json={}, headers=OPERATOR)
    unit = city["D01-S01"]
    order = client.post(f"{API}/requests/{request['id']}/dispatch", json={"lead_unit_id": unit},
                        headers=DISPATCHER).json()["work_orders"][0]["id"]
    client.post(f"{API}/work-orders/{order}/acknowledge", headers=handler(unit))
    replied = client.post(f"{API}/work-orders/{order}/reply", json={"text": "已联系13900001111，已处理"},
                          headers=handler(unit))
    assert replied.json()["reply_text"] == "已联系139****1111，已处理"
    for path in (f"/requests/{request['id']}", "/requests", "/work-orders", "/ledger", "/ledger/export?format=csv"):
        text = client.get(API + path).text
        assert "13700002222" not in text and "13900001111" not in text, path
    detail = client.get(f"{API}/requests/{request['id']}").json()
    assert detail["description"] == "我的电话137****2222请回电"
    (row,) = ledger_rows(session, filters=LedgerFilter(), settings=settings)
    assert (row.title, row.reply_text) == ("请回电137****2222", "已联系139****1111，已处理")


def test_booleans_must_be_booleans(client, city):
    request = client.post(f"{API}/requests", json=NEW, headers=OPERATOR).json()
    response = client.post(f"{API}/requests/{request['id']}/callback",
                           json={"resolved": "yes", "satisfaction": "satisfied"}, headers=OPERATOR)
    assert response.status_code == 422
    assert response.json()["error"]["fields"][0]["field"] == "resolved"
    calendar = client.put(f"{API}/calendar/years/2027", json={"days": [{"date": "2027-01-01", "working": "no"}]},
                          headers=ADMIN)
    assert calendar.status_code == 422


def test_a_five_digit_phone_is_refused(client, db):
    response = client.post(f"{API}/requests", json={**NEW, "citizen_phone": "12345"}, headers=OPERATOR)
    assert response.status_code == 422
    assert response.json()["error"]["fields"][0]["field"] == "citizen_phone"
    assert client.post(f"{API}/requests", json={**NEW, "citizen_phone": "010-6512-3456"},
                       headers=OPERATOR).status_code == 201


def test_an_entry_for_a_library_year_only_corrects_it():
    national_day = date(2026, 10, 1)
    assert WorkCalendar().day(national_day).working is False
    # an admin enters 2026 with no days: the library's holidays stay
    assert WorkCalendar(entered_years=frozenset({2026})).day(national_day).working is False
    # a listed day still overrides the library
    assert WorkCalendar(overrides={national_day: True}, entered_years=frozenset({2026})).day(national_day).working
    # a year beyond the library is known once entered, by the weekend rule plus its days
    monday = date(2027, 1, 4)
    assert WorkCalendar().day(monday).known is False
    assert WorkCalendar(entered_years=frozenset({2027})).day(monday).known is True


def test_putting_an_empty_library_year_changes_no_deadline(client, db, settings):
    from civicloop.core.calendar_service import load_calendar
    from civicloop.core.db import session_factory
    from civicloop.requests.deadlines import resolution_due

    start = datetime(2026, 9, 30, 10, tzinfo=ZoneInfo("Asia/Shanghai"))
    before, _ = resolution_due("7wd", start, WorkCalendar(), settings.tz)
    response = client.put(f"{API}/calendar/years/2026", json={"days": []}, headers=ADMIN)
    assert response.status_code == 200
    with session_factory(db)() as session:
        calendar = load_calendar(session)
    assert calendar.day(date(2026, 10, 1)).working is False
    assert resolution_due("7wd", start, calendar, settings.tz) == (before, False)
    # 10-01..10-07 are holidays: the weekend rule alone would have been due on 10-09
    assert before > datetime(2026, 10, 10, tzinfo=ZoneInfo("Asia/Shanghai"))


def test_contact_data_in_free_text_is_masked_however_written() -> None:
    # found by a user trial: spaced, dashed and +86 mobiles, landlines, ID numbers and e-mails came back
    from civicloop.core.validation import mask_phones_in_text

    text = ("联系我 138 1234 5678 或 +8613912345678 或 139-1234-5678，座机 010-62345678，"
            "身份证 110101199003071234，邮箱 zhang.san@example.com")
    masked = mask_phones_in_text(text)
    assert masked == ("联系我 138****5678 或 139****5678 或 139****5678，座机 010****5678，"
                      "身份证 110101********1234，邮箱 ***@***")
    for kept in ("2019年5月9日 10:30", "价格13800元", "第12345678号文件", "订单号 2019123456789012345"):
        assert mask_phones_in_text(kept) == kept
