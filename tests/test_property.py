"""Property: no sequence of actions drives the closed loop into an illegal state.

Hypothesis draws sequences of actions (submit, accept, reject, dispatch, acknowledge, return,
ask and decide extensions, reply, callback with any rating, reopen, supervise, run the overdue
job while time moves on), fired by the right role most of the time and by a wrong one now and
then, on a few requests at once. Each action runs in its own transaction, as an HTTP request
would; the refusals the loop is meant to give (``IllegalTransition``, ``Forbidden``,
``FieldError``, ``RuleViolation``) roll back and are otherwise ignored. After every step the
invariants below must hold for every request.

The city is built once per backend; each example starts from empty request tables.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from itertools import pairwise
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from sqlalchemy import Engine, delete, select
from sqlalchemy.orm import Session

from civicloop.catalog.service import BUILTIN_TREE, load_tree
from civicloop.core.db import session_factory
from civicloop.core.errors import FieldError, Forbidden, IllegalTransition, RuleViolation
from civicloop.core.models import CalendarDay, CalendarYear
from civicloop.core.roles import Role
from civicloop.core.settings import Settings
from civicloop.importers.sample_city import build
from civicloop.org.models import OrgUnit
from civicloop.requests import closing, handling, intake
from civicloop.requests.jobs import mark_overdue
from civicloop.requests.models import (
    RejectReason,
    RequestEvent,
    RequestStatus,
    Satisfaction,
    ServiceRequest,
    Supervision,
    WorkOrder,
    WorkOrderRole,
    WorkOrderStatus,
)
from civicloop.requests.rules import ACTIVE_ORDER
from civicloop.requests.service import Actor
from tests.conftest import empty_tables
from tests.helpers import DISPATCHER, OPERATOR, SUPERVISOR

SH = ZoneInfo("Asia/Shanghai")
START = datetime(2025, 9, 26, 9, 0, tzinfo=SH)  # a Friday before National Day: deadlines cross the holiday
SETTINGS = Settings(_env_file=None)  # type: ignore[call-arg]
UNIT_CODES = ["D01-S01", "D01-S02", "D02-S01", "DEP-CG", "UT-WATER"]
EXPECTED = (IllegalTransition, Forbidden, FieldError, RuleViolation)
RS, WS = RequestStatus, WorkOrderStatus

Step = tuple  # ("action", target id or None, *arguments)


@pytest.fixture(scope="module")
def loop_city(engine: Engine) -> Iterator[dict[str, int]]:
    """The sample city on this backend, built once for the module; everything emptied after."""
    with session_factory(engine)() as s:
        build(s)
        load_tree(s, csv_path=BUILTIN_TREE)
        s.commit()
        ids = {u.code: u.id for u in s.scalars(select(OrgUnit))}
    yield ids
    empty_tables(engine)


def _reset(engine: Engine) -> None:
    with session_factory(engine)() as s:
        for model in (RequestEvent, Supervision, WorkOrder, ServiceRequest, CalendarDay, CalendarYear):
            s.execute(delete(model))
        s.commit()


# -- the actions ------------------------------------------------------------------------------

REQUEST_ACTIONS = {  # action: request statuses it applies to
    "accept": {RS.SUBMITTED}, "reject": {RS.SUBMITTED}, "dispatch": {RS.ACCEPTED}, "callback": {RS.REPLIED},
    "reopen": {RS.REPLIED, RS.CLOSED}, "supervise": {RS.ACCEPTED, RS.DISPATCHED, RS.IN_PROGRESS, RS.REPLIED, RS.CLOSED},
}
ORDER_ACTIONS = {  # action: work-order statuses it applies to
    "acknowledge": {WS.PENDING}, "return": {WS.PENDING}, "request_extension": {WS.ACKNOWLEDGED},
    "decide_extension": {WS.EXTENSION_REQUESTED}, "reply": {WS.ACKNOWLEDGED, WS.EXTENSION_REQUESTED},
}
WEIGHT = {  # how much more often an enabled action is drawn than waiting (tick) or the overdue job
    "accept": 4, "reject": 1, "dispatch": 4, "callback": 4, "reopen": 1, "supervise": 1,
    "acknowledge": 4, "return": 3, "request_extension": 2, "decide_extension": 3, "reply": 4,
}
MAX_REQUESTS = 4
# Mostly the right actor (None); now and then a wrong role, which must be refused with nothing stored.
some_role = st.sampled_from([None] * 12 + [Role.OPERATOR, Role.HANDLER, Role.DISPATCHER, Role.SUPERVISOR])


def draw_step(data: st.DataObject, s: Session) -> Step:
    """Draw the next action given the state: usually one the state enables (so sequences get deep
    into the loop: reopens, fallbacks, second rounds), sometimes a blind one on any record."""
    requests = s.execute(select(ServiceRequest.id, ServiceRequest.status).order_by(ServiceRequest.id)).all()
    orders = s.execute(select(WorkOrder.id, WorkOrder.status).order_by(WorkOrder.id)).all()
    blind = data.draw(st.integers(0, 7), label="blind") == 0
    choices: list[tuple[str, int | None]] = [("tick", None), ("mark_overdue", None)]
    if len(requests) < MAX_REQUESTS:
        choices.append(("submit", None))
    for action, statuses in REQUEST_ACTIONS.items():
        weight = 1 if blind else WEIGHT[action]
        choices += [(action, r.id) for r in requests if blind or r.status in statuses] * weight
    for action, statuses in ORDER_ACTIONS.items():
        weight = 1 if blind else WEIGHT[action]
        choices += [(action, o.id) for o in orders if blind or o.status in statuses] * weight
    action, target = data.draw(st.sampled_from(choices), label="action")
    if action == "submit":
        return (action, None, data.draw(st.booleans(), label="located"))
    if action in ("tick", "mark_overdue"):
        return (action, None, data.draw(st.integers(1, 24 * 6), label="hours"))
    if action == "reject":
        reason = data.draw(st.sampled_from(list(RejectReason)), label="reason")
        original = data.draw(st.sampled_from([None, *[r.id for r in requests]]), label="duplicate_of")
        return (action, target, reason, original)
    if action == "dispatch":
        lead = data.draw(st.integers(0, len(UNIT_CODES) - 1), label="lead")
        assisting = data.draw(st.lists(st.integers(0, len(UNIT_CODES) - 1), max_size=2), label="assisting")
        return (action, target, lead, tuple(assisting), data.draw(some_role, label="role"))
    if action == "callback":
        resolved = data.draw(st.booleans(), label="resolved")
        return (action, target, resolved, data.draw(st.sampled_from(list(Satisfaction)), label="rating"),
                data.draw(some_role, label="role"))
    if action == "request_extension":
        return (action, target, data.draw(st.integers(1, 10), label="days"))
    if action == "decide_extension":
        return (action, target, data.draw(st.booleans(), label="approve"), data.draw(some_role, label="role"))
    if action == "supervise":
        return (action, target, data.draw(st.booleans(), label="redo"))
    if action == "reply":
        return (action, target)
    return (action, target, data.draw(some_role, label="role"))  # accept, reopen, acknowledge, return


def _as(default: Actor, role: Role | None, unit_id: int | None = None) -> Actor:
    """The right actor, or (when ``role`` is drawn) one with that role instead."""
    if role is None:
        return default
    return Actor(f"someone-{role.value}", role, unit_id)


def _handler(order: WorkOrder, role: Role | None = None) -> Actor:
    return _as(Actor(f"handler-{order.unit_id}", Role.HANDLER, order.unit_id), role, order.unit_id)


def apply(s: Session, step: Step, now: datetime, units: list[int]) -> None:
    """Fire one drawn action in session ``s`` (which the caller commits or rolls back)."""
    name, target, *args = step
    if name == "submit":
        extra = {"lat": 39.905, "lon": 116.405} if args[0] else {}
        intake.submit(s, data=intake.NewRequest(channel="hotline", title="路灯不亮", description="三号楼前路灯坏了",
                                                citizen_phone="13812341234", **extra), actor=OPERATOR, now=now)
    elif name == "accept":
        intake.accept(s, request_id=target, actor=_as(OPERATOR, args[0]), now=now)
    elif name == "reject":
        intake.reject(s, request_id=target, actor=OPERATOR, reason=args[0], duplicate_of_id=args[1], now=now)
    elif name == "dispatch":
        intake.dispatch(s, request_id=target, actor=_as(DISPATCHER, args[2]), lead_unit_id=units[args[0]],
                        assisting_unit_ids=[units[a] for a in args[1]], settings=SETTINGS, now=now)
    elif name == "callback":
        closing.callback(s, request_id=target, actor=_as(OPERATOR, args[2]), resolved=args[0],
                         satisfaction=args[1], settings=SETTINGS, now=now)
    elif name == "reopen":
        closing.reopen(s, request_id=target, actor=_as(SUPERVISOR, args[0]), settings=SETTINGS, reason="复核不实",
                       now=now)
    elif name == "supervise":
        closing.supervise(s, request_id=target, actor=SUPERVISOR, note="督办", redo=args[0], settings=SETTINGS,
                          now=now)
    elif name == "mark_overdue":
        mark_overdue(s, settings=SETTINGS, now=now)
    elif name == "tick":
        pass
    else:
        order = s.get(WorkOrder, target)
        assert order is not None
        if name == "acknowledge":
            handling.acknowledge(s, work_order_id=order.id, actor=_handler(order, args[0]), settings=SETTINGS,
                                 now=now)
        elif name == "return":
            handling.return_order(s, work_order_id=order.id, actor=_handler(order, args[0]), reason="不属本单位",
                                  settings=SETTINGS, now=now)
        elif name == "request_extension":
            handling.request_extension(s, work_order_id=order.id, actor=_handler(order), reason="需协调",
                                       extra_working_days=args[0], settings=SETTINGS, now=now)
        elif name == "decide_extension":
            handling.decide_extension(s, work_order_id=order.id, actor=_as(SUPERVISOR, args[1]),
                                      approve=args[0], reason="" if args[0] else "理由不足", now=now)
        elif name == "reply":
            handling.reply(s, work_order_id=order.id, actor=_handler(order), text="已处理", now=now)
        else:
            raise AssertionError(f"unknown step {step}")


# -- the invariants ---------------------------------------------------------------------------


def check_invariants(s: Session) -> None:
    for request in s.scalars(select(ServiceRequest).order_by(ServiceRequest.id)):
        orders = request.work_orders
        active = [o for o in orders if o.status in ACTIVE_ORDER]
        leads = [o for o in orders if o.role == WorkOrderRole.LEAD]
        active_leads = [o for o in active if o.role == WorkOrderRole.LEAD]
        where = f"request {request.id} ({request.status}): {[(o.id, o.role, o.round, o.status) for o in orders]}"

        if request.status == RS.DISPATCHED:
            assert [o.status for o in active_leads] == [WS.PENDING], where
        elif request.status == RS.IN_PROGRESS:
            assert [o.status for o in active_leads] in ([WS.ACKNOWLEDGED], [WS.EXTENSION_REQUESTED]), where
        elif request.status == RS.REPLIED:
            assert [o.status for o in active_leads] == [WS.REPLIED], where
        else:
            assert active == [], where

        if active_leads:
            assert request.lead_unit_id == active_leads[0].unit_id, where
        if request.status in (RS.SUBMITTED, RS.ACCEPTED, RS.REJECTED):
            assert request.lead_unit_id is None, where
        if request.status == RS.CLOSED:
            assert leads and leads[-1].callback_at is not None, where
            assert leads[-1].status == WS.CLOSED, where
            assert request.lead_unit_id == leads[-1].unit_id, where
            assert request.closed_at is not None, where
        if request.status == RS.REJECTED:
            assert orders == [] and request.reject_reason is not None, where

        rounds = [o.round for o in leads]
        assert rounds == list(range(1, len(leads) + 1)), where
        has_fallback = any(o.fallback for o in leads)
        assert request.fallback == has_fallback, where
        assert request.return_count <= SETTINGS.max_returns, where
        if not has_fallback:
            assert request.return_count < SETTINGS.max_returns, where
        assert sum(o.status == WS.RETURNED for o in leads) == request.return_count, where
        for order in orders:
            if order.fallback:
                assert order.status != WS.RETURNED, where
            if order.status in (WS.ACKNOWLEDGED, WS.EXTENSION_REQUESTED, WS.REPLIED):
                assert order.acknowledged_at is not None and order.due_at is not None, where
            if order.status == WS.EXTENSION_REQUESTED:
                assert order.extension_status == "pending", where

        events = s.scalars(select(RequestEvent).where(RequestEvent.request_id == request.id)
                           .order_by(RequestEvent.id)).all()
        assert events[0].action == "submit" and events[0].to_status == RS.SUBMITTED, where
        moves = [e for e in events if e.to_status is not None]
        assert moves[-1].to_status == request.status, (where, [(e.action, e.from_status, e.to_status) for e in events])
        for before, after in pairwise(moves):  # the log replays the request's life
            assert after.from_status == before.to_status, (where, after.action)
        assert all(e.actor and e.actor_role for e in events), where


# -- the property -----------------------------------------------------------------------------


@hsettings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(data=st.data())
def test_no_sequence_of_actions_reaches_an_illegal_state(engine, loop_city, data):
    _reset(engine)
    units = [loop_city[code] for code in UNIT_CODES]
    factory = session_factory(engine)
    now = START
    for _ in range(data.draw(st.integers(min_value=1, max_value=40), label="length")):
        with factory() as s:
            step = draw_step(data, s)
            s.rollback()  # end the read before the action's own transaction
            if step[0] in ("tick", "mark_overdue"):
                now += timedelta(hours=step[2])
            try:
                apply(s, step, now, units)
                s.commit()
            except EXPECTED:
                s.rollback()
        with factory() as s:
            check_invariants(s)
        now += timedelta(minutes=7)
