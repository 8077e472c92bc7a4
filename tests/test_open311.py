"""Open311 GeoReport v2 conformance under /open311/v2: every method in XML and JSON, every error
case as the spec's ``errors`` list with its HTTP status, the 90-day window of GET requests, the
status mapping, privacy, and a request filed through Open311 entering the loop (on both backends)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select

from civicloop.core.db import session_factory
from civicloop.core.roles import Role
from civicloop.core.settings import Settings, get_settings
from civicloop.importers.sample_city import build_routes
from civicloop.open311 import inputs, keys
from civicloop.open311.attributes import Attribute, AttributeProblem, Datatype, check_value
from civicloop.open311.models import Submission
from civicloop.org.models import Place, PlaceKind
from civicloop.requests import intake
from civicloop.requests.models import Channel, RequestEvent, ServiceRequest
from civicloop.requests.service import Actor

V2 = "/open311/v2"
API = "/api/v1"
EN = {"Accept-Language": "en"}
LAMP = "城乡建设/市政设施/路灯不亮"
TZ = ZoneInfo("Asia/Shanghai")


@pytest.fixture
def api_key(db) -> str:
    with session_factory(db)() as s:
        _, key = keys.create_key(s, name="test-app")
        s.commit()
    return key


def form(key: str, city: dict[str, int], **extra: str) -> dict[str, str]:
    data = {"api_key": key, "service_code": str(city[f"cat:{LAMP}"]), "lat": "39.905", "long": "116.405",
            "description": "三号楼前路灯坏了一周，夜里很黑。", "first_name": "三", "last_name": "张",
            "phone": "13812341234", "email": "zhang@example.cn", "account_id": "acct-42", "device_id": "dev-1",
            "media_url": "https://img.example.cn/lamp.jpg"}
    data.update(extra)
    return {k: v for k, v in data.items() if v is not None}


def xml(response) -> ET.Element:
    assert response.headers["content-type"] == "text/xml; charset=utf-8"
    assert response.content.startswith(b'<?xml version="1.0" encoding="utf-8"?>')
    return ET.fromstring(response.content)


def as_json(response):
    assert response.headers["content-type"] == "application/json; charset=utf-8"
    return response.json()


def errors(response, status: int, fmt: str = "json") -> list[str]:
    """The descriptions of a spec errors answer, checked for status and shape."""
    assert response.status_code == status, response.text
    if fmt == "json":
        body = as_json(response)
        assert all(set(e) == {"code", "description"} and e["code"] == status for e in body)
        return [e["description"] for e in body]
    root = xml(response)
    assert root.tag == "errors" and all(e.tag == "error" for e in root)
    assert all(e.findtext("code") == str(status) for e in root)
    return [e.findtext("description") for e in root]


def counts(db) -> tuple[int, int, int]:
    with session_factory(db)() as s:
        return tuple(s.scalar(select(func.count()).select_from(m)) for m in (ServiceRequest, Submission, RequestEvent))


def file(client, key, city, fmt="json", **extra):
    response = client.post(f"{V2}/requests.{fmt}", data=form(key, city, **extra))
    assert response.status_code == 201, response.text
    return response


def old_request(db, city, days: int, **extra) -> int:
    """A request filed ``days`` ago through the loop's own intake (hotline)."""
    with session_factory(db)() as s:
        data = intake.NewRequest(channel=Channel.HOTLINE, title="旧诉求", description=f"{days} 天前的诉求",
                                 category_id=extra.get("category_id"))
        request = intake.submit(s, data=data, actor=Actor("op", Role.OPERATOR),
                                now=datetime.now(UTC) - timedelta(days=days))
        s.commit()
        return request.id


# -- GET services / GET service definition --------------------------------------------------------


def test_service_list_in_both_formats(client, city):
    services = as_json(client.get(f"{V2}/services.json?jurisdiction_id=civicloop.example"))
    categories = {k: v for k, v in city.items() if k.startswith("cat:")}
    assert len(services) == len(categories)
    lamp = next(s for s in services if s["service_code"] == str(city[f"cat:{LAMP}"]))
    assert lamp == {"service_code": str(city[f"cat:{LAMP}"]), "service_name": "路灯不亮",
                    "description": "城乡建设 / 市政设施 / 路灯不亮", "metadata": True, "type": "realtime",
                    "keywords": "城乡建设, 市政设施, 路灯不亮", "group": "城乡建设"}
    root = xml(client.get(f"{V2}/services.xml"))
    assert root.tag == "services" and len(root) == len(services)
    first = root[0]
    assert first.tag == "service"
    assert [c.tag for c in first] == ["service_code", "service_name", "description", "metadata", "type",
                                      "keywords", "group"]
    assert {e.findtext("service_code") for e in root} == {s["service_code"] for s in services}
    assert first.findtext("metadata") == "true"


def test_service_definition_has_every_datatype(client, city):
    code = str(city["cat:城乡建设/市政设施"])
    definition = as_json(client.get(f"{V2}/services/{code}.json", headers=EN))
    assert definition["service_code"] == code
    by_code = {a["code"]: a for a in definition["attributes"]}
    assert {a["datatype"] for a in by_code.values()} == {
        "string", "number", "datetime", "text", "singlevaluelist", "multivaluelist"}
    sub = by_code["subcategory"]
    assert {v["name"] for v in sub["values"]} == {"道路破损", "路灯不亮"}
    assert {v["key"] for v in sub["values"]} == {str(city["cat:城乡建设/市政设施/道路破损"]), str(city[f"cat:{LAMP}"])}
    assert sorted(a["order"] for a in by_code.values()) == [1, 2, 3, 4, 5, 6]
    assert all(a["variable"] is True and a["required"] is False for a in by_code.values())
    assert by_code["title"]["description"].startswith("Title")
    assert "values" not in by_code["title"]

    root = xml(client.get(f"{V2}/services/{code}.xml"))
    assert root.tag == "service_definition" and root.findtext("service_code") == code
    attributes = root.find("attributes")
    assert [a.tag for a in attributes] == ["attribute"] * 6
    sub = next(a for a in attributes if a.findtext("code") == "subcategory")
    assert [v.tag for v in sub.find("values")] == ["value", "value"]
    assert {v.findtext("name") for v in sub.find("values")} == {"道路破损", "路灯不亮"}
    assert sub.findtext("description") == "更具体的分类（可不选）"
    # a leaf has no sub-category, only the common attributes
    leaf = as_json(client.get(f"{V2}/services/{city[f'cat:{LAMP}']}.json"))
    assert "subcategory" not in {a["code"] for a in leaf["attributes"]}


@pytest.mark.parametrize("fmt", ["json", "xml"])
def test_unknown_service_and_format(client, city, fmt):
    assert errors(client.get(f"{V2}/services/999999.{fmt}"), 404, fmt) == ["服务（诉求分类）不存在：999999"]
    assert errors(client.get(f"{V2}/services/abc.{fmt}", headers=EN), 404, fmt) == ["Unknown service_code: abc"]
    assert errors(client.get(f"{V2}/nothing/here.{fmt}"), 404, fmt)
    assert errors(client.delete(f"{V2}/requests.{fmt}"), 405, fmt)
    assert errors(client.get(f"{V2}/services.csv"), 400, "xml") == ["不支持的格式：csv，请用 .json 或 .xml"]


# -- POST requests --------------------------------------------------------------------------------


def test_post_files_into_the_loop_json(client, city, api_key, db):
    response = file(client, api_key, city, jurisdiction_id="civicloop.example",
                    **{"attribute[people_affected]": "12", "attribute[contact_time][]": "evening",
                       "attribute[title]": "路灯坏了", "attribute[occurred_at]": "2026-05-01T20:30:00+08:00",
                       "attribute[location_details]": "三号楼\n东侧"})
    body = as_json(response)
    assert len(body) == 1 and set(body[0]) == {"service_request_id", "service_notice", "account_id"}
    assert body[0]["account_id"] == "acct-42"
    assert body[0]["service_notice"] == "已收到，正在分派承办单位"
    rid = body[0]["service_request_id"]
    token = response.headers["X-Open311-Token"]
    with session_factory(db)() as s:
        request = s.get(ServiceRequest, rid)
        assert (request.channel, request.status, request.category_id) == ("open311", "submitted", city[f"cat:{LAMP}"])
        assert (request.title, request.citizen_name, request.citizen_phone) == ("路灯坏了", "张三", "13812341234")
        assert request.street_id == city["D01-S01"]
        assert request.description == ("三号楼前路灯坏了一周，夜里很黑。\n\n发生时间：2026-05-01 20:30\n涉及人数：12\n"
                                       "位置说明：三号楼\n东侧\n方便回访时段：晚上")
        sub = s.scalar(select(Submission).where(Submission.request_id == rid))
        assert (sub.token, sub.email, sub.media_url) == (token, "zhang@example.cn", "https://img.example.cn/lamp.jpg")
        assert sub.attributes["people_affected"] == 12
        events = s.scalars(select(RequestEvent).where(RequestEvent.request_id == rid)).all()
        assert [(e.action, e.actor, e.actor_role) for e in events] == [("submit", "open311:test-app", "resident")]


def test_post_xml_subcategory_and_address(client, city, api_key, db):
    with session_factory(db)() as s:
        place = Place(name="望湖小区", kind=PlaceKind.ESTATE, district_id=city["D01"], aliases=[], source="test")
        s.add(place)
        s.commit()
        place_id = place.id
    parent = str(city["cat:城乡建设/市政设施"])
    response = client.post(f"{V2}/requests.xml", data=form(
        api_key, city, service_code=parent, lat=None, long=None, address_id=str(place_id), description=None,
        **{"attribute[subcategory]": str(city[f"cat:{LAMP}"])}))
    assert response.status_code == 201, response.text
    root = xml(response)
    assert root.tag == "service_requests" and [e.tag for e in root] == ["request"]
    assert [c.tag for c in root[0]] == ["service_request_id", "service_notice", "account_id"]
    rid = int(root[0].findtext("service_request_id"))
    with session_factory(db)() as s:
        request = s.get(ServiceRequest, rid)
        assert (request.category_id, request.address, request.title, request.description) == (
            city[f"cat:{LAMP}"], "云河区望湖小区", "路灯不亮", "路灯不亮")
    item = as_json(client.get(f"{V2}/requests/{rid}.json"))[0]
    assert (item["address"], item["address_id"], item["lat"]) == ("云河区望湖小区", str(place_id), None)
    # address_string alone is a location too
    file(client, api_key, city, lat=None, long=None, address_string="望湖街道第一社区三号楼")


@pytest.mark.parametrize("fmt", ["json", "xml"])
def test_post_api_key_errors_are_403(client, city, api_key, db, fmt):
    before = counts(db)
    assert errors(client.post(f"{V2}/requests.{fmt}", data=form("", city)), 403, fmt) == [
        "缺少 api_key，不能提交诉求"]
    assert errors(client.post(f"{V2}/requests.{fmt}", data=form("o311_00000000_" + "x" * 43, city), headers=EN),
                  403, fmt) == ["Invalid api_key: cannot create a request"]
    wrong = api_key[:-1] + ("B" if api_key.endswith("A") else "A")
    assert errors(client.post(f"{V2}/requests.{fmt}", data=form(wrong, city)), 403, fmt)
    with session_factory(db)() as s:
        keys.revoke_key(s, name="test-app")
        s.commit()
    assert errors(client.post(f"{V2}/requests.{fmt}", data=form(api_key, city)), 403, fmt)
    assert counts(db) == before


@pytest.mark.parametrize("fmt", ["json", "xml"])
def test_post_unknown_service_is_404(client, city, api_key, db, fmt):
    before = counts(db)
    assert errors(client.post(f"{V2}/requests.{fmt}", data=form(api_key, city, service_code="424242")), 404, fmt) \
        == ["服务（诉求分类）不存在：424242"]
    assert counts(db) == before


BAD_POSTS = [
    ({"service_code": ""}, ["service_code: Required"]),
    ({"lat": None, "long": None}, ["A location is required: lat and long, or address_string, or address_id"]),
    ({"long": None}, ["lat and long go together"]),
    ({"lat": "91"}, ["lat: Must lie between -90 and 90"]),
    ({"long": "east"}, ["long: Must be a number"]),
    ({"lat": "nan"}, ["lat: Must lie between -90 and 90"]),
    ({"email": "not-an-address"}, ["email: Not a valid e-mail address"]),
    ({"media_url": "javascript:alert(1)"}, ["media_url: Must be an http or https URL"]),
    ({"phone": "call me"}, ["phone: Not a valid phone number"]),
    ({"description": "x" * 4001}, ["description: At most 4000 characters"]),
    ({"description": "bad\x00text"}, ["description: Contains control characters"]),
    ({"first_name": "x" * 51}, ["first_name: At most 50 characters"]),
    ({"address_id": "abc"}, ["address_id: Unknown address_id: abc"]),
    ({"address_id": "999999"}, ["address_id: Unknown address_id: 999999"]),
    ({"attribute[bogus]": "1"}, ["The service has no attribute bogus"]),
    ({"attribute[people_affected]": "0"}, ["Attribute people_affected must lie between 1 and 1000000"]),
    ({"attribute[people_affected]": "many"}, ["Attribute people_affected must be a number"]),
    ({"attribute[occurred_at]": "2026-05-01T20:30:00"}, ["Attribute occurred_at must be ISO 8601 with a zone"]),
    ({"attribute[contact_time][]": "midnight"}, ["Attribute contact_time has no option midnight"]),
    ({"attribute[title]": "two\nlines"}, ["Attribute title contains control characters or line breaks"]),
    ({"attribute[subcategory]": "1"}, ["The service has no attribute subcategory"]),
    ({"attribute": "1"}, ["attribute: Attributes are written attribute[code]"]),
    ({"description": "x" * 3995, "attribute[people_affected]": "12"},
     ["description: At most 4000 characters with the attributes"]),
]


@pytest.mark.parametrize(("extra", "expected"), BAD_POSTS, ids=[str(i) for i in range(len(BAD_POSTS))])
def test_post_bad_input_is_400_and_stores_nothing(client, city, api_key, db, extra, expected):
    before = counts(db)
    response = client.post(f"{V2}/requests.json", data=form(api_key, city, **extra), headers=EN)
    assert errors(response, 400) == expected
    assert counts(db) == before


def test_post_lists_every_problem_and_refuses_non_forms(client, city, api_key, db):
    before = counts(db)
    found = errors(client.post(f"{V2}/requests.xml", data=form(api_key, city, lat="100", email="x", phone="?")),
                   400, "xml")
    assert found == ["lat: 须在 -90 到 90 之间", "email: 电子邮箱格式不正确", "phone: 电话号码格式不正确"]
    assert errors(client.post(f"{V2}/requests.json", json=form(api_key, city)), 400) == [
        "请以 application/x-www-form-urlencoded 表单提交"]
    raw = b"api_key=" + api_key.encode() + b"&service_code=1&lat=1&long=1&description=\xff\xfe"
    assert errors(client.post(f"{V2}/requests.json", content=raw,
                              headers={"Content-Type": "application/x-www-form-urlencoded"}), 400) == ["表单无法解析"]
    twice = f"api_key={api_key}&service_code=1&service_code=2&lat=1&long=1"
    assert errors(client.post(f"{V2}/requests.json", content=twice.encode(),
                              headers={"Content-Type": "application/x-www-form-urlencoded"}), 400) == [
        "service_code: 只能填写一次"]
    assert counts(db) == before


def test_post_reads_raw_utf8_and_multipart(client, city, api_key, db):
    raw = f"api_key={api_key}&service_code={city[f'cat:{LAMP}']}&lat=39.905&long=116.405&description=路灯不亮了"
    response = client.post(f"{V2}/requests.json", content=raw.encode("utf-8"),
                           headers={"Content-Type": "application/x-www-form-urlencoded"})
    rid = as_json(response)[0]["service_request_id"]
    assert as_json(client.get(f"{V2}/requests/{rid}.json"))[0]["description"] == "路灯不亮了"
    response = client.post(f"{V2}/requests.json", files={"x": ("a.txt", b"1")}, data=form(api_key, city))
    assert response.status_code == 201, response.text


# -- tokens ---------------------------------------------------------------------------------------


def test_token_in_both_formats(client, city, api_key):
    response = file(client, api_key, city)
    rid, token = response.json()[0]["service_request_id"], response.headers["X-Open311-Token"]
    assert as_json(client.get(f"{V2}/tokens/{token}.json?jurisdiction_id=x")) == [
        {"service_request_id": rid, "token": token}]
    root = xml(client.get(f"{V2}/tokens/{token}.xml"))
    assert root.tag == "service_requests" and root[0].tag == "request"
    assert (root[0].findtext("service_request_id"), root[0].findtext("token")) == (str(rid), token)
    for fmt in ("json", "xml"):
        assert errors(client.get(f"{V2}/tokens/nope.{fmt}", headers=EN), 404, fmt) == ["Unknown token: nope"]
        assert errors(client.get(f"{V2}/tokens/{'x' * 100}.{fmt}"), 404, fmt)


# -- GET requests / GET request -------------------------------------------------------------------

FIELDS = ["service_request_id", "status", "status_notes", "service_name", "service_code", "description",
          "agency_responsible", "service_notice", "requested_datetime", "updated_datetime", "expected_datetime",
          "address", "address_id", "zipcode", "lat", "long", "media_url"]


def test_get_requests_in_both_formats_without_contact(client, city, api_key):
    rid = file(client, api_key, city, description="我的电话13812341234，路灯坏了").json()[0]["service_request_id"]
    items = as_json(client.get(f"{V2}/requests.json?jurisdiction_id=civicloop.example"))
    assert [i["service_request_id"] for i in items] == [rid]
    item = items[0]
    assert list(item) == FIELDS
    assert (item["status"], item["status_notes"], item["service_name"]) == ("open", "待受理", "路灯不亮")
    assert (item["lat"], item["long"], item["media_url"]) == (39.905, 116.405, "https://img.example.cn/lamp.jpg")
    assert item["description"] == "我的电话138****1234，路灯坏了"
    requested = datetime.fromisoformat(item["requested_datetime"])
    assert requested.utcoffset() == timedelta(hours=8)
    assert item["expected_datetime"] is None and item["agency_responsible"] is None

    for response in (client.get(f"{V2}/requests.xml"), client.get(f"{V2}/requests/{rid}.xml"),
                     client.get(f"{V2}/requests.json"), client.get(f"{V2}/requests/{rid}.json")):
        for secret in ("13812341234", "张三", "zhang@example.cn", "acct-42", "dev-1"):
            assert secret not in response.text
    root = xml(client.get(f"{V2}/requests/{rid}.xml"))
    assert root.tag == "service_requests" and [c.tag for c in root[0]] == FIELDS
    assert root[0].findtext("status") == "open" and root[0].findtext("zipcode") == ""
    assert as_json(client.get(f"{V2}/requests/{rid}.json")) == items


@pytest.mark.parametrize("fmt", ["json", "xml"])
def test_get_request_not_found(client, city, fmt):
    assert errors(client.get(f"{V2}/requests/12345.{fmt}"), 404, fmt) == ["诉求不存在：12345"]
    assert errors(client.get(f"{V2}/requests/abc.{fmt}", headers=EN), 404, fmt) == ["No service request abc"]
    assert errors(client.get(f"{V2}/requests/99999999999999.{fmt}"), 404, fmt)


def ids(client, query: str = "") -> list[int]:
    return [i["service_request_id"] for i in as_json(client.get(f"{V2}/requests.json{query}"))]


def test_ninety_day_window_default_and_filters(client, city, db):
    recent, old, ancient = old_request(db, city, 10), old_request(db, city, 100), old_request(db, city, 200)
    assert ids(client) == [recent]  # the default window is the last 90 days
    root = xml(client.get(f"{V2}/requests.xml"))
    assert [r.findtext("service_request_id") for r in root] == [str(recent)]
    now = datetime.now(TZ)
    day = lambda d: (now - timedelta(days=d)).strftime("%Y-%m-%dT%H:%M:%S%z")  # noqa: E731
    assert ids(client, f"?start_date={day(150).replace('+', '%2B')}") == [old]  # 90 days after start
    assert ids(client, f"?end_date={day(50).replace('+', '%2B')}") == [old]  # 90 days before end
    z = lambda d: (datetime.now(UTC) - timedelta(days=d)).strftime("%Y-%m-%dT%H:%M:%SZ")  # noqa: E731
    assert ids(client, f"?start_date={z(210)}&end_date={z(190)}") == [ancient]
    assert ids(client, f"?start_date={z(120)}&end_date={z(31)}") == [old]
    date_only = (now - timedelta(days=101)).date().isoformat()
    assert ids(client, f"?start_date={date_only}") == [old]
    assert ids(client, f"?service_request_id={ancient},{recent}") == [recent, ancient]  # overrides the window
    assert ids(client, f"?service_request_id={ancient}&start_date={z(20)}&status=open") == [ancient]
    assert ids(client, "?start_date=&end_date=&status=&service_code=") == [recent]  # empty is absent


@pytest.mark.parametrize("fmt", ["json", "xml"])
def test_get_requests_bad_filters_are_400(client, city, fmt):
    z = lambda d: (datetime.now(UTC) - timedelta(days=d)).strftime("%Y-%m-%dT%H:%M:%SZ")  # noqa: E731
    cases = [
        (f"start_date={z(100)}&end_date={z(5)}", ["The date range may not span more than 90 days"]),
        (f"start_date={z(5)}&end_date={z(10)}", ["start_date must not be after end_date"]),
        ("start_date=yesterday", ["start_date: Must be ISO 8601 with a zone, e.g. 2010-01-01T00:00:00Z"]),
        ("end_date=2026-05-01T08:00:00", ["end_date: Must be ISO 8601 with a zone, e.g. 2010-01-01T00:00:00Z"]),
        ("start_date=2026-02-30", ["start_date: Must be ISO 8601 with a zone, e.g. 2010-01-01T00:00:00Z"]),
        ("status=pending", ["status: Must be open or closed"]),
        ("service_request_id=1,x", ["service_request_id: Not a service request id: x"]),
        ("service_code=424242", ["service_code: Unknown service_code: 424242"]),
        ("status=open,bad&start_date=x", ["status: Must be open or closed",
                                          "start_date: Must be ISO 8601 with a zone, e.g. 2010-01-01T00:00:00Z"]),
    ]
    for query, expected in cases:
        assert errors(client.get(f"{V2}/requests.{fmt}?{query}", headers=EN), 400, fmt) == expected, query


def test_status_mapping_and_service_code_filter(client, city, api_key, db):
    street = city["D01-S01"]
    closed = file(client, api_key, city).json()[0]["service_request_id"]
    rejected = file(client, api_key, city).json()[0]["service_request_id"]
    other = old_request(db, city, 1, category_id=city["cat:环境保护/噪声污染/施工噪声"])
    operator = {"X-Civicloop-Role": "operator"}
    handler = {"X-Civicloop-Role": "handler", "X-Civicloop-Unit": str(street)}
    assert client.post(f"{API}/requests/{closed}/accept", json={}, headers=operator).status_code == 200
    order = client.post(f"{API}/requests/{closed}/dispatch", json={"lead_unit_id": street},
                        headers={"X-Civicloop-Role": "dispatcher"}).json()["work_orders"][0]
    dispatched = as_json(client.get(f"{V2}/requests/{closed}.json"))[0]
    assert (dispatched["status"], dispatched["status_notes"], dispatched["agency_responsible"]) == (
        "open", "已派单", "望湖街道")
    assert dispatched["expected_datetime"] == datetime.fromisoformat(order["response_due_at"]).astimezone(
        TZ).isoformat(timespec="seconds")
    acknowledged = client.post(f"{API}/work-orders/{order['id']}/acknowledge", headers=handler).json()
    item = as_json(client.get(f"{V2}/requests/{closed}.json", headers=EN))[0]
    assert (item["status"], item["status_notes"]) == ("open", "in progress")
    assert item["expected_datetime"] == datetime.fromisoformat(acknowledged["due_at"]).astimezone(
        TZ).isoformat(timespec="seconds")
    client.post(f"{API}/work-orders/{order['id']}/reply", json={"text": "已更换灯泡，恢复照明。"}, headers=handler)
    assert as_json(client.get(f"{V2}/requests/{closed}.json"))[0]["status"] == "open"  # awaiting callback
    client.post(f"{API}/requests/{closed}/callback", json={"resolved": True, "satisfaction": "satisfied"},
                headers=operator)
    client.post(f"{API}/requests/{rejected}/reject", json={"reason": "out_of_scope"}, headers=operator)

    items = {i["service_request_id"]: i for i in as_json(client.get(f"{V2}/requests.json"))}
    assert (items[closed]["status"], items[closed]["status_notes"]) == ("closed", "已更换灯泡，恢复照明。")
    assert items[closed]["updated_datetime"] >= items[closed]["requested_datetime"]
    assert (items[rejected]["status"], items[rejected]["status_notes"]) == ("closed", "不属于受理范围")
    assert items[other]["status"] == "open"
    assert sorted(ids(client, "?status=closed")) == sorted([closed, rejected])
    assert ids(client, "?status=open") == [other]
    assert sorted(ids(client, "?status=open,closed")) == sorted([closed, rejected, other])
    lamp, noise = city[f"cat:{LAMP}"], city["cat:环境保护/噪声污染/施工噪声"]
    assert sorted(ids(client, f"?service_code={lamp}")) == sorted([closed, rejected])
    assert sorted(ids(client, f"?service_code={city['cat:城乡建设']}")) == sorted([closed, rejected])  # children
    assert sorted(ids(client, f"?service_code={lamp},{noise}")) == sorted([closed, rejected, other])
    assert ids(client, f"?service_code={noise}&status=closed") == []
    root = xml(client.get(f"{V2}/requests.xml?status=closed"))
    assert {r.findtext("status") for r in root} == {"closed"}


# -- the loop -------------------------------------------------------------------------------------


def test_request_filed_through_open311_is_routed_and_deadlined(client, city, api_key, db):
    with session_factory(db)() as s:
        assert build_routes(s) > 0
        s.commit()
    on = Settings(_env_file=None, triage_on_intake=True, model_path="/nonexistent/model.joblib")  # type: ignore[call-arg]
    client.app.dependency_overrides[get_settings] = lambda: on
    body = as_json(client.post(f"{V2}/requests.json", data=form(api_key, city), headers=EN))
    rid = body[0]["service_request_id"]
    assert body[0]["service_notice"].startswith("Sent to 望湖街道; due ")
    item = as_json(client.get(f"{V2}/requests/{rid}.json"))[0]
    assert (item["status"], item["agency_responsible"], item["status_notes"]) == ("open", "望湖街道", "已派单")
    assert item["expected_datetime"] is not None
    with session_factory(db)() as s:
        request = s.get(ServiceRequest, rid)
        assert (request.status, request.lead_unit_id) == ("dispatched", city["D01-S01"])
        assert [o.unit_id for o in request.work_orders] == [city["D01-S01"], city["DEP-CG"]]
    # the same matter again at the same place is linked to it as a duplicate
    body = as_json(client.post(f"{V2}/requests.json", data=form(api_key, city)))
    assert body[0]["service_notice"] == f"与诉求 {rid} 反映同一问题，将随其一并答复"
    item = as_json(client.get(f"{V2}/requests/{body[0]['service_request_id']}.json"))[0]
    assert (item["status"], item["status_notes"]) == ("closed", f"重复件，随诉求 {rid} 一并答复")


# -- pure rules -----------------------------------------------------------------------------------


def attribute(datatype: Datatype, **extra) -> Attribute:
    return Attribute("a", datatype, 1, ("", ""), ("", ""), **extra)


def test_attribute_values_by_datatype():
    values = (("x", "X", ""), ("y", "Y", ""))
    assert check_value(attribute(Datatype.STRING), [" hi "]) == "hi"
    assert check_value(attribute(Datatype.TEXT), ["two\nlines"]) == "two\nlines"
    assert check_value(attribute(Datatype.NUMBER), ["2.5"]) == 2.5
    assert check_value(attribute(Datatype.NUMBER), ["3"]) == 3
    assert check_value(attribute(Datatype.DATETIME), ["2010-01-01T00:00:00Z"]) == "2010-01-01T00:00:00+00:00"
    assert check_value(attribute(Datatype.SINGLEVALUELIST, values=values), ["y"]) == "y"
    assert check_value(attribute(Datatype.MULTIVALUELIST, values=values), ["y", "x", "y"]) == ["y", "x"]
    assert check_value(attribute(Datatype.STRING), ["", " "]) is None
    bad = [
        (attribute(Datatype.STRING, required=True), [], "o311.attr_required"),
        (attribute(Datatype.STRING), ["a", "b"], "o311.attr_one"),
        (attribute(Datatype.STRING, max_length=3), ["abcd"], "o311.attr_long"),
        (attribute(Datatype.TEXT), ["bell\x07"], "o311.attr_chars"),
        (attribute(Datatype.NUMBER), ["inf"], "o311.attr_range"),
        (attribute(Datatype.NUMBER, maximum=5), ["6"], "o311.attr_range"),
        (attribute(Datatype.DATETIME), ["2010-01-01"], "o311.attr_datetime"),
        (attribute(Datatype.SINGLEVALUELIST, values=values), ["z"], "o311.attr_value"),
        (attribute(Datatype.MULTIVALUELIST, values=values), ["x", "z"], "o311.attr_value"),
    ]
    for attr, raw, code in bad:
        with pytest.raises(AttributeProblem) as caught:
            check_value(attr, raw)
        assert caught.value.code == code


class Params(dict):
    def getlist(self, key):
        value = self.get(key)
        return [] if value is None else [value]


def test_window_rule_without_database():
    now = datetime(2026, 6, 1, tzinfo=UTC)
    query = inputs.parse_query(Params(), now=now, tz=TZ)
    assert (query.start, query.end) == (now - timedelta(days=90), now)
    query = inputs.parse_query(Params(start_date="2026-01-01T00:00:00Z"), now=now, tz=TZ)
    assert query.end - query.start == timedelta(days=90)
    query = inputs.parse_query(Params(end_date="2026-01-01"), now=now, tz=TZ)
    assert query.end == datetime(2026, 1, 1, tzinfo=TZ) and query.end - query.start == timedelta(days=90)
    exactly = inputs.parse_query(Params(start_date="2026-01-01T00:00:00Z", end_date="2026-04-01T00:00:00Z"),
                                 now=now, tz=TZ)
    assert exactly.end - exactly.start == timedelta(days=90)
    with pytest.raises(inputs.Open311Error):
        inputs.parse_query(Params(start_date="2026-01-01T00:00:00Z", end_date="2026-04-01T00:00:01Z"),
                           now=now, tz=TZ)


@pytest.mark.parametrize("query", ["start_date=9999-12-31T23:59:59Z", "start_date=0001-01-01T00:00:00%2B14:00",
                                   "end_date=0001-01-02T00:00:00Z", "start_date=9999-12-31T23:59:59-12:00",
                                   "end_date=0001-01-01"])
def test_dates_at_the_edge_of_the_calendar_are_a_400(client, city, query):
    # found by a user trial: the 90-day window overflowed into a 500
    response = client.get(f"{V2}/requests.json?{query}")
    assert response.status_code == 400
    assert response.json()[0]["code"] == 400
