"""Use cases of a handling unit: acknowledge (签收), return (退单), ask for an extension (延期) and
have it decided, and reply (办结)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from civicloop.core.calendar_service import load_calendar
from civicloop.core.errors import FieldError, NotFound, RuleViolation
from civicloop.core.roles import Role
from civicloop.core.settings import Settings
from civicloop.core.timeutil import as_utc
from civicloop.org.models import OrgUnit
from civicloop.requests.deadlines import extend_by_working_days, resolution_due
from civicloop.requests.intake import fall_back
from civicloop.requests.models import ExtensionStatus, ServiceRequest, WorkOrder, WorkOrderRole, WorkOrderStatus
from civicloop.requests.rules import ACTIVE_ORDER, WORK_ORDER_RULES, Action, check
from civicloop.requests.service import (
    SYSTEM,
    Actor,
    get_request,
    get_work_order,
    move_order,
    move_request,
    now_or,
    record,
)


def _order_for(session: Session, *, work_order_id: int, actor: Actor) -> WorkOrder:
    """Return the order, hiding it (404) from a handler of another unit."""
    order = get_work_order(session, work_order_id=work_order_id)
    if actor.role == Role.HANDLER and actor.unit_id is not None and actor.unit_id != order.unit_id:
        raise NotFound("WorkOrder", work_order_id)
    return order


def acknowledge(
    session: Session, *, work_order_id: int, actor: Actor, settings: Settings, now: datetime | None = None,
    clock_start: datetime | None = None,
) -> WorkOrder:
    """Acknowledge (签收) a pending order: the unit's resolution clock starts now.

    Sets ``due_at`` by the order's tier (``requests.deadlines``); a lead order moves the request
    to ``in_progress``. ``clock_start`` (replays only) starts the clock at another instant, e.g. at
    dispatch when a historical record knows only when a request was filed and when it was
    answered. Raises ``NotFound``, ``IllegalTransition``, ``Forbidden``, ``ConcurrentUpdate`` (the
    race of two clerks: exactly one wins).
    """
    now = now_or(now)
    order = _order_for(session, work_order_id=work_order_id, actor=actor)
    due, provisional = resolution_due(order.deadline_tier, clock_start or now, load_calendar(session), settings.tz)
    old, new = move_order(session, order, Action.ACKNOWLEDGE, actor=actor,
                          values={"acknowledged_at": now, "due_at": due, "due_provisional": provisional,
                                  # a late acknowledgement stays in the log and the response rate; the
                                  # flag now watches the resolution deadline
                                  "overdue": False})
    request = get_request(session, request_id=order.request_id)
    r_old = r_new = str(request.status)
    if order.role == WorkOrderRole.LEAD:
        r_old, r_new = move_request(session, request, Action.ACKNOWLEDGE, actor=actor, now=now)
    record(session, request=request, action=Action.ACKNOWLEDGE, actor=actor, now=now, from_status=r_old,
           to_status=r_new, order=order, order_move=(old, new),
           data={"due_at": due.isoformat(), "provisional": provisional})
    return order


def return_order(
    session: Session, *, work_order_id: int, actor: Actor, reason: str, settings: Settings,
    now: datetime | None = None,
) -> WorkOrder:
    """Return (退单) a pending order that is not the unit's responsibility, with a ``reason``.

    A returned lead order sends the request back to dispatch and cancels every assisting order
    still active (of this round and of earlier rounds kept alive by a reopen: the next dispatch
    names its own assisting units); after ``settings.max_returns`` returns the request falls back
    to its district (兜底). A fallback order cannot be returned (``RuleViolation``). Returns the
    returned order.
    """
    now = now_or(now)
    if not reason.strip():
        raise FieldError("reason", "v.reason_required")
    order = _order_for(session, work_order_id=work_order_id, actor=actor)
    if order.fallback:
        raise RuleViolation("fallback_no_return")
    old, new = move_order(session, order, Action.RETURN, actor=actor,
                          values={"returned_at": now, "return_reason": reason})
    request = get_request(session, request_id=order.request_id)
    if order.role != WorkOrderRole.LEAD:
        status = str(request.status)
        record(session, request=request, action=Action.RETURN, actor=actor, now=now, from_status=status,
               to_status=status, order=order, order_move=(old, new), reason=reason)
        return order
    returns = request.return_count + 1
    r_old, r_new = move_request(session, request, Action.RETURN, actor=actor,
                                values={"return_count": returns, "lead_unit_id": None}, now=now)
    record(session, request=request, action=Action.RETURN, actor=actor, now=now, from_status=r_old, to_status=r_new,
           order=order, order_move=(old, new), reason=reason)
    for other in request.work_orders:
        if other.role == WorkOrderRole.ASSISTING and other.status in ACTIVE_ORDER:
            o_old, o_new = move_order(session, other, Action.CANCEL, actor=actor)
            record(session, request=request, action=Action.CANCEL, actor=actor, now=now, from_status=r_new,
                   to_status=r_new, order=other, order_move=(o_old, o_new), reason="lead order returned")
    if returns >= settings.max_returns:
        fall_back(session, request=request, last_unit=session.get(OrgUnit, order.unit_id), settings=settings, now=now)
    return order


def request_extension(
    session: Session,
    *,
    work_order_id: int,
    actor: Actor,
    reason: str,
    settings: Settings,
    until: datetime | None = None,
    extra_working_days: int | None = None,
    now: datetime | None = None,
) -> WorkOrder:
    """Ask for more time (申请延期): a new deadline ``until`` or ``extra_working_days`` past the
    current one. Raises ``FieldError`` when neither is given, the reason is blank, or the new
    deadline is not later than both now and the current deadline."""
    now = now_or(now)
    if not reason.strip():
        raise FieldError("reason", "v.reason_required")
    order = _order_for(session, work_order_id=work_order_id, actor=actor)
    current_due = order.due_at or now
    if until is not None:
        if until.tzinfo is None:
            raise FieldError("until", "v.timezone_aware")
        new_due = as_utc(until)
        field = "until"
    elif extra_working_days is not None:
        new_due, _ = extend_by_working_days(current_due, extra_working_days, load_calendar(session), settings.tz)
        field = "extra_working_days"
    else:
        raise FieldError("until", "v.missing")
    if new_due <= now or new_due <= current_due:
        raise FieldError(field, "v.deadline_past")
    old, new = move_order(session, order, Action.REQUEST_EXTENSION, actor=actor, values={
        "extension_status": ExtensionStatus.PENDING, "extension_until": new_due, "extension_reason": reason})
    request = get_request(session, request_id=order.request_id)
    r_old = r_new = str(request.status)
    if order.role == WorkOrderRole.LEAD:
        r_old, r_new = move_request(session, request, Action.REQUEST_EXTENSION, actor=actor, now=now)
    record(session, request=request, action=Action.REQUEST_EXTENSION, actor=actor, now=now, from_status=r_old,
           to_status=r_new, order=order, order_move=(old, new), reason=reason, data={"until": new_due.isoformat()})
    return order


def decide_extension(
    session: Session,
    *,
    work_order_id: int,
    actor: Actor,
    approve: bool,
    reason: str = "",
    due_at: datetime | None = None,
    now: datetime | None = None,
) -> WorkOrder:
    """Approve or refuse (审批延期) a pending extension. An approval moves the deadline to
    ``due_at`` if given, else to the date asked for, and lifts the overdue flag; a refusal needs a
    ``reason``. Raises ``IllegalTransition`` when no extension is pending (checked first, so a
    stale ``extension_until`` of an earlier request is never approved), ``Forbidden`` for a role
    other than supervisor or admin, ``FieldError`` for a refusal without reason or a deadline not
    in the future."""
    now = now_or(now)
    order = get_work_order(session, work_order_id=work_order_id)
    check(WORK_ORDER_RULES, Action.DECIDE_EXTENSION, current=str(order.status), role=actor.role)
    values: dict[str, object] = {}
    if approve:
        if due_at is not None and due_at.tzinfo is None:
            raise FieldError("due_at", "v.timezone_aware")
        new_due = as_utc(due_at) if due_at is not None else order.extension_until
        if new_due is None or new_due <= now:
            raise FieldError("due_at", "v.deadline_past")
        values = {"extension_status": ExtensionStatus.APPROVED, "due_at": new_due, "due_provisional": False,
                  "overdue": False, "extension_until": new_due}
    else:
        if not reason.strip():
            raise FieldError("reason", "v.reason_required")
        values = {"extension_status": ExtensionStatus.REFUSED}
    old, new = move_order(session, order, Action.DECIDE_EXTENSION, actor=actor, values=values)
    request = get_request(session, request_id=order.request_id)
    r_old = r_new = str(request.status)
    if order.role == WorkOrderRole.LEAD:
        r_old, r_new = move_request(session, request, Action.DECIDE_EXTENSION, actor=actor, now=now)
    record(session, request=request, action=Action.DECIDE_EXTENSION, actor=actor, now=now, from_status=r_old,
           to_status=r_new, order=order, order_move=(old, new), reason=reason,
           data={"approved": approve, "due_at": order.due_at.isoformat() if order.due_at else None})
    return order


def reply(
    session: Session, *, work_order_id: int, actor: Actor, text: str, now: datetime | None = None
) -> WorkOrder:
    """Reply (办结答复): the unit reports what it did, in words the citizen will read. A lead
    order's reply moves the request to ``replied`` (awaiting callback). A pending extension
    request lapses. Raises ``FieldError`` for a blank text."""
    now = now_or(now)
    if not text.strip():
        raise FieldError("text", "v.blank")
    order = _order_for(session, work_order_id=work_order_id, actor=actor)
    values: dict[str, object] = {"replied_at": now, "reply_text": text}
    if order.status == WorkOrderStatus.EXTENSION_REQUESTED:
        values["extension_status"] = None
    old, new = move_order(session, order, Action.REPLY, actor=actor, values=values)
    request = get_request(session, request_id=order.request_id)
    r_old = r_new = str(request.status)
    if order.role == WorkOrderRole.LEAD:
        r_old, r_new = move_request(session, request, Action.REPLY, actor=actor, now=now)
    record(session, request=request, action=Action.REPLY, actor=actor, now=now, from_status=r_old, to_status=r_new,
           order=order, order_move=(old, new))
    if order.role == WorkOrderRole.LEAD:
        answer_duplicates(session, master=request, text=text, now=now)
    return order


def answer_duplicates(session: Session, *, master: ServiceRequest, text: str, now: datetime) -> int:
    """Answer every duplicate (重复件) linked to ``master`` with the master's reply: each gets an
    ``answer_duplicate`` event carrying the reply text, so its citizen reads what was done (the glossary:
    a duplicate is "linked to it, answered with it"). Returns how many were answered."""
    linked = session.scalars(select(ServiceRequest).where(ServiceRequest.duplicate_of_id == master.id)).all()
    for duplicate in linked:
        record(session, request=duplicate, action=Action.ANSWER_DUPLICATE, actor=SYSTEM, now=now,
               from_status=str(duplicate.status), to_status=str(duplicate.status), reason=text,
               data={"master_id": master.id})
    return len(linked)
