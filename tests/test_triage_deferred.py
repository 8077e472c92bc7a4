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
from civicloop.intelligence import classifier, model_store
from civicloop.intelligence.data import load_split
from civicloop.requests import triage, triage_queue
from civicloop.requests.models import ServiceRequest, Triage, TriageQueueEntry, WorkOrder
from tests.helpers import CLASSIFIER_TESTS, UNIT_OF_LABEL, run_cli

pytestmark = CLASSIFIER_TESTS

API = "/api/v1"
OPERATOR = {"X-Civicloop-Actor": "operator-7", "X-Civicloop-Role": "operator"}
DISPATCHER = {"X-Civicloop-Actor": "dispatcher-1", "X-Civicloop-Role": "dispatcher"}
ANALYST = {"X-Civicloop-Actor": "analyst-1", "X-Civicloop-Role": "analyst"}


@pytest.fixture
def settings(model_file: Path) -> Settings:
    """Deferred intake; the runner polls only every 30 s, so what routes a request within the test's
    seconds is the wake-up of the filing's commit."""
    return Settings(_env_file=None, triage_on_intake=True, triage_mode="deferred", triage_poll_seconds=30,  # type: ignore[call-arg]
                    trust_role_headers=True, model_path=str(model_file), auto_dispatch_threshold=0.9)


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


def batch_failing_for(request_id: int, db, settings: Settings, monkeypatch: pytest.MonkeyPatch, *,
                      change_first: bool = False) -> triage_queue.BatchReport:
    """Run one batch of the queue (committed) with a triage that raises for request ``request_id``, after
    changing its title when ``change_first``; return the batch's report."""
    real = triage.triage

    def fails_for_one(session, *, request, **kwargs):
        if request.id == request_id:
            if change_first:
                request.title = "changed before the failure"
                session.flush()
            raise RuntimeError("the model server went away")
        return real(session, request=request, **kwargs)

    monkeypatch.setattr(triage, "triage", fails_for_one)
    with session_factory(db)() as s:
        report = triage_queue.run_batch(s, settings=settings)
        s.commit()
    return report


def test_a_failing_triage_leaves_the_request_to_a_person_and_nothing_half_done(
        client, routed_city, confident, db, settings, monkeypatch: pytest.MonkeyPatch) -> None:
    broken, fine = (file(client, *m[:2]) for m in confident[:2])
    report = batch_failing_for(broken["id"], db, settings, monkeypatch, change_first=True)
    assert report.failed == [broken["id"]] and report.triaged == [fine["id"]]
    queue = client.get(f"{API}/dispatch-queue", headers=DISPATCHER).json()
    assert [item["request"]["id"] for item in queue] == [broken["id"]]
    assert queue[0]["triage"]["reasons"] == ["triage_failed"]
    assert queue[0]["triage"]["reason_texts"] == ["自动分拨出错，请人工分拨"]
    request = client.get(f"{API}/requests/{broken['id']}", headers=DISPATCHER).json()
    assert request["title"] == confident[0][0][:200] and request["status"] == "submitted"
    assert client.get(f"{API}/requests/{fine['id']}", headers=DISPATCHER).json()["status"] == "dispatched"


def test_a_batch_that_fails_midway_is_done_again_one_by_one_without_doubles(
        client, routed_city, confident, db, settings, monkeypatch: pytest.MonkeyPatch) -> None:
    """The batch runs in one savepoint: a failure after a request was triaged rolls that back too, and the
    batch is run again request by request; each triaged request ends with one record and one work order."""
    first, broken, last = (file(client, *m[:2]) for m in confident[2:5])
    report = batch_failing_for(broken["id"], db, settings, monkeypatch)
    assert report.triaged == [first["id"], last["id"]] and report.failed == [broken["id"]]
    with session_factory(db)() as s:
        for filed in (first, last):
            assert len(s.scalars(select(Triage).where(Triage.request_id == filed["id"])).all()) == 1
            assert len(s.scalars(select(WorkOrder).where(WorkOrder.request_id == filed["id"])).all()) == 1
            assert s.get(ServiceRequest, filed["id"]).status == "dispatched"
        assert s.scalar(select(Triage.reasons).where(Triage.request_id == broken["id"])) == ["triage_failed"]
        assert s.scalars(select(TriageQueueEntry)).all() == []


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


def _cli(*args: str, db: Path, model: Path) -> str:
    done = run_cli(*args, db=db, env={"CIVICLOOP_MODEL_PATH": str(model), "COLUMNS": "160"}, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_replay_in_batches_files_what_one_by_one_files_and_drain_empties_the_queue(tmp_path: Path,
                                                                                   model_file: Path) -> None:
    import csv
    import json

    rows = load_split().test[:48]
    data = tmp_path / "rows.csv"
    with data.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["title", "detail", "label"])
        writer.writerows([(s.title, s.detail, s.label) for s in rows])
    figures = {}
    for batch in (1, 16):
        db = tmp_path / f"replay-{batch}.db"
        _cli("init", db=db, model=model_file)
        out = _cli("intake", "replay", "--data", str(data), "--batch", str(batch), "--json", db=db, model=model_file)
        figures[batch] = json.loads(out.strip().splitlines()[-1])
    assert figures[1]["n"] == figures[16]["n"] == 48
    assert figures[16]["by_outcome"] == figures[1]["by_outcome"]
    assert figures[16]["auto_accuracy"] == figures[1]["auto_accuracy"] and figures[1]["by_outcome"]["auto_dispatched"]

    from civicloop.core.db import make_engine
    from civicloop.core.roles import Role
    from civicloop.requests import intake
    from civicloop.requests.models import Channel
    from civicloop.requests.service import Actor

    db = tmp_path / "replay-1.db"
    engine = make_engine(f"sqlite:///{db}")
    with session_factory(engine)() as s:  # two requests a stopped server left in the queue
        waiting = []
        for sample in rows[:2]:
            request = intake.submit(s, actor=Actor("operator-7", Role.OPERATOR), data=intake.NewRequest(
                channel=Channel.HOTLINE, title=sample.title[:200], description=sample.detail[:4000]))
            triage_queue.enqueue(s, request_id=request.id)
            waiting.append(request.id)
        s.commit()
    assert "2 triaged, 0 waiting" in _cli("intake", "drain", db=db, model=model_file)
    with session_factory(engine)() as s:
        assert {s.scalar(select(Triage.outcome).where(Triage.request_id == i)) for i in waiting} <= {
            "auto_dispatched", "queued", "duplicate"}
        assert all(s.scalar(select(Triage.id).where(Triage.request_id == i)) for i in waiting)
    engine.dispose()


def test_a_served_city_with_two_workers_answers_first_and_routes_within_seconds(tmp_path: Path, model_file: Path,
                                                                                 confident) -> None:
    """The real thing: ``civicloop serve --workers 2`` with deferred intake (each worker's runner started by
    the app), a request filed over HTTP, then read back routed."""
    import os

    import httpx

    from tests.helpers import CLI, serving

    db = tmp_path / "served.db"
    _cli("init", db=db, model=model_file)
    env = {**os.environ, "CIVICLOOP_DATABASE_URL": f"sqlite:///{db}", "CIVICLOOP_MODEL_PATH": str(model_file),
           "CIVICLOOP_TRIAGE_MODE": "deferred", "CIVICLOOP_TRUST_ROLE_HEADERS": "true",
           "CIVICLOOP_KEY_FILE": str(tmp_path / "civicloop.keys")}
    with serving(CLI, tmp_path, env, workers=2) as root, httpx.Client(base_url=root, timeout=30) as http:
        title, body, _ = confident[2]
        filed = http.post(f"{API}/requests", json={"title": title[:200], "description": body[:4000]},
                          headers=OPERATOR)
        assert filed.status_code == 201, filed.text
        assert filed.json()["triage_pending"] is True and filed.json()["status"] == "submitted"
        request_id = filed.json()["id"]
        wait_for(lambda: http.get(f"{API}/requests/{request_id}", headers=DISPATCHER).json()["status"] != "submitted",
                 seconds=30)
        record = http.get(f"{API}/requests/{request_id}/triage", headers=DISPATCHER).json()
        assert record["outcome"] == "auto_dispatched" and 0 < record["latency_seconds"] < 30
        assert http.get(f"{API}/triage/stats", headers=ANALYST).json()["deferred_queue"]["waiting"] == 0


def test_the_listening_socket_is_tcp_and_a_taken_port_is_a_clear_error() -> None:
    import socket

    import typer

    from civicloop.cli.main import listening_socket

    sock = listening_socket("127.0.0.1", 0)
    try:
        assert sock.proto == socket.IPPROTO_TCP  # so asyncio sets TCP_NODELAY on what it accepts
        assert sock.get_inheritable()
        with socket.socket() as other:
            other.bind(("127.0.0.1", 0))
            other.listen()
            with pytest.raises(typer.BadParameter, match=r"cannot listen on 127\.0\.0\.1"):
                listening_socket("127.0.0.1", other.getsockname()[1])
    finally:
        sock.close()


def test_a_filing_waits_for_room_when_the_queue_is_full(settings) -> None:
    """The bounded queue: at ``triage_backlog_limit`` waiting or being filed, a new filing is admitted
    only once the runner has counted the queue down (or ``triage_backlog_wait_seconds`` pass); it waits
    on the event loop, and filings are admitted in the order they came."""
    import asyncio
    import threading

    runner = triage_queue.TriageRunner(settings.model_copy(update={"triage_backlog_limit": 2,
                                                                   "triage_backlog_wait_seconds": 60}))
    order: list[str] = []

    async def file(name: str) -> None:
        async with runner.admit():
            order.append(name)
            runner.wake()  # its commit

    async def scenario() -> None:
        await file("first")
        await file("second")  # two filed since the runner's last count: the queue is full
        assert runner.waiting == 2
        third = asyncio.create_task(file("third"))
        await asyncio.sleep(0.05)
        fourth = asyncio.create_task(file("fourth"))
        await asyncio.sleep(0.5)
        assert order == ["first", "second"]  # both wait, storing nothing yet
        counted = threading.Thread(target=runner._claimed, args=(2,))  # the runner's batch took two
        counted.start()
        await asyncio.wait_for(asyncio.gather(third, fourth), 10)
        counted.join()

    asyncio.run(scenario())
    assert order == ["first", "second", "third", "fourth"]
    assert runner.filing == 0 and runner.waiting == 2


def test_a_filing_that_waited_its_longest_goes_ahead_and_the_line_moves_on(settings) -> None:
    """``triage_backlog_wait_seconds`` caps the wait: a filing whose turn never came is filed anyway, and
    the ones behind it are not stuck behind its ticket once there is room."""
    import asyncio

    runner = triage_queue.TriageRunner(settings.model_copy(update={"triage_backlog_limit": 1,
                                                                   "triage_backlog_wait_seconds": 0.5}))
    order: list[str] = []

    async def file(name: str, hold: float = 0.0) -> None:
        async with runner.admit():
            order.append(name)
            await asyncio.sleep(hold)

    async def scenario() -> None:
        first = asyncio.create_task(file("first", hold=2.0))  # admitted, and filing for 2 s: the queue is full
        await asyncio.sleep(0.05)
        second = asyncio.create_task(file("second"))  # waits its 0.5 s, then goes ahead
        await asyncio.wait_for(second, 5)
        assert order == ["first", "second"]
        await first
        await asyncio.wait_for(file("third"), 5)  # room again: admitted at once, not after a lost ticket

    asyncio.run(scenario())
    assert order == ["first", "second", "third"] and runner.filing == 0


def test_a_batch_is_classified_as_each_request_is(trained_classifier: classifier.TextClassifier,
                                                  model_file: Path) -> None:
    settings = Settings(_env_file=None, model_path=str(model_file))  # type: ignore[call-arg]
    samples = load_split().test[:40]
    requests = [ServiceRequest(id=i + 1, title=s.title[:200], description=s.detail[:4000])
                for i, s in enumerate(samples)]
    requests.append(ServiceRequest(id=99, title="路灯不亮", description="路灯不亮", category_id=5))
    predicted = triage.predict_batch(requests, settings)
    assert set(predicted) == {r.id for r in requests[:-1]}  # a request filed with its category is not classified
    stored = model_store.current(model_file)
    assert stored is not None
    for request in requests[:-1]:
        model, batch = predicted[request.id]
        alone = stored.model.predict(request.title, request.description)
        assert model is stored
        assert [label for label, _ in batch.top3] == [label for label, _ in alone.top3]
        assert [p for _, p in batch.top3] == pytest.approx([p for _, p in alone.top3], abs=1e-12)
    assert triage.predict_batch(requests, Settings(_env_file=None, model_path="/nonexistent/model.joblib")) == {}  # type: ignore[call-arg]
