"""Shared machinery of the request use cases: load records, apply a guarded transition as a
conditional UPDATE, and record the event. The use cases themselves live in ``intake``,
``handling`` and ``closing``. Services never commit: the HTTP request, job or command does.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from civicloop.core import audit
from civicloop.core.errors import ConcurrentUpdate, NotFound
from civicloop.core.roles import Role
from civicloop.core.timeutil import utcnow
from civicloop.requests.models import (
    RequestEvent,
    ServiceRequest,
    Supervision,
    SupervisionReason,
    WorkOrder,
    WorkOrderRole,
)
from civicloop.requests.rules import ACTIVE_ORDER, REQUEST_RULES, WORK_ORDER_RULES, Action, check


@dataclass(frozen=True)
class Actor:
    """Who fires a transition: a display name (or user id), their role, and their unit if any."""

    name: str
    role: Role
    unit_id: int | None = None


SYSTEM = Actor("system", Role.SYSTEM)


def get_request(session: Session, *, request_id: int) -> ServiceRequest:
    """Return request ``request_id``; raises ``NotFound`` (404)."""
    found = session.get(ServiceRequest, request_id)
    if found is None:
        raise NotFound("ServiceRequest", request_id)
    return found


def get_work_order(session: Session, *, work_order_id: int) -> WorkOrder:
    """Return work order ``work_order_id``; raises ``NotFound`` (404)."""
    found = session.get(WorkOrder, work_order_id)
    if found is None:
        raise NotFound("WorkOrder", work_order_id)
    return found


def active_lead(request: ServiceRequest) -> WorkOrder | None:
    """Return the request's live lead work order (the latest one not returned, reopened or
    cancelled), or ``None``."""
    leads = [o for o in request.work_orders if o.role == WorkOrderRole.LEAD and o.status in ACTIVE_ORDER]
    return leads[-1] if leads else None


def move_request(
    session: Session,
    request: ServiceRequest,
    action: Action,
    *,
    actor: Actor,
    target: str | None = None,
    values: dict[str, Any] | None = None,
    now: datetime,
) -> tuple[str, str]:
    """Apply ``action`` to ``request`` as ``UPDATE … WHERE id = :id AND version = :seen``.

    Returns (from status, to status). Raises ``IllegalTransition``/``Forbidden`` from the table,
    and ``ConcurrentUpdate`` when another transaction changed the request since it was read.
    """
    current = str(request.status)
    new = check(REQUEST_RULES, action, current=current, target=target, role=actor.role)
    changes = {"status": new, "updated_at": now, "version": request.version + 1, **(values or {})}
    result = session.execute(
        update(ServiceRequest)
        .where(ServiceRequest.id == request.id, ServiceRequest.version == request.version)
        .values(**changes)
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        raise ConcurrentUpdate()
    _written(request, changes)
    return current, new


def move_order(
    session: Session,
    order: WorkOrder,
    action: Action,
    *,
    actor: Actor,
    values: dict[str, Any] | None = None,
) -> tuple[str, str]:
    """Apply ``action`` to ``order`` as a conditional UPDATE on its status and version.

    Returns (from status, to status). Raises like :func:`move_request`.
    """
    current = str(order.status)
    new = check(WORK_ORDER_RULES, action, current=current, role=actor.role)
    changes = {"status": new, "version": order.version + 1, **(values or {})}
    result = session.execute(
        update(WorkOrder)
        .where(WorkOrder.id == order.id, WorkOrder.status == current, WorkOrder.version == order.version)
        .values(**changes)
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        raise ConcurrentUpdate()
    _written(order, changes)
    return current, new


def _written(obj: ServiceRequest | WorkOrder, changes: dict[str, Any]) -> None:
    """Set on ``obj`` the values just written by a conditional UPDATE, as committed state.

    Cheaper than ``session.refresh`` (a SELECT per transition) and exact: the UPDATE matched
    one row whose other columns we had read under the same version.
    """
    for key, value in changes.items():
        set_committed_value(obj, key, value)


def record(
    session: Session,
    *,
    request: ServiceRequest,
    action: Action | str,
    actor: Actor,
    now: datetime,
    from_status: str | None = None,
    to_status: str | None = None,
    order: WorkOrder | None = None,
    reason: str = "",
    data: dict[str, Any] | None = None,
    order_move: tuple[str, str] | None = None,
) -> RequestEvent:
    """Append one event to the request's history (who, when, from, to, why) and return it.

    ``from_status``/``to_status`` are always the *request's* statuses before and after the action
    (equal when only a work order moved), so the log replays the request's life and its last
    ``to_status`` is the request's status. When a work order moved, ``order`` names it and
    ``order_move`` (its from and to statuses) is kept in ``data["order_status"]``.

    Also queues the transition's entry in the audit log (``core.audit``, appended in the same
    transaction when it commits): subject ``request:<id>``, the action, both statuses, the work
    order, the event's own time and its data; the free-text ``reason`` stays in the event only.
    """
    payload = dict(data or {})
    if order_move is not None:
        payload["order_status"] = [str(order_move[0]), str(order_move[1])]
    event = RequestEvent(
        request_id=request.id,
        work_order_id=order.id if order else None,
        action=str(action),
        from_status=str(from_status) if from_status is not None else None,
        to_status=str(to_status) if to_status is not None else None,
        actor=actor.name,
        actor_role=actor.role.value,
        reason=reason,
        data=payload,
        created_at=now,
    )
    session.add(event)
    audit.enqueue(session, actor=actor.name, role=actor.role.value, action=str(action),
                  subject=f"request:{request.id}",
                  data={**payload, "from": event.from_status, "to": event.to_status,
                        "work_order_id": event.work_order_id, "event_at": now})
    return event


def open_supervision(
    session: Session,
    *,
    request: ServiceRequest,
    order: WorkOrder | None,
    reason: SupervisionReason,
    actor: Actor,
    now: datetime,
    note: str = "",
    redo: bool = False,
) -> Supervision:
    """Open a supervision case (督办) on ``request``; an open case of the same reason on the same
    order is reused so the periodic job does not pile duplicates up."""
    existing = session.scalars(
        select(Supervision).where(
            Supervision.request_id == request.id,
            Supervision.work_order_id == (order.id if order else None),
            Supervision.reason == reason,
            Supervision.open.is_(True),
        )
    ).first()
    if existing is not None and not note:
        return existing
    case = Supervision(
        request_id=request.id, work_order_id=order.id if order else None, reason=reason, note=note,
        redo=redo, open=True, opened_by=actor.name, created_at=now,
    )
    session.add(case)
    session.flush()
    return case


def history(session: Session, *, request_id: int) -> Sequence[RequestEvent]:
    """Return the request's events, oldest first."""
    return session.scalars(
        select(RequestEvent).where(RequestEvent.request_id == request_id).order_by(RequestEvent.id)
    ).all()


def now_or(now: datetime | None) -> datetime:
    """Return ``now`` if given (tests, replays) else the current UTC time."""
    return now or utcnow()
