"""Deferred intake (``triage_mode = "deferred"``, ``requests.triage_queue``): the filing answers 201 as
soon as the request and its queue entry are committed, and the runner routes it right after, with the
same pipeline as inline intake; a request a person took meanwhile is left alone, and a request whose
triage fails waits for a person instead of being lost. Real messages (held-out Teddy Cup), real
database (SQLite and PostgreSQL), the runner's real thread.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from sqlalchemy import select

from civicloop.core.db import session_factory
from civicloop.core.settings import Settings, get_settings
from civicloop.importers.sample_city import build_routes
from civicloop.intelligence import classifier, model_store
from civicloop.intelligence.data import load_split, shared_data_dir
from civicloop.requests import triage, triage_queue
from civicloop.requests.models import ServiceRequest, Triage, TriageQueueEntry, WorkOrder

pytestmark = [
    pytest.mark.skipif(shared_data_dir() is None, reason="shared data folder teddy2020c/ not found"),
    pytest.mark.xdist_group("classifier"),
]

API = "/api/v1"
OPERATOR = {"X-Civicloop-Actor": "operator-7", "X-Civicloop-Role": "operator"}
DISPATCHER = {"X-Civicloop-Actor": "dispatcher-1", "X-Civicloop-Role": "dispatcher"}
ANALYST = {"X-Civicloop-Actor": "analyst-1", "X-Civicloop-Role": "analyst"}
UNIT_OF_LABEL = {"交通运输": "DEP-JT", "教育文体": "DEP-JY", "劳动和社会保障": "DEP-RS", "卫生计生": "DEP-WJ",
                 "商贸旅游": "DEP-SW"}


@pytest.fixture(scope="module")
def model_file(trained_classifier: classifier.TextClassifier, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("model") / "classifier.joblib"
    metadata = model_store.make_metadata(trained_classifier, fingerprint="0" * 64, metrics={})
    return model_store.save(trained_classifier, metadata, path)


@pytest.fixture
def settings(model_file: Path) -> Settings:
    """Deferred intake; the runner polls only every 30 s, so what routes a request within the test's
    seconds is the wake-up of the filing's commit."""
    return Settings(_env_file=None, triage_on_intake=True, triage_mode="deferred", triage_poll_seconds=30,  # type: ignore[call-arg]
                    trust_role_headers=True, model_path=str(model_file), auto_dispatch_threshold=0.9)


@pytest.fixture
def routed_city(city: dict[str, int], db) -> dict[str, int]:
    with session_factory(db)() as s:
        assert build_routes(s) > 0
        s.commit()
    return city


@pytest.fixture(scope="module")
def confident(trained_classifier: classifier.TextClassifier) -> list[tuple[str, str, str]]:
    """Held-out messages the model is sure of, whose label the sample city routes to a department."""
    test = load_split().test
    predictions = trained_classifier.predict_many([(s.title, s.detail) for s in test])
    return [(s.title, s.detail, s.label) for s, p in zip(test, predictions, strict=True)
            if p.confidence >= 0.97 and s.label in UNIT_OF_LABEL]


def file(client, title: str, body: str, **headers: str) -> dict:
    response = client.post(f"{API}/requests", json={"title": title[:200], "description": body[:4000]},
                           headers={**OPERATOR, **headers})
    assert response.status_code == 201, response.text
    return response.json()


def wait_for(predicate, seconds: float = 20.0) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, "the runner did not get to it in time"
        time.sleep(0.05)


def test_the_answer_comes_first_and_the_runner_routes_right_after(client, routed_city, confident, db,
                                                                   settings) -> None:
    title, body, label = confident[0]
    out = file(client, title, body)
    assert out["status"] == "submitted" and out["triage"] is None and out["triage_pending"] is True
    assert out["work_orders"] == []
    assert client.get(f"{API}/requests/{out['id']}/triage", headers=DISPATCHER).status_code == 404
    stats = client.get(f"{API}/triage/stats", headers=ANALYST).json()
    assert stats["deferred_queue"]["waiting"] == 1 and stats["deferred_queue"]["oldest_seconds"] >= 0

    runner = triage_queue.TriageRunner(settings, engine=db).start()
    try:
        wait_for(lambda: runner.taken >= 1)  # it drains what was queued before it started
        second = file(client, *confident[1][:2])  # this one only the commit's wake-up can bring in time
        wait_for(lambda: runner.taken >= 2)
    finally:
        runner.stop()
    for request_id, expected in ((out["id"], label), (second["id"], confident[1][2])):
        routed = client.get(f"{API}/requests/{request_id}", headers=DISPATCHER).json()
        assert routed["status"] == "dispatched"
        assert routed["lead_unit_id"] == routed_city[UNIT_OF_LABEL[expected]]
        record = client.get(f"{API}/requests/{request_id}/triage", headers=DISPATCHER).json()
        assert record["outcome"] == "auto_dispatched" and record["reasons"] == []
        assert 0 < record["latency_seconds"] < 20  # filing → routed order, the queue's wait included
    with session_factory(db)() as s:
        assert s.scalars(select(TriageQueueEntry)).all() == []
        assert {o.request_id for o in s.scalars(select(WorkOrder))} == {out["id"], second["id"]}
    assert client.get(f"{API}/triage/stats", headers=ANALYST).json()["deferred_queue"] == {
        "waiting": 0, "oldest_seconds": None}


def test_a_request_a_person_took_meanwhile_is_only_taken_off_the_queue(client, routed_city, confident, db,
                                                                       settings) -> None:
    taken, waiting = (file(client, *m[:2]) for m in confident[:2])
    accepted = client.post(f"{API}/requests/{taken['id']}/accept", json={}, headers=OPERATOR)
    assert accepted.status_code == 200, accepted.text
    with session_factory(db)() as s:
        report = triage_queue.run_batch(s, settings=settings)
        s.commit()
        assert report.skipped == [taken["id"]] and report.triaged == [waiting["id"]] and report.failed == []
        assert s.scalars(select(TriageQueueEntry)).all() == []
        assert s.scalar(select(Triage).where(Triage.request_id == taken["id"])) is None
        assert s.get(ServiceRequest, taken["id"]).status == "accepted"
        assert s.get(ServiceRequest, waiting["id"]).status == "dispatched"


def test_a_failing_triage_leaves_the_request_to_a_person_and_nothing_half_done(
        client, routed_city, confident, db, settings, monkeypatch: pytest.MonkeyPatch) -> None:
    broken, fine = (file(client, *m[:2]) for m in confident[:2])
    real = triage.triage

    def fails_for_one(session, *, request, **kwargs):
        if request.id == broken["id"]:
            request.title = "changed before the failure"
            session.flush()
            raise RuntimeError("the model server went away")
        return real(session, request=request, **kwargs)

    monkeypatch.setattr(triage, "triage", fails_for_one)
    with session_factory(db)() as s:
        report = triage_queue.run_batch(s, settings=settings)
        s.commit()
    assert report.failed == [broken["id"]] and report.triaged == [fine["id"]]
    queue = client.get(f"{API}/dispatch-queue", headers=DISPATCHER).json()
    assert [item["request"]["id"] for item in queue] == [broken["id"]]
    assert queue[0]["triage"]["reasons"] == ["triage_failed"]
    assert queue[0]["triage"]["reason_texts"] == ["自动分拨出错，请人工分拨"]
    request = client.get(f"{API}/requests/{broken['id']}", headers=DISPATCHER).json()
    assert request["title"] == confident[0][0][:200] and request["status"] == "submitted"
    assert client.get(f"{API}/requests/{fine['id']}", headers=DISPATCHER).json()["status"] == "dispatched"


def test_a_retried_filing_says_it_is_still_pending(client, routed_city, confident) -> None:
    title, body, _ = confident[0]
    first = file(client, title, body, **{"Idempotency-Key": "deferred-retry-1"})
    again = client.post(f"{API}/requests", json={"title": title[:200], "description": body[:4000]},
                        headers={**OPERATOR, "Idempotency-Key": "deferred-retry-1"})
    assert again.status_code == 201 and again.headers["Idempotent-Replayed"] == "true"
    assert again.json()["id"] == first["id"] and again.json()["triage_pending"] is True


def test_inline_intake_answers_with_its_record_and_queues_nothing(client, routed_city, confident, db,
                                                                  settings) -> None:
    client.app.dependency_overrides[get_settings] = lambda: settings.model_copy(update={"triage_mode": "inline"})
    out = file(client, *confident[0][:2])
    assert out["triage"]["outcome"] == "auto_dispatched" and out["triage_pending"] is False
    with session_factory(db)() as s:
        assert s.scalars(select(TriageQueueEntry)).all() == []
