"""Periodic jobs of the loop, run by ``civicloop worker``: mark overdue orders and open
supervision, and warn about deadlines that rest on a calendar year nobody has entered yet.

Rows are taken with ``FOR UPDATE SKIP LOCKED`` on PostgreSQL, so several workers can run side by
side without marking an order twice; SQLite has one writer at a time anyway.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session

from civicloop.core.calendar_service import load_calendar
from civicloop.core.settings import Settings
from civicloop.requests.deadlines import OPEN_FOR_DEADLINE, recompute_provisional
from civicloop.requests.models import SupervisionReason, WorkOrder, WorkOrderStatus
from civicloop.requests.rules import Action
from civicloop.requests.service import SYSTEM, get_request, move_order, now_or, open_supervision, record

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class OverdueReport:
    """What one round of :func:`mark_overdue` did."""

    marked: list[int]
    provisional_open: int


def mark_overdue(
    session: Session, *, settings: Settings, now: datetime | None = None, limit: int = 1000
) -> OverdueReport:
    """Flag work orders past their deadline and open a supervision case (督办) on each.

    Overdue means: still pending after the response deadline, or acknowledged (or awaiting an
    extension decision) after the resolution deadline. Each order is flagged once. Also counts
    open orders whose deadline is provisional and logs a warning for the supervisors. Handles
    at most ``limit`` orders per call. Does not commit.
    """
    now = now_or(now)
    overdue = or_(
        and_(WorkOrder.status == WorkOrderStatus.PENDING, WorkOrder.response_due_at < now),
        and_(WorkOrder.status.in_(OPEN_FOR_DEADLINE), WorkOrder.due_at < now),
    )
    query = (
        select(WorkOrder).where(WorkOrder.overdue.is_(False), overdue).order_by(WorkOrder.id).limit(limit)
        .with_for_update(skip_locked=True)
    )
    marked: list[int] = []
    for order in session.scalars(query).all():
        old, new = move_order(session, order, Action.MARK_OVERDUE, actor=SYSTEM, values={"overdue": True})
        request = get_request(session, request_id=order.request_id)
        kind = "response" if order.status == WorkOrderStatus.PENDING else "resolution"
        status = str(request.status)
        record(session, request=request, action=Action.MARK_OVERDUE, actor=SYSTEM, now=now, from_status=status,
               to_status=status, order=order, order_move=(old, new), data={"deadline": kind})
        open_supervision(session, request=request, order=order, reason=SupervisionReason.OVERDUE, actor=SYSTEM,
                         now=now)
        marked.append(order.id)
    provisional = provisional_orders(session)
    if provisional:
        log.warning("%d open work orders have provisional deadlines: enter the next year's official calendar "
                    "(civicloop calendar set-year)", len(provisional))
    return OverdueReport(marked=marked, provisional_open=len(provisional))


def provisional_orders(session: Session) -> list[WorkOrder]:
    """Return open work orders whose deadline rests on a year with no official schedule."""
    return list(session.scalars(
        select(WorkOrder).where(WorkOrder.due_provisional.is_(True), WorkOrder.status.in_(OPEN_FOR_DEADLINE))
        .order_by(WorkOrder.due_at)
    ))


def refresh_deadlines(session: Session, *, settings: Settings) -> list[int]:
    """Recompute provisional deadlines with the calendar as it now stands; returns order ids."""
    return recompute_provisional(session, calendar=load_calendar(session), tz=settings.tz)
