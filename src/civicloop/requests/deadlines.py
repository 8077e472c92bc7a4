"""Deadlines (时限) of work orders: the response deadline and the resolution deadline by tier.

Hour tiers (2 h, 24 h) count clock time: a burst water main does not wait for Monday. Day tiers
(7, 15) count working days of the Chinese calendar (``core.calendar``) and end at 23:59:59 local
time on the last working day. The response deadline (签收时限) runs from dispatch: 2 hours for an
urgent order, otherwise 24 hours (both settings). The resolution deadline runs from
acknowledgement (签收), which starts the unit's clock.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session

from civicloop.catalog.models import DeadlineTier
from civicloop.core.calendar import WorkCalendar, end_of_working_day_deadline
from civicloop.core.settings import Settings
from civicloop.requests.models import WorkOrder, WorkOrderStatus

CLOCK_SECONDS = {DeadlineTier.URGENT_2H: 2 * 3600, DeadlineTier.HOURS_24: 24 * 3600}
WORKING_DAYS = {DeadlineTier.DAYS_7: 7, DeadlineTier.DAYS_15: 15}


def response_due(tier: str, dispatched_at: datetime, settings: Settings) -> datetime:
    """Return the time by which a unit must acknowledge an order dispatched at ``dispatched_at``
    (aware). Urgent: ``settings.response_seconds_urgent`` later; otherwise
    ``settings.response_seconds_default``."""
    seconds = (
        settings.response_seconds_urgent if tier == DeadlineTier.URGENT_2H else settings.response_seconds_default
    )
    return dispatched_at + timedelta(seconds=seconds)


def resolution_due(
    tier: str, start: datetime, calendar: WorkCalendar, tz: ZoneInfo
) -> tuple[datetime, bool]:
    """Return (deadline in UTC, provisional) for an order of ``tier`` whose clock starts at ``start``.

    ``start`` is aware. Provisional is true when the count crossed a year with no official
    schedule (see ``core.calendar``). Raises ``ValueError`` for an unknown tier.
    """
    tier = DeadlineTier(tier)
    if tier in CLOCK_SECONDS:
        return (start + timedelta(seconds=CLOCK_SECONDS[tier])).astimezone(ZoneInfo("UTC")), False
    due_local, provisional = end_of_working_day_deadline(calendar, start.astimezone(tz), WORKING_DAYS[tier])
    return due_local.astimezone(ZoneInfo("UTC")), provisional


def extend_by_working_days(
    due: datetime, days: int, calendar: WorkCalendar, tz: ZoneInfo
) -> tuple[datetime, bool]:
    """Return (new deadline in UTC, provisional): ``days`` working days after the day of ``due``."""
    due_local, provisional = end_of_working_day_deadline(calendar, due.astimezone(tz), days)
    return due_local.astimezone(ZoneInfo("UTC")), provisional


OPEN_FOR_DEADLINE = (WorkOrderStatus.ACKNOWLEDGED, WorkOrderStatus.EXTENSION_REQUESTED)


def recompute_provisional(session: Session, *, calendar: WorkCalendar, tz: ZoneInfo) -> list[int]:
    """Recompute every open work order whose deadline is provisional, after a year was entered.

    Orders whose deadline came from an approved extension with an explicit date keep it. Returns
    the ids of the orders whose deadline was recomputed (changed or not). Does not commit.
    """
    orders = session.scalars(
        select(WorkOrder).where(WorkOrder.due_provisional.is_(True), WorkOrder.status.in_(OPEN_FOR_DEADLINE))
    ).all()
    touched: list[int] = []
    for order in orders:
        if order.acknowledged_at is None:
            continue
        due, provisional = resolution_due(order.deadline_tier, order.acknowledged_at, calendar, tz)
        if order.extension_status == "approved" and order.extension_until is not None:
            due = max(due, order.extension_until)
        order.due_at = due
        order.due_provisional = provisional
        touched.append(order.id)
    session.flush()
    return touched
