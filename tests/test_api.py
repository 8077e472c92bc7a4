"""The closed loop over HTTP, and what the API answers to bad input.

Every bad input gets a 4xx (never a 500) whose ``error.fields[*].field`` names the field, in
Chinese by default and in English with ``Accept-Language: en``; nothing is stored half-way.
"""

from __future__ import annotations

import json
import re

import pytest
from sqlalchemy import func, select

from civicloop.core.db import session_factory
from civicloop.requests.models import RequestEvent, ServiceRequest, WorkOrder

API = "/api/v1"
OPERATOR = {"X-Civicloop-Actor": "operator-7", "X-Civicloop-Role": "operator"}
DISPATCHER = {"X-Civicloop-Actor": "dispatcher-1", "X-Civicloop-Role": "dispatcher"}
SUPERVISOR = {"X-Civicloop-Actor": "supervisor-1", "X-Civicloop-Role": "supervisor"}
EN = {"Accept-Language": "en-US,en;q=0.9"}
CJK = re.compile(r"[\u4e00-\u9fff]")
NEW = {
    "title": "小区路灯不亮", "description": "三号楼前路灯坏了一周，夜里很黑。", "citizen_name": "张三",
    "citizen_phone": "13812341234", "address": "望湖街道第一社区三号楼", "lat": 39.905, "lon": 116.405,
}


def handler(unit_id: int) -> dict[str, str]:
    return {"X-Civicloop-Actor": "handler-1", "X-Civicloop-Role": "handler", "X-Civicloop-Unit": str(unit_id)}


def counts(db) -> tuple[int, int, int]:
    with session_factory(db)() as s:
        return tuple(s.scalar(select(func.count()).select_from(m)) for m in (ServiceRequest, WorkOrder, RequestEvent))


def no_contact(response) -> None:
    """The citizen's full phone and name never leave the server."""
    assert "13812341234" not in response.text
    assert "张三" not in response.text


def ok(response, status: int = 200) -> dict:
    assert response.status_code == status, response.text
    no_contact(response)
    return response.json()


def submitted(client) -> dict:
    return ok(client.post(f"{API}/requests", json=NEW, headers=OPERATOR), 201)


def accepted(client) -> dict:
    request = submitted(client)
    return ok(client.post(f"{API}/requests/{request['id']}/accept", json={}, headers=OPERATOR))


def dispatched(client, unit_id: int) -> dict:
    request = accepted(client)
    return ok(client.post(f"{API}/requests/{request['id']}/dispatch", json={"lead_unit_id": unit_id},
                          headers=DISPATCHER))


def in_progress(client, unit_id: int) -> tuple[dict, int]:
    request = dispatched(client, unit_id)
    order_id = request["work_orders"][0]["id"]
    ok(client.post(f"{API}/work-orders/{order_id}/acknowledge", headers=handler(unit_id)))
    return request, order_id


# -- the loop ---------------------------------------------------------------------------------


def test_the_whole_loop_over_http(client, city):
    street, dept = city["D01-S01"], city["DEP-CG"]
    request = submitted(client)
    assert (request["status"], request["citizen_phone"], request["citizen_name"]) == ("submitted", "138****1234", "张*")
    assert (request["street_id"], request["district_id"]) == (street, city["D01"])
    rid = request["id"]

    request = ok(client.post(f"{API}/requests/{rid}/accept", json={"deadline_tier": "7wd", "note": "受理"},
                             headers=OPERATOR))
    assert (request["status"], request["deadline_tier"]) == ("accepted", "7wd")
    request = ok(client.post(f"{API}/requests/{rid}/dispatch",
                             json={"lead_unit_id": street, "assisting_unit_ids": [dept]}, headers=DISPATCHER))
    assert request["status"] == "dispatched"
    lead, helper = request["work_orders"]
    assert [(o["unit_id"], o["role"], o["status"]) for o in (lead, helper)] == [
        (street, "lead", "pending"), (dept, "assisting", "pending")]

    order = ok(client.post(f"{API}/work-orders/{lead['id']}/acknowledge", headers=handler(street)))
    assert order["status"] == "acknowledged"
    assert order["due_at"] is not None
    order = ok(client.post(f"{API}/work-orders/{lead['id']}/reply", json={"text": "已更换灯泡，恢复照明。"},
                           headers=handler(street)))
    assert order["status"] == "replied"
    assert ok(client.get(f"{API}/requests/{rid}"))["status"] == "replied"

    request = ok(client.post(f"{API}/requests/{rid}/callback",
                             json={"resolved": True, "satisfaction": "satisfied"}, headers=OPERATOR))
    assert (request["status"], request["citizen_phone"], request["citizen_name"]) == ("closed", "138****1234", "张*")
    assert [o["status"] for o in request["work_orders"]] == ["closed", "closed"]
    assert request["work_orders"][0]["satisfaction"] == "satisfied"

    for path in (f"/requests/{rid}", "/requests", "/requests?status=closed", f"/work-orders/{lead['id']}",
                 "/work-orders", "/supervisions?open=false"):
        ok(client.get(API + path))
    assert ok(client.get(f"{API}/requests"))[0]["citizen_phone"] == "138****1234"

    events = ok(client.get(f"{API}/requests/{rid}/events"))
    assert [(e["action"], e["from_status"], e["to_status"], e["actor"], e["actor_role"]) for e in events] == [
        ("submit", None, "submitted", "operator-7", "operator"),
        ("accept", "submitted", "accepted", "operator-7", "operator"),
        ("dispatch", "accepted", "dispatched", "dispatcher-1", "dispatcher"),
        ("acknowledge", "dispatched", "in_progress", "handler-1", "handler"),
        ("reply", "in_progress", "replied", "handler-1", "handler"),
        ("close", "replied", "replied", "operator-7", "operator"),
        ("close", "replied", "replied", "operator-7", "operator"),
        ("callback", "replied", "closed", "operator-7", "operator"),
    ]
    assert [e["id"] for e in events] == sorted(e["id"] for e in events)
    assert events[0]["created_at"] <= events[-1]["created_at"]


def test_dissatisfied_callback_and_supervision_over_http(client, city):
    street = city["D01-S01"]
    request, order_id = in_progress(client, street)
    rid = request["id"]
    ok(client.post(f"{API}/work-orders/{order_id}/reply", json={"text": "已处理"}, headers=handler(street)))
    request = ok(client.post(f"{API}/requests/{rid}/callback",
                             json={"resolved": False, "satisfaction": "dissatisfied"}, headers=OPERATOR))
    assert (request["status"], request["reopen_count"]) == ("dispatched", 1)
    assert [(o["round"], o["status"]) for o in request["work_orders"]] == [(1, "reopened"), (2, "pending")]
    case = ok(client.post(f"{API}/requests/{rid}/supervise", json={"note": "请尽快重办"}, headers=SUPERVISOR), 201)
    assert (case["reason"], case["note"], case["open"]) == ("manual", "请尽快重办", True)
    assert [c["id"] for c in ok(client.get(f"{API}/supervisions"))] == [case["id"]]
    closed_case = ok(client.post(f"{API}/supervisions/{case['id']}/close", json={"note": "已督促"},
                                 headers=SUPERVISOR))
    assert (closed_case["open"], closed_case["note"]) == (False, "请尽快重办\n已督促")


def test_extension_over_http(client, city):
    street = city["D01-S01"]
    _request, order_id = in_progress(client, street)
    order = ok(client.post(f"{API}/work-orders/{order_id}/extension",
                           json={"reason": "需协调管线单位", "until": "2099-01-05T18:00:00+08:00"},
                           headers=handler(street)))
    assert (order["status"], order["extension_until"]) == ("extension_requested", "2099-01-05T10:00:00Z")
    order = ok(client.post(f"{API}/work-orders/{order_id}/extension/decision", json={"approve": True},
                           headers=SUPERVISOR))
    assert (order["status"], order["due_at"], order["extension_status"]) == (
        "acknowledged", "2099-01-05T10:00:00Z", "approved")


# -- bad input --------------------------------------------------------------------------------


def _long(n: int) -> str:
    return "路" * n


BAD_REQUESTS = [
    pytest.param({k: v for k, v in NEW.items() if k != "title"}, "title", 422, id="missing-title"),
    pytest.param({**NEW, "title": _long(201)}, "title", 422, id="title-201"),
    pytest.param({**NEW, "title": "   "}, "title", 422, id="blank-title"),
    pytest.param({**NEW, "description": _long(4001)}, "description", 422, id="description-4001"),
    pytest.param({**NEW, "lat": 91}, "lat", 422, id="lat-91"),
    pytest.param({**NEW, "lon": -180.5}, "lon", 422, id="lon-out"),
    pytest.param({k: v for k, v in NEW.items() if k != "lon"}, "lon", 422, id="lat-without-lon"),
    pytest.param({k: v for k, v in NEW.items() if k != "lat"}, "lat", 422, id="lon-without-lat"),
    pytest.param({**NEW, "category_id": 999_999}, "category_id", 422, id="unknown-category"),
    pytest.param({**NEW, "grid_id": 999_999}, "grid_id", 422, id="unknown-grid"),
    pytest.param({**NEW, "category_id": 2**31}, "category_id", 422, id="category-id-too-big"),
    pytest.param({**NEW, "title": "路灯\x00不亮"}, "title", 422, id="nul-in-title"),
    pytest.param({**NEW, "description": "坏了\x07"}, "description", 422, id="bel-in-description"),
    pytest.param({**NEW, "citizen_phone": "call me"}, "citizen_phone", 422, id="bad-phone"),
    pytest.param({**NEW, "channel": "fax"}, "channel", 422, id="unknown-channel"),
    pytest.param({**NEW, "deadline_tier": "3d"}, "deadline_tier", 422, id="unknown-tier"),
    pytest.param({**NEW, "priority": "high"}, "priority", 422, id="unknown-field"),
    pytest.param({**NEW, "support_count": -1}, "support_count", 422, id="negative-support"),
]


@pytest.mark.parametrize(("body", "field", "status"), BAD_REQUESTS)
def test_bad_request_bodies_name_the_field(client, db, city, body, field, status):
    before = counts(db)
    response = client.post(f"{API}/requests", json=body, headers=OPERATOR)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert field in [f["field"] for f in error["fields"]]
    assert error["message"] == "提交的内容有误"
    assert all(CJK.search(f["message"]) for f in error["fields"]), error
    english = client.post(f"{API}/requests", json=body, headers={**OPERATOR, **EN}).json()["error"]
    assert english["message"] == "The submitted data is invalid"
    assert field in [f["field"] for f in english["fields"]]
    assert not any(CJK.search(f["message"]) for f in english["fields"]), english
    assert counts(db) == before


def test_messages_say_what_is_wrong(client, db):
    response = client.post(f"{API}/requests", json={**NEW, "title": _long(201)}, headers=EN)
    [field] = response.json()["error"]["fields"]
    assert (field["field"], field["type"], field["message"]) == ("title", "string_too_long", "At most 200 characters")
    response = client.post(f"{API}/requests", json={**NEW, "lat": 91})
    [field] = response.json()["error"]["fields"]
    assert (field["field"], field["message"]) == ("lat", "不能大于 90")
    response = client.post(f"{API}/requests", json={k: v for k, v in NEW.items() if k != "lon"})
    [field] = response.json()["error"]["fields"]
    assert (field["field"], field["message"]) == ("lon", "经度和纬度须同时提供")
    response = client.post(f"{API}/requests", json={**NEW, "grid_id": 999_999}, headers=EN)
    [field] = response.json()["error"]["fields"]
    assert (field["field"], field["message"]) == ("grid_id", "Unknown grid: 999999")


RAW_BODIES = [
    pytest.param(json.dumps({**NEW, "lat": "__NAN__"}).replace('"__NAN__"', "NaN").encode(), "lat", id="NaN"),
    pytest.param(json.dumps({**NEW, "lat": "__INF__"}).replace('"__INF__"', "Infinity").encode(), "lat",
                 id="Infinity"),
    pytest.param(b'{"title": "\xff\xfe\xfd", "description": "x"}', "body", id="invalid-utf8"),
    pytest.param("title=路灯&description=坏了".encode(), "body", id="not-json"),
    pytest.param(b'{"title": "a", "description": ', "body", id="truncated-json"),
    pytest.param(b"[1, 2, 3]", "body", id="json-array"),
    pytest.param(b"", "body", id="empty"),
]


@pytest.mark.parametrize(("raw", "field"), RAW_BODIES)
def test_raw_bodies_that_are_not_a_request(client, db, raw, field):
    before = counts(db)
    for lang, headers in (("zh", {}), ("en", EN)):
        response = client.post(f"{API}/requests", content=raw,
                               headers={"content-type": "application/json", **OPERATOR, **headers})
        assert response.status_code in (400, 422), response.text
        error = response.json()["error"]
        assert [f["field"] for f in error["fields"]] == [field]
        assert bool(CJK.search(error["fields"][0]["message"])) == (lang == "zh")
        assert bool(CJK.search(error["message"])) == (lang == "zh")
    assert counts(db) == before


@pytest.mark.parametrize("path", [
    "/requests/2147483648", "/requests/2147483648/events", "/work-orders/99999999999999999999",
    "/requests/0", "/requests/-1",
])
def test_ids_out_of_range_in_the_path_are_422(client, db, path):
    response = client.get(API + path)
    assert response.status_code == 422, response.text
    assert [f["field"] for f in response.json()["error"]["fields"]] in (["request_id"], ["work_order_id"])


def test_ids_out_of_range_in_posts_are_422(client, db, city):
    response = client.post(f"{API}/requests/2147483648/accept", json={}, headers=OPERATOR)
    assert (response.status_code, response.json()["error"]["fields"][0]["field"]) == (422, "request_id")
    response = client.post(f"{API}/work-orders/2147483648/acknowledge", headers=handler(2**31))
    assert response.status_code == 422
    assert {f["field"] for f in response.json()["error"]["fields"]} == {"work_order_id", "x-civicloop-unit"}
    response = client.get(f"{API}/requests", params={"lead_unit_id": 2**31})
    assert (response.status_code, response.json()["error"]["fields"][0]["field"]) == (422, "lead_unit_id")


def test_unknown_units_on_dispatch_store_nothing(client, db, city):
    request = accepted(client)
    rid = request["id"]
    before = counts(db)
    for body, field in [
        ({"lead_unit_id": 999_999}, "lead_unit_id"),
        ({"lead_unit_id": 2**31}, "lead_unit_id"),
        ({"lead_unit_id": city["D01-S01"], "assisting_unit_ids": [city["DEP-CG"], 999_999]}, "assisting_unit_ids.1"),
        ({"lead_unit_id": city["D01-S01"], "assisting_unit_ids": [city["D01-S01"]]}, "assisting_unit_ids.0"),
        ({"lead_unit_id": city["D01-S01"], "assisting_unit_ids": "DEP-CG"}, "assisting_unit_ids"),
        ({}, "lead_unit_id"),
    ]:
        response = client.post(f"{API}/requests/{rid}/dispatch", json=body, headers=DISPATCHER)
        assert response.status_code == 422, (body, response.text)
        assert [f["field"] for f in response.json()["error"]["fields"]] == [field], body
        english = client.post(f"{API}/requests/{rid}/dispatch", json=body, headers={**DISPATCHER, **EN})
        assert english.json()["error"]["message"] == "The submitted data is invalid"
    assert counts(db) == before
    assert ok(client.get(f"{API}/requests/{rid}"))["status"] == "accepted"


def test_a_naive_datetime_for_an_extension_is_refused(client, db, city):
    street = city["D01-S01"]
    _request, order_id = in_progress(client, street)
    before = counts(db)
    for body, field in [({"reason": "需协调", "until": "2099-01-05T18:00:00"}, "until"),
                        ({"reason": "需协调", "until": "next week"}, "until"),
                        ({"reason": "需协调"}, "until"),
                        ({"reason": "需协调", "extra_working_days": 0}, "extra_working_days"),
                        ({"until": "2099-01-05T18:00:00+08:00"}, "reason")]:
        response = client.post(f"{API}/work-orders/{order_id}/extension", json=body, headers=handler(street))
        assert response.status_code == 422, (body, response.text)
        assert [f["field"] for f in response.json()["error"]["fields"]] == [field], body
    response = client.post(f"{API}/work-orders/{order_id}/extension",
                           json={"reason": "x", "until": "2099-01-05T18:00:00"}, headers={**handler(street), **EN})
    assert response.json()["error"]["fields"][0]["message"] == "Time must carry a time zone"
    assert counts(db) == before
    assert ok(client.get(f"{API}/work-orders/{order_id}"))["status"] == "acknowledged"


# -- refused transitions ----------------------------------------------------------------------


def test_an_illegal_transition_is_409_with_a_clear_message(client, db, city):
    request = accepted(client)
    rid = request["id"]
    before = counts(db)
    response = client.post(f"{API}/requests/{rid}/accept", json={}, headers=OPERATOR)
    assert response.status_code == 409
    assert response.json()["error"] == {"code": "conflict_state", "message": "当前状态为“已受理”，不能执行“受理”",
                                        "fields": []}
    response = client.post(f"{API}/requests/{rid}/accept", json={}, headers={**OPERATOR, **EN})
    assert response.json()["error"]["message"] == "Cannot accept while the status is 'accepted'"
    response = client.post(f"{API}/requests/{rid}/callback", json={"resolved": True, "satisfaction": "satisfied"},
                           headers=OPERATOR)
    assert (response.status_code, response.json()["error"]["message"]) == (409, "当前状态为“已受理”，不能执行“回访”")
    assert counts(db) == before


def test_acknowledging_twice_is_409(client, db, city):
    street = city["D01-S01"]
    _request, order_id = in_progress(client, street)
    response = client.post(f"{API}/work-orders/{order_id}/acknowledge", headers=handler(street))
    assert response.status_code == 409
    assert response.json()["error"]["message"] == "当前状态为“已签收”，不能执行“签收”"


def test_a_fallback_order_cannot_be_returned_409(client, db, city):
    street = city["D01-S01"]
    request = dispatched(client, street)
    rid = request["id"]
    for unit in (street, city["D01-S02"]):
        order_id = request["work_orders"][-1]["id"]
        ok(client.post(f"{API}/work-orders/{order_id}/return", json={"reason": "不属本街道"}, headers=handler(unit)))
        request = ok(client.get(f"{API}/requests/{rid}"))
        if request["status"] == "accepted":
            request = ok(client.post(f"{API}/requests/{rid}/dispatch", json={"lead_unit_id": city["D01-S02"]},
                                     headers=DISPATCHER))
    assert (request["status"], request["fallback"], request["lead_unit_id"]) == ("dispatched", True, city["D01"])
    response = client.post(f"{API}/work-orders/{request['work_orders'][-1]['id']}/return",
                           json={"reason": "区里也不管"}, headers=handler(city["D01"]))
    assert response.status_code == 409
    assert response.json()["error"] == {"code": "fallback_no_return", "message": "兜底工单不能退单", "fields": []}


def test_a_wrong_role_is_403(client, db, city):
    request = submitted(client)
    rid = request["id"]
    before = counts(db)
    analyst = {"X-Civicloop-Actor": "analyst-1", "X-Civicloop-Role": "analyst"}  # sees every request, fires none
    response = client.post(f"{API}/requests/{rid}/accept", json={}, headers=analyst)
    assert response.status_code == 403
    assert response.json()["error"] == {"code": "forbidden_role", "message": "角色“分析人员”无权执行“受理”",
                                        "fields": []}
    response = client.post(f"{API}/requests/{rid}/accept", json={}, headers={**analyst, **EN})
    assert response.json()["error"]["message"] == "Role 'analyst' may not accept"
    # a handler does not even see a request no order of its unit is about: 404, not 403
    response = client.post(f"{API}/requests/{rid}/accept", json={}, headers=handler(city["D01-S01"]))
    assert response.status_code == 404
    assert counts(db) == before
    assert ok(client.get(f"{API}/requests/{rid}"))["status"] == "submitted"


def test_a_refused_reopen_leaves_nothing_behind(client, db, city):
    street = city["D01-S01"]
    request, order_id = in_progress(client, street)
    ok(client.post(f"{API}/work-orders/{order_id}/reply", json={"text": "已处理"}, headers=handler(street)))
    before = counts(db)
    response = client.post(f"{API}/requests/{request['id']}/reopen", json={"reason": "再办"}, headers=OPERATOR)
    assert response.status_code == 403
    assert counts(db) == before
    assert [o["status"] for o in ok(client.get(f"{API}/requests/{request['id']}"))["work_orders"]] == ["replied"]


def test_an_unknown_role_header_is_422(client, db):
    response = client.post(f"{API}/requests", json=NEW, headers={"X-Civicloop-Role": "mayor"})
    assert response.status_code == 422
    assert [f["field"] for f in response.json()["error"]["fields"]] == ["x-civicloop-role"]


def test_unknown_records_are_404(client, db, city):
    response = client.get(f"{API}/requests/999999")
    assert response.status_code == 404
    assert response.json()["error"] == {"code": "not_found", "message": "诉求不存在：999999", "fields": []}
    response = client.post(f"{API}/requests/999999/accept", json={}, headers={**OPERATOR, **EN})
    assert (response.status_code, response.json()["error"]["message"]) == (404, "Service request not found: 999999")
    response = client.post(f"{API}/work-orders/999999/acknowledge", headers=handler(city["D01-S01"]))
    assert (response.status_code, response.json()["error"]["message"]) == (404, "工单不存在：999999")
    assert client.get(f"{API}/requests/999999/events").status_code == 404


def test_another_units_order_is_404_for_a_handler(client, db, city):
    request = dispatched(client, city["D01-S01"])
    order_id = request["work_orders"][0]["id"]
    for call in (lambda h: client.get(f"{API}/work-orders/{order_id}", headers=h),
                 lambda h: client.post(f"{API}/work-orders/{order_id}/acknowledge", headers=h)):
        assert call(handler(city["D01-S02"])).status_code == 404
    assert ok(client.get(f"{API}/work-orders", headers=handler(city["D01-S02"]))) == []
    assert [o["id"] for o in ok(client.get(f"{API}/work-orders", headers=handler(city["D01-S01"])))] == [order_id]


def test_close_without_callback_over_http(client, city):
    street = city["D01-S01"]
    request, order_id = in_progress(client, street)
    rid = request["id"]
    early = client.post(f"{API}/requests/{rid}/close-unrated", json={"reason": "联系不上"}, headers=OPERATOR)
    assert early.status_code == 409  # not replied yet
    ok(client.post(f"{API}/work-orders/{order_id}/reply", json={"text": "已处理"}, headers=handler(street)))
    missing = client.post(f"{API}/requests/{rid}/close-unrated", json={}, headers=OPERATOR)
    assert missing.status_code == 422
    assert [f["field"] for f in missing.json()["error"]["fields"]] == ["reason"]
    request = ok(client.post(f"{API}/requests/{rid}/close-unrated", json={"reason": "三次联系不上"},
                             headers=OPERATOR))
    assert request["status"] == "closed"
    assert [(o["status"], o["callback_at"]) for o in request["work_orders"]] == [("closed", None)]
