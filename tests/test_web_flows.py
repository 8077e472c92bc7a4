"""What each role does through the web app's forms (TestClient, SQLite and PostgreSQL): the operator files
and accepts or rejects, the dispatcher dispatches from the queue and re-dispatches or falls back, the unit
acknowledges, returns, asks for time and replies, the supervisor decides extensions and reads the ranking,
the resident files, follows and rates, the analyst reviews findings and the map, the ledger filters and
exports. Each action goes through the same use cases as the API; records outside one's scope are 404.
"""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from openpyxl import load_workbook
from sqlalchemy import Engine, select

from civicloop.analytics.models import FindingStatus, StoredFinding
from civicloop.core.db import session_factory
from civicloop.core.settings import Settings
from civicloop.requests.models import RequestEvent, RequestStatus, ServiceRequest, Triage, WorkOrder
from tests.helpers import dispatched
from tests.web_helpers import csrf_of, login, make_users, one_month_now, seed_activity, web_settings


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """The web tests' settings (``web_helpers.web_settings``), in place of conftest's."""
    return web_settings(tmp_path)


def file_call(client: TestClient, token: str, **fields: str) -> int:
    """File a call on the operator's form; returns the new request's id."""
    data = {"title": "路灯不亮", "description": "望湖街道第一社区三号楼前的路灯坏了", "csrf_token": token, **fields}
    filed = client.post("/operator/requests", data=data, follow_redirects=False)
    assert filed.status_code == 303, filed.text
    return int(re.search(r"id=(\d+)", filed.headers["location"]).group(1))  # type: ignore[union-attr]


def order_of(db: Engine, request_id: int) -> int:
    with session_factory(db)() as session:
        return session.scalars(select(WorkOrder.id).where(WorkOrder.request_id == request_id)
                               .order_by(WorkOrder.id.desc())).first()  # type: ignore[return-value]


def status_of(db: Engine, request_id: int) -> str:
    with session_factory(db)() as session:
        return str(session.get(ServiceRequest, request_id).status)  # type: ignore[union-attr]


def test_operator_takes_calls_with_suggestions_and_accepts_or_rejects(
        client: TestClient, db: Engine, city: dict[str, int]) -> None:
    make_users(db, city, only=("op",))
    token = login(client, "op")
    page = client.get("/operator").text
    assert 'autofocus' in page and "data-ctrl-enter" in page and 'hx-trigger="keyup changed delay:400ms' in page
    hint = client.post("/operator/suggest", data={"title": "路灯不亮", "description": "望湖街道第一社区三号楼前",
                                                  "csrf_token": token})
    assert "望湖街道第一社区" in hint.text and "没有可用的分类模型" in hint.text
    first = file_call(client, token)
    with session_factory(db)() as session:  # intake ran: located, queued for want of a model
        record = session.scalar(select(Triage).where(Triage.request_id == first))
        assert record is not None and record.queued and record.reasons == ["no_model"]
    again = client.post("/operator/suggest", data={
        "title": "路灯不亮", "description": "望湖街道第一社区三号楼前的路灯坏了", "csrf_token": token})
    assert f"№{first}" in again.text  # the open request it repeats
    bad = client.post("/operator/requests", data={"title": "", "description": "x" * 4001,
                                                  "citizen_phone": "12ab", "csrf_token": token})
    assert bad.status_code == 422
    assert 'id="err-title"' in bad.text and 'id="err-description"' in bad.text and 'id="err-citizen_phone"' in bad.text
    assert "x" * 4001 in bad.text  # the operator's typing is kept
    second = file_call(client, token, title="噪音", description="夜里施工")
    rejected = client.post(f"/operator/requests/{second}/reject", data={"reason": "duplicate", "csrf_token": token})
    assert rejected.status_code == 422 and "重复件须指明原诉求编号" in rejected.text
    assert client.post(f"/operator/requests/{second}/reject", data={
        "reason": "duplicate", "duplicate_of_id": str(first), "csrf_token": token},
        follow_redirects=False).status_code == 303
    assert status_of(db, second) == "rejected"
    assert client.post(f"/operator/requests/{first}/accept", data={"csrf_token": token},
                       follow_redirects=False).status_code == 303
    assert status_of(db, first) == "accepted"
    again = client.post(f"/operator/requests/{first}/accept", data={"csrf_token": token})
    assert again.status_code == 409 and "当前状态为“已受理”" in again.text


def test_operator_calls_back_or_closes_unreached(client: TestClient, db: Engine, city: dict[str, int],
                                                settings: Settings) -> None:
    """回访 on the operator's page: the replied requests wait in a list with the unit's reply; an answer
    closes (or reopens) the request, an unreachable citizen closes it without a rating."""
    from tests.helpers import replied

    make_users(db, city, only=("op",))
    with session_factory(db)() as session:
        happy = replied(session, settings, unit_id=city["D01-S01"]).id
        unhappy = replied(session, settings, unit_id=city["D01-S01"]).id
        unreached = replied(session, settings, unit_id=city["D01-S01"]).id
        waiting = dispatched(session, settings, unit_id=city["D01-S01"]).id
        session.commit()
    token = login(client, "op")
    page = client.get("/operator").text
    listed = re.findall(r'action="/operator/requests/(\d+)/callback"', page)
    assert listed == [str(happy), str(unhappy), str(unreached)]  # the oldest reply first; not the dispatched one
    assert "已修复路灯。" in page and "望湖街道" in page
    missing = client.post(f"/operator/requests/{happy}/callback", data={"satisfaction": "satisfied",
                                                                       "csrf_token": token})
    assert missing.status_code == 422 and status_of(db, happy) == "replied"
    done = client.post(f"/operator/requests/{happy}/callback", data={
        "resolved": "yes", "satisfaction": "satisfied", "note": "很满意", "csrf_token": token}, follow_redirects=False)
    assert done.status_code == 303 and "called_back" in done.headers["location"]
    assert status_of(db, happy) == "closed"
    assert client.post(f"/operator/requests/{unhappy}/callback", data={
        "resolved": "no", "satisfaction": "dissatisfied", "csrf_token": token},
        follow_redirects=False).status_code == 303
    assert status_of(db, unhappy) == "dispatched"  # 重办: back to the unit
    blank = client.post(f"/operator/requests/{unreached}/close-unrated", data={"reason": " ", "csrf_token": token})
    assert blank.status_code == 422 and status_of(db, unreached) == "replied"
    assert client.post(f"/operator/requests/{unreached}/close-unrated", data={
        "reason": "三次联系不上", "csrf_token": token}, follow_redirects=False).status_code == 303
    assert status_of(db, unreached) == "closed"
    with session_factory(db)() as session:
        order = session.get(WorkOrder, order_of(db, unreached))
        assert order is not None and (order.status, order.callback_at) == ("closed", None)
    late = client.post(f"/operator/requests/{waiting}/close-unrated", data={"reason": "x", "csrf_token": token})
    assert late.status_code == 409
    assert 'action="/operator/requests/' not in client.get("/operator").text.split('id="callbacks"')[1]


def test_dispatcher_dispatches_from_the_queue_redispatches_and_falls_back(
        client: TestClient, db: Engine, city: dict[str, int]) -> None:
    make_users(db, city, only=("op", "disp", "street1"))
    token = login(client, "op")
    queued = file_call(client, token)
    token = login(client, "disp")
    page = client.get("/dispatch").text
    assert f'id="q-{queued}"' in page and "没有可用的分类模型" in page
    none = client.post(f"/dispatch/{queued}/decide", data={"csrf_token": token})
    assert none.status_code == 422 and "须选择分类或主办单位" in none.text
    unknown = client.post(f"/dispatch/{queued}/decide", data={"lead_unit": "没有这个单位", "csrf_token": token})
    assert unknown.status_code == 422 and "承办单位不存在" in unknown.text
    no_such = client.post(f"/dispatch/{queued}/decide", data={"category": "不存在/的分类", "csrf_token": token})
    assert no_such.status_code == 422 and "诉求分类不存在" in no_such.text
    assert '<datalist id="unit-list">' in page and f'value="望湖街道 #{city["D01-S01"]}"' in page
    done = client.post(f"/dispatch/{queued}/decide", data={"lead_unit": f"望湖街道 #{city['D01-S01']}",
                                                           "csrf_token": token}, follow_redirects=False)
    assert done.status_code == 303 and status_of(db, queued) == "dispatched"
    with session_factory(db)() as session:
        record = session.scalar(select(Triage).where(Triage.request_id == queued))
        assert record is not None and record.outcome == "decided" and record.decided_unit_id == city["D01-S01"]
    assert f'id="q-{queued}"' not in client.get("/dispatch").text
    # the street returns it: it waits to be re-dispatched, with the reason; then the district takes it
    token = login(client, "street1")
    order = order_of(db, queued)
    assert client.post(f"/unit/orders/{order}/return", data={"reason": "不属于本街道", "csrf_token": token},
                       follow_redirects=False).status_code == 303
    token = login(client, "disp")
    page = client.get("/dispatch").text
    assert f'id="a-{queued}"' in page and "不属于本街道" in page and "退单 1 次" in page
    assert client.post(f"/dispatch/{queued}/fallback", data={"csrf_token": token},
                       follow_redirects=False).status_code == 303
    with session_factory(db)() as session:
        request = session.get(ServiceRequest, queued)
        assert request is not None and request.fallback and request.lead_unit_id == city["D01"]
        fell = session.scalar(select(RequestEvent).where(RequestEvent.request_id == queued,
                                                         RequestEvent.action == "fallback"))
        assert fell is not None and (fell.actor, fell.actor_role) == ("disp", "dispatcher")  # who sent it, not "system"


def test_unit_acknowledges_asks_for_time_and_replies_within_its_scope(
        client: TestClient, db: Engine, city: dict[str, int], settings: Settings) -> None:
    make_users(db, city, only=("street1", "street2", "sup", "sup2"))
    with session_factory(db)() as session:
        request = dispatched(session, settings, unit_id=city["D01-S01"], citizen_phone="13812345678",
                             description="路灯坏了，联系我 13812345678", lat=39.905, lon=116.405)
        session.commit()
    order = order_of(db, request.id)
    token = login(client, "street2")  # another street: not found, whatever it tries
    assert client.get(f"/unit/orders/{order}").status_code == 404
    assert client.post(f"/unit/orders/{order}/acknowledge", data={"csrf_token": token}).status_code == 404
    assert client.get(f"/case/{request.id}").status_code == 404
    token = login(client, "street1")
    listing = client.get("/unit").text
    assert f"/unit/orders/{order}" in listing and "row-due-" in listing
    page = client.get(f"/unit/orders/{order}").text
    assert "13812345678" not in page and "138****5678" in page and "签收" in page
    assert client.post(f"/unit/orders/{order}/acknowledge", data={"csrf_token": token},
                       follow_redirects=False).status_code == 303
    assert client.post(f"/unit/orders/{order}/acknowledge", data={"csrf_token": token}).status_code == 409
    missing = client.post(f"/unit/orders/{order}/extension", data={"reason": "等材料", "csrf_token": token})
    assert missing.status_code == 422 and "此项必填" in missing.text
    assert client.post(f"/unit/orders/{order}/extension", data={
        "extra_working_days": "3", "reason": "等材料", "csrf_token": token}, follow_redirects=False).status_code == 303
    # the district's supervisor decides; the other district's does not even see it
    token = login(client, "sup2")
    assert client.post(f"/supervise/orders/{order}/extension", data={"decision": "approve",
                                                                      "csrf_token": token}).status_code == 404
    token = login(client, "sup")
    assert "等材料" in client.get("/supervise").text
    refused = client.post(f"/supervise/orders/{order}/extension", data={"decision": "refuse", "csrf_token": token})
    assert refused.status_code == 422  # a refusal needs a reason
    assert client.post(f"/supervise/orders/{order}/extension", data={"decision": "approve", "csrf_token": token},
                       follow_redirects=False).status_code == 303
    token = login(client, "street1")
    blank = client.post(f"/unit/orders/{order}/reply", data={"text": "  ", "csrf_token": token})
    assert blank.status_code == 422
    assert client.post(f"/unit/orders/{order}/reply", data={"text": "已修好路灯", "csrf_token": token},
                       follow_redirects=False).status_code == 303
    assert status_of(db, request.id) == "replied"


def test_resident_files_follows_and_rates_only_their_own(client: TestClient, db: Engine, city: dict[str, int],
                                                         settings: Settings) -> None:
    make_users(db, city, only=("res", "res2", "disp", "street1", "sup"))
    token = login(client, "res")
    bad = client.post("/submit", data={"title": "噪音", "description": "夜里施工", "photo": "javascript:alert(1)",
                                       "csrf_token": token})
    assert bad.status_code == 422 and "须为 http 或 https 网址" in bad.text
    filed = client.post("/submit", data={"title": "噪音", "description": "望湖街道第一社区夜里施工",
                                         "photo": "https://example.org/p.jpg", "csrf_token": token},
                        follow_redirects=False)
    assert filed.status_code == 303
    own = int(re.search(r"/resident/requests/(\d+)", filed.headers["location"]).group(1))  # type: ignore[union-attr]
    page = client.get(filed.headers["location"]).text
    assert "https://example.org/p.jpg" in page and "尚未答复" in page
    assert f"/resident/requests/{own}" in client.get("/resident").text
    early = client.post(f"/resident/requests/{own}/rate", data={"resolved": "yes", "satisfaction": "satisfied",
                                                                 "csrf_token": token})
    assert early.status_code == 409  # nothing to rate yet
    assert client.get("/case/1").status_code == 403  # residents have no staff pages
    token = login(client, "disp")
    client.post(f"/dispatch/{own}/decide", data={"lead_unit_id": str(city["D01-S01"]), "csrf_token": token})
    token = login(client, "street1")
    order = order_of(db, own)
    client.post(f"/unit/orders/{order}/acknowledge", data={"csrf_token": token})
    client.post(f"/unit/orders/{order}/reply", data={"text": "已协调施工方夜间停工", "csrf_token": token})
    token = login(client, "res2")
    assert client.get(f"/resident/requests/{own}").status_code == 404
    assert client.post(f"/resident/requests/{own}/rate", data={"resolved": "yes", "satisfaction": "satisfied",
                                                                "csrf_token": token}).status_code == 404
    assert f"/resident/requests/{own}" not in client.get("/resident").text
    token = login(client, "res")
    assert "已协调施工方夜间停工" in client.get(f"/resident/requests/{own}").text
    unanswered = client.post(f"/resident/requests/{own}/rate", data={"satisfaction": "satisfied", "csrf_token": token})
    assert unanswered.status_code == 422
    assert client.post(f"/resident/requests/{own}/rate", data={"resolved": "no", "satisfaction": "dissatisfied",
                                                                "csrf_token": token},
                       follow_redirects=False).status_code == 303
    assert status_of(db, own) == "dispatched"  # reopened to the same street (重办)
    token = login(client, "sup")
    month = client.get("/supervise").text
    assert "望湖街道" in month and "0.0%" in month  # the dissatisfied rating counts in the month's rates
    assert client.get("/supervise?month=2026-13").status_code == 422


def test_anonymous_public_files_on_the_public_form(client: TestClient, db: Engine, city: dict[str, int]) -> None:
    form = client.get("/submit")
    filed = client.post("/submit", data={"title": "井盖松动", "description": "东门井盖松动",
                                         "csrf_token": csrf_of(form.text)}, follow_redirects=False)
    assert filed.status_code == 303 and filed.headers["location"].startswith("/submit?msg=filed")
    thanks = client.get(filed.headers["location"]).text
    assert "已收到您的诉求" in thanks and "请记下编号" in thanks
    with session_factory(db)() as session:
        request = session.scalars(select(ServiceRequest)).one()
        assert request.channel == "web" and request.submitted_by_user_id is None


def test_supervisor_ranking_drill_down_and_supervision(client: TestClient, db: Engine, city: dict[str, int],
                                                       settings: Settings) -> None:
    make_users(db, city, only=("sup", "sup2"))
    seed_activity(db, city, settings, now=one_month_now(settings))
    token = login(client, "sup")
    page = client.get("/supervise").text
    assert 'id="ranking-table"' in page and "东桥街道" in page and 'data-chart="rank-chart"' in page
    assert "楼道堆放杂物堵塞消防通道" in page  # overdue, in the district
    streets = client.get("/supervise?level=street").text
    assert "柳岸镇" in streets
    assert client.get("/supervise?level=city").status_code == 422
    drill = client.get(f"/supervise/units/{city['D01-S02']}").text
    assert "噪音扰民 1" in drill
    with session_factory(db)() as session:
        closed_one = session.scalar(select(ServiceRequest.id).where(ServiceRequest.title == "噪音扰民 1"))
        other = session.scalar(select(ServiceRequest.id).where(ServiceRequest.title == "噪音扰民 4"))
    redo = client.post(f"/case/{closed_one}/supervise", data={"note": "群众再次反映", "redo": "1", "csrf_token": token},
                       follow_redirects=False)
    assert redo.status_code == 303 and status_of(db, closed_one) == "dispatched"
    assert "群众再次反映" in client.get("/supervise").text
    token = login(client, "sup2")  # district D02 does not see D01's cases
    assert client.get(f"/case/{closed_one}").status_code == 404
    assert client.post(f"/case/{closed_one}/supervise", data={"note": "x", "csrf_token": token}).status_code == 404
    assert client.get(f"/case/{other}").status_code == 200


def test_analyst_reviews_findings_map_and_reply_quality(client: TestClient, db: Engine, city: dict[str, int],
                                                         settings: Settings) -> None:
    make_users(db, city, only=("ana", "disp"))
    seed_activity(db, city, settings)
    token = login(client, "disp")
    page = client.get("/analysis").text
    assert "望湖街道第一社区 路灯不亮 集中反映" in page and "/analysis/findings/" not in page  # reads, cannot decide
    with session_factory(db)() as session:
        first, second = session.scalars(select(StoredFinding.id).order_by(StoredFinding.id).limit(2)).all()
    assert client.post(f"/analysis/findings/{first}/accept", data={"csrf_token": token}).status_code == 403
    token = login(client, "ana")
    page = client.get("/analysis").text
    assert 'data-geojson="grid-geojson"' in page and "望湖街道第一社区1号网格" in page and '"registerMap"' not in page
    assert 'data-chart="chart-hotspot"' in page
    accepted = client.post(f"/analysis/findings/{first}/accept", data={"csrf_token": token}, follow_redirects=False)
    assert accepted.status_code == 303
    assert client.post(f"/analysis/findings/{second}/dismiss", data={"csrf_token": token},
                       follow_redirects=False).status_code == 303
    with session_factory(db)() as session:
        row = session.get(StoredFinding, first)
        assert row is not None and row.status == FindingStatus.ACCEPTED and row.request_id is not None
        proactive = session.get(ServiceRequest, row.request_id)
        assert proactive is not None and proactive.channel == "proactive"
    twice = client.post(f"/analysis/findings/{first}/accept", data={"csrf_token": token})
    assert twice.status_code == 422
    replies = client.get("/analysis/replies")
    assert replies.status_code == 200 and ("replies-table" in replies.text or "近期没有已答复的诉求" in replies.text)


def test_ledger_filters_exports_and_keeps_to_the_scope(client: TestClient, db: Engine, city: dict[str, int],
                                                       settings: Settings) -> None:
    make_users(db, city, only=("ana", "street2"))
    seed_activity(db, city, settings)
    login(client, "ana")
    everything = client.get("/ledger").text
    assert "楼道堆放杂物堵塞消防通道" in everything and "噪音扰民 4" in everything
    closed = client.get("/ledger?status=closed").text
    assert "噪音扰民 1" in closed and "楼道堆放杂物堵塞消防通道" not in closed
    by_unit = client.get(f"/ledger?unit_id={city['D02-S01']}").text
    assert "噪音扰民 4" in by_unit and "噪音扰民 1" not in by_unit
    for query, message in (("start=2026-1-1", "日期格式应为 YYYY-MM-DD"), ("status=lost", "取值无效"),
                           ("start=2026-02-01&end=2026-01-01", "开始日期不能晚于结束日期"),
                           ("unit_id=abc", "应为整数"), ("unit_id=999999", "承办单位不存在")):
        bad = client.get(f"/ledger?{query}")
        assert bad.status_code == 422 and message in bad.text, query
    export = client.get("/ledger/export.xlsx?status=closed")
    assert export.status_code == 200 and "filename*=UTF-8''" in export.headers["content-disposition"]
    sheet = load_workbook(io.BytesIO(export.content)).active
    assert sheet is not None and sheet["A1"].value == "诉求编号"
    assert {row[3] for row in sheet.iter_rows(min_row=2, values_only=True)} >= {"噪音扰民 1", "噪音扰民 2"}
    english = client.get("/ledger/export.xlsx?lang=en")
    assert load_workbook(io.BytesIO(english.content)).active["A1"].value == "Request ID"  # type: ignore[index]
    login(client, "street2")  # a handler's ledger: its own unit's requests only
    own = client.get("/ledger").text
    assert "噪音扰民 4" in own and "楼道堆放杂物堵塞消防通道" not in own
    with session_factory(db)() as session:
        assert session.scalar(select(ServiceRequest).where(ServiceRequest.status == RequestStatus.SUBMITTED))


def test_one_click_dispatches_with_a_suggestion(client: TestClient, db: Engine, city: dict[str, int]) -> None:
    from civicloop.core.timeutil import utcnow
    from civicloop.requests.models import TriageOutcome
    from tests.helpers import make_request

    make_users(db, city, only=("disp",))
    category = city["cat:城乡建设"]
    with session_factory(db)() as session:  # what intake leaves for a request it was unsure of
        request = make_request(session)
        session.add(Triage(request_id=request.id, outcome=TriageOutcome.QUEUED, queued=True, triaged_at=utcnow(),
                           place={"label": "望湖街道第一社区"}, reasons=["low_confidence"], label="城乡建设",
                           confidence=0.62, category_id=category, suggestions=[
                               {"label": "城乡建设", "probability": 0.62, "category_id": category, "path": "城乡建设",
                                "lead_unit_id": city["D01-S01"], "lead_unit_name": "望湖街道",
                                "assisting_unit_ids": [], "why": "属地：望湖街道"},
                               {"label": "环境保护", "probability": 0.21, "category_id": None, "path": "",
                                "lead_unit_id": None, "lead_unit_name": "", "assisting_unit_ids": [], "why": ""}]))
        session.commit()
    token = login(client, "disp")
    page = client.get("/dispatch").text
    assert "62%" in page and "属地：望湖街道" in page and "分类把握不足" in page and page.count("按此派单") == 1
    done = client.post(f"/dispatch/{request.id}/decide", data={
        "category_id": str(category), "lead_unit_id": str(city["D01-S01"]), "csrf_token": token},
        follow_redirects=False)
    assert done.status_code == 303
    with session_factory(db)() as session:
        record = session.scalar(select(Triage).where(Triage.request_id == request.id))
        assert record is not None and record.decided_rank == 1 and not record.queued
        assert session.get(ServiceRequest, request.id).category_id == category  # type: ignore[union-attr]
