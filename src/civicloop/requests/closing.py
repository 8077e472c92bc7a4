"""Closing the loop: callback and rating (回访), reopen (重办), supervision (督办)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session

from civicloop.core.errors import Forbidden, IllegalTransition, NotFound
from civicloop.core.settings import Settings
from civicloop.org.models import OrgUnit
from civicloop.requests.intake import new_order, next_round
from civicloop.requests.models import (
    RequestStatus,
    Satisfaction,
    ServiceRequest,
    Supervision,
    SupervisionReason,
    WorkOrder,
    WorkOrderRole,
    WorkOrderStatus,
)
from civicloop.requests.rules import ACTIVE_ORDER, REQUEST_RULES, Action, check
from civicloop.requests.service import (
    Actor,
    active_lead,
    get_request,
    move_order,
    move_request,
    now_or,
    open_supervision,
    record,
)


def _close_all(session: Session, request: ServiceRequest, *, actor: Actor, now: datetime) -> None:
    status = str(request.status)
    for order in request.work_orders:
        if order.status in ACTIVE_ORDER:
            old, new = move_order(session, order, Action.CLOSE, actor=actor, values={"closed_at": now})
            record(session, request=request, action=Action.CLOSE, actor=actor, now=now, from_status=status,
                   to_status=status, order=order, order_move=(old, new))


def _redo(
    session: Session, request: ServiceRequest, lead: WorkOrder, *, actor: Actor, action: Action, settings: Settings,
    now: datetime, reason: str, target: str | None = None, order_values: dict[str, object] | None = None,
) -> WorkOrder:
    """Retire ``lead`` as reopened and give the same unit a new round; the request goes back to
    ``dispatched``. ``order_values`` are written on ``lead`` in the same conditional update.

    The request's transition is guarded before anything is written, so a refused reopen (e.g. an
    operator's: the order table lets an operator retire an order, the request table does not let
    them reopen) leaves no half-moved order behind in the session."""
    check(REQUEST_RULES, action, current=str(request.status), target=target, role=actor.role)
    old_o, new_o = move_order(session, lead, Action.REOPEN, actor=actor, values=order_values)
    unit = session.get(OrgUnit, lead.unit_id)
    assert unit is not None  # a foreign key guarantees it
    old, new = move_request(session, request, action, actor=actor, target=target, now=now, values={
        "reopen_count": request.reopen_count + 1, "closed_at": None, "lead_unit_id": unit.id})
    fresh = new_order(session, request=request, unit=unit, role=WorkOrderRole.LEAD, round_=next_round(request),
                      settings=settings, now=now, fallback=lead.fallback)
    record(session, request=request, action=Action.REOPEN, actor=actor, now=now, from_status=old, to_status=new,
           order=fresh, reason=reason, order_move=(old_o, new_o), data={"previous_order_id": lead.id})
    return fresh


def callback(
    session: Session,
    *,
    request_id: int,
    actor: Actor,
    resolved: bool,
    satisfaction: Satisfaction,
    settings: Settings,
    note: str = "",
    now: datetime | None = None,
) -> ServiceRequest:
    """Record the citizen's answer at callback (回访) and close or reopen the request.

    Resolved and at least basically satisfied: the request closes. Otherwise it is reopened
    (重办) to the same unit, up to ``settings.max_reopens`` times; past that it closes with the
    rating it got and a supervision case (督办) is opened. The rating is kept on the lead work
    order, where the three rates read it. Raises ``IllegalTransition`` unless the request is
    ``replied``.
    """
    now = now_or(now)
    check_role(Action.CALLBACK, actor)  # a role that may never call back learns nothing of the state
    request = get_request(session, request_id=request_id)
    lead = active_lead(request)
    if request.status != RequestStatus.REPLIED or lead is None or lead.status != WorkOrderStatus.REPLIED:
        raise IllegalTransition(Action.CALLBACK.value, str(request.status))
    good = resolved and satisfaction != Satisfaction.DISSATISFIED
    rating = {"callback_at": now, "resolved": resolved, "satisfaction": str(satisfaction)}
    if good or request.reopen_count >= settings.max_reopens:
        # the rating is written with the close, in the same conditional update
        old_o, new_o = move_order(session, lead, Action.CLOSE, actor=actor, values={**rating, "closed_at": now})
        status = str(request.status)
        record(session, request=request, action=Action.CLOSE, actor=actor, now=now, from_status=status,
               to_status=status, order=lead, order_move=(old_o, new_o))
        _close_all(session, request, actor=actor, now=now)
        old, new = move_request(session, request, Action.CALLBACK, actor=actor, target=RequestStatus.CLOSED,
                                now=now, values={"closed_at": now})
        record(session, request=request, action=Action.CALLBACK, actor=actor, now=now, from_status=old,
               to_status=new, order=lead, reason=note,
               data={"resolved": resolved, "satisfaction": str(satisfaction)})
        if not good:
            open_supervision(session, request=request, order=lead, reason=SupervisionReason.DISSATISFIED,
                             actor=actor, now=now)
        return request
    # the citizen's answer is recorded as it stands; the move to ``dispatched`` is the reopen's event
    record(session, request=request, action=Action.CALLBACK, actor=actor, now=now, from_status=request.status,
           to_status=request.status, order=lead, reason=note,
           data={"resolved": resolved, "satisfaction": str(satisfaction)})
    _redo(session, request, lead, actor=actor, action=Action.CALLBACK, target=RequestStatus.DISPATCHED,
          settings=settings, now=now, reason="unresolved or dissatisfied at callback", order_values=rating)
    return request


def close_unrated(
    session: Session, *, request_id: int, actor: Actor, reason: str, now: datetime | None = None
) -> ServiceRequest:
    """Close a replied request without the citizen's rating (结案（未回访）) and return it.

    For a citizen who cannot be reached at callback, or who declines to answer, and for imported
    history whose source says "closed" but carries no rating (the NYC 311 import). Its work orders
    close with no ``callback_at``, so the three rates count it apart: it stays in the response rate
    and is in neither the resolution nor the satisfaction rate, whose denominator is the orders
    called back (docs/metrics.md). ``reason`` is kept on the event. Raises ``Forbidden`` for a role
    other than operator, supervisor, system or admin, ``IllegalTransition`` unless the request is
    ``replied``, ``NotFound`` for an unknown id."""
    now = now_or(now)
    check_role(Action.CLOSE_UNRATED, actor)
    request = get_request(session, request_id=request_id)
    # the request's move is guarded before the orders close, so a refusal leaves nothing half-moved
    check(REQUEST_RULES, Action.CLOSE_UNRATED, current=str(request.status), target=RequestStatus.CLOSED,
          role=actor.role)
    lead = active_lead(request)
    _close_all(session, request, actor=actor, now=now)
    old, new = move_request(session, request, Action.CLOSE_UNRATED, actor=actor, target=RequestStatus.CLOSED,
                            now=now, values={"closed_at": now})
    record(session, request=request, action=Action.CLOSE_UNRATED, actor=actor, now=now, from_status=old,
           to_status=new, order=lead, reason=reason)
    return request


def reopen(
    session: Session, *, request_id: int, actor: Actor, settings: Settings, reason: str = "",
    now: datetime | None = None,
) -> ServiceRequest:
    """Reopen (重办) a replied or closed request to its last lead unit, on a supervisor's order.

    Raises ``IllegalTransition`` from any other status, ``Forbidden`` for a role other than
    supervisor or admin."""
    now = now_or(now)
    check_role(Action.REOPEN, actor)
    request = get_request(session, request_id=request_id)
    leads = [o for o in request.work_orders if o.role == WorkOrderRole.LEAD
             and o.status in (WorkOrderStatus.REPLIED, WorkOrderStatus.CLOSED)]
    if request.status not in (RequestStatus.REPLIED, RequestStatus.CLOSED) or not leads:
        raise IllegalTransition(Action.REOPEN.value, str(request.status))
    _redo(session, request, leads[-1], actor=actor, action=Action.REOPEN, settings=settings, now=now, reason=reason)
    return request


def supervise(
    session: Session, *, request_id: int, actor: Actor, note: str, redo: bool, settings: Settings,
    now: datetime | None = None,
) -> Supervision:
    """Open a supervision case (督办) with a supervisor's ``note``; with ``redo`` the request is
    reopened to its unit (an order to redo, only once it has been replied or closed). Returns the
    case. Raises ``IllegalTransition`` for a request not yet accepted, or rejected, or a redo of a
    request still being handled."""
    now = now_or(now)
    request = get_request(session, request_id=request_id)
    old, new = move_request(session, request, Action.SUPERVISE, actor=actor, now=now)
    case = open_supervision(session, request=request, order=active_lead(request), reason=SupervisionReason.MANUAL,
                            actor=actor, now=now, note=note or "-", redo=redo)
    record(session, request=request, action=Action.SUPERVISE, actor=actor, now=now, from_status=old, to_status=new,
           reason=note, data={"supervision_id": case.id, "redo": redo})
    if redo:
        reopen(session, request_id=request.id, actor=actor, settings=settings, reason=note, now=now)
    return case


def check_role(action: Action, actor: Actor) -> None:
    """Raise ``Forbidden`` unless ``actor``'s role may fire ``action`` on a request."""
    if actor.role not in REQUEST_RULES[action].roles:
        raise Forbidden(role=actor.role.value, action=action.value)


def close_supervision(
    session: Session, *, supervision_id: int, actor: Actor, note: str = "", now: datetime | None = None
) -> Supervision:
    """Close a supervision case, appending ``note``; raises ``NotFound``."""
    now = now_or(now)
    check_role(Action.SUPERVISE, actor)
    case = session.get(Supervision, supervision_id)
    if case is None:
        raise NotFound("Supervision", supervision_id)
    if case.open:
        case.open = False
        case.closed_at = now
        if note:
            case.note = f"{case.note}\n{note}".strip()
        request = get_request(session, request_id=case.request_id)
        status = str(request.status)
        record(session, request=request, action="close_supervision", actor=actor, now=now, reason=note,
               from_status=status, to_status=status, data={"supervision_id": case.id})
        session.flush()
    return case
