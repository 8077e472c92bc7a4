"""The supervisor's page (督办): overdue orders, dissatisfied cases, extension requests to decide,
open supervision cases, and the month's ranking of units and streets by the three rates (三率,
``analytics.metrics.three_rates``) with a drill-down from a unit to its cases.

Cases are read within the supervisor's scope (``requests.scope``: a district's supervisor sees its
district); the ranking is of aggregates (no record), the same table ``GET /api/v1/metrics`` gives.
"""

from __future__ import annotations

from dataclasses import asdict
from datetime import timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query
from fastapi.responses import Response
from sqlalchemy import and_, func, or_, select

from civicloop.analytics.metrics import parse_month, three_rates
from civicloop.core.calendar_service import load_calendar
from civicloop.core.errors import NotFound
from civicloop.core.timeutil import as_utc
from civicloop.core.validation import MAX_ID
from civicloop.org.models import OrgUnit
from civicloop.requests import closing, handling, scope
from civicloop.requests.models import (
    Satisfaction,
    ServiceRequest,
    Supervision,
    WorkOrder,
    WorkOrderRole,
    WorkOrderStatus,
)
from civicloop.requests.schemas import CloseSupervisionIn, ExtensionDecisionIn
from civicloop.web.common import SUPERVISE_ROLES, Page, local, masked, page, time_left, unit_names, validated

router = APIRouter()

Supervisor = Annotated[Page, page(SUPERVISE_ROLES, "open_supervise")]
PathId = Annotated[int, Path(ge=1, le=MAX_ID)]
Month = Annotated[str, Query(max_length=32)]
OPEN = (WorkOrderStatus.PENDING, WorkOrderStatus.ACKNOWLEDGED, WorkOrderStatus.EXTENSION_REQUESTED)
SHOWN = 50


def this_month(p: Page) -> str:
    """The month shown by default, ``YYYY-MM`` in the users' zone: the current one, or, when no work order
    was dispatched after it began (an imported history), the month of the latest dispatch."""
    latest = p.session.scalar(select(func.max(WorkOrder.dispatched_at)))
    moment = min(as_utc(latest), p.now) if latest is not None else p.now
    return moment.astimezone(p.settings.tz).strftime("%Y-%m")


def _orders(p: Page, *conditions: Any, order_by: Any, limit: int = SHOWN) -> list[dict[str, Any]]:
    rows = p.session.execute(
        select(WorkOrder, ServiceRequest).join(ServiceRequest, ServiceRequest.id == WorkOrder.request_id)
        .where(scope.work_order_condition(p.session, p.user), *conditions).order_by(*order_by).limit(limit)
    ).all()
    calendar = load_calendar(p.session)
    names = unit_names(p.session, [o.unit_id for o, _ in rows])
    out = []
    for order, request in rows:
        deadline = order.due_at or order.response_due_at
        out.append({
            "id": order.id, "request_id": request.id, "title": masked(request.title), "unit": names.get(order.unit_id),
            "status": order.status, "request_status": request.status, "role": order.role,
            "deadline": local(deadline, p.settings),
            "badge": time_left(deadline, p.now, calendar, p.settings, p.lang) if order.status in OPEN else None,
            "extension_until": local(order.extension_until, p.settings), "reason": masked(order.extension_reason),
            "satisfaction": order.satisfaction, "resolved": order.resolved,
            "callback": local(order.callback_at, p.settings), "reply": masked(order.reply_text),
        })
    return out


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{value * 100:.1f}%"


def _ranking(p: Page, month: str, level: str) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    rows = three_rates(p.session, month=month, level=level, settings=p.settings)  # type: ignore[arg-type]
    table = [{**asdict(r), "response": _pct(r.response_rate), "resolution": _pct(r.resolution_rate),
              "satisfaction": _pct(r.satisfaction_rate),
              "score": "—" if r.composite is None else f"{r.composite * 100:.1f}"} for r in rows]
    ranked = [r for r in rows if r.composite is not None][:15]
    chart = {
        "grid": {"left": 8, "right": 24, "top": 10, "bottom": 10, "containLabel": True},
        "tooltip": {"trigger": "axis"},
        "xAxis": {"type": "value", "max": 100},
        "yAxis": {"type": "category", "inverse": True, "data": [r.unit_name for r in ranked]},
        "series": [{"type": "bar", "data": [round((r.composite or 0) * 100, 1) for r in ranked],
                    "itemStyle": {"color": "#1d4ed8"}, "barMaxWidth": 26,
                    "label": {"show": True, "position": "right"}}],
        "aria": {"enabled": True}, "animation": False,
    }
    return table, chart


@router.get("/supervise")
def supervise_page(p: Supervisor, month: Month = "", level: Annotated[str, Query(pattern="^(unit|street)$")] = "unit"
                   ) -> Response:
    """The supervisor's desk: extension requests, overdue orders, dissatisfied cases, open supervision
    cases (all within the supervisor's scope), and the three rates of ``month`` (``YYYY-MM``, default this
    month; 422 for another shape) by unit or street (``level``). Supervisors and admins."""
    month = month.strip() or this_month(p)
    parse_month(month, p.settings.tz)  # a malformed month is the 422 page, with the field's message
    extensions = _orders(p, WorkOrder.status == WorkOrderStatus.EXTENSION_REQUESTED, order_by=[WorkOrder.id])
    deadline = func.coalesce(WorkOrder.due_at, WorkOrder.response_due_at)
    overdue = _orders(p, WorkOrder.status.in_(OPEN), or_(WorkOrder.overdue.is_(True), deadline < p.now),
                      order_by=[deadline, WorkOrder.id])
    dissatisfied = _orders(p, WorkOrder.satisfaction == Satisfaction.DISSATISFIED,
                           WorkOrder.callback_at >= p.now - timedelta(days=90),
                           order_by=[WorkOrder.callback_at.desc(), WorkOrder.id.desc()])
    cases = p.session.execute(
        select(Supervision, ServiceRequest).join(ServiceRequest, ServiceRequest.id == Supervision.request_id)
        .where(Supervision.open.is_(True), scope.supervision_condition(p.session, p.user))
        .order_by(Supervision.id.desc()).limit(SHOWN)).all()
    case_rows = [{"id": c.id, "request_id": r.id, "title": masked(r.title), "reason": c.reason,
                  "note": masked(c.note), "created": local(c.created_at, p.settings), "by": c.opened_by}
                 for c, r in cases]
    ranking, chart = _ranking(p, month, level)
    return p.render("supervise.html", month=month, level=level, extensions=extensions, overdue=overdue,
                    dissatisfied=dissatisfied, cases=case_rows, ranking=ranking, chart=chart)


@router.get("/supervise/units/{unit_id}")
def unit_cases(unit_id: PathId, p: Supervisor, month: Month = "") -> Response:
    """Drill-down from the ranking: the lead work orders of a unit (or of a street and its communities)
    dispatched or called back in ``month``, within the supervisor's scope. 404 for an unknown unit."""
    month = month.strip() or this_month(p)
    start, end = parse_month(month, p.settings.tz)
    unit = p.session.get(OrgUnit, unit_id)
    if unit is None:
        raise NotFound("OrgUnit", unit_id)
    members = [unit_id, *p.session.scalars(select(OrgUnit.id).where(OrgUnit.parent_id == unit_id)
                                           .where(OrgUnit.kind == "community"))]
    in_month = or_(and_(WorkOrder.dispatched_at >= start, WorkOrder.dispatched_at < end),
                   and_(WorkOrder.callback_at >= start, WorkOrder.callback_at < end))
    orders = _orders(p, WorkOrder.unit_id.in_(members), WorkOrder.role == WorkOrderRole.LEAD, in_month,
                     order_by=[WorkOrder.dispatched_at.desc(), WorkOrder.id.desc()], limit=500)
    return p.render("unit_cases.html", unit=unit.name, unit_id=unit_id, month=month, orders=orders)


@router.post("/supervise/orders/{work_order_id}/extension")
def decide_extension(work_order_id: PathId, p: Supervisor) -> Response:
    """Approve (``decision=approve``: the date asked for) or refuse (with a reason; 422 without) a
    pending extension. 409 when none is pending; 404 outside the supervisor's scope."""
    scope.visible_work_order(p.session, p.user, work_order_id)
    body = validated(ExtensionDecisionIn, p.lang, approve=p.field("decision") == "approve", reason=p.field("reason"))
    handling.decide_extension(p.session, work_order_id=work_order_id, actor=p.actor, **body.model_dump())
    return p.redirect("/supervise", "decided")


@router.post("/supervise/cases/{supervision_id}/close")
def close_case(supervision_id: PathId, p: Supervisor) -> Response:
    """Close a supervision case with a note; 404 outside the supervisor's scope."""
    scope.visible_supervision(p.session, p.user, supervision_id)
    body = validated(CloseSupervisionIn, p.lang, note=p.field("note"))
    closing.close_supervision(p.session, supervision_id=supervision_id, actor=p.actor, note=body.note)
    return p.redirect("/supervise", "closed_case")
