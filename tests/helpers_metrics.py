"""Helpers that drive one request through the loop at explicit times, for the ledger and the
three-rate tests. Times are aware Asia/Shanghai datetimes built with :func:`at`."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy.orm import Session

from civicloop.core.settings import Settings
from civicloop.requests import closing, handling, intake
from civicloop.requests.models import Satisfaction, ServiceRequest, WorkOrder, WorkOrderRole
from tests.helpers import DISPATCHER, HANDLER, OPERATOR, dispatched

SHANGHAI = ZoneInfo("Asia/Shanghai")


def at(month: int, day: int, hour: int, minute: int = 0, year: int = 2019) -> datetime:
    """An aware local (Asia/Shanghai) time."""
    return datetime(year, month, day, hour, minute, tzinfo=SHANGHAI)


def lead_order(request: ServiceRequest) -> WorkOrder:
    """The request's latest lead work order."""
    return [o for o in request.work_orders if o.role == WorkOrderRole.LEAD][-1]


def dispatch_at(session: Session, settings: Settings, *, unit_id: int, when: datetime, **kw: Any) -> ServiceRequest:
    """A request submitted, accepted and dispatched to ``unit_id`` at ``when``."""
    return dispatched(session, settings, unit_id=unit_id, now=when, **kw)


def redispatch(session: Session, settings: Settings, request: ServiceRequest, *, unit_id: int,
               when: datetime) -> ServiceRequest:
    """Dispatch an accepted (e.g. returned) request again, to ``unit_id`` at ``when``."""
    return intake.dispatch(session, request_id=request.id, actor=DISPATCHER, lead_unit_id=unit_id,
                           settings=settings, now=when)


def ack(session: Session, settings: Settings, request: ServiceRequest, when: datetime) -> WorkOrder:
    """The lead unit acknowledges (签收) the lead order at ``when``."""
    return handling.acknowledge(session, work_order_id=lead_order(request).id, actor=HANDLER, settings=settings,
                                now=when)


def give_back(session: Session, settings: Settings, request: ServiceRequest, when: datetime) -> WorkOrder:
    """The lead unit returns (退单) the lead order at ``when``."""
    return handling.return_order(session, work_order_id=lead_order(request).id, actor=HANDLER,
                                 reason="不属于本单位职责", settings=settings, now=when)


def answer(session: Session, request: ServiceRequest, when: datetime, text: str = "已处理完毕。") -> WorkOrder:
    """The lead unit replies (办结) at ``when``."""
    return handling.reply(session, work_order_id=lead_order(request).id, actor=HANDLER, text=text, now=when)


def call_back(session: Session, settings: Settings, request: ServiceRequest, when: datetime, *, resolved: bool,
              satisfaction: Satisfaction) -> ServiceRequest:
    """The citizen is called back (回访) at ``when``."""
    return closing.callback(session, request_id=request.id, actor=OPERATOR, resolved=resolved,
                            satisfaction=satisfaction, settings=settings, now=when)


def full_loop(session: Session, settings: Settings, *, unit_id: int, dispatched_at: datetime,
              acked_at: datetime, replied_at: datetime, called_at: datetime, resolved: bool = True,
              satisfaction: Satisfaction = Satisfaction.SATISFIED, **kw: Any) -> ServiceRequest:
    """Dispatch, acknowledge, reply and call back one request at the given times."""
    request = dispatch_at(session, settings, unit_id=unit_id, when=dispatched_at, **kw)
    ack(session, settings, request, acked_at)
    answer(session, request, replied_at)
    return call_back(session, settings, request, called_at, resolved=resolved, satisfaction=satisfaction)
