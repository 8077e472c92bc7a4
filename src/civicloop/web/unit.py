"""The handling unit's page (承办): the unit's open work orders by deadline, coloured by the time left
(overdue red, less than one working day orange, else green); an order's page with the citizen's words
(contact masked) and the history, where the unit acknowledges (签收), returns with a reason (退单), asks
for an extension (延期) and replies (办结答复) through ``requests.handling``.

A handler sees only its own unit's orders (``requests.scope.work_order_condition``): another unit's
order is the 404 page.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path
from fastapi.responses import Response
from sqlalchemy import func, select

from civicloop.core.calendar_service import load_calendar
from civicloop.core.validation import MAX_ID, mask_name, mask_phone
from civicloop.requests import handling, scope
from civicloop.requests.models import ServiceRequest, WorkOrder, WorkOrderStatus
from civicloop.requests.schemas import ExtensionIn, ReplyIn, ReturnIn
from civicloop.web.common import (
    UNIT_ROLES,
    FormInvalid,
    Page,
    events_of,
    int_or_none,
    local,
    masked,
    page,
    time_left,
    unit_names,
    validated,
)

router = APIRouter()

Handler = Annotated[Page, page(UNIT_ROLES, "open_unit")]
PathId = Annotated[int, Path(ge=1, le=MAX_ID)]
OPEN = (WorkOrderStatus.PENDING, WorkOrderStatus.ACKNOWLEDGED, WorkOrderStatus.EXTENSION_REQUESTED)
SHOWN = 200


def deadline_of(order: WorkOrder) -> Any:
    """The deadline a unit is working to: the resolution deadline once acknowledged, before that the
    response deadline (签收时限)."""
    return order.due_at or order.response_due_at


def _rows(p: Page, orders: list[tuple[WorkOrder, ServiceRequest]]) -> list[dict[str, Any]]:
    calendar = load_calendar(p.session)
    names = unit_names(p.session, [o.unit_id for o, _ in orders])
    rows = []
    for order, request in orders:
        badge = time_left(deadline_of(order), p.now, calendar, p.settings, p.lang) \
            if order.status in OPEN else ("due-none", "")
        rows.append({"id": order.id, "request_id": request.id, "title": masked(request.title), "role": order.role,
                     "status": order.status, "deadline": local(deadline_of(order), p.settings), "badge": badge,
                     "unit": names.get(order.unit_id, ""), "round": order.round, "overdue": order.overdue,
                     "replied": local(order.replied_at, p.settings)})
    return rows


@router.get("/unit")
def unit_page(p: Handler) -> Response:
    """The unit's open work orders, the nearest deadline first, and its latest replies. Handlers (their
    own unit's orders) and admins (every unit's)."""
    condition = scope.work_order_condition(p.session, p.user)
    base = select(WorkOrder, ServiceRequest).join(ServiceRequest, ServiceRequest.id == WorkOrder.request_id) \
        .where(condition)
    open_orders = p.session.execute(base.where(WorkOrder.status.in_(OPEN)).order_by(
        func.coalesce(WorkOrder.due_at, WorkOrder.response_due_at), WorkOrder.id).limit(SHOWN)).all()
    done = p.session.execute(base.where(WorkOrder.status.in_((WorkOrderStatus.REPLIED, WorkOrderStatus.CLOSED)))
                             .order_by(WorkOrder.replied_at.desc(), WorkOrder.id.desc()).limit(10)).all()
    return p.render("unit.html", orders=_rows(p, list(open_orders)), done=_rows(p, list(done)), shown=SHOWN)


@router.get("/unit/orders/{work_order_id}")
def order_page(work_order_id: PathId, p: Handler) -> Response:
    """One work order: the citizen's words (name and phone masked, texts with contact data masked), the
    deadline and time left, the actions its status allows, and the request's history. 404 for an order
    of another unit."""
    order = scope.visible_work_order(p.session, p.user, work_order_id)
    request = p.session.get(ServiceRequest, order.request_id)
    assert request is not None  # a foreign key guarantees it
    badge = time_left(deadline_of(order), p.now, load_calendar(p.session), p.settings, p.lang) \
        if order.status in OPEN else ("due-none", "")
    words = {"title": masked(request.title), "description": masked(request.description),
             "address": masked(request.address), "name": mask_name(request.citizen_name),
             "phone": mask_phone(request.citizen_phone), "created": local(request.created_at, p.settings),
             "channel": request.channel, "id": request.id}
    info = {"id": order.id, "status": order.status, "role": order.role, "round": order.round, "badge": badge,
            "deadline": local(deadline_of(order), p.settings), "tier": order.deadline_tier,
            "extension_until": local(order.extension_until, p.settings), "reply": masked(order.reply_text),
            "replied": local(order.replied_at, p.settings), "fallback": order.fallback,
            "unit": unit_names(p.session, [order.unit_id]).get(order.unit_id, "")}
    return p.render("order.html", order=info, words=words, events=events_of(p.session, request.id, p.settings),
                    errors={})


@router.post("/unit/orders/{work_order_id}/acknowledge")
def acknowledge(work_order_id: PathId, p: Handler) -> Response:
    """Acknowledge (签收) a pending order: the resolution deadline starts now. 409 when it is no longer
    pending (someone else took it); 404 for another unit's order."""
    scope.visible_work_order(p.session, p.user, work_order_id)
    handling.acknowledge(p.session, work_order_id=work_order_id, actor=p.actor, settings=p.settings)
    return p.redirect(f"/unit/orders/{work_order_id}", "acknowledged")


@router.post("/unit/orders/{work_order_id}/return")
def return_order(work_order_id: PathId, p: Handler) -> Response:
    """Return (退单) a pending order that is not the unit's, with a reason (422 without one); the
    dispatcher re-dispatches it, and after ``max_returns`` returns the district takes it (兜底)."""
    scope.visible_work_order(p.session, p.user, work_order_id)
    body = validated(ReturnIn, p.lang, reason=p.field("reason"))
    handling.return_order(p.session, work_order_id=work_order_id, actor=p.actor, reason=body.reason,
                          settings=p.settings)
    return p.redirect("/unit", "returned")


@router.post("/unit/orders/{work_order_id}/extension")
def extension(work_order_id: PathId, p: Handler) -> Response:
    """Ask for ``extra_working_days`` (1–60) more working days with a reason; a supervisor decides.
    422 for a missing reason or number."""
    scope.visible_work_order(p.session, p.user, work_order_id)
    days = int_or_none(p.field("extra_working_days"), "extra_working_days", p.lang, high=60)
    if days is None:
        raise FormInvalid({"extra_working_days": p.t("v.missing")})
    body = validated(ExtensionIn, p.lang, reason=p.field("reason"), extra_working_days=days)
    handling.request_extension(p.session, work_order_id=work_order_id, actor=p.actor, settings=p.settings,
                               **body.model_dump())
    return p.redirect(f"/unit/orders/{work_order_id}", "extension")


@router.post("/unit/orders/{work_order_id}/reply")
def reply(work_order_id: PathId, p: Handler) -> Response:
    """Reply (办结答复): what the unit did, in words the citizen reads; the request awaits the
    citizen's rating. 422 for a blank text."""
    scope.visible_work_order(p.session, p.user, work_order_id)
    body = validated(ReplyIn, p.lang, text=p.field("text"))
    handling.reply(p.session, work_order_id=work_order_id, actor=p.actor, text=body.text)
    return p.redirect(f"/unit/orders/{work_order_id}", "replied")
