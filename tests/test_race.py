"""Two clerks fire the same transition at the same moment: exactly one wins, the other gets a 409.

Each clerk has a session of their own. Both read the pending work order (and end that read
transaction, keeping the loaded object) before either writes; a barrier then releases them
together. On PostgreSQL the loser's conditional UPDATE waits for the winner's row lock and then
matches no row; on SQLite the writers queue (``BEGIN IMMEDIATE``) and the loser's UPDATE finds
the version moved on. Either way: ``ConcurrentUpdate`` or ``IllegalTransition``, never two wins.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from zoneinfo import ZoneInfo

from sqlalchemy import select

from civicloop.core.db import session_factory
from civicloop.core.errors import ConcurrentUpdate, IllegalTransition
from civicloop.requests import handling
from civicloop.requests.models import RequestEvent, RequestStatus, ServiceRequest, WorkOrder, WorkOrderStatus
from tests.helpers import HANDLER, dispatched

T0 = datetime(2025, 9, 30, 10, 0, tzinfo=ZoneInfo("Asia/Shanghai"))


def _pending_order(db, settings, city) -> tuple[int, int]:
    with session_factory(db)() as s:
        request = dispatched(s, settings, unit_id=city["D01-S01"], now=T0)
        s.commit()
        return request.id, request.work_orders[0].id


def _clerk(db, settings, order_id: int, barrier: threading.Barrier, minute: int) -> str:
    session = session_factory(db)()
    try:
        order = session.get(WorkOrder, order_id)
        assert order is not None and order.status == WorkOrderStatus.PENDING
        session.commit()  # end the read; the loaded order (version 1) stays in the session
        barrier.wait(timeout=30)
        try:
            handling.acknowledge(session, work_order_id=order_id, actor=HANDLER, settings=settings,
                                 now=T0.replace(minute=minute))
            session.commit()
            return "ok"
        except (ConcurrentUpdate, IllegalTransition) as exc:
            session.rollback()
            assert exc.status_code == 409
            return type(exc).__name__
    finally:
        session.close()


def test_two_clerks_acknowledge_the_same_order(db, settings, city):
    request_id, order_id = _pending_order(db, settings, city)
    barrier = threading.Barrier(2)
    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = [pool.submit(_clerk, db, settings, order_id, barrier, minute) for minute in (1, 2)]
        outcomes = sorted(f.result(timeout=90) for f in futures)
    assert outcomes[1] == "ok"
    assert outcomes[0] in ("ConcurrentUpdate", "IllegalTransition")
    with session_factory(db)() as s:
        order = s.get(WorkOrder, order_id)
        assert (order.status, order.version) == (WorkOrderStatus.ACKNOWLEDGED, 2)
        assert order.acknowledged_at in (T0.replace(minute=1), T0.replace(minute=2))
        request = s.get(ServiceRequest, request_id)
        assert (request.status, request.version) == (RequestStatus.IN_PROGRESS, 4)  # accept, dispatch, acknowledge
        acks = s.scalars(select(RequestEvent).where(RequestEvent.request_id == request_id,
                                                    RequestEvent.action == "acknowledge")).all()
        assert len(acks) == 1
        assert acks[0].created_at == order.acknowledged_at


def test_two_clerks_race_return_against_acknowledge(db, settings, city):
    """Different actions on the same order race the same way: one of them, never both."""
    request_id, order_id = _pending_order(db, settings, city)
    barrier = threading.Barrier(2)

    def returner() -> str:
        session = session_factory(db)()
        try:
            session.get(WorkOrder, order_id)
            session.commit()
            barrier.wait(timeout=30)
            try:
                handling.return_order(session, work_order_id=order_id, actor=HANDLER, reason="不属本单位",
                                      settings=settings, now=T0)
                session.commit()
                return "ok"
            except (ConcurrentUpdate, IllegalTransition):
                session.rollback()
                return "lost"
        finally:
            session.close()

    with ThreadPoolExecutor(max_workers=2) as pool:
        ack = pool.submit(_clerk, db, settings, order_id, barrier, 5)
        ret = pool.submit(returner)
        outcomes = (ack.result(timeout=90), ret.result(timeout=90))
    assert sorted(o == "ok" for o in outcomes) == [False, True]
    with session_factory(db)() as s:
        order = s.get(WorkOrder, order_id)
        request = s.get(ServiceRequest, request_id)
        if outcomes[0] == "ok":
            assert (order.status, request.status, request.return_count) == ("acknowledged", "in_progress", 0)
        else:
            assert (order.status, request.status, request.return_count) == ("returned", "accepted", 1)


def test_two_concurrent_acknowledge_posts(client, db, settings, city):
    request_id, order_id = _pending_order(db, settings, city)
    headers = {"X-Civicloop-Role": "handler", "X-Civicloop-Unit": str(city["D01-S01"])}
    barrier = threading.Barrier(2)

    def post() -> tuple[int, dict]:
        barrier.wait(timeout=30)
        response = client.post(f"/api/v1/work-orders/{order_id}/acknowledge", headers=headers)
        return response.status_code, response.json()

    with ThreadPoolExecutor(max_workers=2) as pool:
        results = sorted((f.result(timeout=90) for f in [pool.submit(post), pool.submit(post)]),
                         key=lambda r: r[0])
    (ok, ok_body), (conflict, conflict_body) = results
    assert (ok, conflict) == (200, 409)
    assert ok_body["status"] == "acknowledged"
    assert conflict_body["error"]["code"] in ("conflict_race", "conflict_state")
    assert conflict_body["error"]["message"]
    with session_factory(db)() as s:
        assert s.get(WorkOrder, order_id).status == WorkOrderStatus.ACKNOWLEDGED
        assert s.get(ServiceRequest, request_id).status == RequestStatus.IN_PROGRESS
        acks = s.scalars(select(RequestEvent).where(RequestEvent.action == "acknowledge")).all()
        assert len(acks) == 1
