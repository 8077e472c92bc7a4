"""Every transition of the closed loop through the services, on the real database.

Times are fixed (``now=``) so deadlines can be asserted to the second. T0 is Tuesday 2025-09-30
10:00 in Beijing, the day before the National Day holiday (10-01..10-08; Saturday 10-11 works).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select

from civicloop.catalog.models import Category, DeadlineTier
from civicloop.core.errors import FieldError, Forbidden, IllegalTransition, NotFound, RuleViolation
from civicloop.core.roles import Role
from civicloop.core.settings import Settings
from civicloop.org.models import Grid
from civicloop.requests import closing, handling, intake
from civicloop.requests.jobs import mark_overdue
from civicloop.requests.models import (
    RejectReason,
    RequestEvent,
    RequestStatus,
    Satisfaction,
    ServiceRequest,
    Supervision,
    SupervisionReason,
    WorkOrder,
    WorkOrderRole,
    WorkOrderStatus,
)
from civicloop.requests.service import SYSTEM, Actor, get_request, history
from tests.helpers import DISPATCHER, HANDLER, OPERATOR, SUPERVISOR, closed, dispatched, make_request, replied

SH = ZoneInfo("Asia/Shanghai")
T0 = datetime(2025, 9, 30, 10, 0, tzinfo=SH)
RS = RequestStatus
WS = WorkOrderStatus


def local(y: int, m: int, d: int, hh: int = 23, mm: int = 59, ss: int = 59) -> datetime:
    return datetime(y, m, d, hh, mm, ss, tzinfo=SH)


def events(session, request_id: int) -> list[tuple[str, str | None, str | None]]:
    return [(e.action, e.from_status, e.to_status) for e in history(session, request_id=request_id)]


def lead(request: ServiceRequest) -> WorkOrder:
    return [o for o in request.work_orders if o.role == WorkOrderRole.LEAD][-1]


def ack(session, settings, order: WorkOrder, now: datetime = T0) -> WorkOrder:
    return handling.acknowledge(session, work_order_id=order.id, actor=HANDLER, settings=settings, now=now)


def do_reply(session, order: WorkOrder, now: datetime = T0) -> WorkOrder:
    return handling.reply(session, work_order_id=order.id, actor=HANDLER, text="已处理。", now=now)


def do_callback(session, settings, request, *, resolved=True, satisfaction=Satisfaction.SATISFIED, now=T0):
    return closing.callback(session, request_id=request.id, actor=OPERATOR, resolved=resolved,
                            satisfaction=satisfaction, settings=settings, now=now)


# -- intake -----------------------------------------------------------------------------------


def test_submit_locates_the_grid_and_records_who(session, settings, city):
    grid = session.scalars(select(Grid).where(Grid.code == "D01-S01-C01-G1")).one()
    request = make_request(session, now=T0, lat=39.905, lon=116.405)
    assert request.status == RS.SUBMITTED
    assert (request.grid_id, request.street_id, request.district_id) == (grid.id, city["D01-S01"], city["D01"])
    assert request.deadline_tier == DeadlineTier.DAYS_7
    assert request.created_at == T0
    [event] = history(session, request_id=request.id)
    assert (event.action, event.from_status, event.to_status) == ("submit", None, "submitted")
    assert (event.actor, event.actor_role, event.created_at) == ("operator-1", "operator", T0)


def test_submit_with_unknown_grid_or_category_is_a_field_error(session, settings, city):
    with pytest.raises(FieldError) as info:
        make_request(session, grid_id=999_999)
    assert info.value.field == ("grid_id",)
    with pytest.raises(FieldError) as info:
        make_request(session, category_id=999_999)
    assert info.value.field == ("category_id",)


def test_accept_sets_category_and_its_tier(session, settings, city):
    complex_ = session.scalars(select(Category).where(Category.deadline_tier == DeadlineTier.DAYS_15)).first()
    assert complex_ is not None
    request = make_request(session, now=T0)
    intake.accept(session, request_id=request.id, actor=OPERATOR, category_id=complex_.id, note="转职能部门", now=T0)
    assert request.status == RS.ACCEPTED
    assert (request.category_id, request.deadline_tier) == (complex_.id, "15wd")
    event = history(session, request_id=request.id)[-1]
    assert (event.action, event.from_status, event.to_status, event.actor, event.actor_role, event.reason) == (
        "accept", "submitted", "accepted", "operator-1", "operator", "转职能部门")
    with pytest.raises(IllegalTransition):
        intake.accept(session, request_id=request.id, actor=OPERATOR, now=T0)


def test_accept_with_explicit_tier_and_unknown_category(session, settings, city):
    request = make_request(session, now=T0)
    with pytest.raises(FieldError) as info:
        intake.accept(session, request_id=request.id, actor=OPERATOR, category_id=424242, now=T0)
    assert info.value.field == ("category_id",)
    assert request.status == RS.SUBMITTED
    intake.accept(session, request_id=request.id, actor=OPERATOR, deadline_tier=DeadlineTier.URGENT_2H, now=T0)
    assert request.deadline_tier == "2h"


def test_only_intake_roles_accept(session, settings, city):
    request = make_request(session, now=T0)
    with pytest.raises(Forbidden):
        intake.accept(session, request_id=request.id, actor=HANDLER, now=T0)
    with pytest.raises(NotFound):
        intake.accept(session, request_id=987654, actor=OPERATOR, now=T0)
    assert get_request(session, request_id=request.id).status == RS.SUBMITTED


def test_reject_out_of_scope(session, settings, city):
    request = make_request(session, now=T0)
    intake.reject(session, request_id=request.id, actor=OPERATOR, reason=RejectReason.OUT_OF_SCOPE, note="司法", now=T0)
    assert (request.status, request.reject_reason, request.closed_at) == (RS.REJECTED, "out_of_scope", T0)
    assert events(session, request.id)[-1] == ("reject", "submitted", "rejected")
    for act in (lambda: intake.accept(session, request_id=request.id, actor=OPERATOR, now=T0),
                lambda: intake.dispatch(session, request_id=request.id, actor=DISPATCHER,
                                        lead_unit_id=city["D01-S01"], settings=settings, now=T0),
                lambda: closing.supervise(session, request_id=request.id, actor=SUPERVISOR, note="x", redo=False,
                                          settings=settings, now=T0)):
        with pytest.raises(IllegalTransition):
            act()


def test_duplicate_needs_the_original_and_raises_its_support(session, settings, city):
    original = make_request(session, now=T0)
    copy1 = make_request(session, now=T0)
    copy2 = make_request(session, now=T0)
    with pytest.raises(FieldError) as info:
        intake.reject(session, request_id=copy1.id, actor=OPERATOR, reason=RejectReason.DUPLICATE, now=T0)
    assert (info.value.field, info.value.code) == (("duplicate_of_id",), "v.duplicate_of_required")
    with pytest.raises(FieldError) as info:
        intake.reject(session, request_id=copy1.id, actor=OPERATOR, reason=RejectReason.DUPLICATE,
                      duplicate_of_id=copy1.id, now=T0)
    assert info.value.field == ("duplicate_of_id",)
    with pytest.raises(FieldError) as info:
        intake.reject(session, request_id=copy1.id, actor=OPERATOR, reason=RejectReason.DUPLICATE,
                      duplicate_of_id=777_777, now=T0)
    assert info.value.field == ("duplicate_of_id",)
    assert copy1.status == RS.SUBMITTED
    for copy in (copy1, copy2):
        intake.reject(session, request_id=copy.id, actor=OPERATOR, reason=RejectReason.DUPLICATE,
                      duplicate_of_id=original.id, now=T0)
        assert (copy.status, copy.duplicate_of_id, copy.reject_reason) == (RS.REJECTED, original.id, "duplicate")
    session.refresh(original)
    assert original.support_count == 2
    assert original.status == RS.SUBMITTED


# -- dispatch ---------------------------------------------------------------------------------


def test_dispatch_with_assisting_units(session, settings, city):
    request = dispatched(session, settings, unit_id=city["D01-S01"], now=T0,
                         assisting=(city["DEP-CG"], city["UT-POWER"], city["DEP-CG"]))
    assert request.status == RS.DISPATCHED
    assert request.lead_unit_id == city["D01-S01"]
    got = [(o.unit_id, o.role, o.round, o.status, o.response_due_at) for o in request.work_orders]
    due = T0 + timedelta(hours=24)
    assert got == [
        (city["D01-S01"], "lead", 1, "pending", due),
        (city["DEP-CG"], "assisting", 1, "pending", due),
        (city["UT-POWER"], "assisting", 1, "pending", due),
    ]
    event = history(session, request_id=request.id)[-1]
    assert (event.action, event.from_status, event.to_status, event.actor, event.actor_role) == (
        "dispatch", "accepted", "dispatched", "dispatcher-1", "dispatcher")
    assert event.data == {"lead_unit_id": city["D01-S01"], "assisting_unit_ids": [city["DEP-CG"], city["UT-POWER"]]}


def test_urgent_order_must_be_acknowledged_in_two_hours(session, settings, city):
    request = dispatched(session, settings, unit_id=city["UT-WATER"], now=T0, deadline_tier=DeadlineTier.URGENT_2H)
    assert lead(request).response_due_at == T0 + timedelta(hours=2)


def test_dispatch_refuses_an_assisting_unit_that_is_the_lead(session, settings, city):
    request = make_request(session, now=T0)
    intake.accept(session, request_id=request.id, actor=OPERATOR, now=T0)
    with pytest.raises(FieldError) as info:
        intake.dispatch(session, request_id=request.id, actor=DISPATCHER, lead_unit_id=city["D01-S01"],
                        assisting_unit_ids=[city["DEP-CG"], city["DEP-CG"], city["D01-S01"]], settings=settings,
                        now=T0)
    assert (info.value.field, info.value.code) == (("assisting_unit_ids", "2"), "v.assisting_is_lead")
    with pytest.raises(FieldError) as info:
        intake.dispatch(session, request_id=request.id, actor=DISPATCHER, lead_unit_id=city["D01-S01"],
                        assisting_unit_ids=[city["DEP-CG"], 555_555], settings=settings, now=T0)
    assert info.value.field == ("assisting_unit_ids", "1")
    with pytest.raises(FieldError) as info:
        intake.dispatch(session, request_id=request.id, actor=DISPATCHER, lead_unit_id=555_555,
                        settings=settings, now=T0)
    assert info.value.field == ("lead_unit_id",)
    with pytest.raises(Forbidden):
        intake.dispatch(session, request_id=request.id, actor=OPERATOR, lead_unit_id=city["D01-S01"],
                        settings=settings, now=T0)
    assert request.status == RS.ACCEPTED
    assert request.work_orders == []


def test_dispatch_needs_an_accepted_request(session, settings, city):
    request = make_request(session, now=T0)
    with pytest.raises(IllegalTransition):
        intake.dispatch(session, request_id=request.id, actor=DISPATCHER, lead_unit_id=city["D01-S01"],
                        settings=settings, now=T0)


# -- acknowledge ------------------------------------------------------------------------------


@pytest.mark.parametrize(("tier", "due"), [
    (DeadlineTier.URGENT_2H, T0 + timedelta(hours=2)),
    (DeadlineTier.HOURS_24, T0 + timedelta(hours=24)),  # clock time, even on National Day
    (DeadlineTier.DAYS_7, local(2025, 10, 16)),
    (DeadlineTier.DAYS_15, local(2025, 10, 28)),
])
def test_acknowledge_sets_the_deadline_by_tier(session, settings, city, tier, due):
    request = dispatched(session, settings, unit_id=city["D01-S01"], now=T0, deadline_tier=tier)
    order = ack(session, settings, lead(request), now=T0)
    assert (order.status, order.acknowledged_at, order.due_at, order.due_provisional) == (WS.ACKNOWLEDGED, T0, due,
                                                                                           False)
    assert request.status == RS.IN_PROGRESS
    event = history(session, request_id=request.id)[-1]
    assert (event.action, event.from_status, event.to_status, event.actor, event.actor_role) == (
        "acknowledge", "dispatched", "in_progress", "handler-1", "handler")
    assert event.work_order_id == order.id
    assert event.data["order_status"] == ["pending", "acknowledged"]
    with pytest.raises(IllegalTransition):
        ack(session, settings, order)


def test_assisting_acknowledge_leaves_the_request_dispatched(session, settings, city):
    request = dispatched(session, settings, unit_id=city["D01-S01"], now=T0, assisting=(city["DEP-CG"],))
    helper = request.work_orders[1]
    ack(session, settings, helper)
    assert (helper.status, request.status) == (WS.ACKNOWLEDGED, RS.DISPATCHED)
    assert events(session, request.id)[-1] == ("acknowledge", "dispatched", "dispatched")


def test_only_the_units_own_handler_acknowledges(session, settings, city):
    request = dispatched(session, settings, unit_id=city["D01-S01"], now=T0)
    order = lead(request)
    other = Actor("handler-x", Role.HANDLER, unit_id=city["D01-S02"])
    with pytest.raises(NotFound):  # another unit's order is invisible
        handling.acknowledge(session, work_order_id=order.id, actor=other, settings=settings, now=T0)
    with pytest.raises(Forbidden):
        handling.acknowledge(session, work_order_id=order.id, actor=DISPATCHER, settings=settings, now=T0)
    own = Actor("handler-y", Role.HANDLER, unit_id=city["D01-S01"])
    handling.acknowledge(session, work_order_id=order.id, actor=own, settings=settings, now=T0)
    assert order.status == WS.ACKNOWLEDGED


# -- return and fallback ----------------------------------------------------------------------


def test_return_sends_the_request_back_and_cancels_assisting_orders(session, settings, city):
    request = dispatched(session, settings, unit_id=city["D01-S01"], now=T0, assisting=(city["DEP-CG"],))
    order, helper = request.work_orders
    ack(session, settings, helper)
    with pytest.raises(FieldError) as info:
        handling.return_order(session, work_order_id=order.id, actor=HANDLER, reason="  ", settings=settings, now=T0)
    assert info.value.field == ("reason",)
    handling.return_order(session, work_order_id=order.id, actor=HANDLER, reason="不属本街道", settings=settings,
                          now=T0)
    assert (order.status, order.return_reason, order.returned_at) == (WS.RETURNED, "不属本街道", T0)
    assert helper.status == WS.CANCELLED
    assert (request.status, request.return_count, request.lead_unit_id, request.fallback) == (
        RS.ACCEPTED, 1, None, False)
    assert events(session, request.id)[-2:] == [("return", "dispatched", "accepted"),
                                                ("cancel", "accepted", "accepted")]
    with pytest.raises(IllegalTransition):
        handling.return_order(session, work_order_id=order.id, actor=HANDLER, reason="again", settings=settings,
                              now=T0)


def test_return_also_cancels_assisting_orders_of_earlier_rounds(session, settings, city):
    """A reopen keeps the first round's assisting orders alive; when the new lead order is then
    returned the request goes back to dispatch and must not keep any live order."""
    request = dispatched(session, settings, unit_id=city["D01-S01"], now=T0, assisting=(city["DEP-CG"],))
    first, helper = request.work_orders
    ack(session, settings, first)
    do_reply(session, first)
    do_callback(session, settings, request, resolved=False, satisfaction=Satisfaction.DISSATISFIED)
    assert helper.status == WS.PENDING  # still owed
    second = lead(request)
    handling.return_order(session, work_order_id=second.id, actor=HANDLER, reason="已移交", settings=settings, now=T0)
    assert request.status == RS.ACCEPTED
    assert helper.status == WS.CANCELLED
    assert [o.status for o in request.work_orders] == [WS.REOPENED, WS.CANCELLED, WS.RETURNED]


def test_an_assisting_return_leaves_the_lead_alone(session, settings, city):
    request = dispatched(session, settings, unit_id=city["D01-S01"], now=T0, assisting=(city["DEP-CG"],))
    order, helper = request.work_orders
    handling.return_order(session, work_order_id=helper.id, actor=HANDLER, reason="非本部门", settings=settings,
                          now=T0)
    assert (helper.status, order.status, request.status, request.return_count) == (
        WS.RETURNED, WS.PENDING, RS.DISPATCHED, 0)


def test_fallback_to_the_district_after_max_returns(session, settings, city):
    assert settings.max_returns == 2
    request = dispatched(session, settings, unit_id=city["D01-S01"], now=T0)
    handling.return_order(session, work_order_id=lead(request).id, actor=HANDLER, reason="不属本街道",
                          settings=settings, now=T0)
    assert (request.status, request.return_count) == (RS.ACCEPTED, 1)
    intake.dispatch(session, request_id=request.id, actor=DISPATCHER, lead_unit_id=city["D01-S02"],
                    settings=settings, now=T0)
    second = lead(request)
    assert (second.round, second.unit_id) == (2, city["D01-S02"])
    handling.return_order(session, work_order_id=second.id, actor=HANDLER, reason="也不属本街道",
                          settings=settings, now=T0)
    fallback = lead(request)
    assert (request.status, request.return_count, request.fallback, request.lead_unit_id) == (
        RS.DISPATCHED, 2, True, city["D01"])
    assert (fallback.unit_id, fallback.fallback, fallback.round, fallback.status) == (
        city["D01"], True, 3, WS.PENDING)
    assert events(session, request.id)[-2:] == [("return", "dispatched", "accepted"),
                                                ("fallback", "accepted", "dispatched")]
    fallback_event = history(session, request_id=request.id)[-1]
    assert (fallback_event.actor, fallback_event.actor_role) == ("system", "system")
    with pytest.raises(RuleViolation) as info:
        handling.return_order(session, work_order_id=fallback.id, actor=HANDLER, reason="区里也不管",
                              settings=settings, now=T0)
    assert info.value.code == "fallback_no_return"
    assert fallback.status == WS.PENDING


def test_max_returns_is_a_setting(session, city):
    settings = Settings(_env_file=None, max_returns=3)  # type: ignore[call-arg]
    request = dispatched(session, settings, unit_id=city["D01-S01"], now=T0)
    for unit in ("D01-S02", "D01-S03"):
        handling.return_order(session, work_order_id=lead(request).id, actor=HANDLER, reason="不属本单位",
                              settings=settings, now=T0)
        assert request.status == RS.ACCEPTED
        intake.dispatch(session, request_id=request.id, actor=DISPATCHER, lead_unit_id=city[unit],
                        settings=settings, now=T0)
    handling.return_order(session, work_order_id=lead(request).id, actor=HANDLER, reason="不属本单位",
                          settings=settings, now=T0)
    assert (request.status, request.return_count, lead(request).unit_id) == (RS.DISPATCHED, 3, city["D01"])


def test_fallback_uses_the_requests_own_district(session, settings, city):
    request = dispatched(session, settings, unit_id=city["DEP-CG"], now=T0, lat=39.985, lon=116.405)
    assert request.district_id == city["D02"]
    for _ in range(2):
        if request.status == RS.ACCEPTED:
            intake.dispatch(session, request_id=request.id, actor=DISPATCHER, lead_unit_id=city["DEP-ZJ"],
                            settings=settings, now=T0)
        handling.return_order(session, work_order_id=lead(request).id, actor=HANDLER, reason="不属本部门",
                              settings=settings, now=T0)
    assert lead(request).unit_id == city["D02"]


# -- extension --------------------------------------------------------------------------------


def _in_progress(session, settings, city, tier=DeadlineTier.DAYS_7):
    request = dispatched(session, settings, unit_id=city["D01-S01"], now=T0, deadline_tier=tier)
    order = ack(session, settings, lead(request))
    return request, order


def test_extension_approved_moves_the_deadline_and_clears_overdue(session, settings, city):
    request, order = _in_progress(session, settings, city)
    assert order.due_at == local(2025, 10, 16)
    asked = T0 + timedelta(days=15)
    handling.request_extension(session, work_order_id=order.id, actor=HANDLER, reason="需协调管线单位",
                               extra_working_days=3, settings=settings, now=asked)
    assert (order.status, order.extension_status, order.extension_until) == (
        WS.EXTENSION_REQUESTED, "pending", local(2025, 10, 21))
    assert request.status == RS.IN_PROGRESS
    assert events(session, request.id)[-1] == ("request_extension", "in_progress", "in_progress")
    report = mark_overdue(session, settings=settings, now=local(2025, 10, 17, 9, 0, 0))
    assert report.marked == [order.id]
    assert order.overdue is True
    handling.decide_extension(session, work_order_id=order.id, actor=SUPERVISOR, approve=True,
                              now=local(2025, 10, 17, 10, 0, 0))
    assert (order.status, order.extension_status, order.due_at, order.overdue) == (
        WS.ACKNOWLEDGED, "approved", local(2025, 10, 21), False)
    event = history(session, request_id=request.id)[-1]
    assert (event.action, event.from_status, event.to_status, event.actor_role) == (
        "decide_extension", "in_progress", "in_progress", "supervisor")
    assert event.data["order_status"] == ["extension_requested", "acknowledged"]


def test_extension_with_a_date_and_an_approval_with_another_date(session, settings, city):
    _request, order = _in_progress(session, settings, city)
    handling.request_extension(session, work_order_id=order.id, actor=HANDLER, reason="材料未齐",
                               until=local(2025, 10, 31, 18, 0, 0), settings=settings, now=T0)
    assert order.extension_until == local(2025, 10, 31, 18, 0, 0)
    handling.decide_extension(session, work_order_id=order.id, actor=SUPERVISOR, approve=True,
                              due_at=local(2025, 10, 24, 18, 0, 0), now=T0)
    assert order.due_at == local(2025, 10, 24, 18, 0, 0)


def test_extension_refused_needs_a_reason_and_keeps_the_deadline(session, settings, city):
    request, order = _in_progress(session, settings, city)
    handling.request_extension(session, work_order_id=order.id, actor=HANDLER, reason="人手不足",
                               extra_working_days=5, settings=settings, now=T0)
    with pytest.raises(FieldError) as info:
        handling.decide_extension(session, work_order_id=order.id, actor=SUPERVISOR, approve=False, now=T0)
    assert info.value.field == ("reason",)
    with pytest.raises(Forbidden):
        handling.decide_extension(session, work_order_id=order.id, actor=HANDLER, approve=True, now=T0)
    handling.decide_extension(session, work_order_id=order.id, actor=SUPERVISOR, approve=False,
                              reason="理由不充分", now=T0)
    assert (order.status, order.extension_status, order.due_at) == (WS.ACKNOWLEDGED, "refused", local(2025, 10, 16))
    assert history(session, request_id=request.id)[-1].reason == "理由不充分"


def test_deciding_without_a_pending_extension_is_illegal(session, settings, city):
    """Even when an earlier, approved extension left a future ``extension_until`` behind."""
    _request, order = _in_progress(session, settings, city)
    with pytest.raises(IllegalTransition):
        handling.decide_extension(session, work_order_id=order.id, actor=SUPERVISOR, approve=True, now=T0)
    handling.request_extension(session, work_order_id=order.id, actor=HANDLER, reason="需协调",
                               extra_working_days=2, settings=settings, now=T0)
    handling.decide_extension(session, work_order_id=order.id, actor=SUPERVISOR, approve=True, now=T0)
    with pytest.raises(IllegalTransition):
        handling.decide_extension(session, work_order_id=order.id, actor=SUPERVISOR, approve=True, now=T0)


def test_extension_must_move_the_deadline_later(session, settings, city):
    _request, order = _in_progress(session, settings, city)
    with pytest.raises(FieldError) as info:
        handling.request_extension(session, work_order_id=order.id, actor=HANDLER, reason="x",
                                   until=local(2025, 10, 15), settings=settings, now=T0)
    assert (info.value.field, info.value.code) == (("until",), "v.deadline_past")
    with pytest.raises(FieldError) as info:
        handling.request_extension(session, work_order_id=order.id, actor=HANDLER, reason="x",
                                   settings=settings, now=T0)
    assert info.value.field == ("until",)
    with pytest.raises(FieldError) as info:
        handling.request_extension(session, work_order_id=order.id, actor=HANDLER, reason=" ",
                                   extra_working_days=1, settings=settings, now=T0)
    assert info.value.field == ("reason",)
    with pytest.raises(FieldError) as info:
        handling.request_extension(session, work_order_id=order.id, actor=HANDLER, reason="x",
                                   until=datetime(2025, 10, 20, 12, 0), settings=settings, now=T0)
    assert (info.value.field, info.value.code) == (("until",), "v.timezone_aware")
    handling.request_extension(session, work_order_id=order.id, actor=HANDLER, reason="x", extra_working_days=1,
                               settings=settings, now=T0)
    with pytest.raises(FieldError) as info:
        handling.decide_extension(session, work_order_id=order.id, actor=SUPERVISOR, approve=True,
                                  due_at=T0 - timedelta(hours=1), now=T0)
    assert info.value.field == ("due_at",)
    assert order.status == WS.EXTENSION_REQUESTED


def test_extension_of_a_pending_order_is_illegal(session, settings, city):
    request = dispatched(session, settings, unit_id=city["D01-S01"], now=T0)
    with pytest.raises(IllegalTransition):
        handling.request_extension(session, work_order_id=lead(request).id, actor=HANDLER, reason="x",
                                   extra_working_days=2, settings=settings, now=T0)


# -- reply and callback -----------------------------------------------------------------------


def test_reply_moves_the_request_to_replied(session, settings, city):
    request, order = _in_progress(session, settings, city)
    with pytest.raises(FieldError) as info:
        handling.reply(session, work_order_id=order.id, actor=HANDLER, text="   ", now=T0)
    assert info.value.field == ("text",)
    handling.reply(session, work_order_id=order.id, actor=HANDLER, text="已更换灯泡。", now=T0 + timedelta(days=1))
    assert (order.status, order.reply_text, order.replied_at) == (WS.REPLIED, "已更换灯泡。", T0 + timedelta(days=1))
    assert request.status == RS.REPLIED
    assert events(session, request.id)[-1] == ("reply", "in_progress", "replied")
    with pytest.raises(IllegalTransition):
        handling.reply(session, work_order_id=order.id, actor=HANDLER, text="again", now=T0)


def test_reply_lapses_a_pending_extension(session, settings, city):
    request, order = _in_progress(session, settings, city)
    handling.request_extension(session, work_order_id=order.id, actor=HANDLER, reason="x", extra_working_days=1,
                               settings=settings, now=T0)
    do_reply(session, order)
    assert (order.status, order.extension_status, request.status) == (WS.REPLIED, None, RS.REPLIED)


def test_reply_of_a_pending_order_is_illegal(session, settings, city):
    request = dispatched(session, settings, unit_id=city["D01-S01"], now=T0)
    with pytest.raises(IllegalTransition):
        do_reply(session, lead(request))


@pytest.mark.parametrize("satisfaction", [Satisfaction.SATISFIED, Satisfaction.BASICALLY_SATISFIED])
def test_callback_satisfied_closes(session, settings, city, satisfaction):
    request = dispatched(session, settings, unit_id=city["D01-S01"], now=T0, assisting=(city["DEP-CG"],))
    order, helper = request.work_orders
    ack(session, settings, order)
    do_reply(session, order)
    later = T0 + timedelta(days=2)
    do_callback(session, settings, request, satisfaction=satisfaction, now=later)
    assert (request.status, request.closed_at, request.reopen_count) == (RS.CLOSED, later, 0)
    assert (order.status, order.callback_at, order.resolved, order.satisfaction, order.closed_at) == (
        WS.CLOSED, later, True, str(satisfaction), later)
    assert helper.status == WS.CLOSED  # nothing stays owed once the request is closed
    assert events(session, request.id)[-3:] == [("close", "replied", "replied"), ("close", "replied", "replied"),
                                                ("callback", "replied", "closed")]
    assert session.scalar(select(func.count()).select_from(Supervision)) == 0
    with pytest.raises(IllegalTransition):
        do_callback(session, settings, request)


def test_close_unrated_closes_without_a_rating_and_counts_apart(session, settings, city):
    """结案（未回访）: the citizen cannot be reached; the request closes with no callback, so the
    unit's response counts and the resolution and satisfaction rates do not see it."""
    from civicloop.analytics.metrics import three_rates

    request = dispatched(session, settings, unit_id=city["D01-S01"], now=T0, assisting=(city["DEP-CG"],))
    order, helper = request.work_orders
    ack(session, settings, order)
    with pytest.raises(IllegalTransition):  # only a replied request can close this way
        closing.close_unrated(session, request_id=request.id, actor=OPERATOR, reason="联系不上", now=T0)
    do_reply(session, order)
    with pytest.raises(Forbidden):
        closing.close_unrated(session, request_id=request.id, actor=HANDLER, reason="联系不上", now=T0)
    assert (request.status, order.status) == (RS.REPLIED, WS.REPLIED)  # the refusal wrote nothing
    later = T0 + timedelta(days=3)
    closing.close_unrated(session, request_id=request.id, actor=OPERATOR, reason="三次联系不上", now=later)
    assert (request.status, request.closed_at) == (RS.CLOSED, later)
    assert (order.status, order.callback_at, order.resolved, order.satisfaction, order.closed_at) == (
        WS.CLOSED, None, None, None, later)
    assert helper.status == WS.CLOSED
    assert events(session, request.id)[-1] == ("close_unrated", "replied", "closed")
    assert history(session, request_id=request.id)[-1].reason == "三次联系不上"
    session.flush()
    row = {r.unit_name: r for r in three_rates(session, month="2025-09", level="unit", settings=settings,
                                                now=later)}["望湖街道"]
    assert (row.due, row.responded, row.called_back, row.resolution_rate, row.satisfaction_rate) == (
        1, 1, 0, None, None)
    with pytest.raises(IllegalTransition):
        do_callback(session, settings, request)


def test_callback_only_after_the_reply(session, settings, city):
    request, order = _in_progress(session, settings, city)
    with pytest.raises(IllegalTransition):
        do_callback(session, settings, request)
    do_reply(session, order)
    with pytest.raises(Forbidden):
        closing.callback(session, request_id=request.id, actor=HANDLER, resolved=True,
                         satisfaction=Satisfaction.SATISFIED, settings=settings, now=T0)


@pytest.mark.parametrize(("resolved", "satisfaction"), [(True, Satisfaction.DISSATISFIED),
                                                        (False, Satisfaction.SATISFIED)])
def test_callback_unhappy_reopens_to_the_same_unit(session, settings, city, resolved, satisfaction):
    request = replied(session, settings, unit_id=city["D01-S01"], now=T0)
    first = lead(request)
    later = T0 + timedelta(days=3)
    do_callback(session, settings, request, resolved=resolved, satisfaction=satisfaction, now=later)
    second = lead(request)
    assert (request.status, request.reopen_count, request.lead_unit_id, request.closed_at) == (
        RS.DISPATCHED, 1, city["D01-S01"], None)
    assert (first.status, first.resolved, first.satisfaction, first.callback_at) == (
        WS.REOPENED, resolved, str(satisfaction), later)
    assert (second.id != first.id, second.unit_id, second.round, second.status, second.dispatched_at) == (
        True, city["D01-S01"], 2, WS.PENDING, later)
    assert second.response_due_at == later + timedelta(hours=24)
    assert events(session, request.id)[-2:] == [("callback", "replied", "replied"),
                                                ("reopen", "replied", "dispatched")]


def test_after_max_reopens_a_dissatisfied_callback_closes_under_supervision(session, settings, city):
    assert settings.max_reopens == 1
    request = replied(session, settings, unit_id=city["D01-S01"], now=T0)
    do_callback(session, settings, request, resolved=False, satisfaction=Satisfaction.DISSATISFIED)
    second = lead(request)
    ack(session, settings, second)
    do_reply(session, second)
    do_callback(session, settings, request, resolved=False, satisfaction=Satisfaction.DISSATISFIED)
    assert (request.status, request.reopen_count) == (RS.CLOSED, 1)
    assert (second.status, second.satisfaction, second.resolved) == (WS.CLOSED, "dissatisfied", False)
    [case] = session.scalars(select(Supervision)).all()
    assert (case.request_id, case.work_order_id, case.reason, case.open, case.opened_by) == (
        request.id, second.id, SupervisionReason.DISSATISFIED, True, "operator-1")


def test_no_reopen_at_all_when_max_reopens_is_zero(session, city):
    settings = Settings(_env_file=None, max_reopens=0)  # type: ignore[call-arg]
    request = replied(session, settings, unit_id=city["D01-S01"], now=T0)
    do_callback(session, settings, request, resolved=False, satisfaction=Satisfaction.DISSATISFIED)
    assert request.status == RS.CLOSED
    assert session.scalar(select(func.count()).select_from(Supervision)) == 1


# -- reopen and supervision -------------------------------------------------------------------


def test_supervise_with_redo_reopens_a_closed_request(session, settings, city):
    request = closed(session, settings, unit_id=city["D01-S01"], now=T0)
    first = lead(request)
    case = closing.supervise(session, request_id=request.id, actor=SUPERVISOR, note="群众反映未真正解决", redo=True,
                             settings=settings, now=T0 + timedelta(days=5))
    assert (case.reason, case.redo, case.note, case.open, case.work_order_id) == (
        SupervisionReason.MANUAL, True, "群众反映未真正解决", True, None)
    second = lead(request)
    assert (request.status, request.reopen_count, request.closed_at, request.lead_unit_id) == (
        RS.DISPATCHED, 1, None, city["D01-S01"])
    assert (first.status, second.status, second.round, second.unit_id) == (
        WS.REOPENED, WS.PENDING, 2, city["D01-S01"])
    assert events(session, request.id)[-2:] == [("supervise", "closed", "closed"), ("reopen", "closed", "dispatched")]
    assert [(e.actor, e.actor_role) for e in history(session, request_id=request.id)[-2:]] == [
        ("supervisor-1", "supervisor")] * 2


def test_supervise_without_redo_keeps_the_status(session, settings, city):
    request, order = _in_progress(session, settings, city)
    case = closing.supervise(session, request_id=request.id, actor=SUPERVISOR, note="请加快", redo=False,
                             settings=settings, now=T0)
    assert (case.work_order_id, case.redo, request.status) == (order.id, False, RS.IN_PROGRESS)
    assert events(session, request.id)[-1] == ("supervise", "in_progress", "in_progress")
    with pytest.raises(IllegalTransition):  # a redo only once the unit has replied
        closing.supervise(session, request_id=request.id, actor=SUPERVISOR, note="重办", redo=True,
                          settings=settings, now=T0)
    with pytest.raises(Forbidden):
        closing.supervise(session, request_id=request.id, actor=HANDLER, note="x", redo=False, settings=settings,
                          now=T0)
    closing.close_supervision(session, supervision_id=case.id, actor=SUPERVISOR, note="已提速", now=T0)
    assert (case.open, case.closed_at, case.note) == (False, T0, "请加快\n已提速")


def test_supervise_a_submitted_request_is_illegal(session, settings, city):
    request = make_request(session, now=T0)
    with pytest.raises(IllegalTransition):
        closing.supervise(session, request_id=request.id, actor=SUPERVISOR, note="x", redo=False,
                          settings=settings, now=T0)


def test_reopen_of_a_replied_request(session, settings, city):
    request = replied(session, settings, unit_id=city["D01-S01"], now=T0)
    with pytest.raises(Forbidden):
        closing.reopen(session, request_id=request.id, actor=OPERATOR, settings=settings, reason="x", now=T0)
    closing.reopen(session, request_id=request.id, actor=SUPERVISOR, settings=settings, reason="答复不实", now=T0)
    assert (request.status, request.reopen_count) == (RS.DISPATCHED, 1)
    assert [o.status for o in request.work_orders] == [WS.REOPENED, WS.PENDING]
    with pytest.raises(IllegalTransition):
        closing.reopen(session, request_id=request.id, actor=SUPERVISOR, settings=settings, reason="x", now=T0)


# -- the overdue job --------------------------------------------------------------------------


def test_overdue_job_flags_a_pending_order_after_its_response_deadline_once(session, settings, city):
    request = dispatched(session, settings, unit_id=city["D01-S01"], now=T0)
    order = lead(request)
    assert mark_overdue(session, settings=settings, now=T0 + timedelta(hours=23)).marked == []
    assert order.overdue is False
    report = mark_overdue(session, settings=settings, now=T0 + timedelta(hours=24, seconds=1))
    assert report.marked == [order.id]
    assert (order.overdue, order.status, request.status) == (True, WS.PENDING, RS.DISPATCHED)
    event = history(session, request_id=request.id)[-1]
    assert (event.action, event.from_status, event.to_status, event.actor, event.actor_role, event.data) == (
        "mark_overdue", "dispatched", "dispatched", "system", "system",
        {"deadline": "response", "order_status": ["pending", "pending"]})
    assert mark_overdue(session, settings=settings, now=T0 + timedelta(days=3)).marked == []
    [case] = session.scalars(select(Supervision)).all()
    assert (case.request_id, case.work_order_id, case.reason, case.opened_by) == (
        request.id, order.id, SupervisionReason.OVERDUE, "system")


def test_overdue_job_flags_an_acknowledged_order_after_due_at_once(session, settings, city):
    request, order = _in_progress(session, settings, city)
    _other_request, other = _in_progress(session, settings, city, tier=DeadlineTier.DAYS_15)
    done = replied(session, settings, unit_id=city["D01-S02"], now=T0)
    assert mark_overdue(session, settings=settings, now=local(2025, 10, 16, 23, 59, 58)).marked == []
    first = mark_overdue(session, settings=settings, now=local(2025, 10, 17, 0, 0, 1))
    assert first.marked == [order.id]
    assert (order.overdue, other.overdue, lead(done).overdue) == (True, False, False)
    assert events(session, request.id)[-1] == ("mark_overdue", "in_progress", "in_progress")
    assert mark_overdue(session, settings=settings, now=local(2025, 10, 20, 9, 0, 0)).marked == []
    assert mark_overdue(session, settings=settings, now=local(2025, 10, 29, 0, 0, 0)).marked == [other.id]
    cases = session.scalars(select(Supervision).order_by(Supervision.id)).all()
    assert [(c.work_order_id, c.reason) for c in cases] == [(order.id, "overdue"), (other.id, "overdue")]


def test_an_order_late_to_acknowledge_is_flagged_again_when_late_to_resolve(session, settings, city):
    request = dispatched(session, settings, unit_id=city["D01-S01"], now=T0)
    order = lead(request)
    assert mark_overdue(session, settings=settings, now=T0 + timedelta(hours=25)).marked == [order.id]
    handling.acknowledge(session, work_order_id=order.id, actor=HANDLER, settings=settings,
                         now=T0 + timedelta(hours=26))
    assert order.overdue is False
    assert mark_overdue(session, settings=settings, now=order.due_at - timedelta(seconds=1)).marked == []
    assert mark_overdue(session, settings=settings, now=order.due_at + timedelta(seconds=1)).marked == [order.id]
    kinds = [e.data.get("deadline") for e in history(session, request_id=request.id) if e.action == "mark_overdue"]
    assert kinds == ["response", "resolution"]


# -- the event log ----------------------------------------------------------------------------


def test_every_transition_is_in_the_log_with_who_from_and_to(session, settings, city):
    request = dispatched(session, settings, unit_id=city["D01-S01"], now=T0, assisting=(city["DEP-CG"],))
    order, helper = request.work_orders
    ack(session, settings, order)
    handling.request_extension(session, work_order_id=order.id, actor=HANDLER, reason="需协调",
                               extra_working_days=2, settings=settings, now=T0)
    handling.decide_extension(session, work_order_id=order.id, actor=SUPERVISOR, approve=False, reason="不批",
                              now=T0)
    do_reply(session, order)
    do_callback(session, settings, request)
    log = [(e.action, e.from_status, e.to_status, e.actor, e.actor_role, e.work_order_id, e.data.get("order_status"))
           for e in history(session, request_id=request.id)]
    assert log == [
        ("submit", None, "submitted", "operator-1", "operator", None, None),
        ("accept", "submitted", "accepted", "operator-1", "operator", None, None),
        ("dispatch", "accepted", "dispatched", "dispatcher-1", "dispatcher", order.id, None),
        ("acknowledge", "dispatched", "in_progress", "handler-1", "handler", order.id, ["pending", "acknowledged"]),
        ("request_extension", "in_progress", "in_progress", "handler-1", "handler", order.id,
         ["acknowledged", "extension_requested"]),
        ("decide_extension", "in_progress", "in_progress", "supervisor-1", "supervisor", order.id,
         ["extension_requested", "acknowledged"]),
        ("reply", "in_progress", "replied", "handler-1", "handler", order.id, ["acknowledged", "replied"]),
        ("close", "replied", "replied", "operator-1", "operator", order.id, ["replied", "closed"]),
        ("close", "replied", "replied", "operator-1", "operator", helper.id, ["pending", "closed"]),
        ("callback", "replied", "closed", "operator-1", "operator", order.id, None),
    ]
    assert all(e.created_at == T0 for e in history(session, request_id=request.id))


def test_a_failed_transition_writes_nothing(session, settings, city):
    request = make_request(session, now=T0)
    session.commit()
    with pytest.raises(IllegalTransition):
        intake.dispatch(session, request_id=request.id, actor=DISPATCHER, lead_unit_id=city["D01-S01"],
                        settings=settings, now=T0)
    session.rollback()
    assert session.scalar(select(func.count()).select_from(RequestEvent)) == 1
    assert session.scalar(select(func.count()).select_from(WorkOrder)) == 0


def test_system_actor_is_named(session, settings, city):
    assert (SYSTEM.name, SYSTEM.role) == ("system", Role.SYSTEM)
